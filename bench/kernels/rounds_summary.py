#!/usr/bin/env python3
"""Medians over the rounds of `bench_kernels --only prefill_cmp`, each joined
with torch by torch_ref.py (one combined CSV per round, torch timed after
the round's own kernels), as one table: TFLOP/s per variant and shape, and
the ratios bench/README.md reports (version 18 over 17, ours over cuDNN,
the append folded in: pipelines 13 and 14 over 10 and 11). Rounds of
`--only chunk_cmp` (or any with prefill_chunk_fresh rows) get a second
table: each chunk's TFLOP/s over the fresh prompt's of as many pairs timed
in the same round, median and range over the rounds.

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
    chunk = {}  # (h, g, L, c) -> variant -> round -> TFLOP/s; variant "fresh" = the fresh prompt of as many pairs
    fresh_n = {}
    for r in rows:
        key = (int(r["q_heads"]), int(r["kv_heads"]), int(r["context"]), int(r["m"] or 0))
        if r["kernel"] == "prefill_chunk_fresh":
            chunk.setdefault(key, {}).setdefault("fresh", {})[r["round"]] = float(r["tflops"])
            fresh_n[key] = int(r["n"])
            continue
        if r["kernel"] not in ("prefill", "prefill_chunk"):
            continue
        v = r["variant"].replace("causal-q128k128", "causal-")
        if r["kernel"] == "prefill_chunk":
            chunk.setdefault(key, {}).setdefault(v, {})[r["round"]] = float(r["tflops"])
        key = (r["kernel"],) + key
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
    chunk_table(chunk, fresh_n)


def chunk_table(chunk, fresh_n):
    """Chunks against fresh prompts of as many pairs, ratios per round."""
    keys = [k for k in sorted(chunk) if "fresh" in chunk[k]]
    if not keys:
        return
    cols = ["causal-auto", "causal-p11", "causal-p12", "causal-p13", "causal-p14", "causal-p15", "fresh"]
    print()
    print("Chunks against a fresh prompt of as many pairs, same round: TFLOP/s medians; X/fresh = median of the")
    print("rounds' ratios [min-max]; old auto = p11 up to 4K tokens in all, else p12 (the append kernel first);")
    print("fold = p14 or p15 over p11 or p12")
    print("| chunk | fresh n | auto | p11 | p12 | p13 | p14 | p15 | fresh | auto/fresh | old auto/fresh | fold | n |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for k in keys:
        h, g, L, c = k
        d = chunk[k]
        med = {v: statistics.median(d[v].values()) for v in d}
        old = "causal-p11" if L + c <= 4096 else "causal-p12"
        new = "causal-p14" if L + c <= 4096 else "causal-p15"

        def ratio(v, ref="fresh"):
            if v not in d or ref not in d:
                return ""
            x = [d[v][i] / d[ref][i] for i in d[v] if i in d[ref]]
            return f"{statistics.median(x):.3f} [{min(x):.2f}-{max(x):.2f}]" if x else ""

        cells = [f"{med[v]:.0f}" if v in med else "" for v in cols]
        n = min(len(x) for x in d.values())
        print(f"| {h}/{g} {c} after {L} | {fresh_n[k]} | " + " | ".join(cells) +
              f" | {ratio('causal-auto')} | {ratio(old)} | {ratio(new, old)} | {n} |")


if __name__ == "__main__":
    main()
