/*
** norm_rope.cu: the per-head RMSNorm + RoPE of kernels.h
** (infsim_kernels_norm_rope), in place on the QKV GEMM output.
**
** Memory-bound (a few FLOPs per byte): the point is one read and one write
** of every q and k head. One CTA per token: its 64 cos/sin pairs are
** computed once into shared memory, then each warp takes heads in turn. A
** warp holds one 256-byte head row, 8 bytes per lane: lanes 0-15 hold
** elements 0-63, lanes 16-31 elements 64-127, so RoPE's partner of element
** i (i +- 64) is in lane l ^ 16 (one shuffle). Heads are processed four at a
** time, all loads first, so each warp has four 8-byte loads in flight.
*/
#include "cuda_common.cuh"

namespace {

constexpr int D = 128, HALF = 64, WARPS = 8, BATCH = 4;

struct NormRopeParams {
  uint16_t *qkv;
  const int32_t *positions;
  const uint16_t *qw, *kw;
  float eps;
  int h, g, stages;
  float inv_freq[HALF];
};

template <bool BF16>
__device__ __forceinline__ float to_f(uint16_t v) {
  return BF16 ? __bfloat162float(__ushort_as_bfloat16(v)) : __half2float(__ushort_as_half(v));
}
template <bool BF16>
__device__ __forceinline__ uint16_t from_f(float f) {
  return BF16 ? __bfloat16_as_ushort(__float2bfloat16_rn(f)) : __half_as_ushort(__float2half_rn(f));
}

template <bool BF16>
__global__ void __launch_bounds__(WARPS * 32) norm_rope_kernel(NormRopeParams p) {
  __shared__ float cs[HALF], sn[HALF];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t t = blockIdx.x;
  const bool norm = p.stages & INFSIM_NR_NORM, rope = p.stages & INFSIM_NR_ROPE;
  if (rope && threadIdx.x < HALF) {
    /* Full-precision sincosf of the fp32-rounded angle (the contract). */
    const float ang = __fmul_rn((float)p.positions[t], p.inv_freq[threadIdx.x]);
    sincosf(ang, &sn[threadIdx.x], &cs[threadIdx.x]);
  }
  __syncthreads();
  const int e0 = (lane & 15) * 4;          /* first of this lane's 4 elements within its half */
  const int col = (lane >> 4) * HALF + e0; /* its first element within the head */
  float c[4], s[4], wq[4], wk[4];
#pragma unroll
  for (int k = 0; k < 4; k++) {
    c[k] = rope ? cs[e0 + k] : 1.f;
    /* Lanes of the low half subtract the partner's sine term, the high half add it. */
    s[k] = rope ? (lane < 16 ? -sn[e0 + k] : sn[e0 + k]) : 0.f;
    wq[k] = norm ? to_f<BF16>(p.qw[col + k]) : 1.f;
    wk[k] = norm ? to_f<BF16>(p.kw[col + k]) : 1.f;
  }
  const int heads = p.h + p.g, rows = p.h + 2 * p.g;
  uint16_t *row0 = p.qkv + t * rows * D;
  for (int j0 = warp * BATCH; j0 < heads; j0 += WARPS * BATCH) {
    uint2 v[BATCH];
#pragma unroll
    for (int b = 0; b < BATCH; b++)
      if (j0 + b < heads) v[b] = *(const uint2 *)(row0 + (int64_t)(j0 + b) * D + col);
#pragma unroll
    for (int b = 0; b < BATCH; b++) {
      const int j = j0 + b;
      if (j >= heads) break;
      float x[4];
      x[0] = to_f<BF16>((uint16_t)(v[b].x & 0xffff));
      x[1] = to_f<BF16>((uint16_t)(v[b].x >> 16));
      x[2] = to_f<BF16>((uint16_t)(v[b].y & 0xffff));
      x[3] = to_f<BF16>((uint16_t)(v[b].y >> 16));
      if (norm) {
        float ss = x[0] * x[0] + x[1] * x[1] + x[2] * x[2] + x[3] * x[3];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
        const float r = 1.f / sqrtf(ss * (1.f / D) + p.eps);
#pragma unroll
        for (int k = 0; k < 4; k++) x[k] = x[k] * r * (j < p.h ? wq[k] : wk[k]);
      }
      if (rope) {
#pragma unroll
        for (int k = 0; k < 4; k++) {
          const float partner = __shfl_xor_sync(0xffffffffu, x[k], 16);
          x[k] = x[k] * c[k] + partner * s[k];
        }
      }
      uint2 out;
      out.x = (uint32_t)from_f<BF16>(x[0]) | ((uint32_t)from_f<BF16>(x[1]) << 16);
      out.y = (uint32_t)from_f<BF16>(x[2]) | ((uint32_t)from_f<BF16>(x[3]) << 16);
      *(uint2 *)(row0 + (int64_t)j * D + col) = out;
    }
  }
}

} /* namespace */

extern "C" infsim_status ik_cuda_norm_rope(void *self, const infsim_norm_rope_args *a, infsim_error *err) {
  ik_cuda *c = (ik_cuda *)self;
  NormRopeParams p = {};
  p.qkv = (uint16_t *)a->qkv;
  p.positions = a->positions;
  p.qw = (const uint16_t *)a->q_weight;
  p.kw = (const uint16_t *)a->k_weight;
  p.eps = a->eps;
  p.h = a->num_q_heads;
  p.g = a->num_kv_heads;
  p.stages = a->stages;
  if (a->stages & INFSIM_NR_ROPE) ik_rope_inv_freq(a->rope_theta, D, p.inv_freq);
  if (a->dtype == INFSIM_KDTYPE_BF16)
    norm_rope_kernel<true><<<(unsigned)a->tokens, WARPS * 32, 0, c->stream>>>(p);
  else
    norm_rope_kernel<false><<<(unsigned)a->tokens, WARPS * 32, 0, c->stream>>>(p);
  IK_LAUNCHED();
  return INFSIM_OK;
}
