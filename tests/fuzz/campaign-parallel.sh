#!/usr/bin/env bash
# A fuzzing campaign on many cores: every target at once, each on some of
# the CORES (default: all online), until each has run RUNS inputs (default
# 10 M) or SECONDS have passed (default 400), whichever comes first.
#
# The time is cut into ROUNDS (default 3). A target on k cores runs k
# libFuzzer processes that share its corpus directory (each reloads what
# the others found, libFuzzer's -reload). Round 1 splits the cores by
# WEIGHTS ("calib_db=4 config=2 ...", a target not named weighs 1); each
# later round gives the cores to the targets still short of RUNS, in
# proportion to the core-seconds each still needs at the rate it showed,
# at least one each, so that targets of very different speeds reach RUNS
# together. Every round continues from the corpus of the one before.
#
# WORKDIR (default BIN/campaign-parallel) keeps TARGET/ (the corpus, seeded
# from tests/fuzz/corpus and the project's fixtures as campaign.sh does),
# crashes/TARGET/ (inputs that crashed a process; the others carry on),
# logs/TARGET/rR-J.log, and summary.txt: per target the cores of each
# round, core-seconds, executions, inputs per core-second, crashes and the
# corpus size. NICE (default 15) is the niceness of the fuzzers.
# Usage: tests/fuzz/campaign-parallel.sh BIN [RUNS] [SECONDS] [TARGET...]
#   BIN: a build dir configured with -DINFSIM_FUZZ=ON, or a directory
#   holding the fuzz_TARGET binaries. Exit 1 if any process crashed.
set -u
bin=${1:?build dir configured with -DINFSIM_FUZZ=ON, or a directory of fuzz_TARGET binaries}
runs=${2:-10000000}
secs=${3:-400}
shift $(( $# >= 3 ? 3 : $# ))
[ -d "$bin/tests/fuzz" ] && bin=$bin/tests/fuzz
bin=$(cd "$bin" && pwd)
src=$(cd "$(dirname "$0")" && pwd)
root=${INFSIM_ROOT:-$(cd "$src/../.." && pwd)}
work=${WORKDIR:-$bin/campaign-parallel}
mkdir -p "$work" && work=$(cd "$work" && pwd)
cores=${CORES:-$(nproc)}
rounds=${ROUNDS:-3}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(trace_csv config workload calib_raw import_burstgpt import_mooncake import_azure costmodel calib_db)
[ "$cores" -ge "${#targets[@]}" ] || { echo "campaign-parallel: $cores cores for ${#targets[@]} targets" >&2; exit 2; }
. "$src/seeds.sh"

# Executions in one libFuzzer log: its final stats, else the last status
# line (a process that crashed prints no final stats).
execs_of() {
  local n
  n=$(grep -o 'number_of_executed_units: [0-9]*' "$1" | awk '{print $2}' | tail -1)
  [ -n "$n" ] || n=$(grep -Eo '^#[0-9]+' "$1" | tail -1 | tr -d '#')
  echo "${n:-0}"
}

# Cores for the targets given their weights: each at least 1, the rest in
# proportion to the weight (largest remainder). Reads "target weight" lines,
# prints "target cores" lines.
split_cores() {
  awk -v total="$1" '
    { t[NR] = $1; w[NR] = $2; sum += $2 }
    END {
      n = NR; left = total - n
      for (i = 1; i <= n; i++) {
        share = (sum > 0 ? left * w[i] / sum : left / n)
        c[i] = 1 + int(share); frac[i] = share - int(share); used += c[i]
      }
      while (used < total) {
        best = 1
        for (i = 2; i <= n; i++) if (frac[i] > frac[best]) best = i
        c[best]++; frac[best] = -1; used++
      }
      for (i = 1; i <= n; i++) print t[i], c[i]
    }'
}

# Cores for the targets still short of RUNS, from "target need rate" lines
# (executions to go, executions per core-second so far) and the seconds
# left: where all can finish, every core in proportion to what each needs;
# where not, as many targets as possible are given what they need to finish,
# the smallest needs first, the others one core each.
plan_cores() {
  awk -v total="$1" -v secs="$2" '
    { t[NR] = $1; c[NR] = ($3 > 0 ? $2 / ($3 * secs * 0.95) : total); sum += c[NR] }
    END {
      n = NR
      if (sum <= total) {
        # Everyone finishes: share all cores as split_cores does.
        left = total - n
        for (i = 1; i <= n; i++) {
          share = left * c[i] / sum
          k[i] = 1 + int(share); frac[i] = share - int(share); used += k[i]
        }
        while (used < total) {
          best = 1
          for (i = 2; i <= n; i++) if (frac[i] > frac[best]) best = i
          k[best]++; frac[best] = -1; used++
        }
        for (i = 1; i <= n; i++) print t[i], k[i]
        exit
      }
      for (i = 1; i <= n; i++) o[i] = i
      for (i = 2; i <= n; i++)
        for (j = i; j > 1 && c[o[j]] < c[o[j - 1]]; j--) { x = o[j]; o[j] = o[j - 1]; o[j - 1] = x }
      spare = total - n
      for (i = 1; i <= n; i++) {
        want = int(c[o[i]]); if (want < c[o[i]]) want++
        extra = want - 1; if (extra > spare) extra = spare; if (extra < 0) extra = 0
        spare -= extra
        print t[o[i]], 1 + extra
      }
    }'
}

declare -A done_runs core_secs plan rate
for t in "${targets[@]}"; do
  len=$(max_len_of "$t")
  mkdir -p "$work/$t" "$work/crashes/$t" "$work/logs/$t"
  seed_fixtures "$t" "$work/$t" "$len" 2>/dev/null
  [ -d "$root/tests/fuzz/corpus/$t" ] && cp -n "$root/tests/fuzz/corpus/$t"/* "$work/$t"/ 2>/dev/null
  [ -x "$bin/fuzz_$t" ] || { echo "campaign-parallel: no $bin/fuzz_$t" >&2; exit 2; }
  done_runs[$t]=0
  core_secs[$t]=0
  plan[$t]=""
done

# Round 1 weights.
weights=""
for t in "${targets[@]}"; do
  w=1
  for kv in ${WEIGHTS:-}; do [ "${kv%%=*}" = "$t" ] && w=${kv#*=}; done
  weights+="$t $w"$'\n'
done

pids=()
trap 'kill "${pids[@]}" 2>/dev/null' INT TERM
start=$(date +%s)
for ((r = 1; r <= rounds; r++)); do
  now=$(date +%s)
  left=$((secs - (now - start)))
  round_secs=$((left / (rounds - r + 1)))
  [ "$round_secs" -ge 5 ] || break
  declare -A k=()
  if [ "$r" -eq 1 ]; then
    while read -r t c; do k[$t]=$c; done < <(printf '%s' "$weights" | grep . | split_cores "$cores")
  else
    # Targets still short of RUNS: what each needs at the rate it showed.
    needs=""
    for t in "${targets[@]}"; do
      need=$((runs - done_runs[$t]))
      [ "$need" -gt 0 ] && needs+="$t $need ${rate[$t]}"$'\n'
    done
    while read -r t c; do k[$t]=$c; done < <(printf '%s' "$needs" | grep . | plan_cores "$cores" "$left")
  fi
  [ ${#k[@]} -gt 0 ] || break
  pids=()
  t0=$(date +%s)
  for t in "${!k[@]}"; do
    len=$(max_len_of "$t")
    for ((j = 1; j <= k[$t]; j++)); do
      nice -n "${NICE:-15}" "$bin/fuzz_$t" -max_total_time="$round_secs" -max_len="$len" -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$work/crashes/$t/" "$work/$t" >"$work/logs/$t/r$r-$j.log" 2>&1 &
      pids+=($!)
    done
  done
  for p in "${pids[@]}"; do wait "$p"; done
  t1=$(date +%s)
  for t in "${!k[@]}"; do
    n=0
    for ((j = 1; j <= k[$t]; j++)); do n=$((n + $(execs_of "$work/logs/$t/r$r-$j.log"))); done
    done_runs[$t]=$((done_runs[$t] + n))
    core_secs[$t]=$((core_secs[$t] + k[$t] * (t1 - t0)))
    rate[$t]=$(awk -v n="$n" -v cs="$((k[$t] * (t1 - t0)))" 'BEGIN { printf "%.1f", (cs > 0 ? n / cs : 0) }')
    plan[$t]+="${plan[$t]:+ + }${k[$t]}x$((t1 - t0))"
  done
  echo "round $r: $((t1 - t0)) s, $(for t in "${!k[@]}"; do printf '%s:%s ' "$t" "${k[$t]}"; done)"
  unset k
done

status=0
{
  echo "campaign: $(date -u +%Y-%m-%dT%H:%MZ), $cores cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(($(date +%s) - start)) s, goal $runs"
  printf '%-22s %-22s %12s %12s %12s %8s %8s\n' target 'cores x seconds' core-seconds executions 'per core-s' crashes corpus
  for t in "${targets[@]}"; do
    crashes=$(find "$work/crashes/$t" -type f | wc -l)
    [ "$crashes" -eq 0 ] || status=1
    per=$(awk -v n="${done_runs[$t]}" -v cs="${core_secs[$t]}" 'BEGIN { printf "%.0f", (cs > 0 ? n / cs : 0) }')
    printf '%-22s %-22s %12s %12s %12s %8s %8s\n' "fuzz_$t" "${plan[$t]:--}" "${core_secs[$t]}" "${done_runs[$t]}" "$per" \
      "$crashes" "$(find "$work/$t" -type f | wc -l)"
  done
  # fuzz_calib_db says how many of its inputs changed the DB.
  if [ -d "$work/logs/calib_db" ]; then
    cat "$work/logs/calib_db"/*.log 2>/dev/null | awk '/^fuzz_calib_db: [0-9]+ of [0-9]+ SQL inputs/ { c += $2; a += $4; r += $10 }
      END { if (a) printf "fuzz_calib_db: %d of %d SQL inputs changed the DB, %d of them into one not seen before (its process ran the readers)\n", c, a, r }'
  fi
} | tee "$work/summary.txt"
exit $status
