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
**    host KV at its start (from the iteration rows: 2 while both do);
**  - a move to host memory whose request ends on the way is cancelled:
**    over a PCIe link of 0.1 GB/s (the recall scenario's move of R's
**    blocks takes seconds), R finishes while its blocks are on the way:
**    the host pool's reservation is free at R's end (not at the landing,
**    seconds later), the link carried exactly R's bytes up to then
**    (summed by hand from the protocol's hops: the borrow request with
**    its report and the gManager's answer before the copy), nothing
**    lands, nothing is left reserved or in flight;
**  - the same when R is preempted by recompute on the way (R alone fills
**    its GPU before its copy lands and preempts itself): the link carries
**    R's bytes up to the preemption plus the moves that landed.
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

#include "distkv_fixture.h"
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
  fixture_a100_roofline(p, cm);
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

/* What a run looked like at each tick of its watch, as of the event
 * handled last (at now_ns): the host pool's blocks reserved for moves in
 * flight (high-water mark cpu_tier_reserved's final), the bytes its
 * PCIe link up from instance 0 has carried, and the watched request's
 * state. */
typedef struct {
  int64_t now_ns, reserved, preemptions;
  double pcie_up_bytes;
  int32_t state;
} tick_row;

typedef struct {
  tick_row *row;
  size_t n, cap;
  size_t req; /* the request watched */
} tick_log;

/* Bytes on the PCIe link from instance 0 up to its host (links.csv). */
static double pcie_up_bytes(const infsim_network *net) {
  for (int32_t l = 0; l < (int32_t)infsim_network_link_count(net); l++) {
    infsim_link_info li = infsim_network_link(net, l);
    if (li.kind == INFSIM_LINK_PCIE && strcmp(li.src, "i0") == 0 && strcmp(li.dst, "h0") == 0) return li.bytes;
  }
  fail_msg("no PCIe link i0 -> h0");
  return 0;
}

static void on_tick(void *self, const infsim_sim *s, int64_t at_ns) {
  tick_log *log = self;
  infsim_high_water_set hw;
  infsim_sim_high_water(s, &hw);
  int64_t reserved = -1;
  for (int i = 0; i < hw.count; i++)
    if (strcmp(hw.mark[i].name, "cpu_tier_reserved") == 0) reserved = hw.mark[i].final;
  assert_true(reserved >= 0);
  size_t n = 0;
  const infsim_request_record *r = infsim_sim_requests(s, &n);
  if (log->n == log->cap) {
    log->cap = log->cap ? 2 * log->cap : 4096;
    log->row = realloc(log->row, log->cap * sizeof *log->row);
    assert_non_null(log->row);
  }
  (void)at_ns;
  log->row[log->n++] = (tick_row){infsim_sim_now_ns(s), reserved, r[log->req].preemptions,
                                  pcie_up_bytes(infsim_sim_network(s)), r[log->req].state};
}

enum { TICK_NS = 100000 }; /* far below a step (milliseconds): one batch boundary per tick at most */

typedef struct {
  int64_t at_ns, blocks, out;
} arrival;

/* One instance of 300 blocks, CPU tier ma over PCIe at 0.1 GB/s; the
 * requests a[0..n) (the last one is S, found short when it arrives: a
 * request's newest blocks start for host memory), request `watched`
 * watched every TICK_NS. */
static infsim_run_result *run_slow_pcie(const arrival *a, size_t n, size_t watched, const char *extra,
                                        int64_t *block_bytes, infsim_trace *t, tick_log *log) {
  const char *const settings[] = {"model=llama2-7b", "gpu=a100-80gb", "cluster.instances=1",
                                  "scheduler.gpu_memory_utilization=0.2", "cluster.host_memory_gib=8",
                                  "cluster.pcie_GBps=0.1", "policy.name=infinite-llm", "policy.cpu_tier=ma",
                                  "metrics.iterations=true", extra, NULL};
  infsim_run_params p = fixture_params(settings);
  infsim_sched_params sp;
  if (infsim_run_sched_params(&p, &sp, NULL) != INFSIM_OK) abort();
  assert_int_equal(sp.gpu_blocks_per_instance, 300);
  *block_bytes = sp.block_bytes;
  *t = (infsim_trace){0};
  for (size_t k = 0; k < n; k++) fixture_add(t, a[k].at_ns, a[k].blocks * 16, a[k].out);
  *log = (tick_log){.req = watched};
  infsim_sim_watch watch = {.self = log, .every_ns = TICK_NS, .tick = on_tick};
  infsim_run_result *res = NULL;
  infsim_error err = {0};
  assert_int_equal(infsim_run_simulate_watched(&p, t, NULL, &watch, &res, &err), INFSIM_OK);
  return res;
}

/* When the copy to host memory leaves (the sum by hand): S is found short
 * at the first batch boundary after its arrival (the start of the next
 * row); its borrow request (a control message of 64 B carrying the
 * debtor's report, 24 B an entry: none here, nothing is split) crosses
 * the PCIe link to the gManager at node 0's host (5 us + 64 B at 0.1
 * GB/s), whose answer (64 B: no creditor) comes back the same way; the
 * copy leaves then, and its first byte is on the link 5 us later. */
static int64_t copy_first_byte_ns(const infsim_run_result *res, int64_t s_at_ns) {
  size_t n = 0;
  const infsim_iteration_row *rows = infsim_run_result_iterations(res, &n);
  int64_t short_ns = -1;
  for (size_t i = 0; i < n && short_ns < 0; i++)
    if (rows[i].start_ns >= s_at_ns) short_ns = rows[i].start_ns;
  assert_true(short_ns >= 0);
  return short_ns + (5000 + 640) + (5000 + 640) + 5000;
}

/* Nothing is left at the end: no block reserved, in host memory or on a
 * GPU, no protocol record, message or flow. */
static void check_nothing_left(const infsim_run_result *res) {
  infsim_high_water_set hw;
  infsim_run_result_high_water(res, &hw);
  const char *const drained[] = {"cpu_tier_reserved", "kv_host_blocks", "kv_gpu_blocks", "contract_borrows",
                                 "contract_reservations", "messages_in_flight", "network_flows"};
  for (size_t k = 0; k < sizeof drained / sizeof *drained; k++) {
    bool found = false;
    for (int i = 0; i < hw.count; i++)
      if (strcmp(hw.mark[i].name, drained[k]) == 0) {
        found = true;
        if (hw.mark[i].final != 0) fail_msg("%s: %lld left", drained[k], (long long)hw.mark[i].final);
      }
    assert_true(found);
  }
}

/* R: 150 blocks of prompt, 60 tokens out; S: 210 blocks at 0.2 s. S's
 * shortfall (61 blocks) plus policy.borrow_ahead_blocks (32) of R go to
 * host memory: 93 blocks of 8 MiB, 7.8 s at 0.1 GB/s. R finishes about
 * half a second after S's arrival: the move is cancelled then. */
static void test_host_move_cancelled_when_request_ends(void **state) {
  (void)state;
  int64_t bb = 0;
  infsim_trace t;
  tick_log log;
  const arrival a[] = {{0, 150, 60}, {200000000, 210, 20}};
  infsim_run_result *res = run_slow_pcie(a, 2, 0, "policy.cpu_tier_recall=true", &bb, &t, &log);
  size_t n = 0;
  const infsim_request_record *r = infsim_run_result_requests(res, &n);
  assert_int_equal(r[0].state, INFSIM_REQ_FINISHED);
  assert_int_equal(r[1].state, INFSIM_REQ_FINISHED);
  int64_t first_ns = copy_first_byte_ns(res, a[1].at_ns), end_ns = r[0].finish_ns;
  assert_true(end_ns > first_ns && end_ns < first_ns + 93 * bb * 10); /* 10 ns a byte: it had not landed */
  /* Reserved from the copy's start to R's end, free from R's end on (seen
   * at the event of R's end itself). */
  int before = 0, at_end = 0;
  for (size_t k = 0; k < log.n; k++) {
    const tick_row *row = &log.row[k];
    if (row->now_ns > first_ns && row->now_ns < end_ns) {
      assert_int_equal(row->reserved, 93);
      before++;
    }
    if (row->now_ns >= end_ns) assert_int_equal(row->reserved, 0);
    at_end += row->now_ns == end_ns;
  }
  assert_true(before > 0 && at_end > 0);
  /* The link carried the copy's bytes up to R's end, no more. */
  double carried = (double)(end_ns - first_ns) * 0.1;
  if (fabs(pcie_up_bytes(infsim_run_result_network(res)) - carried) > 1.0)
    fail_msg("i0 -> h0: %.0f bytes, by hand %.0f", pcie_up_bytes(infsim_run_result_network(res)), carried);
  infsim_distkv_stats dk;
  assert_true(infsim_run_result_distkv(res, &dk));
  assert_int_equal(dk.kv_moves_cancelled, 1);
  assert_int_equal(dk.host_moves, 0);
  assert_int_equal(dk.host_blocks, 0);
  check_nothing_left(res);
  free(log.row);
  infsim_run_result_free(res);
  infsim_trace_free(&t);
}

/* A (100 blocks of prompt) and R (190, arriving after A) decode; S (50
 * blocks) arrives at 0.5 s, short: that and the 32 ahead, of R (the
 * request with the most blocks), go to host memory: over 70 blocks, some
 * 6 s at 0.1 GB/s. A and R take the GPU's last few free blocks at their
 * block boundaries within about a second; at the next one the instance
 * preempts R, the latest arrival, by recompute (policy.when_short:
 * preempt): its KV is dropped, its move cancelled then. */
static void test_host_move_cancelled_when_preempted(void **state) {
  (void)state;
  int64_t bb = 0;
  infsim_trace t;
  tick_log log;
  const arrival a[] = {{0, 100, 500}, {1000000, 190, 500}, {500000000, 50, 20}};
  infsim_run_result *res = run_slow_pcie(a, 3, 1, "policy.when_short=preempt", &bb, &t, &log);
  size_t n = 0;
  const infsim_request_record *r = infsim_run_result_requests(res, &n);
  for (size_t k = 0; k < n; k++) assert_int_equal(r[k].state, INFSIM_REQ_FINISHED);
  assert_true(r[1].preemptions >= 1);
  int64_t first_ns = copy_first_byte_ns(res, a[2].at_ns);
  /* The preemption: a batch boundary (a row's end), the last one at or
   * before the first tick's event that sees R preempted. */
  int64_t seen_ns = -1;
  for (size_t k = 0; k < log.n && seen_ns < 0; k++)
    if (log.row[k].preemptions > 0) seen_ns = log.row[k].now_ns;
  const infsim_iteration_row *rows = infsim_run_result_iterations(res, &n);
  int64_t preempt_ns = -1;
  for (size_t i = 0; i < n; i++)
    if (rows[i].end_ns <= seen_ns && rows[i].end_ns > preempt_ns) preempt_ns = rows[i].end_ns;
  /* R's blocks on the way: reserved from the copy's start to the
   * preemption (the same all along), free at the preemption's event. */
  int64_t moving = -1;
  int before = 0, at_preempt = 0;
  for (size_t k = 0; k < log.n; k++) {
    const tick_row *row = &log.row[k];
    if (row->now_ns > first_ns && row->now_ns < preempt_ns) {
      if (moving < 0) moving = row->reserved;
      assert_int_equal(row->reserved, moving);
      before++;
    }
    if (row->now_ns == preempt_ns) {
      assert_int_equal(row->reserved, 0);
      /* The link carried R's bytes up to then, no more (later moves,
       * of other requests, add theirs). */
      double carried = (double)(preempt_ns - first_ns) * 0.1;
      if (fabs(row->pcie_up_bytes - carried) > 1.0)
        fail_msg("i0 -> h0 at the preemption: %.0f bytes, by hand %.0f", row->pcie_up_bytes, carried);
      at_preempt++;
    }
  }
  assert_true(before > 0 && at_preempt > 0 && moving > 70);
  assert_true(preempt_ns > first_ns && preempt_ns < first_ns + moving * bb * 10); /* it had not landed */
  infsim_distkv_stats dk;
  assert_true(infsim_run_result_distkv(res, &dk));
  assert_true(dk.kv_moves_cancelled >= 1);
  check_nothing_left(res);
  free(log.row);
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
      cmocka_unit_test(test_host_move_cancelled_when_request_ends),
      cmocka_unit_test(test_host_move_cancelled_when_preempted),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
