/*
** hardware.h: model shapes and GPU specs that the cost model runs on.
**
** Model shapes: LLaMA2-7B/13B/70B from the released configs (70B uses GQA
** with 8 KV heads), `tiny` (2 layers, hidden 256) for CPU tests, or a custom
** shape from config keys model.{layers,hidden,heads,kv_heads,intermediate,
** vocab,dtype_bytes}. GPU specs: vendor datasheets (dense bf16, no sparsity).
*/
#ifndef INFSIM_HARDWARE_H
#define INFSIM_HARDWARE_H

#include <stdint.h>

#include "infsim/config.h"
#include "infsim/status.h"

enum { INFSIM_NAME_BYTES = 64 };

typedef struct {
  char name[INFSIM_NAME_BYTES];
  int64_t layers;
  int64_t hidden;
  int64_t heads;    /* query heads */
  int64_t kv_heads; /* == heads without GQA */
  int64_t head_dim; /* hidden / heads */
  int64_t intermediate;
  int64_t vocab;
  int64_t dtype_bytes;        /* weights and KV: 2 for fp16/bf16 */
  int64_t max_context_tokens; /* 0: not enforced (DESIGN.md) */
} infsim_model_shape;

typedef struct {
  char name[INFSIM_NAME_BYTES];
  double peak_flops;        /* dense bf16 FLOP/s */
  double hbm_bytes_per_s;   /* HBM bandwidth */
  int64_t memory_bytes;     /* HBM capacity */
  double nvlink_bytes_per_s; /* per GPU, one direction */
  double nic_bytes_per_s;    /* per node, one direction */
} infsim_gpu_spec;

/* Looks up a built-in model by name (llama2-7b, llama2-13b, llama2-70b, tiny). */
int infsim_model_builtin(const char *name, infsim_model_shape *out);

/* Reads `model` from cfg: a built-in name, {name, max_context_tokens}, or
 * a custom shape (named "custom"); name beside a shape key fails, naming
 * the shape key's file and line. */
infsim_status infsim_model_from_config(infsim_config *cfg, infsim_model_shape *out, infsim_error *err);

/* Looks up a built-in GPU (a100-80gb, a100-40gb, h100-sxm, h200). 0 if unknown. */
int infsim_gpu_builtin(const char *name, infsim_gpu_spec *out);

/* Bytes of KV cache one token takes over all layers (K and V). */
int64_t infsim_model_kv_bytes_per_token(const infsim_model_shape *m);

/* Parameters of one layer's GEMMs (QKV, O, gate, up, down): what a token
 * multiplies through, per layer, before tensor-parallel sharding. */
int64_t infsim_model_layer_gemm_params(const infsim_model_shape *m);

/* Parameter count and weight bytes of the whole model. */
int64_t infsim_model_params(const infsim_model_shape *m);
int64_t infsim_model_weight_bytes(const infsim_model_shape *m);

#endif
