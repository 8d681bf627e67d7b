#!/usr/bin/python3
"""Plots bench_scaling's Google Benchmark JSON: docs/scan_vs_attention.png.

    build/release/bench/bench_scaling --benchmark_format=json --benchmark_out=scaling.json
    /usr/bin/python3 bench/plot_scaling.py scaling.json [-o docs/scan_vs_attention.png]

Four panels: the operators' time against L, the layers' time per sequence
against L, the time of one decode step against the context, and the measured
peak memory of each. Time: CPU time of the thread at 1 thread, wall time
at 2. Prints a markdown summary: the exponent p of time ~ L^p (least
squares of log t on log L over L >= 4096), the lengths where Mamba becomes
cheaper, and the decode costs and memory at 1K, 16K and 128K.
Needs Debian's matplotlib and numpy (/usr/bin/python3).
"""
import argparse
import json
import math
import re
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

UNIT = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
NAME = re.compile(r"^(?P<family>[a-z_]+/[a-z_]+)/(?:L|n):(?P<L>\d+)/threads:(?P<t>\d+)")
FIT_FROM = 4096

# colour by side (Mamba: blues/greens; attention: reds), label per series
STYLE = {
    "forward_op/scan": ("tab:blue", "selective scan (D 768, N 16)"),
    "forward_op/scan_streamed": ("tab:cyan", "selective scan, 4096-token chunks"),
    "forward_op/attention": ("tab:red", "attention, tiled (12 x 64)"),
    "forward_op/attention_naive": ("tab:orange", "attention, naive (L x L scores)"),
    "forward_layer/mamba": ("tab:blue", "Mamba block (d_model 768)"),
    "forward_layer/attention": ("tab:red", "attention layer (d_model 768)"),
    "decode_op/scan": ("tab:cyan", "scan step (op)"),
    "decode_op/attention": ("tab:orange", "attention over KV cache (op)"),
    "decode_layer/mamba": ("tab:blue", "Mamba block step"),
    "decode_layer/attention": ("tab:red", "attention layer step"),
}
PAIRS = [
    ("forward_op/scan", "forward_op/attention"),
    ("forward_layer/mamba", "forward_layer/attention"),
    ("decode_op/scan", "decode_op/attention"),
    ("decode_layer/mamba", "decode_layer/attention"),
]


def load(paths):
    """{(family, threads): sorted [(L, seconds, peak_MiB, state_MiB)]}, context."""
    series, context = defaultdict(dict), {}
    for path in paths:
        with open(path) as f:
            doc = json.load(f)
        context.update(doc.get("context", {}))
        for b in doc["benchmarks"]:
            m = NAME.match(b["name"])
            if not m or b.get("error_occurred") or b.get("run_type") == "aggregate":
                continue
            key = (m["family"], int(m["t"]))
            # as the program: the thread's CPU time at 1 thread (the machine
            # is shared), wall time at 2
            time = b["cpu_time"] if key[1] == 1 else b["real_time"]
            series[key][int(m["L"])] = (time * UNIT[b["time_unit"]], b["peak_MiB"], b["state_MiB"])
    return {k: sorted((L,) + v for L, v in d.items()) for k, d in series.items()}, context


def exponent(points):
    """Slope of log t on log L over L >= FIT_FROM (all points if fewer than 3)."""
    pts = [p for p in points if p[0] >= FIT_FROM]
    if len(pts) < 3:
        pts = points
    if len(pts) < 2:
        return float("nan")
    x = np.log([p[0] for p in pts])
    y = np.log([p[1] for p in pts])
    return float(np.polyfit(x, y, 1)[0])


def crossover(mamba, attention):
    """First L from which Mamba stays cheaper, log-log interpolated; or a phrase."""
    a = {p[0]: p[1] for p in attention}
    r = [(p[0], math.log(p[1] / a[p[0]])) for p in mamba if p[0] in a]
    if not r:
        return None, "n/a"
    i = len(r)
    while i > 0 and r[i - 1][1] < 0:
        i -= 1
    if i == len(r):
        return None, f"none up to {r[-1][0]} (Mamba costlier)"
    if i == 0:
        return None, f"below {r[0][0]} (Mamba cheaper everywhere)"
    (L0, r0), (L1, r1) = r[i - 1], r[i]
    x = math.exp(math.log(L0) + (math.log(L1) - math.log(L0)) * r0 / (r0 - r1))
    return x, f"{x:,.0f}"


def fmt_p(p):
    return "n/a" if math.isnan(p) else f"{p:.2f}"


def fmt_time(s):
    return f"{s * 1e6:.0f} us" if s < 1e-3 else f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.2f} s"


def fmt_mib(m):
    return f"{m * 1024:.0f} KiB" if m < 1 else f"{m:,.1f} MiB"


def plot(series, out, machine):
    fig, axes = plt.subplots(2, 2, figsize=(13, 10))
    panels = [
        (axes[0, 0], "forward_op/", "operators over a sequence (1 thread)", "time per sequence (s)", "L (tokens)"),
        (axes[0, 1], "forward_layer/", "layers over a sequence", "time per sequence (s)", "L (tokens)"),
        (axes[1, 0], "decode_", "one decode step after n tokens", "time per token (s)", "context n (tokens)"),
    ]
    for ax, prefix, title, ylabel, xlabel in panels:
        for (family, t), pts in sorted(series.items()):
            if not family.startswith(prefix):
                continue
            colour, label = STYLE[family]
            style = "-" if t == 1 else "--"
            p = exponent(pts)
            ax.loglog([q[0] for q in pts], [q[1] for q in pts], style, color=colour, marker="o", ms=3,
                      label=f"{label}, {t} thr: p = {fmt_p(p)}")
        for m, a in PAIRS:
            if not m.startswith(prefix):
                continue
            for t, style in ((1, ":"), (2, "-.")):
                if (m, t) in series and (a, t) in series:
                    x, _ = crossover(series[(m, t)], series[(a, t)])
                    if x:  # 1 thread labelled at the bottom, 2 at the top
                        ax.axvline(x, color="gray", ls=style, lw=1)
                        ax.annotate(f"{x:,.0f} ({t} thr)", (x, ax.get_ylim()[t - 1]), rotation=90,
                                    va="bottom" if t == 1 else "top", ha="right", fontsize=8, color="gray")
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", title=f"p: slope of log t on log L, L >= {FIT_FROM}",
                  title_fontsize=7)

    ax = axes[1, 1]
    for (family, t), pts in sorted(series.items()):
        if t != 1 or family.startswith("decode_op"):
            continue
        colour, label = STYLE[family]
        style = {"forward_op": "-", "forward_layer": "--", "decode_layer": ":"}[family.split("/")[0]]
        what = "per sequence (KV cache / state)" if family.startswith("decode") else "peak"
        ax.loglog([q[0] for q in pts], [max(q[2], 1e-3) for q in pts], style, color=colour, marker="o", ms=3,
                  label=f"{label}: {what}")
    ax.set(title="measured memory (fresh process, above its inputs)", xlabel="L or context n (tokens)",
           ylabel="MiB")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Selective scan (Mamba) vs causal softmax attention, float32, batch 1 - {machine}", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def summary(series):
    lines = ["| series | threads | L measured | p (time ~ L^p, L >= 4096) | time at largest L | peak memory there |",
             "| --- | --- | --- | --- | --- | --- |"]
    for (family, t), pts in sorted(series.items()):
        L, s, peak, _ = pts[-1]
        lines.append(f"| {family} | {t} | {pts[0][0]:,} .. {L:,} | {fmt_p(exponent(pts))} | {fmt_time(s)} | "
                     f"{fmt_mib(peak)} |")
    lines += ["", "| Mamba | attention | threads | Mamba cheaper from L = |", "| --- | --- | --- | --- |"]
    for m, a in PAIRS:
        for t in (1, 2):
            if (m, t) in series and (a, t) in series:
                lines.append(f"| {m} | {a} | {t} | {crossover(series[(m, t)], series[(a, t)])[1]} |")
    lines += ["", "| decode step | threads | n = 1K | n = 16K | n = 128K | memory per sequence (measured; analytic) at 128K |",
              "| --- | --- | --- | --- | --- | --- |"]
    for (family, t), pts in sorted(series.items()):
        if not family.startswith("decode"):
            continue
        at = {p[0]: p for p in pts}
        cells = [fmt_time(at[n][1]) if n in at else "-" for n in (1024, 16384, 131072)]
        last = at.get(131072, pts[-1])
        lines.append(f"| {family} | {t} | " + " | ".join(cells) + f" | {fmt_mib(last[2])}; {fmt_mib(last[3])} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", nargs="+", help="bench_scaling --benchmark_format=json output(s)")
    ap.add_argument("-o", "--out", default="docs/scan_vs_attention.png")
    ap.add_argument("--machine", default=None, help="title text (default: from the JSON context)")
    args = ap.parse_args()
    series, context = load(args.json)
    load_avg = context.get("load_avg", [0])[0]
    if load_avg > 0.5:  # another job on a core stalls every OpenMP barrier
        print(f"warning: the load average was {load_avg:.1f} when the run started: the 2-thread "
              "times (wall time) are unreliable on a busy machine", file=sys.stderr)
    machine = args.machine or (f"{context.get('cpu', '?')}, {context.get('num_cpus', '?')} CPUs, "
                               f"{context.get('simd', '?')}, {context.get('mode', '?')} mode")
    plot(series, args.out, machine)
    print(summary(series))


if __name__ == "__main__":
    main()
