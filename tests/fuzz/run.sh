#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 10) from its seeds, on a
# scratch copy of the corpus; a crash fails the run and leaves the input in
# CRASHDIR (default ./fuzz-crashes) to become a regression input
# (tests/fuzz/regress/TARGET/) and a test. Prints executions per target.
# Usage: tests/fuzz/run.sh BUILD_DIR [SECONDS] [TARGET...]
set -u
build=${1:?build dir configured with -DINFSIM_FUZZ=ON}
secs=${2:-10}
shift $(( $# >= 2 ? 2 : $# ))
src=$(cd "$(dirname "$0")" && pwd)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config workload trace_csv import_azure import_mooncake import_burstgpt calib_raw calib_db costmodel)
crashes=${CRASHDIR:-$PWD/fuzz-crashes}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for t in "${targets[@]}"; do
  mkdir -p "$work/$t" "$crashes/$t"
  "$build/tests/fuzz/fuzz_$t" -max_total_time="$secs" -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$crashes/$t/" "$work/$t" "$src/corpus/$t" >"$work/$t.log" 2>&1
  rc=$?
  n=$(grep -o 'number_of_executed_units: [0-9]*' "$work/$t.log" | awk '{print $2}')
  echo "fuzz_$t: ${n:-0} executions in ${secs} s, exit $rc"
  if [ $rc -ne 0 ]; then
    status=1
    grep -E 'ERROR|invariant|SUMMARY|Test unit written' "$work/$t.log" | head -5
  fi
done
exit $status
