/*
** test_sim_invariants.c: the simulator's accounting against independent
** truth: an isolated request's times from the cost model itself,
** conservation and progress under memory pressure (recompute and swap),
** rejection reasons, determinism, and macro-steps equal to one event per
** iteration.
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
#include "sim_fixture.h"

static infsim_trace random_trace(size_t n, double rate, int64_t max_prompt, int64_t max_output, uint64_t seed) {
  return fixture_random_trace(n, rate, max_prompt, max_output, seed, "test.trace");
}

/* The cost model of a one-GPU instance, built directly (not by the simulator). */
static infsim_cost_model single_gpu_cost_model(const infsim_run_params *p) {
  infsim_cost_model cm = {0};
  assert_int_equal(infsim_cost_curves_roofline(&p->model, &p->gpu, 1, &p->roofline, &cm.curves, NULL), INFSIM_OK);
  cm.model = p->model;
  cm.layout = (infsim_instance_layout){.tp = 1, .pp = 1, .iteration_overhead_ns = p->iteration_overhead_ns};
  return cm;
}

/* Every request completed, with arrival <= first token <= finish. */
static void assert_all_completed_in_order(const infsim_run_result *sim) {
  size_t n = 0;
  const infsim_request_record *r = infsim_run_result_requests(sim, &n);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(r[i].state, INFSIM_REQ_FINISHED);
    assert_true(r[i].first_token_ns > r[i].arrival_ns);
    assert_true(r[i].finish_ns >= r[i].first_token_ns);
    assert_true(r[i].output_tokens > 1 || r[i].finish_ns == r[i].first_token_ns);
  }
}

/* An isolated request: TTFT is one prefill iteration and E2E adds its
 * output-1 decode iterations, priced by the cost model directly. */
static void test_isolated_request_matches_cost_model(void **state) {
  (void)state;
  const char *const settings[] = {"model=llama2-13b", "gpu=h100-sxm", "cluster.instances=1", NULL};
  infsim_run_params p = fixture_params(settings);
  const int64_t prompt = 1000, output = 50, arrival = 123456789;
  infsim_trace t = {0};
  fixture_add(&t, arrival, prompt, output);
  infsim_run_result *sim = fixture_run(&p, &t);
  size_t n = 0;
  const infsim_request_record *r = infsim_run_result_requests(sim, &n);

  infsim_cost_model cm = single_gpu_cost_model(&p);
  infsim_batch_agg prefill = {.prefill_tokens = prompt,
                              .prefill_attn_pairs = prompt * (prompt + 1) / 2,
                              .logits_tokens = 1};
  int64_t ttft = infsim_cost_iteration_ns(&cm, &prefill);
  infsim_decode_run run;
  infsim_cost_decode_run_init(&cm, 1, &run);
  int64_t decode = infsim_cost_decode_run_ns(&cm, &run, prompt + 1, output - 1);
  assert_int_equal(r[0].first_token_ns - arrival, ttft);
  assert_int_equal(r[0].finish_ns - arrival, ttft + decode);
  infsim_cost_model_destroy(&cm);
  infsim_run_result_free(sim);
  infsim_trace_free(&t);
}

/* Chunked prefill: a 20,000-token prompt under an 8,192-token budget takes
 * three iterations (8192, 8192, 3616 tokens), each attending its prefix. */
static void test_chunked_prefill_ttft_is_sum_of_chunks(void **state) {
  (void)state;
  const char *const settings[] = {"model=llama2-7b", "gpu=a100-80gb", "cluster.instances=1",
                                  "scheduler.max_batched_tokens=8192", NULL};
  infsim_run_params p = fixture_params(settings);
  infsim_trace t = {0};
  fixture_add(&t, 0, 20000, 2);
  infsim_run_result *sim = fixture_run(&p, &t);
  size_t n = 0;
  const infsim_request_record *r = infsim_run_result_requests(sim, &n);
  infsim_cost_model cm = single_gpu_cost_model(&p);
  const int64_t chunks[] = {8192, 8192, 3616};
  int64_t done = 0, expect = 0;
  for (int i = 0; i < 3; i++) {
    int64_t c = chunks[i];
    infsim_batch_agg agg = {.prefill_tokens = c, .prefill_attn_pairs = c * done + c * (c + 1) / 2,
                            .logits_tokens = i == 2};
    expect += infsim_cost_iteration_ns(&cm, &agg);
    done += c;
  }
  assert_int_equal(r[0].first_token_ns, expect);
  infsim_cost_model_destroy(&cm);
  infsim_run_result_free(sim);
  infsim_trace_free(&t);
}

/* Overload with a small KV cache: requests are preempted, yet every one
 * completes (no livelock), and blocks are conserved (debug builds check
 * that after every event). */
static void check_progress_under_pressure(const char *preemption) {
  char mode[64];
  snprintf(mode, sizeof mode, "scheduler.preemption=%s", preemption);
  /* 0.19 of 80 GB leaves ~1.7 GB for KV: ~205 blocks of 16 tokens, ~3,300 tokens */
  const char *const settings[] = {"model=llama2-7b", "gpu=a100-80gb", "cluster.instances=2",
                                  "scheduler.gpu_memory_utilization=0.19", "scheduler.swap_space_gib=0.05",
                                  mode, NULL};
  infsim_run_params p = fixture_params(settings);
  infsim_trace t = random_trace(400, 50.0, 2000, 600, 3);
  infsim_run_result *sim = fixture_run(&p, &t);
  assert_all_completed_in_order(sim);
  const infsim_run_counters *c = infsim_run_result_counters(sim);
  assert_true(c->preemptions > 0);
  size_t n = 0;
  const infsim_request_record *r = infsim_run_result_requests(sim, &n);
  int64_t per_request = 0;
  for (size_t i = 0; i < n; i++) per_request += r[i].preemptions;
  assert_int_equal(per_request, c->preemptions);
  infsim_run_result_free(sim);
  infsim_trace_free(&t);
}

static void test_recompute_preemption_makes_progress(void **state) {
  (void)state;
  check_progress_under_pressure("recompute");
}

static void test_swap_preemption_makes_progress(void **state) {
  (void)state;
  check_progress_under_pressure("swap");
}

static void test_rejections_name_their_reason(void **state) {
  (void)state;
  const char *const settings[] = {"model.name=llama2-7b", "model.max_context_tokens=4096", "gpu=a100-80gb",
                                  "cluster.instances=1", "scheduler.gpu_memory_utilization=0.2", NULL};
  infsim_run_params p = fixture_params(settings);
  infsim_trace t = {0};
  fixture_add(&t, 0, 100, 10);          /* fits */
  fixture_add(&t, 1000, 4000, 100);     /* 4,100 tokens > 4,096 */
  p.model.max_context_tokens = 0;       /* second run: no limit */
  infsim_run_result *sim = fixture_run(&p, &t);
  size_t n = 0;
  const infsim_request_record *r = infsim_run_result_requests(sim, &n);
  assert_int_equal(r[1].state, INFSIM_REQ_FINISHED);
  infsim_run_result_free(sim);
  p.model.max_context_tokens = 4096;
  sim = fixture_run(&p, &t);
  r = infsim_run_result_requests(sim, &n);
  assert_int_equal(r[0].state, INFSIM_REQ_FINISHED);
  assert_int_equal(r[1].state, INFSIM_REQ_REJECTED);
  assert_string_equal(infsim_reject_reason_name((infsim_reject_reason)r[1].reason), "context_limit");
  infsim_run_result_free(sim);

  /* KV capacity: 0.2 x 80 GB - 13.5 GB of weights = ~2.5 GB = ~4,800 tokens of KV. */
  infsim_trace big = {0};
  fixture_add(&big, 0, 3000, 3000);
  p.model.max_context_tokens = 0;
  sim = fixture_run(&p, &big);
  r = infsim_run_result_requests(sim, &n);
  assert_int_equal(r[0].state, INFSIM_REQ_REJECTED);
  assert_string_equal(infsim_reject_reason_name((infsim_reject_reason)r[0].reason), "kv_capacity");
  int64_t kv_tokens = infsim_run_result_counters(sim)->kv_blocks_per_instance * p.sched.block_tokens;
  assert_true(kv_tokens < 6000 && kv_tokens > 3000);
  infsim_run_result_free(sim);

  /* Without chunked prefill a prompt longer than the token budget never fits a batch. */
  p.sched.chunked_prefill = false;
  p.sched.max_batched_tokens = 2048;
  infsim_trace long_prompt = {0};
  fixture_add(&long_prompt, 0, 2049, 5);
  sim = fixture_run(&p, &long_prompt);
  r = infsim_run_result_requests(sim, &n);
  assert_int_equal(r[0].state, INFSIM_REQ_REJECTED);
  assert_string_equal(infsim_reject_reason_name((infsim_reject_reason)r[0].reason),
                      "prompt_exceeds_max_batched_tokens");
  infsim_run_result_free(sim);
  infsim_trace_free(&t);
  infsim_trace_free(&big);
  infsim_trace_free(&long_prompt);
}

static void test_same_seed_same_records(void **state) {
  (void)state;
  const char *const settings[] = {"model=llama2-7b", "cluster.instances=3", "seed=9", NULL};
  infsim_run_params p = fixture_params(settings);
  infsim_trace t = random_trace(2000, 30.0, 3000, 400, 4);
  infsim_run_result *a = fixture_run(&p, &t);
  infsim_run_result *b = fixture_run(&p, &t);
  size_t na = 0, nb = 0;
  const infsim_request_record *ra = infsim_run_result_requests(a, &na);
  const infsim_request_record *rb = infsim_run_result_requests(b, &nb);
  assert_int_equal(na, nb);
  for (size_t i = 0; i < na; i++) {
    assert_int_equal(ra[i].first_token_ns, rb[i].first_token_ns);
    assert_int_equal(ra[i].finish_ns, rb[i].finish_ns);
    assert_int_equal(ra[i].instance, rb[i].instance);
    assert_int_equal(ra[i].preemptions, rb[i].preemptions);
    assert_int_equal(ra[i].state, rb[i].state);
  }
  const infsim_sample_row *sa = infsim_run_result_samples(a, &na);
  const infsim_sample_row *sb = infsim_run_result_samples(b, &nb);
  assert_int_equal(na, nb);
  for (size_t i = 0; i < na; i++) {
    assert_int_equal(sa[i].time_ns, sb[i].time_ns);
    assert_int_equal(sa[i].running, sb[i].running);
    assert_int_equal(sa[i].waiting, sb[i].waiting);
    assert_int_equal(sa[i].kv_used_blocks, sb[i].kv_used_blocks);
  }
  infsim_run_result_free(a);
  infsim_run_result_free(b);
  infsim_trace_free(&t);
}

/* Macro-steps (many decode iterations per event) against one event per
 * iteration: the same schedule, times equal up to the per-iteration
 * rounding to the ns. */
static void check_macro_steps_equal_single_steps(const char *chunked, const char *preemption, double mem_util) {
  char c1[64], c2[64], c3[64];
  snprintf(c1, sizeof c1, "scheduler.chunked_prefill=%s", chunked);
  snprintf(c2, sizeof c2, "scheduler.preemption=%s", preemption);
  snprintf(c3, sizeof c3, "scheduler.gpu_memory_utilization=%g", mem_util);
  const char *const settings[] = {"model=llama2-7b", "cluster.instances=2", c1, c2, c3, NULL};
  infsim_run_params p = fixture_params(settings);
  infsim_trace t = random_trace(600, 20.0, 1500, 500, 8);
  infsim_run_result *macro = fixture_run(&p, &t);
  p.sched.max_steps_per_event = 1;
  infsim_run_result *single = fixture_run(&p, &t);
  size_t n = 0;
  const infsim_request_record *a = infsim_run_result_requests(macro, &n);
  const infsim_request_record *b = infsim_run_result_requests(single, &n);
  int64_t worst_ns = 0;
  for (size_t i = 0; i < n; i++) {
    if (a[i].instance != b[i].instance || a[i].preemptions != b[i].preemptions || a[i].state != b[i].state) print_message("%s %s %g: request %zu: instance %d/%d preemptions %d/%d first %lld/%lld\n", chunked, preemption, mem_util, i, a[i].instance, b[i].instance, a[i].preemptions, b[i].preemptions, (long long)a[i].first_token_ns, (long long)b[i].first_token_ns);
    assert_int_equal(a[i].state, b[i].state);
    assert_int_equal(a[i].instance, b[i].instance);
    assert_int_equal(a[i].preemptions, b[i].preemptions);
    int64_t d1 = llabs(a[i].first_token_ns - b[i].first_token_ns), d2 = llabs(a[i].finish_ns - b[i].finish_ns);
    if (d1 > worst_ns) worst_ns = d1;
    if (d2 > worst_ns) worst_ns = d2;
  }
  /* at most half a ns of rounding per iteration of the run (< 1e6 iterations) */
  assert_true(worst_ns < 1000000);
  assert_true(infsim_run_result_counters(macro)->events < infsim_run_result_counters(single)->events);
  infsim_run_result_free(macro);
  infsim_run_result_free(single);
  infsim_trace_free(&t);
}

static void test_macro_steps_equal_single_steps(void **state) {
  (void)state;
  check_macro_steps_equal_single_steps("true", "recompute", 0.9);
  check_macro_steps_equal_single_steps("false", "recompute", 0.9);
  check_macro_steps_equal_single_steps("true", "recompute", 0.19);
  check_macro_steps_equal_single_steps("true", "swap", 0.19);
}

/* vllm-single: one instance over every GPU, tensor parallel inside a node,
 * pipeline stages across nodes; 70B does not fit one A100-80GB. */
static void test_vllm_single_layout(void **state) {
  (void)state;
  const char *const one_gpu[] = {"model=llama2-70b", "cluster.instances=1", NULL};
  infsim_run_params p = fixture_params(one_gpu);
  infsim_trace t = random_trace(50, 5.0, 1000, 100, 2);
  infsim_run_result *sim = NULL;
  infsim_error err = {0};
  assert_int_equal(infsim_run_simulate(&p, &t, NULL, &sim, &err), INFSIM_EINPUT);
  assert_non_null(strstr(err.msg, "weights"));
  infsim_run_result_free(sim);

  const char *const single[] = {"model=llama2-70b", "cluster.instances=4", "cluster.gpus_per_node=2",
                                "policy.name=vllm-single", NULL};
  p = fixture_params(single);
  sim = fixture_run(&p, &t);
  assert_all_completed_in_order(sim);
  size_t n = 0;
  const infsim_request_record *r = infsim_run_result_requests(sim, &n);
  for (size_t i = 0; i < n; i++) assert_int_equal(r[i].instance, 0);
  /* 4 x 80 GB x 0.9 - 138 GB of weights, in blocks of 16 tokens x 320 KiB */
  double kv = 4 * 80e9 * 0.9 - 2.0 * 68976648192.0;
  int64_t blocks = infsim_run_result_counters(sim)->kv_blocks_per_instance;
  assert_true(fabs((double)blocks - kv / (16.0 * 327680.0)) <= 1.0);
  infsim_run_result_free(sim);
  infsim_trace_free(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_isolated_request_matches_cost_model),
      cmocka_unit_test(test_chunked_prefill_ttft_is_sum_of_chunks),
      cmocka_unit_test(test_recompute_preemption_makes_progress),
      cmocka_unit_test(test_swap_preemption_makes_progress),
      cmocka_unit_test(test_rejections_name_their_reason),
      cmocka_unit_test(test_same_seed_same_records),
      cmocka_unit_test(test_macro_steps_equal_single_steps),
      cmocka_unit_test(test_vllm_single_layout),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
