/*
** prefill_sm90.cuh: what the Hopper prefill kernels (prefill_sm90.cu:
** versions 6 and 14; prefill_sm90_ws.cu: version 15) share: the CTA tile,
** the epilogue, the build-time switches, and the entry of version 15.
*/
#ifndef INFSIM_KERNELS_PREFILL_SM90_CUH
#define INFSIM_KERNELS_PREFILL_SM90_CUH

#include "mma_util.cuh"
#include "prefill.cuh"
#include "wgmma_util.cuh"

#include <type_traits>

/* Ping-pong on by default; -DIK_SM90_PINGPONG=0 builds the lockstep variant
 * that kernels/NOTES.md (step 6) compares it with. */
#ifndef IK_SM90_PINGPONG
#define IK_SM90_PINGPONG 1
#endif
/* Bench-only timing splits (wrong results): 1 = no K/V loads past the first
 * tiles, 2 = no softmax, 3 = version 15 copies tile 0's keys every time. */
#ifndef IK_SM90_DIAG
#define IK_SM90_DIAG 0
#endif

namespace {

constexpr int D = 128;
constexpr int QT = IK_PREFILL_SM90_ROWS; /* queries per CTA */
constexpr int KT = 128;                  /* keys per tile */
constexpr int THREADS = 256;             /* two warpgroups of 64 query rows each */
constexpr uint32_t Q_BYTES = QT * D * 2, TILE_BYTES = KT * D * 2;
constexpr int NST = 3; /* K and V buffers each of versions 14 and 15 */

/* The epilogue every kernel here shares: a warp's 16 rows of O (its
 * accumulator fragment, rows row0 + lane / 4 and + 8) divided by their
 * softmax sums and stored, with the LSE (natural log) when asked for. Rows
 * past new_tokens (the zero-filled queries of the last tile) are not
 * written. */
template <bool BF16>
__device__ __forceinline__ void store_rows(const ik_prefill_params &p, const float (&o)[64], float m0, float m1,
                                           float l0, float l1, int64_t r, int hh, int row0, int lane) {
  constexpr float LN2 = 0.6931471805599453f;
  const int cl = 2 * (lane % 4);
#pragma unroll
  for (int half = 0; half < 2; half++) {
    float lsum = half ? l1 : l0;
    lsum += __shfl_xor_sync(0xffffffffu, lsum, 1);
    lsum += __shfl_xor_sync(0xffffffffu, lsum, 2);
    const int i = row0 + lane / 4 + 8 * half;
    if (i >= p.new_tokens) continue;
    const float inv = 1.f / lsum;
    const int64_t row = (r * p.new_tokens + i) * p.h + hh;
#pragma unroll
    for (int nt = 0; nt < 16; nt++) {
      const float x0 = o[nt * 4 + 2 * half] * inv, x1 = o[nt * 4 + 2 * half + 1] * inv;
      const int64_t at = row * D + nt * 8 + cl;
      if (p.out_f32)
        *(float2 *)((float *)p.out + at) = make_float2(x0, x1);
      else
        *(uint32_t *)((uint16_t *)p.out + at) = pack2<BF16>(x0, x1);
    }
    if (p.lse && lane % 4 == 0) p.lse[row] = ((half ? m1 : m0) + log2f(lsum)) * LN2;
  }
}

} /* namespace */

/* Version 15 (pipeline 4; `persist`: pipeline 5) on c->stream. */
infsim_status ik_prefill_sm90_ws(ik_cuda *c, const ik_prefill_params &p, bool bf16, int reqs, bool persist,
                                 infsim_error *err);

#endif
