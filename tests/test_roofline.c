/*
** test_roofline.c: roofline numbers against hand computation from the
** datasheets (A100-80GB SXM: 312 TFLOP/s dense bf16, 2,039 GB/s HBM) and
** LLaMA2-7B's shape, the iteration composition with tensor parallelism, and
** the closed-form decode sum against step-by-step summation.
*/
#include <math.h>
#include <stdlib.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "infsim/costmodel.h"

static const infsim_roofline_eff k_eff = {0.7, 0.5, 0.8, 2500};

static infsim_cost_model model_on(const char *model, const char *gpu, int64_t tp) {
  infsim_cost_model cm = {0};
  assert_true(infsim_model_builtin(model, &cm.model));
  infsim_gpu_spec spec;
  assert_true(infsim_gpu_builtin(gpu, &spec));
  assert_int_equal(infsim_cost_curves_roofline(&cm.model, &spec, tp, &k_eff, &cm.curves, NULL), INFSIM_OK);
  cm.layout = (infsim_instance_layout){.tp = tp, .pp = 1, .tp_link_bytes_per_s = 300e9, .link_latency_ns = 5000,
                                       .iteration_overhead_ns = 500000};
  return cm;
}

static void assert_close(double got, double want, double rel) {
  if (fabs(got - want) > rel * fabs(want)) fail_msg("got %.3f, want %.3f", got, want);
}

static void test_gemm_and_attention_by_hand(void **state) {
  (void)state;
  infsim_cost_model cm = model_on("llama2-7b", "a100-80gb", 1);
  const infsim_cost_curves *c = &cm.curves;
  /* One layer's GEMM parameters: 4096 x (3 x 4096) QKV + 4096^2 O + 3 x 4096 x 11008 MLP = 202,375,168. */
  double hbm = 2039e9 * 0.8;
  /* 1 token: weight-bound. 404,750,336 weight bytes + 4 x 4096 x 2 activation bytes. */
  assert_close(c->gemm_layer_ns(c->self, 1), (404750336.0 + 32768.0) / hbm * 1e9, 1e-9);
  /* 8,192 tokens: compute-bound, 2 x 8192 x 202,375,168 FLOPs at 70% of 312 TFLOP/s. */
  assert_close(c->gemm_layer_ns(c->self, 8192), 2.0 * 8192 * 202375168.0 / (312e12 * 0.7) * 1e9, 1e-9);
  /* Decode: 64 requests, 64,000 context tokens: K and V of 32 heads x 128 x 2 bytes each. */
  double kv_bytes = 64000.0 * 2 * 32 * 128 * 2 + 64.0 * 2 * 32 * 128 * 2;
  assert_close(c->decode_attn_layer_ns(c->self, 64, 64000), kv_bytes / hbm * 1e9, 1e-9);
  /* Prefill of 4,096 tokens: 4096 x 4097 / 2 pairs, 4 FLOPs per pair per dim per head, 50% of peak. */
  double pairs = 4096.0 * 4097.0 / 2.0;
  assert_close(c->prefill_attn_layer_ns(c->self, 4096, (int64_t)pairs),
               4.0 * pairs * 128 * 32 / (312e12 * 0.5) * 1e9, 1e-9);
  assert_true(c->gemm_layer_ns(c->self, 0) == 0.0 && c->decode_attn_layer_ns(c->self, 0, 0) == 0.0);
  infsim_cost_model_destroy(&cm);
}

/* With tp = 2 each GEMM and head set halves, and a ring all-reduce of
 * tokens x hidden x 2 bytes runs twice a layer: 2 (tp-1)/tp x bytes / link
 * + 2 (tp-1) x latency. */
static void test_tensor_parallel_iteration(void **state) {
  (void)state;
  infsim_cost_model cm = model_on("llama2-7b", "a100-80gb", 2);
  const infsim_cost_curves *c = &cm.curves;
  assert_close(c->gemm_layer_ns(c->self, 1), (404750336.0 / 2 + 32768.0) / (2039e9 * 0.8) * 1e9, 1e-9);
  infsim_batch_agg agg = {.decode_requests = 100, .decode_context_tokens = 100000, .logits_tokens = 100};
  double allreduce = 1.0 * 100 * 4096 * 2 / 300e9 * 1e9 + 2.0 * 5000;
  double layer =
      c->gemm_layer_ns(c->self, 100) + c->decode_attn_layer_ns(c->self, 100, 100000) + 2 * allreduce + 2500.0;
  double lm_head = c->gemm_layer_ns(c->self, 100) * (32000.0 * 4096 / 202375168.0);
  double want = 500000 + 32 * layer + lm_head;
  assert_true(fabs((double)infsim_cost_iteration_ns(&cm, &agg) - want) <= 0.5); /* rounded to the ns */
  infsim_cost_model_destroy(&cm);
}

/* The closed form sums the same values as a loop, also across the point
 * where a GQA model's decode turns from memory- to compute-bound. */
static void test_decode_run_closed_form_equals_loop(void **state) {
  (void)state;
  const char *models[] = {"llama2-7b", "llama2-70b"};
  for (int m = 0; m < 2; m++) {
    infsim_cost_model cm = model_on(models[m], "h100-sxm", 1);
    infsim_cost_curves *c = &cm.curves;
    infsim_roofline_eff slow = {0.7, 0.01, 0.8, 2500}; /* makes 70B's attention compute-bound at long context */
    infsim_cost_curves slow_curves;
    assert_int_equal(infsim_cost_curves_roofline(&cm.model, &(infsim_gpu_spec){"x", 989e12, 3350e9, 80000000000, 1, 1},
                                                 1, &slow, &slow_curves, NULL),
                     INFSIM_OK);
    const infsim_cost_curves *both[] = {c, &slow_curves};
    for (int k = 0; k < 2; k++) {
      const infsim_cost_curves *cv = both[k];
      for (int64_t n = 1; n <= 4096; n *= 8) {
        int64_t first = n * 17, steps = 3000;
        double loop = 0.0;
        for (int64_t j = 0; j < steps; j++) loop += cv->decode_attn_layer_ns(cv->self, n, first + j * n);
        assert_close(cv->decode_attn_sum_layer_ns(cv->self, n, first, n, steps), loop, 1e-9);
      }
    }
    infsim_decode_run run;
    infsim_cost_decode_run_init(&cm, 32, &run);
    int64_t prev = 0;
    for (int64_t k = 1; k < 500; k++) {
      int64_t t = infsim_cost_decode_run_ns(&cm, &run, 32 * 100, k);
      assert_true(t >= prev + 1);
      prev = t;
    }
    slow_curves.destroy(slow_curves.self);
    infsim_cost_model_destroy(&cm);
  }
}

/* decode_attn_grows is a promise the executor's search for the step at
 * which local attention hides DistAttention's remote path relies on: the
 * roofline's decode attention never falls as the context grows, on both
 * sides of its compute / memory crossover, token by token. */
static void test_decode_attention_grows_with_context(void **state) {
  (void)state;
  infsim_cost_model cm = model_on("llama2-70b", "h100-sxm", 1);
  infsim_roofline_eff slow = {0.7, 0.01, 0.8, 2500}; /* compute-bound at long context */
  infsim_cost_curves slow_curves;
  assert_int_equal(infsim_cost_curves_roofline(&cm.model, &(infsim_gpu_spec){"x", 989e12, 3350e9, 80000000000, 1, 1},
                                               1, &slow, &slow_curves, NULL),
                   INFSIM_OK);
  const infsim_cost_curves *both[] = {&cm.curves, &slow_curves};
  for (int k = 0; k < 2; k++) {
    const infsim_cost_curves *c = both[k];
    assert_true(c->decode_attn_grows);
    int crossings = 0;
    for (int64_t n = 1; n <= 512; n *= 8) {
      double prev = c->decode_attn_layer_ns(c->self, n, 0);
      for (int64_t ctx = 1; ctx < 400000; ctx += ctx < 5000 ? 1 : 97) {
        double a = c->decode_attn_layer_ns(c->self, n, ctx);
        if (a < prev) fail_msg("n %lld: A(%lld) = %.17g below the one before, %.17g", (long long)n, (long long)ctx, a,
                               prev);
        crossings += a > prev;
        prev = a;
      }
    }
    assert_true(crossings > 1000); /* it does grow: the test walks a curve, not a constant */
  }
  /* infsim_cost_decode_run_attn_ns: the run's time, and the sum of its
   * steps' attention (one layer) as the curve gives it step by step */
  infsim_decode_run run;
  infsim_cost_decode_run_init(&cm, 24, &run);
  for (int64_t steps = 0; steps < 300; steps += 7) {
    double sum = -1.0, loop = 0.0;
    int64_t t = infsim_cost_decode_run_attn_ns(&cm, &run, 24 * 3000, steps, &sum);
    assert_true(t == infsim_cost_decode_run_ns(&cm, &run, 24 * 3000, steps));
    for (int64_t j = 0; j < steps; j++) loop += cm.curves.decode_attn_layer_ns(cm.curves.self, 24, 24 * 3000 + j * 24);
    assert_close(sum, loop, 1e-9);
    if (steps == 0) assert_true(sum == 0.0);
  }
  slow_curves.destroy(slow_curves.self);
  infsim_cost_model_destroy(&cm);
}

/* cost.layer_overhead_us is per layer and iteration, prefill and decode
 * alike, and per step of a decode run: with overhead x, an iteration of an
 * L-layer model takes exactly L x x longer than with none. */
static void test_layer_overhead_is_per_layer(void **state) {
  (void)state;
  infsim_cost_model with = model_on("llama2-7b", "a100-80gb", 1);
  infsim_cost_model none = {0};
  none.model = with.model;
  none.layout = with.layout;
  infsim_roofline_eff zero = k_eff;
  zero.layer_overhead_ns = 0;
  infsim_gpu_spec spec;
  assert_true(infsim_gpu_builtin("a100-80gb", &spec));
  assert_int_equal(infsim_cost_curves_roofline(&none.model, &spec, 1, &zero, &none.curves, NULL), INFSIM_OK);
  const infsim_batch_agg batches[] = {
      {.prefill_tokens = 1024, .prefill_attn_pairs = 1024 * 1025 / 2, .logits_tokens = 1},
      {.decode_requests = 8, .decode_context_tokens = 8000, .logits_tokens = 8},
      {.prefill_tokens = 100, .prefill_attn_pairs = 5050, .decode_requests = 3, .decode_context_tokens = 900,
       .logits_tokens = 4},
  };
  for (size_t i = 0; i < sizeof batches / sizeof batches[0]; i++) {
    int64_t d = infsim_cost_iteration_ns(&with, &batches[i]) - infsim_cost_iteration_ns(&none, &batches[i]);
    assert_true(llabs(d - 32 * 2500) <= 1);
  }
  infsim_decode_run rw, rn;
  infsim_cost_decode_run_init(&with, 16, &rw);
  infsim_cost_decode_run_init(&none, 16, &rn);
  int64_t d = infsim_cost_decode_run_ns(&with, &rw, 16 * 500, 40) - infsim_cost_decode_run_ns(&none, &rn, 16 * 500, 40);
  assert_true(llabs(d - 40 * 32 * 2500) <= 1);
  infsim_cost_model_destroy(&with);
  infsim_cost_model_destroy(&none);
}

/* A KV copy inside a GPU reads and writes its bytes once at HBM speed
 * (DGFM and recalls inside one GPU would use it). */
static void test_kv_copy(void **state) {
  (void)state;
  infsim_cost_model cm = model_on("llama2-7b", "a100-80gb", 1);
  const infsim_cost_curves *c = &cm.curves;
  assert_close(c->kv_copy_ns(c->self, 1 << 20), 2.0 * (1 << 20) / (2039e9 * 0.8) * 1e9, 1e-9);
  assert_true(c->kv_copy_ns(c->self, 0) == 0.0);
  infsim_cost_model_destroy(&cm);
}

/* The kernels priced from products formed once equal, bit for bit, the
 * roofline formed per call (the header's counts, fmax of the two times),
 * on random batches of 7B and 70B at tp 1, 2 and 8; and the closed-form
 * decode sum stays the step-by-step sum. */
static void test_kernels_bit_exact_against_formula(void **state) {
  (void)state;
  const char *models[] = {"llama2-7b", "llama2-70b"};
  const int64_t tps[] = {1, 2, 8};
  uint64_t x = 0x2545f4914f6cdd1du;
  for (int m = 0; m < 2; m++)
    for (int t = 0; t < 3; t++) {
      infsim_cost_model cm = model_on(models[m], "a100-80gb", tps[t]);
      const infsim_cost_curves *c = &cm.curves;
      infsim_gpu_spec g;
      assert_true(infsim_gpu_builtin("a100-80gb", &g));
      double tp = (double)tps[t], d = (double)cm.model.head_dim, b = (double)cm.model.dtype_bytes;
      double hs = (double)cm.model.heads / tp, kvs = fmax(1.0, (double)cm.model.kv_heads / tp);
      double params = (double)infsim_model_layer_gemm_params(&cm.model) / tp;
      for (int i = 0; i < 20000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int64_t n = 1 + (int64_t)(x % 512), ctx = (int64_t)((x >> 9) % 2000000), tok = 1 + (int64_t)((x >> 30) % 16384);
        int64_t pairs = tok * (1 + (int64_t)((x >> 44) % 4096));
        double want = fmax(4.0 * (double)ctx * d * hs / (g.peak_flops * k_eff.attn_flops_eff),
                           ((double)ctx * 2.0 * kvs * d * b + (double)n * 2.0 * hs * d * b) /
                               (g.hbm_bytes_per_s * k_eff.hbm_eff)) * 1e9;
        assert_true(c->decode_attn_layer_ns(c->self, n, ctx) == want);
        double hbm = g.hbm_bytes_per_s * k_eff.hbm_eff;
        want = fmax(2.0 * (double)tok * params / (g.peak_flops * k_eff.gemm_flops_eff),
                    (params * b + 4.0 * (double)tok * (double)cm.model.hidden * b) / hbm) * 1e9;
        assert_true(c->gemm_layer_ns(c->self, tok) == want);
        want = fmax(4.0 * (double)pairs * d * hs / (g.peak_flops * k_eff.attn_flops_eff),
                    (double)tok * d * b * (2.0 * hs + 2.0 * kvs) / (g.hbm_bytes_per_s * k_eff.hbm_eff)) * 1e9;
        assert_true(c->prefill_attn_layer_ns(c->self, tok, pairs) == want);
        want = fmax(0.0, ((double)(n + tok) * hs * (d + 1.0) * 4.0 + (double)n * hs * d * 4.0) /
                             (g.hbm_bytes_per_s * k_eff.hbm_eff)) * 1e9;
        assert_true(c->merge_layer_ns(c->self, n, n + tok) == want);
        if (i % 100 == 0) {
          int64_t steps = 1 + (int64_t)((x >> 20) % 300);
          double loop = 0.0;
          for (int64_t j = 0; j < steps; j++) loop += c->decode_attn_layer_ns(c->self, n, ctx + j * n);
          assert_close(c->decode_attn_sum_layer_ns(c->self, n, ctx, n, steps), loop, 1e-9);
        }
      }
      infsim_cost_model_destroy(&cm);
    }
}

/* The library-free rounding equals llround (half away from zero) on
 * random times of every magnitude pricing sees, on exact halves, on
 * both sides of 2^52 (where doubles stop having fractions) and on
 * negatives. */
static void test_round_ns_is_llround(void **state) {
  (void)state;
  uint64_t x = 0x9e3779b97f4a7c15u;
  for (int i = 0; i < 200000; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
    double mag = ldexp(1.0, (int)(x % 62));
    double v = (double)(x >> 11) / 9007199254740992.0 * mag; /* [0, mag) */
    if (i % 4 == 1) v = floor(v) + 0.5;
    if (i % 4 == 2) v = nextafter(floor(v) + 0.5, 0.0);
    if (i % 8 == 3) v = -v;
    if (!(fabs(v) < 9.2e18)) continue;
    if (infsim_cost_round_ns(v) != (int64_t)llround(v))
      fail_msg("%.17g: %lld, llround %lld", v, (long long)infsim_cost_round_ns(v), (long long)llround(v));
  }
  double edge[] = {0.0, -0.0, 0.5, -0.5, 1.5, 2.5, 0.49999999999999994, 4503599627370495.5, 4503599627370496.0,
                   9007199254740993.0, 9.1e18, -9.1e18};
  for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++)
    assert_int_equal(infsim_cost_round_ns(edge[i]), (int64_t)llround(edge[i]));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gemm_and_attention_by_hand),
      cmocka_unit_test(test_tensor_parallel_iteration),
      cmocka_unit_test(test_decode_run_closed_form_equals_loop),
      cmocka_unit_test(test_decode_attention_grows_with_context),
      cmocka_unit_test(test_layer_overhead_is_per_layer),
      cmocka_unit_test(test_kv_copy),
      cmocka_unit_test(test_round_ns_is_llround),
      cmocka_unit_test(test_kernels_bit_exact_against_formula),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
