#!/usr/bin/env python3
"""Fits the time an iteration of `infsim cluster` takes beyond the forward
the calibrated curves price (the serving loop's host side: the batch's
encoding and hand-over, the side's wake-up, the inputs' upload, the launch
and sync, the answer's way back; plus what the per-layer curves leave out
of a whole forward: embedding, final norm) and stores it with the
calibration (table iteration_fit of the calibration DB; the simulator adds
it to every iteration in place of the config's default
cost.iteration_overhead_us, which, set by the user, still wins).

  fit-overhead.py --db DB --profile P --model M [--tp 1]
                  [--priced-overhead-us 500] [--dry-run] RUN_DIR...

Each RUN_DIR holds rows.csv (`infsim compare SIM RUN_DIR --reprice CFG
--reprice-rows RUN_DIR/rows.csv`), priced with this DB and with
cost.iteration_overhead_us = --priced-overhead-us (the default 500 when
CFG does not set it and the DB has no row yet). The decode-only rows (no
prefill token) are the ones whose price is the curves plus the overhead
and nothing else (the clock term leaves them alone), so each row's
measured - (predicted - priced overhead) is what the loop took beyond the
curves; the fit is the median over the rows of all runs (the median: a
row that met a hiccup of the host, or a batch size the curves miss, does
not move it). Prefill rows are not used: the clock term and the prefill
curves' own error are in their differences.
"""
import argparse, csv, datetime, sqlite3, statistics, sys


def residuals(d, priced_us):
    out = []
    with open(f"{d}/rows.csv") as f:
        for r in csv.DictReader(f):
            if int(r["prefill_tokens"]) == 0 and int(r["steps"]) == 1 and int(r["decode_requests"]) > 0:
                out.append((float(r["measured_s"]) - float(r["predicted_s"])) * 1e6 + priced_us)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--profile", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--tp", type=int, default=1)
    ap.add_argument("--priced-overhead-us", type=float, default=500.0)
    ap.add_argument("--min-rows", type=int, default=50)
    ap.add_argument("--dry-run", action="store_true", help="print the fit, leave the DB alone")
    ap.add_argument("runs", nargs="+")
    a = ap.parse_args()
    every = []
    for d in a.runs:
        r = residuals(d, a.priced_overhead_us)
        if r:
            q = statistics.quantiles(r, n=10)
            print(f"{d}: {len(r)} decode-only rows, beyond the curves: median {statistics.median(r):.1f} us"
                  f" (p10 {q[0]:.1f}, p90 {q[-1]:.1f})")
        every += r
    if len(every) < a.min_rows:
        sys.exit(f"fit-overhead.py: {len(every)} decode-only rows: too few to fit (--min-rows {a.min_rows})")
    us = statistics.median(every)
    if not 0 <= us <= 1e9:
        sys.exit(f"fit-overhead.py: {us:.1f} us beyond the curves: negative, the curves price these steps slower"
                 " than they ran; no overhead to store")
    print(f"fitted: overhead {us:.1f} us an iteration ({len(every)} rows)")
    if a.dry_run:
        return
    db = sqlite3.connect(a.db)
    pid = db.execute("SELECT id FROM profile WHERE name = ? AND model = ?", (a.profile, a.model)).fetchone()
    if pid is None:
        sys.exit(f"fit-overhead.py: {a.db}: no profile {a.profile} of {a.model}")
    db.execute("CREATE TABLE IF NOT EXISTS iteration_fit (profile_id INTEGER NOT NULL REFERENCES profile(id),"
               " tp INTEGER NOT NULL, overhead_us REAL NOT NULL, rows INTEGER NOT NULL, source TEXT NOT NULL,"
               " fitted_at TEXT NOT NULL, PRIMARY KEY (profile_id, tp)) STRICT")
    db.execute("INSERT OR REPLACE INTO iteration_fit VALUES (?, ?, ?, ?, ?, ?)",
               (pid[0], a.tp, round(us, 1), len(every), f"decode-only rows of {' '.join(a.runs)}",
                datetime.datetime.now(datetime.timezone.utc).isoformat()))
    db.commit()


if __name__ == "__main__":
    main()
