#!/usr/bin/env bash
# `infsim cluster` with DistKV-LLM borrowing on two MPI ranks (cpu executor,
# MPI transport, the `tiny` model): each instance's KV pool is too small for
# the requests dispatched to it (--kv-blocks 8: 128 tokens; requests of up to
# 100), so the infinite-llm policy moves KV blocks between the instances and
# split requests decode with DistAttention. What must hold:
#  - the run completes with the usual invariants (cluster_lib.sh);
#  - KV blocks really moved between the ranks and queries and partials
#    really went to the holder and back (the hub's counts), and the ledger
#    lent blocks (borrowed_blocks_peak);
#  - every request's every output row (the last hidden row of each batch
#    part, --outputs) equals the one-instance run's, which borrows nothing
#    (same rows; values within 2% of the row's scale: the split attention
#    merges partials by LSE in another order);
#  - the KV ledger is empty at the end (the run fails otherwise), and each
#    block read, on an owner or a holder, held the reading request's KV
#    (the model's check, the run fails otherwise);
#  - --verify, which has no solo twin for a split request, is refused
#    rather than run unchecked.
# Skips (77) without mpirun or in a build without MPI.
set -u
INFSIM=${INFSIM:?INFSIM must name the built CLI}
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
  name: infinite-llm
  dispatch: round-robin
  dgfm: false
metrics:
  iterations: true
  sample_interval_s: 0.05
YAML
# Instance 0 gets requests 0, 2, 4 (100 + 95 + 100 tokens), instance 1 the
# small ones: instance 0 borrows from instance 1.
printf 'arrival_time_s,prompt_tokens,output_tokens\n0,60,40\n0.01,40,8\n0.02,50,45\n0.03,30,6\n0.05,70,30\n0.06,20,10\n' >"$W/t.csv"
if "$INFSIM" cluster "$W/c.yaml" --trace "$W/t.csv" --out "$W/probe" --executor cpu 2>&1 | grep -q "has no MPI"; then
  echo "this build has no MPI: skipped"
  exit 77
fi

mkdir -p "$W/o2" "$W/o1"
timeout 300 mpirun -np 2 --oversubscribe "$INFSIM" cluster "$W/c.yaml" --trace "$W/t.csv" --out "$W/cl" \
  --executor cpu --transport mpi --timeout 60 --kv-blocks 8 --outputs "$W/o2" >"$W/log" 2>&1
rc=$?
cat "$W/log" | grep -v '^\[' | head -5
[ "$rc" -eq 0 ] || { cat "$W/log"; fail "borrowing run exited $rc"; }
check_cluster_outputs "$W/cl" "$W/t.csv" 2 || fail "borrowing run's outputs break an invariant"
moved=$(sed -n 's/^cluster: \([0-9]*\) KV blocks moved between instances.*/\1/p' "$W/log")
queries=$(sed -n 's/.* \([0-9]*\) DistAttention queries routed$/\1/p' "$W/log")
[ "${moved:-0}" -gt 0 ] || fail "no KV block moved between the ranks"
[ "${queries:-0}" -gt 0 ] || fail "no DistAttention query went to a holder"
python3 -c "import json,sys; sys.exit(0 if json.load(open('$W/cl/summary.json'))['borrowed_blocks_peak'] > 0 else 1)" ||
  fail "the ledger lent no block"

# The reference: one instance with room for everything, no borrowing.
timeout 300 "$INFSIM" cluster "$W/c.yaml" --trace "$W/t.csv" --out "$W/one" --executor cpu \
  --set cluster.instances=1 --kv-blocks 4096 --outputs "$W/o1" >"$W/log1" 2>&1 || { cat "$W/log1"; fail "one-instance run"; }
grep -q "KV blocks moved" "$W/log1" && fail "the one-instance reference moved KV"
python3 - "$W/o2" "$W/o1" <<'PY' || fail "outputs of the borrowing run differ from the one-instance run"
import glob, sys
def load(d):
    rows = {}
    for f in sorted(glob.glob(d + '/outputs-*.txt')):
        for line in open(f):
            p = line.split()
            rows.setdefault((int(p[0]), int(p[1])), [float(x) for x in p[2:]])
    return rows
two, one = load(sys.argv[1]), load(sys.argv[2])
ok = set(two) == set(one) and len(one) > 0
if not ok: print(f'rows: {len(two)} against {len(one)}; only in one of them: {sorted(set(two) ^ set(one))[:5]}')
worst, at = 0.0, None
for k in set(two) & set(one):
    a, b = two[k], one[k]
    d = max(abs(x - y) for x, y in zip(a, b)) / max(1.0, max(abs(y) for y in b))
    if d > worst: worst, at = d, k
print(f'{len(one)} output rows, largest difference {worst:.4g} (request, position {at})')
sys.exit(0 if ok and worst < 0.02 else 1)
PY

# --verify cannot check a split request: refused, not run unchecked.
timeout 120 mpirun -np 2 --oversubscribe "$INFSIM" cluster "$W/c.yaml" --trace "$W/t.csv" --out "$W/ver" \
  --executor cpu --timeout 60 --kv-blocks 8 --verify >"$W/vlog" 2>&1
[ $? -ne 0 ] || fail "--verify with split requests should fail"
grep -q "verify runs each request alone" "$W/vlog" || { cat "$W/vlog"; fail "--verify refusal not explained"; }

[ "$failures" -eq 0 ] && echo ok
exit "$failures"
