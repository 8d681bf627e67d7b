#!/usr/bin/python3
"""Markdown tables for bench/RESULTS.md from Google Benchmark JSON output.

    /usr/bin/python3 scripts/results_table.py RUN.json [MORE.json ...]

Each file is one run of bench_scan_core, bench_mamba2 or bench_mamba
(`--benchmark_out=RUN.json --benchmark_out_format=json`); the tables of every
benchmark family found are printed, with the machine they ran on. Files of
one machine are merged: a thread count from a later file adds a column, and
each multi-thread figure's speed-up is taken against the one-thread run of
its own file (a 16-core session's speed-up against its own 1 thread).

Cells: a rate, then (its ceiling measured by the same run; `share` = the
rate over the ceiling, then `share_best`, the fastest window over it, where
the benchmark reports one).
"""

import json
import re
import sys
from collections import defaultdict


def load(path):
    with open(path) as f:
        run = json.load(f)
    rows = {}
    for b in run["benchmarks"]:
        if b.get("run_type", "iteration") != "iteration" or "error_occurred" in b:
            continue
        rows[b["name"]] = b
    return run["context"], rows


def params(name):
    """'BM_X/L:16/N:64/threads:2/real_time' -> ('BM_X', {'L': 16, ...})"""
    parts = name.split("/")
    out = {}
    for p in parts[1:]:
        m = re.fullmatch(r"(\w+):(\d+)", p)
        if m:
            out[m.group(1)] = int(m.group(2))
    return parts[0], out


def pow2(n):
    k = n.bit_length() - 1
    return f"2^{k}" if n == 1 << k and k >= 8 else str(n)


def share(b):
    s = f"{b['share']:.2f}"
    return s + (f" / {b['share_best']:.2f}" if "share_best" in b else "")


def machine(context, paths):
    caches = ", ".join(f"L{c['level']} {c['size'] // 1024} KiB" for c in context.get("caches", [])
                       if c["type"] in ("Data", "Unified"))
    return (f"Runs: {', '.join(paths)}; {context.get('num_cpus')} CPUs at "
            f"{context.get('mhz_per_cpu')} MHz ({caches}), SIMD {context.get('simd', '?')}, "
            f"{context.get('date', '')[:10]}.")


def rate(b):
    """The benchmark's throughput, whichever counter it reports it in."""
    return b.get("items_per_second") or b.get("updates_s") or b.get("tok_s")


def speedups(files, bench):
    """{(name without threads): {threads: (row, speed-up)}} over all files."""
    table = defaultdict(dict)
    for _, rows in files:
        ones = {}
        for name, b in rows.items():
            base, p = params(name)
            if base == bench and p.get("threads") == 1:
                ones[re.sub(r"/threads:\d+", "", name)] = b
        for name, b in rows.items():
            base, p = params(name)
            if base != bench or "threads" not in p:
                continue
            key = re.sub(r"/threads:\d+", "", name)
            one = ones.get(key)
            table[key][p["threads"]] = (b, rate(b) / rate(one) if one and rate(one) else None)
    return table


def scan_core(files):
    table = speedups(files, "BM_ScanCore")
    if not table:
        return
    scalar = {}
    for _, rows in files:
        for name, b in rows.items():
            base, p = params(name)
            if base == "BM_ScalarLoop":
                scalar[(p["L"], p["C"])] = b["items_per_second"]
    threads = sorted({t for cells in table.values() for t in cells})
    print("| L | C | " + " | ".join(
        f"{t} thread{'s' if t > 1 else ''}: G/s (ceiling; share / best)" +
        ("; speed-up" if t > 1 else "") for t in threads) + " | scalar G/s | SIMD / scalar |")
    print("| ---: | ---: | " + " | ".join("---" for _ in threads) + " | ---: | ---: |")
    keys = sorted(table, key=lambda k: (params(k)[1]["C"], params(k)[1]["L"]))
    for key in keys:
        p = params(key)[1]
        cells = []
        for t in threads:
            if t not in table[key]:
                cells.append("-")
                continue
            b, up = table[key][t]
            cell = f"{b['items_per_second'] / 1e9:.2f} ({b['ceiling'] / 1e9:.2f}; {share(b)})"
            if t > 1 and up:
                cell += f"; **{up:.2f}x**" if up >= 1.8 else f"; {up:.2f}x"
            cells.append(cell)
        sc = scalar.get((p["L"], p["C"]))
        one = table[key].get(1, (None,))[0]
        ratio = f"{one['items_per_second'] / sc:.1f}x" if sc and one else "-"
        scalar_cell = f"{sc / 1e9:.2f}" if sc else "-"
        print(f"| {pow2(p['L'])} | {p['C']} | " + " | ".join(cells) + f" | {scalar_cell} | {ratio} |")
    print()


def ssd(files):
    table = speedups(files, "BM_SsdRecurrent")
    if not table:
        return
    chunked = defaultdict(list)
    for _, rows in files:
        for name, b in rows.items():
            base, p = params(name)
            if base == "BM_SsdChunked":
                chunked[(p["N"], p["L"], p["threads"])].append((b["updates_s"], p["Q"]))
    threads = sorted({t for cells in table.values() for t in cells})
    print("| N | L | " + " | ".join(
        f"recurrent, {t} thread{'s' if t > 1 else ''}: G updates/s (share / best)" for t in threads) +
        " | chunked, 1 thread: best chunk (G updates/s; of recurrent) |")
    print("| ---: | ---: | " + " | ".join("---" for _ in threads) + " | --- |")
    for key in sorted(table, key=lambda k: (params(k)[1]["N"], params(k)[1]["L"])):
        p = params(key)[1]
        cells = []
        for t in threads:
            b = table[key].get(t, (None,))[0]
            cells.append(f"{b['updates_s'] / 1e9:.2f} ({share(b)})" if b else "-")
        best = max(chunked.get((p["N"], p["L"], 1), []), default=None)
        one = table[key].get(1, (None,))[0]
        ch = (f"Q = {best[1]} ({best[0] / 1e9:.2f}; {best[0] / one['updates_s']:.2f})"
              if best and one else "-")
        print(f"| {p['N']} | {p['L']} | " + " | ".join(cells) + f" | {ch} |")
    ceilings = {round(b["ceiling_updates_s"] / 1e9, 2) for cells in table.values()
                for b, _ in cells.values() if "ceiling_updates_s" in b}
    print(f"\nCeilings (FMA lanes / 2 of the run's threads, G updates/s): {', '.join(map(str, sorted(ceilings)))}.\n")


def models(files):
    rows = []
    for ctx, bench in files:
        for name, b in bench.items():
            base, p = params(name)
            if base in ("BM_Prefill", "BM_Decode"):
                rows.append((ctx, base, p, b))
    if not rows:
        return
    print("| model | run | threads | tok/s (ceiling) | share |")
    print("| --- | --- | ---: | --- | ---: |")
    for ctx, base, p, b in sorted(rows, key=lambda r: (r[0].get("executable", ""), r[1] != "BM_Prefill",
                                                                 r[2].get("chunked", 0), r[2].get("L", 0),
                                                                 r[2]["threads"])):
        model = "Mamba-2" if "mamba2" in ctx.get("executable", "") else "Mamba-1"
        what = (f"prefill {p['L']}" + (" chunked" if p.get("chunked") else "")
                if base == "BM_Prefill" else "decode")
        s = f"**{b['share']:.2f}**" if b["share"] >= (0.70 if base == "BM_Prefill" else 0.85) else f"{b['share']:.2f}"
        print(f"| {model} | {what} | {p['threads']} | {b['tok_s']:.1f} ({b['ceiling_tok_s']:.1f}) | {s} |")
    print()


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(sys.argv) > 1 else 2
    files = [load(p) for p in sys.argv[1:]]
    print(machine(files[0][0], sys.argv[1:]) + "\n")
    scan_core(files)
    ssd(files)
    models(files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
