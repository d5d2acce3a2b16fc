#!/usr/bin/env bash
# The run-to-run noise of the end-to-end measurements: `infsim cluster` on
# the same trace N times back to back (same binary, config and GPU), so a
# simulator error can be set against how far two measured runs differ.
# Folder as for gpu_calib.sh (infsim, .devlibs, the e2e config), plus the
# trace to replay:
#   there: TRACE=FOLDER/trace-0.3.csv N=3 bash FOLDER/gpu_noise.sh   (results under $OUT/noise.tar.gz)
set -u
export NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1
cd "$(dirname "$0")"
here=$PWD
out=${OUT:-.}
res=/tmp/noise
mkdir -p "$res"
export LD_LIBRARY_PATH="$here/.devlibs/usr/lib/x86_64-linux-gnu:$here/.devlibs/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && export LD_LIBRARY_PATH="$d:$LD_LIBRARY_PATH"
done
case "$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)" in
  *H200*) profile=h200 ;;
  *H100*) profile=h100-sxm ;;
  *) profile=unknown ;;
esac
sed "s/^gpu: .*/gpu: $profile/" e2e-llama2-7b-h200.yaml >"$res/e2e.yaml"
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_throttle_reasons.active \
  --format=csv -lms 500 >"$res/clocks-noise.csv" 2>&1 &
smi=$!
name=$(basename "${TRACE:?TRACE names the trace to replay}" .csv)
for i in $(seq 1 "${N:-3}"); do
  t0=$(date +%s)
  timeout "${RUN_S:-60}" ./infsim cluster "$res/e2e.yaml" --trace "$TRACE" --out "$res/$name-r$i" --executor cuda \
    --set calibration.db="$here/calibration.db" >"$res/$name-r$i.log" 2>&1
  echo "cluster $name run $i: exit $? in $(($(date +%s) - t0)) s"; tail -2 "$res/$name-r$i.log"
  rm -f "$res/$name-r$i/results.db" "$res/$name-r$i/timeseries.csv"
done
kill "$smi"
tar czf "$out/noise.tar.gz" -C "$res" .
