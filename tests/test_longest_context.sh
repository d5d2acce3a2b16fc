#!/usr/bin/env bash
# iterations.csv's decode_max_context_tokens (the batch's longest context,
# from the scheduler's heap of decoding requests, sched/decode_max.c)
# against a reconstruction from requests.csv alone
# (bench/fidelity/longest_context.py --check: which requests decode in each
# row and how long each one's context is then; it also checks each row's
# count and sum). Chunked prefill, long and short prompts arriving over
# time, runs of several decode steps; and one run without chunking.
set -u
INFSIM=${INFSIM:?INFSIM must name the built CLI}
SRC=${INFSIM_SRC:?INFSIM_SRC must name the source tree}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

python3 - "$W/trace.csv" <<'PY'
import random, sys
r = random.Random(7)
with open(sys.argv[1], "w") as f:
    f.write("arrival_time_s,prompt_tokens,output_tokens\n")
    t = 0.0
    for i in range(120):
        t += r.expovariate(8.0)
        prompt = r.choice([64, 200, 900, 3000, 7000]) + r.randrange(16)
        f.write(f"{t:.6f},{prompt},{r.randrange(20, 200)}\n")
PY
for chunked in true false; do
  printf 'model: llama2-7b\ngpu: h200\ncluster:\n  instances: 1\nscheduler:\n  max_batch_size: 64\n  max_batched_tokens: 4096\n  chunked_prefill: %s\nmetrics:\n  iterations: true\n' \
    "$chunked" >"$W/c-$chunked.yaml"
  "$INFSIM" run "$W/c-$chunked.yaml" --trace "$W/trace.csv" --out "$W/o-$chunked" --quiet || fail "run (chunked $chunked) failed"
  python3 "$SRC/bench/fidelity/longest_context.py" --check "$W/o-$chunked" || fail "chunked $chunked: column differs"
  # Not vacuous: runs of several steps, and batches whose longest is far above their mean.
  python3 - "$W/o-$chunked/iterations.csv" <<'PY' || fail "chunked $chunked: no multi-step or skewed decode rows"
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if int(r["decode_requests"]) > 1]
multi = sum(int(r["steps"]) > 1 for r in rows)
skew = sum(int(r["decode_max_context_tokens"]) * int(r["decode_requests"]) > 3 * int(r["decode_context_tokens"]) for r in rows)
sys.exit(0 if multi > 10 and skew > 10 else 1)
PY
done
echo "$((failures == 0 ? 1 : 0)) passed, $failures failed"
[ "$failures" -eq 0 ]
