/*
** test_calib_fit.c: the calibration fitter (calib.h, calibrate/fit.c).
**
** Synthetic measurements come from known piecewise-linear functions (a flat
** or slow stretch, then a steeper line after a bend) with seeded
** multiplicative noise; the fitter must recover the bend and the slopes
** within tolerances set by the noise, predict held-out points, keep every
** slope >= 0, and evaluate to 0 with no work. The nearest-rank percentile
** is checked against values counted by hand.
*/
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>

#include "infsim/calib.h"

/* Geometric grid of n values from lo to hi (inclusive). */
static void geometric(double *v, int n, double lo, double hi) {
  for (int i = 0; i < n; i++) v[i] = lo * pow(hi / lo, (double)i / (n - 1));
}

/* t = c0 + s1 min(x, K) + s2 max(x - K, 0), noise ~ N(0, sigma) relative. */
static double hinge_fn(double x, double c0, double s1, double s2, double k) {
  return c0 + s1 * fmin(x, k) + s2 * fmax(x - k, 0);
}

static void test_recovers_gemm_hinge(void **state) {
  (void)state;
  gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
  gsl_rng_set(rng, 42);
  enum { N = 40 };
  double xs[N];
  geometric(xs, N, 1, 16384);
  infsim_calib_point pts[N] = {0};
  /* Weight-bound until 256 tokens (20 us + 2 ns/token), then 150 ns/token. */
  const double c0 = 20000, s1 = 2, s2 = 150, k = 256;
  for (int i = 0; i < N; i++) {
    pts[i].x[INFSIM_CALIB_TOKENS] = round(xs[i]);
    pts[i].t_ns = hinge_fn(pts[i].x[INFSIM_CALIB_TOKENS], c0, s1, s2, k) * (1 + gsl_ran_gaussian(rng, 0.005));
  }
  infsim_calib_fit_result fit;
  infsim_error err = {0};
  assert_int_equal(infsim_calib_fit_points(INFSIM_CALIB_GEMM_QKV, pts, N, &fit, &err), INFSIM_OK);
  const infsim_calib_curve *c = &fit.curve;
  assert_int_equal(c->hinge_var, INFSIM_CALIB_TOKENS);
  assert_true(fabs(c->hinge_at - k) / k < 0.15);
  assert_true(fabs(c->c_above - s2) / s2 < 0.02);
  assert_true(fabs(c->c_const - c0) / c0 < 0.03);
  assert_true(c->c_var[INFSIM_CALIB_TOKENS] >= 0 && c->c_var[INFSIM_CALIB_TOKENS] < 10);
  /* Noise of 0.5% gives a fit of the same order, not more. */
  assert_true(fit.rms_rel_err < 0.01);
  assert_int_equal(fit.points, N);
  /* Other variables get no slope. */
  assert_true(c->c_var[INFSIM_CALIB_PAIRS] == 0 && c->c_var[INFSIM_CALIB_BYTES] == 0);
  gsl_rng_free(rng);
}

static void test_recovers_two_bends(void **state) {
  (void)state;
  gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
  gsl_rng_set(rng, 3);
  enum { N = 48 };
  double xs[N];
  geometric(xs, N, 1, 65536);
  infsim_calib_point pts[N] = {0};
  /* Flat to 64 tokens, 10 ns/token to 2048, then 100 ns/token: three stretches. */
  for (int i = 0; i < N; i++) {
    double x = round(xs[i]);
    pts[i].x[INFSIM_CALIB_TOKENS] = x;
    pts[i].t_ns = (30000 + 10 * fmin(fmax(x - 64, 0), 2048 - 64) + 100 * fmax(x - 2048, 0)) *
                  (1 + gsl_ran_gaussian(rng, 0.003));
  }
  infsim_calib_fit_result fit;
  infsim_error err = {0};
  assert_int_equal(infsim_calib_fit_points(INFSIM_CALIB_GEMM_DOWN, pts, N, &fit, &err), INFSIM_OK);
  const infsim_calib_curve *c = &fit.curve;
  assert_true(c->hinge2_at > c->hinge_at);
  assert_true(fabs(c->hinge2_at - 2048) / 2048 < 0.25);
  assert_true(fabs(c->c_above2 - 100) / 100 < 0.03);
  assert_true(fit.max_rel_err < 0.03);
  /* One bend could not do this: its error is several times the noise. */
  double ho[N / 2 + 1];
  size_t n_ho = 0;
  assert_int_equal(infsim_calib_heldout(INFSIM_CALIB_GEMM_DOWN, pts, N, ho, &n_ho, &err), INFSIM_OK);
  assert_true(infsim_calib_percentile(ho, n_ho, 95) < 0.03);
  /* On one straight line plus noise, no second bend is bought. */
  for (int i = 0; i < N; i++)
    pts[i].t_ns = (5000 + 3 * pts[i].x[INFSIM_CALIB_TOKENS]) * (1 + gsl_ran_gaussian(rng, 0.003));
  assert_int_equal(infsim_calib_fit_points(INFSIM_CALIB_GEMM_DOWN, pts, N, &fit, &err), INFSIM_OK);
  assert_true(fit.curve.hinge2_at == 0);
  gsl_rng_free(rng);
}

static void test_recovers_max_of_two_limits(void **state) {
  (void)state;
  gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
  gsl_rng_set(rng, 11);
  enum { NB = 9, NC = 8, N = NB * NC };
  infsim_calib_point pts[N] = {0};
  /* Decode bound by a per-request cost (550 ns) with many short requests and by
   * KV bandwidth (5.4 ns per token) with long ones: 8 us + the larger. No sum of
   * per-variable terms fits both corners. */
  int n = 0;
  for (int b = 0; b < NB; b++)
    for (int ci = 0; ci < NC; ci++) {
      double req = pow(2, b), ctx = req * 16 * pow(4, ci);
      pts[n].x[INFSIM_CALIB_REQUESTS] = req;
      pts[n].x[INFSIM_CALIB_CONTEXT_TOKENS] = ctx;
      pts[n].t_ns = (8000 + fmax(550 * req, 5.4 * ctx)) * (1 + gsl_ran_gaussian(rng, 0.005));
      n++;
    }
  infsim_calib_fit_result fit;
  infsim_error err = {0};
  assert_int_equal(infsim_calib_fit_points(INFSIM_CALIB_DECODE_ATTN, pts, N, &fit, &err), INFSIM_OK);
  assert_true(fit.curve.has_alt);
  assert_true(fit.rms_rel_err < 0.03);
  double ho[N / 2 + 1];
  size_t n_ho = 0;
  assert_int_equal(infsim_calib_heldout(INFSIM_CALIB_DECODE_ATTN, pts, N, ho, &n_ho, &err), INFSIM_OK);
  assert_true(infsim_calib_percentile(ho, n_ho, 50) < 0.02);
  assert_true(infsim_calib_percentile(ho, n_ho, 95) < 0.08);
  /* Still monotone in each aggregate with the other held. */
  for (double req = 1; req <= 4096; req *= 4) {
    double prev = 0;
    for (double ctx = 16; ctx < 1e8; ctx *= 1.5) {
      double x[INFSIM_CALIB_VARS] = {0};
      x[INFSIM_CALIB_REQUESTS] = req;
      x[INFSIM_CALIB_CONTEXT_TOKENS] = ctx;
      double t = infsim_calib_curve_eval(&fit.curve, INFSIM_CALIB_DECODE_ATTN, x);
      assert_true(t >= prev);
      prev = t;
    }
  }
  for (int v = 0; v < INFSIM_CALIB_VARS; v++) assert_true(fit.curve.alt_var[v] >= 0);
  gsl_rng_free(rng);
}

static void test_recovers_decode_two_vars(void **state) {
  (void)state;
  gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
  gsl_rng_set(rng, 7);
  enum { NB = 6, NC = 8, N = NB * NC };
  infsim_calib_point pts[N] = {0};
  /* Launch floor 8 us up to 4096 KV tokens, then 0.5 ns per token (bandwidth), plus 300 ns per request. */
  const double c0 = 8000, s_req = 300, s_above = 0.5, k = 4096;
  int n = 0;
  for (int b = 0; b < NB; b++)
    for (int ci = 0; ci < NC; ci++) {
      double req = pow(4, b), ctx = req * 256 * pow(2, ci);
      pts[n].x[INFSIM_CALIB_REQUESTS] = req;
      pts[n].x[INFSIM_CALIB_CONTEXT_TOKENS] = ctx;
      pts[n].t_ns = (c0 + s_req * req + s_above * fmax(ctx - k, 0)) * (1 + gsl_ran_gaussian(rng, 0.005));
      n++;
    }
  infsim_calib_fit_result fit;
  infsim_error err = {0};
  assert_int_equal(infsim_calib_fit_points(INFSIM_CALIB_DECODE_ATTN, pts, N, &fit, &err), INFSIM_OK);
  const infsim_calib_curve *c = &fit.curve;
  assert_int_equal(c->hinge_var, INFSIM_CALIB_CONTEXT_TOKENS);
  assert_true(fabs(c->c_above - s_above) / s_above < 0.03);
  assert_true(fabs(c->c_var[INFSIM_CALIB_REQUESTS] - s_req) / s_req < 0.15);
  assert_true(fit.rms_rel_err < 0.01);
  /* Held-out: fitted on half the grid, the other half within a few noise sigmas. */
  double ho[N / 2 + 1];
  size_t n_ho = 0;
  assert_int_equal(infsim_calib_heldout(INFSIM_CALIB_DECODE_ATTN, pts, N, ho, &n_ho, &err), INFSIM_OK);
  assert_int_equal(n_ho, N / 2);
  assert_true(infsim_calib_percentile(ho, n_ho, 50) < 0.01);
  assert_true(infsim_calib_percentile(ho, n_ho, 95) < 0.03);
  gsl_rng_free(rng);
}

static void test_straight_line_exact(void **state) {
  (void)state;
  /* A copy: 3 us + 1/3e12 s per byte (3 TB/s), no noise: exact recovery. */
  enum { N = 12 };
  infsim_calib_point pts[N] = {0};
  for (int i = 0; i < N; i++) {
    double bytes = 4096 * pow(4, i);
    pts[i].x[INFSIM_CALIB_BYTES] = bytes;
    pts[i].t_ns = 3000 + bytes / 3.0;
  }
  infsim_calib_fit_result fit;
  infsim_error err = {0};
  assert_int_equal(infsim_calib_fit_points(INFSIM_CALIB_KV_COPY, pts, N, &fit, &err), INFSIM_OK);
  assert_true(fit.max_rel_err < 1e-6);
  double x[INFSIM_CALIB_VARS] = {0};
  x[INFSIM_CALIB_BYTES] = 1e12; /* far outside the grid: extrapolates the line */
  double t = infsim_calib_curve_eval(&fit.curve, INFSIM_CALIB_KV_COPY, x);
  assert_true(fabs(t - (3000 + 1e12 / 3.0)) / t < 1e-6);
}

static void test_slopes_never_negative(void **state) {
  (void)state;
  /* Time that falls as tokens grow (a timer artefact) must not give a
   * decreasing curve: the slope is clamped to 0 and the curve is flat. */
  enum { N = 10 };
  infsim_calib_point pts[N] = {0};
  for (int i = 0; i < N; i++) {
    pts[i].x[INFSIM_CALIB_TOKENS] = 1 << i;
    pts[i].t_ns = 10000 - 5.0 * (1 << i);
  }
  infsim_calib_fit_result fit;
  infsim_error err = {0};
  assert_int_equal(infsim_calib_fit_points(INFSIM_CALIB_GEMM_O, pts, N, &fit, &err), INFSIM_OK);
  assert_true(fit.curve.c_var[INFSIM_CALIB_TOKENS] >= 0);
  assert_true(fit.curve.c_above >= 0);
  double prev = 0;
  for (int t = 1; t <= 4096; t *= 2) {
    double x[INFSIM_CALIB_VARS] = {0};
    x[INFSIM_CALIB_TOKENS] = t;
    double v = infsim_calib_curve_eval(&fit.curve, INFSIM_CALIB_GEMM_O, x);
    assert_true(v >= prev);
    prev = v;
  }
}

static void test_no_work_is_zero(void **state) {
  (void)state;
  infsim_calib_curve c = {.c_const = 5000, .hinge_var = -1};
  c.c_var[INFSIM_CALIB_REQUESTS] = 100;
  c.c_var[INFSIM_CALIB_CONTEXT_TOKENS] = 1;
  double x[INFSIM_CALIB_VARS] = {0};
  assert_true(infsim_calib_curve_eval(&c, INFSIM_CALIB_DECODE_ATTN, x) == 0);
  x[INFSIM_CALIB_REQUESTS] = 2;
  x[INFSIM_CALIB_CONTEXT_TOKENS] = 10;
  assert_true(fabs(infsim_calib_curve_eval(&c, INFSIM_CALIB_DECODE_ATTN, x) - 5210) < 1e-9);
}

static void test_bad_points(void **state) {
  (void)state;
  infsim_calib_point pts[3] = {0};
  for (int i = 0; i < 3; i++) pts[i].x[INFSIM_CALIB_TOKENS] = i + 1;
  pts[0].t_ns = 1;
  pts[1].t_ns = NAN;
  pts[2].t_ns = 3;
  infsim_calib_fit_result fit;
  infsim_error err = {0};
  assert_int_equal(infsim_calib_fit_points(INFSIM_CALIB_GEMM_QKV, pts, 3, &fit, &err), INFSIM_EINPUT);
  assert_non_null(strstr(err.msg, "gemm_qkv: point 1: t_ns"));
  /* One point cannot fix a constant and a slope... but two can. */
  pts[1].t_ns = 2;
  assert_int_equal(infsim_calib_fit_points(INFSIM_CALIB_PREFILL_ATTN, pts, 1, &fit, &err), INFSIM_EINPUT);
}

static void test_percentile_nearest_rank(void **state) {
  (void)state;
  double v[] = {5, 1, 4, 2, 3, 10, 9, 8, 7, 6};
  assert_true(infsim_calib_percentile(v, 10, 50) == 5);
  assert_true(infsim_calib_percentile(v, 10, 95) == 10);
  assert_true(infsim_calib_percentile(v, 10, 0) == 1);
  assert_true(infsim_calib_percentile(v, 10, 11) == 2);
  assert_true(infsim_calib_percentile(v, 0, 50) == 0);
}

static void test_profile_names(void **state) {
  (void)state;
  char p[64];
  infsim_calib_profile_from_gpu("NVIDIA H100 80GB HBM3", p, sizeof p);
  assert_string_equal(p, "h100-sxm");
  infsim_calib_profile_from_gpu("NVIDIA A100-SXM4-80GB", p, sizeof p);
  assert_string_equal(p, "a100-80gb");
  infsim_calib_profile_from_gpu("NVIDIA A100-PCIE-40GB", p, sizeof p);
  assert_string_equal(p, "a100-40gb");
  infsim_calib_profile_from_gpu("NVIDIA H200", p, sizeof p);
  assert_string_equal(p, "h200");
  infsim_calib_profile_from_gpu("NVIDIA GeForce RTX 4090", p, sizeof p);
  assert_string_equal(p, "geforce-rtx-4090");
  infsim_calib_profile_from_gpu("cpu reference", p, sizeof p);
  assert_string_equal(p, "cpu-reference");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_recovers_gemm_hinge),   cmocka_unit_test(test_recovers_two_bends), cmocka_unit_test(test_recovers_max_of_two_limits),   cmocka_unit_test(test_recovers_decode_two_vars),
      cmocka_unit_test(test_straight_line_exact),   cmocka_unit_test(test_slopes_never_negative),
      cmocka_unit_test(test_no_work_is_zero),       cmocka_unit_test(test_bad_points),
      cmocka_unit_test(test_percentile_nearest_rank), cmocka_unit_test(test_profile_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
