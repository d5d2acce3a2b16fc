#!/usr/bin/env bash
# sweep_speed: the sweep goal of docs/studies.md: a 1,000-run sweep of
# one-hour, 32-instance runs with calibrated curves, on 2 cores.
#
#   bench/sweep_speed/run.sh [PATH/TO/infsim] [OUT_DIR]
#
# The trace: one hour of Poisson arrivals at 20 requests/s (72,386
# requests; lognormal lengths, the generator's defaults, seed 1).
# The cluster: 32 x LLaMA2-7B on H100-SXM (calibrated:h100-sxm),
# vllm-multi, least-loaded. The grid: 10 max_batch_size x 4
# max_batched_tokens x 5 rate scales (0.8 to 1.2) x 5 seeds = 1,000 runs,
# two threads pinned to two cores (taskset) when taskset exists. Prints
# wall and CPU time of the sweep, then of the resume (every run found).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
infsim=$(realpath "${1:-$here/../../build/infsim}")
out=${2:-$(mktemp -d)}
mkdir -p "$out"
"$infsim" trace gen --duration_s 3600 --rate_rps 20 --seed 1 -o "$out/hour.csv" >/dev/null 2>&1
cat >"$out/c.yaml" <<YAML
model: llama2-7b
gpu: h100-sxm
calibration:
  db: $here/../../data/calibration.db
cluster:
  instances: 32
policy:
  name: vllm-multi
  dispatch: least-loaded
seed: 1
YAML
pin=()
command -v taskset >/dev/null && pin=(taskset -c 0,1)
sweep() {
  "${pin[@]}" "$infsim" sweep "$out/c.yaml" --trace "$out/hour.csv" --out "$out/sweep.db" --jobs 2 --progress none \
    --grid scheduler.max_batch_size=16,32,48,64,96,128,160,192,224,256 \
    --grid scheduler.max_batched_tokens=2048,4096,8192,16384 --grid rate_scale=0.8:1.2:0.1 --seeds 5
}
rm -f "$out/sweep.db"
TIMEFORMAT='wall %R s, user %U s, sys %S s'
echo "sweep (1,000 runs, 2 threads):"; time sweep
echo "resume (all 1,000 found):"; time sweep
sqlite3 "$out/sweep.db" "SELECT 'runs ' || count(*) || ', simulation ' || round(sum(wall_s), 1) || ' s, per run: mean '
  || round(avg(run_wall_s), 3) || ' s (simulation ' || round(avg(wall_s), 3) || ' s), max ' || round(max(run_wall_s), 3)
  || ' s' FROM runs" || true
