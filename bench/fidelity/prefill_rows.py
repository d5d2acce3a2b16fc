#!/usr/bin/env python3
"""Signed error of the re-priced prefill rows of measured runs: for each
RUN_DIR (iterations.csv and the rows file of `infsim compare ... --reprice
CFG --reprice-rows RUN_DIR/ROWS`), the median of (predicted - measured) /
measured over the rows with at least --min-tokens prefill tokens, over all
of them and over those that start after idle time (the GPU busy less than
--busy-below of the second before the row's start): the rows the clock
term (docs/calibration.md, "The GPU clock after idle time") prices faster.

  prefill_rows.py [--rows rows.csv] [--min-tokens 4096] [--busy-below 0.7] RUN_DIR...

Prints one line per run: after idle MEDIAN% (ROWS), all MEDIAN% (ROWS).
"""
import argparse
import csv
import statistics
import sys


def busy_before(spans, i):
    """Seconds of the second before row i's start that earlier rows were running."""
    s = spans[i][0]
    return sum(max(0.0, min(e, s) - max(a, s - 1.0)) for a, e in spans[:i])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="rows.csv")
    ap.add_argument("--min-tokens", type=int, default=4096)
    ap.add_argument("--busy-below", type=float, default=0.7)
    ap.add_argument("runs", nargs="+")
    a = ap.parse_args()
    for d in a.runs:
        try:
            with open(f"{d}/iterations.csv") as f:
                spans = [(float(r["start_s"]), float(r["end_s"])) for r in csv.DictReader(f)]
            with open(f"{d}/{a.rows}") as f:
                rows = list(csv.DictReader(f))
        except (OSError, KeyError, ValueError) as e:
            sys.exit(f"prefill_rows.py: {d}: {e}")
        after_idle, every = [], []
        for r in rows:
            if int(r["prefill_tokens"]) < a.min_tokens:
                continue
            meas, pred = float(r["measured_s"]), float(r["predicted_s"])
            err = (pred - meas) / meas * 100
            every.append(err)
            if busy_before(spans, int(r["row"])) < a.busy_below:
                after_idle.append(err)
        med = lambda xs: f"{statistics.median(xs):+.1f}% ({len(xs)})" if xs else "- (0)"
        print(f"{d}: after idle {med(after_idle)}, all {med(every)}")


if __name__ == "__main__":
    main()
