/*
** sim.h: one simulated run: parameters, the run, and what it records.
**
** infsim_sim_params_from_config() reads every run key of DESIGN.md from a
** config (defaults filled, ranges checked, errors naming file:line:key);
** infsim_sim_new() builds the cluster for a trace; infsim_sim_run() runs
** the event loop to the end; the records and counters then describe every
** request and the cluster over time. The same seed gives the same records,
** byte for byte.
*/
#ifndef INFSIM_SIM_H
#define INFSIM_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "infsim/config.h"
#include "infsim/costmodel.h"
#include "infsim/hardware.h"
#include "infsim/policy.h"
#include "infsim/status.h"
#include "infsim/trace.h"

typedef enum { INFSIM_PREEMPT_RECOMPUTE = 0, INFSIM_PREEMPT_SWAP = 1 } infsim_preemption_mode;
typedef enum { INFSIM_DISPATCH_LEAST_LOADED = 0, INFSIM_DISPATCH_ROUND_ROBIN = 1 } infsim_dispatch_kind;

typedef struct infsim_sim_params {
  infsim_model_shape model;
  infsim_gpu_spec gpu;
  char gpu_profile[INFSIM_NAME_BYTES]; /* the `gpu` key as given */
  const char *calibration_db;          /* path; lives as long as the config */
  bool calibration_db_given;           /* set in the config: it must exist */
  infsim_roofline_eff roofline;

  int64_t instances;
  int64_t gpus_per_instance;
  int64_t gpus_per_node;
  double intra_node_bytes_per_s;
  double inter_node_bytes_per_s;
  int64_t link_latency_ns;
  double pcie_bytes_per_s; /* host <-> GPU, for swap */

  int64_t max_batch_size;
  int64_t max_batched_tokens;
  int64_t block_tokens;
  bool chunked_prefill;
  infsim_preemption_mode preemption;
  double gpu_memory_utilization;
  int64_t swap_space_bytes; /* per instance, host memory for swapped KV */
  int64_t iteration_overhead_ns;
  int64_t max_steps_per_event; /* decode iterations one engine event may cover; 0: no limit */

  const infsim_policy_ops *policy;
  infsim_dispatch_kind dispatch; /* vllm-multi's policy.dispatch */

  double slo_ttft_s;
  double slo_tpot_s;
  int64_t warmup_ns;
  int64_t sample_interval_ns;
  uint64_t seed;
} infsim_sim_params;

/* Reads every run key except workload.* and seed handling done by the CLI. */
infsim_status infsim_sim_params_from_config(infsim_config *cfg, infsim_sim_params *p, infsim_error *err);

typedef enum {
  INFSIM_REQ_PENDING = 0, /* not arrived yet */
  INFSIM_REQ_WAITING,
  INFSIM_REQ_RUNNING,
  INFSIM_REQ_SWAPPED,
  INFSIM_REQ_FINISHED,
  INFSIM_REQ_REJECTED
} infsim_req_state;

typedef enum {
  INFSIM_REJECT_NONE = 0,
  INFSIM_REJECT_KV_CAPACITY,    /* prompt + output never fit in one instance's KV cache */
  INFSIM_REJECT_CONTEXT_LIMIT,  /* longer than model.max_context_tokens */
  INFSIM_REJECT_BATCH_TOKENS    /* prompt > max_batched_tokens without chunked prefill */
} infsim_reject_reason;

const char *infsim_reject_reason_name(infsim_reject_reason r);

/* What a run records of one request (times -1 until they happen). */
typedef struct {
  int64_t arrival_ns;
  int64_t prompt_tokens;
  int64_t output_tokens;
  int64_t first_token_ns;
  int64_t finish_ns;
  int32_t instance;
  int32_t preemptions;
  int32_t instances_touched;
  uint8_t state;  /* infsim_req_state */
  uint8_t reason; /* infsim_reject_reason */
} infsim_request_record;

/* One row of timeseries.csv: an instance's state at a sample time. */
typedef struct {
  int64_t time_ns;
  int32_t instance;
  int32_t running;
  int32_t waiting;
  int64_t kv_used_blocks;
  int64_t kv_free_blocks;
  int64_t kv_lent_blocks;
  int64_t kv_borrowed_blocks;
} infsim_sample_row;

/* Run-wide counters. */
typedef struct {
  int64_t events;
  int64_t iterations;
  int64_t preemptions;
  int64_t end_ns;                /* time of the last event */
  int64_t kv_blocks_per_instance;
  int64_t borrowed_blocks_peak;
  int64_t network_bytes;
  int64_t max_context_tokens;    /* longest prompt + output completed */
  double waiting_integral_ns;    /* integral over time of waiting requests (all instances) */
  double running_integral_ns;    /* same for running requests */
} infsim_run_counters;

typedef struct infsim_sim infsim_sim;

/* Builds a cluster for the trace (copied: the trace may be freed after). */
infsim_status infsim_sim_new(const infsim_sim_params *p, const infsim_trace *trace, infsim_sim **out,
                             infsim_error *err);
infsim_status infsim_sim_run(infsim_sim *s, infsim_error *err);
void infsim_sim_free(infsim_sim *s);

const infsim_request_record *infsim_sim_requests(const infsim_sim *s, size_t *count);
const infsim_sample_row *infsim_sim_samples(const infsim_sim *s, size_t *count);
const infsim_run_counters *infsim_sim_counters(const infsim_sim *s);
const infsim_sim_params *infsim_sim_params_of(const infsim_sim *s);
/* "roofline:GPU" or "calibrated:PROFILE". */
const char *infsim_sim_cost_model_name(const infsim_sim *s);

#endif
