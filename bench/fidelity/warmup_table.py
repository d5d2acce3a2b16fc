#!/usr/bin/env python3
"""The table of gpu_warmup.sh: for each run (DIR/cold-N, DIR/warm-N, as that
script names them), the first three iterations' times and tokens and the
median of the rest, from iterations.csv; then the median first iteration
of the cold runs against the warm ones (the warm-up's effect).

  warmup_table.py DIR
"""
import csv
import os
import re
import statistics
import sys


def rows_of(run_dir):
    with open(os.path.join(run_dir, "iterations.csv")) as f:
        return [(1e3 * (float(r["end_s"]) - float(r["start_s"])), int(r["prefill_tokens"]), int(r["decode_requests"]))
                for r in csv.DictReader(f)]


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip())
    top = sys.argv[1]
    runs = sorted((d for d in os.listdir(top) if re.fullmatch(r"(cold|warm)-\d+", d)),
                  key=lambda d: (int(d.split("-")[1]), d))
    if not runs:
        sys.exit(f"warmup_table.py: {top}: no cold-N or warm-N run")
    first = {"cold": [], "warm": []}
    print("| run | iteration 1 ms (prefill tok) | iteration 2 ms | iteration 3 ms | median of the rest ms |")
    print("|---|---|---|---|---|")
    for d in runs:
        rows = rows_of(os.path.join(top, d))
        if len(rows) < 4:
            sys.exit(f"warmup_table.py: {d}: {len(rows)} iterations, need at least 4")
        first[d.split("-")[0]].append(rows[0][0])
        rest = statistics.median(r[0] for r in rows[3:])
        print(f"| {d} | {rows[0][0]:.1f} ({rows[0][1]}) | {rows[1][0]:.1f} ({rows[1][1]}) | "
              f"{rows[2][0]:.1f} ({rows[2][1]}) | {rest:.2f} |")
    if first["cold"] and first["warm"]:
        c, w = statistics.median(first["cold"]), statistics.median(first["warm"])
        print(f"\nfirst iteration, median: {c:.1f} ms without the warm-up, {w:.1f} ms with it "
              f"({c - w:+.1f} ms)")


if __name__ == "__main__":
    main()
