#!/usr/bin/env bash
# calibrate-gpu.sh: calibrate this machine's GPU for one or more models, in one command.
#
#   calibrate/calibrate-gpu.sh [--db DB] [--profile NAME] [--quick] [--raw-only] MODEL...
#
# For each MODEL (llama2-7b, llama2-13b, llama2-70b, tiny): `infsim calibrate run
# --backend cuda` over TP 1, 2, 4, 8 (one layer of one shard each), keeping the raw
# CSV in data/calibration/raw-PROFILE-MODEL.csv; then `load` every raw file into the DB
# (default data/calibration.db) and `fit` it, printing the held-out error. The profile
# name comes from the GPU's name (h100-sxm, a100-80gb, ...) unless --profile names it.
# Needs a CUDA build of infsim ($INFSIM, default ./build/infsim). Exit 77 without a GPU.
# (--backend cpu, --tp LIST and --raw-dir DIR exist so that tests can run the script.)
# On a machine without SQLite/GSL, run with --raw-only there and then load + fit elsewhere:
#   infsim calibrate load data/calibration/raw-PROFILE-MODEL.csv --db data/calibration.db
#   infsim calibrate fit --db data/calibration.db
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
infsim=${INFSIM:-$here/build/infsim}
db=$here/data/calibration.db
profile=""
quick=""
raw_only=0
backend=cuda
tp_args=()
raw_dir=$here/data/calibration
models=()
while [ $# -gt 0 ]; do
  case "$1" in
    --db) db=$2; shift 2 ;;
    --profile) profile=$2; shift 2 ;;
    --quick) quick=--quick; shift ;;
    --raw-only) raw_only=1; shift ;;
    --backend) backend=$2; shift 2 ;;
    --tp) tp_args=(--tp "$2"); shift 2 ;;
    --raw-dir) raw_dir=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "calibrate-gpu.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    *) models+=("$1"); shift ;;
  esac
done
[ ${#models[@]} -gt 0 ] || { echo "calibrate-gpu.sh: name at least one model (try --help)" >&2; exit 2; }
[ -x "$infsim" ] || { echo "calibrate-gpu.sh: no infsim binary at $infsim (set INFSIM)" >&2; exit 2; }

mkdir -p "$raw_dir"
raws=()
for model in "${models[@]}"; do
  tmp="$raw_dir/.raw-$model.csv"
  "$infsim" calibrate run --backend "$backend" --model "$model" $quick ${tp_args[@]+"${tp_args[@]}"} --out "$tmp"
  # Name the file after the profile the GPU maps to (the first row's gpu column).
  name=$profile
  if [ -z "$name" ]; then
    gpu=$(awk -F, 'NR == 2 { print $2; exit }' "$tmp")
    name=$(echo "$gpu" | tr 'A-Z' 'a-z' | sed -e 's/.*h200.*/h200/' -e 's/.*h100.*pcie.*/h100-pcie/' \
      -e 's/.*h100.*/h100-sxm/' -e 's/.*a100.*80g.*/a100-80gb/' -e 's/.*a100.*/a100-40gb/' -e 's/[^a-z0-9]\{1,\}/-/g')
  fi
  raw="$raw_dir/raw-$name-$model.csv"
  mv "$tmp" "$raw"
  raws+=("$raw")
done
[ "$raw_only" -eq 1 ] && { printf 'raw measurements: %s\n' "${raws[@]}"; exit 0; }
for raw in "${raws[@]}"; do
  if [ -n "$profile" ]; then
    "$infsim" calibrate load "$raw" --db "$db" --profile "$profile"
  else
    "$infsim" calibrate load "$raw" --db "$db"
  fi
done
"$infsim" calibrate fit --db "$db"
