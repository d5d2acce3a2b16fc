/*
** run.h: the run library: config -> params -> trace -> cost source -> run
** -> result, one entry point used by `infsim run`, the tests, sweeps,
** capacity searches and cluster mode.
**
**   infsim_run_args a = {.config_path = "c.yaml", .sets = sets, .set_count = 2};
**   infsim_run_setup *setup; infsim_run_result *res;
**   infsim_run_setup_load(&a, &setup, &err);      // every input read and checked
**   infsim_run_execute(setup, &res, &err);         // the simulation
**   infsim_run_write(res, "out", INFSIM_OUTPUT_ALL, &err);
**
** A setup holds the resolved parameters (plain bytes: infsim_run_params
** has no pointers, so MPI ranks can send it as is), the resolved config as
** JSON, the trace and, for its first run, the cost model loading built.
** Which trace wins: args.trace_path, else the config's workload.trace
** (relative to the config file), else the generator under workload.*;
** beside a file the generator's keys are still checked
** (infsim_workload_check). Unknown config keys fail the load. Nothing is written before
** infsim_run_write, which writes every file under a temporary name and
** renames them only once all are complete.
*/
#ifndef INFSIM_RUN_H
#define INFSIM_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "infsim/metrics.h"
#include "infsim/params.h"
#include "infsim/policy_infinite.h"
#include "infsim/sched.h"
#include "infsim/sim.h"
#include "infsim/status.h"
#include "infsim/trace.h"

typedef struct {
  const char *config_path;  /* required */
  const char *trace_path;   /* NULL: the config decides */
  const char *const *sets;  /* "key=value" overrides, applied in order */
  int set_count;
  const char *seed_text;    /* NULL: the config's seed */
} infsim_run_args;

typedef struct infsim_run_setup infsim_run_setup;
typedef struct infsim_run_result infsim_run_result;

infsim_status infsim_run_setup_load(const infsim_run_args *args, infsim_run_setup **out, infsim_error *err);
void infsim_run_setup_free(infsim_run_setup *setup);
const infsim_run_params *infsim_run_setup_params(const infsim_run_setup *setup);
/* The params to change before execution (options that are not config keys).
 * Any field may change through the pointer, so the setup forgets the cost
 * model loading built: its runs build their own (infsim_run_execute). */
infsim_run_params *infsim_run_setup_params_mut(infsim_run_setup *setup);
const infsim_trace *infsim_run_setup_trace(const infsim_run_setup *setup);
/* The resolved config (borrowed reference). */
json_t *infsim_run_setup_config(const infsim_run_setup *setup);
/* The name of the cost model loading built ("roofline:GPU" or
 * "calibrated:PROFILE"); NULL once a run took it or
 * infsim_run_setup_params_mut dropped it. */
const char *infsim_run_setup_cost_model(const infsim_run_setup *setup);

/* Simulates the setup (its params, config and trace stay untouched: one
 * setup can run many times, one run at a time; it must outlive the
 * result). Loading built the cost model to check the params: the first run
 * takes that model instead of building it again (a calibrated one reads
 * the DB); a later run, or any run after infsim_run_setup_params_mut,
 * builds its own from the params as they are then. */
infsim_status infsim_run_execute(infsim_run_setup *setup, infsim_run_result **out, infsim_error *err);
/* The same on another trace in place of the setup's (borrowed: it must
 * outlive the result), e.g. a sweep's copy with scaled arrival times. */
infsim_status infsim_run_execute_trace(infsim_run_setup *setup, const infsim_trace *trace, infsim_run_result **out,
                                       infsim_error *err);
/* The same for one run only: the setup's trace is freed as soon as the
 * scheduler holds its rows (its records keep arrival and lengths), so a
 * run's memory does not keep the trace besides them. The setup cannot run
 * again; infsim_run_setup_trace reads an empty trace. */
infsim_status infsim_run_execute_consume(infsim_run_setup *setup, infsim_run_result **out, infsim_error *err);
/* The same from parameters and a trace (both borrowed: the trace must
 * outlive the result); config, if not NULL, is summary.json's `config`. */
infsim_status infsim_run_simulate(const infsim_run_params *p, const infsim_trace *trace, json_t *config,
                                  infsim_run_result **out, infsim_error *err);
/* The same, with someone watching the run as it goes (sim.h). */
infsim_status infsim_run_simulate_watched(const infsim_run_params *p, const infsim_trace *trace, json_t *config,
                                          const infsim_sim_watch *watch, infsim_run_result **out, infsim_error *err);
void infsim_run_result_free(infsim_run_result *res);

/* The scheduler's parameters a run of p uses (the policy's layout, KV
 * blocks per instance from the memory beside the weights): what cluster
 * mode hands the same scheduler. */
infsim_status infsim_run_sched_params(const infsim_run_params *p, infsim_sched_params *out, infsim_error *err);

/* The cost model a run of p prices its iterations with (the policy's
 * layout, the calibration profile or the roofline): what re-prices the
 * iterations a cluster run measured. Free with infsim_cost_model_destroy. */
infsim_status infsim_run_cost_model(const infsim_run_params *p, infsim_cost_model *out, infsim_error *err);

/* What a run made elsewhere recorded (cluster mode, on the wall clock). */
typedef struct {
  const infsim_request_record *requests; /* one per trace request */
  size_t request_count;
  const infsim_sample_row *samples;
  size_t sample_count;
  const infsim_iteration_row *iterations;
  size_t iteration_count;
  infsim_run_counters counters;
  int64_t sample_interval_ns;
  const char *cost_model; /* summary.json's cost_model, e.g. "measured:cpu" */
  double wall_s;
} infsim_run_records;

/* A result over copies of those records, written like a simulated one. */
infsim_status infsim_run_result_from_records(const infsim_run_params *p, const infsim_trace *trace, json_t *config,
                                             const infsim_run_records *r, infsim_run_result **out,
                                             infsim_error *err);

const infsim_run_params *infsim_run_result_params(const infsim_run_result *res);
const infsim_summary *infsim_run_result_summary(const infsim_run_result *res);
const infsim_request_record *infsim_run_result_requests(const infsim_run_result *res, size_t *count);
const infsim_sample_row *infsim_run_result_samples(const infsim_run_result *res, size_t *count);
const infsim_run_counters *infsim_run_result_counters(const infsim_run_result *res);
/* The simulated network (links.csv's rows) of a run just simulated; NULL
 * for results read back from records. */
const infsim_network *infsim_run_result_network(const infsim_run_result *res);
/* summary.json's distkv counters of an infinite-llm run just simulated;
 * false for other policies and for results read back from records. */
bool infsim_run_result_distkv(const infsim_run_result *res, infsim_distkv_stats *out);
/* iterations.csv's rows (empty unless metrics.iterations). */
const infsim_iteration_row *infsim_run_result_iterations(const infsim_run_result *res, size_t *count);
/* The time series' interval after any doubling (sim.h). */
int64_t infsim_run_result_sample_interval_ns(const infsim_run_result *res);
/* "roofline:GPU" or "calibrated:PROFILE". */
const char *infsim_run_result_cost_model(const infsim_run_result *res);
double infsim_run_result_wall_s(const infsim_run_result *res);
/* The run's high-water marks (none for a result from records). */
void infsim_run_result_high_water(const infsim_run_result *res, infsim_high_water_set *out);
/* summary.json's high_water object (new reference; a simulated result only). */
json_t *infsim_run_result_high_water_json(const infsim_run_result *res);
/* infsim_sched_request_slots of a run just simulated (false for results from records). */
bool infsim_run_result_request_slots(const infsim_run_result *res, int64_t *state_slots, int64_t *table_slots,
                                     int64_t *span_peak);
/* summary.json's object (new reference). */
json_t *infsim_run_result_summary_json(const infsim_run_result *res);

typedef enum {
  INFSIM_OUTPUT_ALL = 0,     /* summary.json, requests.csv, timeseries.csv, results.db */
  INFSIM_OUTPUT_SUMMARY = 1  /* summary.json only (sweeps) */
} infsim_output_set;

/* Writes the run's outputs into dir (created if missing) and its --timeline
 * file, all or nothing. A run's output name (summary.json, requests.csv,
 * timeseries.csv, results.db, iterations.csv, links.csv) that this run does
 * not write is removed in the same commit, so that dir holds one run's
 * outputs. After a failure nothing new is left: no file, no directory. */
infsim_status infsim_run_write(const infsim_run_result *res, const char *dir, infsim_output_set which,
                               infsim_error *err);

/* Whether name (a file name, no directory) is one of a run's outputs in
 * its directory: summary.json, requests.csv, ... (infsim_run_write). */
bool infsim_run_output_name(const char *name);

/* The simulator's source identity: the SHA-256 (64 hex digits) of
 * libinfsim's sources and headers as built (run/source_id.cmake). Builds
 * of the same sources share it (infsim and infsim-mpi); a sweep's run key
 * holds it, so a sweep reruns what a build of other sources has run. */
const char *infsim_source_id(void);

#endif
