/*
** sim_fixture.h: helpers shared by the simulator's tests: build params from
** "key=value" strings, make traces, run a simulation through the run
** library.
*/
#ifndef INFSIM_TESTS_SIM_FIXTURE_H
#define INFSIM_TESTS_SIM_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>

#include <math.h>

#include <gsl/gsl_randist.h>

#include "infsim/config.h"
#include "infsim/rng.h"
#include "infsim/run.h"
#include "infsim/trace.h"

/* Params from NULL-terminated "key=value" settings; aborts on error. */
static inline infsim_run_params fixture_params(const char *const *settings) {
  infsim_config *cfg = infsim_config_new();
  infsim_error err = {0};
  for (size_t i = 0; settings[i] != NULL; i++) {
    if (infsim_config_set(cfg, settings[i], &err) != INFSIM_OK) {
      fprintf(stderr, "fixture: %s\n", err.msg);
      abort();
    }
  }
  infsim_run_params p;
  if (infsim_run_params_from_config(cfg, &p, &err) != INFSIM_OK) {
    fprintf(stderr, "fixture: %s\n", err.msg);
    abort();
  }
  /* Tests run on the roofline unless they name a DB. */
  if (!p.calibration_db_given) snprintf(p.calibration_db, sizeof p.calibration_db, "/nonexistent/calibration.db");
  /* Iterations kept: the scheduler then keeps the batches' longest context,
   * whose heap the debug builds' invariant checks compare with a walk. */
  p.record_iterations = true;
  infsim_config_free(cfg);
  return p;
}

/* Runs a simulation to the end; aborts on error. Caller frees; the trace
 * must outlive the result. */
static inline infsim_run_result *fixture_run(const infsim_run_params *p, const infsim_trace *trace) {
  infsim_run_result *res = NULL;
  infsim_error err = {0};
  if (infsim_run_simulate(p, trace, NULL, &res, &err) != INFSIM_OK) {
    fprintf(stderr, "fixture: %s\n", err.msg);
    abort();
  }
  return res;
}

static inline void fixture_add(infsim_trace *t, int64_t arrival_ns, int64_t prompt, int64_t output) {
  infsim_error err = {0};
  if (infsim_trace_append(t, (infsim_trace_request){arrival_ns, prompt, output}, &err) != INFSIM_OK) abort();
}

/* n requests, Poisson arrivals at rate_per_s, prompt and output lengths
 * uniform in [1, max]; the draws come from stream `stream` of seed. */
static inline infsim_trace fixture_random_trace(size_t n, double rate_per_s, int64_t max_prompt, int64_t max_output,
                                                uint64_t seed, const char *stream) {
  gsl_rng *rng = infsim_rng_new(seed, stream);
  infsim_trace t = {0};
  double time_s = 0.0;
  for (size_t i = 0; i < n; i++) {
    time_s += gsl_ran_exponential(rng, 1.0 / rate_per_s);
    int64_t prompt = 1 + (int64_t)gsl_rng_uniform_int(rng, (unsigned long)max_prompt);
    int64_t output = 1 + (int64_t)gsl_rng_uniform_int(rng, (unsigned long)max_output);
    fixture_add(&t, (int64_t)llround(time_s * 1e9), prompt, output);
  }
  gsl_rng_free(rng);
  return t;
}

#endif
