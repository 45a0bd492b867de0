#!/usr/bin/env bash
# Offline checks of the br2-external tree: nothing is built or downloaded,
# it takes a few seconds, and it exits non-zero on any problem, a missing
# tool included.
#
#   bash buildroot-external/check.sh
#   BUILDROOT_DIR=/path/to/buildroot bash buildroot-external/check.sh
#
# Without BUILDROOT_DIR (as in `make test`: no package registry we can use
# carries Buildroot's source), the Kconfig is checked against a hand-written
# model of the Buildroot symbols it uses (STUB in tools/check.py), not
# against Buildroot, and Buildroot's check-package is not run.
#
# 1. external.desc, Config.in, external.mk as Buildroot expects them.
# 2. tools/check.py: our Kconfig under that model and each defconfig's
#    values for our symbols; re6st.mk evaluated by make with Buildroot's
#    macros stubbed; every path the tree names exists. With BUILDROOT_DIR,
#    also each defconfig against that Buildroot's real Kconfig (every line
#    must hold) and its br2-external script, and Buildroot's
#    utils/check-package on the tree (its Python modules, python-magic and
#    flake8, are installed into the venv below when missing).
# 3. bash -n and shellcheck on every script.
# 4. post-build.sh and post-image.sh run for each board on a synthetic
#    Buildroot output (stand-in binaries and configurations; a host program
#    with its libraries as a dynamically linked busybox): what they write
#    (profile with data = partition 4; firmware.img's MBR read back with
#    sfdisk -d, slot a = rootfs.squashfs; the initramfs listed with cpio -t
#    and unpacked; cmdline), that their checks catch a missing kernel
#    option, a busybox without dd conv=, a wrong /sbin/init and a root
#    larger than a slot, and the generated start-qemu.sh run against a fake
#    QEMU.
#
# CHECK_KEEP=1 keeps the work directory. kconfiglib comes from a venv in .venv-kconfig/ at the repository root,
# created (pip install kconfiglib) when missing.
set -eu

EXT=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$EXT/.." && pwd)
VENV=$REPO/.venv-kconfig
PY=$VENV/bin/python
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
step() { echo "== $*"; }
TMP=$(mktemp -d /tmp/re6st-br-check.XXXXXX)
# CHECK_KEEP=1 keeps the synthetic outputs for a look.
if [ "${CHECK_KEEP:-0}" = 1 ]; then echo "work directory: $TMP"; else trap 'rm -rf "$TMP"' EXIT; fi

# --- 1. the tree's description ------------------------------------------
step "external.desc, Config.in, external.mk"
desc=$EXT/external.desc
if ! grep -qx 'name: RE6ST' "$desc"; then fail "external.desc: no line 'name: RE6ST'"; fi
if [ "$(grep -c '^name:' "$desc")" != 1 ]; then fail "external.desc: more than one name"; fi
if ! grep -q '^desc: .' "$desc"; then fail "external.desc: no desc"; fi
for f in Config.in external.mk; do
  [ -f "$EXT/$f" ] || fail "no $f"
done
if ! grep -q 'package/\*/\*\.mk' "$EXT/external.mk"; then fail "external.mk does not include package/*/*.mk"; fi
echo "  name RE6ST; $(sed -n 's/^desc: //p' "$desc")"

# --- 2. Kconfig, re6st.mk, paths ------------------------------------------
step "kconfig, re6st.mk, paths (tools/check.py)"
if ! "$PY" -c 'import kconfiglib' 2>/dev/null; then
  echo "  installing kconfiglib into $VENV"
  { python3 -m venv "$VENV" && timeout 25 "$VENV/bin/pip" install -q kconfiglib; } ||
    fail "cannot install kconfiglib into $VENV (pip install kconfiglib)"
fi
args=()
if [ -n "${BUILDROOT_DIR:-}" ]; then args=(--buildroot "$BUILDROOT_DIR"); fi
if ! timeout 25 "$PY" "$EXT/tools/check.py" ${args[@]+"${args[@]}"}; then
  fail "tools/check.py (above)"
fi

# Buildroot's own style checker, with the Python modules it imports.
if [ -n "${BUILDROOT_DIR:-}" ]; then
  if ! "$PY" -c 'import magic, flake8' 2>/dev/null; then
    echo "  installing python-magic and flake8 (for utils/check-package) into $VENV"
    timeout 60 "$VENV/bin/pip" install -q python-magic flake8 ||
      fail "cannot install python-magic and flake8 into $VENV for Buildroot's utils/check-package"
  fi
  if "$PY" -c 'import magic, flake8' 2>/dev/null; then
    (cd "$EXT" && timeout 25 "$PY" "$BUILDROOT_DIR/utils/check-package" -b \
      package/*/* configs/* board/common/*.sh board/common/*.fragment board/common/patches/*/* \
      board/*/* Config.in external.mk external.desc) || fail "Buildroot's utils/check-package (above)"
  fi
fi

# --- 3. shell syntax, shellcheck --------------------------------------------
step "scripts: bash -n, shellcheck"
mapfile -t scripts < <(find "$EXT" -name '*.sh' -type f | sort)
for s in "${scripts[@]}"; do
  bash -n "$s" || fail "bash -n ${s#"$REPO"/}"
  head -n1 "$s" | grep -q '^#!' || [ "${s##*/}" = lib.sh ] || fail "${s#"$REPO"/}: no #! line"
done
if command -v shellcheck >/dev/null; then
  (cd "$EXT/board/common" && shellcheck -x post-build.sh post-image.sh lib.sh) || fail "shellcheck board/common"
  shellcheck "$EXT/check.sh" || fail "shellcheck check.sh"
  echo "  shellcheck: ${#scripts[@]} scripts"
else
  fail "shellcheck not installed (make deps, or apt-get install shellcheck)"
fi

# --- 4. post-build.sh and post-image.sh on a synthetic output ------------
step "post-build.sh, post-image.sh dry runs"
for tool in sfdisk cpio xz readelf numfmt cmp; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || [ -x "/sbin/$tool" ] ||
    fail "no $tool for the post-image dry runs (make deps: fdisk cpio xz-utils binutils)"
done
# defconfig_value FILE NAME
defconfig_value() { sed -n "s/^$2=\"\{0,1\}\([^\"]*\)\"\{0,1\}\$/\1/p" "$1"; }
# fragment_lines FILE...: the option lines of kconfig fragments.
fragment_lines() { cat "$@" | grep -E '^(CONFIG_|# CONFIG_.* is not set$)' || true; }
elf_needed() { readelf -d "$1" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
elf_interp() { readelf -l "$1" 2>/dev/null | sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p'; }

# Stand-in tools for the post scripts, first in their PATH as Buildroot's
# $(HOST_DIR)/bin and sbin are: sfdisk when it is only in an sbin directory
# the PATH lacks; xz at preset 0 (the initramfs holds a real libc: -9 takes
# seconds), logging the options post-image.sh gives it.
FAKEBIN=$TMP/fakebin
mkdir -p "$FAKEBIN" "$TMP/bin"
if ! command -v sfdisk >/dev/null; then
  for d in /usr/sbin /sbin; do
    if [ -x "$d/sfdisk" ]; then ln -s "$d/sfdisk" "$FAKEBIN/sfdisk"; break; fi
  done
fi
printf '#!/bin/sh\necho "$*" >> %s/xz.args\nexec %s "$@" -0\n' "$TMP" "$(command -v xz || echo xz)" > "$FAKEBIN/xz"
chmod 755 "$FAKEBIN/xz"

# A dynamically linked busybox stand-in laid out as Buildroot's glibc
# targets are: a host program (xz) as /bin/busybox, the ELF interpreter
# and libc in /lib (plus /lib64 -> lib when the interpreter is in
# /lib64), other libraries in /usr/lib behind their soname symlinks. Only
# readelf reads it; post-image.sh must copy exactly this closure.
ELF=$TMP/elf-target
mkdir -p "$ELF/bin" "$ELF/lib" "$ELF/usr/lib"
host_elf=$(command -v xz || true)
host_interp=
if [ -n "$host_elf" ]; then host_interp=$(elf_interp "$host_elf"); fi
if [ -z "$host_interp" ]; then
  fail "no dynamically linked host xz to stand in for busybox"
else
  cp "$host_elf" "$ELF/bin/busybox"
  cp -L "$host_interp" "$ELF/lib/${host_interp##*/}"
  idir=${host_interp%/*}
  idir=${idir#/}
  if [ "$idir" != lib ]; then mkdir -p "$ELF/$(dirname "$idir")"; ln -s lib "$ELF/$idir"; fi
  queue=("$host_elf")
  declare -A placed=(["${host_interp##*/}"]=1)
  while [ ${#queue[@]} -gt 0 ]; do
    f=${queue[0]}
    queue=("${queue[@]:1}")
    for so in $(elf_needed "$f"); do
      [ -z "${placed[$so]:-}" ] || continue
      placed[$so]=1
      src=
      for d in /lib/*-linux-gnu* /usr/lib/*-linux-gnu* /lib64 /usr/lib64 /lib /usr/lib; do
        if [ -e "$d/$so" ]; then src=$d/$so; break; fi
      done
      [ -n "$src" ] || { fail "stand-in busybox: cannot find the host's $so"; continue; }
      real=$(readlink -f "$src")
      case $so in
        libc.so.*) cp "$real" "$ELF/lib/$so" ;;
        *) cp "$real" "$ELF/usr/lib/${real##*/}"
           [ "${real##*/}" = "$so" ] || ln -s "${real##*/}" "$ELF/usr/lib/$so" ;;
      esac
      queue+=("$real")
    done
  done
fi
# The files post-image.sh should put in the initramfs from the target.
(cd "$ELF" && find . \( -type f -o -type l \) -printf '%P\n' | LC_ALL=C sort) > "$TMP/elf-files"

# fake_output DEFCONFIG DIR: a Buildroot output as post-build.sh sees it,
# after the packages and the overlay, with configurations that satisfy the
# defconfig's fragments.
fake_output() {
  local def=$1 out=$2 kver frags f
  mkdir -p "$out/target" "$out/build" "$out/images" "$out/host"
  kver=$(defconfig_value "$def" BR2_LINUX_KERNEL_CUSTOM_VERSION_VALUE)
  { echo "# Buildroot check.sh Configuration"; cat "$def"; echo "BR2_LINUX_KERNEL_VERSION=\"$kver\""; } > "$out/.config"
  frags=$(defconfig_value "$def" BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES)
  mkdir -p "$out/build/linux-$kver/include/config"
  echo "$kver" > "$out/build/linux-$kver/include/config/kernel.release"
  # shellcheck disable=SC2086,SC2016 # paths without spaces; a literal $(...)
  fragment_lines ${frags//'$(BR2_EXTERNAL_RE6ST_PATH)'/$EXT} > "$out/build/linux-$kver/.config"
  frags=$(defconfig_value "$def" BR2_PACKAGE_BUSYBOX_CONFIG_FRAGMENT_FILES)
  mkdir -p "$out/build/busybox-1.37.0"
  # shellcheck disable=SC2086,SC2016
  fragment_lines ${frags//'$(BR2_EXTERNAL_RE6ST_PATH)'/$EXT} > "$out/build/busybox-1.37.0/.config"
  cd "$out/target"
  cp -a "$ELF/." .
  mkdir -p bin sbin usr/bin usr/sbin usr/share/udhcpc etc
  for f in usr/bin/re6st usr/sbin/openvpn usr/sbin/babeld sbin/mke2fs; do
    printf '#!/bin/sh\n' > "$f"
    chmod 755 "$f"
  done
  ln -s mke2fs sbin/mkfs.ext4
  ln -s ../usr/bin/re6st sbin/init
  touch usr/share/udhcpc/default.script
  # The overlay, as Buildroot copies it (after the packages).
  cp -a "$REPO/rootfs/." .
  cd - >/dev/null
}

# run_post SCRIPT DIR OUT BOARD: runs a post script as Buildroot does.
run_post() {
  env PATH="$FAKEBIN:$PATH" BR2_CONFIG="$3/.config" BASE_DIR="$3" HOST_DIR="$3/host" \
    BUILD_DIR="$3/build" BINARIES_DIR="$3/images" TARGET_DIR="$3/target" BR2_EXTERNAL_RE6ST_PATH="$EXT" \
    bash "$EXT/board/common/$1" "$2" "$4"
}

for def in "$EXT"/configs/*_defconfig; do
  name=${def##*/}
  board=$(defconfig_value "$def" BR2_ROOTFS_POST_SCRIPT_ARGS)
  out=$TMP/$name
  fake_output "$def" "$out"
  if ! run_post post-build.sh "$out/target" "$out" "$board" > "$out/post-build.log" 2>&1; then
    fail "$name: post-build.sh failed on a complete output:"; sed 's/^/    /' "$out/post-build.log"
    continue
  fi
  t=$out/target
  bdir=$REPO/board/$board
  [ -f "$bdir/profile" ] || bdir=$EXT/board/$board
  (
    # shellcheck source=/dev/null
    . "$bdir/board.conf"
    # The board's profile, plus data = partition 4 of the firmware disk
    # unless it sets data.
    case $DISK_DEVICE in *[0-9]) p4=${DISK_DEVICE}p4 ;; *) p4=${DISK_DEVICE}4 ;; esac
    if grep -q '^[[:space:]]*data[[:space:]]*=' "$bdir/profile"; then
      cmp -s "$t/etc/re6st/profile" "$bdir/profile" || echo "FAIL: $name: /etc/re6st/profile is not ${bdir#"$REPO"/}/profile"
    else
      head -n "$(wc -l < "$bdir/profile")" "$t/etc/re6st/profile" | cmp -s - "$bdir/profile" ||
        echo "FAIL: $name: /etc/re6st/profile does not start with ${bdir#"$REPO"/}/profile"
      [ "$(grep -c '^[[:space:]]*data[[:space:]]*=' "$t/etc/re6st/profile")" = 1 ] &&
        [ "$(tail -n 1 "$t/etc/re6st/profile")" = "data = $p4" ] ||
        echo "FAIL: $name: /etc/re6st/profile does not end with 'data = $p4'"
    fi
    grep -q '^[[:space:]]*modules[[:space:]]*=' "$t/etc/re6st/profile" && echo "FAIL: $name: a modules line in the profile"
    kver=$(cat "$out"/build/linux-*/include/config/kernel.release)
    [ -d "$t/lib/modules/$kver" ] || echo "FAIL: $name: no /lib/modules/$kver (re6st init upgrade needs it)"
  ) > "$out/build-checks.log"
  if grep -q '^FAIL' "$out/build-checks.log"; then
    failures=$((failures + $(grep -c '^FAIL' "$out/build-checks.log")))
    cat "$out/build-checks.log"
  fi
  [ ! -e "$t/README.md" ] || fail "$name: rootfs/README.md left in the image"
  [ "$(cat "$t/etc/hostname")" = "$board" ] || fail "$name: /etc/hostname"
  grep -qx "BOARD=$board" "$t/etc/re6st-release" || fail "$name: /etc/re6st-release"
  [ "$(stat -c %a "$t/etc/shadow")" = 640 ] || fail "$name: /etc/shadow mode"
  [ -d "$t/data" ] || fail "$name: no /data mount point"
  [ ! -e "$t/usr/share/udhcpc" ] || fail "$name: Buildroot's udhcpc script left"

  # The checks must catch a missing kernel option, a busybox without what
  # the initramfs needs, and a foreign /sbin/init.
  kconf=$(find "$out/build" -path '*/linux-*/.config')
  cp "$kconf" "$kconf.ok"
  grep -v '^CONFIG_TUN=y$' "$kconf.ok" > "$kconf"
  if run_post post-build.sh "$t" "$out" "$board" > "$out/neg.log" 2>&1; then
    fail "$name: post-build.sh accepted a kernel without CONFIG_TUN"
  elif ! grep -q 'wanted CONFIG_TUN=y' "$out/neg.log"; then
    fail "$name: post-build.sh failed without naming CONFIG_TUN:"; sed 's/^/    /' "$out/neg.log"
  fi
  cp "$kconf.ok" "$kconf"
  bconf=$out/build/busybox-1.37.0/.config
  cp "$bconf" "$bconf.ok"
  sed 's/^CONFIG_FEATURE_DD_IBS_OBS=y$/# CONFIG_FEATURE_DD_IBS_OBS is not set/' "$bconf.ok" > "$bconf"
  if run_post post-build.sh "$t" "$out" "$board" > "$out/neg.log" 2>&1; then
    fail "$name: post-build.sh accepted a busybox without dd conv= (FEATURE_DD_IBS_OBS)"
  fi
  cp "$bconf.ok" "$bconf"
  ln -sfn ../bin/busybox "$t/sbin/init"
  if run_post post-build.sh "$t" "$out" "$board" > "$out/neg.log" 2>&1; then
    fail "$name: post-build.sh accepted /sbin/init -> busybox"
  fi
  ln -sfn ../usr/bin/re6st "$t/sbin/init"

  # post-image: the kernel file Buildroot writes for the architecture.
  case $(grep -E '^BR2_(x86_64|aarch64|arm|mipsel)=y' "$def") in
    BR2_x86_64=y) kimg=bzImage ;;
    BR2_aarch64=y) kimg=Image ;;
    BR2_arm=y) kimg=zImage ;;
    *) kimg=vmlinux ;;
  esac
  img=$out/images
  : > "$img/$kimg"
  # Not a multiple of 4 KiB: post-image.sh pads it, as scripts/image.sh.
  head -c 10000 /dev/urandom > "$img/rootfs.squashfs"
  : > "$TMP/xz.args"
  if ! run_post post-image.sh "$img" "$out" "$board" > "$out/post-image.log" 2>&1; then
    fail "$name: post-image.sh failed:"; sed 's/^/    /' "$out/post-image.log"
    continue
  fi
  (
    # shellcheck source=/dev/null
    . "$bdir/board.conf"
    slot_mib=$(( $(numfmt --from=iec "${SLOT_SIZE:-16M}") / 1048576 ))
    data_mib=$(( $(numfmt --from=iec "${DATA_SIZE:-64M}") / 1048576 ))
    fw=$img/firmware.img
    [ ! -e "$img/data.img" ] || echo "FAIL: $name: a data.img (the data partition is in firmware.img)"
    # rootfs.squashfs: padded to 4 KiB; its sha256.
    [ "$(stat -c %s "$img/rootfs.squashfs")" = 12288 ] || echo "FAIL: $name: rootfs.squashfs not padded to 4 KiB"
    [ "$(cat "$img/rootfs.squashfs.sha256")" = "$(sha256sum "$img/rootfs.squashfs" | cut -d' ' -f1)" ] ||
      echo "FAIL: $name: rootfs.squashfs.sha256"
    # firmware.img: size, MBR partitions (start size type, in sectors) as
    # scripts/image.sh, slot a = rootfs.squashfs, the rest blank.
    [ "$(stat -c %s "$fw")" = $(( (2 + 2 * slot_mib + data_mib) * 1048576 )) ] ||
      echo "FAIL: $name: firmware.img is $(stat -c %s "$fw") bytes, not $((2 + 2 * slot_mib + data_mib)) MiB"
    s=$((slot_mib * 2048))
    printf '%s\n' "2048 2048 da" "4096 $s 83" "$((4096 + s)) $s 83" "$((4096 + 2 * s)) $((data_mib * 2048)) 83" > "$out/parts.want"
    sfdisk_cmd=sfdisk
    command -v sfdisk >/dev/null || sfdisk_cmd=$FAKEBIN/sfdisk
    "$sfdisk_cmd" -d "$fw" > "$out/sfdisk.txt" 2>&1 || echo "FAIL: $name: sfdisk -d firmware.img: $(cat "$out/sfdisk.txt")"
    grep -qx 'label: dos' "$out/sfdisk.txt" || echo "FAIL: $name: firmware.img has no MBR (dos) label"
    sed -n 's/.*: start= *\([0-9]*\), size= *\([0-9]*\), type=\([0-9a-f]*\).*/\1 \2 \3/p' "$out/sfdisk.txt" > "$out/parts.got"
    cmp -s "$out/parts.want" "$out/parts.got" ||
      echo "FAIL: $name: firmware.img partitions (start size type) $(paste -sd, "$out/parts.got"), want $(paste -sd, "$out/parts.want")"
    cmp -s -n 12288 "$img/rootfs.squashfs" "$fw" 0 $((2 * 1048576)) || echo "FAIL: $name: slot a is not rootfs.squashfs"
    cmp -s -n 1048576 /dev/zero "$fw" 0 1048576 || echo "FAIL: $name: the boot environment is not blank"
    cmp -s -n $((s * 512 - 12288)) /dev/zero "$fw" 0 $((2 * 1048576 + 12288)) || echo "FAIL: $name: slot a not blank after rootfs"
    cmp -s -n $((s * 512)) /dev/zero "$fw" 0 $(( (2 + slot_mib) * 1048576 )) || echo "FAIL: $name: slot b is not blank"
    # cmdline, as scripts/image.sh.
    [ "$(cat "$img/cmdline")" = "re6st_disk=$DISK_DEVICE ro panic=5 console=$KERNEL_CONSOLE" ] ||
      echo "FAIL: $name: cmdline $(cat "$img/cmdline")"
    # initramfs: xz with CRC32 (the kernel's decoder), newc cpio, /init and
    # /lib/bootslot.sh from board/common, the applets, an empty
    # /etc/modules, busybox with exactly its interpreter and libraries.
    grep -q -- '-9 --check=crc32' "$TMP/xz.args" || echo "FAIL: $name: xz options $(cat "$TMP/xz.args")"
    xz --robot --list "$img/initramfs.cpio.xz" 2>/dev/null | grep -q '^file.*CRC32' ||
      echo "FAIL: $name: initramfs.cpio.xz is not xz with CRC32 checks"
    x=$out/initramfs
    mkdir -p "$x"
    xz -dc "$img/initramfs.cpio.xz" | cpio -t --quiet 2>/dev/null | LC_ALL=C sort > "$out/initramfs.list"
    (cd "$x" && xz -dc "$img/initramfs.cpio.xz" | cpio -idm --quiet 2>/dev/null)
    for e in . init lib/bootslot.sh etc/modules bin/busybox dev proc sys tmp newroot; do
      grep -qxF "$e" "$out/initramfs.list" || echo "FAIL: $name: initramfs has no /$e"
    done
    cmp -s "$x/init" "$REPO/board/common/initramfs-init" || echo "FAIL: $name: initramfs /init is not board/common/initramfs-init"
    [ -x "$x/init" ] || echo "FAIL: $name: initramfs /init is not executable"
    cmp -s "$x/lib/bootslot.sh" "$REPO/board/common/bootslot.sh" || echo "FAIL: $name: initramfs /lib/bootslot.sh"
    [ -f "$x/etc/modules" ] && [ ! -s "$x/etc/modules" ] || echo "FAIL: $name: initramfs /etc/modules is not empty"
    # The applets scripts/image.sh links in its initramfs.
    applets=$(sed -n '/^for a in sh mount umount/,/; do$/p' "$REPO/scripts/image.sh" |
      sed 's/for a in//; s/; do//; s/\\//' | tr -s ' \n' '  ')
    [ -n "${applets// /}" ] || echo "FAIL: $name: cannot find the initramfs applets in scripts/image.sh"
    for a in $applets; do
      [ "$(readlink "$x/bin/$a")" = busybox ] || echo "FAIL: $name: initramfs /bin/$a is not a link to busybox (scripts/image.sh links it)"
    done
    cmp -s "$x/bin/busybox" "$out/target/bin/busybox" || echo "FAIL: $name: initramfs busybox is not the target's"
    (cd "$x" && find . \( -type f -o -type l \) -printf '%P\n' | LC_ALL=C sort |
      grep -vxE 'init|lib/bootslot.sh|etc/modules|bin/[a-z0-9_]+' ; echo bin/busybox) | LC_ALL=C sort > "$out/initramfs.elf"
    cmp -s "$TMP/elf-files" "$out/initramfs.elf" ||
      echo "FAIL: $name: initramfs ELF files $(paste -sd' ' "$out/initramfs.elf"), want $(paste -sd' ' "$TMP/elf-files")"
    i=$(elf_interp "$x/bin/busybox")
    [ -n "$i" ] && [ -f "$x$i" ] || echo "FAIL: $name: initramfs has no interpreter $i"
    # The stand-in is a host program: when we may chroot, run it inside the
    # unpacked initramfs, so the loader must find its libraries there.
    if [ "$(id -u)" = 0 ] && chroot / true 2>/dev/null; then
      chroot "$x" /bin/busybox --version >/dev/null 2>&1 ||
        echo "FAIL: $name: the stand-in busybox does not run in the unpacked initramfs (chroot)"
    fi
    sh -n "$img/start-qemu.sh" || echo "FAIL: $name: start-qemu.sh syntax"
    shellcheck -s sh "$img/start-qemu.sh" || echo "FAIL: $name: shellcheck start-qemu.sh"
    # A stand-in QEMU that prints its arguments, one per line.
    # shellcheck disable=SC2016 # the stand-in's own "$@"
    printf '#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n' > "$TMP/bin/$QEMU_SYSTEM"
    chmod 755 "$TMP/bin/$QEMU_SYSTEM"
    echo "registry = http://198.18.0.1/" > "$TMP/profile"
    PATH=$TMP/bin:$PATH QEMU_ACCEL=tcg RE6ST_PROFILE=$TMP/profile \
      sh "$img/start-qemu.sh" re6st.registry=http://198.18.0.1/ > "$out/qemu.args" ||
      echo "FAIL: $name: start-qemu.sh failed"
    for want in -kernel "$kimg" -initrd initramfs.cpio.xz -accel tcg -nographic "-m" "${QEMU_MEM:-256}" \
      "$(cat "$img/cmdline") re6st.registry=http://198.18.0.1/" \
      "file=firmware.img,if=none,id=disk,format=raw" "${QEMU_BLK_DEVICE},drive=disk" \
      "${QEMU_NET_DEVICE},netdev=n0" "name=opt/re6st/profile,file=$TMP/profile"; do
      grep -qxF -- "$want" "$out/qemu.args" || echo "FAIL: $name: start-qemu.sh does not pass '$want' to $QEMU_SYSTEM"
    done
    [ "$(grep -c '^-drive$' "$out/qemu.args")" = 1 ] || echo "FAIL: $name: start-qemu.sh passes more than one -drive"
    for w in $QEMU_MACHINE; do
      grep -qxF -- "$w" "$out/qemu.args" || echo "FAIL: $name: start-qemu.sh lost '$w' of QEMU_MACHINE"
    done
  ) > "$out/image-checks.log"
  if grep -q '^FAIL' "$out/image-checks.log"; then
    failures=$((failures + $(grep -c '^FAIL' "$out/image-checks.log")))
    cat "$out/image-checks.log"
  else
    echo "  $name: $board: post-build and post-image as expected; $kimg, firmware.img partitions (start,size,type) $(sed 's/ /,/g' "$out/parts.got" | paste -sd' '), initramfs $(wc -l < "$out/initramfs.list") entries; $(cat "$img/cmdline")"
  fi

  # A root filesystem larger than a slot is refused.
  # shellcheck source=/dev/null
  slot=$(. "$bdir/board.conf"; echo "${SLOT_SIZE:-16M}")
  truncate -s $(( $(numfmt --from=iec "$slot") + 4096 )) "$img/rootfs.squashfs"
  if run_post post-image.sh "$img" "$out" "$board" > "$out/neg.log" 2>&1; then
    fail "$name: post-image.sh accepted a rootfs.squashfs larger than a slot ($slot)"
  elif ! grep -q 'larger than a slot' "$out/neg.log"; then
    fail "$name: post-image.sh failed on a large rootfs without saying why:"; sed 's/^/    /' "$out/neg.log"
  fi
done

if [ "$failures" -gt 0 ]; then
  echo "buildroot-external/check.sh: $failures problem(s)"
  exit 1
fi
if [ -n "${BUILDROOT_DIR:-}" ]; then
  echo "buildroot-external/check.sh: all checks passed, against Buildroot in $BUILDROOT_DIR"
else
  echo "buildroot-external/check.sh: all checks passed (Kconfig against the model in tools/check.py, not Buildroot; BUILDROOT_DIR=... for Buildroot's Kconfig and check-package)"
fi
