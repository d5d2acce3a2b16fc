/*
** status.c: the status table of status.h, expanded, and infsim_fail.
**
** Invariant: a message is one line. Messages quote what the user wrote
** (a YAML value may hold a newline, a CSV field a carriage return), so
** infsim_fail writes control characters as C escapes ("\n", "\x01")
** rather than trusting every caller to.
*/
#include "infsim/status.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Rewrites msg with its control characters escaped, cut to fit. */
static void escape_controls(char *msg, size_t cap) {
  bool any = false;
  for (const char *p = msg; *p != '\0'; p++) any |= (unsigned char)*p < 0x20 || *p == 0x7f;
  if (!any) return;
  char out[INFSIM_ERROR_MSG_BYTES];
  size_t n = 0;
  for (const char *p = msg; *p != '\0' && n + 5 < sizeof out && n + 5 < cap; p++) {
    unsigned char c = (unsigned char)*p;
    if (c >= 0x20 && c != 0x7f) {
      out[n++] = (char)c;
    } else if (c == '\n' || c == '\r' || c == '\t') {
      out[n++] = '\\';
      out[n++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
    } else {
      n += (size_t)snprintf(out + n, sizeof out - n, "\\x%02x", c);
    }
  }
  out[n] = '\0';
  memcpy(msg, out, n + 1);
}

infsim_status infsim_fail(infsim_error *err, infsim_status status, const char *fmt, ...) {
  if (err != NULL) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    escape_controls(err->msg, sizeof err->msg);
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
