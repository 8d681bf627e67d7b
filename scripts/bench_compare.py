#!/usr/bin/python3
"""Repeated, alternating runs of one or two Google Benchmark programs, with
min / median / max per benchmark and, for two programs, the median of the
per-round ratios (second / first).

On a shared machine a single run can be 30% off in either direction; a
change is only measured when both builds run in the same rounds, one after
the other, and their ratios are compared round by round. Every A/B table in
bench/RESULTS.md and bench/LOG.md is of this kind.

  /usr/bin/python3 scripts/bench_compare.py --rounds 5 --cpu 0 \\
      old/bench_mamba2 new/bench_mamba2 -- \\
      --benchmark_filter='BM_SsdRecurrent/.*/threads:1' --benchmark_min_time=0.3

--counter picks the figure (default: `share`, else `updates_s`, else
items_per_second, else 1 / real_time; higher is better for all of them).
The table is Markdown, for RESULTS.md; progress goes to stderr.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys


def run(binary, args, cpu):
    cmd = ([] if cpu is None else ["taskset", "-c", cpu]) + [binary, "--benchmark_format=json"] + args
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench_compare: {' '.join(cmd)} exited with {done.returncode}:\n{done.stderr[-2000:]}")
    benches = json.loads(done.stdout)["benchmarks"]
    return [b for b in benches if b.get("run_type", "iteration") == "iteration" and "error_message" not in b]


def figure(bench, counter):
    for key in ([counter] if counter else ["share", "updates_s", "items_per_second"]):
        if key in bench:
            return float(bench[key])
    if counter:
        sys.exit(f"bench_compare: {bench['name']} has no counter '{counter}'")
    return 1.0 / float(bench["real_time"])


def spread(values):
    return f"{min(values):.3g} / {statistics.median(values):.3g} / {max(values):.3g}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("binaries", nargs="+", help="one or two benchmark programs")
    p.add_argument("--rounds", type=int, default=3, help="rounds (each runs every program once)")
    p.add_argument("--counter", help="the counter to compare (see above)")
    p.add_argument("--cpu", help="pin each run with taskset -c CPU (e.g. 0)")
    argv = sys.argv[1:]
    bench_args = argv[argv.index("--") + 1:] if "--" in argv else []
    opts = p.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if len(opts.binaries) > 2:
        p.error("at most two programs")
    if opts.rounds < 1:
        p.error("--rounds must be at least 1")
    for b in opts.binaries:
        if not os.access(b, os.X_OK):
            p.error(f"{b} is not an executable program")

    # values[name][program index] = one figure per round
    values, names = {}, []
    for r in range(opts.rounds):
        for i, b in enumerate(opts.binaries):
            print(f"round {r + 1}/{opts.rounds}: {b}", file=sys.stderr, flush=True)
            for bench in run(b, bench_args, opts.cpu):
                if bench["name"] not in values:
                    names.append(bench["name"])
                row = values.setdefault(bench["name"], [[] for _ in opts.binaries])
                row[i].append(figure(bench, opts.counter))

    labels = [f"{b} (min / median / max)" for b in opts.binaries]
    head = ["benchmark"] + labels + (["ratio, median [range]"] if len(opts.binaries) == 2 else [])
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for name in names:
        row = values[name]
        cells = [name] + [spread(v) if v else "-" for v in row]
        if len(row) == 2:
            ratios = [b / a for a, b in zip(row[0], row[1]) if a > 0]
            cells.append(f"{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]"
                         if ratios else "-")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
