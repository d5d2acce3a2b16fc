/*
** test_capacity.c: SLO parsing and the capacity search (capacity.h), with a
** stand-in runner whose TTFT p99 is a closed-form function of the arrival
** rate scale, the instance count and the seed, so the true capacity is
** known exactly: p99 = 0.2 s x scale^2 x (10 / instances) x (1 + 0.05 x
** (seed - 7)).
**
** Properties: bounds parse with units and every malformed SLO names its
** fault; the rate found meets the SLO and the value reported as failing
** misses it, within the stated tolerance of each other, around the closed
** form's threshold; the fewest instances is exact whether the search starts
** below or above it; over several seeds the worst seed decides; an SLO no
** value meets, and one every value meets, are reported as such.
*/
#include <math.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "infsim/capacity.h"

static void test_slo_parse(void **state) {
  (void)state;
  infsim_slo slo;
  infsim_error err = {0};
  assert_int_equal(infsim_slo_parse("ttft_p99=2s,tpot_p99=100ms,e2e_mean=1.5s", &slo, &err), INFSIM_OK);
  assert_int_equal(slo.count, 3);
  assert_string_equal(slo.bounds[0].field, "ttft_s");
  assert_string_equal(slo.bounds[0].stat, "p99");
  assert_true(slo.bounds[0].bound_s == 2.0);
  assert_true(fabs(slo.bounds[1].bound_s - 0.1) < 1e-15);
  assert_string_equal(slo.bounds[2].name, "e2e_mean");
  static const struct {
    const char *text, *msg;
  } bad[] = {
      {"ttft_p99=2", "--slo ttft_p99=2: ttft_p99: expected a positive time in s or ms, got '2'"},
      {"ttft_p99=2min", "--slo ttft_p99=2min: ttft_p99: expected a positive time in s or ms, got '2min'"},
      {"ttft_p99=-1s", "--slo ttft_p99=-1s: ttft_p99: expected a positive time in s or ms, got '-1s'"},
      {"ttft_p95=1s", "--slo ttft_p95=1s: 'ttft_p95': expected ttft, tpot or e2e, then _mean, _p50, _p90 or _p99"},
      {"latency=1s", "--slo latency=1s: 'latency=1s': expected METRIC_STAT=VALUE (e.g. ttft_p99=2s)"},
      {"ttft_p99=1s,,tpot_p99=1s", "--slo ttft_p99=1s,,tpot_p99=1s: expected NAME=VALUE[s|ms],... (e.g. ttft_p99=2s)"},
      {"ttft_p99=1s,ttft_p99=2s", "--slo ttft_p99=1s,ttft_p99=2s: ttft_p99 given twice"},
      {"", "--slo: empty (e.g. --slo ttft_p99=2s)"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(infsim_slo_parse(bad[i].text, &slo, &err), INFSIM_EINPUT);
    assert_string_equal(err.msg, bad[i].msg);
  }
}

static void test_slo_met(void **state) {
  (void)state;
  infsim_slo slo;
  infsim_error err = {0};
  assert_int_equal(infsim_slo_parse("ttft_p99=2s,tpot_p99=100ms", &slo, &err), INFSIM_OK);
  char why[96];
  json_t *ok = json_pack("{s:{s:i,s:f}, s:{s:i,s:f}}", "ttft_s", "count", 5, "p99", 2.0, "tpot_s", "count", 5, "p99",
                         0.1);
  assert_true(infsim_slo_met(&slo, ok, why, sizeof why)); /* bounds are inclusive */
  json_t *slow = json_pack("{s:{s:i,s:f}, s:{s:i,s:f}}", "ttft_s", "count", 5, "p99", 1.0, "tpot_s", "count", 5,
                           "p99", 0.25);
  assert_false(infsim_slo_met(&slo, slow, why, sizeof why));
  assert_string_equal(why, "tpot_p99 0.25 s > 0.1 s");
  json_t *none = json_pack("{s:{s:i,s:f}, s:{s:i,s:f}}", "ttft_s", "count", 0, "p99", 0.0, "tpot_s", "count", 0,
                           "p99", 0.0);
  assert_false(infsim_slo_met(&slo, none, why, sizeof why));
  assert_string_equal(why, "ttft_p99: no completed requests");
  json_decref(ok);
  json_decref(slow);
  json_decref(none);
}

/* ---- the search, against the closed form ---- */

typedef struct {
  double scale;
  long instances;
  uint64_t seed;
} job;

static atomic_int g_executed; /* runs of the stand-in, from any thread */

static double p99_of(double scale, long instances, uint64_t seed) {
  return 0.2 * scale * scale * (10.0 / (double)instances) * (1 + 0.05 * ((double)seed - 7));
}

static infsim_status prep(void *self, const infsim_job_args *a, void **handle, char key[INFSIM_SHA256_HEX_BYTES],
                          uint64_t *seed, infsim_error *err) {
  (void)self;
  (void)err;
  job *j = calloc(1, sizeof *j);
  j->scale = a->rate_scale;
  j->instances = 10;
  j->seed = a->seed_text != NULL ? strtoull(a->seed_text, NULL, 10) : 7;
  for (size_t i = 0; i < a->set_count; i++)
    if (strncmp(a->sets[i], "cluster.instances=", 18) == 0) j->instances = strtol(a->sets[i] + 18, NULL, 10);
  snprintf(key, INFSIM_SHA256_HEX_BYTES, "%.17g/%ld/%llu", j->scale, j->instances, (unsigned long long)j->seed);
  *seed = j->seed;
  *handle = j;
  return INFSIM_OK;
}

static infsim_status exec(void *self, void *handle, json_t **summary, infsim_error *err) {
  (void)self;
  (void)err;
  job *j = handle;
  atomic_fetch_add(&g_executed, 1);
  *summary = json_pack("{s:{s:i, s:f}}", "ttft_s", "count", 100, "p99", p99_of(j->scale, j->instances, j->seed));
  return INFSIM_OK;
}

static void rel(void *self, void *handle) {
  (void)self;
  free(handle);
}

static size_t bytes_of(void *self, const void *handle) {
  (void)self;
  (void)handle;
  return sizeof(job);
}

static const infsim_sweep_runner k_runner = {NULL, prep, exec, rel, bytes_of};

static infsim_capacity_opts opts_for(infsim_capacity_target t, const char *slo, int seeds, double start) {
  infsim_capacity_opts o = {.sweep = {.config_path = "unused.yaml", .seeds = seeds, .jobs = 1, .runner = &k_runner},
                            .target = t,
                            .tolerance = 0.01,
                            .start = start,
                            .min_value = t == INFSIM_TARGET_RATE ? 1.0 / 1024 : 1,
                            .max_value = t == INFSIM_TARGET_RATE ? 1024 : 4096};
  infsim_error err = {0};
  assert_int_equal(infsim_slo_parse(slo, &o.slo, &err), INFSIM_OK);
  return o;
}

static void test_rate_within_tolerance_of_closed_form(void **state) {
  (void)state;
  /* 0.2 s x scale^2 <= 2 s  <=>  scale <= sqrt(10) at 10 instances, seed 7. */
  const double truth = sqrt(10.0);
  const double starts[] = {1.0, 50.0, 0.01};
  for (size_t i = 0; i < 3; i++) {
    infsim_capacity_opts o = opts_for(INFSIM_TARGET_RATE, "ttft_p99=2s", 1, starts[i]);
    infsim_capacity_result r;
    infsim_error err = {0};
    atomic_store(&g_executed, 0);
    assert_int_equal(infsim_capacity_search(&o, &r, &err), INFSIM_OK);
    assert_true(r.found && !r.capped);
    assert_true(p99_of(r.value, 10, 7) <= 2.0);    /* met */
    assert_true(p99_of(r.failed_at, 10, 7) > 2.0); /* missed */
    assert_true(r.failed_at - r.value <= 0.01 * r.value);
    assert_true(r.value <= truth && truth < r.failed_at);
    assert_int_equal(atomic_load(&g_executed), (int)r.step_count); /* one run per step, one seed */
    assert_true(r.step_count < 20);
  }
}

static void test_instances_exact_from_below_and_above(void **state) {
  (void)state;
  /* 0.2 x 10 / n <= 0.25 s  <=>  n >= 8. */
  const double starts[] = {1, 64, 8, 7};
  for (size_t i = 0; i < 4; i++) {
    infsim_capacity_opts o = opts_for(INFSIM_TARGET_INSTANCES, "ttft_p99=250ms", 1, starts[i]);
    infsim_capacity_result r;
    infsim_error err = {0};
    assert_int_equal(infsim_capacity_search(&o, &r, &err), INFSIM_OK);
    assert_true(r.found);
    assert_true(r.value == 8);
    assert_true(r.failed_at == 7);
  }
}

static void test_worst_seed_decides(void **state) {
  (void)state;
  /* Seeds 7, 8, 9: the worst factor is 1.1, so n >= 2 x 1.1 / 0.25 = 8.8: 9. */
  infsim_capacity_opts o = opts_for(INFSIM_TARGET_INSTANCES, "ttft_p99=250ms", 3, 1);
  infsim_capacity_result r;
  infsim_error err = {0};
  assert_int_equal(infsim_capacity_search(&o, &r, &err), INFSIM_OK);
  assert_true(r.value == 9);
  assert_true(r.failed_at == 8);
  /* The step at 8 failed: seed 8 (factor 1.05) is the first to miss, 2.1 / 8 s. */
  bool saw = false;
  for (size_t i = 0; i < r.step_count; i++)
    if (r.steps[i].value == 8) {
      assert_false(r.steps[i].met);
      assert_string_equal(r.steps[i].why, "ttft_p99 0.2625 s > 0.25 s");
      saw = true;
    }
  assert_true(saw);
}

/* Three values per round (probes 3, run on three threads): the same
 * answers as the one-at-a-time search on a monotone SLO, in fewer rounds. */
static void test_parallel_rounds_same_answers(void **state) {
  (void)state;
  infsim_capacity_result one, three;
  infsim_error err = {0};
  const double starts[] = {1, 64, 8};
  for (size_t i = 0; i < 3; i++) {
    infsim_capacity_opts o = opts_for(INFSIM_TARGET_INSTANCES, "ttft_p99=250ms", 1, starts[i]);
    assert_int_equal(infsim_capacity_search(&o, &one, &err), INFSIM_OK);
    o.sweep.jobs = 3;
    o.probes = 3;
    assert_int_equal(infsim_capacity_search(&o, &three, &err), INFSIM_OK);
    assert_true(three.value == 8 && three.failed_at == 7);
    assert_true(one.value == three.value && one.failed_at == three.failed_at);
  }
  infsim_capacity_opts o = opts_for(INFSIM_TARGET_RATE, "ttft_p99=2s", 1, 1);
  o.sweep.jobs = 3;
  o.probes = 3;
  assert_int_equal(infsim_capacity_search(&o, &three, &err), INFSIM_OK);
  assert_true(three.found && !three.capped);
  assert_true(p99_of(three.value, 10, 7) <= 2.0 && p99_of(three.failed_at, 10, 7) > 2.0);
  assert_true(three.failed_at - three.value <= 0.01 * three.value);
  /* Rounds: values tried / 3 rounded up, plus the start, fewer than the
   * one-at-a-time search's values (each its own round). */
  o.sweep.jobs = 1;
  o.probes = 1;
  assert_int_equal(infsim_capacity_search(&o, &one, &err), INFSIM_OK);
  assert_true((three.step_count - 1 + 2) / 3 + 1 < one.step_count);
}

static void test_never_and_always_met(void **state) {
  (void)state;
  infsim_capacity_result r;
  infsim_error err = {0};
  infsim_capacity_opts o = opts_for(INFSIM_TARGET_RATE, "ttft_p99=1e-12s", 1, 1);
  assert_int_equal(infsim_capacity_search(&o, &r, &err), INFSIM_OK);
  assert_false(r.found);
  o = opts_for(INFSIM_TARGET_RATE, "ttft_p99=1e12s", 1, 1);
  assert_int_equal(infsim_capacity_search(&o, &r, &err), INFSIM_OK);
  assert_true(r.found && r.capped && r.value == 1024);
  o = opts_for(INFSIM_TARGET_INSTANCES, "ttft_p99=1e12s", 1, 16);
  assert_int_equal(infsim_capacity_search(&o, &r, &err), INFSIM_OK);
  assert_true(r.found && !r.capped && r.value == 1); /* one instance is enough: exact */
  o = opts_for(INFSIM_TARGET_INSTANCES, "ttft_p99=1e-12s", 1, 16);
  assert_int_equal(infsim_capacity_search(&o, &r, &err), INFSIM_OK);
  assert_false(r.found);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_slo_parse),
      cmocka_unit_test(test_slo_met),
      cmocka_unit_test(test_rate_within_tolerance_of_closed_form),
      cmocka_unit_test(test_instances_exact_from_below_and_above),
      cmocka_unit_test(test_worst_seed_decides),
      cmocka_unit_test(test_parallel_rounds_same_answers),
      cmocka_unit_test(test_never_and_always_met),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
