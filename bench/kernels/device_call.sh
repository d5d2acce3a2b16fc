#!/usr/bin/env bash
# device_call.sh: everything one GPU-machine call does, from a folder holding
# bin/ (bench_kernels, kernels_gpu_check, infsim built with CUDA), bench/ and
# calibrate/ scripts, and .devlibs/ (runtime libraries the image lacks).
#   device_call.sh STEPS...   steps: check, gate (stop here unless check
#                             passed), memcheck, racecheck, synccheck, bench=KINDS,
#                             bench2=KINDS (bin2/: a build-time variant), torch, calib,
#                             rounds=N (prefill_rounds.sh: N rotated prefill rounds
#                             with torch's cuDNN in each), chunks=N (chunk_rounds.sh:
#                             N rotated rounds of chunks against fresh prompts)
# INFSIM_GPU_TEST_ONLY=SUBSTRING limits the checks and the sanitizers to the
# tests whose names contain it; SANITIZE_S caps each sanitizer (default 150 s).
# Writes under $OUT: run.log (everything), gpu_check.log, bench.log,
# kernels.csv, summary.md, torch.log, sanitize.log, calib.tgz (at most 8).
set -u
cd "$(dirname "$0")/../.."
out=${OUT:-out-kernels}
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.devlibs/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda-13*/lib64 \
         $(python3 -c 'import nvidia.cublas, os; print(os.path.join(nvidia.cublas.__path__[0], "lib"))' 2>/dev/null); do
  if [ -e "$d/libcublasLt.so.13" ]; then export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d; break; fi
done
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,clocks.max.mem,temperature.gpu,power.draw \
  --format=csv
check_rc=none
for step in "$@"; do
  t0=$(date +%s)
  case $step in
    check) timeout 120 bin/kernels_gpu_check > "$out/gpu_check.log" 2>&1
           check_rc=$?
           echo "gpu_check exit $check_rc"; grep -E "^\[  (PASSED|FAILED) \]|ERROR|FAILED|prefill r=" "$out/gpu_check.log" | head -12 ;;
    gate) [ "$check_rc" = 0 ] || { echo "gate: GPU checks did not pass (exit $check_rc): stopping"; exit 1; } ;;
    memcheck|racecheck|synccheck)
           echo "$step over ${INFSIM_GPU_TEST_ONLY:-every check}" >> "$out/sanitize.log"
           timeout "${SANITIZE_S:-150}" compute-sanitizer --tool "$step" --print-limit 10 bin/kernels_gpu_check >> "$out/sanitize.log" 2>&1
           echo "$step exit $?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|Hazard|FAILED" "$out/sanitize.log" | tail -3 ;;
    bench=*) timeout 300 bin/bench_kernels --out "$out/ours.csv" --only "${step#bench=}" ${WARM_MS:+--warm-ms $WARM_MS} 2> "$out/bench.log"
           echo "bench exit $?"; grep -E "^fused|^mixed" "$out/bench.log" | head -0; tail -n 2 "$out/bench.log" ;;
    bench2=*) timeout 200 bin2/bench_kernels --out "$out/ours2.csv" --only "${step#bench2=}" ${WARM_MS:+--warm-ms $WARM_MS} 2> "$out/bench2.log"
           echo "bench2 exit $?"; tail -n 2 "$out/bench2.log" ;;
    torch) timeout 200 python3 bench/kernels/torch_ref.py --ours "$out/ours.csv" --out "$out/kernels.csv" ${WARM_MS:+--warm-ms $WARM_MS} \
             --summary "$out/summary.md" 2> "$out/torch.log" > /dev/null
           echo "torch_ref exit $?"; tail -n 3 "$out/torch.log" ;;
    rounds=*) bash bench/kernels/prefill_rounds.sh "${step#rounds=}" | tail -n 40 ;;
    chunks=*) bash bench/kernels/chunk_rounds.sh "${step#chunks=}" | tail -n 40 ;;
    calib) mkdir -p /tmp/calib
           INFSIM=bin/infsim timeout 240 calibrate/calibrate-gpu.sh --raw-only --raw-dir /tmp/calib \
             llama2-7b llama2-13b llama2-70b > /tmp/calib/calib.log 2>&1
           echo "calib exit $?"; tail -n 3 /tmp/calib/calib.log
           tar czf "$out/calib.tgz" -C /tmp calib ;;
    *) echo "device_call.sh: unknown step $step" >&2 ;;
  esac
  echo "== $step took $(( $(date +%s) - t0 )) s"
done
