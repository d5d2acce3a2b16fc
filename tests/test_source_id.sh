#!/usr/bin/env bash
# test_source_id.sh: the simulator's source identity (infsim_source_id,
# run/source_id.cmake), which a sweep's run key holds so that a build of
# other sources reruns its jobs. Against truth computed here: the id that
# `infsim --version` prints equals `sha256sum` over the build's list of
# sources, read from the tree now (so a stale id, one the build did not
# redo after an edit, fails), and the list holds every C file of the
# modules that decide a run (sim, sched, cost, run, traces, base) and
# every public header.
set -u
INFSIM=${INFSIM:?path of the infsim CLI}
SRC=${INFSIM_SRC:?source tree}
fail() { echo "FAIL: $*"; exit 1; }
list="$(dirname "$INFSIM")/generated/infsim_source_files.txt"
[ -r "$list" ] || fail "no source list at $list"
SRC=$(cd "$SRC" && pwd -P)

printed=$("$INFSIM" --version | sed -n 's/^sources \([0-9a-f]\{64\}\)$/\1/p')
[ -n "$printed" ] || fail "infsim --version prints no sources line: $("$INFSIM" --version)"
want=$(cd "$SRC" && sed "s|^$SRC/||" "$list" | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
[ "$printed" = "$want" ] || fail "infsim --version: sources $printed, the tree now hashes to $want"

listed=$(sed "s|^$SRC/||" "$list" | LC_ALL=C sort)
for f in $(cd "$SRC" && ls sim/*.c sched/*.c cost/*.c run/*.c traces/*.c base/*.c include/infsim/*.h); do
  [ "$f" = run/sweep_mpi.c ] && continue # only infsim-mpi links it
  grep -qx "$f" <<<"$listed" || fail "$f is not in the source identity"
done
while read -r f; do [ -f "$f" ] || fail "listed source $f does not exist"; done <"$list"
echo "ok: sources $printed ($(wc -l <"$list") files)"
