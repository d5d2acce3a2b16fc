/*
** ops_cpu.c: the element-wise layer steps (ops.h) on the CPU backend, where
** a kernels buffer is host memory. fp32 arithmetic on bf16 storage, one
** rounding per output element, as the CUDA bodies do, so both backends
** agree to bf16 rounding.
*/
#include <math.h>
#include <string.h>

#include "ops.h"

static float ld(const void *p, int64_t i) { return infsim_bf16_to_float(((const uint16_t *)p)[i]); }
static void st(void *p, int64_t i, float v) { ((uint16_t *)p)[i] = infsim_float_to_bf16(v); }

static infsim_status cpu_embed(infsim_kernels *k, const int32_t *tokens, int64_t n, const void *table,
                               int64_t hidden, void *out, infsim_error *err) {
  (void)k;
  (void)err;
  for (int64_t t = 0; t < n; t++)
    memcpy((uint16_t *)out + t * hidden, (const uint16_t *)table + (int64_t)tokens[t] * hidden,
           (size_t)hidden * 2);
  return INFSIM_OK;
}

static infsim_status cpu_rmsnorm(infsim_kernels *k, const void *x, const void *w, int64_t rows, int64_t hidden,
                                 float eps, void *out, infsim_error *err) {
  (void)k;
  (void)err;
  for (int64_t r = 0; r < rows; r++) {
    float ss = 0.0f;
    for (int64_t i = 0; i < hidden; i++) {
      float v = ld(x, r * hidden + i);
      ss += v * v;
    }
    float inv = 1.0f / sqrtf(ss / (float)hidden + eps);
    for (int64_t i = 0; i < hidden; i++) st(out, r * hidden + i, ld(x, r * hidden + i) * inv * ld(w, i));
  }
  return INFSIM_OK;
}

static infsim_status cpu_add(infsim_kernels *k, void *x, const void *y, int64_t count, infsim_error *err) {
  (void)k;
  (void)err;
  for (int64_t i = 0; i < count; i++) st(x, i, ld(x, i) + ld(y, i));
  return INFSIM_OK;
}

static infsim_status cpu_silu_mul(infsim_kernels *k, const void *gu, int64_t rows, int64_t inter, void *out,
                                  infsim_error *err) {
  (void)k;
  (void)err;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t i = 0; i < inter; i++) {
      float g = ld(gu, r * 2 * inter + i), u = ld(gu, r * 2 * inter + inter + i);
      st(out, r * inter + i, g / (1.0f + expf(-g)) * u);
    }
  return INFSIM_OK;
}

static infsim_status cpu_split_qkv(infsim_kernels *k, const void *qkv, int64_t rows, int64_t h, int64_t g,
                                   int64_t d, void *q, void *kk, void *v, infsim_error *err) {
  (void)k;
  (void)err;
  const uint16_t *src = qkv;
  for (int64_t t = 0; t < rows; t++) {
    const uint16_t *row = src + t * (h + 2 * g) * d;
    memcpy((uint16_t *)q + t * h * d, row, (size_t)(h * d) * 2);
    memcpy((uint16_t *)kk + t * g * d, row + h * d, (size_t)(g * d) * 2);
    memcpy((uint16_t *)v + t * g * d, row + (h + g) * d, (size_t)(g * d) * 2);
  }
  return INFSIM_OK;
}

static infsim_status cpu_kv_append(infsim_kernels *k, const void *kr, const void *vr, const int32_t *block_table,
                                   int32_t stride, const int32_t *pos, int64_t requests, int64_t g, int64_t d,
                                   int64_t block_tokens, void *k_pool, void *v_pool, infsim_error *err) {
  (void)k;
  (void)err;
  for (int64_t r = 0; r < requests; r++) {
    int64_t block = block_table[r * stride + pos[r] / block_tokens], slot = pos[r] % block_tokens;
    for (int64_t head = 0; head < g; head++) {
      int64_t at = ((block * g + head) * block_tokens + slot) * d;
      memcpy((uint16_t *)k_pool + at, (const uint16_t *)kr + (r * g + head) * d, (size_t)d * 2);
      memcpy((uint16_t *)v_pool + at, (const uint16_t *)vr + (r * g + head) * d, (size_t)d * 2);
    }
  }
  return INFSIM_OK;
}

static infsim_status cpu_cast_f32(infsim_kernels *k, const float *in, int64_t count, void *out,
                                  infsim_error *err) {
  (void)k;
  (void)err;
  for (int64_t i = 0; i < count; i++) st(out, i, in[i]);
  return INFSIM_OK;
}

static infsim_status cpu_gather_rows(infsim_kernels *k, const void *in, const int32_t *rows, int64_t n,
                                     int64_t row_elems, void *out, infsim_error *err) {
  (void)k;
  (void)err;
  for (int64_t i = 0; i < n; i++)
    memcpy((uint16_t *)out + i * row_elems, (const uint16_t *)in + (int64_t)rows[i] * row_elems,
           (size_t)row_elems * 2);
  return INFSIM_OK;
}

static const icl_ops k_cpu_ops = {cpu_embed,     cpu_rmsnorm,   cpu_add,      cpu_silu_mul,
                                  cpu_split_qkv, cpu_kv_append, cpu_cast_f32, cpu_gather_rows};

const icl_ops *icl_ops_cpu(void) { return &k_cpu_ops; }
