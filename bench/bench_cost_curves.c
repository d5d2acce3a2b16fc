/*
** bench_cost_curves.c: what one priced batch costs with the calibrated
** curves against the roofline, in the same process.
**
** The simulator prices a batch through the cost model (costmodel.h): a
** decode run (infsim_cost_decode_run_init, then infsim_cost_decode_run_ns,
** again for each cut short by an arrival) or a mixed iteration
** (infsim_cost_iteration_ns). This replays one fixed stream of such calls,
** drawn like the 1-hour benchmark's (llama2-7b on one GPU; decode batches
** of 1-32 requests at 8-4,000 tokens of context each, runs of 1-256
** steps; prefill chunks of 8-4,000 tokens), through two cost models of
** the same GPU: the roofline and the shipped calibrated curves. Rounds
** alternate between the two, so whatever else runs on the machine slows
** both alike; each reports its best round. A whole-run comparison
** (bench/sim_speed) mixes in everything else an event does; this one
** isolates the curves.
**
** Output: ns per call for each model and kind of call, and the ratio
** calibrated / roofline. The sums of the priced times are printed too, so
** the work cannot be optimized away and a change in the curves shows.
*/
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "infsim/costmodel.h"

enum { CALLS = 1 << 20, ROUNDS = 7 };

typedef struct {
  int64_t requests, first_context, steps;
  infsim_batch_agg mixed;
} call;

static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  return z ^ (z >> 31);
}

static int64_t uniform(uint64_t *s, int64_t lo, int64_t hi) { return lo + (int64_t)(splitmix64(s) % (uint64_t)(hi - lo + 1)); }

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One pass over the calls: kind 0 decode runs (init + run + a cut-short
 * re-pricing at half the steps), kind 1 mixed iterations. Returns seconds;
 * *sum_ns collects the priced times. */
static double pass(const infsim_cost_model *cm, const call *calls, int kind, double *sum_ns) {
  double t0 = now_s(), sum = 0;
  for (int i = 0; i < CALLS; i++) {
    const call *c = &calls[i];
    if (kind == 0) {
      infsim_decode_run run;
      infsim_cost_decode_run_init(cm, c->requests, &run);
      sum += (double)infsim_cost_decode_run_ns(cm, &run, c->first_context, c->steps);
      sum += (double)infsim_cost_decode_run_ns(cm, &run, c->first_context, (c->steps + 1) / 2);
    } else {
      sum += (double)infsim_cost_iteration_ns(cm, &c->mixed);
    }
  }
  *sum_ns = sum;
  return now_s() - t0;
}

int main(int argc, char **argv) {
  const char *db = argc > 1 ? argv[1] : "data/calibration.db";
  if (argc > 2 || (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0))) {
    fprintf(stderr, "usage: bench_cost_curves [CALIBRATION.db]   (default data/calibration.db)\n");
    return 2;
  }
  infsim_model_shape model;
  if (!infsim_model_builtin("llama2-7b", &model)) return 1;
  infsim_instance_layout layout = {.tp = 1, .pp = 1, .tp_link_bytes_per_s = 450e9, .pp_link_bytes_per_s = 25e9,
                                   .link_latency_ns = 5000, .iteration_overhead_ns = 500000
                                  };
  infsim_roofline_eff eff = {.gemm_flops_eff = 0.7, .attn_flops_eff = 0.5, .hbm_eff = 0.8, .layer_overhead_ns = 10000};
  infsim_cost_model models[2];
  infsim_error err = {0};
  /* The roofline: a DB path that is not there, not given by the user. */
  if (infsim_cost_model_build("h100-sxm", "/nonexistent/calibration.db", false, &model, &layout, &eff, NULL,
                              &models[0], &err) != INFSIM_OK ||
      infsim_cost_model_build("h100-sxm", db, true, &model, &layout, &eff, NULL, &models[1], &err) != INFSIM_OK) {
    fprintf(stderr, "bench_cost_curves: %s\n", err.msg);
    return 2;
  }
  if (strncmp(models[1].curves.name, "calibrated:", 11) != 0) {
    fprintf(stderr, "bench_cost_curves: %s has no h100-sxm curves for llama2-7b\n", db);
    return 2;
  }
  call *calls = malloc(sizeof *calls * CALLS);
  if (calls == NULL) return 1;
  uint64_t seed = 1;
  for (int i = 0; i < CALLS; i++) {
    call *c = &calls[i];
    c->requests = uniform(&seed, 1, 32);
    c->first_context = c->requests * uniform(&seed, 8, 4000);
    c->steps = uniform(&seed, 1, 256);
    int64_t chunk = uniform(&seed, 8, 4000), before = uniform(&seed, 0, 1) ? 0 : uniform(&seed, 0, 4000);
    c->mixed = (infsim_batch_agg){.prefill_tokens = chunk,
                                  .prefill_attn_pairs = chunk * before + chunk * (chunk + 1) / 2,
                                  .decode_requests = c->requests,
                                  .decode_context_tokens = c->first_context,
                                  .logits_tokens = c->requests + 1};
  }
  static const char *const kinds[2] = {"decode run (init + 2 prices)", "mixed iteration"};
  printf("bench_cost_curves: %d calls per round, best of %d alternating rounds\n", CALLS, ROUNDS);
  printf("%-30s %14s %14s %8s\n", "call", models[0].curves.name, models[1].curves.name, "ratio");
  for (int kind = 0; kind < 2; kind++) {
    double best[2] = {1e30, 1e30}, sums[2] = {0, 0};
    for (int r = 0; r < ROUNDS; r++)
      for (int m = 0; m < 2; m++) {
        double t = pass(&models[m], calls, kind, &sums[m]);
        if (t < best[m]) best[m] = t;
      }
    double ns0 = best[0] / CALLS * 1e9, ns1 = best[1] / CALLS * 1e9;
    printf("%-30s %11.1f ns %11.1f ns %7.2fx\n", kinds[kind], ns0, ns1, ns1 / ns0);
    printf("%-30s %14.6g %14.6g (priced ns, summed)\n", "", sums[0], sums[1]);
  }
  infsim_cost_model_destroy(&models[0]);
  infsim_cost_model_destroy(&models[1]);
  free(calls);
  return 0;
}
