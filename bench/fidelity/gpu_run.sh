#!/usr/bin/env bash
# One call on the lent GPU machine (which has CUDA 13 and torch, but no MPI,
# GSL, SQLite or YAML): the cuda executor's correctness check, then its
# speed against torch_forward.py at the same shapes, then the joined table.
#   here:  cmake -S . -B build-cuda -DINFSIM_CUDA=ON -DINFSIM_NCCL=OFF -DCMAKE_BUILD_TYPE=Release
#          cmake --build build-cuda -j2 --target bench_cluster_model
#          copy build-cuda/bench_cluster_model and bench/fidelity/{gpu_run.sh,torch_forward.py,speed_table.py}
#          into one folder the device call carries
#   there: bash FOLDER/gpu_run.sh        (results under $OUT)
set -u
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
cd "$(dirname "$0")"
out=${OUT:-.}
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
done
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$out/gpu.txt"
./bench_cluster_model --check 2>&1 | tee "$out/check.txt"
timeout 240 ./bench_cluster_model --time 2>&1 | tee "$out/ours.csv"
timeout 240 python3 torch_forward.py 2>&1 | tee "$out/torch.csv"
python3 speed_table.py "$out/ours.csv" "$out/torch.csv" | tee "$out/table.txt"
