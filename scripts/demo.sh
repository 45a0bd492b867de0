#!/usr/bin/env bash
# A local re6st network in network namespaces: our registry with its own
# node, and NODES more nodes on a simulated IPv4 internet (198.18.0.0/15).
# Each node provisions itself with re6st-conf, bootstraps through the
# registry, opens OpenVPN tunnels and routes with babeld. The script waits
# until every node reaches every other over the overlay, draws the network
# as its operator would, with `re6st ctl topology` from the registry's host
# (JSON, Graphviz DOT, and SVG when dot is installed), then keeps running
# for you to explore; Ctrl-C stops and removes everything.
#
# Non-interactive (make demo-test): DEMO_SECONDS=N checks the drawing (one
# SVG node per node, scripts/check-drawing.py), keeps the network up N
# seconds, checks again that every pair reaches and the drawing, then
# cleans up and exits 0, or 1 at the first failure (cleaned up too).
# RE6ST_BIN: the binary (default target/release/re6st).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${RE6ST_BIN:-$PWD/target/release/re6st}
TEST=${DEMO_SECONDS:+1}
NODES=${NODES:-6}
TAG=r6demo
WORK=
NETWORK=2001:db8:42::/48

cleanup() {
  set +e
  for ns in $(ip netns list | awk '{print $1}' | grep "^$TAG-"); do
    for pid in $(ip netns pids "$ns"); do kill "$pid" 2>/dev/null; done
  done
  sleep 1
  for ns in $(ip netns list | awk '{print $1}' | grep "^$TAG-"); do
    for pid in $(ip netns pids "$ns"); do kill -9 "$pid" 2>/dev/null; done
    ip netns del "$ns"
  done
  [ -z "$WORK" ] || rm -rf "$WORK"
  echo "demo: cleaned up"
}
trap cleanup EXIT
# Interactive: Ctrl-C is the normal end. A test interrupted has not passed.
if [ -n "$TEST" ]; then trap 'exit 1' INT TERM; else trap 'exit 0' INT TERM; fi

[ "$(id -u)" = 0 ] || { echo "demo: needs root (network namespaces)" >&2; exit 1; }
cleanup >/dev/null 2>&1 || true
WORK=$(mktemp -d /tmp/re6st-demo.XXXXXX)

ns() { ip netns exec "$TAG-$1" "${@:2}"; }
mkns() { ip netns add "$TAG-$1"; ns "$1" ip link set lo up; ns "$1" sysctl -qw net.ipv6.conf.all.forwarding=1; }

mkns inet
ns inet sysctl -qw net.ipv4.ip_forward=1
link_host() { # name index
  ip link add "$TAG$2a" type veth peer name "$TAG$2b"
  ip link set "$TAG$2a" netns "$TAG-inet" name "h$2"
  ip link set "$TAG$2b" netns "$TAG-$1" name eth0
  ns inet ip addr add "198.18.$2.1/24" dev "h$2"; ns inet ip link set "h$2" up
  ns "$1" ip addr add "198.18.$2.2/24" dev eth0; ns "$1" ip link set eth0 up
  ns "$1" ip route add default via "198.18.$2.1"
}

echo "demo: creating network $NETWORK"
mkns registry; link_host registry 1
"$BIN" registry --init-network "$NETWORK" --dir "$WORK/registry" >/dev/null
mkdir -p "$WORK/node0"
ns registry "$BIN" registry --port 9080 -4 198.18.1.2 -6 "" \
  --ca "$WORK/registry/ca.crt" --key "$WORK/registry/ca.key" --dh "$WORK/registry/dh.pem" \
  --db "$WORK/registry/registry.db" -l "$WORK/registry/registry.log" -r "$WORK/node0/run" \
  --anonymous-prefix-length 16 --hello 4 --client-count 3 --authorized-origin 198.18.1.2 >"$WORK/registry/stdout.log" 2>&1 &
for _ in $(seq 50); do ns registry bash -c 'exec 3<>/dev/tcp/198.18.1.2/9080' 2>/dev/null && break; sleep 0.1; done
FP=sha256:$(openssl x509 -in "$WORK/registry/ca.crt" -outform DER | sha256sum | cut -d' ' -f1)

declare -A NSOF SUBNET
start_node() { # n namespace index
  local d=$WORK/node$1
  mkdir -p "$d"
  SUBNET[node$1]=$(ns "$2" "$BIN" conf --registry http://198.18.1.2:9080/ --fingerprint "$FP" \
    --anonymous --dir "$d" | sed -n 's/^Your subnet: \([^ ]*\) .*/\1/p')
  NSOF[node$1]=$2
  (cd "$d" && ns "$2" "$BIN" node @re6stnet.conf --ip "198.18.$3.2" -s "$d/state" -r "$d/run" -l "$d/log" \
     >"$d/node.log" 2>&1 &)
  echo "demo: node$1 in namespace $TAG-$2, subnet ${SUBNET[node$1]}"
}
start_node 0 registry 1
for i in $(seq 1 "$NODES"); do
  mkns "n$i"; link_host "n$i" $((i + 1))
  start_node "$i" "n$i" $((i + 1))
done

addr() { echo "${SUBNET[$1]%%/*}1"; }
# all_reach SECONDS: until every node pings every other over the overlay,
# at most SECONDS; exit 1 after.
all_reach() {
  local deadline=$((SECONDS + $1)) missing a b
  while :; do
    missing=0
    for a in "${!NSOF[@]}"; do for b in "${!NSOF[@]}"; do
      [ "$a" = "$b" ] && continue
      ns "${NSOF[$a]}" ping -6 -c1 -W1 "$(addr "$b")" >/dev/null 2>&1 || missing=$((missing + 1))
    done; done
    [ "$missing" = 0 ] && return 0
    [ "$SECONDS" -lt "$deadline" ] || { echo "demo: $missing pairs still unreachable after $1 s; logs in $WORK/node*/node.log" >&2; exit 1; }
    echo "demo: $missing pairs not yet connected"
    sleep 5
  done
}
echo "demo: waiting until every node reaches every other over the overlay..."
all_reach 240
echo "demo: all $((NODES + 1)) nodes reach each other (${SECONDS}s)"

labels=(registry=node0)
for n in "${!NSOF[@]}"; do labels+=("$n=${SUBNET[$n]}"); done
# draw: the network's map from the registry (its private topology and
# versions requests, answered to its own address): JSON, DOT and (with
# Graphviz) SVG; in a test, the SVG must show every node with its tunnels.
draw() {
  local out=(-o "$WORK/topology.json" -o "$WORK/topology.dot")
  rm -f "$WORK"/topology.*
  if command -v dot >/dev/null; then out+=(-o "$WORK/topology.svg"); fi
  ns registry "$BIN" ctl topology --registry http://198.18.1.2:9080/ "${out[@]}" ||
    { echo "demo: FAIL: re6st ctl topology" >&2; exit 1; }
  python3 -c 'import json, sys
m = json.load(open(sys.argv[1]))
print("overlay tunnels (client -> server):")
for t in m["tunnels"]: print("  %s -> %s" % (t["client"], t["server"]))' "$WORK/topology.json"
  if [ -n "$TEST" ]; then
    [ -s "$WORK/topology.svg" ] || { echo "demo: FAIL: no drawing (Graphviz dot: make deps)" >&2; exit 1; }
    python3 scripts/check-drawing.py "$WORK/topology.svg" "$WORK/topology.json" "${labels[@]}" || exit 1
  fi
}
draw
if [ -n "$TEST" ]; then
  echo "demo: running ${DEMO_SECONDS}s"
  sleep "$DEMO_SECONDS"
  all_reach 60
  draw
  echo "demo: ok: every pair reaches after ${DEMO_SECONDS}s, the drawing has every node (${SECONDS}s in all)"
  exit 0
fi
cat <<MSG

demo: try, e.g.
  ip netns exec $TAG-n1 ping -6 $(addr node2)
  ip netns exec $TAG-registry $BIN ctl topology --registry http://198.18.1.2:9080/ --format json
  ip netns exec $TAG-n1 ip -6 route
  tail -f $WORK/node1/node.log
demo: Ctrl-C to stop and clean up.
MSG
sleep infinity
