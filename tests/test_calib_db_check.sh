#!/usr/bin/env bash
# test_calib_db_check.sh: `infsim run` on edited copies of data/calibration.db.
# A fit row whose curve goes below 0 at its measured domain's lowest corner
# (each variable and the shape ratio at its least over the kernel's
# measurement rows: every other term only grows from there), or with a
# negative slope, is refused at load: exit 2, one line naming the DB,
# profile, model, TP, kernel, column and value, and no output directory.
# A negative constant the slopes lift above 0 there is a legitimate fit and
# loads. Expected values are worked out by hand from the edits.
set -u
INFSIM=${INFSIM:?path of the infsim CLI}
SRC=${INFSIM_SRC:?source tree}
command -v sqlite3 >/dev/null || { echo "sqlite3 missing: skipped"; exit 77; }
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
printf 'model: llama2-7b\ngpu: h200\ncluster:\n  instances: 1\nworkload:\n  requests: 3\ncalibration:\n  db: x.db\n' >c.yaml
WHERE="WHERE kernel = '%s' AND tp = 1 AND profile_id = (SELECT id FROM profile WHERE name = 'h200' AND model = 'llama2-7b')"

# edit KERNEL SQL-SET: a fresh copy of the shipped DB with one fit row changed
edit() {
  cp "$SRC/data/calibration.db" x.db || fail "copy"
  # shellcheck disable=SC2059
  sqlite3 x.db "UPDATE fit SET $2 $(printf "$WHERE" "$1")" || fail "sqlite3 $2"
  [ "$(sqlite3 x.db 'SELECT changes()')" != "" ] || fail "no row"
}
# refused WANT: exit 2, stderr is one line holding WANT, nothing written
refused() {
  rm -rf o
  "$INFSIM" run c.yaml --out o >/dev/null 2>err
  local rc=$?
  [ $rc -eq 2 ] || fail "exit $rc, want 2 ($(cat err))"
  [ "$(wc -l <err)" -eq 1 ] || fail "not one line: $(cat err)"
  grep -qF -- "$1" err || fail "message '$(cat err)' lacks '$1'"
  [ ! -e o ] || fail "output written despite a bad fit"
}
loads() {
  rm -rf o
  "$INFSIM" run c.yaml --out o >/dev/null 2>err || fail "exit $?: $(cat err)"
  grep -q '"calibrated:h200"' o/summary.json || fail "not calibrated: $(grep cost o/summary.json)"
}
P="infsim run: x.db: fit: h200, llama2-7b, tp 1, kernel"

cp "$SRC/data/calibration.db" x.db && loads

# merge, with its ratio term off: A = c_const + c_requests requests + c_partials
# min(partials, 645) (+ a head term >= 0); its measured points have at least
# 1 request and 2 partials (sqlite3 below), so with c_requests 0 and c_partials
# 100 its least is c_const + 200.
cp "$SRC/data/calibration.db" x.db
least=$(sqlite3 x.db "SELECT MIN(requests) || ' ' || MIN(partials) || ' ' || MIN(CAST(partials AS REAL) / requests)
  FROM measurement $(printf "$WHERE" merge)")
[ "$least" = "1 2 2.0" ] || fail "merge's measured domain changed: $least"
edit merge "c_requests = 0, c_partials = 100, ratio_terms = '0 0', c_const = -150";  loads
edit merge "c_requests = 0, c_partials = 100, ratio_terms = '0 0', c_const = -250"
refused "$P merge: c_const -250: the curve is -50 ns at the least measured requests 1, partials 2, ratio 2 (want >= 0)"
# without measurements (deleted), the least any work takes: partials 1, the rest 0
edit merge "c_requests = 0, c_partials = 100, ratio_terms = '0 0', c_const = -150"
sqlite3 x.db "DELETE FROM measurement $(printf "$WHERE" merge)"
refused "$P merge: c_const -150: the curve is -50 ns at its domain's lowest point (no measurements), requests 0, partials 1, ratio 0 (want >= 0)"
edit gemm_gateup 'c_const = -1e9'
refused "$P gemm_gateup: c_const -1000000000: the curve is -1e+09 ns at the least measured tokens 1 (want >= 0)"
# decode_attn is max(A, B): B alone keeps it above 0 when A's constant is
# broken, so it loads; with both broken the higher piece's constant is named.
edit decode_attn 'c_const = -1e9, has_alt = 1, alt_const = 5000'; loads
edit decode_attn 'c_const = -1e9, has_alt = 1, alt_const = -2e9'
refused "$P decode_attn: c_const -1000000000: the curve is"
edit decode_attn 'c_const = -3e9, has_alt = 1, alt_const = -2e9'
refused "$P decode_attn: alt_const -2000000000: the curve is"
# slopes and other columns: the column and its value
edit decode_attn 'c_context_tokens = -1'
refused "$P decode_attn: c_context_tokens -1: want a finite number >= 0"
edit merge "ratio_terms = '0 1 -5 2'"
refused "$P merge: ratio_terms '0 1 -5 2': want 'cap slope [bend slope]...'"
edit gemm_o "knots = '1 5 0.5 6'"
refused "$P gemm_o: knots '1 5 0.5 6': want 'x t x t ...', x increasing, t >= 0, all finite"
edit merge "hinge_var = 'partial'"
refused "$P merge: hinge_var 'partial': want a variable name or ''"
echo "ok: edited calibration DBs refused by column, legitimate negative constants load"
