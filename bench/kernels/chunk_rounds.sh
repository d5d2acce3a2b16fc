#!/usr/bin/env bash
# chunk_rounds.sh ROUNDS [FIRST]: rounds of `bench_kernels --only chunk_cmp`
# (chunks after a cached prefix, each beside a fresh prompt of as many
# query-key pairs, timed in the same round) in the folder device_call.sh
# runs in (bin/, bench/, .devlibs/; device_call.sh's step chunks=ROUNDS sets
# the library path). Round i (FIRST, FIRST+1, ...) sets
# INFSIM_BENCH_ROUND=i, which rotates the order of each shape's calls, so
# that no variant and not the fresh prompt is always first on a card whose
# clock drifts as it heats (kernels/NOTES.md 17). Writes under $OUT:
# chunk-rounds/round<i>.csv, chunk-rounds.log (the bench's stderr),
# chunk-clocks.csv (SM clock and power every 500 ms), chunk-rounds-all.csv
# and the table of rounds_summary.py on stdout.
set -u
cd "$(dirname "$0")/../.."
. bench/kernels/rounds_lib.sh
rounds_begin "chunk_rounds.sh ROUNDS [FIRST]" chunk-rounds chunk-clocks.csv "$@"
for ((i = first; i < first + rounds; i++)); do
  t0=$(date +%s)
  INFSIM_BENCH_ROUND=$i timeout 120 bin/bench_kernels --out "$out/chunk-rounds/round$i.csv" --only chunk_cmp ${WARM_MS:+--warm-ms $WARM_MS} \
    2>> "$out/chunk-rounds.log" || echo "round $i: bench exit $?"
  echo "chunk round $i: $(($(date +%s) - t0)) s"
done
kill "$smi" 2>/dev/null
python3 bench/kernels/rounds_summary.py --out "$out/chunk-rounds-all.csv" "$out"/chunk-rounds/round*.csv
