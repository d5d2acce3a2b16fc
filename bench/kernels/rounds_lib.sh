# Sourced by prefill_rounds.sh and chunk_rounds.sh (run from the folder
# device_call.sh runs in). rounds_begin USAGE DIR CLOCKS ROUNDS [FIRST]:
# sets rounds, first (default 0) and out ($OUT, default out-kernels),
# makes $out/DIR for the rounds' CSVs, and samples the SM clock and power
# every 500 ms into $out/CLOCKS in the background (its pid in smi, for the
# caller to kill when the rounds are done).
rounds_begin() {
  local usage=$1 dir=$2 clocks=$3
  shift 3
  rounds=${1:?usage: $usage}
  first=${2:-0}
  out=${OUT:-out-kernels}
  mkdir -p "$out/$dir"
  nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu \
    --format=csv -lms 500 > "$out/$clocks" 2>&1 &
  smi=$!
}
