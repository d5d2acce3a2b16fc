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

/* The consumer math versions 14 and 15 share (version 6 the S and P V
 * issue and the mask), one key tile at a time for a warpgroup's 64 query
 * rows; each kernel keeps its own waits, barriers and
 * fences around these (kernels/NOTES.md, steps 14 and 15: their order is
 * tuned, and these inline to the same instructions as the code they
 * replaced). */

/* Issues S = Q K^T of the tile whose K sits at ks, Q's 64 rows of this
 * warpgroup at qw (both shared memory, 128-byte swizzled), and commits. */
template <bool BF16>
__device__ __forceinline__ void issue_s_ss(float (&s)[64], uint32_t qw, uint32_t ks) {
#pragma unroll
  for (int kk = 0; kk < 8; kk++) {
    /* k-step kk covers columns 16 kk .. 16 kk + 15: half kk / 4, 32 bytes in. */
    const uint64_t da = wg_desc(qw + (kk >> 2) * (QT * 128) + (kk & 3) * 32, 16, 1024);
    const uint64_t db = wg_desc(ks + (kk >> 2) * (KT * 128) + (kk & 3) * 32, 16, 1024);
    wgmma_ss_m64n128k16<BF16>(s, da, db, kk > 0);
  }
  wgmma_commit();
}

/* Issues O += P V of the tile whose V sits at vs (P from registers) and
 * commits. Keys 16 kg .. 16 kg + 15 are rows of V: two 8-row groups, 2 KiB
 * in. */
template <bool BF16>
__device__ __forceinline__ void issue_pv_tile(float (&o)[64], const uint32_t (&pf)[KT / 16][4], uint32_t vs) {
#pragma unroll
  for (int kg = 0; kg < KT / 16; kg++) wgmma_rs_m64n128k16<BF16>(o, pf[kg], wg_desc(vs + kg * 2048, KT * 128, 1024));
  wgmma_commit();
}

/* Compiler fence on O and P (wgmma_util.cuh, reg_fence): around the waits
 * of a P V, so no use or write of either moves across them. */
__device__ __forceinline__ void reg_fence_op(float (&o)[64], uint32_t (&pf)[KT / 16][4]) {
  reg_fence(o);
#pragma unroll
  for (int kg = 0; kg < KT / 16; kg++) reg_fence(pf[kg]);
}

/* Causal mask of key tile kt: keys past the thread's two rows' positions
 * (pos0, pos1) get -inf. */
__device__ __forceinline__ void mask_tile(float (&s)[64], int kt, int lane, int pos0, int pos1) {
#pragma unroll
  for (int nt = 0; nt < KT / 8; nt++) {
#pragma unroll
    for (int e = 0; e < 2; e++) {
      const int key = kt * KT + nt * 8 + 2 * (lane % 4) + e;
      if (key > pos0) s[nt * 4 + e] = -INFINITY;
      if (key > pos1) s[nt * 4 + 2 + e] = -INFINITY;
    }
  }
}

/* Online softmax (Milakov and Gimelshein, arXiv:1805.02867): row max of the
 * raw scores, new running max m0/m1 (scaled, base 2), exponents in place and
 * their row sums ps0/ps1; a0/a1 are the factors that rescale the old O and
 * l. */
__device__ __forceinline__ void softmax_tile(float (&s)[64], float scale_log2, float &m0, float &m1, float &a0,
                                             float &a1, float &ps0, float &ps1) {
  float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
  for (int nt = 0; nt < KT / 8; nt++) {
#pragma unroll
    for (int e = 0; e < 2; e++) {
      mx0 = fmaxf(mx0, s[nt * 4 + e]);
      mx1 = fmaxf(mx1, s[nt * 4 + 2 + e]);
    }
  }
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
  const float mn0 = fmaxf(m0, mx0 * scale_log2), mn1 = fmaxf(m1, mx1 * scale_log2);
  a0 = fast_exp2(m0 - mn0);
  a1 = fast_exp2(m1 - mn1);
  m0 = mn0;
  m1 = mn1;
  ps0 = 0.f;
  ps1 = 0.f;
#pragma unroll
  for (int nt = 0; nt < KT / 8; nt++) {
#pragma unroll
    for (int e = 0; e < 2; e++) {
      if (IK_SM90_DIAG != 2) {
        s[nt * 4 + e] = fast_exp2(fmaf(s[nt * 4 + e], scale_log2, -mn0));
        s[nt * 4 + 2 + e] = fast_exp2(fmaf(s[nt * 4 + 2 + e], scale_log2, -mn1));
      }
      ps0 += s[nt * 4 + e];
      ps1 += s[nt * 4 + 2 + e];
    }
  }
}

/* After softmax_tile: the sums l0/l1 rescaled and extended, P packed into
 * the A fragments pf of the next P V, and O rescaled. */
template <bool BF16>
__device__ __forceinline__ void finish_tile(const float (&s)[64], float a0, float a1, float ps0, float ps1, float &l0,
                                            float &l1, uint32_t (&pf)[KT / 16][4], float (&o)[64]) {
  l0 = l0 * a0 + ps0;
  l1 = l1 * a1 + ps1;
#pragma unroll
  for (int kg = 0; kg < KT / 16; kg++) {
    pf[kg][0] = pack2<BF16>(s[8 * kg + 0], s[8 * kg + 1]);
    pf[kg][1] = pack2<BF16>(s[8 * kg + 2], s[8 * kg + 3]);
    pf[kg][2] = pack2<BF16>(s[8 * kg + 4], s[8 * kg + 5]);
    pf[kg][3] = pack2<BF16>(s[8 * kg + 6], s[8 * kg + 7]);
  }
#pragma unroll
  for (int i = 0; i < 16; i++) {
    o[4 * i + 0] *= a0;
    o[4 * i + 1] *= a0;
    o[4 * i + 2] *= a1;
    o[4 * i + 3] *= a1;
  }
}

/* Version 17's softmax (kernels/NOTES.md 17): as softmax_tile, but each
 * row's max and sum run as four partial chains combined at the end (a
 * dependence chain of 8 instead of 32 for each), the max starts from the
 * first scores rather than -inf, and the running max m0/m1, the reference
 * the exponents are taken against, moves only when some row of the warp
 * would otherwise see an exponent above 2^RESCALE_LOG2 (`moved`, the same
 * in every lane). Any reference gives the same O = sum P V / sum P and the
 * same LSE = m + log2(sum P) in exact arithmetic; P's rounding to bf16
 * or fp16 is relative, so a reference up to 2^8 below the true max costs
 * no precision (P <= 2^8 is far under fp16's 65504, and fp32 sums of such
 * terms cannot overflow). So O's
 * rescale (64 multiplies a thread) is skipped on most key tiles past the
 * first few, where version 16 ran it on every one (the same idea as the
 * conditional rescale of FlashAttention-4, Dao et al. 2025; the threshold
 * is ours). O's rescale and the packing of P are left to the caller
 * (rescale_o, pack_p). */
constexpr float RESCALE_LOG2 = 8.f;
__device__ __forceinline__ void softmax_tile_v17(float (&s)[64], float scale_log2, float &m0, float &m1, float &a0,
                                                 float &a1, float &ps0, float &ps1, bool &moved) {
  float x0[4], x1[4];
#pragma unroll
  for (int q = 0; q < 4; q++) {
    x0[q] = fmaxf(s[q * 4], s[q * 4 + 1]);
    x1[q] = fmaxf(s[q * 4 + 2], s[q * 4 + 3]);
  }
#pragma unroll
  for (int nt = 4; nt < KT / 8; nt++) {
    x0[nt & 3] = fmaxf(x0[nt & 3], fmaxf(s[nt * 4], s[nt * 4 + 1]));
    x1[nt & 3] = fmaxf(x1[nt & 3], fmaxf(s[nt * 4 + 2], s[nt * 4 + 3]));
  }
  float mx0 = fmaxf(fmaxf(x0[0], x0[1]), fmaxf(x0[2], x0[3]));
  float mx1 = fmaxf(fmaxf(x1[0], x1[1]), fmaxf(x1[2], x1[3]));
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
  /* m = -inf (the first tile) always moves: -inf - x > 8 is false, x - -inf
   * > 8 true. */
  moved = __any_sync(0xffffffffu, mx0 * scale_log2 - m0 > RESCALE_LOG2 || mx1 * scale_log2 - m1 > RESCALE_LOG2);
  const float mn0 = moved ? fmaxf(m0, mx0 * scale_log2) : m0, mn1 = moved ? fmaxf(m1, mx1 * scale_log2) : m1;
  a0 = fast_exp2(m0 - mn0);
  a1 = fast_exp2(m1 - mn1);
  m0 = mn0;
  m1 = mn1;
#pragma unroll
  for (int nt = 0; nt < KT / 8; nt++) {
#pragma unroll
    for (int e = 0; e < 2; e++) {
      if (IK_SM90_DIAG != 2) {
        s[nt * 4 + e] = fast_exp2(fmaf(s[nt * 4 + e], scale_log2, -mn0));
        s[nt * 4 + 2 + e] = fast_exp2(fmaf(s[nt * 4 + 2 + e], scale_log2, -mn1));
      }
    }
  }
#pragma unroll
  for (int q = 0; q < 4; q++) {
    x0[q] = s[q * 4] + s[q * 4 + 1];
    x1[q] = s[q * 4 + 2] + s[q * 4 + 3];
  }
#pragma unroll
  for (int nt = 4; nt < KT / 8; nt++) {
    x0[nt & 3] += s[nt * 4] + s[nt * 4 + 1];
    x1[nt & 3] += s[nt * 4 + 2] + s[nt * 4 + 3];
  }
  ps0 = (x0[0] + x0[1]) + (x0[2] + x0[3]);
  ps1 = (x1[0] + x1[1]) + (x1[2] + x1[3]);
}

/* Version 17's issue of S = Q K^T and of P V from descriptors made once:
 * the low word of a matrix descriptor holds the start address >> 4 in bits
 * 0-13, and a k-step only moves that address by a constant, so each step's
 * descriptor is one 32-bit add on the low word (shared addresses stay under
 * 2^18 bytes, so the field never carries into the next). Version 16 built
 * each of the 16 descriptors from its address, about ten instructions
 * apiece on the path that feeds the tensor cores. */
__device__ __forceinline__ uint64_t desc_at(uint32_t lo, uint32_t hi, uint32_t byte_off) {
  return (uint64_t)hi << 32 | (uint64_t)(lo + (byte_off >> 4));
}
template <bool BF16>
__device__ __forceinline__ void issue_s_v17(float (&s)[64], uint32_t q_lo, uint32_t k_lo, uint32_t hi) {
#pragma unroll
  for (int kk = 0; kk < 8; kk++) {
    const uint64_t da = desc_at(q_lo, hi, (kk >> 2) * (QT * 128) + (kk & 3) * 32);
    const uint64_t db = desc_at(k_lo, hi, (kk >> 2) * (KT * 128) + (kk & 3) * 32);
    wgmma_ss_m64n128k16<BF16>(s, da, db, kk > 0);
  }
  wgmma_commit();
}
template <bool BF16>
__device__ __forceinline__ void issue_pv_v17(float (&o)[64], const uint32_t (&pf)[KT / 16][4], uint32_t v_lo,
                                             uint32_t hi) {
#pragma unroll
  for (int kg = 0; kg < KT / 16; kg++) wgmma_rs_m64n128k16<BF16>(o, pf[kg], desc_at(v_lo, hi, kg * 2048));
  wgmma_commit();
}

/* P (the exponents in s) packed into the A fragments of the next P V. */
template <bool BF16>
__device__ __forceinline__ void pack_p(const float (&s)[64], uint32_t (&pf)[KT / 16][4]) {
#pragma unroll
  for (int kg = 0; kg < KT / 16; kg++) {
    pf[kg][0] = pack2<BF16>(s[8 * kg + 0], s[8 * kg + 1]);
    pf[kg][1] = pack2<BF16>(s[8 * kg + 2], s[8 * kg + 3]);
    pf[kg][2] = pack2<BF16>(s[8 * kg + 4], s[8 * kg + 5]);
    pf[kg][3] = pack2<BF16>(s[8 * kg + 6], s[8 * kg + 7]);
  }
}

/* Version 18's exponents (kernels/NOTES.md 18): P of one key tile against
 * the reference m0/m1 as it stands, with no row max taken first, packed
 * into the A fragments pf of the next P V, and their row sums (per thread)
 * ps0/ps1; s keeps the raw scores. Version 17's reference moves only when
 * a row's max passes it by 2^8, which after the first key tiles is rare,
 * yet it spent 68 FMNMX and 4 shuffles a tile finding that out. Here the
 * sums say it: every P is at most its row's sum, so while each thread's
 * sums stay at or under SUM_MAX_V18 = 2^15 no P overflows (fp16's largest
 * is 65504; a P past 2^128 is infinite in fp32 too, and so is its sum) and
 * the tile is done. When a sum passes
 * it (an infinite one too), the caller redoes the tile from the raw scores
 * with version 17's softmax, which moves the reference to the new max.
 * Any reference at or under the true max gives the same O and LSE in exact
 * arithmetic (softmax_tile_v17); P <= 2^15 keeps O's and l's fp32 sums far
 * from overflow over any context. NaN scores give a NaN sum, which
 * compares false: they reach O as they would in version 17. */
constexpr float SUM_MAX_V18 = 32768.f;
template <bool BF16>
__device__ __forceinline__ void exp_pack_v18(const float (&s)[64], float scale_log2, float m0, float m1,
                                             uint32_t (&pf)[KT / 16][4], float &ps0, float &ps1) {
  float x0[4], x1[4];
#pragma unroll
  for (int kg = 0; kg < KT / 16; kg++) {
    /* s[8 kg + 0, 1, 4, 5] are the thread's first row, + 2, 3, 6, 7 its second. */
    float e[8];
#pragma unroll
    for (int i = 0; i < 8; i++) e[i] = fast_exp2(fmaf(s[8 * kg + i], scale_log2, (i & 2) ? -m1 : -m0));
    pf[kg][0] = pack2<BF16>(e[0], e[1]);
    pf[kg][1] = pack2<BF16>(e[2], e[3]);
    pf[kg][2] = pack2<BF16>(e[4], e[5]);
    pf[kg][3] = pack2<BF16>(e[6], e[7]);
    const float r0 = (e[0] + e[1]) + (e[4] + e[5]), r1 = (e[2] + e[3]) + (e[6] + e[7]);
    if (kg < 4) {
      x0[kg] = r0;
      x1[kg] = r1;
    } else {
      x0[kg & 3] += r0;
      x1[kg & 3] += r1;
    }
  }
  ps0 = (x0[0] + x0[1]) + (x0[2] + x0[3]);
  ps1 = (x1[0] + x1[1]) + (x1[2] + x1[3]);
}

/* O's rows rescaled by a0 (first row of the thread) and a1 (second). */
__device__ __forceinline__ void rescale_o(float (&o)[64], float a0, float a1) {
#pragma unroll
  for (int i = 0; i < 16; i++) {
    o[4 * i + 0] *= a0;
    o[4 * i + 1] *= a0;
    o[4 * i + 2] *= a1;
    o[4 * i + 3] *= a1;
  }
}

} /* namespace */

/* Version 15 (pipeline 4; `persist`: pipeline 5) on c->stream; `tma`: K/V
 * by bulk tensor copies (pipelines 6 and 7); `v17`: version 17's consumers
 * with version 16's loads (pipelines 8 and 9); `v18`: version 18's
 * consumers (pipelines 10 and 11); `grouped`: version 18 with the CTAs in
 * groups of heads (pipeline 12); `fused`: version 18 (one CTA per work
 * tile) reading the new K/V from k_new / v_new and writing them to the pool
 * itself (pipeline 13; with `persist` pipeline 14; past_tokens 0 only:
 * the caller runs no append). */
infsim_status ik_prefill_sm90_ws(ik_cuda *c, const ik_prefill_params &p, bool bf16, int reqs, bool persist, bool tma,
                                 bool v17, bool v18, bool grouped, bool fused, infsim_error *err);

#endif
