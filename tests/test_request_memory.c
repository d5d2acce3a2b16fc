/*
** test_request_memory.c: finished requests leave nothing behind but their
** record (issue 15: memory must not grow with finished requests beyond
** their output rows).
**
** A long trace at low load: every request finishes within a second or so
** of its arrival, so at most a few dozen are in flight at once while tens
** of thousands pass. The scheduler's state ring and the KV tables must
** stay sized by the span in flight (from the oldest request not done to
** the latest arrived), which the records bound independently: at request
** i's arrival a_i, the span covers at least the requests j <= i still
** unfinished after a_i (finish_j > a_i) and at most those not finished
** before it (finish_j >= a_i). Slots kept for every request of the run
** would be the run's size instead.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sim_fixture.h"

enum { REQUESTS = 20000 };

/* The largest span at an arrival, with the oldest request in flight at a_i
 * the first j <= i with finish_j > a_i (strict) or >= a_i (!strict). */
static int64_t span_from_records(const infsim_request_record *r, size_t n, bool strict) {
  int64_t peak = 0;
  size_t oldest = 0;
  for (size_t i = 0; i < n; i++) {
    /* Finish times are not monotone: scan from the oldest not yet past. */
    while (oldest < i && (strict ? r[oldest].finish_ns <= r[i].arrival_ns : r[oldest].finish_ns < r[i].arrival_ns))
      oldest++;
    if ((int64_t)(i - oldest + 1) > peak) peak = (int64_t)(i - oldest + 1);
  }
  return peak;
}

static void check_policy(const char *policy) {
  char name[64];
  snprintf(name, sizeof name, "policy.name=%s", policy);
  const char *const settings[] = {"model=llama2-7b", "gpu=a100-80gb", "cluster.instances=2", name, NULL};
  infsim_run_params p = fixture_params(settings);
  infsim_trace t = fixture_random_trace(REQUESTS, 4.0, 256, 64, 15, "test.request_memory");
  infsim_run_result *res = fixture_run(&p, &t);
  size_t n = 0;
  const infsim_request_record *r = infsim_run_result_requests(res, &n);
  assert_int_equal(n, REQUESTS);
  for (size_t i = 0; i < n; i++) assert_int_equal(r[i].state, INFSIM_REQ_FINISHED);
  /* The oldest-in-flight rule above needs finishes after arrivals... */
  int64_t lo = span_from_records(r, n, true), hi = span_from_records(r, n, false);
  int64_t state_slots = 0, table_slots = 0, span = 0;
  assert_true(infsim_run_result_request_slots(res, &state_slots, &table_slots, &span));
  assert_true(span >= lo && span <= hi);
  /* ...and the load keeps the span small: the trace is far longer than it. */
  assert_true(hi <= REQUESTS / 100);
  /* Each ring doubles only when the span outgrows it (the state ring
   * starts at 64 slots). */
  assert_true(state_slots <= (2 * span > 64 ? 2 * span : 64));
  assert_true(table_slots <= 2 * span);
  assert_true(state_slots >= span && table_slots >= span);
  infsim_run_result_free(res);
  infsim_trace_free(&t);
}

static void test_vllm_keeps_state_of_requests_in_flight_only(void **state) {
  (void)state;
  check_policy("vllm-multi");
}

static void test_distkv_keeps_state_of_requests_in_flight_only(void **state) {
  (void)state;
  check_policy("infinite-llm");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_vllm_keeps_state_of_requests_in_flight_only),
      cmocka_unit_test(test_distkv_keeps_state_of_requests_in_flight_only),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
