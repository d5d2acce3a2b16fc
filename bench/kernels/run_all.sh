#!/usr/bin/env bash
# One GPU-machine call: GPU correctness checks, then the kernel benchmarks
# and the torch reference in the same run, then the summary table.
#   bench/kernels/run_all.sh [BIN_DIR] [--quick] [--no-bench] [--sanitize] [--only=KIND]
# (--only=prefill etc. is passed to bench_kernels; torch then measures the same kinds).
# BIN_DIR (default build-kernels/bench/kernels) holds bench_kernels and
# kernels_gpu_check built with CUDA. Writes under $OUT (or ./out-kernels):
# gpu_check.log, bench.log, kernels.csv (ours + torch), summary.md, torch.log,
# memcheck.log and racecheck.log (--sanitize); at most 8 files come back.
set -u
bin=${1:-build-kernels/bench/kernels}
shift || true
quick="" bench=1 sanitize=0 only=""
for a in "$@"; do
  case $a in
    --quick) quick=--quick ;;
    --no-bench) bench=0 ;;
    --sanitize) sanitize=1 ;;
    --only=*) only="--only ${a#--only=}" ;;
    *) echo "run_all.sh: unknown option $a" >&2; exit 2 ;;
  esac
done
out=${OUT:-out-kernels}
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.devlibs/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
# cuBLAS: the toolkit's copy, else the one PyTorch ships.
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda-13*/lib64 \
         $(python3 -c 'import nvidia.cublas, os; print(os.path.join(nvidia.cublas.__path__[0], "lib"))' 2>/dev/null); do
  if [ -e "$d/libcublasLt.so.13" ]; then export LD_LIBRARY_PATH=$d:$LD_LIBRARY_PATH; break; fi
done
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.max.mem,temperature.gpu,power.draw \
  --format=csv
ldd "$bin/bench_kernels" | grep -E "not found|cublas|cudart" || true

status=0
echo "== GPU checks"
"$bin/kernels_gpu_check" 2>&1 | tee "$out/gpu_check.log"
status=${PIPESTATUS[0]}
if [ "$bench" = 1 ]; then
  echo "== bench_kernels"
  "$bin/bench_kernels" --out /tmp/ours.csv $quick $only 2> "$out/bench.log"
  echo "bench_kernels exit $?"; tail -n 4 "$out/bench.log"
  echo "== torch reference"
  python3 bench/kernels/torch_ref.py --ours /tmp/ours.csv --out "$out/kernels.csv" --summary "$out/summary.md" \
    2> "$out/torch.log"
  echo "torch_ref exit $?"; tail -n 3 "$out/torch.log"
fi
if [ "$sanitize" = 1 ]; then
  for tool in memcheck racecheck; do
    echo "== compute-sanitizer $tool"
    timeout 150 compute-sanitizer --tool $tool --print-limit 10 "$bin/kernels_gpu_check" > "$out/$tool.log" 2>&1
    echo "$tool exit $?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|FAILED  \]" "$out/$tool.log" | tail -3
  done
fi
echo "== GPU checks exit $status"
grep -E "^\[  (PASSED|FAILED) \]|FAILED|PASSED" "$out/gpu_check.log" | tail -12
exit $status
