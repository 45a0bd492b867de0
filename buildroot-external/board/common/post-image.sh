#!/usr/bin/env bash
# Buildroot post-image script of the re6st firmware
# (BR2_ROOTFS_POST_IMAGE_SCRIPT, BR2_ROOTFS_POST_SCRIPT_ARGS="BOARD"):
#
#   post-image.sh BINARIES_DIR BOARD
#
# Next to Buildroot's kernel and rootfs.squashfs, writes the same set as
# scripts/image.sh, from board/BOARD/board.conf (the file scripts/image.sh
# and qemu-tests/smoke.sh read):
#   firmware.img    the whole firmware disk (sparse, MBR, made with sfdisk
#                   exactly as scripts/image.sh): 1 boot environment
#                   (1 MiB, blank = slot a), 2 slot a (= rootfs.squashfs),
#                   3 slot b (empty, for upgrades), 4 data (blank; init
#                   formats it at first boot); SLOT_SIZE, DATA_SIZE
#   rootfs.squashfs.sha256  for `re6st init upgrade --sha256` (the squashfs
#                   is the upgrade image)
#   initramfs.cpio.xz  board/common/initramfs-init and bootslot.sh (A/B slot
#                   choice) with the target's busybox and the libraries it
#                   needs; empty /etc/modules (our kernel has virtio and
#                   squashfs built in)
#   cmdline         re6st_disk=DISK_DEVICE ro panic=5 console=KERNEL_CONSOLE
#   start-qemu.sh   boots the image with the board's QEMU line
#   size-report.txt sizes, and whether the root fits in 8 MiB
# Needs sfdisk (BR2_PACKAGE_HOST_UTIL_LINUX: $(HOST_DIR)/sbin), cpio (a
# Buildroot host requirement), xz (host-xz, for the squashfs) and readelf
# (the toolchain's, else the host's).
set -euo pipefail

BINARIES_DIR=${1:?usage: post-image.sh BINARIES_DIR BOARD}
BOARD=${2:?usage: post-image.sh BINARIES_DIR BOARD}
# shellcheck source=lib.sh disable=SC1091 # followed with shellcheck -x
. "$(dirname "$0")/lib.sh"
load_board "$BOARD"
: "${QEMU_SYSTEM:?board.conf}" "${QEMU_MACHINE:?board.conf}"
TARGET_DIR=${TARGET_DIR:?not run by Buildroot: TARGET_DIR is unset}
for tool in sfdisk cpio xz numfmt; do
  command -v "$tool" >/dev/null || die "no $tool in PATH (sfdisk: BR2_PACKAGE_HOST_UTIL_LINUX=y)"
done
cd "$BINARIES_DIR"

[ -f rootfs.squashfs ] || die "no $BINARIES_DIR/rootfs.squashfs (BR2_TARGET_ROOTFS_SQUASHFS)"
KERNEL=
for k in bzImage Image zImage vmlinux; do
  if [ -f "$k" ]; then KERNEL=$k; break; fi
done
[ -n "$KERNEL" ] || die "no kernel image (bzImage, Image, zImage, vmlinux) in $BINARIES_DIR"

# Pad to a multiple of 4 KiB (virtio-blk sector granularity) before the
# hash, as scripts/image.sh: rootfs.squashfs is also the upgrade image.
truncate -s %4096 rootfs.squashfs
mib() { numfmt --from=iec "$1" | awk '{ print int(($1 + 1048575) / 1048576) }'; }
SLOT_MIB=$(mib "$SLOT_SIZE")
DATA_MIB=$(mib "$DATA_SIZE")
ROOT_BYTES=$(stat -c %s rootfs.squashfs)
[ "$ROOT_BYTES" -le $((SLOT_MIB * 1048576)) ] ||
  die "rootfs.squashfs ($ROOT_BYTES bytes) is larger than a slot (SLOT_SIZE=$SLOT_SIZE)"

# --- initramfs ------------------------------------------------------------
# The repository's board/common/initramfs-init as /init and bootslot.sh as
# /lib/bootslot.sh, with the applets scripts/image.sh links. Buildroot's
# busybox is dynamically linked (glibc): it is copied from the target with
# its ELF interpreter and the NEEDED closure, at the paths the target has
# them (symlinks such as /lib64 -> lib and libfoo.so.N -> libfoo.so.N.M
# included), so the loader finds them exactly as in the root filesystem.
INITRD=${BUILD_DIR:-${BASE_DIR:?not run by Buildroot: BASE_DIR is unset}/build}/re6st-initramfs
READELF=
for r in "${HOST_DIR:-/nonexistent}"/bin/*-readelf; do
  if [ -x "$r" ]; then READELF=$r; break; fi
done
if [ -z "$READELF" ]; then
  command -v readelf >/dev/null || die "no readelf (neither the toolchain's in $HOST_DIR/bin nor the host's)"
  READELF=readelf
fi
needed() { "$READELF" -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
interp() { "$READELF" -l "$1" | sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p'; }

# copy_path PATH [DEPTH]: PATH of the target (relative or absolute within
# TARGET_DIR) into the initramfs; every symlink met on the way is copied as
# a symlink and followed. Prints the path of the regular file it ends on.
copy_path() {
  local rel=${1#/} depth=${2:-0} pre="" rest comp link next
  [ "$depth" -lt 40 ] || die "too many symlinks at /$1 in $TARGET_DIR"
  rest=$rel
  while [ -n "$rest" ]; do
    comp=${rest%%/*}
    if [ "$comp" = "$rest" ]; then rest=""; else rest=${rest#*/}; fi
    pre=${pre:+$pre/}$comp
    if [ -L "$TARGET_DIR/$pre" ]; then
      link=$(readlink "$TARGET_DIR/$pre")
      if [ ! -L "$INITRD/$pre" ]; then
        [ ! -e "$INITRD/$pre" ] || die "/$pre is a symlink in $TARGET_DIR but not in the initramfs"
        mkdir -p "$INITRD/$(dirname "$pre")"
        ln -s "$link" "$INITRD/$pre"
      fi
      case $link in
        /*) next=${link#/} ;;
        *) next=$(dirname "$pre")/$link ;;
      esac
      next=${next#./}
      copy_path "$next${rest:+/$rest}" $((depth + 1))
      return
    fi
  done
  [ -f "$TARGET_DIR/$rel" ] || die "no /$rel in $TARGET_DIR (needed by the initramfs' busybox)"
  mkdir -p "$INITRD/$(dirname "$rel")"
  [ -f "$INITRD/$rel" ] || cp -p "$TARGET_DIR/$rel" "$INITRD/$rel"
  echo "$rel"
}

# copy_elf PATH: an executable or library of the target, its interpreter
# and its NEEDED libraries (searched where glibc's loader looks by default,
# /lib and /usr/lib, as Buildroot installs them), recursively.
declare -A COPIED=()
copy_elf() {
  local f so i d found
  f=$(copy_path "$1")
  [ -z "${COPIED[$f]:-}" ] || return 0
  COPIED[$f]=1
  i=$(interp "$TARGET_DIR/$f")
  if [ -n "$i" ]; then copy_path "$i" >/dev/null; fi
  for so in $(needed "$TARGET_DIR/$f"); do
    found=
    for d in lib usr/lib lib64 usr/lib64 lib32 usr/lib32; do
      if [ -e "$TARGET_DIR/$d/$so" ]; then found=$d/$so; break; fi
    done
    [ -n "$found" ] || die "/$f needs $so, which is not in $TARGET_DIR/{lib,usr/lib}"
    copy_elf "$found"
  done
}

rm -rf "$INITRD"
mkdir -p "$INITRD"
[ -f "$TARGET_DIR/bin/busybox" ] || die "no /bin/busybox in $TARGET_DIR"
# First, so that the target's directory symlinks (/lib64 -> lib, or /bin
# -> usr/bin and /lib -> usr/lib with BR2_ROOTFS_MERGED_USR) are made as
# symlinks; what follows goes through them.
copy_elf bin/busybox
mkdir -p "$INITRD"/{bin,dev,proc,sys,tmp,newroot,etc,lib}
# The applets of scripts/image.sh's initramfs (initramfs-init and
# bootslot.sh); busybox.fragment makes sure Buildroot's busybox has them.
INITRD_APPLETS="sh mount umount insmod switch_root sleep cat echo mkdir env reboot
  dd tr sed head cut wc sha256sum sync"
for a in $INITRD_APPLETS; do
  ln -s busybox "$INITRD/bin/$a"
done
# No modules to load: virtio, virtio_blk and squashfs are built into our
# kernel (board/common/linux.fragment).
: > "$INITRD/etc/modules"
install -m 755 "$REPO_DIR/board/common/initramfs-init" "$INITRD/init"
install -m 644 "$REPO_DIR/board/common/bootslot.sh" "$INITRD/lib/bootslot.sh"
(cd "$INITRD" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --owner 0:0 --quiet) |
  xz -9 --check=crc32 > initramfs.cpio.xz

# --- firmware disk: boot environment, slot a, slot b, data ----------------
# The layout of scripts/image.sh: board/common/firmware-disk.sh.
rm -f data.img
sh "$REPO_DIR/board/common/firmware-disk.sh" firmware.img rootfs.squashfs "$SLOT_MIB" "$DATA_MIB"
sha256sum rootfs.squashfs | cut -d' ' -f1 > rootfs.squashfs.sha256

# panic=5: a slot whose init dies reboots, and the next boot falls back.
CMDLINE="re6st_disk=$DISK_DEVICE ro panic=5 console=$KERNEL_CONSOLE"
echo "$CMDLINE" > cmdline

# q VALUE: VALUE as a single-quoted shell word.
q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }

{
  echo '#!/bin/sh'
  echo "# Boots the re6st firmware for $BOARD under QEMU. Generated by"
  echo "# buildroot-external/board/common/post-image.sh from $BOARD_DIR/board.conf."
  cat <<'EOF'
#
#   start-qemu.sh [re6st.KEY=VALUE ...]
#
# Arguments are appended to the kernel command line: profile keys such as
# re6st.registry=http://198.18.0.1:9080/ re6st.fingerprint=sha256:...
# Environment:
#   QEMU_ACCEL     kvm or tcg (default: the board's; kvm falls back to tcg
#                  without a usable /dev/kvm)
#   QEMU_NET       user (default: QEMU's user-mode network, DHCP) or
#                  tap:IFNAME (an existing tap, as qemu-tests/smoke.sh uses)
#   RE6ST_PROFILE  a profile file passed as QEMU fw_cfg opt/re6st/profile
#   QEMU_EXTRA     more QEMU options (word-split)
# firmware.img is the disk, used in place: the boot environment, both
# slots and the data partition (the node's identity) persist between runs.
# The console is this terminal (Ctrl-A X quits QEMU; `re6st init poweroff`
# stops cleanly). A reboot (after `re6st init upgrade`, or panic=5 when a
# slot's init dies) ends QEMU (-no-reboot): run this script again to boot
# the slot the initramfs then chooses.
set -eu
cd "$(dirname "$0")"
EOF
  echo "QEMU_SYSTEM=$(q "$QEMU_SYSTEM")"
  echo "QEMU_MACHINE=$(q "$QEMU_MACHINE")"
  echo "BOARD_ACCEL=$(q "${QEMU_ACCEL:-tcg}")"
  echo "QEMU_MEM=$(q "${QEMU_MEM:-256}")"
  echo "NET_DEVICE=$(q "${QEMU_NET_DEVICE:-virtio-net-pci}")"
  echo "BLK_DEVICE=$(q "${QEMU_BLK_DEVICE:-virtio-blk-pci}")"
  echo "KERNEL=$(q "$KERNEL")"
  echo "CMDLINE=$(q "$CMDLINE")"
  echo "BR_HOST_BIN=$(q "${HOST_DIR:-/nonexistent}/bin")"
  cat <<'EOF'

# Buildroot's host-qemu, when it was built.
if [ -x "$BR_HOST_BIN/$QEMU_SYSTEM" ]; then PATH=$BR_HOST_BIN:$PATH; fi
accel=${QEMU_ACCEL:-$BOARD_ACCEL}
if [ "$accel" = kvm ] && ! [ -w /dev/kvm ]; then
  echo "start-qemu.sh: /dev/kvm not usable, using TCG" >&2
  accel=tcg
fi
case ${QEMU_NET:-user} in
  user) netdev=user,id=n0,net=198.18.100.0/24,ipv6-net=2001:db8:100::/64 ;;
  tap:?*) netdev=tap,id=n0,ifname=${QEMU_NET#tap:},script=no,downscript=no ;;
  *) echo "start-qemu.sh: QEMU_NET must be user or tap:IFNAME" >&2; exit 2 ;;
esac
append=$CMDLINE
if [ $# -gt 0 ]; then append="$append $*"; fi

set -- -accel "$accel" -m "$QEMU_MEM" -nographic -no-reboot \
  -kernel "$KERNEL" -initrd initramfs.cpio.xz -append "$append" \
  -drive file=firmware.img,if=none,id=disk,format=raw -device "$BLK_DEVICE,drive=disk" \
  -netdev "$netdev" -device "$NET_DEVICE,netdev=n0"
case " $QEMU_MACHINE " in
  *" -cpu "*) ;;
  *) if [ "$accel" = kvm ]; then set -- "$@" -cpu host; fi ;;
esac
if [ -n "${RE6ST_PROFILE:-}" ]; then
  set -- "$@" -fw_cfg "name=opt/re6st/profile,file=$RE6ST_PROFILE"
fi
# shellcheck disable=SC2086 # QEMU_MACHINE and QEMU_EXTRA are option lists
exec "$QEMU_SYSTEM" $QEMU_MACHINE "$@" ${QEMU_EXTRA:-}
EOF
} > start-qemu.sh
chmod 755 start-qemu.sh

sz() { stat -c %s "$1"; }
{
  echo "re6st firmware $BOARD (Buildroot): sizes in bytes"
  for f in rootfs.squashfs "$KERNEL" initramfs.cpio.xz; do
    printf '  %-20s %10d (%d KiB)\n' "$f" "$(sz "$f")" $(( ($(sz "$f") + 1023) / 1024 ))
  done
  printf '  %-20s %10d (sparse: MBR, boot environment, slot a = rootfs, slot b, data; %s per slot)\n' firmware.img "$(sz firmware.img)" "$SLOT_SIZE"
  echo "  initramfs: /init, /lib/bootslot.sh, busybox and, from the target: $(cd "$INITRD" && find . -path ./bin -prune -o -path ./init -prune -o -path ./lib/bootslot.sh -prune -o -path ./etc/modules -prune -o \( -type f -o -type l \) -printf '/%P\n' | LC_ALL=C sort | paste -sd' ')"
  limit=$((8 * 1024 * 1024))
  r=$(sz rootfs.squashfs)
  if [ "$r" -le "$limit" ]; then echo "  rootfs.squashfs <= 8 MiB: yes ($((limit - r)) bytes to spare)"
  else echo "  rootfs.squashfs <= 8 MiB: NO ($((r - limit)) bytes over)"; fi
} > size-report.txt
cat size-report.txt >&2
log "images in $BINARIES_DIR; boot with $BINARIES_DIR/start-qemu.sh"
