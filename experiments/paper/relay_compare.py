#!/usr/bin/env python3
"""Planners with and without node relay, from two planners studies'
results.json (experiments/paper/run --sections planners, the second with
--override policy.distattn_relay=node): per trace and planner, sustained
throughput over greedy's on the same seed and p99 TTFT over greedy's at
greedy's load, under each mechanism (mean, min - max over the seeds), and
each planner with relay over itself without.

  experiments/paper/relay_compare.py OFF/results.json ON/results.json
"""
import json
import sys


def cells(path):
    """{(trace, planner, seed): (tok/s at the sustained load, p99 TTFT at greedy's load, SLO met there)}"""
    out = {}
    for c in json.load(open(path))["planners"]:
        r = c["result"]
        tok = r["run"]["throughput_tok_s"] if r and r.get("run") else 0.0
        eq = c.get("equal_load") or {}
        out[(c["trace"], c["planner"], c["seed"])] = (tok, eq.get("ttft_p99_s"), eq.get("attainment"))
    return out


def spread(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    return "%.2fx (%.2f-%.2f)" % (sum(xs) / len(xs), min(xs), max(xs))


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    off, on = cells(sys.argv[1]), cells(sys.argv[2])
    keys = sorted({(t, p) for (t, p, _) in on})
    seeds = sorted({s for (_, _, s) in on})
    print("| trace | planner | relay: tok/s vs greedy | relay: p99 TTFT vs greedy at its load | relay: SLO met "
          "| no relay: tok/s vs greedy | no relay: p99 vs greedy | tok/s relay / no relay |")
    print("|---|---|---|---|---|---|---|---|")
    for t, p in keys:
        row = []
        for d in (on, off):
            row.append([d[(t, p, s)][0] / d[(t, "greedy", s)][0] for s in seeds
                        if (t, p, s) in d and d[(t, "greedy", s)][0] > 0])
            row.append([d[(t, p, s)][1] / d[(t, "greedy", s)][1] for s in seeds
                        if (t, p, s) in d and d[(t, p, s)][1] and d[(t, "greedy", s)][1]])
        slo = [on[(t, p, s)][2] for s in seeds if (t, p, s) in on and on[(t, p, s)][2] is not None]
        self_ratio = [on[(t, p, s)][0] / off[(t, p, s)][0] for s in seeds
                      if (t, p, s) in off and off[(t, p, s)][0] > 0]
        print("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            t, p, spread(row[0]), spread(row[1]),
            "%.1f%%" % (100 * sum(slo) / len(slo)) if slo else "-", spread(row[2]), spread(row[3]),
            spread(self_ratio)))
    print()
    print("per seed, tok/s with relay (over greedy with relay):")
    for t, p in keys:
        print("  %s %-7s" % (t, p), " ".join("%d: %.1f (%.2fx)" % (s, on[(t, p, s)][0],
                                                                  on[(t, p, s)][0] / on[(t, "greedy", s)][0])
                                              for s in seeds if (t, p, s) in on and on[(t, "greedy", s)][0] > 0))


if __name__ == "__main__":
    main()
