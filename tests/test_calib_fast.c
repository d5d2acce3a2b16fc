/*
** test_calib_fast.c: the fast forms of fitted curves (cost/calib_fast.c)
** against the fitted curves themselves (infsim_calib_curve_eval, the
** reference).
**
** On the shipped DB (data/calibration.db), for every profile, model and TP
** degree in it and at every measured point of every kernel: the fast form
** agrees with the fitted curve within 0.1% (the goal; in fact within 1e-9,
** and the GEMM sum and the kernels evaluated directly bit for bit), both
** when its table is filled and when it is read back; a run of decode steps
** from every measured decode point equals the step-by-step sum of the
** fitted curve. On a hand-made decode curve whose pieces cross inside an
** interval and beyond the last bend, and which the clamp at 0 cuts: every
** context on a dense grid. Outside the tables (more tokens or requests
** than they hold) the curve is still the fitted one.
*/
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "infsim/calib.h"

enum { PATH_BYTES = 512 };

static double rel_diff(double got, double want) {
  double scale = fabs(want) > 1 ? fabs(want) : 1; /* near 0, absolute (ns) */
  return fabs(got - want) / scale;
}

static void assert_agrees(double got, double want, double rel, const char *what, long long a, long long b) {
  if (!(rel_diff(got, want) <= rel))
    fail_msg("%s at (%lld, %lld): fast %.17g, fitted %.17g (rel %.3g > %.3g)", what, a, b, got, want,
             rel_diff(got, want), rel);
}

static double ref_eval(const infsim_calib_curve *c, infsim_calib_kernel k, const double *x) {
  return infsim_calib_curve_eval(c, k, x);
}

static double ref_gemm(const infsim_calib_curve *curves, double tokens) {
  double x[INFSIM_CALIB_VARS] = {0};
  x[INFSIM_CALIB_TOKENS] = tokens;
  double t = 0;
  for (int k = INFSIM_CALIB_GEMM_QKV; k <= INFSIM_CALIB_GEMM_DOWN; k++) t += ref_eval(&curves[k], k, x);
  return t;
}

static double ref_decode(const infsim_calib_curve *c, double requests, double context) {
  double x[INFSIM_CALIB_VARS] = {0};
  x[INFSIM_CALIB_REQUESTS] = requests;
  x[INFSIM_CALIB_CONTEXT_TOKENS] = context;
  return ref_eval(c, INFSIM_CALIB_DECODE_ATTN, x);
}

/* Every measured point of one (profile, tp): the fast form against the fit. */
static int check_points(sqlite3 *db, int64_t profile_id, int64_t tp, const infsim_calib_curve *curves,
                        infsim_calib_fast *fast, double *worst) {
  static const char sql[] = "SELECT kernel, tokens, pairs, requests, context_tokens, partials, bytes FROM measurement"
                            " WHERE profile_id = ?1 AND tp = ?2 ORDER BY id";
  sqlite3_stmt *q = NULL;
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
  sqlite3_bind_int64(q, 1, profile_id);
  sqlite3_bind_int64(q, 2, tp);
  int points = 0;
  while (sqlite3_step(q) == SQLITE_ROW) {
    int k = infsim_calib_kernel_from_name((const char *)sqlite3_column_text(q, 0));
    assert_true(k >= 0);
    double x[INFSIM_CALIB_VARS];
    for (int v = 0; v < INFSIM_CALIB_VARS; v++) x[v] = sqlite3_column_double(q, 1 + v);
    points++;
    if (k <= INFSIM_CALIB_GEMM_DOWN) {
      int64_t tokens = (int64_t)x[INFSIM_CALIB_TOKENS];
      double want = ref_gemm(curves, x[INFSIM_CALIB_TOKENS]);
      for (int pass = 0; pass < 2; pass++) { /* fills the table, then reads it */
        double got = infsim_calib_fast_gemm_layer_ns(fast, tokens);
        assert_agrees(got, want, 1e-3, "gemm", tokens, pass);
        assert_true(got == want); /* the same sum, bit for bit */
      }
    } else if (k == INFSIM_CALIB_DECODE_ATTN) {
      int64_t r = (int64_t)x[INFSIM_CALIB_REQUESTS], ctx = (int64_t)x[INFSIM_CALIB_CONTEXT_TOKENS];
      const infsim_calib_curve *c = &curves[k];
      double want = ref_decode(c, (double)r, (double)ctx);
      double got = infsim_calib_fast_decode_ns(fast, r, ctx);
      assert_agrees(got, want, 1e-3, "decode", r, ctx);
      assert_agrees(got, want, 1e-9, "decode", r, ctx);
      if (rel_diff(got, want) > *worst) *worst = rel_diff(got, want);
      /* A run of decode steps from here (each request one token longer a step). */
      static const int64_t steps[] = {1, 2, 37, 300};
      for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        double loop = 0;
        for (int64_t j = 0; j < steps[s]; j++) loop += ref_decode(c, (double)r, (double)(ctx + j * r));
        double sum = infsim_calib_fast_decode_sum_ns(fast, r, ctx, r, steps[s]);
        assert_agrees(sum, loop, 1e-9, "decode run", r, ctx);
      }
    } else {
      double got = infsim_calib_fast_eval(fast, k, x), want = ref_eval(&curves[k], k, x);
      assert_true(got == want);
    }
  }
  sqlite3_finalize(q);
  return points;
}

static void test_shipped_db_every_point(void **state) {
  (void)state;
  char path[PATH_BYTES];
  snprintf(path, sizeof path, "%s/data/calibration.db", INFSIM_SRC_DIR);
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  /* One curve set per (profile, model, tp) that has fits. */
  static const char sql[] = "SELECT DISTINCT profile_id, tp FROM fit ORDER BY profile_id, tp";
  sqlite3_stmt *sets = NULL;
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &sets, NULL), SQLITE_OK);
  int n_sets = 0, n_points = 0;
  double worst = 0;
  while (sqlite3_step(sets) == SQLITE_ROW) {
    int64_t profile_id = sqlite3_column_int64(sets, 0), tp = sqlite3_column_int64(sets, 1);
    static const char fsql[] = "SELECT f.kernel, " INFSIM_CALIB_CURVE_COLUMNS " FROM fit f WHERE f.profile_id = ?1"
                               " AND f.tp = ?2";
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, fsql, -1, &q, NULL), SQLITE_OK);
    sqlite3_bind_int64(q, 1, profile_id);
    sqlite3_bind_int64(q, 2, tp);
    infsim_calib_curve *curves = calloc(INFSIM_CALIB_KERNELS, sizeof *curves);
    assert_non_null(curves);
    unsigned have = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
      int k = infsim_calib_kernel_from_name((const char *)sqlite3_column_text(q, 0));
      assert_true(k >= 0);
      assert_true(infsim_calib_curve_from_row(q, 1, &curves[k], NULL, 0));
      have |= 1u << k;
    }
    sqlite3_finalize(q);
    /* Every kernel; the whole-layer rests where the profile measured layers. */
    unsigned rests = (1u << INFSIM_CALIB_LAYER_PREFILL) | (1u << INFSIM_CALIB_LAYER_DECODE) |
                     (1u << INFSIM_CALIB_LAYER_DECODE_LONG);
    assert_int_equal(have | rests, (1u << INFSIM_CALIB_KERNELS) - 1);
    infsim_calib_fast *fast = infsim_calib_fast_new(curves);
    assert_non_null(fast);
    n_points += check_points(db, profile_id, tp, curves, fast, &worst);
    /* Beyond the tables: still the fitted curve. */
    for (int64_t tokens = INFSIM_CALIB_FAST_GEMM_TOKENS - 1; tokens < 70000; tokens = tokens * 2 + 3)
      assert_true(infsim_calib_fast_gemm_layer_ns(fast, tokens) == ref_gemm(curves, (double)tokens));
    int64_t big = INFSIM_CALIB_FAST_DECODE_REQUESTS + 5;
    assert_true(infsim_calib_fast_decode_ns(fast, big, big * 3000) ==
                ref_decode(&curves[INFSIM_CALIB_DECODE_ATTN], (double)big, (double)big * 3000));
    infsim_calib_fast_free(fast);
    free(curves);
    n_sets++;
  }
  sqlite3_finalize(sets);
  sqlite3_close(db);
  /* The shipped DB: 3 models x 4 TP degrees of one profile, thousands of points. */
  assert_true(n_sets >= 12);
  assert_true(n_points > 1000);
  print_message("%d curve sets, %d measured points; worst decode disagreement %.3g\n", n_sets, n_points, worst);
}

/* Decode curves whose shapes force every kind of cut: context hinges,
 * ratio bends, A and B crossing between bends, a negative start that the
 * clamp at 0 cuts (variant 0); A and B crossing only beyond the last bend
 * (variant 1: B ahead at first, A steeper). */
static void make_crossing_curve(infsim_calib_curve *c, int variant) {
  memset(c, 0, sizeof *c);
  if (variant == 1) {
    c->c_const = 100;
    c->c_var[INFSIM_CALIB_CONTEXT_TOKENS] = 2;
    c->hinge_var = INFSIM_CALIB_CONTEXT_TOKENS;
    c->hinge_at = 1000;
    c->c_above = 2.5;
    c->has_alt = 1;
    c->alt_const = 50000;
    c->alt_var[INFSIM_CALIB_CONTEXT_TOKENS] = 0.5;
    return;
  }
  c->c_const = -4000; /* below 0 at short contexts: clamped */
  c->c_var[INFSIM_CALIB_REQUESTS] = 50;
  c->c_var[INFSIM_CALIB_CONTEXT_TOKENS] = 0.5;
  c->hinge_var = INFSIM_CALIB_CONTEXT_TOKENS;
  c->hinge_at = 3000;
  c->c_above = 0.1;
  c->hinge2_at = 20000;
  c->c_above2 = 1.5;
  c->ratio.n_bends = 2;
  c->ratio.bend[0] = 40, c->ratio.bend[1] = 400;
  c->ratio.slope[0] = 3, c->ratio.slope[1] = 0, c->ratio.slope[2] = 2;
  c->has_alt = 1;
  c->alt_const = -1000;
  c->alt_var[INFSIM_CALIB_CONTEXT_TOKENS] = 0.35;
  c->alt_ratio.n_bends = 1;
  c->alt_ratio.bend[0] = 100;
  c->alt_ratio.slope[0] = 1, c->alt_ratio.slope[1] = 0.2;
  c->tail_cap = 2, c->c_tail = 0.7;
  c->head_cap = 3, c->c_head = 0.4;
}

static void check_variant(int variant) {
  infsim_calib_curve *curves = calloc(INFSIM_CALIB_KERNELS, sizeof *curves);
  assert_non_null(curves);
  make_crossing_curve(&curves[INFSIM_CALIB_DECODE_ATTN], variant);
  const infsim_calib_curve *c = &curves[INFSIM_CALIB_DECODE_ATTN];
  infsim_calib_fast *fast = infsim_calib_fast_new(curves);
  assert_non_null(fast);
  static const int64_t reqs[] = {1, 2, 3, 17, 200};
  int clamped = 0, b_wins = 0, a_wins = 0;
  for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
    int64_t r = reqs[i];
    for (int64_t ctx = 0; ctx < 120000; ctx += (ctx < 30000 ? 7 : 997)) {
      double want = ref_decode(c, (double)r, (double)ctx);
      assert_agrees(infsim_calib_fast_decode_ns(fast, r, ctx), want, 1e-9, "decode", r, ctx);
      double x[INFSIM_CALIB_VARS] = {0}, a, b;
      x[INFSIM_CALIB_REQUESTS] = (double)r;
      x[INFSIM_CALIB_CONTEXT_TOKENS] = (double)ctx;
      infsim_calib_curve_pieces(c, INFSIM_CALIB_DECODE_ATTN, x, &a, &b);
      clamped += a < 0 && b < 0;
      b_wins += b > a && b > 0;
      a_wins += a > b && a > 0;
    }
    /* Runs that start in the clamp, cross bends and both crossings. */
    static const int64_t firsts[] = {0, 1, 1000, 2999, 19999, 45000};
    static const int64_t steps[] = {1, 5, 333, 20000};
    for (size_t f = 0; f < sizeof firsts / sizeof firsts[0]; f++)
      for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++)
        for (int64_t step = r; step <= 3 * r; step += 2 * r) {
          double loop = 0;
          for (int64_t j = 0; j < steps[s]; j++) loop += ref_decode(c, (double)r, (double)(firsts[f] + j * step));
          double sum = infsim_calib_fast_decode_sum_ns(fast, r, firsts[f], step, steps[s]);
          assert_agrees(sum, loop, 1e-9, "decode run", r, firsts[f]);
        }
    assert_true(infsim_calib_fast_decode_sum_ns(fast, r, 500, r, 0) == 0);
    assert_agrees(infsim_calib_fast_decode_sum_ns(fast, r, 7000, 0, 9), 9 * ref_decode(c, (double)r, 7000), 1e-9,
                  "decode run, context held", r, 7000);
  }
  /* The grid did meet every regime. */
  assert_true((clamped > 0 || variant == 1) && b_wins > 0 && a_wins > 0);
  assert_true(infsim_calib_fast_decode_ns(fast, 0, 100) == 0);
  infsim_calib_fast_free(fast);
  free(curves);
}

static void test_crossings_and_clamp(void **state) {
  (void)state;
  check_variant(0);
  check_variant(1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shipped_db_every_point),
      cmocka_unit_test(test_crossings_and_clamp),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
