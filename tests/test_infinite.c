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
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_oversized_served_only_by_infinite),
      cmocka_unit_test(test_no_shortage_equals_vllm_multi),
      cmocka_unit_test(test_faults_still_complete),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
