#!/usr/bin/env bash
# `make bench`: benchmarks, side by side with upstream where it runs.
# Writes bench/report.md and bench/report.json.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench
rm -f bench/node-*.json
CLIENTS=${BENCH_CLIENTS:-200}
SECONDS_EACH=${BENCH_SECONDS:-10}
cargo build --release -p re6st -p re6st-bench
# Binaries for every firmware target (slow the first time; BENCH_CROSS=0 skips).
if [ "${BENCH_CROSS:-1}" = 1 ]; then make cross-all || echo "bench: some cross builds failed" >&2; fi
BIN=target/release/re6st
{
  echo "# re6st benchmarks ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores)"
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
  echo "Per QEMU board: \`make image\` then the cold boot of \`qemu-tests/smoke.sh\` (power-on to the \`provisioned\` milestone against a registry in a namespace; TCG wherever KVM cannot run Debian's kernel). Target: root filesystem at most 8 MiB."
  echo
  if [ "${BENCH_IMAGES:-1}" = 1 ]; then
    for b in $(grep -l '^QEMU_SYSTEM=' board/*/board.conf | cut -d/ -f2); do
      { make image BOARD="$b" && SMOKE_AB=0 bash qemu-tests/smoke.sh "$b"; } >"bench/image-$b.log" 2>&1 ||
        echo "bench: image or smoke of $b failed (bench/image-$b.log)" >&2
    done
  fi
  python3 scripts/image-report.py bench/images.json
  echo
  echo "## Registry: ours against upstream re6stnet 0.642, $CLIENTS concurrent clients, ${SECONDS_EACH}s per test"
  echo
  target/release/re6st-bench registry --binary "$BIN" --clients "$CLIENTS" --seconds "$SECONDS_EACH" --json bench/registry.json
  echo
  echo "## Node: a network of our nodes in namespaces (registry + N nodes)"
  echo
  echo "Time from the start (registry, provisioning, node start) to every node pinging every other over the overlay; then, at steady state, per node: tunnels (babel neighbours), our daemon's memory (VmRSS; private = RssAnon; PSS shares library pages among the processes mapping them) and CPU, and the memory of its babeld and OpenVPN children. Upstream's node cannot run here: it needs re6st's patched babeld (option -X, binary control socket)."
  echo
  echo "| nodes | client count | s to full connectivity | s after last node start | tunnels mean / max | daemon VmRSS KiB mean / max | private KiB | PSS KiB | CPU % mean / max | children RSS KiB | connected at end |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  for spec in ${BENCH_NODES:-8:2 16:10}; do
    n=${spec%%:*} c=${spec##*:}
    target/release/re6st-bench node --binary "$BIN" --nodes "$n" --client-count "$c" --settle 30 --json "bench/node-$n.json"
  done
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
          "node": [json.load(open(f)) for f in sorted(glob.glob("bench/node-*.json"))],
          "boot": json.load(open("bench/boot.json")),
          "images": json.load(open("bench/images.json")),
          "cross_bytes": {t: os.path.getsize(f"target/cross/{t}/re6st")
                          for t in ("x86_64", "aarch64", "armv7", "mipsel")
                          if os.path.exists(f"target/cross/{t}/re6st")}}
json.dump(report, open("bench/report.json", "w"), indent=2)
PY
echo "bench: wrote bench/report.md and bench/report.json"
