# run_lib.sh: sourced by the shell tests of `infsim run` after they set
# INFSIM, W (a scratch directory) and fail().
#
# expect_bad NAME PATTERN ARGS...: `infsim run ARGS` exits 2 with a
# one-line message matching PATTERN and writes nothing.
expect_bad() {
  local name=$1 pattern=$2
  shift 2
  rm -rf "$W/bad"
  "$INFSIM" run "$@" --out "$W/bad" >/dev/null 2>"$W/err"
  local rc=$?
  [ $rc -eq 2 ] || fail "$name: exit $rc, want 2 ($(cat "$W/err"))"
  grep -Eq -e "$pattern" "$W/err" || fail "$name: message '$(cat "$W/err")' does not match '$pattern'"
  [ "$(wc -l <"$W/err")" -eq 1 ] || fail "$name: message is not one line"
  [ ! -e "$W/bad" ] || fail "$name: wrote $W/bad"
}
