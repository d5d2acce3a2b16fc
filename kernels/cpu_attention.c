/*
** cpu_attention.c: plain-C references for MA decode, the LSE merge and
** causal prefill. fp32 arithmetic on fp16/bf16 inputs, one (request, head)
** at a time, written for clarity rather than speed: they are what the CUDA
** kernels are checked against, and what the CPU calibration backend times.
**
** Invariants: an empty KV range gives lse = -inf and a zero output; the merge
** (stand-alone, and of remote partials inside MA decode) never forms
** (-inf) - (-inf), so all-empty partials give zeros, not NaN.
*/
#include <assert.h>
#include <stdlib.h>

#include "cpu_backend.h"

/* Pool element index of (block, kv head, slot, dim 0). */
static int64_t pool_index(int64_t block, int32_t kh, int32_t g, int32_t bt, int32_t slot) {
  return ((block * g + kh) * bt + slot) * INFSIM_KERNEL_HEAD_DIM;
}

/* Attention of one fp32 query over tokens [0, n) of one request and KV head,
 * read through the block table. Writes the normalized output and returns the
 * natural-log LSE (-inf and zeros when n == 0). scores is scratch of n floats. */
static float attend(const float *q, const void *k_pool, const void *v_pool, infsim_kdtype t, const int32_t *table,
                    int32_t bt, int32_t g, int32_t kh, int64_t n, float scale, float *scores, float *out) {
  enum { D = INFSIM_KERNEL_HEAD_DIM };
  for (int d = 0; d < D; d++) out[d] = 0.0f;
  if (n == 0) return -INFINITY;
  float m = -INFINITY;
  for (int64_t tok = 0; tok < n; tok++) {
    int64_t base = pool_index(table[tok / bt], kh, g, bt, (int32_t)(tok % bt));
    float s = 0.0f;
    for (int d = 0; d < D; d++) s += q[d] * ik_load(k_pool, t, base + d);
    scores[tok] = s * scale;
    if (scores[tok] > m) m = scores[tok];
  }
  float l = 0.0f;
  for (int64_t tok = 0; tok < n; tok++) {
    float p = expf(scores[tok] - m);
    l += p;
    int64_t base = pool_index(table[tok / bt], kh, g, bt, (int32_t)(tok % bt));
    for (int d = 0; d < D; d++) out[d] += p * ik_load(v_pool, t, base + d);
  }
  for (int d = 0; d < D; d++) out[d] /= l;
  return m + logf(l);
}

/* Merges the remote partials of `row` into its local result (out, *lse) in
 * place: weights exp(lse_j - max) over the local and remote LSEs, empty
 * (-inf) partials neutral, all-empty left as zeros and -inf. */
static void merge_remote(const infsim_ma_decode_args *a, int64_t rows, int64_t row, float *out, float *lse) {
  enum { D = INFSIM_KERNEL_HEAD_DIM };
  float m = *lse;
  for (int32_t j = 0; j < a->num_remote; j++) {
    float l = a->remote_lse[(int64_t)j * rows + row];
    if (l > m) m = l;
  }
  if (m == -INFINITY) return; /* every partial empty: zeros and -inf already */
  float wl = *lse == -INFINITY ? 0.0f : expf(*lse - m);
  float sum = wl, acc[D];
  for (int d = 0; d < D; d++) acc[d] = wl * out[d];
  for (int32_t j = 0; j < a->num_remote; j++) {
    float l = a->remote_lse[(int64_t)j * rows + row];
    if (l == -INFINITY) continue;
    float w = expf(l - m);
    sum += w;
    for (int d = 0; d < D; d++) acc[d] += w * ik_load(a->remote_out, a->remote_dtype, ((int64_t)j * rows + row) * D + d);
  }
  for (int d = 0; d < D; d++) out[d] = acc[d] / sum;
  *lse = m + logf(sum);
}

infsim_status ik_cpu_ma_decode(void *self, const infsim_ma_decode_args *a, infsim_error *err) {
  (void)self;
  enum { D = INFSIM_KERNEL_HEAD_DIM };
  int32_t group = a->num_q_heads / a->num_kv_heads;
  float *scores = malloc(sizeof *scores * (size_t)(a->max_context_tokens > 0 ? a->max_context_tokens : 1));
  if (!scores) return infsim_fail(err, INFSIM_ENOMEM, "kernels: cpu ma_decode: out of memory");
  float q[D];
  for (int32_t r = 0; r < a->num_requests; r++) {
    int64_t n = a->context_tokens[r];
    if (n > a->max_context_tokens) {
      free(scores);
      return infsim_fail(err, INFSIM_EINPUT, "kernels: ma_decode: context_tokens[%d] = %lld > max_context_tokens %d",
                     r, (long long)n, a->max_context_tokens);
    }
    const int32_t *table = a->block_table + (int64_t)r * a->block_table_stride;
    for (int32_t h = 0; h < a->num_q_heads; h++) {
      int64_t row = (int64_t)r * a->num_q_heads + h;
      for (int d = 0; d < D; d++) q[d] = ik_load(a->q, a->dtype, row * D + d);
      a->lse[row] = attend(q, a->k_pool, a->v_pool, a->dtype, table, a->block_tokens, a->num_kv_heads,
                           h / group, n, a->softmax_scale, scores, a->out + row * D);
      if (a->num_remote > 0)
        merge_remote(a, (int64_t)a->num_requests * a->num_q_heads, row, a->out + row * D, &a->lse[row]);
    }
  }
  free(scores);
  return INFSIM_OK;
}

infsim_status ik_cpu_merge(void *self, const infsim_merge_args *a, infsim_error *err) {
  (void)self;
  (void)err;
  int32_t d = a->head_dim;
  for (int64_t row = 0; row < a->rows; row++) {
    float m = -INFINITY;
    for (int32_t j = 0; j < a->num_partials; j++) {
      float l = a->part_lse[(int64_t)j * a->rows + row];
      if (l > m) m = l;
    }
    float *o = a->out + row * d;
    for (int32_t x = 0; x < d; x++) o[x] = 0.0f;
    if (m == -INFINITY) {
      if (a->lse) a->lse[row] = -INFINITY;
      continue;
    }
    float sum = 0.0f;
    for (int32_t j = 0; j < a->num_partials; j++) {
      float l = a->part_lse[(int64_t)j * a->rows + row];
      if (l == -INFINITY) continue; /* empty partial: neutral */
      float w = expf(l - m);
      sum += w;
      const float *p = a->part_out + ((int64_t)j * a->rows + row) * d;
      for (int32_t x = 0; x < d; x++) o[x] += w * p[x];
    }
    for (int32_t x = 0; x < d; x++) o[x] /= sum;
    if (a->lse) a->lse[row] = m + logf(sum);
  }
  return INFSIM_OK;
}

infsim_status ik_cpu_prefill(void *self, const infsim_prefill_args *a, infsim_error *err) {
  (void)self;
  enum { D = INFSIM_KERNEL_HEAD_DIM };
  int32_t h = a->num_q_heads, g = a->num_kv_heads, group = h / g, bt = a->block_tokens;
  int64_t total = (int64_t)a->past_tokens + a->new_tokens;
  float *scores = malloc(sizeof *scores * (size_t)total);
  if (!scores) return infsim_fail(err, INFSIM_ENOMEM, "kernels: cpu prefill: out of memory");
  /* Append the new K/V to the blocks first: attention then reads every key,
   * past and new, from the pool (as the CUDA kernel does). */
  for (int32_t r = 0; r < a->num_requests; r++) {
    const int32_t *table = a->block_table + (int64_t)r * a->block_table_stride;
    for (int32_t i = 0; i < a->new_tokens; i++) {
      int64_t tok = (int64_t)a->past_tokens + i;
      for (int32_t kh = 0; kh < g; kh++) {
        int64_t dst = pool_index(table[tok / bt], kh, g, bt, (int32_t)(tok % bt));
        int64_t src = (((int64_t)r * a->new_tokens + i) * g + kh) * D;
        size_t bytes = ik_dtype_bytes(a->dtype) * D;
        memcpy((char *)a->k_pool + dst * 2, (const char *)a->k_new + src * 2, bytes);
        memcpy((char *)a->v_pool + dst * 2, (const char *)a->v_new + src * 2, bytes);
      }
    }
  }
  float q[D], o[D];
  for (int32_t r = 0; r < a->num_requests; r++) {
    const int32_t *table = a->block_table + (int64_t)r * a->block_table_stride;
    for (int32_t i = 0; i < a->new_tokens; i++) {
      for (int32_t hh = 0; hh < h; hh++) {
        int64_t row = ((int64_t)r * a->new_tokens + i) * h + hh;
        for (int d = 0; d < D; d++) q[d] = ik_load(a->q, a->dtype, row * D + d);
        float lse = attend(q, a->k_pool, a->v_pool, a->dtype, table, bt, g, hh / group,
                           (int64_t)a->past_tokens + i + 1, a->softmax_scale, scores, o);
        for (int d = 0; d < D; d++) ik_store(a->out, a->out_dtype, row * D + d, o[d]);
        if (a->lse) a->lse[row] = lse;
      }
    }
  }
  free(scores);
  return INFSIM_OK;
}
