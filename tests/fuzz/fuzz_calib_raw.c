/*
** fuzz_calib_raw.c: `calibrate load` of a raw measurement CSV, into an
** in-memory SQLite DB.
**
** Checked: every failure is bad input (exit 2) with a one-line message
** that names the file, never an I/O error or a crash; a load that succeeds
** read only what the reader's rules allow (the DB's STRICT tables and
** CHECK constraints would refuse the rest with an SQLite error).
*/
#include "fuzz_util.h"
#include "infsim/calib.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char in[512];
  fuzz_write("raw.csv", data, size, in);
  infsim_error err = {0};
  infsim_status st = infsim_calib_load(in, ":memory:", NULL, NULL, &err);
  if (st != INFSIM_OK) {
    FUZZ_CHECK(st == INFSIM_EINPUT, "status %d: %s", (int)st, err.msg);
    FUZZ_CHECK(strncmp(err.msg, in, strlen(in)) == 0 && strchr(err.msg, '\n') == NULL, "message: %s", err.msg);
  }
  return 0;
}
