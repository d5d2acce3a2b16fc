#!/usr/bin/env python3
"""Medians over the rounds of `bench_kernels --only prefill_cmp`, each joined
with torch by torch_ref.py (one combined CSV per round, torch timed after
the round's own kernels), as one table: TFLOP/s per variant and shape, and
the ratios bench/README.md reports (version 18 over 17, ours over cuDNN,
the append folded in: pipelines 13 and 14 over 10 and 11).

Usage: rounds_summary.py --out all.csv ROUND.csv...   (table on stdout)
"""
import argparse
import csv
import statistics


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="every round's rows, with a round column")
    ap.add_argument("rounds", nargs="+")
    args = ap.parse_args()
    rows = []
    for i, path in enumerate(args.rounds):
        for r in csv.DictReader(open(path)):
            r["round"] = str(i)
            rows.append(r)
    if not rows:
        return
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["round"] + [k for k in rows[0] if k != "round"])
        w.writeheader()
        w.writerows(rows)
    tf = {}
    for r in rows:
        if r["kernel"] not in ("prefill", "prefill_chunk"):
            continue
        v = r["variant"].replace("causal-q128k128", "causal-")
        key = (r["kernel"], int(r["q_heads"]), int(r["kv_heads"]), int(r["context"]), int(r["m"] or 0))
        tf.setdefault(key, {}).setdefault(v, []).append(float(r["tflops"]))
    cols = ["causal-auto", "causal-p8", "causal-p9", "causal-p10", "causal-p11", "causal-p12", "causal-p13",
            "causal-p14", "cudnn"]
    print("TFLOP/s, median of rounds (n = rounds); 18/17 = best of p10-p12 over best of p8/p9; /cuDNN = that best;")
    print("fused = best of p13/p14 over best of p10/p11; fused/cuDNN = best of p13/p14 over cuDNN")
    print("| shape | auto | p8 | p9 | p10 | p11 | p12 | p13 | p14 | cuDNN | 18/17 | 17/cuDNN | 18/cuDNN | auto/cuDNN "
          "| fused | fused/cuDNN | n |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for key in sorted(tf):
        kern, h, g, ctx, c = key
        d = {k: statistics.median(x) for k, x in tf[key].items()}
        n = min(len(x) for x in tf[key].values())
        name = f"{h}/{g} {ctx}" if kern == "prefill" else f"{h}/{g} {c} after {ctx}"
        b17 = max(d.get("causal-p8", 0), d.get("causal-p9", 0))
        b18 = max(d.get("causal-p10", 0), d.get("causal-p11", 0), d.get("causal-p12", 0))
        cu = d.get("cudnn", 0)
        cells = [f"{d[k]:.0f}" if k in d else "" for k in cols]
        rat = [f"{b18 / b17:.3f}" if b17 else "", f"{b17 / cu:.3f}" if cu else "", f"{b18 / cu:.3f}" if cu else "",
               f"{d['causal-auto'] / cu:.3f}" if cu and "causal-auto" in d else ""]
        bf = max(d.get("causal-p13", 0), d.get("causal-p14", 0))
        b10 = max(d.get("causal-p10", 0), d.get("causal-p11", 0))
        rat += [f"{bf / b10:.3f}" if bf and b10 else "", f"{bf / cu:.3f}" if bf and cu else ""]
        print(f"| {name} | " + " | ".join(cells + rat) + f" | {n} |")
    print("Per round (prefill, 16K): " + "; ".join(
        f"{k[1]}/{k[2]} " + ", ".join(f"{v.replace('causal-', '')} " + "/".join(f"{x:.0f}" for x in tf[k][v])
                                      for v in cols if v in tf[k])
        for k in sorted(tf) if k[0] == "prefill" and k[3] == 16384))


if __name__ == "__main__":
    main()
