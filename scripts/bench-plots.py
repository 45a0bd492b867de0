#!/usr/bin/env python3
"""PNG plots for `make bench` (run with .venv/bin/python: matplotlib).

bench/convergence.png: netns networks of `re6st-bench node` (bench/report.json
"node"): fraction of node pairs that ping each other over the overlay, per
ping round, and the share of nodes that reached every other node, against
the time since the last node started.

bench/scale.png: convergence time against the network size (netns), and,
when bench/sim.json exists (`make sim`), the simulator's diameter, mean
hops, stretch and control messages against the network size.

Usage: bench-plots.py [REPORT_JSON [SIM_JSON [OUT_DIR]]]
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def get(d, *path):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def convergence(nets, out):
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for net in nets:
        label = f"{net['nodes']} nodes (client count {net['client_count']})"
        s = net.get("convergence") or []
        if not s:
            continue
        t = [p["after_last_start"] for p in s]
        f = [p["fraction"] for p in s]
        ax1.step(t, f, where="post", label=label)
        start = net["seconds_to_last_start"]
        done = sorted(x - start for x in net["node_reached_all_seconds"] if x is not None)
        n = net["nodes"]
        ax2.step([0] + done, [0] + [(i + 1) / n for i in range(len(done))], where="post", label=label)
    ax1.set_xlabel("s after the last node started")
    ax1.set_ylabel("fraction of node pairs answering ping")
    ax1.set_ylim(0, 1.05)
    ax1.set_title("Reachable pairs over the overlay")
    ax2.set_xlabel("s after the last node started")
    ax2.set_ylabel("fraction of nodes")
    ax2.set_ylim(0, 1.05)
    ax1.set_xlim(left=0)
    ax2.set_xlim(left=0)
    ax2.set_title("Nodes that reached every other node")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Convergence in network namespaces (re6st-bench node)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def scale(nets, sims, out):
    panels = 1 + (3 if sims else 0)
    fig, axes = plt.subplots(1, panels, figsize=(4.4 * panels, 4.2), squeeze=False)
    axes = axes[0]
    ax = axes[0]
    nets = sorted(nets, key=lambda n: n["nodes"])
    xs = [n["nodes"] for n in nets]
    ax.plot(xs, [n["seconds_after_last_start"] for n in nets], "o-", label="all pairs reach")
    med = []
    for n in nets:
        start = n["seconds_to_last_start"]
        d = sorted(x - start for x in n["node_reached_all_seconds"] if x is not None)
        med.append(d[len(d) // 2] if d else float("nan"))
    ax.plot(xs, med, "s--", label="median node reaches all")
    ax.set_xlabel("nodes (netns)")
    ax.set_ylabel("s after the last node started")
    ax.set_title("Convergence vs size (netns)")
    top = max([n["seconds_after_last_start"] for n in nets] + [1])
    ax.set_ylim(0, top * 1.15)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if sims:
        # The steady state is before the loss: one run per size (the random
        # loss run; the targeted one has the same parameters and seed).
        by_size = {}
        for r in sims:
            n = get(r, "params", "nodes")
            if n is None or get(r, "params", "nat_announces"):
                continue
            if n not in by_size or get(r, "params", "loss", "kind") == "random":
                by_size[n] = r
        runs = [by_size[n] for n in sorted(by_size)]
        specs = [
            (axes[1], "Paths (simulator, steady state)", "hops",
             [("diameter", ("steady", "paths", "overlay", "diameter"), "o-"),
              ("mean hops", ("steady", "paths", "overlay", "mean"), "s-"),
              ("random-regular mean", ("steady", "paths", "reference", "mean"), "x:")]),
            (axes[2], "Stretch (simulator)", "ratio",
             [("hop stretch", ("steady", "paths", "hop_stretch"), "o-"),
              ("latency stretch median", ("steady", "paths", "latency_stretch", "median"), "s-")]),
            (axes[3], "Control traffic (simulator)", "per node per minute",
             [("peer messages", ("control_steady", "peer_messages"), "o-"),
              ("version announcements", ("control_steady", "version_announcements"), "s-"),
              ("babel dumps", ("control_steady", "babel_dumps"), "x:")]),
        ]
        for ax, title, ylabel, metrics in specs:
            for name, path, style in metrics:
                pts = [(get(r, "params", "nodes"), get(r, *path)) for r in runs]
                pts = [(x, y) for x, y in pts if x is not None and y is not None]
                if pts:
                    ax.plot(*zip(*pts), style, label=name)
            ax.set_xscale("log")
            ax.set_xlabel("nodes (simulated)")
            ax.set_ylabel(ylabel)
            ax.set_title(title)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main():
    report = sys.argv[1] if len(sys.argv) > 1 else "bench/report.json"
    sim = sys.argv[2] if len(sys.argv) > 2 else "bench/sim.json"
    out = sys.argv[3] if len(sys.argv) > 3 else "bench"
    nets = json.load(open(report)).get("node") or []
    sims = json.load(open(sim)) if os.path.exists(sim) else []
    convergence(nets, os.path.join(out, "convergence.png"))
    scale(nets, sims, os.path.join(out, "scale.png"))
    print(f"bench-plots: wrote {out}/convergence.png and {out}/scale.png"
          + ("" if sims else f" (no {sim}: netns only)"))


if __name__ == "__main__":
    main()
