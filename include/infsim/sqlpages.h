/*
** sqlpages.h: writes a new SQLite database file page by page, for tables
** whose rows arrive in ascending rowid order (a run's requests and time
** series), without SQLite: about a tenth of SQLite's work per row.
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

#include "infsim/status.h"

typedef enum { INFSIM_SQL_NULL, INFSIM_SQL_INT, INFSIM_SQL_REAL, INFSIM_SQL_TEXT } infsim_sql_type;

/* One column value. real_column: the column's type is REAL (an integral
 * value is then stored as an integer, as SQLite does). */
typedef struct {
  infsim_sql_type type;
  int64_t i;
  double r;
  const char *text; /* UTF-8, text_bytes long, not NUL-terminated */
  int32_t text_bytes;
} infsim_sql_value;

typedef struct infsim_sqlpages infsim_sqlpages;

/* Creates (truncates) path. */
infsim_status infsim_sqlpages_open(const char *path, infsim_sqlpages **out, infsim_error *err);
/* Starts a table: create_sql is its CREATE TABLE statement (no ';'), as
 * SQLite keeps it in sqlite_schema; real_columns[c] says whether column c
 * is REAL; column 0 may be the INTEGER PRIMARY KEY (rowid_alias: stored as
 * NULL, the row's rowid is its value). Ends the previous table. */
infsim_status infsim_sqlpages_table(infsim_sqlpages *w, const char *name, const char *create_sql, int32_t columns,
                                    const uint8_t *real_columns, int rowid_alias, infsim_error *err);
/* Appends a row of the current table: rowid above the previous row's. */
infsim_status infsim_sqlpages_row(infsim_sqlpages *w, int64_t rowid, const infsim_sql_value *values,
                                  infsim_error *err);
/* Ends the last table, writes the schema and header (user_version), closes.
 * Frees w even on failure. */
infsim_status infsim_sqlpages_close(infsim_sqlpages *w, int32_t user_version, infsim_error *err);

#endif
