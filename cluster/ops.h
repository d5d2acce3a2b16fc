/*
** ops.h: the element-wise steps of a transformer layer that kernels.h does
** not cover (embedding lookup, hidden-state RMSNorm, residual add, SwiGLU,
** Q/K/V split, one-token KV append, fp32 -> bf16 cast, row gather), with a
** plain-C body for the CPU backend and a CUDA body for the CUDA backend.
** Not installed: only cluster/model.c calls them.
**
** Every tensor is bf16 (the model's dtype) unless named f32; buffers come
** from the same kernels context and the ops run on its stream, so they are
** ordered with the kernels.h calls around them and a whole forward is one
** stream of work (which is what lets a decode step be captured as a graph).
*/
#ifndef INFSIM_CLUSTER_OPS_H
#define INFSIM_CLUSTER_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "infsim/kernels.h"
#include "infsim/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  /* out[t][:] = table[tokens[t]][:] */
  infsim_status (*embed)(infsim_kernels *k, const int32_t *tokens, int64_t n, const void *table, int64_t hidden,
                         void *out, infsim_error *err);
  /* out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * w (LLaMA's RMSNorm, fp32 inside) */
  infsim_status (*rmsnorm)(infsim_kernels *k, const void *x, const void *w, int64_t rows, int64_t hidden,
                           float eps, void *out, infsim_error *err);
  /* x += y, count elements (one rounding) */
  infsim_status (*add)(infsim_kernels *k, void *x, const void *y, int64_t count, infsim_error *err);
  /* gu[t] = [gate | up], 2 inter wide; out[t][i] = silu(gate_i) * up_i */
  infsim_status (*silu_mul)(infsim_kernels *k, const void *gu, int64_t rows, int64_t inter, void *out,
                            infsim_error *err);
  /* qkv[t] = [h q heads | g k heads | g v heads] x d -> q[t][h][d], k[t][g][d], v[t][g][d] */
  infsim_status (*split_qkv)(infsim_kernels *k, const void *qkv, int64_t rows, int64_t h, int64_t g, int64_t d,
                             void *q, void *kk, void *v, infsim_error *err);
  /* For each request r: writes k[r], v[r] ([g][d]) at token position pos[r]
   * of its blocks (block_table[r * stride + pos / bt], slot pos % bt). */
  infsim_status (*kv_append)(infsim_kernels *k, const void *kr, const void *vr, const int32_t *block_table,
                             int32_t stride, const int32_t *pos, int64_t requests, int64_t g, int64_t d,
                             int64_t block_tokens, void *k_pool, void *v_pool, infsim_error *err);
  /* out[i] = bf16(in[i]) */
  infsim_status (*cast_f32)(infsim_kernels *k, const float *in, int64_t count, void *out, infsim_error *err);
  /* out[i][:] = in[rows[i]][:] (row_elems bf16 each) */
  infsim_status (*gather_rows)(infsim_kernels *k, const void *in, const int32_t *rows, int64_t n,
                               int64_t row_elems, void *out, infsim_error *err);
} icl_ops;

const icl_ops *icl_ops_cpu(void);
/* NULL in a build without CUDA. */
const icl_ops *icl_ops_cuda(void);

/* CUDA graphs on the context's stream (all fail with INFSIM_ENODEV
 * without CUDA). A graph is an opaque handle. */
infsim_status icl_graph_begin(infsim_kernels *k, infsim_error *err);
infsim_status icl_graph_end(infsim_kernels *k, void **graph_exec, infsim_error *err);
infsim_status icl_graph_launch(infsim_kernels *k, void *graph_exec, infsim_error *err);
void icl_graph_free(void *graph_exec);

#ifdef __cplusplus
}
#endif

#endif
