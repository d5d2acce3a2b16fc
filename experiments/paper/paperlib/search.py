"""Capacity and context searches of the paper study.

capacity: the highest trace speed-up (arrival times divided by it) at which
a system still sustains the SLO (sim.slo_stats), found by doubling or halving
from a start until one speed passes and a faster one fails, then geometric
bisection until fast / slow <= tolerance. The result is the passing run at
the highest passing speed: its throughput is the system's sustained
throughput. A search that never passes reports zero; one that still passes
after max_bracket_steps doublings reports its last pass and says so.

context: the longest single request (prompt + context_output_tokens) that
completes on an idle cluster, by the same bracket-and-bisect on the prompt
length, to a relative tolerance.

Invariants: every reported pass was a run that passed; fail > pass in speed
(or length) once bracketed; no search runs more than max_bracket_steps + the
bisection's log2(log(range)/log(tolerance)) steps.
"""
import math


def capacity(runner, config, settings, trace_path, native_rps, start_rps, search, seed=1, tolerance=None,
             fixed_rejections=True):
    """fixed_rejections: the policy rejects only requests no instance can ever
    hold (vLLM's kv_capacity), whatever the load; infinite-llm's admission
    against the cluster's spare depends on the load, so it must be False."""
    tol = tolerance or search["tolerance"]
    steps = search["max_bracket_steps"]
    runs = []
    raw = []

    def probe(speed):
        r = runner.run(config, settings, trace_path, speedup=speed, seed=seed)
        runs.append((speed, r["slo"]["attainment"], r["throughput_tok_s"]))
        raw.append(r)
        return r

    s = start_rps / native_rps
    r = probe(s)
    best = None
    if r["slo"]["sustained"]:
        lo, best = s, r
        hi = None
        for _ in range(steps):
            s *= 2
            r = probe(s)
            if not r["slo"]["sustained"]:
                hi = s
                break
            lo, best = s, r
        if hi is None:
            return _result(lo, best, native_rps, runs, "still sustained at the highest speed tried", raw)
    else:
        hi, lo = s, None
        if fixed_rejections and _rejections_decide(r, runner.slo):
            return _result(0.0, None, native_rps, runs, "more requests rejected than the SLO allows", raw)
        for _ in range(steps):
            s /= 2
            r = probe(s)
            if r["slo"]["sustained"]:
                lo, best = s, r
                break
            hi = s
        if lo is None:
            return _result(0.0, None, native_rps, runs, "no load sustained", raw)
    while hi / lo > tol:
        mid = math.sqrt(lo * hi)
        r = probe(mid)
        if r["slo"]["sustained"]:
            lo, best = mid, r
        else:
            hi = mid
    return _result(lo, best, native_rps, runs, "", raw)


def _rejections_decide(run, slo):
    """Rejections (a context no instance can hold) do not depend on the load:
    when they alone break the SLO, no slower speed can pass."""
    return run["arrived"] and run["rejected"] > (1.0 - slo["attainment"]) * run["arrived"]


def provenance(raw):
    """Simulator wall time of a search's runs (as measured when each ran, cached
    or not) and the commits that measured them."""
    return {"sim_wall_s": sum(r.get("process_wall_s") or 0.0 for r in raw),
            "commits": sorted(set(r.get("commit") or "unknown" for r in raw)),
            "limited_probes": sum(1 for r in raw if r.get("timed_out"))}


def _result(speed, run, native_rps, runs, note, raw):
    return dict({"speedup": speed, "rate_rps": speed * native_rps, "run": run, "probes": runs, "note": note,
                 "throughput_tok_s": run["throughput_tok_s"] if run else 0.0}, **provenance(raw))


def context(runner, config, settings, search, tolerance=None):
    tol = tolerance or search["context_tolerance"]
    out = search["context_output_tokens"]
    top = search["context_max_tokens"]
    probes = []
    kv = {}
    raw = []

    def ok(prompt):
        r = runner.run(config, settings, None, rows=[(0, prompt, out)])
        probes.append((prompt, r["completed"]))
        raw.append(r)
        kv["blocks"] = r.get("kv_blocks_per_instance")
        return r["completed"] == 1

    p = search["context_start_tokens"]
    if ok(p):
        lo, hi = p, None
        while hi is None:
            if p >= top:
                return dict({"tokens": lo + out, "probes": probes, "note": "completes at the largest size tried",
                             "kv_blocks_per_instance": kv["blocks"]}, **provenance(raw))
            p = min(2 * p, top)
            if ok(p):
                lo = p
            else:
                hi = p
    else:
        hi, lo = p, None
        while lo is None:
            p //= 2
            if p < 1:
                return dict({"tokens": 0, "probes": probes, "note": "nothing completes",
                             "kv_blocks_per_instance": kv["blocks"]}, **provenance(raw))
            if ok(p):
                lo = p
            else:
                hi = p
    while hi / lo > tol and hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return dict({"tokens": lo + out, "probes": probes, "note": "", "kv_blocks_per_instance": kv["blocks"]},
                **provenance(raw))
