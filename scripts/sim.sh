#!/usr/bin/env bash
# `make sim`: the simulator's sweep (re6st-sim, see docs/simulator.md).
# Writes bench/sim.md, bench/sim.json and the single runs in bench/sim/.
# SIM_SIZES="1000 3000" limits the sizes, SIM_SEEDS the seeds (issue 16's
# targets hold for seed 1 and two others: "1 2 3"; since the simulator
# runs the nodes' whole cores, a run takes 2.5 to 6 minutes at 1,000
# nodes, about 20 at 3,000 and 22 at 10,000 here, so about 4.5 hours for
# three seeds, a third of that for SIM_SEEDS=1); SIM_RESUME=1 keeps the runs already
# in bench/sim/. Ends with `re6st-sim check` over every run (PASS/FAIL per
# expectation, also in bench/sim.md) and fails if any expectation failed.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
$CARGO build --profile sim -p re6st-sim
# The commit the runs are made with (the tree may change during the sweep).
commit=$(git describe --always --dirty 2>/dev/null || echo unknown)
BIN=${CARGO_TARGET_DIR:-target}/sim/re6st-sim
OUT=bench/sim
if [ "${SIM_RESUME:-0}" != 1 ]; then rm -rf "$OUT"; fi
mkdir -p "$OUT"
SIZES=${SIM_SIZES:-"1000 3000 10000"}
# Per size: simulated seconds, loss time, tick period of nodes below their
# client count (the daemon: 1 s).
plan() {
  case $1 in
    1000) echo "3600 1800 1" ;;
    3000) echo "3600 1800 10" ;;
    10000) echo "1200 900 30" ;;
    *) echo "3600 1800 10" ;;
  esac
}
runs=()
SEEDS=${SIM_SEEDS:-"1 2 3"}
for n in $SIZES; do
  read -r duration loss_at tick < <(plan "$n")
  for seed in $SEEDS; do
  for loss in random:0.3 targeted:0.3; do
    name="$OUT/n$n-${loss%%:*}"
    [ "$seed" = 1 ] || name="$name-seed$seed"
    cmd=("$BIN" --nodes "$n" --loss "$loss" --registry-down --duration "$duration" \
      --loss-at "$loss_at" --tick "$tick" --seed "$seed" --timing --json "$name.json")
    runs+=("$name.json")
    if [ "${SIM_RESUME:-0}" = 1 ] && [ -s "$name.json" ]; then continue; fi
    echo "sim: ${cmd[*]}" >&2
    echo "${cmd[*]}" > "$name.cmd"
    nice -n 19 "${cmd[@]}" | tee "$name.txt"
  done
  done
done
# The daemon's fallback behind a NAT without UPnP: announce the address
# peers see (unreachable). One comparison run at the smallest size.
n=${SIZES%% *}
read -r duration loss_at tick < <(plan "$n")
name="$OUT/n$n-random-nat-announces"
cmd=("$BIN" --nodes "$n" --loss random:0.3 --registry-down --nat-announces --duration "$duration" \
  --loss-at "$loss_at" --tick "$tick" --seed 1 --timing --json "$name.json")
if [ "${SIM_RESUME:-0}" != 1 ] || [ ! -s "$name.json" ]; then
  echo "sim: ${cmd[*]}" >&2
  echo "${cmd[*]}" > "$name.cmd"
  nice -n 19 "${cmd[@]}" | tee "$name.txt"
fi
runs+=("$name.json")
{
  echo "# re6st-sim sweep ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, commit $commit)"
  echo
  echo "Each node runs the node's real sans-IO core (NodeCore: tunnel manager, peer"
  echo "protocol with real handshakes, timers); routing is shortest paths"
  echo "over the tunnel graph (see docs/simulator.md for the model)."
  echo "Defaults: client_count 10, max_clients 20 per server (UDP and TCP),"
  echo "tunnel_refresh 300 s, hello 15 s, 20 % NATed nodes, nodes joining over"
  echo "600 s, tunnels up 5 s after OpenVPN starts, seed 1. At the loss time"
  echo "30 % of the live nodes die at once (random, or highest degree first)"
  echo "and so does the registry's node: no more bootstrap answers."
  echo
  echo "Commands:"
  echo
  for r in "${runs[@]}"; do echo "    $(sed "s#$BIN#re6st-sim#" "${r%.json}.cmd")"; done
  echo
  echo "<!-- table -->"
  echo
  echo "Columns: tunnels per node count client and served tunnels; diameter and"
  echo "mean hops are exact over the largest component before the loss; the"
  echo "random-regular reference has the same node count and the overlay's mean"
  echo "degree, rounded (200 sampled sources); hop stretch is their ratio."
  echo "Latency stretch: overlay path latency over direct underlay latency,"
  echo "nodes uniform in a square, 5 ms + 100 ms × distance per underlay path."
  echo "Static loss: the snapshot before the loss with 30 % removed at once (no"
  echo "repair). Peer messages: address queries and answers, kill requests and"
  echo "answers, keep-alives; version announcements are counted apart; babel"
  echo "dumps are what the daemon would request (local, not network traffic)."
  echo
  echo "Full summaries: bench/sim/*.txt; everything: bench/sim.json."
} > bench/sim.md
"$BIN" table --md bench/sim.md --json bench/sim.json "${runs[@]}"
checked=0
"$BIN" check "${runs[@]}" > bench/sim-check.txt || checked=$?
{
  echo
  echo "Expectations (\`re6st-sim check\`: rejoin within 60 s after the loss"
  echo "with the registry down, peer traffic, dumps below the client count):"
  echo
  sed 's/^/    /' bench/sim-check.txt
} >> bench/sim.md
if command -v gnuplot > /dev/null; then
  for r in "${runs[@]}"; do
    python3 -c 'import json,sys; [print(p["t"], p["largest_fraction"], p["tunnels"]) for p in json.load(open(sys.argv[1]))["series"]]' "$r" > "${r%.json}.dat"
  done
  gnuplot -e "set terminal svg; set output 'bench/sim.svg'; set xlabel 's'; set ylabel 'largest component'; plot $(for r in "${runs[@]}"; do printf "'%s' using 1:2 with lines title '%s'," "${r%.json}.dat" "$(basename "${r%.json}")"; done)"
else
  echo "sim: no gnuplot, no plot (the data is in bench/sim.json)" >&2
fi
cat bench/sim.md
if [ "$checked" != 0 ]; then
  echo "sim: FAIL: $(grep -c '^FAIL' bench/sim-check.txt) expectation(s) not met (bench/sim-check.txt)" >&2
fi
exit "$checked"
