#!/usr/bin/env python3
"""A router's memory per board, for `make bench`: reads the memory.json
that `qemu-tests/lab.py test qemu-tests/topologies/memory.toml memory`
writes (one per board), prints a Markdown table (the whole system, then
every kind of process in the last sample) and writes all of it as one
JSON array to OUT.json.
Usage: memory-report.py OUT.json MEMORY.json..."""
import json
import os
import sys

KINDS = ("init", "node", "babeld", "openvpn-client", "openvpn-server", "lan", "httpd")


def main():
    out, paths = sys.argv[1], sys.argv[2:]
    runs, missing = [], []
    for p in paths:
        if not os.path.exists(p):
            # bench/memory-BOARD/memory.json: the board is in the directory's name.
            board = os.path.basename(os.path.dirname(p)).removeprefix("memory-")
            print(f"memory-report: no {p} (the run failed before sampling)", file=sys.stderr)
            missing.append(board)
            continue
        with open(p) as f:
            r = json.load(f)
        runs.append(r)
    print("| board | -m MiB | kernel | MemTotal kB | MemAvailable kB min / max | tunnels min / max "
          "| samples over s | result |")
    print("|---|---|---|---|---|---|---|---|")
    for r in runs:
        # The scenario's own verdict (OOM, restarts, floor, tunnels).
        result = "FAIL: " + "; ".join(r["problems"]) if r["problems"] else "PASS"
        print(f"| {r['board']} | {r['qemu_mem_mib']} | {r['kernel']} | {r['mem_total_kb']:,} "
              f"| {r['mem_available_min_kb']:,} / {r['mem_available_max_kb']:,} "
              f"| {r['tunnels_min']} / {r['tunnels_max']} | {len(r['samples'])} over {r['seconds']:.0f} "
              f"| {result} |")
    for board in missing:
        print(f"| {board} | - | - | - | - | - | 0 | FAIL: no sample (its log: bench/memory-{board}.log) |")
    print()
    print("Processes in the last sample (kB, summed per kind; PSS shares library pages among the "
          "processes mapping them, private is the process's own):")
    print()
    print("| board | " + " | ".join(f"{k}: n, RSS / PSS / private" for k in KINDS) + " | all: PSS |")
    print("|---|" + "---|" * (len(KINDS) + 1))
    for r in runs:
        cells = []
        for k in KINDS:
            a = r["by_kind"].get(k)
            cells.append(f"{a['count']}, {a['rss_kb']:,} / {a['pss_kb']:,} / {a['private_kb']:,}"
                         if a else "-")
        total = sum(a["pss_kb"] for a in r["by_kind"].values())
        print(f"| {r['board']} | " + " | ".join(cells) + f" | {total:,} |")
    with open(out, "w") as f:
        json.dump(runs, f, indent=1)


if __name__ == "__main__":
    main()
