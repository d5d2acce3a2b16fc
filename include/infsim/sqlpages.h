/*
** sqlpages.h: writes a new SQLite database file page by page, for tables
** whose rows arrive in ascending rowid order (a run's requests and time
** series), without SQLite: about an eighth of SQLite's work per row.
**
** The file is what SQLite would hold after the same CREATE TABLEs and
** INSERTs, value for value (same storage classes; a REAL column keeps an
** integral value as an integer on disk, as SQLite does): format 4, UTF-8,
** 4,096-byte pages, no free pages, leaves packed full, one interior level
** above another until one root. SQLite opens it as any other database and
** may add to it (run/report.c adds the summary table that way).
** Format: https://www.sqlite.org/fileformat2.html (sections 1.3, 1.6, 2.1).
**
** Limits (an error, not a corrupt file): at most 8 tables, every row fits
** in a leaf page (no overflow pages: 4,061 bytes of record), the schema
** rows fit in page 1, no indexes (so no UNIQUE or non-rowid PRIMARY KEY).
*/
#ifndef INFSIM_SQLPAGES_H
#define INFSIM_SQLPAGES_H

#include <stdint.h>
#include <string.h>

#include "infsim/status.h"

typedef struct infsim_sqlpages infsim_sqlpages;

/* A row being built, column by column (the functions below), then
 * appended: the record's serial types and bodies as SQLite would store
 * them. Building costs a few instructions a column. */
enum { INFSIM_SQLROW_MAX_HEADER = 640, INFSIM_SQLROW_MAX_BODY = 4096 };
typedef struct {
  int32_t columns;
  int32_t header_bytes; /* serial types so far (the size varint comes on append) */
  int32_t body_bytes;
  int32_t too_big;      /* set when the row outgrew the buffers: append refuses it */
  uint8_t header[INFSIM_SQLROW_MAX_HEADER];
  uint8_t body[INFSIM_SQLROW_MAX_BODY + 8]; /* 8 bytes of slack: integers are stored 8 at a time */
} infsim_sqlrow;

static inline void infsim_sqlrow_begin(infsim_sqlrow *r) {
  r->columns = r->header_bytes = r->body_bytes = r->too_big = 0;
}

/* Room for a column of `body` bytes (a 1-byte serial type). */
static inline int infsim_sqlrow_room(infsim_sqlrow *r, int32_t body) {
  if (r->header_bytes + 9 > INFSIM_SQLROW_MAX_HEADER || r->body_bytes + body > INFSIM_SQLROW_MAX_BODY) {
    r->too_big = 1;
    return 0;
  }
  r->columns++;
  return 1;
}

/* NULL; also the INTEGER PRIMARY KEY column, whose value is the rowid. */
static inline void infsim_sqlrow_null(infsim_sqlrow *r) {
  if (infsim_sqlrow_room(r, 0)) r->header[r->header_bytes++] = 0;
}

/* An integer: the smallest serial type that holds it (8 and 9 for 0 and
 * 1), as sqlite3VdbeSerialType picks. */
static inline void infsim_sqlrow_int(infsim_sqlrow *r, int64_t v) {
  if (!infsim_sqlrow_room(r, 8)) return;
  uint64_t u = v < 0 ? ~(uint64_t)v : (uint64_t)v;
  int type, bytes;
  if (u <= 127) {
    if (v == 0 || v == 1) {
      r->header[r->header_bytes++] = (uint8_t)(8 + v);
      return;
    }
    type = 1, bytes = 1;
  } else if (u <= 32767) {
    type = 2, bytes = 2;
  } else if (u <= 8388607) {
    type = 3, bytes = 3;
  } else if (u <= 2147483647) {
    type = 4, bytes = 4;
  } else if (u <= 0x00007fffffffffffULL) {
    type = 5, bytes = 6;
  } else {
    type = 6, bytes = 8;
  }
  r->header[r->header_bytes++] = (uint8_t)type;
  uint64_t be = __builtin_bswap64((uint64_t)v << (64 - 8 * bytes));
  memcpy(r->body + r->body_bytes, &be, 8);
  r->body_bytes += bytes;
}

/* A 64-bit float, stored as one (an ANY column's REAL). NaN is NULL, as
 * SQLite binds it. */
static inline void infsim_sqlrow_float(infsim_sqlrow *r, double v) {
  if (v != v) {
    infsim_sqlrow_null(r);
    return;
  }
  if (!infsim_sqlrow_room(r, 8)) return;
  uint64_t bits;
  memcpy(&bits, &v, sizeof bits);
  bits = __builtin_bswap64(bits);
  r->header[r->header_bytes++] = 7;
  memcpy(r->body + r->body_bytes, &bits, 8);
  r->body_bytes += 8;
}

/* A REAL column's value: an integral one is stored as an integer unless
 * that takes 8 bytes, as SQLite does (sqlite3VdbeIntegerAffinity and
 * OP_MakeRecord); it reads back as REAL. */
static inline void infsim_sqlrow_real(infsim_sqlrow *r, double v) {
  if (v >= -140737488355328.0 && v < 140737488355328.0 && (double)(int64_t)v == v) infsim_sqlrow_int(r, (int64_t)v);
  else infsim_sqlrow_float(r, v);
}

/* UTF-8 text of `bytes` bytes. */
void infsim_sqlrow_text(infsim_sqlrow *r, const char *text, int32_t bytes);

/* Creates (truncates) path. */
infsim_status infsim_sqlpages_open(const char *path, infsim_sqlpages **out, infsim_error *err);
/* Starts a table: create_sql is its CREATE TABLE statement (no ';'), as
 * SQLite keeps it in sqlite_schema. Ends the previous table. */
infsim_status infsim_sqlpages_table(infsim_sqlpages *w, const char *name, const char *create_sql, int32_t columns,
                                    infsim_error *err);
/* Appends a row of the current table: rowid above the previous row's,
 * one value for every column. */
infsim_status infsim_sqlpages_append(infsim_sqlpages *w, int64_t rowid, const infsim_sqlrow *row, infsim_error *err);
/* Ends the last table, writes the schema and header (user_version), closes.
 * Frees w even on failure. */
infsim_status infsim_sqlpages_close(infsim_sqlpages *w, int32_t user_version, infsim_error *err);

#endif
