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
*/
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

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_lost_creditor_blocks_recomputed)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
