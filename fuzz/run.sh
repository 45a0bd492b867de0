#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 30); non-zero on a crash.
# cargo-fuzz wants nightly features: RUSTC_BOOTSTRAP lets the stable
# toolchain accept them. Crashes land in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH=${1:-30}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
targets=$(cargo fuzz list)
for t in $targets; do
  echo "fuzz: $t for ${SECONDS_EACH}s"
  mkdir -p "corpus/$t"
  cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=1024 -malloc_limit_mb=256 2>&1 | tail -n 3
done
echo "fuzz: $(echo $targets | wc -w) targets, no crash"
