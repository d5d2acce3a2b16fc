/*
** roofline.c: per-layer kernel times from a GPU spec table (costmodel.h).
**
** Each kernel takes max(FLOPs / (peak x eff), bytes / (HBM x eff)) plus a
** fixed per-layer overhead added once per layer by the cost model: the roofline bound, scaled by how close real
** kernels get to it. Counts are per layer on one tensor-parallel shard:
** heads and GEMM columns split tp ways (Megatron-style), weights read once
** per iteration whatever the token count.
**
** FLOP and byte counts:
**  - GEMMs: 2 x tokens x params_per_layer / tp FLOPs; weights once plus the
**    activations in and out.
**  - prefill attention: 4 x pairs x head_dim x heads/tp FLOPs (QK^T and PV),
**    reading Q, K, V of the chunk and writing O.
**  - decode attention: reads every context token's K and V of the shard's
**    KV heads once (GQA shares a KV head among heads/kv_heads query heads);
**    4 x context x head_dim x heads/tp FLOPs.
**  - merge: reads each partial (head_dim values + LSE, fp32) once.
*/
#include "infsim/costmodel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
  infsim_model_shape model;
  infsim_gpu_spec gpu;
  infsim_roofline_eff eff;
  double tp;
  double heads_shard;    /* query heads on one shard */
  double kv_heads_shard; /* KV heads on one shard (at least one: replicated when tp > kv_heads) */
  double layer_params_shard;
  /* Products every kernel's price divides by, formed once (the same
   * operands in the same order: the same doubles as formed per call). */
  double hbm_bytes_per_s;   /* gpu.hbm_bytes_per_s x eff.hbm_eff */
  double gemm_flops_per_s;  /* gpu.peak_flops x eff.gemm_flops_eff */
  double attn_flops_per_s;  /* gpu.peak_flops x eff.attn_flops_eff */
  double merge_flops_per_s; /* gpu.peak_flops x 1 */
  /* roofline_decode_attn_sum_layer_ns's slopes in the context, ns a token */
  double decode_flops_ns_per_ctx, decode_bytes_ns_per_ctx;
} roofline;

/* fmax(compute, memory) as one comparison (a single maxsd) rather than
 * libm's call: the same, as the memory time is never NaN (finite bytes
 * over a built-in GPU's bandwidth, > 0), a NaN compute time loses as with
 * fmax, and the two are never zeros of different signs. */
static double bound_ns(const roofline *r, double flops, double flops_per_s, double bytes) {
  double t_compute_s = flops / flops_per_s;
  double t_memory_s = bytes / r->hbm_bytes_per_s;
  return (t_compute_s > t_memory_s ? t_compute_s : t_memory_s) * 1e9;
}

static double roofline_gemm_layer_ns(void *self, int64_t tokens) {
  const roofline *r = self;
  if (tokens <= 0) return 0.0;
  double flops = 2.0 * (double)tokens * r->layer_params_shard;
  double bytes = r->layer_params_shard * (double)r->model.dtype_bytes +
                 4.0 * (double)tokens * (double)r->model.hidden * (double)r->model.dtype_bytes;
  return bound_ns(r, flops, r->gemm_flops_per_s, bytes);
}

static double roofline_prefill_attn_layer_ns(void *self, int64_t tokens, int64_t pairs) {
  const roofline *r = self;
  if (tokens <= 0) return 0.0;
  double d = (double)r->model.head_dim, b = (double)r->model.dtype_bytes;
  double flops = 4.0 * (double)pairs * d * r->heads_shard;
  double bytes = (double)tokens * d * b * (2.0 * r->heads_shard + 2.0 * r->kv_heads_shard);
  return bound_ns(r, flops, r->attn_flops_per_s, bytes);
}

static double roofline_decode_attn_layer_ns(void *self, int64_t requests, int64_t context_tokens) {
  const roofline *r = self;
  if (requests <= 0) return 0.0;
  double d = (double)r->model.head_dim, b = (double)r->model.dtype_bytes;
  double flops = 4.0 * (double)context_tokens * d * r->heads_shard;
  double bytes = (double)context_tokens * 2.0 * r->kv_heads_shard * d * b + (double)requests * 2.0 * r->heads_shard * d * b;
  return bound_ns(r, flops, r->attn_flops_per_s, bytes);
}

/* Sum over j < k of max(a1 x_j + b1, a2 x_j + b2) for x_j = x0 + h j: the
 * difference of the two lines is linear in j, so it changes sign at most
 * once, and each side is an arithmetic series. */
static double sum_max_of_lines(double a1, double b1, double a2, double b2, double x0, double h, int64_t k) {
  double da = (a1 - a2) * h, d0 = (a1 - a2) * x0 + (b1 - b2); /* D(j) = d0 + da j */
  int64_t split = 0;
  if (da != 0.0) {
    double t = -d0 / da;
    split = t <= 0.0 ? 0 : t >= (double)k ? k : (int64_t)ceil(t);
  }
  double total = 0.0;
  int64_t bounds[3] = {0, split, k};
  for (int part = 0; part < 2; part++) {
    int64_t lo = bounds[part], hi = bounds[part + 1];
    if (hi <= lo) continue;
    double mid = 0.5 * (double)(lo + hi - 1);
    int first = d0 + da * mid >= 0.0;
    double a = first ? a1 : a2, b = first ? b1 : b2;
    double n = (double)(hi - lo);
    total += n * (a * x0 + b) + a * h * n * (double)(lo + hi - 1) / 2.0;
  }
  return total;
}

static double roofline_decode_attn_sum_layer_ns(void *self, int64_t requests, int64_t first_context,
                                                int64_t context_step, int64_t steps) {
  const roofline *r = self;
  if (requests <= 0 || steps <= 0) return 0.0;
  double d = (double)r->model.head_dim, b = (double)r->model.dtype_bytes;
  /* the terms of roofline_decode_attn_layer_ns as lines in the context */
  double bytes_fixed = (double)requests * 2.0 * r->heads_shard * d * b / r->hbm_bytes_per_s * 1e9;
  return sum_max_of_lines(r->decode_flops_ns_per_ctx, 0.0, r->decode_bytes_ns_per_ctx, bytes_fixed,
                          (double)first_context, (double)context_step, steps);
}

static double roofline_merge_layer_ns(void *self, int64_t requests, int64_t partials) {
  const roofline *r = self;
  if (requests <= 0 || partials <= 0) return 0.0;
  double bytes = (double)partials * r->heads_shard * ((double)r->model.head_dim + 1.0) * 4.0 +
                 (double)requests * r->heads_shard * (double)r->model.head_dim * 4.0;
  return bound_ns(r, 0.0, r->merge_flops_per_s, bytes);
}

static double roofline_kv_copy_ns(void *self, int64_t bytes) {
  const roofline *r = self;
  if (bytes <= 0) return 0.0;
  return bound_ns(r, 0.0, r->merge_flops_per_s, 2.0 * (double)bytes); /* read + write */
}

static void roofline_destroy(void *self) { free(self); }

infsim_status infsim_cost_curves_roofline(const infsim_model_shape *model, const infsim_gpu_spec *gpu, int64_t tp,
                                          const infsim_roofline_eff *eff, infsim_cost_curves *out,
                                          infsim_error *err) {
  if (tp < 1) return infsim_fail(err, INFSIM_EINPUT, "tensor-parallel degree %lld < 1", (long long)tp);
  roofline *r = calloc(1, sizeof *r);
  if (r == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  r->model = *model;
  r->gpu = *gpu;
  r->eff = *eff;
  r->tp = (double)tp;
  r->heads_shard = (double)model->heads / r->tp;
  r->kv_heads_shard = fmax(1.0, (double)model->kv_heads / r->tp);
  r->layer_params_shard = (double)infsim_model_layer_gemm_params(model) / r->tp;
  r->hbm_bytes_per_s = gpu->hbm_bytes_per_s * eff->hbm_eff;
  r->gemm_flops_per_s = gpu->peak_flops * eff->gemm_flops_eff;
  r->attn_flops_per_s = gpu->peak_flops * eff->attn_flops_eff;
  r->merge_flops_per_s = gpu->peak_flops * 1.0;
  double d = (double)model->head_dim, b = (double)model->dtype_bytes;
  r->decode_flops_ns_per_ctx = 4.0 * d * r->heads_shard / r->attn_flops_per_s * 1e9;
  r->decode_bytes_ns_per_ctx = 2.0 * r->kv_heads_shard * d * b / r->hbm_bytes_per_s * 1e9;
  out->self = r;
  out->gemm_layer_ns = roofline_gemm_layer_ns;
  out->prefill_attn_layer_ns = roofline_prefill_attn_layer_ns;
  out->decode_attn_layer_ns = roofline_decode_attn_layer_ns;
  out->decode_attn_grows = true; /* both bounds rise with the context; their maximum too */
  out->decode_attn_sum_layer_ns = roofline_decode_attn_sum_layer_ns;
  out->merge_layer_ns = roofline_merge_layer_ns;
  out->kv_copy_ns = roofline_kv_copy_ns;
  out->destroy = roofline_destroy;
  out->layer_overhead_ns = (double)eff->layer_overhead_ns;
  out->layer_rest_ns = NULL; /* cost.layer_overhead_us stands for it */
  snprintf(out->name, sizeof out->name, "roofline:%s", gpu->name);
  return INFSIM_OK;
}
