#!/usr/bin/env bash
# The layers of DESIGN.md hold in the includes: the scheduler (sched/)
# includes neither the cost model nor the engine, so it compiles without
# them and the same code runs under cluster mode; nothing below the run
# library includes it; base/ includes nothing above it.
set -u
SRC=${INFSIM_SRC:?INFSIM_SRC must name the source tree}
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# forbid DIR HEADER...: no file in DIR includes any HEADER.
forbid() {
  local dir=$1
  shift
  for h in "$@"; do
    hits=$(grep -ln "#include \"infsim/$h\"" "$SRC/$dir"/*.c "$SRC/$dir"/*.h 2>/dev/null)
    [ -z "$hits" ] || fail "$dir includes $h: $hits"
  done
}
forbid sched costmodel.h calib.h sim.h run.h params.h metrics.h hardware.h
forbid sim run.h params.h metrics.h
forbid cost sched.h sim.h run.h
forbid base sched.h sim.h run.h costmodel.h
# The public headers the scheduler sees do not pull the cost model in either.
for h in sched.h kv.h executor.h transport.h policy.h batch.h; do
  grep -q '#include "infsim/costmodel.h"' "$SRC/include/infsim/$h" && fail "$h includes costmodel.h"
done
# Compile the scheduler alone against stub-free headers: it must not need
# the cost model's declarations.
if command -v cc >/dev/null; then
  for f in "$SRC"/sched/*.c; do
    cc -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -fsyntax-only -I"$SRC/include" $(pkg-config --cflags yaml-0.1 jansson 2>/dev/null) \
      -DINFSIM_COSTMODEL_H "$f" 2>"${TMPDIR:-/tmp}/layers.err" || fail "$(basename "$f") needs the cost model: $(head -1 "${TMPDIR:-/tmp}/layers.err")"
  done
fi
echo "$((failures == 0 ? 1 : 0)) passed, $failures failed"
[ "$failures" -eq 0 ]
