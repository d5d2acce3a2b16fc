#!/usr/bin/env bash
# test_sample_cap.sh: the time series' total cap and the instance limit.
# 20,000 instances sampled every microsecond (3 requests, about 2 s
# simulated) would be 2e9 rows at the per-instance cap alone; the total cap
# (1,000,000 rows, README's metrics.sample_interval_s) doubles the interval
# until every instance has at most 50 ticks. Checked from timeseries.csv
# itself: rows, ticks per instance, the ticks on multiples of the interval
# used, the interval a power-of-two multiple of the one asked for. More
# instances than the simulator takes (100,000) are refused before anything
# is allocated or written.
set -u
INFSIM=${INFSIM:?path of the infsim CLI}
command -v python3 >/dev/null || { echo "python3 missing: skipped"; exit 77; }
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
printf 'model: tiny\nworkload: {requests: 3}\n' >ok.yaml

# a time limit, so that a run without the cap fails here instead of filling memory
timeout 60 "$INFSIM" run ok.yaml --set cluster.instances=20000 --set metrics.sample_interval_s=1e-6 --out o \
  >/dev/null 2>err || fail "20000 instances at 1e-6 s: exit $? $(tail -2 err)"
python3 - o <<'PY' || fail "time series past its caps"
import csv, json, math, sys
from collections import Counter
d = sys.argv[1]
used = json.load(open(d + "/summary.json"))["sample_interval_s_used"]
k = math.log2(used / 1e-6)
assert used > 1e-6 and abs(k - round(k)) < 1e-9, ("interval not doubled from 1e-6", used)
rows = list(csv.DictReader(open(d + "/timeseries.csv")))
assert 0 < len(rows) <= 1000000, ("rows", len(rows))
per = Counter(r["instance"] for r in rows)
assert len(per) == 20000 and set(per.values()) == {len(rows) // 20000}, "every instance, the same ticks"
assert len(rows) // 20000 <= 50, ("ticks per instance", len(rows) // 20000)
step_ns = round(used * 1e9)
assert all(round(float(t) * 1e9) % step_ns == 0 for t in {r["time_s"] for r in rows}), "a tick off the interval"
print("rows", len(rows), "interval", used)
PY

# the instance limit: exit 2, one line, nothing written
"$INFSIM" run ok.yaml --set cluster.instances=1000000 --set metrics.sample_interval_s=1e-6 --out big >/dev/null 2>err
rc=$?
[ $rc -eq 2 ] || fail "1000000 instances: exit $rc, want 2"
want="infsim run: --set: cluster.instances: at most 100000 instances (the simulator keeps about 14 KB per instance), got 1000000"
[ "$(cat err)" = "$want" ] || fail "message: $(cat err)"
[ ! -e big ] || fail "output written for 1000000 instances"
"$INFSIM" run ok.yaml --set cluster.instances=100001 --out big >/dev/null 2>&1
[ $? -eq 2 ] || fail "100001 instances accepted"
echo "ok: total sample cap and instance limit"
