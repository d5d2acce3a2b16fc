/*
** costmodel.c: an instance's iteration time from per-layer curves.
**
** iteration = CPU overhead
**           + layers x (GEMMs + prefill attention + local decode attention
**                       + 2 TP all-reduces)
**           + LM head + (pp - 1) pipeline hand-offs.
** DistAttention's remote part (KV held by other instances) is priced per
** holder by distattn.h, from the batch's holders, on top of this.
**
** Pipeline stages run one after another for one batch (no micro-batching,
** as vLLM's pipeline mode for a single batch), so stages split the layers
** but not the time; what pp buys is memory. The TP all-reduce is a ring
** (2 (tp-1)/tp x bytes over the link, 2 (tp-1) latency hops), twice a layer
** (after attention and after the MLP), Megatron-LM's layout. Links stay
** spec-based: one GPU cannot measure them.
**
*/
#include "infsim/costmodel.h"

#include <math.h>
#include <stdint.h>

int64_t infsim_cost_round_ns(double ns) {
  /* The integer part by truncation, then half away from zero by the
   * fractional part, which x - trunc(x) gives exactly (below 2^52 both lie
   * on x's grid; above, x is an integer and it is 0). */
  int64_t out = (int64_t)ns;
  double frac = ns - (double)out;
  return out + (frac >= 0.5) - (frac <= -0.5);
}

/* Rounds a time to the ns, at least floor_ns; INT64_MAX when it does not
 * fit in int64 (or is not a number): llround would be undefined there. */
static int64_t round_ns(double ns, int64_t floor_ns) {
  if (!(ns < 9.2e18)) return INT64_MAX;
  if (!(ns > -9.2e18)) return (int64_t)llround(ns) < floor_ns ? floor_ns : (int64_t)llround(ns);
  int64_t out = infsim_cost_round_ns(ns); /* every priced batch comes here */
  return out < floor_ns ? floor_ns : out;
}

int64_t infsim_cost_transfer_ns(int64_t bytes, double bytes_per_s, int64_t latency_ns) {
  if (bytes <= 0) return 0;
  double ns = ceil((double)bytes / bytes_per_s * 1e9);
  if (!(ns < 9.2e18 - (double)latency_ns)) return INT64_MAX;
  return latency_ns + (int64_t)ns;
}

static double allreduce_ns(const infsim_cost_model *cm, int64_t tokens) {
  int64_t tp = cm->layout.tp;
  if (tp <= 1 || tokens <= 0) return 0.0;
  double bytes = (double)tokens * (double)cm->model.hidden * (double)cm->model.dtype_bytes;
  double ring = 2.0 * (double)(tp - 1) / (double)tp;
  return ring * bytes / cm->layout.tp_link_bytes_per_s * 1e9 + 2.0 * (double)(tp - 1) * (double)cm->layout.link_latency_ns;
}

/* LM head: a vocab x hidden GEMM, priced as the layer GEMM scaled by its share of parameters. */
static double lm_head_ns(const infsim_cost_model *cm, int64_t tokens) {
  if (tokens <= 0) return 0.0;
  const infsim_model_shape *m = &cm->model;
  double share = (double)(m->vocab * m->hidden) / (double)infsim_model_layer_gemm_params(m);
  return cm->curves.gemm_layer_ns(cm->curves.self, tokens) * share;
}

/* Activations handed from one pipeline stage to the next. */
static double handoff_ns(const infsim_cost_model *cm, int64_t tokens) {
  if (cm->layout.pp <= 1 || tokens <= 0) return 0.0;
  int64_t act_bytes = tokens * cm->model.hidden * cm->model.dtype_bytes;
  return (double)(cm->layout.pp - 1) *
         (double)infsim_cost_transfer_ns(act_bytes, cm->layout.pp_link_bytes_per_s, cm->layout.link_latency_ns);
}

double infsim_cost_busy_fraction(const infsim_cost_curves *c, double u, int64_t dt_ns, double w) {
  if (!(c->clock_tau_ns > 0.0)) return 1.0;
  double keep = dt_ns > 0 ? exp(-(double)dt_ns / c->clock_tau_ns) : 1.0;
  return w - (w - u) * keep;
}

/* One layer's time (factor 1) and the part of it the clock scales: the
 * GEMMs, prefill attention and prefill rest of a batch with prefill
 * tokens (at thousands of tokens compute-bound; a decode step's GEMMs
 * are bound by the weights' bandwidth, which the SM clock does not set). */
static double layer_parts_ns(const infsim_cost_model *cm, const infsim_batch_agg *agg, bool split_rest,
                             double *bound_ns) {
  const infsim_cost_curves *c = &cm->curves;
  int64_t tokens = agg->prefill_tokens + agg->decode_requests;
  /* summed in the order the layer was always summed, so that a batch
   * prices to the same ns with the term off */
  double layer_ns = 0.0, bound = 0.0;
  if (tokens > 0) {
    double gemm_ns = c->gemm_layer_ns(c->self, tokens);
    layer_ns += gemm_ns;
    if (agg->prefill_tokens > 0) bound += gemm_ns;
  }
  if (agg->prefill_tokens > 0) {
    double prefill_ns = c->prefill_attn_layer_ns(c->self, agg->prefill_tokens, agg->prefill_attn_pairs);
    layer_ns += prefill_ns;
    bound += prefill_ns;
  }
  if (agg->decode_requests > 0) {
    double attn_ns = c->decode_attn_layer_ns(c->self, agg->decode_requests, agg->decode_context_tokens);
    if (c->decode_longest_layer_ns != NULL && agg->decode_max_context_tokens > 0 &&
        agg->decode_max_context_tokens <= INT64_MAX / agg->decode_requests) {
      double longest_ns = c->decode_longest_layer_ns(c->self, agg->decode_requests, agg->decode_context_tokens,
                                                     agg->decode_max_context_tokens, agg->prefill_tokens == 0);
      /* At most what the batch would take with every request that long:
       * each CTA then walks as much as the longest one's (the curve was
       * fitted there; at one request it is the same batch). */
      double uniform_ns =
          c->decode_attn_layer_ns(c->self, agg->decode_requests, agg->decode_requests * agg->decode_max_context_tokens);
      if (longest_ns > uniform_ns) longest_ns = uniform_ns;
      if (longest_ns > attn_ns) attn_ns = longest_ns;
    }
    layer_ns += attn_ns;
  }
  layer_ns += 2.0 * allreduce_ns(cm, tokens);
  layer_ns += c->layer_overhead_ns;
  if (c->layer_rest_ns != NULL) {
    double rest_ns = c->layer_rest_ns(c->self, agg->prefill_tokens, agg->prefill_attn_pairs, agg->decode_requests);
    layer_ns += rest_ns;
    /* the prefill's share of the rest, beside the decode rows' (split
     * only where something reads it: one curve call fewer) */
    if (agg->prefill_tokens > 0 && split_rest)
      bound += rest_ns - c->layer_rest_ns(c->self, 0, 0, agg->decode_requests);
  }
  *bound_ns = bound;
  return layer_ns;
}

static double iteration_total_ns(const infsim_cost_model *cm, const infsim_batch_agg *agg, double layer_ns) {
  int64_t tokens = agg->prefill_tokens + agg->decode_requests;
  double total_ns = (double)cm->layout.iteration_overhead_ns + (double)cm->model.layers * layer_ns;
  total_ns += lm_head_ns(cm, agg->logits_tokens) + handoff_ns(cm, tokens);
  return total_ns;
}

double infsim_cost_compute_share(const infsim_cost_model *cm, const infsim_batch_agg *agg) {
  if (agg->prefill_tokens <= 0) return 0.0;
  double bound = 0.0, layer_ns = layer_parts_ns(cm, agg, true, &bound);
  double total = iteration_total_ns(cm, agg, layer_ns);
  return total > 0.0 ? (double)cm->model.layers * bound / total : 0.0;
}

int64_t infsim_cost_iteration_ns(const infsim_cost_model *cm, const infsim_batch_agg *agg) {
  return infsim_cost_iteration_busy_ns(cm, agg, 1.0);
}

int64_t infsim_cost_iteration_busy_ns(const infsim_cost_model *cm, const infsim_batch_agg *agg, double busy_fraction) {
  const infsim_cost_curves *c = &cm->curves;
  bool on = c->clock_tau_ns > 0.0 && c->clock_idle_gain > 0.0 && busy_fraction < 1.0;
  double bound = 0.0, layer_ns = layer_parts_ns(cm, agg, on, &bound);
  double total_ns = iteration_total_ns(cm, agg, layer_ns);
  if (on && bound > 0.0 && total_ns > 0.0) {
    /* The load's mean over the batch, which drives it toward its own
     * compute share w over its (sustained-clock) time d:
     * w - (w - u0) (tau / d) (1 - e^(-d / tau)). */
    double w = (double)cm->model.layers * bound / total_ns, tau = c->clock_tau_ns;
    double u0 = busy_fraction > 0.0 ? busy_fraction : 0.0;
    double mean_u = w - (w - u0) * tau / total_ns * -expm1(-total_ns / tau);
    if (mean_u > 1.0) mean_u = 1.0;
    total_ns -= c->clock_idle_gain * (1.0 - mean_u) * (double)cm->model.layers * bound;
  }
  return round_ns(total_ns, 1);
}
void infsim_cost_decode_run_init(const infsim_cost_model *cm, int64_t decode_requests, infsim_decode_run *run) {
  const infsim_cost_curves *c = &cm->curves;
  const infsim_model_shape *m = &cm->model;
  double layer_ns =
      c->gemm_layer_ns(c->self, decode_requests) + 2.0 * allreduce_ns(cm, decode_requests) + c->layer_overhead_ns;
  if (c->layer_rest_ns != NULL) layer_ns += c->layer_rest_ns(c->self, 0, 0, decode_requests);
  double fixed_ns = (double)cm->layout.iteration_overhead_ns + (double)m->layers * layer_ns;
  fixed_ns += lm_head_ns(cm, decode_requests) + handoff_ns(cm, decode_requests);
  run->fixed_ns = fixed_ns;
  run->requests = decode_requests;
  run->first_max_context_tokens = 0;
}

/* infsim_cost_decode_run_ns; *attn_sum_ns (when not NULL) gets one
 * layer's decode attention summed over the steps, before the longest
 * request's bound. */
static inline int64_t decode_run_ns(const infsim_cost_model *cm, const infsim_decode_run *run, int64_t first_context,
                                    int64_t steps, double *attn_sum_ns) {
  const infsim_cost_curves *c = &cm->curves;
  if (steps <= 0) {
    if (attn_sum_ns != NULL) *attn_sum_ns = 0.0;
    return 0;
  }
  double attn_ns = 0.0;
  if (c->decode_attn_sum_layer_ns != NULL) {
    attn_ns = c->decode_attn_sum_layer_ns(c->self, run->requests, first_context, run->requests, steps);
  } else {
    for (int64_t j = 0; j < steps; j++)
      attn_ns += c->decode_attn_layer_ns(c->self, run->requests, first_context + j * run->requests);
  }
  if (attn_sum_ns != NULL) *attn_sum_ns = attn_ns;
  /* The longest request bounds a step when its CTAs walk longer than the
   * whole batch's KV takes at full bandwidth. Over a run its context grows
   * by one token a step, a few ns a step against hundreds of
   * microseconds: the first step's bound, steps times, keeps the run
   * closed-form and non-decreasing in steps (the larger of the two sums,
   * not the sum of the larger: they cross at most once in a run). */
  if (c->decode_longest_layer_ns != NULL && run->first_max_context_tokens > 0 &&
      run->first_max_context_tokens <= INT64_MAX / run->requests / 2) {
    double longest_ns =
        (double)steps *
        c->decode_longest_layer_ns(c->self, run->requests, first_context, run->first_max_context_tokens, true);
    /* Capped as one step is, by the batch with every request that long. */
    const int64_t uniform = run->requests * run->first_max_context_tokens;
    double uniform_ns = 0.0;
    if (c->decode_attn_sum_layer_ns != NULL) {
      uniform_ns = c->decode_attn_sum_layer_ns(c->self, run->requests, uniform, run->requests, steps);
    } else {
      for (int64_t j = 0; j < steps; j++)
        uniform_ns += c->decode_attn_layer_ns(c->self, run->requests, uniform + j * run->requests);
    }
    if (longest_ns > uniform_ns) longest_ns = uniform_ns;
    if (longest_ns > attn_ns) attn_ns = longest_ns;
  }
  /* at least 1 ns an iteration */
  return round_ns((double)steps * run->fixed_ns + (double)cm->model.layers * attn_ns, steps);
}

int64_t infsim_cost_decode_run_ns(const infsim_cost_model *cm, const infsim_decode_run *run, int64_t first_context,
                                  int64_t steps) {
  return decode_run_ns(cm, run, first_context, steps, NULL);
}

int64_t infsim_cost_decode_run_attn_ns(const infsim_cost_model *cm, const infsim_decode_run *run,
                                       int64_t first_context, int64_t steps, double *attn_sum_ns) {
  return decode_run_ns(cm, run, first_context, steps, attn_sum_ns);
}

void infsim_cost_model_destroy(infsim_cost_model *cm) {
  if (cm->curves.destroy != NULL) cm->curves.destroy(cm->curves.self);
  cm->curves.destroy = NULL;
  cm->curves.self = NULL;
}
