/*
** prefill.cu: causal prefill attention over paged rBlocks, flash-attention-2
** style, plus the kernel that appends the new tokens' K/V to the blocks.
**
** Two launches: (1) copy k_new/v_new into the pool at slots past_tokens ..
** past_tokens + new_tokens - 1 through the block table; (2) attention of
** each new query over keys 0 .. its own position, reading every key (past
** and new) from the pool, so chunked prefill over a cached prefix is the
** same code path.
**
** Attention: one CTA per (query tile, query head, request), 4 warps; a
** warp owns 16 or 32 query rows (one or two m16 tiles: see Tile below);
** K/V tiles double-buffered in shared memory with cp.async (each 16-key
** run found through the block table); S = Q K^T and O += P V on m16n8k16
** tensor-core tiles with fp32 accumulators; online softmax in base 2.
** Query tiles run heaviest first (causal imbalance).
** Output normalized, in fp32 or the input dtype; LSE in natural log.
**
** On compute capability 9.0 the attention launch goes to the wgmma kernels
** of prefill_sm90.cu and prefill_sm90_ws.cu instead (same parameters, same results within
** rounding); this file's kernel stays the sm_80 path.
*/
#include "mma_util.cuh"
#include "prefill.cuh"

namespace {

constexpr int D = 128;
constexpr int WARPS = 4;
constexpr int THREADS = WARPS * 32;
constexpr float LOG2E = 1.4426950408889634f;
constexpr float LN2 = 0.6931471805599453f;

using PrefillParams = ik_prefill_params;

/* Thread per 16-byte chunk of new K and V: [r][new][g][16 chunks]. */
__global__ void append_kv_kernel(PrefillParams p, int64_t chunks) {
  for (int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; c < chunks; c += (int64_t)gridDim.x * blockDim.x) {
    int ch = (int)(c % 16);
    int64_t t = c / 16;
    int kh = (int)(t % p.g);
    int64_t ri = t / p.g; /* r * new + i */
    int i = (int)(ri % p.new_tokens);
    int64_t r = ri / p.new_tokens;
    int64_t tok = (int64_t)p.past + i;
    int64_t blk = p.block_table[r * p.bt_stride + tok / p.bt];
    int64_t dst = ((blk * p.g + kh) * p.bt + tok % p.bt) * D + ch * 8;
    int64_t src = t * D + ch * 8;
    *(uint4 *)(p.k_pool + dst) = *(const uint4 *)(p.k_new + src);
    *(uint4 *)(p.v_pool + dst) = *(const uint4 *)(p.v_new + src);
  }
}

/* MT: 16-row m-tiles per warp (1: 64 queries per CTA, Q fragments kept in
 * registers; 2: 128 queries per CTA, every K/V fragment read from shared
 * memory feeds two MMAs, halving shared-memory traffic per FLOP, with Q
 * re-read from shared memory to stay within 255 registers). KT: keys per
 * shared-memory tile. */
template <bool BF16, int MT, int KT>
struct Tile {
  static constexpr int QT = WARPS * 16 * MT;
  static constexpr int KV_ELEMS = KT * D;
  static constexpr int SMEM = 2 * 2 * KV_ELEMS * 2 + QT * D * 2;
  static constexpr bool Q_IN_REGS = MT == 1;
};

template <bool BF16, int MT, int KT>
__global__ void __launch_bounds__(THREADS, 2) prefill_kernel(PrefillParams p) {
  using T = Tile<BF16, MT, KT>;
  constexpr int QT = T::QT, NT = KT / 8, KG = KT / 16;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  uint16_t *kv = (uint16_t *)smem_raw; /* [2 stages][K, V][KT][D] */
  uint16_t *qs = kv + 2 * 2 * T::KV_ELEMS;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int qt = gridDim.x - 1 - blockIdx.x;
  const int hh = blockIdx.y, kh = hh / p.group;
  const int64_t r = blockIdx.z;
  const int total = p.past + p.new_tokens;
  const int qbase = qt * QT; /* first query index (0-based among new tokens) */
  const int last_pos = min(p.past + qbase + QT - 1, total - 1);
  const int n_kt = last_pos / KT + 1;
  const int32_t *table = p.block_table + r * p.bt_stride;

  for (int c = threadIdx.x; c < QT * D / 8; c += THREADS) {
    int row = c >> 4, ch = c & 15;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (qbase + row < p.new_tokens)
      v = *(const uint4 *)(p.q + (((r * p.new_tokens + qbase + row) * p.h + hh) * D + ch * 8));
    *(uint4 *)(qs + swz(row, ch)) = v;
  }

  auto issue = [&](int kt) {
    uint16_t *ks = kv + (kt % 2) * 2 * T::KV_ELEMS;
    uint16_t *vs = ks + T::KV_ELEMS;
#pragma unroll
    for (int i = 0; i < KT * D / 8 / THREADS; i++) {
      int c = threadIdx.x + THREADS * i;
      int row = c >> 4, ch = c & 15;
      int key = kt * KT + row;
      bool ok = key < total;
      int64_t off = 0;
      if (ok) {
        /* The loader is on the issue-bound path: shifts, not divisions,
         * for the usual power-of-two block sizes. */
        int bi = p.bt_shift >= 0 ? key >> p.bt_shift : key / p.bt;
        int slot = p.bt_shift >= 0 ? key & (p.bt - 1) : key % p.bt;
        int64_t blk = table[bi];
        off = (blk * p.g + kh) * (int64_t)(p.bt * D) + slot * D + ch * 8;
      }
      cp_async16(ks + swz(row, ch), p.k_pool + off, ok);
      cp_async16(vs + swz(row, ch), p.v_pool + off, ok);
    }
    cp_async_commit();
  };
  issue(0);
  __syncthreads();
  const int wrow = warp * 16 * MT; /* first row of this warp in the CTA tile */
  uint32_t qf[T::Q_IN_REGS ? 8 : 1][4];
  if (T::Q_IN_REGS) {
#pragma unroll
    for (int kk = 0; kk < 8; kk++) ldmatrix_x4(qf[T::Q_IN_REGS ? kk : 0], qs + swz(wrow + lane % 16, kk * 2 + lane / 16));
  }

  float o[MT][16][4];
  float m[MT][2], l[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; mt++) {
#pragma unroll
    for (int i = 0; i < 16; i++) o[mt][i][0] = o[mt][i][1] = o[mt][i][2] = o[mt][i][3] = 0.f;
    m[mt][0] = m[mt][1] = -INFINITY;
    l[mt][0] = l[mt][1] = 0.f;
  }
  const int warp_first = min(p.past + qbase + wrow, total - 1);
  const int warp_last = min(p.past + qbase + wrow + 16 * MT - 1, total - 1);

  for (int kt = 0; kt < n_kt; kt++) {
    if (kt + 1 < n_kt) {
      issue(kt + 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const uint16_t *ks = kv + (kt % 2) * 2 * T::KV_ELEMS;
    const uint16_t *vs = ks + T::KV_ELEMS;
    if (kt * KT <= warp_last) { /* some key of the tile is visible to this warp */
      float s[MT][NT][4];
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++) s[mt][nt][0] = s[mt][nt][1] = s[mt][nt][2] = s[mt][nt][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < 8; kk++) {
        uint32_t qa[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
          if (T::Q_IN_REGS) {
#pragma unroll
            for (int x = 0; x < 4; x++) qa[mt][x] = qf[T::Q_IN_REGS ? kk : 0][x];
          } else {
            ldmatrix_x4(qa[mt], qs + swz(wrow + mt * 16 + lane % 16, kk * 2 + lane / 16));
          }
        }
#pragma unroll
        for (int kg = 0; kg < KG; kg++) {
          uint32_t b[4];
          ldmatrix_x4(b, ks + swz(kg * 16 + (lane % 8) + (lane / 16) * 8, kk * 2 + (lane / 8) % 2));
#pragma unroll
          for (int mt = 0; mt < MT; mt++) {
            mma16816<BF16>(s[mt][2 * kg], qa[mt], b[0], b[1]);
            mma16816<BF16>(s[mt][2 * kg + 1], qa[mt], b[2], b[3]);
          }
        }
      }
      const bool need_mask = kt * KT + KT - 1 > warp_first;
      uint32_t pf[MT][KG][4];
#pragma unroll
      for (int mt = 0; mt < MT; mt++) {
        /* Last key each of this thread's two rows may see (recomputed here
         * rather than kept: the 32-row variant has no registers to spare). */
        const int pos0 = min(p.past + qbase + wrow + mt * 16 + lane / 4, total - 1);
        const int pos1 = min(pos0 + 8, total - 1);
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
#pragma unroll
          for (int e = 0; e < 2; e++) {
            int key = kt * KT + nt * 8 + 2 * (lane % 4) + e;
            s[mt][nt][e] = (!need_mask || key <= pos0) ? s[mt][nt][e] * p.scale_log2 : -INFINITY;
            s[mt][nt][e + 2] = (!need_mask || key <= pos1) ? s[mt][nt][e + 2] * p.scale_log2 : -INFINITY;
            mx0 = fmaxf(mx0, s[mt][nt][e]);
            mx1 = fmaxf(mx1, s[mt][nt][e + 2]);
          }
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        /* Key 0 is visible to every row, so after tile 0 each m is finite and
         * a fully masked row in a later tile keeps its m (exp2(-inf) = 0). */
        const float mn0 = fmaxf(m[mt][0], mx0), mn1 = fmaxf(m[mt][1], mx1);
        const float a0 = fast_exp2(m[mt][0] - mn0), a1 = fast_exp2(m[mt][1] - mn1);
        m[mt][0] = mn0;
        m[mt][1] = mn1;
        float ps0 = 0.f, ps1 = 0.f;
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
#pragma unroll
          for (int e = 0; e < 2; e++) {
            s[mt][nt][e] = fast_exp2(s[mt][nt][e] - mn0);
            s[mt][nt][e + 2] = fast_exp2(s[mt][nt][e + 2] - mn1);
            ps0 += s[mt][nt][e];
            ps1 += s[mt][nt][e + 2];
          }
        }
        l[mt][0] = l[mt][0] * a0 + ps0;
        l[mt][1] = l[mt][1] * a1 + ps1;
#pragma unroll
        for (int i = 0; i < 16; i++) {
          o[mt][i][0] *= a0;
          o[mt][i][1] *= a0;
          o[mt][i][2] *= a1;
          o[mt][i][3] *= a1;
        }
#pragma unroll
        for (int kg = 0; kg < KG; kg++) {
          pf[mt][kg][0] = pack2<BF16>(s[mt][2 * kg][0], s[mt][2 * kg][1]);
          pf[mt][kg][1] = pack2<BF16>(s[mt][2 * kg][2], s[mt][2 * kg][3]);
          pf[mt][kg][2] = pack2<BF16>(s[mt][2 * kg + 1][0], s[mt][2 * kg + 1][1]);
          pf[mt][kg][3] = pack2<BF16>(s[mt][2 * kg + 1][2], s[mt][2 * kg + 1][3]);
        }
      }
#pragma unroll
      for (int kg = 0; kg < KG; kg++) {
#pragma unroll
        for (int dp = 0; dp < 8; dp++) {
          uint32_t b[4];
          ldmatrix_x4_trans(b, vs + swz(kg * 16 + (lane % 8) + ((lane / 8) % 2) * 8, dp * 2 + lane / 16));
#pragma unroll
          for (int mt = 0; mt < MT; mt++) {
            mma16816<BF16>(o[mt][2 * dp], pf[mt][kg], b[0], b[1]);
            mma16816<BF16>(o[mt][2 * dp + 1], pf[mt][kg], b[2], b[3]);
          }
        }
      }
    }
    __syncthreads(); /* the stage is refilled by the next iteration's issue */
  }
  const int cl = 2 * (lane % 4);
#pragma unroll
  for (int mt = 0; mt < MT; mt++) {
#pragma unroll
    for (int half = 0; half < 2; half++) {
      float lsum = l[mt][half];
      lsum += __shfl_xor_sync(0xffffffffu, lsum, 1);
      lsum += __shfl_xor_sync(0xffffffffu, lsum, 2);
      const int i = qbase + wrow + mt * 16 + lane / 4 + 8 * half;
      if (i >= p.new_tokens) continue;
      const float inv = 1.f / lsum;
      const int64_t row = (r * p.new_tokens + i) * p.h + hh;
#pragma unroll
      for (int nt = 0; nt < 16; nt++) {
        float x0 = o[mt][nt][2 * half] * inv, x1 = o[mt][nt][2 * half + 1] * inv;
        int64_t at = row * D + nt * 8 + cl;
        if (p.out_f32)
          *(float2 *)((float *)p.out + at) = make_float2(x0, x1);
        else
          *(uint32_t *)((uint16_t *)p.out + at) = pack2<BF16>(x0, x1);
      }
      if (p.lse && lane % 4 == 0) p.lse[row] = (m[mt][half] + log2f(lsum)) * LN2;
    }
  }
}

template <bool BF16, int MT, int KT>
infsim_status launch_attn(ik_cuda *c, const PrefillParams &p, int reqs, int slot, infsim_error *err) {
  using T = Tile<BF16, MT, KT>;
  auto kern = prefill_kernel<BF16, MT, KT>;
  if (!(c->prefill_ready[BF16 ? 1 : 0] & (1 << slot))) {
    IK_CUDA(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, T::SMEM));
    c->prefill_ready[BF16 ? 1 : 0] |= 1 << slot;
  }
  dim3 grid((unsigned)((p.new_tokens + T::QT - 1) / T::QT), (unsigned)p.h, (unsigned)reqs);
  kern<<<grid, THREADS, T::SMEM, c->stream>>>(p);
  IK_LAUNCHED();
  return INFSIM_OK;
}

template <bool BF16>
infsim_status launch(ik_cuda *c, const infsim_prefill_args *a, infsim_error *err) {
  if (a->num_requests > 65535 || a->num_q_heads > 65535)
    return infsim_fail(err, INFSIM_EINPUT, "kernels: prefill: more than 65535 requests or heads");
  PrefillParams p;
  p.q = (const uint16_t *)a->q;
  p.k_new = (const uint16_t *)a->k_new;
  p.v_new = (const uint16_t *)a->v_new;
  p.k_pool = (uint16_t *)a->k_pool;
  p.v_pool = (uint16_t *)a->v_pool;
  p.block_table = a->block_table;
  p.out = a->out;
  p.lse = a->lse;
  p.bt_stride = a->block_table_stride;
  p.h = a->num_q_heads;
  p.g = a->num_kv_heads;
  p.group = p.h / p.g;
  p.bt = a->block_tokens;
  p.bt_shift = -1;
  for (int sh = 4; sh < 31; sh++)
    if (p.bt == 1 << sh) p.bt_shift = sh;
  p.new_tokens = a->new_tokens;
  p.past = a->past_tokens;
  p.out_f32 = a->out_dtype == INFSIM_KDTYPE_F32;
  p.scale_log2 = a->softmax_scale * LOG2E;
  auto append = [&]() -> infsim_status {
    const int64_t chunks = (int64_t)a->num_requests * a->new_tokens * p.g * 16;
    int64_t blocks = (chunks + 255) / 256;
    if (blocks > (int64_t)c->sm_count * 16) blocks = (int64_t)c->sm_count * 16;
    append_kv_kernel<<<(unsigned)blocks, 256, 0, c->stream>>>(p, chunks);
    IK_LAUNCHED();
    return INFSIM_OK;
  };
  /* Auto: on compute capability 9.0 the wgmma kernel (128 x 128), which won
   * at every measured shape, 1K to 16K tokens on 8 to 64 heads, even where
   * its CTAs fill under half the SMs (bench/README.md, kernels/NOTES.md),
   * with version 18 (pipelines 10-15, ik_sm90_auto_pipeline picks one;
   * versions 16 and 17, pipelines 6-9, have the same loads and version 15,
   * pipelines 4 and 5, loads K/V by cp.async).
   * Elsewhere 128 queries x 64 keys once there are enough 128-query tiles
   * to fill the SMs twice over, else 64 x 64 (fewer, fatter CTAs leave SMs
   * idle on short prompts). 128 x 128 asked for on another device runs
   * 128 x 64. The wgmma kernel folds the scale into its exponents assuming
   * it is positive (as 1/sqrt(d) is); any other scale takes the sm_80 one. */
  const bool hopper = c->cc_major == 9 && c->cc_minor == 0 && a->softmax_scale > 0.f;
  int rows = a->q_tile_rows, keys = a->k_tile_tokens;
  const int64_t ctas128 = (int64_t)((a->new_tokens + 127) / 128) * p.h * a->num_requests;
  if (rows == 0 && keys == 0 && hopper) rows = keys = 128;
  if (rows == 0) rows = ctas128 >= 2 * (int64_t)c->sm_count ? 128 : 64;
  if (rows == 128 && keys == 128) {
    if (hopper) {
      /* Version 18 (kernels/NOTES.md 18): version 16's loads (K/V by
       * bulk tensor copies from four producer warps) with version 17's
       * turns and fewer consumer instructions per key tile (1.02-1.23x
       * version 17 at every measured shape); which grid and whether the
       * append is folded in: ik_sm90_auto_pipeline. Pipelines 13, 14 and
       * 15 (10, 11 and 12 with the append folded in) append the new K/V
       * themselves, reading them from k_new / v_new and the cached
       * prefix from the pool a 16-key run at a time; after a prefix whose
       * length is not a multiple of 16 (a run holding keys of both kinds)
       * they are 10, 11 and 12 after the append kernel. */
      int pl = a->sm90_pipeline ? a->sm90_pipeline
                                : ik_sm90_auto_pipeline(a->past_tokens, a->new_tokens, a->num_q_heads,
                                                        a->num_kv_heads);
      if (pl >= 13 && !ik_sm90_can_fold(a->past_tokens)) pl -= 3;
      if (pl < 13) {
        const infsim_status st = append();
        if (st != INFSIM_OK) return st;
      }
      return ik_prefill_sm90(c, p, BF16, a->num_requests, pl, err);
    }
    keys = 64;
  }
  const infsim_status st = append();
  if (st != INFSIM_OK) return st;
  if (keys == 0) keys = 64;
  if (rows == 128 && keys == 64) return launch_attn<BF16, 2, 64>(c, p, a->num_requests, 2, err);
  if (rows == 128) return launch_attn<BF16, 2, 32>(c, p, a->num_requests, 1, err);
  return launch_attn<BF16, 1, 64>(c, p, a->num_requests, 0, err);
}

} /* namespace */

extern "C" infsim_status ik_cuda_prefill(void *self, const infsim_prefill_args *a, infsim_error *err) {
  ik_cuda *c = (ik_cuda *)self;
  return a->dtype == INFSIM_KDTYPE_BF16 ? launch<true>(c, a, err) : launch<false>(c, a, err);
}
