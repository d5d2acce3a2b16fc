#!/usr/bin/env bash
# The paper study in small (experiments/paper/run --ci: LLaMA2-7B, 16 instances
# on two nodes, a 240-request short trace and a 24-request long one, seconds of
# CPU), checked against independent truth:
# - the freeze guard: a changed frozen file stops the study (exit 2);
# - longest context of the baselines = one instance's KV (blocks x block tokens
#   from the simulator's own summary) within the bisection's tolerance;
# - every capacity result passed the SLO, and a probe within the tolerance above
#   it failed (the bisection brackets the answer);
# - vllm-multi sustains nothing on the long trace exactly when more than 10% of
#   its requests exceed one instance's KV (counted from the trace file);
# - with policy infinite-llm in the binary, each ratio of the paper's table
#   points the way experiments/paper/README.md reports it:
#   context: infinite-llm / vllm-multi > 2 (paper v1: 2-19x), and its longest
#     context is the cluster's pool less the creditors' reserve (closed form:
#     (1 - reserve_frac) x instances x one instance's KV, within the
#     bisection's tolerance);
#   long trace: ahead of vllm-multi (borrowing matters: vllm-multi rejects)
#     and of vllm-single (paper 1.4-3.4x);
#   short trace: ahead of vllm-single (paper 1.4-5.3x) and not behind
#     vllm-multi by more than the search's resolution (the paper has 1.35-1.73x;
#     the README explains why ours is about 1x).
#   planners (seed 1, the long trace): the level planner (include/infsim/
#     planner.h) sustains more than greedy, and at greedy's sustained load
#     its p99 TTFT is lower: true at this size (two nodes), not in the full
#     study since the owner's NIC is shared among holders; spread, ahead
#     in the full study on L1, is not checked here: ahead on 4 of seeds
#     1-5 at this size, not a direction to rely on (README.md, "The CI
#     test").
#   Skipped, with a message, while the policy is not in the binary.
set -euo pipefail
: "${INFSIM:?}" "${INFSIM_SRC:?}"
export PYTHONDONTWRITEBYTECODE=1  # leave the source tree as it is
DATA=""
for d in "${INFSIM_DATA:-}" "$INFSIM_SRC/../shared/data" "$INFSIM_SRC/../../shared/data"; do
  [ -n "$d" ] && [ -f "$d/azure-2023-code.csv" ] && [ -f "$d/mooncake-conversation.jsonl" ] && { DATA=$d; break; }
done
if [ -z "$DATA" ]; then echo "SKIP: no shared/data with the Azure and Mooncake traces (set INFSIM_DATA)"; exit 77; fi
command -v python3 >/dev/null || { echo "SKIP: python3 not found"; exit 77; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# 1. The freeze guard.
cp -r "$INFSIM_SRC/experiments/paper" "$TMP/study"
rm -rf "$TMP/study/paperlib/__pycache__"
sed -i 's/"tpot_s": 0.2/"tpot_s": 0.3/' "$TMP/study/study.json"
rc=0
"$TMP/study/run" --ci --infsim "$INFSIM" --data "$DATA" --out "$TMP/guard" --sections main >"$TMP/guard.log" 2>&1 || rc=$?
[ "$rc" -eq 2 ] || { echo "FAIL: a changed study.json ran (exit $rc)"; cat "$TMP/guard.log"; exit 1; }
grep -q "frozen file changed: experiments/paper/study.json" "$TMP/guard.log" || { echo "FAIL: guard message"; exit 1; }

# 2. The study in small.
"$INFSIM_SRC/experiments/paper/run" --ci --infsim "$INFSIM" --data "$DATA" --out "$TMP/out" --jobs 2 \
  --sections main,context,planners --planners greedy,level --no-plots --run-timeout 120 2>"$TMP/run.log" || {
  cat "$TMP/run.log"
  exit 1
}

python3 - "$TMP/out/results.json" "$INFSIM_SRC/experiments/paper" <<'EOF'
import csv, glob, json, os, sys
res = json.load(open(sys.argv[1]))
ci = json.load(open(os.path.join(sys.argv[2], "ci.json")))
slo = json.load(open(os.path.join(sys.argv[2], "study.json")))["slo"]
fails = []
def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        fails.append(what)

block_tokens = 16  # configs/llama2-7b.yaml scheduler.block_tokens
ctx = {c["system"]: c["result"] for c in res["context"]}
for s in ("vllm-multi", "vllm-single"):
    cap = ctx[s]["kv_blocks_per_instance"] * block_tokens
    t = ctx[s]["tokens"]
    check(cap / ci["context_tolerance"] < t <= cap,
          "%s longest context %d within (%.0f, %d], one instance's KV" % (s, t, cap / ci["context_tolerance"], cap))

main = {(c["trace"], c["system"]): c["result"] for c in res["main"]}
for (trace, s), r in sorted(main.items()):
    if "skipped" in r or not r["speedup"]:
        continue
    check(r["run"]["slo"]["attainment"] >= slo["attainment"], "%s %s: the reported load passed the SLO" % (trace, s))
    if not r["note"]:
        above = [p for p in r["probes"] if p[0] > r["speedup"]]
        check(above and min(p[0] for p in above) <= r["speedup"] * ci["tolerance"] * 1.000001
              and all(p[1] < slo["attainment"] for p in above if p[0] == min(q[0] for q in above)),
              "%s %s: a failing probe within the tolerance above the answer" % (trace, s))

cap_multi = ctx["vllm-multi"]["kv_blocks_per_instance"] * block_tokens
long_trace = [p for p in glob.glob(os.path.join(os.path.dirname(sys.argv[1]), "traces", "L1-*.csv"))][0]
rows = list(csv.DictReader(open(long_trace)))
too_long = sum(int(r["prompt_tokens"]) + int(r["output_tokens"]) > cap_multi for r in rows)
expect_zero = too_long > (1 - slo["attainment"]) * len(rows)
got_zero = main[("L1", "vllm-multi")]["throughput_tok_s"] == 0
check(expect_zero == got_zero, "vllm-multi on the long trace: %d of %d requests exceed one instance, sustains %s"
      % (too_long, len(rows), "nothing" if got_zero else "a load"))

if not res["policy_available"]:
    print("SKIP: policy infinite-llm is not in the built binary: the ratio directions are not checked")
else:
    study = json.load(open(os.path.join(sys.argv[2], "study.json")))
    il_ctx, m_ctx = ctx["infinite-llm"]["tokens"], ctx["vllm-multi"]["tokens"]
    check(il_ctx > 2 * m_ctx, "infinite-llm serves a longer context than vllm-multi: %d vs %d tokens" % (il_ctx, m_ctx))
    pool = (1 - study["infinite_llm"]["policy.reserve_frac"]) * ci["instances"] * cap_multi
    check(pool / ci["context_tolerance"] ** 2 < il_ctx <= ci["instances"] * cap_multi,
          "infinite-llm's longest context %d is the pool less the reserve (%.0f) within the tolerance"
          % (il_ctx, pool))
    thr = {k: r["throughput_tok_s"] for k, r in main.items()}
    check(thr[("L1", "infinite-llm")] > thr[("L1", "vllm-multi")],
          "long trace (borrowing matters): infinite-llm %.1f tok/s ahead of vllm-multi %.1f"
          % (thr[("L1", "infinite-llm")], thr[("L1", "vllm-multi")]))
    check(thr[("L1", "infinite-llm")] > thr[("L1", "vllm-single")],
          "long trace: infinite-llm %.1f tok/s ahead of vllm-single %.1f (paper 1.4-3.4x)"
          % (thr[("L1", "infinite-llm")], thr[("L1", "vllm-single")]))
    check(thr[("S2", "infinite-llm")] > thr[("S2", "vllm-single")],
          "short trace: infinite-llm %.1f tok/s ahead of vllm-single %.1f (paper 1.4-5.3x)"
          % (thr[("S2", "infinite-llm")], thr[("S2", "vllm-single")]))
    il, m = thr[("S2", "infinite-llm")], thr[("S2", "vllm-multi")]
    check(il >= m / ci["tolerance"], "short trace: infinite-llm %.1f tok/s not behind vllm-multi %.1f by more "
          "than the search's resolution (%gx)" % (il, m, ci["tolerance"]))
    pl = {c["planner"]: c for c in res["planners"] if c["trace"] == "L1" and c["seed"] == 1}
    g, lv = pl["greedy"], pl["level"]
    check(lv["result"]["throughput_tok_s"] > g["result"]["throughput_tok_s"],
          "planners, long trace: level sustains %.1f tok/s, more than greedy's %.1f"
          % (lv["result"]["throughput_tok_s"], g["result"]["throughput_tok_s"]))
    check(lv["equal_load"]["ttft_p99_s"] < g["equal_load"]["ttft_p99_s"],
          "planners, long trace at greedy's load: level's p99 TTFT %.1f s below greedy's %.1f s"
          % (lv["equal_load"]["ttft_p99_s"], g["equal_load"]["ttft_p99_s"]))
sys.exit(1 if fails else 0)
EOF
