#!/usr/bin/env bash
# One call on the lent GPU machine that re-measures the shipped calibration
# with the kernels as built (every model of the profile, TP 1, 2, 4, 8; TP 1
# adds whole layers, skewed decode batches among them) and the end-to-end
# runs of e2e_cluster.py (one instance, loads from its own maximum), which
# give the iteration-level rows too. Everything lands in $OUT/calib.tar.gz
# (refreshed after each stage) and $OUT/log.txt (LOG=NAME: NAME.txt); the SM clock, power and
# throttle reasons every half second in clocks-log.csv.
#   here:  cmake -S . -B build-gpu -DINFSIM_CUDA=ON -DINFSIM_MPI=ON -DINFSIM_NCCL=OFF -DCMAKE_BUILD_TYPE=Release
#          cmake --build build-gpu -j2 --target infsim_cli
#          /work/shared/tools/device-libs libgsl27 libgslcblas0 libsqlite3-0 libyaml-0-2 libjansson4
#          copy data/calibration.db, build-gpu/infsim with its infsim-mpi beside it (cluster mode runs in it), .devlibs, data/traces/azure-code.csv and
#          bench/fidelity/*.{sh,py,yaml} into one folder the call carries
#   there: bash FOLDER/gpu_calib.sh        (results under $OUT)
# Stages can be left out: CALIB=0, E2E=0; MODELS="llama2-7b ..." picks the models.
# SANITIZE=1 (with kernels_gpu_check in the folder) first runs the GPU checks,
# then compute-sanitizer memcheck over the prefill checks and racecheck and
# synccheck over the small version-14 case. REPEATS=N adds N more runs of
# the first model at TP 1 (calibrate/merge-raw.py takes their median here).
set -u
export NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd "$(dirname "$0")"
here=$PWD
out=${OUT:-.}
res=/tmp/calib
mkdir -p "$res"
export LD_LIBRARY_PATH="$here/.devlibs/usr/lib/x86_64-linux-gnu:$here/.devlibs/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && export LD_LIBRARY_PATH="$d:$LD_LIBRARY_PATH"
done
pack() { tar czf "$out/calib.tar.gz.tmp" -C "$res" . && mv "$out/calib.tar.gz.tmp" "$out/calib.tar.gz"; }
exec > >(tee "$out/${LOG:-log}.txt") 2>&1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem,memory.total,power.limit \
  --format=csv,noheader | tee "$res/gpu.txt"
date -u +%FT%TZ | tee -a "$res/gpu.txt"
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_throttle_reasons.active \
  --format=csv -lms 500 >"$res/clocks-${LOG:-log}.csv" 2>&1 &
smi=$!
infsim=./infsim
./infsim --help >/dev/null 2>&1 || { echo "infsim does not start here: $(./infsim --help 2>&1 | head -2)"; }
case "$(head -1 "$res/gpu.txt")" in
  *H200*) profile=h200 ;;
  *H100*) profile=h100-sxm ;;
  *) profile=unknown ;;
esac
sed "s/^gpu: .*/gpu: $profile/" e2e-llama2-7b-h200.yaml >"$res/e2e.yaml"
if [ "${SANITIZE:-0}" != 0 ]; then
  t0=$(date +%s)
  timeout 60 ./kernels_gpu_check >"$res/check.txt" 2>&1
  echo "gpu checks: exit $? in $(($(date +%s) - t0)) s"; tail -3 "$res/check.txt"
  for tool in "memcheck prefill ${MEMCHECK_S:-90}" "racecheck prefill_small ${RACECHECK_S:-180}" \
              "synccheck prefill_small ${SYNCCHECK_S:-45}"; do
    set -- $tool
    t0=$(date +%s)
    INFSIM_GPU_TEST_ONLY=$2 timeout "$3" compute-sanitizer --tool "$1" --error-exitcode 9 ./kernels_gpu_check \
      >"$res/sanitizer-$1.txt" 2>&1
    echo "compute-sanitizer $1 ($2): exit $? in $(($(date +%s) - t0)) s"; tail -4 "$res/sanitizer-$1.txt"
  done
  pack
fi
if [ "${CALIB:-1}" != 0 ]; then
  for m in ${MODELS:-llama2-7b llama2-13b llama2-70b}; do
    t0=$(date +%s)
    timeout 150 $infsim calibrate run --backend cuda --model "$m" --out "$res/raw-$profile-$m.csv"
    echo "calibrate $m: exit $? in $(($(date +%s) - t0)) s"
    pack
  done
  first=${MODELS:-llama2-7b}; first=${first%% *}
  for i in $(seq 1 "${REPEATS:-0}"); do
    t0=$(date +%s)
    timeout 60 $infsim calibrate run --backend cuda --model "$first" --tp 1 --out "$res/raw-$profile-$first-tp1-rep$i.csv"
    echo "calibrate $first TP 1, repeat $i: exit $? in $(($(date +%s) - t0)) s"
    pack
  done
fi
if [ "${E2E:-1}" != 0 ]; then
  t0=$(date +%s)
  timeout ${E2E_S:-270} python3 e2e_cluster.py --infsim $infsim --config "$res/e2e.yaml" \
    --trace azure-code.csv --out "$res/e2e" --requests ${E2E_REQUESTS:-300} --max-span-s ${E2E_SPAN_S:-30} -- \
    --executor cuda --set calibration.db="$here/calibration.db"
  echo "e2e: exit $? in $(($(date +%s) - t0)) s"
fi
kill "$smi"
pack
