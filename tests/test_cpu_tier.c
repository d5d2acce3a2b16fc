/*
** test_cpu_tier.c: host memory as a KV creditor (policy.cpu_tier,
** sched/cpu_tier.c) against hand-computed truth.
**
** One LLaMA2-7B instance on A100-80GB with a fifth of the memory (a few
** hundred blocks) and 8 GiB of host memory; one prompt 100 blocks longer
** than the instance holds. No other GPU can lend:
**  - with the tier off it is rejected (kv_capacity);
**  - with a second instance to lend, host memory is not used (it is last);
**  - with it on the prompt gathers its first blocks in host memory and
**    completes, and every decode step of it equals the sum computed here
**    from the curves and the links, per layer max(local MA, R) + merge:
**      ma:    R = 2 x 5 us + (query + partial, fp16) / 25 GB/s
**                 + host KV bytes / 100 GB/s (cluster.cpu_attn_GBps),
**      fetch: R = 5 us + host KV bytes / 25 GB/s + decode_attn(1, host tokens),
**    25 GB/s being cluster.pcie_GBps's default on an A100 host;
**  - with a small request beside it, macro-steps equal single steps
**    (finish times within 1 us);
**  - recall: a request whose newest blocks went to host memory to make
**    room for a second one gets them back once the second finishes (its
**    whole host part fits the GPU with the reserve and the recall
**    headroom kept), no earlier than the copy over PCIe takes (bytes /
**    25 GB/s + 5 us), and decodes from then on with no host partial;
**    policy.cpu_tier_recall: false keeps them in host memory to its end;
**  - the node's CPU memory bandwidth is shared: two instances of one node
**    each decode a request with 93 blocks in host memory at once
**    (recall off); every decode step equals the sum by hand with the CPU
**    MA at 100 GB/s / m, m the instances of the node whose steps attend
**    host KV at its start (from the iteration rows: 2 while both do).
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

static infsim_run_result *run_steps(const char *instances, const char *tier, const char *steps, bool small,
                                    infsim_run_params *p, infsim_trace *t) {
  const char *const settings[] = {"model=llama2-7b", "gpu=a100-80gb", instances,
                                  "scheduler.gpu_memory_utilization=0.2", "cluster.host_memory_gib=8",
                                  "policy.name=infinite-llm", steps, "metrics.iterations=true", tier, NULL};
  *p = fixture_params(settings);
  infsim_sched_params sp;
  if (infsim_run_sched_params(p, &sp, NULL) != INFSIM_OK) abort();
  *t = (infsim_trace){0};
  fixture_add(t, 0, (sp.gpu_blocks_per_instance + 100) * 16, 40);
  if (small) fixture_add(t, 200000000, 300, 300); /* a small one beside it */
  return fixture_run(p, t);
}

static infsim_run_result *run_on(const char *instances, const char *tier, infsim_run_params *p, infsim_trace *t) {
  return run_steps(instances, tier, "scheduler.max_steps_per_event=1", false, p, t);
}

/* Macro-steps equal single steps with host memory holding KV (the
 * oversized prompt and a small request beside it). */
static void test_macro_steps_equal_single_steps(void **state) {
  (void)state;
  infsim_run_params pa, pb;
  infsim_trace ta, tb;
  infsim_run_result *a =
      run_steps("cluster.instances=1", "policy.cpu_tier=ma", "scheduler.max_steps_per_event=0", true, &pa, &ta);
  infsim_run_result *b =
      run_steps("cluster.instances=1", "policy.cpu_tier=ma", "scheduler.max_steps_per_event=1", true, &pb, &tb);
  assert_true(infsim_run_result_counters(a)->events < infsim_run_result_counters(b)->events);
  size_t n = 0;
  const infsim_request_record *ra = infsim_run_result_requests(a, &n), *rb = infsim_run_result_requests(b, &n);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(ra[i].state, INFSIM_REQ_FINISHED);
    if (llabs(ra[i].finish_ns - rb[i].finish_ns) > 1000 || llabs(ra[i].first_token_ns - rb[i].first_token_ns) > 1000)
      fail_msg("request %zu finishes at %lld (macro) vs %lld ns (single)", i, (long long)ra[i].finish_ns,
               (long long)rb[i].finish_ns);
  }
  infsim_run_result_free(a);
  infsim_run_result_free(b);
  infsim_trace_free(&ta);
  infsim_trace_free(&tb);
}

/* The cost curves the runs here price with (the roofline of one A100-80GB
 * per instance, as the tests name no calibration DB), for the sums by hand. */
static const infsim_cost_curves *roofline_curves(const infsim_run_params *p, infsim_cost_model *cm) {
  infsim_instance_layout layout = {.tp = 1, .pp = 1, .iteration_overhead_ns = p->iteration_overhead_ns,
                                   .link_latency_ns = p->link_latency_ns};
  assert_int_equal(infsim_cost_model_build("a100-80gb", "/nonexistent.db", false, &p->model, &layout, &p->roofline,
                                           cm, NULL),
                   INFSIM_OK);
  return &cm->curves;
}

static infsim_run_result *run_tier(const char *tier, infsim_run_params *p, infsim_trace *t) {
  return run_on("cluster.instances=1", tier, p, t);
}

/* Host memory comes last: with a second GPU to lend, it is not used. */
static void test_gpu_creditor_first(void **state) {
  (void)state;
  infsim_run_params p;
  infsim_trace t;
  infsim_run_result *res = run_on("cluster.instances=2", "policy.cpu_tier=ma", &p, &t);
  size_t n = 0;
  const infsim_request_record *r = infsim_run_result_requests(res, &n);
  assert_int_equal(r[0].state, INFSIM_REQ_FINISHED);
  infsim_distkv_stats dk;
  assert_true(infsim_run_result_distkv(res, &dk));
  assert_true(infsim_run_result_counters(res)->borrowed_blocks_peak >= 100);
  assert_int_equal(dk.host_blocks, 0);
  infsim_run_result_free(res);
  infsim_trace_free(&t);
}

static void test_off_rejects(void **state) {
  (void)state;
  infsim_run_params p;
  infsim_trace t;
  infsim_run_result *res = run_tier("policy.cpu_tier=off", &p, &t);
  size_t n = 0;
  const infsim_request_record *r = infsim_run_result_requests(res, &n);
  assert_int_equal(r[0].state, INFSIM_REQ_REJECTED);
  assert_int_equal(r[0].reason, INFSIM_REJECT_KV_CAPACITY);
  infsim_run_result_free(res);
  infsim_trace_free(&t);
}

static void check_steps(const char *tier, bool fetch) {
  infsim_run_params p;
  infsim_trace t;
  infsim_run_result *res = run_tier(tier, &p, &t);
  size_t n = 0;
  const infsim_request_record *r = infsim_run_result_requests(res, &n);
  assert_int_equal(r[0].state, INFSIM_REQ_FINISHED);
  assert_int_equal(r[0].preemptions, 0);
  infsim_distkv_stats dk;
  assert_true(infsim_run_result_distkv(res, &dk));
  assert_true(dk.host_moves >= 1 && dk.host_blocks >= 100); /* fresh blocks for the prompt's first 100+ */

  infsim_cost_model cm;
  const infsim_cost_curves *c = roofline_curves(&p, &cm);
  double layers = 32.0, pcie = 25e9, cpu = 100e9, lat = 5000.0;
  double kv_per_token = 2.0 * 32 * 128 * 2;         /* K and V of one token, one layer, fp16 */
  double wire = 32.0 * 128 * 2 + 32.0 * 129 * 2;   /* query out, partial + LSE back, fp16 */
  const infsim_iteration_row *rows = infsim_run_result_iterations(res, &n);
  int checked = 0;
  for (size_t i = 0; i < n; i++) {
    const infsim_iteration_row *row = &rows[i];
    if (row->agg.prefill_tokens > 0 || row->agg.remote_partials == 0) continue;
    assert_int_equal(row->agg.decode_requests, 1);
    double host_tokens = (double)row->agg.remote_context_tokens;
    infsim_decode_run run;
    infsim_cost_decode_run_init(&cm, 1, &run);
    int64_t base = infsim_cost_decode_run_ns(&cm, &run, row->agg.decode_context_tokens, 1);
    double a = c->decode_attn_layer_ns(c->self, 1, row->agg.decode_context_tokens);
    double remote = fetch ? lat + host_tokens * kv_per_token / pcie * 1e9 +
                                c->decode_attn_layer_ns(c->self, 1, row->agg.remote_context_tokens)
                          : 2 * lat + wire / pcie * 1e9 + host_tokens * kv_per_token / cpu * 1e9;
    double want = (double)base + layers * (fmax(a, remote) - a + c->merge_layer_ns(c->self, 1, 2));
    if (fabs((double)(row->end_ns - row->start_ns) - want) > 1.0)
      fail_msg("%s: step at %.6f s: %lld ns, by hand %.1f ns", tier, (double)row->start_ns * 1e-9,
               (long long)(row->end_ns - row->start_ns), want);
    checked++;
  }
  assert_int_equal(checked, 39); /* every decode step after the prompt's */
  infsim_cost_model_destroy(&cm);
  infsim_run_result_free(res);
  infsim_trace_free(&t);
}

static void test_ma_step_by_hand(void **state) {
  (void)state;
  check_steps("policy.cpu_tier=ma", false);
}

static void test_fetch_step_by_hand(void **state) {
  (void)state;
  check_steps("policy.cpu_tier=fetch", true);
}

/* One instance of C blocks (300), CPU tier ma: R (C/2 blocks of prompt,
 * 1,500 tokens out) decodes; S (C/2 + 60 blocks, 20 out) arrives at 0.2 s
 * and is short: R's newest blocks go to host memory (the shortfall and
 * policy.borrow_ahead_blocks). S finishes within a second; R then has
 * room for its host part, 10% headroom and the 5% reserve to spare. */
static infsim_run_result *run_recall(const char *recall, int64_t *block_bytes, infsim_trace *t) {
  const char *const settings[] = {"model=llama2-7b", "gpu=a100-80gb", "cluster.instances=1",
                                  "scheduler.gpu_memory_utilization=0.2", "cluster.host_memory_gib=8",
                                  "policy.name=infinite-llm", "policy.cpu_tier=ma", "metrics.iterations=true",
                                  recall, NULL};
  infsim_run_params p = fixture_params(settings);
  infsim_sched_params sp;
  if (infsim_run_sched_params(&p, &sp, NULL) != INFSIM_OK) abort();
  *block_bytes = sp.block_bytes;
  int64_t c = sp.gpu_blocks_per_instance;
  *t = (infsim_trace){0};
  fixture_add(t, 0, c / 2 * 16, 1500);
  fixture_add(t, 200000000, (c / 2 + 60) * 16, 20);
  return fixture_run(&p, t);
}

static void test_host_blocks_recalled(void **state) {
  (void)state;
  infsim_trace ton, toff;
  int64_t bb = 0;
  infsim_run_result *on = run_recall("policy.cpu_tier_recall=true", &bb, &ton);
  infsim_run_result *off = run_recall("policy.cpu_tier_recall=false", &bb, &toff);
  size_t n = 0;
  const infsim_request_record *a = infsim_run_result_requests(on, &n), *b = infsim_run_result_requests(off, &n);
  for (size_t k = 0; k < n; k++) {
    assert_int_equal(a[k].state, INFSIM_REQ_FINISHED);
    assert_int_equal(b[k].state, INFSIM_REQ_FINISHED);
  }
  infsim_distkv_stats da, db;
  assert_true(infsim_run_result_distkv(on, &da) && infsim_run_result_distkv(off, &db));
  int64_t host = da.host_blocks;
  assert_true(host > 60 && host == db.host_blocks);
  assert_int_equal(da.recalls, 1);
  assert_int_equal(db.recalls, 0);
  /* Both ways over PCIe with the recall, one way without. */
  assert_int_equal(da.host_moved_bytes, 2 * host * bb);
  assert_int_equal(db.host_moved_bytes, host * bb);
  /* The first step of R with no host part starts no earlier than S's end
   * plus the copy; every step of R after it has none, every one between
   * S's admission and it had one. */
  double copy_ns = (double)(host * bb) / 25e9 * 1e9 + 5000.0;
  const infsim_iteration_row *rows = infsim_run_result_iterations(on, &n);
  int64_t home_ns = -1;
  for (size_t i = 0; i < n; i++) {
    const infsim_iteration_row *row = &rows[i];
    if (row->start_ns < a[1].finish_ns || row->agg.prefill_tokens > 0) continue;
    if (home_ns < 0 && row->agg.remote_partials == 0) home_ns = row->start_ns;
    if (home_ns >= 0) assert_int_equal(row->agg.remote_partials, 0);
  }
  assert_true(home_ns >= 0 && (double)home_ns >= (double)a[1].finish_ns + copy_ns);
  assert_true(home_ns < a[0].finish_ns);
  const infsim_iteration_row *rows_off = infsim_run_result_iterations(off, &n);
  for (size_t i = 0; i < n; i++)
    if (rows_off[i].start_ns > b[1].finish_ns && rows_off[i].agg.prefill_tokens == 0)
      assert_int_equal(rows_off[i].agg.remote_partials, 1);
  /* Attended on the GPU again, R ends sooner. */
  assert_true(a[0].finish_ns < b[0].finish_ns);
  infsim_run_result_free(on);
  infsim_run_result_free(off);
  infsim_trace_free(&ton);
  infsim_trace_free(&toff);
}

/* Two instances of one node, each the recall scenario's R and S at the
 * same times (S one blocks short on each: neither GPU lends, each keeps
 * its memory for its own queued S, policy.own_work_first), single steps,
 * recall off: both R decode with 93 blocks in host memory for 600 steps. */
static void test_cpu_attn_shared_per_node(void **state) {
  (void)state;
  const char *const settings[] = {"model=llama2-7b", "gpu=a100-80gb", "cluster.instances=2",
                                  "scheduler.gpu_memory_utilization=0.2", "cluster.host_memory_gib=8",
                                  "policy.name=infinite-llm", "policy.cpu_tier=ma", "policy.cpu_tier_recall=false",
                                  "scheduler.max_steps_per_event=1", "metrics.iterations=true", NULL};
  infsim_run_params p = fixture_params(settings);
  infsim_sched_params sp;
  if (infsim_run_sched_params(&p, &sp, NULL) != INFSIM_OK) abort();
  int64_t cap = sp.gpu_blocks_per_instance;
  infsim_trace t = {0};
  fixture_add(&t, 0, cap / 2 * 16, 600);
  fixture_add(&t, 1000000, cap / 2 * 16, 600);
  fixture_add(&t, 200000000, (cap / 2 + 60) * 16, 20);
  fixture_add(&t, 200000000, (cap / 2 + 60) * 16, 20);
  infsim_run_result *res = fixture_run(&p, &t);
  size_t n = 0;
  const infsim_request_record *r = infsim_run_result_requests(res, &n);
  for (size_t k = 0; k < n; k++) assert_int_equal(r[k].state, INFSIM_REQ_FINISHED);
  assert_int_not_equal(r[0].instance, r[1].instance);

  infsim_cost_model cm;
  const infsim_cost_curves *c = roofline_curves(&p, &cm);
  double layers = 32.0, pcie = 25e9, cpu = 100e9, lat = 5000.0;
  double kv_per_token = 2.0 * 32 * 128 * 2;       /* K and V of one token, one layer, fp16 */
  double wire = 32.0 * 128 * 2 + 32.0 * 129 * 2; /* query out, partial + LSE back, fp16 */
  const infsim_iteration_row *rows = infsim_run_result_iterations(res, &n);
  int shared = 0, alone = 0;
  for (size_t i = 0; i < n; i++) {
    const infsim_iteration_row *row = &rows[i];
    if (row->agg.prefill_tokens > 0 || row->agg.remote_partials == 0) continue;
    assert_int_equal(row->agg.remote_partials, 1);
    /* m: this instance and each other one whose step attending host KV
     * (a decode step, or a prompt batch's decodes) is in flight or ends
     * at this step's start. */
    double m = 1;
    for (size_t j = 0; j < n; j++)
      if (rows[j].instance != row->instance && rows[j].agg.remote_partials > 0 &&
          rows[j].start_ns <= row->start_ns && row->start_ns <= rows[j].end_ns) {
        m = 2;
        break;
      }
    int64_t nd = row->agg.decode_requests;
    infsim_decode_run run;
    infsim_cost_decode_run_init(&cm, nd, &run);
    int64_t base = infsim_cost_decode_run_ns(&cm, &run, row->agg.decode_context_tokens, 1);
    double a = c->decode_attn_layer_ns(c->self, nd, row->agg.decode_context_tokens);
    double remote =
        2 * lat + wire / pcie * 1e9 + (double)row->agg.remote_context_tokens * kv_per_token / (cpu / m) * 1e9;
    double want = (double)base + layers * (fmax(a, remote) - a + c->merge_layer_ns(c->self, 1, 2));
    if (fabs((double)(row->end_ns - row->start_ns) - want) > 1.0)
      fail_msg("instance %d, step at %.6f s: %lld ns, by hand %.1f ns (m = %g)", row->instance,
               (double)row->start_ns * 1e-9, (long long)(row->end_ns - row->start_ns), want, m);
    if (m == 2)
      shared++;
    else
      alone++;
  }
  /* Both decode with host KV for most of their 600 steps. */
  assert_true(shared > 1000);
  infsim_cost_model_destroy(&cm);
  infsim_run_result_free(res);
  infsim_trace_free(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_off_rejects),
      cmocka_unit_test(test_gpu_creditor_first),
      cmocka_unit_test(test_macro_steps_equal_single_steps),
      cmocka_unit_test(test_ma_step_by_hand),
      cmocka_unit_test(test_fetch_step_by_hand),
      cmocka_unit_test(test_host_blocks_recalled),
      cmocka_unit_test(test_cpu_attn_shared_per_node),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
