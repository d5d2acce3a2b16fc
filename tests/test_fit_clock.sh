#!/usr/bin/env bash
# calibrate/fit-clock.py against a clock term known by construction: two
# runs whose SM clock follows 1990 - 400 u(t) MHz and whose prefill rows
# took g (1 - u_mean) of their compute-bound part less than predicted, u the
# load with time constant 0.3 s and g = 0.18 (docs/calibration.md, "The GPU
# clock after idle time"); the load is computed here on its own, from the
# closed forms. Each run's first row took 30% longer (a one-time cost): the
# fit leaves it out by default and recovers tau and g, and with
# --skip-first 0 the gain moves. The fitted row is read back from the DB;
# bad options are refused with the DB left as it was.
set -u
INFSIM=${INFSIM:?path of the infsim CLI}
SRC=${INFSIM_SRC:?source tree}
command -v python3 >/dev/null || exit 77
command -v sqlite3 >/dev/null || exit 77
: "$INFSIM"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
FIT="$SRC/calibrate/fit-clock.py"

python3 - "$W" <<'PY'
import datetime, math, random, sys
w = sys.argv[1]
TAU, GAIN, A_MHZ, B_MHZ = 0.3, 0.18, 1990.0, 400.0
rnd = random.Random(7)
starts = [5.0, 60.0]          # the runs' starts in the clock file (s)
pieces = []                   # (absolute start, end, compute share) of every busy stretch
for k, t0 in enumerate(starts):
    rows, t = [], 0.0
    for i in range(70):
        if i > 0 and rnd.random() < 0.3:
            t += rnd.uniform(0.2, 1.5)                      # idle
        prefill = i == 0 or rnd.random() < 0.4
        pred = rnd.uniform(0.15, 0.25) if prefill else rnd.uniform(0.015, 0.03)
        bound = 0.9 * pred if prefill else 0.0
        rows.append([t, t + pred, 8192 if prefill else 0, pred, bound])
        t += pred
    # The load, independently of the script: u decays over idle time and
    # moves toward the row's share w over the row; the row's mean load
    # follows u_mean = w - (w - u0) (tau / d) (1 - e^(-d / tau)).
    u, last = 0.0, 0.0
    with open(f"{w}/run{k}-iterations.csv", "w") as it, open(f"{w}/run{k}-rows.csv", "w") as rw:
        it.write("instance,start_s,end_s,steps,prefill_tokens\n")
        rw.write("row,steps,prefill_tokens,measured_s,predicted_s,compute_bound_s\n")
        for i, (s, e, pt, pred, bound) in enumerate(rows):
            u *= math.exp(-(s - last) / TAU)
            share = min(1.0, bound / pred)
            d = e - s
            umean = share - (share - u) * TAU / d * (1 - math.exp(-d / TAU))
            meas = pred - GAIN * (1 - umean) * bound
            if i == 0:
                meas *= 1.3                                 # the first forward's one-time cost
            u = share - (share - u) * math.exp(-d / TAU)
            last = e
            pieces.append((t0 + s, t0 + e, share))
            it.write(f"0,{s!r},{e!r},1,{pt}\n")
            rw.write(f"{i},1,{pt},{meas!r},{pred!r},{bound!r}\n")
# The clock every 0.5 s from t = 0, through both runs and past them.
end = max(p[1] for p in pieces) + 5.0
base = datetime.datetime(2026, 12, 4, 19, 0, 0)
with open(f"{w}/clocks.csv", "w") as f:
    f.write("timestamp, clocks.current.sm [MHz], clocks.current.memory [MHz]\n")
    t, j, u, last = 0.0, 0, 0.0, 0.0
    while t <= end:
        while j < len(pieces) and pieces[j][0] < t:
            s, e, share = pieces[j]
            u *= math.exp(-(s - last) / TAU)
            stop = min(e, t)
            u = share - (share - u) * math.exp(-(stop - s) / TAU)
            last = stop
            if e > t:
                pieces[j] = (stop, e, share)
                break
            j += 1
        u_now = u * math.exp(-(t - last) / TAU)
        stamp = (base + datetime.timedelta(seconds=t)).strftime("%Y/%m/%d %H:%M:%S.%f")[:-3]
        f.write(f"{stamp}, {round(A_MHZ - B_MHZ * u_now)} MHz, 3201 MHz\n")
        t += 0.5
PY
for k in 0 1; do
  mkdir -p "$W/r$k"
  mv "$W/run$k-iterations.csv" "$W/r$k/iterations.csv"
  mv "$W/run$k-rows.csv" "$W/r$k/rows-off.csv"
done

cp "$SRC/data/calibration.db" "$W/x.db"
sqlite3 "$W/x.db" "DROP TABLE IF EXISTS clock_fit;"
out=$(python3 "$FIT" --db "$W/x.db" --profile h200 --model llama2-7b --clocks "$W/clocks.csv" --rows rows-off.csv \
  "$W/r0" "$W/r1" 2>&1) || fail "fit failed: $out"
row=$(sqlite3 "$W/x.db" "SELECT c.tau_s, c.idle_gain, c.rows FROM clock_fit c JOIN profile p ON p.id = c.profile_id
  WHERE p.name = 'h200' AND p.model = 'llama2-7b' AND c.tp = 1")
IFS='|' read -r tau gain rows <<< "$row"
python3 -c "import sys; sys.exit(0 if float('$tau') == 0.3 else 1)" || fail "tau $tau, want 0.3 ($out)"
python3 -c "import sys; sys.exit(0 if abs(float('$gain') - 0.18) < 0.002 else 1)" || fail "gain $gain, want 0.18"
prefill_rows=$(awk -F, 'FNR > 1 && $3 >= 4096' "$W/r0/rows-off.csv" "$W/r1/rows-off.csv" | wc -l)
[ "$rows" = $((prefill_rows - 2)) ] || fail "rows $rows, want $((prefill_rows - 2)) (every prefill row but the runs' first)"

# The first rows counted: their one-time cost reads as a smaller gain.
cp "$W/x.db" "$W/y.db"
python3 "$FIT" --db "$W/y.db" --profile h200 --model llama2-7b --clocks "$W/clocks.csv" --rows rows-off.csv \
  --skip-first 0 "$W/r0" "$W/r1" > /dev/null 2>&1 || fail "fit with --skip-first 0 failed"
gain0=$(sqlite3 "$W/y.db" "SELECT idle_gain FROM clock_fit")
python3 -c "import sys; sys.exit(0 if float('$gain0') < 0.18 - 0.005 else 1)" ||
  fail "gain $gain0 with the first rows counted, want below 0.175"

# Bad options: refused, the DB unchanged.
before=$(sqlite3 "$W/x.db" "SELECT tau_s, idle_gain, rows FROM clock_fit")
if python3 "$FIT" --db "$W/x.db" --profile h200 --model llama2-7b --clocks "$W/clocks.csv" --rows rows-off.csv \
  --skip-first -1 "$W/r0" "$W/r1" > "$W/err" 2>&1; then
  fail "--skip-first -1 accepted"
fi
grep -q "skip-first" "$W/err" || fail "no message naming --skip-first: $(cat "$W/err")"
if python3 "$FIT" --db "$W/x.db" --profile h300 --model llama2-7b --clocks "$W/clocks.csv" --rows rows-off.csv \
  "$W/r0" "$W/r1" > "$W/err" 2>&1; then
  fail "unknown profile accepted"
fi
[ "$(sqlite3 "$W/x.db" "SELECT tau_s, idle_gain, rows FROM clock_fit")" = "$before" ] || fail "a refused fit changed the DB"

[ "$failures" = 0 ] || exit 1
echo "fit-clock: tau $tau s, gain $gain ($rows rows); with the first rows $gain0"
