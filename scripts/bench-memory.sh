#!/usr/bin/env bash
# `make bench`'s router memory section, alone: the memory lab
# (qemu-tests/topologies/memory.toml, scenario memory) per board, then its
# Markdown section on stdout (scripts/memory-report.py; bench/memory.json).
# BENCH_MEMORY_BOARDS (default: the boards with a router kernel),
# BENCH_MEMORY_MIB=64, BENCH_MEMORY_SECONDS=600; BIN: the host binary
# (default target/release/re6st). Images: `make image BOARD=...` first.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/re6st}
KERNEL_BOARDS=$(find board -mindepth 2 -name kernel.config -path 'board/qemu-*' | cut -d/ -f2 | sort)
mem_mib=${BENCH_MEMORY_MIB:-64}
mem_secs=${BENCH_MEMORY_SECONDS:-600}
echo "## Router memory: one QEMU router with 12 or more tunnels, ${mem_mib} MiB"
echo
echo "\`qemu-tests/lab.py test qemu-tests/topologies/memory.toml memory\` per board (\`LAB_BOARD\`, \`QEMU_MEM=${mem_mib}\`, the image just built: the router kernel when the board has one): the router, alone emulated (TCG), client count 10, among 16 of our nodes in namespaces (14 at client count 2; 2 started once it has provisioned, with it as their \`--neighbour\`) and the registry's node. Once it has 12 tunnels (established client tunnels plus served clients), every 30 s for ${mem_secs} s its console gives /proc/meminfo and every process's RSS, PSS and private memory (smaps_rollup). It fails on an OOM kill, a restarted service, babeld or OpenVPN process, MemAvailable under 16 MiB or fewer than 12 tunnels at any sample."
echo
mem_json=()
for b in ${BENCH_MEMORY_BOARDS:-$KERNEL_BOARDS}; do
  rm -rf "bench/memory-$b"
  LAB_BOARD=$b QEMU_MEM=$mem_mib LAB_MEMORY_SECONDS=$mem_secs LAB_OUT="bench/memory-$b" \
    RE6ST_HOST_BIN="$BIN" python3 qemu-tests/lab.py test qemu-tests/topologies/memory.toml memory \
    >"bench/memory-$b.log" 2>&1 </dev/null || echo "bench: memory run of $b failed (bench/memory-$b.log)" >&2
  mem_json+=("bench/memory-$b/memory.json")
done
python3 scripts/memory-report.py bench/memory.json "${mem_json[@]}"
