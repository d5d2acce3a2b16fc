#!/usr/bin/env python3
"""Medians over alternating rounds of `bench_kernels --only fused_paths`
(one round a process) of two builds, as fused_ab_rounds.sh runs them: the
decode alone and the time the remote partials add (with them minus alone
in the same process) per build, path, shape and partial count, median
[min..max] over the rounds, and the added time's share of the decode
(median over median, as bench_kernels reports it; goal <= 2%).

Usage: fused_ab_summary.py --out all.csv --names BASE,NEW DIR
DIR holds base-<round>.csv and new-<round>.csv; all.csv gets every row,
the variant prefixed by the build's name and the splits column set to the
round (the layout of bench/results/kernels-h200-fused-merge-*.csv); the
table goes to stdout.
"""
import argparse
import csv
import glob
import os
import re
import statistics

# (batch, context, partial counts): the fused merge's fixed-cost shapes
# kernels/NOTES.md follows (batch 1-8 with splits, 32 and 128 with one).
POINTS = [(1, 8192, (1, 4, 8)), (1, 1024, (1,)), (8, 1024, (1, 8)), (8, 8192, (1, 8)), (32, 1024, (1, 8)),
          (32, 8192, (1, 8)), (128, 1024, (1, 8))]


def spread(v):
    return "%.2f [%.2f..%.2f]" % (statistics.median(v), min(v), max(v)) if v else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--names", default="main,new", help="the two builds' names, base first")
    ap.add_argument("dir")
    args = ap.parse_args()
    names = dict(zip(("base", "new"), args.names.split(",")))
    rows = []
    # alone[(build, path, b, ctx)][round] = us; withp[(build, path, dtype, b, ctx, R)][round] = us
    alone, withp, ceil = {}, {}, []
    for path in sorted(glob.glob(os.path.join(args.dir, "*.csv"))):
        m = re.fullmatch(r"(base|new)-(\d+)\.csv", os.path.basename(path))
        if not m:
            continue
        build, rnd = m.group(1), int(m.group(2))
        for r in csv.DictReader(open(path)):
            r["variant"] = names[build] + "/" + r["variant"]
            r["splits"] = str(rnd)
            rows.append(r)
            if r["kernel"] == "copy":
                ceil.append(float(r["gbps"]))
            if r["kernel"] != "decode_merge_paths":
                continue
            p, kind = r["variant"].split("/")[1:]
            shape = (int(r["batch"]), int(r["context"]))
            us = float(r["median_ms"]) * 1e3
            if kind == "alone":
                alone.setdefault((build, p) + shape, {})[rnd] = us
            else:
                withp.setdefault((build, p, kind[:3]) + shape + (int(r["parts"]),), {})[rnd] = us
    if not rows:
        print("no rounds in", args.dir)
        return
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)

    def added(build, p, dt, b, c, R):
        a, t = alone.get((build, p, b, c), {}), withp.get((build, p, dt, b, c, R), {})
        return [t[i] - a[i] for i in sorted(t) if i in a]

    rounds = {b: len({i for k, v in alone.items() if k[0] == b for i in v}) for b in names}
    print("rounds: %s %d, %s %d; copy ceiling %.0f-%.0f GB/s\n" % (
        names["base"], rounds["base"], names["new"], rounds["new"], min(ceil or [0]), max(ceil or [0])))
    paths = sorted({k[1] for k in alone})
    print("| point (us; with partials: added, %% of the decode) | %s | %s |" % (names["base"], names["new"]))
    print("|---|---|---|")
    for b, c, rs in POINTS:
        print("| decode alone b=%d/%dK | %s | %s |" % (
            b, c // 1024, spread(list(alone.get(("base", "m3", b, c), {}).values())),
            spread(list(alone.get(("new", "m3", b, c), {}).values()))))
        for p in paths:
            for dt in ("f32", "f16"):
                for R in rs:
                    cells = []
                    for build in names:
                        a = added(build, p, dt, b, c, R)
                        al = statistics.median(list(alone.get((build, p, b, c), {}).values()) or [float("nan")])
                        cells.append("%s, %.2f%%" % (spread(a), 100 * statistics.median(a) / al) if a else "-")
                    print("| b=%d/%dK %s R = %d, path %s | %s | %s |" % (b, c // 1024, dt, R, p[1], *cells))


if __name__ == "__main__":
    main()
