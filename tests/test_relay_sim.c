/*
** test_relay_sim.c: node relay (policy.distattn_relay: node, distattn.h) in
** the simulator against sums worked out here.
**
** Two nodes of four instances (25 GB/s NIC, 300 GB/s NVLink, 5 us a
** link), round-robin dispatch: long fillers keep instances 1-3 of node 0
** full, so a 400K-token prompt on instance 0 gathers its blocks at
** instances 4, 5 and 6 of node 1 (greedy, the most spare first). Every
** decode step of it, to the ns:
**  - relay on: the query crosses the owner's NIC once (alone on it: 25
**    GB/s), instance 4 (its first holder) forwards it to 5 and 6 over its
**    NVLink (two hops sharing its up and down links: 150 GB/s each),
**    merges the three partials and sends one back; the owner merges its
**    own and the node's: R = 10 us + Q / 25 + max(MA_4, 20 us + (Q + P) /
**    150 + MA_i) + merge(1, 3) + 10 us + P / 25, merge(1, 2) at the owner;
**  - relay off: each holder gets its own copy at a third of the NIC
**    (25/3 GB/s each way), merge(1, 4): today's formula.
** And the links: with relay, instance 4's NVLink up carries the fan-out
** (none without) and the owner's NIC out carries less.
*/
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sim_fixture.h"

typedef struct {
  int64_t lent[8];
  int checked;
  double nvlink_up_4, nic_out_0;
} relay_case;

static relay_case run_case(const char *relay) {
  const char *const settings[] = {"model=llama2-7b", "gpu=a100-80gb", "cluster.instances=8",
                                  "cluster.gpus_per_node=4", "cluster.inter_node_GBps=25",
                                  "cluster.intra_node_GBps=300", "policy.name=infinite-llm", "policy.dgfm=false",
                                  "policy.dispatch=round-robin", relay, "scheduler.max_steps_per_event=1",
                                  "metrics.iterations=true", "metrics.sample_interval_s=0.05", NULL};
  infsim_run_params p = fixture_params(settings);
  infsim_trace t = {0};
  fixture_add(&t, 0, 1000, 4); /* instance 0, gone before the long prompt */
  for (int i = 1; i < 4; i++) fixture_add(&t, 0, 100000, 10000); /* 6,875 of 6,976 blocks at the end */
  for (int i = 4; i < 8; i++) fixture_add(&t, 0, 1000, 4);
  fixture_add(&t, (int64_t)60e9, 400000, 40); /* request 8: instance 0 */
  infsim_run_result *res = fixture_run(&p, &t);
  size_t n = 0;
  const infsim_request_record *r = infsim_run_result_requests(res, &n);
  assert_int_equal(r[8].state, INFSIM_REQ_FINISHED);
  for (int i = 1; i < 4; i++) assert_true(r[i].finish_ns > r[8].finish_ns); /* node 0 full throughout */
  relay_case out = {0};
  const infsim_sample_row *smp = infsim_run_result_samples(res, &n);
  for (size_t i = 0; i < n; i++)
    if (smp[i].time_ns >= r[8].first_token_ns && smp[i].time_ns <= r[8].finish_ns)
      out.lent[smp[i].instance] = smp[i].kv_lent_blocks;
  for (int i = 0; i < 8; i++) assert_true((out.lent[i] > 0) == (i >= 4 && i <= 6));

  infsim_instance_layout layout = {.tp = 1, .pp = 1, .iteration_overhead_ns = p.iteration_overhead_ns,
                                   .link_latency_ns = p.link_latency_ns};
  infsim_cost_model cm;
  assert_int_equal(infsim_cost_model_build("a100-80gb", "/nonexistent.db", false, &p.model, &layout, &p.roofline, NULL,
                                           &cm, NULL),
                   INFSIM_OK);
  const infsim_cost_curves *c = &cm.curves;
  double layers = (double)p.model.layers, q = 32.0 * 128 * 2, pa = 32.0 * 129 * 2; /* fp16 query, partial + LSE */
  double ma[8] = {0};
  for (int j = 4; j <= 6; j++) ma[j] = c->decode_attn_layer_ns(c->self, 1, 16 * out.lent[j]);
  bool on = strcmp(relay, "policy.distattn_relay=node") == 0;
  const infsim_iteration_row *rows = infsim_run_result_iterations(res, &n);
  for (size_t i = 0; i < n; i++) {
    const infsim_iteration_row *row = &rows[i];
    if (row->instance != 0 || row->agg.prefill_tokens > 0 || row->agg.remote_partials == 0) continue;
    assert_int_equal(row->agg.remote_partials, 3);
    assert_int_equal(row->agg.decode_requests, 1);
    infsim_decode_run run;
    infsim_cost_decode_run_init(&cm, 1, &run);
    int64_t base = infsim_cost_decode_run_ns(&cm, &run, row->agg.decode_context_tokens, 1);
    double a = c->decode_attn_layer_ns(c->self, 1, row->agg.decode_context_tokens), remote = 0, merge = 0;
    if (on) {
      double in = 10000 + q / 25e9 * 1e9, done = in + ma[4];
      for (int j = 5; j <= 6; j++) done = fmax(done, in + 20000 + (q + pa) / 150e9 * 1e9 + ma[j]);
      remote = done + c->merge_layer_ns(c->self, 1, 3) + 10000 + pa / 25e9 * 1e9;
      merge = c->merge_layer_ns(c->self, 1, 2);
    } else {
      for (int j = 4; j <= 6; j++) remote = fmax(remote, 20000 + (q + pa) / (25e9 / 3) * 1e9 + ma[j]);
      merge = c->merge_layer_ns(c->self, 1, 4);
    }
    double want = (double)base + layers * (fmax(a, remote) - a + merge);
    if (fabs((double)(row->end_ns - row->start_ns) - want) > 1.0)
      fail_msg("%s: step at %.6f s: %lld ns, by hand %.1f ns", relay, (double)row->start_ns * 1e-9,
               (long long)(row->end_ns - row->start_ns), want);
    out.checked++;
  }
  assert_true(out.checked >= 30);
  /* links.csv: instance 4's NVLink up is link 16; node 0's NIC out is 4 x 8 */
  const infsim_network *net = infsim_run_result_network(res);
  infsim_link_info up4 = infsim_network_link(net, 16), nic0 = infsim_network_link(net, 32);
  assert_string_equal(up4.src, "i4");
  assert_string_equal(nic0.src, "sw0");
  assert_int_equal(nic0.kind, INFSIM_LINK_NIC);
  out.nvlink_up_4 = up4.bytes;
  out.nic_out_0 = nic0.bytes;
  infsim_cost_model_destroy(&cm);
  infsim_run_result_free(res);
  infsim_trace_free(&t);
  return out;
}

static void test_relay_on_and_off(void **state) {
  (void)state;
  relay_case off = run_case("policy.distattn_relay=none"), on = run_case("policy.distattn_relay=node");
  for (int i = 0; i < 8; i++) assert_int_equal(on.lent[i], off.lent[i]); /* the same placement */
  assert_true(off.nvlink_up_4 == 0.0); /* nothing crosses node 1's NVLink without relay */
  assert_true(on.nvlink_up_4 > 0.0);
  assert_true(on.nic_out_0 < off.nic_out_0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_relay_on_and_off),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
