/*
** test_sweep.c: the sweep's grid, keys, results DB and driver (sweep.h),
** with a stand-in runner whose summary is a known function of its
** settings, so every stored field can be checked against that function.
**
** Properties: SHA-256 matches FIPS 180-4's example digests; the grid is
** the cross product in nested-loop order and rejects each bad spec; a
** job's key changes with each of config, trace, seed and version and not
** with the trace's file name; a sweep runs every job exactly once, over
** several threads, storing one row per job whose columns equal the
** stand-in's values; a rerun runs nothing; a grown grid runs only the new
** points; a failing job stops the sweep with its status, keeping the
** rows of jobs that finished; the run library's runner keys a calibrated
** job on the calibration DB's bytes, also when the DB changes under one
** runner. Every job is prepared (loaded) exactly once:
** the first pass's check of each grid point is the one that runs, and
** every prepared job is released once, also when the sweep stops; past
** INFSIM_SWEEP_KEEP_BYTES the first pass keeps no more (fewer jobs held
** at once, the rest prepared again when they run); a runner that reports
** no size has nothing kept; a kept job's stored run wall time counts its
** preparation.
*/
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "infsim/hash.h"
#include "infsim/sweep.h"

/* ---- SHA-256 ---- */

static void sha_hex(const char *text, size_t repeat, char out[INFSIM_SHA256_HEX_BYTES]) {
  infsim_sha256 s;
  infsim_sha256_init(&s);
  for (size_t i = 0; i < repeat; i++) infsim_sha256_update(&s, text, strlen(text));
  uint8_t d[INFSIM_SHA256_BYTES];
  infsim_sha256_final(&s, d);
  infsim_sha256_hex(d, out);
}

static void test_sha256_fips_vectors(void **state) {
  (void)state;
  char hex[INFSIM_SHA256_HEX_BYTES];
  /* FIPS 180-2 appendix B.1, B.2, B.3 */
  sha_hex("abc", 1, hex);
  assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  sha_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 1, hex);
  assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  sha_hex("aaaaaaaaaa", 100000, hex); /* one million 'a', fed in pieces across block edges */
  assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  sha_hex("", 1, hex);
  assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

/* ---- grid ---- */

static void test_grid_cross_product_order(void **state) {
  (void)state;
  infsim_error err = {0};
  infsim_grid *g = infsim_grid_new();
  assert_int_equal(infsim_grid_point_count(g), 1);
  assert_int_equal(infsim_grid_add(g, "a=1,2,3", &err), INFSIM_OK);
  assert_int_equal(infsim_grid_add(g, " b = x , y ", &err), INFSIM_OK);
  assert_int_equal(infsim_grid_point_count(g), 6);
  assert_string_equal(infsim_grid_axis_key(g, 1), "b");
  /* Nested loops, last axis fastest; every pair exactly once. */
  const char *want[6][2] = {{"1", "x"}, {"1", "y"}, {"2", "x"}, {"2", "y"}, {"3", "x"}, {"3", "y"}};
  for (size_t p = 0; p < 6; p++) {
    assert_string_equal(infsim_grid_value(g, p, 0), want[p][0]);
    assert_string_equal(infsim_grid_value(g, p, 1), want[p][1]);
  }
  /* A range LO:HI:STEP includes HI despite binary rounding of 0.1. */
  assert_int_equal(infsim_grid_add(g, "rate_scale=0.1:0.5:0.1", &err), INFSIM_OK);
  assert_int_equal(infsim_grid_axis_size(g, 2), 5);
  assert_string_equal(infsim_grid_value(g, 4, 2), "0.5");
  assert_string_equal(infsim_grid_value(g, 5, 2), "0.1");
  assert_int_equal(infsim_grid_point_count(g), 30);
  infsim_grid_free(g);
}

static void test_grid_rejects_bad_specs(void **state) {
  (void)state;
  static const struct {
    const char *spec, *msg;
  } bad[] = {
      {"noequals", "--grid noequals: expected key=v1,v2,..."},
      {"=1,2", "--grid =1,2: empty key"},
      {"a=1,,2", "--grid a=1,,2: empty value"},
      {"a=", "--grid a=: empty value"},
      {"seed=1,2", "--grid seed=1,2: seeds come from --seeds N, not a grid axis"},
      {"rate_scale=1,-2", "--grid rate_scale=1,-2: rate_scale: expected a positive number, got '-2'"},
      {"rate_scale=0", "--grid rate_scale=0: rate_scale: expected a positive number, got '0'"},
      {"c=5:1:1", "--grid c=5:1:1: a range LO:HI:STEP needs STEP > 0 and HI >= LO"},
      {"c=0:1e9:1", "--grid c=0:1e9:1: range has too many values"},
      {"k=1,2", "--grid k=1,2: key 'k' already has an axis"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    infsim_grid *g = infsim_grid_new();
    infsim_error err = {0};
    assert_int_equal(infsim_grid_add(g, "k=0", &err), INFSIM_OK);
    assert_int_equal(infsim_grid_add(g, bad[i].spec, &err), INFSIM_EINPUT);
    assert_string_equal(err.msg, bad[i].msg);
    assert_int_equal(infsim_grid_axis_count(g), 1); /* nothing half-added */
    infsim_grid_free(g);
  }
  /* The product limit counts all axes: 1000 x 1000 x 2 > 1e6. */
  infsim_grid *g = infsim_grid_new();
  infsim_error err = {0};
  assert_int_equal(infsim_grid_add(g, "a=1:1000:1", &err), INFSIM_OK);
  assert_int_equal(infsim_grid_add(g, "b=1:1000:1", &err), INFSIM_OK);
  assert_int_equal(infsim_grid_add(g, "c=1,2", &err), INFSIM_EINPUT);
  infsim_grid_free(g);
}

/* ---- keys ---- */

static void test_point_key_depends_on_each_part(void **state) {
  (void)state;
  infsim_trace_request reqs[2] = {{0, 100, 10}, {1000, 200, 20}};
  infsim_trace t = {reqs, 2, 2, false};
  uint8_t d1[INFSIM_SHA256_BYTES], d2[INFSIM_SHA256_BYTES];
  infsim_trace_digest(&t, d1);
  reqs[1].output_tokens = 21;
  infsim_trace_digest(&t, d2);
  assert_memory_not_equal(d1, d2, sizeof d1);

  json_t *cfg = json_pack("{s:s, s:{s:i}, s:{s:s, s:f}}", "model", "llama2-7b", "scheduler", "max_batch_size", 64,
                          "workload", "trace", "/a/one.csv", "rate_rps", 2.0);
  json_t *moved = json_pack("{s:{s:f, s:s}, s:{s:i}, s:s}", "workload", "rate_rps", 2.0, "trace", "/b/other.csv",
                            "scheduler", "max_batch_size", 64, "model", "llama2-7b");
  json_t *changed = json_pack("{s:s, s:{s:i}, s:{s:s, s:f}}", "model", "llama2-7b", "scheduler", "max_batch_size",
                              65, "workload", "trace", "/a/one.csv", "rate_rps", 2.0);
  char k[6][INFSIM_SHA256_HEX_BYTES];
  assert_true(infsim_point_key(cfg, d1, 1, "0.1.0", k[0]));
  assert_true(infsim_point_key(moved, d1, 1, "0.1.0", k[1])); /* other key order, other trace file name */
  assert_true(infsim_point_key(changed, d1, 1, "0.1.0", k[2]));
  assert_true(infsim_point_key(cfg, d2, 1, "0.1.0", k[3]));
  assert_true(infsim_point_key(cfg, d1, 2, "0.1.0", k[4]));
  assert_true(infsim_point_key(cfg, d1, 1, "0.1.1", k[5]));
  assert_string_equal(k[0], k[1]);
  for (int i = 2; i < 6; i++) assert_string_not_equal(k[0], k[i]);
  /* The trace's file name must not be stripped from the caller's config. */
  assert_string_equal(json_string_value(json_object_get(json_object_get(cfg, "workload"), "trace")), "/a/one.csv");
  json_decref(cfg);
  json_decref(moved);
  json_decref(changed);
}

/* ---- the driver, with a stand-in runner ---- */

enum { FAKE_MAX_X = 16, FAKE_MAX_Y = 32, FAKE_MAX_SEEDS = 16 };

typedef struct {
  pthread_mutex_t lock;
  int executed;
  int fail_x;         /* a job with x == fail_x fails with bad input when it runs */
  int fail_prepare_x; /* ... or when it is prepared */
  size_t handle_bytes; /* what `bytes` reports for each handle */
  long prepare_ms;     /* each preparation takes this long */
  /* prepared[x][y][seed - 7]: how often job (x, y, seed) was prepared */
  int prepared[FAKE_MAX_X][FAKE_MAX_Y][FAKE_MAX_SEEDS];
  int prepares, live, peak_live; /* prepared, minus released; its most */
} fake;

typedef struct {
  long x, y;
  uint64_t seed;
} fake_job;

/* The stand-in's summary: known functions of x, y and the seed. */
static double fake_p99(long x, long y, uint64_t seed) { return 0.5 * (double)x + (double)y + 0.001 * (double)seed; }

static infsim_status fake_prepare(void *self, const infsim_job_args *a, void **handle,
                                  char key[INFSIM_SHA256_HEX_BYTES], uint64_t *seed, infsim_error *err) {
  fake *f = self;
  fake_job *j = calloc(1, sizeof *j);
  assert_non_null(j);
  j->seed = a->seed_text != NULL ? strtoull(a->seed_text, NULL, 10) : 7; /* 7: the "config's" seed */
  for (size_t i = 0; i < a->set_count; i++) {
    if (strncmp(a->sets[i], "x=", 2) == 0) j->x = strtol(a->sets[i] + 2, NULL, 10);
    if (strncmp(a->sets[i], "y=", 2) == 0) j->y = strtol(a->sets[i] + 2, NULL, 10);
  }
  assert_true(j->x >= 0 && j->x < FAKE_MAX_X && j->y >= 0 && j->y < FAKE_MAX_Y && j->seed >= 7 &&
              j->seed < 7 + FAKE_MAX_SEEDS);
  if (f->prepare_ms > 0) nanosleep(&(struct timespec){0, f->prepare_ms * 1000000L}, NULL);
  pthread_mutex_lock(&f->lock);
  f->prepared[j->x][j->y][j->seed - 7]++;
  f->prepares++;
  bool fails = j->x == f->fail_prepare_x;
  if (!fails && ++f->live > f->peak_live) f->peak_live = f->live;
  pthread_mutex_unlock(&f->lock);
  if (fails) {
    free(j);
    return infsim_fail(err, INFSIM_EINPUT, "c.yaml: x: %d is not allowed", f->fail_prepare_x);
  }
  json_t *cfg = json_pack("{s:i, s:i}", "x", (json_int_t)j->x, "y", (json_int_t)j->y);
  uint8_t zero[INFSIM_SHA256_BYTES] = {0};
  assert_true(infsim_point_key(cfg, zero, j->seed, "test", key));
  json_decref(cfg);
  *seed = j->seed;
  *handle = j;
  return INFSIM_OK;
}

static infsim_status fake_execute(void *self, void *handle, json_t **summary, infsim_error *err) {
  fake *f = self;
  fake_job *j = handle;
  pthread_mutex_lock(&f->lock);
  f->executed++;
  pthread_mutex_unlock(&f->lock);
  if (j->x == f->fail_x) return infsim_fail(err, INFSIM_EINPUT, "c.yaml: x: unlucky %ld", j->x);
  *summary = json_pack("{s:i, s:{s:f, s:i}, s:s, s:I, s:{s:i, s:i}}", "completed", (json_int_t)(10 * j->x + j->y),
                       "ttft_s", "p99", fake_p99(j->x, j->y, j->seed), "count", (json_int_t)3, "cost_model", "fake",
                       "seed", (json_int_t)j->seed, "config", "x", (json_int_t)j->x, "y", (json_int_t)j->y);
  return INFSIM_OK;
}

static void fake_release(void *self, void *handle) {
  fake *f = self;
  pthread_mutex_lock(&f->lock);
  f->live--;
  pthread_mutex_unlock(&f->lock);
  free(handle);
}

static size_t fake_bytes(void *self, const void *handle) {
  (void)handle;
  return ((const fake *)self)->handle_bytes;
}

typedef struct {
  char dir[256], db_path[300];
  fake f;
  infsim_sweep_runner runner;
} sweep_fixture;

static int sweep_setup(void **state) {
  sweep_fixture *s = calloc(1, sizeof *s);
  if (s == NULL) return -1;
  const char *tmp = getenv("TMPDIR");
  snprintf(s->dir, sizeof s->dir, "%.200s/infsim_sweep_XXXXXX", tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
  if (mkdtemp(s->dir) == NULL) return -1;
  snprintf(s->db_path, sizeof s->db_path, "%s/r.db", s->dir);
  pthread_mutex_init(&s->f.lock, NULL);
  s->f.fail_x = s->f.fail_prepare_x = -1;
  s->f.handle_bytes = 100;
  s->runner = (infsim_sweep_runner){&s->f, fake_prepare, fake_execute, fake_release, fake_bytes};
  *state = s;
  return 0;
}

static int sweep_teardown(void **state) {
  sweep_fixture *s = *state;
  unlink(s->db_path);
  rmdir(s->dir);
  pthread_mutex_destroy(&s->f.lock);
  free(s);
  return 0;
}

static infsim_status sweep_once(sweep_fixture *s, const char *const *axes, int n_axes, int seeds,
                                infsim_sweep_outcome *out, infsim_error *err) {
  infsim_grid *g = infsim_grid_new();
  for (int i = 0; i < n_axes; i++) assert_int_equal(infsim_grid_add(g, axes[i], err), INFSIM_OK);
  infsim_sweep_db *db;
  assert_int_equal(infsim_sweep_db_open(s->db_path, &db, err), INFSIM_OK);
  infsim_sweep_opts o = {.config_path = "unused.yaml", .grid = g, .seeds = seeds, .jobs = 3, .db = db,
                         .runner = &s->runner, .keep_summaries = true};
  s->f.executed = s->f.prepares = s->f.peak_live = 0;
  memset(s->f.prepared, 0, sizeof s->f.prepared);
  infsim_status st = infsim_sweep_run(&o, out, err);
  assert_int_equal(s->f.live, 0); /* every prepared job released, once */
  infsim_sweep_db_close(db);
  infsim_grid_free(g);
  return st;
}

/* Rows of the DB as (x, y, seed) -> checked against the stand-in's values. */
static int check_rows(const char *db_path) {
  sqlite3 *db;
  assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
  sqlite3_stmt *q;
  assert_int_equal(sqlite3_prepare_v2(db,
                                      "SELECT x, y, seed, completed, ttft_s_p99, ttft_s_count, cost_model, "
                                      "typeof(x), settings, host FROM runs ORDER BY point, seed",
                                      -1, &q, NULL),
                   SQLITE_OK);
  int rows = 0;
  while (sqlite3_step(q) == SQLITE_ROW) {
    long x = sqlite3_column_int(q, 0), y = sqlite3_column_int(q, 1);
    uint64_t seed = (uint64_t)sqlite3_column_int64(q, 2);
    assert_int_equal(sqlite3_column_int(q, 3), 10 * x + y);
    assert_true(fabs(sqlite3_column_double(q, 4) - fake_p99(x, y, seed)) < 1e-12);
    assert_int_equal(sqlite3_column_int(q, 5), 3);
    assert_string_equal((const char *)sqlite3_column_text(q, 6), "fake");
    assert_string_equal((const char *)sqlite3_column_text(q, 7), "integer"); /* grid numbers stay numbers */
    char want[64];
    snprintf(want, sizeof want, "{\"x\":\"%ld\",\"y\":\"%ld\"}", x, y);
    assert_string_equal((const char *)sqlite3_column_text(q, 8), want);
    assert_true(strlen((const char *)sqlite3_column_text(q, 9)) > 0);
    rows++;
  }
  sqlite3_finalize(q);
  sqlite3_close(db);
  return rows;
}

static void test_sweep_runs_each_job_once_and_resumes(void **state) {
  sweep_fixture *s = *state;
  infsim_error err = {0};
  infsim_sweep_outcome out;
  const char *axes[] = {"x=1,2,3", "y=10,20"};
  assert_int_equal(sweep_once(s, axes, 2, 3, &out, &err), INFSIM_OK);
  assert_int_equal(out.total, 18);
  assert_int_equal(out.ran, 18);
  assert_int_equal(s->f.executed, 18);
  /* Each job prepared once: the first pass's check of a point is its run. */
  assert_int_equal(s->f.prepares, 18);
  for (long x = 1; x <= 3; x++)
    for (long y = 10; y <= 20; y += 10)
      for (int seed = 0; seed < 3; seed++) assert_int_equal(s->f.prepared[x][y][seed], 1);
  /* Seeds are the config's (7), 8, 9; summaries in job order. */
  for (size_t j = 0; j < 18; j++) {
    json_int_t seed = json_integer_value(json_object_get(out.summaries[j], "seed"));
    assert_int_equal(seed, 7 + (json_int_t)(j % 3));
  }
  infsim_sweep_outcome_free(&out);
  assert_int_equal(check_rows(s->db_path), 18);

  /* Rerun: nothing executes, every summary comes back from the DB. */
  assert_int_equal(sweep_once(s, axes, 2, 3, &out, &err), INFSIM_OK);
  assert_int_equal(s->f.executed, 0);
  assert_int_equal(s->f.prepares, 18); /* for the keys */
  assert_int_equal(out.skipped, 18);
  assert_int_equal(json_integer_value(json_object_get(out.summaries[17], "completed")), 10 * 3 + 20);
  infsim_sweep_outcome_free(&out);

  /* A grown axis and one more seed: only the new jobs run. */
  const char *grown[] = {"x=1,2,3,4", "y=10,20"};
  assert_int_equal(sweep_once(s, grown, 2, 4, &out, &err), INFSIM_OK);
  assert_int_equal(s->f.executed, 32 - 18);
  assert_int_equal(out.ran, 14);
  infsim_sweep_outcome_free(&out);
  assert_int_equal(check_rows(s->db_path), 32);
}

static void test_sweep_failure_keeps_finished_rows(void **state) {
  sweep_fixture *s = *state;
  infsim_error err = {0};
  infsim_sweep_outcome out;
  s->f.fail_x = 13;
  const char *axes[] = {"x=1,2,13,4,5,6,7,8,9", "y=1"};
  assert_int_equal(sweep_once(s, axes, 2, 1, &out, &err), INFSIM_EINPUT);
  assert_string_equal(err.msg, "grid point x=13, y=1: c.yaml: x: unlucky 13"); /* names the point */
  /* Three threads: what started before the failure finishes; the rest never starts. */
  assert_true(out.ran >= 2 && out.ran < 9);
  assert_int_equal(check_rows(s->db_path), (int)out.ran);
  infsim_sweep_outcome_free(&out);
}

/* A bad value at a later point fails in the first pass: nothing runs, and
 * the points kept before it are released. */
static void test_sweep_bad_later_point_runs_nothing(void **state) {
  sweep_fixture *s = *state;
  infsim_error err = {0};
  infsim_sweep_outcome out;
  s->f.fail_prepare_x = 5;
  const char *axes[] = {"x=1,2,3,4,5,6", "y=1"};
  assert_int_equal(sweep_once(s, axes, 2, 2, &out, &err), INFSIM_EINPUT);
  assert_string_equal(err.msg, "grid point x=5, y=1: c.yaml: x: 5 is not allowed");
  assert_int_equal(s->f.executed, 0);
  assert_int_equal(out.ran, 0);
  assert_int_equal(s->f.prepares, 5); /* points x=1..5, seed index 0, then the stop */
  assert_int_equal(s->f.peak_live, 4);  /* x=1..4 were kept */
  infsim_sweep_outcome_free(&out);
}

/* Kept jobs are bounded by INFSIM_SWEEP_KEEP_BYTES: with two handles'
 * worth, the first two points are kept and run as prepared, the other
 * four are checked, released, and prepared again when they run. A runner
 * without `bytes` keeps nothing: every point is prepared twice. */
static void test_sweep_keeps_within_bytes(void **state) {
  sweep_fixture *s = *state;
  infsim_error err = {0};
  infsim_sweep_outcome out;
  s->f.handle_bytes = INFSIM_SWEEP_KEEP_BYTES / 2;
  const char *axes[] = {"x=1,2,3,4,5,6", "y=1"};
  assert_int_equal(sweep_once(s, axes, 2, 1, &out, &err), INFSIM_OK);
  assert_int_equal(s->f.executed, 6);
  assert_int_equal(s->f.prepares, 2 + 2 * 4);
  for (long x = 1; x <= 6; x++) assert_int_equal(s->f.prepared[x][1][0], x <= 2 ? 1 : 2);
  /* Two kept and one checked at a time, or three threads' jobs. */
  assert_true(s->f.peak_live <= 3);
  infsim_sweep_outcome_free(&out);
  assert_int_equal(check_rows(s->db_path), 6);

  s->runner.bytes = NULL;
  const char *more[] = {"x=7,8,9", "y=1"};
  assert_int_equal(sweep_once(s, more, 2, 1, &out, &err), INFSIM_OK);
  assert_int_equal(s->f.executed, 3);
  assert_int_equal(s->f.prepares, 2 * 3);
  infsim_sweep_outcome_free(&out);
}

/* A kept job's run_wall_s counts its preparation in the first pass, as a
 * job prepared when it runs counts its own. */
static void test_sweep_wall_counts_preparation(void **state) {
  sweep_fixture *s = *state;
  infsim_error err = {0};
  infsim_sweep_outcome out;
  s->f.prepare_ms = 30;
  const char *axes[] = {"x=1,2", "y=1"};
  assert_int_equal(sweep_once(s, axes, 2, 2, &out, &err), INFSIM_OK);
  infsim_sweep_outcome_free(&out);
  sqlite3 *db;
  assert_int_equal(sqlite3_open(s->db_path, &db), SQLITE_OK);
  sqlite3_stmt *q;
  assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*), min(run_wall_s) FROM runs", -1, &q, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(q), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(q, 0), 4);
  assert_true(sqlite3_column_double(q, 1) >= 0.03);
  sqlite3_finalize(q);
  sqlite3_close(db);
}

static void test_db_refuses_foreign_file(void **state) {
  sweep_fixture *s = *state;
  sqlite3 *db;
  assert_int_equal(sqlite3_open(s->db_path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "CREATE TABLE profile (id INTEGER)", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  infsim_sweep_db *sd;
  infsim_error err = {0};
  assert_int_equal(infsim_sweep_db_open(s->db_path, &sd, &err), INFSIM_EINPUT);
  assert_non_null(strstr(err.msg, "not a sweep results DB"));
  FILE *fp = fopen(s->db_path, "w");
  fputs("not sqlite at all, just some text that is long enough to be a header.............\n", fp);
  fclose(fp);
  assert_int_equal(infsim_sweep_db_open(s->db_path, &sd, &err), INFSIM_EINPUT);
}

/* The run library's runner on a calibrated config: the key holds the
 * calibration DB's bytes, read once while the file stays the same. The
 * same job twice: one key; the DB rewritten in between (another
 * iteration overhead, one runner all along): another key, and that one
 * again after; a roofline job's key does not move with the DB. */
static void copy_file(const char *from, const char *to) {
  FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
  assert_non_null(in);
  assert_non_null(out);
  char buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, in)) > 0) assert_int_equal(fwrite(buf, 1, n, out), n);
  fclose(in);
  assert_int_equal(fclose(out), 0);
}

static void runner_key(const infsim_sweep_runner *r, const char *config, char key[INFSIM_SHA256_HEX_BYTES]) {
  infsim_job_args a = {.config_path = config, .rate_scale = 1};
  void *h = NULL;
  uint64_t seed = 0;
  infsim_error err = {0};
  if (r->prepare(r->self, &a, &h, key, &seed, &err) != INFSIM_OK) fail_msg("prepare %s: %s", config, err.msg);
  r->release(r->self, h);
}

static void test_runner_key_follows_calibration_db(void **state) {
  sweep_fixture *s = *state;
  char db[320], cal[320], roof[320];
  snprintf(db, sizeof db, "%s/cal.db", s->dir);
  snprintf(cal, sizeof cal, "%s/cal.yaml", s->dir);
  snprintf(roof, sizeof roof, "%s/roof.yaml", s->dir);
  copy_file(INFSIM_DATA_DIR "/calibration.db", db);
  const char *gpus[2] = {"h100-sxm", "a100-80gb"}, *paths[2] = {cal, roof};
  for (int i = 0; i < 2; i++) {
    FILE *fp = fopen(paths[i], "w");
    assert_non_null(fp);
    fprintf(fp, "model: llama2-7b\ngpu: %s\ncalibration:\n  db: %s\nworkload:\n  requests: 5\nseed: 1\n", gpus[i], db);
    assert_int_equal(fclose(fp), 0);
  }
  infsim_sweep_runner r;
  infsim_error err = {0};
  assert_int_equal(infsim_sweep_runner_new(&r, &err), INFSIM_OK);
  char k1[INFSIM_SHA256_HEX_BYTES], k2[INFSIM_SHA256_HEX_BYTES], k3[INFSIM_SHA256_HEX_BYTES],
      k4[INFSIM_SHA256_HEX_BYTES], r1[INFSIM_SHA256_HEX_BYTES], r2[INFSIM_SHA256_HEX_BYTES];
  runner_key(&r, cal, k1);
  runner_key(&r, cal, k2);
  runner_key(&r, roof, r1);
  assert_string_equal(k1, k2);
  sqlite3 *h = NULL;
  assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
  assert_int_equal(sqlite3_exec(h, "UPDATE iteration_fit SET overhead_us = overhead_us + 1", NULL, NULL, NULL),
                   SQLITE_OK);
  sqlite3_close(h);
  runner_key(&r, cal, k3);
  runner_key(&r, cal, k4);
  runner_key(&r, roof, r2);
  assert_string_not_equal(k1, k3);
  assert_string_equal(k3, k4);
  assert_string_equal(r1, r2);
  infsim_sweep_runner_free(&r);
  unlink(cal), unlink(roof), unlink(db);
}

/* Two handles on one DB (two sweeps at once): a column the first adds is
 * not added again by the second, whose cache predates it. */
static void test_db_two_writers_share_new_columns(void **state) {
  sweep_fixture *s = *state;
  infsim_error err = {0};
  infsim_sweep_db *a, *b;
  assert_int_equal(infsim_sweep_db_open(s->db_path, &a, &err), INFSIM_OK);
  assert_int_equal(infsim_sweep_db_open(s->db_path, &b, &err), INFSIM_OK);
  json_t *sum = json_pack("{s:i, s:{s:f}}", "completed", 3, "ttft_s", "p99", 0.5);
  infsim_sweep_row row = {.key = "k1", .summary = sum, .host = "h"};
  assert_int_equal(infsim_sweep_db_insert(a, &row, &err), INFSIM_OK);
  row.key = "k2";
  assert_int_equal(infsim_sweep_db_insert(b, &row, &err), INFSIM_OK);
  json_t *got = infsim_sweep_db_summary(a, "k2");
  assert_non_null(got);
  assert_int_equal(json_integer_value(json_object_get(got, "completed")), 3);
  json_decref(got);
  json_decref(sum);
  infsim_sweep_db_close(a);
  infsim_sweep_db_close(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sha256_fips_vectors),
      cmocka_unit_test(test_grid_cross_product_order),
      cmocka_unit_test(test_grid_rejects_bad_specs),
      cmocka_unit_test(test_point_key_depends_on_each_part),
      cmocka_unit_test_setup_teardown(test_sweep_runs_each_job_once_and_resumes, sweep_setup, sweep_teardown),
      cmocka_unit_test_setup_teardown(test_sweep_failure_keeps_finished_rows, sweep_setup, sweep_teardown),
      cmocka_unit_test_setup_teardown(test_sweep_bad_later_point_runs_nothing, sweep_setup, sweep_teardown),
      cmocka_unit_test_setup_teardown(test_sweep_keeps_within_bytes, sweep_setup, sweep_teardown),
      cmocka_unit_test_setup_teardown(test_sweep_wall_counts_preparation, sweep_setup, sweep_teardown),
      cmocka_unit_test_setup_teardown(test_db_refuses_foreign_file, sweep_setup, sweep_teardown),
      cmocka_unit_test_setup_teardown(test_db_two_writers_share_new_columns, sweep_setup, sweep_teardown),
      cmocka_unit_test_setup_teardown(test_runner_key_follows_calibration_db, sweep_setup, sweep_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
