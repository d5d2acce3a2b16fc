/*
** test_distattn.c: DistAttention's cost against sums worked out by hand,
** on linear stand-in curves whose values are easy to add up:
**   decode_attn(n, C) = 1000 + 2 n + 0.5 C ns, merge(n, k) = 100 + 3 k ns,
**   prefill_attn(t, p) = 10 t + 0.01 p ns.
** Two instances, one request split over both, no contention: its decode
** step is the hand-computed sum of holder MA, transfers and merge, with
** and without overlap; the creditor's iteration grows by the MA it does
** for the owner; the owner's step is never shorter than the remote path;
** queries and partials each go at their own direction's rate.
** Node relay: two nodes, the owner on node 0 and three holders on node 1;
** the queries cross the owner's NIC once (one query out, one partial back
** per layer instead of three), fan out over node 1's NVLink, and the
** layer is the hand-computed sum of NIC transfer, fan-out, holder MA,
** relay merge, return and owner merge; a prompt chunk's KV written to a
** relayed holder goes to it directly. Roles: only GPU holders on other
** nodes than the owner's, two or more a node, are relayed.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "infsim/distattn.h"

static double decode_attn(void *self, int64_t n, int64_t ctx) {
  (void)self;
  return 1000.0 + 2.0 * (double)n + 0.5 * (double)ctx;
}
static double merge(void *self, int64_t n, int64_t k) {
  (void)self;
  (void)n;
  return 100.0 + 3.0 * (double)k;
}
static double prefill_attn(void *self, int64_t t, int64_t p) {
  (void)self;
  return 10.0 * (double)t + 0.01 * (double)p;
}

static infsim_cost_curves curves(void) {
  infsim_cost_curves c = {0};
  c.decode_attn_layer_ns = decode_attn;
  c.merge_layer_ns = merge;
  c.prefill_attn_layer_ns = prefill_attn;
  return c;
}

/* LLaMA2-7B on one GPU: 32 heads of 128, 32 layers, fp16 on the wire. */
static const infsim_distattn_shape k7b = {.heads = 32, .head_dim = 128, .layers = 32, .wire_bytes_per_value = 2,
                                          .overlap = true};

static void test_wire_sizes(void **state) {
  (void)state;
  /* Query 32 x 128 x 2 = 8192 B; partial 32 x 129 x 2 = 8256 B: together
   * about one token of LLaMA2-7B's KV per layer (2 x 4096 x 2 = 16384 B),
   * as the paper's notes say. fp32 doubles both. */
  assert_float_equal(infsim_distattn_query_bytes(&k7b, 1), 8192, 0);
  assert_float_equal(infsim_distattn_partial_bytes(&k7b, 1), 8256, 0);
  infsim_distattn_shape f32 = k7b;
  f32.wire_bytes_per_value = 4;
  assert_float_equal(infsim_distattn_partial_bytes(&f32, 3), 3 * 16512, 0);
}

/* One request of 4000 tokens: 1000 at its owner, 3000 at a holder over a
 * 25 GB/s route with 5 us latency. By hand, per layer:
 *   A   = 1000 + 2 + 500                         = 1502
 *   MA  = 1000 + 2 + 1500                        = 2502
 *   R   = 2 x 5000 + (8192 + 8256) / 25 = 10000 + 657.92 + 2502 = 13159.92
 *   M   = 100 + 3 x 2                            = 106
 *   overlap: max(1502, 13159.92) + 106 = 13265.92; off: 14767.92. */
static void test_split_request_decode_step(void **state) {
  (void)state;
  infsim_cost_curves c = curves();
  infsim_distattn_holder h = {.requests = 1, .context_tokens = 3000, .bytes_per_s = 25e9, .latency_ns = 5000};
  infsim_distattn_layer l = infsim_distattn_decode_layer(&c, &k7b, 1, 1000, 1, &h, 1);
  assert_float_equal(l.local_ns, 1502, 1e-9);
  assert_float_equal(l.remote_ns, 13159.92, 1e-6);
  assert_float_equal(l.merge_ns, 106, 1e-9);
  assert_float_equal(l.attention_ns, 13265.92, 1e-6);
  infsim_distattn_shape off = k7b;
  off.overlap = false;
  l = infsim_distattn_decode_layer(&c, &off, 1, 1000, 1, &h, 1);
  assert_float_equal(l.attention_ns, 14767.92, 1e-6);
  /* The creditor's step grows by its MA for the guest, all 32 layers. */
  assert_float_equal(infsim_distattn_creditor_step_ns(&c, &k7b, 1, 3000), 32 * 2502.0, 1e-9);
  assert_float_equal(infsim_distattn_creditor_step_ns(&c, &k7b, 0, 0), 0, 0);
  /* No remote KV: only the local attention, no merge. */
  l = infsim_distattn_decode_layer(&c, &k7b, 1, 4000, 0, NULL, 0);
  assert_float_equal(l.attention_ns, 1000 + 2 + 2000, 1e-9);
  /* Steady traffic at a 20 ms step: 32 x 16448 B / 0.02 s. */
  assert_float_equal(infsim_distattn_steady_bytes_per_s(&k7b, 1, 20000000), 32 * 16448 / 0.02, 1e-3);
}

/* Each way at its own rate (the share the step's transfers get on the
 * route's links): the query of test_split_request_decode_step out at 8
 * GB/s (a 24 GB/s NIC shared by three holders), its partial back at 6:
 *   R = 10000 + 8192 / 8 + 8256 / 6 + 2502 = 10000 + 1024 + 1376 + 2502.
 * A host holder fetching its KV (fetch) ships 3000 x 16384 B back at 6. */
static void test_rates_each_way(void **state) {
  (void)state;
  infsim_cost_curves c = curves();
  infsim_distattn_holder h = {.requests = 1, .context_tokens = 3000, .bytes_per_s = 8e9, .back_bytes_per_s = 6e9,
                              .latency_ns = 5000};
  infsim_distattn_layer l = infsim_distattn_decode_layer(&c, &k7b, 1, 1000, 1, &h, 1);
  assert_float_equal(l.remote_ns, 10000 + 1024 + 1376 + 2502, 1e-6);
  infsim_distattn_shape host = k7b;
  host.kv_bytes_per_token_layer = 16384;
  h.kind = INFSIM_HOLDER_HOST_FETCH;
  l = infsim_distattn_decode_layer(&c, &host, 1, 1000, 1, &h, 1);
  assert_float_equal(l.remote_ns, 5000 + 3000 * 16384 / 6.0 + 2502, 1e-6);
  /* A prompt chunk: its queries and the KV it writes go out at 8, its
   * partials come back at 6 (test_prefill_over_remote_blocks's sizes). */
  infsim_distattn_holder w = {.context_tokens = 2000, .bytes_per_s = 8e9, .back_bytes_per_s = 6e9,
                              .latency_ns = 5000, .write_bytes = 1638400};
  l = infsim_distattn_prefill_layer(&c, &k7b, 100, 5050, &w, 1);
  assert_float_equal(l.remote_ns, 10000 + (819200 + 1638400) / 8.0 + 825600 / 6.0 + 3000, 1e-6);
}

/* Two holders in parallel: the slower bounds the layer; with local work
 * longer than both, overlap hides them (only the merge shows). */
static void test_holders_in_parallel(void **state) {
  (void)state;
  infsim_cost_curves c = curves();
  infsim_distattn_holder h[2] = {
      {.requests = 2, .context_tokens = 1000, .bytes_per_s = 300e9, .latency_ns = 1000},
      {.requests = 1, .context_tokens = 8000, .bytes_per_s = 25e9, .latency_ns = 5000}};
  /* R_0 = 2000 + 2 x 16448 / 300 + (1000 + 4 + 500) = 2000 + 109.6533.. + 1504
   * R_1 = 10000 + 16448 / 25 + (1000 + 2 + 4000) = 10000 + 657.92 + 5002 */
  double r1 = 10000 + 657.92 + 5002;
  infsim_distattn_layer l = infsim_distattn_decode_layer(&c, &k7b, 3, 600, 2, h, 2);
  assert_float_equal(l.remote_ns, r1, 1e-6);
  assert_float_equal(l.merge_ns, 100 + 3 * (2 + 3), 1e-9); /* 2 requests, 2 local + 3 remote partials */
  assert_true(l.attention_ns >= l.remote_ns);             /* no earlier than the last partial */
  /* Local attention of 30,000 tokens (16,006 ns) hides both. */
  l = infsim_distattn_decode_layer(&c, &k7b, 3, 30000, 2, h, 2);
  assert_float_equal(l.attention_ns, 1000 + 6 + 15000 + l.merge_ns, 1e-9);
}

/* A prefill chunk of 100 tokens whose first 2000 tokens sit at a holder,
 * its new KV (100 tokens x 16384 B per layer = 1,638,400 B) written there:
 *   local = 10 x 100 + 0.01 x 5050            = 1050.5
 *   MA_j  = 10 x 100 + 0.01 x 100 x 2000      = 3000
 *   wire  = 2 x 5000 + (819200 + 825600 + 1638400) / 25 = 10000 + 131328
 *   M     = 100 + 3 x 200                     = 700 */
static void test_prefill_over_remote_blocks(void **state) {
  (void)state;
  infsim_cost_curves c = curves();
  infsim_distattn_holder h = {.context_tokens = 2000, .bytes_per_s = 25e9, .latency_ns = 5000,
                              .write_bytes = 1638400};
  infsim_distattn_layer l = infsim_distattn_prefill_layer(&c, &k7b, 100, 5050, &h, 1);
  assert_float_equal(l.local_ns, 1050.5, 1e-9);
  assert_float_equal(l.remote_ns, 10000 + 131328 + 3000, 1e-6);
  assert_float_equal(l.merge_ns, 700, 1e-9);
  assert_float_equal(l.attention_ns, 10000 + 131328 + 3000 + 700, 1e-6);
}

/* Node relay's roles: holders 0-2 on node 1 (2 takes no queries), 3 on
 * the owner's node 0, 4 alone on node 2, 5 on node 1 but host memory, 6
 * on node 1. Decode caps the node's queries at the batch's remote
 * requests; a chunk sends all its tokens. */
static void test_relay_roles(void **state) {
  (void)state;
  infsim_distattn_holder h[7] = {{.requests = 2, .context_tokens = 10}, {.requests = 1, .context_tokens = 10},
                                 {.requests = 0, .context_tokens = 0},  {.requests = 1, .context_tokens = 10},
                                 {.requests = 1, .context_tokens = 10}, {.requests = 1, .context_tokens = 10,
                                                                         .kind = INFSIM_HOLDER_HOST_FETCH},
                                 {.requests = 3, .context_tokens = 10}};
  const int32_t node[7] = {1, 1, 1, 0, 2, 1, 1};
  infsim_distattn_relay_assign(h, node, 7, 0, 4, false);
  const int32_t via[7] = {0, 1, 0, 0, 0, 0, 1};
  for (int j = 0; j < 7; j++) assert_int_equal(h[j].via, via[j]);
  assert_int_equal(h[0].relay_queries, 4); /* 2 + 1 + 3 requests, at most the batch's 4 remote ones */
  for (int j = 1; j < 7; j++) assert_int_equal(h[j].relay_queries, 0);
  infsim_distattn_relay_assign(h, node, 7, 0, 100, true);
  assert_int_equal(h[0].relay_queries, 100);
  for (int j = 0; j < 7; j++) assert_int_equal(h[j].via, via[j]);
  /* the owner on node 1: node 2's lone holder and node 0's stay direct */
  infsim_distattn_relay_assign(h, node, 7, 1, 100, true);
  for (int j = 0; j < 7; j++) assert_int_equal(h[j].via + (int)h[j].relay_queries, 0);
}

/* One request decoding with 1000 tokens at its owner (node 0) and 3000,
 * 2000, 1000 at holders 0-2 on node 1; holder 0 relays. NIC route 25
 * GB/s, 5 us one way; relay <-> holder 300 GB/s, 1 us. By hand, per layer:
 *   in    = 5000 + 8192 / 25                     = 5327.68
 *   relay = in + MA_0 (1000 + 2 + 1500)          = 7829.68
 *   F_1   = 2000 + 16448 / 300 + (1000 + 2 + 1000) = 4056.82666..
 *   F_2   = 2000 + 16448 / 300 + (1000 + 2 + 500)  = 3556.82666..
 *   R     = in + F_1 + merge(1, 3) + 5000 + 8256 / 25
 *         = 9384.50666.. + 109 + 5330.24        = 14823.74666..
 *   owner merge(1, 2) = 106 (its partial and the node's), A = 1502:
 *   attention = 14823.74666.. + 106.
 * Bytes: one query and partial on the NIC, two over NVLink: 3 x 16448. */
static void test_relay_decode_by_hand(void **state) {
  (void)state;
  infsim_cost_curves c = curves();
  infsim_distattn_holder h[3];
  const int64_t ctx[3] = {3000, 2000, 1000};
  for (int j = 0; j < 3; j++)
    h[j] = (infsim_distattn_holder){.requests = 1, .context_tokens = ctx[j], .bytes_per_s = 25e9,
                                    .latency_ns = 5000, .hop_bytes_per_s = 300e9, .hop_latency_ns = 1000};
  const int32_t node[3] = {1, 1, 1};
  infsim_distattn_relay_assign(h, node, 3, 0, 1, false);
  assert_int_equal(h[0].relay_queries, 1);
  infsim_distattn_layer l = infsim_distattn_decode_layer(&c, &k7b, 1, 1000, 1, h, 3);
  double r = 5000 + 327.68 + 2000 + 16448 / 300.0 + 2002 + 109 + 5000 + 330.24;
  assert_float_equal(l.remote_ns, r, 1e-6);
  assert_float_equal(l.merge_ns, 106, 1e-9);
  assert_float_equal(l.attention_ns, r + 106, 1e-6);
  assert_float_equal(l.bytes, 3 * 16448, 1e-9);
  /* relay off: each holder direct (here at the NIC's 25 GB/s each),
   * three queries and partials on the NIC, four partials merged */
  for (int j = 0; j < 3; j++) h[j].via = 0, h[j].relay_queries = 0;
  l = infsim_distattn_decode_layer(&c, &k7b, 1, 1000, 1, h, 3);
  assert_float_equal(l.remote_ns, 10000 + 657.92 + 2502, 1e-6);
  assert_float_equal(l.merge_ns, 112, 1e-9);
  assert_float_equal(l.bytes, 3 * 16448, 1e-9);
}

/* A chunk of 100 tokens over the same three holders of 2000 tokens each
 * (MA 3000 each); its new KV (1,638,400 B) goes to holder 2 directly.
 *   in    = 5000 + 819200 / 25                     = 37768
 *   q_at  = in + 1000 + 819200 / 300               = 41498.66..
 *   kv_at = 5000 + 1638400 / 25                    = 70536 (holder 2)
 *   F     = max(q_at, kv_at) + 3000 + 1000 + 825600 / 300 = 77288
 *   R     = 77288 + merge(100, 300) + 5000 + 825600 / 25 = 77288 + 1000 + 38024
 *   owner merge(100, 200) = 700.
 * Bytes: Q + P + KV on the NIC, 2 (Q + P) over NVLink. */
static void test_relay_prefill_by_hand(void **state) {
  (void)state;
  infsim_cost_curves c = curves();
  infsim_distattn_holder h[3];
  for (int j = 0; j < 3; j++)
    h[j] = (infsim_distattn_holder){.requests = 100, .context_tokens = 2000, .bytes_per_s = 25e9,
                                    .latency_ns = 5000, .hop_bytes_per_s = 300e9, .hop_latency_ns = 1000};
  h[2].write_bytes = 1638400;
  const int32_t node[3] = {1, 1, 1};
  infsim_distattn_relay_assign(h, node, 3, 0, 100, true);
  infsim_distattn_layer l = infsim_distattn_prefill_layer(&c, &k7b, 100, 5050, h, 3);
  assert_float_equal(l.remote_ns, 77288 + 1000 + 38024, 1e-6);
  assert_float_equal(l.merge_ns, 700, 1e-9);
  assert_float_equal(l.attention_ns, 77288 + 1000 + 38024 + 700, 1e-6);
  assert_float_equal(l.bytes, 819200 + 825600 + 1638400 + 2 * (819200 + 825600), 1e-6);
}

/* The direct form (each holder's micro-attention given) prices exactly as
 * the general one: same fields to the bit, over random holders of every
 * kind (some without requests), with and without overlap. A pricing that
 * keeps holders' MA between steps (sim/sim_executor.c) relies on it. */
static void test_direct_layer_matches_general(void **state) {
  (void)state;
  infsim_cost_curves c = curves();
  uint64_t x = 88172645463325252ull; /* xorshift64 */
  for (int round = 0; round < 2000; round++) {
    infsim_distattn_shape s = k7b;
    s.kv_bytes_per_token_layer = 16384;
    s.cpu_attn_bytes_per_s = 5e10;
    s.overlap = round % 2 == 0;
    infsim_distattn_holder h[8];
    double ma[8];
    int k = 1 + (int)(round % 8);
    int64_t remote = 0;
    for (int j = 0; j < k; j++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      int64_t n = (int64_t)(x % 5); /* 0: a holder of prompt KV only */
      h[j] = (infsim_distattn_holder){.requests = n, .context_tokens = n * (int64_t)(1 + (x >> 8) % 90000),
                                      .bytes_per_s = 1e9 + (double)((x >> 20) % 1000) * 1e8,
                                      .back_bytes_per_s = (x >> 30) % 3 == 0 ? 0 : 2e9 + (double)((x >> 33) % 97) * 3e8,
                                      .latency_ns = (int64_t)((x >> 40) % 9000), .kind = (int32_t)((x >> 50) % 3)};
      ma[j] = n > 0 ? decode_attn(NULL, n, h[j].context_tokens) : 0.0;
      remote += n;
    }
    int64_t n_local = 1 + (int64_t)(x % 40);
    infsim_distattn_layer g = infsim_distattn_decode_layer(&c, &s, n_local, 1000 * n_local, remote, h, k);
    infsim_distattn_layer d = infsim_distattn_decode_layer_direct(&c, &s, n_local, 1000 * n_local, remote, h, k, ma);
    assert_true(g.local_ns == d.local_ns && g.remote_ns == d.remote_ns && g.merge_ns == d.merge_ns &&
                g.attention_ns == d.attention_ns && g.bytes == d.bytes);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_wire_sizes),
      cmocka_unit_test(test_split_request_decode_step),
      cmocka_unit_test(test_rates_each_way),
      cmocka_unit_test(test_holders_in_parallel),
      cmocka_unit_test(test_prefill_over_remote_blocks),
      cmocka_unit_test(test_relay_roles),
      cmocka_unit_test(test_relay_decode_by_hand),
      cmocka_unit_test(test_relay_prefill_by_hand),
      cmocka_unit_test(test_direct_layer_matches_general),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
