/*
** sweep_runner.c: the sweep's runner over the simulator (sweep.h): a job
** is read and checked like `infsim run` reads its inputs (config, --set,
** seed, trace from the job, else workload.trace, else the generator), then
** simulated with only the summary kept. No subprocess, no files.
**
** rate_scale divides every arrival time (rounded to the nanosecond, which
** keeps them non-decreasing), so the trace's arrival rate is multiplied
** while its requests stay the same.
*/
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "infsim/config.h"
#include "infsim/metrics.h"
#include "infsim/report.h"
#include "infsim/sim.h"
#include "infsim/sweep.h"
#include "infsim/trace.h"

typedef struct {
  infsim_config *cfg;
  infsim_sim_params params;
  infsim_trace trace;
  json_t *resolved;
} job_handle;

static void handle_free(job_handle *h) {
  if (h == NULL) return;
  infsim_config_free(h->cfg);
  infsim_trace_free(&h->trace);
  json_decref(h->resolved);
  free(h);
}

static void resolve_relative(const char *config_path, const char *path, char *out, size_t out_bytes) {
  if (path[0] == '/') {
    snprintf(out, out_bytes, "%s", path);
    return;
  }
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", config_path);
  snprintf(out, out_bytes, "%s/%s", dirname(buf), path);
}

static infsim_status load(const infsim_job_args *a, job_handle *h, infsim_error *err) {
  infsim_config *cfg = h->cfg;
  infsim_status st = infsim_config_load_yaml(cfg, a->config_path, err);
  for (size_t i = 0; st == INFSIM_OK && i < a->set_count; i++) st = infsim_config_set(cfg, a->sets[i], err);
  if (st == INFSIM_OK && a->seed_text != NULL) st = infsim_config_put(cfg, "seed", a->seed_text, "--seeds", err);
  if (st == INFSIM_OK) st = infsim_sim_params_from_config(cfg, &h->params, err);
  const char *cfg_trace = NULL;
  if (st == INFSIM_OK && infsim_config_has(cfg, "workload.trace"))
    st = infsim_config_string(cfg, "workload.trace", "", &cfg_trace, err);
  if (st == INFSIM_OK && a->trace_path != NULL) {
    infsim_config_mark_used(cfg, "workload");
    st = infsim_trace_read_csv(a->trace_path, &h->trace, err);
  } else if (st == INFSIM_OK && cfg_trace != NULL) {
    char path[4096];
    resolve_relative(a->config_path, cfg_trace, path, sizeof path);
    infsim_config_mark_used(cfg, "workload");
    st = infsim_trace_read_csv(path, &h->trace, err);
  } else if (st == INFSIM_OK) {
    st = infsim_workload_generate(cfg, "workload", h->params.seed, &h->trace, err);
  }
  if (st == INFSIM_OK) st = infsim_config_check_unused(cfg, err);
  if (st == INFSIM_OK && a->rate_scale != 1)
    for (size_t i = 0; i < h->trace.count; i++)
      h->trace.requests[i].arrival_ns = llround((double)h->trace.requests[i].arrival_ns / a->rate_scale);
  return st;
}

static infsim_status runner_prepare(void *self, const infsim_job_args *a, void **handle,
                                    char key[INFSIM_SHA256_HEX_BYTES], uint64_t *seed, infsim_error *err) {
  (void)self;
  job_handle *h = calloc(1, sizeof *h);
  if (h == NULL || (h->cfg = infsim_config_new()) == NULL) {
    free(h);
    return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  }
  infsim_status st = load(a, h, err);
  if (st == INFSIM_OK && (h->resolved = infsim_config_resolved_json(h->cfg)) == NULL)
    st = infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  if (st == INFSIM_OK) {
    /* The rate scale changes the trace, and so its digest. */
    uint8_t digest[INFSIM_SHA256_BYTES];
    infsim_trace_digest(&h->trace, digest);
    if (!infsim_point_key(h->resolved, digest, h->params.seed, INFSIM_VERSION, key))
      st = infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  }
  if (st != INFSIM_OK) {
    handle_free(h);
    return st;
  }
  *seed = h->params.seed;
  *handle = h;
  return INFSIM_OK;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static infsim_status runner_execute(void *self, void *handle, json_t **summary, infsim_error *err) {
  (void)self;
  job_handle *h = handle;
  infsim_sim *sim = NULL;
  infsim_status st = infsim_sim_new(&h->params, &h->trace, &sim, err);
  double t0 = now_s();
  if (st == INFSIM_OK) st = infsim_sim_run(sim, err);
  double wall_s = now_s() - t0;
  infsim_summary sum;
  if (st == INFSIM_OK) {
    size_t n = 0;
    const infsim_request_record *rec = infsim_sim_requests(sim, &n);
    st = infsim_summary_compute(&h->params, rec, n, infsim_sim_counters(sim), &sum, err);
  }
  if (st == INFSIM_OK && (*summary = infsim_summary_json(sim, &sum, h->resolved, wall_s)) == NULL)
    st = infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  infsim_sim_free(sim);
  return st;
}

static void runner_release(void *self, void *handle) {
  (void)self;
  handle_free(handle);
}

infsim_status infsim_sweep_runner_new(infsim_sweep_runner *out, infsim_error *err) {
  (void)err;
  *out = (infsim_sweep_runner){NULL, runner_prepare, runner_execute, runner_release};
  return INFSIM_OK;
}

void infsim_sweep_runner_free(infsim_sweep_runner *r) { memset(r, 0, sizeof *r); }
