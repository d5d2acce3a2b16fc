/*
** cpu_norm_rope.c: plain-C reference of the per-head RMSNorm + RoPE
** (kernels.h, infsim_kernels_norm_rope): fp32 arithmetic in the order the
** header states, one head at a time, in place. The CUDA kernel is checked
** against it; the CPU test checks it against a float64 reference.
*/
#include "cpu_backend.h"

infsim_status ik_cpu_norm_rope(void *self, const infsim_norm_rope_args *a, infsim_error *err) {
  (void)self, (void)err;
  enum { D = INFSIM_KERNEL_HEAD_DIM, HALF = INFSIM_KERNEL_HEAD_DIM / 2 };
  float inv_freq[HALF], c[HALF], s[HALF], x[D];
  ik_rope_inv_freq(a->rope_theta, D, inv_freq);
  const int32_t h = a->num_q_heads, g = a->num_kv_heads, rows = h + 2 * g;
  for (int32_t t = 0; t < a->tokens; t++) {
    if (a->stages & INFSIM_NR_ROPE) {
      const int32_t pos = ((const int32_t *)a->positions)[t];
      for (int i = 0; i < HALF; i++) {
        /* The angle is rounded to fp32 first (the contract); cos and sin of
         * it are then as exact as the C library makes them. */
        const float ang = (float)pos * inv_freq[i];
        c[i] = (float)cos((double)ang);
        s[i] = (float)sin((double)ang);
      }
    }
    for (int32_t j = 0; j < h + g; j++) {
      const int64_t base = ((int64_t)t * rows + j) * D;
      for (int i = 0; i < D; i++) x[i] = ik_load(a->qkv, a->dtype, base + i);
      if (a->stages & INFSIM_NR_NORM) {
        const void *w = j < h ? a->q_weight : a->k_weight;
        float ss = 0.0f;
        for (int i = 0; i < D; i++) ss += x[i] * x[i];
        const float r = 1.0f / sqrtf(ss / D + a->eps);
        for (int i = 0; i < D; i++) x[i] = x[i] * r * ik_load(w, a->dtype, i);
      }
      if (a->stages & INFSIM_NR_ROPE) {
        for (int i = 0; i < HALF; i++) {
          const float lo = x[i], hi = x[i + HALF];
          x[i] = lo * c[i] - hi * s[i];
          x[i + HALF] = hi * c[i] + lo * s[i];
        }
      }
      for (int i = 0; i < D; i++) ik_store(a->qkv, a->dtype, base + i, x[i]);
    }
  }
  return INFSIM_OK;
}
