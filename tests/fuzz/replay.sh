#!/usr/bin/env bash
# Runs a fuzz target once over its seeds (corpus/TARGET) and regression
# inputs (regress/TARGET): every one must pass. Usage: replay.sh BINARY DIR TARGET
set -euo pipefail
bin=$1 dir=$2 target=$3
files=()
for d in "$dir/corpus/$target" "$dir/regress/$target"; do
  [ -d "$d" ] && while IFS= read -r -d '' f; do files+=("$f"); done < <(find "$d" -type f -print0)
done
[ ${#files[@]} -gt 0 ] || { echo "no inputs for $target"; exit 0; }
"$bin" -runs=1 "${files[@]}" 2>&1 | tail -3
