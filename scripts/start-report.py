#!/usr/bin/env python3
"""`make bench`: the table of the "nodes started together" runs.

start-report.py OUT.json RUN.json...: prints one markdown table (each run's
seconds from the last node's start to all pairs reaching each other, and
their median) and writes the same figures to OUT.json. A run whose network
never reached full connectivity has no JSON (re6st-bench exits non-zero
before writing it): it is counted as failed, not left out silently.
"""
import json
import statistics
import sys

out, runs = sys.argv[1], sys.argv[2:]
after, nodes, client_count, failed = [], None, None, []
for path in runs:
    try:
        r = json.load(open(path))
    except (OSError, ValueError) as e:
        failed.append(f"{path}: {e}")
        continue
    nodes, client_count = r["nodes"], r["client_count"]
    after.append(round(r["seconds_after_last_start"], 1))
expected = len(runs)
median = statistics.median(after) if after else None
print("| nodes | client count | runs | all pairs, s after the last start (each run) | median | target |")
print("|---|---|---|---|---|---|")
print(f"| {nodes or '?'} | {client_count or '?'} | {len(after)} of {expected} | "
      f"{', '.join(f'{a:.1f}' for a in after)} | "
      f"{'-' if median is None else f'{median:.1f}'} | <= 10 s |")
for f in failed:
    print(f"\nFailed run: {f}")
json.dump({"nodes": nodes, "client_count": client_count,
           "seconds_after_last_start": after, "median": median,
           "failed": failed}, open(out, "w"), indent=2)
