#!/usr/bin/env bash
# One call on the lent GPU machine: what cluster mode's warm-up
# (`infsim cluster --warm-up`, the cuda default) takes out of a run's first
# batches. The first REQUESTS (default 40) requests of a trace, every
# arrival at 0, run ROUNDS times (default 3) with --no-warm-up and with the
# warm-up, alternately; each run's iterations.csv and log land in
# $OUT/warmup.tar.gz, and warmup_table.py's table in $OUT/warmup.txt.
#   here:  cmake --build build-gpu -j2 --target infsim_cli   (CUDA, Release)
#          copy build-gpu/{infsim,infsim-mpi}, .devlibs (device-libs libgsl27 libgslcblas0
#          libsqlite3-0 libyaml-0-2 libjansson4), data/calibration.db, the trace,
#          bench/fidelity/{gpu_warmup.sh,warmup_table.py,e2e-llama2-7b-h200.yaml} into one folder
#   there: TRACE=FILE bash FOLDER/gpu_warmup.sh        (results under $OUT)
set -u
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 PYTHONUNBUFFERED=1
cd "$(dirname "$0")"
out=${OUT:-.}
res=/tmp/warmup
mkdir -p "$res"
export LD_LIBRARY_PATH="$PWD/.devlibs/usr/lib/x86_64-linux-gnu:$PWD/.devlibs/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && export LD_LIBRARY_PATH="$d:$LD_LIBRARY_PATH"
done
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee "$res/gpu.txt"
case "$(head -1 "$res/gpu.txt")" in
  *H200*) profile=h200 ;;
  *H100*) profile=h100-sxm ;;
  *) profile=unknown ;;
esac
sed "s/^gpu: .*/gpu: $profile/" e2e-llama2-7b-h200.yaml >"$res/e2e.yaml"
awk -F, -v n="${REQUESTS:-40}" 'NR == 1 { print; next } NR <= n + 1 { $1 = 0; print }' OFS=, \
  "${TRACE:?TRACE names the trace}" >"$res/trace.csv"
for r in $(seq 1 "${ROUNDS:-3}"); do
  for mode in cold warm; do
    flag=--warm-up; [ "$mode" = cold ] && flag=--no-warm-up
    t0=$(date +%s%N)
    ./infsim cluster "$res/e2e.yaml" --trace "$res/trace.csv" --out "$res/$mode-$r" $flag --quiet \
      >"$res/$mode-$r.log" 2>&1
    echo "$mode-$r: exit $? in $((($(date +%s%N) - t0) / 1000000)) ms; $(grep warm-up "$res/$mode-$r.log")"
  done
done
python3 warmup_table.py "$res" | tee "$out/warmup.txt"
tar czf "$out/warmup.tar.gz" -C "$res" .
