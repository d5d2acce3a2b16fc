#!/usr/bin/env bash
# One call on the lent GPU machine (CUDA 13, torch and Open MPI there; no
# GSL, SQLite or YAML): the cuda executor's correctness check, the end-to-end
# runs of `infsim cluster` (one instance, e2e_cluster.py), then the model's
# speed against torch_forward.py at the same shapes and the joined table.
# Everything lands in $OUT/fidelity.tar.gz (refreshed after each stage, so
# a stage cut short still leaves the earlier ones) and $OUT/log.txt, with
# the SM clock, power and temperature every half second (clocks.csv).
# SPEED=0 leaves out the speed stage.
#   here:  cmake -S . -B build-gpu -DINFSIM_CUDA=ON -DINFSIM_MPI=OFF -DINFSIM_NCCL=OFF -DCMAKE_BUILD_TYPE=Release
#          cmake --build build-gpu -j2 --target infsim_cli bench_cluster_model
#          (one instance needs no MPI; mpi.txt records the machine's, seen there 2026-12-02)
#          /work/shared/tools/device-libs libgsl27 libgslcblas0 libsqlite3-0 libyaml-0-2 libjansson4
#          copy build-gpu/{infsim,bench_cluster_model}, .devlibs, data/calibration.db,
#          data/traces/azure-code.csv and bench/fidelity/*.{sh,py,yaml} into one folder the call carries
#   there: bash FOLDER/gpu_run.sh        (results under $OUT)
set -u
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
cd "$(dirname "$0")"
here=$PWD
out=${OUT:-.}
res=/tmp/fidelity
mkdir -p "$res"
export LD_LIBRARY_PATH="$here/.devlibs/usr/lib/x86_64-linux-gnu:$here/.devlibs/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && export LD_LIBRARY_PATH="$d:$LD_LIBRARY_PATH"
done
pack() { tar czf "$out/fidelity.tar.gz.tmp" -C "$res" . && mv "$out/fidelity.tar.gz.tmp" "$out/fidelity.tar.gz"; }
exec > >(tee "$out/log.txt") 2>&1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem,memory.total --format=csv,noheader | tee "$res/gpu.txt"
date -u +%FT%TZ | tee -a "$res/gpu.txt"
# What MPI the machine has (cluster mode's several ranks need one).
{ command -v mpirun mpiexec; ldconfig -p | grep -i -E 'libmpi|libpmix' | head -5
  python3 -c 'import mpi4py; print("mpi4py", mpi4py.__version__, mpi4py.get_config())' 2>&1 | head -3; } >"$res/mpi.txt" 2>&1
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_throttle_reasons.active \
  --format=csv -lms 500 >"$res/clocks.csv" 2>&1 &
smi=$!
./bench_cluster_model --check 2>&1 | tee "$res/check.txt"
# infsim cluster with the cuda executor on the tiny model, every batch
# checked request by request (--verify): a quick sign the executor path works.
printf 'model: tiny\ngpu: h200\ncluster:\n  instances: 1\nscheduler:\n  max_batch_size: 8\n  max_batched_tokens: 512\nmetrics:\n  iterations: true\n' >"$res/tiny.yaml"
printf 'arrival_time_s,prompt_tokens,output_tokens\n0,100,20\n0.01,300,9\n0.02,17,40\n0.05,260,3\n0.06,33,25\n' >"$res/tiny.csv"
timeout 60 ./infsim cluster "$res/tiny.yaml" --trace "$res/tiny.csv" --out "$res/tiny-cuda" --executor cuda \
  --kv-blocks 2048 --verify --set calibration.db="$here/calibration.db"
echo "tiny cuda cluster: exit $?"
timeout ${E2E_S:-300} python3 e2e_cluster.py --infsim ./infsim --config e2e-llama2-7b-h200.yaml \
  --trace azure-code.csv --out "$res/e2e" --requests ${E2E_REQUESTS:-300} --max-span-s ${E2E_SPAN_S:-40} -- \
  --executor cuda --set calibration.db="$here/calibration.db"
echo "e2e: exit $?"
pack
if [ "${SPEED:-1}" != 0 ]; then
  timeout ${OURS_S:-120} ./bench_cluster_model --time 2>&1 | tee "$res/ours.csv"
  pack
  timeout ${TORCH_S:-150} python3 torch_forward.py 2>&1 | tee "$res/torch.csv"
  python3 speed_table.py "$res/ours.csv" "$res/torch.csv" | tee "$res/table.txt"
fi
kill "$smi"
pack
