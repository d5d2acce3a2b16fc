#!/usr/bin/env bash
# test_trace_import.sh: `infsim trace import` on small inputs written here and on
# tests/fixtures/burstgpt-sample.csv. Checks every malformed-row class of each
# importer (exit 2, FILE:LINE: FIELD in the message, no output and no temporary
# file left), --skip-bad, and every option against a Python model of the
# documented semantics (docs/traces.md), computed from the source text.
set -u
INFSIM=${INFSIM:?path of the infsim CLI}
SRC=${INFSIM_SRC:?source tree}
command -v python3 >/dev/null || { echo "python3 missing: skipped"; exit 77; }
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
FIX=$SRC/tests/fixtures/burstgpt-sample.csv

# expect_bad FORMAT FILE WANT: exit 2, message names WANT, nothing written.
expect_bad() {
  local fmt=$1 file=$2 want=$3
  rm -f "$W/out.csv"
  "$INFSIM" trace import "$fmt" "$file" -o "$W/out.csv" 2>"$W/err"
  local rc=$?
  [ $rc -eq 2 ] || fail "$fmt $(basename "$file"): exit $rc, want 2 ($(cat "$W/err"))"
  grep -qF -- "$want" "$W/err" || fail "$fmt: message '$(cat "$W/err")' lacks '$want'"
  [ ! -e "$W/out.csv" ] || fail "$fmt: output written despite a malformed row"
  ls "$W" | grep -q 'out.csv.tmp' && fail "$fmt: temporary file left behind"
  return 0
}

# ---- Azure: each malformed class ----
H='TIMESTAMP,ContextTokens,GeneratedTokens'
R1='2023-11-16 18:17:03.9799600,4808,10'
az() { printf '%s\n' "$@" >"$W/az.csv"; }
az 'TIMESTAMP,ContextTokens' "$R1";                       expect_bad azure "$W/az.csv" "az.csv:1: header: missing column 'GeneratedTokens'"
az "$H" "$R1" '2023-11-16 18:17:0x.9799600,1,1';         expect_bad azure "$W/az.csv" "az.csv:3: TIMESTAMP: not a timestamp"
az "$H" "$R1" '2023-11-16 18:17:04.1234567890,1,1';      expect_bad azure "$W/az.csv" "az.csv:3: TIMESTAMP: not a timestamp"
az "$H" '2023-02-29 18:17:04.1,1,1';                     expect_bad azure "$W/az.csv" "az.csv:2: TIMESTAMP: date or time out of range"
az "$H" '9999-12-31 23:59:59.0,1,1';                      expect_bad azure "$W/az.csv" "az.csv:2: TIMESTAMP: date or time out of range"
az "$H" "$R1" '2023-11-16 24:00:00.0,1,1';               expect_bad azure "$W/az.csv" "az.csv:3: TIMESTAMP: date or time out of range"
az "$H" "$R1" '2023-11-16 18:17:04.0,12a,1';             expect_bad azure "$W/az.csv" "az.csv:3: ContextTokens: not an integer: '12a'"
az "$H" "$R1" '2023-11-16 18:17:04.0,12,-1';             expect_bad azure "$W/az.csv" "az.csv:3: GeneratedTokens: negative: '-1'"
az "$H" "$R1" '2023-11-16 18:17:04.0,12';                expect_bad azure "$W/az.csv" "az.csv:3: GeneratedTokens: missing (the row has 2 fields)"
az "$H" "$R1" '2023-11-16 18:17:03.9799599,1,1';         expect_bad azure "$W/az.csv" "az.csv:3: TIMESTAMP: goes back in time (100 ns before line 2"
az "$H" "$R1" '"2023-11-16 18:17:04.0,1,1';              expect_bad azure "$W/az.csv" "az.csv:3: row: unterminated quoted field"
: >"$W/az.csv";                                           expect_bad azure "$W/az.csv" "az.csv:1: header: the file is empty"
az "$H" '2023-11-16 18:17:04.0,0,5';                     expect_bad azure "$W/az.csv" "no requests left to write"
expect_bad azure "$W/none.csv" "none.csv: cannot open"

# Azure arrivals: exact to 100 ns across midnight and a leap day (integer day arithmetic).
az "$H" '2024-02-28 23:59:59.9999999,5,1' '2024-02-29 00:00:00,6,2' '2024-03-01 00:00:00.0000001,7,3' '2024-03-01 00:00:00.0000001,8,4'
"$INFSIM" trace import azure "$W/az.csv" -o "$W/out.csv" 2>"$W/err" || fail "azure import: $(cat "$W/err")"
printf 'arrival_time_s,prompt_tokens,output_tokens\n0,5,1\n0.0000001,6,2\n86400.0000002,7,3\n86400.0000002,8,4\n' >"$W/want.csv"
cmp -s "$W/out.csv" "$W/want.csv" || fail "azure leap-day arrivals: $(cat "$W/out.csv")"

# ---- Mooncake: each malformed class ----
M1='{"timestamp": 0, "input_length": 600, "output_length": 10, "hash_ids": [0, 1]}'
mc() { printf '%s\n' "$@" >"$W/mc.jsonl"; }
mc "$M1" '{"timestamp": 5, "input_length": 6'                                      ; expect_bad mooncake "$W/mc.jsonl" "mc.jsonl:2: json: "
mc "$M1" '[1, 2]'                                                                   ; expect_bad mooncake "$W/mc.jsonl" "mc.jsonl:2: json: not an object"
mc "$M1" '{"timestamp": 5, "output_length": 1, "hash_ids": []}'                     ; expect_bad mooncake "$W/mc.jsonl" "mc.jsonl:2: input_length: missing"
mc "$M1" '{"timestamp": 5, "input_length": "6", "output_length": 1, "hash_ids": []}'; expect_bad mooncake "$W/mc.jsonl" "mc.jsonl:2: input_length: not an integer"
mc "$M1" '{"timestamp": 5, "input_length": 6, "output_length": -1, "hash_ids": []}' ; expect_bad mooncake "$W/mc.jsonl" "mc.jsonl:2: output_length: negative"
mc "$M1" '{"timestamp": 5.5, "input_length": 6, "output_length": 1, "hash_ids": []}'; expect_bad mooncake "$W/mc.jsonl" "mc.jsonl:2: timestamp: not an integer"
mc "$M1" '{"timestamp": 5, "input_length": 6, "output_length": 1}'                  ; expect_bad mooncake "$W/mc.jsonl" "mc.jsonl:2: hash_ids: missing"
mc "$M1" '{"timestamp": 5, "input_length": 6, "output_length": 1, "hash_ids": 3}'   ; expect_bad mooncake "$W/mc.jsonl" "mc.jsonl:2: hash_ids: not an array"
mc "$M1" '{"timestamp": 5, "input_length": 6, "output_length": 1, "hash_ids": [1, -2]}'; expect_bad mooncake "$W/mc.jsonl" "mc.jsonl:2: hash_ids: element 1 is not a non-negative integer"
mc '{"timestamp": 9, "input_length": 6, "output_length": 1, "hash_ids": []}' "$M1"  ; expect_bad mooncake "$W/mc.jsonl" "mc.jsonl:2: timestamp: goes back in time"
mc "$M1" '{"timestamp": 5, "timestamp": 6, "input_length": 6, "output_length": 1, "hash_ids": []}'; expect_bad mooncake "$W/mc.jsonl" "mc.jsonl:2: json: "

# ---- BurstGPT: each malformed class ----
BH='Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type'
B1='5,ChatGPT,472,18,490,Conversation log'
bg() { printf '%s\n' "$@" >"$W/bg.csv"; }
bg 'Timestamp,Request tokens,Response tokens' '5,1,1'; expect_bad burstgpt "$W/bg.csv" "bg.csv:1: header: missing column 'Model'"
bg "$BH" "$B1" 'abc,ChatGPT,1,1,2,API log';          expect_bad burstgpt "$W/bg.csv" "bg.csv:3: Timestamp: not a number: 'abc'"
bg "$BH" "$B1" '6,ChatGPT,1.5,1,2,API log';          expect_bad burstgpt "$W/bg.csv" "bg.csv:3: Request tokens: not an integer: '1.5'"
bg "$BH" "$B1" '6,ChatGPT,1,-3,2,API log';           expect_bad burstgpt "$W/bg.csv" "bg.csv:3: Response tokens: negative: '-3'"
bg "$BH" "$B1" '6,ChatGPT,1';                        expect_bad burstgpt "$W/bg.csv" "bg.csv:3: Response tokens: missing (the row has 3 fields)"
bg "$BH" "$B1" '4,ChatGPT,1,1,2,API log';            expect_bad burstgpt "$W/bg.csv" "bg.csv:3: Timestamp: goes back in time"
bg "$BH" "$B1" '6,"Chat"GPT,1,1,2,API log';          expect_bad burstgpt "$W/bg.csv" "bg.csv:3: row: text after a closing quote"

# --skip-bad: the two bad rows are skipped, counted, and the first one named.
bg "$BH" "$B1" 'abc,ChatGPT,1,1,2,API log' '6,ChatGPT,7,8,15,API log' '4,GPT-4,1,1,2,API log' '9,GPT-4,3,4,7,API log'
"$INFSIM" trace import burstgpt "$W/bg.csv" -o "$W/out.csv" --skip-bad 2>"$W/err" || fail "--skip-bad exit $?"
printf 'arrival_time_s,prompt_tokens,output_tokens\n0,472,18\n1,7,8\n4,3,4\n' >"$W/want.csv"
cmp -s "$W/out.csv" "$W/want.csv" || fail "--skip-bad output: $(cat "$W/out.csv")"
grep -q '2 malformed' "$W/err" && grep -q 'first malformed row: .*bg.csv:3' "$W/err" || fail "--skip-bad report: $(cat "$W/err")"

# ---- options on the BurstGPT fixture, against a Python model of docs/traces.md ----
python3 - "$FIX" "$W/big.csv" <<'PY'
import csv, random, sys
# A larger BurstGPT-shaped file for sampling: 4000 rows, two models, 10% failed.
r = random.Random(5); t = 0
with open(sys.argv[2], 'w', newline='') as f:
    w = csv.writer(f); w.writerow(['Timestamp', 'Model', 'Request tokens', 'Response tokens', 'Total tokens', 'Log Type'])
    for i in range(4000):
        t += r.randint(0, 3); p = r.randint(1, 4000); o = 0 if r.random() < 0.1 else r.randint(1, 900)
        w.writerow([t, r.choice(['ChatGPT', 'GPT-4']), p, o, p + o, 'API log'])
PY
model() { # model FILE [key=value...]: the expected CSV from the documented semantics
  python3 - "$@" <<'PY'
import csv, sys
from decimal import Decimal, ROUND_HALF_UP
src = sys.argv[1]; o = dict(a.split('=', 1) for a in sys.argv[2:])
speed = Decimal(o.get('speedup', '1')); start = Decimal(o.get('start', '0')); end = o.get('end')
rows = list(csv.DictReader(open(src)))
t0 = Decimal(rows[0]['Timestamp'])
out = ['arrival_time_s,prompt_tokens,output_tokens']
for r in rows:
    rel = Decimal(r['Timestamp']) - t0
    if rel < start: continue
    if end is not None and rel >= Decimal(end): break
    if 'model' in o and r['Model'] != o['model']: continue
    p, q = int(r['Request tokens']), int(r['Response tokens'])
    if p == 0 or q == 0:
        if 'keep_zero' not in o: continue
        p, q = max(p, 1), max(q, 1)
    if 'max_prompt' in o: p = min(p, int(o['max_prompt']))
    if 'max_output' in o: q = min(q, int(o['max_output']))
    ns = int(((rel - start) * 10**9 / speed).to_integral_value(rounding=ROUND_HALF_UP))
    s = f"{ns // 10**9}" + (f".{ns % 10**9:09d}".rstrip('0') if ns % 10**9 else '')
    out.append(f"{s},{p},{q}")
print('\n'.join(out))
PY
}
check_opts() { # check_opts "infsim options" "model options"
  "$INFSIM" trace import burstgpt "$FIX" -o "$W/out.csv" $1 2>"$W/err" || fail "import $1: $(cat "$W/err")"
  model "$FIX" $2 >"$W/want.csv"
  cmp -s "$W/out.csv" "$W/want.csv" || { diff "$W/out.csv" "$W/want.csv" | head; fail "import $1 differs from the model"; }
}
check_opts "" ""
grep -q '5 zero-length' "$W/err" || fail "zero-length rows not reported: $(cat "$W/err")"
[ "$(awk -F, 'NR > 1 && ($3 == 0 || $4 == 0)' "$FIX" | wc -l)" -eq 5 ] || fail "fixture should hold 5 zero-token rows"
check_opts "--model GPT-4" "model=GPT-4"
n_other=$(awk -F, 'NR > 1 && $2 != "GPT-4"' "$FIX" | wc -l)
grep -q "$n_other other model" "$W/err" || fail "model filter count (want $n_other): $(cat "$W/err")"
check_opts "--keep-zero" "keep_zero=1"
grep -q '5 zero counts raised to 1' "$W/err" || fail "--keep-zero report: $(cat "$W/err")"
check_opts "--speedup 3" "speedup=3"
check_opts "--start-s 100 --end-s 800.5" "start=100 end=800.5"
grep -q 'stopped at the window end' "$W/err" || fail "window end not reported"
check_opts "--max-prompt-tokens 1000 --max-output-tokens 100 --keep-zero" "max_prompt=1000 max_output=100 keep_zero=1"
n_cp=$(awk -F, 'NR > 1 && $3 > 1000' "$FIX" | wc -l); n_co=$(awk -F, 'NR > 1 && $4 > 100' "$FIX" | wc -l)
grep -q "$n_cp prompts and $n_co outputs capped" "$W/err" || fail "cap counts (want $n_cp, $n_co): $(cat "$W/err")"
# --name=VALUE is --name VALUE.
check_opts "--model=GPT-4 --speedup=3 --start-s=100 --end-s=800.5 --max-prompt-tokens=1000 --max-output-tokens=100" \
  "model=GPT-4 speedup=3 start=100 end=800.5 max_prompt=1000 max_output=100"

# sampling: deterministic per seed, a subsequence of the full import, size within 5 sd.
"$INFSIM" trace import burstgpt "$W/big.csv" -o "$W/all.csv" 2>/dev/null || fail "big import"
"$INFSIM" trace import burstgpt "$W/big.csv" -o "$W/s1.csv" --sample 0.25 --seed 3 2>/dev/null || fail "sample"
"$INFSIM" trace import burstgpt "$W/big.csv" -o "$W/s2.csv" --sample 0.25 --seed 3 2>/dev/null || fail "sample"
"$INFSIM" trace import burstgpt "$W/big.csv" -o "$W/s3.csv" --sample 0.25 --seed 4 2>"$W/err" || fail "sample"
cmp -s "$W/s1.csv" "$W/s2.csv" || fail "same --seed gave different samples"
cmp -s "$W/s1.csv" "$W/s3.csv" && fail "different --seed gave the same sample"
"$INFSIM" trace import burstgpt "$W/big.csv" --out="$W/s4.csv" --sample=0.25 --seed=3 2>/dev/null || fail "sample ="
cmp -s "$W/s1.csv" "$W/s4.csv" || fail "--name=VALUE gave another sample than --name VALUE"
python3 - "$W/all.csv" "$W/s1.csv" <<'PY' || fail "sample is not a subsequence of the full import or its size is off"
import sys
full = open(sys.argv[1]).read().split('\n')[1:-1]; s = open(sys.argv[2]).read().split('\n')[1:-1]
it = iter(full)
assert all(any(x == y for y in it) for x in s), "not a subsequence"
n = len(full); sd = (n * 0.25 * 0.75) ** 0.5
assert abs(len(s) - 0.25 * n) <= 5 * sd, (len(s), n)
PY
n_all=$(($(wc -l <"$W/all.csv") - 1)); n_s3=$(($(wc -l <"$W/s3.csv") - 1))
grep -q "$((n_all - n_s3)) sampled out" "$W/err" || fail "sampled-out count: $(cat "$W/err")"

# bad options are bad input
for bad in "--speedup 1e-9" "--speedup 0" "--speedup x" "--sample 1.5" "--start-s 5 --end-s 5" "--max-prompt-tokens 0" "--bogus 1"; do
  "$INFSIM" trace import burstgpt "$FIX" -o "$W/out.csv" $bad 2>/dev/null
  [ $? -eq 2 ] || fail "option '$bad' not rejected with exit 2"
done
rm -f "$W/out.csv"
"$INFSIM" trace import burstgpt "$FIX" -o "$W/out.csv" --speedup= 2>"$W/err"; rc=$?
[ $rc -eq 2 ] && [ "$(wc -l <"$W/err")" -eq 1 ] && grep -qF -- "--speedup: not a number" "$W/err" ||
  fail "--speedup=: exit $rc, message '$(cat "$W/err")'"
[ ! -e "$W/out.csv" ] || fail "--speedup=: output written"
"$INFSIM" trace import azure "$FIX" -o "$W/out.csv" --model GPT-4 2>/dev/null; [ $? -eq 2 ] || fail "--model with azure accepted"
"$INFSIM" trace import parquet "$FIX" -o "$W/out.csv" 2>/dev/null; [ $? -eq 2 ] || fail "unknown format accepted"
"$INFSIM" trace import --help | grep -q -- '--skip-bad' || fail "import --help"
# Azure years 1900..2200 (issue 14): 250 years apart fits int64 ns and is
# imported exactly (the days by Python's calendar); 300 years apart does not,
# and the row is refused by name, with --skip-bad counting it as malformed,
# never dropped silently as out of window.
az "$H" '1900-01-01 00:00:00,5,5' '2150-01-01 00:00:00,6,6'
"$INFSIM" trace import azure "$W/az.csv" -o "$W/out.csv" --speedup 100 2>"$W/err" || fail "250 years: $(cat "$W/err")"
want=$(python3 -c "import datetime as d; print(int((d.datetime(2150,1,1)-d.datetime(1900,1,1)).total_seconds()) // 100)")
[ "$(sed -n 3p "$W/out.csv")" = "$want,6,6" ] || fail "250 years: got '$(sed -n 3p "$W/out.csv")', want '$want,6,6'"
az "$H" '1900-01-01 00:00:00,5,5' '2200-01-01 00:00:00,6,6' '2200-01-01 00:00:01,7,7'
"$INFSIM" trace import azure "$W/az.csv" -o "$W/out.csv" --speedup 1000 --skip-bad 2>"$W/err" || fail "300 years: $(cat "$W/err")"
grep -q "2 malformed" "$W/err" || fail "300 years apart not counted as malformed: $(cat "$W/err")"
grep -q "0 out of window" "$W/err" || fail "300 years apart counted as out of window: $(cat "$W/err")"
[ "$(wc -l <"$W/out.csv")" -eq 2 ] || fail "300 years: rows written past the span"
# Epoch times: a Mooncake or BurstGPT source time may be the Unix epoch's
# (1.7e12 ms, 1.7e9 s), far past the 1e9 s an arrival may reach; only the
# arrival, the time since the first row, is held to 1e9 s. BurstGPT's
# fractional seconds stay exact (the Python Decimal model) past a double's
# 2^53 ns.
mc '{"timestamp": 1700000000000, "input_length": 6, "output_length": 1, "hash_ids": [4]}' \
   '{"timestamp": 1700000000010, "input_length": 7, "output_length": 2, "hash_ids": [5, 6]}'
"$INFSIM" trace import mooncake "$W/mc.jsonl" -o "$W/out.csv" 2>"$W/err" || fail "mooncake epoch ms: $(cat "$W/err")"
printf 'arrival_time_s,prompt_tokens,output_tokens,prefix_hashes\n0,6,1,4\n0.01,7,2,5 6\n' >"$W/want.csv"
cmp -s "$W/out.csv" "$W/want.csv" || fail "mooncake epoch ms: $(cat "$W/out.csv")"
bg "$BH" '1700000000.123456789,ChatGPT,5,6,11,x' '1700000000.5,ChatGPT,7,8,15,x' '1700000000.5000000005,GPT-4,9,1,10,x' \
   '1700086400,ChatGPT,2,3,5,x'
"$INFSIM" trace import burstgpt "$W/bg.csv" -o "$W/out.csv" 2>"$W/err" || fail "burstgpt epoch s: $(cat "$W/err")"
model "$W/bg.csv" >"$W/want.csv"
cmp -s "$W/out.csv" "$W/want.csv" || { diff "$W/out.csv" "$W/want.csv"; fail "burstgpt epoch s differs from the model"; }
grep -q '^0.376543212,9,1$' "$W/out.csv" || fail "burstgpt epoch s: sub-ns rounding lost: $(cat "$W/out.csv")"
# the cap is on the arrival: 1e9 s after the first row (epoch or not) is the last one allowed
mc '{"timestamp": 1700000000000, "input_length": 6, "output_length": 1, "hash_ids": []}' \
   '{"timestamp": 2700000000000, "input_length": 6, "output_length": 1, "hash_ids": []}' \
   '{"timestamp": 2700000000001, "input_length": 6, "output_length": 1, "hash_ids": []}'
expect_bad mooncake "$W/mc.jsonl" "mc.jsonl:3: arrival passes 1000000000 s after --speedup 1"
head -2 "$W/mc.jsonl" >"$W/mc2.jsonl"
"$INFSIM" trace import mooncake "$W/mc2.jsonl" -o "$W/out.csv" 2>"$W/err" || fail "1e9 s arrival: $(cat "$W/err")"
[ "$(tail -1 "$W/out.csv")" = "1000000000,6,1," ] || fail "1e9 s arrival: $(tail -1 "$W/out.csv")"
bg "$BH" '0.5,ChatGPT,5,6,11,x' '1000000000.5,ChatGPT,5,6,11,x' '1000000000.500000001,ChatGPT,5,6,11,x'
expect_bad burstgpt "$W/bg.csv" "bg.csv:4: arrival passes 1000000000 s after --speedup 1"
# past int64 ns the source time itself is refused, the range named
mc '{"timestamp": 9223372036855, "input_length": 6, "output_length": 1, "hash_ids": []}'
expect_bad mooncake "$W/mc.jsonl" "mc.jsonl:1: timestamp: out of range (0 to 9223372036854 ms): '9223372036855'"
bg "$BH" '9223372036.854775808,ChatGPT,5,6,11,x'
expect_bad burstgpt "$W/bg.csv" "bg.csv:2: Timestamp: out of range (0 to 9223372036.854775807 s, the span of int64 ns): '9223372036.854775808'"
bg "$BH" '1e300,ChatGPT,5,6,11,x';   expect_bad burstgpt "$W/bg.csv" "bg.csv:2: Timestamp: out of range (0 to 9223372036.854775807 s"
bg "$BH" 'inf,ChatGPT,5,6,11,x';     expect_bad burstgpt "$W/bg.csv" "bg.csv:2: Timestamp: not a number: 'inf'"
bg "$BH" '-1700000000,ChatGPT,5,6,11,x'; expect_bad burstgpt "$W/bg.csv" "bg.csv:2: Timestamp: negative: '-1700000000'"
mc '{"timestamp": 1, "input_length": 1000000001, "output_length": 1, "hash_ids": []}'
expect_bad mooncake "$W/mc.jsonl" "mc.jsonl:1: input_length: out of range (0 to 1000000000 tokens): '1000000001'"
echo "ok: trace import malformed classes and options"
