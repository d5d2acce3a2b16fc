#!/usr/bin/env bash
# `infsim cluster` with one instance, started without mpirun: one process
# runs the scheduler and the instance's model (the path a machine without
# MPI takes, and the only one a build without MPI has). What must hold
# whatever the timings: every request completes with arrival <= first
# token <= finish, iterations never overlap, the work run equals the work
# the trace implies (prefill tokens = the prompts, decode steps = outputs -
# 1), and with --verify every batch agrees bit for bit with its requests
# run one by one. Two instances without mpirun are refused (exit 2).
set -u
INFSIM=${INFSIM:?INFSIM must name the built CLI}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

cat >"$W/c.yaml" <<'YAML'
model: tiny
gpu: a100-40gb
cluster:
  instances: 1
scheduler:
  max_batch_size: 4
  max_batched_tokens: 256
metrics:
  iterations: true
  sample_interval_s: 0.05
YAML
printf 'arrival_time_s,prompt_tokens,output_tokens\n0,24,6\n0.01,40,5\n0.02,16,9\n0.04,33,4\n0.05,20,7\n0.07,48,3\n' >"$W/t.csv"

timeout 300 "$INFSIM" cluster "$W/c.yaml" --trace "$W/t.csv" --out "$W/cl" --executor cpu --timeout 60 \
  --verify >"$W/log" 2>&1
rc=$?
[ "$rc" -eq 0 ] || { cat "$W/log"; fail "one-instance cluster run exited $rc"; }
python3 - "$W/cl" "$W/t.csv" <<'PY' || fail "one-instance outputs break an invariant"
import csv, json, sys
d, trace = sys.argv[1], sys.argv[2]
s = json.load(open(f'{d}/summary.json'))
reqs = list(csv.DictReader(open(f'{d}/requests.csv')))
its = list(csv.DictReader(open(f'{d}/iterations.csv')))
tr = list(csv.DictReader(open(trace)))
ok = True
def bad(msg):
    global ok
    ok = False
    print(msg)
if s['completed'] != len(tr) or s['rejected'] != 0: bad(f"summary counts {s['completed']}/{len(tr)}")
if s['cost_model'] != 'measured:cpu': bad(f"cost_model {s['cost_model']}")
want = [sum(int(t['prompt_tokens']) for t in tr), sum(int(t['output_tokens']) - 1 for t in tr)]
for r in reqs:
    a, f1, f = float(r['arrival_s']), float(r['first_token_s']), float(r['finish_s'])
    if r['status'] != 'completed' or not (a <= f1 <= f): bad(f"request {r['id']}: {r['status']} {a} {f1} {f}")
done, last_end = [0, 0], 0.0
for it in its:
    st, en = float(it['start_s']), float(it['end_s'])
    if int(it['instance']) != 0 or int(it['steps']) != 1: bad(f'iteration {it}')
    if st < last_end - 1e-9 or en < st: bad(f'overlapping or backwards iteration {it}')
    last_end = en
    done[0] += int(it['prefill_tokens'])
    done[1] += int(it['decode_requests'])
if done != want: bad(f'work run {done} != work implied by the trace {want}')
sys.exit(0 if ok else 1)
PY

"$INFSIM" run "$W/c.yaml" --trace "$W/t.csv" --out "$W/sim" --quiet || fail "sim run"
"$INFSIM" compare "$W/sim" "$W/cl" --no-plot >"$W/cmp" 2>&1 || { cat "$W/cmp"; fail "compare failed"; }
grep -qF "throughput (tok/s)" "$W/cmp" || fail "compare lacks its throughput row"

# The cuda executor without a GPU (CI machines): skipped, exit 77, nothing written.
if ! command -v nvidia-smi >/dev/null; then
  timeout 60 "$INFSIM" cluster "$W/c.yaml" --trace "$W/t.csv" --out "$W/gpu" --executor cuda >"$W/glog" 2>&1
  rc=$?
  [ "$rc" -eq 77 ] || { cat "$W/glog"; fail "--executor cuda without a GPU should exit 77 (got $rc)"; }
  [ ! -e "$W/gpu" ] || fail "--executor cuda without a GPU wrote outputs"
fi

# Two instances need two ranks.
timeout 60 "$INFSIM" cluster "$W/c.yaml" --trace "$W/t.csv" --out "$W/two" --executor cpu \
  --set cluster.instances=2 >"$W/two.log" 2>&1
rc=$?
[ "$rc" -eq 2 ] || { cat "$W/two.log"; fail "two instances in one process should exit 2 (got $rc)"; }
grep -q "2 instances\|for 2 instances" "$W/two.log" || { cat "$W/two.log"; fail "the refusal does not say why"; }
[ ! -e "$W/two" ] || fail "the refused run wrote outputs"

[ "$failures" -eq 0 ] && echo ok
exit "$failures"
