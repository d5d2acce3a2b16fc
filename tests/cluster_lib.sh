# cluster_lib.sh: sourced by the shell tests of `infsim cluster` after they
# set INFSIM. Sourcing it lets Open MPI run as root, keeps LeakSanitizer off
# (MPI's own allocations are not ours), and makes W (a scratch directory,
# removed at exit), `failures` and fail(). need_mpirun skips (77) a test
# that needs mpirun where there is none.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
need_mpirun() { command -v mpirun >/dev/null || { echo "mpirun not found: skipped"; exit 77; }; }

# check_cluster_outputs DIR TRACE INSTANCES: the invariants of a cluster
# run's outputs that hold whatever the timings: every request of TRACE
# arrived at its trace time and completed with arrival <= first token <=
# finish; summary counts and cost_model "measured:cpu"; each instance ran
# one batch at a time (iterations never overlap), one step each; the work
# the ranks ran equals the work the trace implies per instance (prefill
# tokens = the prompts, decode steps = outputs - 1: nothing lost or run
# twice between the scheduler and the ranks; a run with preemptions, which
# recompute, runs more prompt tokens and no more decode steps, and as many
# tokens as the trace implies plus what it recomputed); with INSTANCES 2,
# both instances worked. Prints what breaks; returns 1 then.
check_cluster_outputs() {
  python3 - "$1" "$2" "$3" <<'PY'
import csv, json, sys
d, trace, instances = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = json.load(open(f'{d}/summary.json'))
reqs = list(csv.DictReader(open(f'{d}/requests.csv')))
its = list(csv.DictReader(open(f'{d}/iterations.csv')))
tr = list(csv.DictReader(open(trace)))
ok = True
def bad(msg):
    global ok
    ok = False
    print(msg)
if s['completed'] != len(tr) or s['arrived'] != len(tr) or s['rejected'] != 0:
    bad(f"summary counts {s['completed']}/{s['arrived']} of {len(tr)}")
if s['cost_model'] != 'measured:cpu': bad(f"cost_model {s['cost_model']}")
for k in ('ttft_s', 'tpot_s', 'e2e_s'):
    if s[k]['count'] < 1 or not (0 < s[k]['p50'] <= s[k]['p99']): bad(f'{k} {s[k]}')
per = {i: [0, 0] for i in range(instances)}
for r, t in zip(reqs, tr):
    a, f1, f = float(r['arrival_s']), float(r['first_token_s']), float(r['finish_s'])
    if r['status'] != 'completed': bad(f"request {r['id']} {r['status']}")
    if abs(a - float(t['arrival_time_s'])) > 1e-9: bad(f"request {r['id']} arrival {a}")
    if not (a <= f1 <= f): bad(f"request {r['id']} times {a} {f1} {f}")
    inst = int(r['instance'])
    per[inst][0] += int(t['prompt_tokens'])
    per[inst][1] += int(t['output_tokens']) - 1
if instances > 1 and not all(per[i][0] for i in per): bad(f'an instance idle: {per}')
done = {i: [0, 0] for i in range(instances)}
last_end = {i: 0.0 for i in range(instances)}
for it in its:
    i = int(it['instance'])
    st, en = float(it['start_s']), float(it['end_s'])
    if int(it['steps']) != 1: bad(f'a real executor runs one step: {it}')
    if st < last_end[i] - 1e-9 or en < st: bad(f'instance {i}: overlapping or backwards iteration {it}')
    last_end[i] = en
    done[i][0] += int(it['prefill_tokens'])
    done[i][1] += int(it['decode_requests'])
if s['preemptions'] == 0 and done != per: bad(f'work run {done} != work implied by the trace {per}')
for i in per:
    if s['preemptions'] > 0 and not (done[i][0] >= per[i][0] and done[i][1] <= per[i][1]):
        bad(f'instance {i}: work run {done[i]} against {per[i]} implied, with preemptions')
last_finish = max(float(r['finish_s']) for r in reqs)
if abs(s['sim_time_s'] - last_finish) > 1e-6: bad(f"sim_time_s {s['sim_time_s']} vs last finish {last_finish}")
sys.exit(0 if ok else 1)
PY
}

# expect_no_gpu RUNNER...: on a machine without nvidia-smi (CI), `RUNNER
# infsim cluster ... --executor cuda` exits 77 and writes nothing. The
# caller passes the launcher (mpirun ... or nothing) and the run's
# arguments up to --out, which this appends.
expect_no_gpu() {
  command -v nvidia-smi >/dev/null && return 0
  timeout 60 "$@" --out "$W/gpu" --executor cuda >"$W/glog" 2>&1
  local rc=$?
  [ "$rc" -eq 77 ] || { cat "$W/glog"; fail "--executor cuda without a GPU should exit 77 (got $rc)"; }
  [ ! -e "$W/gpu" ] || fail "--executor cuda without a GPU wrote outputs"
}
