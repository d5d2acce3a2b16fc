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

. "$src/seeds.sh"

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
