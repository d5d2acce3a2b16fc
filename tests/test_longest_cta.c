/*
** test_longest_cta.c: the longest-CTA term of decode pricing.
**
** (1) infsim_calib_longest_cta_tokens against splits worked out by hand
** from the MA decode's rule (kernels/ma_decode.cu: one wave of
** sm_count x 2 CTAs, rows x KV heads x head groups CTA rows, at most
** 16 (context / 4096)^0.4 splits and >= 8 tiles of 16 tokens each) and the
** cuda executor's padding (1, 2, 4, ..., 32, then multiples of 32) and
** context buckets (powers of two from 256);
** (2) the cost model's composition: a layer's decode attention is the
** larger of the curve at the batch's totals and the longest-CTA term, for
** one iteration and, over a run of decode steps, the larger of the two
** sums; no term without the longest context.
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

/* Hand-made curves: per layer, attention = context / requests ns (the
 * mean), longest = 10 x max context ns when the step is a graph, 5 x
 * eagerly; GEMMs 1000 ns; nothing else. */
static double gemm_ns(void *self, int64_t tokens) {
  (void)self, (void)tokens;
  return 1000.0;
}
static double prefill_ns(void *self, int64_t tokens, int64_t pairs) {
  (void)self, (void)tokens, (void)pairs;
  return 0.0;
}
static double decode_ns(void *self, int64_t requests, int64_t context) {
  (void)self;
  return (double)context / (double)requests;
}
static double merge_ns(void *self, int64_t requests, int64_t partials) {
  (void)self, (void)requests, (void)partials;
  return 0.0;
}
static double copy_ns(void *self, int64_t bytes) {
  (void)self, (void)bytes;
  return 0.0;
}
static double longest_ns(void *self, int64_t requests, int64_t max_context, bool graph) {
  (void)self, (void)requests;
  return (graph ? 10.0 : 5.0) * (double)max_context;
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
  infsim_cost_model cm = model(true);
  /* 4 requests, 4000 tokens, longest 1000: the curve's 1000 against the longest's 10000. */
  infsim_batch_agg a = {.decode_requests = 4, .decode_context_tokens = 4000, .decode_max_context_tokens = 1000};
  int64_t lm = infsim_cost_iteration_ns(&cm, &(infsim_batch_agg){.decode_requests = 4}); /* GEMMs, LM head */
  assert_int_equal(infsim_cost_iteration_ns(&cm, &a) - lm, 2 * 10000);
  /* Eager (a prompt chunk rides along): 5 x 1000. */
  a.prefill_tokens = 16;
  a.prefill_attn_pairs = 136;
  int64_t with_chunk = infsim_cost_iteration_ns(&cm, &(infsim_batch_agg){.prefill_tokens = 16, .prefill_attn_pairs = 136,
                                                                          .decode_requests = 4});
  assert_int_equal(infsim_cost_iteration_ns(&cm, &a) - with_chunk, 2 * 5000);
  a.prefill_tokens = a.prefill_attn_pairs = 0;
  /* The longest short of the mean's curve: the curve (40000 / 4 = 10000 > 10 x 900). */
  a.decode_context_tokens = 40000;
  a.decode_max_context_tokens = 900;
  assert_int_equal(infsim_cost_iteration_ns(&cm, &a) - lm, 2 * 10000);
  /* Unknown longest (0): the curve alone. */
  a.decode_context_tokens = 4000;
  a.decode_max_context_tokens = 0;
  assert_int_equal(infsim_cost_iteration_ns(&cm, &a) - lm, 2 * 1000);
  /* No term in the curves: the curve alone. */
  infsim_cost_model plain = model(false);
  a.decode_max_context_tokens = 1000;
  assert_int_equal(infsim_cost_iteration_ns(&plain, &a) - lm, 2 * 1000);

  /* A run of 3 steps from 4000 tokens, each 4 more: curve sum 1000 + 1001 + 1002
   * = 3003 a layer; longest 3 x 10 x 1000 = 30000 a layer. */
  infsim_decode_run run;
  infsim_cost_decode_run_init(&cm, 4, &run);
  assert_int_equal(run.first_max_context_tokens, 0);
  int64_t fixed3 = (int64_t)llround(3 * run.fixed_ns); /* GEMMs, LM head: integral here */
  assert_int_equal(infsim_cost_decode_run_ns(&cm, &run, 4000, 3) - fixed3, 2 * 3003);
  run.first_max_context_tokens = 1000;
  assert_int_equal(infsim_cost_decode_run_ns(&cm, &run, 4000, 3) - fixed3, 2 * 30000);
  /* Curve ahead: 40000 tokens (10000 + 10001 + 10002) against 3 x 9000. */
  run.first_max_context_tokens = 900;
  assert_int_equal(infsim_cost_decode_run_ns(&cm, &run, 40000, 3) - fixed3, 2 * 30003);
  /* Non-decreasing in steps. */
  run.first_max_context_tokens = 1000;
  for (int64_t k = 1; k < 50; k++)
    assert_true(infsim_cost_decode_run_ns(&cm, &run, 3000, k + 1) >= infsim_cost_decode_run_ns(&cm, &run, 3000, k));
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(split_rule), cmocka_unit_test(composition)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
