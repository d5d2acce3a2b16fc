#!/usr/bin/env bash
# fused_ab_rounds.sh: one device call that checks a change to the decode's
# fused merge and times it against main's binary.
#
#   fused_ab_rounds.sh pack BASE_BUILD NEW_BUILD DIR
#       (on the build machine, from the repository root, whose .devlibs must
#       hold libcmocka0 besides the usual: /work/shared/tools/device-libs
#       libgsl27 libgslcblas0 libsqlite3-0 libyaml-0-2 libjansson4 libcmocka0)
#       DIR gets this script, fused_ab_summary.py, .devlibs and bins.tar.xz:
#       BASE_BUILD's and NEW_BUILD's bench/kernels/bench_kernels and
#       kernels_gpu_check (CUDA Release builds) as base/ and new/.
#   fused_ab_rounds.sh run
#       (on the device machine, in DIR's copy) writes $OUT/results.tgz,
#       repacked after every step so that a call cut short still returns what
#       ran: the new build's decode GPU checks (INFSIM_GPU_TEST_ONLY=test_decode),
#       up to ROUNDS (10) rounds of `bench_kernels --only fused_paths` (the
#       split merges PATHS names, default 35; contexts up to 8K, one round a process; base and new alternate,
#       the first of a pair swapped each round, so that clock drift falls on
#       both) while under ROUNDS_UNTIL_S (95) seconds since the start, then
#       compute-sanitizer memcheck over test_decode_merges_remote_partials
#       (MEMCHECK_S, 50 s) and the table of fused_ab_summary.py (summary.md;
#       every round's rows in all.csv, variants named by NAMES, default
#       main,new). About 150 s of commands.
set -u
here=$(cd "$(dirname "$0")" && pwd)
case ${1:-} in
  pack)
    base=${2:?usage: fused_ab_rounds.sh pack BASE_BUILD NEW_BUILD DIR} new=${3:?} dir=${4:?}
    [ -e .devlibs/usr/lib/x86_64-linux-gnu/libcmocka.so.0 ] || { echo "pack: ./.devlibs lacks libcmocka0" >&2; exit 1; }
    stage=$(mktemp -d)
    for b in base new; do
      src=$base; [ $b = new ] && src=$new
      mkdir -p "$stage/$b"
      cp "$src/bench/kernels/bench_kernels" "$src/bench/kernels/kernels_gpu_check" "$stage/$b/" || exit 1
    done
    mkdir -p "$dir"
    tar cf - -C "$stage" base new | xz -T2 -6 > "$dir/bins.tar.xz" || exit 1
    rm -rf "$stage"
    cp "$here/fused_ab_rounds.sh" "$here/fused_ab_summary.py" "$dir/"
    rm -rf "$dir/.devlibs" && cp -r .devlibs "$dir/"
    du -sh "$dir"
    exit 0 ;;
  run) ;;
  *) echo "usage: fused_ab_rounds.sh pack BASE_BUILD NEW_BUILD DIR | run" >&2; exit 2 ;;
esac

O=${OUT:?run: OUT names the folder whose files come back}
R=/tmp/fused-ab
W=/tmp/fused-ab-bin
rm -rf $R $W && mkdir -p $R/rounds $W
pack() { tar czf "$O/results.tgz" -C /tmp fused-ab; }
T0=$(date +%s)
el() { echo "t=$(($(date +%s) - T0)) s: $*" | tee -a $R/steps.log; }
export LD_LIBRARY_PATH=$here/.devlibs/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda-13*/lib64 \
         $(python3 -c 'import nvidia.cublas, os; print(os.path.join(nvidia.cublas.__path__[0], "lib"))' 2>/dev/null); do
  if [ -e "$d/libcublasLt.so.13" ]; then export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d; break; fi
done
xz -dc "$here/bins.tar.xz" | tar xf - -C $W
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,clocks.max.mem,temperature.gpu,power.draw,power.limit \
  --format=csv > $R/smi.csv 2>&1
cat $R/smi.csv
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv -lms 500 > $R/clocks.csv 2>&1 &
smi=$!
el "unpacked"

INFSIM_GPU_TEST_ONLY=test_decode timeout 60 $W/new/kernels_gpu_check > $R/gpu_check.log 2>&1
el "decode GPU checks (new) exit $?"
grep -E "^\[  (PASSED|FAILED) \]|FAILED" $R/gpu_check.log | head -6
pack

export INFSIM_BENCH_FUSED_PATHS=${PATHS:-35} INFSIM_BENCH_FUSED_MAX_CTX=8192 INFSIM_BENCH_FUSED_ROUNDS=1
for ((i = 0; i < ${ROUNDS:-10}; i++)); do
  if [ $(($(date +%s) - T0)) -gt "${ROUNDS_UNTIL_S:-95}" ]; then el "rounds stopped before round $i (time)"; break; fi
  order="base new"; [ $((i % 2)) = 1 ] && order="new base"
  for v in $order; do
    timeout 40 "$W/$v/bench_kernels" --out "$R/rounds/$v-$i.csv" --only fused_paths 2> "$R/rounds/$v-$i.log"
    el "round $i $v exit $?"
  done
  pack
done
kill $smi

INFSIM_GPU_TEST_ONLY=test_decode_merges_remote_partials timeout "${MEMCHECK_S:-50}" \
  compute-sanitizer --tool memcheck --print-limit 10 $W/new/kernels_gpu_check > $R/memcheck.log 2>&1
el "memcheck (new, test_decode_merges_remote_partials) exit $?"
grep -E "ERROR SUMMARY|^\[  (PASSED|FAILED) \]" $R/memcheck.log | tail -3

python3 "$here/fused_ab_summary.py" --out $R/all.csv --names "${NAMES:-main,new}" $R/rounds > $R/summary.md
el "summary exit $?"
cat $R/summary.md
pack
