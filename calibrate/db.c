/*
** db.c: the calibration DB schema and `calibrate load`.
**
** Schema (version INFSIM_CALIB_DB_VERSION in PRAGMA user_version; every
** table STRICT so a wrong type is refused by SQLite, not stored):
**   profile      one row per (profile name, model): the GPU it was measured
**                on, driver, clocks, backend and the model's shape;
**   measurement  one row per raw measurement (TP degree, kernel, aggregates,
**                repeats, median and spread);
**   fit          one curve per (profile, tp, kernel), written by `fit`
**                (version 2: the shape ratio terms as text "slope bend
**                slope ...", and the knots of a lookup curve as text
**                "x t x t ...");
**   fit_summary  held-out error per (profile, tp).
** A profile names one GPU: loading a file from another GPU under an
** existing profile name is refused rather than mixing two devices.
** Loading is one transaction: a bad file leaves the DB as it was, and a DB
** created for a load that failed is removed.
*/
#include <ctype.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "calib_internal.h"
#include "infsim/hardware.h"
#include "infsim/sqlite_file.h"

static const char k_schema[] =
    "CREATE TABLE profile ("
    " id INTEGER PRIMARY KEY, name TEXT NOT NULL, model TEXT NOT NULL,"
    " gpu TEXT NOT NULL, driver TEXT NOT NULL, backend TEXT NOT NULL,"
    " sm_clock_mhz INTEGER NOT NULL, mem_clock_mhz INTEGER NOT NULL,"
    " layers INTEGER NOT NULL, hidden INTEGER NOT NULL, heads INTEGER NOT NULL, kv_heads INTEGER NOT NULL,"
    " head_dim INTEGER NOT NULL, intermediate INTEGER NOT NULL, dtype_bytes INTEGER NOT NULL,"
    " source TEXT NOT NULL, loaded_at TEXT NOT NULL, UNIQUE (name, model)) STRICT;"
    "CREATE TABLE measurement ("
    " id INTEGER PRIMARY KEY, profile_id INTEGER NOT NULL REFERENCES profile(id),"
    " tp INTEGER NOT NULL CHECK (tp >= 1), kernel TEXT NOT NULL,"
    " tokens INTEGER NOT NULL, pairs INTEGER NOT NULL, requests INTEGER NOT NULL,"
    " context_tokens INTEGER NOT NULL, partials INTEGER NOT NULL, bytes INTEGER NOT NULL,"
    " local_fraction REAL NOT NULL, repeats INTEGER NOT NULL,"
    " median_ns REAL NOT NULL CHECK (median_ns > 0), spread_ns REAL NOT NULL,"
    " source_line INTEGER NOT NULL) STRICT;"
    "CREATE INDEX measurement_by_curve ON measurement (profile_id, tp, kernel);"
    "CREATE TABLE fit ("
    " profile_id INTEGER NOT NULL REFERENCES profile(id), tp INTEGER NOT NULL, kernel TEXT NOT NULL,"
    " c_const REAL NOT NULL, c_tokens REAL NOT NULL, c_pairs REAL NOT NULL, c_requests REAL NOT NULL,"
    " c_context_tokens REAL NOT NULL, c_partials REAL NOT NULL, c_bytes REAL NOT NULL,"
    " hinge_var TEXT NOT NULL, hinge_at REAL NOT NULL, c_above REAL NOT NULL,"
    " hinge2_at REAL NOT NULL, c_above2 REAL NOT NULL, has_alt INTEGER NOT NULL CHECK (has_alt IN (0, 1)),"
    " alt_const REAL NOT NULL, alt_tokens REAL NOT NULL, alt_pairs REAL NOT NULL, alt_requests REAL NOT NULL,"
    " alt_context_tokens REAL NOT NULL, alt_partials REAL NOT NULL, alt_bytes REAL NOT NULL,"
    " ratio_terms TEXT NOT NULL, alt_ratio_terms TEXT NOT NULL, tail_cap REAL NOT NULL, c_tail REAL NOT NULL,"
    " den_hinge_at REAL NOT NULL, c_den_above REAL NOT NULL, head_cap REAL NOT NULL, c_head REAL NOT NULL,"
    " knots TEXT NOT NULL,"
    " points INTEGER NOT NULL, rms_rel_err REAL NOT NULL, max_rel_err REAL NOT NULL,"
    " heldout_median REAL NOT NULL, heldout_p95 REAL NOT NULL, fitted_at TEXT NOT NULL,"
    " PRIMARY KEY (profile_id, tp, kernel)) STRICT;"
    "CREATE TABLE fit_summary ("
    " profile_id INTEGER NOT NULL REFERENCES profile(id), tp INTEGER NOT NULL,"
    " points INTEGER NOT NULL, heldout_points INTEGER NOT NULL,"
    " heldout_median REAL NOT NULL, heldout_p95 REAL NOT NULL, fitted_at TEXT NOT NULL,"
    " PRIMARY KEY (profile_id, tp)) STRICT;";

infsim_status calib_sql_fail(sqlite3 *db, const char *db_path, infsim_error *err) {
  infsim_status st;
  switch (sqlite3_errcode(db) & 0xff) {
  case SQLITE_NOMEM: st = INFSIM_ENOMEM; break;
  case SQLITE_IOERR:
  case SQLITE_FULL:
  case SQLITE_BUSY:
  case SQLITE_LOCKED:
  case SQLITE_READONLY:
  case SQLITE_CANTOPEN:
  case SQLITE_PERM:
  case SQLITE_INTERRUPT: st = INFSIM_EIO; break;
  default: st = INFSIM_EINPUT; break; /* SQLITE_ERROR (schema), CORRUPT, NOTADB, CONSTRAINT, MISMATCH, ... */
  }
  return infsim_fail(err, st, "%s: %s", db_path, sqlite3_errmsg(db));
}

/* The tables a calibration DB of our version holds; a DB that lacks one was
 * made by something else, or damaged. */
static infsim_status check_tables(sqlite3 *db, const char *db_path, infsim_error *err) {
  static const char *const k_tables[] = {"profile", "measurement", "fit", "fit_summary"};
  sqlite3_stmt *q = NULL;
  if (sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1", -1, &q, NULL) !=
      SQLITE_OK)
    return calib_sql_fail(db, db_path, err);
  infsim_status st = INFSIM_OK;
  for (size_t i = 0; i < sizeof k_tables / sizeof k_tables[0] && st == INFSIM_OK; i++) {
    sqlite3_reset(q);
    sqlite3_bind_text(q, 1, k_tables[i], -1, SQLITE_STATIC);
    if (sqlite3_step(q) != SQLITE_ROW) st = calib_sql_fail(db, db_path, err);
    else if (sqlite3_column_int(q, 0) != 1)
      st = infsim_fail(err, INFSIM_EINPUT, "%s: table '%s' missing (not a calibration DB, or a damaged one)", db_path,
                       k_tables[i]);
  }
  sqlite3_finalize(q);
  return st;
}

infsim_status calib_db_open(const char *db_path, int create, sqlite3 **db_out, infsim_error *err) {
  *db_out = NULL;
  sqlite3 *db = NULL;
  int flags = create ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READWRITE;
  if (sqlite3_open_v2(db_path, &db, flags, NULL) != SQLITE_OK) {
    infsim_status st = infsim_sqlite_open_failed(db, db_path, err);
    sqlite3_close(db);
    return st;
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt *q = NULL;
  int version = -1, tables = -1;
  if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
    version = sqlite3_column_int(q, 0);
  sqlite3_finalize(q);
  if (sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_schema", -1, &q, NULL) == SQLITE_OK &&
      sqlite3_step(q) == SQLITE_ROW)
    tables = sqlite3_column_int(q, 0);
  sqlite3_finalize(q);
  if (version < 0 || tables < 0) {
    infsim_status st = infsim_fail(err, INFSIM_EINPUT, "%s: not a SQLite database: %s", db_path, sqlite3_errmsg(db));
    sqlite3_close(db);
    return st;
  }
  if (version == 0 && tables == 0 && create) {
    char *msg = NULL;
    char sql[sizeof k_schema + 128];
    snprintf(sql, sizeof sql, "BEGIN; %s PRAGMA user_version = %d; COMMIT;", k_schema, INFSIM_CALIB_DB_VERSION);
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
      infsim_status st = infsim_fail(err, INFSIM_EIO, "%s: cannot create schema: %s", db_path, msg ? msg : "?");
      sqlite3_free(msg);
      sqlite3_close(db);
      return st;
    }
    version = INFSIM_CALIB_DB_VERSION;
  }
  if (version != INFSIM_CALIB_DB_VERSION) {
    infsim_status st = infsim_fail(err, INFSIM_EINPUT,
                                   "%s: user_version: calibration schema version %d, expected %d (an older or newer"
                                   " infsim wrote it: load the raw CSVs into a new DB and run `infsim calibrate fit`)",
                                   db_path, version, INFSIM_CALIB_DB_VERSION);
    sqlite3_close(db);
    return st;
  }
  infsim_status st = check_tables(db, db_path, err);
  if (st != INFSIM_OK) {
    sqlite3_close(db);
    return st;
  }
  sqlite3_exec(db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL);
  *db_out = db;
  return INFSIM_OK;
}

/* Every row of one file must describe the same device and model: a file is
 * one profile's measurement of one model. */
static infsim_status check_consistent(const char *path, const calib_raw_row *rows, size_t n,
                                      const infsim_calib_load_opts *opts, infsim_error *err) {
  const calib_raw_row *a = &rows[0];
  for (size_t i = 1; i < n; i++) {
    const calib_raw_row *b = &rows[i];
#define SAME_TEXT(f) \
  if (strcmp(a->f, b->f) != 0) \
    return infsim_fail(err, INFSIM_EINPUT, "%s:%ld: " #f ": '%s', but line %ld says '%s'", path, b->line, b->f, a->line, a->f);
#define SAME_INT(f) \
  if (a->f != b->f) \
    return infsim_fail(err, INFSIM_EINPUT, "%s:%ld: " #f ": %lld, but line %ld says %lld", path, b->line, \
                       (long long)b->f, a->line, (long long)a->f);
    SAME_TEXT(gpu) SAME_TEXT(driver) SAME_TEXT(backend) SAME_TEXT(model)
    SAME_INT(layers) SAME_INT(hidden) SAME_INT(heads) SAME_INT(kv_heads) SAME_INT(head_dim)
    SAME_INT(intermediate) SAME_INT(dtype_bytes)
#undef SAME_TEXT
#undef SAME_INT
  }
  if (opts && opts->model && strcmp(opts->model, a->model) != 0)
    return infsim_fail(err, INFSIM_EINPUT, "%s:%ld: model: profile for %s, expected %s", path, a->line, a->model,
                       opts->model);
  infsim_model_shape m;
  if (infsim_model_builtin(a->model, &m)) {
#define SAME_SHAPE(f) \
  if (m.f != a->f) \
    return infsim_fail(err, INFSIM_EINPUT, "%s:%ld: " #f ": %lld, but model %s has %lld", path, a->line, \
                       (long long)a->f, a->model, (long long)m.f);
    SAME_SHAPE(hidden) SAME_SHAPE(heads) SAME_SHAPE(kv_heads) SAME_SHAPE(head_dim) SAME_SHAPE(intermediate)
    SAME_SHAPE(dtype_bytes)
#undef SAME_SHAPE
  }
  return INFSIM_OK;
}


/* Refuses a profile name that already belongs to another GPU, or a model
 * name already loaded with another shape. */
static infsim_status check_existing(sqlite3 *db, const char *path, const char *profile, const calib_raw_row *r,
                                    infsim_error *err) {
  sqlite3_stmt *q = NULL;
  infsim_status st = INFSIM_OK;
  if (sqlite3_prepare_v2(db, "SELECT gpu, model, hidden, heads, kv_heads, intermediate FROM profile WHERE name = ?1",
                         -1, &q, NULL) != SQLITE_OK)
    return calib_sql_fail(db, path, err);
  sqlite3_bind_text(q, 1, profile, -1, SQLITE_STATIC);
  while (st == INFSIM_OK && sqlite3_step(q) == SQLITE_ROW) {
    const char *gpu = (const char *)sqlite3_column_text(q, 0);
    const char *model = (const char *)sqlite3_column_text(q, 1);
    if (gpu && strcmp(gpu, r->gpu) != 0)
      st = infsim_fail(err, INFSIM_EINPUT, "%s:%ld: gpu: profile %s holds measurements of '%s', this file is from '%s'"
                       " (name another profile with --profile)", path, r->line, profile, gpu, r->gpu);
    else if (model && strcmp(model, r->model) == 0 &&
             (sqlite3_column_int64(q, 2) != r->hidden || sqlite3_column_int64(q, 3) != r->heads ||
              sqlite3_column_int64(q, 4) != r->kv_heads || sqlite3_column_int64(q, 5) != r->intermediate))
      st = infsim_fail(err, INFSIM_EINPUT, "%s:%ld: model: profile %s holds model %s with another shape", path,
                       r->line, profile, r->model);
  }
  sqlite3_finalize(q);
  return st;
}

static infsim_status load_rows(sqlite3 *db, const char *raw_path, const char *db_path, const char *profile,
                               const calib_raw_row *rows, size_t n, infsim_error *err) {
  const calib_raw_row *r0 = &rows[0];
  infsim_status st = check_existing(db, raw_path, profile, r0, err);
  if (st != INFSIM_OK) return st;
  char now[CALIB_TIME_BYTES];
  calib_utc_now(now);
  sqlite3_stmt *q = NULL;
  static const char upsert[] =
      "INSERT INTO profile (name, model, gpu, driver, backend, sm_clock_mhz, mem_clock_mhz, layers, hidden, heads,"
      " kv_heads, head_dim, intermediate, dtype_bytes, source, loaded_at)"
      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
      " ON CONFLICT (name, model) DO UPDATE SET gpu = excluded.gpu, driver = excluded.driver,"
      " backend = excluded.backend, sm_clock_mhz = excluded.sm_clock_mhz, mem_clock_mhz = excluded.mem_clock_mhz,"
      " layers = excluded.layers, source = excluded.source, loaded_at = excluded.loaded_at"
      " RETURNING id";
  if (sqlite3_prepare_v2(db, upsert, -1, &q, NULL) != SQLITE_OK) return calib_sql_fail(db, db_path, err);
  sqlite3_bind_text(q, 1, profile, -1, SQLITE_STATIC);
  sqlite3_bind_text(q, 2, r0->model, -1, SQLITE_STATIC);
  sqlite3_bind_text(q, 3, r0->gpu, -1, SQLITE_STATIC);
  sqlite3_bind_text(q, 4, r0->driver, -1, SQLITE_STATIC);
  sqlite3_bind_text(q, 5, r0->backend, -1, SQLITE_STATIC);
  const int64_t ints[] = {r0->sm_clock_mhz, r0->mem_clock_mhz, r0->layers, r0->hidden, r0->heads,
                          r0->kv_heads, r0->head_dim, r0->intermediate, r0->dtype_bytes};
  for (int i = 0; i < 9; i++) sqlite3_bind_int64(q, 6 + i, ints[i]);
  sqlite3_bind_text(q, 15, raw_path, -1, SQLITE_STATIC);
  sqlite3_bind_text(q, 16, now, -1, SQLITE_STATIC);
  if (sqlite3_step(q) != SQLITE_ROW) {
    st = calib_sql_fail(db, db_path, err);
    sqlite3_finalize(q);
    return st;
  }
  int64_t profile_id = sqlite3_column_int64(q, 0);
  sqlite3_finalize(q);

  /* Replace what this file re-measures: every TP degree it holds. */
  static const char *const k_clear[] = {"DELETE FROM measurement WHERE profile_id = ?1 AND tp = ?2",
                                        "DELETE FROM fit WHERE profile_id = ?1 AND tp = ?2",
                                        "DELETE FROM fit_summary WHERE profile_id = ?1 AND tp = ?2"};
  for (size_t i = 0; i < n; i++) {
    int seen = 0;
    for (size_t j = 0; j < i && !seen; j++) seen = rows[j].tp == rows[i].tp;
    if (seen) continue;
    for (size_t c = 0; c < sizeof k_clear / sizeof k_clear[0]; c++) {
      if (sqlite3_prepare_v2(db, k_clear[c], -1, &q, NULL) != SQLITE_OK) return calib_sql_fail(db, db_path, err);
      sqlite3_bind_int64(q, 1, profile_id);
      sqlite3_bind_int64(q, 2, rows[i].tp);
      int rc = sqlite3_step(q);
      sqlite3_finalize(q);
      if (rc != SQLITE_DONE) return calib_sql_fail(db, db_path, err);
    }
  }
  static const char insert[] =
      "INSERT INTO measurement (profile_id, tp, kernel, tokens, pairs, requests, context_tokens, partials, bytes,"
      " local_fraction, repeats, median_ns, spread_ns, source_line)"
      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";
  if (sqlite3_prepare_v2(db, insert, -1, &q, NULL) != SQLITE_OK) return calib_sql_fail(db, db_path, err);
  for (size_t i = 0; i < n && st == INFSIM_OK; i++) {
    const calib_raw_row *r = &rows[i];
    sqlite3_reset(q);
    sqlite3_bind_int64(q, 1, profile_id);
    sqlite3_bind_int64(q, 2, r->tp);
    sqlite3_bind_text(q, 3, r->kernel, -1, SQLITE_STATIC);
    for (int v = 0; v < INFSIM_CALIB_VARS; v++) sqlite3_bind_int64(q, 4 + v, r->agg[v]);
    sqlite3_bind_double(q, 10, r->local_fraction);
    sqlite3_bind_int64(q, 11, r->repeats);
    sqlite3_bind_double(q, 12, r->median_ns);
    sqlite3_bind_double(q, 13, r->spread_ns);
    sqlite3_bind_int64(q, 14, r->line);
    if (sqlite3_step(q) != SQLITE_DONE) st = calib_sql_fail(db, db_path, err);
  }
  sqlite3_finalize(q);
  return st;
}

/* A profile name is what a config's `gpu:` names and what plot files are
 * called after: lower-case letters, digits, '.', '_' and '-', as the names
 * derived from a GPU's are (infsim_calib_profile_from_gpu). */
static bool profile_name_ok(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n >= CALIB_TEXT_BYTES || !isalnum((unsigned char)name[0])) return false;
  for (size_t i = 0; i < n; i++)
    if (!(islower((unsigned char)name[i]) || isdigit((unsigned char)name[i]) || strchr("._-", name[i]) != NULL))
      return false;
  return true;
}

infsim_status infsim_calib_load(const char *raw_path, const char *db_path, const infsim_calib_load_opts *opts,
                                FILE *log, infsim_error *err) {
  if (opts && opts->profile && !profile_name_ok(opts->profile))
    return infsim_fail(err, INFSIM_EINPUT,
                       "--profile '%.80s': expected lower-case letters, digits, '.', '_' or '-', starting with a "
                       "letter or digit (e.g. h100-sxm-lab2)",
                       opts->profile);
  calib_raw_row *rows = NULL;
  size_t n = 0;
  infsim_status st = calib_raw_read(raw_path, &rows, &n, err);
  if (st == INFSIM_OK) st = check_consistent(raw_path, rows, n, opts, err);
  if (st != INFSIM_OK) {
    free(rows);
    return st;
  }
  char profile[CALIB_TEXT_BYTES];
  if (opts && opts->profile) {
    snprintf(profile, sizeof profile, "%s", opts->profile);
  } else {
    infsim_calib_profile_from_gpu(rows[0].gpu, profile, sizeof profile);
  }
  int existed = access(db_path, F_OK) == 0;
  sqlite3 *db = NULL;
  st = calib_db_open(db_path, 1, &db, err);
  if (st == INFSIM_OK) {
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
      st = calib_sql_fail(db, db_path, err);
    } else {
      st = load_rows(db, raw_path, db_path, profile, rows, n, err);
      if (st == INFSIM_OK && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        st = calib_sql_fail(db, db_path, err);
      if (st != INFSIM_OK) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    }
    sqlite3_close(db);
  }
  if (st != INFSIM_OK && !existed) unlink(db_path);
  if (st == INFSIM_OK && log)
    fprintf(log, "loaded %zu measurements of %s on '%s' as profile %s into %s\n", n, rows[0].model, rows[0].gpu,
            profile, db_path);
  free(rows);
  return st;
}

void calib_utc_now(char out[CALIB_TIME_BYTES]) {
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, CALIB_TIME_BYTES, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
