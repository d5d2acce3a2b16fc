/*
** params.h: a run's resolved parameters, plain bytes (no pointers), so a
** sweep can copy them and MPI ranks can send them as they are.
**
** infsim_run_params_from_config() reads every run key of DESIGN.md from a
** config (defaults filled, ranges checked, errors naming file:line:key);
** workload.* is the trace's (run.h). README.md's configuration table
** mirrors run/params.c.
*/
#ifndef INFSIM_PARAMS_H
#define INFSIM_PARAMS_H

#include <stdbool.h>
#include <stdint.h>

#include "infsim/config.h"
#include "infsim/costmodel.h"
#include "infsim/hardware.h"
#include "infsim/sched.h"
#include "infsim/status.h"

enum { INFSIM_CONFIG_PATH_BYTES = 1024 };
/* The most instances a run simulates (cluster.instances; no policy lays
 * out more instances than that): the simulator keeps about 14 KB per
 * instance (measured, resident), 1.4 GB at this many; a million would need
 * 14 GB or more, so more is refused up front, not left to the OOM killer. */
enum { INFSIM_MAX_INSTANCES = 100000 };

typedef struct {
  infsim_model_shape model;
  infsim_gpu_spec gpu;
  char gpu_profile[INFSIM_NAME_BYTES];    /* the `gpu` key as given */
  char calibration_db[INFSIM_CONFIG_PATH_BYTES]; /* path */
  bool calibration_db_given;              /* set in the config: it must exist */
  infsim_roofline_eff roofline;

  int64_t instances; /* cluster.instances (the policy's layout may differ) */
  int64_t gpus_per_instance;
  int64_t gpus_per_node;
  double intra_node_bytes_per_s;
  double inter_node_bytes_per_s;
  int64_t link_latency_ns;
  double pcie_bytes_per_s; /* host <-> GPU, for swap */
  double gpu_memory_utilization;
  int64_t swap_space_bytes; /* per instance, host memory for swapped KV */
  double host_memory_bytes; /* per node: one pool (swap and the CPU tier); < 0: instances x swap space */
  double cpu_attn_bytes_per_s; /* host memory bandwidth CPU micro-attention reaches (CPU tier) */
  int32_t distattn_relay;      /* policy.distattn_relay: infsim_distattn_relay (distattn.h) */
  double distattn_reprice_tolerance; /* policy.distattn_reprice_tolerance (network.h's reprice_tolerance) */
  bool distattn_flow_per_path;       /* policy.distattn_flows: path (true) or holder */
  int64_t iteration_overhead_ns;
  bool iteration_overhead_given; /* cost.iteration_overhead_us in the config: wins over the DB's iteration_fit */

  /* The scheduler's share; instances and block counts are filled by the
   * run from the policy's layout and the memory left beside the weights. */
  infsim_sched_params sched;

  double slo_ttft_s;
  double slo_tpot_s;
  int64_t warmup_ns;
  int64_t sample_interval_ns;
  bool record_iterations; /* metrics.iterations: write iterations.csv */
  /* Set by `infsim run --timeline` (not config keys): a Chrome trace of
   * the events overlapping [timeline_from_ns, timeline_to_ns] (to < 0: to
   * the end), written beside the other outputs. Empty path: none. */
  char timeline_path[INFSIM_CONFIG_PATH_BYTES];
  int64_t timeline_from_ns;
  int64_t timeline_to_ns;
  uint64_t seed;
} infsim_run_params;

/* Reads every run key except workload.*. */
infsim_status infsim_run_params_from_config(infsim_config *cfg, infsim_run_params *p, infsim_error *err);

/* The path that `value`, key's value, names: a relative path from a config
 * file is relative to that file's directory (so a config and its trace or
 * DB move together); one from --set, to the working directory. */
infsim_status infsim_config_path(const infsim_config *cfg, const char *key, const char *value, char *out,
                                 size_t out_bytes, infsim_error *err);

#endif
