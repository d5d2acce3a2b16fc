/*
** test_run_setup_cost.c: the cost model a setup keeps from its load for
** its first run (run.h), never stale.
**
** Independent truth: a fresh load of the same config with the changed key
** given as --set, run as loaded. Properties: for each key that decides the
** cost model (the GPU profile, the calibration DB, the model shape, the
** tensor parallel degree), a setup loaded without the change, changed
** through infsim_run_setup_params_mut and run gives the fresh load's
** summary field by field and its cost model's name, while the unchanged
** setup's run differs (so each change matters); the same after the setup
** already ran once; a setup run twice, the first run on the model its load
** built, the second on one built then, gives the same summary both times;
** a run on another trace (a sweep's rate-scaled copy) equals
** infsim_run_simulate on that trace.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "infsim/run.h"

typedef struct {
  char dir[256];
  char config[512];
  char shipped_db[512];  /* data/calibration.db: calibrated h100-sxm and h200 */
  char nofit_db[512];    /* the same without fitted curves: h100-sxm by the roofline */
  char set_shipped[600]; /* calibration.db=shipped_db */
  char set_nofit[600];   /* calibration.db=nofit_db */
} fixture;

static void copy_file(const char *from, const char *to) {
  FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
  assert_non_null(in);
  assert_non_null(out);
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, in)) > 0) assert_int_equal(fwrite(buf, 1, n, out), n);
  fclose(in);
  assert_int_equal(fclose(out), 0);
}

static int setup_fixture(void **state) {
  fixture *f = calloc(1, sizeof *f);
  if (f == NULL) return -1;
  const char *tmp = getenv("TMPDIR");
  snprintf(f->dir, sizeof f->dir, "%s/infsim-run-cost-XXXXXX", tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
  if (mkdtemp(f->dir) == NULL) {
    free(f);
    return -1;
  }
  snprintf(f->config, sizeof f->config, "%s/c.yaml", f->dir);
  FILE *c = fopen(f->config, "w");
  if (c == NULL) return -1;
  /* 400 requests at 40/s on two instances: queues form, so the iteration
   * times reach every latency statistic. */
  fputs("model: llama2-7b\ngpu: h100-sxm\ncluster:\n  instances: 2\n"
        "workload:\n  requests: 400\n  rate_rps: 40\nseed: 3\n",
        c);
  if (fclose(c) != 0) return -1;
  snprintf(f->shipped_db, sizeof f->shipped_db, "%s/data/calibration.db", INFSIM_SRC_DIR);
  snprintf(f->nofit_db, sizeof f->nofit_db, "%s/nofit.db", f->dir);
  snprintf(f->set_shipped, sizeof f->set_shipped, "calibration.db=%s", f->shipped_db);
  snprintf(f->set_nofit, sizeof f->set_nofit, "calibration.db=%s", f->nofit_db);
  copy_file(f->shipped_db, f->nofit_db);
  sqlite3 *db = NULL;
  if (sqlite3_open(f->nofit_db, &db) != SQLITE_OK) return -1;
  int rc = sqlite3_exec(db, "DELETE FROM fit; DELETE FROM fit_summary;", NULL, NULL, NULL);
  sqlite3_close(db);
  if (rc != SQLITE_OK) return -1;
  *state = f;
  return 0;
}

static int teardown_fixture(void **state) {
  fixture *f = *state;
  unlink(f->nofit_db);
  unlink(f->config);
  rmdir(f->dir);
  free(f);
  return 0;
}

static infsim_run_setup *load(const fixture *f, const char *set) {
  const char *sets[1] = {set};
  infsim_run_args a = {.config_path = f->config, .sets = sets, .set_count = set != NULL ? 1 : 0};
  infsim_run_setup *setup = NULL;
  infsim_error err = {0};
  if (infsim_run_setup_load(&a, &setup, &err) != INFSIM_OK) fail_msg("load (%s): %s", set ? set : "-", err.msg);
  return setup;
}

typedef struct {
  infsim_summary summary;
  char cost_model[2 * INFSIM_NAME_BYTES];
} outcome;

static outcome run(infsim_run_setup *setup) {
  infsim_run_result *res = NULL;
  infsim_error err = {0};
  if (infsim_run_execute(setup, &res, &err) != INFSIM_OK) fail_msg("run: %s", err.msg);
  outcome o = {.summary = *infsim_run_result_summary(res)};
  snprintf(o.cost_model, sizeof o.cost_model, "%s", infsim_run_result_cost_model(res));
  infsim_run_result_free(res);
  return o;
}

/* The names of the summary fields where a and b differ, in `out` (empty:
 * equal field by field, doubles bit for bit: the runs are deterministic). */
static void differing(const infsim_summary *a, const infsim_summary *b, char *out, size_t bytes) {
  out[0] = '\0';
  size_t used = 0;
#define FIELD(f)                                                                                              \
  if (a->f != b->f) used += (size_t)snprintf(out + used, used < bytes ? bytes - used : 0, "%s ", #f)
#define STAT(s)                                                                                               \
  FIELD(s.count);                                                                                             \
  FIELD(s.mean);                                                                                              \
  FIELD(s.p50);                                                                                               \
  FIELD(s.p90);                                                                                               \
  FIELD(s.p99)
  FIELD(arrived);
  FIELD(completed);
  FIELD(rejected);
  FIELD(span_s);
  FIELD(throughput_tok_s);
  FIELD(requests_per_s);
  STAT(ttft_s);
  STAT(tpot_s);
  STAT(e2e_s);
  FIELD(slo_attainment);
  FIELD(goodput_req_s);
  FIELD(mean_waiting_requests);
  FIELD(mean_running_requests);
#undef STAT
#undef FIELD
}

static void assert_same(const outcome *got, const outcome *want) {
  char diff[1024];
  differing(&got->summary, &want->summary, diff, sizeof diff);
  assert_string_equal(diff, "");
  assert_string_equal(got->cost_model, want->cost_model);
}

/* One key that decides the cost model: as a fresh load takes it (--set),
 * and the same change made through infsim_run_setup_params_mut. */
typedef struct {
  const char *base_set; /* the load before the change (NULL: the config as it is) */
  const char *fresh_set;
  void (*change)(infsim_run_params *p, const fixture *f);
} key_change;

static void to_h200(infsim_run_params *p, const fixture *f) {
  (void)f;
  snprintf(p->gpu_profile, sizeof p->gpu_profile, "h200");
  assert_true(infsim_gpu_for_key("h200", &p->gpu));
}

static void to_shipped_db(infsim_run_params *p, const fixture *f) {
  snprintf(p->calibration_db, sizeof p->calibration_db, "%s", f->shipped_db);
}

static void to_13b(infsim_run_params *p, const fixture *f) {
  (void)f;
  assert_true(infsim_model_builtin("llama2-13b", &p->model));
}

static void to_tp2(infsim_run_params *p, const fixture *f) {
  (void)f;
  p->gpus_per_instance = 2;
}

static void check_change(const fixture *f, const key_change *k, bool ran_before) {
  infsim_run_setup *s = load(f, k->fresh_set);
  outcome fresh = run(s);
  infsim_run_setup_free(s);

  s = load(f, k->base_set);
  outcome before = run(s);
  infsim_run_setup_free(s);
  char diff[1024];
  differing(&before.summary, &fresh.summary, diff, sizeof diff);
  assert_string_not_equal(diff, ""); /* the change shows in the summary */

  s = load(f, k->base_set);
  if (ran_before) {
    outcome first = run(s);
    assert_same(&first, &before);
  }
  k->change(infsim_run_setup_params_mut(s), f);
  outcome changed = run(s);
  infsim_run_setup_free(s);
  assert_same(&changed, &fresh);
}

enum { KEY_CHANGES = 4 };

static void key_changes(const fixture *f, key_change out[KEY_CHANGES]) {
  out[0] = (key_change){NULL, "gpu=h200", to_h200};
  out[1] = (key_change){f->set_nofit, f->set_shipped, to_shipped_db};
  out[2] = (key_change){NULL, "model=llama2-13b", to_13b};
  out[3] = (key_change){NULL, "cluster.gpus_per_instance=2", to_tp2};
}

static void test_change_before_first_run(void **state) {
  key_change k[KEY_CHANGES];
  key_changes(*state, k);
  for (size_t i = 0; i < KEY_CHANGES; i++) check_change(*state, &k[i], false);
}

static void test_change_after_a_run(void **state) {
  key_change k[KEY_CHANGES];
  key_changes(*state, k);
  for (size_t i = 0; i < KEY_CHANGES; i++) check_change(*state, &k[i], true);
}

/* The model load built prices the first run as one built for the run does
 * the second (and the calibrated curves are in use: else the reuse would
 * not be tested where it matters). */
static void test_second_run_same(void **state) {
  infsim_run_setup *s = load(*state, NULL);
  outcome first = run(s), second = run(s);
  infsim_run_setup_free(s);
  assert_string_equal(first.cost_model, "calibrated:h100-sxm");
  assert_same(&second, &first);
}

/* A run on a copy of the trace with arrivals twice as fast: the setup's
 * model (infsim_run_execute_trace) and one built from the params
 * (infsim_run_simulate) price it alike, and the faster arrivals change it. */
static void test_other_trace(void **state) {
  infsim_run_setup *s = load(*state, NULL);
  const infsim_trace *t = infsim_run_setup_trace(s);
  infsim_trace fast = {.requests = malloc(t->count * sizeof *t->requests), .count = t->count, .capacity = t->count};
  assert_non_null(fast.requests);
  for (size_t i = 0; i < t->count; i++) {
    fast.requests[i] = t->requests[i];
    fast.requests[i].arrival_ns = t->requests[i].arrival_ns / 2;
  }
  infsim_error err = {0};
  infsim_run_result *a = NULL, *b = NULL;
  assert_int_equal(infsim_run_execute_trace(s, &fast, &a, &err), INFSIM_OK);
  assert_int_equal(infsim_run_simulate(infsim_run_setup_params(s), &fast, NULL, &b, &err), INFSIM_OK);
  outcome got = {.summary = *infsim_run_result_summary(a)}, want = {.summary = *infsim_run_result_summary(b)};
  snprintf(got.cost_model, sizeof got.cost_model, "%s", infsim_run_result_cost_model(a));
  snprintf(want.cost_model, sizeof want.cost_model, "%s", infsim_run_result_cost_model(b));
  assert_same(&got, &want);
  infsim_run_result_free(a);
  infsim_run_result_free(b);
  outcome own = run(s);
  assert_true(own.summary.ttft_s.mean != got.summary.ttft_s.mean);
  infsim_run_setup_free(s);
  infsim_trace_free(&fast);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_change_before_first_run),
      cmocka_unit_test(test_change_after_a_run),
      cmocka_unit_test(test_second_run_same),
      cmocka_unit_test(test_other_trace),
  };
  return cmocka_run_group_tests(tests, setup_fixture, teardown_fixture);
}
