#!/usr/bin/env bash
# Packs fuzz binaries into DEST to run campaign-parallel.sh on another
# x86-64 Linux machine that has no clang or libraries: DEST/bin (the
# binaries), DEST/lib (the shared libraries they need, but not glibc,
# which must be the same or newer there), DEST/tests/fuzz (the scripts).
# There, from a checkout of the repository (for the seeds):
#   LD_LIBRARY_PATH=DEST/lib INFSIM_ROOT=. NICE=0 WORKDIR=DEST/work \
#     DEST/tests/fuzz/campaign-parallel.sh DEST/bin 10000000 400 TARGET...
# and where clang 14's ASan stops at start (high mmap entropy, newer
# kernels), under `setarch x86_64 -R`.
# Usage: tests/fuzz/pack.sh BUILD_DIR DEST [TARGET...]
set -eu
build=${1:?build dir configured with -DINFSIM_FUZZ=ON}
dest=${2:?destination directory}
shift 2
src=$(cd "$(dirname "$0")" && pwd)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config workload trace_csv import_azure import_mooncake import_burstgpt calib_raw calib_db costmodel)
mkdir -p "$dest/bin" "$dest/lib" "$dest/tests/fuzz"
for t in "${targets[@]}"; do
  cp "$build/tests/fuzz/fuzz_$t" "$dest/bin/"
  ldd "$build/tests/fuzz/fuzz_$t" | awk '$3 ~ /^\// { print $1, $3 }' |
    while read -r name path; do
      case $name in libc.so.* | libm.so.* | libpthread.so.* | libdl.so.* | librt.so.* | ld-linux*) ;;
        *) cp -L "$path" "$dest/lib/$name" ;;
      esac
    done
done
cp "$src/campaign-parallel.sh" "$src/seeds.sh" "$dest/tests/fuzz/"
du -sh "$dest"
