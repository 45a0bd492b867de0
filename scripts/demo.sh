#!/usr/bin/env bash
# A local re6st network in network namespaces: our registry with its own
# node, and NODES more nodes on a simulated IPv4 internet (198.18.0.0/15).
# Each node provisions itself with re6st-conf, bootstraps through the
# registry, opens OpenVPN tunnels and routes with babeld. The script waits
# until every node reaches every other over the overlay, prints the tunnel
# graph (text, Graphviz DOT, and SVG when dot is installed), then keeps
# running for you to explore; Ctrl-C stops and removes everything.
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
  --anonymous-prefix-length 16 --hello 4 --client-count 3 >"$WORK/registry/stdout.log" 2>&1 &
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

args=() labels=()
for n in "${!NSOF[@]}"; do args+=("$n=$WORK/$n/run=${SUBNET[$n]}"); labels+=("$n=${SUBNET[$n]}"); done
# draw: the overlay as text, DOT and (with Graphviz) SVG; in a test, the
# SVG must show every node with its tunnels.
draw() {
  python3 scripts/topology.py "$BIN" "$WORK/topology.dot" "${args[@]}"
  echo "demo: Graphviz DOT in $WORK/topology.dot"
  rm -f "$WORK/topology.svg"
  if command -v dot >/dev/null; then dot -Tsvg "$WORK/topology.dot" -o "$WORK/topology.svg" && echo "demo: drawing in $WORK/topology.svg"; fi
  if [ -n "$TEST" ]; then
    [ -s "$WORK/topology.svg" ] || { echo "demo: FAIL: no drawing (Graphviz dot: make deps)" >&2; exit 1; }
    python3 scripts/check-drawing.py "$WORK/topology.svg" "$WORK/topology.dot" "${labels[@]}" || exit 1
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
  ip netns exec $TAG-n1 ip -6 route
  tail -f $WORK/node1/node.log
demo: Ctrl-C to stop and clean up.
MSG
sleep infinity
