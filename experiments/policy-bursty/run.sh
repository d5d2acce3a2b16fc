#!/usr/bin/env bash
# Policy comparison under bursty load: four ways to serve LLaMA2-7B on
# eight H100s (eight replicas with least-loaded or round-robin dispatch,
# four TP-2 replicas, one TP-8 replica), and the first again under Poisson
# arrivals as a control, swept over the arrival rate (x0.5 to x3.5 of 8
# requests/s) with three seeds each. One command:
#
#   experiments/policy-bursty/run.sh [PATH/TO/infsim]   (default: build/infsim)
#
# Writes out/ here: sweep.db (every run; a rerun reruns nothing),
# runs/VARIANT/ (one full run each at x2 for the latency CDFs), table.md,
# and plots/ (throughput and p99 against rate per variant, CDFs per variant).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
infsim=$(realpath "${1:-$root/build/infsim}")
out="$here/out"
mkdir -p "$out/runs"

# label | config | settings
variants=(
  "8 x TP1, least-loaded|multi.yaml|"
  "8 x TP1, round-robin|multi.yaml|policy.dispatch=round-robin"
  "4 x TP2, least-loaded|multi.yaml|cluster.instances=4 cluster.gpus_per_instance=2"
  "1 x TP8 (vllm-single)|single.yaml|"
  "8 x TP1, least-loaded, Poisson|multi.yaml|workload.cv=1"
)
for v in "${variants[@]}"; do
  IFS='|' read -r label config settings <<<"$v"
  sets=()
  for s in $settings; do sets+=(--set "$s"); done
  "$infsim" sweep "$here/$config" --out "$out/sweep.db" --grid rate_scale=0.5:3.5:0.25 --seeds 3 "${sets[@]}" \
    --label "$label" --progress none
  # One run at x2 (16 requests/s) with every output, for the CDFs.
  dir="$out/runs/$label"
  "$infsim" run "$here/$config" "${sets[@]}" --set workload.rate_rps=16 --out "$dir" --quiet
done

# Means over seeds at each rate.
{
  echo "| variant | rate (x 8 req/s) | output tok/s | TTFT p99 (s) | TPOT p99 (ms) | SLO attainment |"
  echo "|---|---|---|---|---|---|"
  sqlite3 -separator ' | ' "$out/sweep.db" \
    "SELECT label, rate_scale, printf('%.0f', avg(throughput_tok_s)), printf('%.2f', avg(ttft_s_p99)),
            printf('%.1f', 1000 * avg(tpot_s_p99)), printf('%.1f%%', 100 * avg(slo_attainment))
     FROM runs WHERE rate_scale IN (1, 1.5, 2, 2.5, 3) GROUP BY label, rate_scale ORDER BY label, rate_scale" |
    sed 's/^/| /; s/$/ |/'
} >"$out/table.md"
cat "$out/table.md"
(cd "$here" && "$infsim" plot out/sweep.db --out out/plots >/dev/null && "$infsim" plot out/runs --out out/plots >/dev/null)
echo "plots: $out/plots" >&2
