/*
** hardware.c: built-in model shapes and GPU specs (see hardware.h).
**
** Model shapes are the released LLaMA2 configs (Touvron et al. 2023; 70B
** uses grouped-query attention with 8 KV heads). GPU figures are vendor
** datasheets, dense bf16 (no sparsity): A100 SXM 312 TFLOP/s, 1,555 GB/s
** (40 GB) or 2,039 GB/s (80 GB); H100 SXM 989 TFLOP/s, 3,350 GB/s; H200
** 989 TFLOP/s, 4,800 GB/s, 141 GB. NVLink: 600 GB/s (A100) and 900 GB/s
** (H100/H200) total per GPU, half of it each way. NIC: one HDR 200 Gb/s
** (A100 nodes) or NDR 400 Gb/s (Hopper nodes) port per GPU, i.e. 25 or
** 50 GB/s; eight GPUs a node share the node's ports.
*/
#include "infsim/hardware.h"

#include <stdio.h>
#include <string.h>

static const infsim_model_shape k_models[] = {
    /* name, layers, hidden, heads, kv_heads, head_dim, intermediate, vocab, dtype, max_ctx */
    {"llama2-7b", 32, 4096, 32, 32, 128, 11008, 32000, 2, 0},
    {"llama2-13b", 40, 5120, 40, 40, 128, 13824, 32000, 2, 0},
    {"llama2-70b", 80, 8192, 64, 8, 128, 28672, 32000, 2, 0},
    /* For CPU tests: small enough that the CPU reference kernels run it. */
    {"tiny", 2, 256, 2, 2, 128, 688, 1024, 2, 0},
};

#define GB 1e9
#define GIB (1024.0 * 1024.0 * 1024.0)
static const infsim_gpu_spec k_gpus[] = {
    {"a100-40gb", 312e12, 1555 * GB, (int64_t)(40 * GB), 300 * GB, 8 * 25 * GB},
    {"a100-80gb", 312e12, 2039 * GB, (int64_t)(80 * GB), 300 * GB, 8 * 25 * GB},
    {"h100-sxm", 989e12, 3350 * GB, (int64_t)(80 * GB), 450 * GB, 8 * 50 * GB},
    {"h200", 989e12, 4800 * GB, (int64_t)(141 * GB), 450 * GB, 8 * 50 * GB},
};

int infsim_model_builtin(const char *name, infsim_model_shape *out) {
  for (size_t i = 0; i < sizeof k_models / sizeof k_models[0]; i++) {
    if (strcmp(k_models[i].name, name) == 0) {
      *out = k_models[i];
      return 1;
    }
  }
  return 0;
}

int infsim_gpu_builtin(const char *name, infsim_gpu_spec *out) {
  for (size_t i = 0; i < sizeof k_gpus / sizeof k_gpus[0]; i++) {
    if (strcmp(k_gpus[i].name, name) == 0) {
      *out = k_gpus[i];
      return 1;
    }
  }
  return 0;
}

static infsim_status unknown_model(const infsim_config *cfg, const char *key, const char *name, infsim_error *err) {
  return infsim_fail(err, INFSIM_EINPUT,
                     "%s: %s: unknown model '%s' (llama2-7b, llama2-13b, llama2-70b, tiny, or a mapping with "
                     "layers, hidden, heads, ...)",
                     infsim_config_origin(cfg, key), key, name);
}

/* A built-in's name beside a shape key is refused, naming the first shape
 * key in file order: the run would take the custom shape yet carry the
 * built-in's name into the output and into the calibration DB's lookup
 * (profiles are keyed by model name), pricing one shape with another's
 * curves. */
static infsim_status refuse_named_shape(const infsim_config *cfg, infsim_error *err) {
  static const char *const k_shape[] = {"layers",       "hidden", "heads",      "kv_heads",
                                        "intermediate", "vocab",  "dtype_bytes"};
  if (!infsim_config_has(cfg, "model.name")) return INFSIM_OK;
  size_t pos = 0;
  for (const char *key; (key = infsim_config_next_key(cfg, "model", &pos)) != NULL;)
    for (size_t i = 0; i < sizeof k_shape / sizeof k_shape[0]; i++)
      if (strcmp(key + strlen("model."), k_shape[i]) == 0)
        return infsim_config_fail(cfg, key, err,
                                  "not with model.name (%s): a built-in takes only max_context_tokens; a custom "
                                  "shape has no name",
                                  infsim_config_origin(cfg, "model.name"));
  return INFSIM_OK;
}

infsim_status infsim_model_from_config(infsim_config *cfg, infsim_model_shape *out, infsim_error *err) {
  infsim_status st;
  int64_t max_ctx = 0;
  if ((st = refuse_named_shape(cfg, err)) != INFSIM_OK) return st;
  if (infsim_config_has(cfg, "model.layers") || infsim_config_has(cfg, "model.hidden")) {
    /* A custom shape: every field explicit except the ones with natural defaults. */
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "custom");
    if ((st = infsim_config_int(cfg, "model.layers", 32, 1, 1000, &out->layers, err)) != INFSIM_OK) return st;
    if ((st = infsim_config_int(cfg, "model.hidden", 4096, 64, 1 << 20, &out->hidden, err)) != INFSIM_OK) return st;
    if ((st = infsim_config_int(cfg, "model.heads", 32, 1, 4096, &out->heads, err)) != INFSIM_OK) return st;
    if ((st = infsim_config_int(cfg, "model.kv_heads", out->heads, 1, out->heads, &out->kv_heads, err)) != INFSIM_OK)
      return st;
    if ((st = infsim_config_int(cfg, "model.intermediate", out->hidden * 4, 1, 1 << 22, &out->intermediate, err)) !=
        INFSIM_OK)
      return st;
    if ((st = infsim_config_int(cfg, "model.vocab", 32000, 1, 1 << 24, &out->vocab, err)) != INFSIM_OK) return st;
    if ((st = infsim_config_int(cfg, "model.dtype_bytes", 2, 1, 8, &out->dtype_bytes, err)) != INFSIM_OK) return st;
    if (out->hidden % out->heads != 0)
      return infsim_fail(err, INFSIM_EINPUT, "%s: model.heads: %lld does not divide model.hidden %lld",
                         infsim_config_origin(cfg, "model.heads"), (long long)out->heads, (long long)out->hidden);
    if (out->heads % out->kv_heads != 0)
      return infsim_fail(err, INFSIM_EINPUT, "%s: model.kv_heads: %lld does not divide model.heads %lld",
                         infsim_config_origin(cfg, "model.kv_heads"), (long long)out->kv_heads,
                         (long long)out->heads);
    out->head_dim = out->hidden / out->heads;
  } else if (infsim_config_has_value(cfg, "model")) {
    /* `model: NAME`: a built-in shape, trained context not enforced. */
    const char *name = NULL;
    if ((st = infsim_config_string(cfg, "model", "llama2-7b", &name, err)) != INFSIM_OK) return st;
    if (!infsim_model_builtin(name, out)) return unknown_model(cfg, "model", name, err);
    return INFSIM_OK;
  } else {
    /* `model: {name: NAME, max_context_tokens: N}` (or nothing: the default). */
    const char *name = NULL;
    if ((st = infsim_config_string(cfg, "model.name", "llama2-7b", &name, err)) != INFSIM_OK) return st;
    if (!infsim_model_builtin(name, out)) return unknown_model(cfg, "model.name", name, err);
  }
  if ((st = infsim_config_int(cfg, "model.max_context_tokens", 0, 0, INT64_C(1) << 40, &max_ctx, err)) != INFSIM_OK)
    return st;
  out->max_context_tokens = max_ctx;
  return INFSIM_OK;
}

int64_t infsim_model_kv_bytes_per_token(const infsim_model_shape *m) {
  return 2 * m->layers * m->kv_heads * m->head_dim * m->dtype_bytes;
}

int64_t infsim_model_layer_gemm_params(const infsim_model_shape *m) {
  int64_t kv_dim = m->kv_heads * m->head_dim;
  return m->hidden * (m->hidden + 2 * kv_dim) /* QKV */ + m->hidden * m->hidden /* O */ +
         3 * m->hidden * m->intermediate /* gate, up, down */;
}

int64_t infsim_model_params(const infsim_model_shape *m) {
  int64_t per_layer = infsim_model_layer_gemm_params(m) + 2 * m->hidden /* norms */;
  return m->layers * per_layer + 2 * m->vocab * m->hidden /* embedding + LM head */ + m->hidden;
}

int64_t infsim_model_weight_bytes(const infsim_model_shape *m) { return infsim_model_params(m) * m->dtype_bytes; }
