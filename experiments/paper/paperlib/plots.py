"""gnuplot PNGs of the paper study (OUT/plots): one data file and one script
per plot, kept beside the PNG so a plot can be redrawn or restyled by hand.

throughput.png  sustained throughput per system, per model and trace (log y)
ratios.png      infinite-llm / baseline ratios against the paper's ranges
attainment-MODEL.png  SLO attainment against offered load, every probe of
                every capacity search of the model (one panel per trace)
context.png     longest context served on an idle cluster, per model
scaling.png     throughput per instance against instances
ablations.png   sustained throughput of each ablation, relative to default
planners.png    throughput per planner over seeds (mean, min-max bars)
planners-equal-load.png  p99 TTFT of each planner at greedy's sustained load,
                over greedy's on the same seed (mean, min-max bars)

A plot whose data are all missing is skipped with a line in the log.
"""
import os
import subprocess

from . import report

TERM = "set terminal pngcairo size 1100,620 background rgb 'white' font 'Sans,11'\n"


def _gnuplot(d, name, data, script, log):
    with open(os.path.join(d, name + ".dat"), "w") as f:
        f.write(data)
    with open(os.path.join(d, name + ".gp"), "w") as f:
        f.write(TERM + "set output '%s.png'\n" % name + script)
    r = subprocess.run(["gnuplot", name + ".gp"], cwd=d, capture_output=True, text=True)
    if r.returncode != 0:
        log("gnuplot %s failed: %s" % (name, r.stderr.strip()))
    else:
        log("plot %s" % os.path.join(d, name + ".png"))


def _v(x):
    return "NaN" if x is None or x == float("inf") else "%.6g" % x


def _ratio_top(rows, paper):
    """Top of the ratio axis: above every ratio and every paper band."""
    vals = [float(x) for r in rows for x in r.rsplit('"', 1)[1].split() if x != "NaN"]
    bands = [b for k in ("short_vs_multi", "long_vs_single", "short_vs_single") for b in paper[k]]
    return 1.15 * max(vals + bands)


def _columns_with_data(rows, systems):
    """(index, system) of the columns with at least one number (gnuplot's
    histograms refuse a column of NaN); rows are '"label" v1 v2 ...'."""
    vals = [r.rsplit('"', 1)[1].split() for r in rows]
    return [(i, s) for i, s in enumerate(systems) if any(v[i] != "NaN" for v in vals)]


HIST = ("set style data histograms\nset style histogram clustered gap 1\nset style fill solid 0.8 border -1\n"
        "set boxwidth 0.9\nset grid ytics\nset key outside top center horizontal box\nset xtics rotate by -30\nset rmargin 9\n")


def render(res, st, d, log):
    os.makedirs(d, exist_ok=True)
    systems = st["systems"]
    if "main" in res:
        keys = list(dict.fromkeys((c["model"], c["trace"]) for c in res["main"]))
        rows, rrows = [], []
        for m, t in keys:
            v = {s: report.thr(report.find(res["main"], model=m, trace=t, system=s)) for s in systems}
            rows.append('"%s %s" %s' % (m.replace("llama2-", ""), t, " ".join(_v(v[s]) for s in systems)))
            g = st["traces"][t]["group"]
            rrows.append('"%s %s (%s)" %s %s' % (m.replace("llama2-", ""), t, g,
                                                _v(report.ratio(v["infinite-llm"], v["vllm-multi"])),
                                                _v(report.ratio(v["infinite-llm"], v["vllm-single"]))))
        cols = _columns_with_data(rows, systems)
        if cols:
            _gnuplot(d, "throughput", "\n".join(rows) + "\n",
                     HIST + "set title 'Throughput at the highest load sustained within the SLO'\n"
                     "set ylabel 'output tokens/s (log scale)'\nset xlabel 'model and trace'\nset logscale y\n"
                     "plot " + ", ".join("'throughput.dat' using %d:xtic(1) title '%s'" % (i + 2, s)
                                        for i, s in cols) + "\n", log)
        p = st["paper"]
        if any(r.count("NaN") < 2 for r in rrows):
            _gnuplot(d, "ratios", "\n".join(rrows) + "\n",
                     HIST + "set title 'infinite-llm over the baselines (bands: the paper v2 ranges)'\n"
                     "set ylabel 'throughput ratio (x)'\nset xlabel 'model, trace (group)'\nset yrange [0:%g]\n"
                     "set object 1 rect from graph 0, first %g to graph 1, first %g fc rgb '#9400d3' "
                     "fs transparent solid 0.12 noborder\n"
                     "set object 2 rect from graph 0, first %g to graph 1, first %g fc rgb '#009e73' "
                     "fs transparent solid 0.12 noborder\n"
                     "plot 'ratios.dat' using 2:xtic(1) title 'IL / vllm-multi (paper short %g-%gx)', "
                     "'' using 3 title 'IL / vllm-single (paper long %g-%gx, short %g-%gx)', "
                     "1 with lines lc rgb 'black' dt 2 title 'parity'\n" % (
                         _ratio_top(rrows, p), p["short_vs_multi"][0], p["short_vs_multi"][1], p["long_vs_single"][0],
                         p["long_vs_single"][1], p["short_vs_multi"][0], p["short_vs_multi"][1],
                         p["long_vs_single"][0], p["long_vs_single"][1], p["short_vs_single"][0],
                         p["short_vs_single"][1]), log)
    if "main" in res:
        _attainment(res, st, d, log)
    if "context" in res:
        rows = []
        for m in dict.fromkeys(c["model"] for c in res["context"]):
            v = []
            for s in systems:
                c = report.find(res["context"], model=m, system=s)
                v.append(None if not c or "skipped" in c["result"] else c["result"]["tokens"])
            rows.append('"%s" %s' % (m, " ".join(_v(x) for x in v)))
        cols = _columns_with_data(rows, systems)
        if cols:
            _gnuplot(d, "context", "\n".join(rows) + "\n",
                     HIST + "set title 'Longest request (prompt + output) served on an idle cluster'\n"
                     "set ylabel 'tokens (log scale)'\nset xlabel 'model'\nset logscale y\nset xtics norotate\n"
                     "plot " + ", ".join("'context.dat' using %d:xtic(1) title '%s'" % (i + 2, s)
                                        for i, s in cols) + "\n", log)
    if "scaling" in res:
        small = res["scaling"]["small"]
        rows = []
        for n in dict.fromkeys(c["instances"] for c in small):
            v = [report.thr(report.find(small, instances=n, system=s)) for s in ("vllm-multi", "infinite-llm")]
            rows.append("%d %s" % (n, " ".join(_v(None if x is None else x / n) for x in v)))
        _gnuplot(d, "scaling", "\n".join(rows) + "\n",
                 "set title 'Scaling: sustained throughput per instance (LLaMA2-7B, trace %s)'\n"
                 "set xlabel 'instances (log scale)'\nset ylabel 'output tokens/s per instance'\nset logscale x 2\n"
                 "set grid\nset key bottom right\nset yrange [0:*]\n"
                 "plot 'scaling.dat' using 1:2 with linespoints lw 2 title 'vllm-multi', "
                 "'' using 1:3 with linespoints lw 2 title 'infinite-llm'\n" % st["scaling"]["trace"], log)
    if "ablations" in res:
        base = report.thr(report.find(res["ablations"], name="default"))
        rows = ['"%s" %s' % (c["name"], _v(report.ratio(report.thr(c), base))) for c in res["ablations"]]
        if base:
            _gnuplot(d, "ablations", "\n".join(rows) + "\n",
                     HIST + "set rmargin 9\nset title 'Ablations of infinite-llm (LLaMA2-7B, trace %s)'\nunset key\n"
                     "set ylabel 'sustained throughput / default (x)'\nset xlabel 'variant'\nset yrange [0:%g]\n"
                     "plot 'ablations.dat' using 2:xtic(1), 1 with lines lc rgb 'black' dt 2\n"
                     % (st["ablations"]["trace"], 1.15 * max([1.0] + [float(r.split()[-1]) for r in rows
                                                                    if r.split()[-1] != "NaN"])), log)
        else:
            log("ablations plot skipped: no default result")
    if "planners" in res:
        rows = []
        for r in report.planner_rows(res):
            if r["tok_s"]:
                m = sum(r["tok_s"]) / len(r["tok_s"])
                rows.append('"%s %s" %s %s %s' % (r["trace"], r["planner"], _v(m), _v(min(r["tok_s"])),
                                                   _v(max(r["tok_s"]))))
        if rows:
            _gnuplot(d, "planners", "\n".join(rows) + "\n",
                     "set title 'Planners: sustained throughput over seeds (bars: min to max)'\n"
                     "set style fill solid 0.7 border -1\nset boxwidth 0.6\nset grid ytics\nunset key\n"
                     "set ylabel 'output tokens/s'\nset xlabel 'trace and planner'\nset yrange [0:*]\n"
                     "set xtics rotate by -30\n"
                     "plot 'planners.dat' using 0:2:xtic(1) with boxes, '' using 0:2:3:4 with yerrorbars "
                     "lc rgb 'black' pt 0\n", log)
        else:
            log("planners plot skipped: no results")
        rows = []
        for t in dict.fromkeys(c["trace"] for c in res["planners"]):
            for p in dict.fromkeys(c["planner"] for c in res["planners"]):
                rel = []
                for c in res["planners"]:
                    g = report.find(res["planners"], trace=t, planner="greedy", seed=c["seed"])
                    if c["trace"] == t and c["planner"] == p and c.get("equal_load") and g and g.get("equal_load"):
                        x = report.ratio(c["equal_load"]["ttft_p99_s"], g["equal_load"]["ttft_p99_s"])
                        if x is not None and x != float("inf"):
                            rel.append(x)
                if rel:
                    rows.append('"%s %s" %s %s %s' % (t, p, _v(sum(rel) / len(rel)), _v(min(rel)), _v(max(rel))))
        if rows:
            _gnuplot(d, "planners-equal-load", "\n".join(rows) + "\n",
                     "set title \"Planners at greedy's sustained load: p99 TTFT over greedy's, same seed "
                     "(bars: min to max over seeds)\"\n"
                     "set style fill solid 0.7 border -1\nset boxwidth 0.6\nset grid ytics\nunset key\n"
                     "set ylabel 'p99 TTFT / greedy p99 TTFT (x; below 1 is better)'\n"
                     "set xlabel 'trace and planner'\nset yrange [0:%g]\nset xtics rotate by -30\n"
                     "plot 'planners-equal-load.dat' using 0:2:xtic(1) with boxes, '' using 0:2:3:4 with yerrorbars "
                     "lc rgb 'black' pt 0, 1 with lines lc rgb 'black' dt 2\n"
                     % max(1.25, 1.1 * max(float(r.split()[-1]) for r in rows)), log)


def _attainment(res, st, d, log):
    """Every probe of every capacity search: where the 90% line is crossed,
    and how flat the curve is there (a flat curve makes the crossing, the
    reported capacity, sensitive to a few requests)."""
    colors = {"vllm-multi": "#9400d3", "vllm-single": "#009e73", "infinite-llm": "#e69f00"}
    for m in dict.fromkeys(c["model"] for c in res["main"]):
        traces = list(dict.fromkeys(c["trace"] for c in res["main"] if c["model"] == m))
        plots = []
        for i, t in enumerate(traces):
            lines = []
            for s in st["systems"]:
                c = report.find(res["main"], model=m, trace=t, system=s)
                r = (c or {}).get("result") or {}
                if "probes" not in r or not r.get("native_rps"):
                    continue
                name = "att-%s-%s-%s" % (m, t, s)
                pts = sorted((sp * r["native_rps"], 100 * a) for sp, a, _ in r["probes"])
                with open(os.path.join(d, name + ".dat"), "w") as f:
                    f.write("".join("%.6g %.4g\n" % p for p in pts))
                lines.append("'%s.dat' using 1:2 with linespoints lw 2 pt 7 lc rgb '%s' title '%s'"
                             % (name, colors.get(s, "black"), s))
            if lines:
                plots.append("set title '%s'\nplot %s, %g with lines lc rgb 'black' dt 2 title 'SLO bar'\n"
                             % (t, ", ".join(lines), 100 * st["slo"]["attainment"]))
        if not plots:
            continue
        cols = 3 if len(plots) > 2 else len(plots)
        rows_n = -(-len(plots) // cols)
        script = ("set terminal pngcairo size %d,%d background rgb 'white' font 'Sans,10'\n"
                  "set output 'attainment-%s.png'\nset multiplot layout %d,%d title "
                  "'%s: SLO attainment against offered load (every probe of the capacity searches)'\n"
                  "set logscale x\nset xlabel 'offered load (req/s, log scale)'\nset ylabel 'requests meeting the "
                  "SLO (%%)'\nset yrange [0:105]\nset grid\nset key bottom left font ',9'\n"
                  % (560 * cols, 420 * rows_n, m, rows_n, cols, m)) + "".join(plots) + "unset multiplot\n"
        with open(os.path.join(d, "attainment-%s.gp" % m), "w") as f:
            f.write(script)
        r = subprocess.run(["gnuplot", "attainment-%s.gp" % m], cwd=d, capture_output=True, text=True)
        log(("gnuplot attainment-%s failed: %s" % (m, r.stderr.strip())) if r.returncode else
            "plot %s" % os.path.join(d, "attainment-%s.png" % m))
