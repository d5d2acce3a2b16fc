/*
** test_longest_cta.c: the longest-CTA term of decode pricing.
**
** (1) infsim_calib_longest_cta_tokens against splits worked out by hand
** from the MA decode's rule (kernels/ma_decode.cu: one wave of
** sm_count x 2 CTAs, rows x KV heads x head groups CTA rows, at most
** 16 (context / 4096)^0.4 splits and >= 8 tiles of 16 tokens each) and the
** cuda executor's padding (1, 2, 4, ..., 32, then multiples of 32) and
** context buckets (powers of two from 256);
** (2) the waves of CTAs that run before the longest request's last split;
** (3) the cost model's composition: a layer's decode attention is the
** larger of the curve at the batch's totals and the longest-CTA term, the
** latter at most the curve with every request as long; for one iteration
** and, over a run of decode steps, of the sums; no term without the
** longest context;
** (4) the tokens a CTA of the longest request walks while the others'
** CTAs stream beside it over several waves (by hand and against a plain
** loop), and the fast form's layer time with it: the batch less the long
** request's tail on the decode curve, then the tail on the line.
*/
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "infsim/calib.h"
#include "infsim/costmodel.h"

static void split_rule(void **state) {
  (void)state;
  /* LLaMA2-7B at TP 1 on an H200: 32 KV heads of one query head each, 264 CTA slots. */
  const infsim_calib_split_shape s7 = {32, 32, 132};
  /* 16384 tokens: 1024 tiles, split cap min(1024 / 8, round(16 x 4^0.4) = 28) = 28. */
  assert_int_equal(infsim_calib_longest_cta_tokens(&s7, 1, 16384, 1), 1024 / 8 * 16);  /* 32 rows: 8 splits */
  assert_int_equal(infsim_calib_longest_cta_tokens(&s7, 2, 16384, 1), 1024 / 4 * 16);  /* 64 rows: 4 */
  assert_int_equal(infsim_calib_longest_cta_tokens(&s7, 3, 16384, 1), 1024 / 2 * 16);  /* padded to 4: 2 */
  assert_int_equal(infsim_calib_longest_cta_tokens(&s7, 5, 16384, 1), 16384);          /* padded to 8: 1 */
  /* 16 rows: 512 CTAs, one split fills 2 waves to 97% (>= 95%): 1 split. */
  assert_int_equal(infsim_calib_longest_cta_tokens(&s7, 12, 16384, 1), 16384);
  assert_int_equal(infsim_calib_longest_cta_tokens(&s7, 33, 16384, 1), 16384);
  /* Eager (a batch with prompt chunks): no padding, 3 rows = 96 CTAs: 2 splits. */
  assert_int_equal(infsim_calib_longest_cta_tokens(&s7, 3, 16384, 0), 1024 / 2 * 16);
  /* 9 rows = 288 CTAs, two waves: the fewest splits that fill >= 95% of
   * their waves' slots: 1: 288 / 528, 2: 576 / 792, ... 6: 1728 / 1848
   * (93.5%), 7: 2016 / 2112 (95.5%): 7 splits of ceil(1024 / 7) tiles. */
  assert_int_equal(infsim_calib_longest_cta_tokens(&s7, 9, 16384, 0), 147 * 16);
  /* 100 tokens (7 tiles) in the 256-token bucket: 16 tiles cap 2 splits; 4 tiles a split. */
  assert_int_equal(infsim_calib_longest_cta_tokens(&s7, 1, 100, 1), 4 * 16);
  /* Eagerly, 100 tokens cap 1 split: 7 tiles. */
  assert_int_equal(infsim_calib_longest_cta_tokens(&s7, 1, 100, 0), 7 * 16);
  /* 16385 tokens: bucket 32768, cap round(16 x 8^0.4) = 37; 1 request still 8 splits of 129 tiles. */
  assert_int_equal(infsim_calib_longest_cta_tokens(&s7, 1, 16385, 1), 129 * 16);
  /* LLaMA2-70B at TP 8: 8 query heads on 1 KV head, one CTA row a request:
   * 264 slots, so the cap decides: 28 splits of 16384 tokens, 37 tiles each. */
  const infsim_calib_split_shape s70 = {8, 1, 132};
  assert_int_equal(infsim_calib_longest_cta_tokens(&s70, 1, 16384, 1), 37 * 16);
  /* Unknown GPU or no context: no term. */
  const infsim_calib_split_shape none = {32, 32, 0};
  assert_int_equal(infsim_calib_longest_cta_tokens(&none, 5, 16384, 1), 0);
  assert_int_equal(infsim_calib_longest_cta_tokens(&s7, 5, 0, 1), 0);
}

/* The waves before the longest request's last split, the mean over its
 * place: by hand where they are few, and against the plain sum of
 * floor((last split's first CTA row + place x rows a request) / slots) for
 * every batch size of an eager and a replayed step (the closed form is a
 * floor sum). */
static void waits(void **state) {
  (void)state;
  const infsim_calib_split_shape s7 = {32, 32, 132};
  /* 5 requests (8 padded rows, 256 CTAs): one wave. */
  assert_true(infsim_calib_longest_cta_waits(&s7, 5, 16384, 1) == 0.0);
  /* 12 requests, 16 padded rows, 512 CTAs, 1 split: places 9, 10, 11 start
   * at CTA rows 288, 320, 352, past the 264 slots: 3 of 12 wait a wave. */
  assert_true(fabs(infsim_calib_longest_cta_waits(&s7, 12, 16384, 1) - 0.25) < 1e-12);
  const infsim_calib_split_shape shapes[] = {{32, 32, 132}, {64, 8, 132}, {8, 1, 114}, {40, 40, 7}};
  for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
    for (int graph = 0; graph <= 1; graph++)
      for (int64_t n = 1; n <= 300; n += (n < 40 ? 1 : 7))
        for (int64_t ctx = 100; ctx <= 70000; ctx *= 7) {
          const infsim_calib_split_shape *sh = &shapes[k];
          int64_t group = sh->q_heads / sh->kv_heads, per = sh->kv_heads * ((group + 15) / 16);
          int64_t rows = n;
          if (graph) rows = n > 32 ? (n + 31) / 32 * 32 : n <= 1 ? 1 : n <= 2 ? 2 : n <= 4 ? 4 : n <= 8 ? 8 : n <= 16 ? 16 : 32;
          /* The splits, from the tokens a CTA walks of a request of the longest's length. */
          int64_t tiles = (ctx + 15) / 16, w = infsim_calib_longest_cta_tokens(sh, n, ctx, graph) / 16;
          int64_t splits = 1;
          while ((tiles + splits - 1) / splits != w) splits++;
          int64_t sum = 0;
          for (int64_t i = 0; i < n; i++) sum += ((splits - 1) * rows * per + i * per) / (2 * sh->sm_count);
          assert_true(fabs(infsim_calib_longest_cta_waits(sh, n, ctx, graph) - (double)sum / (double)n) < 1e-9);
        }
}

/* The others' CTA tokens per slot beside the long request's CTAs, times
 * the share of them left when its last CTA gets a slot (the mean over its
 * place): by hand, and against a loop over the places. */
static void shared_tokens(void **state) {
  (void)state;
  const infsim_calib_split_shape s7 = {32, 32, 132};
  /* 12 requests, 6000 + 11 x 2000 tokens, a replayed step: 16 padded rows,
   * 512 CTA rows, 1 split (512 / 528 slots filled), 384 real CTAs in 264
   * slots. The others' 22000 x 32 CTA tokens over 264 - 32 slots:
   * 3034.48 each; places 8-11 start after 24, 56, 88, 120 of the others'
   * 352 CTAs have left: 288 / 12 / 352 done on the mean, so 3034.48 x
   * (1 - 0.0682) = 2827.6. */
  assert_int_equal(infsim_calib_longest_cta_shared_tokens(&s7, 12, 28000, 6000, 1), 2827);
  /* One wave (5 requests, 8 padded rows, 1 split, 160 real CTAs in 264
   * slots): the others hold their own 128 CTAs' slots, so the long CTA
   * walks the others' mean context beside them, 8000 x 32 / 128 = 2000
   * (not 8000 x 32 / 232 = 1103 as if they filled every other slot). */
  assert_int_equal(infsim_calib_longest_cta_shared_tokens(&s7, 5, 14000, 6000, 1), 2000);
  /* One request, or no other context: nothing beside it. */
  assert_int_equal(infsim_calib_longest_cta_shared_tokens(&s7, 1, 6000, 6000, 1), 0);
  assert_int_equal(infsim_calib_longest_cta_shared_tokens(&s7, 12, 6000, 6000, 1), 0);
  /* At most its own CTA's tokens: 40 requests of which 39 are long too. */
  assert_int_equal(infsim_calib_longest_cta_shared_tokens(&s7, 40, 40 * 6000, 6000, 1), 6000);
  const infsim_calib_split_shape shapes[] = {{32, 32, 132}, {64, 8, 132}, {8, 1, 114}, {40, 40, 7}};
  for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
    for (int graph = 0; graph <= 1; graph++)
      for (int64_t n = 2; n <= 300; n += (n < 40 ? 1 : 7))
        for (int64_t ctx = 100; ctx <= 70000; ctx *= 7) {
          const infsim_calib_split_shape *sh = &shapes[k];
          int64_t group = sh->q_heads / sh->kv_heads, per = sh->kv_heads * ((group + 15) / 16);
          int64_t rows = n;
          if (graph) rows = n > 32 ? (n + 31) / 32 * 32 : n <= 2 ? 2 : n <= 4 ? 4 : n <= 8 ? 8 : n <= 16 ? 16 : 32;
          int64_t tiles = (ctx + 15) / 16, w = infsim_calib_longest_cta_tokens(sh, n, ctx, graph) / 16;
          int64_t splits = 1;
          while ((tiles + splits - 1) / splits != w) splits++;
          int64_t slots = 2 * sh->sm_count, real = n * per * splits, mine = per * splits, others = real - mine;
          int64_t total = ctx + (n - 1) * (ctx / 3 + 1);
          int64_t want = 0, beside = others < slots - mine ? others : slots - mine;
          if (beside > 0) {
            int64_t before = 0;
            for (int64_t p = 0; p < n; p++) {
              int64_t d = (splits - 1) * rows * per + p * per + per - slots;
              before += d < 0 ? 0 : d > others ? others : d;
            }
            double share = (double)((total - ctx) * per) / (double)beside;
            want = (int64_t)(share * (1.0 - (double)before / (double)n / (double)others));
            if (want > w * 16) want = w * 16;
          }
          assert_int_equal(infsim_calib_longest_cta_shared_tokens(sh, n, total, ctx, graph), want);
        }
}

/* The fast form: decode curve 1000 + 4 ns a context token, longest-CTA
 * line 18000 + 15 ns a token walked. */
static void fast_shared(void **state) {
  (void)state;
  infsim_calib_curve *curves = calloc(INFSIM_CALIB_KERNELS, sizeof *curves);
  assert_non_null(curves);
  for (int k = 0; k < INFSIM_CALIB_KERNELS; k++) curves[k].hinge_var = -1;
  curves[INFSIM_CALIB_DECODE_ATTN].c_const = 1000;
  curves[INFSIM_CALIB_DECODE_ATTN].c_var[INFSIM_CALIB_CONTEXT_TOKENS] = 4;
  curves[INFSIM_CALIB_LAYER_DECODE_LONG].c_const = 18000;
  curves[INFSIM_CALIB_LAYER_DECODE_LONG].c_var[INFSIM_CALIB_TOKENS] = 15;
  infsim_calib_fast *f = infsim_calib_fast_new(curves);
  assert_non_null(f);
  const infsim_calib_split_shape s7 = {32, 32, 132};
  infsim_calib_fast_set_split(f, &s7);
  /* The batch of shared_tokens: the line at 6000 tokens after a quarter
   * wave of the others' 2000-token CTAs, 108000 + 0.25 x 48000 = 120000,
   * against the batch less the tail (28000 - 3173 tokens on the curve,
   * 100308) and the tail on the line (15 x 3173 = 47595): 147903. */
  assert_true(fabs(infsim_calib_fast_longest_ns(f, 12, 28000, 6000, 1) - 147903.0) < 1e-6);
  /* One wave, 5 requests, no wait: the line alone, 108000, where the
   * others are short (2000 tokens shared: the batch less the 4000-token
   * tail, 41000, plus 60000 on the line is less) ... */
  assert_true(fabs(infsim_calib_fast_longest_ns(f, 5, 14000, 6000, 1) - 108000.0) < 1e-6);
  /* ... and where they are nearly as long (4 x 5000: 5000 shared), the
   * batch less the 1000-token tail on the curve, 101000, plus the tail on
   * the line, 15000: 116000. */
  assert_true(fabs(infsim_calib_fast_longest_ns(f, 5, 26000, 6000, 1) - 116000.0) < 1e-6);
  infsim_calib_fast_free(f);
  free(curves);
}

/* Hand-made curves: per layer, attention = the total context in ns;
 * longest = 2 x max context ns when the step is a graph, 1.5 x eagerly;
 * GEMMs 1000 ns; nothing else. */
static double gemm_ns(void *self, int64_t tokens) {
  (void)self, (void)tokens;
  return 1000.0;
}
static double prefill_ns(void *self, int64_t tokens, int64_t pairs) {
  (void)self, (void)tokens, (void)pairs;
  return 0.0;
}
static double decode_ns(void *self, int64_t requests, int64_t context) {
  (void)self, (void)requests;
  return (double)context;
}
static double merge_ns(void *self, int64_t requests, int64_t partials) {
  (void)self, (void)requests, (void)partials;
  return 0.0;
}
static double copy_ns(void *self, int64_t bytes) {
  (void)self, (void)bytes;
  return 0.0;
}
static double longest_ns(void *self, int64_t requests, int64_t context, int64_t max_context, bool graph) {
  (void)self, (void)requests, (void)context;
  return (graph ? 2.0 : 1.5) * (double)max_context;
}

static infsim_cost_model model(bool with_longest) {
  infsim_cost_model cm;
  memset(&cm, 0, sizeof cm);
  cm.curves.gemm_layer_ns = gemm_ns;
  cm.curves.prefill_attn_layer_ns = prefill_ns;
  cm.curves.decode_attn_layer_ns = decode_ns;
  cm.curves.merge_layer_ns = merge_ns;
  cm.curves.kv_copy_ns = copy_ns;
  cm.curves.decode_longest_layer_ns = with_longest ? longest_ns : NULL;
  cm.model.layers = 2;
  cm.model.hidden = 64;
  cm.model.heads = cm.model.kv_heads = 4;
  cm.model.head_dim = 16;
  cm.model.intermediate = 128;
  cm.model.vocab = 0;
  cm.model.dtype_bytes = 2;
  cm.layout.tp = 1;
  cm.layout.pp = 1;
  return cm;
}

static void composition(void **state) {
  (void)state;
  infsim_cost_model cm = model(true), plain = model(false);
  int64_t lm4 = infsim_cost_iteration_ns(&cm, &(infsim_batch_agg){.decode_requests = 4}); /* GEMMs alone */
  int64_t lm1 = infsim_cost_iteration_ns(&cm, &(infsim_batch_agg){.decode_requests = 1});
  /* 4 requests, 4000 tokens, the longest 3000: the curve's 4000 against
   * the longest's 6000 (under the cap: 4 x 3000 = 12000). */
  infsim_batch_agg a = {.decode_requests = 4, .decode_context_tokens = 4000, .decode_max_context_tokens = 3000};
  assert_int_equal(infsim_cost_iteration_ns(&cm, &a) - lm4, 2 * 6000);
  /* Eager (a prompt chunk rides along): 1.5 x 3000. */
  a.prefill_tokens = 16;
  a.prefill_attn_pairs = 136;
  int64_t chunk = infsim_cost_iteration_ns(
      &cm, &(infsim_batch_agg){.prefill_tokens = 16, .prefill_attn_pairs = 136, .decode_requests = 4});
  assert_int_equal(infsim_cost_iteration_ns(&cm, &a) - chunk, 2 * 4500);
  a.prefill_tokens = a.prefill_attn_pairs = 0;
  /* The longest short of the curve (2 x 1100 < 4000): the curve. */
  a.decode_max_context_tokens = 1100;
  assert_int_equal(infsim_cost_iteration_ns(&cm, &a) - lm4, 2 * 4000);
  /* Unknown longest (0), or no term in the curves: the curve. */
  a.decode_max_context_tokens = 0;
  assert_int_equal(infsim_cost_iteration_ns(&cm, &a) - lm4, 2 * 4000);
  a.decode_max_context_tokens = 3000;
  assert_int_equal(infsim_cost_iteration_ns(&plain, &a) - lm4, 2 * 4000);
  /* The cap: one request of 1000 tokens is the uniform batch itself (1000,
   * not the longest's 2000). */
  infsim_batch_agg one = {.decode_requests = 1, .decode_context_tokens = 1000, .decode_max_context_tokens = 1000};
  assert_int_equal(infsim_cost_iteration_ns(&cm, &one) - lm1, 2 * 1000);

  /* A run of 3 steps from 4000 tokens, each 4 more: the curve sums 4000 +
   * 4004 + 4008 = 12012 a layer. */
  infsim_decode_run run;
  infsim_cost_decode_run_init(&cm, 4, &run);
  assert_int_equal(run.first_max_context_tokens, 0);
  int64_t fixed3 = (int64_t)llround(3 * run.fixed_ns); /* GEMMs: integral here */
  assert_int_equal(infsim_cost_decode_run_ns(&cm, &run, 4000, 3) - fixed3, 2 * 12012);
  /* Longest 3000: 3 x 6000 = 18000, under the cap 12000 + 12004 + 12008. */
  run.first_max_context_tokens = 3000;
  assert_int_equal(infsim_cost_decode_run_ns(&cm, &run, 4000, 3) - fixed3, 2 * 18000);
  /* Longest 1100: 3 x 2200 < 12012. */
  run.first_max_context_tokens = 1100;
  assert_int_equal(infsim_cost_decode_run_ns(&cm, &run, 4000, 3) - fixed3, 2 * 12012);
  /* One request: capped at its own curve, 1000 + 1001 + 1002. */
  infsim_decode_run run1;
  infsim_cost_decode_run_init(&cm, 1, &run1);
  run1.first_max_context_tokens = 1000;
  assert_int_equal(infsim_cost_decode_run_ns(&cm, &run1, 1000, 3) - (int64_t)llround(3 * run1.fixed_ns), 2 * 3003);
  /* Non-decreasing in steps. */
  run.first_max_context_tokens = 3000;
  for (int64_t k = 1; k < 50; k++)
    assert_true(infsim_cost_decode_run_ns(&cm, &run, 3000, k + 1) >= infsim_cost_decode_run_ns(&cm, &run, 3000, k));
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(split_rule), cmocka_unit_test(waits),
                                     cmocka_unit_test(shared_tokens), cmocka_unit_test(fast_shared),
                                     cmocka_unit_test(composition)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
