#!/usr/bin/env bash
# test_plot_studies.sh: `infsim plot` beyond one run: a directory name with
# a newline and a quote, time linear in the instances, a sweep DB, sibling
# runs compared, capacity.csv, and a calibration DB.
#
# Properties: images land in the oddly named directory and its name shows
# in titles with '?' for the newline; no working directory is left behind;
# 8x the instances costs far less than the 64x a pass per instance would;
# legends name exactly the series present (and --where removes one); the
# calibration DB gives one image per (profile, model, TP) it has fits for;
# malformed inputs exit 2 naming file and field. Exit 77 without gnuplot.
set -u
: "${INFSIM:?INFSIM must name the infsim binary}"
: "${INFSIM_SRC:?INFSIM_SRC must name the source tree}"
command -v gnuplot >/dev/null 2>&1 || { echo "gnuplot not installed: skipped"; exit 77; }
work=$(mktemp -d "${TMPDIR:-/tmp}/infsim_test_plot_studies.XXXXXX")
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

cat >"$work/c.yaml" <<'YAML'
model: llama2-7b
gpu: a100-80gb
cluster:
  instances: 2
policy:
  name: vllm-multi
workload:
  requests: 80
  rate_rps: 5
seed: 2
YAML

# ---- a newline and a quote in the directory name ----
odd="$work/run"$'\n'"it's"
"$INFSIM" run "$work/c.yaml" --out "$odd" --quiet || fail "run into an odd directory"
"$INFSIM" plot "$odd" --format svg >/dev/null 2>"$work/err" || fail "plot of '$odd' exited $?: $(cat "$work/err")"
[ -s "$odd/plots/ttft_cdf.svg" ] || fail "no ttft_cdf.svg in the odd directory"
grep -qF "run?it's" "$odd/plots/ttft_cdf.svg" || fail "title does not show the odd name with '?'"
[ -z "$(find "$work" -name '.infsim-plot-*')" ] || fail "a working directory was left behind"

# ---- time linear in the instances ----
ts() { # ts DIR INSTANCES: 4 samples per instance
  mkdir -p "$1"
  head -n 1 "$odd/requests.csv" >"$1/requests.csv"
  awk -v n="$2" 'BEGIN { print "time_s,instance,running,waiting,kv_used_blocks,kv_free_blocks,kv_lent_blocks,kv_borrowed_blocks"
    for (t = 0; t < 4; t++) for (i = 0; i < n; i++) printf "%d,%d,%d,0,%d,%d,0,0\n", t, i, i % 5, (i + t) % 90, 100 }' >"$1/timeseries.csv"
}
ts "$work/n1" 1500
ts "$work/n8" 12000
secs() { local s; s=$(date +%s%N); "$INFSIM" plot "$1" >/dev/null 2>&1 || fail "plot $1 exited $?"; echo $(( $(date +%s%N) - s )); }
t1=$(secs "$work/n1"); t8=$(secs "$work/n8")
echo "1500 instances: $((t1 / 1000000)) ms; 12000 instances: $((t8 / 1000000)) ms"
# A pass per instance makes 8x the instances cost about 64x; linear, 8x
# (less, with gnuplot's start-up in both).
[ "$t8" -lt $((t1 * 24)) ] || fail "12000 instances took $((t8 / t1))x the time of 1500: not linear"

# ---- a sweep DB ----
"$INFSIM" sweep "$work/c.yaml" --out "$work/s.db" --grid "policy.name=vllm-multi,vllm-single" \
  --grid rate_scale=1,2,4 --seeds 2 --progress none >/dev/null 2>"$work/err" || fail "sweep: $(cat "$work/err")"
"$INFSIM" plot "$work/s.db" --format svg --out "$work/sp" >"$work/out" 2>"$work/err" || fail "plot sweep DB: $(cat "$work/err")"
for f in sweep_throughput sweep_latency; do
  grep -q "policy.name = vllm-multi" "$work/sp/$f.svg" && grep -q "policy.name = vllm-single" "$work/sp/$f.svg" \
    || fail "$f.svg lacks a series"
done
grep -q "multiple of the trace" "$work/sp/sweep_throughput.svg" || fail "rate axis label missing"
"$INFSIM" plot "$work/s.db" --format svg --out "$work/sp2" --where '"policy.name" = '"'vllm-multi'" >/dev/null \
  || fail "plot --where exited $?"
grep -q "vllm-single" "$work/sp2/sweep_throughput.svg" && fail "--where kept vllm-single"
"$INFSIM" plot "$work/s.db" --x no_such_column >/dev/null 2>"$work/err"
[ $? = 2 ] && grep -q "no_such_column: no such column in table runs" "$work/err" || fail "--x no_such_column: $(cat "$work/err")"
cp "$work/s.db" "$work/t.db"
sqlite3 "$work/t.db" "UPDATE runs SET ttft_s_p99 = 'abc' WHERE rowid = 2"
"$INFSIM" plot "$work/t.db" --out "$work/tp" >/dev/null 2>"$work/err"
[ $? = 2 ] && grep -qF "runs row 2: ttft_s_p99: expected a number, got 'abc'" "$work/err" \
  || fail "text in a metric column: $(cat "$work/err")"
[ -e "$work/tp" ] && fail "a refused plot left $work/tp behind"

# Two sweeps told apart by --label share one DB: the labels are the series.
"$INFSIM" sweep "$work/c.yaml" --out "$work/l.db" --grid rate_scale=1,2 --label "least loaded" --progress none >/dev/null \
  || fail "labelled sweep 1"
"$INFSIM" sweep "$work/c.yaml" --out "$work/l.db" --grid rate_scale=1,2 --set policy.dispatch=round-robin \
  --label "round robin" --progress none >/dev/null || fail "labelled sweep 2"
"$INFSIM" plot "$work/l.db" --format svg --out "$work/lp" >/dev/null 2>"$work/err" || fail "plot labelled: $(cat "$work/err")"
grep -q ">least loaded<" "$work/lp/sweep_throughput.svg" && grep -q ">round robin<" "$work/lp/sweep_throughput.svg" \
  || fail "labels are not the series"

# ---- sibling runs on one chart ----
mkdir -p "$work/cmp"
"$INFSIM" run "$work/c.yaml" --out "$work/cmp/multi 'a'" --quiet || fail "run a"
"$INFSIM" run "$work/c.yaml" --set policy.name=vllm-single --out "$work/cmp/single" --quiet || fail "run b"
"$INFSIM" plot "$work/cmp" --format svg >/dev/null 2>"$work/err" || fail "plot compare: $(cat "$work/err")"
for m in ttft tpot e2e; do
  f="$work/cmp/plots/compare_${m}_cdf.svg"
  grep -qF "multi 'a'" "$f" && grep -qF ">single<" "$f" || fail "compare_${m}_cdf.svg lacks a run's name"
done

# ---- capacity.csv ----
mkdir -p "$work/cap"
printf 'series,slo_s,instances\nA100,0.5,12\nA100,1,8\nA100,2,6\nH100,0.5,6\nH100,2,3\nH100,1,4\n' >"$work/cap/capacity.csv"
"$INFSIM" plot "$work/cap" --format svg >/dev/null 2>"$work/err" || fail "plot capacity: $(cat "$work/err")"
grep -q "instances needed" "$work/cap/plots/capacity.svg" && grep -q ">H100<" "$work/cap/plots/capacity.svg" \
  || fail "capacity.svg lacks its axis or a series"
printf 'series,slo_s,gpus\nA,1,2\n' >"$work/cap/capacity.csv"
"$INFSIM" plot "$work/cap" >/dev/null 2>"$work/err"
[ $? = 2 ] && grep -qF "capacity.csv:1: missing column 'instances' or 'rate_rps'" "$work/err" || fail "bad capacity.csv: $(cat "$work/err")"
printf 'series,slo_s,instances\nA,fast,2\n' >"$work/cap/capacity.csv"
"$INFSIM" plot "$work/cap" >/dev/null 2>"$work/err"
[ $? = 2 ] && grep -qF "capacity.csv:2: slo_s: expected a number, got 'fast'" "$work/err" || fail "bad slo_s: $(cat "$work/err")"
printf 'series,slo_s,instances\n' >"$work/cap/capacity.csv"
"$INFSIM" plot "$work/cap" >/dev/null 2>"$work/err"
[ $? = 2 ] && grep -qF "capacity.csv: no rows below the header" "$work/err" || fail "header-only capacity.csv: $(cat "$work/err")"

# ---- calibration DB ----
db="$INFSIM_SRC/data/calibration.db"
"$INFSIM" plot "$db" --out "$work/cal" >"$work/out" 2>"$work/err" || fail "plot calibration DB: $(cat "$work/err")"
want=$(sqlite3 "$db" "SELECT count(*) FROM (SELECT DISTINCT profile_id, tp FROM fit)")
got=$(grep -c '/calib_.*_tp[0-9]*\.png$' "$work/out")
[ "$got" = "$want" ] && [ "$want" -gt 0 ] || fail "calibration plots: $got images for $want (profile, model, TP)"
[ -s "$work/cal/calib_h100-sxm_llama2-7b_tp1.png" ] || fail "calib_h100-sxm_llama2-7b_tp1.png missing"

# ---- not a DB we know ----
printf 'hello\n' >"$work/x.db"
"$INFSIM" plot "$work/x.db" >/dev/null 2>"$work/err"
[ $? = 2 ] && grep -q "not a directory or an SQLite DB\|neither a sweep DB" "$work/err" || fail "plot of a text file: $(cat "$work/err")"

[ $failures = 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "ok"
