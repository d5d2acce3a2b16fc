#!/usr/bin/env bash
# The cluster model on CUDA against the CPU reference (tiny model: prefills,
# then decode steps, most of them replayed as CUDA graphs): every hidden
# state agrees to bf16 rounding. Skips (77) without a GPU or a CUDA build.
set -u
bench="$(dirname "$INFSIM")/bench_cluster_model"
[ -x "$bench" ] || { echo "bench_cluster_model not built: skipped"; exit 77; }
"$bench" --check
