#!/usr/bin/env python3
"""Where a long prompt's time goes under each planner, at greedy's
sustained load of one trace and seed (a planners study's results.json
says which), read from the simulator's iterations.csv: per prompt size
class, the completed prompts' mean TTFT, the instances they span
(requests.csv's instances_touched: the owner and its holders), and a
chunk's batch time per layer (mean over each prompt's chunks, then over
the prompts). Settings are the study's
(study.json's infinite_llm) plus the planner and any --set.

  experiments/paper/relay_chunks.py --infsim build-rel/infsim --results OUT/results.json \\
      --trace-file OUT/traces/L2-s22-n400.csv --trace L2 --seed 1 [--set policy.distattn_relay=node]
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
from paperlib import traces  # noqa: E402

CLASSES = [(100_000, 300_000, "100-300K"), (300_000, 600_000, "300-600K"), (600_000, 1_000_000, "600K-1M"),
           (1_000_000, 2_000_001, "1-2M")]


def one(args, planner, speedup, layers=32):
    study = json.load(open(os.path.join(here, "study.json")))
    sets = dict(study["infinite_llm"])
    sets["policy.name"] = "infinite-llm"
    sets["policy.planner"] = planner
    sets["metrics.iterations"] = "true"
    for kv in args.set:
        k, v = kv.split("=", 1)
        sets[k] = v
    with tempfile.TemporaryDirectory() as d:
        t = os.path.join(d, "trace.csv")
        traces.write_trace(t, traces.scaled(traces.read_trace_ns(args.trace_file), speedup))
        cmd = [args.infsim, "run", os.path.join(here, "configs", "llama2-7b.yaml"), "--trace", t, "--out",
               os.path.join(d, "o"), "--seed", str(args.seed)]
        for k, v in sorted(sets.items()):
            cmd += ["--set", "%s=%s" % (k, v)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        reqs = list(csv.DictReader(open(os.path.join(d, "o", "requests.csv"))))
        its = list(csv.DictReader(open(os.path.join(d, "o", "iterations.csv"))))
    by_inst = {}
    for it in its:
        if int(it["prefill_tokens"]) > 0:
            by_inst.setdefault(int(it["instance"]), []).append(it)
    rows = {}
    for r in reqs:
        if r["status"] != "completed":
            continue
        p = int(r["prompt_tokens"])
        cls = next((c for c in CLASSES if c[0] <= p < c[1]), None)
        if cls is None:
            continue
        a, f = float(r["arrival_s"]), float(r["first_token_s"])
        steps = []
        for it in by_inst.get(int(r["instance"]), []):
            s0 = float(it["start_s"])
            c, pairs = int(it["prefill_tokens"]), int(it["prefill_attention_pairs"])
            if not (a <= s0 < f) or c <= 0:
                continue
            before = (pairs - c * (c + 1) // 2) / c
            if before < 0 or before >= p:  # another request's chunk
                continue
            steps.append((float(it["end_s"]) - s0) / layers * 1e3)
        if steps:
            rows.setdefault(cls, []).append((float(r["ttft_s"]), int(r["instances_touched"]),
                                             sum(steps) / len(steps)))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--infsim", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--trace-file", required=True)
    ap.add_argument("--trace", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--planners", default="greedy,level,spread")
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    cells = json.load(open(args.results))["planners"]
    ref = next(c for c in cells if c["trace"] == args.trace and c["seed"] == args.seed and c["planner"] == "greedy")
    speedup = ref["result"]["speedup"]
    print("%s seed %d at greedy's load (%.4f req/s), %s" % (args.trace, args.seed, ref["result"]["rate_rps"],
                                                           " ".join(args.set) or "study settings"))
    print("| prompts | planner | completed | TTFT s | instances spanned | chunk batch ms per layer |")
    print("|---|---|---|---|---|---|")
    res = {p: one(args, p, speedup) for p in args.planners.split(",")}
    for cls in CLASSES:
        for p in args.planners.split(","):
            v = res[p].get(cls)
            if not v:
                continue
            n = len(v)
            print("| %s | %s | %d | %.1f | %.1f | %.1f |" % (
                cls[2], p, n,
                sum(x[0] for x in v) / n, sum(x[1] for x in v) / n, sum(x[2] for x in v) / n))


if __name__ == "__main__":
    main()
