/*
** test_distkv_sim.c: DistKV-LLM in the simulator against independent truth.
**
**  - A request split over two instances, nothing else running: every decode
**    step of its owner equals, to the ns, the sum computed here by hand from
**    the curves: local MA, and per layer max(local, R) + merge with R = both
**    route latencies + (query + partial, fp16) / NVLink + the holder's MA.
**    Its queries and partials are on the links (links.csv's bytes), to
**    the byte: one steady flow per direction over each step, prompt
**    chunks' queries, partials and the KV written to the holder included.
**  - The split request's traffic is in network_bytes: at least the KV its
**    owner could not hold, written to the holder during prefill (its bytes
**    per token from the model's shape), plus exactly one query and one
**    partial per layer for each decode step with a remote part; at most
**    every prompt token written and queried remotely, plus control messages.
**  - Macro-steps equal single steps with borrowing on: the same schedule,
**    finish times within 1 us, on a cluster where 200K-token prompts borrow
**    (DGFM on and off, heartbeats every 5 and 50 ms).
*/
#include <math.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "distkv_fixture.h"
#include "sim_fixture.h"

static void test_split_decode_step_by_hand(void **state) {
  (void)state;
  const char *const settings[] = {"model=llama2-7b", "gpu=a100-80gb", "cluster.instances=2",
                                  "policy.name=infinite-llm", "scheduler.max_steps_per_event=1",
                                  "metrics.iterations=true", NULL};
  infsim_run_params p = fixture_params(settings);
  infsim_trace t = {0};
  fixture_add(&t, 0, 150000, 40); /* 9,375 blocks: more than one A100-80GB holds for LLaMA2-7B */
  infsim_run_result *res = fixture_run(&p, &t);
  size_t n = 0;
  const infsim_request_record *r = infsim_run_result_requests(res, &n);
  assert_int_equal(r[0].state, INFSIM_REQ_FINISHED);
  assert_true(infsim_run_result_counters(res)->borrowed_blocks_peak > 0);

  infsim_cost_model cm;
  fixture_a100_roofline(&p, &cm);
  const infsim_cost_curves *c = &cm.curves;
  double layers = (double)p.model.layers;
  double bytes = 32.0 * 128 * 2 + 32.0 * 129 * 2;        /* query out, partial + LSE back, fp16 */
  double wire = 2.0 * (2.0 * 5000) + bytes / 300e9 * 1e9; /* NVLink up + down, each way */
  const infsim_iteration_row *rows = infsim_run_result_iterations(res, &n);
  int checked = 0;
  for (size_t i = 0; i < n; i++) {
    const infsim_iteration_row *row = &rows[i];
    if (row->instance != 0 || row->agg.prefill_tokens > 0 || row->agg.remote_partials == 0) continue;
    assert_int_equal(row->steps, 1);
    assert_int_equal(row->agg.decode_requests, 1);
    infsim_decode_run run;
    infsim_cost_decode_run_init(&cm, 1, &run);
    int64_t base = infsim_cost_decode_run_ns(&cm, &run, row->agg.decode_context_tokens, 1);
    double a = c->decode_attn_layer_ns(c->self, 1, row->agg.decode_context_tokens);
    double remote = wire + c->decode_attn_layer_ns(c->self, 1, row->agg.remote_context_tokens);
    double merge = c->merge_layer_ns(c->self, 1, 2);
    double want = (double)base + layers * (fmax(a, remote) - a + merge);
    if (fabs((double)(row->end_ns - row->start_ns) - want) > 1.0)
      fail_msg("step at %.6f s: %lld ns, by hand %.1f ns", (double)row->start_ns * 1e-9,
               (long long)(row->end_ns - row->start_ns), want);
    checked++;
  }
  assert_true(checked >= 30); /* the decode steps of the split request */
  /* links.csv: the holder's NVLink up carries the partials (and LSE) of
   * every decode step with a remote part, the owner's up link the queries;
   * prompt batches are flows too: the prompt's first blocks were gathered
   * at the holder before it started, so every chunk after the first
   * queries them (a query out, a partial back per token and layer), and
   * the KV of those blocks (the borrowed blocks, full) went there */
  double partials = 0, queries = 0;
  bool first_chunk = true;
  for (size_t i = 0; i < n; i++) {
    const infsim_iteration_row *row = &rows[i];
    double per = row->agg.prefill_tokens > 0 ? (double)row->agg.prefill_tokens
                                             : (double)row->steps * (double)row->agg.remote_partials;
    if (row->instance != 0 || (row->agg.prefill_tokens > 0 && first_chunk)) {
      first_chunk &= row->instance != 0;
      continue;
    }
    partials += per * layers * 32.0 * 129 * 2;
    queries += per * layers * 32.0 * 128 * 2;
  }
  queries += (double)infsim_run_result_counters(res)->borrowed_blocks_peak * 16 * layers * 2.0 * 32 * 128 * 2;
  const infsim_network *net = infsim_run_result_network(res);
  bool up = false, down = false;
  for (int32_t l = 0; l < (int32_t)infsim_network_link_count(net); l++) {
    infsim_link_info li = infsim_network_link(net, l);
    if (strcmp(li.src, "i1") == 0 && strcmp(li.dst, "sw0") == 0) {
      if (fabs(li.bytes - partials) > 1e-6 * partials) fail_msg("i1->sw0 %.0f bytes, by hand %.0f", li.bytes, partials);
      up = true;
    }
    if (strcmp(li.src, "i0") == 0 && strcmp(li.dst, "sw0") == 0) {
      if (fabs(li.bytes - queries) > 1e-6 * queries) fail_msg("i0->sw0 %.0f bytes, by hand %.0f", li.bytes, queries);
      down = true;
    }
  }
  assert_true(up && down && partials > 0);
  infsim_cost_model_destroy(&cm);
  infsim_run_result_free(res);
  infsim_trace_free(&t);
}

/* LLaMA2-7B: 32 layers, 32 heads of 128, fp16 KV and wire: one token's KV
 * over all layers, and one query out plus one partial (and LSE) back. */
static const double kv_token_bytes = 2.0 * 32 * 128 * 2 * 32;
static const double qp_step_bytes = (32.0 * 128 * 2 + 32.0 * 129 * 2) * 32;

typedef struct {
  double network;     /* network_bytes */
  double decode;      /* by hand: decode steps with a remote part x holders x Q + P */
  double prefill_max; /* by hand: every prefill token queried remotely */
  double spilled;     /* prompt tokens beyond the owner's KV */
} split_traffic;

static split_traffic run_split(int64_t prompt, int64_t output) {
  const char *const settings[] = {"model=llama2-7b", "gpu=a100-80gb", "cluster.instances=2",
                                  "policy.name=infinite-llm", "metrics.iterations=true", NULL};
  infsim_run_params p = fixture_params(settings);
  infsim_trace t = {0};
  fixture_add(&t, 0, prompt, output);
  infsim_run_result *res = fixture_run(&p, &t);
  const infsim_run_counters *c = infsim_run_result_counters(res);
  assert_true(c->borrowed_blocks_peak > 0);
  split_traffic out = {(double)c->network_bytes, 0, 0, (double)(prompt - c->kv_blocks_per_instance * 16)};
  size_t n = 0;
  const infsim_iteration_row *rows = infsim_run_result_iterations(res, &n);
  for (size_t i = 0; i < n; i++) {
    if (rows[i].agg.prefill_tokens > 0) out.prefill_max += (double)rows[i].agg.prefill_tokens * qp_step_bytes;
    else out.decode += (double)rows[i].steps * (double)rows[i].agg.remote_partials * qp_step_bytes;
  }
  infsim_run_result_free(res);
  infsim_trace_free(&t);
  return out;
}

static void test_split_request_traffic_counted(void **state) {
  (void)state;
  const int64_t prompt = 150000;
  split_traffic a = run_split(prompt, 40), b = run_split(prompt, 2040);
  assert_true(a.spilled > 0 && a.decode > 0);
  /* prefill: the spilled KV went to the holder; at most all of it did, with every chunk's queries */
  double low = a.spilled * kv_token_bytes + a.decode, high = (double)prompt * kv_token_bytes + a.prefill_max + a.decode;
  if (a.network < low || a.network > high + 16e6)
    fail_msg("network_bytes %.0f, by hand between %.0f and %.0f", a.network, low, high);
  /* decode: the same prompt with 2,000 more tokens adds exactly their
   * steps' queries and partials (and a few control messages) */
  double extra = b.network - a.network, want = b.decode - a.decode;
  assert_true(want > 1e9);
  if (fabs(extra - want) > 0.001 * want)
    fail_msg("2,000 more decode steps added %.0f network bytes, by hand %.0f", extra, want);
}

/* 100 requests on 8 instances, every 25th a 200K-token prompt. */
static infsim_trace long_trace(void) {
  infsim_trace t = {0};
  uint64_t x = 2;
  double time_s = 0;
  for (int i = 0; i < 100; i++) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    double u = (double)(x >> 11) / 9007199254740992.0;
    time_s += -log(1.0 - u) / 2.0;
    bool big = i % 25 == 0;
    fixture_add(&t, (int64_t)llround(time_s * 1e9), big ? 200000 : 500 + (int64_t)(x >> 40) % 3500,
                big ? 64 : 50 + (int64_t)(x >> 20) % 350);
  }
  return t;
}

static void check_macro_equals_single(const char *knob) {
  const char *macro[] = {"model=llama2-7b", "gpu=a100-80gb", "cluster.instances=8", "policy.name=infinite-llm",
                         knob, NULL};
  const char *single[] = {"model=llama2-7b", "gpu=a100-80gb", "cluster.instances=8", "policy.name=infinite-llm",
                          knob, "scheduler.max_steps_per_event=1", NULL};
  infsim_run_params pm = fixture_params(macro), ps = fixture_params(single);
  infsim_trace t = long_trace();
  infsim_run_result *a = fixture_run(&pm, &t), *b = fixture_run(&ps, &t);
  assert_true(infsim_run_result_counters(a)->borrowed_blocks_peak > 0);
  assert_true(infsim_run_result_counters(a)->events < infsim_run_result_counters(b)->events);
  size_t n = 0;
  const infsim_request_record *ra = infsim_run_result_requests(a, &n), *rb = infsim_run_result_requests(b, &n);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(ra[i].state, INFSIM_REQ_FINISHED);
    assert_int_equal(ra[i].instance, rb[i].instance);
    assert_int_equal(ra[i].preemptions, rb[i].preemptions);
    if (llabs(ra[i].finish_ns - rb[i].finish_ns) > 1000 || llabs(ra[i].first_token_ns - rb[i].first_token_ns) > 1000)
      fail_msg("%s: request %zu finishes at %lld (macro) vs %lld ns (single)", knob, i, (long long)ra[i].finish_ns,
               (long long)rb[i].finish_ns);
  }
  infsim_run_result_free(a);
  infsim_run_result_free(b);
  infsim_trace_free(&t);
}

static void test_macro_steps_equal_single_steps_with_borrowing(void **state) {
  (void)state;
  check_macro_equals_single("policy.dgfm=true");
  check_macro_equals_single("policy.dgfm=false");
  check_macro_equals_single("policy.heartbeat_ms=5");
}

/* One 400,000-token prompt (25,000 blocks of LLaMA2-7B: more than three
 * A100-80GB instances hold) on four instances, `per_node` to a node, NIC
 * 25 GB/s, NVLink 300 GB/s: its owner i0 holds part of its KV and i1, i2,
 * i3 the rest. Every decode step of the owner (single steps, DGFM off, no
 * other traffic) equals the sum by hand in which each route's queries and
 * partials go at the share the step's transfers get on shared links:
 * nic_share[j] of the NIC (holders across nodes share the owner's node's
 * NIC: its way out for the queries, its way in for the partials), or the
 * whole NVLink for a holder on the owner's node (NVLink up and down, not
 * the NIC). Holder j's context is its lent blocks (timeseries.csv) x 16. */
static void check_owner_nic_shared(const char *per_node, const double *share) {
  const char *const settings[] = {"model=llama2-7b", "gpu=a100-80gb", "cluster.instances=4", per_node,
                                  "cluster.inter_node_GBps=25", "cluster.intra_node_GBps=300",
                                  "policy.name=infinite-llm", "policy.dgfm=false", "scheduler.max_steps_per_event=1",
                                  "metrics.iterations=true", "metrics.sample_interval_s=0.05", NULL};
  infsim_run_params p = fixture_params(settings);
  infsim_trace t = {0};
  fixture_add(&t, 0, 400000, 40);
  infsim_run_result *res = fixture_run(&p, &t);
  size_t n = 0;
  const infsim_request_record *r = infsim_run_result_requests(res, &n);
  assert_int_equal(r[0].state, INFSIM_REQ_FINISHED);
  assert_int_equal(r[0].instances_touched, 4);
  /* the holders' blocks, once the prompt is in (they stay put while it decodes) */
  int64_t lent[4] = {0};
  const infsim_sample_row *smp = infsim_run_result_samples(res, &n);
  for (size_t i = 0; i < n; i++)
    if (smp[i].time_ns >= r[0].first_token_ns && smp[i].time_ns <= r[0].finish_ns)
      lent[smp[i].instance] = smp[i].kv_lent_blocks;
  assert_true(lent[1] > 0 && lent[2] > 0 && lent[3] > 0 && lent[0] == 0);

  infsim_cost_model cm;
  fixture_a100_roofline(&p, &cm);
  const infsim_cost_curves *c = &cm.curves;
  double layers = (double)p.model.layers;
  double bytes = 32.0 * 128 * 2 + 32.0 * 129 * 2; /* query out, partial + LSE back, fp16 */
  const infsim_iteration_row *rows = infsim_run_result_iterations(res, &n);
  int checked = 0;
  for (size_t i = 0; i < n; i++) {
    const infsim_iteration_row *row = &rows[i];
    if (row->instance != 0 || row->agg.prefill_tokens > 0 || row->agg.remote_partials == 0) continue;
    assert_int_equal(row->agg.remote_partials, 3);
    assert_int_equal(row->agg.remote_context_tokens, 16 * (lent[1] + lent[2] + lent[3]));
    infsim_decode_run run;
    infsim_cost_decode_run_init(&cm, 1, &run);
    int64_t base = infsim_cost_decode_run_ns(&cm, &run, row->agg.decode_context_tokens, 1);
    double a = c->decode_attn_layer_ns(c->self, 1, row->agg.decode_context_tokens), remote = 0;
    for (int j = 1; j < 4; j++) {
      /* both ways: 2 links of 5 us, the bytes at the route's share */
      double wire = 2.0 * (2.0 * 5000) + bytes / share[j] * 1e9;
      remote = fmax(remote, wire + c->decode_attn_layer_ns(c->self, 1, 16 * lent[j]));
    }
    double want = (double)base + layers * (fmax(a, remote) - a + c->merge_layer_ns(c->self, 1, 4));
    if (fabs((double)(row->end_ns - row->start_ns) - want) > 1.0)
      fail_msg("%s: step at %.6f s: %lld ns, by hand %.1f ns", per_node, (double)row->start_ns * 1e-9,
               (long long)(row->end_ns - row->start_ns), want);
    checked++;
  }
  assert_true(checked >= 30);
  infsim_cost_model_destroy(&cm);
  infsim_run_result_free(res);
  infsim_trace_free(&t);
}

/* A node per instance: the three partials come in at 25/3 GB/s each
 * (and the queries leave at as much). Two instances a node: i1's traffic
 * stays on NVLink (300 GB/s), i2 and i3 share the NIC, 12.5 GB/s each. */
static void test_owner_nic_shared_by_its_holders(void **state) {
  (void)state;
  const double apart[4] = {0, 25e9 / 3, 25e9 / 3, 25e9 / 3}, pairs[4] = {0, 300e9, 12.5e9, 12.5e9};
  check_owner_nic_shared("cluster.gpus_per_node=1", apart);
  check_owner_nic_shared("cluster.gpus_per_node=2", pairs);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_split_decode_step_by_hand),
      cmocka_unit_test(test_split_request_traffic_counted),
      cmocka_unit_test(test_macro_steps_equal_single_steps_with_borrowing),
      cmocka_unit_test(test_owner_nic_shared_by_its_holders),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
