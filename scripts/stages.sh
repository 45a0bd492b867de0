#!/usr/bin/env bash
# Runs make targets one after the other, stops at the first that fails,
# and prints how long each took (also after a failure, so a slow or broken
# stage shows in CI's log). Exit status: the failed stage's, else 0.
#
#   scripts/stages.sh TARGET...        (make test: deps lint unit ...)
#
# STAGES_MAKE: the make to call (default make; the Makefile passes $(MAKE)).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
MAKE_CMD=${STAGES_MAKE:-make}
[ $# -gt 0 ] || { echo "usage: scripts/stages.sh TARGET..." >&2; exit 2; }

names=() secs=() results=()
status=0
start_all=$SECONDS
current=
# shellcheck disable=SC2317 # called by the EXIT trap
report() {
  local i total=$((SECONDS - start_all))
  # An interrupt while a stage runs: show it as such.
  if [ -n "$current" ]; then names+=("$current"); secs+=($((SECONDS - t0))); results+=(interrupted); fi
  echo
  echo "== stage durations"
  printf '%-14s %9s  %s\n' stage "time" result
  for i in "${!names[@]}"; do
    printf '%-14s %5dm%02ds  %s\n' "${names[$i]}" $((secs[i] / 60)) $((secs[i] % 60)) "${results[$i]}"
  done
  printf '%-14s %5dm%02ds  %s\n' total $((total / 60)) $((total % 60)) "$([ "$status" = 0 ] && echo ok || echo FAILED)"
}
trap report EXIT
trap 'status=130; exit 130' INT TERM

for stage in "$@"; do
  if [ "$status" != 0 ]; then
    names+=("$stage"); secs+=(0); results+=("not run")
    continue
  fi
  echo "== stage $stage"
  current=$stage t0=$SECONDS
  $MAKE_CMD "$stage"
  rc=$?
  current=
  names+=("$stage"); secs+=($((SECONDS - t0)))
  if [ "$rc" = 0 ]; then results+=(ok); else results+=("FAILED (status $rc)"); status=$rc; fi
done
exit "$status"
