#!/usr/bin/env python3
"""compare_raw.py: side-by-side medians of two `infsim calibrate run` CSVs
(before / after a kernel change) for the points where the cost curves
jumped: gemm_* at small token counts and decode_attn at small batches of
one context, plus a jump score per curve (the largest ratio of a point to
the minimum of the points after it, 1.00 = monotone).

  compare_raw.py BEFORE.csv AFTER.csv [--context 32768] [--max-tokens 32]
Standard library only (runs on the GPU machine)."""
import argparse
import csv


def load(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def series(rows, tp, kernel, key, keep):
    out = {}
    for r in rows:
        if r["tp"] == tp and r["kernel"] == kernel and keep(r):
            out[int(r[key])] = float(r["median_ns"]) / 1000.0
    return dict(sorted(out.items()))


def jump(s):
    v = list(s.values())
    return max([v[i] / min(v[i + 1:]) for i in range(len(v) - 1)] + [1.0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--context", type=int, default=32768)
    ap.add_argument("--max-tokens", type=int, default=32)
    a = ap.parse_args()
    old, new = load(a.before), load(a.after)
    tps = sorted({r["tp"] for r in new}, key=int)
    for tp in tps:
        for kernel in ("gemm_qkv", "gemm_o", "gemm_gateup", "gemm_down"):
            so = series(old, tp, kernel, "tokens", lambda r: True)
            sn = series(new, tp, kernel, "tokens", lambda r: True)
            small = [t for t in sn if t <= a.max_tokens]
            print(f"tp {tp} {kernel:11s} tokens " + " ".join(f"{t:>6d}" for t in small)
                  + f"   jump(all tokens) before {jump(so):.2f} after {jump(sn):.2f}")
            print(f"{'':22s}before " + " ".join(f"{so.get(t, float('nan')):6.1f}" for t in small))
            print(f"{'':22s}after  " + " ".join(f"{sn.get(t, float('nan')):6.1f}" for t in small))

        def dkeep(r):
            return float(r["local_fraction"]) == 1.0 and int(r["context_tokens"]) == int(r["requests"]) * a.context
        so = series(old, tp, "decode_attn", "requests", dkeep)
        sn = series(new, tp, "decode_attn", "requests", dkeep)
        reqs = [q for q in sn if q <= 16]
        print(f"tp {tp} decode_attn ctx {a.context} requests " + " ".join(f"{q:>6d}" for q in reqs))
        print(f"{'':22s}before " + " ".join(f"{so.get(q, float('nan')):6.1f}" for q in reqs))
        print(f"{'':22s}after  " + " ".join(f"{sn.get(q, float('nan')):6.1f}" for q in reqs))


if __name__ == "__main__":
    main()
