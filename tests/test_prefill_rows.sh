#!/usr/bin/env bash
# bench/fidelity/prefill_rows.py on a run built by hand: five prefill rows
# of 8192 tokens whose errors are known (-10, +2, +4, +6, +30 %), a decode
# row and a 1024-token prefill that must not count, and idle time before
# rows 0 and 5 only (row 5 starts 1.8 s after row 4 ends; the others follow
# a row back to back). Medians: all five +4.0 %, after idle (rows 0 and 5,
# -10 and +30 %) +10.0 %.
set -u
SRC=${INFSIM_SRC:?source tree}
command -v python3 >/dev/null || exit 77
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/run"
# row: start, end, prefill tokens, measured, predicted
cat > "$W/rows.txt" <<'EOF'
0 0.0 1.0 8192 1.0 0.90
1 1.0 2.0 8192 1.0 1.02
2 2.0 3.0 8192 1.0 1.04
3 3.0 3.2 0 0.2 5.0
4 3.2 4.2 1024 1.0 9.0
5 6.0 7.0 8192 1.0 1.30
6 7.0 8.0 8192 1.0 1.06
EOF
{
  echo "instance,start_s,end_s,steps,prefill_tokens"
  awk '{print "0," $2 "," $3 ",1," $4}' "$W/rows.txt"
} > "$W/run/iterations.csv"
{
  echo "row,steps,prefill_tokens,measured_s,predicted_s"
  awk '{print $1 ",1," $4 "," $5 "," $6}' "$W/rows.txt"
} > "$W/run/rows.csv"
out=$(python3 "$SRC/bench/fidelity/prefill_rows.py" "$W/run") || { echo "FAIL: prefill_rows.py failed: $out"; exit 1; }
want="$W/run: after idle +10.0% (2), all +4.0% (5)"
[ "$out" = "$want" ] || { echo "FAIL: got '$out', want '$want'"; exit 1; }
# A missing rows file is refused with the run named.
if err=$(python3 "$SRC/bench/fidelity/prefill_rows.py" --rows nope.csv "$W/run" 2>&1); then
  echo "FAIL: a missing rows file was accepted"; exit 1
fi
case $err in *"$W/run"*nope.csv*) ;; *) echo "FAIL: message does not name the run and file: $err"; exit 1 ;; esac
echo "prefill_rows: $out"
