#!/usr/bin/env bash
# Capacity study: the fewest LLaMA2-7B instances (one GPU each) that serve
# the Azure code trace and the Mooncake conversation trace within an SLO,
# on A100-80GB and on H100-SXM, for TTFT p99 bounds from 0.5 s to 20 s,
# without KV borrowing (and with it: POLICIES="vllm-multi infinite-llm")
# (TPOT p99 <= 100 ms throughout); then the highest arrival rate 16 GPUs
# take at TTFT p99 <= 2 s (Azure) or 20 s (Mooncake). One command:
#
#   experiments/capacity/run.sh [PATH/TO/infsim]      (default: build/infsim)
#   POLICIES="vllm-multi infinite-llm" experiments/capacity/run.sh
#
# Writes out/ here: capacity.db (every run, a sweep DB: rerunning reruns
# nothing), capacity.csv, rate.csv, table.md and plots/ (infsim plot).
# The Mooncake trace is traces/mooncake-conversation.csv, imported with
# `infsim trace import mooncake` from kvcache-ai/Mooncake's
# FAST25-release/traces/conversation_trace.jsonl (Apache-2.0) and cut to the
# three columns the simulator reads; set MOONCAKE_JSONL to re-import it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
infsim=$(realpath "${1:-$root/build/infsim}")
out="$here/out"
mkdir -p "$out"
if [ -n "${MOONCAKE_JSONL:-}" ]; then
  "$infsim" trace import mooncake "$MOONCAKE_JSONL" -o "$out/mooncake-full.csv"
  cut -d, -f1-3 "$out/mooncake-full.csv" >"$here/traces/mooncake-conversation.csv"
fi
declare -A trace=([azure]="$root/data/traces/azure-code.csv" [mooncake]="$here/traces/mooncake-conversation.csv")
declare -A trace_name=([azure]="Azure code" [mooncake]="Mooncake conv.")
declare -A gpu_name=([a100]="A100-80GB" [h100]="H100-SXM")
# Without borrowing (vllm-multi) and with it (infinite-llm: DistKV-LLM
# lends free KV blocks across instances, so a prompt longer than one
# GPU's memory is served, not rejected).
# POLICIES="vllm-multi infinite-llm" adds the second (about 20 s in all on
# 2 cores, the brute force of 1-20 instances per trace, GPU and policy included).
declare -A policy_name=([vllm-multi]="no borrowing" [infinite-llm]="borrowing")
read -r -a policies <<<"${POLICIES:-vllm-multi}"

echo "series,slo_s,instances,slo" >"$out/capacity.csv"
echo "trace,gpu,policy,slo_s,instances" >"$out/capacity-all.csv"
for t in azure mooncake; do
  for g in a100 h100; do
    for p in "${policies[@]}"; do
      for ttft in 0.5 1 2 5 10 20; do
        j="$out/cap-$t-$g-$p-$ttft.json"
        "$infsim" capacity "$here/$g.yaml" --trace "${trace[$t]}" --set policy.name=$p --target instances --start 8 \
          --max 256 --slo "ttft_p99=${ttft}s,tpot_p99=100ms" --out "$out/capacity.db" --json >"$j"
        n=$(jq -r 'if .found then .value else "none" end' "$j")
        echo "${trace_name[$t]},${gpu_name[$g]},${policy_name[$p]},$ttft,$n" >>"$out/capacity-all.csv"
        # capacity.csv (the plot's) holds the SLOs some count meets.
        [ "$n" = none ] || echo "${trace_name[$t]} on ${gpu_name[$g]} (${policy_name[$p]}),$ttft,$n,TTFT p99 bound (TPOT p99 <= 100 ms)" \
          >>"$out/capacity.csv"
        echo "$t $g $p ttft_p99<=${ttft}s: $n instances" >&2
      done
    done
  done
done

# The highest arrival rate (a multiple of the trace's own) 16 GPUs take,
# at a TTFT bound each trace can meet (above its floor, below).
declare -A rate_slo=([azure]="ttft_p99=2s,tpot_p99=100ms" [mooncake]="ttft_p99=20s,tpot_p99=100ms")
echo "trace,gpu,slo,found,rate_scale,fails_at,rate_rps" >"$out/rate.csv"
for t in azure mooncake; do
  base=$("$infsim" trace stats "${trace[$t]}" | awk '/^rate per s/ { print $5 }')
  for g in a100 h100; do
    "$infsim" capacity "$here/$g.yaml" --trace "${trace[$t]}" --set cluster.instances=16 --target rate \
      --tolerance 0.02 --slo "${rate_slo[$t]}" --out "$out/capacity.db" --json >"$out/rate-$t-$g.json"
    jq -r --arg t "${trace_name[$t]}" --arg g "${gpu_name[$g]}" --arg slo "${rate_slo[$t]}" --argjson base "$base" \
      '[$t, $g, $slo, .found, .value, .failed_at, (.value * $base * 1000 | round / 1000)] | @csv' \
      "$out/rate-$t-$g.json" >>"$out/rate.csv"
  done
done

# The lowest TTFT p99 any number of instances reaches: the longest prompts'
# prefill on one GPU (256 instances: nothing queues).
echo "trace,gpu,policy,ttft_p99_s,tpot_p99_s,rejected" >"$out/floor.csv"
for t in azure mooncake; do
  for g in a100 h100; do
    for p in "${policies[@]}"; do
      "$infsim" run "$here/$g.yaml" --trace "${trace[$t]}" --set cluster.instances=256 --set policy.name=$p \
        --out "$out/floor-$t-$g-$p" --quiet --summary-only
      jq -r --arg t "${trace_name[$t]}" --arg g "${gpu_name[$g]}" --arg p "${policy_name[$p]}" \
        '[$t, $g, $p, .ttft_s.p99, .tpot_s.p99, .rejected] | @csv' "$out/floor-$t-$g-$p/summary.json" >>"$out/floor.csv"
    done
  done
done

# Check: a brute-force sweep of 1 to 20 instances, judged here, gives the
# same counts (where the answer is within 20).
for t in azure mooncake; do
  for g in a100 h100; do
    for p in "${policies[@]}"; do
      "$infsim" sweep "$here/$g.yaml" --trace "${trace[$t]}" --set policy.name=$p --grid cluster.instances=1:20:1 \
        --label "$t $g $p" --out "$out/bruteforce.db" --progress none >/dev/null
    done
  done
done
python3 - "$out" <<'PY'
import csv, sqlite3, sys
out = sys.argv[1]
names = {"Azure code": "azure", "Mooncake conv.": "mooncake", "A100-80GB": "a100", "H100-SXM": "h100",
         "no borrowing": "vllm-multi", "borrowing": "infinite-llm"}
db = sqlite3.connect(f"{out}/bruteforce.db")
bad = 0
for row in csv.DictReader(open(f"{out}/capacity-all.csv")):
    label = f"{names[row['trace']]} {names[row['gpu']]} {names[row['policy']]}"
    ok = {n: t <= float(row["slo_s"]) and p <= 0.1 for n, t, p in db.execute(
        'SELECT "cluster.instances", ttft_s_p99, tpot_s_p99 FROM runs WHERE label = ?', (label,))}
    fewest = next((n for n in range(1, 21) if all(ok[m] for m in range(n, 21))), None)
    found = row["instances"]
    agree = (fewest is None and (found == "none" or float(found) > 20)) or (found != "none" and fewest == float(found))
    if not agree:
        bad += 1
        print(f"brute force disagrees: {label} ttft_p99<={row['slo_s']}s: search {found}, sweep {fewest}")
print(f"brute force (1-20 instances) {'agrees with every' if bad == 0 else 'disagrees with some'} search result")
PY

# The tables for the README.
{
  echo "| trace | GPU | KV | TTFT p99 <= 0.5 s | <= 1 s | <= 2 s | <= 5 s | <= 10 s | <= 20 s |"
  echo "|---|---|---|---|---|---|---|---|---|"
  tail -n +2 "$out/capacity-all.csv" | awk -F, '{ k = $1 " | " $2 " | " $3; v[k] = v[k] " | " $5; if (!(k in seen)) { seen[k] = 1; order[++n] = k } }
    END { for (i = 1; i <= n; i++) print "| " order[i] v[order[i]] " |" }'
  echo
  echo "| trace | GPU | KV | lowest TTFT p99 (s) | TPOT p99 then (ms) | rejected |"
  echo "|---|---|---|---|---|---|"
  tail -n +2 "$out/floor.csv" | tr -d '"' | awk -F, '{ printf "| %s | %s | %s | %.2f | %.1f | %d |\n", $1, $2, $3, $4, 1000 * $5, $6 }'
  echo
  echo "| trace | GPU | SLO (16 GPUs) | highest rate scale | misses at | requests/s |"
  echo "|---|---|---|---|---|---|"
  tail -n +2 "$out/rate.csv" | tr -d '"' | awk -F, '{ if ($5 == "true") printf "| %s | %s | %s, %s | %.3f | %.3f | %.2f |\n", $1, $2, $3, $4, $6, $7, $8;
    else printf "| %s | %s | %s, %s | none | | |\n", $1, $2, $3, $4 }'
} >"$out/table.md"
cat "$out/table.md"
(cd "$here" && "$infsim" plot out >/dev/null)
echo "plots: $out/plots/capacity.png" >&2
