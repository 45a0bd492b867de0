#!/usr/bin/env bash
# Checks cross-built re6st binaries (cross/build.sh): right architecture
# and ABI, every NEEDED library found, and that they really run, under
# qemu-user for foreign architectures:
#   - `re6st` (usage, status 2), `re6st <cmd> --help` for every command it
#     lists;
#   - `re6st registry --init-network` (RSA-2048 key, self-signed CA);
#   - a registry on 127.0.0.1 and `re6st conf --anonymous` against it (HTTP,
#     key and CSR, certificate signed by the registry, SQLite database);
#     the host's openssl verifies the certificate it got.
# Router builds have no registry (cross/build.sh's default,
# --no-default-features): then `re6st registry` must refuse with "this
# build has no registry", and the registry side is run by a full binary:
# $CHECK_REGISTRY_BIN (runs natively) if set, else
# target/cross/variants/<TARGET>-registry/re6st (cross/build.sh --registry
# TARGET; under qemu-user too) if built, else the host's target/debug/re6st
# (cargo build -p re6st). Only `re6st conf` is then the checked binary's.
#
#   cross/check.sh [--bin PATH] [TARGET...]
#
# TARGET: x86_64 aarch64 armv7 mipsel or all (default: every target with a
# target/cross/<TARGET>/re6st). --bin checks another build (a variant) of
# the single TARGET given. Installs qemu-user if missing (root).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN_OVERRIDE=
TARGETS=()
while [ $# -gt 0 ]; do
  case $1 in
    --bin) BIN_OVERRIDE=$2; shift ;;
    all) TARGETS+=(x86_64 aarch64 armv7 mipsel) ;;
    x86_64 | aarch64 | armv7 | mipsel) TARGETS+=("$1") ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
  esac
  shift
done
if [ ${#TARGETS[@]} = 0 ]; then
  for t in x86_64 aarch64 armv7 mipsel; do
    [ ! -f "$ROOT/target/cross/$t/re6st" ] || TARGETS+=("$t")
  done
  [ ${#TARGETS[@]} -gt 0 ] || { echo "cross/check.sh: nothing built yet (make cross TARGET=...)" >&2; exit 1; }
fi
[ -z "$BIN_OVERRIDE" ] || [ ${#TARGETS[@]} = 1 ] || { echo "cross/check.sh: --bin needs exactly one TARGET" >&2; exit 2; }

FAILED=0
pass() { echo "  ok   $*"; }
fail() { echo "  FAIL $*"; FAILED=1; }

ensure_qemu() {
  command -v "$1" >/dev/null && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "cross/check.sh: $1 missing; install qemu-user (root)" >&2
    exit 1
  fi
  # qemu-utils comes from bookworm-backports on our machines: take
  # qemu-user from the same suite when it is configured (mixing refuses).
  local suite=()
  if grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    suite=(-t bookworm-backports)
  fi
  apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${suite[@]}" qemu-user
}

free_port() {
  local p
  for p in $(seq 29080 29180); do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
  echo "cross/check.sh: no free port" >&2
  exit 1
}

check_one() {
  local t=$1 file_re interp qemu= gnu
  case $t in
    x86_64) file_re='ELF 64-bit LSB .*x86-64' interp=/lib64/ld-linux-x86-64.so.2 gnu=x86_64-linux-gnu ;;
    aarch64) file_re='ELF 64-bit LSB .*ARM aarch64' interp=/lib/ld-linux-aarch64.so.1 qemu=qemu-aarch64 gnu=aarch64-linux-gnu debarch=arm64 ;;
    armv7) file_re='ELF 32-bit LSB .*ARM, EABI5' interp=/lib/ld-linux-armhf.so.3 qemu=qemu-arm gnu=arm-linux-gnueabihf debarch=armhf ;;
    mipsel) file_re='ELF 32-bit LSB .*MIPS, MIPS32 rel2' interp=/lib/ld.so.1 qemu=qemu-mipsel gnu=mipsel-linux-gnu debarch=mipsel ;;
  esac
  local bin=${BIN_OVERRIDE:-$ROOT/target/cross/$t/re6st}
  echo "== $t: $bin"
  [ -f "$bin" ] || { fail "$bin missing (make cross TARGET=$t)"; return; }
  bin=$(readlink -f "$bin")

  local desc
  desc=$(file -b "$bin")
  if [[ $desc =~ $file_re ]]; then pass "file: $desc"; else fail "file: $desc (expected /$file_re/)"; fi
  [[ $desc == *", stripped"* ]] && pass "stripped, $(stat -c %s "$bin") bytes" || fail "not stripped"
  local got_interp
  got_interp=$(readelf -l "$bin" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
  [ "$got_interp" = "$interp" ] && pass "interpreter $interp" || fail "interpreter '$got_interp', expected $interp"
  if [ "$t" = armv7 ]; then
    # Hard-float ABI (armhf), Thumb-2/ARMv7 as Debian's armhf baseline.
    local attrs
    attrs=$(readelf -A "$bin")
    grep -q 'Tag_ABI_VFP_args: VFP registers' <<<"$attrs" && pass "hard-float ABI (Tag_ABI_VFP_args: VFP registers)" || fail "not hard-float"
    grep -q "Tag_CPU_arch: v7" <<<"$attrs" && pass "Tag_CPU_arch: v7" || fail "CPU arch not v7"
  fi
  if [ "$t" = mipsel ]; then
    local flags
    flags=$(readelf -h "$bin" | sed -n 's/^ *Flags: *//p')
    [[ $flags == *mips32r2* ]] && pass "ELF flags: $flags" || fail "ELF flags: $flags (expected mips32r2)"
  fi

  # Where the guest finds its libraries: the cross glibc, and Debian's
  # libssl unpacked by cross/build.sh.
  local run=("$bin") libdirs=()
  if [ -n "$qemu" ]; then
    ensure_qemu "$qemu"
    libdirs=("/usr/$gnu/lib" "$ROOT/target/cross-sysroot/$debarch/root/usr/lib/$gnu")
    run=("$qemu" -L "/usr/$gnu" -E "LD_LIBRARY_PATH=${libdirs[1]}" "$bin")
  else
    libdirs=("/lib/$gnu" "/usr/lib/$gnu")
  fi
  local lib dir found
  for lib in $(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    found=
    for dir in "${libdirs[@]}"; do
      [ ! -e "$dir/$lib" ] || found=$dir/$lib
    done
    [ -n "$found" ] && pass "NEEDED $lib ($found)" || fail "NEEDED $lib not found in ${libdirs[*]}"
  done

  local tmp rc out
  tmp=$(mktemp -d /tmp/re6st-cross-check.XXXXXX)
  set +e
  out=$(cd "$tmp" && timeout 60 "${run[@]}" 2>&1)
  rc=$?
  set -e
  [ $rc = 2 ] && [[ $out == *"usage: re6st COMMAND"* ]] && pass "runs: re6st (usage, status 2)" || fail "re6st: status $rc: $out"
  # Every command the binary lists (ovpn-hook only runs under OpenVPN).
  local cmd cmds has_registry=1
  cmds=$(sed -n 's/^  \([a-z0-9-]*\) *(also runs as .*/\1/p' <<<"$out" | grep -vx ovpn-hook)
  [ -n "$cmds" ] || fail "no command list in the usage text"
  for cmd in $cmds; do
    set +e
    out=$(cd "$tmp" && timeout 60 "${run[@]}" "$cmd" --help 2>&1)
    rc=$?
    set -e
    # conf and node currently answer --help with status 2 (clap's help is
    # an Err they map to 2), natively too: the help text is what counts.
    if [ "$cmd" = registry ] && [ $rc = 1 ] && [[ $out == *"this build has no registry"* ]]; then
      has_registry=0
      pass "re6st registry refused, status 1 (node-only build): $(head -c 60 <<<"$out")..."
    elif { [ $rc = 0 ] || [ $rc = 2 ]; } && [[ $out == *Usage:* ]]; then
      pass "runs: re6st $cmd --help (status $rc)"
    else
      fail "re6st $cmd --help: status $rc: $(head -3 <<<"$out")"
    fi
  done

  # A registry and a node setting itself up against it. Without a registry
  # in this binary, a full one plays the registry.
  local reg_run=("${run[@]}")
  if [ $has_registry = 0 ]; then
    local full=${CHECK_REGISTRY_BIN:-$ROOT/target/cross/variants/$t-registry/re6st}
    if [ -z "${CHECK_REGISTRY_BIN:-}" ] && [ -x "$full" ]; then
      reg_run=("${run[@]:0:$((${#run[@]} - 1))}" "$full")
    else
      [ -x "$full" ] || full=$ROOT/target/debug/re6st
      [ -x "$full" ] || (cd "$ROOT" && cargo build -q -p re6st --bin re6st)
      reg_run=("$full")
    fi
    pass "registry side: ${reg_run[*]: -1} (full build)"
  fi
  local port pid
  if (cd "$tmp" && timeout 120 "${reg_run[@]}" registry --init-network 2001:db8:42::/48 --dir reg >init.out 2>&1) &&
    openssl verify -CAfile "$tmp/reg/ca.crt" "$tmp/reg/ca.crt" >/dev/null 2>&1; then
    pass "runs: re6st registry --init-network (RSA key, CA verified by host openssl)"
  else
    fail "re6st registry --init-network: $(cat "$tmp/init.out")"
  fi
  port=$(free_port)
  mkdir -p "$tmp/run" "$tmp/node"
  (cd "$tmp" && exec "${reg_run[@]}" registry --port "$port" -4 127.0.0.1 -6 "" --ca reg/ca.crt \
    --key reg/ca.key --dh reg/dh.pem --db reg/registry.db -l reg/registry.log -r run \
    --anonymous-prefix-length 16 >registry.out 2>&1) &
  pid=$!
  local i
  for i in $(seq 60); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.5
  done
  set +e
  out=$(cd "$tmp" && timeout 120 "${run[@]}" conf --registry "http://127.0.0.1:$port/" --anonymous --dir node 2>&1)
  rc=$?
  set -e
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [ $rc = 0 ] && openssl verify -CAfile "$tmp/node/ca.crt" "$tmp/node/cert.crt" >/dev/null 2>&1; then
    pass "runs: registry + re6st conf --anonymous: $(grep -o 'Your subnet: .*' <<<"$out"), certificate verified by host openssl"
  else
    fail "registry + conf: status $rc: $out; registry: $(cat "$tmp/registry.out")"
  fi
  rm -rf "$tmp"
}

for t in "${TARGETS[@]}"; do
  check_one "$t"
done
if [ $FAILED = 0 ]; then echo "cross/check.sh: all checks passed"; else echo "cross/check.sh: FAILED" >&2; exit 1; fi
