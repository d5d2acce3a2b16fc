/*
** ma_decode.cuh: what the two MA decode kernels share (ma_decode.cu, one
** CTA per row group and split with the split merges and the remote
** partials; ma_decode_rows.cu, a persistent grid over row groups with one
** split): the launch parameters, the shape constants, the copy of one K/V
** tile into a warp's pipeline stage and the arithmetic of one tile.
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

/* Issues the cp.async copies of one 16-token K and V tile into a stage. */
__device__ __forceinline__ void load_tile(uint16_t *ks, uint16_t *vs, const uint16_t *kg, const uint16_t *vg,
                                          int valid_rows, int lane) {
#pragma unroll
  for (int i = 0; i < TILE * D / 8 / 32; i++) {
    int c = lane + 32 * i;
    int row = c >> 4, ch = c & 15;
    bool ok = row < valid_rows;
    cp_async16(ks + swz(row, ch), kg + (ok ? row * D + ch * 8 : 0), ok);
    cp_async16(vs + swz(row, ch), vg + (ok ? row * D + ch * 8 : 0), ok);
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

/* Launches the persistent decode (ma_decode_rows.cu) of p's row groups
 * (requests x KV heads x groups of <= 16 query heads, one split, no
 * remote partials) on `grid` CTAs of THREADS threads; rows_prepare sets
 * its shared memory once and gives its CTAs per SM. */
cudaError_t rows_prepare(bool bf16, int *ctas_per_sm);
void rows_launch(bool bf16, const DecodeParams &p, int64_t row_groups, int grid, cudaStream_t stream);

} /* namespace ik_decode */

#endif
