/*
** test_faults.c: infinite-llm under each fault of docs/distkv.md alone and
** all together (lost protocol messages, late ones, the gManager lost again
** and again), with KV memory tight enough that borrowing goes on all along
** and prompts longer than one instance. Each run must keep:
**  - no request lost: every request completed, or rejected with a reason
**    and only when it is larger than one instance's memory;
**  - no block leaked: at the end no KV block is in use in any GPU or host
**    pool, the protocol holds no borrow,
**    reservation or proposal, and no message is in flight (summary.json's
**    high_water finals, docs/high-water.md);
**  - a zero-sum ledger all along: at every time-series sample the blocks
**    lent over all instances equal the blocks borrowed, and each
**    instance's used plus free blocks equal its capacity (the outputs,
**    checked apart from the debug builds' invariants after every event,
**    which check the gManager's view the same way);
** and the fault must have happened: messages lost and retried, late
** messages changing the schedule against the same run without faults,
** exactly as many gManager rebuilds as losses fall before the run's end,
** and a creditor instance (one holding blocks lent to others, found in the
** run without faults, which is the same up to the loss) lost mid-run with
** KV recomputed.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "distkv_fixture.h"
#include "sim_fixture.h"

enum { REQUESTS = 240, INSTANCES = 4 };

static const char *const k_base[] = {"model=llama2-7b",
                                     "gpu=a100-80gb",
                                     "cluster.instances=4",
                                     "cluster.gpus_per_node=2",
                                     "scheduler.gpu_memory_utilization=0.2",
                                     "scheduler.max_batched_tokens=2048",
                                     "policy.name=infinite-llm",
                                     "metrics.sample_interval_s=0.05",
                                     "seed=3"};
enum { BASE = sizeof k_base / sizeof k_base[0] };

static infsim_run_params params_with(const char *const *faults) {
  const char *settings[BASE + 10] = {0};
  size_t n = 0;
  for (size_t i = 0; i < BASE; i++) settings[n++] = k_base[i];
  for (size_t i = 0; faults[i] != NULL; i++) settings[n++] = faults[i];
  settings[n] = NULL;
  return fixture_params(settings);
}

/* 240 requests over about 12 s; one in five with a prompt of up to 12,000
 * tokens, more than an instance's 4,800 (300 blocks of 16). */
static infsim_trace fault_trace(void) {
  gsl_rng *rng = infsim_rng_new(11, "test.faults");
  infsim_trace t = {0};
  double at_s = 0;
  for (int k = 0; k < REQUESTS; k++) {
    at_s += gsl_ran_exponential(rng, 0.05);
    int64_t prompt = 16 + (int64_t)gsl_rng_uniform_int(rng, gsl_rng_uniform(rng) < 0.2 ? 12000 : 2000);
    fixture_add(&t, (int64_t)llround(at_s * 1e9), prompt, 1 + (int64_t)gsl_rng_uniform_int(rng, 300));
  }
  gsl_rng_free(rng);
  return t;
}

/* A creditor mid-run in the run without faults: the first sample at or
 * after from_ns where an instance holds blocks lent to others. Writes its
 * time and returns the instance. */
static int32_t creditor_after(const infsim_run_result *res, int64_t from_ns, int64_t *at_ns) {
  size_t rows = 0;
  const infsim_sample_row *s = infsim_run_result_samples(res, &rows);
  for (size_t i = 0; i < rows; i++)
    if (s[i].time_ns >= from_ns && s[i].kv_lent_blocks > 0) {
      *at_ns = s[i].time_ns;
      return s[i].instance;
    }
  fail_msg("no instance lends blocks after %lld ns", (long long)from_ns);
  return -1;
}

/* Nothing is left on the lost instance once its guests' owners reached a
 * batch boundary (a step, well under 100 ms here): no request, no block
 * used, lent or borrowed at any sample from then on. */
static void check_lost_empty(const infsim_run_result *res, int32_t lost, int64_t lost_ns) {
  size_t rows = 0, after = 0;
  const infsim_sample_row *s = infsim_run_result_samples(res, &rows);
  for (size_t i = 0; i < rows; i++) {
    if (s[i].instance != lost || s[i].time_ns < lost_ns + 100000000) continue;
    after++;
    if (s[i].running || s[i].waiting || s[i].kv_used_blocks || s[i].kv_lent_blocks || s[i].kv_borrowed_blocks)
      fail_msg("lost instance %d at %lld ns: %d running, %d waiting, %lld blocks used, %lld lent, %lld borrowed",
               (int)lost, (long long)s[i].time_ns, (int)s[i].running, (int)s[i].waiting, (long long)s[i].kv_used_blocks,
               (long long)s[i].kv_lent_blocks, (long long)s[i].kv_borrowed_blocks);
  }
  assert_true(after >= 10);
}

static const infsim_high_water *mark(const infsim_high_water_set *set, const char *name) {
  for (int i = 0; i < set->count; i++)
    if (strcmp(set->mark[i].name, name) == 0) return &set->mark[i];
  fail_msg("no high-water mark %s", name);
  return NULL;
}

/* The properties of the header comment; returns the run for more checks. */
static infsim_run_result *run_and_check(const infsim_run_params *p, const infsim_trace *t) {
  infsim_run_result *res = fixture_run(p, t);
  size_t n = 0;
  const infsim_request_record *r = infsim_run_result_requests(res, &n);
  int64_t capacity = infsim_run_result_counters(res)->kv_blocks_per_instance;
  assert_int_equal(n, t->count);
  for (size_t k = 0; k < n; k++) {
    if (r[k].state == INFSIM_REQ_FINISHED) continue;
    assert_int_equal(r[k].state, INFSIM_REQ_REJECTED);
    assert_int_not_equal(r[k].reason, INFSIM_REJECT_NONE);
    int64_t need = (r[k].prompt_tokens + r[k].output_tokens - 1 + p->sched.block_tokens - 1) / p->sched.block_tokens;
    assert_true(need > capacity);
  }
  infsim_high_water_set hw;
  infsim_run_result_high_water(res, &hw);
  /* (The gManager's ledger is a view learned from heartbeats, which stop
   * with the run: it may still list the last requests to finish.) */
  static const char *const drained[] = {"kv_gpu_blocks",      "kv_host_blocks",        "contract_borrows",
                                        "contract_reservations", "contract_proposals", "messages_in_flight",
                                        "event_heap",         "instance_running",      "instance_waiting"};
  for (size_t i = 0; i < sizeof drained / sizeof drained[0]; i++) {
    const infsim_high_water *m = mark(&hw, drained[i]);
    if (m->final != 0) fail_msg("%s: %lld left at the end", m->name, (long long)m->final);
    assert_true(m->peak <= m->capacity);
  }
  assert_int_equal(mark(&hw, "kv_gpu_blocks")->capacity, capacity);
  size_t rows = 0;
  const infsim_sample_row *s = infsim_run_result_samples(res, &rows);
  assert_true(rows >= INSTANCES * 100);
  for (size_t i = 0; i < rows; i += INSTANCES) {
    int64_t lent = 0, borrowed = 0;
    for (size_t j = i; j < i + INSTANCES; j++) {
      assert_int_equal(s[j].time_ns, s[i].time_ns);
      assert_int_equal(s[j].kv_used_blocks + s[j].kv_free_blocks, capacity);
      lent += s[j].kv_lent_blocks;
      borrowed += s[j].kv_borrowed_blocks;
    }
    if (lent != borrowed) fail_msg("at %lld ns: %lld lent, %lld borrowed", (long long)s[i].time_ns, (long long)lent,
                                   (long long)borrowed);
  }
  return res;
}

static void test_each_fault(void **state) {
  (void)state;
  infsim_trace t = fault_trace();
  const char *const none[] = {NULL};
  infsim_run_params p0 = params_with(none);
  infsim_run_result *base = run_and_check(&p0, &t);
  assert_true(infsim_run_result_counters(base)->borrowed_blocks_peak > 0); /* borrowing happens */
  assert_int_equal(fixture_distkv_field(base, "messages_lost"), 0);

  const char *const lost[] = {"faults.message_loss=0.1", NULL};
  infsim_run_params p1 = params_with(lost);
  infsim_run_result *r1 = run_and_check(&p1, &t);
  assert_true(fixture_distkv_field(r1, "messages_lost") > 0);
  assert_true(fixture_distkv_field(r1, "retries") > 0);
  /* Lost KV moves were sent again (their creditor saw nothing come) and
   * nothing leaked (run_and_check). Without faults nothing is resent. */
  assert_true(fixture_distkv_field(r1, "kv_resends") > 0);
  assert_int_equal(fixture_distkv_field(base, "kv_resends"), 0);

  /* Late by 30 ms on average: past the 10 ms protocol timeout, so retries
   * and duplicates meet. */
  const char *const late[] = {"faults.message_delay_prob=0.2", "faults.message_delay_ms=30", NULL};
  infsim_run_params p2 = params_with(late);
  infsim_run_result *r2 = run_and_check(&p2, &t);
  size_t n = 0;
  const infsim_request_record *a = infsim_run_result_requests(base, &n), *b = infsim_run_result_requests(r2, &n);
  size_t differ = 0;
  for (size_t k = 0; k < n; k++) differ += a[k].finish_ns != b[k].finish_ns;
  assert_true(differ > 0);
  assert_true(fixture_distkv_field(r2, "retries") > fixture_distkv_field(base, "retries"));

  /* Lost at 0.5 s, then every 2 s while requests remain: losses at
   * 0.5 + 2j for j = 0, 1, ... up to the first one after the last finish. */
  const char *const gm[] = {"faults.lose_gmanager_at_s=0.5", "faults.lose_gmanager_every_s=2", NULL};
  infsim_run_params p3 = params_with(gm);
  infsim_run_result *r3 = run_and_check(&p3, &t);
  int64_t end_ns = infsim_run_result_counters(r3)->end_ns;
  int64_t losses = (end_ns - 500000000) / 2000000000 + 2;
  assert_int_equal(fixture_distkv_field(r3, "gmanager_rebuilds"), losses);
  assert_true(losses >= 6);

  /* A creditor lost mid-run (the sample's time, a few seconds in): the
   * rest runs on three instances, and the KV computed by its own requests
   * and by those with blocks lent there is computed again. */
  int64_t at_ns = 0;
  int32_t creditor = creditor_after(base, 4000000000, &at_ns);
  char lose[64], lose_at[64];
  snprintf(lose, sizeof lose, "faults.lose_instance=%d", (int)creditor);
  snprintf(lose_at, sizeof lose_at, "faults.lose_instance_at_s=%.3f", (double)at_ns * 1e-9);
  assert_true(at_ns < infsim_run_result_counters(base)->end_ns / 2); /* mid-run, not near the end */
  const char *const inst[] = {lose, lose_at, NULL};
  infsim_run_params p5 = params_with(inst);
  infsim_run_result *r5 = run_and_check(&p5, &t);
  assert_int_equal(fixture_distkv_field(r5, "instances_lost"), 1);
  assert_true(fixture_distkv_field(r5, "blocks_recomputed") > 0);
  assert_true(fixture_distkv_field(r5, "requests_requeued") > 0);
  check_lost_empty(r5, creditor, at_ns);
  assert_true(infsim_run_result_counters(r5)->end_ns > infsim_run_result_counters(base)->end_ns);

  const char *const all[] = {"faults.message_loss=0.05", "faults.message_delay_prob=0.1", "faults.message_delay_ms=30",
                             "faults.lose_gmanager_at_s=0.3", "faults.lose_gmanager_every_s=1", lose, lose_at, NULL};
  infsim_run_params p4 = params_with(all);
  infsim_run_result *r4 = run_and_check(&p4, &t);
  assert_true(fixture_distkv_field(r4, "messages_lost") > 0 && fixture_distkv_field(r4, "gmanager_rebuilds") >= 10);
  assert_true(fixture_distkv_field(r4, "instances_lost") == 1 && fixture_distkv_field(r4, "blocks_recomputed") > 0);
  check_lost_empty(r4, creditor, at_ns);
  assert_true(infsim_run_result_counters(r4)->borrowed_blocks_peak > 0);

  infsim_run_result_free(base);
  infsim_run_result_free(r1);
  infsim_run_result_free(r2);
  infsim_run_result_free(r3);
  infsim_run_result_free(r4);
  infsim_run_result_free(r5);
  infsim_trace_free(&t);
}

/* Links 125 times narrower than the 25 GB/s a move's timeout assumes
 * (0.2 GB/s inside and between nodes): a move of a few blocks (8 MiB
 * each) takes longer than its timeout many times over, yet none is lost.
 * Each payload goes on the wire once (no resend: the timeouts probe), the
 * moves land (KV moved), and nothing leaks (run_and_check). */
static void test_slow_links_send_each_move_once(void **state) {
  (void)state;
  infsim_trace t = fault_trace();
  const char *const slow[] = {"cluster.intra_node_GBps=0.2", "cluster.inter_node_GBps=0.2", NULL};
  infsim_run_params p = params_with(slow);
  infsim_run_result *r = run_and_check(&p, &t);
  int64_t sends = fixture_distkv_field(r, "kv_sends"), moved = fixture_distkv_field(r, "kv_moved_bytes");
  int64_t sent = fixture_distkv_field(r, "kv_sent_bytes"), probes = fixture_distkv_field(r, "probes");
  assert_true(sends > 0 && moved > 0);
  assert_true(probes > 0); /* moves did outlast their timeout */
  assert_int_equal(fixture_distkv_field(r, "kv_resends"), 0);
  /* Every byte moved was sent (a move whose request ended on the way, a
   * second or more on these links, commits nothing, so more is sent). */
  assert_true(sent >= moved);
  /* Such moves were cancelled as their requests ended (docs/distkv.md,
   * "Contract protocol"), and nothing leaked (run_and_check). */
  assert_true(fixture_distkv_field(r, "kv_moves_cancelled") > 0);
  infsim_run_result_free(r);
  infsim_trace_free(&t);
}

/* A loss every period shorter than the restart would overlap restarts. */
static void test_loss_period_must_exceed_restart(void **state) {
  (void)state;
  infsim_config *cfg = infsim_config_new();
  infsim_error err = {0};
  const char *const sets[] = {"policy.name=infinite-llm", "faults.lose_gmanager_at_s=1",
                              "faults.gmanager_restart_ms=500", "faults.lose_gmanager_every_s=0.5"};
  for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) assert_int_equal(infsim_config_set(cfg, sets[i], &err), INFSIM_OK);
  infsim_run_params p;
  assert_int_equal(infsim_run_params_from_config(cfg, &p, &err), INFSIM_EINPUT);
  assert_non_null(strstr(err.msg, "faults.lose_gmanager_every_s"));
  infsim_config_free(cfg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_each_fault),
      cmocka_unit_test(test_slow_links_send_each_move_once),
      cmocka_unit_test(test_loss_period_must_exceed_restart),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
