#!/usr/bin/env bash
# Boots a firmware image under QEMU and checks it provisions itself.
#
#   qemu-tests/smoke.sh [BOARD]       (make test-image BOARD=qemu-x86_64)
#
# Needs root (network namespace, tap). In a namespace of its own, a tap
# device with 198.18.200.1/24 and our registry (target/debug/re6st, or
# $RE6ST_HOST_BIN) listening there; QEMU in that namespace boots
# target/images/BOARD/ (a fresh copy of firmware.img as the disk: boot
# environment, slots a and b, data). A python driver on the serial console
# (qemu-tests/console.py; QEMU waits for it, so its connection is
# power-on) checks each boot:
#   cold      profile on the kernel command line (static WAN 198.18.200.2/24,
#             registry, CA fingerprint, service.console=/bin/sh), blank
#             data partition: slot a, formatted, provisioned, node running;
#   warm      same disk, profile from QEMU fw_cfg (opt/re6st/profile): no
#             formatting, no new certificate; then `re6st init upgrade`
#             with the same image and its signed manifest fetched over HTTP
#             (busybox wget) into slot b, which reboots;
#   trial     slot b on trial, confirmed by init once the router is in the
#             overlay (a tunnel to the registry's node, which runs in the
#             namespace, and a babel route to it); then an upgrade of slot
#             a to an image whose init exits at once;
#   broken    slot a on trial: the kernel panics and reboots (panic=5);
#   fallback  the initramfs falls back to slot b and records the failure;
#             then upgrades that must be refused with slot a untouched (an
#             image for another board, unsigned, signed by another key,
#             truncated), then an upgrade of slot a to an image whose node
#             runs but cannot reach the overlay (its openvpn exits at once);
#   isolated  slot a on trial, its node running without a tunnel: never
#             confirmed; init reboots at the trial deadline (profile key
#             upgrade.deadline = SMOKE_TRIAL_DEADLINE, default half the
#             boot timeout: 120 s on qemu-x86_64);
#   rolledback the initramfs falls back to slot b again;
#   rtc       a fresh disk again, the guest's RTC at 1970-01-01 (-rtc
#             base=...): the kernel starts in 1970, init must take the
#             time from the network (the registry's HTTP Date: the profile
#             has no NTP server), provision, and end with the guest's
#             `date +%s` within SMOKE_CLOCK_TOLERANCE s (default 5) of the
#             host's.
# With SMOKE_OVERLAY=1 (`make bench` sets it), the cold and warm boots also
# wait for init's `overlay reached:` line (the router's node has an
# established tunnel and a babel route to the registry's node: the trial's
# test) and time it from power-on; the warm boot is then the reboot of a
# provisioned router: power-on -> kernel -> init -> overlay in result.txt.
# Every boot but `broken` and `isolated` ends with `re6st init status` (milestone
# provisioned, re6st-node running, the slot line) and a poweroff or an
# upgrade's reboot (QEMU runs with -no-reboot, so each boot is one QEMU).
#
# Environment: SMOKE_TIMEOUT (s, per boot; default the board's
# SMOKE_TIMEOUT_DEFAULT, else 240: TCG boards are slower), SMOKE_ACCEL
# (auto | kvm | tcg; auto = the board's QEMU_ACCEL, falling back to TCG when
# the kernel prints nothing within SMOKE_KVM_GRACE s, default 20, under
# KVM), SMOKE_AB=0 (cold and warm boots only), SMOKE_OVERLAY=1 (see above;
# default 0: under TCG the overlay takes a minute or more), SMOKE_HELLO=S
# (the network's babel hello interval; default the registry's, 15 s),
# SMOKE_KEEP=1 (keep the work
# directory), SMOKE_RTC=0 (no rtc boot), SMOKE_RTC=only (the rtc boot
# alone), QEMU_MEM (MiB of guest RAM; default the board's).
# Where later boots get the profile: QEMU fw_cfg; boards with QEMU_FW_CFG=0
# (no fw_cfg device or driver) the kernel command line again; boards with
# SMOKE_CONFIG_DISK=1 (Malta: QEMU's boot loader there cuts the command line
# at 256 bytes) a second disk for every boot (ext4 with /re6st-profile,
# init's config partition, /dev/vdb) and only re6st.config=/dev/vdb on the
# command line.
# Boards without QEMU_SYSTEM (real hardware, e.g. rpi4) are refused.
# Logs: target/images/BOARD/smoke/ (console-PHASE.log, registry.log,
# result.txt).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BOARD=${1:-${BOARD:-qemu-x86_64}}
[ -f "$ROOT/board/$BOARD/board.conf" ] || { echo "smoke[$BOARD]: FAIL: no board/$BOARD/board.conf" >&2; exit 2; }
# QEMU_MEM from the environment wins over the board's.
MEM_WANTED=${QEMU_MEM:-}
# shellcheck source=/dev/null
. "$ROOT/board/$BOARD/board.conf"
QEMU_MEM=${MEM_WANTED:-${QEMU_MEM:-256}}
if [ -z "${QEMU_SYSTEM:-}" ]; then
  echo "smoke[$BOARD]: board $BOARD is real hardware (no QEMU_SYSTEM in board/$BOARD/board.conf): no QEMU smoke test; see board/$BOARD/README.md" >&2
  exit 2
fi
IMG=$ROOT/target/images/$BOARD
TIMEOUT=${SMOKE_TIMEOUT:-${SMOKE_TIMEOUT_DEFAULT:-240}}
ACCEL=${SMOKE_ACCEL:-auto}
KVM_GRACE=${SMOKE_KVM_GRACE:-20}
# SMOKE_AB=0: only the cold and warm boots, no A/B upgrade phases.
AB=${SMOKE_AB:-1}
# SMOKE_OVERLAY=1: the cold and warm boots wait for the overlay, timed.
OVERLAY=${SMOKE_OVERLAY:-0}
# SMOKE_RTC=0: no boot with the RTC at 1970.
RTC=${SMOKE_RTC:-1}
CLOCK_TOLERANCE=${SMOKE_CLOCK_TOLERANCE:-5}
HOSTBIN=${RE6ST_HOST_BIN:-$ROOT/target/debug/re6st}
LOGDIR=$IMG/smoke
log() { echo "smoke[$BOARD]: $*" >&2; }
die() { echo "smoke[$BOARD]: FAIL: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (ip netns, tap)"
for f in rootfs.squashfs vmlinuz initramfs.cpio.xz firmware.img cmdline; do
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
REGNODE_PID=
HTTP_PID=
cleanup() {
  local rc=$?
  set +e
  for p in $QEMU_PID $REGNODE_PID $REG_PID $HTTP_PID; do kill "$p" 2>/dev/null; done
  sleep 0.3
  # The node stops its babeld and OpenVPN first: give it a few seconds.
  for _ in $(seq 30); do [ -n "$REGNODE_PID" ] && kill -0 "$REGNODE_PID" 2>/dev/null || break; sleep 0.1; done
  for p in $QEMU_PID $REGNODE_PID $REG_PID $HTTP_PID; do kill -9 "$p" 2>/dev/null; done
  # Anything else still in the namespace (ours only).
  for p in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
  ip netns del "$NS" 2>/dev/null
  mkdir -p "$LOGDIR"
  cp "$WORK"/console-*.log "$WORK"/registry.log "$WORK"/regnode.log "$WORK"/result*.txt "$WORK"/qemu.err "$WORK"/profile "$LOGDIR/" 2>/dev/null
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
REGNODE=$WORK/regnode
"$HOSTBIN" registry --init-network 2001:db8:42::/48 --dir "$REG" >/dev/null
mkdir -p "$REGNODE/run"
ip netns exec "$NS" "$HOSTBIN" registry --port 9080 -4 198.18.200.1 -6 "" \
  --ca "$REG/ca.crt" --key "$REG/ca.key" --dh "$REG/dh.pem" --db "$REG/registry.db" \
  -l "$WORK/registry.log" -r "$REGNODE/run" --anonymous-prefix-length 16 \
  ${SMOKE_HELLO:+--hello "$SMOKE_HELLO"} >"$WORK/registry.out" 2>&1 &
REG_PID=$!
for _ in $(seq 50); do
  ip netns exec "$NS" bash -c 'exec 3<>/dev/tcp/198.18.200.1/9080' 2>/dev/null && break
  kill -0 $REG_PID 2>/dev/null || { cat "$WORK/registry.out" >&2; die "registry exited"; }
  sleep 0.2
done
FP=$(openssl x509 -in "$REG/ca.crt" -noout -fingerprint -sha256 | sed 's/.*=//; s/://g' | tr 'A-F' 'a-f')
# The registry's node: the peer a router must reach for a slot on trial to
# be confirmed.
(cd "$REGNODE" && ip netns exec "$NS" "$HOSTBIN" conf --registry http://198.18.200.1:9080/ \
  --anonymous --dir "$REGNODE" >"$WORK/regnode-conf.out" 2>&1) ||
  { cat "$WORK/regnode-conf.out" >&2; die "re6st conf for the registry's node"; }
(cd "$REGNODE" && exec ip netns exec "$NS" "$HOSTBIN" node @"$REGNODE/re6stnet.conf" \
  --ca "$REGNODE/ca.crt" --cert "$REGNODE/cert.crt" --key "$REGNODE/cert.key" \
  -s "$REGNODE/state" -r "$REGNODE/run" -l "$WORK/regnode.log" --ip 198.18.200.1 \
  >"$WORK/regnode.out" 2>&1) &
REGNODE_PID=$!
log "registry on 198.18.200.1:9080, CA sha256:$FP, with its node"

# --- QEMU ---------------------------------------------------------------
# The image's own kernel command line (re6st_disk=, panic=, console=).
BASE_CMDLINE=$(cat "$IMG/cmdline")
# Half a boot's timeout (120 s on qemu-x86_64, where a good slot was
# confirmed 70 s after init started on a loaded host; more on the slow TCG
# boards), capped by the profile key's 3600.
TRIAL_DEADLINE=${SMOKE_TRIAL_DEADLINE:-$(( TIMEOUT / 2 < 3600 ? TIMEOUT / 2 : 3600 ))}
PROFILE_KEYS="registry=http://198.18.200.1:9080/ fingerprint=sha256:$FP
wan=${WAN_IF:-eth0} wan.mode=static wan.address=198.18.200.2/24
wan.gateway=198.18.200.1 service.console=/bin/sh upgrade.deadline=$TRIAL_DEADLINE"
# Cold boot: profile on the kernel command line, blank data partition.
CMDLINE="$BASE_CMDLINE $(for k in $PROFILE_KEYS; do printf 're6st.%s ' "$k"; done)"
CMDLINE=${CMDLINE% }
# Later boots: the same disk; the profile from QEMU fw_cfg
# (opt/re6st/profile; qemu_fw_cfg is loaded by the initramfs).
for k in $PROFILE_KEYS; do echo "${k%%=*} = ${k#*=}"; done > "$WORK/profile"
cp --sparse=always "$IMG/firmware.img" "$WORK/disk.img"
COLD_CMDLINE=$CMDLINE LATER_CMDLINE=$BASE_CMDLINE
LATER_EXTRA=(-fw_cfg "name=opt/re6st/profile,file=$WORK/profile")
LATER_SOURCE='QEMU fw_cfg profile'
COLD_WHERE="the kernel command line" LATER_WHERE="QEMU fw_cfg"
CONFIG_DISK=()
if [ "${SMOKE_CONFIG_DISK:-0}" = 1 ]; then
  # The profile on a config partition (ext4, read by init before it loads
  # modules: the board's initramfs must load ext4), the second disk.
  mkdir -p "$WORK/config"
  cp "$WORK/profile" "$WORK/config/re6st-profile"
  mkfs.ext4 -q -F -L re6st-config -d "$WORK/config" "$WORK/config.img" 4M >/dev/null
  CONFIG_DISK=(-drive "file=$WORK/config.img,if=none,id=config,format=raw,readonly=on"
    -device "${QEMU_BLK_DEVICE:-virtio-blk-pci},drive=config")
  COLD_CMDLINE="$BASE_CMDLINE re6st.config=/dev/vdb" LATER_CMDLINE=$COLD_CMDLINE
  LATER_EXTRA=() LATER_SOURCE='config partition profile'
  COLD_WHERE="the config disk /dev/vdb" LATER_WHERE=$COLD_WHERE
elif [ "${QEMU_FW_CFG:-1}" = 0 ]; then
  # No fw_cfg on this board: the profile on the command line again.
  LATER_CMDLINE=$CMDLINE LATER_EXTRA=() LATER_SOURCE=
  LATER_WHERE="the kernel command line (no fw_cfg on this board)"
fi

# A/B upgrades: images and their signed manifests served over HTTP from
# the namespace. Test images are signed with the build's key (that of the
# image under test: scripts/sign-image.sh), but one, with another key.
if [ "$AB" = 1 ]; then
  [ -f "$IMG/rootfs.squashfs.manifest" ] || die "no $IMG/rootfs.squashfs.manifest (make image BOARD=$BOARD)"
  [ -d "$IMG/work/root" ] || die "no $IMG/work/root (make image BOARD=$BOARD)"
  ARCH_OF_IMAGE=$(sed -n 's/^arch=//p' "$IMG/rootfs.squashfs.manifest")
  mkdir -p "$WORK/www"
  cp "$IMG/rootfs.squashfs" "$WORK/www/good.squashfs"
  cp "$IMG/rootfs.squashfs.manifest" "$WORK/www/good.squashfs.manifest"
  GOOD_SHA=$(sha256sum "$WORK/www/good.squashfs" | cut -d' ' -f1)
  # variant NAME: a copy of the image's root to change, then squashed
  # (compressed as the board's images are: the router kernels read xz
  # only) and signed.
  variant_root() { rm -rf "$WORK/$1-root"; cp -a "$IMG/work/root" "$WORK/$1-root"; }
  variant_squash() {
    # shellcheck disable=SC2086
    mksquashfs "$WORK/$1-root" "$WORK/www/$1.squashfs" -all-root -noappend -quiet -no-progress ${SQUASHFS_COMP:--comp xz} >/dev/null
    rm -rf "$WORK/$1-root"
    bash "$ROOT/scripts/sign-image.sh" "$WORK/www/$1.squashfs" "$BOARD" "$ARCH_OF_IMAGE" "smoke $1"
  }
  # A root filesystem that passes every check of `re6st init upgrade` but
  # whose init dies at once: the kernel panics (panic=5), reboots, and the
  # initramfs must fall back.
  variant_root broken
  rm -f "$WORK/broken-root/sbin/init"
  printf '#!/bin/sh\necho "broken init: exiting"\nexit 1\n' > "$WORK/broken-root/sbin/init"
  chmod 755 "$WORK/broken-root/sbin/init"
  variant_squash broken
  BROKEN_SHA=$(sha256sum "$WORK/www/broken.squashfs" | cut -d' ' -f1)
  # One whose init, node and babeld run but whose OpenVPN cannot start:
  # never in the overlay (the old check, "the node runs", confirmed it).
  variant_root isolated
  rm -f "$WORK/isolated-root/usr/sbin/openvpn"
  printf '#!/bin/sh\necho "openvpn: broken in this image" >&2\nexit 1\n' > "$WORK/isolated-root/usr/sbin/openvpn"
  chmod 755 "$WORK/isolated-root/usr/sbin/openvpn"
  variant_squash isolated
  # Manifests of the good image that must be refused.
  cp "$WORK/www/good.squashfs" "$WORK/foreign.squashfs"
  bash "$ROOT/scripts/sign-image.sh" "$WORK/foreign.squashfs" qemu-aarch64-virt arm64 "smoke foreign"
  mv "$WORK/foreign.squashfs.manifest" "$WORK/www/foreign.manifest"
  grep -v '^signature=' "$WORK/www/good.squashfs.manifest" > "$WORK/www/unsigned.manifest"
  cp "$WORK/www/good.squashfs" "$WORK/otherkey.squashfs"
  RE6ST_SIGNING_DIR=$WORK/otherkey bash "$ROOT/scripts/sign-image.sh" "$WORK/otherkey.squashfs" "$BOARD" "$ARCH_OF_IMAGE" "smoke other key" 2>/dev/null
  mv "$WORK/otherkey.squashfs.manifest" "$WORK/www/otherkey.manifest"
  rm -f "$WORK/foreign.squashfs" "$WORK/otherkey.squashfs"
  head -c -4096 "$WORK/www/good.squashfs" > "$WORK/www/truncated.squashfs"
  # Run on the router: each refused, slot a (the inactive one) untouched;
  # then the isolated image into slot a, which reboots. The node logs on
  # the console too: the checks of this output are not anchored to lines.
  cat > "$WORK/www/refusals.sh" <<'SH'
U=http://198.18.200.1:8000
dev=$(sed -n 's/^a=//p' /run/re6st-init/boot)
before=$(head -c 16777216 "$dev" | sha256sum)
cd /tmp
for m in foreign unsigned otherkey; do wget -q -O $m.manifest $U/$m.manifest; done
wget -q -O good.manifest $U/good.squashfs.manifest
wget -q -O truncated.squashfs $U/truncated.squashfs
for m in foreign unsigned otherkey; do
  echo "REFUSAL $m"
  wget -q -O - $U/good.squashfs | re6st init upgrade --manifest $m.manifest -
done
echo "REFUSAL truncated"
re6st init upgrade --manifest good.manifest truncated.squashfs
rm -f truncated.squashfs
after=$(head -c 16777216 "$dev" | sha256sum)
[ "$before" = "$after" ] && echo "SLOT-A-UNTOUCHED"
re6st init status | grep '^slot:'
wget -q -O isolated.manifest $U/isolated.squashfs.manifest
wget -q -O - $U/isolated.squashfs | re6st init upgrade --manifest isolated.manifest -
SH
  ip netns exec "$NS" python3 -m http.server 8000 --bind 198.18.200.1 --directory "$WORK/www" \
    >"$WORK/http.log" 2>&1 &
  HTTP_PID=$!
  upgrade_cmd() { # NAME
    echo "wget -q -O /tmp/$1.manifest http://198.18.200.1:8000/$1.squashfs.manifest && wget -q -O - http://198.18.200.1:8000/$1.squashfs | re6st init upgrade --manifest /tmp/$1.manifest -"
  }
fi

# run_qemu ACCEL PHASE: boots once; the driver's verdict goes to
# result-PHASE.txt. Exit codes: 0 pass, 1 fail, 3 no kernel output within
# the KVM grace time.
run_qemu() {
  local accel=$1 phase=$2 accel_opts rc cmdline extra=() checks=()
  case $accel in
    kvm) accel_opts=(-accel kvm -cpu host) ;;
    tcg) accel_opts=(-accel tcg) ;;
  esac
  cmdline=$LATER_CMDLINE
  extra=("${LATER_EXTRA[@]}")
  local source=()
  [ -z "$LATER_SOURCE" ] || source=(--expect "profile sources: .*$LATER_SOURCE")
  case $phase in
    cold)
      cmdline=$COLD_CMDLINE extra=()
      checks=(--expect 'initramfs: slot a' --expect 'data partition: Format'
        --expect 'data in /data \(persistent\)' --status-expect '^slot: booted a, active a$')
      [ ${#CONFIG_DISK[@]} = 0 ] || checks+=(--expect 'profile sources: .*config partition profile')
      [ "$OVERLAY" = 1 ] && checks+=(--overlay) ;;
    warm)
      checks=(--expect 'initramfs: slot a' "${source[@]}"
        --expect 'data in /data \(persistent\)' --forbid 'data partition: Format'
        --forbid 'provisioned by http' --status-expect '^slot: booted a, active a$')
      [ "$OVERLAY" = 1 ] && checks+=(--overlay)
      [ "$AB" = 1 ] && checks+=(--shell "$(upgrade_cmd good)"
        --shell-expect 'signed manifest verified' --shell-expect "sha256 $GOOD_SHA verified"
        --shell-expect 'rebooting into slot b') ;;
    trial)
      checks=(--expect 'initramfs: slot b' --expect 'slot b is on trial'
        --wait-for "slot b confirmed \\(an established tunnel and a route to the registry's node\\)"
        --forbid 'data partition: Format'
        --status-expect '^slot: booted b, active b$'
        --shell "$(upgrade_cmd broken)"
        --shell-expect "sha256 $BROKEN_SHA verified" --shell-expect 'rebooting into slot a') ;;
    broken)
      checks=(--mode exit --expect 'initramfs: slot a' --expect 'broken init: exiting'
        --expect 'Kernel panic') ;;
    fallback)
      checks=(--expect 'initramfs: slot b' --forbid 'data partition: Format'
        --status-expect '^slot: booted b, active b, last upgrade to a did not come up$')
      [ "$AB" = 1 ] && checks+=(
        --shell "wget -q -O /tmp/refusals.sh http://198.18.200.1:8000/refusals.sh && sh /tmp/refusals.sh"
        --shell-expect 'upgrade: the image is for board qemu-aarch64-virt, this router is [^;]*; nothing written'
        --shell-expect 'upgrade: unsigned image: the manifest has no signature= line; nothing written'
        --shell-expect 'upgrade: the manifest.s signature does not verify [^;]*signed by another key, or altered; nothing written'
        --shell-expect 'upgrade: truncated image: [0-9]+ bytes, its manifest says [0-9]+; nothing written'
        --shell-expect 'SLOT-A-UNTOUCHED'
        --shell-expect 'slot: booted b, active b, last upgrade to a did not come up'
        --shell-expect 'rebooting into slot a') ;;
    isolated)
      checks=(--mode exit --expect 'initramfs: slot a' --expect 'slot a is on trial'
        --expect 'started re6st-node'
        --expect 'slot a on trial did not join the overlay in time \(no established tunnel\)'
        --forbid 'slot a confirmed') ;;
    rolledback)
      checks=(--expect 'initramfs: slot b' --forbid 'data partition: Format'
        --status-expect '^slot: booted b, active b, last upgrade to a did not come up$') ;;
    rtc)
      # The kernel read 1970 from the RTC (else the phase proves nothing),
      # and init stepped the clock from the registry's Date.
      cmdline=$COLD_CMDLINE extra=(-rtc base=1970-01-01T00:00:00)
      checks=(--expect 'setting system clock to 1970-01-01' --expect 'data partition: Format'
        --expect 'clock set to .* \(HttpDate\)' --clock-tolerance "$CLOCK_TOLERANCE") ;;
  esac
  rm -f "$WORK/console.sock"
  # shellcheck disable=SC2086
  ip netns exec "$NS" "$QEMU_SYSTEM" $QEMU_MACHINE "${accel_opts[@]}" -m "${QEMU_MEM:-256}" \
    -display none -monitor none -no-reboot \
    -chardev "socket,id=con,path=$WORK/console.sock,server=on,wait=on" -serial chardev:con \
    -kernel "$IMG/vmlinuz" -initrd "$IMG/initramfs.cpio.xz" -append "$cmdline" "${extra[@]}" \
    -drive "file=$WORK/disk.img,if=none,id=disk,format=raw" -device "${QEMU_BLK_DEVICE:-virtio-blk-pci},drive=disk" \
    "${CONFIG_DISK[@]}" \
    -netdev "tap,id=n0,ifname=$TAP,script=no,downscript=no" -device "${QEMU_NET_DEVICE:-virtio-net-pci},netdev=n0" \
    2>"$WORK/qemu.err" &
  QEMU_PID=$!
  for _ in $(seq 100); do [ -S "$WORK/console.sock" ] && break; sleep 0.1; done
  [ -S "$WORK/console.sock" ] || { cat "$WORK/qemu.err" >&2; die "QEMU did not start"; }
  rc=0
  python3 "$ROOT/qemu-tests/console.py" --socket "$WORK/console.sock" --log "$WORK/console-$phase.log" \
    --timeout "$((TIMEOUT + $( [ "$phase" = isolated ] && echo "$TRIAL_DEADLINE" || echo 0)))" --qemu-pid "$QEMU_PID" --result "$WORK/result-$phase.txt" "${checks[@]}" \
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
rc=0
if [ "$RTC" = only ]; then
  log "rtc boot only ($want)"
  PHASES=(rtc)
  run_qemu "$want" rtc || rc=$?
else
  log "cold boot ($want): $CMDLINE"
  run_qemu "$want" cold || rc=$?
fi
if [ $rc = 3 ] && [ "$RTC" != only ]; then
  log "KVM: no kernel output within ${KVM_GRACE}s (nested KVM stall?); retrying with TCG"
  echo "kvm: no kernel output within ${KVM_GRACE}s, fell back to TCG" > "$WORK/kvm-fallback"
  mv "$WORK/console-cold.log" "$WORK/console-kvm.log" 2>/dev/null || true
  cp --sparse=always "$IMG/firmware.img" "$WORK/disk.img"
  want=tcg
  rc=0
  run_qemu tcg cold || rc=$?
fi
[ "$RTC" = only ] || PHASES=(cold)
describe() {
  case $1 in
    cold) echo "cold boot (blank data partition, profile from $COLD_WHERE)" ;;
    warm) echo "warm boot (same disk, provisioned: a reboot; profile from $LATER_WHERE)$([ "$AB" = 1 ] && echo ", then upgrade to slot b")" ;;
    trial) echo "slot b on trial: confirmed, then upgrade to a broken image in slot a" ;;
    broken) echo "slot a on trial: its init dies, the kernel panics and reboots" ;;
    fallback) echo "fallback to slot b, the failed upgrade recorded$([ "$AB" = 1 ] && echo "; foreign, unsigned, other key's and truncated images refused; upgrade to an image that cannot reach the overlay")" ;;
    isolated) echo "slot a on trial, its node running but out of the overlay: not confirmed, reboot at the ${TRIAL_DEADLINE} s deadline" ;;
    rolledback) echo "back on slot b, the failed upgrade recorded" ;;
    rtc) echo "fresh disk, RTC at 1970-01-01: clock from the registry's Date, provisioned" ;;
  esac
}
if [ $rc = 0 ] && [ "$RTC" != only ]; then
  next=(warm)
  [ "$AB" = 1 ] && next+=(trial broken fallback isolated rolledback)
  for phase in "${next[@]}"; do
    log "$phase boot ($want): $(describe "$phase")"
    PHASES+=("$phase")
    run_qemu "$want" "$phase" || { rc=$?; break; }
  done
fi
if [ $rc = 0 ] && [ "$RTC" = 1 ]; then
  log "rtc boot ($want): $(describe rtc)"
  PHASES+=(rtc)
  cp --sparse=always "$IMG/firmware.img" "$WORK/disk.img"
  run_qemu "$want" rtc || rc=$?
fi
{
  for phase in "${PHASES[@]}"; do
    echo "== $(describe "$phase")"
    cat "$WORK/result-$phase.txt" 2>/dev/null
  done
  echo "accelerator: $want"
  cat "$WORK/kvm-fallback" 2>/dev/null || true
} > "$WORK/result.txt"
cat "$WORK/result.txt" >&2
[ $rc = 0 ] || die "${PHASES[-1]} boot; see $LOGDIR/console-${PHASES[-1]}.log"
