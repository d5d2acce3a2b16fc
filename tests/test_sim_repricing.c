/*
** test_sim_repricing.c: the simulated executor and the scheduler against
** the cost model, batch by batch.
**
** Every batch of a run (iterations rows, metrics.iterations) is priced
** again here from its own aggregates with a cost model built
** independently: its duration must equal the cost model's price of its
** steps plus the PCIe time of the KV it swapped out and in. Over a run in
** which every request completes, every block swapped out comes back in:
** swapped-in bytes equal swapped-out bytes. Least-loaded dispatch counts
** running requests, not only waiting ones.
*/
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <gsl/gsl_randist.h>

#include "infsim/rng.h"
#include "distkv_fixture.h"
#include "sim_fixture.h"

static infsim_trace random_trace(size_t n, double rate, int64_t max_prompt, int64_t max_output, uint64_t seed) {
  return fixture_random_trace(n, rate, max_prompt, max_output, seed, "test.trace");
}

static void check_every_batch_repriced(const char *preemption, const char *chunked) {
  char mode[64], chunk[64];
  snprintf(mode, sizeof mode, "scheduler.preemption=%s", preemption);
  snprintf(chunk, sizeof chunk, "scheduler.chunked_prefill=%s", chunked);
  const char *const settings[] = {"model=llama2-7b",
                                  "gpu=a100-80gb",
                                  "cluster.instances=2",
                                  "scheduler.gpu_memory_utilization=0.19",
                                  "scheduler.swap_space_gib=0.5",
                                  "metrics.iterations=true",
                                  mode,
                                  chunk,
                                  NULL};
  infsim_run_params p = fixture_params(settings);
  infsim_trace t = random_trace(300, 40.0, 1500, 500, 7);
  infsim_run_result *res = fixture_run(&p, &t);

  infsim_cost_model cm;
  fixture_a100_roofline(&p, &cm);
  size_t n = 0;
  const infsim_iteration_row *rows = infsim_run_result_iterations(res, &n);
  assert_true(n > 100);
  int64_t swapped_in = 0, swapped_out = 0, steps = 0;
  for (size_t i = 0; i < n; i++) {
    const infsim_iteration_row *r = &rows[i];
    int64_t compute;
    if (r->agg.prefill_tokens > 0) {
      assert_int_equal(r->steps, 1);
      compute = infsim_cost_iteration_ns(&cm, &r->agg);
    } else {
      infsim_decode_run run;
      infsim_cost_decode_run_init(&cm, r->agg.decode_requests, &run);
      compute = infsim_cost_decode_run_ns(&cm, &run, r->agg.decode_context_tokens, r->steps);
    }
    int64_t swap = infsim_cost_transfer_ns(r->swap_out_bytes, p.pcie_bytes_per_s, 0) +
                   infsim_cost_transfer_ns(r->swap_in_bytes, p.pcie_bytes_per_s, 0);
    if (r->end_ns - r->start_ns != compute + swap)
      fail_msg("batch %zu of instance %d: %lld ns, cost model says %lld + %lld swap", i, (int)r->instance,
               (long long)(r->end_ns - r->start_ns), (long long)compute, (long long)swap);
    swapped_in += r->swap_in_bytes;
    swapped_out += r->swap_out_bytes;
    steps += r->steps;
  }
  const infsim_run_counters *c = infsim_run_result_counters(res);
  assert_true(c->preemptions > 0);
  assert_int_equal(steps, c->iterations); /* the rows cover every batch */
  if (strcmp(preemption, "swap") == 0) assert_true(swapped_out > 0);
  else assert_int_equal(swapped_out, 0);
  assert_int_equal(swapped_in, swapped_out); /* every request completed: all swapped KV came back */
  infsim_cost_model_destroy(&cm);
  infsim_run_result_free(res);
  infsim_trace_free(&t);
}

static void test_every_batch_priced_by_its_aggregates(void **state) {
  (void)state;
  check_every_batch_repriced("swap", "true");
  check_every_batch_repriced("swap", "false");
  check_every_batch_repriced("recompute", "true");
}

/* Instance 0 is busy with one running request and none waiting; instance 1
 * is idle. Least-loaded must send the next request to instance 1. */
static void test_least_loaded_counts_running_requests(void **state) {
  (void)state;
  const char *const settings[] = {"model=llama2-7b", "gpu=a100-80gb", "cluster.instances=2",
                                  "policy.dispatch=least-loaded", NULL};
  infsim_run_params p = fixture_params(settings);
  infsim_trace t = {0};
  fixture_add(&t, 0, 500, 200);         /* runs for seconds on instance 0 */
  fixture_add(&t, 100000000, 500, 200); /* 0.1 s later: instance 0 has 1 running, 0 waiting */
  fixture_add(&t, 200000000, 500, 200); /* both busy with one each: back to the lowest id */
  infsim_run_result *res = fixture_run(&p, &t);
  size_t n = 0;
  const infsim_request_record *r = infsim_run_result_requests(res, &n);
  assert_int_equal(r[0].instance, 0);
  assert_int_equal(r[1].instance, 1);
  assert_int_equal(r[2].instance, 0);
  infsim_run_result_free(res);
  infsim_trace_free(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_batch_priced_by_its_aggregates),
      cmocka_unit_test(test_least_loaded_counts_running_requests),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
