/*
** sweep_db.c: the sweep's SQLite results DB (sweep.h): table `runs`, one
** row per job, and table `meta` with the schema version.
**
** The fixed columns come first; a column per grid key and per summary
** field is added (ALTER TABLE) the first time a row has it, so rows from
** a later infsim with more summary fields fit beside older ones and SQL
** can select any field by name. The whole summary.json (config inside)
** is kept as text too, so nothing is lost in flattening.
**
** Invariants: each insert is one transaction (a row is there whole or not
** at all); `columns` holds a subset of the table's columns (other processes
** may add some), read again inside the transaction before adding any. Not thread-safe: one
** caller at a time (the sweep driver holds a lock around every call).
*/
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "infsim/sqlite_file.h"
#include "infsim/sweep.h"

#define SWEEP_SCHEMA "infsim-sweep-1"

struct infsim_sweep_db {
  sqlite3 *db;
  char *path;
  char **columns;
  size_t column_count;
};

static const char k_schema_sql[] =
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "INSERT OR IGNORE INTO meta VALUES ('schema', '" SWEEP_SCHEMA "');"
    "CREATE TABLE IF NOT EXISTS runs ("
    " key TEXT PRIMARY KEY,"     /* sweep.h: SHA-256 of config, trace, seed, version */
    " point INTEGER NOT NULL,"   /* grid point index */
    " seed INTEGER NOT NULL,"
    " settings TEXT NOT NULL,"   /* grid values, JSON object */
    " config TEXT NOT NULL,"     /* resolved config, JSON */
    " summary TEXT NOT NULL,"    /* summary.json */
    " run_wall_s REAL NOT NULL," /* setup + simulation of this job */
    " host TEXT NOT NULL,"
    " pid INTEGER NOT NULL,"
    " label TEXT NOT NULL,"     /* the sweep's --label, for plots */
    " finished_at TEXT NOT NULL);";

static infsim_status db_fail(infsim_sweep_db *d, infsim_error *err, const char *what) {
  int code = sqlite3_errcode(d->db);
  infsim_status st = (code == SQLITE_NOTADB || code == SQLITE_CORRUPT) ? INFSIM_EINPUT : INFSIM_EIO;
  return infsim_fail(err, st, "%s: %s: %s", d->path, what, sqlite3_errmsg(d->db));
}

static bool has_column(const infsim_sweep_db *d, const char *name) {
  for (size_t i = 0; i < d->column_count; i++)
    if (strcmp(d->columns[i], name) == 0) return true;
  return false;
}

static bool remember_column(infsim_sweep_db *d, const char *name) {
  char **p = realloc(d->columns, (d->column_count + 1) * sizeof *p);
  if (p == NULL) return false;
  d->columns = p;
  d->columns[d->column_count] = strdup(name);
  if (d->columns[d->column_count] == NULL) return false;
  d->column_count++;
  return true;
}

static infsim_status load_columns(infsim_sweep_db *d, infsim_error *err) {
  sqlite3_stmt *q;
  if (sqlite3_prepare_v2(d->db, "PRAGMA table_info(runs)", -1, &q, NULL) != SQLITE_OK)
    return db_fail(d, err, "reading columns");
  infsim_status st = INFSIM_OK;
  int rc;
  while (st == INFSIM_OK && (rc = sqlite3_step(q)) == SQLITE_ROW)
    if (!remember_column(d, (const char *)sqlite3_column_text(q, 1)))
      st = infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  sqlite3_finalize(q);
  return st;
}

infsim_status infsim_sweep_db_open(const char *path, infsim_sweep_db **out, infsim_error *err) {
  *out = NULL;
  infsim_sweep_db *d = calloc(1, sizeof *d);
  if (d == NULL || (d->path = strdup(path)) == NULL) {
    free(d);
    return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  }
  infsim_status st = INFSIM_OK;
  const char *unfit = infsim_sqlite_file_unfit(path);
  if (unfit != NULL) st = infsim_fail(err, INFSIM_EINPUT, "%s: %s", path, unfit);
  if (st == INFSIM_OK && sqlite3_open_v2(path, &d->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
    st = infsim_sqlite_open_failed(d->db, path, err);
  /* Several processes (a resumed sweep beside a running one) wait for
   * each other's short transactions rather than fail. */
  if (st == INFSIM_OK) sqlite3_busy_timeout(d->db, 30000);
  /* A DB with other tables but no sweep schema is someone else's file. */
  if (st == INFSIM_OK) {
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(d->db, "SELECT count(*) FROM sqlite_master WHERE type = 'table'", -1, &q, NULL) !=
            SQLITE_OK ||
        sqlite3_step(q) != SQLITE_ROW) {
      st = db_fail(d, err, "not a results DB");
    } else if (sqlite3_column_int(q, 0) > 0) {
      sqlite3_stmt *m;
      bool ours = sqlite3_prepare_v2(d->db, "SELECT value FROM meta WHERE name = 'schema'", -1, &m, NULL) ==
                      SQLITE_OK &&
                  sqlite3_step(m) == SQLITE_ROW &&
                  strcmp((const char *)sqlite3_column_text(m, 0), SWEEP_SCHEMA) == 0;
      sqlite3_finalize(m);
      if (!ours) st = infsim_fail(err, INFSIM_EINPUT, "%s: not a sweep results DB (no %s schema)", path, SWEEP_SCHEMA);
    }
    sqlite3_finalize(q);
  }
  if (st == INFSIM_OK && sqlite3_exec(d->db, k_schema_sql, NULL, NULL, NULL) != SQLITE_OK)
    st = db_fail(d, err, "creating tables");
  if (st == INFSIM_OK) st = load_columns(d, err);
  if (st != INFSIM_OK) {
    infsim_sweep_db_close(d);
    return st;
  }
  *out = d;
  return INFSIM_OK;
}

void infsim_sweep_db_close(infsim_sweep_db *d) {
  if (d == NULL) return;
  sqlite3_close(d->db);
  for (size_t i = 0; i < d->column_count; i++) free(d->columns[i]);
  free(d->columns);
  free(d->path);
  free(d);
}

json_t *infsim_sweep_db_summary(infsim_sweep_db *d, const char *key) {
  sqlite3_stmt *q;
  json_t *out = NULL;
  if (sqlite3_prepare_v2(d->db, "SELECT summary FROM runs WHERE key = ?", -1, &q, NULL) != SQLITE_OK) return NULL;
  sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
  if (sqlite3_step(q) == SQLITE_ROW) {
    const char *text = (const char *)sqlite3_column_text(q, 0);
    if (text != NULL) out = json_loads(text, 0, NULL);
  }
  sqlite3_finalize(q);
  return out;
}

/* ---- one row ---- */

/* The row's extra columns: name, value (borrowed), and SQL type. */
typedef struct {
  char name[256];
  const json_t *value;    /* summary field; NULL for a grid value */
  const char *text;       /* grid value */
} row_cell;

typedef struct {
  row_cell *cells;
  size_t n, cap;
} row_cells;

static bool cells_has(const row_cells *c, const char *name) {
  for (size_t i = 0; i < c->n; i++)
    if (strcmp(c->cells[i].name, name) == 0) return true;
  return false;
}

static bool cells_push(row_cells *c, const char *name, const json_t *value, const char *text) {
  /* The fixed columns and earlier cells keep their names (a grid key
   * shadows a summary field of the same name). */
  static const char *const fixed[] = {"key", "point", "seed", "settings", "config",
                                      "summary", "run_wall_s", "host", "pid", "label", "finished_at"};
  for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
    if (strcmp(fixed[i], name) == 0) return true;
  if (cells_has(c, name) || strlen(name) >= sizeof c->cells[0].name) return true;
  if (c->n == c->cap) {
    size_t cap = c->cap == 0 ? 64 : 2 * c->cap;
    row_cell *p = realloc(c->cells, cap * sizeof *p);
    if (p == NULL) return false;
    c->cells = p;
    c->cap = cap;
  }
  row_cell *cell = &c->cells[c->n++];
  snprintf(cell->name, sizeof cell->name, "%s", name);
  cell->value = value;
  cell->text = text;
  return true;
}

/* Summary fields, nested objects joined with '_' (ttft_s.p99 -> ttft_s_p99). */
static bool flatten(row_cells *c, const char *prefix, const json_t *obj) {
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)obj, k, v) {
    if (prefix[0] == '\0' && strcmp(k, "config") == 0) continue;
    char name[256];
    snprintf(name, sizeof name, "%s%s%s", prefix, prefix[0] != '\0' ? "_" : "", k);
    if (json_is_object(v)) {
      if (!flatten(c, name, v)) return false;
    } else if (!cells_push(c, name, v, NULL)) {
      return false;
    }
  }
  return true;
}

/* Appends name as an SQL identifier ("a""b"). */
static void put_ident(FILE *fp, const char *name) {
  fputc('"', fp);
  for (; *name != '\0'; name++) {
    if (*name == '"') fputc('"', fp);
    fputc(*name, fp);
  }
  fputc('"', fp);
}

static const char *sql_type(const row_cell *cell) {
  if (cell->value == NULL) return ""; /* grid values: numbers stay numbers, names text */
  if (json_is_integer(cell->value) || json_is_boolean(cell->value)) return " INTEGER";
  if (json_is_real(cell->value)) return " REAL";
  return " TEXT";
}

static void forget_columns(infsim_sweep_db *d) {
  for (size_t i = 0; i < d->column_count; i++) free(d->columns[i]);
  free(d->columns);
  d->columns = NULL;
  d->column_count = 0;
}

/* Inside the insert's write transaction: another process may have added a
 * column since this one read them, so the cache is read again before
 * adding any (else ALTER TABLE would fail on a duplicate name). */
static infsim_status add_columns(infsim_sweep_db *d, const row_cells *c, infsim_error *err) {
  bool missing = false;
  for (size_t i = 0; i < c->n && !missing; i++) missing = !has_column(d, c->cells[i].name);
  if (!missing) return INFSIM_OK;
  forget_columns(d);
  infsim_status st = load_columns(d, err);
  if (st != INFSIM_OK) return st;
  for (size_t i = 0; i < c->n; i++) {
    if (has_column(d, c->cells[i].name)) continue;
    char *sql = NULL;
    size_t bytes = 0;
    FILE *fp = open_memstream(&sql, &bytes);
    if (fp == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
    fputs("ALTER TABLE runs ADD COLUMN ", fp);
    put_ident(fp, c->cells[i].name);
    fputs(sql_type(&c->cells[i]), fp);
    fclose(fp);
    int rc = sqlite3_exec(d->db, sql, NULL, NULL, NULL);
    free(sql);
    if (rc != SQLITE_OK) return db_fail(d, err, "adding a column");
    if (!remember_column(d, c->cells[i].name)) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  }
  return INFSIM_OK;
}

static void bind_grid_value(sqlite3_stmt *q, int at, const char *text) {
  char *end;
  errno = 0;
  long long i = strtoll(text, &end, 10);
  if (text[0] != '\0' && *end == '\0' && errno == 0) {
    sqlite3_bind_int64(q, at, i);
    return;
  }
  double v = strtod(text, &end);
  if (text[0] != '\0' && *end == '\0' && errno == 0 && isfinite(v))
    sqlite3_bind_double(q, at, v);
  else
    sqlite3_bind_text(q, at, text, -1, SQLITE_TRANSIENT);
}

static void bind_json(sqlite3_stmt *q, int at, const json_t *v) {
  if (json_is_integer(v))
    sqlite3_bind_int64(q, at, json_integer_value(v));
  else if (json_is_real(v))
    sqlite3_bind_double(q, at, json_real_value(v));
  else if (json_is_string(v))
    sqlite3_bind_text(q, at, json_string_value(v), -1, SQLITE_TRANSIENT);
  else if (json_is_boolean(v))
    sqlite3_bind_int(q, at, json_is_true(v));
  else if (json_is_null(v))
    sqlite3_bind_null(q, at);
  else {
    char *text = json_dumps(v, JSON_COMPACT);
    sqlite3_bind_text(q, at, text != NULL ? text : "", -1, SQLITE_TRANSIENT);
    free(text);
  }
}

static void utc_now(char out[32]) {
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

infsim_status infsim_sweep_db_insert(infsim_sweep_db *d, const infsim_sweep_row *row, infsim_error *err) {
  row_cells cells = {0};
  json_t *settings = json_object();
  bool ok = settings != NULL;
  size_t axes = row->grid != NULL ? infsim_grid_axis_count(row->grid) : 0;
  for (size_t a = 0; ok && a < axes; a++) {
    const char *k = infsim_grid_axis_key(row->grid, a), *v = infsim_grid_value(row->grid, row->point, a);
    ok = cells_push(&cells, k, NULL, v) && json_object_set_new(settings, k, json_string(v)) == 0;
  }
  ok = ok && flatten(&cells, "", row->summary);
  json_t *config = ok ? json_object_get(row->summary, "config") : NULL;
  char *settings_text = ok ? json_dumps(settings, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  char *config_text = !ok ? NULL
                      : config != NULL ? json_dumps(config, JSON_COMPACT | JSON_PRESERVE_ORDER)
                                       : strdup("{}");
  char *summary_text = ok ? json_dumps(row->summary, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17)) : NULL;
  json_decref(settings);
  infsim_status st = INFSIM_OK;
  if (!ok || settings_text == NULL || config_text == NULL || summary_text == NULL)
    st = infsim_fail(err, INFSIM_ENOMEM, "out of memory");

  bool in_txn = false;
  if (st == INFSIM_OK) {
    if (sqlite3_exec(d->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
      st = db_fail(d, err, "starting a transaction");
    else
      in_txn = true;
  }
  if (st == INFSIM_OK) st = add_columns(d, &cells, err);
  char *sql = NULL;
  size_t sql_bytes = 0;
  FILE *fp = st == INFSIM_OK ? open_memstream(&sql, &sql_bytes) : NULL;
  if (st == INFSIM_OK && fp == NULL) st = infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  if (fp != NULL) {
    fputs("INSERT OR REPLACE INTO runs (key, point, seed, settings, config, summary, run_wall_s, host, pid, label, finished_at",
          fp);
    for (size_t i = 0; i < cells.n; i++) {
      fputs(", ", fp);
      put_ident(fp, cells.cells[i].name);
    }
    fputs(") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?", fp);
    for (size_t i = 0; i < cells.n; i++) fputs(", ?", fp);
    fputs(")", fp);
    fclose(fp);
  }
  sqlite3_stmt *q = NULL;
  if (st == INFSIM_OK && sqlite3_prepare_v2(d->db, sql, -1, &q, NULL) != SQLITE_OK)
    st = db_fail(d, err, "preparing an insert");
  if (st == INFSIM_OK) {
    char now[32];
    utc_now(now);
    sqlite3_bind_text(q, 1, row->key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 2, (sqlite3_int64)row->point);
    sqlite3_bind_int64(q, 3, (sqlite3_int64)row->seed); /* seeds past 2^63 read back negative */
    sqlite3_bind_text(q, 4, settings_text, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 5, config_text, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 6, summary_text, -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(q, 7, row->run_wall_s);
    sqlite3_bind_text(q, 8, row->host != NULL ? row->host : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 9, row->pid);
    sqlite3_bind_text(q, 10, row->label != NULL ? row->label : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 11, now, -1, SQLITE_TRANSIENT);
    for (size_t i = 0; i < cells.n; i++) {
      int at = (int)(12 + i);
      if (cells.cells[i].value != NULL)
        bind_json(q, at, cells.cells[i].value);
      else
        bind_grid_value(q, at, cells.cells[i].text);
    }
    if (sqlite3_step(q) != SQLITE_DONE) st = db_fail(d, err, "inserting a row");
  }
  sqlite3_finalize(q);
  if (in_txn) {
    if (st == INFSIM_OK && sqlite3_exec(d->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
      st = db_fail(d, err, "committing");
    if (st != INFSIM_OK) {
      sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
      /* Columns added inside the rolled-back transaction are gone again. */
      forget_columns(d);
      infsim_error ignored;
      load_columns(d, &ignored);
    }
  }
  free(sql);
  free(cells.cells);
  free(settings_text);
  free(config_text);
  free(summary_text);
  return st;
}
