#!/usr/bin/env bash
# Boots a firmware image under QEMU and checks it provisions itself.
#
#   qemu-tests/smoke.sh [BOARD]       (make test-image BOARD=qemu-x86_64)
#
# Needs root (network namespace, tap). In a namespace of its own, a tap
# device with 198.18.200.1/24 and our registry (target/debug/re6st, or
# $RE6ST_HOST_BIN) listening there; QEMU in that namespace boots
# target/images/BOARD/ (squashfs as vda, a fresh copy of data.img as vdb)
# with the profile on the kernel command line (static WAN 198.18.200.2/24,
# registry, CA fingerprint, data=/dev/vdb, service.console=/bin/sh). A
# python driver on the serial console (a unix socket; QEMU waits for it, so
# its connection is power-on) waits for the `provisioned` milestone, runs
# `re6st init status` (expects `provisioned` and re6st-node running), then
# `re6st init poweroff` and expects QEMU to exit.
#
# Environment: SMOKE_TIMEOUT (s, whole boot; default the board's
# SMOKE_TIMEOUT_DEFAULT, else 240: TCG boards are slower), SMOKE_ACCEL
# (auto | kvm | tcg; auto = the board's QEMU_ACCEL, falling back to TCG when
# the kernel prints nothing within SMOKE_KVM_GRACE s, default 20, under
# KVM), SMOKE_KEEP=1 (keep the work directory).
# Then a warm boot from the same data disk with the profile given through
# QEMU fw_cfg (opt/re6st/profile) instead: no formatting, no new
# certificate, same checks. Boards with QEMU_FW_CFG=0 (no fw_cfg device or
# no qemu_fw_cfg driver in the kernel) get the profile on the kernel command
# line again for the warm boot. Boards with SMOKE_CONFIG_DISK=1 (Malta:
# QEMU's boot loader there cuts the command line at 256 bytes) get it on a
# third disk (ext4 with /re6st-profile, init's config partition, as
# /dev/vdc) for both boots, and only re6st.config=/dev/vdc on the command
# line.
# Boards without QEMU_SYSTEM (real hardware, e.g. rpi4) are refused.
# Logs: target/images/BOARD/smoke/ (console-{cold,warm}.log, registry.log,
# result.txt).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BOARD=${1:-${BOARD:-qemu-x86_64}}
[ -f "$ROOT/board/$BOARD/board.conf" ] || { echo "smoke[$BOARD]: FAIL: no board/$BOARD/board.conf" >&2; exit 2; }
# shellcheck source=/dev/null
. "$ROOT/board/$BOARD/board.conf"
if [ -z "${QEMU_SYSTEM:-}" ]; then
  echo "smoke[$BOARD]: board $BOARD is real hardware (no QEMU_SYSTEM in board/$BOARD/board.conf): no QEMU smoke test; see board/$BOARD/README.md" >&2
  exit 2
fi
IMG=$ROOT/target/images/$BOARD
TIMEOUT=${SMOKE_TIMEOUT:-${SMOKE_TIMEOUT_DEFAULT:-240}}
ACCEL=${SMOKE_ACCEL:-auto}
KVM_GRACE=${SMOKE_KVM_GRACE:-20}
HOSTBIN=${RE6ST_HOST_BIN:-$ROOT/target/debug/re6st}
LOGDIR=$IMG/smoke
log() { echo "smoke[$BOARD]: $*" >&2; }
die() { echo "smoke[$BOARD]: FAIL: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (ip netns, tap)"
for f in rootfs.squashfs vmlinuz data.img; do
  [ -f "$IMG/$f" ] || die "no $IMG/$f: make image BOARD=$BOARD"
done
if [ ! -x "$HOSTBIN" ]; then
  log "building the host binary for the registry"
  (cd "$ROOT" && cargo build -q -p re6st --bin re6st)
fi
command -v "$QEMU_SYSTEM" >/dev/null || die "no $QEMU_SYSTEM (apt-get install -t bookworm-backports qemu-system-x86 / qemu-system-arm / qemu-system-mips)"

NS=re6st-smoke-$$
TAP=tap-smoke0
WORK=$(mktemp -d /tmp/re6st-smoke.XXXXXX)
QEMU_PID=
REG_PID=
cleanup() {
  local rc=$?
  set +e
  for p in $QEMU_PID $REG_PID; do kill "$p" 2>/dev/null; done
  sleep 0.3
  for p in $QEMU_PID $REG_PID; do kill -9 "$p" 2>/dev/null; done
  # Anything else still in the namespace (ours only).
  for p in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
  ip netns del "$NS" 2>/dev/null
  mkdir -p "$LOGDIR"
  cp "$WORK"/console-*.log "$WORK"/registry.log "$WORK"/result*.txt "$WORK"/qemu.err "$WORK"/profile "$LOGDIR/" 2>/dev/null
  [ "${SMOKE_KEEP:-0}" = 1 ] && log "work directory kept: $WORK" || rm -rf "$WORK"
  if [ $rc = 0 ]; then log "PASS (logs in $LOGDIR)"; else log "FAIL (exit $rc; logs in $LOGDIR)"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$LOGDIR"
rm -f "$LOGDIR"/*

# --- network namespace with a tap and the registry ----------------------
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" tuntap add dev "$TAP" mode tap
ip -n "$NS" addr add 198.18.200.1/24 dev "$TAP"
ip -n "$NS" link set "$TAP" up

REG=$WORK/registry
"$HOSTBIN" registry --init-network 2001:db8:42::/48 --dir "$REG" >/dev/null
mkdir -p "$REG/run"
ip netns exec "$NS" "$HOSTBIN" registry --port 9080 -4 198.18.200.1 -6 "" \
  --ca "$REG/ca.crt" --key "$REG/ca.key" --dh "$REG/dh.pem" --db "$REG/registry.db" \
  -l "$WORK/registry.log" -r "$REG/run" --anonymous-prefix-length 16 \
  >"$WORK/registry.out" 2>&1 &
REG_PID=$!
for _ in $(seq 50); do
  ip netns exec "$NS" bash -c 'exec 3<>/dev/tcp/198.18.200.1/9080' 2>/dev/null && break
  kill -0 $REG_PID 2>/dev/null || { cat "$WORK/registry.out" >&2; die "registry exited"; }
  sleep 0.2
done
FP=$(openssl x509 -in "$REG/ca.crt" -noout -fingerprint -sha256 | sed 's/.*=//; s/://g' | tr 'A-F' 'a-f')
log "registry on 198.18.200.1:9080, CA sha256:$FP"

# --- QEMU ---------------------------------------------------------------
BASE_CMDLINE="root=${ROOT_DEVICE:-/dev/vda} ro console=${KERNEL_CONSOLE:-ttyS0}"
PROFILE_KEYS="registry=http://198.18.200.1:9080/ fingerprint=sha256:$FP
wan=${WAN_IF:-eth0} wan.mode=static wan.address=198.18.200.2/24
wan.gateway=198.18.200.1 data=${DATA_DEVICE:-/dev/vdb} service.console=/bin/sh"
# Cold boot: profile on the kernel command line, blank data disk.
CMDLINE="$BASE_CMDLINE $(for k in $PROFILE_KEYS; do printf 're6st.%s ' "$k"; done)"
CMDLINE=${CMDLINE% }
# Warm boot: the same data disk; the profile from QEMU fw_cfg
# (opt/re6st/profile; qemu_fw_cfg is loaded by the initramfs).
for k in $PROFILE_KEYS; do echo "${k%%=*} = ${k#*=}"; done > "$WORK/profile"
CONFIG_DISK=()
if [ "${SMOKE_CONFIG_DISK:-0}" = 1 ]; then
  # The profile on a config partition (ext4, read by init before it loads
  # modules: the board's initramfs must load ext4).
  mkdir -p "$WORK/config"
  cp "$WORK/profile" "$WORK/config/re6st-profile"
  mkfs.ext4 -q -F -L re6st-config -d "$WORK/config" "$WORK/config.img" 4M >/dev/null
  CONFIG_DISK=(-drive "file=$WORK/config.img,if=none,id=config,format=raw,readonly=on"
    -device "${QEMU_BLK_DEVICE:-virtio-blk-pci},drive=config")
  CMDLINE="$BASE_CMDLINE re6st.config=/dev/vdc"
fi
INITRD=()
[ -f "$IMG/initramfs.cpio.xz" ] && INITRD=(-initrd "$IMG/initramfs.cpio.xz")

# run_qemu ACCEL: boots once; prints the driver's verdict to result.txt.
# Exit codes: 0 pass, 1 fail, 3 no kernel output within the KVM grace time.
run_qemu() {
  local accel=$1 phase=${2:-cold} accel_opts rc cmdline extra=() checks=()
  case $accel in
    kvm) accel_opts=(-accel kvm -cpu host) ;;
    tcg) accel_opts=(-accel tcg) ;;
  esac
  if [ "$phase" = cold ]; then
    cp --sparse=always "$IMG/data.img" "$WORK/data.img"
    cmdline=$CMDLINE
    checks=(--expect 'data partition: Format' --expect 'data in /data \(persistent\)')
    [ ${#CONFIG_DISK[@]} = 0 ] || checks+=(--expect 'profile sources: .*config partition profile')
  elif [ ${#CONFIG_DISK[@]} -gt 0 ]; then
    # The same config disk again.
    cmdline=$CMDLINE
    checks=(--expect 'profile sources: .*config partition profile' --expect 'data in /data \(persistent\)'
      --forbid 'data partition: Format' --forbid 'provisioned by http')
  elif [ "${QEMU_FW_CFG:-1}" = 0 ]; then
    # No fw_cfg on this board: the profile on the command line again.
    cmdline=$CMDLINE
    checks=(--expect 'data in /data \(persistent\)'
      --forbid 'data partition: Format' --forbid 'provisioned by http')
  else
    cmdline=$BASE_CMDLINE
    extra=(-fw_cfg "name=opt/re6st/profile,file=$WORK/profile")
    checks=(--expect 'profile sources: .*QEMU fw_cfg profile' --expect 'data in /data \(persistent\)'
      --forbid 'data partition: Format' --forbid 'provisioned by http')
  fi
  rm -f "$WORK/console.sock"
  # shellcheck disable=SC2086
  ip netns exec "$NS" "$QEMU_SYSTEM" $QEMU_MACHINE "${accel_opts[@]}" -m "${QEMU_MEM:-256}" \
    -display none -monitor none -no-reboot \
    -chardev "socket,id=con,path=$WORK/console.sock,server=on,wait=on" -serial chardev:con \
    -kernel "$IMG/vmlinuz" "${INITRD[@]}" -append "$cmdline" "${extra[@]}" \
    -drive "file=$IMG/rootfs.squashfs,if=none,id=root,format=raw,readonly=on" -device "${QEMU_BLK_DEVICE:-virtio-blk-pci},drive=root" \
    -drive "file=$WORK/data.img,if=none,id=data,format=raw" -device "${QEMU_BLK_DEVICE:-virtio-blk-pci},drive=data" \
    "${CONFIG_DISK[@]}" \
    -netdev "tap,id=n0,ifname=$TAP,script=no,downscript=no" -device "${QEMU_NET_DEVICE:-virtio-net-pci},netdev=n0" \
    2>"$WORK/qemu.err" &
  QEMU_PID=$!
  for _ in $(seq 100); do [ -S "$WORK/console.sock" ] && break; sleep 0.1; done
  [ -S "$WORK/console.sock" ] || { cat "$WORK/qemu.err" >&2; die "QEMU did not start"; }
  rc=0
  python3 "$ROOT/qemu-tests/console.py" --socket "$WORK/console.sock" --log "$WORK/console-$phase.log" \
    --timeout "$TIMEOUT" --qemu-pid "$QEMU_PID" --result "$WORK/result-$phase.txt" "${checks[@]}" \
    $( [ "$accel" = kvm ] && [ "$ACCEL" = auto ] && echo --silence-grace "$KVM_GRACE" ) || rc=$?
  if [ $rc != 0 ]; then
    kill "$QEMU_PID" 2>/dev/null; sleep 0.3; kill -9 "$QEMU_PID" 2>/dev/null || true
  fi
  wait "$QEMU_PID" 2>/dev/null || true
  QEMU_PID=
  return $rc
}

want=${QEMU_ACCEL:-kvm}
[ "$ACCEL" = auto ] || want=$ACCEL
if [ "$want" = kvm ] && [ ! -w /dev/kvm ]; then
  [ "$ACCEL" = auto ] || die "no usable /dev/kvm"
  log "no usable /dev/kvm: TCG"; want=tcg
fi
# /dev/kvm backed by kvm_pvm (nested KVM without VMX/SVM, e.g. in a cloud
# VM) runs only PVM-enabled guest kernels: Debian's kernel spins in its
# decompressor. Don't wait for the stall there.
if [ "$want" = kvm ] && [ "$ACCEL" = auto ] && [ -d /sys/module/kvm_pvm ] &&
   [ ! -d /sys/module/kvm_intel ] && [ ! -d /sys/module/kvm_amd ]; then
  log "/dev/kvm is kvm_pvm (no VMX/SVM): Debian's kernel cannot run on it; TCG"
  want=tcg
  echo "kvm: /dev/kvm is kvm_pvm (PVM guests only), used TCG" > "$WORK/kvm-fallback"
fi
log "cold boot ($want): $CMDLINE"
rc=0
run_qemu "$want" cold || rc=$?
if [ $rc = 3 ]; then
  log "KVM: no kernel output within ${KVM_GRACE}s (nested KVM stall?); retrying with TCG"
  echo "kvm: no kernel output within ${KVM_GRACE}s, fell back to TCG" > "$WORK/kvm-fallback"
  mv "$WORK/console-cold.log" "$WORK/console-kvm.log" 2>/dev/null || true
  want=tcg
  rc=0
  run_qemu tcg cold || rc=$?
fi
[ $rc = 0 ] || die "cold boot; see $LOGDIR/console-cold.log"
if [ ${#CONFIG_DISK[@]} -gt 0 ]; then
  log "warm boot ($want): same data disk, profile from the config disk again"
elif [ "${QEMU_FW_CFG:-1}" = 0 ]; then
  log "warm boot ($want): same data disk, profile on the kernel command line again (board has no fw_cfg)"
else
  log "warm boot ($want): same data disk, profile from fw_cfg, kernel command line: $BASE_CMDLINE"
fi
run_qemu "$want" warm || rc=$?
{
  if [ ${#CONFIG_DISK[@]} -gt 0 ]; then
    echo "== cold boot (blank data disk, profile from the config disk /dev/vdc)"
  else
    echo "== cold boot (blank data disk, profile on the kernel command line)"
  fi
  cat "$WORK/result-cold.txt"
  if [ ${#CONFIG_DISK[@]} -gt 0 ]; then
    echo "== warm boot (same data disk, profile from the config disk /dev/vdc)"
  elif [ "${QEMU_FW_CFG:-1}" = 0 ]; then
    echo "== warm boot (same data disk, profile on the kernel command line: no fw_cfg on this board)"
  else
    echo "== warm boot (same data disk, profile from QEMU fw_cfg)"
  fi
  cat "$WORK/result-warm.txt" 2>/dev/null
  echo "accelerator: $want"
  cat "$WORK/kvm-fallback" 2>/dev/null || true
} > "$WORK/result.txt"
cat "$WORK/result.txt" >&2
[ $rc = 0 ] || die "warm boot; see $LOGDIR/console-warm.log"
