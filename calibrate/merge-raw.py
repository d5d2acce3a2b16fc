#!/usr/bin/env python3
"""Merges raw calibration CSVs of the same GPU and model, run one after the
other, into one: each point (kernel, TP and aggregates) keeps the median of
its runs' medians, and the spread column becomes the runs' max - min.

Why: under a power cap the clock moves by up to a third within seconds,
and a whole layer is timed as the difference of two models' forwards
(docs/calibration.md), so one run's layer points can land at another
clock than the next run's; the median of a few runs is what a fit should see.

  merge-raw.py OUT.csv RAW.csv RAW.csv...     (points missing from a run keep the others')
"""
import csv
import os
import statistics
import sys

KEY = ("tp", "kernel", "tokens", "pairs", "requests", "context_tokens", "partials", "bytes", "local_fraction")


def main():
    out, srcs = sys.argv[1], sys.argv[2:]
    if len(srcs) < 2:
        print("merge-raw.py: name OUT.csv and at least two raw files", file=sys.stderr)
        return 2
    head, order, runs, first = None, [], {}, {}
    for path in srcs:
        with open(path, newline="") as f:
            rd = csv.DictReader(f)
            if head is None:
                head = rd.fieldnames
            elif rd.fieldnames != head:
                print(f"{path}:1: columns differ from {srcs[0]}", file=sys.stderr)
                return 2
            for line, row in enumerate(rd, start=2):
                if (row["gpu"], row["model"]) != (first.get("gpu", row["gpu"]), first.get("model", row["model"])):
                    print(f"{path}:{line}: gpu/model: another run's {first['gpu']} / {first['model']}", file=sys.stderr)
                    return 2
                first = first or {"gpu": row["gpu"], "model": row["model"], "row": row}
                k = tuple(row[c] for c in KEY)
                if k not in runs:
                    order.append(k)
                    runs[k] = (row, [])
                runs[k][1].append(float(row["median_ns"]))
    tmp = out + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=head, lineterminator="\n")
        w.writeheader()
        for k in order:
            row, ts = runs[k]
            row = dict(row)
            row["median_ns"] = f"{statistics.median(ts):.6g}"
            row["spread_ns"] = f"{max(ts) - min(ts):.6g}"
            w.writerow(row)
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
