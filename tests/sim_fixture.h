/*
** sim_fixture.h: helpers shared by the simulator's tests: build params from
** "key=value" strings, make traces, run a simulation.
*/
#ifndef INFSIM_TESTS_SIM_FIXTURE_H
#define INFSIM_TESTS_SIM_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>

#include "infsim/config.h"
#include "infsim/sim.h"
#include "infsim/trace.h"

/* Params from NULL-terminated "key=value" settings; aborts on error. */
static inline infsim_sim_params fixture_params(const char *const *settings) {
  infsim_config *cfg = infsim_config_new();
  infsim_error err = {0};
  for (size_t i = 0; settings[i] != NULL; i++) {
    if (infsim_config_set(cfg, settings[i], &err) != INFSIM_OK) {
      fprintf(stderr, "fixture: %s\n", err.msg);
      abort();
    }
  }
  infsim_sim_params p;
  if (infsim_sim_params_from_config(cfg, &p, &err) != INFSIM_OK) {
    fprintf(stderr, "fixture: %s\n", err.msg);
    abort();
  }
  /* The params keep pointers into cfg (calibration.db); tests use the default. */
  p.calibration_db = "/nonexistent/calibration.db";
  p.calibration_db_given = false;
  infsim_config_free(cfg);
  return p;
}

/* Runs a simulation to the end; aborts on error. Caller frees. */
static inline infsim_sim *fixture_run(const infsim_sim_params *p, const infsim_trace *trace) {
  infsim_sim *sim = NULL;
  infsim_error err = {0};
  if (infsim_sim_new(p, trace, &sim, &err) != INFSIM_OK || infsim_sim_run(sim, &err) != INFSIM_OK) {
    fprintf(stderr, "fixture: %s\n", err.msg);
    abort();
  }
  return sim;
}

static inline void fixture_add(infsim_trace *t, int64_t arrival_ns, int64_t prompt, int64_t output) {
  infsim_error err = {0};
  if (infsim_trace_append(t, (infsim_trace_request){arrival_ns, prompt, output}, &err) != INFSIM_OK) abort();
}

#endif
