#!/usr/bin/env python3
"""Medians over rotated rounds of `bench_kernels --only fused_paths` (one
round a process) of two or more builds, as fused_ab_rounds.sh runs them:
the decode alone and the time the remote partials add (with them minus
alone in the same process) per build, path, shape and partial count,
median [min..max] over the rounds, the added time's share of the decode
(median over median, as bench_kernels reports it; goal <= 2% where the
partials are <= 1% of the KV) and its ratio to the partials' bytes read
once at the copy ceiling (the median of the rounds' copy rows; goal
<= 1.2x).

Usage: fused_ab_summary.py --out all.csv --names BASE,NEW[,NEW2...] DIR
DIR holds base-<round>.csv, new-<round>.csv, new2-<round>.csv, ..; all.csv
gets every row, the variant prefixed by the build's name and the splits
column set to the round (the layout of bench/results/kernels-h200-fused-
merge-*.csv); the tables go to stdout: the fixed-cost points kernels/NOTES.md
follows, then every point whose partials are <= 1% of the KV or that has 8
partials.
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


def build_keys(n):
    """The rounds' file prefixes of n builds: base, new, new2, new3, .."""
    return ["base", "new"] + ["new%d" % i for i in range(2, n)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--names", default="main,new", help="the builds' names, base first, then new, new2, ..")
    ap.add_argument("dir")
    args = ap.parse_args()
    given = args.names.split(",")
    if len(given) < 2 or len(set(given)) != len(given) or not all(given):
        ap.error("--names: two or more distinct names, base first")
    names = dict(zip(build_keys(len(given)), given))
    rows = []
    # alone[(build, path, b, ctx)][round] = us; withp[(build, path, dtype, b, ctx, R)][round] = us;
    # pbytes[(dtype, b, ctx, R)] = the partials' bytes (with their LSEs)
    alone, withp, pbytes, ceil = {}, {}, {}, []
    for path in sorted(glob.glob(os.path.join(args.dir, "*.csv"))):
        m = re.fullmatch(r"(base|new\d*)-(\d+)\.csv", os.path.basename(path))
        if not m or m.group(1) not in names:
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
                key = (kind[:3],) + shape + (int(r["parts"]),)
                withp.setdefault((build, p) + key, {})[rnd] = us
                pbytes[key] = float(r["bytes"])
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

    def alone_median(build, p, b, c):
        return statistics.median(list(alone.get((build, p, b, c), {}).values()) or [float("nan")])

    rounds = {b: len({i for k, v in alone.items() if k[0] == b for i in v}) for b in names}
    print("rounds: %s; copy ceiling %.0f-%.0f GB/s\n" % (
        ", ".join("%s %d" % (names[b], rounds[b]) for b in names), min(ceil or [0]), max(ceil or [0])))
    paths = sorted({k[1] for k in alone})
    print("| point (us; with partials: added, %% of the decode) | %s |" % " | ".join(names.values()))
    print("|---|" + "---|" * len(names))
    for b, c, rs in POINTS:
        print("| decode alone b=%d/%dK | %s |" % (
            b, c // 1024, " | ".join(spread(list(alone.get((k, "m3", b, c), {}).values())) for k in names)))
        for p in paths:
            for dt in ("f32", "f16"):
                for R in rs:
                    cells = []
                    for build in names:
                        a = added(build, p, dt, b, c, R)
                        cells.append("%s, %.2f%%" % (spread(a), 100 * statistics.median(a) / alone_median(
                            build, p, b, c)) if a else "-")
                    print("| b=%d/%dK %s R = %d, path %s | %s |" % (b, c // 1024, dt, R, p[1], " | ".join(cells)))

    # Every point of the two goals: the partials <= 1% of the KV (64/8
    # heads: 8 KV heads x 128 dims x 2 (K, V) x 2 bytes = 4096 bytes a
    # token), and 8 partials, where their bytes dominate the added time.
    gbps = statistics.median(ceil) if ceil else float("nan")
    print("\nEvery point with the partials <= 1%% of the KV, or 8 of them: added us median [min..max], "
          "%% of the decode, x the partials' bytes at %.0f GB/s\n" % gbps)
    for key in sorted({k[1:] for k in withp}):
        p, dt, b, c, R = key
        small = pbytes[(dt, b, c, R)] <= 0.01 * 4096.0 * b * c
        if not small and R != 8:
            continue
        cells = []
        for build in names:
            a = added(build, p, dt, b, c, R)
            if not a:
                cells.append("-")
                continue
            med = statistics.median(a)
            cells.append("%s %s %5.2f%% %5.2fx" % (names[build], spread(a), 100 * med / alone_median(build, p, b, c),
                                                   med / (pbytes[(dt, b, c, R)] / gbps / 1e3)))
        print("  %s b=%-3d ctx=%-5d %s R=%d%s  %s" % (p, b, c, dt, R, " (<= 1%)" if small else "", " | ".join(cells)))


if __name__ == "__main__":
    main()
