#!/usr/bin/env bash
# Assembles a firmware image for a board from Debian bookworm packages and
# our multi-call binary (target/cross/<CROSS_TARGET>/re6st).
#
#   scripts/image.sh BOARD          (make image BOARD=qemu-x86_64)
#
# Board: board/BOARD/board.conf (shell variables, see
# board/qemu-x86_64/board.conf) and board/BOARD/profile (-> /etc/re6st/profile,
# plus `modules = ...` in dependency order). Overlay: rootfs/.
#
# Output in target/images/BOARD/:
#   firmware.img      the whole disk (sparse, MBR): 1 boot environment,
#                     2 slot a (= rootfs.squashfs), 3 slot b (for upgrades),
#                     4 data (blank; init formats it at first boot)
#   rootfs.squashfs   read-only root filesystem, also the upgrade image
#                     (`re6st init upgrade`), with rootfs.squashfs.sha256
#                     and rootfs.squashfs.manifest (board, arch, version,
#                     length, sha256; signed by scripts/sign-image.sh with
#                     the build's key, whose public half is in the image)
#   vmlinuz           the board's router kernel (scripts/kernel.sh, when the
#                     board has a kernel.config and it is built: `make kernel
#                     BOARD=...`), else Debian's kernel (KERNEL_PKG)
#   initramfs.cpio.xz busybox and the A/B slot choice
#                     (board/common/initramfs-init), plus, with Debian's
#                     kernel, the modules needed to mount the squashfs
#                     (Debian builds virtio_blk and squashfs as modules)
#   manifest.txt      packages, versions, bytes taken from each
#   size-report.txt   sizes of the artefacts and of the largest files
#   cmdline           kernel command line for the board (without profile keys)
# Work tree: target/images/BOARD/work (root/ is the staged root filesystem).
# .debs are cached in target/debs/<ARCH>/ (apt-get download).
#
# Environment: RE6ST_BIN (binary to ship; default target/cross/<T>/re6st,
# built or brought up to date with cross/build.sh), E2FSPROGS=0 (no mke2fs/e2fsck
# from e2fsprogs: init then formats ext2 with busybox mke2fs and cannot
# check the filesystem), ROUTER_KERNEL (auto: the router kernel if built,
# else Debian's; 0: Debian's; 1: the router kernel, built if missing).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BOARD=${1:-${BOARD:-}}
[ -n "$BOARD" ] || { echo "usage: $0 BOARD (one of: $(cd "$ROOT/board" && ls -- */board.conf | cut -d/ -f1 | tr '\n' ' '))" >&2; exit 2; }
BOARD_DIR=$ROOT/board/$BOARD
[ -f "$BOARD_DIR/board.conf" ] || { echo "image.sh: no $BOARD_DIR/board.conf" >&2; exit 2; }
# shellcheck source=/dev/null
. "$BOARD_DIR/board.conf"
: "${ARCH:?}" "${CROSS_TARGET:?}" "${MULTIARCH:?}" "${KERNEL_PKG:?}" "${DISK_DEVICE:?}"
# part_of DISK N: partition N's device (vda -> vda1, mmcblk0 -> mmcblk0p1).
part_of() { case $1 in *[0-9]) echo "${1}p$2" ;; *) echo "$1$2" ;; esac; }
E2FSPROGS=${E2FSPROGS:-1}
OUT=$ROOT/target/images/$BOARD
WORK=$OUT/work
DEBS=$ROOT/target/debs/$ARCH
STAGE=$WORK/root
PKGROOT=$WORK/pkgs
log() { echo "image[$BOARD]: $*" >&2; }
die() { echo "image[$BOARD]: error: $*" >&2; exit 1; }
T0=$(date +%s)

for tool in mksquashfs dpkg-deb apt-get cpio xz readelf sfdisk; do
  command -v $tool >/dev/null || {
    [ "$tool" = mksquashfs ] && p=squashfs-tools || p=$tool
    [ "$tool" = readelf ] && p=binutils
    [ "$tool" = sfdisk ] && p=fdisk
    log "installing $p"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $p >&2
  }
done

# --- our binary ---------------------------------------------------------
# Built (or found up to date by cargo) every time unless given: an image
# must never ship a binary older than the tree.
if [ -z "${RE6ST_BIN:-}" ]; then
  RE6ST_BIN=$ROOT/target/cross/$CROSS_TARGET/re6st
  log "cross/build.sh $CROSS_TARGET"
  bash "$ROOT/cross/build.sh" "$CROSS_TARGET"
fi

# --- packages -----------------------------------------------------------
# Programs: busybox-static, openvpn, babeld (+ e2fsprogs). Libraries: the
# NEEDED closure of everything shipped is looked up in these packages; a
# missing soname stops the build (add its package here).
PROGRAM_PKGS="busybox-static openvpn babeld"
[ "$E2FSPROGS" = 1 ] && PROGRAM_PKGS+=" e2fsprogs"
LIB_PKGS="libc6 libgcc-s1 libssl3 libcap-ng0 liblz4-1 liblzo2-2 libnl-3-200
  libnl-genl-3-200 libpam0g libpkcs11-helper1 libsystemd0 libcap2 libgcrypt20
  libgpg-error0 liblzma5 libzstd1 libaudit1 libb2-1 libgomp1"
[ "$E2FSPROGS" = 1 ] && LIB_PKGS+=" libblkid1 libcom-err2 libext2fs2 libss2 libuuid1"
# Board-specific library packages (board.conf EXTRA_LIB_PKGS, e.g. mipsel's
# libatomic1, which Debian's libcrypto.so.3 needs there).
LIB_PKGS+=" ${EXTRA_LIB_PKGS:-}"
# The kernel: the board's router kernel (everything built in, no modules)
# or Debian's (linux-image-amd64 -> linux-image-6.1.0-NN-amd64, modules).
ROUTER_KERNEL=${ROUTER_KERNEL:-auto}
KDIR=
if [ -f "$BOARD_DIR/kernel.config" ] && [ "$ROUTER_KERNEL" != 0 ]; then
  KDIR=$(bash "$ROOT/scripts/kernel.sh" --dir "$BOARD")
  if [ ! -f "$KDIR/vmlinuz" ]; then
    if [ "$ROUTER_KERNEL" = 1 ]; then bash "$ROOT/scripts/kernel.sh" "$BOARD"
    else log "router kernel not built (make kernel BOARD=$BOARD): Debian's $KERNEL_PKG"; KDIR=; fi
  fi
elif [ "$ROUTER_KERNEL" = 1 ]; then
  die "ROUTER_KERNEL=1 but board $BOARD has no kernel.config"
fi
if [ -n "$KDIR" ]; then
  KPKG=
  KVER=$(cat "$KDIR/release")
  KERNEL_DESC="router kernel $KVER ($(cat "$KDIR/source"); $KDIR)"
  MODULES='' INITRAMFS_MODULES=''
else
  KPKG=$(apt-cache depends "$KERNEL_PKG:$ARCH" 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9][^:]*\).*/\1/p' | head -1)
  [ -n "$KPKG" ] || die "cannot resolve $KERNEL_PKG for $ARCH (apt-get update?)"
fi
ALL_PKGS="$KPKG $PROGRAM_PKGS $LIB_PKGS"

mkdir -p "$DEBS" "$PKGROOT" "$STAGE"
deb_of() { ls "$DEBS/$1"_*_"$ARCH".deb "$DEBS/$1"_*_all.deb 2>/dev/null | head -1 || true; }
missing=()
for p in $ALL_PKGS; do [ -n "$(deb_of "$p")" ] || missing+=("$p:$ARCH"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get download ${missing[*]}"
  (cd "$DEBS" && apt-get download -q "${missing[@]}" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2) || true
  for p in $ALL_PKGS; do [ -n "$(deb_of "$p")" ] || die "could not download $p:$ARCH"; done
fi
for p in $ALL_PKGS; do
  deb=$(deb_of "$p")
  # Unpack once per .deb version.
  if [ "$(cat "$PKGROOT/$p.deb-name" 2>/dev/null)" != "$(basename "$deb")" ]; then
    rm -rf "${PKGROOT:?}/$p"
    mkdir -p "$PKGROOT/$p"
    dpkg-deb -x "$deb" "$PKGROOT/$p"
    basename "$deb" > "$PKGROOT/$p.deb-name"
  fi
done

# --- staging ------------------------------------------------------------
rm -rf "$STAGE"
mkdir -p "$STAGE"
cd "$STAGE"
mkdir -p bin sbin usr/bin usr/sbin etc/re6st lib "lib/$MULTIARCH" proc sys dev run tmp data root var
chmod 700 root
chmod 1777 tmp
ln -s /run var/run
ln -s /tmp var/tmp
# Files copied from packages, "PKG PATH" lines (manifest).
FROM=$WORK/files-from
: > "$FROM"

# copy_from PKG PATH [DEST]: a file (or symlink, followed to its target
# inside the package) from an unpacked package into the stage.
copy_from() {
  local pkg=$1 path=$2 dest=${3:-$2} src target
  src=$PKGROOT/$pkg/$path
  [ -e "$src" ] || [ -L "$src" ] || die "$pkg has no $path"
  mkdir -p "$STAGE/$(dirname "$dest")"
  if [ -L "$src" ]; then
    target=$(readlink "$src")
    ln -sfn "$target" "$STAGE/$dest"
    case $target in
      /*) copy_from "$pkg" "${target#/}" ;;
      *) copy_from "$pkg" "$(dirname "$path")/$target" "$(dirname "$dest")/$target" ;;
    esac
  else
    cp -a "$src" "$STAGE/$dest"
    echo "$pkg $dest" >> "$FROM"
  fi
}

# busybox and the applets init, node, udhcpc's script and a console use.
copy_from busybox-static bin/busybox
APPLETS="sh ash tunctl udhcpc mke2fs kill sleep ps cat ls mount umount dmesg echo
  ln mkdir rm rmdir cp mv touch chmod chown grep sed awk cut head tail sort uniq wc
  tr tee find xargs df du free uptime date hostname uname id env printf test [
  true false ping ping6 traceroute traceroute6 nslookup wget nc netstat ifconfig route
  sysctl lsmod insmod rmmod vi less more top pidof killall sync reboot poweroff halt
  mktemp readlink dirname basename stat hexdump od md5sum sha256sum tar gzip gunzip
  zcat logger which timeout watch setsid nohup expr seq yes clear reset stty tty
  httpd"
for a in $APPLETS; do
  [ "$a" = sh ] || [ -e "bin/$a" ] || ln -s busybox "bin/$a"
done
ln -sfn busybox bin/sh
# `re6st init poweroff` is the proper way; busybox's reboot/poweroff/halt send
# SIGTERM/SIGUSR2/SIGUSR1 to PID 1, which our init handles like busybox init.
# The status page (rootfs/www, served by httpd): /metrics is a directory
# without an index, which httpd hands to /cgi-bin/index.cgi.
mkdir -p www/metrics

copy_from openvpn usr/sbin/openvpn
copy_from babeld usr/sbin/babeld
if [ "$E2FSPROGS" = 1 ]; then
  copy_from e2fsprogs sbin/mke2fs
  ln -sfn mke2fs sbin/mkfs.ext4
  copy_from e2fsprogs sbin/e2fsck
  copy_from e2fsprogs etc/mke2fs.conf
  rm -f bin/mke2fs   # the real one (ext4) wins
fi

install -m 755 "$RE6ST_BIN" usr/bin/re6st
echo "re6st-binary usr/bin/re6st" >> "$FROM"
ln -s ../usr/bin/re6st sbin/init

# Shared libraries: NEEDED closure, looked up in the library packages (as
# the target's ld.so would: /lib/MULTIARCH, /usr/lib/MULTIARCH).
LIBINDEX=$WORK/lib-index
: > "$LIBINDEX"
for p in $LIB_PKGS; do
  for d in "lib/$MULTIARCH" "usr/lib/$MULTIARCH" lib lib64; do
    [ -d "$PKGROOT/$p/$d" ] || continue
    find "$PKGROOT/$p/$d" -maxdepth 1 \( -type f -o -type l \) -name '*.so*' -printf "%f $p $d/%f\n" >> "$LIBINDEX"
  done
done
# readelf (unlike objdump) reads every architecture's ELF.
needed() { readelf -d "$1" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
interp() { readelf -l "$1" 2>/dev/null | sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p'; }
declare -A HAVE=()
queue=()
for f in usr/bin/re6st usr/sbin/openvpn usr/sbin/babeld $( [ "$E2FSPROGS" = 1 ] && echo sbin/mke2fs sbin/e2fsck); do
  queue+=("$f")
  i=$(interp "$f")
  if [ -n "$i" ] && [ ! -e "$STAGE$i" ]; then
    # e.g. /lib64/ld-linux-x86-64.so.2 (symlink in libc6) or /lib/ld-linux-aarch64.so.1
    copy_from libc6 "${i#/}"
  fi
done
while [ ${#queue[@]} -gt 0 ]; do
  f=${queue[0]}
  queue=("${queue[@]:1}")
  for so in $(needed "$f"); do
    [ -z "${HAVE[$so]:-}" ] || continue
    HAVE[$so]=1
    line=$(awk -v so="$so" '$1 == so { print; exit }' "$LIBINDEX")
    [ -n "$line" ] || die "no package in LIB_PKGS provides $so (needed by $f)"
    set -- $line
    copy_from "$2" "$3"
    real=$(readlink -f "$STAGE/$3")
    queue+=("${real#"$STAGE"/}")
  done
done

# Kernel and modules (Debian's kernel only: the router kernel has none).
if [ -n "$KPKG" ]; then
KVER=$(ls "$PKGROOT/$KPKG/lib/modules" | head -1)
KERNEL_DESC="Debian's kernel $KVER ($KPKG)"
KMOD=$PKGROOT/$KPKG/lib/modules/$KVER
BUSYBOX_HOST=$PKGROOT/busybox-static/bin/busybox
run_busybox() {
  # depmod on the build host: the board's busybox when it runs here,
  # else the host's (busybox-static is all we need).
  if "$BUSYBOX_HOST" true 2>/dev/null; then "$BUSYBOX_HOST" "$@"
  elif [ -n "${QEMU_USER:-}" ] && command -v "$QEMU_USER" >/dev/null; then "$QEMU_USER" "$BUSYBOX_HOST" "$@"
  elif command -v busybox >/dev/null; then busybox "$@"
  else die "need a busybox runnable on the build host (apt-get install busybox-static, or qemu-user)"; fi
}
[ -f "$KMOD/modules.dep" ] || run_busybox depmod -b "$PKGROOT/$KPKG" "$KVER"
# dep_closure MODULE...: module paths (relative to KMOD), dependencies first.
dep_closure() {
  local seen="" out=()
  visit() {
    local m=${1//-/_} line path deps d
    case " $seen " in *" $m "*) return ;; esac
    seen+=" $m"
    line=$(awk -v m="$m" -F: '{ n = $1; sub(/.*\//, "", n); sub(/\.ko.*/, "", n); gsub(/-/, "_", n); if (n == m) { print; exit } }' "$KMOD/modules.dep")
    if [ -z "$line" ]; then
      grep -q "/${m}.ko" "$KMOD/modules.builtin" 2>/dev/null || grep -q "/${1}.ko" "$KMOD/modules.builtin" 2>/dev/null ||
        die "kernel $KVER has no module $m (neither module nor built in)"
      return
    fi
    path=${line%%:*}
    deps=${line#*:}
    for d in $deps; do d=${d##*/}; visit "${d%%.ko*}"; done
    out+=("$path")
  }
  for m in "$@"; do visit "$m"; done
  printf '%s\n' "${out[@]}"
}
copy_module() { # PATH-relative-to-KMOD ROOTDIR
  mkdir -p "$2/lib/modules/$KVER/$(dirname "$1")"
  cp -a "$KMOD/$1" "$2/lib/modules/$KVER/$1"
}
mapfile -t ROOT_MODS < <(dep_closure $MODULES)
for m in "${ROOT_MODS[@]}"; do copy_module "$m" "$STAGE"; echo "$KPKG lib/modules/$KVER/$m" >> "$FROM"; done
cp -a "$KMOD/modules.builtin" "$STAGE/lib/modules/$KVER/" 2>/dev/null || true
run_busybox depmod -b "$STAGE" "$KVER"
# init needs modules.dep only (finit_module; no modprobe in the image).
rm -f "$STAGE/lib/modules/$KVER/"{modules.order,modules.alias,modules.symbols}
MODLIST=$(for m in "${ROOT_MODS[@]}"; do n=${m##*/}; echo "${n%%.ko*}"; done | paste -sd, -)
else
  ROOT_MODS=() MODLIST=
  # No modules, but the directory names the kernel the image was built for:
  # `re6st init upgrade` refuses an image without one for the running kernel.
  mkdir -p "$STAGE/lib/modules/$KVER"
  : > "$STAGE/lib/modules/$KVER/modules.dep"
fi

# Overlay and board profile.
cp -a "$ROOT/rootfs/." "$STAGE/"
rm -f "$STAGE/README.md"
chmod 640 "$STAGE/etc/shadow"   # git keeps only 644/755
{
  cat "$BOARD_DIR/profile"
  if ! grep -q '^[[:space:]]*data[[:space:]]*=' "$BOARD_DIR/profile"; then
    echo "# added by scripts/image.sh: partition 4 of the firmware disk"
    echo "data = $(part_of "$DISK_DEVICE" 4)"
  fi
  if [ -n "$MODLIST" ] && ! grep -q '^[[:space:]]*modules[[:space:]]*=' "$BOARD_DIR/profile"; then
    echo "# added by scripts/image.sh: board MODULES and their dependencies, in load order"
    echo "modules = $MODLIST"
  fi
} > "$STAGE/etc/re6st/profile"
# Its mtime is the image's build time (init's clock never goes below it).
touch "$STAGE/etc/re6st/profile"
GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
cat > "$STAGE/etc/re6st-release" <<EOF
BOARD=$BOARD
ARCH=$ARCH
KERNEL=$KVER
GIT=$GIT_REV
BUILD_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
EOF
echo "$BOARD" > "$STAGE/etc/hostname"
# The key `re6st init upgrade` checks images' manifests with (made at the
# first build: scripts/sign-image.sh).
install -m 644 "$(bash "$ROOT/scripts/sign-image.sh" --public-key)" "$STAGE/etc/re6st/upgrade-key.pem"

# --- squashfs -----------------------------------------------------------
mkdir -p "$OUT"
rm -f "$OUT/rootfs.squashfs"
# shellcheck disable=SC2086
mksquashfs "$STAGE" "$OUT/rootfs.squashfs" -all-root -noappend -quiet -no-progress ${SQUASHFS_COMP:-} >/dev/null
# Pad to a multiple of 4 KiB, or the kernel may log "attempt to access
# beyond end of device" (virtio-blk sector granularity).
truncate -s %4096 "$OUT/rootfs.squashfs"

# --- kernel and initramfs -----------------------------------------------
if [ -n "$KDIR" ]; then
  cp "$KDIR/vmlinuz" "$OUT/vmlinuz"
else
KIMG=$(ls "$PKGROOT/$KPKG/boot/" | grep -E '^(vmlinuz|vmlinux|Image)' | head -1)
case ${KERNEL_COMPRESS:-none} in
  # arm64: Debian ships an uncompressed Image (~32 MiB); QEMU's -kernel
  # and U-Boot's booti take it gzip'd.
  gzip) gzip -9 -n -c "$PKGROOT/$KPKG/boot/$KIMG" > "$OUT/vmlinuz" ;;
  *) cp "$PKGROOT/$KPKG/boot/$KIMG" "$OUT/vmlinuz" ;;
esac
fi
INITRD=$WORK/initramfs
rm -rf "$INITRD"
mkdir -p "$INITRD"/{bin,dev,proc,sys,tmp,newroot,etc,lib}
cp "$PKGROOT/busybox-static/bin/busybox" "$INITRD/bin/busybox"
for a in sh mount umount insmod switch_root sleep cat echo mkdir env reboot \
  dd tr sed head cut wc sha256sum sync; do
  ln -s busybox "$INITRD/bin/$a"
done
INITRD_MODS=()
[ -z "${INITRAMFS_MODULES:-}" ] || mapfile -t INITRD_MODS < <(dep_closure $INITRAMFS_MODULES)
for m in "${INITRD_MODS[@]}"; do copy_module "$m" "$INITRD"; done
for m in "${INITRD_MODS[@]}"; do echo "$KVER/$m"; done > "$INITRD/etc/modules"
install -m 755 "$ROOT/board/common/initramfs-init" "$INITRD/init"
install -m 644 "$ROOT/board/common/bootslot.sh" "$INITRD/lib/bootslot.sh"
# The kernel allocates the whole LZMA2 dictionary to unpack the initramfs:
# `xz -9`'s 64 MiB left a 128 MiB router out of memory before init; the
# cpio is a few MB, so a 4 MiB dictionary compresses it as well.
(cd "$INITRD" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --owner 0:0 --quiet) |
  xz --check=crc32 --lzma2=preset=9,dict=4MiB > "$OUT/initramfs.cpio.xz"

# --- firmware disk: boot environment, slot a, slot b, data --------------
# Layout: board/common/firmware-disk.sh.
mib() { numfmt --from=iec "$1" | awk '{ print int(($1 + 1048575) / 1048576) }'; }
SLOT_MIB=$(mib "${SLOT_SIZE:-16M}")
DATA_MIB=$(mib "${DATA_SIZE:-64M}")
ROOT_BYTES=$(stat -c %s "$OUT/rootfs.squashfs")
[ "$ROOT_BYTES" -le $((SLOT_MIB * 1048576)) ] ||
  die "rootfs.squashfs ($ROOT_BYTES bytes) is larger than a slot (SLOT_SIZE=${SLOT_SIZE:-16M})"
rm -f "$OUT/data.img"
sh "$ROOT/board/common/firmware-disk.sh" "$OUT/firmware.img" "$OUT/rootfs.squashfs" "$SLOT_MIB" "$DATA_MIB"
sha256sum "$OUT/rootfs.squashfs" | cut -d' ' -f1 > "$OUT/rootfs.squashfs.sha256"
bash "$ROOT/scripts/sign-image.sh" "$OUT/rootfs.squashfs" "$BOARD" "$ARCH" \
  "$GIT_REV $(sed -n 's/^BUILD_DATE=//p' "$STAGE/etc/re6st-release")"

# panic=5: a slot whose init dies reboots, and the next boot falls back.
echo "re6st_disk=$DISK_DEVICE ro panic=5 console=${KERNEL_CONSOLE:-ttyS0}" > "$OUT/cmdline"

# Board hook (e.g. board/rpi4: boot partition files), with this script's
# variables (OUT, STAGE, PKGROOT, KPKG, KDIR, KVER, log, die).
# shellcheck source=/dev/null
[ ! -f "$BOARD_DIR/post-image.sh" ] || . "$BOARD_DIR/post-image.sh"

# --- manifest and size report -------------------------------------------
sz() { stat -c %s "$1"; }
{
  echo "# re6st firmware image $BOARD ($ARCH), $(date -u +%Y-%m-%dT%H:%M:%SZ), git $GIT_REV"
  echo "# kernel: $KERNEL_DESC"
  echo "# binary $RE6ST_BIN ($(sz "$RE6ST_BIN") bytes, sha256 $(sha256sum "$RE6ST_BIN" | cut -c1-16)...)"
  echo "# package version deb-bytes bytes-in-rootfs files-in-rootfs"
  for p in $ALL_PKGS; do
    deb=$(deb_of "$p")
    ver=$(dpkg-deb -f "$deb" Version)
    bytes=0 files=0
    while read -r _ f; do
      bytes=$((bytes + $(sz "$STAGE/$f"))); files=$((files + 1))
    done < <(awk -v p="$p" '$1 == p' "$FROM")
    printf '%-28s %-28s %9d %9d %4d\n' "$p" "$ver" "$(sz "$deb")" "$bytes" "$files"
  done
  printf '%-28s %-28s %9s %9d %4d\n' re6st "$GIT_REV" - "$(sz "$STAGE/usr/bin/re6st")" 1
  echo
  echo "# files from packages"
  sort "$FROM" | sed 's/^/  /'
} > "$OUT/manifest.txt"
{
  echo "re6st firmware $BOARD: sizes in bytes (KiB)"
  echo "  kernel: $KERNEL_DESC"
  for f in rootfs.squashfs vmlinuz initramfs.cpio.xz; do
    printf '  %-20s %10d (%d KiB)\n' "$f" "$(sz "$OUT/$f")" $(( ($(sz "$OUT/$f") + 1023) / 1024 ))
  done
  printf '  %-20s %10d (sparse: MBR, boot environment, slot a = rootfs, slot b, data; %s per slot)\n' firmware.img "$(sz "$OUT/firmware.img")" "${SLOT_SIZE:-16M}"
  printf '  %-20s %10d (uncompressed staged root)\n' "root tree" "$(du -sb "$STAGE" | cut -f1)"
  limit=$((8 * 1024 * 1024))
  r=$(sz "$OUT/rootfs.squashfs")
  if [ "$r" -le $limit ]; then echo "  rootfs.squashfs <= 8 MiB: yes ($((limit - r)) bytes to spare)"
  else echo "  rootfs.squashfs <= 8 MiB: NO ($((r - limit)) bytes over)"; fi
  echo
  echo "largest files in the root filesystem (uncompressed):"
  (cd "$STAGE" && find . -type f -printf '%s %P\n' | sort -rn | head -20 | awk '{ printf "  %9d %s\n", $1, $2 }')
  echo
  echo "modules in the root filesystem ($MODULES + dependencies): $MODLIST"
  echo "modules in the initramfs: $(for m in "${INITRD_MODS[@]}"; do n=${m##*/}; printf '%s ' "${n%%.ko*}"; done)"
  echo "build time: $(( $(date +%s) - T0 )) s"
} > "$OUT/size-report.txt"
cat "$OUT/size-report.txt" | head -8 >&2
log "done: $OUT"
