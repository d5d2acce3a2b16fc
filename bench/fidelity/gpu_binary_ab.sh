#!/usr/bin/env bash
# One call on the lent GPU machine: two builds of infsim on the same GPU,
# alternating, to tell a binary's speed from a machine's. The first 40
# requests of a trace at t = 0 (`infsim cluster`, one instance, the e2e
# config), ROUNDS rounds (default 3); per run the median decode-only and
# 8K-token prefill iteration; the SM clock every 0.5 s in $OUT/clocks.csv.
#   here:  OLD: a Release CUDA build of another commit (git archive REV | tar x -C DIR;
#          cmake -S DIR -B DIR/build -DCMAKE_BUILD_TYPE=Release; --target infsim_cli);
#          NEW: build-rel; tar cJf FOLDER/{old,new}.tar.xz -C BUILD infsim infsim-mpi;
#          copy .devlibs, bench/fidelity/e2e-llama2-7b-h200.yaml and the trace beside them
#   there: TRACE=FILE [NEW_FLAGS=--no-warm-up] bash FOLDER/gpu_binary_ab.sh
set -u
here=$(cd "$(dirname "$0")" && pwd)
O=${OUT:?}
cd "$here"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export LD_LIBRARY_PATH=$here/.devlibs/usr/lib/x86_64-linux-gnu:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee $O/gpu.txt
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv -lms 500 > $O/clocks.csv 2>&1 &
smi=$!
mkdir -p old new res
tar xJf old.tar.xz -C old && tar xJf new.tar.xz -C new
sed "s/^gpu: .*/gpu: h200/" e2e-llama2-7b-h200.yaml > e2e.yaml
awk -F, 'NR == 1 { print; next } NR <= 41 { $1 = 0; print }' OFS=, "${TRACE:?TRACE names the trace}" > t.csv
for r in $(seq 1 ${ROUNDS:-3}); do
  for b in old new; do
    flags=; [ $b = new ] && flags=${NEW_FLAGS:---no-warm-up}
    ./$b/infsim cluster e2e.yaml --trace t.csv --out res/$b-$r $flags --quiet > res/$b-$r.log 2>&1
    echo "$b-$r: exit $?"
  done
done
kill $smi
python3 - res <<'PY' | tee $O/table.txt
import csv, os, statistics, sys
top = sys.argv[1]
for d in sorted(x for x in os.listdir(top) if os.path.isdir(os.path.join(top, x))):
    rows = list(csv.DictReader(open(os.path.join(top, d, "iterations.csv"))))
    ms = lambda r: 1e3 * (float(r["end_s"]) - float(r["start_s"]))
    dec = [ms(r) for r in rows if int(r["prefill_tokens"]) == 0]
    pre = [ms(r) for r in rows if int(r["prefill_tokens"]) >= 8000]
    print(f"{d}: decode median {statistics.median(dec):.3f} ms ({len(dec)}), "
          f"8K prefill median {statistics.median(pre):.1f} ms ({len(pre)})")
PY
tar czf $O/ab.tgz -C res .
