#!/usr/bin/env bash
# infsim run as a user drives it: bad input exits 2 with file:line and writes
# nothing; the same seed gives the same bytes; summary.json agrees with an
# independent recomputation from requests.csv; results.db holds the same rows.
set -u
INFSIM=${INFSIM:?INFSIM must name the built CLI}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

cat >"$W/c.yaml" <<'YAML'
model: llama2-7b
gpu: a100-80gb
cluster:
  instances: 2
scheduler:
  max_batch_size: 32
slo:
  ttft_s: 0.5
  tpot_s: 0.05
seed: 4
YAML
python3 - "$W/t.csv" <<'PY'
import random, sys
r = random.Random(3); t = 0.0
with open(sys.argv[1], 'w') as f:
    f.write('arrival_time_s,prompt_tokens,output_tokens,extra\n')
    for i in range(300):
        t += r.expovariate(8.0)
        f.write(f'{t:.6f},{r.randint(1, 3000)},{r.randint(1, 400)},x{i}\n')
PY

. "$(dirname "$0")/run_lib.sh"

"$INFSIM" run --help | grep -q -- '--set key=value' || fail "--help does not document --set"
expect_bad "missing config" "nope.yaml" "$W/nope.yaml" --trace "$W/t.csv"
printf 'model: llama2-7b\ncluster:\n  instances: [1\n' >"$W/syntax.yaml"
expect_bad "yaml syntax" "syntax.yaml:[0-9]+" "$W/syntax.yaml" --trace "$W/t.csv"
printf 'model: llama2-7b\nscheduler:\n  max_batch_sise: 4\n' >"$W/unknown.yaml"
expect_bad "unknown key" "unknown.yaml:3: unknown key 'scheduler.max_batch_sise'" "$W/unknown.yaml" --trace "$W/t.csv"
printf 'cluster:\n  instances: many\n' >"$W/value.yaml"
expect_bad "bad value" "value.yaml:2: cluster.instances" "$W/value.yaml" --trace "$W/t.csv"
printf 'policy:\n  name: vllm-triple\n' >"$W/enum.yaml"
expect_bad "bad policy" "enum.yaml:2: policy.name" "$W/enum.yaml" --trace "$W/t.csv"
expect_bad "bad --set" "--set: scheduler.block_tokens" "$W/c.yaml" --trace "$W/t.csv" --set scheduler.block_tokens=0
expect_bad "unknown --set key" "unknown key 'scheduler.nothing'" "$W/c.yaml" --trace "$W/t.csv" --set scheduler.nothing=1
expect_bad "70B on one GPU" "weights" "$W/c.yaml" --trace "$W/t.csv" --set model=llama2-70b
printf 'arrival_time_s,prompt_tokens,output_tokens\n1.0,10,10\n0.5,10,10\n' >"$W/back.csv"
expect_bad "arrivals go back" "back.csv:3" "$W/c.yaml" --trace "$W/back.csv"
printf 'arrival_time_s,prompt_tokens\n1.0,10\n' >"$W/cols.csv"
expect_bad "missing column" "cols.csv:1.*output_tokens" "$W/c.yaml" --trace "$W/cols.csv"
printf 'arrival_time_s,prompt_tokens,output_tokens\n1.0,10,0\n' >"$W/zero.csv"
expect_bad "zero output tokens" "zero.csv:2.*output_tokens" "$W/c.yaml" --trace "$W/zero.csv"
printf 'workload:\n  trace: missing.csv\n' >"$W/wt.yaml"
expect_bad "workload.trace missing" "missing.csv" "$W/wt.yaml"
# Generator keys beside a trace file are checked though nothing is
# generated: a typo or a bad value is an error naming its line, with
# --trace and with workload.trace alike.
cp "$W/t.csv" "$W/wt.csv"
printf 'model: tiny\nworkload:\n  trace: wt.csv\n  reqests: 5\n' >"$W/typo.yaml"
expect_bad "typo beside workload.trace" "^infsim run: .*typo.yaml:4: unknown key 'workload.reqests'$" "$W/typo.yaml"
expect_bad "typo beside --trace" "typo.yaml:4: unknown key 'workload.reqests'" "$W/typo.yaml" --trace "$W/t.csv"
printf 'model: tiny\nworkload:\n  trace: wt.csv\n  prompt: {dist: fixed, median: 5}\n' >"$W/median.yaml"
expect_bad "median beside fixed" "median.yaml:4: unknown key 'workload.prompt.median'" "$W/median.yaml"
printf 'model: tiny\nworkload:\n  rate_rps: fast\n' >"$W/rate.yaml"
expect_bad "bad value beside --trace" "rate.yaml:3: workload.rate_rps: expected a number" "$W/rate.yaml" --trace "$W/t.csv"
# Valid generator keys stay allowed beside a trace file, and summary.json's
# config holds none of them: the file made the requests.
printf 'model: tiny\nworkload:\n  trace: wt.csv\n  requests: 5\n  prompt: {dist: fixed, tokens: 9}\n' >"$W/both.yaml"
"$INFSIM" run "$W/both.yaml" --out "$W/both" --quiet 2>"$W/err" || fail "generator keys beside workload.trace: $(cat "$W/err")"
python3 - "$W/both/summary.json" <<'PY' || fail "summary.json config of a trace run"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["config"]["workload"] == {"trace": "wt.csv"}, s["config"]["workload"]
assert s["completed"] + s["rejected"] == 300, s["completed"]
PY

# Determinism: the same seed gives the same bytes (summary.json minus wall_s).
"$INFSIM" run "$W/c.yaml" --trace "$W/t.csv" --out "$W/a" --quiet || fail "run a failed"
"$INFSIM" run "$W/c.yaml" --trace "$W/t.csv" --out "$W/b" --quiet || fail "run b failed"
for f in requests.csv timeseries.csv; do cmp -s "$W/a/$f" "$W/b/$f" || fail "$f differs between identical runs"; done
jq -S 'del(.wall_s)' "$W/a/summary.json" >"$W/a.json"
jq -S 'del(.wall_s)' "$W/b/summary.json" >"$W/b.json"
cmp -s "$W/a.json" "$W/b.json" || fail "summary.json differs between identical runs"
ls "$W/a" | grep -q tmp && fail "temporary files left in the output directory"
# --name=VALUE is --name VALUE: the same run, the same bytes.
"$INFSIM" run "$W/c.yaml" --trace="$W/t.csv" --out="$W/eq" --seed=4 --set=scheduler.max_batch_size=32 --quiet ||
  fail "run with --name=VALUE failed"
cmp -s "$W/a/requests.csv" "$W/eq/requests.csv" || fail "--name=VALUE: requests.csv differs from the spaced form's"
jq -S 'del(.wall_s)' "$W/eq/summary.json" >"$W/eq.json"
cmp -s "$W/a.json" "$W/eq.json" || fail "--name=VALUE: summary.json differs from the spaced form's"
expect_bad "empty --seed=" "^infsim run: --seed: seed: expected an integer" "$W/c.yaml" --trace "$W/t.csv" --seed=

# summary.json against requests.csv, recomputed independently (nearest-rank
# percentiles, TPOT over requests with >= 2 output tokens, SLO on both bounds).
python3 - "$W/a" <<'PY' || fail "summary.json disagrees with requests.csv"
import csv, json, math, sys
d = sys.argv[1]
s = json.load(open(f'{d}/summary.json'))
rows = list(csv.DictReader(open(f'{d}/requests.csv')))
done = [r for r in rows if r['status'] == 'completed']
def nearest_rank(v, p):
    v = sorted(v)
    return v[max(1, math.ceil(p / 100 * len(v))) - 1] if v else 0.0
def close(a, b): return abs(a - b) <= 1e-6 * max(1.0, abs(b))
ok = True
ttft = [float(r['ttft_s']) for r in done]
e2e = [float(r['e2e_s']) for r in done]
tpot = [(float(r['e2e_s']) - float(r['ttft_s'])) / (int(r['output_tokens']) - 1) for r in done if int(r['output_tokens']) >= 2]
for name, v in (('ttft_s', ttft), ('e2e_s', e2e), ('tpot_s', tpot)):
    st = s[name]
    ok &= st['count'] == len(v)
    ok &= close(st['mean'], sum(v) / len(v))
    for p in (50, 90, 99):
        ok &= close(st[f'p{p}'], nearest_rank(v, p))
span = max(float(r['finish_s']) for r in done) - min(float(r['arrival_s']) for r in rows)
ok &= close(s['throughput_tok_s'], sum(int(r['output_tokens']) for r in done) / span)
ok &= close(s['requests_per_s'], len(done) / span)
slo = s['config']['slo']
meets = sum(1 for r in done if float(r['ttft_s']) <= slo['ttft_s'] and
            (int(r['output_tokens']) < 2 or (float(r['e2e_s']) - float(r['ttft_s'])) / (int(r['output_tokens']) - 1) <= slo['tpot_s']))
rejected = sum(1 for r in rows if r['status'] == 'rejected')
ok &= close(s['slo_attainment'], meets / (len(done) + rejected))  # a rejection is a miss
ok &= close(s['goodput_req_s'], meets / span)
ok &= s['completed'] == len(done) and s['arrived'] == len(rows)
sys.exit(0 if ok else 1)
PY

# results.db holds the same tables.
if command -v sqlite3 >/dev/null; then
  [ "$(sqlite3 "$W/a/results.db" 'PRAGMA user_version')" = 1 ] || fail "results.db user_version"
  [ "$(sqlite3 "$W/a/results.db" 'SELECT count(*) FROM requests')" -eq 300 ] || fail "results.db requests rows"
  [ "$(sqlite3 "$W/a/results.db" 'SELECT count(*) FROM timeseries')" -eq $(($(wc -l <"$W/a/timeseries.csv") - 1)) ] ||
    fail "results.db timeseries rows"
  [ "$(sqlite3 "$W/a/results.db" "SELECT value FROM summary WHERE key='completed'")" = "$(jq .completed "$W/a/summary.json")" ] ||
    fail "results.db summary"
  sqlite3 "$W/a/results.db" "INSERT INTO requests(id, arrival_s, prompt_tokens, output_tokens, status, reason, instance, preemptions, instances_touched) VALUES (999, 'x', 1, 1, 'a', '', 0, 0, 0)" 2>/dev/null &&
    fail "results.db tables are not STRICT"
fi

# Warm-up: statistics cover requests arriving at or after metrics.warmup_s.
"$INFSIM" run "$W/c.yaml" --trace "$W/t.csv" --out "$W/w" --quiet --set metrics.warmup_s=10 || fail "warm-up run failed"
want=$(awk -F, 'NR > 1 && $2 >= 10 && $5 == "completed"' "$W/w/requests.csv" | wc -l)
[ "$(jq .e2e_s.count "$W/w/summary.json")" -eq "$want" ] || fail "warm-up: e2e count != requests arriving after 10 s"

# The generator: no trace given, the workload keys drive it; the seed matters.
printf 'cluster:\n  instances: 2\nworkload:\n  requests: 200\n  rate_rps: 5\n' >"$W/gen.yaml"
"$INFSIM" run "$W/gen.yaml" --out "$W/g1" --seed 1 --quiet || fail "generated run failed"
"$INFSIM" run "$W/gen.yaml" --out "$W/g2" --seed 1 --quiet || fail "generated run failed"
"$INFSIM" run "$W/gen.yaml" --out "$W/g3" --seed 2 --quiet || fail "generated run failed"
[ "$(jq .arrived "$W/g1/summary.json")" -eq 200 ] || fail "generated run: arrived != workload.requests"
cmp -s "$W/g1/requests.csv" "$W/g2/requests.csv" || fail "generated run: same seed, different requests"
cmp -s "$W/g1/requests.csv" "$W/g3/requests.csv" && fail "generated run: seeds 1 and 2 gave the same requests"
[ "$(jq -r .config.workload.rate_rps "$W/g1/summary.json")" = 5 ] || fail "resolved config lacks workload.rate_rps"

# An output location that cannot be created is bad input like any other:
# exit 2, one line naming the path and the reason, nothing written. A file
# where a directory should be, a name longer than the file system allows,
# a directory that cannot be made (/proc).
: >"$W/plain"
long=$(printf 'n%.0s' $(seq 300))
for spec in "$W/plain/o|$W/plain: exists and is not a directory" \
  "$W/$long/o|$W/$long: cannot create directory: File name too long" \
  "/proc/infsim-o|/proc/infsim-o: cannot create directory: No such file or directory"; do
  out=${spec%%|*} want=${spec#*|}
  "$INFSIM" run "$W/c.yaml" --trace "$W/t.csv" --out "$out" --quiet 2>"$W/err"
  rc=$?
  [ $rc -eq 2 ] || fail "--out ${out:0:40}...: exit $rc, want 2 ($(cat "$W/err"))"
  [ "$(cat "$W/err")" = "infsim run: $want" ] || fail "--out ${out:0:40}...: message '$(cat "$W/err")'"
done
# No permission (the root of sysfs refuses even root): exit 2 as well.
if [ -d /sys/kernel ]; then
  "$INFSIM" run "$W/c.yaml" --trace "$W/t.csv" --out /sys/infsim-o --quiet 2>"$W/err"
  rc=$?
  [ $rc -eq 2 ] || fail "--out /sys/infsim-o: exit $rc, want 2 ($(cat "$W/err"))"
  grep -q "^infsim run: /sys/infsim-o: cannot create directory: " "$W/err" || fail "--out /sys/infsim-o: message '$(cat "$W/err")'"
fi
[ "$(ls "$W" | grep -c nnn)" -eq 0 ] || fail "--out with a long name left something"

# Relative paths in a config file are relative to that file (a config, its
# trace and its DB move together); from --set, to the working directory.
mkdir -p "$W/rel/sub"
cp "$INFSIM_SRC/data/calibration.db" "$W/rel/sub/x.db"
printf 'arrival_time_s,prompt_tokens,output_tokens\n0,100,4\n0.5,200,4\n' >"$W/rel/sub/t.csv"
printf 'model: llama2-7b\ngpu: h200\ncluster:\n  instances: 1\nworkload:\n  trace: t.csv\ncalibration:\n  db: x.db\n' \
  >"$W/rel/sub/c.yaml"
(cd "$W/rel" && "$INFSIM" run sub/c.yaml --out o --quiet) || fail "relative trace and DB beside the config"
grep -q '"cost_model": "calibrated:h200"' "$W/rel/o/summary.json" || fail "the DB beside the config was not used"
grep -q '"completed": 2' "$W/rel/o/summary.json" || fail "the trace beside the config was not used"
(cd "$W/rel" && "$INFSIM" run sub/c.yaml --out o2 --quiet --set calibration.db=sub/x.db) ||
  fail "--set calibration.db relative to the working directory"
(cd "$W/rel" && "$INFSIM" run sub/c.yaml --out o3 --quiet --set calibration.db=x.db 2>"$W/rel/err")
[ $? = 2 ] && grep -qF -- "--set: calibration.db: cannot read 'x.db'" "$W/rel/err" ||
  fail "--set calibration.db=x.db: $(cat "$W/rel/err")"

echo "$((failures == 0 ? 1 : 0)) passed, $failures failed"
[ "$failures" -eq 0 ]
