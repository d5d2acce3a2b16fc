#!/usr/bin/env bash
# test_kernels_layering.sh: the kernel library's dependencies run one way.
#
# core.c (the public infsim_kernels_* API) reaches the backends only through
# their tables (ik_cpu_backend, ik_cuda_backend); no backend object may call
# back into the public API (infsim_kernels_*, infsim_kdtype_bytes, ...), and
# only core.c may name a backend table. Checked on the built static library
# with nm: every member's undefined symbols. infsim_fail (status.h, the base
# library) is the one public symbol a backend may use. And the CLI does not
# load cuBLAS at start-up (readelf). Exit 77 when nm or the library is
# missing.
set -u
: "${INFSIM:?INFSIM must name the infsim binary}"
command -v nm >/dev/null 2>&1 || { echo "nm not installed: skipped"; exit 77; }
lib=$(dirname "$INFSIM")/kernels/libinfsim_kernels.a
[ -f "$lib" ] || { echo "no $lib: skipped"; exit 77; }

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# "member symbol" for every undefined symbol of every member.
undef=$(nm -A "$lib" 2>/dev/null | awk '$(NF-1) == "U" { split($1, p, ":"); print p[2], $NF }')
[ -n "$undef" ] || fail "nm listed no undefined symbols at all in $lib (cannot check)"
members=$(echo "$undef" | awk '{ print $1 }' | sort -u)
echo "$members" | grep -qx 'core.c.o' || fail "core.c.o not found in $lib"
echo "$members" | grep -qx 'cpu.c.o' || fail "cpu.c.o not found in $lib"

while read -r member sym; do
  [ -n "$member" ] || continue
  case "$member" in
    core.c.o) continue ;;
  esac
  case "$sym" in
    infsim_fail) ;;
    infsim_*) fail "$member calls the public API ($sym): a backend must use internal.h's helpers" ;;
    ik_cpu_backend | ik_cuda_backend | ik_cuda_usable)
      fail "$member names a backend table ($sym): only core.c dispatches" ;;
  esac
done <<< "$undef"

# core.c must reach the CPU backend through its table and nothing else of it.
core_ik=$(echo "$undef" | awk '$1 == "core.c.o" && $2 ~ /^ik_/ { print $2 }' | sort -u | tr '\n' ' ')
[ "$core_ik" = "ik_cpu_backend ik_cuda_backend ik_cuda_usable " ] ||
  fail "core.c.o reaches backends through [$core_ik], expected exactly the tables"

# The CLI starts without cuBLAS: the CUDA backend opens cuBLASLt when it
# opens (kernels/gemm.cu); linked, its initializers ran at every start,
# whatever the command (about 55 ms of CPU on the dev VM).
if command -v readelf >/dev/null 2>&1; then
  needed=$(readelf -d "$INFSIM" 2>/dev/null | awk '/NEEDED/ { print $NF }' | tr -d '[]')
  [ -n "$needed" ] || fail "readelf listed nothing $INFSIM needs (cannot check)"
  echo "$needed" | grep -q '^libcublas' && fail "$INFSIM needs $(echo "$needed" | grep '^libcublas' | tr '\n' ' ')at start-up"
fi

[ "$failures" -eq 0 ] && echo "kernel library layering: ok"
exit $((failures > 0))
