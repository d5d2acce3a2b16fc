# Sourced by prefill_rounds.sh and chunk_rounds.sh (run from the folder
# device_call.sh runs in). rounds_begin USAGE DIR CLOCKS ROUNDS [FIRST]:
# sets rounds, first (default 0) and out ($OUT, default out-kernels),
# makes $out/DIR for the rounds' CSVs, and samples the SM clock and power
# every 500 ms into $out/CLOCKS in the background (its pid in smi, for the
# caller to kill when the rounds are done).
# Every timing (ours and torch's) is warmed up with WARM_MS of calls,
# default 300: the speed a GPU under load holds. After 30 ms (the
# bench's default) our kernels had not reached it behind the bench's
# host-side set-up (H100, 4K tokens, 32/32 heads: 378-446 TFLOP/s, against
# 450-497 after 300 ms or 1 s) while torch's cuDNN read the same (477-481);
# kernels/NOTES.md, "H100, the shipped kernels".
export WARM_MS=${WARM_MS:-300}
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
