#!/usr/bin/env bash
# The default experiment (README.md's first command) runs as shipped and
# shows what it claims: vllm-multi rejects the conversations longer than one
# instance's KV memory, infinite-llm serves every request by borrowing, and
# every plot it announces exists.
set -u
INFSIM=${INFSIM:?INFSIM must name the built CLI}
SRC=${INFSIM_SRC:?INFSIM_SRC must name the source tree}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
command -v gnuplot >/dev/null || { echo "gnuplot missing: skipped"; exit 77; }
"$SRC/experiments/default/run" --infsim "$INFSIM" --out "$W/out" >"$W/log" 2>&1 || fail "the run failed: $(tail -3 "$W/log")"
python3 - "$W/out" <<'PY' || fail "the comparison does not show what the README says"
import json, sys
d = sys.argv[1]
m = json.load(open(f'{d}/vllm-multi/summary.json'))
i = json.load(open(f'{d}/infinite-llm/summary.json'))
ok = m['rejected'] > 0 and i['rejected'] == 0 and i['completed'] == i['arrived']
ok &= i['borrowed_blocks_peak'] > 0 and i['network_bytes'] > 0 and m['borrowed_blocks_peak'] == 0
ok &= i['max_context_tokens'] > m['max_context_tokens']
ok &= i['distkv']['borrows'] > 0
sys.exit(0 if ok else 1)
PY
grep -q "infinite-llm" "$W/log" && grep -q "borrowed blocks (peak)" "$W/log" || fail "no comparison table printed"
for f in vllm-multi/plots/ttft_cdf.png infinite-llm/plots/kv_borrowing.png infinite-llm/plots/link_bytes.png plots/compare_ttft_cdf.png; do
  [ -s "$W/out/$f" ] || fail "missing plot $f"
done
echo "$((failures == 0 ? 1 : 0)) passed, $failures failed"
[ "$failures" -eq 0 ]
