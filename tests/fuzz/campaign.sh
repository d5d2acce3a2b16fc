#!/usr/bin/env bash
# One fuzzing campaign: each target in turn (never two at once) until it has
# run RUNS inputs (default 10 M) or SECONDS have passed (default 1800), at
# nice 15 so that builds and tests on the same cores go first. The corpus of
# each target persists in WORKDIR/TARGET (default build-fuzz/campaign), seeded
# from tests/fuzz/corpus and the project's own fixtures (experiment configs,
# shipped traces, the BurstGPT sample, calibration raw files), cut to the
# target's -max_len. Prints one line per target: executions, seconds, exit.
# A crash stops that target and leaves the input in WORKDIR/crashes/TARGET/.
# Usage: tests/fuzz/campaign.sh BUILD_DIR [RUNS] [SECONDS] [TARGET...]
set -u
build=${1:?build dir configured with -DINFSIM_FUZZ=ON}
runs=${2:-10000000}
secs=${3:-1800}
shift $(( $# >= 3 ? 3 : $# ))
src=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$src/../.." && pwd)
work=${WORKDIR:-$build/campaign}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(trace_csv config workload calib_raw import_burstgpt import_mooncake import_azure costmodel calib_db)

# Longest input worth mutating: a few KB covers every syntax the readers
# know (a header, quoting, several rows or keys); longer inputs only slow
# each execution down.
max_len_of() {
  case $1 in
    costmodel) echo 256 ;;
    workload) echo 1024 ;;
    calib_db) echo 1024 ;;
    *) echo 4096 ;;
  esac
}

# head -c cut to whole lines, so a fixture stays a valid file.
head_lines() { head -c "$2" "$1" | sed '$d'; }

seed_fixtures() {
  local t=$1 dir=$2 len=$3 f
  case $t in
    config)
      for f in "$root"/experiments/*/*.yaml "$root"/experiments/*/*/*.yaml; do
        [ -f "$f" ] && head -c "$len" "$f" >"$dir/fixture-$(basename "$(dirname "$f")")-$(basename "$f")"
      done ;;
    trace_csv)
      for f in "$root"/data/traces/*.csv; do head_lines "$f" "$len" >"$dir/fixture-$(basename "$f")"; done ;;
    import_burstgpt)
      { printf '\0\0\0\0\0\0'; head_lines "$root/tests/fixtures/burstgpt-sample.csv" $((len - 6)); } >"$dir/fixture-sample" ;;
    import_azure)
      # The Azure format is TIMESTAMP,ContextTokens,GeneratedTokens.
      { printf '\0\0\0\0\0\0'; printf 'TIMESTAMP,ContextTokens,GeneratedTokens\n';
        tail -n +2 "$root/data/traces/azure-code.csv" | head -40 |
          awk -F, '{ s = int($1); printf "2023-11-16 18:%02d:%02d.%06d0,%d,%d\n", s / 60, s % 60, ($1 - s) * 1e6, $2, $3 }'; } >"$dir/fixture-code" ;;
    calib_raw)
      for f in "$root"/data/calibration/raw-h200-llama2-7b.csv; do head_lines "$f" "$len" >"$dir/fixture-$(basename "$f")"; done ;;
  esac
}

mkdir -p "$work"
status=0
for t in "${targets[@]}"; do
  len=$(max_len_of "$t")
  mkdir -p "$work/$t" "$work/crashes/$t"
  seed_fixtures "$t" "$work/$t" "$len"
  start=$(date +%s)
  nice -n 15 "$build/tests/fuzz/fuzz_$t" -runs="$runs" -max_total_time="$secs" -max_len="$len" -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$work/crashes/$t/" "$work/$t" "$src/corpus/$t" >"$work/$t.log" 2>&1
  rc=$?
  end=$(date +%s)
  n=$(grep -o 'number_of_executed_units: [0-9]*' "$work/$t.log" | awk '{print $2}')
  echo "fuzz_$t: ${n:-0} executions in $((end - start)) s, max_len $len, exit $rc"
  if [ $rc -ne 0 ]; then
    status=1
    grep -E 'ERROR|invariant|SUMMARY|Test unit written' "$work/$t.log" | head -5
  fi
done
exit $status
