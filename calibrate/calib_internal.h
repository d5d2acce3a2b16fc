/*
** calib_internal.h: what the files of libinfsim_calibrate share.
**
** The raw measurement row (one line of the raw CSV) and its reader and
** writer, and the DB schema. The raw format is plain CSV with a header so
** that the runner needs no library (the GPU machine has no SQLite or GSL),
** and every row is self-describing (device, model shape, TP, kernel,
** aggregates), so files can be concatenated, split or diffed.
*/
#ifndef INFSIM_CALIB_INTERNAL_H
#define INFSIM_CALIB_INTERNAL_H

#include <stdint.h>
#include <stdio.h>

#include "infsim/calib.h"

enum { CALIB_TEXT_BYTES = 128 };

typedef struct {
  int64_t schema;
  char gpu[CALIB_TEXT_BYTES];
  char driver[CALIB_TEXT_BYTES];
  int64_t sm_clock_mhz;  /* 0 when unknown (CPU) */
  int64_t mem_clock_mhz;
  char backend[CALIB_TEXT_BYTES];
  char model[CALIB_TEXT_BYTES];
  int64_t layers, hidden, heads, kv_heads, head_dim, intermediate, dtype_bytes;
  int64_t tp;
  char kernel[CALIB_TEXT_BYTES];
  int64_t agg[INFSIM_CALIB_VARS]; /* tokens, pairs, requests, context_tokens, partials, bytes */
  double local_fraction; /* decode: share of each request's KV attended here (DistAttention split) */
  int64_t repeats;
  double median_ns;
  double spread_ns; /* p90 - p10 of the repeats */
  long line;        /* line in the file it was read from (reader only) */
} calib_raw_row;

/* Writes the header line. */
void calib_raw_write_header(FILE *fp);
/* Writes one row (fields with ',' or '"' quoted). */
void calib_raw_write_row(FILE *fp, const calib_raw_row *row);

/* Reads a raw CSV: checks the header has every column, each value parses
 * (integers, finite numbers, median > 0, known kernel, tp >= 1) and the
 * schema version. *rows is malloc'ed. Errors name path:line: column. */
infsim_status calib_raw_read(const char *path, calib_raw_row **rows, size_t *n_rows, infsim_error *err);

enum { CALIB_TIME_BYTES = 32 };

/* The current UTC time as ISO 8601 ("2026-11-25T18:00:00Z"), for the
 * loaded_at and fitted_at columns. */
void calib_utc_now(char out[CALIB_TIME_BYTES]);

/* The DB schema (STRICT tables) and opening with a version check. */
struct sqlite3;
/* Opens db_path; create: make it and its schema when missing. Fails with
 * path: user_version: ... when its schema version is not ours. */
infsim_status calib_db_open(const char *db_path, int create, struct sqlite3 **db, infsim_error *err);

/* "PATH: SQLite's message" for the last error on db. A DB that is not what
 * it should be (a missing table or column, a wrong type, corruption, a
 * broken constraint) is bad input, INFSIM_EINPUT, exit 2, as `run` treats
 * the same DB; the disk, locks and memory are INFSIM_EIO / INFSIM_ENOMEM. */
infsim_status calib_sql_fail(struct sqlite3 *db, const char *db_path, infsim_error *err);

#endif
