/*
** ma_decode.cuh: what the two MA decode kernels share (ma_decode.cu, one
** CTA per row group and split with the split merges and the remote
** partials; ma_decode_rows.cu, a persistent grid over row groups with one
** split): the launch parameters, the shape constants, the copy of one K/V
** tile into a warp's pipeline stage, the arithmetic of one tile, and the
** remote partials' loads, L2 prefetch and merge (kernel 1's one-split
** fold after the stream, the persistent grid's seeds before it).
*/
#ifndef INFSIM_KERNELS_MA_DECODE_CUH
#define INFSIM_KERNELS_MA_DECODE_CUH

#include "cuda_common.cuh"
#include "mma_util.cuh"

namespace ik_decode {

constexpr int D = 128;
constexpr int WARPS = 4;
constexpr int THREADS = WARPS * 32;
constexpr int TILE = 16;   /* tokens per warp tile */
/* Per-warp pipeline depth. 3: two CTAs per SM (104 KiB of shared memory
 * each); 2 (a build-time experiment, -DIK_DECODE_STAGES=2): three CTAs per
 * SM, so that one CTA's prologue and epilogue overlap two others' streams. */
#ifndef IK_DECODE_STAGES
#define IK_DECODE_STAGES 3
#endif
constexpr int STAGES = IK_DECODE_STAGES;
constexpr int CTAS_PER_SM = STAGES >= 3 ? 2 : 3;
constexpr int TILE_ELEMS = TILE * D;
constexpr int SMEM_PIPE_BYTES = WARPS * STAGES * 2 * TILE_ELEMS * 2; /* K and V, 16-bit */
constexpr int SMEM_Q_BYTES = 16 * D * 2;
constexpr float LOG2E = 1.4426950408889634f;
constexpr float LN2 = 0.6931471805599453f;

struct DecodeParams {
  const uint16_t *q, *k_pool, *v_pool;
  const int32_t *block_table;
  const int32_t *context_tokens;
  float *out, *lse;
  float *ws_out, *ws_lse;  /* [row][entry][D], [row][entry]: the splits' (and split_merge 6's remote entry) */
  unsigned *counters;      /* [request][kv head][head group] */
  const void *rem_out;     /* [nrem][rows][D], fp32 or fp16 (rem_f16) */
  const float *rem_lse;    /* [nrem][rows] */
  int64_t rows;            /* requests * h */
  int nrem, rem_f16;
  int64_t bt_stride;
  int h, g, group, qgroups, bt, splits;
  float scale_log2;
};

/* cp_async16 for the KV stream, with an L2 evict-first policy: each K/V
 * byte is read once, so it should not push out of L2 what is read again
 * (Q, the block table, the remote partials prefetched there) or the
 * output lines awaiting write-back. On an H100 (2026-12-07, four rounds
 * rotated against the same build without the policy) b=256/1K took 360.2-
 * 360.7 us against 370.6-371.1 (99.0-99.3 % of the copy ceiling against
 * 96.0-96.9 %), b=128/1K 187.3-187.9 against 191.5-191.8, and 8K
 * contexts 0.1-0.7 % less; an L2::256B prefetch hint instead changed
 * nothing (kernels/NOTES.md, "H100: the KV stream evicts first"). */
__device__ __forceinline__ void cp_async16_stream(void *smem, const void *gmem, bool valid) {
  const int src_bytes = valid ? 16 : 0;
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(policy));
  asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2, %3;\n" ::"r"(smem_addr(smem)),
               "l"(gmem), "r"(src_bytes), "l"(policy));
}

/* Issues the cp.async copies of one 16-token K and V tile into a stage. */
__device__ __forceinline__ void load_tile(uint16_t *ks, uint16_t *vs, const uint16_t *kg, const uint16_t *vg,
                                          int valid_rows, int lane) {
#pragma unroll
  for (int i = 0; i < TILE * D / 8 / 32; i++) {
    int c = lane + 32 * i;
    int row = c >> 4, ch = c & 15;
    bool ok = row < valid_rows;
    cp_async16_stream(ks + swz(row, ch), kg + (ok ? row * D + ch * 8 : 0), ok);
    cp_async16_stream(vs + swz(row, ch), vg + (ok ? row * D + ch * 8 : 0), ok);
  }
}

/* One 16-token K/V tile of a warp's stream (K at ks, V at vs, swizzled;
 * keys from tok0, those at or past tok_end masked): S = Q K^T on the
 * tensor cores (the group's queries are the 16 rows of the m16n8k16 A
 * tile, qf), the online softmax per row in base 2 (scale_log2 = softmax
 * scale * log2 e), O += P V. m0/l0 and m1/l1: rows lane / 4 and + 8. */
template <bool BF16>
__device__ __forceinline__ void stream_tile(const uint32_t (&qf)[8][4], const uint16_t *ks, const uint16_t *vs,
                                            int lane, int tok0, int tok_end, float scale_log2, float (&o)[16][4],
                                            float &m0, float &m1, float &l0, float &l1) {
  float s[2][4];
#pragma unroll
  for (int nt = 0; nt < 2; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
  for (int kk = 0; kk < 8; kk++) {
    uint32_t b[4];
    ldmatrix_x4(b, ks + swz((lane % 8) + (lane / 16) * 8, kk * 2 + (lane / 8) % 2));
    mma16816<BF16>(s[0], qf[kk], b[0], b[1]);
    mma16816<BF16>(s[1], qf[kk], b[2], b[3]);
  }
  /* Scale to base 2, mask keys past the range, online softmax per row. */
  float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
  for (int nt = 0; nt < 2; nt++) {
#pragma unroll
    for (int e = 0; e < 2; e++) {
      bool ok = tok0 + nt * 8 + 2 * (lane % 4) + e < tok_end;
      s[nt][e] = ok ? s[nt][e] * scale_log2 : -INFINITY;
      s[nt][e + 2] = ok ? s[nt][e + 2] * scale_log2 : -INFINITY;
      mx0 = fmaxf(mx0, s[nt][e]);
      mx1 = fmaxf(mx1, s[nt][e + 2]);
    }
  }
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
  const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1); /* finite: the tile has a valid key */
  const float a0 = fast_exp2(m0 - mn0), a1 = fast_exp2(m1 - mn1);
  m0 = mn0;
  m1 = mn1;
  float ps0 = 0.f, ps1 = 0.f;
#pragma unroll
  for (int nt = 0; nt < 2; nt++) {
#pragma unroll
    for (int e = 0; e < 2; e++) {
      s[nt][e] = fast_exp2(s[nt][e] - mn0);
      s[nt][e + 2] = fast_exp2(s[nt][e + 2] - mn1);
      ps0 += s[nt][e];
      ps1 += s[nt][e + 2];
    }
  }
  l0 = l0 * a0 + ps0;
  l1 = l1 * a1 + ps1;
#pragma unroll
  for (int i = 0; i < 16; i++) {
    o[i][0] *= a0;
    o[i][1] *= a0;
    o[i][2] *= a1;
    o[i][3] *= a1;
  }
  uint32_t pf[4] = {pack2<BF16>(s[0][0], s[0][1]), pack2<BF16>(s[0][2], s[0][3]), pack2<BF16>(s[1][0], s[1][1]),
                    pack2<BF16>(s[1][2], s[1][3])};
#pragma unroll
  for (int dp = 0; dp < 8; dp++) {
    uint32_t b[4];
    ldmatrix_x4_trans(b, vs + swz((lane % 8) + ((lane / 8) % 2) * 8, dp * 2 + lane / 16));
    mma16816<BF16>(o[2 * dp], pf, b[0], b[1]);
    mma16816<BF16>(o[2 * dp + 1], pf, b[2], b[3]);
  }
}

/* The cross-warp merge's first half: this warp's accumulators (fp32 O,
 * 16 rows x D, the mma.sync C layout) into wo[16][D], and its row maxima
 * and sums into mm[warp][16] and ml[warp][16] (m0/l0: rows lane / 4, m1/l1:
 * + 8). */
__device__ __forceinline__ void store_warp_state(float *wo, float *mm, float *ml, int warp, int lane,
                                                 const float (&o)[16][4], float m0, float m1, float l0, float l1) {
  const int rw = lane / 4, cl = 2 * (lane % 4);
#pragma unroll
  for (int nt = 0; nt < 16; nt++) {
    *(float2 *)(wo + rw * D + nt * 8 + cl) = make_float2(o[nt][0], o[nt][1]);
    *(float2 *)(wo + (rw + 8) * D + nt * 8 + cl) = make_float2(o[nt][2], o[nt][3]);
  }
  if (lane % 4 == 0) {
    mm[warp * 16 + rw] = m0;
    mm[warp * 16 + rw + 8] = m1;
    ml[warp * 16 + rw] = l0;
    ml[warp * 16 + rw + 8] = l1;
  }
}

/* Four consecutive dims [x, x + 4) of remote partial j, row grow, as raw
 * bits (fp32: four words; fp16: two, in .x and .y); raw_to_float4 converts.
 * Kept raw so that a load issued early is not waited on by its conversion
 * before the work it is meant to overlap. */
template <bool F16>
__device__ __forceinline__ uint4 load_remote_raw(const DecodeParams &p, int j, int64_t grow, int x) {
  const int64_t e = ((int64_t)j * p.rows + grow) * D + x;
  if (!F16) return __ldg((const uint4 *)((const float *)p.rem_out + e));
  const uint2 u = __ldg((const uint2 *)((const uint16_t *)p.rem_out + e));
  return make_uint4(u.x, u.y, 0u, 0u);
}

/* As load_remote_raw, from a row's base (remote partial 0, this lane's
 * first dim) and the distance between partials, both in bytes: one
 * multiply-add per partial instead of the full index arithmetic. */
template <bool F16>
__device__ __forceinline__ uint4 load_remote_at(const char *base, int64_t stride_bytes, int j, int byte_off) {
  const char *a = base + j * stride_bytes + byte_off;
  if (!F16) return __ldg((const uint4 *)a);
  const uint2 v = __ldg((const uint2 *)a);
  return make_uint4(v.x, v.y, 0u, 0u);
}

template <bool F16>
__device__ __forceinline__ float4 raw_to_float4(const uint4 &u) {
  if (!F16) return make_float4(__uint_as_float(u.x), __uint_as_float(u.y), __uint_as_float(u.z), __uint_as_float(u.w));
  const float2 a = __half22float2(*(const __half2 *)&u.x), b = __half22float2(*(const __half2 *)&u.y);
  return make_float4(a.x, a.y, b.x, b.y);
}

__device__ __forceinline__ void fma4(float4 &acc, float w, const float4 &v) {
  acc.x += w * v.x;
  acc.y += w * v.y;
  acc.z += w * v.z;
  acc.w += w * v.w;
}

/* Issues the loads of remote partials j0, j0 + jstep, .. (four at most,
 * j < nrem), chunks i < n (n <= 4) of row grow at dims x0 + i * xstep, into
 * v[u][i]; unconditionally (the memory of an empty partial exists; its
 * bytes, NaN say, are never added, see fold_remote_batch). */
template <bool F16>
__device__ __forceinline__ void load_remote_batch(const DecodeParams &p, int64_t grow, int j0, int jstep, int x0,
                                                  int xstep, int n, uint4 (&v)[4][4]) {
#pragma unroll
  for (int u = 0; u < 4; u++)
#pragma unroll
    for (int i = 0; i < 4; i++)
      if (i < n && j0 + u * jstep < p.nrem) v[u][i] = load_remote_raw<F16>(p, j0 + u * jstep, grow, x0 + i * xstep);
}

/* acc[i] += w_j * v[u][i] for the batch load_remote_batch issued, with w_j =
 * weight(j) (0 = empty or negligible: not added). Returns the weights' sum. */
template <bool F16, typename Weight>
__device__ __forceinline__ float fold_remote_batch(const DecodeParams &p, int j0, int jstep, int n,
                                                   const uint4 (&v)[4][4], float4 *acc, Weight weight) {
  float sum = 0.f;
#pragma unroll
  for (int u = 0; u < 4; u++) {
    if (j0 + u * jstep >= p.nrem) break;
    const float w = weight(j0 + u * jstep);
    sum += w;
    if (w != 0.f)
#pragma unroll
      for (int i = 0; i < 4; i++)
        if (i < n) fma4(acc[i], w, raw_to_float4<F16>(v[u][i]));
  }
  return sum;
}

/* acc[i] += w_j * remote_j[row grow, dims x0 + i * xstep ..+4] for the
 * remote partials j = j0, j0 + jstep, ... (i < n chunks, n <= 4). The loads
 * of four partials are issued before any is used, so the added latency is
 * one round trip per four partials, not one per partial (the first
 * version, with the load behind the emptiness test: ~1 us per partial on
 * an H200). Returns the sum of the weights. */
template <bool F16, typename Weight>
__device__ __forceinline__ float add_remote(const DecodeParams &p, int64_t grow, int j0, int jstep, int x0, int xstep,
                                            int n, float4 *acc, Weight weight) {
  float sum = 0.f;
  for (int j = j0; j < p.nrem; j += 4 * jstep) {
    uint4 v[4][4];
    load_remote_batch<F16>(p, grow, j, jstep, x0, xstep, n, v);
    sum += fold_remote_batch<F16>(p, j, jstep, n, v, acc, weight);
  }
  return sum;
}

/* L2 prefetch of remote partials j0, j0 + jstep, .. (n of them), rows q0 ..
 * q0 + nq - 1 of request r (adjacent: nq * D elements per partial), lines
 * tid, tid + nthreads, ..; with lse, their LSEs too (nq adjacent floats per
 * partial: its first and last line). */
__device__ __forceinline__ void prefetch_remote(const DecodeParams &p, int64_t grow0, int nq, int j0, int jstep, int n,
                                                int tid, int nthreads, bool lse) {
  const int esz = p.rem_f16 ? 2 : 4, lines = nq * D * esz / 128;
  for (int i = tid; i < lines * n; i += nthreads) {
    const int64_t j = j0 + (int64_t)(i / lines) * jstep;
    const char *a = (const char *)p.rem_out + (j * p.rows + grow0) * D * esz + (int64_t)(i % lines) * 128;
    asm volatile("prefetch.global.L2 [%0];" ::"l"(a));
  }
  if (lse)
    for (int i = tid; i < 2 * n; i += nthreads) {
      const float *a = p.rem_lse + (j0 + (int64_t)(i / 2) * jstep) * p.rows + grow0 + (i % 2) * (nq - 1);
      asm volatile("prefetch.global.L2 [%0];" ::"l"(a));
    }
}

/* An empty softmax state (o, row maxima m0/m1, row sums l0/l1) of a
 * warp's two mma.sync C-layout rows. */
__device__ __forceinline__ void reset_state(float (&o)[16][4], float &m0, float &m1, float &l0, float &l1) {
#pragma unroll
  for (int i = 0; i < 16; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  m0 = m1 = -INFINITY;
  l0 = l1 = 0.f;
}

/* One remote partial's share of a warp (rows lane / 4 and + 8 of a row
 * group, dims nt * 8 + 2 (lane % 4) + {0, 1}) as raw bits: fp32 pairs, or
 * an fp16 pair in .x. Loaded apart from its fold so that a row group's
 * first partial can be issued ahead of the group's own K/V tiles. */
struct SeedRaw {
  uint2 v0[16], v1[16];
  float L0, L1;
};

/* Partial j's share of row group rows grow0 .. grow0 + nq - 1 (a row past
 * the group reads the group's first). */
template <bool F16>
__device__ __forceinline__ void seed_load_as(const DecodeParams &p, int64_t grow0, int nq, int j, int lane, SeedRaw &s) {
  const int r0 = lane / 4, r1 = r0 + 8, c = 2 * (lane % 4);
  const int64_t row0 = (int64_t)j * p.rows + grow0 + (r0 < nq ? r0 : 0);
  const int64_t row1 = (int64_t)j * p.rows + grow0 + (r1 < nq ? r1 : 0);
  const int64_t e0 = row0 * D + c, e1 = row1 * D + c;
  s.L0 = __ldg(p.rem_lse + row0);
  s.L1 = __ldg(p.rem_lse + row1);
#pragma unroll
  for (int nt = 0; nt < 16; nt++) {
    if (F16) {
      s.v0[nt].x = __ldg((const unsigned *)((const uint16_t *)p.rem_out + e0 + nt * 8));
      s.v1[nt].x = __ldg((const unsigned *)((const uint16_t *)p.rem_out + e1 + nt * 8));
    } else {
      s.v0[nt] = __ldg((const uint2 *)((const float *)p.rem_out + e0 + nt * 8));
      s.v1[nt] = __ldg((const uint2 *)((const float *)p.rem_out + e1 + nt * 8));
    }
  }
}

/* The persistent grid's remote partials as this warp's starting state:
 * a partial (normalized output O, natural-log LSE L) is the state m = L
 * log2 e, l = 1, o = O: the sum over its keys of 2^(s - m) is 1. The
 * cross-warp merge then weighs it as it weighs the tiles, so no fold
 * follows the stream: in one wave the fold after the merge was the
 * CTA's tail, one L2 round trip and its arithmetic with DRAM idle. An
 * empty partial (L = -inf) and rows past nq are selected away, never
 * multiplied (an empty partial's bytes may be NaN). l counts the partial
 * once a row: in the quad's first lane (the quad's sums are added at the
 * end of the stream). The state is in the mma.sync C layout. */
template <bool F16>
__device__ __forceinline__ void seed_fold_as(const SeedRaw &s, int nq, int lane, float (&o)[16][4], float &m0,
                                             float &m1, float &l0, float &l1) {
  const int r0 = lane / 4, r1 = r0 + 8;
  const float s0 = r0 < nq ? s.L0 * LOG2E : -INFINITY, s1 = r1 < nq ? s.L1 * LOG2E : -INFINITY;
  const float mn0 = fmaxf(m0, s0), mn1 = fmaxf(m1, s1);
  /* a: the old state's factor (0 when it is empty), b: the partial's (0
   * when it is empty); both rows empty keep the state as it is. */
  const float a0 = m0 == -INFINITY ? 0.f : fast_exp2(m0 - mn0), a1 = m1 == -INFINITY ? 0.f : fast_exp2(m1 - mn1);
  const float b0 = s0 == -INFINITY ? 0.f : fast_exp2(s0 - mn0), b1 = s1 == -INFINITY ? 0.f : fast_exp2(s1 - mn1);
#pragma unroll
  for (int nt = 0; nt < 16; nt++) {
    const float2 v0 = F16 ? __half22float2(*(const __half2 *)&s.v0[nt].x)
                          : make_float2(__uint_as_float(s.v0[nt].x), __uint_as_float(s.v0[nt].y));
    const float2 v1 = F16 ? __half22float2(*(const __half2 *)&s.v1[nt].x)
                          : make_float2(__uint_as_float(s.v1[nt].x), __uint_as_float(s.v1[nt].y));
    o[nt][0] = o[nt][0] * a0 + (b0 != 0.f ? b0 * v0.x : 0.f);
    o[nt][1] = o[nt][1] * a0 + (b0 != 0.f ? b0 * v0.y : 0.f);
    o[nt][2] = o[nt][2] * a1 + (b1 != 0.f ? b1 * v1.x : 0.f);
    o[nt][3] = o[nt][3] * a1 + (b1 != 0.f ? b1 * v1.y : 0.f);
  }
  l0 = l0 * a0 + (lane % 4 == 0 ? b0 : 0.f);
  l1 = l1 * a1 + (lane % 4 == 0 ? b1 : 0.f);
  m0 = mn0;
  m1 = mn1;
}

/* seed_load_as and seed_fold_as in the partials' precision (p.rem_f16). */
__device__ __forceinline__ void seed_load(const DecodeParams &p, int64_t grow0, int nq, int j, int lane, SeedRaw &s) {
  if (p.rem_f16)
    seed_load_as<true>(p, grow0, nq, j, lane, s);
  else
    seed_load_as<false>(p, grow0, nq, j, lane, s);
}

__device__ __forceinline__ void seed_fold(const DecodeParams &p, const SeedRaw &s, int nq, int lane, float (&o)[16][4],
                                          float &m0, float &m1, float &l0, float &l1) {
  if (p.rem_f16)
    seed_fold_as<true>(s, nq, lane, o, m0, m1, l0, l1);
  else
    seed_fold_as<false>(s, nq, lane, o, m0, m1, l0, l1);
}

/* Partials j0, j0 + jstep, .. of row group rows grow0 .. grow0 + nq - 1
 * folded into this warp's state (seed_fold), each loaded whole before its
 * fold (one round trip a partial). */
template <bool F16>
__device__ __forceinline__ void seed_remote_as(const DecodeParams &p, int64_t grow0, int nq, int j0, int jstep, int lane,
                                               float (&o)[16][4], float &m0, float &m1, float &l0, float &l1) {
#pragma unroll 1
  for (int j = j0; j < p.nrem; j += jstep) {
    SeedRaw s;
    seed_load_as<F16>(p, grow0, nq, j, lane, s);
    seed_fold_as<F16>(s, nq, lane, o, m0, m1, l0, l1);
  }
}

/* seed_remote_as in the partials' precision, chosen once for the loop. */
__device__ __forceinline__ void seed_remote(const DecodeParams &p, int64_t grow0, int nq, int j0, int jstep, int lane,
                                            float (&o)[16][4], float &m0, float &m1, float &l0, float &l1) {
  if (p.rem_f16)
    seed_remote_as<true>(p, grow0, nq, j0, jstep, lane, o, m0, m1, l0, l1);
  else
    seed_remote_as<false>(p, grow0, nq, j0, jstep, lane, o, m0, m1, l0, l1);
}

/* A warp's second remote partial of a row group, staged through its
 * pipeline's last stage (free until the warp issues its third tile; 16
 * rows of fp32 fill it, the bound ma_decode_rows.cu asserts for a warp's
 * O): seed_stage copies rows grow0 .. grow0 + nq - 1 of partial j there (one
 * cp.async group; 16-byte chunk ch of row r at ch ^ (r & 7), so that the
 * fold's reads of 8 rows at one column fall in different banks) and loads
 * the LSEs of this lane's rows; seed_fold_staged folds it as seed_fold
 * does, once the group is waited for. Both partials of a warp then come
 * in one round trip: loaded into registers after the first one's fold,
 * the second was a round trip of its own, every row group. */
struct SeedStaged {
  float L0, L1;
};

__device__ __forceinline__ void seed_stage(const DecodeParams &p, int64_t grow0, int nq, int j, int lane,
                                           uint16_t *stage, SeedStaged &s) {
  const int esz = p.rem_f16 ? 2 : 4, row_chunks = D * esz / 16;
  const char *src = (const char *)p.rem_out + ((int64_t)j * p.rows + grow0) * D * esz;
  for (int c = lane; c < nq * row_chunks; c += 32) {
    const int r = c / row_chunks, ch = c % row_chunks;
    cp_async16((char *)stage + (r * row_chunks + (ch ^ (r & 7))) * 16, src + (int64_t)c * 16, true);
  }
  cp_async_commit();
  const int r0 = lane / 4, r1 = r0 + 8;
  s.L0 = __ldg(p.rem_lse + (int64_t)j * p.rows + grow0 + (r0 < nq ? r0 : 0));
  s.L1 = __ldg(p.rem_lse + (int64_t)j * p.rows + grow0 + (r1 < nq ? r1 : 0));
}

template <bool F16>
__device__ __forceinline__ void seed_fold_staged_as(const SeedStaged &st, const uint16_t *stage, int nq, int lane,
                                                    float (&o)[16][4], float &m0, float &m1, float &l0, float &l1) {
  constexpr int ESZ = F16 ? 2 : 4, ROW_CHUNKS = D * ESZ / 16;
  const int r0 = lane / 4, r1 = r0 + 8 < nq ? r0 + 8 : 0, c = 2 * (lane % 4);
  auto at = [&](int r, int col) {
    const int b = col * ESZ;
    return (const char *)stage + (r * ROW_CHUNKS + ((b / 16) ^ (r & 7))) * 16 + b % 16;
  };
  SeedRaw s;
  s.L0 = st.L0;
  s.L1 = st.L1;
#pragma unroll
  for (int nt = 0; nt < 16; nt++) {
    if (F16) {
      s.v0[nt].x = *(const unsigned *)at(r0, c + nt * 8);
      s.v1[nt].x = *(const unsigned *)at(r1, c + nt * 8);
    } else {
      s.v0[nt] = *(const uint2 *)at(r0, c + nt * 8);
      s.v1[nt] = *(const uint2 *)at(r1, c + nt * 8);
    }
  }
  seed_fold_as<F16>(s, nq, lane, o, m0, m1, l0, l1);
}

__device__ __forceinline__ void seed_fold_staged(const DecodeParams &p, const SeedStaged &st, const uint16_t *stage,
                                                 int nq, int lane, float (&o)[16][4], float &m0, float &m1, float &l0,
                                                 float &l1) {
  if (p.rem_f16)
    seed_fold_staged_as<true>(st, stage, nq, lane, o, m0, m1, l0, l1);
  else
    seed_fold_staged_as<false>(st, stage, nq, lane, o, m0, m1, l0, l1);
}

/* Kernel 1's one-split fold, first part: this thread's share (row grow,
 * dims d0 .. d0 + 15) of remote partials 0-3 and their LSEs into
 * registers, issued right after the KV stream so that their round trip
 * overlaps the wait for the other warps and the cross-warp merge. (The
 * LSEs were staged in shared memory before: the store waited for the
 * load ahead of the barrier, so the CTA's last warp paid the round trip
 * in full.) */
__device__ __forceinline__ void load_remote_first(const DecodeParams &p, int64_t grow, int d0, uint4 (&rv)[4][4],
                                                  float (&rl4)[4]) {
  if (p.rem_f16)
    load_remote_batch<true>(p, grow, 0, 1, d0, 4, 4, rv);
  else
    load_remote_batch<false>(p, grow, 0, 1, d0, 4, 4, rv);
#pragma unroll
  for (int u = 0; u < 4; u++)
    if (u < p.nrem) rl4[u] = __ldcg(p.rem_lse + (int64_t)u * p.rows + grow);
}

/* Kernel 1's one-split fold, second part: o4 (this thread's 16 dims of
 * its row, normalized, LSE lse_nat) merged with the remote partials,
 * weights exp(lse - M) over the local and remote LSEs (natural log), empty
 * ones neither weighted nor read; the first four from load_remote_first's
 * registers, any others four at a time. Returns the merged LSE. */
__device__ __forceinline__ float fold_remote_one_split(const DecodeParams &p, int64_t grow, int d0,
                                                       const uint4 (&rv)[4][4], const float (&rl4)[4],
                                                       float4 (&o4)[4], float lse_nat) {
  /* LSE of partial j: the first four from registers (selected by
   * constant indices: a run-time index would put rl4 in local memory),
   * any others from L2. */
  auto lse_of = [&](int j) {
    return j == 0   ? rl4[0]
           : j == 1 ? rl4[1]
           : j == 2 ? rl4[2]
           : j == 3 ? rl4[3]
                    : __ldcg(p.rem_lse + (int64_t)j * p.rows + grow);
  };
  float M = lse_nat;
  for (int j = 0; j < p.nrem; j++) M = fmaxf(M, lse_of(j));
  if (M == -INFINITY) return lse_nat;
  const float wl = lse_nat == -INFINITY ? 0.f : __expf(lse_nat - M);
#pragma unroll
  for (int i = 0; i < 4; i++) o4[i] = make_float4(o4[i].x * wl, o4[i].y * wl, o4[i].z * wl, o4[i].w * wl);
  auto weight = [&](int j) {
    const float l = lse_of(j);
    return l == -INFINITY ? 0.f : __expf(l - M);
  };
  const float sum = wl + (p.rem_f16 ? fold_remote_batch<true>(p, 0, 1, 4, rv, o4, weight) +
                                          add_remote<true>(p, grow, 4, 1, d0, 4, 4, o4, weight)
                                    : fold_remote_batch<false>(p, 0, 1, 4, rv, o4, weight) +
                                          add_remote<false>(p, grow, 4, 1, d0, 4, 4, o4, weight));
  const float inv = 1.f / sum;
#pragma unroll
  for (int i = 0; i < 4; i++) o4[i] = make_float4(o4[i].x * inv, o4[i].y * inv, o4[i].z * inv, o4[i].w * inv);
  return M + __logf(sum);
}

/* Launches the persistent decode (ma_decode_rows.cu) of p's row groups
 * (requests x KV heads x groups of <= 16 query heads, one split, the
 * remote partials its warps' starting states) on `grid` CTAs of THREADS
 * threads; rows_prepare sets its shared memory once and gives its CTAs
 * per SM. */
cudaError_t rows_prepare(bool bf16, int *ctas_per_sm);
void rows_launch(bool bf16, const DecodeParams &p, int64_t row_groups, int grid, cudaStream_t stream);

} /* namespace ik_decode */

#endif
