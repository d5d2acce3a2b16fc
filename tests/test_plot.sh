#!/usr/bin/env bash
# test_plot.sh: `infsim plot` on a small synthetic run directory.
#
# Checks that every plot is written as a real image (PNG magic bytes, not
# trivially small), that the SVG titles carry the exact request counts the
# data preparation must produce (completed requests only; TPOT only for
# requests with >= 2 output tokens), that bad input exits 2 naming
# file:line, that a missing gnuplot exits 1 without touching earlier
# outputs, and that no temporary file is left behind. Exit 77 (skip) when
# gnuplot is not installed.
set -u

: "${INFSIM:?INFSIM must name the infsim binary}"
command -v gnuplot >/dev/null 2>&1 || { echo "gnuplot not installed: skipped"; exit 77; }

work=$(mktemp -d "${TMPDIR:-/tmp}/infsim_test_plot.XXXXXX")
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

run="$work/run"
mkdir -p "$run"

# 40 requests; every 8th is rejected (ids 0, 8, 16, 24, 32: 5 of them) and
# every 5th completed one has a single output token (no TPOT). Completed:
# 35; with TPOT: 35 minus the completed ids divisible by 5 but not by 8
# (5, 10, 15, 20, 25, 30, 35: 7), so 28.
awk 'BEGIN {
  print "id,arrival_s,prompt_tokens,output_tokens,status,reason,instance,first_token_s,finish_s,ttft_s,tpot_s,e2e_s,preemptions,instances_touched"
  for (i = 0; i < 40; i++) {
    a = i * 0.25
    if (i % 8 == 0) {
      printf "%d,%.3f,%d,%d,rejected,\"too long, over limit\",-1,,,,,,0,0\n", i, a, 5000, 10
      continue
    }
    out = (i % 5 == 0) ? 1 : 10 + i
    ttft = 0.05 + (i % 7) * 0.01
    tpot = 0.02 + (i % 3) * 0.005
    e2e = ttft + (out - 1) * tpot
    tp = (out >= 2) ? sprintf("%.6f", tpot) : ""
    printf "%d,%.3f,%d,%d,completed,,%d,%.6f,%.6f,%.6f,%s,%.6f,%d,%d\n", i, a, 100 + i, out, i % 2, a + ttft, a + e2e, ttft, tp, e2e, i % 3, 1 + i % 2
  }
}' >"$run/requests.csv"
awk 'BEGIN {
  print "time_s,instance,running,waiting,kv_used_blocks,kv_free_blocks,kv_lent_blocks,kv_borrowed_blocks"
  for (t = 0; t <= 40; t++)
    for (inst = 0; inst < 2; inst++) {
      used = int(100 * sin(t / 8) ^ 2) + inst * 20
      printf "%.2f,%d,%d,%d,%d,%d,%d,%d\n", t * 0.25, inst, t % 5 + inst, t % 3, used, 200 - used, inst * (t % 4), (1 - inst) * (t % 4)
    }
}' >"$run/timeseries.csv"

plots="kv_usage kv_borrowing requests ttft_cdf tpot_cdf e2e_cdf e2e_vs_arrival"

# --help works and names every plot.
help=$("$INFSIM" plot --help) || fail "plot --help exited $?"
for p in $plots; do
  grep -q "$p" <<<"$help" || fail "--help does not mention $p"
done

# PNG into the default DIR/plots, from another working directory.
(cd / && "$INFSIM" plot "$run" >"$work/stdout") || fail "plot exited $?"
for p in $plots; do
  f="$run/plots/$p.png"
  if [ ! -f "$f" ]; then
    fail "$f missing"
    continue
  fi
  magic=$(head -c 8 "$f" | od -An -tx1 | tr -d ' \n')
  [ "$magic" = "89504e470d0a1a0a" ] || fail "$f: not a PNG (magic $magic)"
  size=$(wc -c <"$f")
  [ "$size" -gt 5000 ] || fail "$f: only $size bytes"
  grep -qxF "$f" "$work/stdout" || fail "$f not listed on stdout"
done
leftovers=$(find "$run/plots" -name "*.tmp*" -o -name ".infsim-plot-*" | wc -l)
[ "$leftovers" -eq 0 ] || fail "$leftovers temporary files left in $run/plots"

# SVG into --out: the titles carry the counts of the prepared data.
svg="$work/svg"
"$INFSIM" plot "$run" --format svg --out "$svg" >/dev/null || fail "plot --format svg exited $?"
for p in $plots; do
  grep -q '<svg' "$svg/$p.svg" 2>/dev/null || fail "$svg/$p.svg missing or not SVG"
done
grep -q 'CDF of TTFT over 35 completed requests' "$svg/ttft_cdf.svg" || fail "TTFT CDF does not count 35 requests"
grep -q 'CDF of TPOT over 28 completed requests' "$svg/tpot_cdf.svg" || fail "TPOT CDF does not count 28 requests"
grep -q 'CDF of E2E latency over 35 completed requests' "$svg/e2e_cdf.svg" || fail "E2E CDF does not count 35"
grep -q '(35 completed requests)' "$svg/e2e_vs_arrival.svg" || fail "E2E scatter does not count 35"

# Headers only: every plot still appears, saying there is no data.
empty="$work/empty"
mkdir -p "$empty"
head -n 1 "$run/requests.csv" >"$empty/requests.csv"
head -n 1 "$run/timeseries.csv" >"$empty/timeseries.csv"
"$INFSIM" plot "$empty" --format svg >/dev/null || fail "plot of an empty run exited $?"
grep -q 'no data' "$empty/plots/ttft_cdf.svg" 2>/dev/null || fail "empty run: ttft_cdf.svg does not say 'no data'"

# expect_exit CODE PATTERN ARGS...: exit status and a one-line message.
expect_exit() {
  local want=$1 pattern=$2
  shift 2
  "$INFSIM" plot "$@" >/dev/null 2>"$work/stderr"
  local got=$?
  [ "$got" -eq "$want" ] || fail "plot $* exited $got, expected $want"
  grep -q -- "$pattern" "$work/stderr" || fail "plot $*: message '$(cat "$work/stderr")' lacks '$pattern'"
  [ "$(wc -l <"$work/stderr")" -eq 1 ] || fail "plot $*: message is not one line"
}

expect_exit 2 "$work/none/requests.csv: cannot open" "$work/none"
expect_exit 2 "expected png or svg" "$run" --format gif
expect_exit 2 "unknown option" "$run" --bogus

bad="$work/bad"
mkdir -p "$bad"
cp "$run/timeseries.csv" "$bad/"
sed '4s/,completed,,\([0-9]*\),\([0-9.]*\),\([0-9.]*\),[0-9.]*,/,completed,,\1,\2,\3,abc,/' "$run/requests.csv" >"$bad/requests.csv"
expect_exit 2 "$bad/requests.csv:4: ttft_s: expected a number, got 'abc'" "$bad"
sed '3s/,completed,/,finished,/' "$run/requests.csv" >"$bad/requests.csv"
expect_exit 2 "$bad/requests.csv:3: status: expected completed or rejected" "$bad"
sed '1s/e2e_s/e2e/' "$run/requests.csv" >"$bad/requests.csv"
expect_exit 2 "$bad/requests.csv:1: missing column 'e2e_s'" "$bad"
cp "$run/requests.csv" "$bad/"
sed '6s/,[0-9]*$//' "$run/timeseries.csv" >"$bad/timeseries.csv"
expect_exit 2 "$bad/timeseries.csv:6: expected 8 fields, got 7" "$bad"
sed '2s/^\([^,]*\),[0-9]*,/\1,-3,/' "$run/timeseries.csv" >"$bad/timeseries.csv"
expect_exit 2 "$bad/timeseries.csv:2: instance: expected an integer in \[0, 1e9\], got '-3'" "$bad"
# A directory that is not a run: refused, and no plots/ made inside it.
mkdir -p "$work/notrun"
expect_exit 2 "$work/notrun/requests.csv: cannot open" "$work/notrun"
[ -e "$work/notrun/plots" ] && fail "a refused plot left $work/notrun/plots behind"

# An --out where nothing may be created (the root of sysfs refuses even
# root): bad input, exit 2, naming the directory.
[ -d /sys/kernel ] && expect_exit 2 "/sys: cannot create a working directory" "$run" --out /sys

# No gnuplot on PATH: exit 1, and the earlier outputs stay as they were.
before=$(cksum <"$run/plots/kv_usage.png")
PATH=/nonexistent "$INFSIM" plot "$run" >/dev/null 2>"$work/stderr"
got=$?
[ "$got" -eq 1 ] || fail "plot without gnuplot exited $got, expected 1"
grep -q "gnuplot not found" "$work/stderr" || fail "no gnuplot: message '$(cat "$work/stderr")'"
[ "$(cksum <"$run/plots/kv_usage.png")" = "$before" ] || fail "kv_usage.png changed by a failed run"

# A gnuplot that fails or that a signal ends (a stand-in on PATH): its exit
# status or signal said as such (the words of compare --plot too), exit 1,
# the earlier outputs as they were.
mkdir -p "$work/bin"
for spec in 'exit 3|exited with status 3' 'kill -KILL $$|killed by signal 9'; do
  printf '#!/bin/sh\n%s\n' "${spec%%|*}" >"$work/bin/gnuplot"
  chmod +x "$work/bin/gnuplot"
  PATH="$work/bin:$PATH" "$INFSIM" plot "$run" >/dev/null 2>"$work/stderr"
  got=$?
  [ "$got" -eq 1 ] || fail "plot with gnuplot '${spec%%|*}' exited $got, expected 1"
  [ "$(cat "$work/stderr")" = "infsim plot: $work/bin/gnuplot ${spec#*|}; see its messages above" ] ||
    fail "gnuplot '${spec%%|*}': message '$(cat "$work/stderr")'"
  [ "$(cksum <"$run/plots/kv_usage.png")" = "$before" ] || fail "kv_usage.png changed by gnuplot '${spec%%|*}'"
done

if [ "$failures" -ne 0 ]; then
  echo "$failures failure(s)"
  exit 1
fi
echo "ok"
