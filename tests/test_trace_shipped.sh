#!/usr/bin/env bash
# test_trace_shipped.sh: the importers on the shipped public traces
# (../shared/data), against truth computed here from the source text by
# Python (integer date arithmetic for Azure, json for Mooncake): every row's
# arrival to the nanosecond, token counts, row counts, sums and time spans.
# Also: data/traces/azure-code.csv is exactly what the importer makes of the
# Azure file, and `trace stats --json` (the trace CSV reader) reads back the
# same counts and sums. Skipped (77) where ../shared/data is absent.
set -u
INFSIM=${INFSIM:?path of the infsim CLI}
SRC=${INFSIM_SRC:?source tree}
DATA=$SRC/../shared/data
AZ=$DATA/azure-2023-code.csv
MC=$DATA/mooncake-conversation.jsonl
[ -r "$AZ" ] && [ -r "$MC" ] || { echo "shared data missing: skipped"; exit 77; }
command -v python3 >/dev/null && command -v jq >/dev/null || { echo "python3 or jq missing: skipped"; exit 77; }
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$INFSIM" trace import azure "$AZ" -o "$W/az.csv" 2>"$W/err" || fail "azure import: $(cat "$W/err")"
"$INFSIM" trace import mooncake "$MC" -o "$W/mc.csv" 2>"$W/err" || fail "mooncake import: $(cat "$W/err")"

python3 - "$AZ" "$W/az.csv" "$MC" "$W/mc.csv" <<'PY' || fail "imports differ from the truth"
import calendar, csv, json, sys
from decimal import Decimal

def ns_of_text(s):  # our output's decimal seconds, exactly
    return int(Decimal(s) * 10**9)

# Azure: seconds since the epoch from the calendar, plus 7 fractional digits (100 ns units).
src = list(csv.DictReader(open(sys.argv[1])))
def az_ns(ts):
    date, time = ts.split(' ')
    hms, frac = time.split('.')
    y, mo, d = map(int, date.split('-')); h, mi, s = map(int, hms.split(':'))
    return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) * 10**9 + int(frac.ljust(9, '0'))
t0 = az_ns(src[0]['TIMESTAMP'])
out = list(csv.DictReader(open(sys.argv[2])))
assert len(out) == len(src), ('azure rows', len(out), len(src))
for i, (a, b) in enumerate(zip(src, out)):
    assert ns_of_text(b['arrival_time_s']) == az_ns(a['TIMESTAMP']) - t0, ('azure arrival', i + 2)
    assert int(b['prompt_tokens']) == int(a['ContextTokens']) and int(b['output_tokens']) == int(a['GeneratedTokens']), ('azure tokens', i + 2)
span = az_ns(src[-1]['TIMESTAMP']) - t0
print('azure: %d rows, %d prompt, %d output tokens, span %d ns' % (len(src), sum(int(r['ContextTokens']) for r in src),
      sum(int(r['GeneratedTokens']) for r in src), span))
assert span == 3435948056000  # 18:17:03.97996 -> 19:14:19.928016: 57 min 15.948056 s

# Mooncake: ms timestamps, hash ids in the prefix_hashes column.
src = [json.loads(l) for l in open(sys.argv[3]) if l.strip()]
out = list(csv.DictReader(open(sys.argv[4])))
assert len(out) == len(src), ('mooncake rows', len(out), len(src))
t0 = src[0]['timestamp']
for i, (a, b) in enumerate(zip(src, out)):
    assert ns_of_text(b['arrival_time_s']) == (a['timestamp'] - t0) * 10**6, ('mooncake arrival', i + 1)
    assert int(b['prompt_tokens']) == a['input_length'] and int(b['output_tokens']) == a['output_length'], ('mooncake tokens', i + 1)
    assert b['prefix_hashes'].split() == [str(x) for x in a['hash_ids']], ('mooncake hashes', i + 1)
print('mooncake: %d rows, %d prompt, %d output tokens, span %d ms' % (len(src), sum(r['input_length'] for r in src),
      sum(r['output_length'] for r in src), src[-1]['timestamp'] - t0))
PY

# Counts and sums once more with other tools (awk over the Azure text, jq over the JSON lines).
az_rows=$(awk 'NR > 1 && NF' "$AZ" | wc -l)
az_prompt=$(awk -F, 'NR > 1 && NF { s += $2 } END { printf "%d", s }' "$AZ")
az_output=$(awk -F, 'NR > 1 && NF { s += $3 } END { printf "%d", s }' "$AZ")
"$INFSIM" trace stats --json "$W/az.csv" >"$W/az.json" || fail "stats azure"
[ "$(jq .requests "$W/az.json")" -eq "$az_rows" ] || fail "azure requests $(jq .requests "$W/az.json") != $az_rows"
[ "$(jq .prompt_tokens.sum "$W/az.json")" -eq "$az_prompt" ] || fail "azure prompt sum"
[ "$(jq .output_tokens.sum "$W/az.json")" -eq "$az_output" ] || fail "azure output sum"
mc_rows=$(jq -s 'length' "$MC"); mc_prompt=$(jq -s 'map(.input_length) | add' "$MC")
mc_output=$(jq -s 'map(.output_length) | add' "$MC"); mc_span=$(jq -s '(.[-1].timestamp - .[0].timestamp) / 1000' "$MC")
"$INFSIM" trace stats --json "$W/mc.csv" >"$W/mc.json" || fail "stats mooncake"
[ "$(jq .requests "$W/mc.json")" -eq "$mc_rows" ] || fail "mooncake requests"
[ "$(jq .prompt_tokens.sum "$W/mc.json")" -eq "$mc_prompt" ] || fail "mooncake prompt sum"
[ "$(jq .output_tokens.sum "$W/mc.json")" -eq "$mc_output" ] || fail "mooncake output sum"
[ "$(jq ".duration_s == $mc_span" "$W/mc.json")" = true ] || fail "mooncake span $(jq .duration_s "$W/mc.json") != $mc_span"

# The shipped trace in the repository is this import, byte for byte.
cmp -s "$W/az.csv" "$SRC/data/traces/azure-code.csv" || fail "data/traces/azure-code.csv is not the import of $AZ"

# Window + speedup on the real file: the first hour's second half at 2x.
"$INFSIM" trace import azure "$AZ" -o "$W/win.csv" --start-s 1800 --end-s 2400 --speedup 2 2>/dev/null || fail "window"
want=$(awk -F, 'NR > 1 { t = $1 + 0; if (t >= 1800 && t < 2400) n++ } END { print n }' "$W/az.csv")
[ $(($(wc -l <"$W/win.csv") - 1)) -eq "$want" ] || fail "window rows != $want"
awk -F, 'NR > 1 && ($1 < 0 || $1 >= 300) { exit 1 }' "$W/win.csv" || fail "window arrivals outside [0, 300) s after 2x speedup"
echo "ok: shipped traces imported exactly ($az_rows Azure rows, $mc_rows Mooncake rows)"
