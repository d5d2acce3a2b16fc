/*
** test_overload.c: the simulator under overload (2x and 10x what the
** cluster serves, tiny KV memory, prompts longer than any instance): the
** run ends; every request is completed or rejected with a reason;
** preemptions stay bounded; and throughput never beats the roofline bound.
**
** The bound: every iteration of an instance reads all of its weights at
** least once, so it takes at least weight_bytes / HBM bandwidth (datasheet,
** efficiency 1), and it yields at most max_batch_size output tokens. So
** output tokens/s <= instances x max_batch_size x HBM / weight_bytes.
*/
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>
#include <gsl/gsl_randist.h>

#include "infsim/rng.h"
#include "sim_fixture.h"

static infsim_trace poisson(size_t n, double rate, int64_t max_prompt, int64_t max_output, uint64_t seed) {
  return fixture_random_trace(n, rate, max_prompt, max_output, seed, "test.overload");
}

/* Runs, then checks the properties every overloaded run must keep; the
 * last request's record goes to *last (the giant prompt of some cases). */
static infsim_summary check_run_last(const infsim_run_params *p, const infsim_trace *t, int64_t *rejected_out,
                                     infsim_request_record *last) {
  infsim_run_result *res = fixture_run(p, t);
  size_t n = 0;
  const infsim_request_record *r = infsim_run_result_requests(res, &n);
  int64_t per_instance[64] = {0};
  for (size_t i = 0; i < n; i++)
    if (r[i].instance >= 0 && r[i].instance < 64) per_instance[r[i].instance]++;
  int64_t rejected = 0;
  for (size_t i = 0; i < n; i++) {
    if (r[i].state == INFSIM_REQ_REJECTED) {
      assert_true(r[i].reason != INFSIM_REJECT_NONE); /* every rejection names its reason */
      rejected++;
      continue;
    }
    assert_int_equal(r[i].state, INFSIM_REQ_FINISHED);
    assert_true(r[i].arrival_ns <= r[i].first_token_ns && r[i].first_token_ns <= r[i].finish_ns);
    /* A request is preempted only while it is the latest-arrived running
     * one, so never more often than its instance has requests. */
    assert_true(r[i].preemptions <= per_instance[r[i].instance]);
  }
  infsim_summary s = *infsim_run_result_summary(res);
  double bound = (double)p->instances * (double)p->sched.max_batch_size * p->gpu.hbm_bytes_per_s /
                 (double)infsim_model_weight_bytes(&p->model);
  if (s.throughput_tok_s > bound) fail_msg("throughput %.1f tok/s above the roofline bound %.1f", s.throughput_tok_s, bound);
  *rejected_out = rejected;
  if (last != NULL) *last = r[n - 1];
  infsim_run_result_free(res);
  return s;
}

static infsim_summary check_run(const infsim_run_params *p, const infsim_trace *t, int64_t *rejected_out) {
  return check_run_last(p, t, rejected_out, NULL);
}

static void test_overload_2x_and_10x(void **state) {
  (void)state;
  const char *const settings[] = {"model=llama2-7b", "gpu=a100-80gb", "cluster.instances=2",
                                  "scheduler.max_batch_size=32", NULL};
  infsim_run_params p = fixture_params(settings);
  /* What the cluster serves: a saturating burst, measured. */
  infsim_trace burst = poisson(400, 1e6, 2000, 300, 1);
  int64_t rejected = 0;
  infsim_summary cap = check_run(&p, &burst, &rejected);
  assert_int_equal(rejected, 0);
  double ttft_mean[2] = {0};
  for (int k = 0; k < 2; k++) {
    double factor = k == 0 ? 2.0 : 10.0;
    infsim_trace t = poisson(1500, factor * cap.requests_per_s, 2000, 300, 2);
    infsim_summary s = check_run(&p, &t, &rejected);
    assert_int_equal(s.completed + rejected, 1500);
    /* Overloaded: it serves slower than requests arrive, and queues grow with the load. */
    assert_true(s.requests_per_s < factor * cap.requests_per_s);
    ttft_mean[k] = s.ttft_s.mean;
    infsim_trace_free(&t);
  }
  assert_true(ttft_mean[1] > ttft_mean[0]);
  infsim_trace_free(&burst);
}

static void test_tiny_memory_and_giant_prompts(void **state) {
  (void)state;
  for (int mode = 0; mode < 2; mode++) {
    const char *const settings[] = {"model=llama2-7b", "gpu=a100-80gb", "cluster.instances=2",
                                    "scheduler.gpu_memory_utilization=0.18",
                                    mode ? "scheduler.preemption=swap" : "scheduler.preemption=recompute",
                                    "scheduler.swap_space_gib=0.2", NULL};
    infsim_run_params p = fixture_params(settings);
    infsim_trace t = poisson(600, 50.0, 1500, 400, 5);
    fixture_add(&t, t.requests[t.count - 1].arrival_ns + 1, 200000, 10); /* longer than any instance */
    int64_t rejected = 0;
    infsim_request_record giant;
    infsim_summary s = check_run_last(&p, &t, &rejected, &giant);
    assert_true(rejected >= 1);
    assert_int_equal(giant.state, INFSIM_REQ_REJECTED);
    assert_int_equal(giant.reason, INFSIM_REJECT_KV_CAPACITY);
    assert_int_equal(s.completed + rejected, (int64_t)t.count);
    infsim_trace_free(&t);
  }
}

/* The same under infinite-llm (borrowing on): 10x what the cluster serves,
 * a fifth of the GPU's memory (300 blocks, 4,800 tokens an instance),
 * prompts up to 8,000 tokens (longer than one instance: served by
 * borrowing, unless the others lack the room) and one of 100,000 tokens,
 * more than the whole cluster's 19,200, which must be rejected for KV
 * capacity. */
static void test_overload_with_borrowing(void **state) {
  (void)state;
  const char *const settings[] = {"model=llama2-7b", "gpu=a100-80gb", "cluster.instances=4",
                                  "cluster.gpus_per_node=2", "scheduler.gpu_memory_utilization=0.2",
                                  "scheduler.max_batch_size=32", "policy.name=infinite-llm", NULL};
  infsim_run_params p = fixture_params(settings);
  infsim_trace burst = poisson(300, 1e6, 2000, 200, 7);
  int64_t rejected = 0;
  infsim_summary cap = check_run(&p, &burst, &rejected);
  assert_int_equal(rejected, 0);
  infsim_trace t = poisson(800, 10.0 * cap.requests_per_s, 8000, 200, 8);
  fixture_add(&t, t.requests[t.count - 1].arrival_ns + 1, 100000, 10);
  infsim_request_record giant;
  infsim_summary s = check_run_last(&p, &t, &rejected, &giant);
  assert_int_equal(s.completed + rejected, (int64_t)t.count);
  assert_true(s.requests_per_s < 10.0 * cap.requests_per_s);
  assert_int_equal(giant.state, INFSIM_REQ_REJECTED);
  assert_int_equal(giant.reason, INFSIM_REJECT_KV_CAPACITY);
  /* Rejected are only requests larger than one instance (when the others
   * lack the room); some such requests are served by borrowing. */
  infsim_run_result *res = fixture_run(&p, &t);
  size_t n = 0;
  const infsim_request_record *r = infsim_run_result_requests(res, &n);
  int64_t capacity = infsim_run_result_counters(res)->kv_blocks_per_instance, oversized_served = 0;
  for (size_t i = 0; i < n; i++) {
    bool oversized = r[i].prompt_tokens + r[i].output_tokens > capacity * p.sched.block_tokens;
    if (r[i].state == INFSIM_REQ_REJECTED) assert_true(oversized);
    oversized_served += oversized && r[i].state == INFSIM_REQ_FINISHED;
  }
  assert_true(oversized_served > 10);
  assert_true(infsim_run_result_counters(res)->borrowed_blocks_peak > 0);
  infsim_run_result_free(res);
  infsim_trace_free(&t);
  infsim_trace_free(&burst);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_overload_2x_and_10x),
      cmocka_unit_test(test_tiny_memory_and_giant_prompts),
      cmocka_unit_test(test_overload_with_borrowing),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
