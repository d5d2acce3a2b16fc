/*
** merge.cu: DistAttention aggregation on the GPU. One warp per (request,
** head) row; each lane owns 4 consecutive dims (float4), looping over dims
** when head_dim > 128 (lanes past head_dim idle but keep shuffling). The
** LSE pass reads every partial's LSE (lanes in parallel), then the
** weighted sum streams the partial outputs.
**
** Invariant (as the CPU reference): weight 0 for an LSE of -inf, never
** (-inf) - (-inf); all-empty rows give zeros and -inf.
*/
#include "cuda_common.cuh"

__global__ void merge_kernel(int32_t parts, int64_t rows, int32_t d, const float *__restrict__ part_out,
                             const float *__restrict__ part_lse, float *__restrict__ out, float *__restrict__ lse) {
  int64_t row = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
  int lane = threadIdx.x % 32;
  if (row >= rows) return;
  float m = -INFINITY;
  for (int32_t j = lane; j < parts; j += 32) m = fmaxf(m, part_lse[(int64_t)j * rows + row]);
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  float sum = 0.0f;
  for (int32_t j = lane; j < parts; j += 32) {
    float l = part_lse[(int64_t)j * rows + row];
    sum += l == -INFINITY ? 0.0f : __expf(l - m);
  }
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  float inv = m == -INFINITY ? 0.0f : 1.0f / sum;
  for (int32_t x = lane * 4; x - lane * 4 < d; x += 128) {
    const bool mine = x < d;
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
    /* Lane j of each group of 32 partials computes weight j once; the
     * weights are broadcast by shuffle, and the unrolled loop keeps 8
     * independent partial loads in flight (a few partials per row are
     * latency-bound otherwise). Empty partials (weight 0) are not read. */
    for (int32_t j0 = 0; j0 < parts; j0 += 32) {
      float wl = 0.0f;
      if (j0 + lane < parts && m != -INFINITY) {
        float l = part_lse[(int64_t)(j0 + lane) * rows + row];
        wl = l == -INFINITY ? 0.0f : __expf(l - m) * inv;
      }
      const int32_t n = parts - j0 < 32 ? parts - j0 : 32;
#pragma unroll 8
      for (int32_t jj = 0; jj < n; jj++) {
        float w = __shfl_sync(0xffffffffu, wl, jj);
        if (w != 0.0f && mine) {
          float4 p = __ldg((const float4 *)(part_out + ((int64_t)(j0 + jj) * rows + row) * d + x));
          acc.x += w * p.x;
          acc.y += w * p.y;
          acc.z += w * p.z;
          acc.w += w * p.w;
        }
      }
    }
    if (mine) *(float4 *)(out + row * d + x) = acc;
  }
  if (lse && lane == 0) lse[row] = m == -INFINITY ? -INFINITY : m + __logf(sum);
}

extern "C" infsim_status ik_cuda_merge(void *self, const infsim_merge_args *a, infsim_error *err) {
  ik_cuda *c = (ik_cuda *)self;
  const int warps = 8;
  int64_t blocks = (a->rows + warps - 1) / warps;
  merge_kernel<<<(unsigned)blocks, warps * 32, 0, c->stream>>>(a->num_partials, a->rows, a->head_dim, a->part_out,
                                                               a->part_lse, a->out, a->lse);
  IK_LAUNCHED();
  return INFSIM_OK;
}
