#!/usr/bin/env bash
# prefill_rounds.sh ROUNDS [FIRST]: rounds of `bench_kernels --only prefill_cmp`
# with torch's SDPA (cuDNN, flash) timed in the same call, in the folder
# device_call.sh runs in (bin/, bench/, .devlibs/), through its step
# rounds=ROUNDS (which sets the library path). Round i (FIRST, FIRST+1,
# ...) sets INFSIM_BENCH_ROUND=i, which rotates the order of each shape's
# variants (auto, 10, 11, 13, 14); torch runs after the round's own kernels
# in even rounds and before them in odd ones, so that no kernel, cuDNN
# included, always runs first or last on a card whose clock drifts as it
# heats (kernels/NOTES.md 17; torch first needs an earlier round's shapes,
# so a call's first round has it last). Writes under $OUT: rounds/round<i>.csv (the
# round's rows, then torch's), rounds.log (bench and torch stderr),
# clocks.csv (SM clock and power every 500 ms); rounds_summary.py takes the
# medians.
set -u
cd "$(dirname "$0")/../.."
. bench/kernels/rounds_lib.sh
rounds_begin "prefill_rounds.sh ROUNDS [FIRST]" rounds clocks.csv "$@"
tmp=$(mktemp -d)
torch_rows() { # $1: a CSV of this bench's prefill rows (for the shapes); torch's rows to $2
  timeout 120 python3 bench/kernels/torch_ref.py --ours "$1" --out "$tmp/both.csv" --summary "$tmp/summary.md" ${WARM_MS:+--warm-ms $WARM_MS} \
    2>> "$out/rounds.log" > /dev/null || echo "torch_ref exit $?"
  awk -F, 'FNR > 1 && $1 == "torch"' "$tmp/both.csv" > "$2"
}
shapes=""
for ((i = first; i < first + rounds; i++)); do
  t0=$(date +%s)
  ours=$tmp/ours$i.csv
  place="torch last"
  if [ $((i % 2)) = 1 ] && [ -n "$shapes" ]; then
    torch_rows "$shapes" "$tmp/torch$i.csv"
    place="torch first"
  fi
  INFSIM_BENCH_ROUND=$i timeout 200 bin/bench_kernels --out "$ours" --only prefill_cmp ${WARM_MS:+--warm-ms $WARM_MS} 2>> "$out/rounds.log" ||
    echo "round $i: bench exit $?"
  [ -s "$ours" ] || continue
  [ -f "$tmp/torch$i.csv" ] || torch_rows "$ours" "$tmp/torch$i.csv"
  shapes=$ours
  cat "$ours" "$tmp/torch$i.csv" > "$out/rounds/round$i.csv"
  echo "round $i ($place): $(($(date +%s) - t0)) s"
done
kill "$smi" 2>/dev/null
python3 bench/kernels/rounds_summary.py --out "$out/rounds-all.csv" "$out"/rounds/round*.csv
