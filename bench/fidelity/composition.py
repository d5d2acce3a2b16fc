#!/usr/bin/env python3
"""Composition error: the simulator's iteration time for a whole-model
forward, composed from kernel curves timed one by one (the calibration
profile the config names), against the forward bench_cluster_model --time
measured at the same shape (one upload, the launches, a sync: what the
cuda executor pays per batch; decode as a replayed CUDA graph).

Each row of OURS.csv becomes a one-row iterations.csv that `infsim compare
--reprice CONFIG` prices; prints kind, batch, context, tokens, measured ms,
predicted ms and the signed error (predicted - measured) / measured.

  composition.py --infsim BIN --config CFG --ours OURS.csv --summary SUMMARY.json [--work DIR]
(SUMMARY.json: any summary.json, which compare needs beside iterations.csv.)
"""
import argparse
import csv
import os
import re
import shutil
import subprocess
import tempfile

HEADER = ("instance,start_s,end_s,steps,prefill_tokens,prefill_attention_pairs,decode_requests,"
          "decode_context_tokens,remote_holders,remote_context_tokens\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--infsim", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--ours", required=True)
    ap.add_argument("--summary", required=True)
    ap.add_argument("--work")
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp()
    with open(args.ours) as f:
        rows = list(csv.DictReader(l for l in f if not l.startswith("#")))
    print(f"{'kind':8} {'batch':>5} {'context':>7} {'tokens':>6} {'measured ms':>11} {'composed ms':>11} {'error':>7}")
    for r in rows:
        kind, b, c, n, ms = r["kind"], int(r["batch"]), int(r["context"]), int(r["tokens"]), float(r["ms"])
        if kind == "decode" and r["graphs"] != "1":
            continue
        d = os.path.join(work, f"{kind}-{b}-{c}-{n}")
        os.makedirs(d, exist_ok=True)
        shutil.copy(args.summary, os.path.join(d, "summary.json"))
        # decode: b requests of c cached tokens, one new token each; prefill:
        # one prompt of n tokens (causal pairs n (n + 1) / 2), logits for its last.
        pt, pairs, dr, dc = (0, 0, b, b * c) if kind == "decode" else (n, n * (n + 1) // 2, 0, 0)
        with open(os.path.join(d, "iterations.csv"), "w") as f:
            f.write(HEADER + f"0,0,{ms / 1e3:.9f},1,{pt},{pairs},{dr},{dc},0,0\n")
        out = subprocess.run([args.infsim, "compare", d, d, "--no-plot", "--reprice", args.config],
                             capture_output=True, text=True, check=True).stdout
        err = float(re.search(r"mean signed error ([-+0-9.]+)%", out).group(1))
        print(f"{kind:8} {b:5d} {c:7d} {n:6d} {ms:11.3f} {ms * (1 + err / 100):11.3f} {err:+6.1f}%")


if __name__ == "__main__":
    main()
