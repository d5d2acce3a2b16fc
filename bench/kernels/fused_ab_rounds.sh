#!/usr/bin/env bash
# fused_ab_rounds.sh: one device call that checks a change to the decode's
# fused merge and times it against main's binary (and more variants beside).
#
#   fused_ab_rounds.sh pack BASE_BUILD NEW_BUILD [MORE_BUILD ...] DIR
#       (on the build machine, from the repository root, whose .devlibs must
#       hold libcmocka0 besides the usual: /work/shared/tools/device-libs
#       libgsl27 libgslcblas0 libsqlite3-0 libyaml-0-2 libjansson4 libcmocka0)
#       DIR gets this script, fused_ab_summary.py, .devlibs and bins.tar.xz:
#       each build's bench/kernels/bench_kernels and kernels_gpu_check (CUDA
#       Release builds) as base/, new/, new2/, .. in one xz stream whose
#       window spans them all, so that builds differing in a kernel or two
#       cost little more than one (about 4.5 MiB for four).
#   fused_ab_rounds.sh run
#       (on the device machine, in DIR's copy) writes $OUT/results.tgz,
#       repacked after every step so that a call cut short still returns what
#       ran: every build but base's decode GPU checks
#       (INFSIM_GPU_TEST_ONLY=test_decode), up to ROUNDS (10) rounds of
#       `bench_kernels --only fused_paths` (the split merges PATHS names,
#       default 35; contexts up to 8K, one round a process; the builds in
#       turn, the order rotated a place each round, and INFSIM_BENCH_ROUND
#       set to the round, which rotates each build's paths and timings
#       likewise, so that clock drift falls on all) while under
#       ROUNDS_UNTIL_S (95) seconds since the start; then
#       with EXTRA="B:CTX .." the last build's fused_paths at those batches
#       and contexts (paths EXTRA_PATHS, 0346; five rounds in one process),
#       compute-sanitizer memcheck over test_decode_merges_remote_partials
#       with the last build (MEMCHECK_S, 50 s), racecheck over it if
#       RACECHECK_S is set (RACECHECK_SPLIT_MERGE=N narrows it alone to
#       split merge N, through INFSIM_GPU_TEST_SPLIT_MERGE), and the tables
#       of fused_ab_summary.py (summary.md; every round's rows in all.csv,
#       builds named by NAMES, default main,new,new2,..). About 150 s of
#       commands for two builds.
set -u
here=$(cd "$(dirname "$0")" && pwd)
# Build i's folder in bins.tar.xz (fused_ab_summary.py reads the same names).
build_dir() { case $1 in 0) echo base ;; 1) echo new ;; *) echo "new$1" ;; esac; }
case ${1:-} in
  pack)
    shift
    [ $# -ge 3 ] || { echo "usage: fused_ab_rounds.sh pack BASE_BUILD NEW_BUILD [MORE_BUILD ...] DIR" >&2; exit 2; }
    dir=${@: -1}
    [ -e .devlibs/usr/lib/x86_64-linux-gnu/libcmocka.so.0 ] || { echo "pack: ./.devlibs lacks libcmocka0" >&2; exit 1; }
    stage=$(mktemp -d)
    i=0
    for src in "${@:1:$#-1}"; do
      b=$(build_dir $i)
      mkdir -p "$stage/$b"
      cp "$src/bench/kernels/bench_kernels" "$src/bench/kernels/kernels_gpu_check" "$stage/$b/" || exit 1
      i=$((i + 1))
    done
    mkdir -p "$dir"
    (cd "$stage" && tar cf - *) |
      xz -T1 --lzma2=preset=6,dict=256MiB > "$dir/bins.tar.xz" || exit 1
    rm -rf "$stage"
    cp "$here/fused_ab_rounds.sh" "$here/fused_ab_summary.py" "$dir/"
    rm -rf "$dir/.devlibs" && cp -r .devlibs "$dir/"
    du -sh "$dir"
    exit 0 ;;
  run) ;;
  *) echo "usage: fused_ab_rounds.sh pack BASE_BUILD NEW_BUILD [MORE_BUILD ...] DIR | run" >&2; exit 2 ;;
esac

O=${OUT:?run: OUT names the folder whose files come back}
T=${FAB_TMP:-/tmp} # where the builds and the results are unpacked
R=$T/fused-ab
W=$T/fused-ab-bin
rm -rf $R $W && mkdir -p $R/rounds $W
pack() { tar czf "$O/results.tgz" -C "$T" fused-ab; }
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

builds=base; n=1
while [ -d "$W/$(build_dir $n)" ]; do builds="$builds $(build_dir $n)"; n=$((n + 1)); done
last=${builds##* }
for v in ${builds#base }; do
  INFSIM_GPU_TEST_ONLY=test_decode timeout 60 $W/$v/kernels_gpu_check > $R/gpu_check-$v.log 2>&1
  el "decode GPU checks ($v) exit $?"
  grep -E "^\[  (PASSED|FAILED) \]|FAILED" $R/gpu_check-$v.log | head -6
done
pack

export INFSIM_BENCH_FUSED_PATHS=${PATHS:-35} INFSIM_BENCH_FUSED_MAX_CTX=8192 INFSIM_BENCH_FUSED_ROUNDS=1
set -- $builds
for ((i = 0; i < ${ROUNDS:-10}; i++)); do
  if [ $(($(date +%s) - T0)) -gt "${ROUNDS_UNTIL_S:-95}" ]; then el "rounds stopped before round $i (time)"; break; fi
  for ((k = 0; k < n; k++)); do
    j=$(((k + i) % n + 1)); v=${!j}
    INFSIM_BENCH_ROUND=$i timeout 40 "$W/$v/bench_kernels" --out "$R/rounds/$v-$i.csv" --only fused_paths 2> "$R/rounds/$v-$i.log"
    el "round $i $v exit $?"
  done
  pack
done
kill $smi 2> /dev/null

for bc in ${EXTRA:-}; do
  B=${bc%:*} C=${bc#*:}
  INFSIM_BENCH_FUSED_PATHS=${EXTRA_PATHS:-0346} INFSIM_BENCH_FUSED_ROUNDS=5 INFSIM_BENCH_FUSED_BATCH=$B \
    INFSIM_BENCH_FUSED_CTX=$C INFSIM_BENCH_FUSED_MAX_CTX=$C timeout 60 "$W/$last/bench_kernels" \
    --out "$R/extra-$B-$C.csv" --only fused_paths 2> "$R/extra-$B-$C.log"
  el "extra b=$B ctx=$C ($last) exit $?"
  grep -E "R=[0-9]+:" "$R/extra-$B-$C.log" | sed 's/ = .*(..... us)//'
  pack
done

INFSIM_GPU_TEST_ONLY=test_decode_merges_remote_partials timeout "${MEMCHECK_S:-50}" \
  compute-sanitizer --tool memcheck --print-limit 10 $W/$last/kernels_gpu_check > $R/memcheck.log 2>&1
el "memcheck ($last, test_decode_merges_remote_partials) exit $?"
grep -E "ERROR SUMMARY|^\[  (PASSED|FAILED) \]" $R/memcheck.log | tail -3
if [ -n "${RACECHECK_S:-}" ]; then
  env INFSIM_GPU_TEST_ONLY=test_decode_merges_remote_partials ${RACECHECK_SPLIT_MERGE:+INFSIM_GPU_TEST_SPLIT_MERGE=$RACECHECK_SPLIT_MERGE} \
    timeout "$RACECHECK_S" compute-sanitizer --tool racecheck --print-limit 10 $W/$last/kernels_gpu_check > $R/racecheck.log 2>&1
  el "racecheck ($last, test_decode_merges_remote_partials${RACECHECK_SPLIT_MERGE:+, split merge $RACECHECK_SPLIT_MERGE}) exit $?"
  grep -E "RACECHECK SUMMARY|^\[  (PASSED|FAILED) \]" $R/racecheck.log | tail -3
fi

default_names=main,$(echo ${builds#base } | tr ' ' ,)
python3 "$here/fused_ab_summary.py" --out $R/all.csv --names "${NAMES:-$default_names}" $R/rounds > $R/summary.md
el "summary exit $?"
cat $R/summary.md
pack
