#!/usr/bin/env bash
# calibrate/fit-overhead.py against an overhead known by construction: two
# runs' rows.csv, priced with 500 us, whose decode-only rows took 200 us
# beyond the curves (a few hiccups of +5 ms and rows with prefill tokens,
# 10 ms off, that must not move it); the fit is 200.0 us, stored in
# iteration_fit of the profile's row, read back by `infsim run` (a run with
# it prices as the same run with cost.iteration_overhead_us: 200); too few
# rows and an unknown profile are refused with the DB left as it was.
set -u
INFSIM=${INFSIM:?path of the infsim CLI}
SRC=${INFSIM_SRC:?source tree}
command -v python3 >/dev/null || exit 77
command -v sqlite3 >/dev/null || exit 77
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
FIT="$SRC/calibrate/fit-overhead.py"

for run in a b; do
  mkdir -p "$W/$run"
  python3 - "$W/$run/rows.csv" "$run" <<'PY'
import random, sys
r = random.Random(sys.argv[2])
with open(sys.argv[1], "w") as f:
    f.write("row,steps,prefill_tokens,decode_requests,decode_context_tokens,decode_max_context_tokens,"
            "measured_s,predicted_s,busy_fraction,compute_bound_s\n")
    for i in range(60):
        pred = r.uniform(0.005, 0.02)         # curves + the 500 us it was priced with
        meas = pred - 500e-6 + 200e-6          # 200 us beyond the curves
        if i % 20 == 7:
            meas += 0.005                      # a hiccup of the host
        f.write(f"{i},1,0,{r.randint(1, 64)},1000,100,{meas!r},{pred!r},0,0\n")
    for i in range(60, 80):                    # prefill rows: left out
        f.write(f"{i},1,4096,3,1000,500,0.21,0.2,1,0.19\n")
PY
done
cp "$SRC/data/calibration.db" "$W/x.db"
sqlite3 "$W/x.db" "DROP TABLE IF EXISTS iteration_fit;"
out=$(python3 "$FIT" --db "$W/x.db" --profile h200 --model llama2-7b "$W/a" "$W/b") || fail "fit failed: $out"
echo "$out" | grep -q "^fitted: overhead 200.0 us an iteration (120 rows)$" || fail "fit: $out"
[ "$(sqlite3 "$W/x.db" "SELECT i.overhead_us, i.tp, i.rows FROM iteration_fit i JOIN profile p ON p.id = i.profile_id
  WHERE p.name = 'h200' AND p.model = 'llama2-7b'")" = "200.0|1|120" ] || fail "stored row"

printf 'model: llama2-7b\ngpu: h200\ncluster:\n  instances: 1\nworkload:\n  requests: 10\nseed: 2\n' >"$W/c.yaml"
cp "$SRC/data/calibration.db" "$W/plain.db"
sqlite3 "$W/plain.db" "DROP TABLE IF EXISTS iteration_fit;"
"$INFSIM" run "$W/c.yaml" --out "$W/r1" --quiet --set calibration.db="$W/x.db" || fail "run with the fit"
"$INFSIM" run "$W/c.yaml" --out "$W/r2" --quiet --set calibration.db="$W/plain.db" \
  --set cost.iteration_overhead_us=200 || fail "run with the key"
cmp -s "$W/r1/requests.csv" "$W/r2/requests.csv" || fail "the fitted row does not price as the key at 200"

before=$(sqlite3 "$W/x.db" "SELECT count(*), sum(overhead_us) FROM iteration_fit")
python3 "$FIT" --db "$W/x.db" --profile h200 --model llama2-7b --min-rows 500 "$W/a" >/dev/null 2>&1 &&
  fail "60 rows accepted with --min-rows 500"
python3 "$FIT" --db "$W/x.db" --profile nosuch --model llama2-7b "$W/a" >/dev/null 2>&1 && fail "unknown profile"
[ "$(sqlite3 "$W/x.db" "SELECT count(*), sum(overhead_us) FROM iteration_fit")" = "$before" ] || fail "DB changed"

[ "$failures" -eq 0 ] || exit 1
echo "ok"
