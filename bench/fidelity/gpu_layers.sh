#!/usr/bin/env bash
# One call on the lent GPU machine for the whole-layer calibration: the
# steady-state clock under load, `calibrate run` of LLaMA2-7B at TP 1 (the
# kernels and, new, whole layers as the cuda executor runs them), the
# whole-model forwards composition.py prices (bench_cluster_model --time,
# graphs only), the end-to-end runs of e2e_cluster.py (one instance), and the
# two-rank MPI check on one GPU (cuda executor, host-staged MPI: KV blocks
# moved to the other rank, queries and partials each layer). Everything
# lands in $OUT/layers.tar.gz (refreshed after each stage) and
# $OUT/log.txt; the SM clock, power and throttle reasons every half second
# in clocks.csv.
#   here:  cmake -S . -B build-gpu -DINFSIM_CUDA=ON -DINFSIM_MPI=ON -DINFSIM_NCCL=OFF -DCMAKE_BUILD_TYPE=Release
#          cmake --build build-gpu -j2 --target infsim_cli infsim_mpi_cli bench_cluster_model infsim_cluster_check
#          (and build-gpu-nompi with -DINFSIM_MPI=OFF: used when the MPI build cannot start there)
#          /work/shared/tools/device-libs libgsl27 libgslcblas0 libsqlite3-0 libyaml-0-2 libjansson4
#          copy data/calibration.db, the binaries (MPI build as infsim with its infsim-mpi beside it, bench_cluster_model, infsim_cluster_check; the
#          other as infsim-nompi, bench_cluster_model-nompi), .devlibs, data/traces/azure-code.csv
#          and bench/fidelity/*.{sh,py,yaml} into one folder the call carries
#   there: bash FOLDER/gpu_layers.sh        (results under $OUT)
# Stages can be left out: CALIB=0, OURS=0, E2E=0, MPI=0.
set -u
export NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
cd "$(dirname "$0")"
here=$PWD
out=${OUT:-.}
res=/tmp/layers
mkdir -p "$res"
export LD_LIBRARY_PATH="$here/.devlibs/usr/lib/x86_64-linux-gnu:$here/.devlibs/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && export LD_LIBRARY_PATH="$d:$LD_LIBRARY_PATH"
done
pack() { tar czf "$out/layers.tar.gz.tmp" -C "$res" . && mv "$out/layers.tar.gz.tmp" "$out/layers.tar.gz"; }
exec > >(tee "$out/log.txt") 2>&1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem,memory.total,power.limit \
  --format=csv,noheader | tee "$res/gpu.txt"
date -u +%FT%TZ | tee -a "$res/gpu.txt"
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_throttle_reasons.active \
  --format=csv -lms 500 >"$res/clocks.csv" 2>&1 &
smi=$!
# The MPI build, unless it cannot start here (then the one without MPI).
infsim=./infsim bench=./bench_cluster_model
if ! ./infsim --help >/dev/null 2>&1; then
  echo "MPI build does not start here: $(./infsim --help 2>&1 | head -2)"
  infsim=./infsim-nompi bench=./bench_cluster_model-nompi
fi
echo "using $infsim"
case "$(head -1 "$res/gpu.txt")" in
  *H200*) profile=h200 ;;
  *H100*) profile=h100-sxm ;;
  *) profile=unknown ;;
esac
sed "s/^gpu: .*/gpu: $profile/" e2e-llama2-7b-h200.yaml >"$res/e2e.yaml"
if [ "${CALIB:-1}" != 0 ]; then
  timeout 150 $infsim calibrate run --backend cuda --model llama2-7b --tp 1 --out "$res/raw-llama2-7b-tp1.csv"
  echo "calibrate: exit $?"
  pack
fi
if [ "${OURS:-1}" != 0 ]; then
  timeout ${OURS_S:-110} $bench --time 2>&1 | tee "$res/ours.csv"
  pack
fi
if [ "${E2E:-1}" != 0 ]; then
  timeout ${E2E_S:-270} python3 e2e_cluster.py --infsim $infsim --config "$res/e2e.yaml" \
    --trace azure-code.csv --out "$res/e2e" --requests ${E2E_REQUESTS:-300} --max-span-s ${E2E_SPAN_S:-30} -- \
    --executor cuda --set calibration.db="$here/calibration.db"
  echo "e2e: exit $?"
  pack
fi
if [ "${MPI:-1}" != 0 ] && [ "$infsim" = ./infsim ]; then
  timeout 90 mpirun -np 2 --oversubscribe ./infsim_cluster_check --transport mpi --executor cuda 2>&1 |
    tee "$res/mpi-check.txt"
  echo "mpi check: exit ${PIPESTATUS[0]}"
fi
kill "$smi"
pack
