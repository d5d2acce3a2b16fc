/*
** status.h: expected failures as status codes, with one message buffer.
**
** Functions that can fail on bad input or I/O return an infsim_status and
** fill an infsim_error with a one-line message that names file, line and
** field where there is one ("trace.csv:3: prompt_tokens: not an integer").
** Bugs are not statuses: they are assertions.
*/
#ifndef INFSIM_STATUS_H
#define INFSIM_STATUS_H

/* X-macro table: name, value, process exit code, description. */
#define INFSIM_STATUS_TABLE(X)                                   \
  X(INFSIM_OK, 0, 0, "ok")                                       \
  X(INFSIM_EINPUT, 1, 2, "bad input")                            \
  X(INFSIM_EIO, 2, 1, "input/output error")                      \
  X(INFSIM_ENOMEM, 3, 1, "out of memory")                        \
  X(INFSIM_ERUN, 4, 1, "run failed")                             \
  X(INFSIM_ENODEV, 5, 77, "no GPU where one is needed")

#ifdef __cplusplus
extern "C" { /* the CUDA kernels (C++ under nvcc) report through these too */
#endif

typedef enum {
#define INFSIM_STATUS_ENUM(name, value, exit_code, text) name = value,
  INFSIM_STATUS_TABLE(INFSIM_STATUS_ENUM)
#undef INFSIM_STATUS_ENUM
} infsim_status;

enum { INFSIM_ERROR_MSG_BYTES = 512 };

typedef struct {
  infsim_status status;
  char msg[INFSIM_ERROR_MSG_BYTES];
} infsim_error;

/* Records status and a printf-style message in err (which may be NULL);
 * returns status so that callers can `return infsim_fail(...)`. Control
 * characters in the message (a quoted value's newline) are written as C
 * escapes, so a message is always one line. */
infsim_status infsim_fail(infsim_error *err, infsim_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), cold));

/* The name ("INFSIM_EINPUT") and description of a status. */
const char *infsim_status_name(infsim_status status);
const char *infsim_status_text(infsim_status status);

/* The process exit code DESIGN.md gives a status: 0 ok, 1 run failed,
 * 2 bad input, 77 skipped for lack of a GPU. */
int infsim_status_exit_code(infsim_status status);

#ifdef __cplusplus
}
#endif

#endif
