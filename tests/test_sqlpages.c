/*
** test_sqlpages.c: a database written page by page (sqlpages.h) holds
** what SQLite holds after the same INSERTs, row for row (rowid, storage
** class and value of every column), passes PRAGMA integrity_check, keeps
** STRICT and user_version, and SQLite can go on writing to it.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <math.h>
#include <sqlite3.h>

#include "infsim/sqlpages.h"

enum { COLS = 5 };

/* A value as the test draws it; `real` marks a REAL column's. */
typedef enum { V_NULL, V_INT, V_REAL, V_TEXT } value_type;
typedef struct {
  value_type type;
  int64_t i;
  double r;
  const char *text;
  int32_t text_bytes;
} value;

/* Adds v to row the way the results writer does: REAL columns through
 * infsim_sqlrow_real, an ANY column's double through infsim_sqlrow_float. */
static void add(infsim_sqlrow *row, const value *v, int real_column) {
  switch (v->type) {
  case V_NULL: infsim_sqlrow_null(row); break;
  case V_INT: infsim_sqlrow_int(row, v->i); break;
  case V_REAL:
    if (real_column) infsim_sqlrow_real(row, v->r);
    else infsim_sqlrow_float(row, v->r);
    break;
  case V_TEXT: infsim_sqlrow_text(row, v->text, v->text_bytes); break;
  }
}

static const char k_mixed_sql[] =
    "CREATE TABLE mixed(id INTEGER PRIMARY KEY, r REAL, i INTEGER NOT NULL, t TEXT, a ANY) STRICT";
static const char k_plain_sql[] = "CREATE TABLE plain(x REAL NOT NULL, y INTEGER) STRICT";
static const char k_empty_sql[] = "CREATE TABLE empty(v INTEGER) STRICT";

static uint64_t next(uint64_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return *x;
}

/* Integers at every serial-type edge, and random ones. */
static int64_t pick_int(uint64_t *rng) {
  static const int64_t edges[] = {0,        1,        -1,        2,           127,          128,         -128,
                                  -129,     32767,    32768,     -32768,      -32769,       8388607,     8388608,
                                  -8388608, -8388609, INT32_MAX, INT32_MIN,   2147483648LL, 140737488355327LL,
                                  140737488355328LL,  -140737488355328LL,     INT64_MAX,    INT64_MIN};
  uint64_t u = next(rng);
  if (u % 3 == 0) return edges[(u >> 8) % (sizeof edges / sizeof edges[0])];
  return (int64_t)(next(rng) >> (u % 64));
}

/* Doubles: fractional, integral (stored as integers by SQLite below 2^47),
 * huge, negative zero, NaN (bound as NULL). */
static double pick_real(uint64_t *rng, int nullable) {
  uint64_t u = next(rng) % 10;
  switch (u) {
  case 0: return (double)pick_int(rng);
  case 1: return -0.0;
  case 2: return nullable ? NAN : 1.5;
  case 3: return 1e300;
  case 4: return 140737488355328.0; /* 2^47: an 8-byte integer, so a real */
  default: return (double)(int64_t)(next(rng) % 100000000000ULL) * 1e-9;
  }
}

static char g_text[600];

static value pick(uint64_t *rng, int column, const char *kind) {
  value v = {.type = V_NULL};
  uint64_t u = next(rng);
  if (kind[column] == 'r') {
    if (u % 7 != 0) v = (value){.type = V_REAL, .r = pick_real(rng, 1)};
  } else if (kind[column] == 'R') {
    v = (value){.type = V_REAL, .r = pick_real(rng, 0)};
  } else if (kind[column] == 'i' || kind[column] == 'I') {
    if (kind[column] == 'I' || u % 5 != 0) v = (value){.type = V_INT, .i = pick_int(rng)};
  } else if (kind[column] == 't') {
    int32_t n = (int32_t)(next(rng) % (u % 4 == 0 ? 500 : 20));
    v = (value){.type = V_TEXT, .text = g_text, .text_bytes = n};
  } else { /* ANY: any class */
    uint64_t k = u % 4;
    if (k == 1) v = (value){.type = V_INT, .i = pick_int(rng)};
    if (k == 2) v = (value){.type = V_REAL, .r = pick_real(rng, 1)};
    if (k == 3) v = (value){.type = V_TEXT, .text = g_text + 7, .text_bytes = 11};
  }
  return v;
}

static void bind(sqlite3_stmt *q, int col, const value *v) {
  switch (v->type) {
  case V_NULL: sqlite3_bind_null(q, col); break;
  case V_INT: sqlite3_bind_int64(q, col, v->i); break;
  case V_REAL: sqlite3_bind_double(q, col, v->r); break;
  case V_TEXT: sqlite3_bind_text(q, col, v->text, v->text_bytes, SQLITE_STATIC); break;
  }
}

static void exec(sqlite3 *db, const char *sql) {
  char *msg = NULL;
  int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
  if (rc != SQLITE_OK) fprintf(stderr, "%s: %s\n", sql, msg ? msg : "?");
  sqlite3_free(msg);
  assert_int_equal(rc, SQLITE_OK);
}

static void expect_same_rows(sqlite3 *a, sqlite3 *b, const char *select, int64_t want_rows) {
  sqlite3_stmt *qa = NULL, *qb = NULL;
  assert_int_equal(sqlite3_prepare_v2(a, select, -1, &qa, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(b, select, -1, &qb, NULL), SQLITE_OK);
  int64_t rows = 0;
  for (;;) {
    int ra = sqlite3_step(qa), rb = sqlite3_step(qb);
    assert_int_equal(ra, rb);
    if (ra != SQLITE_ROW) break;
    rows++;
    for (int c = 0; c < sqlite3_column_count(qa); c++) {
      int ta = sqlite3_column_type(qa, c), tb = sqlite3_column_type(qb, c);
      assert_int_equal(ta, tb);
      if (ta == SQLITE_INTEGER) assert_true(sqlite3_column_int64(qa, c) == sqlite3_column_int64(qb, c));
      if (ta == SQLITE_FLOAT) {
        double x = sqlite3_column_double(qa, c), y = sqlite3_column_double(qb, c);
        assert_memory_equal(&x, &y, sizeof x);
      }
      if (ta == SQLITE_TEXT) {
        int n = sqlite3_column_bytes(qa, c);
        assert_int_equal(n, sqlite3_column_bytes(qb, c));
        assert_memory_equal(sqlite3_column_text(qa, c), sqlite3_column_text(qb, c), (size_t)n);
      }
    }
  }
  if (want_rows >= 0 && rows != want_rows) fprintf(stderr, "%s: %lld rows\n", select, (long long)rows);
  assert_true(want_rows < 0 || rows == want_rows);
  sqlite3_finalize(qa);
  sqlite3_finalize(qb);
}

static void expect_text(sqlite3 *db, const char *sql, const char *want) {
  sqlite3_stmt *q = NULL;
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(q), SQLITE_ROW);
  assert_string_equal((const char *)sqlite3_column_text(q, 0), want);
  sqlite3_finalize(q);
}

/* rows of `mixed` (20,000 rows with long texts: three b-tree levels) and
 * `plain` (rowids 1..n as SQLite gives them), and an empty table. */
static void test_same_as_sqlite(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof g_text; i++) g_text[i] = (char)('a' + i % 26);
  char dir[] = "/tmp/test_sqlpages.XXXXXX";
  assert_non_null(mkdtemp(dir));
  char ours[64], ref[64];
  snprintf(ours, sizeof ours, "%s/ours.db", dir);
  snprintf(ref, sizeof ref, "%s/ref.db", dir);

  sqlite3 *r = NULL;
  assert_int_equal(sqlite3_open(ref, &r), SQLITE_OK);
  exec(r, "BEGIN");
  exec(r, k_mixed_sql);
  exec(r, k_plain_sql);
  exec(r, k_empty_sql);
  exec(r, "PRAGMA user_version=7");
  sqlite3_stmt *ins_mixed = NULL, *ins_plain = NULL;
  assert_int_equal(sqlite3_prepare_v2(r, "INSERT INTO mixed VALUES(?,?,?,?,?)", -1, &ins_mixed, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(r, "INSERT INTO plain VALUES(?,?)", -1, &ins_plain, NULL), SQLITE_OK);

  infsim_sqlpages *w = NULL;
  assert_int_equal(infsim_sqlpages_open(ours, &w, NULL), INFSIM_OK);
  infsim_sqlrow *row = malloc(sizeof *row);
  assert_non_null(row);
  assert_int_equal(infsim_sqlpages_table(w, "mixed", k_mixed_sql, COLS, NULL), INFSIM_OK);
  uint64_t rng = 88172645463325252ULL;
  int64_t rowid = -5; /* negative rowids, gaps, then huge ones */
  enum { MIXED_ROWS = 20000, PLAIN_ROWS = 3000 };
  for (int k = 0; k < MIXED_ROWS; k++) {
    rowid += k < MIXED_ROWS - 3 ? 1 + (int64_t)(next(&rng) % 3) : INT64_C(1) << 61;
    value v[COLS];
    for (int c = 0; c < COLS; c++) v[c] = pick(&rng, c, "-rIta");
    v[0] = (value){.type = V_INT, .i = rowid};
    infsim_sqlrow_begin(row);
    infsim_sqlrow_null(row); /* the INTEGER PRIMARY KEY: the rowid */
    for (int c = 1; c < COLS; c++) add(row, &v[c], c == 1);
    assert_int_equal(infsim_sqlpages_append(w, rowid, row, NULL), INFSIM_OK);
    for (int c = 0; c < COLS; c++) bind(ins_mixed, c + 1, &v[c]);
    assert_int_equal(sqlite3_step(ins_mixed), SQLITE_DONE);
    sqlite3_reset(ins_mixed);
  }
  assert_int_equal(infsim_sqlpages_table(w, "plain", k_plain_sql, 2, NULL), INFSIM_OK);
  for (int k = 0; k < PLAIN_ROWS; k++) {
    value v[2] = {pick(&rng, 0, "Ri"), pick(&rng, 1, "Ri")};
    infsim_sqlrow_begin(row);
    add(row, &v[0], 1);
    add(row, &v[1], 0);
    assert_int_equal(infsim_sqlpages_append(w, k + 1, row, NULL), INFSIM_OK);
    for (int c = 0; c < 2; c++) bind(ins_plain, c + 1, &v[c]);
    assert_int_equal(sqlite3_step(ins_plain), SQLITE_DONE);
    sqlite3_reset(ins_plain);
  }
  /* a rowid out of order is refused, not written */
  value one[2] = {{.type = V_REAL, .r = 1.0}, {.type = V_NULL}};
  infsim_sqlrow_begin(row);
  add(row, &one[0], 1);
  add(row, &one[1], 0);
  assert_int_equal(infsim_sqlpages_append(w, 3, row, NULL), INFSIM_ERUN);
  /* so is a row with a column too few */
  infsim_sqlrow_begin(row);
  add(row, &one[0], 1);
  assert_int_equal(infsim_sqlpages_append(w, 1 << 20, row, NULL), INFSIM_ERUN);
  assert_int_equal(infsim_sqlpages_table(w, "empty", k_empty_sql, 1, NULL), INFSIM_OK);
  assert_int_equal(infsim_sqlpages_close(w, 7, NULL), INFSIM_OK);
  free(row);
  sqlite3_finalize(ins_mixed);
  sqlite3_finalize(ins_plain);
  exec(r, "COMMIT");

  sqlite3 *o = NULL;
  assert_int_equal(sqlite3_open(ours, &o), SQLITE_OK);
  expect_text(o, "PRAGMA integrity_check", "ok");
  expect_text(o, "PRAGMA user_version", "7");
  expect_text(o, "SELECT group_concat(x, ',') FROM (SELECT name || ':' || strict AS x FROM pragma_table_list"
                 " WHERE schema = 'main' AND name NOT LIKE 'sqlite_%' ORDER BY name)",
              "empty:1,mixed:1,plain:1");
  expect_same_rows(r, o, "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY name", 3);
  expect_same_rows(r, o, "SELECT rowid, id, r, i, t, a, typeof(r), typeof(a) FROM mixed ORDER BY rowid", MIXED_ROWS);
  expect_same_rows(r, o, "SELECT rowid, * FROM plain ORDER BY rowid", PLAIN_ROWS);
  /* seeks through the interior pages */
  expect_same_rows(r, o, "SELECT rowid, * FROM mixed WHERE rowid BETWEEN 400 AND 9000 ORDER BY rowid DESC", -1);
  expect_same_rows(r, o, "SELECT count(*), total(i), min(rowid), max(rowid) FROM mixed", 1);
  /* SQLite goes on writing to it (as results.db's summary table is added) */
  exec(o, "BEGIN; CREATE TABLE more(k TEXT PRIMARY KEY, v ANY) STRICT; INSERT INTO more VALUES('a', 1), ('b', 2.5);"
          " INSERT INTO plain VALUES(3.25, 9); COMMIT");
  expect_text(o, "PRAGMA integrity_check", "ok");
  expect_text(o, "SELECT count(*) FROM plain", "3001");
  sqlite3_close(o);
  sqlite3_close(r);
  unlink(ours);
  unlink(ref);
  rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_same_as_sqlite),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
