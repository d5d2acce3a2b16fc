"""The study's tables in Markdown (OUT/table.md), ours beside the paper's.

Cells read "-" where a system was not run (its policy missing from the
binary) and "0" where it sustained no load at all within the SLO.
"""
import statistics


def fmt(x, nd=1):
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if abs(x) >= 1e4:
        return "{:,.0f}".format(x)
    return ("%." + str(nd) + "f") % x


def thr(cell):
    r = cell.get("result") if cell else None
    if not r or "skipped" in r:
        return None
    return r["throughput_tok_s"]


def ratio(a, b):
    if a is None or b is None:
        return None
    if b == 0:
        return float("inf") if a > 0 else None
    return a / b


def fmt_ratio(x):
    if x is None:
        return "-"
    if x == float("inf"):
        return "inf (baseline 0)"
    return "%.2fx" % x


def find(cells, **kw):
    for c in cells:
        if all(c.get(k) == v for k, v in kw.items()):
            return c
    return None


def main_table(res, st):
    p = st["paper"]
    rows = ["| model | trace | group | vllm-multi tok/s | vllm-single tok/s | infinite-llm tok/s | "
            "IL / multi (paper short: %.2f-%.2fx) | IL / single (paper long: %.1f-%.1fx; short: %.1f-%.1fx) |" % (
                p["short_vs_multi"][0], p["short_vs_multi"][1], p["long_vs_single"][0], p["long_vs_single"][1],
                p["short_vs_single"][0], p["short_vs_single"][1]),
            "|---|---|---|---|---|---|---|---|"]
    cells = res["main"]
    seen = []
    for c in cells:
        k = (c["model"], c["trace"])
        if k in seen:
            continue
        seen.append(k)
        t = {s: thr(find(cells, model=k[0], trace=k[1], system=s)) for s in st["systems"]}
        rr = {s: (find(cells, model=k[0], trace=k[1], system=s) or {}).get("result", {}) for s in st["systems"]}

        def cell(s):
            if t[s] is None:
                why = str(rr[s].get("skipped", ""))
                return "error (see log)" if why.startswith("error") else "not run" if why == "not run" else "-"
            return "%s (%s req/s)" % (fmt(t[s]), fmt(rr[s].get("rate_rps"), 3))
        rows.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            k[0], k[1], c["group"], cell("vllm-multi"), cell("vllm-single"), cell("infinite-llm"),
            fmt_ratio(ratio(t["infinite-llm"], t["vllm-multi"])), fmt_ratio(ratio(t["infinite-llm"], t["vllm-single"]))))
    return "\n".join(rows)


def saturated_table(res, st):
    """Every request at time 0, no SLO: offline throughput (rejected requests produce nothing)."""
    rows = ["| model | trace | vllm-multi tok/s (rejected) | vllm-single tok/s (rejected) | infinite-llm tok/s (rejected) | "
            "IL / multi | IL / single |", "|---|---|---|---|---|---|---|"]
    keys = list(dict.fromkeys((c["model"], c["trace"]) for c in res["main"]))
    for m, t in keys:
        v = {}
        txt = {}
        for s in st["systems"]:
            x = (find(res["main"], model=m, trace=t, system=s) or {}).get("saturated")
            if x and x.get("timed_out"):  # a run stopped at the CPU limit has no throughput to show
                v[s] = None
                txt[s] = "stopped at %g CPU-s" % x["cpu_limit_s"] if x.get("cpu_limit_s") else "stopped (time limit)"
                continue
            v[s] = x["throughput_tok_s"] if x else None
            txt[s] = "%s (%d)" % (fmt(x["throughput_tok_s"]), x["rejected"]) if x else "-"
        rows.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            m, t, txt["vllm-multi"], txt["vllm-single"], txt["infinite-llm"],
            fmt_ratio(ratio(v["infinite-llm"], v["vllm-multi"])), fmt_ratio(ratio(v["infinite-llm"], v["vllm-single"]))))
    return "\n".join(rows)


def context_table(res, st):
    p = st["paper"]["context_vs_multi_v1"]
    rows = ["| model | vllm-multi tokens | vllm-single tokens | infinite-llm tokens | IL / multi (paper v1: %g-%gx) |"
            % (p[0], p[1]), "|---|---|---|---|---|"]
    for m in dict.fromkeys(c["model"] for c in res["context"]):
        t = {}
        for s in st["systems"]:
            c = find(res["context"], model=m, system=s)
            t[s] = None if not c or "skipped" in c["result"] else c["result"]["tokens"]
        rows.append("| %s | %s | %s | %s | %s |" % (m, fmt(t["vllm-multi"]), fmt(t["vllm-single"]),
                                                   fmt(t["infinite-llm"]),
                                                   fmt_ratio(ratio(t["infinite-llm"], t["vllm-multi"]))))
    return "\n".join(rows)


def scaling_table(res):
    small = res["scaling"]["small"]
    rows = ["| instances | vllm-multi tok/s per instance | infinite-llm tok/s per instance |", "|---|---|---|"]
    for n in dict.fromkeys(c["instances"] for c in small):
        v = [thr(find(small, instances=n, system=s)) for s in ("vllm-multi", "infinite-llm")]
        rows.append("| %d | %s | %s |" % (n, fmt(None if v[0] is None else v[0] / n),
                                          fmt(None if v[1] is None else v[1] / n)))
    rows += ["", "| system | instances | offered req/s | tok/s per instance | SLO met | protocol messages/s "
             "(all) | heartbeats/s (to the gManager) | network bytes (messages + DistAttention) | links.csv bytes by link kind "
             "(messages, KV moves, DistAttention traffic) | simulator wall s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for b in res["scaling"]["big"]:
        if "skipped" in b:
            rows.append("| %s | %s | - | - | - | - | - | - | %s | - |" % (b["system"], b.get("instances", "-"),
                                                                        b["skipped"]))
            continue
        r = b["run"]
        links = ", ".join("%s %.3g" % kv for kv in sorted((r.get("links") or {}).items())) or "-"
        rows.append("| %s | %d | %s | %s | %.1f%% | %s | %s | %s | %s | %.2f |" % (
            b["system"], b["instances"], fmt(b["rate_rps"], 2), fmt(r["throughput_tok_s"] / b["instances"]),
            100 * r["slo"]["attainment"], fmt(b["messages_per_s"]), fmt(b.get("heartbeats_per_s")),
            fmt(r.get("network_bytes"), 0), links, b["wall_s"]))
    return "\n".join(rows)


def ablation_equal_load_table(res):
    """Every variant at the default's sustained load (one run each)."""
    rows = ["| variant | SLO met | p99 TTFT s | p50 TPOT ms | preemptions | borrows | KV moved GB | network GB |",
            "|---|---|---|---|---|---|---|---|"]
    for c in res["ablations"]:
        e = c.get("equal_load")
        if not e:
            rows.append("| %s | - | - | - | - | - | - | - |" % c["name"])
            continue
        dk = e.get("distkv") or {}
        rows.append("| %s | %.1f%% | %s | %s | %s | %s | %s | %s |" % (
            c["name"], 100 * e["attainment"], fmt(e["ttft_p99_s"]),
            fmt(None if e.get("tpot_p50_s") is None else 1e3 * e["tpot_p50_s"]), fmt(e.get("preemptions"), 0),
            fmt(dk.get("borrows"), 0), fmt(dk.get("kv_moved_bytes", 0) / 1e9), fmt((e.get("network_bytes") or 0) / 1e9)))
    return "\n".join(rows)


def ablation_table(res):
    base = thr(find(res["ablations"], name="default"))
    rows = ["| variant | settings | sustained req/s | tok/s | vs default | p99 TTFT s at that load |",
            "|---|---|---|---|---|---|"]
    for c in res["ablations"]:
        r = c["result"]
        sets = " ".join("%s=%s" % kv for kv in c["set"].items()) or "(frozen settings)"
        if "skipped" in r:
            rows.append("| %s | %s | - | - | - | - |" % (c["name"], sets))
            continue
        run = r["run"] or {}
        rows.append("| %s | %s | %s | %s | %s | %s |" % (
            c["name"], sets, fmt(r["rate_rps"], 4), fmt(r["throughput_tok_s"]), fmt_ratio(ratio(r["throughput_tok_s"], base)),
            fmt(run.get("ttft_s_p99"), 1)))
    return "\n".join(rows)


def planner_rows(res):
    """Per (trace, planner): throughput over seeds: mean, min, max, and each seed's ratio to greedy."""
    out = []
    cells = res["planners"]
    for t in dict.fromkeys(c["trace"] for c in cells):
        for p in dict.fromkeys(c["planner"] for c in cells):
            vals, ttft, rel = [], [], []
            for c in cells:
                if c["trace"] != t or c["planner"] != p or "skipped" in c["result"]:
                    continue
                vals.append(c["result"]["throughput_tok_s"])
                ttft.append((c["result"]["run"] or {}).get("ttft_s_p99"))
                g = thr(find(cells, trace=t, planner="greedy", seed=c["seed"]))
                rel.append(ratio(c["result"]["throughput_tok_s"], g))
            out.append({"trace": t, "planner": p, "tok_s": vals, "ttft_p99_s": ttft, "vs_greedy": rel})
    return out


def spread(xs, nd=3):
    xs = [x for x in xs if x is not None and x != float("inf")]
    if not xs:
        return "-"
    return ("%." + str(nd) + "f (%." + str(nd) + "f - %." + str(nd) + "f)") % (statistics.mean(xs), min(xs), max(xs))


def equal_load_table(res):
    """Every planner at greedy's sustained load, per seed: p99 TTFT and the
    borrowing work relative to greedy on the same seed."""
    rows = ["| trace | planner | seeds | SLO met (mean, min - max) | p99 TTFT / greedy's (mean, min - max) | "
            "KV moved GB mean | borrows mean | network GB mean |", "|---|---|---|---|---|---|---|---|"]
    cells = res["planners"]
    for t in dict.fromkeys(c["trace"] for c in cells):
        for p in dict.fromkeys(c["planner"] for c in cells):
            mine = [c for c in cells if c["trace"] == t and c["planner"] == p and c.get("equal_load")]
            if not mine:
                rows.append("| %s | %s | 0 | - | - | - | - | - |" % (t, p))
                continue
            rel = []
            for c in mine:
                g = find(cells, trace=t, planner="greedy", seed=c["seed"])
                gt = (g or {}).get("equal_load") or {}
                rel.append(ratio(c["equal_load"]["ttft_p99_s"], gt.get("ttft_p99_s")))
            dk = [c["equal_load"].get("distkv") or {} for c in mine]
            rows.append("| %s | %s | %d | %s | %s | %s | %s | %s |" % (
                t, p, len(mine), spread([c["equal_load"]["attainment"] for c in mine]), spread(rel),
                fmt(statistics.mean([d.get("kv_moved_bytes", 0) / 1e9 for d in dk])),
                fmt(statistics.mean([d.get("borrows", 0) for d in dk])),
                fmt(statistics.mean([(c["equal_load"].get("network_bytes") or 0) / 1e9 for c in mine]))))
    return "\n".join(rows)


def provenance_table(res):
    """Every cell: how many simulator runs its search made, their wall time
    (as measured when each ran) and the commits that measured them."""
    rows = ["| section | cell | runs | runs past the CPU limit (counted as misses) | simulator wall s | commits |",
            "|---|---|---|---|---|---|"]

    def add(sec, name, r):
        if not r or "skipped" in r:
            rows.append("| %s | %s | - | - | - | %s |" % (sec, name, (r or {}).get("skipped", "not run")))
            return
        n = len(r.get("probes") or [1])
        rows.append("| %s | %s | %d | %d | %.1f | %s |" % (sec, name, n, r.get("limited_probes") or 0,
                                                          r.get("sim_wall_s") or 0.0,
                                                          ", ".join(x for x in r.get("commits") or [] if x)))
    for c in res.get("main", []):
        add("main", "%s %s %s" % (c["model"], c["trace"], c["system"]), c["result"])
        add("saturated", "%s %s %s" % (c["model"], c["trace"], c["system"]), c.get("saturated"))
    for c in res.get("context", []):
        add("context", "%s %s" % (c["model"], c["system"]), c["result"])
    for c in (res.get("scaling") or {}).get("small", []):
        add("scaling", "%d %s" % (c["instances"], c["system"]), c["result"])
    for c in (res.get("scaling") or {}).get("big", []):
        add("scaling", "%s %s (one run)" % (c.get("instances", "-"), c["system"]),
            None if "skipped" in c else {"sim_wall_s": c["wall_s"], "commits": [c["run"].get("commit")]})
    for c in res.get("ablations", []):
        add("ablations", c["name"], c["result"])
    for c in res.get("planners", []):
        add("planners", "%s %s seed %d" % (c["trace"], c["planner"], c["seed"]), c["result"])
    return "\n".join(rows)


def planner_table(res):
    rows = ["| trace | planner | seeds | tok/s mean | min - max | vs greedy per seed (mean, min - max) | "
            "p99 TTFT s mean |", "|---|---|---|---|---|---|---|"]
    for r in planner_rows(res):
        if not r["tok_s"]:
            rows.append("| %s | %s | 0 | - | - | - | - |" % (r["trace"], r["planner"]))
            continue
        rel = [x for x in r["vs_greedy"] if x is not None and x != float("inf")]
        tt = [x for x in r["ttft_p99_s"] if x is not None]
        rows.append("| %s | %s | %d | %s | %s - %s | %s | %s |" % (
            r["trace"], r["planner"], len(r["tok_s"]), fmt(statistics.mean(r["tok_s"])), fmt(min(r["tok_s"])),
            fmt(max(r["tok_s"])),
            ("%.3f (%.3f - %.3f)" % (statistics.mean(rel), min(rel), max(rel))) if rel else "-",
            fmt(statistics.mean(tt)) if tt else "-"))
    return "\n".join(rows)


def render(res, st):
    out = ["# Infinite-LLM reproduced in infsim: results", "",
           "machine: %s; commit %s (infsim sha256 %s); started %s; wall %.1f s; %d simulator runs (%d from cache); "
           "size %s" % (res["machine"], res["commit"], res.get("binary_sha256", "?")[:12], res["started"],
                        res["wall_s"], res["sim_runs"], res["cached_runs"], res.get("size") or "full"), ""]
    if res.get("timeouts_as_misses") is not None:
        out += ["**%d runs passed the time limit and were counted as loads not sustained (--timeout-is-miss).**"
                % res["timeouts_as_misses"], ""]
    if res.get("override"):
        out += ["**Explanation run, not the frozen study: every run had %s.**" % ", ".join(
            "%s=%s" % kv for kv in sorted(res["override"].items())), ""]
    if res["policy_under_test"] != "infinite-llm":
        out += ["**infinite-llm columns are the stand-in policy `%s`, not infinite-llm.**" % res["policy_under_test"],
                ""]
    if not res["policy_available"]:
        out += ["**policy `%s` is not in the binary: its cells are '-'.**" % res["policy_under_test"], ""]
    slo = st["slo"]
    out += ["SLO: a request meets it when it completes with TTFT <= %g s + %g s x prompt tokens and TPOT <= %g s; a "
            "load is sustained when >= %.0f%% of arrived requests (rejected ones count) meet it." % (
                slo["ttft_base_s"], slo["ttft_per_prompt_token_s"], slo["tpot_s"], 100 * slo["attainment"]), ""]
    if "main" in res:
        out += ["## Throughput at the highest sustained load", "", main_table(res, st), "",
                "## Saturated throughput (every request at time 0, no SLO)", "", saturated_table(res, st), ""]
    if "context" in res:
        out += ["## Longest context served on an idle cluster (prompt + output tokens)", "", context_table(res, st), ""]
    if "scaling" in res:
        out += ["## Scaling", "", scaling_table(res), ""]
    if "ablations" in res:
        out += ["## Ablations (infinite-llm)", "", ablation_table(res), "",
                "### Every variant at the default's sustained load", "", ablation_equal_load_table(res), ""]
    if "planners" in res:
        out += ["## Planners over seeds", "", planner_table(res), "",
                "### Planners at greedy's sustained load (equal offered load, per seed)", "",
                equal_load_table(res), ""]
    out += ["## Provenance of every cell", "", provenance_table(res), ""]
    return "\n".join(out) + "\n"
