#!/usr/bin/env bash
# test_capacity_cli.sh: `infsim capacity` against a brute-force sweep.
#
# A fixed-size Poisson workload on LLaMA2-7B / A100-80GB. Brute force: a
# sweep over a fine grid (rate scale 0.25 to 8 by 0.25; 1 to 8 instances,
# two seeds), judged against the SLO here, independently of the search.
# Properties: the highest rate found lies in the grid cell where the
# brute force turns from meeting to missing, with the passing and failing
# scales within the stated tolerance of each other; every step's verdict
# matches its own stored run; the fewest instances equals the brute
# force's, and the search ran only jobs whose keys the brute-force sweep
# also has (same config, trace, seed: same key); a repeated search with
# the same DB runs nothing; bad options exit 2.
set -u
: "${INFSIM:?INFSIM must name the infsim binary}"
command -v python3 >/dev/null || { echo "python3 missing: skipped"; exit 77; }
work=$(mktemp -d "${TMPDIR:-/tmp}/infsim_test_capacity.XXXXXX")
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

cat >"$work/c.yaml" <<'YAML'
model: llama2-7b
gpu: a100-80gb
cluster:
  instances: 2
policy:
  name: vllm-multi
workload:
  requests: 600
  rate_rps: 4
  prompt:
    dist: fixed
    tokens: 1000
  output:
    dist: fixed
    tokens: 100
seed: 3
YAML

# ---- rate ----
slo=ttft_p99=1s,tpot_p99=55ms
"$INFSIM" sweep "$work/c.yaml" --out "$work/bf.db" --grid rate_scale=0.25:8:0.25 --progress none >/dev/null 2>&1 \
  || fail "brute-force rate sweep failed"
"$INFSIM" capacity "$work/c.yaml" --slo "$slo" --tolerance 0.01 --out "$work/cap.db" --json >"$work/rate.json" \
  2>"$work/err" || fail "capacity --target rate exited $?: $(cat "$work/err")"
python3 - "$work" <<'PY' || fail "rate capacity disagrees with the brute force"
import json, sqlite3, sys
w = sys.argv[1]
def meets(p99_ttft, p99_tpot):
    return p99_ttft <= 1.0 and p99_tpot <= 0.055
grid = sqlite3.connect(f"{w}/bf.db").execute(
    "SELECT rate_scale, ttft_s_p99, tpot_s_p99 FROM runs ORDER BY rate_scale").fetchall()
assert len(grid) == 32
b = 0
for s, t, p in grid:
    if not meets(t, p):
        break
    b = s
assert 0 < b < 8, b
r = json.load(open(f"{w}/rate.json"))
v, f = r["value"], r["failed_at"]
print(f"brute force: {b} meets, {b + 0.25} misses; search: {v} meets, {f} misses")
assert r["found"] and not r["capped"]
assert b <= v < b + 0.25 and b < f <= b + 0.25, (b, v, f)
assert f - v <= 0.01 * v
# Each step's verdict against its stored run.
db = sqlite3.connect(f"{w}/cap.db")
for st in r["steps"]:
    t, p = db.execute("SELECT ttft_s_p99, tpot_s_p99 FROM runs WHERE abs(rate_scale - ?) < 1e-12",
                      (st["value"],)).fetchone()
    assert st["met"] == meets(t, p), st
PY
# rate_rps is the scale times the trace's mean rate (count / arrival span),
# here from the same generated trace written out by `infsim trace gen`.
"$INFSIM" trace gen --config "$work/c.yaml" -o "$work/gen.csv" >/dev/null 2>&1 || fail "trace gen --config"
base=$(awk -F, 'NR == 2 { first = $1 } NR > 1 { last = $1; n++ } END { printf "%.12g", n / (last - first) }' "$work/gen.csv")
python3 -c "
import json, sys
r = json.load(open('$work/rate.json'))
assert abs(r['base_rate_rps'] - $base) <= 1e-9 * $base, (r['base_rate_rps'], $base)
assert abs(r['rate_rps'] - r['value'] * $base) <= 1e-9 * r['rate_rps']" || fail "rate_rps is not the scale times the trace's rate"

# The same search again: every run comes from the DB.
"$INFSIM" capacity "$work/c.yaml" --slo "$slo" --tolerance 0.01 --out "$work/cap.db" --json >"$work/rate2.json" 2>/dev/null \
  || fail "repeated capacity exited $?"
python3 -c "
import json, sys
a, b = json.load(open('$work/rate.json')), json.load(open('$work/rate2.json'))
assert b['runs'] == 0 and b['runs_skipped'] == a['runs'], (a['runs'], b['runs'], b['runs_skipped'])
assert (a['value'], a['failed_at']) == (b['value'], b['failed_at'])" || fail "repeated search reran jobs or changed its answer"

# ---- instances ----
slo=ttft_p99=250ms,tpot_p99=30ms
"$INFSIM" sweep "$work/c.yaml" --out "$work/bfi.db" --grid cluster.instances=1:8:1 --seeds 2 \
  --set workload.rate_rps=24 --progress none >/dev/null 2>&1 || fail "brute-force instance sweep failed"
"$INFSIM" capacity "$work/c.yaml" --slo "$slo" --target instances --seeds 2 --set workload.rate_rps=24 \
  --out "$work/capi.db" --json >"$work/inst.json" 2>"$work/err" || fail "capacity --target instances exited $?: $(cat "$work/err")"
python3 - "$work" <<'PY' || fail "instance capacity disagrees with the brute force"
import json, sqlite3, sys
w = sys.argv[1]
bf = sqlite3.connect(f"{w}/bfi.db")
ok = {}
for n, t, p in bf.execute('SELECT "cluster.instances", ttft_s_p99, tpot_s_p99 FROM runs'):
    ok[n] = ok.get(n, True) and t <= 0.25 and p <= 0.030
fewest = min(n for n in range(1, 9) if all(ok[m] for m in range(n, 9)))
r = json.load(open(f"{w}/inst.json"))
print(f"brute force: {fewest} instances; search: {r['value']} (misses at {r['failed_at']})")
assert 1 < fewest < 8, fewest
assert r["value"] == fewest and r["failed_at"] == fewest - 1, r
keys_bf = {k for (k,) in bf.execute("SELECT key FROM runs")}
keys = {k for (k,) in sqlite3.connect(f"{w}/capi.db").execute("SELECT key FROM runs")}
assert keys and keys <= keys_bf, "the search ran jobs the brute force does not know"
PY

# Three values per round: the same fewest instances (a monotone SLO here).
"$INFSIM" capacity "$work/c.yaml" --slo "$slo" --target instances --seeds 2 --set workload.rate_rps=24 --probes 3 \
  --jobs 3 --json >"$work/inst3.json" 2>/dev/null || fail "capacity --probes 3 exited $?"
python3 -c "
import json
a, b = json.load(open('$work/inst.json')), json.load(open('$work/inst3.json'))
assert (a['value'], a['failed_at']) == (b['value'], b['failed_at']), (a['value'], b['value'])" \
  || fail "--probes 3 changed the fewest instances"

# ---- bad input ----
expect2() {
  local msg=$1; shift
  "$INFSIM" capacity "$@" >/dev/null 2>"$work/err"; local rc=$?
  [ $rc = 2 ] || fail "capacity $*: exit $rc, expected 2"
  grep -qF -- "$msg" "$work/err" || fail "capacity $*: message '$(cat "$work/err")' lacks '$msg'"
}
expect2 "--slo ttft_p99=2: ttft_p99: expected a positive time in s or ms" "$work/c.yaml" --slo ttft_p99=2
expect2 "--target: expected rate or instances, got 'gpus'" "$work/c.yaml" --slo ttft_p99=2s --target gpus
expect2 "--slo is required" "$work/c.yaml"
expect2 "--probes: bad value '9'" "$work/c.yaml" --slo ttft_p99=2s --probes 9
expect2 "expected whole instance counts" "$work/c.yaml" --slo ttft_p99=2s --target instances --start 1.5
expect2 "a bound expected after the last ','" "$work/c.yaml" --slo ttft_p99=2s,
expect2 "got '0x10s'" "$work/c.yaml" --slo ttft_p99=0x10s
expect2 "--max: at most 1e+06" "$work/c.yaml" --slo ttft_p99=2s --max 1e300
expect2 "--target instances searches cluster.instances itself" "$work/c.yaml" --slo ttft_p99=2s --target instances \
  --set cluster.instances=3
# A bad key found by the search's first sweep (which frees what it holds:
# under AddressSanitizer a leak there turns exit 2 into 1).
expect2 "scheduler.no_such_key" "$work/c.yaml" --slo ttft_p99=2s --set scheduler.no_such_key=1
# A trace the search would stretch past what a trace may span: halving the
# rate of a 1e8 s trace reaches 1.6e9 s at 1/16 (an SLO nothing meets).
printf 'arrival_time_s,prompt_tokens,output_tokens\n0,10,5\n100000000,10,5\n' > "$work/long.csv"
expect2 "past the 1000000000 s a trace may span" "$work/c.yaml" --trace "$work/long.csv" --slo e2e_p99=1ms
# Keys that clash across the config refuse at load, naming the --set, and
# leave no results DB (they used to fail only once a run executed).
rm -f "$work/bad.db"
expect2 "--set: cluster.gpus_per_instance: tensor parallelism 4 exceeds the 2 attention heads of tiny" "$work/c.yaml" \
  --slo ttft_p99=2s --set model=tiny --set cluster.gpus_per_instance=4 --out "$work/bad.db"
[ -e "$work/bad.db" ] && fail "tensor parallelism above the heads left $work/bad.db behind"

# --out naming a directory: bad input (exit 2), as for sweep.
mkdir -p "$work/adir"
"$INFSIM" capacity "$work/c.yaml" --slo ttft_p99=2s --out "$work/adir" --progress none >/dev/null 2>"$work/err"
rc=$?
[ $rc -eq 2 ] || fail "capacity --out DIR: exit $rc, want 2 ($(cat "$work/err"))"
grep -qF "$work/adir: is a directory, not a file" "$work/err" || fail "capacity --out DIR: message '$(cat "$work/err")'"

[ $failures = 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "ok"
