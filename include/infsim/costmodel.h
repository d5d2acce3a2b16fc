/*
** costmodel.h: how long one iteration of one instance takes.
**
** The cost of an iteration is a function of the batch's aggregates, never
** of a per-request list, so it is O(1) whatever the batch size (DESIGN.md):
** prefill tokens, prefill attention pairs, decode requests and their summed
** context; DistAttention's per-holder part is distattn.h's.
**
** Decode-only runs (the same requests, contexts one token longer each
** step) are priced in closed form where the curves allow, so simulating k
** such iterations costs O(1), not O(k).
**
** Two layers:
**  - infsim_cost_curves: per-layer kernel times on ONE tensor-parallel shard
**    (heads / tp, columns / tp), as functions of aggregates. Two sources
**    fill this vtable: the roofline (roofline.c) and curves fitted to GPU
**    measurements from the calibration DB (calib.h).
**  - infsim_cost_model: composes curves into an iteration time for an
**    instance of tp GPUs x pp pipeline stages, adding TP all-reduce and
**    pipeline hand-off on the links, which stay spec-based.
*/
#ifndef INFSIM_COSTMODEL_H
#define INFSIM_COSTMODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "infsim/batch.h"
#include "infsim/hardware.h"
#include "infsim/status.h"

/* Per-layer kernel times on one TP shard, in nanoseconds (as double: the
 * composition sums them before rounding once). */
typedef struct {
  void *self;
  /* QKV, O, gate/up/down GEMMs of one layer for `tokens` tokens. */
  double (*gemm_layer_ns)(void *self, int64_t tokens);
  /* Causal prefill attention of one layer: `tokens` queries, `pairs` (query, key) pairs. */
  double (*prefill_attn_layer_ns)(void *self, int64_t tokens, int64_t pairs);
  /* Decode micro-attention of one layer: `requests` queries over `context_tokens` KV tokens. */
  double (*decode_attn_layer_ns)(void *self, int64_t requests, int64_t context_tokens);
  /* True where decode_attn_layer_ns, as computed, never falls as
   * context_tokens grows at fixed requests (the roofline: products and
   * sums of positive terms); false: not promised of every context
   * (calibrated curves: their lines never fall, docs/calibration.md,
   * checked on samples). A search over a run's steps may then start at
   * its ends. */
  bool decode_attn_grows;
  /* Optional (NULL: summed step by step): the sum over j < steps of
   * decode_attn_layer_ns(requests, first_context + j x context_step), in
   * closed form, so that a run of decode iterations costs O(1). */
  double (*decode_attn_sum_layer_ns)(void *self, int64_t requests, int64_t first_context, int64_t context_step,
                                     int64_t steps);
  /* Merging `partials` (request, holder) partial outputs of `requests` requests, one layer. */
  double (*merge_layer_ns)(void *self, int64_t requests, int64_t partials);
  /* Copying `bytes` of KV blocks within one GPU's memory. */
  double (*kv_copy_ns)(void *self, int64_t bytes);
  void (*destroy)(void *self);
  /* Launches, norms, RoPE: a fixed time per layer per iteration that the
   * curves above leave out (roofline: cost.layer_overhead_us; calibrated
   * curves hold measured launch costs, so 0). */
  double layer_overhead_ns;
  char name[2 * INFSIM_NAME_BYTES]; /* "roofline:a100-80gb" or "calibrated:PROFILE" */
  /* Optional (NULL: none): what one layer takes beyond the curves above,
   * fitted on whole layers measured as the cuda executor runs them
   * (calibrated profiles with layer_prefill and layer_decode fits). */
  double (*layer_rest_ns)(void *self, int64_t prefill_tokens, int64_t prefill_pairs, int64_t decode_requests);
  /* Optional (NULL: none): decode attention of one layer as bounded by
   * the batch's longest request (the MA decode's longest CTA; calib.h);
   * the layer's decode attention is the larger of this and
   * decode_attn_layer_ns. graph: a decode-only step (replayed padded). */
  double (*decode_longest_layer_ns)(void *self, int64_t requests, int64_t context_tokens, int64_t max_context_tokens,
                                   bool graph);
  /* The GPU clock after idle time (tau 0: off; calibrated profiles with a
   * clock fit). Under a power cap the SM clock falls within a fraction of
   * a second of compute-bound work (prefill GEMMs and attention) and
   * recovers as fast once it stops, decode steps included (bound by
   * memory, they draw less). The instance's compute load u is an
   * exponentially weighted mean, time constant clock_tau_ns, of each
   * batch's compute-bound share of its time (0 while idle or decoding);
   * a batch's compute-bound part takes 1 - clock_idle_gain x (1 - u) of
   * its curve time, u its mean over the batch; the curves were timed
   * under sustained prefills (u = 1). */
  double clock_tau_ns;
  double clock_idle_gain;
  /* The serving loop's time per iteration beyond the GPU forward that
   * the curves price (calibrated profiles with an iteration_fit row:
   * calib.h); without one the layout's config value stands. */
  bool has_iteration_overhead;
  double iteration_overhead_ns;
} infsim_cost_curves;

/* Roofline efficiency factors (fraction of peak reached), config keys
 * cost.{gemm_efficiency, attention_efficiency, memory_efficiency}. */
typedef struct {
  double gemm_flops_eff;
  double attn_flops_eff;
  double hbm_eff;
  int64_t layer_overhead_ns; /* fixed per layer and iteration: launches, norms, RoPE */
} infsim_roofline_eff;

/* Roofline curves for `model` sharded over tp GPUs of `gpu`. */
infsim_status infsim_cost_curves_roofline(const infsim_model_shape *model, const infsim_gpu_spec *gpu, int64_t tp,
                                          const infsim_roofline_eff *eff, infsim_cost_curves *out,
                                          infsim_error *err);

/* Instance layout and links. */
typedef struct {
  int64_t tp;             /* GPUs per pipeline stage (tensor parallel) */
  int64_t pp;             /* pipeline stages */
  double tp_link_bytes_per_s; /* link the TP all-reduce runs on (NVLink within a node) */
  double pp_link_bytes_per_s; /* link between stages (NIC when stages span nodes) */
  int64_t link_latency_ns;
  int64_t iteration_overhead_ns; /* scheduler + sampling per iteration (CPU side) */
  /* cost.iteration_overhead_us set by the user: it wins over a measured
   * iteration_fit row of the calibration DB (infsim_cost_model_build). */
  bool iteration_overhead_given;
} infsim_instance_layout;

typedef struct {
  infsim_cost_curves curves; /* owned */
  infsim_model_shape model;
  infsim_instance_layout layout;
} infsim_cost_model;

/* Time of one iteration of an instance for the aggregates, in ns (>= 1);
 * INT64_MAX when it would not fit in int64 (the caller fails the run). */
int64_t infsim_cost_iteration_ns(const infsim_cost_model *cm, const infsim_batch_agg *agg);

/* The compute load dt_ns after it was u, the work running all along
 * having compute-bound share w (0 idle): w - (w - u) e^(-dt/tau), closed
 * form of the exponentially weighted mean. With the clock term off it is
 * 1: the calibration's sustained load. */
double infsim_cost_busy_fraction(const infsim_cost_curves *c, double u, int64_t dt_ns, double w);

/* The compute-bound share of a batch's time (0 for decode-only batches):
 * what infsim_cost_busy_fraction takes as w while the batch runs. */
double infsim_cost_compute_share(const infsim_cost_model *cm, const infsim_batch_agg *agg);

/* infsim_cost_iteration_ns for a batch starting at compute load u (the
 * clock term; u = 1 or the term off: the same time). */
int64_t infsim_cost_iteration_busy_ns(const infsim_cost_model *cm, const infsim_batch_agg *agg, double busy_fraction);

/* Decode-only iterations in a row differ only in their context: the part
 * that does not depend on it is computed once (infsim_cost_decode_run_init)
 * and infsim_cost_decode_run_ns adds the attention of k steps, in closed
 * form when the curves provide decode_attn_sum_layer_ns. */
typedef struct {
  double fixed_ns;   /* overhead + GEMMs + all-reduces + LM head + hand-offs */
  int64_t requests;  /* decode requests in every step */
  /* The first step's longest context (0: not known; init sets 0, the
   * caller sets it): each later step's is one token longer. */
  int64_t first_max_context_tokens;
} infsim_decode_run;

void infsim_cost_decode_run_init(const infsim_cost_model *cm, int64_t decode_requests, infsim_decode_run *run);
/* Time of the first `steps` iterations of a decode-only run whose first
 * iteration attends first_context KV tokens in all, each later one
 * `requests` more (rounded once, to the ns). Non-decreasing in steps. */
int64_t infsim_cost_decode_run_ns(const infsim_cost_model *cm, const infsim_decode_run *run, int64_t first_context,
                                  int64_t steps);
/* The same, and one layer's decode attention of those steps, summed
 * before the longest request's bound (*attn_sum_ns): the sum local
 * attention takes over a run (DistAttention's overlap, sim_executor.c). */
int64_t infsim_cost_decode_run_attn_ns(const infsim_cost_model *cm, const infsim_decode_run *run,
                                       int64_t first_context, int64_t steps, double *attn_sum_ns);

/* Where a run's curves come from, decided in one place: the profile
 * `gpu_key` of the calibration DB at db_path when the DB has it for the
 * model and layout.tp, else the built-in GPU `gpu_key`'s roofline; an
 * unreadable DB (a directory too) is an error when db_given (else the
 * roofline), and a key that is neither a built-in GPU nor a profile in the
 * DB is an error. cfg, when not NULL, is the config gpu_key and db_path
 * came from: messages then name the line of `gpu` or `calibration.db`. */
infsim_status infsim_cost_model_build(const char *gpu_key, const char *db_path, bool db_given,
                                      const infsim_model_shape *model, const infsim_instance_layout *layout,
                                      const infsim_roofline_eff *eff, const infsim_config *cfg,
                                      infsim_cost_model *out, infsim_error *err);

/* The GPU spec a `gpu` key stands for: a built-in GPU, or a calibrated
 * profile named after one plus a suffix ("h100-sxm-lab2": the longest
 * built-in name followed by '-'), which takes that GPU's memory and links.
 * Returns false for anything else. */
bool infsim_gpu_for_key(const char *gpu_key, infsim_gpu_spec *out);

/* Time to move `bytes` over a link of bytes_per_s with latency. */
int64_t infsim_cost_transfer_ns(int64_t bytes, double bytes_per_s, int64_t latency_ns);

void infsim_cost_model_destroy(infsim_cost_model *cm);

/* llround(ns) for |ns| < 9.2e18 (the caller checks), without the library
 * call: pricing rounds a time on every run it prices. */
int64_t infsim_cost_round_ns(double ns);

#endif
