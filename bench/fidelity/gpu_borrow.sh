#!/usr/bin/env bash
# Device call: DistKV-LLM borrowing with the cuda executor, two MPI ranks on
# one GPU (host-staged MPI transport), as tests/test_cluster_borrow.sh runs
# it on the CPU: KV pools of 8 blocks force the infinite-llm policy to move
# blocks between the instances; each run's output rows (--outputs) are
# compared with a one-instance run that borrows nothing. The tiny model,
# then the LLaMA2-7B shape. Results in $OUT/borrow.tar.gz and $OUT/log.txt.
#   here: build-gpu (MPI + CUDA) as gpu_layers.sh says; copy infsim and
#         infsim-mpi (cluster mode runs in it: cli/mpi_handoff.c), .devlibs and bench/fidelity/*.{sh,py} into one folder the call carries
#   there: bash FOLDER/gpu_borrow.sh
set -u
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
cd "$(dirname "$0")"
here=$PWD
out=${OUT:-.}
res=/tmp/borrow
mkdir -p "$res"
export LD_LIBRARY_PATH="$here/.devlibs/usr/lib/x86_64-linux-gnu:$here/.devlibs/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && export LD_LIBRARY_PATH="$d:$LD_LIBRARY_PATH"
done
exec > >(tee "$out/log.txt") 2>&1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv,noheader | tee "$res/gpu.txt"
date -u +%FT%TZ | tee -a "$res/gpu.txt"
# Every arrival at 0: on a GPU the requests of the CPU test's trace finish
# before the next arrives, and nothing is short of blocks. Instance 0
# (requests 0, 2, 4: 20 blocks) then borrows from instance 1 (8 blocks at
# its peak, freed early) within pools of KV_BLOCKS.
printf 'arrival_time_s,prompt_tokens,output_tokens\n0,60,40\n0,40,8\n0,50,45\n0,30,6\n0,70,30\n0,20,10\n' >"$res/t.csv"
kv=${KV_BLOCKS:-12}
for model in tiny llama2-7b; do
  printf 'model: %s\ngpu: h200\ncluster:\n  instances: 2\nscheduler:\n  max_batch_size: 4\n  max_batched_tokens: 256\npolicy:\n  name: infinite-llm\n  dispatch: round-robin\n  dgfm: false\nmetrics:\n  iterations: true\n  sample_interval_s: 0.05\n' "$model" >"$res/$model.yaml"
  mkdir -p "$res/$model-o2" "$res/$model-o1"
  timeout 150 mpirun -np 2 --oversubscribe ./infsim cluster "$res/$model.yaml" --trace "$res/t.csv" \
    --out "$res/$model-two" --executor cuda --transport mpi --timeout 60 --kv-blocks $kv --outputs "$res/$model-o2" \
    --set calibration.db="$here/calibration.db" 2>&1 | grep -v '^\[' | tee "$res/$model-two.log"
  echo "$model two ranks: exit ${PIPESTATUS[0]}"
  timeout 120 ./infsim cluster "$res/$model.yaml" --trace "$res/t.csv" --out "$res/$model-one" --executor cuda \
    --set cluster.instances=1 --kv-blocks 64 --outputs "$res/$model-o1" --set calibration.db="$here/calibration.db" \
    2>&1 | tee "$res/$model-one.log"
  echo "$model one instance: exit ${PIPESTATUS[0]}"
  # The noise floor: the same instance with one request per batch (CUDA
  # GEMMs round differently with the batch's rows).
  mkdir -p "$res/$model-o1b"
  timeout 120 ./infsim cluster "$res/$model.yaml" --trace "$res/t.csv" --out "$res/$model-one-b1" --executor cuda \
    --set cluster.instances=1 --set scheduler.max_batch_size=1 --kv-blocks 64 --outputs "$res/$model-o1b" \
    --set calibration.db="$here/calibration.db" >"$res/$model-one-b1.log" 2>&1
  echo "$model one instance, batch 1: exit $?"
  python3 - "$res/$model-o2" "$res/$model-o1" "$res/$model-o1b" "$res/$model-two/requests.csv" <<'PY' 2>&1 | tee "$res/$model-compare.txt"
import glob, sys
def load(d):
    rows = {}
    for f in sorted(glob.glob(d + '/outputs-*.txt')):
        for line in open(f):
            p = line.split()
            rows.setdefault((int(p[0]), int(p[1])), [float(x) for x in p[2:]])
    return rows
import csv
two, one, b1 = load(sys.argv[1]), load(sys.argv[2]), load(sys.argv[3])
owner = {int(r['id']): int(r['instance']) for r in csv.DictReader(open(sys.argv[4]))}
def rel(a, b):
    return max(abs(x - y) for x, y in zip(a, b)) / max(1.0, max(abs(y) for y in b))
def summary(name, x, y):
    d = sorted((rel(x[k], y[k]), k) for k in set(x) & set(y))
    print(f'{name}: rows {len(x)} / {len(y)}, same rows: {set(x) == set(y)}', end='')
    if d: print(f'; relative difference of a row: median {d[len(d) // 2][0]:.4g}, max {d[-1][0]:.4g} at {d[-1][1]}')
    else: print()
    return d
summary('two ranks vs one instance', two, one)
summary('noise floor: one instance, batch 1 vs batch 4', b1, one)
for req in sorted(owner):
    d = [rel(two[k], one[k]) for k in two if k[0] == req and k in one]
    n = [rel(b1[k], one[k]) for k in b1 if k[0] == req and k in one]
    if d: print(f'request {req} (instance {owner[req]}): max difference {max(d):.4g} over {len(d)} rows; noise floor {max(n) if n else 0:.4g}')
PY
  tar czf "$out/borrow.tar.gz" -C "$res" --exclude='*-o1' --exclude='*-o2' --exclude='*-o1b' --exclude='results.db' .
done
