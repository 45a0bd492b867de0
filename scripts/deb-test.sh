#!/usr/bin/env bash
# `make deb-test` (root): checks target/debian/re6st_*.deb.
#  1. lintian: no error or warning (tags we carry knowingly are in
#     firmware/re6st/debian/lintian-overrides, each with its reason);
#  2. systemd-analyze verify on the installed units;
#  3. install in a clean Debian 12 root (debootstrap --variant=minbase,
#     the root cached as a tarball under target/deb-test): apt pulls
#     openvpn and babeld; the command links and the manual pages are there;
#     the registry and a node are started by running the units' ExecStart
#     lines in their WorkingDirectory (no systemd as PID 1 in a chroot), in
#     a network namespace of their own: the registry answers getCa, the
#     installed re6st-conf gets a certificate from it, the node starts from
#     the re6stnet.conf it wrote and answers re6st-ctl;
#  4. migration: an /etc/re6stnet made by upstream's re6st-conf and
#     upstream's registry (.venv), with upstream's registry.db kept there,
#     served by our installed registry (same CA, the node upstream enrolled
#     still authenticates, a new node gets another prefix) and used by our
#     installed node (upstream's re6stnet.conf, certificate and key).
# Everything it starts is stopped, mounts and the namespace removed, even
# on failure. DEB_TEST_MIRROR: the Debian mirror (default deb.debian.org).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

[ "$(id -u)" = 0 ] || { echo "deb-test: run as root (chroot, mounts, netns)" >&2; exit 1; }
DEB=$(find target/debian -maxdepth 1 -name "re6st_*.deb" -printf "%T@ %p\n" 2>/dev/null | sort -n | tail -1 | cut -d" " -f2-)
[ -n "$DEB" ] || { echo "deb-test: no target/debian/re6st_*.deb (make deb)" >&2; exit 1; }
DEB=$REPO/$DEB
UPSTREAM=$REPO/.venv/bin
[ -x "$UPSTREAM/re6st-registry" ] || { echo "deb-test: upstream re6stnet missing in .venv (make deps)" >&2; exit 1; }

MIRROR=${DEB_TEST_MIRROR:-http://deb.debian.org/debian}
WORK=$REPO/target/deb-test
CACHE=$WORK/bookworm-minbase.tar.gz
mkdir -p "$WORK/apt-archives" "$WORK/apt-lists"
ROOT=$WORK/root.$$
LOGS=$WORK/logs
NS=re6st-debtest-$$
PIDS=()
MOUNTS=()
rm -rf "$LOGS"
mkdir -p "$LOGS"

cleanup() {
  local p m
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || :; done
  for p in "${PIDS[@]}"; do
    # bounded: a process that ignores SIGTERM gets SIGKILL after 10 s
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$p" 2>/dev/null || :
  done
  # What the daemons started (babeld, openvpn) runs with our root as its
  # root: stop those too.
  for p in /proc/[0-9]*; do
    if [ "$(readlink "$p/root" 2>/dev/null)" = "$ROOT" ]; then kill -9 "${p#/proc/}" 2>/dev/null || :; fi
  done
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[i]}" 2>/dev/null || :; done
  ip netns del "$NS" 2>/dev/null || :
  [ -d "$ROOT" ] && rm -rf --one-file-system "$ROOT"
}
trap cleanup EXIT

fail() { echo "deb-test: FAIL: $*" >&2; exit 1; }
step() { echo "== deb-test: $*"; }
T0=$(date +%s)

# 1. lintian
step "lintian $(basename "$DEB")"
lintian_rc=0
lintian --fail-on error,warning --info --display-info "$DEB" > "$LOGS/lintian.txt" 2>&1 || lintian_rc=$?
cat "$LOGS/lintian.txt"
[ "$lintian_rc" = 0 ] || fail "lintian (exit $lintian_rc)"
# Info tags are shown; each one either got an override with its reason or
# is listed here: none expected.
if grep -E '^[IW]: ' "$LOGS/lintian.txt"; then fail "lintian tags above (fix them or override with a reason)"; fi

# 2. A clean Debian root, cached.
if [ ! -f "$CACHE" ]; then
  step "debootstrap --variant=minbase bookworm (cached in $CACHE)"
  tmp=$WORK/bootstrap.$$
  debootstrap --variant=minbase bookworm "$tmp" "$MIRROR" > "$LOGS/debootstrap.log" 2>&1 ||
    { tail -20 "$LOGS/debootstrap.log"; rm -rf --one-file-system "$tmp"; fail "debootstrap"; }
  tar -C "$tmp" -czf "$CACHE.part" . && mv "$CACHE.part" "$CACHE"
  rm -rf --one-file-system "$tmp"
fi
step "unpacking the clean root"
mkdir -p "$ROOT"
tar -C "$ROOT" -xzf "$CACHE"
bind() { mount --bind "$1" "$2"; MOUNTS+=("$2"); }
mount -t proc proc "$ROOT/proc"; MOUNTS+=("$ROOT/proc")
bind /dev "$ROOT/dev"
bind "$WORK/apt-archives" "$ROOT/var/cache/apt/archives"
bind "$WORK/apt-lists" "$ROOT/var/lib/apt/lists"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
echo "deb $MIRROR bookworm main" > "$ROOT/etc/apt/sources.list"
# No service starts from maintainer scripts in a chroot.
printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
cp "$DEB" "$ROOT/tmp/"

step "apt-get install ./$(basename "$DEB")"
chroot "$ROOT" apt-get update -q > "$LOGS/apt.log" 2>&1 || { tail "$LOGS/apt.log"; fail "apt-get update"; }
# With systemd and man-db, as on a Debian server (minbase has neither):
# the units are verified against it and enabled by the package's scripts,
# the manual pages found by man.
DEBIAN_FRONTEND=noninteractive chroot "$ROOT" apt-get install -y -q --no-install-recommends \
  systemd man-db "/tmp/$(basename "$DEB")" >> "$LOGS/apt.log" 2>&1 || { tail -30 "$LOGS/apt.log"; fail "apt-get install"; }
for p in openvpn babeld iproute2 re6st; do
  chroot "$ROOT" dpkg -s "$p" > /dev/null || fail "$p not installed"
done

# 3. What the package installed.
step "links, manual pages, units"
for l in /usr/sbin/re6stnet /usr/bin/re6st-conf /usr/bin/re6st-registry /usr/bin/re6st-ctl; do
  [ "$(readlink -f "$ROOT$l")" = "$ROOT/usr/bin/re6st" ] || fail "$l does not lead to /usr/bin/re6st"
done
# (grep on captured text: with pipefail, grep -q ending a pipe early fails it)
help=$(chroot "$ROOT" re6stnet --help); grep -q -- '--registry' <<< "$help" || fail "re6stnet --help"
help=$(chroot "$ROOT" re6st-ctl --help); grep -q 'status' <<< "$help" || fail "re6st-ctl --help"
for m in man1/re6st.1 man8/re6stnet.8 man1/re6st-conf.1 man1/re6st-registry.1 man1/re6st-ctl.1; do
  name=$(basename "$m"); name=${name%.*}
  found=$(chroot "$ROOT" man -w "$name") || fail "man -w $name"
  [ "$found" = "/usr/share/man/$m.gz" ] || fail "man -w $name: $found"
  # The page renders and documents the real options (re6st: its commands).
  want=--help; [ "$name" = re6st ] && want=re6st-registry
  page=$(MANWIDTH=100 chroot "$ROOT" man "$name" 2>/dev/null) || fail "man $name"
  grep -q -- "$want" <<< "$page" || fail "man $name: no $want"
done
UNITS=$ROOT/usr/lib/systemd/system
for u in re6stnet re6st-registry; do [ -f "$UNITS/$u.service" ] || fail "$u.service not installed"; done
step "systemd-analyze verify (the root's systemd)"
if ! chroot "$ROOT" systemd-analyze verify /usr/lib/systemd/system/re6stnet.service \
  /usr/lib/systemd/system/re6st-registry.service > "$LOGS/verify.txt" 2>&1 || [ -s "$LOGS/verify.txt" ]; then
  cat "$LOGS/verify.txt"
  fail "systemd-analyze verify"
fi
grep -q '^/etc/re6stnet/README$' "$ROOT/var/lib/dpkg/info/re6st.conffiles" || fail "/etc/re6stnet/README is not a conffile"
for u in re6stnet re6st-registry; do
  [ -L "$ROOT/etc/systemd/system/multi-user.target.wants/$u.service" ] || fail "$u.service not enabled"
done

# A stand-in for journald in the root: it decodes the datagrams sent to
# /run/systemd/journal/socket (journald's native protocol: KEY=VALUE lines,
# or KEY, a 64-bit little-endian length and the value) into KEY=VALUE lines.
mkdir -p "$ROOT/run/systemd/journal"
python3 -u -c '
import socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
out = open(sys.argv[2], "w")
while True:
    d, i = s.recv(1 << 20), 0
    while i < len(d):
        j = d.index(b"\n", i)
        line = d[i:j]
        if b"=" in line:
            out.write(line.decode(errors="replace") + "\n")
            i = j + 1
        else:
            n = struct.unpack("<Q", d[j + 1:j + 9])[0]
            value = d[j + 9:j + 9 + n].decode(errors="replace").replace("\n", " ")
            out.write(line.decode() + "=" + value + "\n")
            i = j + 9 + n + 1
    out.write("--\n")
    out.flush()
' "$ROOT/run/systemd/journal/socket" "$LOGS/journal.txt" &
PIDS+=($!)
for _ in $(seq 50); do [ -S "$ROOT/run/systemd/journal/socket" ] && break; sleep 0.1; done

# The services' network: a namespace with only loopback.
ip netns add "$NS"
ip -n "$NS" link set lo up
in_root() { ip netns exec "$NS" chroot "$ROOT" "$@"; }

# Runs a unit's ExecStart in its WorkingDirectory, as systemd would (with
# the StateDirectory= and LogsDirectory= it creates), in the background.
start_unit() {
  local unit=$1 exec wd
  exec=$(sed -n 's/^ExecStart=//p' "$UNITS/$unit.service")
  wd=$(sed -n 's/^WorkingDirectory=//p' "$UNITS/$unit.service")
  if [ -z "$exec" ] || [ -z "$wd" ]; then fail "$unit: no ExecStart or WorkingDirectory"; fi
  mkdir -p "$ROOT/var/lib/re6stnet" "$ROOT/var/log/re6stnet"
  echo "deb-test: $unit: cd $wd && $exec"
  local log=$LOGS/$unit.$2.log
  : > "$log"
  # As under systemd with its output to the journal: JOURNAL_STREAM names
  # the daemon's stderr (here a file; the journal is the fake one below).
  local stream
  stream=$(stat -c %d:%i "$log")
  # ip netns exec, chroot and sh all exec: $! is the daemon.
  ip netns exec "$NS" env JOURNAL_STREAM="$stream" chroot "$ROOT" /bin/sh -c "cd $wd && exec $exec" >> "$log" 2>&1 &
  PIDS+=($!)
  LAST_PID=$!
}
stop() {
  kill "$1" 2>/dev/null || :
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.2; done
  fail "pid $1 did not stop within 20 s of SIGTERM"
}

# Waits up to $1 s for the registry on loopback to answer getCa; prints it.
get_ca() {
  local end=$(($(date +%s) + $1))
  while [ "$(date +%s)" -lt "$end" ]; do
    ip netns exec "$NS" python3 -c '
import sys, urllib.request
sys.stdout.write(urllib.request.urlopen("http://127.0.0.1/getCa", timeout=5).read().decode())' 2>/dev/null && return 0
    sleep 0.5
  done
  return 1
}

# Waits up to $2 s for the node with run directory /run/re6stnet to answer
# re6st-ctl status; prints its JSON.
ctl_status() {
  local end=$(($(date +%s) + $1))
  while [ "$(date +%s)" -lt "$end" ]; do
    in_root re6st-ctl status --json 2>/dev/null && return 0
    sleep 1
  done
  return 1
}

cn_of() { openssl x509 -noout -subject -nameopt multiline -in "$1" | sed -n 's/^ *commonName *= *//p'; }

ETC=$ROOT/etc/re6stnet

# 3b. A new network with the installed commands.
step "fresh install: registry from re6st-registry.service, re6st-conf, node from re6stnet.service"
in_root re6st-registry --init-network 2001:db8:42::/48 --dir /etc/re6stnet > "$LOGS/init-network.txt" ||
  fail "re6st-registry --init-network"
FP=$(grep -o 'sha1:[0-9a-f]*' "$LOGS/init-network.txt")
cat > "$ETC/re6st-registry.conf" <<'EOF'
ca /etc/re6stnet/ca.crt
key /etc/re6stnet/ca.key
dh /etc/re6stnet/dh.pem
anonymous-prefix-length 16
verbose 2
EOF
start_unit re6st-registry fresh
REG=$LAST_PID
get_ca 30 > "$LOGS/getCa.fresh.pem" || { cat "$LOGS"/re6st-registry.fresh.log; fail "the registry does not answer getCa"; }
cmp -s "$LOGS/getCa.fresh.pem" "$ETC/ca.crt" || fail "getCa is not /etc/re6stnet/ca.crt"
in_root re6st-conf --registry http://127.0.0.1/ --fingerprint "$FP" --anonymous -d /etc/re6stnet \
  < /dev/null > "$LOGS/re6st-conf.fresh.txt" 2>&1 || { cat "$LOGS/re6st-conf.fresh.txt"; fail "re6st-conf"; }
for f in cert.crt cert.key re6stnet.conf; do [ -s "$ETC/$f" ] || fail "re6st-conf wrote no $f"; done
CN=$(cn_of "$ETC/cert.crt")
start_unit re6stnet fresh
NODE=$LAST_PID
ctl_status 60 > "$LOGS/status.fresh.json" || { cat "$LOGS/re6stnet.fresh.log"; fail "the node does not answer re6st-ctl"; }
echo "deb-test: node $CN runs: $(head -c 200 "$LOGS/status.fresh.json")"
kill -0 "$NODE" || fail "the node exited"
stop "$NODE"
stop "$REG"
# Both logged to the journal (with priorities), not to their stderr or
# the registry's default log file.
for id in re6st-registry re6stnet; do
  grep -q "^SYSLOG_IDENTIFIER=$id\$" "$LOGS/journal.txt" || fail "$id logged nothing to the journal"
done
grep -q '^PRIORITY=[0-7]$' "$LOGS/journal.txt" || fail "journal entries without priority"
if grep -q ' re6stnet: ' "$LOGS/re6stnet.fresh.log"; then fail "the node logged to stderr under the journal"; fi
if [ -e "$ROOT/var/log/re6stnet/registry.log" ]; then fail "the registry wrote its default log file under the journal"; fi
echo "deb-test: journal: $(grep -c '^MESSAGE=' "$LOGS/journal.txt") entries, e.g. $(grep -m1 '^MESSAGE=' "$LOGS/journal.txt")"

# 4. Migration from upstream: upstream's registry and re6st-conf fill a
# clean /etc/re6stnet; our installed binaries then serve and use it.
step "migration: /etc/re6stnet made by upstream's registry and re6st-conf"
find "$ETC" -mindepth 1 ! -name README -delete
rm -rf "$ROOT/var/lib/re6stnet" "$ROOT/var/log/re6stnet" "$ROOT/run/re6stnet"
# The CA as upstream's documentation makes it: the serial is the prefix
# (0x1 + 2001:0db8:0043 -> 2001:db8:43::/48).
openssl genrsa -out "$ETC/ca.key" 2048 2> /dev/null
openssl req -nodes -new -x509 -key "$ETC/ca.key" -set_serial 0x120010db80043 -days 365 \
  -subj /CN=re6st-deb-test -out "$ETC/ca.crt"
openssl dhparam -dsaparam -out "$ETC/dh2048.pem" 2048 2> /dev/null
# Relative paths: the file serves upstream's registry (run from this
# directory on the host) and ours (WorkingDirectory=/etc/re6stnet) alike.
cat > "$ETC/re6st-registry.conf" <<'EOF'
ca ca.crt
key ca.key
dh dh2048.pem
db registry.db
anonymous-prefix-length 16
verbose 2
EOF
mkdir -p "$WORK/upstream-run.$$"
(cd "$ETC" && exec ip netns exec "$NS" "$UPSTREAM/python" "$UPSTREAM/re6st-registry" @re6st-registry.conf \
  -l "$LOGS/upstream-registry.log" -r "$WORK/upstream-run.$$" > "$LOGS/upstream-registry.stderr" 2>&1) &
PIDS+=($!)
UPREG=$!
get_ca 30 > /dev/null || { cat "$LOGS"/upstream-registry.*; fail "upstream's registry does not answer"; }
(cd "$ETC" && ip netns exec "$NS" "$UPSTREAM/python" "$UPSTREAM/re6st-conf" --registry http://127.0.0.1/ \
  --anonymous -d . < /dev/null > "$LOGS/upstream-conf.txt" 2>&1) || { cat "$LOGS/upstream-conf.txt"; fail "upstream's re6st-conf"; }
stop "$UPREG"
rm -rf "$WORK/upstream-run.$$"
for f in ca.crt ca.key dh2048.pem cert.crt cert.key re6stnet.conf re6st-registry.conf registry.db; do
  [ -s "$ETC/$f" ] || fail "upstream left no /etc/re6stnet/$f"
done
UPCN=$(cn_of "$ETC/cert.crt")
echo "deb-test: upstream enrolled $UPCN; /etc/re6stnet: $(cd "$ETC" && echo *)"

step "migration: our registry on upstream's files, our node on upstream's re6stnet.conf"
start_unit re6st-registry migrated
REG=$LAST_PID
get_ca 30 > "$LOGS/getCa.migrated.pem" || { cat "$LOGS"/re6st-registry.migrated.log; fail "our registry does not start on upstream's files"; }
cmp -s "$LOGS/getCa.migrated.pem" "$ETC/ca.crt" || fail "getCa is not upstream's CA"
# Upstream's enrolled node: the node fetches the network configuration
# with the registry's HMAC session, which the registry keys with the
# certificate it finds in upstream's database.
start_unit re6stnet migrated
NODE=$LAST_PID
ctl_status 60 > "$LOGS/status.migrated.json" || { cat "$LOGS/re6stnet.migrated.log"; fail "our node does not run on upstream's /etc/re6stnet"; }
grep -q "registry unreachable" "$LOGS/re6stnet.migrated.log" && fail "the node could not use our registry"
kill -0 "$NODE" || fail "the node exited"
# A new node gets a prefix of its own: the allocation in upstream's
# database is taken as it is.
mkdir -p "$ROOT/tmp/node2"
in_root re6st-conf --registry http://127.0.0.1/ --anonymous -d /tmp/node2 < /dev/null \
  > "$LOGS/re6st-conf.migrated.txt" 2>&1 || { cat "$LOGS/re6st-conf.migrated.txt"; fail "re6st-conf against the migrated registry"; }
CN2=$(cn_of "$ROOT/tmp/node2/cert.crt")
if [ -z "$CN2" ] || [ "$CN2" = "$UPCN" ]; then
  fail "the migrated registry gave upstream's node's prefix again ($CN2)"
fi
echo "deb-test: migrated: upstream's $UPCN runs our node; a new node got $CN2"
stop "$NODE"
stop "$REG"

step "ok in $(($(date +%s) - T0)) s"
