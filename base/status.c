/*
** status.c: the status table of status.h, expanded.
*/
#include "infsim/status.h"

#include <stdarg.h>
#include <stdio.h>

infsim_status infsim_fail(infsim_error *err, infsim_status status, const char *fmt, ...) {
  if (err != NULL) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->status = status;
  }
  return status;
}

const char *infsim_status_name(infsim_status status) {
  switch (status) {
#define INFSIM_STATUS_NAME(name, value, exit_code, text) \
  case name:                                             \
    return #name;
    INFSIM_STATUS_TABLE(INFSIM_STATUS_NAME)
#undef INFSIM_STATUS_NAME
  }
  return "INFSIM_UNKNOWN";
}

const char *infsim_status_text(infsim_status status) {
  switch (status) {
#define INFSIM_STATUS_TEXT(name, value, exit_code, text) \
  case name:                                             \
    return text;
    INFSIM_STATUS_TABLE(INFSIM_STATUS_TEXT)
#undef INFSIM_STATUS_TEXT
  }
  return "unknown status";
}

int infsim_status_exit_code(infsim_status status) {
  switch (status) {
#define INFSIM_STATUS_EXIT(name, value, exit_code, text) \
  case name:                                             \
    return exit_code;
    INFSIM_STATUS_TABLE(INFSIM_STATUS_EXIT)
#undef INFSIM_STATUS_EXIT
  }
  return 1;
}
