/*
** test_infinite_random.c: infinite-llm on random small clusters and
** traces, memory tight enough that borrowing happens all along (LLaMA2-7B
** with a fifth of an A100's memory: a few hundred blocks per instance),
** with random faults (messages lost, the gManager lost, an instance
** lost at a set time or at random: faults.lose_instance_every_s),
** policy.own_work_first on or off, the CPU tier in each mode or off, either answer to a borrow in
** flight (wait or preempt), preemption by recompute or swap. Every run must end with each request completed, or
** rejected only when it is larger than one instance and the others lack
** the room; debug builds check the
** scheduler's, the KV manager's, the ledger's and the protocol's
** invariants after every event. A failure prints the case's seed.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>
#include <gsl/gsl_rng.h>

#include "infsim/rng.h"
#include "infsim/sim.h"
#include "sim_fixture.h"

enum { CASES = 100 }; /* issue 10: 100 in CI */

/* Simulated time a case may take: its trace arrives within 12 s and ends
 * well within a minute; a case still running at 10 simulated minutes
 * never ends (its heartbeats and timers tick on for ever). */
enum { CASE_LIMIT_S = 600 };

static void on_tick(void *self, const infsim_sim *s, int64_t at_ns) {
  (void)s;
  const uint64_t *seed = self;
  if (at_ns > (int64_t)CASE_LIMIT_S * 1000000000)
    fail_msg("case seed %llu: still running after %d simulated seconds", (unsigned long long)*seed, CASE_LIMIT_S);
}

typedef struct {
  int64_t borrowed, host, recompute;
} case_counts;

/* Case `seed`: its random cluster, settings and trace, run to the end
 * (failing past CASE_LIMIT_S), every request checked. */
static void run_case(uint64_t seed, case_counts *n) {
  gsl_rng *rng = infsim_rng_new(seed, "test.infinite_random");
  char inst[64], loss[64], gm[64], planner[64], seedset[64], dgfm[64], tier[64], host[64], lose[64], lose_at[64],
      when[64], preempt[64];
  int instances = 2 + (int)gsl_rng_uniform_int(rng, 5);
  static const char *const planners[] = {"greedy", "same-node", "affinity"};
  snprintf(inst, sizeof inst, "cluster.instances=%d", instances);
  snprintf(loss, sizeof loss, "faults.message_loss=%.2f", gsl_rng_uniform(rng) < 0.5 ? 0.0 : 0.1);
  snprintf(gm, sizeof gm, "faults.lose_gmanager_at_s=%.2f", gsl_rng_uniform(rng) < 0.3 ? 0.5 : -1.0);
  snprintf(planner, sizeof planner, "policy.planner=%s", planners[gsl_rng_uniform_int(rng, 3)]);
  snprintf(dgfm, sizeof dgfm, "policy.dgfm=%s", gsl_rng_uniform(rng) < 0.8 ? "true" : "false");
  snprintf(seedset, sizeof seedset, "seed=%llu", (unsigned long long)seed);
  static const char *const tiers[] = {"off", "off", "ma", "fetch"};
  snprintf(tier, sizeof tier, "policy.cpu_tier=%s", tiers[gsl_rng_uniform_int(rng, 4)]);
  snprintf(host, sizeof host, "cluster.host_memory_gib=%d", 1 + (int)gsl_rng_uniform_int(rng, 4));
  bool lose_one = gsl_rng_uniform(rng) < 0.3;
  snprintf(lose, sizeof lose, "faults.lose_instance=%d", lose_one ? (int)gsl_rng_uniform_int(rng, instances) : -1);
  snprintf(lose_at, sizeof lose_at, "faults.lose_instance_at_s=%.3f", 0.2 + 3.0 * gsl_rng_uniform(rng));
  snprintf(when, sizeof when, "policy.when_short=%s", gsl_rng_uniform(rng) < 0.7 ? "wait" : "preempt");
  snprintf(preempt, sizeof preempt, "scheduler.preemption=%s", gsl_rng_uniform(rng) < 0.7 ? "recompute" : "swap");
  /* Drawn from a stream of its own, so that the other draws of a case
   * seed (and the found cases below) stay what they were. */
  char own[64], every[64];
  gsl_rng *rng_own = infsim_rng_new(seed, "test.infinite_random.own");
  snprintf(own, sizeof own, "policy.own_work_first=%s", gsl_rng_uniform(rng_own) < 0.7 ? "true" : "false");
  /* Random losses in 20% of cases, one every 1-5 s on average. */
  double every_s = gsl_rng_uniform(rng_own) < 0.2 ? 1.0 + 4.0 * gsl_rng_uniform(rng_own) : 0.0;
  snprintf(every, sizeof every, "faults.lose_instance_every_s=%.3f", every_s);
  gsl_rng_free(rng_own);
  /* The other planners in 40% of cases, from a stream of their own for
   * the same reason. */
  gsl_rng *rng_planner = infsim_rng_new(seed, "test.infinite_random.planner");
  static const char *const more_planners[] = {"fit", "level", "spread"};
  if (gsl_rng_uniform(rng_planner) < 0.4)
    snprintf(planner, sizeof planner, "policy.planner=%s", more_planners[gsl_rng_uniform_int(rng_planner, 3)]);
  gsl_rng_free(rng_planner);
  const char *settings[] = {"model=llama2-7b", "gpu=a100-80gb", "scheduler.gpu_memory_utilization=0.2",
                            "scheduler.chunked_prefill=true", "scheduler.max_batched_tokens=2048",
                            "policy.name=infinite-llm", "cluster.gpus_per_node=2",
                            inst, loss, gm, planner, dgfm, seedset, tier, host, lose, lose_at, when, preempt, own,
                            every, NULL};
  infsim_run_params p = fixture_params(settings);
  infsim_trace t = {0};
  int64_t at = 0;
  int n_requests = 10 + (int)gsl_rng_uniform_int(rng, 30);
  for (int k = 0; k < n_requests; k++) {
    at += (int64_t)gsl_rng_uniform_int(rng, 300000000);
    int64_t prompt = 16 + (int64_t)gsl_rng_uniform_int(rng, gsl_rng_uniform(rng) < 0.2 ? 12000 : 3000);
    fixture_add(&t, at, prompt, 1 + (int64_t)gsl_rng_uniform_int(rng, 300));
  }
  fprintf(stderr, "case seed %llu: %d instances, %d requests, %s %s %s %s %s %s %s %s %s %s %s\n",
          (unsigned long long)seed, instances, n_requests, loss, gm, planner, tier, host, lose, lose_at, when, preempt,
          own, every);
  infsim_sim_watch watch = {.self = &seed, .every_ns = 1000000000, .tick = on_tick};
  infsim_run_result *res = NULL;
  infsim_error err = {0};
  assert_int_equal(infsim_run_simulate_watched(&p, &t, NULL, &watch, &res, &err), INFSIM_OK);
  size_t count = 0;
  const infsim_request_record *r = infsim_run_result_requests(res, &count);
  int64_t capacity = infsim_run_result_counters(res)->kv_blocks_per_instance;
  for (size_t k = 0; k < count; k++) {
    int64_t need = (r[k].prompt_tokens + r[k].output_tokens - 1 + p.sched.block_tokens - 1) / p.sched.block_tokens;
    if (r[k].state != INFSIM_REQ_FINISHED) {
      fprintf(stderr, "case seed %llu: request %zu not finished\n", (unsigned long long)seed, k);
      assert_int_equal(r[k].state, INFSIM_REQ_REJECTED);
      assert_true(need > capacity); /* only a request larger than its instance, the others lacking room */
    }
  }
  n->borrowed += infsim_run_result_counters(res)->borrowed_blocks_peak > 0;
  infsim_distkv_stats dk;
  assert_true(infsim_run_result_distkv(res, &dk));
  n->host += dk.host_blocks > 0;
  n->recompute += dk.instances_lost > 0 && dk.blocks_recomputed > 0;
  infsim_run_result_free(res);
  infsim_trace_free(&t);
  gsl_rng_free(rng);
}

static void test_random_configs(void **state) {
  (void)state;
  case_counts n = {0};
  /* INFSIM_CASE_SEED=N replays one case; INFSIM_CASES=N runs N cases
   * (1,000 for the note in docs/distkv.md). */
  const char *only = getenv("INFSIM_CASE_SEED"), *many = getenv("INFSIM_CASES");
  uint64_t cases = many ? strtoull(many, NULL, 10) : CASES;
  uint64_t first = only ? strtoull(only, NULL, 10) : 1, last = only ? first : cases;
  for (uint64_t seed = first; seed <= last; seed++) run_case(seed, &n);
  fprintf(stderr, "%lld of %llu runs borrowed, %lld used host memory, %lld lost an instance with KV on it\n",
          (long long)n.borrowed, (unsigned long long)cases, (long long)n.host, (long long)n.recompute);
  if (!only) { /* the cases exercise borrowing, the CPU tier and the loss of a creditor */
    assert_true(n.borrowed > (int64_t)cases / 2);
    assert_true(n.host >= (int64_t)cases / 20 && n.recompute >= (int64_t)cases / 20);
  }
}

/* A scenario aimed at the former gatherer: one prompt larger than its
 * instance gathers and is admitted, then medium prompts with long outputs
 * fill the cluster, so that its decode block boundaries find no block and
 * no creditor with room (policy.when_short: wait). */
static void run_gatherer_case(uint64_t seed, const char *preemption) {
  gsl_rng *rng = infsim_rng_new(seed, "test.infinite_random.gatherer");
  char inst[64], seedset[64], preempt[64];
  int instances = 3;
  snprintf(inst, sizeof inst, "cluster.instances=%d", instances);
  snprintf(seedset, sizeof seedset, "seed=%llu", (unsigned long long)seed);
  snprintf(preempt, sizeof preempt, "scheduler.preemption=%s", preemption);
  const char *settings[] = {"model=llama2-7b", "gpu=a100-80gb", "scheduler.gpu_memory_utilization=0.2",
                            "scheduler.chunked_prefill=true", "scheduler.max_batched_tokens=2048",
                            "policy.name=infinite-llm", "cluster.gpus_per_node=2", "policy.when_short=wait",
                            "faults.message_loss=0.1", "faults.lose_gmanager_at_s=0.5", "policy.planner=affinity",
                            inst, seedset, preempt, NULL};
  infsim_run_params p = fixture_params(settings);
  infsim_trace t = {0};
  fixture_add(&t, 0, 9000 + (int64_t)gsl_rng_uniform_int(rng, 3500), 200 + (int64_t)gsl_rng_uniform_int(rng, 800));
  int64_t at = 0;
  int n_requests = 4 + (int)gsl_rng_uniform_int(rng, 12);
  for (int k = 0; k < n_requests; k++) {
    at += (int64_t)gsl_rng_uniform_int(rng, 200000000);
    fixture_add(&t, at, 500 + (int64_t)gsl_rng_uniform_int(rng, 3000), 100 + (int64_t)gsl_rng_uniform_int(rng, 900));
  }
  uint64_t id = seed;
  infsim_sim_watch watch = {.self = &id, .every_ns = 1000000000, .tick = on_tick};
  infsim_run_result *res = NULL;
  infsim_error err = {0};
  assert_int_equal(infsim_run_simulate_watched(&p, &t, NULL, &watch, &res, &err), INFSIM_OK);
  size_t count = 0;
  const infsim_request_record *r = infsim_run_result_requests(res, &count);
  for (size_t k = 0; k < count; k++) assert_int_equal(r[k].state, INFSIM_REQ_FINISHED);
  infsim_run_result_free(res);
  infsim_trace_free(&t);
  gsl_rng_free(rng);
}

/* Scenario 15 (swap): the gatherer, admitted and decoding, reaches a
 * block boundary with no block free and no creditor with room. Its failed
 * borrows were taken for a gatherer's: no retry back-off, no kick, so it
 * and the request stalled behind it waited for ever instead of one being
 * preempted. */
static void test_admitted_gatherer_stalled_ends(void **state) {
  (void)state;
  run_gatherer_case(15, "swap");
}

/* Cases the draws found, each run in CI. Seed 568 (3 instances, message
 * loss, gManager loss at 0.5 s, swap preemption, policy.when_short: wait)
 * left two requests stalled at a decode block boundary with no borrow in
 * flight, the first a gatherer admitted long before (the same cause as
 * above; main's later changes took this case off that path). Seed 4420
 * (5 instances, an instance lost, the CPU tier, recompute): a request
 * preempted for another's block at the same boundary went on preempting
 * for its own, until nobody ran (an assertion failed). Seed 10578 (5
 * instances, the CPU tier fetching, swap, message loss): the oldest
 * gatherer's failed borrow took back the youngest gatherer's blocks after
 * that one had been admitted, and it finished its 4,844-token prefill
 * holding no KV (an assertion failed). Seed 19570 (6 instances, random
 * instance losses): a borrow request carrying a report collected at the
 * very nanosecond of a loss brought a lost owner's debt back into the
 * ledger (the lost-instance invariant failed). Seeds 2714 and 3292,
 * once finished requests' state was recycled: a report priced the due
 * blocks of a finished request it still listed as lent, and a move's
 * bytes read a finished request's state (both read a slot a later
 * request owns). Each must end, every request served. */
static void test_found_cases(void **state) {
  (void)state;
  case_counts n = {0};
  run_case(568, &n);
  run_case(4420, &n);
  run_case(10578, &n);
  run_case(19570, &n);
  run_case(2714, &n);
  run_case(3292, &n);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_admitted_gatherer_stalled_ends), cmocka_unit_test(test_found_cases), cmocka_unit_test(test_random_configs)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
