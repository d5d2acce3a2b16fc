#!/usr/bin/env python3
"""End-to-end fidelity, the measuring half (on the GPU machine): one instance
under `infsim cluster`, at loads set from its own measured maximum
throughput.

1. The first --requests rows of a shipped trace, every arrival at 0: the
   instance's maximum throughput (output tokens/s) is what it sustains then.
2. For each load L (default 0.3, 0.8, 1.2): the same rows with the trace's
   own arrival times scaled so that their mean rate is
   L x max throughput / mean output tokens (requests/s). The trace keeps
   its burstiness; only the time axis shrinks or stretches. A load whose
   arrivals would span more than --max-span-s seconds keeps fewer rows
   (at least 100), so a light load does not eat the device time.
3. `infsim cluster` on each trace, outputs in OUT/cl-max, OUT/cl-LOAD, the
   traces beside them (OUT/trace-*.csv), and OUT/loads.json with the rates.

The simulating half (`e2e_table.py`, on any machine) replays the same
traces with `infsim run` and the calibration of that GPU and compares.

  e2e_cluster.py --infsim BIN --config CFG --trace CSV --out DIR
                 [--requests N] [--loads 0.3,0.8,1.2] [--max-span-s S] [-- cluster options...]
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import time


def read_trace(path, n):
    with open(path) as f:
        rows = list(csv.DictReader(f))[:n]
    return [(float(r["arrival_time_s"]), int(r["prompt_tokens"]), int(r["output_tokens"])) for r in rows]


def write_trace(path, rows):
    with open(path + ".tmp", "w") as f:
        f.write("arrival_time_s,prompt_tokens,output_tokens\n")
        for a, p, o in rows:
            f.write(f"{a:.6f},{p},{o}\n")
    os.replace(path + ".tmp", path)


def run_cluster(args, extra, trace, out, log):
    cmd = [args.infsim, "cluster", args.config, "--trace", trace, "--out", out] + extra
    t0 = time.time()
    with open(log, "w") as f:
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
    print(f"e2e: {os.path.basename(out)}: exit {rc} after {time.time() - t0:.1f} s", flush=True)
    with open(log) as f:
        sys.stdout.write(f.read())
    if rc != 0:
        sys.exit(f"e2e: infsim cluster failed on {trace} (exit {rc})")
    with open(os.path.join(out, "summary.json")) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--infsim", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--trace", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--loads", default="0.3,0.8,1.2")
    ap.add_argument("--max-span-s", type=float, default=60.0)
    args, extra = ap.parse_known_args()
    extra = [e for e in extra if e != "--"]
    os.makedirs(args.out, exist_ok=True)
    rows = read_trace(args.trace, args.requests)
    if len(rows) < 100:
        sys.exit(f"e2e: {args.trace}: {len(rows)} rows, need at least 100")

    burst = os.path.join(args.out, "trace-max.csv")
    write_trace(burst, [(0.0, p, o) for _, p, o in rows])
    s = run_cluster(args, extra, burst, os.path.join(args.out, "cl-max"), os.path.join(args.out, "cl-max.log"))
    max_tok_s = s["throughput_tok_s"]
    loads = {"max_throughput_tok_s": max_tok_s, "source_trace": os.path.basename(args.trace), "loads": []}

    for load in [float(x) for x in args.loads.split(",")]:
        n = len(rows)
        while True:
            sub = rows[:n]
            mean_out = sum(o for _, _, o in sub) / n
            rate = load * max_tok_s / mean_out
            t_first, t_last = sub[0][0], sub[-1][0]
            native = (n - 1) / (t_last - t_first) if t_last > t_first else float("inf")
            span = (n - 1) / rate
            if span <= args.max_span_s or n <= 100:
                break
            n = max(100, int(n * args.max_span_s / span))
        scale = native / rate  # new time = (old - first) * scale
        name = f"{load:g}"
        trace = os.path.join(args.out, f"trace-{name}.csv")
        write_trace(trace, [((a - t_first) * scale, p, o) for a, p, o in sub])
        s = run_cluster(args, extra, trace, os.path.join(args.out, f"cl-{name}"),
                        os.path.join(args.out, f"cl-{name}.log"))
        loads["loads"].append({"load": load, "requests": n, "rate_rps": rate, "time_scale": scale,
                               "measured_tok_s": s["throughput_tok_s"]})
        with open(os.path.join(args.out, "loads.json"), "w") as f:
            json.dump(loads, f, indent=1)
    print(json.dumps(loads, indent=1))


if __name__ == "__main__":
    main()
