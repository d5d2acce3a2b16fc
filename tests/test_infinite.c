/*
** test_infinite.c: the infinite-llm policy end to end, through the run
** library.
**  - A 200K-token prompt on 8 x A100-80GB with LLaMA2-7B needs more KV
**    blocks than one instance has: vllm-multi rejects it (kv_capacity),
**    infinite-llm serves it by borrowing, its KV spread over at least two
**    instances, and the blocks lent at peak cover what its own instance
**    lacks.
**  - Where nobody is short of memory, infinite-llm schedules exactly as
**    vllm-multi (same dispatch, nothing borrowed): identical request
**    records, whatever its heartbeats and DGFM timers do.
**  - With messages lost and the gManager lost mid-run, every request still
**    completes (timeouts, retries, rebuild from heartbeats).
**  - An idle hour costs no more periodic events than docs/distkv.md
**    counts: quiet heartbeats back off to one per 64 periods per
**    instance, DGFM passes that find nothing to one per 64 periods.
**  - Two prompts larger than an instance that cannot both be in the
**    cluster's memory at once both complete (the gathering budget lets
**    one gather at a time), the second after the first.
**  - Own work first: a creditor that lent nearly all its memory to a
**    gathering prompt serves its own short requests that arrive meanwhile
**    at once, by moving the guest's blocks on to another creditor, and
**    the long prompt still completes; with policy.own_work_first off they
**    wait until the loan comes back (the long prompt finishes).
**  - Evictions are priced by the KV that moves: there, the guest's blocks
**    moved on belong to a prompt still gathering (no KV yet), and no byte
**    of KV is sent or counted as moved.
**  - A request preempted by recompute while its borrow is on the way (its
**    KV dropped): the borrow is cancelled, no payload goes out for it
**    (left to go on, a move of its freed blocks was sent, refused and
**    given up).
**  - policy.heartbeat_owned_ms changes only the heartbeats' bytes where no
**    plan reads the entries of requests wholly on their owner.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "distkv_fixture.h"
#include "sim_fixture.h"

static infsim_trace *long_trace(void) {
  infsim_trace *t = calloc(1, sizeof *t);
  fixture_add(t, 0, 1000, 50);
  fixture_add(t, 100000000, 200000, 20); /* 200K-token prompt */
  fixture_add(t, 200000000, 3000, 100);
  fixture_add(t, 500000000, 500, 30);
  fixture_add(t, 900000000, 200000, 10);
  return t;
}

static infsim_run_params params(const char *policy, const char *extra1, const char *extra2) {
  char pol[64];
  snprintf(pol, sizeof pol, "policy.name=%s", policy);
  const char *settings[] = {"model=llama2-7b",
                            "gpu=a100-80gb",
                            "cluster.instances=8",
                            "scheduler.chunked_prefill=true",
                            "scheduler.max_batched_tokens=8192",
                            pol,
                            extra1 ? extra1 : "seed=1",
                            extra2 ? extra2 : "seed=1",
                            NULL};
  return fixture_params(settings);
}

static void test_oversized_served_only_by_infinite(void **state) {
  (void)state;
  infsim_trace *t = long_trace();
  infsim_run_params pm = params("vllm-multi", NULL, NULL);
  infsim_run_result *rm = fixture_run(&pm, t);
  infsim_run_params pi = params("infinite-llm", NULL, NULL);
  infsim_run_result *ri = fixture_run(&pi, t);
  size_t n = 0;
  const infsim_request_record *m = infsim_run_result_requests(rm, &n);
  const infsim_request_record *i = infsim_run_result_requests(ri, &n);
  int64_t capacity = infsim_run_result_counters(ri)->kv_blocks_per_instance;
  int64_t block_tokens = pi.sched.block_tokens;
  int64_t need = (200000 + 20 - 1 + block_tokens - 1) / block_tokens;
  assert_true(need > capacity); /* the premise: it cannot fit in one instance */
  for (size_t k = 0; k < n; k++) {
    assert_int_equal(i[k].state, INFSIM_REQ_FINISHED);
    if (m[k].prompt_tokens == 200000) {
      assert_int_equal(m[k].state, INFSIM_REQ_REJECTED);
      assert_int_equal(m[k].reason, INFSIM_REJECT_KV_CAPACITY);
      assert_true(i[k].instances_touched >= 2);
    } else {
      assert_int_equal(m[k].state, INFSIM_REQ_FINISHED);
    }
  }
  assert_true(infsim_run_result_counters(ri)->borrowed_blocks_peak >= need - capacity);
  assert_int_equal(infsim_run_result_counters(rm)->borrowed_blocks_peak, 0);
  infsim_run_result_free(rm);
  infsim_run_result_free(ri);
  infsim_trace_free(t);
  free(t);
}

static void test_no_shortage_equals_vllm_multi(void **state) {
  (void)state;
  infsim_trace *t = calloc(1, sizeof *t);
  for (int k = 0; k < 200; k++) fixture_add(t, (int64_t)k * 37000000, 200 + (k * 7919) % 3000, 10 + (k * 31) % 200);
  infsim_run_params pm = params("vllm-multi", NULL, NULL);
  infsim_run_params pi = params("infinite-llm", NULL, NULL);
  infsim_run_result *rm = fixture_run(&pm, t);
  infsim_run_result *ri = fixture_run(&pi, t);
  size_t n = 0;
  const infsim_request_record *m = infsim_run_result_requests(rm, &n);
  const infsim_request_record *i = infsim_run_result_requests(ri, &n);
  for (size_t k = 0; k < n; k++) {
    assert_int_equal(m[k].state, INFSIM_REQ_FINISHED);
    assert_int_equal(i[k].instance, m[k].instance);
    assert_int_equal(i[k].first_token_ns, m[k].first_token_ns);
    assert_int_equal(i[k].finish_ns, m[k].finish_ns);
  }
  assert_int_equal(infsim_run_result_counters(ri)->borrowed_blocks_peak, 0);
  infsim_run_result_free(rm);
  infsim_run_result_free(ri);
  infsim_trace_free(t);
  free(t);
}

static void test_faults_still_complete(void **state) {
  (void)state;
  infsim_trace *t = long_trace();
  infsim_run_params pi = params("infinite-llm", "faults.message_loss=0.2", "faults.lose_gmanager_at_s=0.15");
  infsim_run_result *ri = fixture_run(&pi, t);
  size_t n = 0;
  const infsim_request_record *i = infsim_run_result_requests(ri, &n);
  for (size_t k = 0; k < n; k++) assert_int_equal(i[k].state, INFSIM_REQ_FINISHED);
  assert_true(infsim_run_result_counters(ri)->borrowed_blocks_peak > 0);
  infsim_run_result_free(ri);
  infsim_trace_free(t);
  free(t);
}

/* Idle for an hour between two small requests: infinite-llm's events
 * beyond vllm-multi's (same schedule: nothing borrowed) are its
 * heartbeat ticks and DGFM passes. A timer whose period doubles from P up
 * to 64 P ticks at most 7 + T / (64 P) times in T. */
static void test_idle_cluster_periodic_events(void **state) {
  (void)state;
  infsim_trace *t = calloc(1, sizeof *t);
  int64_t idle_ns = INT64_C(3600) * 1000000000;
  fixture_add(t, 0, 500, 20);
  fixture_add(t, idle_ns, 500, 20);
  infsim_run_params pm = params("vllm-multi", NULL, NULL);
  infsim_run_params pi = params("infinite-llm", NULL, NULL);
  infsim_run_result *rm = fixture_run(&pm, t);
  infsim_run_result *ri = fixture_run(&pi, t);
  int64_t extra = infsim_run_result_counters(ri)->events - infsim_run_result_counters(rm)->events;
  const double hb_s = 0.050, dgfm_s = 0.100, span_s = (double)idle_ns * 1e-9 + 1.0;
  double bound = 8 * (7 + span_s / (64 * hb_s)) + (7 + span_s / (64 * dgfm_s));
  assert_int_equal(infsim_run_result_counters(ri)->borrowed_blocks_peak, 0);
  if ((double)extra > bound || (double)extra < 0.9 * bound)
    fail_msg("%lld periodic events in an idle hour, documented bound %.0f", (long long)extra, bound);
  infsim_run_result_free(rm);
  infsim_run_result_free(ri);
  infsim_trace_free(t);
  free(t);
}

/* Three instances; two 170K-token prompts (10,627 blocks each with their
 * output, an instance holds 6,976): either fits the cluster (one instance
 * and two less their reserves), both together do not. They arrive
 * together on two instances: the older gathers first, the other gets the
 * memory after it, and both complete. */
static void test_gatherers_that_cannot_coexist_take_turns(void **state) {
  (void)state;
  infsim_trace *t = calloc(1, sizeof *t);
  fixture_add(t, 0, 170000, 20);
  fixture_add(t, 1000, 170000, 20);
  const char *settings[] = {"model=llama2-7b", "gpu=a100-80gb", "cluster.instances=3", "policy.name=infinite-llm",
                            "scheduler.chunked_prefill=true", NULL};
  infsim_run_params p = fixture_params(settings);
  infsim_run_result *r = fixture_run(&p, t);
  size_t n = 0;
  const infsim_request_record *rec = infsim_run_result_requests(r, &n);
  int64_t capacity = infsim_run_result_counters(r)->kv_blocks_per_instance;
  int64_t need = (170000 + 19 + 15) / 16;
  assert_true(2 * need > 3 * capacity && need <= capacity + 2 * (capacity - capacity / 20));
  assert_int_equal(rec[0].state, INFSIM_REQ_FINISHED);
  assert_int_equal(rec[1].state, INFSIM_REQ_FINISHED);
  assert_int_not_equal(rec[0].instance, rec[1].instance);
  assert_true(rec[1].first_token_ns > rec[0].finish_ns);
  infsim_run_result_free(r);
  infsim_trace_free(t);
  free(t);
}

/* Three instances (6,976 blocks each); a 250K-token prompt (15,627
 * blocks) on instance 0 gathers about 9,000 blocks: first all the spare
 * of instance 1 (6,628: it keeps its 5% reserve, 348), then some of
 * instance 2's. Short prompts (20K tokens, 1,250 blocks) then arrive while
 * it gathers (5 ms), while it prefills (10 s) and later (60 s); least-loaded
 * dispatch sends the first to instance 1. */
static void run_own_first(const char *own, infsim_run_result **out, infsim_trace *t) {
  fixture_add(t, 0, 250000, 20);
  fixture_add(t, 5000000, 20000, 20);
  fixture_add(t, INT64_C(10000000000), 20000, 20);
  fixture_add(t, INT64_C(60000000000), 20000, 20);
  const char *settings[] = {"model=llama2-7b", "gpu=a100-80gb", "cluster.instances=3", "policy.name=infinite-llm",
                            "scheduler.chunked_prefill=true", own, NULL};
  infsim_run_params p = fixture_params(settings);
  *out = fixture_run(&p, t);
}

static void test_creditor_serves_own_requests_first(void **state) {
  (void)state;
  infsim_trace t_on = {0}, t_off = {0};
  infsim_run_result *on = NULL, *off = NULL;
  run_own_first("policy.own_work_first=true", &on, &t_on);
  run_own_first("policy.own_work_first=false", &off, &t_off);
  size_t n = 0;
  const infsim_request_record *a = infsim_run_result_requests(on, &n);
  const infsim_request_record *b = infsim_run_result_requests(off, &n);
  assert_int_equal(n, 4);
  int64_t capacity = infsim_run_result_counters(on)->kv_blocks_per_instance;
  assert_true((250000 + 19 + 15) / 16 > 2 * capacity); /* the premise: it must gather */
  for (size_t k = 0; k < n; k++) {
    assert_int_equal(a[k].state, INFSIM_REQ_FINISHED);
    assert_int_equal(b[k].state, INFSIM_REQ_FINISHED);
  }
  assert_true(a[0].instances_touched >= 2);
  /* Without own work first, a short request on the main creditor waits
   * for its memory to come back: the long prompt's end. */
  bool waited = false;
  for (size_t k = 1; k < n; k++) waited |= b[k].first_token_ns >= b[0].finish_ns;
  assert_true(waited);
  /* With it, every short request is served before the long prompt's first
   * token, within a few seconds of its arrival (its own prefill of 20K
   * tokens takes about 2 s on one A100). */
  for (size_t k = 1; k < n; k++) {
    assert_int_not_equal(a[k].instance, a[0].instance);
    assert_true(a[k].first_token_ns - a[k].arrival_ns < INT64_C(5000000000));
    if (a[k].arrival_ns < a[0].first_token_ns) assert_true(a[k].finish_ns < a[0].first_token_ns);
  }
  infsim_run_result_free(on);
  infsim_run_result_free(off);
  infsim_trace_free(&t_on);
  infsim_trace_free(&t_off);
}

/* The own-work-first run: the first short prompt reaches instance 1 at
 * 5 ms while the long prompt still gathers there; instance 1 moves the
 * guest's blocks on (back to its owner and to instance 2). They hold no
 * KV (the prompt waits for admission), so the moves copy nothing: 0 bytes
 * sent and moved (priced as full copies before: the 934 blocks moved, at
 * 8 MiB each for LLaMA2-7B, came to 7.8 GB). */
static void test_evicted_gatherer_costs_nothing(void **state) {
  (void)state;
  infsim_trace t = {0};
  infsim_run_result *r = NULL;
  run_own_first("policy.own_work_first=true", &r, &t);
  assert_true(fixture_distkv_field(r, "kv_sends") >= 2); /* the evictions: MOVEs, not fresh blocks */
  assert_int_equal(fixture_distkv_field(r, "kv_sent_bytes"), 0);
  assert_int_equal(fixture_distkv_field(r, "kv_moved_bytes"), 0);
  infsim_run_result_free(r);
  infsim_trace_free(&t);
}

/* Two instances of a fifth of an A100-80GB each; R's prompt fills all but
 * one block of instance 0, so at its second decode block boundary it is
 * short and borrows (a move of its newest 33 blocks to instance 1), and
 * with policy.when_short: preempt the instance preempts R, the only one
 * running, by recompute at that boundary: its KV is dropped while its
 * borrow is on the way, so the borrow is cancelled (kv_dropped) and no
 * payload of its KV goes out for it. */
static void test_recompute_cancels_moves_of_dropped_kv(void **state) {
  (void)state;
  const char *const settings[] = {"model=llama2-7b", "gpu=a100-80gb", "cluster.instances=2",
                                  "scheduler.gpu_memory_utilization=0.2", "policy.name=infinite-llm",
                                  "policy.dgfm=false", "policy.when_short=preempt", NULL};
  infsim_run_params p = fixture_params(settings);
  infsim_sched_params sp;
  if (infsim_run_sched_params(&p, &sp, NULL) != INFSIM_OK) abort();
  infsim_trace t = {0};
  fixture_add(&t, 0, (sp.gpu_blocks_per_instance - 1) * 16, 64);
  infsim_run_result *res = fixture_run(&p, &t);
  size_t n = 0;
  const infsim_request_record *r = infsim_run_result_requests(res, &n);
  assert_int_equal(r[0].state, INFSIM_REQ_FINISHED);
  assert_int_equal(r[0].preemptions, 1);
  /* The borrow of its dropped KV ends at the preemption, before any
   * payload (a move of freed blocks: refused, retried and given up when
   * it went on); R's later borrow (new blocks for its prefill again,
   * larger than its instance) lands. */
  assert_int_equal(fixture_distkv_field(res, "kv_moves_cancelled"), 1);
  assert_int_equal(fixture_distkv_field(res, "kv_sends"), 0);
  assert_int_equal(fixture_distkv_field(res, "borrows_failed"), 0);
  assert_int_equal(fixture_distkv_field(res, "borrows"), 1);
  infsim_run_result_free(res);
  infsim_trace_free(&t);
}

/* policy.heartbeat_owned_ms: a report walks its running requests for the
 * entries of those wholly on their owner at most that often. On the long
 * trace the planner only places the 200K-token prompts' new blocks (each
 * comes first in its own plan), so nothing decides on those entries: at
 * 0 (every report walks, the earlier behaviour), at the default and at an
 * hour (one walk per instance) every request record and the count of
 * heartbeats are the same, and the runs differ only by the heartbeat
 * entries left out: network bytes fewer by a positive multiple of the
 * 24-byte entry (docs/distkv.md, "gManager and heartbeats"), fewer at an
 * hour than at the default. */
static void test_owned_entries_walk(void **state) {
  (void)state;
  infsim_trace *t = long_trace();
  for (int k = 0; k < 120; k++)
    fixture_add(t, INT64_C(1000000000) + (int64_t)k * 400000000, 300 + (k * 7919) % 2500, 50 + (k * 31) % 400);
  /* A band of 1% of an instance's blocks: heartbeats go as the requests come and go. */
  const char *band = "policy.heartbeat_band=0.01";
  infsim_run_params p0 = params("infinite-llm", "policy.heartbeat_owned_ms=0", band);
  infsim_run_params pd = params("infinite-llm", NULL, band);
  infsim_run_params ph = params("infinite-llm", "policy.heartbeat_owned_ms=3600000", band);
  infsim_run_result *r0 = fixture_run(&p0, t), *rd = fixture_run(&pd, t), *rh = fixture_run(&ph, t);
  size_t n = 0;
  const infsim_request_record *a = infsim_run_result_requests(r0, &n);
  const infsim_request_record *b = infsim_run_result_requests(rd, &n);
  const infsim_request_record *c = infsim_run_result_requests(rh, &n);
  for (size_t k = 0; k < n; k++) {
    assert_int_equal(a[k].state, INFSIM_REQ_FINISHED);
    assert_int_equal(b[k].instance, a[k].instance);
    assert_int_equal(b[k].first_token_ns, a[k].first_token_ns);
    assert_int_equal(b[k].finish_ns, a[k].finish_ns);
    assert_int_equal(c[k].instance, a[k].instance);
    assert_int_equal(c[k].first_token_ns, a[k].first_token_ns);
    assert_int_equal(c[k].finish_ns, a[k].finish_ns);
  }
  assert_true(infsim_run_result_counters(r0)->borrowed_blocks_peak > 0);
  int64_t hb = fixture_distkv_field(r0, "heartbeats");
  assert_int_equal(fixture_distkv_field(rd, "heartbeats"), hb);
  assert_int_equal(fixture_distkv_field(rh, "heartbeats"), hb);
  int64_t b0 = infsim_run_result_counters(r0)->network_bytes, bd = infsim_run_result_counters(rd)->network_bytes,
          bh = infsim_run_result_counters(rh)->network_bytes;
  assert_true(b0 > bd && bd > bh);
  assert_int_equal((b0 - bd) % 24, 0);
  assert_int_equal((bd - bh) % 24, 0);
  infsim_run_result_free(r0);
  infsim_run_result_free(rd);
  infsim_run_result_free(rh);
  infsim_trace_free(t);
  free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_oversized_served_only_by_infinite),
      cmocka_unit_test(test_no_shortage_equals_vllm_multi),
      cmocka_unit_test(test_faults_still_complete),
      cmocka_unit_test(test_idle_cluster_periodic_events),
      cmocka_unit_test(test_gatherers_that_cannot_coexist_take_turns),
      cmocka_unit_test(test_creditor_serves_own_requests_first),
      cmocka_unit_test(test_evicted_gatherer_costs_nothing),
      cmocka_unit_test(test_recompute_cancels_moves_of_dropped_kv),
      cmocka_unit_test(test_owned_entries_walk),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
