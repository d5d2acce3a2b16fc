/*
** ma_decode_rows.cu: MA decode as a persistent grid (one split). One wave
** of CTAs; CTA b takes the row groups (request, KV
** head, group of <= 16 query heads) b, b + grid, b + 2 grid, .. in turn.
** Each row group streams as in ma_decode.cu (4 warps take the 16-token
** tiles round-robin, a 3-stage cp.async pipeline a warp, stream_tile);
** then, before its cross-warp merge, the CTA issues the next row group's
** Q tile and each warp's first two K/V tiles, so that HBM keeps bytes in
** flight through the merge and the store, and neither a CTA launch, a Q
** round trip nor a pipeline fill sits between two row groups. The next
** row group's context length and its first two block-table entries a
** warp are loaded at the start of the current one's stream, so their
** round trip hides under it too. Remote partials are not folded in after
** the stream, as ma_decode.cu's kernel 1 does: warp v starts its stream
** from partials v, v + 4, .. as its softmax state (seed_remote; a CTA's
** first row group issues partial v ahead of its own tiles, later ones
** load them with the Q tile; a warp's second, v + 4, is copied into its
** last pipeline stage in the same round trip, seed_stage), so the
** cross-warp merge weighs them with the tiles and nothing follows it (in
** one wave the fold after the merge was every CTA's tail, with DRAM
** idle). They come from DRAM: prefetching the next row group's partials
** into L2 during the stream made the decode with 8 partials 0.5-0.8 us
** slower at b=128/1K on an H100, 4, 2 or 1 tiles before a warp's last
** or after it (kernels/NOTES.md).
**
** Why: at batch 128-256 with 1K-token contexts the one-CTA-per-row-group
** launch runs 4-8 waves of short CTAs, each wave's CTAs end their streams
** together, and every wave boundary is a dip in DRAM reads (on an H200,
** dips, head and tail ~19 us of a 140 us decode at b=128/1K;
** kernels/NOTES.md, "the fused merge profiled").
**
** Shared memory: the pipeline, the Q tile, the warps' row maxima and sums.
** The merge puts each warp's O (16 x 128 fp32, 8 KiB) into that warp's
** last stage: the next row group's first two tiles fill the other two.
*/
#include "ma_decode.cuh"

using namespace ik_decode;

namespace {

constexpr int AHEAD = STAGES - 1; /* tiles a warp has in flight before computing one */
static_assert(16 * D * 4 <= 2 * TILE_ELEMS * 2, "a warp's O must fit in one pipeline stage");
constexpr int SMEM_ROWS_BYTES = SMEM_PIPE_BYTES + SMEM_Q_BYTES + 2 * WARPS * 16 * 4;

/* A row group as one warp sees it: request r, KV head kh, query heads q0
 * .. q0 + nq - 1, context ctx, this warp's tiles (warp, warp + WARPS, ..:
 * my_n of them) and the pool blocks of its first AHEAD. */
struct RowGroup {
  int64_t r;
  int kh, q0, nq, ctx, my_n;
  int32_t blk[AHEAD];
};

/* Row group `item`'s request, heads and query rows: arithmetic only, so
 * that loads keyed by its rows (the first remote partial) can be issued
 * before those of its context and block table. */
__device__ __forceinline__ RowGroup row_group_rows(const DecodeParams &p, int64_t item) {
  RowGroup w;
  const int qgi = (int)(item % p.qgroups);
  w.kh = (int)((item / p.qgroups) % p.g);
  w.r = item / ((int64_t)p.qgroups * p.g);
  w.q0 = w.kh * p.group + qgi * 16;
  w.nq = min(16, p.group - qgi * 16);
  return w;
}

/* The rest of the row group: its context and this warp's first AHEAD pool
 * blocks. */
__device__ __forceinline__ void row_group_fetch(const DecodeParams &p, RowGroup &w, int warp) {
  w.ctx = p.context_tokens[w.r];
  /* Only the tiles the request has: past them the table may hold nothing
   * (a batch of empty contexts comes with no table at all). */
#pragma unroll
  for (int j = 0; j < AHEAD; j++) {
    const int tok = (warp + WARPS * j) * TILE;
    w.blk[j] = tok < w.ctx ? p.block_table[w.r * p.bt_stride + tok / p.bt] : 0;
  }
}

__device__ __forceinline__ RowGroup row_group(const DecodeParams &p, int64_t item, int warp) {
  RowGroup w = row_group_rows(p, item);
  row_group_fetch(p, w, warp);
  return w;
}

/* This warp's tile j of row group w (pool block blk) into stage j %
 * STAGES, as one cp.async group (empty past the warp's tiles). */
__device__ __forceinline__ void issue_tile(const DecodeParams &p, const RowGroup &w, int64_t blk, uint16_t *wpipe,
                                           int warp, int lane, int j) {
  if (j < w.my_n) {
    const int tok = (warp + WARPS * j) * TILE;
    const int64_t off = ((blk * p.g + w.kh) * p.bt + tok % p.bt) * D;
    uint16_t *st = wpipe + (j % STAGES) * 2 * TILE_ELEMS;
    load_tile(st, st + TILE_ELEMS, p.k_pool + off, p.v_pool + off, min(TILE, w.ctx - tok), lane);
  }
  cp_async_commit();
}

/* Starts row group w: its Q tile (rows past nq zero) as one cp.async group
 * of all threads, then this warp's first AHEAD tiles. */
__device__ __forceinline__ void start_row_group(const DecodeParams &p, RowGroup &w, uint16_t *qs, uint16_t *wpipe,
                                                int warp, int lane) {
  const int ntiles = (w.ctx + TILE - 1) / TILE;
  w.my_n = warp < ntiles ? (ntiles - warp + WARPS - 1) / WARPS : 0;
  for (int c = threadIdx.x; c < 16 * D / 8; c += THREADS) {
    const int row = c >> 4, ch = c & 15;
    const bool ok = row < w.nq;
    cp_async16(qs + swz(row, ch), p.q + (ok ? (w.r * p.h + w.q0 + row) * D + ch * 8 : 0), ok);
  }
  cp_async_commit();
#pragma unroll
  for (int j = 0; j < AHEAD; j++) issue_tile(p, w, w.blk[j], wpipe, warp, lane, j);
}

/* Remote partials j0, j0 + WARPS, .. of row group w folded into a warp's
 * state (seed_remote). */
__device__ __forceinline__ void seed_partials(const DecodeParams &p, const RowGroup &w, int j0, int lane,
                                              float (&o)[16][4], float &m0, float &m1, float &l0, float &l1) {
  seed_remote(p, w.r * p.h + w.q0, w.nq, j0, WARPS, lane, o, m0, m1, l0, l1);
}

/* A warp's seeds after its first is folded: the second, staged in its
 * last stage (two: the warp has one; its cp.async group waited for with
 * at most PENDING younger groups in flight), then any past 8 partials. */
template <int PENDING>
__device__ __forceinline__ void seed_rest(const DecodeParams &p, const RowGroup &w, bool two, const SeedStaged &st,
                                          const uint16_t *last, int warp, int lane, float (&o)[16][4], float &m0,
                                          float &m1, float &l0, float &l1) {
  if (two) {
    cp_async_wait<PENDING>();
    __syncwarp();
    seed_fold_staged(p, st, last, w.nq, lane, o, m0, m1, l0, l1);
  }
  seed_partials(p, w, warp + 2 * WARPS, lane, o, m0, m1, l0, l1);
}

/* REMOTE: p.nrem > 0 (the seeds' loads only where they run: the build
 * without partials keeps the code it had before they existed, 194
 * registers on sm_90; 254 with them, no spill). */
template <bool BF16, bool REMOTE>
__global__ void __launch_bounds__(THREADS, CTAS_PER_SM) ma_decode_rows_kernel(DecodeParams p, int64_t groups) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  uint16_t *pipe = (uint16_t *)smem_raw;
  uint16_t *qs = (uint16_t *)(smem_raw + SMEM_PIPE_BYTES);
  float *mm = (float *)(smem_raw + SMEM_PIPE_BYTES + SMEM_Q_BYTES); /* [WARPS][16] row maxima */
  float *ml = mm + WARPS * 16;                                      /* [WARPS][16] row sums */
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  uint16_t *wpipe = pipe + warp * STAGES * 2 * TILE_ELEMS;
  uint16_t *last = wpipe + (STAGES - 1) * 2 * TILE_ELEMS; /* the warp's last stage */
  /* The merge's layout: thread t, row t / 8, dims (t % 8) * 16 .. +16. */
  const int row = threadIdx.x / 8, d0 = (threadIdx.x % 8) * 16;

  int64_t item = blockIdx.x;
  float o[16][4], m0, m1, l0, l1; /* this warp's softmax state of the row group */
  reset_state(o, m0, m1, l0, l1);
  RowGroup w = row_group_rows(p, item);
  if (REMOTE) {
    /* The first row group's remote partials are the warps' starting states
     * (seed_remote): warp v's first one is issued before the group's
     * context, block table, Q and tiles, and folded after them. Issued
     * after the tiles, it came back behind them: with one row group a CTA
     * (b=32/1K, one wave) a warp's stream began a round trip late. */
    SeedRaw s;
    SeedStaged st;
    const bool mine = warp < p.nrem, two = warp + WARPS < p.nrem;
    if (mine) seed_load(p, w.r * p.h + w.q0, w.nq, warp, lane, s);
    if (two) seed_stage(p, w.r * p.h + w.q0, w.nq, warp + WARPS, lane, last, st);
    asm volatile("" ::: "memory"); /* the compiler keeps those loads ahead of the group's */
    row_group_fetch(p, w, warp);
    start_row_group(p, w, qs, wpipe, warp, lane);
    if (mine) seed_fold(p, s, w.nq, lane, o, m0, m1, l0, l1);
    seed_rest<AHEAD + 1>(p, w, two, st, last, warp, lane, o, m0, m1, l0, l1); /* the Q tile and first tiles may fly */
  } else {
    row_group_fetch(p, w, warp);
    start_row_group(p, w, qs, wpipe, warp, lane);
  }
  for (;;) {
    cp_async_wait<AHEAD>(); /* this thread's Q copies (the first AHEAD tiles may still fly) */
    __syncthreads();
    uint32_t qf[8][4];
#pragma unroll
    for (int kk = 0; kk < 8; kk++) ldmatrix_x4(qf[kk], qs + swz(lane % 16, kk * 2 + lane / 16));
    const int64_t next = item + gridDim.x;
    RowGroup nw;
    if (next < groups) nw = row_group(p, next, warp);

    const int32_t *table = p.block_table + w.r * p.bt_stride;
    const int64_t grow = w.r * p.h + w.q0 + (row < w.nq ? row : 0);
    for (int j = 0; j < w.my_n; j++) {
      __syncwarp();
      const int ja = j + AHEAD;
      issue_tile(p, w, ja < w.my_n ? table[(warp + WARPS * ja) * TILE / p.bt] : 0, wpipe, warp, lane, ja);
      cp_async_wait<AHEAD>();
      __syncwarp();
      const uint16_t *ks = wpipe + (j % STAGES) * 2 * TILE_ELEMS;
      stream_tile<BF16>(qf, ks, ks + TILE_ELEMS, lane, (warp + WARPS * j) * TILE, w.ctx, p.scale_log2, o, m0, m1, l0, l1);
    }
    cp_async_wait<0>();
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    __syncthreads(); /* every warp is done with its stages and with the Q tile */
    if (next < groups) start_row_group(p, nw, qs, wpipe, warp, lane);

    /* Cross-warp merge through each warp's last stage. */
    store_warp_state((float *)(wpipe + (STAGES - 1) * 2 * TILE_ELEMS), mm, ml, warp, lane, o, m0, m1, l0, l1);
    __syncthreads();
    float M = -INFINITY;
#pragma unroll
    for (int v = 0; v < WARPS; v++) M = fmaxf(M, mm[v * 16 + row]);
    float wsum = 0.f, wt[WARPS];
#pragma unroll
    for (int v = 0; v < WARPS; v++) {
      wt[v] = mm[v * 16 + row] == -INFINITY ? 0.f : fast_exp2(mm[v * 16 + row] - M);
      wsum += wt[v] * ml[v * 16 + row];
    }
    const float inv = wsum > 0.f ? 1.f / wsum : 0.f;
    if (row < w.nq) {
      float4 o4[4];
#pragma unroll
      for (int i = 0; i < 4; i++) {
        float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
        for (int v = 0; v < WARPS; v++) {
          const float *vo = (const float *)(pipe + (v * STAGES + STAGES - 1) * 2 * TILE_ELEMS) + row * D + d0 + 4 * i;
          fma4(acc, wt[v], *(const float4 *)vo);
        }
        o4[i] = make_float4(acc.x * inv, acc.y * inv, acc.z * inv, acc.w * inv);
      }
      const float lse_nat = wsum > 0.f ? (M + log2f(wsum)) * LN2 : -INFINITY;
#pragma unroll
      for (int i = 0; i < 4; i++) *(float4 *)(p.out + grow * D + d0 + 4 * i) = o4[i];
      if (d0 == 0) p.lse[grow] = lse_nat;
    }
    if (next >= groups) return;
    __syncthreads(); /* the merge's reads are done before the next stream's third tile lands in a last stage */
    item = next;
    w = nw;
    reset_state(o, m0, m1, l0, l1);
    /* The next row group's partials as the warps' starting states: a
     * second one a warp through its last stage, which the merge above has
     * finished reading, so that both come in one round trip (waiting for
     * every copy in flight: the first two tiles, issued before the merge,
     * are due by then). */
    if (REMOTE) {
      const int64_t grow0 = w.r * p.h + w.q0;
      SeedStaged st;
      const bool two = warp + WARPS < p.nrem;
      if (two) seed_stage(p, grow0, w.nq, warp + WARPS, lane, last, st);
      if (warp < p.nrem) {
        SeedRaw s;
        seed_load(p, grow0, w.nq, warp, lane, s);
        seed_fold(p, s, w.nq, lane, o, m0, m1, l0, l1);
      }
      seed_rest<0>(p, w, two, st, last, warp, lane, o, m0, m1, l0, l1);
    }
  }
}

} /* namespace */

namespace ik_decode {

static void (*rows_kernel(bool bf16, bool remote))(DecodeParams, int64_t) {
  return bf16 ? (remote ? ma_decode_rows_kernel<true, true> : ma_decode_rows_kernel<true, false>)
              : (remote ? ma_decode_rows_kernel<false, true> : ma_decode_rows_kernel<false, false>);
}

cudaError_t rows_prepare(bool bf16, int *ctas_per_sm) {
  *ctas_per_sm = 0;
  for (int remote = 0; remote < 2; remote++) {
    void (*k)(DecodeParams, int64_t) = rows_kernel(bf16, remote);
    cudaError_t e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM_ROWS_BYTES);
    if (e != cudaSuccess) return e;
    int n = 0;
    e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, k, THREADS, SMEM_ROWS_BYTES);
    if (e != cudaSuccess) return e;
    if (remote == 0 || n < *ctas_per_sm) *ctas_per_sm = n;
  }
  return cudaSuccess;
}

void rows_launch(bool bf16, const DecodeParams &p, int64_t row_groups, int grid, cudaStream_t stream) {
  rows_kernel(bf16, p.nrem > 0)<<<grid, THREADS, SMEM_ROWS_BYTES, stream>>>(p, row_groups);
}

} /* namespace ik_decode */
