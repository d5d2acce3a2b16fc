/*
** test_instance_loss.c: faults.lose_instance (sched/instance_loss.c)
** against blocks counted by hand.
**
** Three LLaMA2-7B instances on A100-80GB, blocks of 1024 tokens (so that
** block counts stay put for hundreds of steps), round-robin dispatch, no
** DGFM, no blocks borrowed ahead:
**   B (t = 0, 5,120-token prompt)   -> instance 0, done in under a second;
**   C (t = 1 ms, 20,480 tokens)     -> instance 1, decoding all along;
**   A (t = 2 ms, 150,000 tokens)    -> instance 2: larger than one instance,
**                                      it gathers its first blocks at the
**                                      creditor with the most spare, 0;
**   D (t1 - 0.5 s, 5,120 tokens)    -> instance 0 (the fourth arrival),
** with t1 A's first token (from a run without D and the fault). Instance 0
** is lost at t1 + 0.5 s: A (decoding, 150,000 + g < 150,528 tokens) had
** ceil(150,000 / 1024) = 147 blocks of KV, all recomputed; D (decoding,
** 5,120 + g tokens, g >= 1) had 6; 153 blocks in all. D is dispatched
** again, to another instance; every request completes; neither loss
** counts as a preemption.
**
** Random losses (faults.lose_instance_every_s): four instances, 120
** requests of up to 60K tokens over about 20 s, a loss every 8 s on
** average: several instances are lost (never the last one), every request
** completes, KV is recomputed and requests dispatched again; the same seed
** gives the same run, another seed other losses, rate 0 none; over 20
** seeds the number of losses in a 60 s run averages 60 s / the mean gap.
** Debug
** builds check after every event that the ledger stays zero-sum and that
** a lost instance holds nothing (sched/instance_loss.c).
*/
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "sim_fixture.h"

static infsim_run_result *run(const char *lose, const char *at, int64_t d_arrival_ns, infsim_run_params *p,
                              infsim_trace *t) {
  const char *const settings[] = {"model=llama2-7b", "gpu=a100-80gb", "cluster.instances=3",
                                  "scheduler.block_tokens=1024", "policy.name=infinite-llm",
                                  "policy.dispatch=round-robin", "policy.dgfm=false", "policy.borrow_ahead_blocks=0",
                                  lose, at, NULL};
  *p = fixture_params(settings);
  *t = (infsim_trace){0};
  fixture_add(t, 0, 5120, 50);            /* B */
  fixture_add(t, 1000000, 20480, 20000);  /* C */
  fixture_add(t, 2000000, 150000, 400);   /* A */
  if (d_arrival_ns > 0) fixture_add(t, d_arrival_ns, 5120, 1000); /* D */
  return fixture_run(p, t);
}

static void test_lost_creditor_blocks_recomputed(void **state) {
  (void)state;
  infsim_run_params p;
  infsim_trace t;
  infsim_run_result *res = run("faults.lose_instance=-1", "faults.lose_instance_at_s=0", 0, &p, &t);
  size_t n = 0;
  const infsim_request_record *r = infsim_run_result_requests(res, &n);
  int64_t t1 = r[2].first_token_ns;
  assert_true(t1 > 0 && r[2].instances_touched >= 2);
  infsim_run_result_free(res);
  infsim_trace_free(&t);

  char at[64];
  int64_t lost_ns = t1 + 500000000;
  snprintf(at, sizeof at, "faults.lose_instance_at_s=%.9f", (double)lost_ns * 1e-9);
  res = run("faults.lose_instance=0", at, t1 - 500000000, &p, &t);
  r = infsim_run_result_requests(res, &n);
  assert_int_equal(n, 4);
  assert_int_equal(r[2].first_token_ns, t1);                 /* A decoding when 0 was lost */
  assert_true(r[3].first_token_ns < lost_ns);                /* D too */
  assert_true(r[0].finish_ns < lost_ns);                     /* B long done */
  for (size_t k = 0; k < n; k++) {
    assert_int_equal(r[k].state, INFSIM_REQ_FINISHED);
    assert_int_equal(r[k].preemptions, 0);
  }
  assert_true(r[2].finish_ns > lost_ns && r[3].finish_ns > lost_ns);
  assert_int_not_equal(r[3].instance, 0); /* D was dispatched again */
  infsim_distkv_stats dk;
  assert_true(infsim_run_result_distkv(res, &dk));
  assert_int_equal(dk.instances_lost, 1);
  assert_int_equal(dk.requests_requeued, 1);
  assert_int_equal(dk.blocks_recomputed, 147 + 6);
  infsim_run_result_free(res);
  infsim_trace_free(&t);
}

static infsim_run_result *run_random(uint64_t seed, const char *every, infsim_trace *t) {
  char seedset[64];
  snprintf(seedset, sizeof seedset, "seed=%llu", (unsigned long long)seed);
  const char *const settings[] = {"model=llama2-7b", "gpu=a100-80gb", "cluster.instances=4", "policy.name=infinite-llm",
                                  "scheduler.chunked_prefill=true", every, seedset, NULL};
  infsim_run_params p = fixture_params(settings);
  *t = fixture_random_trace(120, 6.0, 60000, 300, 7, "test.instance_loss.random");
  return fixture_run(&p, t);
}

static void test_random_losses(void **state) {
  (void)state;
  infsim_trace t1, t2, t3, t0;
  infsim_run_result *a = run_random(1, "faults.lose_instance_every_s=8", &t1);
  infsim_run_result *b = run_random(1, "faults.lose_instance_every_s=8", &t2);
  infsim_run_result *c = run_random(2, "faults.lose_instance_every_s=8", &t3);
  infsim_run_result *z = run_random(1, "faults.lose_instance_every_s=0", &t0);
  size_t n = 0, nb = 0, nc = 0;
  const infsim_request_record *ra = infsim_run_result_requests(a, &n);
  const infsim_request_record *rb = infsim_run_result_requests(b, &nb);
  const infsim_request_record *rc = infsim_run_result_requests(c, &nc);
  assert_int_equal(n, 120);
  infsim_distkv_stats da, dc, dz;
  assert_true(infsim_run_result_distkv(a, &da) && infsim_run_result_distkv(c, &dc) && infsim_run_result_distkv(z, &dz));
  /* No request lost: a loss drops KV, never a request. */
  for (size_t k = 0; k < n; k++) {
    assert_int_equal(ra[k].state, INFSIM_REQ_FINISHED);
    assert_int_equal(rc[k].state, INFSIM_REQ_FINISHED);
  }
  assert_true(da.instances_lost >= 2 && da.instances_lost <= 3); /* the last one is never lost */
  assert_true(da.blocks_recomputed > 0 && da.requests_requeued > 0);
  assert_int_equal(dz.instances_lost, 0);
  /* Seeded: the same seed, the same losses and records; another, others. */
  bool same = true, other = false;
  for (size_t k = 0; k < n; k++) {
    same &= ra[k].finish_ns == rb[k].finish_ns && ra[k].instance == rb[k].instance;
    other |= ra[k].finish_ns != rc[k].finish_ns;
  }
  assert_true(same);
  assert_true(other);
  infsim_run_result_free(a);
  infsim_run_result_free(b);
  infsim_run_result_free(c);
  infsim_run_result_free(z);
  infsim_trace_free(&t1);
  infsim_trace_free(&t2);
  infsim_trace_free(&t3);
  infsim_trace_free(&t0);
}

/* The rate: eight instances serving small requests for 60 s, a loss every
 * 15 s on average: a Poisson count of mean 60 / 15 = 4 per run (at most
 * 7: never the last instance). Over 20 seeds the mean count lies within
 * three standard errors (sqrt(4 / 20) = 0.45) of 4. */
static void test_random_loss_rate(void **state) {
  (void)state;
  double sum = 0;
  const int seeds = 20;
  for (int k = 1; k <= seeds; k++) {
    char seedset[64];
    snprintf(seedset, sizeof seedset, "seed=%d", k);
    const char *const settings[] = {"model=llama2-7b", "gpu=a100-80gb", "cluster.instances=8",
                                    "policy.name=infinite-llm", "faults.lose_instance_every_s=15", seedset, NULL};
    infsim_run_params p = fixture_params(settings);
    infsim_trace t = {0};
    for (int j = 0; j <= 60; j++) fixture_add(&t, (int64_t)j * 1000000000, 200, 4);
    infsim_run_result *res = fixture_run(&p, &t);
    size_t n = 0;
    const infsim_request_record *r = infsim_run_result_requests(res, &n);
    for (size_t q = 0; q < n; q++) assert_int_equal(r[q].state, INFSIM_REQ_FINISHED);
    infsim_distkv_stats dk;
    assert_true(infsim_run_result_distkv(res, &dk));
    assert_true(dk.instances_lost <= 7);
    sum += (double)dk.instances_lost;
    infsim_run_result_free(res);
    infsim_trace_free(&t);
  }
  double mean = sum / seeds;
  fprintf(stderr, "%.2f losses per 60 s run on average over %d seeds\n", mean, seeds);
  if (fabs(mean - 4.0) > 3 * sqrt(4.0 / seeds)) fail_msg("mean losses per run %.2f, expected 4", mean);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_lost_creditor_blocks_recomputed),
                                     cmocka_unit_test(test_random_losses),
                                     cmocka_unit_test(test_random_loss_rate)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
