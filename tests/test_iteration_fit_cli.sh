#!/usr/bin/env bash
# The calibration DB's measured per-iteration time (table iteration_fit) as
# `infsim run` takes it: a run priced with a row of 123.4 us gives the same
# bytes as the same run with cost.iteration_overhead_us: 123.4 set and no
# row (the row replaces the default); with the key set to 500 and the row
# present, the bytes of the DB without the row (the key wins); a bad row
# is one line naming the DB, the table and the field, exit 2, no output.
# summary.json's config records the value that priced the run.
set -u
INFSIM=${INFSIM:?path of the infsim CLI}
SRC=${INFSIM_SRC:?source tree}
command -v sqlite3 >/dev/null || { echo "sqlite3 missing: skipped"; exit 77; }
command -v jq >/dev/null || { echo "jq missing: skipped"; exit 77; }
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W" || exit 1
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

TABLE='CREATE TABLE iteration_fit (profile_id INTEGER NOT NULL REFERENCES profile(id), tp INTEGER NOT NULL,
  overhead_us REAL NOT NULL, rows INTEGER NOT NULL, source TEXT NOT NULL, fitted_at TEXT NOT NULL,
  PRIMARY KEY (profile_id, tp)) STRICT;'
row() { echo "INSERT INTO iteration_fit SELECT id, 1, $1, 10, 't', 'now' FROM profile WHERE name = 'h200' AND model = 'llama2-7b';"; }
cp "$SRC/data/calibration.db" plain.db && sqlite3 plain.db "DROP TABLE IF EXISTS iteration_fit;"
cp plain.db fit.db && sqlite3 fit.db "$TABLE $(row 123.4)"
cp plain.db bad.db && sqlite3 bad.db "$TABLE $(row -5)"
printf 'model: llama2-7b\ngpu: h200\ncluster:\n  instances: 1\nworkload:\n  requests: 20\nseed: 3\n' >c.yaml

same() { cmp -s "$1/requests.csv" "$2/requests.csv" || fail "$3"; }
"$INFSIM" run c.yaml --out a --quiet --set calibration.db=fit.db || fail "run with the row"
"$INFSIM" run c.yaml --out b --quiet --set calibration.db=plain.db --set cost.iteration_overhead_us=123.4 ||
  fail "run with the key"
"$INFSIM" run c.yaml --out c --quiet --set calibration.db=plain.db || fail "run with the default"
"$INFSIM" run c.yaml --out d --quiet --set calibration.db=fit.db --set cost.iteration_overhead_us=500 ||
  fail "run with the row and the key"
same a b "the row does not price as the key set to its value"
same c d "the key set to 500 does not win over the row"
cmp -s a/requests.csv c/requests.csv && fail "the row changes nothing"
# summary.json's config names the value that priced the run
[ "$(jq .config.cost.iteration_overhead_us a/summary.json)" = 123.4 ] || fail "summary.json: not the row's value"
[ "$(jq .config.cost.iteration_overhead_us d/summary.json)" = 500 ] || fail "summary.json: not the key's value"

"$INFSIM" run c.yaml --out e --quiet --set calibration.db=bad.db 2>err.txt
rc=$?
[ "$rc" -eq 2 ] || fail "bad row: exit $rc, want 2"
[ "$(wc -l <err.txt)" -eq 1 ] || fail "bad row: $(wc -l <err.txt) lines on stderr, want 1"
grep -q '^infsim run: bad.db: iteration_fit: h200, llama2-7b, tp 1: overhead_us -5: want a number in \[0, 1e9\]' err.txt ||
  fail "bad row: message: $(cat err.txt)"
[ ! -e e ] || fail "bad row: output written"

[ "$failures" -eq 0 ] || exit 1
echo "ok"
