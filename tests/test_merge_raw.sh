#!/usr/bin/env bash
# calibrate/merge-raw.py against values known by construction: three runs of
# one GPU and model, each point's median and spread computed here; a point
# one run lacks keeps the others'; --only-from takes named kernels (and, with
# terms, only fresh prompts in a token and q_heads range) from one file alone,
# the rest still the median; overlapping selections, a point the file lacks,
# a bad term, a selected row whose tokens are not a number, a file not
# merged, another GPU and a missing column are refused with exit 2, naming
# the file, and OUT is not written.
set -u
SRC=${INFSIM_SRC:?source tree}
command -v python3 >/dev/null || exit 77
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
MR="$SRC/calibrate/merge-raw.py"

# Runs a, b, c. heads 32 at tp 1 and 2 (q_heads 32 and 16). Kernel times:
# a = base, b = base * 1.1, c = base * 0.95 (+ a run-specific offset so that
# the median is the middle run's value and never an average).
python3 - "$W" <<'PY'
import sys
w = sys.argv[1]
head = "schema,gpu,driver,model,heads,tp,kernel,tokens,pairs,requests,context_tokens,partials,bytes,local_fraction,repeats,median_ns,spread_ns"
pts = []
for tp in (1, 2):
    for t in (1024, 3072, 4096, 8192):
        pts.append((tp, "prefill_attn", t, t * (t + 1) // 2))   # fresh prompt
        pts.append((tp, "prefill_attn", t, t * 5000))            # a chunk over a prefix
    for r in (1, 8, 64):
        pts.append((tp, "decode_attn", r, 0))
    pts.append((tp, "gemm_qkv", 16, 0))
scale = {"a": 1.0, "b": 1.1, "c": 0.95}
for run, s in scale.items():
    with open(f"{w}/{run}.csv", "w") as f:
        f.write(head + "\n")
        for tp, k, t, p in pts:
            if run == "c" and k == "gemm_qkv" and tp == 2:
                continue                                         # c lacks this point
            base = 1000.0 * t / tp + (p % 997)
            f.write(f"1,GPU X,1.0,m,32,{tp},{k},{t},{p},0,0,0,0,1,5,{base * s:.6g},{s * 10:.6g}\n")
PY

python3 "$MR" "$W/m.csv" "$W/a.csv" "$W/b.csv" "$W/c.csv" 2>"$W/err" || fail "plain merge: $(cat "$W/err")"
python3 - "$W" <<'PY' || fail "plain merge: values"
import csv, sys
w = sys.argv[1]
rd = lambda n: {(r["tp"], r["kernel"], r["tokens"], r["pairs"]): r for r in csv.DictReader(open(f"{w}/{n}.csv"))}
a, b, c, m = rd("a"), rd("b"), rd("c"), rd("m")
bad = 0
if list(m) != list(a):
    print("rows not in the first file's order"); bad += 1
for k, r in m.items():
    ts = sorted(float(x[k]["median_ns"]) for x in (a, b, c) if k in x)
    want = ts[len(ts) // 2] if len(ts) % 2 else (ts[0] + ts[1]) / 2
    if abs(float(r["median_ns"]) - want) > 1e-5 * want:
        print(k, "median", r["median_ns"], "want", want); bad += 1
    if abs(float(r["spread_ns"]) - (ts[-1] - ts[0])) > 1e-5 * want:
        print(k, "spread", r["spread_ns"], "want", ts[-1] - ts[0]); bad += 1
    if len(ts) != (2 if k == ("2", "gemm_qkv", "16", "0") else 3):
        print(k, "runs", len(ts)); bad += 1
sys.exit(bad > 0)
PY

# decode_attn from c alone; prefill_attn on fresh 2049-4096-token prompts at
# q_heads >= 32 from b alone; everything else the median.
python3 "$MR" "$W/s.csv" "$W/a.csv" "$W/b.csv" "$W/c.csv" \
  --only-from "$W/c.csv:decode_attn" \
  --only-from "$W/b.csv:prefill_attn;fresh;tokens=2049-4096;q_heads=32-999" 2>"$W/err" \
  || fail "selected merge: $(cat "$W/err")"
grep -q "^merge-raw.py: 8 points taken" "$W/err" || fail "selected merge: count: $(cat "$W/err")"
python3 - "$W" <<'PY' || fail "selected merge: values"
import csv, sys
w = sys.argv[1]
rd = lambda n: {(r["tp"], r["kernel"], r["tokens"], r["pairs"]): r for r in csv.DictReader(open(f"{w}/{n}.csv"))}
b, c, m, s = rd("b"), rd("c"), rd("m"), rd("s")
bad, from_b = 0, 0
for k, r in s.items():
    tp, kern, t, p = int(k[0]), k[1], int(k[2]), int(k[3])
    if kern == "decode_attn":
        want = c[k]
    elif kern == "prefill_attn" and p == t * (t + 1) // 2 and 2049 <= t <= 4096 and 32 // tp >= 32:
        want = b[k]; from_b += 1
    else:
        want = m[k]
    if r != want:
        print(k, "got", r["median_ns"], r["spread_ns"], "want", want["median_ns"], want["spread_ns"]); bad += 1
if from_b != 2:
    print("points from b:", from_b, "want 2"); bad += 1
sys.exit(bad > 0)
PY

refused() {  # refused WHAT WANT_IN_MESSAGE ARGS...
  local what=$1 want=$2; shift 2
  rm -f "$W/r.csv"
  python3 "$MR" "$W/r.csv" "$@" 2>"$W/err"
  local rc=$?
  [ $rc -eq 2 ] || fail "$what: exit $rc, want 2"
  [ "$(wc -l < "$W/err")" -eq 1 ] || fail "$what: want a one-line error: $(cat "$W/err")"
  grep -qF -- "$want" "$W/err" || fail "$what: '$want' not in: $(cat "$W/err")"
  [ ! -e "$W/r.csv" ] && [ ! -e "$W/r.csv.tmp" ] || fail "$what: OUT written"
}
refused "overlap" "also selected from" "$W/a.csv" "$W/b.csv" \
  --only-from "$W/a.csv:decode_attn" --only-from "$W/b.csv:decode_attn;tokens=8"
refused "missing point" "lacks point gemm_qkv tp 2" "$W/a.csv" "$W/c.csv" --only-from "$W/c.csv:gemm_qkv"
refused "bad term" "term 'tokens=9-1'" "$W/a.csv" "$W/b.csv" --only-from "$W/a.csv:prefill_attn;tokens=9-1"
refused "not a term" "term 'fresh2'" "$W/a.csv" "$W/b.csv" --only-from "$W/a.csv:prefill_attn;fresh2"
refused "unknown field" "field 'tokenz'" "$W/a.csv" "$W/b.csv" --only-from "$W/a.csv:prefill_attn;tokenz=1"
refused "not merged" "not one of the raw files" "$W/a.csv" "$W/b.csv" --only-from "$W/c.csv:decode_attn"
refused "one file" "at least two raw files" "$W/a.csv"
refused "unknown option" "unknown option --median" --median "$W/a.csv" "$W/b.csv"
sed 's/GPU X/GPU Y/' "$W/b.csv" > "$W/y.csv"
refused "another gpu" "y.csv:2: gpu/model" "$W/a.csv" "$W/y.csv"
cut -d, -f1-15,17 "$W/b.csv" > "$W/n.csv"
refused "columns" "n.csv:1: columns differ" "$W/a.csv" "$W/n.csv"
sed '3s/,[0-9.e+]*,\([0-9.e+]*\)$/,x,\1/' "$W/b.csv" > "$W/x.csv"
refused "median not a number" "x.csv:3: median_ns" "$W/a.csv" "$W/x.csv"
awk -F, -v OFS=, 'NR == 2 { $8 = "many" } 1' "$W/b.csv" > "$W/t.csv"
refused "tokens not a number" "field 'tokens': not a number" "$W/t.csv" "$W/a.csv" --only-from "$W/t.csv:prefill_attn;fresh"
help=$(python3 "$MR" --help) && grep -qF "only-from RAW.csv:SELECT" <<< "$help" || fail "--help"

[ $failures -eq 0 ] && echo "merge-raw: all checks passed"
exit $((failures > 0))
