#!/usr/bin/env bash
# test_soak.sh: the soak (bench/README.md, "Soak") in small: one simulated hour of 8
# instances under infinite-llm with the soak's faults (lost and late
# messages, the gManager lost every 5 minutes) and instance 6 lost at 6
# minutes, when it lends 91 blocks to others (in the run without that loss,
# the same up to then), a memory report every 6 simulated minutes.
#
# bench_soak itself fails (exit 1) when resident memory grows more than
# 10% after the first report, when a high-water mark breaks 0 <= final <=
# peak <= capacity, or when a block, ledger entry, protocol record, message
# or event is left at the end. Checked here from its outputs, independently:
# ten reports, memory within the bound, every documented mark present and
# sane, the queues that must drain empty, the KV pools' peaks at most their
# capacity in blocks (from the config: the KV blocks per instance) and
# borrowing and faults actually exercised (else the soak proves nothing).
# Then a leak on purpose: a tolerance of -1 (memory may not even stay
# level) must make the driver fail, so its memory check can fail.
set -u

: "${INFSIM_SRC:?INFSIM_SRC must name the source tree}"
: "${INFSIM_BENCH_SOAK:?INFSIM_BENCH_SOAK must name the bench_soak binary}"

work=$(mktemp -d "${TMPDIR:-/tmp}/infsim_test_soak.XXXXXX")
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# Under the sanitizers (10x slower, and memory is not checked there) a
# tenth of the hour.
duration=3600
[ "${INFSIM_SANITIZED:-0}" = 1 ] && duration=600
quick=(--set cluster.instances=8 --set workload.duration_s=$duration --set workload.rate_rps=2 --every-s $((duration / 10))
  --set faults.lose_instance=6 --set faults.lose_instance_at_s=360)
"$INFSIM_BENCH_SOAK" "$INFSIM_SRC/bench/soak/soak.yaml" "${quick[@]}" --out "$work/out" >"$work/log" 2>&1
rc=$?
[ $rc -eq 0 ] || { fail "bench_soak exited $rc"; cat "$work/log"; }
grep -q '^soak: ok$' "$work/log" || fail "no 'soak: ok'"

python3 - "$work/out" "$work/log" "$duration" <<'PY' || failures=$((failures + 1))
import csv, json, sys
out, log, duration = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = json.load(open(out + "/summary.json"))
rows = list(csv.DictReader(open(out + "/soak.csv")))
bad = []
times = [float(r["sim_time_s"]) for r in rows]
if times[:10] != [duration / 10 * k for k in range(1, 11)]:
    bad.append("reports at %s, not every %d s" % (times[:10], duration / 10))
sanitized = "memory check skipped" in open(log).read()
rss = [int(r["rss_bytes"]) for r in rows]
if not sanitized and max(rss[1:]) > 1.10 * rss[0]:
    bad.append("memory grew from %d to %d bytes" % (rss[0], max(rss[1:])))
hw = s.get("high_water", {})
documented = ["event_heap", "messages_in_flight", "network_flows", "timeseries_rows", "instance_waiting",
              "instance_swapped", "instance_prefilling", "instance_running", "instance_finish_events",
              "instance_block_boundary_events", "kv_gpu_blocks", "kv_host_blocks", "gmanager_ledger_requests",
              "gmanager_split_requests", "contract_borrows", "contract_reservations", "contract_proposals"]
for name in documented:
    if name not in hw:
        bad.append("high_water." + name + " missing")
        continue
    m = hw[name]
    if not (0 <= m["final"] <= m["peak"] <= m["capacity"]):
        bad.append("%s: %s" % (name, m))
    if name not in ("timeseries_rows", "instance_finish_events", "instance_block_boundary_events",
                    "gmanager_ledger_requests", "gmanager_split_requests") and m["final"] != 0:
        bad.append("%s: %d left at the end" % (name, m["final"]))
    # a mark's peak only grows: the per-report columns never go down
    col = [int(r[name + "_peak"]) for r in rows]
    if col != sorted(col) or col[-1] > m["peak"]:
        bad.append("%s: reported peaks %s against final %d" % (name, col, m["peak"]))
kv = hw.get("kv_gpu_blocks", {})
if kv.get("capacity") != s["kv_blocks_per_instance"] or kv.get("peak", 0) <= 0:
    bad.append("kv_gpu_blocks %s against %d blocks an instance" % (kv, s["kv_blocks_per_instance"]))
ts = hw.get("timeseries_rows", {})
if ts.get("peak") != ts.get("final") or ts.get("final", 0) < 8 * (duration // 60 + 1):  # a tick a minute from 0 s
    bad.append("timeseries_rows %s" % ts)
if s["completed"] + s["rejected"] != s["arrived"] or s["arrived"] < 1.6 * duration:  # 2 a second
    bad.append("requests: %d arrived, %d completed, %d rejected" % (s["arrived"], s["completed"], s["rejected"]))
d = s["distkv"]
# the gManager is lost at 120 s, then every 300 s
if not (d["borrows"] > 0 and d["messages_lost"] > 0 and d["retries"] > 0 and d["gmanager_rebuilds"] >= (duration - 120) // 300 + 1):
    bad.append("faults or borrowing not exercised: %s" % d)
# the creditor is lost once, and the KV of the requests it held is computed again
if d["instances_lost"] != 1 or d["blocks_recomputed"] <= 0:
    bad.append("the instance loss did not happen: %s" % d)
if hw.get("gmanager_ledger_requests", {}).get("peak", 0) <= 0:
    bad.append("the ledger never held a request")
for b in bad:
    print("FAIL:", b)
sys.exit(1 if bad else 0)
PY

# The memory check can fail: a tolerance of -50% asks memory to halve after
# the first report, which it cannot (outside a sanitizer build).
if ! grep -q "memory check skipped" "$work/log"; then
  "$INFSIM_BENCH_SOAK" "$INFSIM_SRC/bench/soak/soak.yaml" "${quick[@]}" --set workload.duration_s=720 \
    --rss-tolerance -0.5 --out "$work/neg" >"$work/neg.log" 2>&1
  rc=$?
  [ $rc -eq 1 ] && grep -q "FAIL memory" "$work/neg.log" || fail "a memory bound of -50% did not fail (exit $rc)"
fi

[ $failures -eq 0 ] && echo "test_soak: ok"
exit $((failures > 0))
