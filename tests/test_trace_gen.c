/*
** test_trace_gen.c: the workload generator against closed forms.
**
** Sample size N = 200000 in the statistical checks. Each tolerance is at
** least 5 standard errors of the statistic at that N (worked out beside
** each check), so a correct generator fails with probability < 1e-6 per
** check, while a wrong mean, shape or parameterization (e.g. rate used as
** scale, sigma^2 for sigma, median taken as mean) misses by far more.
** The seeds are fixed, so the outcome is deterministic anyway.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>

#include "infsim/config.h"
#include "infsim/trace.h"

enum { N = 200000 };

/* Builds a config from "key=value" strings (keys under "workload."). */
static infsim_config *config_of(const char *const *kv) {
  infsim_config *cfg = infsim_config_new();
  infsim_error err = {0};
  for (; *kv != NULL; kv++) {
    char a[256];
    snprintf(a, sizeof a, "workload.%s", *kv);
    if (infsim_config_set(cfg, a, &err) != INFSIM_OK) fail_msg("set %s: %s", a, err.msg);
  }
  return cfg;
}

static void generate(const char *const *kv, uint64_t seed, infsim_trace *t) {
  infsim_config *cfg = config_of(kv);
  infsim_error err = {0};
  if (infsim_workload_generate(cfg, "workload", seed, t, &err) != INFSIM_OK) fail_msg("generate: %s", err.msg);
  if (infsim_config_check_unused(cfg, &err) != INFSIM_OK) fail_msg("unused: %s", err.msg);
  infsim_config_free(cfg);
}

static void gap_moments(const infsim_trace *t, double *mean_s, double *cv) {
  double s = 0, s2 = 0;
  int64_t prev = 0;
  for (size_t i = 0; i < t->count; i++) {
    double g = (double)(t->requests[i].arrival_ns - prev) / 1e9;
    prev = t->requests[i].arrival_ns;
    s += g;
    s2 += g * g;
  }
  double n = (double)t->count;
  *mean_s = s / n;
  double var = s2 / n - *mean_s * *mean_s;
  *cv = sqrt(var) / *mean_s;
}

static void assert_near(double got, double want, double tol, const char *what) {
  if (!(fabs(got - want) <= tol)) fail_msg("%s: got %.6g, want %.6g +- %.3g", what, got, want, tol);
}

static void test_poisson(void **state) {
  (void)state;
  const char *kv[] = {"requests=200000", "rate_rps=5", NULL};
  infsim_trace t;
  generate(kv, 42, &t);
  assert_int_equal(t.count, N);
  for (size_t i = 1; i < t.count; i++) assert_true(t.requests[i].arrival_ns >= t.requests[i - 1].arrival_ns);
  double mean, cv;
  gap_moments(&t, &mean, &cv);
  /* Exponential gaps: sd(mean gap)/mean = 1/sqrt(N) = 0.22%; tolerance 1.2%. */
  assert_near(mean, 0.2, 0.2 * 0.012, "poisson mean gap");
  /* Sample CV of exponential gaps: sd about sqrt(2/N) = 0.32% (kurtosis 9); tolerance 2%. */
  assert_near(cv, 1.0, 0.02, "poisson gap cv");
  /* Counts in 1 s windows are Poisson(5): index of dispersion var/mean = 1, with
   * sd about sqrt(2/W) over W ~ 40000 windows = 0.7%; tolerance 5%. */
  int64_t windows = t.requests[t.count - 1].arrival_ns / 1000000000;
  double s = 0, s2 = 0;
  size_t i = 0;
  for (int64_t w = 0; w < windows; w++) {
    int c = 0;
    while (i < t.count && t.requests[i].arrival_ns < (w + 1) * 1000000000) c++, i++;
    s += c;
    s2 += (double)c * c;
  }
  double m = s / (double)windows, var = s2 / (double)windows - m * m;
  assert_near(m, 5.0, 0.06, "poisson counts per second"); /* sd 5/sqrt(5 * 40000) */
  assert_near(var / m, 1.0, 0.05, "poisson index of dispersion");
  infsim_trace_free(&t);
}

static void test_gamma(void **state) {
  (void)state;
  const char *kv[] = {"requests=200000", "arrival=gamma", "rate_rps=10", "cv=2", NULL};
  infsim_trace t;
  generate(kv, 7, &t);
  double mean, cv;
  gap_moments(&t, &mean, &cv);
  /* Gamma shape k = 1/4: sd(mean)/mean = cv/sqrt(N) = 0.45%; tolerance 2.5%. */
  assert_near(mean, 0.1, 0.1 * 0.025, "gamma mean gap");
  /* Sample variance of gamma(k): relative sd sqrt((2 + 6/k)/N) = 1.1%, so the
   * CV's is about half, 0.6% of 2; tolerance 3% of 2. */
  assert_near(cv, 2.0, 0.06, "gamma gap cv");
  infsim_trace_free(&t);
  const char *kv2[] = {"requests=200000", "arrival=gamma", "rate_rps=10", "cv=0.5", NULL};
  generate(kv2, 7, &t);
  gap_moments(&t, &mean, &cv);
  assert_near(mean, 0.1, 0.1 * 0.01, "gamma(cv 0.5) mean gap");
  assert_near(cv, 0.5, 0.01, "gamma(cv 0.5) gap cv");
  infsim_trace_free(&t);
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static void test_lognormal(void **state) {
  (void)state;
  const char *kv[] = {"requests=200000", "prompt.median=600", "prompt.sigma=1", "output.median=50",
                      "output.sigma=0.5", "output.max=100", NULL};
  infsim_trace t;
  generate(kv, 3, &t);
  int64_t *v = malloc(N * sizeof *v);
  for (int i = 0; i < N; i++) v[i] = t.requests[i].prompt_tokens;
  qsort(v, N, sizeof *v, cmp_i64);
  /* sd(sample median)/median = sigma sqrt(pi/2)/sqrt(N) = 0.28%; tolerance 1.5%. */
  assert_near((double)v[N / 2], 600, 9, "lognormal median");
  /* P(X <= median * e^sigma) = Phi(1) = 0.8413: binomial sd 0.08%; tolerance 0.5%. */
  int64_t below = 0;
  for (int i = 0; i < N; i++) below += v[i] <= (int64_t)llround(600 * exp(1.0));
  assert_near((double)below / N, 0.841345, 0.005, "lognormal P(X <= median e^sigma)");
  /* Output clamped at max 100: rounding sends draws >= 99.5 there, so the mass at
   * 100 is P(X >= 99.5) = Q(ln(99.5/50)/0.5) = Q(1.376) = 0.0844. */
  double p_max = 0.5 * erfc(log(99.5 / 50.0) / 0.5 / sqrt(2.0));
  int64_t at_max = 0;
  for (int i = 0; i < N; i++) {
    assert_true(t.requests[i].output_tokens >= 1 && t.requests[i].output_tokens <= 100);
    at_max += t.requests[i].output_tokens == 100;
  }
  /* count ~ Binomial(N, 0.0844): sd 124; tolerance 5 sd */
  assert_near((double)at_max, p_max * N, 5 * sqrt(N * p_max * (1 - p_max)), "lognormal clamp mass at max");
  free(v);
  infsim_trace_free(&t);
}

static void test_zipf_empirical_uniform_fixed(void **state) {
  (void)state;
  const char *kv[] = {"requests=200000", "prompt.dist=zipf", "prompt.alpha=1.5", "prompt.min=1", "prompt.max=10",
                      "output.dist=empirical", "output.values=10,20,30", "output.weights=1,2,3", NULL};
  infsim_trace t;
  generate(kv, 11, &t);
  int64_t zc[11] = {0}, ec[3] = {0};
  for (int i = 0; i < N; i++) {
    int64_t p = t.requests[i].prompt_tokens, o = t.requests[i].output_tokens;
    assert_true(p >= 1 && p <= 10);
    zc[p]++;
    assert_true(o == 10 || o == 20 || o == 30);
    ec[o / 10 - 1]++;
  }
  double h = 0;
  for (int k = 1; k <= 10; k++) h += pow(k, -1.5);
  for (int k = 1; k <= 10; k++) {
    double p = pow(k, -1.5) / h, sd = sqrt(p * (1 - p) / N);
    assert_near((double)zc[k] / N, p, 5 * sd, "zipf frequency");
  }
  for (int k = 0; k < 3; k++) {
    double p = (k + 1) / 6.0, sd = sqrt(p * (1 - p) / N);
    assert_near((double)ec[k] / N, p, 5 * sd, "empirical frequency");
  }
  infsim_trace_free(&t);

  const char *kv2[] = {"requests=200000", "prompt.dist=uniform", "prompt.min=100", "prompt.max=199",
                       "output.dist=fixed", "output.tokens=77", NULL};
  generate(kv2, 11, &t);
  int64_t uc[100] = {0};
  for (int i = 0; i < N; i++) {
    int64_t p = t.requests[i].prompt_tokens;
    assert_true(p >= 100 && p <= 199);
    uc[p - 100]++;
    assert_int_equal(t.requests[i].output_tokens, 77); /* fixed is exact */
  }
  /* Each of 100 values: p = 0.01, sd = sqrt(0.0099/N) = 0.022%; 5 sd. */
  for (int k = 0; k < 100; k++) assert_near((double)uc[k] / N, 0.01, 5 * sqrt(0.0099 / N), "uniform frequency");
  infsim_trace_free(&t);
}

static void test_duration_mode(void **state) {
  (void)state;
  const char *kv[] = {"duration_s=1000", "rate_rps=20", NULL};
  infsim_trace t;
  generate(kv, 5, &t);
  assert_true(t.requests[t.count - 1].arrival_ns < INT64_C(1000000000000));
  /* Count ~ Poisson(20000): sd 141; tolerance 5 sd. */
  assert_near((double)t.count, 20000, 710, "requests in duration_s");
  infsim_trace_free(&t);
}

/* Same seed, same trace; another seed, another; each stream independent of the others' settings. */
static void test_determinism_and_streams(void **state) {
  (void)state;
  const char *kv[] = {"requests=5000", "rate_rps=3", NULL};
  const char *kv_other[] = {"requests=5000", "rate_rps=3", "prompt.dist=zipf", "prompt.max=50", NULL};
  infsim_trace a, b, c, d;
  generate(kv, 9, &a);
  generate(kv, 9, &b);
  generate(kv, 10, &c);
  generate(kv_other, 9, &d);
  assert_memory_equal(a.requests, b.requests, a.count * sizeof a.requests[0]);
  size_t same_arrivals = 0, same_prompt = 0;
  for (size_t i = 0; i < a.count; i++) {
    same_arrivals += a.requests[i].arrival_ns == c.requests[i].arrival_ns;
    /* a different prompt law moves no arrival and no output length */
    assert_int_equal(a.requests[i].arrival_ns, d.requests[i].arrival_ns);
    assert_int_equal(a.requests[i].output_tokens, d.requests[i].output_tokens);
    same_prompt += a.requests[i].prompt_tokens == d.requests[i].prompt_tokens;
  }
  assert_true(same_arrivals < 5);
  assert_true(same_prompt < a.count / 10);
  infsim_trace_free(&a);
  infsim_trace_free(&b);
  infsim_trace_free(&c);
  infsim_trace_free(&d);
}

static void expect_error(const char *const *kv, const char *want) {
  infsim_config *cfg = config_of(kv);
  infsim_trace t;
  infsim_error err = {0};
  infsim_status st = infsim_workload_generate(cfg, "workload", 1, &t, &err);
  if (st == INFSIM_OK) {
    st = infsim_config_check_unused(cfg, &err);
    infsim_trace_free(&t);
  } else {
    assert_null(t.requests); /* a failed generation leaves an empty trace */
  }
  if (st != INFSIM_EINPUT || strstr(err.msg, want) == NULL) fail_msg("got '%s', want '%s'", err.msg, want);
  infsim_config_free(cfg);
}

static void test_errors(void **state) {
  (void)state;
  const char *a[] = {"output.dist=empirical", NULL};
  expect_error(a, "workload.output.values: required");
  const char *b[] = {"prompt.dist=uniform", "prompt.min=500", "prompt.max=100", NULL};
  expect_error(b, "workload.prompt.min: 500 is above workload.prompt.max (100)");
  const char *c[] = {"prompt.dist=pareto", NULL};
  expect_error(c, "workload.prompt.dist");
  const char *d[] = {"output.dist=empirical", "output.values=1,2", "output.weights=1", NULL};
  expect_error(d, "workload.output.weights: 1 weights for 2 values");
  const char *e[] = {"output.dist=empirical", "output.values=1,x", NULL};
  expect_error(e, "workload.output.values: item 2 is not an integer");
  const char *f[] = {"requests=10", "duration_s=5", NULL};
  expect_error(f, "not both");
  const char *g[] = {"rate_rps=0", NULL};
  expect_error(g, "workload.rate_rps");
  /* keys that the chosen law does not use stay unread, so they are reported */
  const char *h[] = {"prompt.dist=fixed", "prompt.median=5", NULL};
  expect_error(h, "unknown key 'workload.prompt.median'");
  const char *i[] = {"cv=2", NULL}; /* cv belongs to gamma */
  expect_error(i, "unknown key 'workload.cv'");
  /* The generator never reads workload.trace: choosing a file is the caller's job. */
  const char *j[] = {"trace=foo.csv", NULL};
  expect_error(j, "unknown key 'workload.trace'");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_poisson),        cmocka_unit_test(test_gamma),
      cmocka_unit_test(test_lognormal),      cmocka_unit_test(test_zipf_empirical_uniform_fixed),
      cmocka_unit_test(test_duration_mode),  cmocka_unit_test(test_determinism_and_streams),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
