#!/usr/bin/env bash
# Local demo network in network namespaces.
#
# Today (the node daemon is not finished) it runs the registry alone: a new
# network CA, the registry in its own namespace on a simulated internet,
# and six "routers" that provision their identities from it with
# re6st-conf. It then waits for Ctrl-C and removes everything.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/target/release/re6st
NODES=${NODES:-6}
TAG=r6demo
WORK=
NETWORK=2001:db8:42::/48

cleanup() {
  set +e
  for ns in $(ip netns list | awk '{print $1}' | grep "^$TAG-"); do
    for pid in $(ip netns pids "$ns"); do kill "$pid" 2>/dev/null; done
  done
  sleep 0.5
  for ns in $(ip netns list | awk '{print $1}' | grep "^$TAG-"); do
    for pid in $(ip netns pids "$ns"); do kill -9 "$pid" 2>/dev/null; done
    ip netns del "$ns"
  done
  [ -z "$WORK" ] || rm -rf "$WORK"
  echo "demo: cleaned up"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

[ "$(id -u)" = 0 ] || { echo "demo: needs root (network namespaces)" >&2; exit 1; }
cleanup >/dev/null 2>&1 || true
WORK=$(mktemp -d /tmp/re6st-demo.XXXXXX)

ns() { ip netns exec "$TAG-$1" "${@:2}"; }
mkns() { ip netns add "$TAG-$1"; ns "$1" ip link set lo up; }

# A simulated IPv4 internet: one "inet" router, each host on its own /24
# of 198.18.0.0/15 (the benchmarking range, never routed elsewhere).
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
ns registry "$BIN" registry --port 9080 -4 198.18.1.2 -6 "" \
  --ca "$WORK/registry/ca.crt" --key "$WORK/registry/ca.key" --dh "$WORK/registry/dh.pem" \
  --db "$WORK/registry/registry.db" -l "$WORK/registry/registry.log" -r "$WORK/registry/run" \
  --anonymous-prefix-length 16 >"$WORK/registry/stdout.log" 2>&1 &
for _ in $(seq 50); do ns registry sh -c 'exec 3<>/dev/tcp/198.18.1.2/9080' 2>/dev/null && break; sleep 0.1; done
FP=sha256:$(openssl x509 -in "$WORK/registry/ca.crt" -outform DER | sha256sum | cut -d' ' -f1)

for i in $(seq 2 $((NODES + 1))); do
  n=node$((i - 1)); mkns "$n"; link_host "$n" "$i"
  ns "$n" "$BIN" conf --registry http://198.18.1.2:9080/ --fingerprint "$FP" \
    --anonymous --dir "$WORK/$n" | grep -E "^Your subnet" | sed "s/^/demo: $n: /"
done

cat <<MSG

demo: registry at http://198.18.1.2:9080/ in namespace $TAG-registry
demo: $NODES routers provisioned (certificates under $WORK/node*/)
demo: the node daemon is not finished yet, so no overlay is built: this
      demo shows the registry and zero-touch provisioning only.
demo: try: ip netns exec $TAG-node1 $BIN conf --registry http://198.18.1.2:9080/ --ca-only --dir /tmp
demo: Ctrl-C to stop and clean up.
MSG
if [ -n "${DEMO_SECONDS:-}" ]; then sleep "$DEMO_SECONDS"; else sleep infinity; fi
