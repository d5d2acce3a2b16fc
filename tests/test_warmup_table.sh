#!/usr/bin/env bash
# bench/fidelity/warmup_table.py on runs built by hand: cold runs whose
# first iteration takes 150, 160 and 140 ms and warm runs at 100, 104 and
# 98 ms (medians 150 and 100: +50.0 ms), each followed by iterations of
# 20, 30 ms and a rest of 5, 7, 9 ms (median 7.00). A run with fewer than
# four iterations is refused, and a directory without runs too.
set -u
SRC=${INFSIM_SRC:?source tree}
command -v python3 >/dev/null || exit 77
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
run() { # DIR FIRST_MS
  mkdir -p "$W/$1"
  {
    echo "instance,start_s,end_s,steps,prefill_tokens,prefill_attention_pairs,decode_requests"
    awk -v f="$2" 'BEGIN {
      t = 0; n = split(f ",20,30,5,7,9", ms, ",")
      for (i = 1; i <= n; i++) { printf "0,%.6f,%.6f,1,%d,0,%d\n", t, t + ms[i] / 1e3, (i == 1 ? 4808 : 0), (i > 1 ? 1 : 0); t += ms[i] / 1e3 }
    }'
  } > "$W/$1/iterations.csv"
}
run cold-1 150; run warm-1 100; run cold-2 160; run warm-2 104; run cold-3 140; run warm-3 98
python3 "$SRC/bench/fidelity/warmup_table.py" "$W" > "$W/out" 2>&1 || { cat "$W/out"; fail "exit $?"; }
grep -qF "| cold-2 | 160.0 (4808) | 20.0 (0) | 30.0 (0) | 7.00 |" "$W/out" || { cat "$W/out"; fail "cold-2's row"; }
grep -qF "first iteration, median: 150.0 ms without the warm-up, 100.0 ms with it (+50.0 ms)" "$W/out" ||
  { cat "$W/out"; fail "the medians"; }
# Runs in round order: cold-1, warm-1, cold-2, ...
[ "$(grep -oE '^\| (cold|warm)-[0-9]' "$W/out" | tr -d '| ' | tr '\n' ' ')" = "cold-1 warm-1 cold-2 warm-2 cold-3 warm-3 " ] ||
  { cat "$W/out"; fail "run order"; }
head -4 "$W/cold-1/iterations.csv" > "$W/short" && mkdir -p "$W/s/cold-1" && mv "$W/short" "$W/s/cold-1/iterations.csv"
python3 "$SRC/bench/fidelity/warmup_table.py" "$W/s" > "$W/out" 2>&1 && fail "3 iterations accepted"
grep -qF "cold-1: 3 iterations, need at least 4" "$W/out" || { cat "$W/out"; fail "short run message"; }
mkdir -p "$W/none"
python3 "$SRC/bench/fidelity/warmup_table.py" "$W/none" > "$W/out" 2>&1 && fail "no runs accepted"
grep -qF "no cold-N or warm-N run" "$W/out" || { cat "$W/out"; fail "no runs message"; }
echo ok
