/*
** test_iteration_fit.c: the calibration DB's measured per-iteration time
** (table iteration_fit, costmodel.h): the loader reads a row, the cost
** model adds it in place of the config's default (an iteration's time
** with the row differs from one without it by exactly default - fitted,
** worked by hand), a value the user set wins over it, other profiles and
** TP degrees keep the default, and a bad row is an input error naming the
** file and the field.
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
#include <sqlite3.h>

#include "infsim/calib.h"
#include "infsim/costmodel.h"

static char g_shipped[4096];
static char g_copy[4096];  /* with the row under test */
static char g_plain[4096]; /* without any iteration_fit row */

/* The shipped DB copied to `path` (a scratch file), with `sql` run on it. */
static void copy_to(const char *path, const char *sql) {
  snprintf(g_shipped, sizeof g_shipped, "%s/data/calibration.db", INFSIM_SRC_DIR);
  FILE *in = fopen(g_shipped, "rb"), *out = fopen(path, "wb");
  assert_non_null(in);
  assert_non_null(out);
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, in)) > 0) assert_int_equal(fwrite(buf, 1, n, out), n);
  fclose(in);
  assert_int_equal(fclose(out), 0);
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  char *msg = NULL;
  int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
  if (rc != SQLITE_OK) fprintf(stderr, "%s\n", msg ? msg : "?");
  sqlite3_free(msg);
  assert_int_equal(rc, SQLITE_OK);
  sqlite3_close(db);
}

/* g_plain: the shipped DB less its iteration_fit rows; g_copy: that plus `sql`. */
static void copy_db(const char *sql) {
  snprintf(g_plain, sizeof g_plain, "/tmp/infsim-test-iteration-fit-plain-%ld.db", (long)getpid());
  snprintf(g_copy, sizeof g_copy, "/tmp/infsim-test-iteration-fit-%ld.db", (long)getpid());
  copy_to(g_plain, "DROP TABLE IF EXISTS iteration_fit;");
  char both[2048];
  snprintf(both, sizeof both, "DROP TABLE IF EXISTS iteration_fit; %s", sql);
  copy_to(g_copy, both);
}

static void remove_dbs(void) {
  unlink(g_copy);
  unlink(g_plain);
}

#define TABLE                                                                                                  \
  "CREATE TABLE iteration_fit (profile_id INTEGER NOT NULL REFERENCES profile(id), tp INTEGER NOT NULL,"       \
  " overhead_us REAL NOT NULL, rows INTEGER NOT NULL, source TEXT NOT NULL, fitted_at TEXT NOT NULL,"          \
  " PRIMARY KEY (profile_id, tp)) STRICT;"
#define ROW(us)                                                                                                \
  "INSERT INTO iteration_fit SELECT id, 1, " us ", 100, 'test', 'now' FROM profile"                            \
  " WHERE name = 'h200' AND model = 'llama2-7b';"

static infsim_cost_model build(const char *db, bool given) {
  infsim_model_shape m;
  assert_true(infsim_model_builtin("llama2-7b", &m));
  infsim_instance_layout lay = {.tp = 1, .pp = 1, .tp_link_bytes_per_s = 450e9, .pp_link_bytes_per_s = 50e9,
                                .link_latency_ns = 5000, .iteration_overhead_ns = 500000,
                                .iteration_overhead_given = given};
  infsim_roofline_eff eff = {0.7, 0.5, 0.8, 10000};
  infsim_cost_model cm;
  infsim_error err = {0};
  assert_int_equal(infsim_cost_model_build("h200", db, true, &m, &lay, &eff, NULL, &cm, &err), INFSIM_OK);
  return cm;
}

/* 123.4 us fitted against the default 500 us: every iteration 376,600 ns
 * shorter, whatever the batch (the overhead is added once, outside the
 * layers; decode-only steps are never scaled by the clock term, and a
 * prefill at the calibration's load u = 1 is not either); a run of k
 * decode steps k x 376,600 ns shorter. */
static void test_row_replaces_default(void **state) {
  (void)state;
  copy_db(TABLE ROW("123.4"));
  infsim_model_shape m;
  assert_true(infsim_model_builtin("llama2-7b", &m));
  infsim_cost_curves c;
  int found = 0;
  infsim_error err = {0};
  assert_int_equal(infsim_cost_curves_calibrated(g_copy, "h200", &m, 1, &found, &c, &err), INFSIM_OK);
  assert_int_equal(found, 1);
  assert_true(c.has_iteration_overhead);
  assert_true(c.iteration_overhead_ns == 123400.0);
  c.destroy(c.self);

  infsim_cost_model with = build(g_copy, false), without = build(g_plain, false);
  assert_int_equal(with.layout.iteration_overhead_ns, 123400);
  assert_int_equal(without.layout.iteration_overhead_ns, 500000);
  infsim_batch_agg dec = {0};
  dec.decode_requests = 1;
  dec.decode_context_tokens = 6000;
  dec.decode_max_context_tokens = 6000;
  dec.logits_tokens = 1;
  int64_t t_with = infsim_cost_iteration_ns(&with, &dec), t_without = infsim_cost_iteration_ns(&without, &dec);
  assert_true(t_with > 1000000);
  assert_int_equal(t_without - t_with, 500000 - 123400);
  infsim_batch_agg pre = {0};
  pre.prefill_tokens = 4096;
  pre.prefill_attn_pairs = 4096LL * 4097 / 2;
  pre.logits_tokens = 1;
  pre.decode_requests = 7;
  pre.decode_context_tokens = 7 * 900;
  pre.decode_max_context_tokens = 900;
  assert_int_equal(infsim_cost_iteration_busy_ns(&without, &pre, 1.0) - infsim_cost_iteration_busy_ns(&with, &pre, 1.0),
                   500000 - 123400);
  infsim_decode_run rw, ro;
  infsim_cost_decode_run_init(&with, 3, &rw);
  infsim_cost_decode_run_init(&without, 3, &ro);
  rw.first_max_context_tokens = ro.first_max_context_tokens = 2000;
  assert_int_equal(infsim_cost_decode_run_ns(&without, &ro, 4000, 10) - infsim_cost_decode_run_ns(&with, &rw, 4000, 10),
                   10 * (500000 - 123400));
  infsim_cost_model_destroy(&with);
  infsim_cost_model_destroy(&without);
  remove_dbs();
}

/* cost.iteration_overhead_us set in the config wins over the row; another
 * TP degree or profile has no row and keeps the config's value. */
static void test_config_wins_and_others_keep_default(void **state) {
  (void)state;
  copy_db(TABLE ROW("123.4"));
  infsim_cost_model given = build(g_copy, true);
  assert_int_equal(given.layout.iteration_overhead_ns, 500000);
  infsim_cost_model_destroy(&given);
  infsim_model_shape m;
  assert_true(infsim_model_builtin("llama2-7b", &m));
  struct { const char *profile; int64_t tp; } others[] = {{"h200", 2}, {"h100-sxm", 1}};
  for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
    infsim_cost_curves c;
    int found = 0;
    infsim_error err = {0};
    assert_int_equal(infsim_cost_curves_calibrated(g_copy, others[i].profile, &m, others[i].tp, &found, &c, &err),
                     INFSIM_OK);
    assert_int_equal(found, 1);
    assert_false(c.has_iteration_overhead);
    c.destroy(c.self);
  }
  remove_dbs();
}

/* A negative time is refused, naming the DB, the table and the field. */
static void test_bad_row(void **state) {
  (void)state;
  copy_db(TABLE ROW("-5"));
  infsim_model_shape m;
  assert_true(infsim_model_builtin("llama2-7b", &m));
  infsim_cost_curves c;
  int found = 0;
  infsim_error err = {0};
  assert_int_equal(infsim_cost_curves_calibrated(g_copy, "h200", &m, 1, &found, &c, &err), INFSIM_EINPUT);
  assert_int_equal(found, 0);
  char want[4300];
  snprintf(want, sizeof want, "%s: iteration_fit: h200, llama2-7b, tp 1: overhead_us -5: want a number in [0, 1e9]"
           " (microseconds)", g_copy);
  assert_string_equal(err.msg, want);
  remove_dbs();
}

/* The shipped DB has a row where one was measured (llama2-7b, TP 1, on the
 * h200 and the h100-sxm: bench/fidelity/README.md), and none for other TP
 * degrees, which keep the default. */
static void test_shipped_rows(void **state) {
  (void)state;
  char db[4096];
  snprintf(db, sizeof db, "%s/data/calibration.db", INFSIM_SRC_DIR);
  infsim_model_shape m;
  assert_true(infsim_model_builtin("llama2-7b", &m));
  struct { const char *profile; int64_t tp; bool on; } cases[] = {
      {"h200", 1, true}, {"h200", 2, false}, {"h100-sxm", 1, true}, {"h100-sxm", 2, false}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    infsim_cost_curves c;
    int found = 0;
    infsim_error err = {0};
    assert_int_equal(infsim_cost_curves_calibrated(db, cases[i].profile, &m, cases[i].tp, &found, &c, &err), INFSIM_OK);
    assert_int_equal(found, 1);
    assert_true(c.has_iteration_overhead == cases[i].on);
    c.destroy(c.self);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_row_replaces_default),
      cmocka_unit_test(test_config_wins_and_others_keep_default),
      cmocka_unit_test(test_bad_row),
      cmocka_unit_test(test_shipped_rows),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
