#!/usr/bin/env python3
"""Joins bench_cluster_model --time and torch_forward.py outputs (CSV, same
columns) into the issue's speed table: for decode, our graph-replayed step
against torch's graph-replayed step; for prefill, ours against torch eager.
speedup = torch ms / ours ms (>= 1.0: the cuda executor is at least as fast).

  speed_table.py OURS.csv TORCH.csv
"""
import csv
import sys


def load(path):
    rows = {}
    with open(path) as f:
        lines = [l for l in f if not l.startswith("#") and l.count(",") == 5]
    for r in csv.DictReader(lines):
        rows[(r["kind"], int(r["batch"]), int(r["context"]), int(r["tokens"]), int(r["graphs"]))] = float(r["ms"])
    return rows


def main():
    ours, torch = load(sys.argv[1]), load(sys.argv[2])
    print(f"{'kind':8} {'batch':>5} {'context':>7} {'tokens':>6} {'ours ms':>9} {'torch ms':>9} {'speedup':>8}")
    for key in sorted(ours):
        kind, b, c, n, g = key
        if kind == "decode" and g != 1:
            continue
        tkey = (kind, b, c, n, 1 if kind == "decode" else 0)
        if tkey not in torch:
            continue
        print(f"{kind:8} {b:5d} {c:7d} {n:6d} {ours[key]:9.3f} {torch[tkey]:9.3f} {torch[tkey] / ours[key]:8.3f}")
    # Eager decode against our graphs: what the graphs buy.
    for key in sorted(ours):
        kind, b, c, n, g = key
        if kind == "decode" and g == 0 and (kind, b, c, n, 1) in ours:
            print(f"graphs: batch {b} context {c}: eager {ours[key]:.3f} ms, graph {ours[(kind, b, c, n, 1)]:.3f} ms")


if __name__ == "__main__":
    main()
