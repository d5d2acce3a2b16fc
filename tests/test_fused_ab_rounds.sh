#!/usr/bin/env bash
# bench/kernels/fused_ab_rounds.sh and fused_ab_summary.py with three builds
# whose bench_kernels are stand-ins (no GPU): each writes rows whose added
# times are known by construction (build k adds base_us[k] + the round's
# jitter, so the median over five rounds is base_us[k] + the jitters'
# median), and the summary must give those medians, their share of the
# decode, their ratio to the partials' bytes at the copy ceiling, the
# rotated order (each build first in some round), the decode checks of every
# build but base, and refuse bad --names.
set -u
SRC=${INFSIM_SRC:?source tree}
command -v python3 >/dev/null || exit 77
command -v xz >/dev/null || exit 77
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# Three builds: the stand-in bench writes a copy row (3000 GB/s) and, for
# path m4 at b=128/1K, the decode alone (180 us + 10 us x the build, and a
# drift a round, so that an added time taken against another round's decode
# is off) and fp32 R = 1 and 8 with partials (bytes as bench_kernels counts
# them).
for k in 0 1 2; do
  d="$W/b$k/bench/kernels"; mkdir -p "$d"
  cat > "$d/bench_kernels" <<EOF
#!/usr/bin/env bash
out=""; while [ \$# -gt 0 ]; do [ "\$1" = --out ] && out=\$2; shift; done
round=\$(basename "\$out" .csv); round=\${round##*-}
python3 - "\$out" "\$round" $k <<'PY'
import sys
out, rnd, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
jit = [0.0, 0.3, -0.2, 0.1, 0.5][rnd % 5]           # median 0.1
base_us = [3.0, 1.5, 6.0][k]                          # added at R = 1; x4 at R = 8
alone = 180.0 + 10 * k + [0.0, 1.0, -0.5, 2.0, 0.7][rnd % 5]  # the decode drifts: median + 0.7
head = "source,kernel,variant,dtype,batch,context,q_heads,kv_heads,block_tokens,splits,parts,m,n,k,median_ms,p10_ms,p90_ms,bytes,gbps,tflops,gpu,driver,sm_clock_mhz,mem_clock_mhz"
rows = ["ours,copy,d2d,u8,0,0,0,0,0,0,0,0,0,0,1,1,1,4294967296,3000.00,0,GPU X,1,1,1"]
rows.append("ours,decode_merge_paths,m4/alone,bf16,128,1024,64,8,16,0,0,0,0,0,%.6f,0,0,0,0,0,GPU X,1,1,1" % (alone / 1e3))
for R in (1, 8):
    pb = R * 128 * 64 * (128 * 4 + 4)
    add = base_us * (1 if R == 1 else 4) + jit
    rows.append("ours,decode_merge_paths,m4/f32-remote,bf16,128,1024,64,8,16,0,%d,0,0,0,%.6f,0,0,%d,0,0,GPU X,1,1,1"
                % (R, (alone + add) / 1e3, pb))
open(out, "w").write(head + "\n" + "\n".join(rows) + "\n")
PY
echo "order \$round $k" >> "\$(dirname "\$out")/../order.log"
EOF
  printf '#!/usr/bin/env bash\necho "[  PASSED  ] 4 test(s). build %s"\n' "$k" > "$d/kernels_gpu_check"
  chmod +x "$d/bench_kernels" "$d/kernels_gpu_check"
done
mkdir -p "$W/repo/.devlibs/usr/lib/x86_64-linux-gnu" "$W/out"
touch "$W/repo/.devlibs/usr/lib/x86_64-linux-gnu/libcmocka.so.0"

(cd "$W/repo" && bash "$SRC/bench/kernels/fused_ab_rounds.sh" pack "$W/b0" "$W/b1" "$W/b2" "$W/call") > "$W/pack.log" 2>&1 ||
  fail "pack: $(cat "$W/pack.log")"
[ -f "$W/call/bins.tar.xz" ] && [ -f "$W/call/fused_ab_summary.py" ] || fail "pack: DIR lacks its files"
listing=$(xz -dc "$W/call/bins.tar.xz" | tar tf - | sort | tr '\n' ' ')
for want in base/bench_kernels new/kernels_gpu_check new2/bench_kernels; do
  grep -qF "$want" <<< "$listing" || fail "pack: $want not packed ($listing)"
done

mkdir -p "$W/tmp"
(cd "$W/call" && FAB_TMP="$W/tmp" OUT="$W/out" ROUNDS=5 ROUNDS_UNTIL_S=600 MEMCHECK_S=1 NAMES=main,fast,slow \
  bash ./fused_ab_rounds.sh run) > "$W/run.log" 2>&1
S="$W/tmp/fused-ab/summary.md"
[ -f "$S" ] || fail "run: no summary: $(tail -5 "$W/run.log")"
[ -f "$W/out/results.tgz" ] || fail "run: no results.tgz"
grep -q "decode GPU checks (new) exit 0" "$W/run.log" && grep -q "decode GPU checks (new2) exit 0" "$W/run.log" ||
  fail "run: the decode checks of new and new2 did not run"
grep -q "decode GPU checks (base)" "$W/run.log" && fail "run: base's checks ran"
# Rotation: each build first in some round (the order the stand-ins logged).
firsts=$(awk '$2 != prev { prev = $2; print $3 }' "$W/tmp/fused-ab/order.log" | sort -u | tr -d '\n')
[ "$firsts" = 012 ] || fail "rotation: builds first in some round: '$firsts', want 012"
grep -q "rounds: main 5, fast 5, slow 5" "$S" || fail "rounds line: $(grep rounds: "$S")"

# Medians: R = 1 adds base_us + 0.1, R = 8 4 base_us + 0.1; x bytes against
# R x 128 x 64 x 516 bytes at 3000 GB/s; % of the decode alone.
python3 - "$S" <<'PY' || fail "summary values"
import re, sys
text = open(sys.argv[1]).read()
bad = 0
for R, mult in ((1, 1), (8, 4)):
    line = [l for l in text.splitlines() if re.search(r"m4 b=128 ctx=1024  f32 R=%d\b" % R, l)]
    if len(line) != 1:
        print("R=%d: want one line, got %d" % (R, len(line))); bad += 1; continue
    for name, base, alone in (("main", 3.0, 180.0), ("fast", 1.5, 190.0), ("slow", 6.0, 200.0)):
        m = re.search(r"%s ([-\d.]+) \[([-\d.]+)\.\.([-\d.]+)\]\s+([-\d.]+)%%\s+([-\d.]+)x" % name, line[0])
        if not m:
            print("R=%d %s: not in %s" % (R, name, line[0])); bad += 1; continue
        med, lo, hi, pct, x = map(float, m.groups())
        want = base * mult + 0.1
        t_us = R * 128 * 64 * 516 / 3000.0 / 1e3
        checks = [(med, want), (lo, base * mult - 0.2), (hi, base * mult + 0.5), (pct, 100 * want / (alone + 0.7)),
                  (x, want / t_us)]
        for got, exp in checks:
            if abs(got - exp) > 0.011 + 0.001 * abs(exp):
                print("R=%d %s: got %s want %.3f in %s" % (R, name, got, exp, line[0])); bad += 1
# R = 1 is <= 1% of the KV (66,048 x 128 bytes against 4096 x 128 x 1024 x 1%); R = 8 is not.
if "f32 R=1 (<= 1%)" not in text or "f32 R=8 (<= 1%)" in text:
    print("the <= 1% mark is wrong"); bad += 1
sys.exit(bad > 0)
PY

# The table of the fixed-cost points has a column a build.
grep -qE "^\| b=128/1K f32 R = 8, path 4 \| 12\.10 \[11\.80\.\.12\.50\], 6\.70% \| 6\.10 \[" "$S" ||
  fail "table row: $(grep 'b=128/1K f32 R = 8, path 4' "$S")"

# Without NAMES the builds are main, new, new2.
mkdir -p "$W/tmp2"
(cd "$W/call" && FAB_TMP="$W/tmp2" OUT="$W/out" ROUNDS=1 ROUNDS_UNTIL_S=600 MEMCHECK_S=1 bash ./fused_ab_rounds.sh run) \
  > "$W/run2.log" 2>&1
grep -q "rounds: main 1, new 1, new2 1" "$W/tmp2/fused-ab/summary.md" 2>/dev/null ||
  fail "default names: $(grep rounds: "$W/tmp2/fused-ab/summary.md" 2>&1)"

py="$SRC/bench/kernels/fused_ab_summary.py"
python3 "$py" --out "$W/x.csv" --names main "$W/tmp/fused-ab/rounds" > /dev/null 2>&1 && fail "--names with one name accepted"
python3 "$py" --out "$W/x.csv" --names a,a "$W/tmp/fused-ab/rounds" > /dev/null 2>&1 && fail "--names repeated accepted"

[ $failures -eq 0 ] && echo "fused_ab_rounds: all checks passed"
exit $((failures > 0))
