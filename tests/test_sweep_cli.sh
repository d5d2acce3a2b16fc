#!/usr/bin/env bash
# test_sweep_cli.sh: `infsim sweep` against single runs of `infsim run`.
#
# Properties: every row of the results DB holds the summary that `infsim
# run` gives for the same settings and seed (all fields but wall time),
# flattened columns equal the JSON fields; seeds are the config's seed
# and the next ones; rate_scale=2 equals a run on the trace with every
# arrival time halved (made here independently with awk); a rerun runs
# nothing and leaves the rows as they were; more seeds run only the new
# jobs; each job reads its trace once; bad input exits 2 naming the fault, and a bad config key, value or
# combination of keys at any grid point leaves no DB behind; under mpirun
# (when built with MPI) the ranks share the jobs and the DB holds the same
# summaries.
set -u
: "${INFSIM:?INFSIM must name the infsim binary}"
command -v python3 >/dev/null || { echo "python3 missing: skipped"; exit 77; }
work=$(mktemp -d "${TMPDIR:-/tmp}/infsim_test_sweep.XXXXXX")
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# A generated workload, so the seed changes the requests.
cat >"$work/c.yaml" <<'YAML'
model: llama2-7b
gpu: a100-80gb
cluster:
  instances: 2
policy:
  name: vllm-multi
workload:
  requests: 120
  rate_rps: 6
seed: 5
YAML
grid=(--grid scheduler.max_batch_size=8,64 --grid scheduler.block_tokens=16,32)
"$INFSIM" sweep "$work/c.yaml" --out "$work/r.db" "${grid[@]}" --seeds 2 --jobs 2 --progress none >"$work/out1" 2>"$work/err1" \
  || fail "sweep exited $?: $(cat "$work/err1")"
grep -q "sweep: 8 runs (8 run now, 0 already in" "$work/out1" || fail "first sweep: $(cat "$work/out1")"

# Each row against `infsim run` with the same settings and seed.
python3 - "$INFSIM" "$work" <<'PY' || fail "rows differ from single runs"
import json, sqlite3, subprocess, sys
infsim, work = sys.argv[1], sys.argv[2]
def same(a, b):
    """Equal, numbers to 1e-10 relative: summary.json prints 12 significant digits, the DB keeps every bit."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(a - b) <= 1e-10 * max(abs(a), abs(b))
    return a == b
db = sqlite3.connect(f"{work}/r.db")
rows = db.execute('SELECT seed, "scheduler.max_batch_size", "scheduler.block_tokens", summary, ttft_s_p99, '
                  'completed, throughput_tok_s, cost_model, settings FROM runs ORDER BY point, seed').fetchall()
assert len(rows) == 8, len(rows)
seeds = sorted({r[0] for r in rows})
assert seeds == [5, 6], seeds  # the config's seed, then the next
bad = 0
for i, (seed, mbs, bt, summary, p99, completed, thr, cm, settings) in enumerate(rows):
    assert json.loads(settings) == {"scheduler.max_batch_size": str(mbs), "scheduler.block_tokens": str(bt)}
    out = f"{work}/single{i}"
    subprocess.run([infsim, "run", f"{work}/c.yaml", "--out", out, "--seed", str(seed), "--quiet", "--summary-only",
                    "--set", f"scheduler.max_batch_size={mbs}", "--set", f"scheduler.block_tokens={bt}"], check=True)
    want = json.load(open(f"{out}/summary.json"))
    got = json.loads(summary)
    for d in (want, got):
        d.pop("wall_s", None)
    if not same(want, got):
        bad += 1
        print("row", i, "differs:", {k: (want.get(k), got.get(k)) for k in want if not same(want.get(k), got.get(k))})
    if not same([p99, completed, thr, cm], [want["ttft_s"]["p99"], want["completed"], want["throughput_tok_s"], want["cost_model"]]):
        bad += 1
        print("row", i, "columns differ from its summary")
# Different seeds give different requests here: the seed reached the run.
by_seed = {r[0]: r[3] for r in rows if r[1] == 8 and r[2] == 16}
assert json.loads(by_seed[5])["e2e_s"] != json.loads(by_seed[6])["e2e_s"]
sys.exit(1 if bad else 0)
PY

# Resume: nothing runs, rows untouched; two more seeds run 8 new jobs only.
before=$(sqlite3 "$work/r.db" "SELECT key, finished_at, pid FROM runs ORDER BY key")
"$INFSIM" sweep "$work/c.yaml" --out "$work/r.db" "${grid[@]}" --seeds 2 --progress none >"$work/out2" 2>&1 || fail "rerun exited $?"
grep -q "sweep: 8 runs (0 run now, 8 already in" "$work/out2" || fail "rerun ran something: $(cat "$work/out2")"
[ "$before" = "$(sqlite3 "$work/r.db" "SELECT key, finished_at, pid FROM runs ORDER BY key")" ] || fail "rerun changed rows"
"$INFSIM" sweep "$work/c.yaml" --out "$work/r.db" "${grid[@]}" --seeds 4 --progress none >"$work/out3" 2>&1 || fail "4 seeds exited $?"
grep -q "sweep: 16 runs (8 run now, 8 already in" "$work/out3" || fail "more seeds: $(cat "$work/out3")"

# rate_scale=2 is the trace with every arrival time halved.
printf 'arrival_time_s,prompt_tokens,output_tokens\n' >"$work/t.csv"
awk 'BEGIN { srand(3); t = 0; for (i = 0; i < 200; i++) { t += -log(rand()) / 3; printf "%.6f,%d,%d\n", t, 200 + int(rand() * 3000), 20 + int(rand() * 300) } }' >>"$work/t.csv"
awk -F, 'NR == 1 { print; next } { printf "%.7f,%s,%s\n", $1 / 2, $2, $3 }' "$work/t.csv" >"$work/t2.csv"
"$INFSIM" sweep "$work/c.yaml" --trace "$work/t.csv" --out "$work/rate.db" --grid rate_scale=1,2 --progress none >/dev/null 2>&1 \
  || fail "rate sweep exited $?"
"$INFSIM" run "$work/c.yaml" --trace "$work/t2.csv" --out "$work/half" --quiet --summary-only || fail "run on halved trace"
python3 - "$work" <<'PY' || fail "rate_scale=2 differs from the halved trace"
import json, sqlite3, sys
w = sys.argv[1]
got = json.loads(sqlite3.connect(f"{w}/rate.db").execute("SELECT summary FROM runs WHERE rate_scale = 2").fetchone()[0])
want = json.load(open(f"{w}/half/summary.json"))
def close(a, b):  # summary.json prints 12 significant digits
    if isinstance(a, dict):
        return all(close(a[k], b[k]) for k in a)
    return abs(a - b) <= 1e-10 * max(abs(a), abs(b))
for k in ("completed", "throughput_tok_s", "ttft_s", "tpot_s", "e2e_s", "span_s"):
    if not close(got[k], want[k]):
        print(k, got[k], want[k]); sys.exit(1)
PY

# Each job reads its trace once: the first pass's check of a grid point is
# the load that point runs with (3 points x 2 seeds: 6 reads; loading the
# points again to run them would read it 9 times). Counted with strace
# where it can trace.
if command -v strace >/dev/null && strace -f -qq -o /dev/null true 2>/dev/null; then
  # LeakSanitizer cannot run under a tracer (it stops the process with ptrace itself).
  ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
    strace -f -qq -e trace=open,openat -o "$work/opens" "$INFSIM" sweep "$work/c.yaml" --trace "$work/t.csv" \
      --out "$work/once.db" --grid scheduler.max_batch_size=8,16,32 --seeds 2 --progress none >"$work/traced" 2>&1
  rc=$?
  [ "$rc" = 0 ] || { cat "$work/traced"; fail "traced sweep exited $rc"; }
  reads=$(grep -cF "\"$work/t.csv\"" "$work/opens")
  [ "$reads" = 6 ] || fail "6 jobs read the trace $reads times, expected 6"
else
  echo "strace cannot trace here: trace reads not counted"
fi

# Bad input.
expect2() { # expect2 MESSAGE ARGS...
  local msg=$1; shift
  "$INFSIM" sweep "$@" >/dev/null 2>"$work/err"; local rc=$?
  [ $rc = 2 ] || fail "sweep $*: exit $rc, expected 2"
  grep -qF -- "$msg" "$work/err" || fail "sweep $*: message '$(cat "$work/err")' lacks '$msg'"
}
expect2 "--grid scheduler.max_batch_size: expected key=v1,v2" "$work/c.yaml" --out "$work/x.db" --grid scheduler.max_batch_size
expect2 "--seeds: expected an integer in [1, 10000], got '0'" "$work/c.yaml" --out "$work/x.db" --seeds 0
expect2 "--out RESULTS.db is required" "$work/c.yaml"
expect2 "directory '$work/nope' does not exist" "$work/c.yaml" --out "$work/nope/x.db"
expect2 "unknown key 'scheduler.no_such_key'" "$work/c.yaml" --out "$work/x.db" --grid scheduler.no_such_key=1,2
[ -e "$work/x.db" ] && fail "a bad config key left $work/x.db behind"
# A bad value at a later grid point: refused before the DB exists.
expect2 "grid point scheduler.max_batch_size=x" "$work/c.yaml" --out "$work/x.db" --grid scheduler.max_batch_size=1,x
[ -e "$work/x.db" ] && fail "a bad value at the second grid point left $work/x.db behind"
# A rate scale that would stretch the trace's arrivals past int64 ns.
expect2 "would move to" "$work/c.yaml" --out "$work/x.db" --grid rate_scale=1,1e-10
[ -e "$work/x.db" ] && fail "a rate scale past the trace's span left $work/x.db behind"
# Checks across keys (tensor parallelism above the heads, weights that
# fill the GPU) run as each point loads, naming the --set: no DB either.
expect2 "grid point cluster.gpus_per_instance=4: --set: cluster.gpus_per_instance: tensor parallelism 4 exceeds the 2 attention heads of tiny" \
  "$work/c.yaml" --out "$work/x.db" --set model=tiny --grid cluster.gpus_per_instance=1,4
[ -e "$work/x.db" ] && fail "tensor parallelism above the heads at the second grid point left $work/x.db behind"
expect2 "grid point model=llama2-70b: --set: model: llama2-70b on 1 x a100-80gb: weights" \
  "$work/c.yaml" --out "$work/x.db" --grid model=llama2-7b,llama2-70b
[ -e "$work/x.db" ] && fail "weights that fill the GPU at the second grid point left $work/x.db behind"
# A grid axis below a value of the config clashes, as --set does.
expect2 "grid point model.layers=2: --set: key 'model.layers' clashes with 'model' at $work/c.yaml:1" \
  "$work/c.yaml" --out "$work/x.db" --grid model.layers=2,4
[ -e "$work/x.db" ] && fail "a grid axis below the config's model left $work/x.db behind"
expect2 "not a sweep results DB" "$work/c.yaml" --out "$INFSIM_SRC/data/calibration.db"

# MPI: the same summaries, spread over ranks. An MPI build's `infsim`
# links no MPI and hands the sweep to infsim-mpi beside it (commands.h);
# that one must be what links MPI, and `infsim` must not.
mpi_exe="$(dirname "$INFSIM")/infsim-mpi"
if [ -x "$mpi_exe" ] && ldd "$INFSIM" 2>/dev/null | grep -q libmpi; then
  fail "$INFSIM links MPI although $mpi_exe exists"
fi
if command -v mpirun >/dev/null && ldd "$mpi_exe" 2>/dev/null | grep -q libmpi; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  # Under ASan, infsim-mpi suppresses Open MPI's own never-freed
  # allocations itself (cli/mpi_lsan.c); leaks of ours still fail.
  if timeout 120 mpirun --oversubscribe -np 3 "$INFSIM" sweep "$work/c.yaml" --out "$work/mpi.db" "${grid[@]}" --seeds 2 \
       --progress none >"$work/mpi_out" 2>&1; then
    [ "$(grep -c '^sweep:' "$work/mpi_out")" = 1 ] || fail "mpi: expected one summary line (rank 0): $(cat "$work/mpi_out")"
    python3 - "$work" <<'PY' || fail "mpi DB differs from the local one"
import json, sqlite3, sys
w = sys.argv[1]
def rows(p):
    out = {}
    for key, s in sqlite3.connect(p).execute("SELECT key, summary FROM runs"):
        d = json.loads(s); d.pop("wall_s"); out[key] = d
    return out
a, b = rows(f"{w}/mpi.db"), rows(f"{w}/r.db")
assert len(a) == 8 and all(b[k] == a[k] for k in a), "summaries differ"
pids = sqlite3.connect(f"{w}/mpi.db").execute("SELECT count(DISTINCT pid) FROM runs").fetchone()[0]
assert pids >= 2, f"all jobs ran in one process ({pids})"
PY
  else
    fail "mpirun sweep failed: $(tail -3 "$work/mpi_out")"
  fi
fi

# A calibrated run's key holds the calibration DB's bytes: a rerun on the
# same DB runs nothing, one on a DB fitted again (another iteration
# overhead) runs every job again, and its rows are those of the new DB.
cp "$INFSIM_SRC/data/calibration.db" "$work/cal.db"
cat >"$work/cal.yaml" <<YAML
model: llama2-7b
gpu: h100-sxm
calibration:
  db: $work/cal.db
workload:
  requests: 30
  rate_rps: 4
seed: 3
YAML
sweep_cal() {
  "$INFSIM" sweep "$work/cal.yaml" --out "$work/cal-r.db" --grid scheduler.max_batch_size=8,64 --progress none 2>&1
}
sweep_cal | grep -q "sweep: 2 runs (2 run now, 0 already in" || fail "calibrated sweep: $(sweep_cal)"
sweep_cal | grep -q "sweep: 2 runs (0 run now, 2 already in" || fail "calibrated rerun ran something"
sqlite3 "$work/cal.db" "UPDATE iteration_fit SET overhead_us = overhead_us + 5000" || fail "cannot edit the DB copy"
sweep_cal | grep -q "sweep: 2 runs (2 run now, 0 already in" || fail "a refitted DB reran nothing"
"$INFSIM" run "$work/cal.yaml" --out "$work/cal-run" --quiet --set scheduler.max_batch_size=8 || fail "calibrated run"
python3 - "$work" <<'PY' || fail "the rerun's rows are not the refitted DB's"
import json, sqlite3, sys
w = sys.argv[1]
want = json.load(open(f"{w}/cal-run/summary.json"))
rows = [json.loads(s) for (g, s) in sqlite3.connect(f"{w}/cal-r.db").execute("SELECT settings, summary FROM runs")
        if json.loads(g)["scheduler.max_batch_size"] == "8"]
assert len(rows) == 2, len(rows)
new = [r for r in rows if abs(r["throughput_tok_s"] / want["throughput_tok_s"] - 1) < 1e-9]
assert len(new) == 1 and rows[0]["throughput_tok_s"] != rows[1]["throughput_tok_s"], [r["throughput_tok_s"] for r in rows]
PY

# --out naming a directory, or a name too long: bad input (exit 2), no DB.
mkdir -p "$work/adir"
"$INFSIM" sweep "$work/c.yaml" --out "$work/adir" --grid scheduler.max_batch_size=1,2 --progress none >/dev/null 2>"$work/err"
rc=$?
[ $rc -eq 2 ] || fail "sweep --out DIR: exit $rc, want 2 ($(cat "$work/err"))"
grep -qF "$work/adir: is a directory, not a file" "$work/err" || fail "sweep --out DIR: message '$(cat "$work/err")'"
"$INFSIM" sweep "$work/c.yaml" --out "$work/$(printf 'n%.0s' $(seq 300)).db" --grid scheduler.max_batch_size=1,2 \
  --progress none >/dev/null 2>"$work/err"
rc=$?
[ $rc -eq 2 ] || fail "sweep --out with a 300-character name: exit $rc, want 2 ($(cat "$work/err"))"
grep -q "File name too long" "$work/err" || fail "sweep --out with a 300-character name: message '$(cat "$work/err")'"

[ $failures = 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "ok"
