#!/usr/bin/env bash
# Builds the router kernel of a board: Debian's linux-source (bookworm:
# 6.1) configured with tinyconfig + board/common/kernel.config +
# board/BOARD/kernel.config (everything the image boots from built in, no
# modules), compiled with Debian's gcc (native, or the board's
# KERNEL_CROSS_COMPILE cross compiler).
#
#   scripts/kernel.sh BOARD        (make kernel BOARD=qemu-x86_64)
#   scripts/kernel.sh --dir BOARD  prints the cache directory (built or not)
#
# Cache: $RE6ST_KERNEL_CACHE (default ~/.cache/re6st/kernel)/BOARD-KEY/,
# KEY = hash of the source package's version, the fragments and the board's
# KERNEL_* settings; it holds vmlinuz (what QEMU's -kernel takes), config
# and release. A present directory is reused: nothing is rebuilt.
# scripts/image.sh takes the kernel from there when the board has a
# kernel.config and it is built, else Debian's kernel (KERNEL_PKG).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PRINT_DIR=0
[ "${1:-}" = --dir ] && { PRINT_DIR=1; shift; }
BOARD=${1:-${BOARD:-}}
[ -n "$BOARD" ] || { echo "usage: $0 [--dir] BOARD" >&2; exit 2; }
BOARD_DIR=$ROOT/board/$BOARD
[ -f "$BOARD_DIR/board.conf" ] || { echo "kernel.sh: no $BOARD_DIR/board.conf" >&2; exit 2; }
[ -f "$BOARD_DIR/kernel.config" ] || { echo "kernel.sh: board $BOARD has no kernel.config (Debian's kernel only)" >&2; exit 2; }
# shellcheck source=/dev/null
. "$BOARD_DIR/board.conf"
: "${KERNEL_ARCH:?board.conf: KERNEL_ARCH (x86, arm64, arm, mips)}" "${KERNEL_TARGET:?board.conf: KERNEL_TARGET (make target)}"
: "${KERNEL_IMAGE:?board.conf: KERNEL_IMAGE (file under the build tree)}"
CROSS=${KERNEL_CROSS_COMPILE:-}
log() { echo "kernel[$BOARD]: $*" >&2; }
die() { echo "kernel[$BOARD]: error: $*" >&2; exit 1; }

SRC_PKG=${KERNEL_SOURCE_PKG:-linux-source-6.1}
CACHE=${RE6ST_KERNEL_CACHE:-$HOME/.cache/re6st/kernel}
SRC_VER=$(dpkg-query -W -f '${Version}' "$SRC_PKG" 2>/dev/null || true)
if [ -z "$SRC_VER" ]; then
  # --dir must not install anything: the key then names the candidate.
  SRC_VER=$(apt-cache policy "$SRC_PKG" 2>/dev/null | sed -n 's/^ *Candidate: //p')
fi
[ -n "$SRC_VER" ] && [ "$SRC_VER" != "(none)" ] || die "no $SRC_PKG in apt (apt-get update?)"
KEY=$( { echo "$SRC_PKG $SRC_VER $KERNEL_ARCH $KERNEL_TARGET $KERNEL_IMAGE $CROSS${KERNEL_DTBS:+ $KERNEL_DTBS}"
  cat "$ROOT/board/common/kernel.config" "$BOARD_DIR/kernel.config"; } | sha256sum | cut -c1-16)
OUT=$CACHE/$BOARD-$KEY
if [ $PRINT_DIR = 1 ]; then echo "$OUT"; exit 0; fi
if [ -f "$OUT/vmlinuz" ]; then
  log "cached: $OUT ($(stat -c %s "$OUT/vmlinuz") bytes)"
  exit 0
fi

need=()
dpkg-query -W -f '${Status}' "$SRC_PKG" 2>/dev/null | grep -q 'ok installed' || need+=("$SRC_PKG")
for t in flex bison bc make; do command -v $t >/dev/null || need+=("$t"); done
[ -f /usr/include/libelf.h ] || need+=(libelf-dev)
[ -f /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
if ! command -v "${CROSS}gcc" >/dev/null; then
  if [ -n "$CROSS" ]; then need+=("gcc-${CROSS%-}"); else need+=(gcc); fi
fi
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
  SRC_VER=$(dpkg-query -W -f '${Version}' "$SRC_PKG")
fi

# The source, unpacked once per package version (shared by every board).
TARBALL=$(dpkg -L "$SRC_PKG" | grep -E '/linux-source-[^/]*\.tar\.xz$' | head -1)
[ -f "$TARBALL" ] || die "$SRC_PKG has no source tarball"
SRC=$CACHE/src-$SRC_VER
if [ ! -f "$SRC/.unpacked" ]; then
  log "unpacking $TARBALL"
  rm -rf "$SRC" && mkdir -p "$SRC"
  tar -xJf "$TARBALL" -C "$SRC" --strip-components=1
  touch "$SRC/.unpacked"
fi

# One object tree per board, kept: a changed fragment rebuilds only what
# the change touches.
BUILD=$CACHE/build/$BOARD
mkdir -p "$BUILD"
T0=$(date +%s)
MAKE=(make -C "$SRC" O="$BUILD" ARCH="$KERNEL_ARCH" CROSS_COMPILE="$CROSS" KBUILD_BUILD_USER=re6st KBUILD_BUILD_HOST=re6st)
log "configuring (tinyconfig + board/common/kernel.config + board/$BOARD/kernel.config)"
"${MAKE[@]}" -s tinyconfig >/dev/null
KCONFIG_CONFIG=$BUILD/.config "$SRC/scripts/kconfig/merge_config.sh" -m -O "$BUILD" \
  "$BUILD/.config" "$ROOT/board/common/kernel.config" "$BOARD_DIR/kernel.config" >/dev/null
"${MAKE[@]}" -s olddefconfig
# Every setting asked for must have survived (a dependency left out drops it).
# The board's fragment may override a common line: the last one counts.
missing=0
while IFS= read -r line; do
  case $line in
    CONFIG_*=n) opt=${line%%=*}; grep -q "^$opt=" "$BUILD/.config" && { log "not off: $line"; missing=1; } ;;
    CONFIG_*=*) grep -qxF "$line" "$BUILD/.config" || { log "not set: $line (got: $(grep "^${line%%=*}=" "$BUILD/.config" || echo unset))"; missing=1; } ;;
  esac
done < <(cat "$ROOT/board/common/kernel.config" "$BOARD_DIR/kernel.config" |
  awk -F= '/^CONFIG_/ { v[$1] = $0; if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
    END { for (i = 1; i <= n; i++) print v[order[i]] }')
[ $missing = 0 ] || die "the fragments do not apply (see above; a missing dependency?)"
JOBS=${KERNEL_JOBS:-$(nproc)}
log "building $KERNEL_TARGET with ${CROSS}gcc, -j$JOBS (log: $BUILD/build.log)"
# KERNEL_DTBS: device trees built from the same source (e.g.
# broadcom/bcm2711-rpi-4-b.dtb), kept beside vmlinuz by their file name.
# shellcheck disable=SC2086
nice -n 10 "${MAKE[@]}" -j"$JOBS" "$KERNEL_TARGET" ${KERNEL_DTBS:-} > "$BUILD/build.log" 2>&1 || { tail -30 "$BUILD/build.log" >&2; die "build failed"; }
TMP=$OUT.tmp.$$
rm -rf "$TMP" && mkdir -p "$TMP"
cp "$BUILD/$KERNEL_IMAGE" "$TMP/vmlinuz"
for dtb in ${KERNEL_DTBS:-}; do cp "$BUILD/arch/$KERNEL_ARCH/boot/dts/$dtb" "$TMP/"; done
cp "$BUILD/.config" "$TMP/config"
"${MAKE[@]}" -s kernelrelease > "$TMP/release"
echo "$SRC_PKG $SRC_VER, ${CROSS}gcc $("${CROSS}gcc" -dumpfullversion), built in $(( $(date +%s) - T0 )) s" > "$TMP/source"
rm -rf "$OUT" && mv "$TMP" "$OUT"
log "done: $OUT/vmlinuz ($(stat -c %s "$OUT/vmlinuz") bytes, $(cat "$OUT/source"))"
