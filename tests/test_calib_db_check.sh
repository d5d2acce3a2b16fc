#!/usr/bin/env bash
# test_calib_db_check.sh: `infsim run` on edited copies of data/calibration.db.
# A fit row whose curve goes below 0 at its domain's lowest point (the work
# variable at 1, the rest at 0: every other term only grows from there), or
# with a negative slope, is refused at load: exit 2, one line naming the DB,
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

# merge: A = c_const + c_partials min(partials, 645) + ... (hinge at 645 partials);
# with c_requests 0 and c_partials 100 its lowest point is c_const + 100.
edit merge 'c_requests = 0, c_partials = 100, c_const = -50';  loads
edit merge 'c_requests = 0, c_partials = 100, c_const = -150'
refused "$P merge: c_const -150: the curve is -50 ns at partials 1, its domain's lowest point (want >= 0)"
edit gemm_gateup 'c_const = -1e9'
refused "$P gemm_gateup: c_const -1000000000: the curve is -1e+09 ns at tokens 1, its domain's lowest point (want >= 0)"
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
