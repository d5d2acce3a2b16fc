/*
** atomic_file.h: write a file under a temporary name, then rename it.
**
** Readers never see a half-written output: until infsim_atomic_commit()
** succeeds the destination is untouched, and infsim_atomic_abort() removes
** the temporary file. Used for every output the CLI writes.
*/
#ifndef INFSIM_ATOMIC_FILE_H
#define INFSIM_ATOMIC_FILE_H

#include <stdio.h>

#include "infsim/status.h"

enum { INFSIM_PATH_BYTES = 4096 };

typedef struct {
  FILE *fp; /* write here */
  char final_path[INFSIM_PATH_BYTES];
  char temp_path[INFSIM_PATH_BYTES];
} infsim_atomic_file;

/* Creates a unique temporary file beside path and opens it for writing. */
infsim_status infsim_atomic_open(infsim_atomic_file *af, const char *path, infsim_error *err);

/* Flushes, closes and renames the temporary file onto the final path. On
 * failure the temporary file is removed and the destination is untouched. */
infsim_status infsim_atomic_commit(infsim_atomic_file *af, infsim_error *err);

/* Closes and removes the temporary file; the destination is untouched. */
void infsim_atomic_abort(infsim_atomic_file *af);

/* Creates directory path (and its parents) if missing. */
infsim_status infsim_make_dirs(const char *path, infsim_error *err);

#endif
