#!/usr/bin/env bash
# `make bench`: benchmarks, side by side with upstream where it runs.
# Writes bench/report.md and bench/report.json.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench
CLIENTS=${BENCH_CLIENTS:-200}
SECONDS_EACH=${BENCH_SECONDS:-10}
cargo build --release -p re6st -p re6st-bench
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
  echo "## Registry: ours against upstream re6stnet 0.642, $CLIENTS concurrent clients, ${SECONDS_EACH}s per test"
  echo
  target/release/re6st-bench registry --binary "$BIN" --clients "$CLIENTS" --seconds "$SECONDS_EACH" --json bench/registry.json
} | tee bench/report.md
python3 - "$BIN" <<'PY'
import json, os, sys
report = {"binary_bytes": os.path.getsize(sys.argv[1]),
          "registry": json.load(open("bench/registry.json"))}
json.dump(report, open("bench/report.json", "w"), indent=2)
PY
echo "bench: wrote bench/report.md and bench/report.json"
