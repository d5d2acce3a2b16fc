#!/usr/bin/env bash
# test_trace_cli.sh: `infsim trace gen` and `infsim trace stats` end to end.
# gen: byte-identical output for one seed, different for another, --config
# equal to the same keys given as options, fixed lengths exact, bad keys
# exit 2 naming the option, nothing written on failure. stats: every number
# against Python over the shipped data/traces/azure-code.csv (nearest-rank
# percentiles, 1 s and 60 s bins from the first arrival); the histogram's
# counts add up to the requests.
set -u
INFSIM=${INFSIM:?path of the infsim CLI}
SRC=${INFSIM_SRC:?source tree}
command -v python3 >/dev/null && command -v jq >/dev/null || { echo "python3 or jq missing: skipped"; exit 77; }
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

for sub in "" gen import stats; do
  "$INFSIM" trace $sub --help >"$W/help" || fail "trace $sub --help exit $?"
  [ -s "$W/help" ] || fail "trace $sub --help printed nothing"
done
for k in requests duration_s arrival rate_rps cv prompt.dist prompt.tokens prompt.min prompt.max prompt.median \
         prompt.sigma prompt.alpha prompt.values prompt.weights output.; do
  "$INFSIM" trace gen --help | grep -qF -- "$k" || fail "trace gen --help does not document $k"
done

G="--requests 3000 --arrival gamma --rate_rps 5 --cv 2 --prompt.dist zipf --prompt.max 4000 --output.dist uniform --output.min 5 --output.max 50"
"$INFSIM" trace gen $G --seed 11 -o "$W/a.csv" 2>/dev/null || fail "gen a"
"$INFSIM" trace gen $G --seed 11 -o "$W/b.csv" 2>/dev/null || fail "gen b"
"$INFSIM" trace gen $G --seed 12 -o "$W/c.csv" 2>/dev/null || fail "gen c"
cmp -s "$W/a.csv" "$W/b.csv" || fail "same seed, different bytes"
cmp -s "$W/a.csv" "$W/c.csv" && fail "different seeds, same bytes"
[ $(($(wc -l <"$W/a.csv") - 1)) -eq 3000 ] || fail "gen wrote $(($(wc -l <"$W/a.csv") - 1)) rows, want 3000"
awk -F, 'NR > 1 && ($2 < 1 || $2 > 4000 || $3 < 5 || $3 > 50) { exit 1 }' "$W/a.csv" || fail "lengths outside [min, max]"

# --config takes the workload: section (and seed) of a run config; --KEY overrides it.
cat >"$W/run.yaml" <<'YAML'
model: llama2-7b
seed: 11
workload:
  requests: 3000
  arrival: gamma
  rate_rps: 5
  cv: 2
  prompt: {dist: zipf, max: 4000}
  output:
    dist: uniform
    min: 5
    max: 60
YAML
"$INFSIM" trace gen --config "$W/run.yaml" --output.max 50 -o "$W/d.csv" 2>"$W/err" || fail "gen --config: $(cat "$W/err")"
cmp -s "$W/a.csv" "$W/d.csv" || fail "--config differs from the same keys as options"
# --name=VALUE is --name VALUE, for the options as for the workload keys; an
# empty value is a bad one (exit 2, one line, nothing written).
"$INFSIM" trace gen --config="$W/run.yaml" --output.max=50 --seed=11 --out="$W/e.csv" 2>"$W/err" ||
  fail "gen --name=VALUE: $(cat "$W/err")"
cmp -s "$W/a.csv" "$W/e.csv" || fail "--name=VALUE differs from --name VALUE"
"$INFSIM" trace gen --requests 5 --seed= -o "$W/e0.csv" 2>"$W/err"; rc=$?
[ $rc -eq 2 ] && [ "$(cat "$W/err")" = "infsim trace gen: --seed needs an integer >= 0 (try infsim trace gen --help)" ] ||
  fail "gen --seed=: exit $rc, message '$(cat "$W/err")'"
[ ! -e "$W/e0.csv" ] || fail "gen --seed=: wrote output"

"$INFSIM" trace gen --requests 100 --prompt.dist fixed --prompt.tokens 123 --output.dist fixed --output.tokens 7 -o "$W/f.csv" 2>/dev/null || fail "gen fixed"
[ "$(awk -F, 'NR > 1 && ($2 != 123 || $3 != 7)' "$W/f.csv" | wc -l)" -eq 0 ] || fail "fixed lengths not exact"

expect_gen_bad() { # expect_gen_bad WANT ARGS...
  local want=$1; shift
  rm -f "$W/bad.csv"
  "$INFSIM" trace gen "$@" -o "$W/bad.csv" 2>"$W/err"; local rc=$?
  [ $rc -eq 2 ] || fail "gen $*: exit $rc, want 2"
  grep -qF -- "$want" "$W/err" || fail "gen $*: message '$(cat "$W/err")' lacks '$want'"
  [ ! -e "$W/bad.csv" ] || fail "gen $*: wrote output"
}
expect_gen_bad "--prompt.medain: unknown key 'workload.prompt.medain'" --prompt.medain 5
expect_gen_bad "--rate_rps: workload.rate_rps" --rate_rps fast
expect_gen_bad "--arrival: workload.arrival" --arrival weibull
expect_gen_bad "workload.output.values: required" --output.dist empirical
expect_gen_bad "--seed" --seed -3
# A run config's workload keys are checked (a typo there generated 1000
# default requests), and one that names a trace file has nothing to generate.
printf 'model: tiny\nworkload:\n  reqests: 5\n' >"$W/typo.yaml"
expect_gen_bad "typo.yaml:3: unknown key 'workload.reqests'" --config "$W/typo.yaml"
printf 'model: tiny\nworkload:\n  requests: 5\n  trace: t.csv\n' >"$W/file.yaml"
expect_gen_bad "file.yaml:4: workload.trace: the config names a trace file" --config "$W/file.yaml"
printf 'model: tiny\nscheduler:\n  max_batch_size: 4\nworkload:\n  requests: 5\n' >"$W/other.yaml"
"$INFSIM" trace gen --config "$W/other.yaml" -o "$W/o.csv" 2>/dev/null || fail "gen --config with other sections refused"
[ $(($(wc -l <"$W/o.csv") - 1)) -eq 5 ] || fail "gen --config other.yaml: want 5 rows"
"$INFSIM" trace gen --requests 5 2>/dev/null; [ $? -eq 2 ] || fail "gen without -o accepted"

# stats against Python on the shipped Azure trace.
T=$SRC/data/traces/azure-code.csv
"$INFSIM" trace stats --json "$T" >"$W/s.json" || fail "stats --json"
python3 - "$T" "$W/s.json" <<'PY' || fail "stats differ from Python"
import csv, json, math, sys
from decimal import Decimal
rows = list(csv.DictReader(open(sys.argv[1]))); s = json.load(open(sys.argv[2]))
ns = [int(Decimal(r['arrival_time_s']) * 10**9) for r in rows]
n = len(rows)
assert s['requests'] == n
dur = (ns[-1] - ns[0]) / 1e9
assert abs(s['duration_s'] - dur) < 1e-9, (s['duration_s'], dur)
assert abs(s['mean_rps'] - n / dur) < 1e-6 and abs(s['mean_per_min'] - 60 * n / dur) < 1e-4
def peak(bin_ns):
    c = {}
    for t in ns: c[(t - ns[0]) // bin_ns] = c.get((t - ns[0]) // bin_ns, 0) + 1
    return max(c.values())
assert s['peak_per_s'] == peak(10**9), (s['peak_per_s'], peak(10**9))
assert s['peak_per_min'] == peak(60 * 10**9)
for col in ('prompt_tokens', 'output_tokens'):
    v = sorted(int(r[col]) for r in rows); st = s[col]
    rank = lambda p: v[max(1, math.ceil(p * n / 100)) - 1]
    assert (st['min'], st['p50'], st['p90'], st['p99'], st['max']) == (v[0], rank(50), rank(90), rank(99), v[-1]), (col, st)
    assert st['sum'] == sum(v) and abs(st['mean'] - sum(v) / n) < 1e-6
PY
"$INFSIM" trace stats "$T" >"$W/s.txt" || fail "stats text"
for h in prompt_tokens output_tokens; do
  sum=$(awk -v h="$h" '$1 == h && $2 == "histogram" { on = 1; next } on && /^  \[/ { s += $3; next } on { exit } END { print s + 0 }' "$W/s.txt")
  [ "$sum" -eq "$(jq .requests "$W/s.json")" ] || fail "$h histogram counts sum to $sum"
done
printf 'arrival_time_s,prompt_tokens,output_tokens\n0.5,100,10\n0.7,x,10\n' >"$W/bad.csv"
"$INFSIM" trace stats "$W/bad.csv" 2>"$W/err"; [ $? -eq 2 ] || fail "stats on a malformed trace: exit not 2"
grep -qF "bad.csv:3: prompt_tokens: not an integer: 'x'" "$W/err" || fail "stats message: $(cat "$W/err")"
# Round trip through the simulator: `run` on the imported trace sees every request
# with its exact arrival and lengths; `trace gen --config` then `run --trace` equals
# `run` generating from the same workload keys and seed.
cat >"$W/sim.yaml" <<'YAML'
model: llama2-7b
gpu: a100-80gb
cluster: {instances: 4, gpus_per_instance: 1}
policy: {name: vllm-multi}
seed: 5
workload:
  requests: 500
  rate_rps: 8
  prompt: {dist: uniform, min: 10, max: 3000}
  output: {dist: lognormal, median: 40, sigma: 0.8}
YAML
"$INFSIM" run "$W/sim.yaml" --trace "$T" --out "$W/r1" >/dev/null 2>"$W/err" || fail "run on $T: $(tail -1 "$W/err")"
python3 - "$T" "$W/r1/requests.csv" <<'PY' || fail "run did not see the trace's requests"
import csv, sys
from decimal import Decimal
t = [(int(Decimal(r['arrival_time_s']) * 10**9), int(r['prompt_tokens']), int(r['output_tokens'])) for r in csv.DictReader(open(sys.argv[1]))]
q = sorted((int(Decimal(r['arrival_s']) * 10**9), int(r['prompt_tokens']), int(r['output_tokens'])) for r in csv.DictReader(open(sys.argv[2])))
assert sorted(t) == q, (len(t), len(q))
PY
"$INFSIM" trace gen --config "$W/sim.yaml" -o "$W/g.csv" 2>/dev/null || fail "gen --config sim.yaml"
"$INFSIM" run "$W/sim.yaml" --trace "$W/g.csv" --out "$W/r2" >/dev/null 2>&1 || fail "run --trace g.csv"
"$INFSIM" run "$W/sim.yaml" --out "$W/r3" >/dev/null 2>&1 || fail "run with the generator"
cmp -s "$W/r2/requests.csv" "$W/r3/requests.csv" || fail "trace gen + run --trace differs from run generating the same workload"
# Where outputs go (atomic_file.h): through a symlink to its target, onto a
# device directly (it stays a device), never over a directory; and debris
# of a dead run in the output's directory goes, a live one's stays.
mkdir -p "$W/o"
"$INFSIM" trace gen --requests 3 -o "$W/o/real.csv" 2>/dev/null || fail "gen real.csv"
ln -s real.csv "$W/o/link.csv"
"$INFSIM" trace gen --requests 5 -o "$W/o/link.csv" 2>/dev/null || fail "gen through a symlink"
[ -L "$W/o/link.csv" ] || fail "the symlink was replaced by a file"
[ "$(wc -l <"$W/o/real.csv")" -eq 6 ] || fail "the symlink's target does not hold the new trace"
"$INFSIM" trace gen --requests 5 -o /dev/null 2>/dev/null || fail "gen -o /dev/null"
[ -c /dev/null ] || fail "/dev/null is no longer a character device"
host=$(hostname | sed 's/[^A-Za-z0-9-]/-/g')
sh -c 'exit 0' & dead=$!; wait $dead
printf x >"$W/o/real.csv.tmp.$host.$dead.AbCdEf"
printf x >"$W/o/real.csv.tmp.$host.$$.AbCdEf"
"$INFSIM" trace gen --requests 2 -o "$W/o/new.csv" 2>/dev/null || fail "gen new.csv"
[ ! -e "$W/o/real.csv.tmp.$host.$dead.AbCdEf" ] || fail "debris of a dead process was not removed"
[ -e "$W/o/real.csv.tmp.$host.$$.AbCdEf" ] || fail "a live process's temporary file was removed"
mkdir "$W/o/dir.csv"
"$INFSIM" trace gen --requests 2 -o "$W/o/dir.csv" 2>"$W/err"; rc=$?
[ $rc -eq 2 ] || fail "gen -o DIR: exit $rc, want 2"
# Below a file, or with a name too long: exit 2 naming the path and why.
: >"$W/plain"
"$INFSIM" trace gen --requests 2 -o "$W/plain/t.csv" 2>"$W/err"; rc=$?
[ $rc -eq 2 ] || fail "gen -o FILE/t.csv: exit $rc, want 2"
grep -qF "$W/plain/t.csv: cannot write: Not a directory" "$W/err" || fail "gen -o FILE/t.csv: message '$(cat "$W/err")'"
"$INFSIM" trace gen --requests 2 -o "$W/$(printf 'n%.0s' $(seq 300)).csv" 2>"$W/err"; rc=$?
[ $rc -eq 2 ] || fail "gen -o with a 300-character name: exit $rc, want 2"
grep -q "File name too long" "$W/err" || fail "gen -o with a 300-character name: message '$(cat "$W/err")'"

if [ -d /sys/kernel ]; then # no permission: the root of sysfs refuses even root
  "$INFSIM" trace gen --requests 2 -o /sys/infsim-t.csv 2>"$W/err"; rc=$?
  [ $rc -eq 2 ] || fail "gen -o /sys/infsim-t.csv: exit $rc, want 2 ($(cat "$W/err"))"
  grep -q "^infsim trace gen: /sys/infsim-t.csv: cannot create: " "$W/err" || fail "gen -o /sys/...: message '$(cat "$W/err")'"
fi

echo "ok: trace gen and stats"
