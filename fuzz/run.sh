#!/usr/bin/env bash
# Runs every fuzz target (or those named after SECONDS) for SECONDS each
# (default 30); exits non-zero if any target crashed, leaked memory past
# the limits or hung. cargo-fuzz wants nightly features: RUSTC_BOOTSTRAP
# lets the stable toolchain accept them.
#
# Each target starts from its committed seeds (seeds/<target>/) and its
# working corpus (corpus/<target>/, not committed; new inputs go there).
# Findings land in artifacts/<target>/ (crash-*, oom-*, timeout-*, leak-*).
#
# Limits, so that unbounded allocation is a finding, not a slow machine:
#   -malloc_limit_mb  one allocation larger than this fails the run
#                     (a parser must never size a buffer from its input);
#   -rss_limit_mb     the whole process (ASan included) past this fails;
#   -timeout          one input taking longer than this (s) is a hang.
set -uo pipefail
cd "$(dirname "$0")"
SECONDS_EACH=${1:-30}
shift || true
MALLOC_LIMIT_MB=${FUZZ_MALLOC_LIMIT_MB:-64}
RSS_LIMIT_MB=${FUZZ_RSS_LIMIT_MB:-1024}
TIMEOUT_S=${FUZZ_TIMEOUT:-10}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
targets=${*:-$(cargo fuzz list)}
start=$(date +%s)
# One build for all targets; `cargo fuzz run` then finds them up to date.
cargo fuzz build || exit 1
failed=()
for t in $targets; do
  echo "fuzz: $t for ${SECONDS_EACH}s"
  mkdir -p "corpus/$t" "seeds/$t"
  log=$(mktemp)
  t0=$(date +%s)
  cargo fuzz run "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$SECONDS_EACH" -timeout="$TIMEOUT_S" \
    -rss_limit_mb="$RSS_LIMIT_MB" -malloc_limit_mb="$MALLOC_LIMIT_MB" \
    -print_final_stats=1 >"$log" 2>&1
  rc=$?
  t1=$(date +%s)
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  peak=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  if [ "$rc" -ne 0 ]; then
    failed+=("$t")
    grep -E 'ERROR|panicked|SUMMARY|Test unit written|out-of-memory|timeout' "$log" | head -n 20
    echo "fuzz: $t FAILED (exit $rc) after $((t1 - t0))s, ${runs:-?} runs; see artifacts/$t/"
  else
    echo "fuzz: $t ok: ${runs:-?} runs (${rate:-?}/s) in $((t1 - t0))s, peak RSS ${peak:-?} MB, corpus $(ls "corpus/$t" | wc -l) inputs"
  fi
  rm -f "$log"
done
n=$(echo $targets | wc -w)
echo "fuzz: $n targets in $(( $(date +%s) - start ))s total (${SECONDS_EACH}s each)"
if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}"
  exit 1
fi
echo "fuzz: $n targets, no crash"
