#!/usr/bin/env bash
# Offline validation of the br2-external tree: nothing is built or
# downloaded, it takes a few seconds, and it exits non-zero on any problem.
#
#   bash buildroot-external/check.sh
#   BUILDROOT_DIR=/path/to/buildroot bash buildroot-external/check.sh
#
# 1. external.desc, Config.in, external.mk as Buildroot expects them.
# 2. tools/check.py: our Kconfig under a stub of Buildroot and each
#    defconfig's values for our symbols; re6st.mk evaluated by make with
#    Buildroot's macros stubbed; every path the tree names exists. With
#    BUILDROOT_DIR, also each defconfig against that Buildroot's real
#    Kconfig (every line must hold) and its br2-external script, and
#    Buildroot's utils/check-package on the tree.
# 3. bash -n and shellcheck (when installed) on every script.
# 4. post-build.sh and post-image.sh run for each board on a synthetic
#    Buildroot output (stand-in binaries and configurations): what they
#    write, that their checks catch a missing kernel option and a wrong
#    /sbin/init, and the generated start-qemu.sh run against a fake QEMU.
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

# Buildroot's own style checker, when its Python modules are there
# ($VENV/bin/pip install python-magic flake8).
if [ -n "${BUILDROOT_DIR:-}" ]; then
  if "$PY" -c 'import magic, flake8' 2>/dev/null; then
    (cd "$EXT" && timeout 25 "$PY" "$BUILDROOT_DIR/utils/check-package" -b \
      package/*/* configs/* board/common/*.sh board/common/*.fragment board/common/patches/*/* \
      board/*/* Config.in external.mk external.desc) || fail "Buildroot's utils/check-package (above)"
  else
    echo "  utils/check-package skipped: $VENV/bin/pip install python-magic flake8"
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
  echo "  shellcheck not installed (apt-get install shellcheck): skipped"
fi

# --- 4. post-build.sh and post-image.sh on a synthetic output ------------
step "post-build.sh, post-image.sh dry runs"
# defconfig_value FILE NAME
defconfig_value() { sed -n "s/^$2=\"\{0,1\}\([^\"]*\)\"\{0,1\}\$/\1/p" "$1"; }
# fragment_lines FILE...: the option lines of kconfig fragments.
fragment_lines() { cat "$@" | grep -E '^(CONFIG_|# CONFIG_.* is not set$)' || true; }

# fake_output DEFCONFIG DIR: a Buildroot output as post-build.sh sees it,
# after the packages and the overlay, with configurations that satisfy the
# defconfig's fragments.
fake_output() {
  local def=$1 out=$2 kver frags f
  mkdir -p "$out/target" "$out/build" "$out/images" "$out/host"
  kver=$(defconfig_value "$def" BR2_LINUX_KERNEL_CUSTOM_VERSION_VALUE)
  { echo "# Buildroot check.sh Configuration"; cat "$def"; echo "BR2_LINUX_KERNEL_VERSION=\"$kver\""; } > "$out/.config"
  frags=$(defconfig_value "$def" BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES)
  mkdir -p "$out/build/linux-$kver"
  # shellcheck disable=SC2086,SC2016 # paths without spaces; a literal $(...)
  fragment_lines ${frags//'$(BR2_EXTERNAL_RE6ST_PATH)'/$EXT} > "$out/build/linux-$kver/.config"
  frags=$(defconfig_value "$def" BR2_PACKAGE_BUSYBOX_CONFIG_FRAGMENT_FILES)
  mkdir -p "$out/build/busybox-1.37.0"
  # shellcheck disable=SC2086,SC2016
  fragment_lines ${frags//'$(BR2_EXTERNAL_RE6ST_PATH)'/$EXT} > "$out/build/busybox-1.37.0/.config"
  cd "$out/target"
  mkdir -p bin sbin usr/bin usr/sbin usr/share/udhcpc etc
  for f in usr/bin/re6st usr/sbin/openvpn usr/sbin/babeld bin/busybox sbin/mke2fs; do
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
  env BR2_CONFIG="$3/.config" BASE_DIR="$3" HOST_DIR="$3/host" BINARIES_DIR="$3/images" \
    TARGET_DIR="$3/target" BR2_EXTERNAL_RE6ST_PATH="$EXT" \
    bash "$EXT/board/common/$1" "$2" "$4"
}

mkdir -p "$TMP/bin"
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
  cmp -s "$t/etc/re6st/profile" "$bdir/profile" || fail "$name: /etc/re6st/profile is not ${bdir#"$REPO"/}/profile"
  [ ! -e "$t/README.md" ] || fail "$name: rootfs/README.md left in the image"
  [ "$(cat "$t/etc/hostname")" = "$board" ] || fail "$name: /etc/hostname"
  grep -qx "BOARD=$board" "$t/etc/re6st-release" || fail "$name: /etc/re6st-release"
  [ "$(stat -c %a "$t/etc/shadow")" = 640 ] || fail "$name: /etc/shadow mode"
  [ -d "$t/data" ] || fail "$name: no /data mount point"
  [ ! -e "$t/usr/share/udhcpc" ] || fail "$name: Buildroot's udhcpc script left"

  # The checks must catch a missing kernel option and a foreign /sbin/init.
  kconf=$(find "$out/build" -path '*/linux-*/.config')
  cp "$kconf" "$kconf.ok"
  grep -v '^CONFIG_TUN=y$' "$kconf.ok" > "$kconf"
  if run_post post-build.sh "$t" "$out" "$board" > "$out/neg.log" 2>&1; then
    fail "$name: post-build.sh accepted a kernel without CONFIG_TUN"
  elif ! grep -q 'wanted CONFIG_TUN=y' "$out/neg.log"; then
    fail "$name: post-build.sh failed without naming CONFIG_TUN:"; sed 's/^/    /' "$out/neg.log"
  fi
  cp "$kconf.ok" "$kconf"
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
  : > "$out/images/$kimg"
  head -c 4096 /dev/zero > "$out/images/rootfs.squashfs"
  if ! run_post post-image.sh "$out/images" "$out" "$board" > "$out/post-image.log" 2>&1; then
    fail "$name: post-image.sh failed:"; sed 's/^/    /' "$out/post-image.log"
    continue
  fi
  (
    # shellcheck source=/dev/null
    . "$bdir/board.conf"
    img=$out/images
    want=$(numfmt --from=iec "${DATA_SIZE:-64M}")
    [ "$(stat -c %s "$img/data.img")" = "$want" ] || echo "FAIL: $name: data.img is not $DATA_SIZE"
    grep -q "root=$ROOT_DEVICE .*console=$KERNEL_CONSOLE re6st.data=$DATA_DEVICE" "$img/cmdline" ||
      echo "FAIL: $name: cmdline $(cat "$img/cmdline")"
    sh -n "$img/start-qemu.sh" || echo "FAIL: $name: start-qemu.sh syntax"
    if command -v shellcheck >/dev/null; then shellcheck -s sh "$img/start-qemu.sh" || echo "FAIL: $name: shellcheck start-qemu.sh"; fi
    # A stand-in QEMU that prints its arguments, one per line.
    # shellcheck disable=SC2016 # the stand-in's own "$@"
    printf '#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n' > "$TMP/bin/$QEMU_SYSTEM"
    chmod 755 "$TMP/bin/$QEMU_SYSTEM"
    echo "registry = http://198.18.0.1/" > "$TMP/profile"
    PATH=$TMP/bin:$PATH QEMU_ACCEL=tcg RE6ST_PROFILE=$TMP/profile \
      sh "$img/start-qemu.sh" re6st.registry=http://198.18.0.1/ > "$out/qemu.args" ||
      echo "FAIL: $name: start-qemu.sh failed"
    for want in -kernel "$kimg" -accel tcg -nographic "-m" "${QEMU_MEM:-256}" \
      "$(cat "$img/cmdline") re6st.registry=http://198.18.0.1/" \
      "file=rootfs.squashfs,if=none,id=root,format=raw,readonly=on" "${QEMU_BLK_DEVICE},drive=root" \
      "file=data.img,if=none,id=data,format=raw" "${QEMU_BLK_DEVICE},drive=data" \
      "${QEMU_NET_DEVICE},netdev=n0" "name=opt/re6st/profile,file=$TMP/profile"; do
      grep -qxF -- "$want" "$out/qemu.args" || echo "FAIL: $name: start-qemu.sh does not pass '$want' to $QEMU_SYSTEM"
    done
    for w in $QEMU_MACHINE; do
      grep -qxF -- "$w" "$out/qemu.args" || echo "FAIL: $name: start-qemu.sh lost '$w' of QEMU_MACHINE"
    done
  ) > "$out/image-checks.log"
  if grep -q '^FAIL' "$out/image-checks.log"; then
    failures=$((failures + $(grep -c '^FAIL' "$out/image-checks.log")))
    cat "$out/image-checks.log"
  else
    echo "  $name: $board: post-build and post-image as expected; $kimg, $(cat "$out/images/cmdline")"
  fi
done

if [ "$failures" -gt 0 ]; then
  echo "buildroot-external/check.sh: $failures problem(s)"
  exit 1
fi
echo "buildroot-external/check.sh: all checks passed"
