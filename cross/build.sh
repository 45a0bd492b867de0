#!/usr/bin/env bash
# Cross-builds the re6st multi-call binary (package re6st, firmware/re6st)
# for the boards' architectures. See cross/README.md.
#
#   cross/build.sh [--openssl=MODE] [--symbols] [--registry] [--deps-only] TARGET...
#
# TARGET: x86_64 aarch64 armv7 mipsel (or "all"). Targets are built one
# after the other, each with its own CARGO_TARGET_DIR under
# target/cross-build/, so the workspace's target/debug is never locked.
#
# Result: target/cross/<TARGET>/re6st (stripped) and
# target/cross/<TARGET>/BUILDINFO (toolchain, OpenSSL, runtime libraries,
# size, sha256).
#
# MODE (default debian, or $CROSS_OPENSSL):
#   debian         link dynamically against Debian bookworm's libssl3 (the
#                  image ships it anyway: openvpn depends on it)
#   vendored       static OpenSSL built by openssl-src, as openssl-sys's
#                  "vendored" feature would (measurement variant)
#   debian-static  static, from Debian's libssl.a/libcrypto.a (measurement)
# Any MODE other than debian, and --symbols (keep symbols, for size
# analysis), writes to target/cross/variants/<TARGET>-<variant>/ instead.
#
# Features: router images run nodes only, so the binary is built with
# --no-default-features (no `registry` command: no SQLite, no HTTP server,
# no mail; `re6st registry` then says so and exits 1). CROSS_FEATURES
# (comma-separated features of package re6st) or --registry
# (= CROSS_FEATURES=registry) builds more; such a build is a variant too:
# target/cross/variants/<TARGET>-registry/ (the full binary, as on the host).
#
# Environment: CROSS_FEATURES, CROSS_OPENSSL, CROSS_OPENSSL_DEB_VERSION (pin the Debian
# libssl version), CARGO_BUILD_JOBS (default 2), CARGO (default cargo).
# Size experiments (README): CROSS_SQLITE_LEAN=1, CROSS_RUSTFLAGS,
# CROSS_BUILD_STD_FEATURES (mipsel), CROSS_VARIANT=<name> (output to
# target/cross/variants/<TARGET>-<name>/).
#
# Idempotent: installs what is missing (apt packages, rustup targets,
# rust-src, the Debian libssl of the target architecture) and otherwise only
# checks. Installing needs root.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CROSS_DIR=$ROOT/cross
CARGO=${CARGO:-cargo}
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
OPENSSL_MODE=${CROSS_OPENSSL:-debian}
FEATURES=${CROSS_FEATURES:-}
DEPS_ONLY=0
SYMBOLS=0
TARGETS=()

usage() {
  sed -n "2,/^set -euo/p" "$0" | sed "\$d" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

for arg in "$@"; do
  case $arg in
    --openssl=*) OPENSSL_MODE=${arg#--openssl=} ;;
    --deps-only) DEPS_ONLY=1 ;;
    --symbols) SYMBOLS=1 ;;
    --registry) FEATURES=${FEATURES:+$FEATURES,}registry ;;
    all) TARGETS+=(x86_64 aarch64 armv7 mipsel) ;;
    x86_64 | aarch64 | armv7 | mipsel) TARGETS+=("$arg") ;;
    -h | --help) usage ;;
    *) echo "cross/build.sh: unknown target or option '$arg'" >&2; usage ;;
  esac
done
[ ${#TARGETS[@]} -gt 0 ] || usage
case $OPENSSL_MODE in debian | vendored | debian-static) ;; *) echo "cross/build.sh: --openssl must be debian, vendored or debian-static" >&2; exit 2 ;; esac

log() { echo "cross: $*" >&2; }

# TARGET -> Rust triple, Debian architecture, GNU tool prefix (= multiarch
# directory name).
set_target() {
  case $1 in
    x86_64) TRIPLE=x86_64-unknown-linux-gnu DEBARCH=amd64 GNU=x86_64-linux-gnu ;;
    aarch64) TRIPLE=aarch64-unknown-linux-gnu DEBARCH=arm64 GNU=aarch64-linux-gnu ;;
    armv7) TRIPLE=armv7-unknown-linux-gnueabihf DEBARCH=armhf GNU=arm-linux-gnueabihf ;;
    mipsel) TRIPLE=mipsel-unknown-linux-gnu DEBARCH=mipsel GNU=mipsel-linux-gnu ;;
  esac
  TRIPLE_ENV=$(echo "$TRIPLE" | tr 'a-z-' 'A-Z_')   # AARCH64_UNKNOWN_LINUX_GNU
  TRIPLE_CC=${TRIPLE//-/_}                         # aarch64_unknown_linux_gnu
  HOST_TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
  NATIVE=0
  [ "$TRIPLE" != "$HOST_TRIPLE" ] || NATIVE=1
  # Rust ships no precompiled std for tier-3 targets: build it (-Z build-std).
  BUILD_STD=0
  [ "$TRIPLE" != mipsel-unknown-linux-gnu ] || BUILD_STD=1
}

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "cross/build.sh: installing $* needs root" >&2
    exit 1
  fi
}

APT_UPDATED=0
apt_update_once() {
  [ $APT_UPDATED = 1 ] && return
  # A broken third-party or mirror index must not stop us: apt-get install
  # below fails clearly if what we need is really missing.
  apt-get update -qq || log "apt-get update reported errors (continuing)"
  APT_UPDATED=1
}

apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  need_root "${missing[*]}"
  log "installing ${missing[*]}"
  apt_update_once
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

install_deps() {
  apt_install make perl file binutils pkg-config
  if [ $NATIVE = 1 ]; then
    apt_install build-essential libssl-dev
  else
    # gcc-<prefix> only *recommends* the target's libc headers.
    apt_install "gcc-$GNU" "libc6-dev-$DEBARCH-cross" "binutils-$GNU"
  fi
  if ! rustup target list --installed | grep -qx "$TRIPLE"; then
    if [ $BUILD_STD = 1 ]; then
      : # tier 3: no rust-std component, std is built from rust-src
    else
      log "rustup target add $TRIPLE"
      rustup target add "$TRIPLE"
    fi
  fi
  if [ $BUILD_STD = 1 ] && ! rustup component list --installed | grep -q '^rust-src'; then
    log "rustup component add rust-src"
    rustup component add rust-src
  fi
}

# Debian's libssl for the target architecture, unpacked into a private
# sysroot (target/cross-sysroot/<debarch>) instead of `apt-get install
# libssl-dev:<arch>`: libssl3 is Multi-Arch: same, so apt insists on the same
# version for every architecture and would up/downgrade the host's libssl3
# whenever the mirrors' architectures are not in sync. Sets OSSL_LIB,
# OSSL_INC, OSSL_VERSION.
debian_openssl() {
  local sysroot=$ROOT/target/cross-sysroot/$DEBARCH
  local version=${CROSS_OPENSSL_DEB_VERSION:-}
  if [ -z "$version" ] && [ -f "$sysroot/VERSION" ]; then
    version=$(cat "$sysroot/VERSION")
  fi
  if [ -z "$version" ] || [ ! -f "$sysroot/VERSION" ] || [ "$(cat "$sysroot/VERSION")" != "$version" ]; then
    if [ "$DEBARCH" != "$(dpkg --print-architecture)" ] &&
      ! dpkg --print-foreign-architectures | grep -qx "$DEBARCH"; then
      need_root "the $DEBARCH architecture"
      log "dpkg --add-architecture $DEBARCH"
      dpkg --add-architecture "$DEBARCH"
      APT_UPDATED=0
    fi
    if ! apt-cache show "libssl-dev:$DEBARCH" >/dev/null 2>&1; then
      apt_update_once
    fi
    if [ -z "$version" ]; then
      version=$(apt-cache policy "libssl-dev:$DEBARCH" | sed -n 's/^ *Candidate: //p')
    fi
    [ -n "$version" ] && [ "$version" != "(none)" ] || { echo "cross/build.sh: no libssl-dev:$DEBARCH in apt" >&2; exit 1; }
    log "unpacking Debian libssl-dev:$DEBARCH libssl3:$DEBARCH $version into $sysroot"
    rm -rf "$sysroot"
    mkdir -p "$sysroot/debs" "$sysroot/root"
    (cd "$sysroot/debs" && apt-get download -qq -o APT::Sandbox::User=root "libssl-dev:$DEBARCH=$version" "libssl3:$DEBARCH=$version")
    local deb
    for deb in "$sysroot"/debs/*.deb; do
      dpkg-deb -x "$deb" "$sysroot/root"
    done
    # One include directory for openssl-sys: the arch-independent headers
    # plus the multiarch configuration.h/opensslconf.h.
    mkdir -p "$sysroot/include/openssl"
    cp -a "$sysroot/root/usr/include/openssl/." "$sysroot/include/openssl/"
    cp -a "$sysroot/root/usr/include/$GNU/openssl/." "$sysroot/include/openssl/"
    echo "$version" >"$sysroot/VERSION"
  fi
  OSSL_LIB=$sysroot/root/usr/lib/$GNU
  OSSL_INC=$sysroot/include
  OSSL_VERSION="Debian libssl3 $version (dynamic)"
}

# OpenSSL built from source by openssl-src (what openssl-sys's `vendored`
# feature does), via the helper crate cross/openssl-vendored. Sets OSSL_LIB,
# OSSL_INC, OSSL_VERSION.
vendored_openssl() {
  local out=$ROOT/target/cross-build/openssl-vendored/$TRIPLE
  if [ ! -f "$out/install/lib/libcrypto.a" ]; then
    log "building OpenSSL (openssl-src) for $TRIPLE"
    RE6ST_OPENSSL_TARGET=$TRIPLE RE6ST_OPENSSL_OUT=$out \
      CARGO_TARGET_DIR=$ROOT/target/cross-build/openssl-vendored/helper \
      "$CARGO" build --locked --manifest-path "$CROSS_DIR/openssl-vendored/Cargo.toml"
  fi
  OSSL_LIB=$out/install/lib
  OSSL_INC=$out/install/include
  OSSL_VERSION="openssl-src $(sed -n 's/^version = "\(300[^"]*\)"/\1/p' "$CROSS_DIR/openssl-vendored/Cargo.lock") (static)"
}

build_one() {
  set_target "$1"
  log "=== $1 ($TRIPLE, OpenSSL: $OPENSSL_MODE)"
  install_deps
  if [ $DEPS_ONLY = 1 ]; then
    case $OPENSSL_MODE in
      debian) [ $NATIVE = 1 ] || debian_openssl ;;
      debian-static) debian_openssl ;;
    esac
    return 0
  fi

  local strip=strip cc=cc
  if [ $NATIVE = 0 ]; then
    strip=$GNU-strip cc=$GNU-gcc
    export "CC_$TRIPLE_CC=$GNU-gcc" "AR_$TRIPLE_CC=$GNU-ar"
    # Also in cross/cargo-config.toml; the environment wins and keeps this
    # script self-contained.
    export "CARGO_TARGET_${TRIPLE_ENV}_LINKER=$GNU-gcc"
  fi

  # Reproducibility: no build-machine paths in the binary (panic locations,
  # C __FILE__), whatever the checkout and cargo home are.
  local cargo_home=${CARGO_HOME:-$HOME/.cargo}
  local rust_sysroot commit
  rust_sysroot=$(rustc --print sysroot)
  commit=$(rustc -vV | sed -n 's/^commit-hash: //p')
  local rustflags="--remap-path-prefix=$ROOT=/build/re6st --remap-path-prefix=$cargo_home=/cargo"
  # std built from rust-src gets the path precompiled std has.
  rustflags+=" --remap-path-prefix=$rust_sysroot/lib/rustlib/src/rust=/rustc/$commit"
  # panic=abort: unwind tables only serve backtraces, which a stripped
  # binary cannot symbolize anyway (-190 KB on mipsel, see the README).
  rustflags+=" -C force-unwind-tables=no"
  # mipsel: a non-PIE executable. MIPS o32 position-independent code goes
  # through the GOT for every call and global (-329 KB of 2.30 MB, see the
  # README); the price is that the executable's own code is not randomised
  # (ASLR still moves the libraries, the heap and the stacks).
  [ "$1" != mipsel ] || rustflags+=" -C relocation-model=static"
  # mipsel: segments aligned to 4 KiB pages, not the toolchain's 64 KiB
  # (which lets one binary run on 16/64 KiB-page MIPS kernels too): the
  # writable segment's padding in the file shrinks (-12,288 bytes, see
  # the README). Router and Malta kernels use 4 KiB pages; a kernel with
  # larger pages would refuse to map this binary.
  [ "$1" != mipsel ] || rustflags+=" -C link-arg=-Wl,-z,max-page-size=0x1000"
  # mipsel: panic messages without their file and line (-65,540 bytes
  # measured, see the README): with it the node-only build keeps under its
  # 2 MiB target. A panic still prints its message, then aborts.
  [ "$1" != mipsel ] || rustflags+=" -Z location-detail=none"
  # Extra flags for experiments (see the README's size table).
  [ -z "${CROSS_RUSTFLAGS:-}" ] || rustflags+=" $CROSS_RUSTFLAGS"
  export RUSTFLAGS=$rustflags
  export "CFLAGS_$TRIPLE_CC=-ffile-prefix-map=$ROOT=/build/re6st -ffile-prefix-map=$cargo_home=/cargo"

  # OpenSSL. openssl-sys reads <TRIPLE>_OPENSSL_* before OPENSSL_*: the
  # prefixed names cannot leak into host build scripts.
  unset OSSL_LIB OSSL_INC
  local variant=
  case $OPENSSL_MODE in
    vendored)
      vendored_openssl
      export "${TRIPLE_ENV}_OPENSSL_STATIC=1"
      variant=-openssl-vendored
      ;;
    debian-static)
      debian_openssl
      OSSL_VERSION=${OSSL_VERSION/(dynamic)/(static: libssl.a, libcrypto.a)}
      export "${TRIPLE_ENV}_OPENSSL_STATIC=1"
      variant=-openssl-debian-static
      ;;
    debian)
      if [ $NATIVE = 0 ]; then
        debian_openssl
        export "${TRIPLE_ENV}_OPENSSL_STATIC=0"
      else
        # Native: the host's Debian libssl-dev through pkg-config.
        OSSL_VERSION="Debian libssl3 $(dpkg-query -W -f='${Version}' libssl-dev) (dynamic, host's libssl-dev)"
      fi
      ;;
  esac
  local extra=()
  if [ $SYMBOLS = 1 ]; then
    # For size analysis (nm, cargo bloat): same build, symbols kept.
    extra+=(--config profile.release.strip=false)
    variant+=-symbols
  fi
  if [ "${CROSS_SQLITE_LEAN:-0}" = 1 ]; then
    # Bundled SQLite without the extensions libsqlite3-sys enables and
    # re6st's SQL does not use (full-text search, R-tree, JSON, dbstat,
    # STAT4, soundex, extension loading). Opt-in: see the README.
    export LIBSQLITE3_FLAGS="-USQLITE_ENABLE_FTS3 -USQLITE_ENABLE_FTS3_PARENTHESIS -USQLITE_ENABLE_FTS5 -USQLITE_ENABLE_RTREE -USQLITE_ENABLE_DBSTAT_VTAB -USQLITE_ENABLE_STAT4 -USQLITE_SOUNDEX -DSQLITE_OMIT_JSON -DSQLITE_OMIT_LOAD_EXTENSION"
    variant+=-sqlite-lean
  else
    unset LIBSQLITE3_FLAGS
  fi
  [ -z "${CROSS_VARIANT:-}" ] || variant+=-$CROSS_VARIANT
  # Feature sets share the build directory (cargo keeps the dependencies
  # of each set apart and reuses the common ones).
  local build_dir=$ROOT/target/cross-build/$TRIPLE$variant
  # Features beyond the node-only default: a variant named after them.
  local features_args=(--no-default-features)
  if [ -n "$FEATURES" ]; then
    features_args+=(--features "$FEATURES")
    variant+=-$(echo "$FEATURES" | tr ', ' '--' | tr -s -)
  fi
  # Variants never overwrite what image builders pick up.
  local out=$ROOT/target/cross/$1
  [ -z "$variant" ] || out=$ROOT/target/cross/variants/$1$variant
  if [ -n "${OSSL_LIB:-}" ]; then
    # With both set, openssl-sys uses them and does not ask pkg-config.
    export "${TRIPLE_ENV}_OPENSSL_LIB_DIR=$OSSL_LIB" "${TRIPLE_ENV}_OPENSSL_INCLUDE_DIR=$OSSL_INC"
  fi

  local cmd=("$CARGO" build --locked --release -p re6st --bin re6st "${features_args[@]}"
    --target "$TRIPLE" --config "$CROSS_DIR/cargo-config.toml" "${extra[@]}")
  if [ $BUILD_STD = 1 ]; then
    # Stable toolchain: -Z needs RUSTC_BOOTSTRAP (documented in the README).
    export RUSTC_BOOTSTRAP=1
    cmd+=(-Z build-std=std,panic_abort)
    # std's own features. Cargo's default adds "backtrace", whose
    # symbolizer (gimli, addr2line, miniz_oxide, rustc-demangle: ~130 KB on
    # mipsel) is useless in a stripped binary; optimize_for_size picks std's
    # smaller algorithm variants (same behaviour).
    cmd+=(-Z "build-std-features=${CROSS_BUILD_STD_FEATURES-optimize_for_size}")
  else
    unset RUSTC_BOOTSTRAP
  fi
  log "CARGO_TARGET_DIR=$build_dir ${cmd[*]}"
  (cd "$ROOT" && CARGO_TARGET_DIR=$build_dir "${cmd[@]}")

  mkdir -p "$out"
  local bin=$build_dir/$TRIPLE/release/re6st
  cp "$bin" "$out/re6st.tmp"
  [ $SYMBOLS = 1 ] || "$strip" --strip-all "$out/re6st.tmp"
  mv "$out/re6st.tmp" "$out/re6st"
  {
    echo "target: $1 ($TRIPLE)"
    echo "rustc: $(rustc -V)"
    echo "cc: $($cc --version | head -1)"
    echo "openssl: $OSSL_VERSION"
    echo "features: ${FEATURES:-none (--no-default-features: node only, no registry)}"
    if git -C "$ROOT" rev-parse -q HEAD >/dev/null 2>&1; then
      echo "git: $(git -C "$ROOT" rev-parse HEAD)$(git -C "$ROOT" diff --quiet HEAD -- || echo ' (uncommitted changes in the tree)')"
    else
      echo "git: none"
    fi
    echo "needed: $(readelf -d "$out/re6st" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')"
    echo "interpreter: $(readelf -l "$out/re6st" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')"
    echo "size: $(stat -c %s "$out/re6st")"
    echo "sha256: $(sha256sum "$out/re6st" | cut -d' ' -f1)"
  } >"$out/BUILDINFO"
  log "$out/re6st: $(stat -c %s "$out/re6st") bytes"
}

# Each target in a subshell (its environment stays its own); go on with the
# next target when one fails, and say which failed at the end.
failed=()
for t in "${TARGETS[@]}"; do
  # Not `(...) || ...`: that would switch off set -e inside.
  set +e
  (set -e; build_one "$t")
  rc=$?
  set -e
  [ $rc = 0 ] || failed+=("$t")
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "cross/build.sh: FAILED: ${failed[*]}" >&2
  exit 1
fi
