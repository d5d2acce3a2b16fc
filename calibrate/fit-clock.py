#!/usr/bin/env python3
"""Fits the cost model's clock-after-idle term (include/infsim/costmodel.h)
from recorded end-to-end runs of `infsim cluster` and stores it with the
calibration (table clock_fit of the calibration DB; without a row the term
is off).

  fit-clock.py --db DB --profile P --model M [--tp 1] --clocks CLOCKS.csv
               [--min-prefill-tokens 4096] [--skip-first 1] [--rows rows.csv] RUN_DIR...

Each RUN_DIR holds iterations.csv and the rows file (--rows, default
rows.csv: `infsim compare ... --reprice CFG --reprice-rows RUN_DIR/rows.csv`,
priced with the term off), and lies within the span of CLOCKS.csv
(nvidia-smi samples: timestamp, SM clock, ...).
1. Time constant: the SM clock is modelled as a - b u(t), u the
   exponentially weighted compute share of the run's measured timeline
   (each row at its compute-bound share, idle between rows); for each tau of
   a grid, each run's start within the clock file and a, b by least squares;
   tau with the smallest residual over all runs.
2. Gain: with that tau, the rows with at least --min-prefill-tokens prefill
   tokens, measured m, predicted p (sustained clock), compute-bound part c,
   mean load over the row ua: m ~ p - g (1 - ua) c, g by least squares in
   relative error (weights 1/m^2). The first --skip-first iterations of each
   run are left out of the gain (they still move the load): a run's first
   forward pays one-time costs no clock explains (on the H200, in the runs
   of 2026-12-04, a 4,808-token first prefill took 0.134-0.156 s, against
   0.121 s predicted with the term off and about 0.100 s with it at load
   0). Starting from load 0, first rows weigh the most of all rows: there
   the three runs' first rows alone moved the gain from 0.169 to 0.071.
"""
import argparse, csv, datetime, math, sqlite3, sys

TAUS = [0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0]


def load_run(d, rows_name):
    it = list(csv.DictReader(open(f"{d}/iterations.csv")))
    pr = {int(p["row"]): p for p in csv.DictReader(open(f"{d}/{rows_name}"))}
    rows = []
    for i, r in enumerate(it):
        p = pr.get(i)
        steps = int(r["steps"])
        pred = float(p["predicted_s"]) * steps if p else 0.0
        bound = float(p["compute_bound_s"]) if p else 0.0
        rows.append(dict(s=float(r["start_s"]), e=float(r["end_s"]), pt=int(r["prefill_tokens"]),
                         meas=float(p["measured_s"]) if p else 0.0, pred=pred, bound=bound,
                         w=min(1.0, bound / pred) if pred > 0 else 0.0))
    return rows


def load_at_times(rows, tau, times):
    """u at each of the sorted times."""
    out, u, t, j = [], 0.0, 0.0, 0
    for T in times:
        while j < len(rows) and rows[j]["s"] < T:
            r = rows[j]
            if r["s"] > t:
                u *= math.exp(-(r["s"] - t) / tau)
                t = r["s"]
            end = min(r["e"], T)
            if end > t:
                u = r["w"] - (r["w"] - u) * math.exp(-(end - t) / tau)
                t = end
            if r["e"] > T:
                break
            j += 1
        if T > t:
            u *= math.exp(-(T - t) / tau)
            t = T
        out.append(u)
    return out


def line_fit(us, cs):
    n = len(us)
    mu, mc = sum(us) / n, sum(cs) / n
    suu = sum((x - mu) ** 2 for x in us)
    b = sum((x - mu) * (c - mc) for x, c in zip(us, cs)) / suu if suu > 0 else 0.0
    a = mc - b * mu
    return a, b, sum((c - a - b * x) ** 2 for x, c in zip(us, cs))


def fit_tau(runs, clocks):
    t_first = clocks[0][0]
    best = None
    for tau in TAUS:
        sse, n, per = 0.0, 0, []
        for rows in runs:
            dur = rows[-1]["e"]
            run_best = None
            off = t_first
            while off + dur <= clocks[-1][0]:
                pts = [(t - off, c) for t, c in clocks if 0 <= t - off <= dur]
                if len(pts) >= 8:
                    a, b, e = line_fit(load_at_times(rows, tau, [p[0] for p in pts]), [p[1] for p in pts])
                    if run_best is None or e < run_best[0]:
                        run_best = (e, len(pts), off, a, b)
                off += 0.05
            sse += run_best[0]
            n += run_best[1]
            per.append(run_best)
        rms = math.sqrt(sse / n)
        print(f"tau {tau:5.2f} s: clock residual rms {rms:6.1f} MHz; per run (start s, a MHz, b MHz): " +
              " ".join(f"({p[2]:.2f}, {p[3]:.0f}, {p[4]:.0f})" for p in per))
        if best is None or rms < best[0]:
            best = (rms, tau)
    return best[1]


def row_loads(rows, tau):
    u, t, out = 0.0, 0.0, []
    for r in rows:
        if r["s"] > t:
            u *= math.exp(-(r["s"] - t) / tau)
            t = r["s"]
        d = r["pred"]
        out.append(r["w"] - (r["w"] - u) * tau / d * -math.expm1(-d / tau) if d > 0 else u)
        if r["e"] > t:
            u = r["w"] - (r["w"] - u) * math.exp(-(r["e"] - t) / tau)
            t = r["e"]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--profile", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--tp", type=int, default=1)
    ap.add_argument("--clocks", required=True)
    ap.add_argument("--min-prefill-tokens", type=int, default=4096)
    ap.add_argument("--skip-first", type=int, default=1)
    ap.add_argument("--rows", default="rows.csv")
    ap.add_argument("runs", nargs="+")
    a = ap.parse_args()
    if a.skip_first < 0:
        sys.exit(f"fit-clock.py: --skip-first {a.skip_first}: want 0 or more")
    clocks = []
    with open(a.clocks) as f:
        next(f)
        for line in f:
            x = [v.strip() for v in line.split(",")]
            t = datetime.datetime.strptime(x[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
            clocks.append((t, float(x[1].split()[0])))
    t0 = clocks[0][0]
    clocks = [(t - t0, c) for t, c in clocks]
    runs = [load_run(d, a.rows) for d in a.runs]
    tau = fit_tau(runs, clocks)
    num = den = 0.0
    n = 0
    for rows in runs:
        for i, (r, ua) in enumerate(zip(rows, row_loads(rows, tau))):
            if i >= a.skip_first and r["pt"] >= a.min_prefill_tokens and r["meas"] > 0:
                x = r["bound"] * (1 - ua) / r["meas"]
                num += x * (r["pred"] - r["meas"]) / r["meas"]
                den += x * x
                n += 1
    if den <= 0 or n < 10:
        sys.exit(f"fit-clock.py: {n} rows with >= {a.min_prefill_tokens} prefill tokens: too few to fit")
    g = num / den
    if not 0 <= g < 1:
        sys.exit(f"fit-clock.py: gain {g:.4f} outside [0, 1): no clean clock term in these runs")
    print(f"fitted: tau {tau} s, idle gain {g:.4f} ({n} rows)")
    db = sqlite3.connect(a.db)
    db.execute("CREATE TABLE IF NOT EXISTS clock_fit (profile_id INTEGER NOT NULL REFERENCES profile(id),"
               " tp INTEGER NOT NULL, tau_s REAL NOT NULL, idle_gain REAL NOT NULL, rows INTEGER NOT NULL,"
               " source TEXT NOT NULL, fitted_at TEXT NOT NULL, PRIMARY KEY (profile_id, tp)) STRICT")
    pid = db.execute("SELECT id FROM profile WHERE name = ? AND model = ?", (a.profile, a.model)).fetchone()
    if pid is None:
        sys.exit(f"fit-clock.py: {a.db}: no profile {a.profile} of {a.model}")
    db.execute("INSERT OR REPLACE INTO clock_fit VALUES (?, ?, ?, ?, ?, ?, ?)",
               (pid[0], a.tp, tau, g, n, f"clocks {a.clocks}; runs {' '.join(a.runs)} ({a.rows}, first {a.skip_first} skipped)",
                datetime.datetime.now(datetime.timezone.utc).isoformat()))
    db.commit()


if __name__ == "__main__":
    main()
