#!/usr/bin/env bash
# The fidelity bench's code paths (bench_cluster_model --smoke: the tiny
# model on the CPU): every decode and prefill row it promises is printed
# with a positive time, with and without graphs, so the GPU run does not
# find a broken bench.
set -u
bench="$(dirname "$INFSIM")/bench_cluster_model"
[ -x "$bench" ] || { echo "bench_cluster_model not built: skipped"; exit 77; }
out=$("$bench" --smoke) || { echo "$out"; echo "FAIL: smoke run exited nonzero"; exit 1; }
echo "$out"
rows=$(echo "$out" | grep -cE '^(decode|prefill),[0-9]+,[0-9]+,[0-9]+,[0-9.]+,[01]$')
zero=$(echo "$out" | grep -cE '^(decode|prefill),.*,0\.0000,')
# 2 batches x 2 contexts, with and without graphs, and 2 prefills
[ "$rows" -eq 10 ] || { echo "FAIL: $rows rows, expected 10"; exit 1; }
[ "$zero" -eq 0 ] || { echo "FAIL: a zero time"; exit 1; }
echo ok
