#!/usr/bin/env bash
# infsim compare against hand-computed relative errors: two run directories
# written by hand (summary.json, iterations.csv), errors known in closed
# form: (sim - cluster) / cluster, per-step iteration times with a run of
# identical steps counted once per step, nearest-rank percentiles; bad
# input exits 2 naming the file and field.
set -u
INFSIM=${INFSIM:?INFSIM must name the built CLI}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
lat() { printf '{"count": 10, "mean": %s, "p50": %s, "p90": %s, "p99": %s}' "$1" "$2" "$3" "$4"; }
mkdir -p "$W/sim" "$W/cl"
printf '{"throughput_tok_s": 110, "requests_per_s": 2, "ttft_s": %s, "tpot_s": %s, "e2e_s": %s}\n' \
  "$(lat 0.5 0.4 0.9 1.2)" "$(lat 0.02 0.02 0.03 0.05)" "$(lat 3 2 6 9)" >"$W/sim/summary.json"
printf '{"throughput_tok_s": 100, "requests_per_s": 2.5, "ttft_s": %s, "tpot_s": %s, "e2e_s": %s}\n' \
  "$(lat 0.4 0.5 1.0 1.0)" "$(lat 0.025 0.02 0.02 0.04)" "$(lat 3 2.5 5 10)" >"$W/cl/summary.json"
H='instance,start_s,end_s,steps,prefill_tokens,prefill_attention_pairs,decode_requests,decode_context_tokens,remote_holders,remote_context_tokens'
# sim: one run of 4 decode steps of 0.01 s each, one prefill of 0.1 s
printf '%s\n0,0,0.04,4,0,0,2,100,0,0\n0,0.04,0.14,1,64,2080,0,0,0,0\n' "$H" >"$W/sim/iterations.csv"
# cluster: decode steps of 0.008, 0.008, 0.012, 0.012 s; one prefill of 0.08 s
printf '%s\n0,0,0.008,1,0,0,2,100,0,0\n0,0.008,0.016,1,0,0,2,102,0,0\n0,0.016,0.028,1,0,0,2,104,0,0\n0,0.028,0.04,1,0,0,2,106,0,0\n0,0.04,0.12,1,64,2080,0,0,0,0\n' \
  "$H" >"$W/cl/iterations.csv"
"$INFSIM" compare "$W/sim" "$W/cl" --no-plot >"$W/out" 2>&1 || fail "compare exited $?"
cat "$W/out"
want() { # row, relative error in percent
  got=$(grep -F "$1 " "$W/out" | head -1 | awk '{print $NF}' | tr -d '%+')
  python3 -c "import sys; sys.exit(0 if abs(float('${got:-nan}') - ($2)) < 0.051 else 1)" 2>/dev/null ||
    fail "$1: got '$got', want $2"
}
want "throughput (tok/s)" 10.0
want "requests/s" -20.0
want "TTFT mean (s)" 25.0
want "TTFT p50 (s)" -20.0
want "TTFT p99 (s)" 20.0
want "TPOT mean (s)" -20.0
want "E2E p90 (s)" 20.0
want "E2E p99 (s)" -10.0
# decode steps: sim 0.01 x 4; cluster mean 0.01, p50 (rank 2 of 4) 0.008, p99 (rank 4) 0.012
want "iteration decode (s) mean" 0.0
want "iteration decode (s) p50" 25.0
want "iteration decode (s) p99" -16.7
want "iteration prefill (s) mean" 25.0
# A cluster value of 0 has no relative error unless the simulator's is 0 too.
mkdir -p "$W/z"
sed 's/"requests_per_s": 2.5/"requests_per_s": 0/' "$W/cl/summary.json" >"$W/z/summary.json"
"$INFSIM" compare "$W/sim" "$W/z" --no-plot >"$W/outz" 2>&1 || fail "compare (zero) exited $?"
grep -qE '^requests/s +2 +0 +n/a$' "$W/outz" || fail "requests/s against 0: $(grep requests/s "$W/outz")"
# --reprice: a simulated run's own iterations, priced again by the same
# cost model, come out exactly (error 0, decode runs of several steps
# included); stretched by 1.25 they are off by exactly 20%; a different GPU
# prices them differently.
printf 'model: llama2-7b\ngpu: a100-80gb\ncluster:\n  instances: 2\nmetrics:\n  iterations: true\n' >"$W/r.yaml"
python3 -c "
import random; r = random.Random(5); t = 0
print('arrival_time_s,prompt_tokens,output_tokens')
for i in range(60):
    t += r.expovariate(4); print(f'{t:.4f},{r.randint(50, 3000)},{r.randint(2, 300)}')" >"$W/r.csv"
"$INFSIM" run "$W/r.yaml" --trace "$W/r.csv" --out "$W/rs" --quiet || fail "run for --reprice"
awk -F, 'NR > 1 && $4 > 1' "$W/rs/iterations.csv" | grep -q . || fail "no multi-step decode rows to re-price"
"$INFSIM" compare "$W/rs" "$W/rs" --no-plot --reprice "$W/r.yaml" >"$W/rp" 2>&1 || fail "--reprice exited $?"
grep -E "^  (all|decode only|with prefill) .*median 0\.0%, p95 0\.0%" "$W/rp" | wc -l | grep -qx 3 ||
  fail "re-pricing the simulator's own iterations should be exact: $(cat "$W/rp")"
mkdir -p "$W/slow"
cp "$W/rs/summary.json" "$W/slow/"
python3 - "$W/rs/iterations.csv" "$W/slow/iterations.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
w = csv.DictWriter(open(sys.argv[2], 'w', newline=''), fieldnames=rows[0].keys())
w.writeheader()
for r in rows:
    r['end_s'] = f"{float(r['start_s']) + 1.25 * (float(r['end_s']) - float(r['start_s'])):.9f}"
    w.writerow(r)
PY
"$INFSIM" compare "$W/rs" "$W/slow" --no-plot --reprice "$W/r.yaml" >"$W/rp2" 2>&1 || fail "--reprice (slow) exited $?"
grep -q "all .*median 20\.0%, p95 20\.0%" "$W/rp2" || fail "1.25x measured times should be 20% off: $(cat "$W/rp2")"
grep -q "mean signed error -20\.0%" "$W/rp2" || fail "the signed error should be -20%"
# --name=VALUE is --name VALUE: the same table; an empty value is refused
# (exit 2, one line, no table).
"$INFSIM" compare "$W/rs" "$W/slow" --no-plot --reprice="$W/r.yaml" >"$W/rp2eq" 2>&1 || fail "--reprice= exited $?"
cmp -s "$W/rp2" "$W/rp2eq" || fail "--reprice=FILE prints other than --reprice FILE: $(cat "$W/rp2eq")"
"$INFSIM" compare "$W/rs" "$W/rs" --no-plot --reprice "$W/r.yaml" --reprice-rows= >"$W/out2" 2>"$W/err"
rc=$?
[ "$rc" -eq 2 ] && [ "$(cat "$W/err")" = "infsim compare: empty output path" ] ||
  fail "--reprice-rows=: exit $rc, message '$(cat "$W/err")'"
[ -s "$W/out2" ] && fail "--reprice-rows=: printed the table before failing"
sed 's/a100-80gb/h100-sxm/' "$W/r.yaml" >"$W/h.yaml"
"$INFSIM" compare "$W/rs" "$W/rs" --no-plot --reprice "$W/h.yaml" >"$W/rp3" 2>&1 || fail "--reprice (h100) exited $?"
grep -q "all .*median 0\.0%" "$W/rp3" && fail "another GPU's cost model should not price the same"
printf 'model: llama2-7b\nnot_a_key: 1\n' >"$W/bad.yaml"
"$INFSIM" compare "$W/rs" "$W/rs" --no-plot --reprice "$W/bad.yaml" >/dev/null 2>&1
[ $? -eq 2 ] || fail "--reprice with an unknown config key should exit 2"

# Output locations: --reprice-rows naming a directory, --plot in a missing
# directory: exit 2 naming the path, before the table, nothing written.
mkdir -p "$W/rdir"
"$INFSIM" compare "$W/rs" "$W/rs" --no-plot --reprice "$W/r.yaml" --reprice-rows "$W/rdir" >"$W/out2" 2>"$W/err"
rc=$?
[ "$rc" -eq 2 ] || fail "--reprice-rows DIR: exit $rc, want 2 ($(cat "$W/err"))"
grep -qF "$W/rdir: is a directory, not a file" "$W/err" || fail "--reprice-rows DIR: message '$(cat "$W/err")'"
[ -s "$W/out2" ] && fail "--reprice-rows DIR: printed the table before failing"
"$INFSIM" compare "$W/rs" "$W/rs" --plot "$W/nosuch/x.png" >"$W/out2" 2>"$W/err"
rc=$?
[ "$rc" -eq 2 ] || fail "--plot in a missing directory: exit $rc, want 2 ($(cat "$W/err"))"
grep -qF "$W/nosuch/x.png: cannot create: No such file or directory" "$W/err" ||
  fail "--plot in a missing directory: message '$(cat "$W/err")'"
# A failing gnuplot (a stand-in on PATH): exit 1, its exit status or signal
# said as such (not a raw wait status), no plot and no rows file.
mkdir -p "$W/bin"
for spec in 'exit 3|gnuplot exited with status 3' 'kill -KILL $$|gnuplot killed by signal 9'; do
  printf '#!/bin/sh\ncat >/dev/null\n%s\n' "${spec%%|*}" >"$W/bin/gnuplot"
  chmod +x "$W/bin/gnuplot"
  PATH="$W/bin:$PATH" "$INFSIM" compare "$W/rs" "$W/rs" --plot "$W/p.png" --reprice "$W/r.yaml" \
    --reprice-rows "$W/rows.csv" >/dev/null 2>"$W/err"
  rc=$?
  [ "$rc" -eq 1 ] || fail "gnuplot '${spec%%|*}': exit $rc, want 1"
  [ "$(cat "$W/err")" = "infsim compare: $W/p.png: no plot: ${spec#*|}" ] ||
    fail "gnuplot '${spec%%|*}': message '$(cat "$W/err")'"
  [ -e "$W/p.png" ] || [ -e "$W/rows.csv" ] && fail "gnuplot '${spec%%|*}': left a plot or rows file"
  ls "$W" | grep -q '\.tmp\.' && fail "gnuplot '${spec%%|*}': left a temporary file"
done

# bad input
echo '{"throughput_tok_s": "fast"}' >"$W/cl/summary.json"
"$INFSIM" compare "$W/sim" "$W/cl" --no-plot >"$W/bad" 2>&1
rc=$?
[ "$rc" -eq 2 ] || fail "a non-numeric field should exit 2 (got $rc)"
grep -q "cl/summary.json: throughput_tok_s" "$W/bad" || fail "the message should name the file and field: $(cat "$W/bad")"
[ "$failures" -eq 0 ] && echo ok
exit "$failures"
