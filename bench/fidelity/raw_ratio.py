#!/usr/bin/env python3
"""How far two calibrations of the same GPU lie apart, point by point: each
measured point (model, TP degree, kernel and its aggregates) of NEW matched
with the same point of OLD, and per model and kernel (--by-tp: and TP
degree) the number of matched points and the median, p10 and p90 of
NEW / OLD (median_ns). Two calls on two leased machines, or two runs in one
call, give the spread between them (bench/fidelity/README.md, run7).

  raw_ratio.py NEW OLD [--by-tp] [--model NAME]
NEW, OLD: a raw CSV of `infsim calibrate run` (or calibrate/merge-raw.py),
or DB.db:PROFILE, the measurements a calibration DB holds for that profile
(what `infsim calibrate load` stored: the raw rows, merged where they were).
"""
import argparse
import csv
import sqlite3
import statistics
import sys

INTS = ("tp", "tokens", "pairs", "requests", "context_tokens", "partials", "bytes")


def key(model, row):
    # local_fraction is text in a raw CSV ("0.125") and a REAL in the DB
    return (model, row["kernel"]) + tuple(int(row[c]) for c in INTS) + (float(row["local_fraction"]),)


def load(src):
    pts = {}
    if ".db:" in src:
        path, profile = src.rsplit(":", 1)
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        db.row_factory = sqlite3.Row
        q = ("SELECT p.model, m.* FROM measurement m JOIN profile p ON p.id = m.profile_id WHERE p.name = ?")
        rows = db.execute(q, (profile,)).fetchall()
        if not rows:
            sys.exit(f"raw_ratio.py: {path}: no measurements of profile {profile}")
        for r in rows:
            pts[key(r["model"], r)] = float(r["median_ns"])
        return pts
    with open(src, newline="") as f:
        for line, r in enumerate(csv.DictReader(f), start=2):
            try:
                pts[key(r["model"], r)] = float(r["median_ns"])
            except (KeyError, ValueError) as e:
                sys.exit(f"raw_ratio.py: {src}:{line}: {e}")
    return pts


def pct(xs, q):
    """Linear interpolation between closest ranks of sorted xs."""
    i = q * (len(xs) - 1)
    lo = int(i)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (i - lo)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("new")
    ap.add_argument("old")
    ap.add_argument("--by-tp", action="store_true")
    ap.add_argument("--model")
    a = ap.parse_args()
    new, old = load(a.new), load(a.old)
    groups = {}
    for k, t in new.items():
        if k in old and old[k] > 0 and (a.model is None or k[0] == a.model):
            g = (k[0], k[1], k[2]) if a.by_tp else (k[0], k[1])
            groups.setdefault(g, []).append(t / old[k])
    if not groups:
        sys.exit("raw_ratio.py: no point of NEW is in OLD")
    print(f"{'model':12} {'kernel':18} " + ("tp " if a.by_tp else "") + "points  median     p10     p90")
    for g in sorted(groups):
        xs = sorted(groups[g])
        tp = f"{g[2]:2d} " if a.by_tp else ""
        print(f"{g[0]:12} {g[1]:18} {tp}{len(xs):6d}  {statistics.median(xs):.3f}  {pct(xs, 0.1):.3f}  {pct(xs, 0.9):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
