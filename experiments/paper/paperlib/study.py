"""The sections of the paper study: main table, context, scaling, ablations,
planners. Each returns plain JSON-able results; report.py and plots.py turn
them into the table and the plots.

Systems: vllm-multi (independent instances), vllm-single (one instance over
all 32 GPUs), infinite-llm (the DistKV-LLM policy, with study.json's
"infinite_llm" settings). The policy under test may be replaced by another
name (--policy-under-test) to exercise the harness before infinite-llm is in
the binary; results then say so.
"""
import threading
from concurrent.futures import ThreadPoolExecutor

from . import search as srch
from . import sim
from . import traces as tr


def skip_reason(e):
    """What a cell says when its search could not finish."""
    if isinstance(e, sim.NotCached):
        return "not run"
    return "error: %s" % str(e).split(": ")[-1][:120]


class Study:
    def __init__(self, ctx):
        self.c = ctx
        self.c["trace_lock"] = threading.Lock()  # dict: study, runner, infsim, data_dir, out, quick, jobs, under_test, have_under_test, log

    # -- helpers -----------------------------------------------------------
    def cfg(self, model):
        return self.c["config_path"](model)

    def settings(self, system, extra=None):
        s = {"policy.name": system}
        if self.c["quick"]:
            s["cluster.instances"] = str(self.c["study"]["quick"]["instances"])
        s.update(extra or {})
        if system == "infinite-llm":
            real = self.c["under_test"] == "infinite-llm"
            base = dict(self.c["study"]["infinite_llm"]) if real else {}
            base.update(s)
            s = base
            s["policy.name"] = self.c["under_test"]
            if not real:  # a stand-in policy reads none of infinite-llm's knobs
                s = {k: v for k, v in s.items() if k == "policy.name" or not k.startswith("policy.")}
        for k, v in self.c["override"].items():  # explanation runs only
            if k == "policy.dispatch" and system == "vllm-single":
                continue  # one instance: no dispatcher (the policy rejects the key)
            if k.startswith("policy.") and k != "policy.dispatch" and system != "infinite-llm":
                continue  # infinite-llm's own knobs
            s[k] = v
        return s

    def available(self, system):
        return system != "infinite-llm" or self.c["have_under_test"]

    def trace(self, name, seed_offset=0):
        st = self.c["study"]
        spec = st["traces"][name]
        n = spec["requests"]
        if self.c["quick"]:
            n = st["quick"]["requests"][spec["group"]]
            if spec["group"] == "long":  # a few instances hold less than 1-2M tokens
                cap = st["quick"]["long_max_prompt_tokens"]
                spec = dict(spec, prompt=dict(spec["prompt"], max=min(spec["prompt"]["max"], cap)))
        key = (name, seed_offset, n)
        with self.c["trace_lock"]:  # traces are built once, by one thread
            cache = self.c.setdefault("trace_paths", {})
            if key not in cache:
                cache[key] = tr.build(self.c["infsim"], self.c["data_dir"], st["sources"], name, spec, n,
                                      seed_offset, self.c["out"] + "/traces")
            return cache[key]

    def native_rps(self, path):
        rows = tr.read_trace_ns(path)
        return len(rows) / (rows[-1][0] / 1e9)

    def tol(self):
        return self.c["study"]["quick"]["tolerance"] if self.c["quick"] else None

    def capacity(self, model, system, trace_name, extra=None, seed=1, seed_offset=0, config=None):
        if not self.available(system):
            return {"skipped": "policy %s not in the built binary" % self.c["under_test"]}
        path = self.trace(trace_name, seed_offset)
        spec = self.c["study"]["traces"][trace_name]
        try:
            res = srch.capacity(self.c["runner"], config or self.cfg(model), self.settings(system, extra), path,
                                self.native_rps(path), spec["start_rate_rps"], self.c["study"]["search"], seed=seed,
                                tolerance=self.tol(), fixed_rejections=system != "infinite-llm")
        except RuntimeError as e:  # a run that failed or timed out: the cell says so, the study goes on
            self.c["log"]("capacity %s %s %s %s: ERROR %s" % (model, system, trace_name, extra or "", e))
            return {"skipped": skip_reason(e)}
        res["native_rps"] = self.native_rps(path)  # probes are speed-ups of it: the attainment curve's x
        self.c["log"]("capacity %s %s %s %s: %.4g req/s, %.1f tok/s %s" % (
            model, system, trace_name, extra or "", res["rate_rps"], res["throughput_tok_s"], res["note"]))
        return res

    def pmap(self, fn, items):
        with ThreadPoolExecutor(max_workers=self.c["jobs"]) as ex:
            return list(ex.map(fn, items))

    def models(self):
        st = self.c["study"]
        ms = st["quick"]["models"] if self.c["quick"] else st["models"]
        return [m for m in ms if not self.c.get("models_filter") or m in self.c["models_filter"]]

    def trace_names(self, group=None):
        st = self.c["study"]
        names = st["quick"]["traces"] if self.c["quick"] else sorted(st["traces"])
        return [n for n in names if (group is None or st["traces"][n]["group"] == group)
                and (not self.c.get("traces_filter") or n in self.c["traces_filter"])]

    # -- sections ------------------------------------------------------------
    def main(self):
        st = self.c["study"]
        cells = [(m, t, s) for m in self.models() for t in self.trace_names() for s in st["systems_run"]]
        res = self.pmap(lambda c: self.capacity(c[0], c[2], c[1]), cells)
        sat = self.pmap(lambda c: self.saturated(c[0], c[2], c[1]), cells) if self.c["saturated"] else [None] * len(cells)
        return [{"model": m, "trace": t, "group": st["traces"][t]["group"], "system": s, "result": r, "saturated": x}
                for (m, t, s), r, x in zip(cells, res, sat)]

    def saturated(self, model, system, trace_name):
        """Throughput with every request arriving at once (no SLO): what the
        system's batches can do, the measure closest to an offline run."""
        if not self.available(system):
            return None
        rows = [(0, p, o) for _, p, o in tr.read_trace_ns(self.trace(trace_name))]
        try:
            r = self.c["runner"].run(self.cfg(model), self.settings(system), None, rows=rows)
        except RuntimeError as e:
            self.c["log"]("saturated %s %s %s: ERROR %s" % (model, system, trace_name, e))
            return None
        if r.get("timed_out"):
            self.c["log"]("saturated %s %s %s: past the time limit" % (model, system, trace_name))
            return {"timed_out": True, "cpu_limit_s": r.get("cpu_limited"), "limited_probes": 1,
                    "sim_wall_s": r.get("process_wall_s"), "commits": [r.get("commit")]}
        return {"throughput_tok_s": r["throughput_tok_s"], "completed": r["completed"], "rejected": r["rejected"],
                "arrived": r["arrived"], "sim_wall_s": r.get("process_wall_s"), "commits": [r.get("commit")]}

    def context(self):
        st = self.c["study"]
        cells = [(m, s) for m in self.models() for s in st["systems_run"]]
        tol = st["quick"]["context_tolerance"] if self.c["quick"] else None

        def one(c):
            m, s = c
            if not self.available(s):
                return {"skipped": "policy not in the built binary"}
            try:
                r = srch.context(self.c["runner"], self.cfg(m), self.settings(s), st["search"], tolerance=tol)
            except RuntimeError as e:
                self.c["log"]("context %s %s: ERROR %s" % (m, s, e))
                return {"skipped": skip_reason(e)}
            self.c["log"]("context %s %s: %d tokens %s" % (m, s, r["tokens"], r["note"]))
            return r
        return [{"model": m, "system": s, "result": r} for (m, s), r in zip(cells, self.pmap(one, cells))]

    def scaling(self):
        st = self.c["study"]
        sc = st["scaling"]
        sizes = st["quick"]["scaling_instances"] if self.c["quick"] else sc["instances"]
        cells = [(n, s) for n in sizes for s in ("vllm-multi", "infinite-llm") if s in st["systems_run"]]
        if self.c.get("big_only"):  # only the reference run the big sizes' load comes from
            ref_n = st["quick"]["big_from_instances"] if self.c["quick"] else sc["big_from_instances"]
            cells = [(ref_n, "vllm-multi")]
        res = self.pmap(lambda c: self.capacity(sc["model"], c[1], sc["trace"],
                                                {"cluster.instances": str(c[0])}), cells)
        small = [{"instances": n, "system": s, "result": r} for (n, s), r in zip(cells, res)]
        big = self._big(small)
        return {"small": small, "big": big}

    def _big(self, small):
        """256 and 1,024 instances at the same per-instance load for every
        system: the rate per instance that vllm-multi sustained at the
        reference size (Poisson arrivals, the scaling trace's length laws).
        One load for all systems, so that messages, bytes and wall time
        compare; each system's own sustained rate is in the small table."""
        st = self.c["study"]
        sc = st["scaling"]
        q = self.c["quick"]
        ref_n = st["quick"]["big_from_instances"] if q else sc["big_from_instances"]
        sizes = st["quick"]["big_instances"] if q else sc["big_instances"]
        spec = st["traces"][sc["trace"]]
        ref = [x for x in small if x["instances"] == ref_n and x["system"] == "vllm-multi"]
        if not ref or "skipped" in ref[0]["result"] or not ref[0]["result"]["rate_rps"]:
            return [{"system": s, "skipped": "vllm-multi sustained no load at %d instances" % ref_n}
                    for s in ("vllm-multi", "infinite-llm")]
        per_inst = ref[0]["result"]["rate_rps"] / ref_n
        out = []
        for s in ("vllm-multi", "infinite-llm"):
            if not self.available(s) or s not in st["systems_run"]:
                out.append({"system": s, "skipped": "not run (policy not in the binary or not in --systems)"})
                continue
            for n in sizes:
                reqs = sc["big_requests_per_instance"] * n
                path = "%s/traces/big-%d.csv" % (self.c["out"], n)
                tr.poisson_with_lengths(self.c["infsim"], spec, reqs, per_inst * n, spec["seed"], path)
                try:
                    r = self.c["runner"].run(self.cfg(sc["model"]), self.settings(s, {"cluster.instances": str(n)}),
                                             path)
                except RuntimeError as e:
                    self.c["log"]("big %s %d: ERROR %s" % (s, n, e))
                    out.append({"system": s, "instances": n, "skipped": skip_reason(e)})
                    continue
                if r.get("timed_out"):
                    out.append({"system": s, "instances": n, "skipped": "past the run time limit"})
                    continue
                dk = r.get("distkv") or {}
                span = r["sim_time_s"] or None
                out.append({"system": s, "instances": n, "rate_rps": per_inst * n, "run": r,
                            "messages_per_s": dk["messages"] / span if "messages" in dk and span else None,
                            "heartbeats_per_s": dk["heartbeats"] / span if "heartbeats" in dk and span else None,
                            "wall_s": r["process_wall_s"]})
                self.c["log"]("big %s %d: %.1f tok/s, wall %.1f s" % (s, n, r["throughput_tok_s"], r["process_wall_s"]))
        return out

    def ablations(self):
        st = self.c["study"]
        ab = st["ablations"]
        names = st["quick"]["ablations"] if self.c["quick"] else [v["name"] for v in ab["variants"]]
        variants = [v for v in ab["variants"] if v["name"] in names]
        res = self.pmap(lambda v: self.capacity(ab["model"], "infinite-llm", ab["trace"], v["set"]), variants)
        out = [{"name": v["name"], "set": v["set"], "result": r} for v, r in zip(variants, res)]
        base = next((c["result"] for c in out if c["name"] == "default"), None)
        for c, e in zip(out, self.pmap(lambda c: self.at_load(ab["model"], ab["trace"], c["set"], base, c["result"]),
                                       out)):
            c["equal_load"] = e
        return out

    def at_load(self, model, trace_name, extra, ref, mine, seed=1, seed_offset=0):
        """One run of infinite-llm with `extra` at the speed-up `ref` sustained
        (a variant compared at equal offered load): what the SLO check and the
        summary say of it."""
        if not ref or "skipped" in ref or not ref["speedup"] or "skipped" in mine:
            return None
        path = self.trace(trace_name, seed_offset)
        try:
            r = self.c["runner"].run(self.cfg(model), self.settings("infinite-llm", extra), path,
                                     speedup=ref["speedup"], seed=seed)
        except RuntimeError as e:
            self.c["log"]("%s %s at the reference load: ERROR %s" % (trace_name, extra, e))
            return None
        return {"rate_rps": ref["rate_rps"], "throughput_tok_s": r["throughput_tok_s"],
                "attainment": r["slo"]["attainment"], "ttft_p99_s": r["slo"]["ttft_p99_s"],
                "tpot_p50_s": r.get("tpot_s_p50"), "distkv": r.get("distkv"), "network_bytes": r.get("network_bytes"),
                "links": r.get("links"), "preemptions": r.get("preemptions")}

    def planners(self):
        """Each planner's capacity per (trace, seed); then, at greedy's sustained
        load of that trace and seed, one run of every planner: p99 TTFT and the
        borrowing work at equal offered load (the issue's second criterion)."""
        st = self.c["study"]
        pl = st["planners"]
        seeds = st["quick"]["planner_seeds"] if self.c["quick"] else pl["seeds"]
        traces = [t for t in pl["traces"] if t in self.trace_names()] or self.trace_names("long")[:1]
        cells = [(t, p, sd) for t in traces for p in pl["planners"] for sd in seeds]
        res = self.pmap(lambda c: self.capacity(pl["model"], "infinite-llm", c[0], {"policy.planner": c[1]},
                                                seed=c[2], seed_offset=c[2] - 1), cells)
        out = [{"trace": t, "planner": p, "seed": sd, "result": r} for (t, p, sd), r in zip(cells, res)]
        greedy = {(c["trace"], c["seed"]): c["result"] for c in out if c["planner"] == "greedy"}
        eq = self.pmap(lambda c: self.at_load(pl["model"], c["trace"], {"policy.planner": c["planner"]},
                                              greedy.get((c["trace"], c["seed"])), c["result"], seed=c["seed"],
                                              seed_offset=c["seed"] - 1), out)
        for c, e in zip(out, eq):
            c["equal_load"] = e
        return out
