/*
** test_boundary_wait.c: policy.when_short at a decode block boundary
** (sched/boundary_wait.c), against a schedule computed by hand.
**
** Two LLaMA2-7B instances on A100-80GB with a fifth of the memory (a few
** hundred blocks each); one request whose prompt fills all but one block
** of instance 0. Its decode takes the last block, then at the next
** boundary (16 steps on) finds none: instance 0 borrows from instance 1.
**  - wait: the request leaves the batch, keeps its KV, and decodes again
**    the moment the borrow lands. Instance 0 is idle exactly as long as
**    the protocol takes, summed here from the links: BORROW_REQUEST and
**    BORROW_PROPOSE over PCIe to the gManager on node 0's host, RESERVE
**    and RESERVE_ACK over two NVLink hops, the MOVE of need + 32 blocks
**    (the request's newest) as a flow on NVLink, CONFIRM back. No
**    preemption.
**  - preempt: the request is preempted there (vLLM) and still completes.
*/
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "sim_fixture.h"

static int64_t blocks_per_instance(const infsim_run_params *p) {
  infsim_sched_params sp;
  infsim_error err = {0};
  if (infsim_run_sched_params(p, &sp, &err) != INFSIM_OK) abort();
  return sp.gpu_blocks_per_instance;
}

static infsim_run_result *run_when_short(const char *when, infsim_run_params *p, infsim_trace *t) {
  const char *const settings[] = {"model=llama2-7b", "gpu=a100-80gb", "cluster.instances=2",
                                  "scheduler.gpu_memory_utilization=0.2", "policy.name=infinite-llm",
                                  "policy.dgfm=false", "metrics.iterations=true", when, NULL};
  *p = fixture_params(settings);
  int64_t blocks = blocks_per_instance(p);
  *t = (infsim_trace){0};
  fixture_add(t, 0, (blocks - 1) * 16, 64);
  return fixture_run(p, t);
}

/* A control message: the route's latency plus 64 B at its narrowest link, rounded up. */
static int64_t control_ns(int64_t latency_ns, double bytes_per_s) {
  return latency_ns + (int64_t)ceil(64.0 / bytes_per_s * 1e9);
}

static void test_wait_stalls_for_exactly_the_protocol(void **state) {
  (void)state;
  infsim_run_params p;
  infsim_trace t;
  infsim_run_result *res = run_when_short("policy.when_short=wait", &p, &t);
  size_t n = 0;
  const infsim_request_record *r = infsim_run_result_requests(res, &n);
  assert_int_equal(r[0].state, INFSIM_REQ_FINISHED);
  assert_int_equal(r[0].preemptions, 0);
  assert_int_equal(infsim_run_result_counters(res)->preemptions, 0);
  assert_true(infsim_run_result_counters(res)->borrowed_blocks_peak > 0);

  /* The longest gap between two batches of instance 0 after the first token. */
  const infsim_iteration_row *rows = infsim_run_result_iterations(res, &n);
  int64_t gap = 0, prev_end = -1;
  for (size_t i = 0; i < n; i++) {
    if (rows[i].instance != 0) continue;
    if (prev_end >= 0 && rows[i].start_ns - prev_end > gap) gap = rows[i].start_ns - prev_end;
    prev_end = rows[i].end_ns;
  }
  double pcie = 25e9, nvlink = 300e9; /* A100 hosts (Gen4), A100 NVLink per direction */
  int64_t lat = 5000;                 /* cluster.link_latency_us */
  int64_t block_bytes = 16 * 32 * 2 * 4096 * 2;
  int64_t moved = (1 + 32) * block_bytes; /* one block short + policy.borrow_ahead_blocks */
  int64_t want = 2 * control_ns(lat, pcie)                                   /* request, proposal */
                 + 2 * control_ns(2 * lat, nvlink)                           /* reserve, ack */
                 + 2 * lat + (int64_t)ceil((double)moved / nvlink * 1e9)     /* the move */
                 + control_ns(2 * lat, nvlink);                              /* confirm */
  if (llabs(gap - want) > 2) fail_msg("instance 0 waited %lld ns, by hand %lld ns", (long long)gap, (long long)want);
  infsim_run_result_free(res);
  infsim_trace_free(&t);
}

static void test_preempt_preempts_at_the_boundary(void **state) {
  (void)state;
  infsim_run_params p;
  infsim_trace t;
  infsim_run_result *res = run_when_short("policy.when_short=preempt", &p, &t);
  size_t n = 0;
  const infsim_request_record *r = infsim_run_result_requests(res, &n);
  assert_int_equal(r[0].state, INFSIM_REQ_FINISHED);
  assert_true(r[0].preemptions >= 1);
  infsim_run_result_free(res);
  infsim_trace_free(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_wait_stalls_for_exactly_the_protocol),
      cmocka_unit_test(test_preempt_preempts_at_the_boundary),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
