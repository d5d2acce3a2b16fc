#!/usr/bin/env bash
# results.db holds, field for field, what requests.csv and timeseries.csv
# hold: every request row (ids 0..n-1 in order, integers and names equal,
# times equal to the CSV's nine decimals, NULL exactly where the CSV field
# is empty: rejected requests), every sample row in the same order, and the
# summary's counts. 1,000 requests with rejections: the writer's groups of
# rows per INSERT and the rows left over after them both run.
set -u
INFSIM=${INFSIM:?INFSIM must name the built CLI}
command -v python3 >/dev/null || { echo "python3 missing: skipped"; exit 77; }
python3 -c 'import sqlite3' 2>/dev/null || { echo "python3 sqlite3 missing: skipped"; exit 77; }
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

cat >"$W/c.yaml" <<'YAML'
model:
  name: llama2-7b
  max_context_tokens: 4096
gpu: a100-80gb
cluster:
  instances: 2
seed: 5
YAML
"$INFSIM" trace gen --requests 1000 --rate_rps 30 --prompt.dist lognormal --prompt.median 900 --prompt.sigma 1.2 \
  --prompt.max 9000 --output.dist lognormal --output.median 150 --seed 5 -o "$W/t.csv" 2>/dev/null ||
  { echo "FAIL: trace gen"; exit 1; }
"$INFSIM" run "$W/c.yaml" --trace "$W/t.csv" --out "$W/o" --quiet || { echo "FAIL: run"; exit 1; }

python3 - "$W/o" <<'PY'
import csv, json, sqlite3, sys
out = sys.argv[1]
db = sqlite3.connect(f"{out}/results.db")
fails = []

def same_time(text, value):
    if text == "":
        return value is None
    return value is not None and abs(float(text) - value) <= 1e-9 * max(1.0, abs(value))

def compare(table, csv_name, order, kinds):
    with open(f"{out}/{csv_name}") as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], rows[1:]
    cols = [d[1] for d in db.execute(f"PRAGMA table_info({table})")]
    if cols != header:
        fails.append(f"{table}: columns {cols} != {header}")
        return 0
    got = db.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
    if len(got) != len(rows):
        fails.append(f"{table}: {len(got)} rows, {csv_name} has {len(rows)}")
        return 0
    for i, (a, b) in enumerate(zip(rows, got)):
        for name, kind, x, y in zip(header, kinds, a, b):
            ok = (kind == "i" and y == int(x) and type(y) is int) or (kind == "s" and y == x) or \
                 (kind == "t" and same_time(x, y))
            if not ok:
                fails.append(f"{table} row {i} {name}: db {y!r}, csv {x!r}")
                if len(fails) > 10:
                    return len(rows)
    return len(rows)

n = compare("requests", "requests.csv", "id", ["i", "t", "i", "i", "s", "s", "i", "t", "t", "t", "t", "t", "i", "i"])
compare("timeseries", "timeseries.csv", "rowid", ["t"] + ["i"] * 7)
ids = [r[0] for r in db.execute("SELECT id FROM requests ORDER BY rowid")]
if ids != list(range(n)):
    fails.append("requests: ids are not 0..n-1 in rowid order")
summary = json.load(open(f"{out}/summary.json"))
for key in ("arrived", "completed", "rejected", "events"):
    (v,) = db.execute("SELECT value FROM summary WHERE key = ?", (key,)).fetchone()
    if v != summary[key]:
        fails.append(f"summary {key}: db {v}, json {summary[key]}")
rejected = db.execute("SELECT count(*) FROM requests WHERE status = 'rejected' AND first_token_s IS NULL").fetchone()[0]
if not (n > 32 * 20 and n % 32 != 0 and rejected > 0):
    fails.append(f"the case must have leftover rows and rejections: n={n}, rejected={rejected}")
for f in fails:
    print("FAIL:", f)
sys.exit(1 if fails else 0)
PY
