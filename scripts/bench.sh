#!/usr/bin/env bash
# `make bench`: benchmarks, side by side with upstream where it runs.
# Writes bench/report.md, bench/report.json and the plots bench/convergence.png
# and bench/scale.png (scripts/bench-plots.py; scale also from bench/sim.json,
# `make sim`, when present).
# BENCH_NODES="8:2 16:10 32:10" (nodes:client count per network),
# BENCH_PATH="3:2" (nodes:client count of the overlay-vs-direct network),
# BENCH_START="16:10" and BENCH_START_RUNS=5 (networks started together, the
# all-pairs time after the last start, median of the runs),
# BENCH_IPERF_SECONDS=5, BENCH_CLIENTS=20,200 (registry client counts),
# BENCH_SECONDS=10, BENCH_REGISTRY_RUNS=5, BENCH_CROSS=1, BENCH_IMAGES=1,
# BENCH_MEMORY_BOARDS (default: the boards with a router kernel),
# BENCH_MEMORY_MIB=64, BENCH_MEMORY_SECONDS=600.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench
rm -f bench/node-*.json bench/path.json bench/join.json bench/convergence.png bench/scale.png
CLIENTS=${BENCH_CLIENTS:-20,200}
REGISTRY_RUNS=${BENCH_REGISTRY_RUNS:-5}
SECONDS_EACH=${BENCH_SECONDS:-10}
cargo build --release -p re6st -p re6st-bench
# Binaries for every firmware target (slow the first time; BENCH_CROSS=0 skips).
if [ "${BENCH_CROSS:-1}" = 1 ]; then make cross-all || echo "bench: some cross builds failed" >&2; fi
BIN=target/release/re6st
{
  echo "# re6st benchmarks ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, commit $(git describe --always --dirty 2>/dev/null || echo unknown))"
  echo
  echo "## Binary"
  echo
  echo "| binary | bytes (stripped, opt-level z, LTO) |"
  echo "|---|---|"
  echo "| re6st (x86_64, glibc, shared libssl) | $(stat -c %s "$BIN") |"
  echo
  echo "Per firmware target (\`make cross-all\`: release profile, glibc, Debian's libssl3 shared):"
  echo
  echo "| target | bytes, stripped |"
  echo "|---|---|"
  for t in x86_64 aarch64 armv7 mipsel; do
    f=target/cross/$t/re6st
    if [ -f "$f" ]; then echo "| $t | $(stat -c %s "$f") |"; else echo "| $t | not built |"; fi
  done
  echo
  echo "## Firmware images"
  echo
  echo "Per QEMU board: \`make image\` then \`qemu-tests/smoke.sh\` with SMOKE_AB=0 SMOKE_OVERLAY=1, against a registry and its node in a namespace (TCG wherever KVM cannot run Debian's kernel). First boot: blank data partition, power-on to the kernel's first line, to init, to the \`provisioned\` milestone (key, certificate) and to init's \`overlay reached\` line (an established tunnel and a babel route to the registry's node, init asking its node every second). Reboot: the same, now provisioned, disk booted again after a clean poweroff, power-on to the overlay. Seconds from QEMU's start, as the console driver sees the lines. Target: root filesystem at most 8 MiB."
  echo
  # The QEMU boards only: target/images may hold others built by hand
  # (rpi4), with no boot times and maybe older binaries.
  mapfile -t qemu_boards < <(grep -l '^QEMU_SYSTEM=' board/*/board.conf | cut -d/ -f2)
  if [ "${BENCH_IMAGES:-1}" = 1 ]; then
    for b in "${qemu_boards[@]}"; do
      { make image BOARD="$b" && SMOKE_AB=0 SMOKE_OVERLAY=1 bash qemu-tests/smoke.sh "$b"; } >"bench/image-$b.log" 2>&1 </dev/null ||
        echo "bench: image or smoke of $b failed (bench/image-$b.log)" >&2
    done
  fi
  python3 scripts/image-report.py bench/images.json "${qemu_boards[@]}"
  echo
  BIN="$BIN" bash scripts/bench-memory.sh
  echo
  echo "## Registry: ours against upstream re6stnet 0.642, $CLIENTS concurrent clients, ${SECONDS_EACH}s per test, $REGISTRY_RUNS runs"
  echo
  echo "Each run starts both registries afresh (empty database) per client count, ours then upstream, on loopback (ours without its per-source connection limit: every client comes from 127.0.0.1). Latency is that of the successful calls."
  echo
  target/release/re6st-bench registry --binary "$BIN" --clients "$CLIENTS" --seconds "$SECONDS_EACH" --runs "$REGISTRY_RUNS" --json bench/registry.json
  echo
  echo "## Node join: start to first packet through the overlay"
  echo
  echo "\`re6st-bench join --runs 5\`: a registry (ours, hello 4 s, client count 2) and two new nodes in namespaces; seconds after the second node starts, per step (docs/join-timeline.md says how each step is observed). Target (issue 20): first ping answered both ways, median <= 5 s."
  echo
  target/release/re6st-bench join --binary "$BIN" --runs 5 --json bench/join.json
  echo
  echo "## Node: a network of our nodes in namespaces (registry + N nodes)"
  echo
  echo "Time from the start (registry, provisioning, node start) to every node pinging every other over the overlay (ping rounds at least 1 s apart: every node pings every other, in parallel); per node, when it first reached every other node (median / max, s after the last node started; every round's fraction of answering pairs is in the JSON and plotted in convergence.png); then, at steady state, per node: tunnels (babel neighbours), our daemon's memory (VmRSS; private = RssAnon; PSS shares library pages among the processes mapping them) and CPU, and the memory of its babeld and OpenVPN children. Upstream's node cannot run here: it needs re6st's patched babeld (option -X, binary control socket)."
  echo
  echo "| nodes | client count | s to full connectivity | s after last node start | per node s to reach all: median / max | tunnels mean / max | daemon VmRSS KiB mean / max | private KiB | PSS KiB | CPU % mean / max | children RSS KiB | connected at end |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  for spec in ${BENCH_NODES:-8:2 16:10 32:10}; do
    n=${spec%%:*} c=${spec##*:}
    target/release/re6st-bench node --binary "$BIN" --nodes "$n" --client-count "$c" --settle 30 --json "bench/node-$n.json"
  done
  echo
  start_spec=${BENCH_START:-16:10} start_runs=${BENCH_START_RUNS:-5}
  sn=${start_spec%%:*} sc=${start_spec##*:}
  echo "## Nodes started together: ${sn} nodes, ${start_runs} runs"
  echo
  echo "\`re6st-bench node --nodes ${sn} --client-count ${sc} --settle 5\`, ${start_runs} times, each a new network (new registry, empty state directories): seconds from the last node's start until every node pinged every other over the overlay in one round. Target (issue 20, ${sn} nodes, client count 10): median <= 10 s."
  echo
  rm -f bench/start-*.json
  for i in $(seq 1 "$start_runs"); do
    target/release/re6st-bench node --binary "$BIN" --nodes "$sn" --client-count "$sc" --settle 5 \
      --json "bench/start-$i.json" >"bench/start-$i.log" 2>&1 </dev/null ||
      echo "bench: start run $i failed (bench/start-$i.log)" >&2
  done
  python3 scripts/start-report.py bench/start.json $(seq -f "bench/start-%g.json" 1 "$start_runs")
  echo
  pspec=${BENCH_PATH:-3:2}
  echo "## Overlay against the direct path (iperf3, ping)"
  echo
  echo "Registry + ${pspec%%:*} nodes (client count ${pspec##*:}) in namespaces; from the second-last node to the last: TCP throughput (iperf3, ${BENCH_IPERF_SECONDS:-5} s) and round-trip times (50 pings, 0.1 s apart), to the last node's underlay IPv4 address (through the simulated internet's router) and to its re6st address (OpenVPN tap tunnels, babeld routes). Reply TTL 64 means no router on the way back, 63 one. Both paths share the machine's cores with OpenVPN, so the ratio says how much the tunnel costs here, not on a router."
  echo
  target/release/re6st-bench path --binary "$BIN" --nodes "${pspec%%:*}" --client-count "${pspec##*:}" --seconds "${BENCH_IPERF_SECONDS:-5}" --json bench/path.json
  echo
  echo "## Firmware first boot on the host"
  echo
  echo "\`re6st init --root\` from an empty data directory to the \`provisioned\` milestone (2048-bit RSA key generation, certificate from our registry on loopback, network configuration), then init's own memory (the node is measured above)."
  echo
  echo "| runs | median s | max s | init VmRSS KiB | init private KiB |"
  echo "|---|---|---|---|---|"
  target/release/re6st-bench boot --binary "$BIN" --runs 5 --json bench/boot.json
} | tee bench/report.md
python3 - "$BIN" <<'PY'
import json, os, sys
import glob
report = {"binary_bytes": os.path.getsize(sys.argv[1]),
          "registry": json.load(open("bench/registry.json")),
          "node": sorted((json.load(open(f)) for f in glob.glob("bench/node-*.json")),
                         key=lambda n: n["nodes"]),
          "path": json.load(open("bench/path.json")),
          "join": json.load(open("bench/join.json")),
          "start": json.load(open("bench/start.json")) if os.path.exists("bench/start.json") else {},
          "boot": json.load(open("bench/boot.json")),
          "images": json.load(open("bench/images.json")),
          "memory": json.load(open("bench/memory.json")) if os.path.exists("bench/memory.json") else [],
          "cross_bytes": {t: os.path.getsize(f"target/cross/{t}/re6st")
                          for t in ("x86_64", "aarch64", "armv7", "mipsel")
                          if os.path.exists(f"target/cross/{t}/re6st")}}
json.dump(report, open("bench/report.json", "w"), indent=2)
PY
if .venv/bin/python scripts/bench-plots.py bench/report.json bench/sim.json bench; then
  {
    echo
    echo "## Plots"
    echo
    echo "![convergence](convergence.png)"
    echo
    echo "![scale](scale.png)"
    echo
    if [ -f bench/sim.json ]; then
      echo "scale.png: netns convergence against size, and the simulator's steady state from bench/sim.json (\`make sim\`, $(date -u -r bench/sim.json +%Y-%m-%d))."
    else
      echo "scale.png: netns convergence against size only (no bench/sim.json: run \`make sim\` first for the simulator's panels)."
    fi
  } >> bench/report.md
else
  echo "bench: no plots (scripts/bench-plots.py failed; make deps installs matplotlib)" >&2
fi
echo "bench: wrote bench/report.md, bench/report.json and the plots"
