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
. "$(dirname "$0")/cluster_lib.sh"

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
check_cluster_outputs "$W/cl" "$W/t.csv" 1 || fail "one-instance outputs break an invariant"

"$INFSIM" run "$W/c.yaml" --trace "$W/t.csv" --out "$W/sim" --quiet || fail "sim run"
"$INFSIM" compare "$W/sim" "$W/cl" --no-plot >"$W/cmp" 2>&1 || { cat "$W/cmp"; fail "compare failed"; }
grep -qF "throughput (tok/s)" "$W/cmp" || fail "compare lacks its throughput row"

# The cuda executor without a GPU (CI machines): skipped, exit 77, nothing written.
expect_no_gpu "$INFSIM" cluster "$W/c.yaml" --trace "$W/t.csv"

# Two instances need two ranks.
timeout 60 "$INFSIM" cluster "$W/c.yaml" --trace "$W/t.csv" --out "$W/two" --executor cpu \
  --set cluster.instances=2 >"$W/two.log" 2>&1
rc=$?
[ "$rc" -eq 2 ] || { cat "$W/two.log"; fail "two instances in one process should exit 2 (got $rc)"; }
grep -q "2 instances\|for 2 instances" "$W/two.log" || { cat "$W/two.log"; fail "the refusal does not say why"; }
[ ! -e "$W/two" ] || fail "the refused run wrote outputs"

# --out naming an existing file: exit 2 (as `infsim run`), before the cluster runs.
: >"$W/plain"
timeout 60 "$INFSIM" cluster "$W/c.yaml" --trace "$W/t.csv" --out "$W/plain" --executor cpu >/dev/null 2>"$W/err"
rc=$?
[ "$rc" -eq 2 ] || fail "cluster --out FILE: exit $rc, want 2 ($(cat "$W/err"))"
grep -qF "$W/plain: cannot be the output directory: Not a directory" "$W/err" ||
  fail "cluster --out FILE: message '$(cat "$W/err")'"
# --name=VALUE is --name VALUE: the same refusal, word for word.
timeout 60 "$INFSIM" cluster "$W/c.yaml" --trace="$W/t.csv" --out="$W/plain" --executor=cpu >/dev/null 2>"$W/err_eq"
rc=$?
[ "$rc" -eq 2 ] && cmp -s "$W/err" "$W/err_eq" || fail "cluster --out=FILE: exit $rc, message '$(cat "$W/err_eq")'"
# An empty value is a bad one: exit 2, one line, nothing written.
timeout 60 "$INFSIM" cluster "$W/c.yaml" --trace "$W/t.csv" --out "$W/empty" --executor cpu --timeout= >/dev/null \
  2>"$W/err"
rc=$?
[ "$rc" -eq 2 ] && [ "$(cat "$W/err")" = "infsim cluster: --timeout: '' is not a positive number of seconds" ] ||
  fail "cluster --timeout=: exit $rc, message '$(cat "$W/err")'"
[ ! -e "$W/empty" ] || fail "cluster --timeout=: wrote $W/empty"

# --outputs in a directory that does not exist: exit 2 as well, no outputs.
timeout 60 "$INFSIM" cluster "$W/c.yaml" --trace "$W/t.csv" --out "$W/noout" --executor cpu --outputs "$W/nosuch" \
  >/dev/null 2>"$W/err"
rc=$?
[ "$rc" -eq 2 ] || fail "cluster --outputs MISSING: exit $rc, want 2 ($(head -1 "$W/err"))"
grep -qF "$W/nosuch/outputs-0.txt: cannot write: No such file or directory" "$W/err" ||
  fail "cluster --outputs MISSING: message '$(head -1 "$W/err")'"
[ ! -e "$W/noout" ] || fail "cluster --outputs MISSING: wrote $W/noout"

[ "$failures" -eq 0 ] && echo ok
exit "$failures"
