/*
** test_calib_files.c: bad calibration files and the DB they go into.
**
** Each class of bad raw file (schema version, missing column, NaN, text in
** a number, field count, unknown kernel, a model other than --model, a
** shape other than the named model's, two models in one file, empty file)
** and of bad DB (another user_version, not SQLite) must fail with
** INFSIM_EINPUT and a message naming file:line: field, through the library
** and through the CLI (exit 2), and leave the DB exactly as it was (row
** counts) or not create it at all.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "infsim/calib.h"

enum { PATH_BYTES = 512 };

typedef struct {
  char dir[PATH_BYTES];
  char raw[PATH_BYTES];
  char db[PATH_BYTES];
} fixture;

static const char k_header[] =
    "schema,gpu,driver,sm_clock_mhz,mem_clock_mhz,backend,model,layers,hidden,heads,kv_heads,head_dim,"
    "intermediate,dtype_bytes,tp,kernel,tokens,pairs,requests,context_tokens,partials,bytes,local_fraction,"
    "repeats,median_ns,spread_ns\n";
/* A good row of the tiny model (hardware.h: hidden 256, 2 heads, 688). */
#define ROW(kernel, tokens, median) \
  "1,Test GPU,1.0,1000,2000,cpu,tiny,2,256,2,2,128,688,2,1," kernel "," tokens ",0,0,0,0,0,1,5," median ",10\n"

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  if (f == NULL) return -1;
  const char *tmp = getenv("TMPDIR");
  snprintf(f->dir, sizeof f->dir, "%.300s/infsim_calib_XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
  if (mkdtemp(f->dir) == NULL) {
    free(f);
    return -1;
  }
  snprintf(f->raw, sizeof f->raw, "%.400s/raw.csv", f->dir);
  snprintf(f->db, sizeof f->db, "%.400s/calib.db", f->dir);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  char cmd[PATH_BYTES + 16];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
  int rc = system(cmd);
  free(f);
  return rc == 0 ? 0 : -1;
}

static void write_file(const char *path, const char *text) {
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  fputs(text, fp);
  assert_int_equal(fclose(fp), 0);
}

static int64_t count_rows(const char *db_path, const char *table) {
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  char sql[128];
  snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
  sqlite3_stmt *q = NULL;
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(q), SQLITE_ROW);
  int64_t n = sqlite3_column_int64(q, 0);
  sqlite3_finalize(q);
  sqlite3_close(db);
  return n;
}

/* Exit code of `$INFSIM calibrate load RAW --db DB [extra]`; -1 if INFSIM unset. */
static int cli_load(const fixture *f, const char *extra) {
  const char *bin = getenv("INFSIM");
  if (bin == NULL) return -1;
  char cmd[4 * PATH_BYTES];
  snprintf(cmd, sizeof cmd, "'%s' calibrate load '%s' --db '%s' %s 2>/dev/null >/dev/null", bin, f->raw, f->db,
           extra ? extra : "");
  int rc = system(cmd);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* Loads text as the raw file; expects failure with `expect` in the message
 * (after the file path), exit 2 from the CLI, and no DB created. */
static void expect_bad(const fixture *f, const char *text, const char *model, const char *expect) {
  write_file(f->raw, text);
  unlink(f->db);
  infsim_calib_load_opts o = {.model = model};
  infsim_error err = {0};
  assert_int_equal(infsim_calib_load(f->raw, f->db, &o, NULL, &err), INFSIM_EINPUT);
  char want[PATH_BYTES * 2];
  snprintf(want, sizeof want, "%s:%s", f->raw, expect);
  if (strncmp(err.msg, want, strlen(want)) != 0) fail_msg("message '%s' does not start with '%s'", err.msg, want);
  assert_null(strchr(err.msg, '\n'));
  assert_int_not_equal(access(f->db, F_OK), 0); /* nothing half-written */
  char extra[64] = "";
  if (model) snprintf(extra, sizeof extra, "--model %s", model);
  int rc = cli_load(f, extra);
  if (rc != -1) assert_int_equal(rc, 2);
}

static void test_bad_raw_files(void **state) {
  fixture *f = *state;
  expect_bad(f, "", NULL, "1: empty file");
  expect_bad(f, k_header, NULL, "1: no measurements");
  /* Missing column: drop median_ns from the header. */
  expect_bad(f,
             "schema,gpu,driver,sm_clock_mhz,mem_clock_mhz,backend,model,layers,hidden,heads,kv_heads,head_dim,"
             "intermediate,dtype_bytes,tp,kernel,tokens,pairs,requests,context_tokens,partials,bytes,local_fraction,"
             "repeats,spread_ns\n",
             NULL, "1: median_ns: missing column");
  char text[4096];
  snprintf(text, sizeof text, "%s%s%s", k_header, ROW("gemm_qkv", "1", "1000"), ROW("gemm_qkv", "2", "nan"));
  expect_bad(f, text, NULL, "3: median_ns: not a decimal number: 'nan'");
  /* Issue 14: hexadecimal and subnormal times are refused by row. */
  snprintf(text, sizeof text, "%s%s%s", k_header, ROW("gemm_qkv", "1", "1000"), ROW("gemm_qkv", "2", "0x1p10"));
  expect_bad(f, text, NULL, "3: median_ns: not a decimal number: '0x1p10'");
  snprintf(text, sizeof text, "%s%s", k_header, ROW("gemm_qkv", "1", "4.9e-324"));
  expect_bad(f, text, NULL, "2: median_ns: below the smallest normal double: '4.9e-324'");
  snprintf(text, sizeof text, "%s%s", k_header, ROW("gemm_qkv", "1", "1e-400"));
  expect_bad(f, text, NULL, "2: median_ns: below the smallest normal double: '1e-400'");
  snprintf(text, sizeof text, "%s%s", k_header, ROW("gemm_qkv", "1", "1e400"));
  expect_bad(f, text, NULL, "2: median_ns: too large: '1e400'");
  snprintf(text, sizeof text, "%s%s", k_header, ROW("gemm_qkv", "+1", "1000"));
  expect_bad(f, text, NULL, "2: tokens: not an integer: '+1'");
  /* The smallest normal double is a time (however silly), so the bound is exact. */
  snprintf(text, sizeof text, "%s%s", k_header, ROW("gemm_qkv", "1", "2.2250738585072014e-308"));
  write_file(f->raw, text);
  unlink(f->db);
  infsim_error ok_err = {0};
  assert_int_equal(infsim_calib_load(f->raw, f->db, NULL, NULL, &ok_err), INFSIM_OK);
  unlink(f->db);
  snprintf(text, sizeof text, "%s%s", k_header, ROW("gemm_qkv", "x1", "1000"));
  expect_bad(f, text, NULL, "2: tokens: not an integer");
  snprintf(text, sizeof text, "%s%s", k_header, ROW("gemm_qkv", "1", "0"));
  expect_bad(f, text, NULL, "2: median_ns: must be > 0");
  snprintf(text, sizeof text, "%s%s", k_header, ROW("softmax", "1", "1000"));
  expect_bad(f, text, NULL, "2: kernel: unknown kernel 'softmax'");
  snprintf(text, sizeof text, "%s%s1,2\n", k_header, ROW("gemm_qkv", "1", "1000"));
  expect_bad(f, text, NULL, "3: 2 fields, the header has 26");
  /* Another raw format version. */
  snprintf(text, sizeof text, "%s2%s", k_header, &ROW("gemm_qkv", "1", "1000")[1]);
  expect_bad(f, text, NULL, "2: schema: raw format version 2, expected 1");
  /* A profile for another model than asked for. */
  snprintf(text, sizeof text, "%s%s", k_header, ROW("gemm_qkv", "1", "1000"));
  expect_bad(f, text, "llama2-7b", "2: model: profile for tiny, expected llama2-7b");
  /* A shape that is not the named model's: tiny with hidden 512. */
  expect_bad(f,
             "schema,gpu,driver,sm_clock_mhz,mem_clock_mhz,backend,model,layers,hidden,heads,kv_heads,head_dim,"
             "intermediate,dtype_bytes,tp,kernel,tokens,pairs,requests,context_tokens,partials,bytes,local_fraction,"
             "repeats,median_ns,spread_ns\n"
             "1,Test GPU,1.0,1000,2000,cpu,tiny,2,512,2,2,128,688,2,1,gemm_qkv,1,0,0,0,0,0,1,5,1000,10\n",
             NULL, "2: hidden: 512, but model tiny has 256");
  /* Two models in one file. */
  snprintf(text, sizeof text, "%s%s%s", k_header, ROW("gemm_qkv", "1", "1000"),
           "1,Test GPU,1.0,1000,2000,cpu,llama2-7b,32,4096,32,32,128,11008,2,1,gemm_qkv,1,0,0,0,0,0,1,5,1000,10\n");
  expect_bad(f, text, NULL, "3: model: 'llama2-7b', but line 2 says 'tiny'");
  /* Missing file. */
  unlink(f->raw);
  infsim_error err = {0};
  assert_int_equal(infsim_calib_load(f->raw, f->db, NULL, NULL, &err), INFSIM_EINPUT);
  assert_non_null(strstr(err.msg, "cannot open"));
}

static void test_bad_load_leaves_db_untouched(void **state) {
  fixture *f = *state;
  char text[4096];
  snprintf(text, sizeof text, "%s%s%s%s", k_header, ROW("gemm_qkv", "1", "1000"), ROW("gemm_qkv", "2", "1100"),
           ROW("gemm_o", "1", "900"));
  write_file(f->raw, text);
  infsim_error err = {0};
  infsim_calib_load_opts o = {.profile = "test-gpu"};
  assert_int_equal(infsim_calib_load(f->raw, f->db, &o, NULL, &err), INFSIM_OK);
  assert_int_equal(count_rows(f->db, "measurement"), 3);
  assert_int_equal(count_rows(f->db, "profile"), 1);
  /* Loading the same file again replaces, not duplicates. */
  assert_int_equal(infsim_calib_load(f->raw, f->db, &o, NULL, &err), INFSIM_OK);
  assert_int_equal(count_rows(f->db, "measurement"), 3);
  /* A NaN on the last line: nothing of the file gets in. */
  snprintf(text, sizeof text, "%s%s%s", k_header, ROW("gemm_qkv", "4", "1000"), ROW("gemm_qkv", "8", "NaN"));
  write_file(f->raw, text);
  assert_int_equal(infsim_calib_load(f->raw, f->db, &o, NULL, &err), INFSIM_EINPUT);
  assert_int_equal(count_rows(f->db, "measurement"), 3);
  /* The same profile name from another GPU is refused. */
  write_file(f->raw, "schema,gpu,driver,sm_clock_mhz,mem_clock_mhz,backend,model,layers,hidden,heads,kv_heads,head_dim,"
                     "intermediate,dtype_bytes,tp,kernel,tokens,pairs,requests,context_tokens,partials,bytes,"
                     "local_fraction,repeats,median_ns,spread_ns\n"
                     "1,Other GPU,1.0,1000,2000,cpu,tiny,2,256,2,2,128,688,2,1,gemm_qkv,1,0,0,0,0,0,1,5,1000,10\n");
  assert_int_equal(infsim_calib_load(f->raw, f->db, &o, NULL, &err), INFSIM_EINPUT);
  assert_non_null(strstr(err.msg, ":2: gpu: profile test-gpu holds measurements of 'Test GPU'"));
  assert_int_equal(count_rows(f->db, "measurement"), 3);
  /* Columns in another order, plus an extra one, load the same. */
  write_file(f->raw, "note,median_ns,spread_ns,schema,gpu,driver,sm_clock_mhz,mem_clock_mhz,backend,model,layers,"
                     "hidden,heads,kv_heads,head_dim,intermediate,dtype_bytes,tp,kernel,tokens,pairs,requests,"
                     "context_tokens,partials,bytes,local_fraction,repeats\n"
                     "\"a, b\",1500,10,1,Test GPU,1.0,1000,2000,cpu,tiny,2,256,2,2,128,688,2,2,gemm_o,8,0,0,0,0,0,1,5\n");
  assert_int_equal(infsim_calib_load(f->raw, f->db, &o, NULL, &err), INFSIM_OK);
  assert_int_equal(count_rows(f->db, "measurement"), 4);
}

static void test_bad_db(void **state) {
  fixture *f = *state;
  char text[4096];
  snprintf(text, sizeof text, "%s%s", k_header, ROW("gemm_qkv", "1", "1000"));
  write_file(f->raw, text);
  /* A DB of another schema version. */
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "CREATE TABLE x (a INTEGER) STRICT; PRAGMA user_version = 7", NULL, NULL, NULL),
                   SQLITE_OK);
  sqlite3_close(db);
  infsim_error err = {0};
  assert_int_equal(infsim_calib_load(f->raw, f->db, NULL, NULL, &err), INFSIM_EINPUT);
  char want[PATH_BYTES * 2];
  snprintf(want, sizeof want,
           "%s: user_version: calibration schema version 7, expected %d (an older or newer infsim wrote it: load"
           " the raw CSVs into a new DB and run `infsim calibrate fit`)",
           f->db, INFSIM_CALIB_DB_VERSION);
  assert_string_equal(err.msg, want);
  int goal = 0;
  assert_int_equal(infsim_calib_fit_db(f->db, NULL, &goal, &err), INFSIM_EINPUT);
  assert_string_equal(err.msg, want);
  assert_int_equal(infsim_calib_show(f->db, NULL, stdout, &err), INFSIM_EINPUT);
  infsim_model_shape m;
  assert_true(infsim_model_builtin("tiny", &m));
  infsim_cost_curves curves;
  int found = -1;
  assert_int_equal(infsim_cost_curves_calibrated(f->db, "test", &m, 1, &found, &curves, &err), INFSIM_EINPUT);
  assert_int_equal(found, 0);
  assert_non_null(strstr(err.msg, "user_version"));
  int rc = cli_load(f, NULL);
  if (rc != -1) assert_int_equal(rc, 2);
  /* A version 1 DB (before the shape ratio terms and knots): refused by
   * the simulator and by fit, saying what to do. */
  unlink(f->db);
  assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "CREATE TABLE fit (a INTEGER) STRICT; PRAGMA user_version = 1", NULL, NULL, NULL),
                   SQLITE_OK);
  sqlite3_close(db);
  assert_int_equal(infsim_cost_curves_calibrated(f->db, "test", &m, 1, &found, &curves, &err), INFSIM_EINPUT);
  assert_non_null(strstr(err.msg, "calibration schema version 1, expected 2"));
  assert_non_null(strstr(err.msg, "run `infsim calibrate fit`"));
  assert_int_equal(infsim_calib_fit_db(f->db, NULL, &goal, &err), INFSIM_EINPUT);
  assert_non_null(strstr(err.msg, "calibration schema version 1, expected 2"));
  /* Not a database at all. */
  write_file(f->db, "this is not sqlite, just text long enough to have a header page......................\n");
  assert_int_equal(infsim_calib_load(f->raw, f->db, NULL, NULL, &err), INFSIM_EINPUT);
  assert_non_null(strstr(err.msg, f->db));
  /* A DB that does not exist: fit and curves say so, and create nothing. */
  unlink(f->db);
  assert_int_equal(infsim_calib_fit_db(f->db, NULL, &goal, &err), INFSIM_EINPUT);
  assert_int_equal(infsim_cost_curves_calibrated(f->db, "test", &m, 1, &found, &curves, &err), INFSIM_EINPUT);
  assert_int_not_equal(access(f->db, F_OK), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_bad_raw_files, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_load_leaves_db_untouched, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_db, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
