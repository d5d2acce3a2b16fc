/*
** sim.h: the engine: one simulated run of the scheduler on a virtual clock.
**
** The engine owns the clock and one event heap; it feeds arrivals to the
** scheduler one at a time, delivers batch ends from the simulated executor
** (cost model + closed-form decode runs, sim/sim_executor.c) and messages
** from the simulated transport (sim/sim_transport.c), and samples every
** instance's state into the time series. The same seed gives the same
** records, byte for byte.
*/
#ifndef INFSIM_SIM_H
#define INFSIM_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "infsim/costmodel.h"
#include "infsim/distattn.h"
#include "infsim/high_water.h"
#include "infsim/network.h"
#include "infsim/sched.h"
#include "infsim/status.h"
#include "infsim/timeline.h"
#include "infsim/trace.h"

/* At most this many samples per instance, and this many rows (instances x
 * samples) in all: the interval doubles as needed to keep both. The total
 * keeps the time series near 56 MB (56-byte rows) whatever the cluster's
 * size; a run keeps at least 2 samples per instance (10 at params.h's
 * INFSIM_MAX_INSTANCES). */
enum { INFSIM_MAX_SAMPLES_PER_INSTANCE = 100000, INFSIM_MAX_SAMPLES_TOTAL = 1000000 };

typedef struct infsim_sim infsim_sim;

/* Someone who looks at a run while it goes (a soak's memory reports):
 * tick is called once the clock has passed each multiple of every_ns,
 * with that multiple, between two events. */
typedef struct {
  void *self;
  int64_t every_ns; /* 0: never */
  void (*tick)(void *self, const infsim_sim *s, int64_t at_ns);
} infsim_sim_watch;

typedef struct {
  infsim_sched_params sched;
  int64_t sample_interval_ns;
  int64_t max_samples_per_instance; /* 0: INFSIM_MAX_SAMPLES_PER_INSTANCE (less with many instances) */
  double pcie_bytes_per_s;          /* host <-> GPU, for swapped KV */
  infsim_topology topology;         /* the simulated network's links */
  int32_t gmanager_node;            /* whose host memory endpoint the gManager is */
  infsim_distattn_shape distattn;   /* DistAttention's wire and overlap (infinite-llm) */
  bool distattn_flow_per_path;      /* a decode run's steady flows: one per path, not per holder (policy.distattn_flows) */
  bool record_iterations;           /* keep one row per batch (iterations.csv) */
  struct infsim_timeline *timeline; /* borrowed; NULL: none */
  infsim_sim_watch watch;
} infsim_sim_config;

/* One row of iterations.csv: a batch (steps > 1: a run of identical decode steps). */
typedef struct {
  int32_t instance;
  int64_t start_ns;
  int64_t end_ns;
  int64_t steps;
  infsim_batch_agg agg;
  int64_t swap_in_bytes; /* host <-> GPU KV moved before the batch (not in iterations.csv) */
  int64_t swap_out_bytes;
} infsim_iteration_row;

/* A run of the trace's requests (copied into the scheduler's records: the
 * trace may go once this returns).
 * The cost model is moved in: the sim destroys it. */
infsim_status infsim_sim_new(const infsim_sim_config *c, infsim_cost_model *cost, const infsim_trace *trace,
                             infsim_sim **out, infsim_error *err);
/* Runs the event loop to the end (every request finished or rejected). */
infsim_status infsim_sim_run(infsim_sim *s, infsim_error *err);
void infsim_sim_free(infsim_sim *s);

const infsim_request_record *infsim_sim_requests(const infsim_sim *s, size_t *count);
const infsim_sample_row *infsim_sim_samples(const infsim_sim *s, size_t *count);
const infsim_iteration_row *infsim_sim_iterations(const infsim_sim *s, size_t *count);
const infsim_run_counters *infsim_sim_counters(const infsim_sim *s);
int64_t infsim_sim_sample_interval_used_ns(const infsim_sim *s);
/* The run's high-water marks so far (high_water.h; summary.json's
 * high_water object, docs/high-water.md). */
void infsim_sim_high_water(const infsim_sim *s, infsim_high_water_set *out);
/* "roofline:GPU" or "calibrated:PROFILE". */
const char *infsim_sim_cost_model_name(const infsim_sim *s);
/* The simulated network (links.csv) and the scheduler (policy counters). */
const infsim_network *infsim_sim_network(const infsim_sim *s);
const infsim_sched *infsim_sim_sched(const infsim_sim *s);
/* The simulated clock: the time of the event handled last (a watch's tick
 * sees the state as of then, which may lie past the tick's multiple). */
int64_t infsim_sim_now_ns(const infsim_sim *s);

#endif
