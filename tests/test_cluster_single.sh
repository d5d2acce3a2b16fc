#!/usr/bin/env bash
# `infsim cluster` with one instance, started without mpirun: one process
# runs the scheduler and the instance's model (the path a machine without
# MPI takes, and the only one a build without MPI has). What must hold
# whatever the timings: every request completes with arrival <= first
# token <= finish, iterations never overlap, the work run equals the work
# the trace implies (prefill tokens = the prompts, decode steps = outputs -
# 1), and with --verify every batch agrees bit for bit with its requests
# run one by one, also after a warm-up. Two instances without mpirun are
# refused (exit 2).
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

mkdir -p "$W/o0" "$W/o1"
timeout 300 "$INFSIM" cluster "$W/c.yaml" --trace "$W/t.csv" --out "$W/cl" --executor cpu --timeout 60 \
  --verify --outputs "$W/o0" >"$W/log" 2>&1
rc=$?
[ "$rc" -eq 0 ] || { cat "$W/log"; fail "one-instance cluster run exited $rc"; }
check_cluster_outputs "$W/cl" "$W/t.csv" 1 || fail "one-instance outputs break an invariant"
# No warm-up on the cpu executor unless asked for.
! grep -q "warm-up" "$W/log" || fail "the cpu executor warmed up by default: $(grep warm-up "$W/log")"

# --warm-up: its forwards run before the clock (the log says so) and leave
# nothing behind: every batch still agrees with its requests run alone
# (--verify), and each part's last hidden row is the run's without it.
timeout 300 "$INFSIM" cluster "$W/c.yaml" --trace "$W/t.csv" --out "$W/warm" --executor cpu --timeout 60 \
  --verify --warm-up --outputs "$W/o1" >"$W/warm.log" 2>&1
rc=$?
[ "$rc" -eq 0 ] || { cat "$W/warm.log"; fail "cluster --warm-up exited $rc"; }
grep -qE "^cluster: warm-up: [1-9][0-9]* forwards in [0-9.]+ s$" "$W/warm.log" ||
  fail "cluster --warm-up: no warm-up line in '$(cat "$W/warm.log")'"
check_cluster_outputs "$W/warm" "$W/t.csv" 1 || fail "outputs after a warm-up break an invariant"
[ -s "$W/o0/outputs-0.txt" ] && cmp -s <(sort "$W/o0/outputs-0.txt") <(sort "$W/o1/outputs-0.txt") ||
  fail "a warm-up changed the hidden rows of the run"

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
