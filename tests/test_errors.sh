#!/usr/bin/env bash
# test_errors.sh: every row of docs/errors.md, run. Each case below builds
# its bad input in a scratch directory (relative names, so messages are the
# same everywhere), runs the CLI, and compares the whole of stderr and the
# exit code with the row of the same id in the table; a row without a case
# or a case without a row fails too. Cases that write outputs also check
# that nothing was left behind (no temporary file, the old output intact).
#
#   bash tests/test_errors.sh            check (ctest runs this)
#   bash tests/test_errors.sh --print    print the table rows as the CLI
#                                        answers now (to review, then paste)
set -u
INFSIM=${INFSIM:?path of the infsim CLI}
SRC=${INFSIM_SRC:?source tree}
command -v python3 >/dev/null || { echo "python3 missing: skipped"; exit 77; }
command -v sqlite3 >/dev/null || { echo "sqlite3 missing: skipped"; exit 77; }
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W" || exit 1

RAW_HEADER='schema,gpu,driver,sm_clock_mhz,mem_clock_mhz,backend,model,layers,hidden,heads,kv_heads,head_dim,intermediate,dtype_bytes,tp,kernel,tokens,pairs,requests,context_tokens,partials,bytes,local_fraction,repeats,median_ns,spread_ns'
raw_row() { echo "1,Test GPU,1.0,1000,2000,cpu,tiny,2,256,2,2,128,688,2,1,gemm_qkv,$1,0,0,0,0,0,1,5,$2,10"; }
T_HEADER='arrival_time_s,prompt_tokens,output_tokens'
# A small valid config: every case that needs one runs it for 1 request.
printf 'model: tiny\ngpu: a100-80gb\nworkload:\n  requests: 1\n' >ok.yaml
good_db() { # a loaded and fitted DB from four gemm points
  { echo "$RAW_HEADER"; for i in 1 2 3 4; do raw_row $((16 * i)) $((1000 + 40 * i)); done; } >good.csv
  "$INFSIM" calibrate load good.csv --db "$1" >/dev/null && "$INFSIM" calibrate fit --db "$1" >/dev/null
}

# ---- the cases: one function each, named case_ID (ID with '_' for '-') ----
case_config_missing() { "$INFSIM" run nosuch.yaml --out o; }
case_config_syntax() { printf 'a: [1, 2\nb: 3\n' >c.yaml; "$INFSIM" run c.yaml --out o; }
case_config_repeat() { printf 'model:\n  layers: 2\nseed: 1\nmodel:\n  heads: 4\n' >c.yaml; "$INFSIM" run c.yaml --out o; }
case_config_clash() { printf 'model: tiny\nmodel.layers: 2\n' >c.yaml; "$INFSIM" run c.yaml --out o; }
case_config_tag() { printf 'seed: !!int 5\n' >c.yaml; "$INFSIM" run c.yaml --out o; }
case_config_unknown_key() { printf 'model: tiny\nsede: 4\n' >c.yaml; "$INFSIM" run c.yaml --out o; }
case_config_bad_value() { printf 'seed: -1\n' >c.yaml; "$INFSIM" run c.yaml --out o; }
case_config_aliases() {
  python3 -c "
s = 'a0: &a0 {}\n'
for i in range(1, 40): s += 'a%d: &a%d {x: *a%d, y: *a%d}\n' % (i, i, i - 1, i - 1)
open('c.yaml', 'w').write(s)"
  "$INFSIM" run c.yaml --out o
}
case_config_newline_value() { printf 'seed: "1\\n2"\n' >c.yaml; "$INFSIM" run c.yaml --out o; }
case_config_binary() { "$INFSIM" run /dev/zero --out o; }
case_lose_instance_missing() {
  printf 'model: tiny\npolicy:\n  name: infinite-llm\nfaults:\n  lose_instance: 4\n' >c.yaml
  "$INFSIM" run c.yaml --out o
}
case_lose_only_instance() {
  printf 'model: tiny\ncluster:\n  instances: 1\npolicy:\n  name: infinite-llm\nfaults:\n  lose_instance: 0\n' >c.yaml
  "$INFSIM" run c.yaml --out o
}
case_infinite_instances() {
  printf 'model: tiny\ncluster:\n  instances: 32768\npolicy:\n  name: infinite-llm\n' >c.yaml
  "$INFSIM" run c.yaml --out o
}
case_instances_max() { "$INFSIM" run ok.yaml --set cluster.instances=1000000 --out o; }
case_fault_gmanager_period() {
  printf 'policy:\n  name: infinite-llm\nfaults:\n  lose_gmanager_at_s: 1\n  lose_gmanager_every_s: 0.05\n' >c.yaml
  "$INFSIM" run c.yaml --out o
}
case_tp_above_heads() { printf 'model: tiny\ngpu: a100-80gb\ncluster:\n  gpus_per_instance: 3\n' >c.yaml; "$INFSIM" run c.yaml --out o; }
case_tp_above_heads_set() { "$INFSIM" run ok.yaml --out o --set cluster.gpus_per_instance=4; }
case_weights_no_room() { printf 'model: llama2-70b\ngpu: a100-40gb\n' >c.yaml; "$INFSIM" run c.yaml --out o; }
case_gmanager_node() { printf 'model: tiny\npolicy:\n  name: infinite-llm\n  gmanager_node: 99\n' >c.yaml; "$INFSIM" run c.yaml --out o; }
case_gpu_no_profile() {
  good_db x.db || return 99
  printf 'model: tiny\ngpu: a100-80gb-x\ncalibration:\n  db: x.db\n' >c.yaml
  "$INFSIM" run c.yaml --out o
}
case_db_missing() { printf 'model: tiny\ncalibration:\n  db: nosuch.db\n' >c.yaml; "$INFSIM" run c.yaml --out o; }
case_db_directory() { mkdir -p adir; printf 'model: tiny\ncalibration:\n  db: adir\n' >c.yaml; "$INFSIM" run c.yaml --out o; }
case_set_syntax() { "$INFSIM" run ok.yaml --out o --set seed; }
case_model_name_shape() { printf 'model: {name: tiny, layers: 4}\n' >c.yaml; "$INFSIM" run c.yaml --out o; }
case_set_clash() { "$INFSIM" run ok.yaml --out o --set model.layers=2; }
case_set_utf8() { "$INFSIM" run ok.yaml --out o --set "model.name=$(printf '\377')"; }
case_workload_beside_trace() {
  printf '%s\n0,5,5\n' "$T_HEADER" >t.csv
  printf 'model: tiny\nworkload:\n  trace: t.csv\n  reqests: 5\n' >c.yaml
  "$INFSIM" run c.yaml --out o
}
case_gen_config_trace() { printf 'model: tiny\nworkload:\n  trace: t.csv\n' >c.yaml; "$INFSIM" trace gen --config c.yaml -o g.csv; }
case_workload_tiny_duration() { "$INFSIM" trace gen --duration_s 4e-11 -o t.csv; }
case_trace_missing_column() { printf 'arrival_time_s,prompt_tokens\n0,1\n' >t.csv; "$INFSIM" trace stats t.csv; }
case_trace_repeated_column() { printf 'arrival_time_s,prompt_tokens,output_tokens,prompt_tokens\n0,1,1,2\n' >t.csv; "$INFSIM" trace stats t.csv; }
case_trace_nul() { printf '%s\n0,"1\0",1\n' "$T_HEADER" >t.csv; "$INFSIM" trace stats t.csv; }
case_trace_dev_zero() { "$INFSIM" run ok.yaml --out o --trace /dev/zero; }
case_trace_long_line() { { echo "$T_HEADER"; head -c 1100000 /dev/zero | tr '\0' 7; echo; } >t.csv; "$INFSIM" trace stats t.csv; }
case_trace_not_number() { printf '%s\n0x10,1,1\n' "$T_HEADER" >t.csv; "$INFSIM" trace stats t.csv; }
case_trace_back_in_time() { printf '%s\n2,1,1\n1.5,1,1\n' "$T_HEADER" >t.csv; "$INFSIM" trace stats t.csv; }
case_trace_zero_tokens() { printf '%s\n0,0,1\n' "$T_HEADER" >t.csv; "$INFSIM" trace stats t.csv; }
case_trace_too_late() { printf '%s\n1000000001,1,1\n' "$T_HEADER" >t.csv; "$INFSIM" trace stats t.csv; }
case_trace_empty() { printf '%s\n' "$T_HEADER" >t.csv; "$INFSIM" trace stats t.csv; }
case_trace_directory() { mkdir -p adir; "$INFSIM" trace stats adir; }
case_azure_span() {
  printf 'TIMESTAMP,ContextTokens,GeneratedTokens\n1900-01-01 00:00:00,5,5\n2200-01-01 00:00:00,5,5\n' >az.csv
  "$INFSIM" trace import azure az.csv -o out.csv --speedup 1000
}
case_azure_span_back() {
  printf 'TIMESTAMP,ContextTokens,GeneratedTokens\n2200-01-01 00:00:00,5,5\n1900-01-01 00:00:00,5,5\n' >az.csv
  "$INFSIM" trace import azure az.csv -o out.csv
}
case_azure_date() { printf 'TIMESTAMP,ContextTokens,GeneratedTokens\n2023-02-29 00:00:00,5,5\n' >az.csv; "$INFSIM" trace import azure az.csv -o out.csv; }
case_import_repeated_column() {
  printf 'Timestamp,Model,Request tokens,Response tokens,Model\n1,a,2,3,b\n' >b.csv
  "$INFSIM" trace import burstgpt b.csv -o out.csv
}
case_mooncake_timestamp_range() {
  printf '{"timestamp": 9223372036855, "input_length": 2, "output_length": 1, "hash_ids": []}\n' >m.jsonl
  "$INFSIM" trace import mooncake m.jsonl -o out.csv
}
case_burstgpt_timestamp_range() {
  printf 'Timestamp,Model,Request tokens,Response tokens\n1e10,a,2,3\n' >b.csv
  "$INFSIM" trace import burstgpt b.csv -o out.csv
}
case_import_late_arrival() {
  printf 'Timestamp,Model,Request tokens,Response tokens\n1700000000,a,2,3\n2700000000.5,a,2,3\n' >b.csv
  "$INFSIM" trace import burstgpt b.csv -o out.csv
}
case_mooncake_json() { printf '{"timestamp": 1, "input_length": 2,\n' >m.jsonl; "$INFSIM" trace import mooncake m.jsonl -o out.csv; }
case_out_is_file() { : >afile; "$INFSIM" run ok.yaml --out afile; }
case_output_is_directory() { mkdir -p t.csv; "$INFSIM" trace gen --requests 2 -o t.csv; }
case_raw_hex() { { echo "$RAW_HEADER"; raw_row 1 0x1p10; } >raw.csv; "$INFSIM" calibrate load raw.csv --db x.db; }
case_raw_subnormal() { { echo "$RAW_HEADER"; raw_row 1 4.9e-324; } >raw.csv; "$INFSIM" calibrate load raw.csv --db x.db; }
case_raw_nan() { { echo "$RAW_HEADER"; raw_row 1 nan; } >raw.csv; "$INFSIM" calibrate load raw.csv --db x.db; }
case_raw_repeated_column() { { echo "$RAW_HEADER,tokens"; echo "$(raw_row 1 100),1"; } >raw.csv; "$INFSIM" calibrate load raw.csv --db x.db; }
case_db_not_sqlite() { echo hello >x.db; "$INFSIM" calibrate show --db x.db; }
case_db_missing_table_show() { sqlite3 x.db 'CREATE TABLE profile (x); PRAGMA user_version = 2;'; "$INFSIM" calibrate show --db x.db; }
case_db_missing_table_fit() { sqlite3 x.db 'CREATE TABLE profile (x); PRAGMA user_version = 2;'; "$INFSIM" calibrate fit --db x.db; }
case_db_wrong_columns() {
  sqlite3 x.db 'CREATE TABLE profile (x); CREATE TABLE measurement (x); CREATE TABLE fit (x);
                CREATE TABLE fit_summary (x); PRAGMA user_version = 2;'
  "$INFSIM" calibrate fit --db x.db
}
case_db_iteration_fit() {
  cp "$SRC/data/calibration.db" x.db && sqlite3 x.db 'UPDATE iteration_fit SET overhead_us = -5;' || return 99
  printf 'model: llama2-7b\ngpu: h200\ncluster:\n  instances: 1\nworkload:\n  requests: 1\ncalibration:\n  db: x.db\n' >c.yaml
  "$INFSIM" run c.yaml --out o
}
case_db_fit_floor() {
  cp "$SRC/data/calibration.db" x.db && sqlite3 x.db "UPDATE fit SET c_const = -1e9 WHERE kernel = 'merge';" || return 99
  printf 'model: llama2-7b\ngpu: h200\ncluster:\n  instances: 1\nworkload:\n  requests: 1\ncalibration:\n  db: x.db\n' >c.yaml
  "$INFSIM" run c.yaml --out o
}
case_db_fit_slope() {
  cp "$SRC/data/calibration.db" x.db && sqlite3 x.db "UPDATE fit SET c_context_tokens = -2 WHERE kernel = 'decode_attn';" || return 99
  printf 'model: llama2-7b\ngpu: h200\ncluster:\n  instances: 1\nworkload:\n  requests: 1\ncalibration:\n  db: x.db\n' >c.yaml
  "$INFSIM" run c.yaml --out o
}
case_db_bad_row() {
  good_db x.db || return 99
  sqlite3 x.db 'UPDATE measurement SET median_ns = 4.9e-324 WHERE id = 2;'
  "$INFSIM" calibrate fit --db x.db
}
case_out_under_file() { : >afile; "$INFSIM" run ok.yaml --out afile/o; }
case_timeline_is_output() { "$INFSIM" run ok.yaml --out o --timeline o/summary.json; }
case_sweep_out_directory() { mkdir -p adir; "$INFSIM" sweep ok.yaml --out adir --grid scheduler.max_batch_size=1,2 --progress none; }
case_cluster_out_is_file() { : >afile; "$INFSIM" cluster ok.yaml --out afile --executor cpu; }
case_calib_db_directory() { { echo "$RAW_HEADER"; raw_row 16 1000; } >raw.csv; mkdir -p adir; "$INFSIM" calibrate load raw.csv --db adir; }
case_plot_dir_missing() { "$INFSIM" run ok.yaml --out r --quiet && "$INFSIM" compare r r --plot nosuch/x.png; }

# ---- the table -------------------------------------------------------------
rows=$(python3 - "$SRC/docs/errors.md" <<'PY'
import re, sys
for line in open(sys.argv[1], encoding='utf-8'):
    cells = [c.strip() for c in line.strip().strip('|').split('|')]
    if len(cells) != 4 or not re.fullmatch(r'`[a-z0-9-]+`', cells[0]): continue
    msg = cells[2]
    if not (msg.startswith('`') and msg.endswith('`')): sys.exit('message not in backticks: ' + line)
    print(cells[0].strip('`') + '\t' + cells[3] + '\t' + msg[1:-1].replace('\\|', '|'))
PY
) || { echo "FAIL: cannot read docs/errors.md"; exit 1; }

print_mode=0
[ "${1:-}" = "--print" ] && print_mode=1
failures=0
declare -A documented
while IFS=$'\t' read -r id want_rc want_msg; do
  documented[$id]=1
done <<<"$rows"
for fn in $(declare -F | awk '{print $3}' | grep '^case_'); do
  id=${fn#case_}
  id=${id//_/-}
  rm -rf "$W"/* && printf 'model: tiny\ngpu: a100-80gb\nworkload:\n  requests: 1\n' >ok.yaml
  "$fn" >/dev/null 2>err.txt
  rc=$?
  got=$(cat err.txt)
  if [ $print_mode = 1 ]; then
    printf '| `%s` | | `%s` | %d |\n' "$id" "${got//|/\\|}" "$rc"
    continue
  fi
  if [ -z "${documented[$id]:-}" ]; then
    echo "FAIL: case $id has no row in docs/errors.md"; failures=$((failures + 1)); continue
  fi
  line=$(grep -P "^\Q$id\E\t" <<<"$rows")
  want_rc=$(cut -f2 <<<"$line")
  want_msg=$(cut -f3- <<<"$line")
  if [ "$rc" != "$want_rc" ] || [ "$got" != "$want_msg" ]; then
    echo "FAIL: $id: exit $rc, stderr:"; echo "  $got"; echo "  want exit $want_rc:"; echo "  $want_msg"
    failures=$((failures + 1))
  fi
  if ls -a "$W" | grep -q '\.tmp\.'; then echo "FAIL: $id left a temporary file"; failures=$((failures + 1)); fi
  [ -e "$W/o" ] && [ "$id" != out-is-file ] && { echo "FAIL: $id created the output directory"; failures=$((failures + 1)); }
  unset "documented[$id]"
done
[ $print_mode = 1 ] && exit 0
for id in "${!documented[@]}"; do echo "FAIL: row $id of docs/errors.md has no case"; failures=$((failures + 1)); done
[ $failures -eq 0 ] && echo "all $(wc -l <<<"$rows") rows of docs/errors.md hold"
[ $failures -eq 0 ]
