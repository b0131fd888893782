#!/usr/bin/env python3
"""Plots docs/bench/scale.json (benches/bench_scale.py): cache-hit latency vs cached tokens.

    python benches/plot_scale.py [scale.json] [out.png]

Log-x cache size, log-y hit latency (µs, median with a p99 whisker), tokenward and
keystonemiddleware 13.0.1, hot (1,024 cached tokens cycled) and random (a random cached token)
series. Sizes where keystonemiddleware was not measured are marked N/A.
"""

from __future__ import annotations

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STYLE = {
    ("tokenward", "hot"): dict(color="#1f77b4", marker="o", linestyle="-"),
    ("tokenward", "random"): dict(color="#1f77b4", marker="s", linestyle="--", markerfacecolor="none"),
    ("keystonemiddleware", "hot"): dict(color="#d62728", marker="o", linestyle="-"),
    ("keystonemiddleware", "random"): dict(color="#d62728", marker="s", linestyle="--", markerfacecolor="none"),
}


def main(argv: list[str]) -> int:
    src = argv[1] if len(argv) > 1 else os.path.join(ROOT, "docs", "bench", "scale.json")
    dst = argv[2] if len(argv) > 2 else os.path.join(ROOT, "docs", "bench", "hit-latency-vs-cache-size.png")
    with open(src) as fh:
        res = json.load(fh)
    p1 = res["hit_vs_size"]
    sizes = p1["sizes"]
    meta = res["meta"]

    fig, ax = plt.subplots(figsize=(9, 5.6), dpi=120)
    for impl in ("tokenward", "keystonemiddleware"):
        for kind in ("hot", "random"):
            xs, med, lo, hi = [], [], [], []
            for n in sizes:
                row = p1[impl][str(n)].get(kind)
                if not row:
                    continue
                xs.append(n)
                med.append(row["median_us"])
                lo.append(0)
                hi.append(max(0.0, row["p99_us"] - row["median_us"]))
            if not xs:
                continue
            ax.errorbar(
                xs,
                med,
                yerr=[lo, hi],
                capsize=3,
                linewidth=1.8,
                markersize=6,
                label=f"{impl} — {kind}",
                **STYLE[(impl, kind)],
            )
            for x, y in zip(xs, med):
                ax.annotate(
                    f"{y:,.1f}" if y < 100 else f"{y:,.0f}",
                    (x, y),
                    textcoords="offset points",
                    xytext=(6, -12 if (kind == "random") == (impl == "keystonemiddleware") else 6),
                    fontsize=8,
                    color=STYLE[(impl, kind)]["color"],
                )
        na = [n for n in sizes if not p1[impl][str(n)].get("hot")]
        for n in na:
            ax.annotate(f"{impl}: N/A", (n, 1), fontsize=8, color=STYLE[(impl, "hot")]["color"], ha="center")

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sizes)
    ax.set_xticklabels([f"{n:,}" for n in sizes])
    ax.set_xlabel("tokens in the in-process cache (log)")
    ax.set_ylabel("cache-hit latency, µs per WSGI call (log; median, whisker to p99)")
    ax.set_title(
        "Cache-hit latency vs cache size: tokenward "
        f"{meta['versions'].get('tokenward', '?')} vs keystonemiddleware {meta['versions'].get('keystonemiddleware', '?')}",
        fontsize=11,
    )
    ax.grid(True, which="major", alpha=0.4)
    ax.grid(True, which="minor", alpha=0.12)
    ax.legend(loc="upper left", fontsize=9)
    fig.text(
        0.01,
        0.01,
        f"hot: 1,024 cached tokens cycled; random: a random cached token per call. Python {meta['python']}, "
        f"{meta['cpus']} CPUs, {meta['mode']} run. Source: benches/bench_scale.py",
        fontsize=7,
        color="#555",
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    fig.savefig(dst)
    print(f"wrote {dst}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
