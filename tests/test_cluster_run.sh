#!/usr/bin/env bash
# `infsim cluster` end to end on two MPI ranks (cpu executor, MPI transport,
# the `tiny` model) on a short trace, against what must hold whatever the
# timings: every request completes on one of the two instances with
# arrival <= first token <= finish; each instance runs one batch at a time
# (its iterations never overlap); the executors processed exactly the work
# the trace implies (prefill tokens = the prompts, decode steps = outputs
# - 1, per instance: nothing lost or run twice between the scheduler and the
# ranks); `infsim compare` against `infsim run` of the same config prints
# every row and draws its plot; a rank that hangs is named within the
# timeout and the results so far are written; bad input exits 2. With
# --verify every batch the ranks run is also run request by request on a
# twin model and must agree bit for bit (the attention itself is checked
# against a naive reference by test_cluster_model and test_cluster_mpi).
# Skips (77) without mpirun or in a build without MPI (one instance only:
# test_cluster_single).
set -u
INFSIM=${INFSIM:?INFSIM must name the built CLI}
"$INFSIM" cluster --help >/dev/null 2>&1 || true
. "$(dirname "$0")/cluster_lib.sh"
need_mpirun

cat >"$W/c.yaml" <<'YAML'
model: tiny
gpu: a100-40gb
cluster:
  instances: 2
scheduler:
  max_batch_size: 4
  max_batched_tokens: 256
policy:
  name: vllm-multi
metrics:
  iterations: true
  sample_interval_s: 0.05
YAML
printf 'arrival_time_s,prompt_tokens,output_tokens\n0,24,6\n0.01,40,5\n0.02,16,9\n0.04,33,4\n0.05,20,7\n0.07,48,3\n0.08,12,8\n0.1,30,5\n' >"$W/t.csv"
if "$INFSIM" cluster "$W/c.yaml" --trace "$W/t.csv" --out "$W/probe" --executor cpu 2>&1 | grep -q "has no MPI"; then
  echo "this build has no MPI: skipped"
  exit 77
fi

timeout 300 mpirun -np 2 --oversubscribe "$INFSIM" cluster "$W/c.yaml" --trace "$W/t.csv" --out "$W/cl" \
  --executor cpu --transport mpi --timeout 60 --verify >"$W/log" 2>&1
rc=$?
[ "$rc" -eq 0 ] || { cat "$W/log"; fail "cluster run exited $rc"; }
check_cluster_outputs "$W/cl" "$W/t.csv" 2 || fail "cluster outputs break an invariant"

"$INFSIM" run "$W/c.yaml" --trace "$W/t.csv" --out "$W/sim" --quiet || fail "sim run"
"$INFSIM" compare "$W/sim" "$W/cl" >"$W/cmp" 2>&1
rc=$?
[ "$rc" -eq 0 ] || { cat "$W/cmp"; fail "compare exited $rc"; }
cat "$W/cmp"
for row in "throughput (tok/s)" "TTFT p99 (s)" "TPOT p50 (s)" "E2E mean (s)" "iteration decode (s) p50" \
  "iteration prefill (s) mean"; do
  grep -qF "$row" "$W/cmp" || fail "compare lacks the row '$row'"
done
[ -s "$W/cl/compare.png" ] || fail "compare drew no plot"
"$INFSIM" compare "$W/sim" "$W/nothing" --no-plot >/dev/null 2>&1
[ $? -eq 2 ] || fail "compare with a missing directory should exit 2"

# A hung rank: named within the timeout, results so far written.
start=$(date +%s)
timeout 120 mpirun -np 2 --oversubscribe "$INFSIM" cluster "$W/c.yaml" --trace "$W/t.csv" --out "$W/hang" \
  --executor cpu --timeout 2 --inject-fault hang:1:2 >"$W/hlog" 2>&1
rc=$?
took=$(( $(date +%s) - start ))
[ "$rc" -ne 0 ] || fail "a hung rank should fail the run"
grep -q "instance 1 (rank 1) has not finished its batch after 2 s" "$W/hlog" || { cat "$W/hlog"; fail "the hung rank was not named"; }
[ -s "$W/hang/summary.json" ] && [ -s "$W/hang/requests.csv" ] || fail "no results so far after the fault"
[ "$took" -lt 60 ] || fail "the hang took $took s to stop the run"

# A rank that exits: mpirun signals the others; rank 0 stops within the
# timeout, keeps its results.
start=$(date +%s)
timeout 120 mpirun -np 2 --oversubscribe "$INFSIM" cluster "$W/c.yaml" --trace "$W/t.csv" --out "$W/die" \
  --executor cpu --timeout 30 --inject-fault die:1:2 >"$W/dlog" 2>&1
rc=$?
took=$(( $(date +%s) - start ))
[ "$rc" -ne 0 ] || fail "a dead rank should fail the run"
[ "$took" -lt 60 ] || fail "the dead rank took $took s to stop the run"
grep -q "interrupted" "$W/dlog" || { cat "$W/dlog"; fail "rank 0 did not report the interruption"; }
[ -s "$W/die/summary.json" ] && [ -s "$W/die/requests.csv" ] || fail "no results so far after a rank died"

# Bad input: exit 2, nothing written.
timeout 60 mpirun -np 2 --oversubscribe "$INFSIM" cluster "$W/missing.yaml" --trace "$W/t.csv" --out "$W/bad" \
  --executor cpu >/dev/null 2>&1
[ $? -eq 2 ] || fail "a missing config should exit 2"
[ ! -e "$W/bad" ] || fail "bad input wrote outputs"

# The cuda executor without a GPU (CI machines): skipped, exit 77, nothing written.
expect_no_gpu mpirun -np 2 --oversubscribe "$INFSIM" cluster "$W/c.yaml" --trace "$W/t.csv"

# What cluster mode does not do: refused as bad input, nothing written.
for set in scheduler.preemption=swap cluster.gpus_per_instance=2; do
  timeout 60 mpirun -np 2 --oversubscribe "$INFSIM" cluster "$W/c.yaml" --trace "$W/t.csv" --out "$W/no" \
    --executor cpu --set "$set" >"$W/nolog" 2>&1
  rc=$?
  [ "$rc" -eq 2 ] || { cat "$W/nolog"; fail "--set $set should exit 2 (got $rc)"; }
  [ ! -e "$W/no" ] || fail "--set $set wrote outputs"
done

[ "$failures" -eq 0 ] && echo ok
exit "$failures"
