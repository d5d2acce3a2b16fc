/*
** test_calib_curves.c: calibrated cost curves read back from a DB
** (cost/calib_curves.c) after load and fit.
**
** The raw file is generated here from known piecewise-linear functions of
** the aggregates, one per kernel; after load + fit, the vtable from
** infsim_cost_curves_calibrated must reproduce those functions (inside and
** outside the measured grid), never decrease in each kernel's work
** variable with the others held fixed (the physical property: GEMM and
** copy time in tokens and bytes, prefill in pairs at fixed tokens, decode in
** context at fixed requests, merge in partials at fixed requests), give 0
** for no work, sum a
** run of decode steps in closed form equal to the step-by-step sum, carry the name "calibrated:PROFILE", and report found = 0 (not
** an error) for another profile, model, model shape or TP degree, or a
** profile not yet fitted.
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

#include "infsim/calib.h"

enum { PATH_BYTES = 512 };

typedef struct {
  char dir[PATH_BYTES];
  char raw[PATH_BYTES];
  char db[PATH_BYTES];
} fixture;

/* The known per-layer times, in ns. */
static double f_qkv(double t) { return 10000 + 5 * fmin(t, 128) + 100 * fmax(t - 128, 0); }
static double f_o(double t) { return 8000 + 2 * fmin(t, 256) + 40 * fmax(t - 256, 0); }
static double f_gateup(double t) { return 15000 + 180 * fmax(t - 64, 0); }
static double f_down(double t) { return 9000 + 1 * fmin(t, 64) + 90 * fmax(t - 64, 0); }
static double f_gemm(double t) { return f_qkv(t) + f_o(t) + f_gateup(t) + f_down(t); }
static double f_prefill(double tokens, double pairs) {
  return 12000 + 20 * tokens + 0.001 * fmin(pairs, 1e5) + 0.02 * fmax(pairs - 1e5, 0);
}
static double f_decode(double req, double ctx) { return 6000 + 200 * req + 0.3 * fmax(ctx - 8192, 0); }
/* Merge walks each request's partials in sequence: a term in partials per request. */
static double f_merge(double req, double partials) { return 3000 + 10 * req + 2 * partials + 150 * partials / req; }
static double f_copy(double bytes) { return 2000 + bytes / 2000; }

static void row(FILE *fp, int64_t tp, const char *kernel, int64_t tokens, int64_t pairs, int64_t req, int64_t ctx,
                int64_t partials, int64_t bytes, double t) {
  fprintf(fp, "1,Synthetic GPU,1.0,1500,2000,cuda,tiny,2,256,2,2,128,688,2,%lld,%s,%lld,%lld,%lld,%lld,%lld,%lld,1,9,%.3f,1\n",
          (long long)tp, kernel, (long long)tokens, (long long)pairs, (long long)req, (long long)ctx,
          (long long)partials, (long long)bytes, t);
}

/* TP 2 is the same functions at half the time, so the two are told apart. */
static void write_raw(const char *path) {
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  fprintf(fp, "schema,gpu,driver,sm_clock_mhz,mem_clock_mhz,backend,model,layers,hidden,heads,kv_heads,head_dim,"
              "intermediate,dtype_bytes,tp,kernel,tokens,pairs,requests,context_tokens,partials,bytes,"
              "local_fraction,repeats,median_ns,spread_ns\n");
  static const int64_t tokens[] = {1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024, 2048, 4096, 8192};
  for (int64_t tp = 1; tp <= 2; tp++) {
    double s = 1.0 / (double)tp;
    for (size_t i = 0; i < sizeof tokens / sizeof tokens[0]; i++) {
      double t = (double)tokens[i];
      row(fp, tp, "gemm_qkv", tokens[i], 0, 0, 0, 0, 0, s * f_qkv(t));
      row(fp, tp, "gemm_o", tokens[i], 0, 0, 0, 0, 0, s * f_o(t));
      row(fp, tp, "gemm_gateup", tokens[i], 0, 0, 0, 0, 0, s * f_gateup(t));
      row(fp, tp, "gemm_down", tokens[i], 0, 0, 0, 0, 0, s * f_down(t));
    }
    for (int64_t len = 16; len <= 16384; len *= 2) {
      int64_t pairs = len * (len + 1) / 2;
      row(fp, tp, "prefill_attn", len, pairs, 1, 0, 0, 0, s * f_prefill((double)len, (double)pairs));
      int64_t past = 4 * len, chunk = 256; /* chunks after a prefix: tokens and pairs apart */
      int64_t cpairs = chunk * past + chunk * (chunk + 1) / 2;
      row(fp, tp, "prefill_attn", chunk, cpairs, 1, past, 0, 0, s * f_prefill((double)chunk, (double)cpairs));
    }
    for (int64_t req = 1; req <= 256; req *= 4)
      for (int64_t ctx = 128; ctx <= 131072; ctx *= 4)
        row(fp, tp, "decode_attn", 0, 0, req, req * ctx, 0, 0, s * f_decode((double)req, (double)(req * ctx)));
    for (int64_t req = 1; req <= 256; req *= 4)
      for (int64_t holders = 2; holders <= 32; holders *= 2)
        row(fp, tp, "merge", 0, 0, req, 0, req * holders, 0, s * f_merge((double)req, (double)(req * holders)));
    for (int64_t bytes = 1 << 16; bytes <= (int64_t)1 << 30; bytes *= 2) {
      row(fp, tp, "kv_copy", 0, 0, 0, 0, 0, bytes, s * f_copy((double)bytes));
      row(fp, tp, "host_copy", 0, 0, 0, 0, 0, bytes, s * (5000 + (double)bytes / 20));
    }
  }
  assert_int_equal(fclose(fp), 0);
}

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  if (f == NULL) return -1;
  const char *tmp = getenv("TMPDIR");
  snprintf(f->dir, sizeof f->dir, "%.300s/infsim_curves_XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
  if (mkdtemp(f->dir) == NULL) {
    free(f);
    return -1;
  }
  snprintf(f->raw, sizeof f->raw, "%.400s/raw.csv", f->dir);
  snprintf(f->db, sizeof f->db, "%.400s/calib.db", f->dir);
  write_raw(f->raw);
  infsim_error err = {0};
  infsim_calib_load_opts o = {.profile = "synth"};
  if (infsim_calib_load(f->raw, f->db, &o, NULL, &err) != INFSIM_OK) {
    fprintf(stderr, "%s\n", err.msg);
    return -1;
  }
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

static void fit_db(const fixture *f) {
  infsim_error err = {0};
  int goal = 0;
  FILE *devnull = fopen("/dev/null", "w");
  assert_int_equal(infsim_calib_fit_db(f->db, devnull, &goal, &err), INFSIM_OK);
  fclose(devnull);
  /* Exact functions of the aggregates: the held-out goal is met. */
  assert_int_equal(goal, 1);
}

static void assert_close(double got, double want, double rel) {
  if (!(fabs(got - want) <= rel * want)) fail_msg("got %.6g, want %.6g (within %.2g)", got, want, rel);
}

static void test_not_found_before_fit(void **state) {
  fixture *f = *state;
  infsim_model_shape m;
  assert_true(infsim_model_builtin("tiny", &m));
  infsim_cost_curves c;
  int found = -1;
  infsim_error err = {0};
  assert_int_equal(infsim_cost_curves_calibrated(f->db, "synth", &m, 1, &found, &c, &err), INFSIM_OK);
  assert_int_equal(found, 0);
}

static void test_curves_reproduce_functions(void **state) {
  fixture *f = *state;
  fit_db(f);
  infsim_model_shape m;
  assert_true(infsim_model_builtin("tiny", &m));
  infsim_error err = {0};
  for (int64_t tp = 1; tp <= 2; tp++) {
    infsim_cost_curves c;
    int found = 0;
    assert_int_equal(infsim_cost_curves_calibrated(f->db, "synth", &m, tp, &found, &c, &err), INFSIM_OK);
    assert_int_equal(found, 1);
    assert_string_equal(c.name, "calibrated:synth");
    double s = 1.0 / (double)tp;
    /* Inside the grid, between its points, and beyond it (extrapolation). */
    static const double toks[] = {1, 3, 100, 128, 300, 5000, 65536};
    for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++)
      assert_close(c.gemm_layer_ns(c.self, (int64_t)toks[i]), s * f_gemm(toks[i]), 0.02);
    assert_close(c.prefill_attn_layer_ns(c.self, 1000, 500500), s * f_prefill(1000, 500500), 0.03);
    assert_close(c.prefill_attn_layer_ns(c.self, 65536, (int64_t)65536 * 65537 / 2),
                 s * f_prefill(65536, 65536.0 * 65537 / 2), 0.03);
    assert_close(c.decode_attn_layer_ns(c.self, 8, 8 * 5000), s * f_decode(8, 8 * 5000), 0.03);
    assert_close(c.decode_attn_layer_ns(c.self, 64, 64 * 1000000), s * f_decode(64, 64e6), 0.03);
    assert_close(c.merge_layer_ns(c.self, 10, 70), s * f_merge(10, 70), 0.03);
    assert_close(c.kv_copy_ns(c.self, 12345678), s * f_copy(12345678), 0.02);
    /* No work, no time. */
    assert_true(c.gemm_layer_ns(c.self, 0) == 0);
    assert_true(c.decode_attn_layer_ns(c.self, 0, 0) == 0);
    assert_true(c.prefill_attn_layer_ns(c.self, 0, 0) == 0);
    assert_true(c.merge_layer_ns(c.self, 0, 0) == 0);
    assert_true(c.kv_copy_ns(c.self, 0) == 0);
    c.destroy(c.self);
  }
}

static void test_curves_monotone(void **state) {
  fixture *f = *state;
  fit_db(f);
  infsim_model_shape m;
  assert_true(infsim_model_builtin("tiny", &m));
  infsim_cost_curves c;
  int found = 0;
  infsim_error err = {0};
  assert_int_equal(infsim_cost_curves_calibrated(f->db, "synth", &m, 1, &found, &c, &err), INFSIM_OK);
  assert_int_equal(found, 1);
  /* The work variable swept on a fine geometric grid, the other held. */
  double prev_g = 0, prev_k = 0;
  for (double x = 1; x < 4e9; x *= 1.07) {
    double g = c.gemm_layer_ns(c.self, (int64_t)x);
    double k = c.kv_copy_ns(c.self, (int64_t)x);
    assert_true(g >= prev_g && k >= prev_k);
    prev_g = g;
    prev_k = k;
  }
  for (int64_t other = 1; other <= 4096; other *= 8) {
    double p_dec = 0, p_pre = 0, p_mer = 0;
    for (double x = (double)other; x < 1e10; x *= 1.11) {
      double dec = c.decode_attn_layer_ns(c.self, other, (int64_t)x);  /* context, requests held */
      double pre = c.prefill_attn_layer_ns(c.self, other, (int64_t)x); /* pairs, tokens held */
      double mer = c.merge_layer_ns(c.self, other, (int64_t)x);        /* partials, requests held */
      assert_true(dec >= p_dec && pre >= p_pre && mer >= p_mer);
      p_dec = dec, p_pre = pre, p_mer = mer;
    }
  }
  c.destroy(c.self);
}

/* The closed-form sum over a run of decode steps equals the step-by-step
 * sum, across the bends of the fitted curve. */
static void test_decode_sum_matches_loop(void **state) {
  fixture *f = *state;
  fit_db(f);
  infsim_model_shape m;
  assert_true(infsim_model_builtin("tiny", &m));
  infsim_cost_curves c;
  int found = 0;
  infsim_error err = {0};
  assert_int_equal(infsim_cost_curves_calibrated(f->db, "synth", &m, 1, &found, &c, &err), INFSIM_OK);
  assert_non_null(c.decode_attn_sum_layer_ns);
  static const int64_t reqs[] = {1, 3, 64};
  static const int64_t firsts[] = {0, 100, 8000, 500000};
  static const int64_t steps[] = {1, 2, 37, 1000, 20000};
  for (size_t a = 0; a < 3; a++)
    for (size_t b = 0; b < 4; b++)
      for (size_t s = 0; s < 5; s++) {
        int64_t r = reqs[a], first = firsts[b] * r;
        double loop = 0;
        for (int64_t j = 0; j < steps[s]; j++) loop += c.decode_attn_layer_ns(c.self, r, first + j * r);
        double closed = c.decode_attn_sum_layer_ns(c.self, r, first, r, steps[s]);
        if (!(fabs(closed - loop) <= 1e-9 * loop + 1e-6))
          fail_msg("requests %lld first %lld steps %lld: closed %.9g, loop %.9g", (long long)r, (long long)first,
                   (long long)steps[s], closed, loop);
      }
  assert_true(c.decode_attn_sum_layer_ns(c.self, 4, 100, 4, 0) == 0);
  c.destroy(c.self);
}

/* The shipped H100 curves (data/calibration.db): every model and TP degree
 * is found, each curve never decreases in its kernel's work variable with
 * the others held (GEMM lookups only where their measured knots step down,
 * checked against the knots themselves), and the closed-form decode sum
 * equals the step-by-step sum on curves with every shape term. */
static void test_shipped_curves(void **state) {
  (void)state;
  char db[PATH_BYTES];
  snprintf(db, sizeof db, "%s/data/calibration.db", INFSIM_SRC_DIR);
  static const char *const models[] = {"llama2-7b", "llama2-13b", "llama2-70b"};
  for (size_t mi = 0; mi < 3; mi++)
    for (int64_t tp = 1; tp <= 8; tp *= 2) {
      infsim_model_shape m;
      assert_true(infsim_model_builtin(models[mi], &m));
      infsim_cost_curves c;
      int found = 0;
      infsim_error err = {0};
      assert_int_equal(infsim_cost_curves_calibrated(db, "h100-sxm", &m, tp, &found, &c, &err), INFSIM_OK);
      assert_int_equal(found, 1);
      for (int64_t other = 1; other <= 1024; other *= 4) {
        double p_dec = 0, p_pre = 0, p_mer = 0;
        for (double x = (double)other; x < 1e10; x *= 1.13) {
          double dec = c.decode_attn_layer_ns(c.self, other, (int64_t)x);
          double pre = c.prefill_attn_layer_ns(c.self, other, (int64_t)x);
          double mer = c.merge_layer_ns(c.self, other, (int64_t)x);
          if (!(dec >= p_dec && pre >= p_pre && mer >= p_mer))
            fail_msg("%s tp %lld: falls at %g with %lld held", models[mi], (long long)tp, x, (long long)other);
          p_dec = dec, p_pre = pre, p_mer = mer;
        }
      }
      double prev = 0;
      for (double x = 1; x < 1e11; x *= 1.1) {
        double k = c.kv_copy_ns(c.self, (int64_t)x);
        assert_true(k >= prev);
        prev = k;
      }
      for (int64_t r = 1; r <= 256; r *= 16)
        for (int64_t first = r * 100; first <= r * 400000; first *= 37) {
          int64_t steps = 3000;
          double loop = 0;
          for (int64_t j = 0; j < steps; j++) loop += c.decode_attn_layer_ns(c.self, r, first + j * r);
          double closed = c.decode_attn_sum_layer_ns(c.self, r, first, r, steps);
          if (!(fabs(closed - loop) <= 1e-9 * loop))
            fail_msg("%s tp %lld: requests %lld first %lld: closed %.9g, loop %.9g", models[mi], (long long)tp,
                     (long long)r, (long long)first, closed, loop);
        }
      c.destroy(c.self);
    }
}

static void test_other_profile_model_tp_not_found(void **state) {
  fixture *f = *state;
  fit_db(f);
  infsim_model_shape tiny, big;
  assert_true(infsim_model_builtin("tiny", &tiny));
  assert_true(infsim_model_builtin("llama2-7b", &big));
  infsim_cost_curves c;
  infsim_error err = {0};
  int found = -1;
  assert_int_equal(infsim_cost_curves_calibrated(f->db, "h100-sxm", &tiny, 1, &found, &c, &err), INFSIM_OK);
  assert_int_equal(found, 0);
  found = -1;
  assert_int_equal(infsim_cost_curves_calibrated(f->db, "synth", &big, 1, &found, &c, &err), INFSIM_OK);
  assert_int_equal(found, 0);
  found = -1;
  assert_int_equal(infsim_cost_curves_calibrated(f->db, "synth", &tiny, 4, &found, &c, &err), INFSIM_OK);
  assert_int_equal(found, 0);
  /* Same name, another shape: not these curves. */
  infsim_model_shape wide = tiny;
  wide.intermediate *= 2;
  found = -1;
  assert_int_equal(infsim_cost_curves_calibrated(f->db, "synth", &wide, 1, &found, &c, &err), INFSIM_OK);
  assert_int_equal(found, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_not_found_before_fit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_curves_reproduce_functions, setup, teardown),
      cmocka_unit_test_setup_teardown(test_curves_monotone, setup, teardown),
      cmocka_unit_test_setup_teardown(test_decode_sum_matches_loop, setup, teardown),
      cmocka_unit_test(test_shipped_curves),
      cmocka_unit_test_setup_teardown(test_other_profile_model_tp_not_found, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
