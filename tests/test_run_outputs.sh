#!/usr/bin/env bash
# What a run's outputs say, against independent truth: the time series'
# columns on a scenario whose state is known by hand; the sampling bound
# (at most 100,000 ticks per instance, the interval doubling) on a trace
# spanning 1e9 s and on a tiny interval; sim_time_s at the last finish; and
# the input rules of the seams: block size a multiple of 16, tensor
# parallelism within the head count, no time beyond int64 nanoseconds.
set -u
INFSIM=${INFSIM:?INFSIM must name the built CLI}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# One instance, one request at a time, three long requests at t = 0: at the
# tick at 0 s one runs and two wait; the runner holds ceil(1000 / 16) = 63
# blocks (prompt blocks are booked on admission).
printf 'model: llama2-7b\ngpu: a100-80gb\ncluster:\n  instances: 1\nscheduler:\n  max_batch_size: 1\n' >"$W/one.yaml"
printf 'arrival_time_s,prompt_tokens,output_tokens\n0,1000,2000\n0,1000,2000\n0,1000,2000\n' >"$W/three.csv"
"$INFSIM" run "$W/one.yaml" --trace "$W/three.csv" --out "$W/o" --quiet || fail "three-request run failed"
python3 - "$W/o" <<'PY' || fail "timeseries.csv columns disagree with the hand-known state"
import csv, json, sys
d = sys.argv[1]
rows = list(csv.DictReader(open(f'{d}/timeseries.csv')))
s = json.load(open(f'{d}/summary.json'))
first_finish = min(float(r['finish_s']) for r in csv.DictReader(open(f'{d}/requests.csv')))
ok = True
early = [r for r in rows if float(r['time_s']) < first_finish]
ok &= len(early) >= 2
for r in early:
    ok &= (r['running'], r['waiting']) == ('1', '2')
    ok &= int(r['kv_used_blocks']) + int(r['kv_free_blocks']) == s['kv_blocks_per_instance']
    ok &= int(r['kv_lent_blocks']) == 0 and int(r['kv_borrowed_blocks']) == 0
ok &= early[0]['kv_used_blocks'] == '63'
last = max(float(r['finish_s']) for r in csv.DictReader(open(f'{d}/requests.csv')))
ok &= abs(s['sim_time_s'] - last) < 1e-9  # ends at the last finish, not at a sample tick
sys.exit(0 if ok else 1)
PY

# Sampling stays bounded: a trace spanning 1e9 s, and a 1 us interval.
printf 'arrival_time_s,prompt_tokens,output_tokens\n0,100,10\n1000000000,100,10\n' >"$W/span.csv"
timeout 60 "$INFSIM" run "$W/one.yaml" --trace "$W/span.csv" --out "$W/span" --quiet || fail "1e9 s span run failed or hung"
if [ -f "$W/span/timeseries.csv" ]; then
  rows=$(($(wc -l <"$W/span/timeseries.csv") - 1))
  [ "$rows" -le 100000 ] || fail "1e9 s span: $rows samples for one instance"
  python3 -c "import json,sys; s=json.load(open('$W/span/summary.json')); sys.exit(0 if s['sample_interval_s_used'] >= 1e9/1e5 and abs(s['sim_time_s']-s['span_s']) < 1 else 1)" ||
    fail "1e9 s span: interval used or sim_time_s wrong"
fi
timeout 60 "$INFSIM" run "$W/one.yaml" --trace "$W/three.csv" --out "$W/tiny" --quiet --set metrics.sample_interval_s=0.000001 ||
  fail "1 us interval run failed or hung"
[ "$(($(wc -l <"$W/tiny/timeseries.csv") - 1))" -le 100000 ] || fail "1 us interval: too many samples"

. "$(dirname "$0")/run_lib.sh"
expect_bad "block size" "scheduler.block_tokens.*multiple of 16" "$W/one.yaml" --trace "$W/three.csv" --set scheduler.block_tokens=24
expect_bad "block size below 16" "scheduler.block_tokens" "$W/one.yaml" --trace "$W/three.csv" --set scheduler.block_tokens=8
expect_bad "tp above heads" "tensor parallelism 8 exceeds the 2 attention heads" "$W/one.yaml" --trace "$W/three.csv" \
  --set model=tiny --set cluster.gpus_per_instance=8
# 1e9-token prompts on vllm-single at 1% efficiency: iterations past 2^63 ns.
printf 'arrival_time_s,prompt_tokens,output_tokens\n0,1000000000,2\n' >"$W/huge.csv"
expect_bad "time overflow" "beyond the simulator's time range" "$W/one.yaml" --trace "$W/huge.csv" \
  --set cluster.instances=10000 --set policy.name=vllm-single --set cost.attention_efficiency=0.01 \
  --set cost.gemm_efficiency=0.01

# --summary-only writes summary.json alone.
"$INFSIM" run "$W/one.yaml" --trace "$W/three.csv" --out "$W/so" --quiet --summary-only || fail "--summary-only run failed"
[ "$(ls "$W/so")" = "summary.json" ] || fail "--summary-only wrote $(ls "$W/so" | tr '\n' ' ')"

# metrics.iterations writes iterations.csv, whose steps add up to the iterations.
"$INFSIM" run "$W/one.yaml" --trace "$W/three.csv" --out "$W/it" --quiet --set metrics.iterations=true || fail "iterations run failed"
python3 - "$W/it" <<'PY' || fail "iterations.csv disagrees with summary.json"
import csv, json, sys
d = sys.argv[1]
rows = list(csv.DictReader(open(f'{d}/iterations.csv')))
s = json.load(open(f'{d}/summary.json'))
ok = sum(int(r['steps']) for r in rows) == s['iterations']
ok &= all(float(r['end_s']) > float(r['start_s']) for r in rows)
ok &= list(rows[0].keys()) == ['instance', 'start_s', 'end_s', 'steps', 'prefill_tokens', 'prefill_attention_pairs',
                               'decode_requests', 'decode_context_tokens', 'remote_holders', 'remote_context_tokens',
                               'decode_max_context_tokens']
sys.exit(0 if ok else 1)
PY

# --timeline: one complete event per batch, the same batches as iterations.csv
# (start, duration, steps, and the aggregates the event names and carries:
# prompt tokens, decodes, their context); preemptions as instant events; a
# window keeps only the events overlapping it.
printf 'model: llama2-7b\ngpu: a100-80gb\ncluster:\n  instances: 2\nscheduler:\n  gpu_memory_utilization: 0.19\nmetrics:\n  iterations: true\n' >"$W/tl.yaml"
python3 -c "
import random; r=random.Random(5); t=0.0
print('arrival_time_s,prompt_tokens,output_tokens')
for i in range(200):
    t+=r.expovariate(20.0); print(f'{t:.6f},{r.randint(100,2000)},{r.randint(10,400)}')" >"$W/tl.csv"
"$INFSIM" run "$W/tl.yaml" --trace "$W/tl.csv" --out "$W/tl" --quiet --timeline "$W/tl/timeline.json" ||
  fail "timeline run failed"
"$INFSIM" run "$W/tl.yaml" --trace "$W/tl.csv" --out "$W/tw" --quiet --timeline "$W/tw/timeline.json" \
  --timeline-window 2,3 || fail "windowed timeline run failed"
python3 - "$W" <<'PY' || fail "timeline disagrees with iterations.csv"
import csv, json, sys
w = sys.argv[1]
ev = json.load(open(f'{w}/tl/timeline.json'))['traceEvents']
rows = list(csv.DictReader(open(f'{w}/tl/iterations.csv')))
s = json.load(open(f'{w}/tl/summary.json'))
def kind(prefill, decodes):
    return ('mixed' if decodes > 0 else 'prefill') if prefill > 0 else 'decode'
batches = sorted((int(e['tid']), round(e['ts'] * 1000), round(e['dur'] * 1000), e['args']['steps'], e['name'],
                  e['args']['prefill_tokens'], e['args']['decode_requests'], e['args']['decode_context_tokens'])
                 for e in ev if e.get('cat') == 'batch')
want = sorted((int(r['instance']), round(float(r['start_s']) * 1e9), round((float(r['end_s']) - float(r['start_s'])) * 1e9),
               int(r['steps']), kind(int(r['prefill_tokens']), int(r['decode_requests'])), int(r['prefill_tokens']),
               int(r['decode_requests']), int(r['decode_context_tokens'])) for r in rows)
ok = batches == want and len(batches) > 0
ok &= sum(1 for e in ev if e.get('cat') == 'preemption') == s['preemptions'] and s['preemptions'] > 0
win = [e for e in json.load(open(f'{w}/tw/timeline.json'))['traceEvents'] if e.get('ph') in ('X', 'i')]
ok &= 0 < len(win) < len(batches)
ok &= all(e['ts'] <= 3e6 and e['ts'] + e.get('dur', 0) >= 2e6 for e in win)
sys.exit(0 if ok else 1)
PY

# All or nothing: with a directory where one output should go, the run
# fails with exit 2 and the earlier outputs stay as they were, no temp file.
"$INFSIM" run "$W/one.yaml" --trace "$W/three.csv" --out "$W/aon" --quiet || fail "all-or-nothing: first run failed"
rm "$W/aon/links.csv" && mkdir "$W/aon/links.csv"
sum_before=$(cat "$W/aon/summary.json" "$W/aon/requests.csv" "$W/aon/results.db" | md5sum)
"$INFSIM" run "$W/one.yaml" --trace "$W/three.csv" --out "$W/aon" --quiet --seed 7 2>/dev/null
[ $? -eq 2 ] || fail "all-or-nothing: a directory in place of links.csv did not exit 2"
[ "$(cat "$W/aon/summary.json" "$W/aon/requests.csv" "$W/aon/results.db" | md5sum)" = "$sum_before" ] ||
  fail "all-or-nothing: the old outputs changed"
ls "$W/aon" | grep -q tmp && fail "all-or-nothing: temporary files left"

# --timeline is one of the run's outputs, all or nothing with them: a bad
# timeline path (a directory, one of the run's own files however spelled,
# under a run that cannot write --out) exits 2 before or instead of writing,
# and leaves no file or directory; a timeline that fails midway (a file
# size limit) leaves no run outputs either.
mkdir "$W/tdir"
"$INFSIM" run "$W/one.yaml" --trace "$W/three.csv" --out "$W/tlo" --quiet --timeline "$W/tdir" 2>"$W/err"
[ $? -eq 2 ] || fail "--timeline DIR: not exit 2 ($(cat "$W/err"))"
[ ! -e "$W/tlo" ] || fail "--timeline DIR: wrote $W/tlo"
sum_before=$(cat "$W/aon/summary.json" "$W/aon/requests.csv" | md5sum)
"$INFSIM" run "$W/one.yaml" --trace "$W/three.csv" --out "$W/tlo" --quiet --timeline "$W/tlo/summary.json" 2>"$W/err"
[ $? -eq 2 ] || fail "--timeline OUT/summary.json: not exit 2 ($(cat "$W/err"))"
grep -q "summary.json" "$W/err" || fail "--timeline OUT/summary.json: message '$(cat "$W/err")' does not name it"
[ ! -e "$W/tlo" ] || fail "--timeline OUT/summary.json: left $W/tlo"
rm -rf "$W/aon/links.csv"
"$INFSIM" run "$W/one.yaml" --trace "$W/three.csv" --out "$W/aon" --quiet --seed 9 --timeline "$W/aon/./requests.csv" \
  2>"$W/err"
[ $? -eq 2 ] || fail "--timeline OUT/./requests.csv: not exit 2 ($(cat "$W/err"))"
grep -qF "one of the run's own outputs in $W/aon" "$W/err" ||
  fail "--timeline OUT/./requests.csv: not refused before the run: '$(cat "$W/err")'"
[ "$(cat "$W/aon/summary.json" "$W/aon/requests.csv" | md5sum)" = "$sum_before" ] ||
  fail "--timeline OUT/./requests.csv: the old outputs changed"
# The timeline at the output directory's own name: refused as given, and
# spelled otherwise, refused when the set commits, leaving nothing.
for tl in "$W/same" "$W/./same"; do
  "$INFSIM" run "$W/one.yaml" --trace "$W/three.csv" --out "$W/same" --quiet --timeline "$tl" 2>"$W/err"
  [ $? -eq 2 ] || fail "--timeline $tl --out $W/same: not exit 2 ($(cat "$W/err"))"
  [ "$(wc -l <"$W/err")" -eq 1 ] || fail "--timeline $tl --out $W/same: message is not one line"
  [ ! -e "$W/same" ] || fail "--timeline $tl --out $W/same: left $W/same"
  ls "$W" | grep -q '\.tmp\.' && fail "--timeline $tl --out $W/same: left a temporary file"
done
touch "$W/plainfile"
"$INFSIM" run "$W/one.yaml" --trace "$W/three.csv" --out "$W/plainfile" --quiet --timeline "$W/tsub/deeper/t.json" \
  2>"$W/err"
[ $? -eq 2 ] || fail "--out FILE with --timeline: not exit 2 ($(cat "$W/err"))"
[ ! -e "$W/tsub" ] || fail "--out FILE with --timeline: left the timeline's new directory"
printf 'model: tiny\nworkload: {requests: 2000}\n' >"$W/big.yaml"
"$INFSIM" run "$W/one.yaml" --trace "$W/three.csv" --out "$W/efbig" --quiet --set metrics.iterations=true ||
  fail "run before the file size limit failed"
sum_before=$(cat "$W"/efbig/* | md5sum)
# 500 KiB: the run's files stay below it (about 360 KB at most), the
# timeline of 2000 requests does not (about 1 MB).
(trap '' XFSZ; ulimit -f 500; "$INFSIM" run "$W/big.yaml" --out "$W/efbig" --quiet --timeline "$W/efbig.json") \
  2>"$W/err"
rc=$?
[ $rc -eq 1 ] || fail "timeline over the file size limit: exit $rc, want 1 ($(cat "$W/err"))"
grep -q "efbig.json: cannot write" "$W/err" || fail "timeline over the file size limit: message '$(cat "$W/err")'"
[ "$(cat "$W"/efbig/* | md5sum)" = "$sum_before" ] || fail "timeline over the file size limit: the run's outputs changed"
[ -f "$W/efbig/iterations.csv" ] || fail "timeline over the file size limit: the older iterations.csv went"
[ -z "$(ls "$W" | grep efbig.json)" ] || fail "timeline over the file size limit: left $(ls "$W" | grep efbig.json)"

# A reused --out directory holds one run's outputs: what this run does not
# write of a run's files goes in the same commit (an older iterations.csv
# would otherwise be read as this run's); other files stay.
"$INFSIM" run "$W/one.yaml" --trace "$W/three.csv" --out "$W/reuse" --quiet --set metrics.iterations=true ||
  fail "reuse: first run failed"
touch "$W/reuse/notes.txt"
"$INFSIM" run "$W/one.yaml" --trace "$W/three.csv" --out "$W/reuse" --quiet || fail "reuse: run without iterations failed"
[ "$(ls "$W/reuse" | tr '\n' ' ')" = "links.csv notes.txt requests.csv results.db summary.json timeseries.csv " ] ||
  fail "reuse: after a run without iterations: $(ls "$W/reuse" | tr '\n' ' ')"
"$INFSIM" run "$W/one.yaml" --trace "$W/three.csv" --out "$W/reuse" --quiet --summary-only || fail "reuse: --summary-only failed"
[ "$(ls "$W/reuse" | tr '\n' ' ')" = "notes.txt summary.json " ] ||
  fail "reuse: after --summary-only: $(ls "$W/reuse" | tr '\n' ' ')"

echo "$((failures == 0 ? 1 : 0)) passed, $failures failed"
[ "$failures" -eq 0 ]
