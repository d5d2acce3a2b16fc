#!/usr/bin/env bash
# Cluster mode's transports over two MPI ranks (infsim_cluster_check, built
# beside the CLI): control and data planes carry bytes intact, a request
# split over the two ranks (KV blocks moved, queries and partials exchanged
# every layer) decodes like the unsplit request, and a hung rank is reported
# by name within the timeout instead of hanging. Skips (77) without mpirun
# or without cluster mode in the build.
set -uo pipefail
check="$(dirname "$INFSIM")/infsim_cluster_check"
command -v mpirun >/dev/null || { echo "mpirun not found: skipped"; exit 77; }
[ -x "$check" ] || { echo "cluster mode not built (no MPI): skipped"; exit 77; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# Open MPI keeps some allocations until exit: not ours to report.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

timeout 120 mpirun -np 2 --oversubscribe "$check" --transport mpi --executor cpu >"$tmp/out" 2>&1
rc=$?
cat "$tmp/out"
[ "$rc" -eq 0 ] || { echo "FAIL: two-rank check exited $rc"; exit 1; }
grep -q "^control plane: ok" "$tmp/out" || { echo "FAIL: control plane"; exit 1; }
grep -q "^data plane: .* ok" "$tmp/out" || { echo "FAIL: data plane"; exit 1; }
grep -q "^DistAttention across ranks: 2 query/partial exchanges" "$tmp/out" || { echo "FAIL: DistAttention"; exit 1; }

start=$(date +%s)
timeout 60 mpirun -np 2 --oversubscribe "$check" --hang >"$tmp/hang" 2>&1
rc=$?
cat "$tmp/hang"
took=$(( $(date +%s) - start ))
[ "$rc" -eq 0 ] || { echo "FAIL: hang check exited $rc"; exit 1; }
grep -q "timed out after 2 s waiting for rank 1" "$tmp/hang" || { echo "FAIL: the hung rank was not named"; exit 1; }
[ "$took" -lt 30 ] || { echo "FAIL: the hang took $took s to detect"; exit 1; }
# NCCL data plane: only where this build has it and two GPUs are visible
# (each rank on its own GPU); CI machines have none.
if command -v nvidia-smi >/dev/null && [ "$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')" -ge 2 ]; then
  timeout 120 mpirun -np 2 --oversubscribe bash -c \
    'CUDA_VISIBLE_DEVICES=$OMPI_COMM_WORLD_LOCAL_RANK exec "$0" --transport nccl --executor cuda' "$check" \
    >"$tmp/nccl" 2>&1
  rc=$?
  cat "$tmp/nccl"
  if [ "$rc" -ne 77 ]; then
    [ "$rc" -eq 0 ] || { echo "FAIL: NCCL check exited $rc"; exit 1; }
    grep -q "^data plane: .* ok" "$tmp/nccl" || { echo "FAIL: NCCL data plane"; exit 1; }
  fi
fi
echo "ok"
