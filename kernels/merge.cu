/*
** merge.cu: DistAttention aggregation on the GPU. One warp per (request,
** head) row; each lane owns 4 consecutive dims (float4), looping over dims
** when head_dim > 128. The LSE pass reads every partial's LSE once (lanes
** in parallel), then the weighted sum streams the partial outputs.
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
  for (int32_t x = lane * 4; x < d; x += 128) {
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
    if (m != -INFINITY) {
      for (int32_t j = 0; j < parts; j++) {
        float l = part_lse[(int64_t)j * rows + row];
        if (l == -INFINITY) continue;
        float w = __expf(l - m) * inv;
        float4 p = *(const float4 *)(part_out + ((int64_t)j * rows + row) * d + x);
        acc.x += w * p.x;
        acc.y += w * p.y;
        acc.z += w * p.z;
        acc.w += w * p.w;
      }
    }
    *(float4 *)(out + row * d + x) = acc;
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
