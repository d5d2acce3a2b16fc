/*
** ma_decode.cu: micro-attention for decode over paged rBlocks (split-KV,
** flash-decoding style, with the split merge inside the same launch).
**
** Work split: one CTA per (request, KV head, group of <= 16 query heads of
** that KV head, split). The CTA's token range is split `split` of the
** request's context cut into num_splits tile-aligned chunks; its 4 warps
** take the range's 16-token tiles round-robin, each warp with its own
** 3-stage cp.async pipeline (K and V tiles of 4 KiB each), so no CTA-wide
** barrier sits in the streaming loop. A 16-token tile never straddles an
** rBlock because block_tokens % 16 == 0; the tile is one contiguous 4 KiB
** run of the pool ([block][kv head][slot][d] layout). A decode of one
** split runs ma_decode_rows.cu's persistent grid instead where
** decode_grid says so (auto: contexts up to 2K tokens or row groups that
** fit one wave, with up to 8 remote partials).
**
** Arithmetic: the query heads of a GQA group share every K/V byte, so the
** group's queries form the 16 rows of an m16n8k16 tensor-core tile (rows
** past the group are zero): S = Q K^T and O += P V with fp32 accumulators,
** online softmax in base 2 (scale * log2 e folded into the scores).
** FLOP per KV byte is tiny next to the tensor cores, so the kernel is
** bound by how many bytes it keeps in flight.
**
** Merge: warps merge through shared memory at the end; with num_splits > 1
** each CTA writes its (normalized output, LSE) partial to a workspace and
** bumps a per-(request, head group) counter; the CTA that arrives last
** merges all splits (weights exp(lse_j - max), empty splits neutral) and
** resets the counter to 0 for the next launch. By default that merge keeps
** its weights in registers and loads every LSE and output it needs first
** in one round trip (merge_splits_regs), with one thread fencing around
** the counter; the earlier merge (weights through shared memory) stays
** selectable (infsim_ma_decode_args.split_merge).
**
** Remote partials (DistAttention's owner merging what the holders of the
** rest of a request's KV sent, fp32 or fp16 outputs): no launch of their
** own. With splits, the last CTA's split merge takes them as extra entries
** beside the local splits (one weight pass, one accumulation pass); with
** split_merge 4 or 5 the split CTAs take a share each instead, so that
** the last CTA merges local splits only. With one split, each CTA takes
** them into its result before the single store: split_merge 4 makes them
** its warps' starting states (loaded with the Q tile, the cross-warp merge
** weighs them with the tiles: nothing follows the stream); 5 prefetches
** them into L2 two tiles before the end of its KV stream, loads the first
** ones (and every LSE of the first 8) into registers after it and folds
** them into its cross-warp merge as further terms; 1-3 prefetch them there
** and fold them in after that merge. Auto takes 4 where it measured
** faster (ik_decode_auto_merge). With split_merge 6 and splits,
** a CTA of their own (blockIdx.y 0, no KV) merges them into one more
** entry of the split workspace while the local splits stream, so the
** last CTA merges its splits plus that entry with the code it runs
** without partials. An empty partial (LSE -inf)
** weighs 0 and is never added, so whatever bytes it holds cannot reach
** the output.
*/
#include "ma_decode.cuh"

using namespace ik_decode;

namespace {

/* End-of-CTA merge reuses the pipeline area: per warp O[16][D] + m[16] + l[16] floats. */
constexpr int SMEM_MERGE_BYTES = WARPS * (16 * D + 32) * 4;
static_assert(SMEM_MERGE_BYTES <= SMEM_PIPE_BYTES, "merge area must fit in the pipeline area");
constexpr int MAX_REMOTE = INFSIM_KERNEL_MAX_REMOTE;
/* Pipeline, Q tile, the last-CTA flag (16 bytes). */
constexpr int SMEM_BYTES = SMEM_PIPE_BYTES + SMEM_Q_BYTES + 16;
/* Split merge: weights [16][splits + remote] + 32 floats + split-group sums. */
constexpr int MAX_SPLITS = STAGES >= 3 ? 1024 : 512;
static_assert((16 * (MAX_SPLITS + MAX_REMOTE) + 32 + 4 * 2 * D) * 4 <= SMEM_PIPE_BYTES + SMEM_Q_BYTES,
              "split merge must fit in shared memory");
constexpr int SPLIT_MERGES = 6;
/* Auto split choice (see launch): each split keeps >= 2 tiles per warp. */
constexpr int MIN_SPLIT_TILES = 2 * WARPS;

/* acc[i] += w_j * (chunk i of partial j) over n partials j (local splits
 * or remote partials) whose rows are spread over P adjacent lanes, lane u
 * holding the weight of partial u of each slice of P: the first `held`
 * partials already in registers (val(e, i): chunk i of the e-th; only the
 * partials that exist; held is B or, with HELD = 2, 2B), each later batch
 * of B loaded by load(j0) with the index clamped to n - 1 (a copy's
 * weight, on a lane past n, is 0), a new slice's weights from weight_at(j)
 * (j = slice start + u; 0 past n) every P partials. HELD * B divides P.
 * Uniform over the warp: every lane runs the shuffles, whether its row
 * exists or not (held is uniform). Returns this lane's sum of the weights
 * it held (the row's sum is over its P lanes). */
template <int P, int B, int NC, int HELD, typename Load, typename Val, typename WeightAt>
__device__ __forceinline__ float fold_partials(int n, int held, float w, float4 (&acc)[NC], Load load, Val val,
                                               WeightAt weight_at) {
  static_assert(P % (HELD * B) == 0, "the batches in registers must lie within one slice of weights");
  const int u = threadIdx.x % P;
  float wsum = w;
#pragma unroll
  for (int e = 0; e < HELD * B; e++) {
    if (e >= held) break;
    const float we = __shfl_sync(0xffffffffu, w, e, P);
    if (we != 0.f && e < n)
#pragma unroll
      for (int i = 0; i < NC; i++) fma4(acc[i], we, val(e, i));
  }
  for (int j0 = held; j0 < n; j0 += B) {
    load(j0);
    if (j0 % P == 0) {
      w = weight_at(j0 + u);
      wsum += w;
    }
#pragma unroll
    for (int e = 0; e < B; e++) {
      const float we = __shfl_sync(0xffffffffu, w, j0 % P + e, P);
      if (we != 0.f)
#pragma unroll
        for (int i = 0; i < NC; i++) fma4(acc[i], we, val(e, i));
    }
  }
  return wsum;
}

/* The one-split fold's registers (split_merge 4): 16 dims (one thread's
 * share of its row in the cross-warp merge) of up to 8 remote partials,
 * raw: fp32, partial e in v[e]; fp16, two partials a uint4 (e in
 * v[e / 2], .x .y for even e, .z .w for odd), so the first 8 fp16 or 4
 * fp32 partials take v[0 .. 3] (64 registers) and the fp32 ones 4-7 the
 * rest. Loads partials j = j0 + e, e0 <= e < e1, from base + j * stride
 * (row and dims of partial 0 at base): those with j < n, or with CLAMP
 * all of them, j clamped to n - 1 (a copy weighs 0, fold_partials). */
template <bool F16, bool CLAMP>
__device__ __forceinline__ void load_rem16(uint4 (&v)[8][4], const char *base, int64_t stride, int j0, int e0, int e1,
                                           int n) {
#pragma unroll
  for (int e = 0; e < 8; e++)
    if (e >= e0 && e < e1 && (CLAMP || j0 + e < n)) {
      const char *a = base + (int64_t)(CLAMP ? min(j0 + e, n - 1) : j0 + e) * stride;
#pragma unroll
      for (int i = 0; i < 4; i++) {
        if (!F16) {
          v[e][i] = __ldg((const uint4 *)a + i);
        } else {
          const uint2 h = __ldg((const uint2 *)a + i);
          if (e % 2 == 0) v[e / 2][i].x = h.x, v[e / 2][i].y = h.y;
          else v[e / 2][i].z = h.x, v[e / 2][i].w = h.y;
        }
      }
    }
}

/* Chunk i (4 dims) of partial e of load_rem16's registers, as floats. */
template <bool F16>
__device__ __forceinline__ float4 rem16_chunk(const uint4 (&v)[8][4], int e, int i) {
  if (!F16) return raw_to_float4<false>(v[e][i]);
  const uint4 &x = v[e / 2][i];
  return raw_to_float4<true>(e % 2 ? make_uint4(x.z, x.w, 0u, 0u) : x);
}

/* The remote partials one CTA folds into its own merge (split_merge 4
 * and 5): split s of S takes partials s, s + S, .. (all of them with one
 * split), n in all; base and lse address this thread's row (and, base, its
 * dims) of the first, stride and lse_stride step to the next. */
struct RemoteSet {
  const char *base;
  const float *lse;
  int64_t stride, lse_stride;
  int n;
};

/* The fold of split_merge 4 and 5: res[16] (this thread's dims of its
 * row: the warps' weighted sums, not yet divided) += the set's partials'
 * outputs weighted 2^(lse2 - M), the first 8 from v (loaded before the
 * cross-warp merge), any others 8 at a time; lane u (of the row's 8)
 * holds lse2, the base-2 LSE of partial u. Returns this lane's share of
 * the weights (the row's sum is over its 8 lanes). */
template <bool F16>
__device__ __forceinline__ float fold_remote_set(const RemoteSet &rs, uint4 (&v)[8][4], float (&res)[16], float lse2,
                                                 float M, bool act) {
  const int R = rs.n;
  auto weight = [&](float l2) { return l2 == -INFINITY ? 0.f : fast_exp2(l2 - M); };
  float4 acc[4];
#pragma unroll
  for (int i = 0; i < 4; i++) acc[i] = make_float4(res[4 * i], res[4 * i + 1], res[4 * i + 2], res[4 * i + 3]);
  const float ws = fold_partials<8, 8, 4, 1>(
      R, 8, weight(lse2), acc,
      [&](int j0) { load_rem16<F16, true>(v, rs.base, rs.stride, j0, 0, 8, R); },
      [&](int e, int i) { return rem16_chunk<F16>(v, e, i); },
      [&](int j) { return weight(act && j < R ? __ldcg(rs.lse + j * rs.lse_stride) * LOG2E : -INFINITY); });
#pragma unroll
  for (int i = 0; i < 4; i++) {
    res[4 * i] = acc[i].x;
    res[4 * i + 1] = acc[i].y;
    res[4 * i + 2] = acc[i].z;
    res[4 * i + 3] = acc[i].w;
  }
  return ws;
}

/* The last CTA's merge of its row group's S splits and R remote partials
 * with the weights in registers (split_merge 2 and 3). P = 32 / NC adjacent
 * lanes of one warp own a row, NC float4 chunks each (chunks u, u + P, ..),
 * and lane u of a row holds the LSE, then the weight, of local split u (and
 * of remote partial u): partials past the first P come in further slices of
 * P. A weight reaches the row's other lanes by shuffle, so no shared memory
 * and no barrier sit between the weights and the weighted sums, and the
 * first slice's LSEs and first batch of outputs (16 float4 a thread, local
 * and remote) are all loaded before any is used: at the shapes whose merge
 * is a fixed cost (batch 1-8: 4-33 splits, 1-8 remote partials) the whole
 * merge waits on one L2 round trip, where the earlier path (split_merge 1)
 * waited on one per row of the weight pass, a barrier, then one for the
 * sums, behind integer divisions for its thread layout. Needs P <= 32,
 * i.e. rows of >= 3 query heads; smaller groups take the earlier path. */
template <int NC, bool F16, bool LOCAL>
__device__ __forceinline__ void merge_splits_regs(const DecodeParams &p, int64_t grow0, int nq, int S) {
  constexpr int P = 32 / NC; /* lanes per row */
  constexpr int B = 16 / NC; /* partials per batch of loads (16 float4 a thread) */
  const int mrow = threadIdx.x / P, u = threadIdx.x % P;
  const bool act = mrow < nq; /* rows past the group shuffle along and store nothing */
  const int64_t grow = grow0 + (act ? mrow : 0);
  const int R = LOCAL ? 0 : p.nrem; /* uniform: every loop holding a shuffle runs alike in all lanes */
  const float *lse_l = p.ws_lse + grow * S;
  const float4 *val_l = (const float4 *)(p.ws_out + grow * S * D) + u; /* + j * D / 4 + i * P */
  const float *lse_r = p.rem_lse + grow;                              /* + j * rows */
  constexpr int ESZ = F16 ? 2 : 4;
  const char *out_r = (const char *)p.rem_out + (grow * D + 4 * u) * ESZ; /* + j * rows * D + i * P * 4 elements */
  const int64_t rstride = p.rows * D * ESZ;
  /* The LSEs first, so that the weights wait least; then the first batch
   * of outputs, only the partials that exist (the predicates are uniform).
   * Loading the first batch with the index clamped to the last partial
   * instead (no predicate; the copies weigh 0) cost 0.15-0.2 us at batch
   * 1-8 (H200): 16 float4 loads a thread whatever the count, and the
   * duplicates queue in the load unit ahead of the ones that matter. An
   * empty remote partial's bytes (NaN, say) are loaded but weigh 0 and are
   * not added. */
  float ll = -INFINITY, lr = -INFINITY;
  if (act && u < S) ll = __ldcg(lse_l + u);
  if (act && u < R) lr = __ldcg(lse_r + (int64_t)u * p.rows);
  float4 vl[B][NC];
#pragma unroll
  for (int e = 0; e < B; e++)
    if (e < S)
#pragma unroll
      for (int i = 0; i < NC; i++) vl[e][i] = __ldcg(val_l + e * (D / 4) + i * P);
  /* The first batch of remote partials. In a merge of local entries only
   * (LOCAL: split merges 4-6, whose partials are folded or merged before),
   * the local entries' second batch in the same registers, so that up to
   * 2B entries (9-16 at 5-8 query heads a row: split merge 6's ninth entry
   * after 8 splits at 1K tokens) wait on the same round trip as the first
   * B. Only there: with 9-16 heads a row (NC = 4) split merge 6's build
   * spills (255 registers, 32 bytes), 3-4 heads (NC = 1) hold 16 already,
   * and in split merge 3 (the decode without partials) the code it adds
   * to the last CTA's merge, whose instruction fetch bounds it at batch 1
   * (kernels/NOTES.md), cost more than the round trip it saves: 0.42 us
   * at b=1/1K on an H100. */
  uint4 vr[B][NC];
  constexpr bool TWO = LOCAL && NC == 2;
  const int held = TWO && S > B ? 2 * B : B; /* local entries in registers (TWO: R is 0) */
#pragma unroll
  for (int e = 0; e < B; e++)
    if (e < R)
#pragma unroll
      for (int i = 0; i < NC; i++) vr[e][i] = load_remote_at<F16>(out_r, rstride, e, i * P * 4 * ESZ);
    else if (TWO && B + e < min(S, held))
#pragma unroll
      for (int i = 0; i < NC; i++) {
        const float4 x = __ldcg(val_l + (B + e) * (D / 4) + i * P);
        vr[e][i] = make_uint4(__float_as_uint(x.x), __float_as_uint(x.y), __float_as_uint(x.z), __float_as_uint(x.w));
      }
  /* Max over every LSE of the row: the first slice's are in registers. */
  float m = fmaxf(ll, lr);
  if (act) {
    for (int j = P + u; j < S; j += P) m = fmaxf(m, __ldcg(lse_l + j));
    for (int j = P + u; j < R; j += P) m = fmaxf(m, __ldcg(lse_r + (int64_t)j * p.rows));
  }
#pragma unroll
  for (int off = P / 2; off; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
  /* m is finite whenever some l is; an empty partial weighs 0. */
  auto weight = [&](float l) { return l == -INFINITY ? 0.f : __expf(l - m); };
  float4 acc[NC];
#pragma unroll
  for (int i = 0; i < NC; i++) acc[i] = make_float4(0.f, 0.f, 0.f, 0.f);
  /* Local splits, then remote partials: each kind's first batch from
   * registers, later ones as fold_partials loads them. */
  float wsum = fold_partials<P, B, NC, TWO ? 2 : 1>(
      S, held, weight(ll), acc,
      [&](int j0) {
#pragma unroll
        for (int e = 0; e < B; e++)
#pragma unroll
          for (int i = 0; i < NC; i++) vl[e][i] = __ldcg(val_l + min(j0 + e, S - 1) * (D / 4) + i * P);
      },
      [&](int e, int i) {
        if (e < B) return vl[e][i];
        const uint4 x = vr[e - B][i];
        return make_float4(__uint_as_float(x.x), __uint_as_float(x.y), __uint_as_float(x.z), __uint_as_float(x.w));
      },
      [&](int j) { return weight(act && j < S ? __ldcg(lse_l + j) : -INFINITY); });
  if (R > 0)
    wsum += fold_partials<P, B, NC, 1>(
        R, B, weight(lr), acc,
        [&](int j0) {
#pragma unroll
          for (int e = 0; e < B; e++)
#pragma unroll
            for (int i = 0; i < NC; i++)
              vr[e][i] = load_remote_at<F16>(out_r, rstride, min(j0 + e, R - 1), i * P * 4 * ESZ);
        },
        [&](int e, int i) { return raw_to_float4<F16>(vr[e][i]); },
        [&](int j) { return weight(act && j < R ? __ldcg(lse_r + (int64_t)j * p.rows) : -INFINITY); });
#pragma unroll
  for (int off = P / 2; off; off >>= 1) wsum += __shfl_xor_sync(0xffffffffu, wsum, off);
  if (act) {
    const float inv = wsum > 0.f ? 1.f / wsum : 0.f;
#pragma unroll
    for (int i = 0; i < NC; i++)
      *(float4 *)(p.out + grow * D + 4 * (u + i * P)) =
          make_float4(acc[i].x * inv, acc[i].y * inv, acc[i].z * inv, acc[i].w * inv);
    if (u == 0) p.lse[grow] = wsum > 0.f ? m + __logf(wsum) : -INFINITY;
  }
}

/* The last CTA of row group cta_row: merge_splits_regs of `ents` entries
 * a row (nq > 2 query heads, its float4 chunks a lane by the group's
 * size; LOCAL: no remote partial among them), then the group's arrival
 * counter back to 0 for the next launch. */
template <bool LOCAL>
__device__ __forceinline__ void merge_entries_regs(const DecodeParams &p, int64_t grow0, int nq, int ents,
                                                   int64_t cta_row) {
  if (nq > 8) {
    if (!LOCAL && p.rem_f16) merge_splits_regs<4, true, false>(p, grow0, nq, ents);
    else merge_splits_regs<4, false, LOCAL>(p, grow0, nq, ents);
  } else if (nq > 4) {
    if (!LOCAL && p.rem_f16) merge_splits_regs<2, true, false>(p, grow0, nq, ents);
    else merge_splits_regs<2, false, LOCAL>(p, grow0, nq, ents);
  } else {
    if (!LOCAL && p.rem_f16) merge_splits_regs<1, true, false>(p, grow0, nq, ents);
    else merge_splits_regs<1, false, LOCAL>(p, grow0, nq, ents);
  }
  if (threadIdx.x == 0) p.counters[cta_row] = 0u;
}

/* Split merge 6's remote CTA: merges the remote partials of its row group
 * (rows grow0 .. grow0 + nq - 1) into one entry of the split workspace,
 * entry p.splits, after the local splits' (normalized output, natural-log
 * LSE), so that the last CTA merges p.splits + 1 entries and no remote
 * partial, with the code it runs without partials. It runs beside the
 * local splits' KV streams, so its loads and its code's instruction fetch
 * (what the remote branch of the last CTA's merge costs at batch 1,
 * kernels/NOTES.md) stay off the launch's critical path. Thread t: row
 * t / 8, dims (t % 8) * 16 .. +16; four partials a round trip (add_remote).
 * Empty partials weigh 0 and are not added; all empty: LSE -inf. */
template <bool F16>
__device__ __forceinline__ void merge_remote_entry(const DecodeParams &p, int64_t grow0, int nq) {
  const int row = threadIdx.x / 8, d0 = (threadIdx.x % 8) * 16;
  if (row >= nq) return;
  const int64_t grow = grow0 + row;
  const float *lse = p.rem_lse + grow;
  float m = -INFINITY;
  for (int j = 0; j < p.nrem; j++) m = fmaxf(m, __ldcg(lse + (int64_t)j * p.rows));
  float4 acc[4];
#pragma unroll
  for (int i = 0; i < 4; i++) acc[i] = make_float4(0.f, 0.f, 0.f, 0.f);
  float sum = 0.f;
  if (m != -INFINITY)
    sum = add_remote<F16>(p, grow, 0, 1, d0, 4, 4, acc, [&](int j) {
      const float l = __ldcg(lse + (int64_t)j * p.rows);
      return l == -INFINITY ? 0.f : __expf(l - m);
    });
  const float inv = sum > 0.f ? 1.f / sum : 0.f;
  float *dst = p.ws_out + (grow * (p.splits + 1) + p.splits) * D + d0;
#pragma unroll
  for (int i = 0; i < 4; i++)
    *(float4 *)(dst + 4 * i) = make_float4(acc[i].x * inv, acc[i].y * inv, acc[i].z * inv, acc[i].w * inv);
  if (d0 == 0) p.ws_lse[grow * (p.splits + 1) + p.splits] = sum > 0.f ? m + __logf(sum) : -INFINITY;
}

/* Split merge 3 and later: this CTA's entry is stored; count it in and
 * tell whether it came last of the row group's `ents` (then it merges
 * them). One thread fences around the counter (the pattern of a grid-wide barrier):
 * the barrier orders the CTA's entry stores before thread 0's release, and
 * thread 0's acquire before the other threads' loads of the entries. */
__device__ __forceinline__ bool arrive_last(const DecodeParams &p, int64_t cta_row, int *flag, int ents) {
  __syncthreads();
  if (threadIdx.x == 0) {
    asm volatile("fence.acq_rel.gpu;" ::: "memory");
    const unsigned prev = atomicAdd(&p.counters[cta_row], 1u);
    const int last = prev == (unsigned)(ents - 1);
    if (last) asm volatile("fence.acq_rel.gpu;" ::: "memory");
    *flag = last;
  }
  __syncthreads();
  return *flag != 0;
}

/* MERGE: infsim_ma_decode_args.split_merge (1-6), a template argument so
 * that each path is its own kernel (the registers one path needs do not
 * constrain the others) and all six can be timed side by side in one
 * build. 1-3: the last CTA's split merge; a launch with one split runs
 * MERGE = 1, whose split merge it never reaches, and folds the remote
 * partials in after its cross-warp merge. 4 and 5 (launched with remote
 * partials only, else 3's kernels run): each CTA takes its share of the
 * remote partials (all of them with one split; split s of S partials s, s +
 * S, .. with several, so that the last CTA merges local splits only) into
 * its own partial; 4 as its warps' starting states (seed_remote), the
 * first loaded with the Q tile, 5 folded into its cross-warp merge (fold
 * below), prefetched into L2 two tiles before the end of the stream and
 * loaded into registers after it, so that no register of theirs is live
 * across the streaming loop. 6 (launched with remote
 * partials and splits only): one more CTA a row group, blockIdx.y 0,
 * merges the remote partials into workspace entry `splits`
 * (merge_remote_entry); the local splits (blockIdx.y - 1) run as without
 * partials, and the last CTA to arrive, whichever, merges splits + 1
 * entries. */
template <bool BF16, int MERGE>
__global__ void __launch_bounds__(THREADS, CTAS_PER_SM) ma_decode_kernel(DecodeParams p) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  uint16_t *pipe = (uint16_t *)smem_raw;
  uint16_t *qs = (uint16_t *)(smem_raw + SMEM_PIPE_BYTES);
  int *flag = (int *)(smem_raw + SMEM_PIPE_BYTES + SMEM_Q_BYTES);

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t cta_row = blockIdx.x; /* (request, kv head, head group) */
  const int qgi = (int)(cta_row % p.qgroups);
  const int kh = (int)((cta_row / p.qgroups) % p.g);
  const int64_t r = cta_row / ((int64_t)p.qgroups * p.g);
  constexpr bool OWN = MERGE == 6; /* the remote partials' own CTA, y = 0 */
  const int ents = OWN ? p.splits + 1 : p.splits; /* workspace entries a row */
  const int split = OWN ? (int)blockIdx.y - 1 : (int)blockIdx.y;
  const int q0 = kh * p.group + qgi * 16; /* first query head of this CTA */
  const int nq = min(16, p.group - qgi * 16);
  if (OWN) {
    if (split < 0) {
      if (p.rem_f16) merge_remote_entry<true>(p, r * p.h + q0, nq);
      else merge_remote_entry<false>(p, r * p.h + q0, nq);
      if (!arrive_last(p, cta_row, flag, ents)) return;
      p.nrem = 0;
      merge_entries_regs<true>(p, r * p.h + q0, nq, ents, cta_row);
      return;
    }
    p.nrem = 0; /* the local splits run as without partials */
  }

  const int ctx = p.context_tokens[r];
  const int ntiles_req = (ctx + TILE - 1) / TILE;
  const int tiles_per_split = (ntiles_req + p.splits - 1) / p.splits;
  const int tile_begin = split * tiles_per_split;
  const int tile_end = min(ntiles_req, tile_begin + tiles_per_split);
  const int tok_end = min(ctx, tile_end * TILE);

  const int64_t grow0 = r * p.h + q0;
  /* 4 and 5: split s of S takes remote partials s, s + S, .., nset of
   * them (uniform over the CTA), into its own partial. */
  constexpr bool OWN_SET = MERGE == 4 || MERGE == 5;
  const int nset = OWN_SET && split < p.nrem ? (p.nrem - split + p.splits - 1) / p.splits : 0;
  /* 4: warp v starts its stream from the set's partials v, v + 4, .. as
   * its softmax state (seed_remote, as the persistent grid's warps do),
   * the first one loaded with the Q tile, whose round trip the CTA waits
   * for anyway, the others prefetched into L2 then (their loads follow
   * the pipeline's first tiles, below); the cross-warp merge weighs them
   * with the tiles and nothing follows the stream. */
  SeedRaw sd;
  const bool seeded = MERGE == 4 && warp < nset;
  if (seeded) {
    seed_load(p, grow0, nq, split + p.splits * warp, lane, sd);
    const int later = warp + WARPS < nset ? (nset - warp - 1) / WARPS : 0;
    if (later > 0)
      prefetch_remote(p, grow0, nq, split + p.splits * (warp + WARPS), p.splits * WARPS, later, lane, 32, true);
  }

  /* Q tile [16][D], rows past the group zero. */
  for (int c = threadIdx.x; c < 16 * D / 8; c += THREADS) {
    int row = c >> 4, ch = c & 15;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (row < nq) v = *(const uint4 *)(p.q + ((r * p.h + q0 + row) * D + ch * 8));
    *(uint4 *)(qs + swz(row, ch)) = v;
  }
  __syncthreads();
  uint32_t qf[8][4];
#pragma unroll
  for (int kk = 0; kk < 8; kk++) ldmatrix_x4(qf[kk], qs + swz(lane % 16, kk * 2 + lane / 16));

  float o[16][4], m0, m1, l0, l1;
  reset_state(o, m0, m1, l0, l1);

  uint16_t *wpipe = pipe + warp * STAGES * 2 * TILE_ELEMS;
  const int32_t *table = p.block_table + r * p.bt_stride;
  /* This warp's tiles: tile_begin + warp + WARPS * j. */
  const int my_first = tile_begin + warp;
  const int my_n = my_first < tile_end ? (tile_end - my_first + WARPS - 1) / WARPS : 0;

  auto issue = [&](int j) {
    if (j < my_n) {
      int t = my_first + WARPS * j;
      int tok = t * TILE;
      int64_t blk = table[tok / p.bt];
      int64_t off = ((blk * p.g + kh) * p.bt + tok % p.bt) * D;
      uint16_t *st = wpipe + (j % STAGES) * 2 * TILE_ELEMS;
      load_tile(st, st + TILE_ELEMS, p.k_pool + off, p.v_pool + off, min(TILE, tok_end - tok), lane);
    }
    cp_async_commit();
  };

#pragma unroll
  for (int j = 0; j < STAGES - 1; j++) issue(j);
  /* 4: the seeds folded after the pipeline's first tiles are issued, so
   * that a warp's later partials (more than 4 in the set) are loaded, from
   * L2, while its tiles fly: loaded before them, from HBM, each was a round
   * trip with nothing of this warp's in flight (b=128/1K, 8 fp32 partials
   * on an H100: 14.50 -> 13.51 us added). */
  if (seeded) {
    seed_fold(p, sd, nq, lane, o, m0, m1, l0, l1);
    const int j0 = split + p.splits * (warp + WARPS), jstep = p.splits * WARPS;
    seed_remote(p, grow0, nq, j0, jstep, lane, o, m0, m1, l0, l1);
  }

  /* Remote partials of this CTA's rows: outputs and LSEs are prefetched
   * into L2 as each warp nears the end of its tiles (two tiles before, or
   * now if it has no more than two; a prefetch at the start would be
   * evicted by the KV streamed meanwhile), by every CTA with one split and
   * by the first split's CTA with several (for the last CTA's merge). No
   * remote byte is waited on before the KV stream: the first version loaded
   * the LSEs into shared memory before the first K/V tile (one HBM round
   * trip added to every CTA's prologue, ~1.5 us at batch 32 on an H100),
   * and with splits read them from HBM in the last CTA's weight pass.
   * (4's first seeds are loaded before it, beside the Q tile, whose round
   * trip the CTA waits for anyway: no trip of their own.) */
  /* The cross-warp merge's layout (thread t: row t / 8, dims (t % 8) * 16
   * .. +16), and with split_merge 5 the set this CTA folds into it (fold). */
  const int row = threadIdx.x / 8, d0 = (threadIdx.x % 8) * 16;
  const int64_t grow = r * p.h + q0 + row; /* global (request, head) row */
  const int nfold = MERGE == 5 ? nset : 0;
  const bool fold = nfold > 0;
  const int prefetch_at = fold || (!OWN_SET && p.nrem > 0 && (p.splits == 1 || split == 0)) ? max(my_n - 2, 0) : -1;
  /* (A row past the group addresses row 0: the fold's later batches load
   * for every lane, and must stay inside the partials.) */
  const int rem_esz = p.rem_f16 ? 2 : 4;
  const RemoteSet rset = {
      (const char *)p.rem_out + (((int64_t)split * p.rows + grow0 + (row < nq ? row : 0)) * D + d0) * rem_esz,
      p.rem_lse + (int64_t)split * p.rows + grow, p.splits * p.rows * D * rem_esz, p.splits * p.rows, nfold};
  uint4 rb[8][4];
  float rl1 = -INFINITY;
  /* The first partials of the set into registers: this thread's row's LSE
   * of partial t % 8 and its dims of the first 8 fp16 or 4 fp32 partials
   * (64 registers); fp32 partials 4-7 follow once the warps' accumulators
   * are in shared memory. */
  auto load_first = [&]() {
    const int u = threadIdx.x % 8;
    if (row < nq) {
      if (u < nfold) rl1 = __ldcg(rset.lse + u * rset.lse_stride);
      if (p.rem_f16) load_rem16<true, false>(rb, rset.base, rset.stride, 0, 0, 8, nfold);
      else load_rem16<false, false>(rb, rset.base, rset.stride, 0, 0, 4, nfold);
    }
  };
  /* Near the end of the stream: 1-3 prefetch every partial into L2 (for
   * the one-split epilogue or the last CTA's merge); 5 prefetches its set. */
  auto near_end = [&]() {
    if (!fold) prefetch_remote(p, grow0, nq, 0, 1, p.nrem, threadIdx.x, THREADS, true);
    else prefetch_remote(p, grow0, nq, split, p.splits, nfold, threadIdx.x, THREADS, true);
  };
  auto stream = [&](int j) {
    __syncwarp();
    issue(j + STAGES - 1);
    cp_async_wait<STAGES - 1>();
    __syncwarp();
    const uint16_t *ks = wpipe + (j % STAGES) * 2 * TILE_ELEMS;
    const uint16_t *vs = ks + TILE_ELEMS;
    const int tok0 = (my_first + WARPS * j) * TILE;
    stream_tile<BF16>(qf, ks, vs, lane, tok0, tok_end, p.scale_log2, o, m0, m1, l0, l1);
  };
  /* near_end between two loops, not tested in one: its code inside the
   * loop doubled the loop's body (896-1,507 SASS instructions against
   * 415 for split merge 6's, where the compiler knows it never runs). */
  int j = 0;
  if (prefetch_at >= 0) {
    for (; j < prefetch_at; j++) stream(j);
    near_end();
  }
  for (; j < my_n; j++) stream(j);
  cp_async_wait<0>();
  /* One split: the first four remote partials of this thread's merge row
   * and dims into registers now (load_remote_first). */
  uint4 rv[4][4];
  float rl4[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
  if (fold) load_first();
  if (!OWN_SET && p.nrem > 0 && p.splits == 1 && row < nq) load_remote_first(p, grow, d0, rv, rl4);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  __syncthreads(); /* every warp is done with the pipeline area */

  /* Cross-warp merge through shared memory. */
  float *mo = (float *)smem_raw;          /* [WARPS][16][D] */
  float *mm = mo + WARPS * 16 * D;        /* [WARPS][16] */
  float *ml = mm + WARPS * 16;            /* [WARPS][16] */
  store_warp_state(mo + warp * 16 * D, mm, ml, warp, lane, o, m0, m1, l0, l1);
  /* fp32 remote partials 4-7 of the fold: now that the accumulators are
   * in shared memory, their registers are free, and the loads overlap the
   * barrier and the merge's reads. */
  if (fold && !p.rem_f16 && nfold > 4 && row < nq) load_rem16<false, false>(rb, rset.base, rset.stride, 0, 4, 8, nfold);
  __syncthreads();
  /* Thread t: row t / 8, dims (t % 8) * 16 .. +16. */
  float M = -INFINITY;
#pragma unroll
  for (int w = 0; w < WARPS; w++) M = fmaxf(M, mm[w * 16 + row]);
  /* The fold: remote partial j joins as one more term of this merge, with
   * base-2 LSE lse_j * log2 e and l = 1 (its output is normalized), so the
   * weights, the sums and the division are the merge's own: no second
   * normalization, no LSE loaded after the first ones unless the set has
   * more than 8 partials. */
  float rl2 = -INFINITY;
  if (fold) {
    rl2 = rl1 * LOG2E;
    float mr = rl2;
    if (row < nq)
      for (int j = 8 + threadIdx.x % 8; j < nfold; j += 8)
        mr = fmaxf(mr, __ldcg(rset.lse + j * rset.lse_stride) * LOG2E);
#pragma unroll
    for (int off = 4; off; off >>= 1) mr = fmaxf(mr, __shfl_xor_sync(0xffffffffu, mr, off));
    M = fmaxf(M, mr);
  }
  float wsum = 0.f, wt[WARPS];
#pragma unroll
  for (int w = 0; w < WARPS; w++) {
    wt[w] = mm[w * 16 + row] == -INFINITY ? 0.f : fast_exp2(mm[w * 16 + row] - M);
    wsum += wt[w] * ml[w * 16 + row];
  }
  float res[16];
#pragma unroll
  for (int x = 0; x < 16; x++) {
    float acc = 0.f;
#pragma unroll
    for (int w = 0; w < WARPS; w++) acc += wt[w] * mo[(w * 16 + row) * D + d0 + x];
    res[x] = acc;
  }
  if (fold) {
    float ws = p.rem_f16 ? fold_remote_set<true>(rset, rb, res, rl2, M, row < nq)
                         : fold_remote_set<false>(rset, rb, res, rl2, M, row < nq);
#pragma unroll
    for (int off = 4; off; off >>= 1) ws += __shfl_xor_sync(0xffffffffu, ws, off);
    wsum += ws;
  }
  const float inv = wsum > 0.f ? 1.f / wsum : 0.f;
#pragma unroll
  for (int x = 0; x < 16; x++) res[x] *= inv;
  const float lse_nat = wsum > 0.f ? (M + log2f(wsum)) * LN2 : -INFINITY;

  if (p.splits == 1) {
    if (row < nq) {
      float4 o4[4];
#pragma unroll
      for (int i = 0; i < 4; i++) o4[i] = make_float4(res[4 * i], res[4 * i + 1], res[4 * i + 2], res[4 * i + 3]);
      const float lse_out = !OWN_SET && p.nrem > 0 ? fold_remote_one_split(p, grow, d0, rv, rl4, o4, lse_nat) : lse_nat;
#pragma unroll
      for (int i = 0; i < 4; i++) *(float4 *)(p.out + grow * D + d0 + 4 * i) = o4[i];
      if (d0 == 0) p.lse[grow] = lse_out;
    }
    return;
  }

  if (row < nq) {
    float *dst = p.ws_out + (grow * ents + split) * D + d0;
#pragma unroll
    for (int x = 0; x < 16; x += 4) *(float4 *)(dst + x) = make_float4(res[x], res[x + 1], res[x + 2], res[x + 3]);
    if (d0 == 0) p.ws_lse[grow * ents + split] = lse_nat;
  }
  if (MERGE >= 3) {
    if (!arrive_last(p, cta_row, flag, ents)) return;
  } else {
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
      unsigned prev = atomicAdd(&p.counters[cta_row], 1u);
      *flag = prev == (unsigned)(ents - 1);
    }
    __syncthreads();
    if (!*flag) return;
    __threadfence();
  }
  /* 4 and 5: the split CTAs took the remote partials into their own;
   * 6: its remote CTA merged them into one more entry. */
  if (OWN_SET) p.nrem = 0;
  if (MERGE != 1 && nq > 2) {
    /* Rows of >= 3 heads: P = 128 / (nq rounded up to a power of two) <= 32 lanes a row. */
    merge_entries_regs<MERGE >= 4>(p, r * p.h + q0, nq, ents, cta_row);
    return;
  }
  /* Last CTA of this (request, kv head, head group): merge its splits.
   * Weights first: warp w takes rows w, w + 4, ..., its lanes stride over
   * the splits (independent loads), and the weights go to shared memory so
   * that the accumulation below issues only independent loads. All 128
   * threads accumulate: P = 128 / nq (rounded to a power of two) threads
   * per row, across the row's 32 float4 chunks and, where P > 32, over
   * interleaved subsets of the splits (summed through shared memory),
   * rather than one thread per 16 dims walking the splits with a
   * dependent LSE load per step (the previous version). */
  const int S = ents;
  const int ST = S + p.nrem;      /* local splits, then remote partials */
  float *wsm = (float *)smem_raw; /* [nq][ST] weights, S <= 1024, nrem <= 64 */
  float *rsum = wsm + 16 * ST;    /* [16] sum of weights per row */
  float *rmax = rsum + 16;        /* [16] max LSE per row */
  float *part = rmax + 16;        /* [SG][nqp][D] sums of split groups > 0 */
  int nqp = 1;
  while (nqp < nq) nqp <<= 1;
  const int P = THREADS / nqp;     /* threads per row: 8 .. 128 */
  const int CH = P < 32 ? P : 32;  /* threads across a row's 32 float4 chunks */
  const int SG = P / CH;           /* split groups: 1, 2 or 4 */
  const int NC = 32 / CH;          /* float4 chunks per thread: 1 .. 4 */
  const int mrow = threadIdx.x / P, u = threadIdx.x % P;
  const int ch0 = u % CH, sg = u / CH;
  const int64_t mgrow = r * p.h + q0 + mrow;
  /* This thread's share of the first remote partials (j = sg, sg + SG, ..),
   * loaded before the weight pass so that their round trip overlaps it. */
  if (p.nrem > 0 && mrow < nq) {
    if (p.rem_f16)
      load_remote_batch<true>(p, mgrow, sg, SG, ch0 * 4, CH * 4, NC, rv);
    else
      load_remote_batch<false>(p, mgrow, sg, SG, ch0 * 4, CH * 4, NC, rv);
  }
  for (int rr = warp; rr < nq; rr += WARPS) {
    const int64_t wgrow = r * p.h + q0 + rr;
    const float *lrow = p.ws_lse + wgrow * S;
    /* Each LSE is read from L2 once (kept in the weight slot until its
     * weight replaces it): the weights no longer wait on a second round
     * trip per row. */
    float mx = -INFINITY;
    for (int j = lane; j < ST; j += 32) {
      const float lj = __ldcg(j < S ? lrow + j : p.rem_lse + (int64_t)(j - S) * p.rows + wgrow);
      wsm[rr * ST + j] = lj;
      mx = fmaxf(mx, lj);
    }
#pragma unroll
    for (int off = 16; off; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    float sm = 0.f;
    for (int j = lane; j < ST; j += 32) {
      const float lj = wsm[rr * ST + j];
      const float w = (mx == -INFINITY || lj == -INFINITY) ? 0.f : __expf(lj - mx);
      wsm[rr * ST + j] = w;
      sm += w;
    }
#pragma unroll
    for (int off = 16; off; off >>= 1) sm += __shfl_xor_sync(0xffffffffu, sm, off);
    if (lane == 0) {
      rsum[rr] = sm;
      rmax[rr] = mx;
    }
  }
  __syncthreads();
  float4 acc[4];
#pragma unroll
  for (int i = 0; i < 4; i++) acc[i] = make_float4(0.f, 0.f, 0.f, 0.f);
  if (mrow < nq) {
    const float4 *src = (const float4 *)(p.ws_out + mgrow * S * D);
    const float *wr = wsm + mrow * ST;
    /* Remote partials: the same weighted sum (empty ones not added); the
     * batch loaded above, then any others four at a time. */
    if (p.nrem > 0) {
      auto weight = [&](int j) { return wr[S + j]; };
      if (p.rem_f16) {
        fold_remote_batch<true>(p, sg, SG, NC, rv, acc, weight);
        add_remote<true>(p, mgrow, sg + 4 * SG, SG, ch0 * 4, CH * 4, NC, acc, weight);
      } else {
        fold_remote_batch<false>(p, sg, SG, NC, rv, acc, weight);
        add_remote<false>(p, mgrow, sg + 4 * SG, SG, ch0 * 4, CH * 4, NC, acc, weight);
      }
    }
#pragma unroll 8
    for (int j = sg; j < S; j += SG) {
      const float w = wr[j];
#pragma unroll
      for (int i = 0; i < 4; i++) {
        if (i < NC) {
          const float4 v = __ldcg(src + (int64_t)j * (D / 4) + ch0 + i * CH);
          acc[i].x += w * v.x;
          acc[i].y += w * v.y;
          acc[i].z += w * v.z;
          acc[i].w += w * v.w;
        }
      }
    }
  }
  if (SG > 1) { /* uniform over the CTA */
    if (mrow < nq && sg > 0)
#pragma unroll
      for (int i = 0; i < 4; i++)
        if (i < NC) *(float4 *)(part + ((sg * nqp + mrow) * D + (ch0 + i * CH) * 4)) = acc[i];
    __syncthreads();
    if (mrow < nq && sg == 0)
      for (int g2 = 1; g2 < SG; g2++)
#pragma unroll
        for (int i = 0; i < 4; i++)
          if (i < NC) {
            const float4 v = *(const float4 *)(part + ((g2 * nqp + mrow) * D + (ch0 + i * CH) * 4));
            acc[i].x += v.x;
            acc[i].y += v.y;
            acc[i].z += v.z;
            acc[i].w += v.w;
          }
  }
  if (mrow < nq && sg == 0) {
    const float sum = rsum[mrow];
    const float sinv = sum > 0.f ? 1.f / sum : 0.f;
#pragma unroll
    for (int i = 0; i < 4; i++)
      if (i < NC)
        *(float4 *)(p.out + mgrow * D + (ch0 + i * CH) * 4) =
            make_float4(acc[i].x * sinv, acc[i].y * sinv, acc[i].z * sinv, acc[i].w * sinv);
    if (u == 0) p.lse[mgrow] = sum > 0.f ? rmax[mrow] + __logf(sum) : -INFINITY;
  }
  if (threadIdx.x == 0) p.counters[cta_row] = 0u;
}

template <bool BF16>
infsim_status launch(ik_cuda *c, const infsim_ma_decode_args *a, infsim_error *err) {
  const int di = BF16 ? 1 : 0;
  void (*const kerns[SPLIT_MERGES])(DecodeParams) = {ma_decode_kernel<BF16, 1>, ma_decode_kernel<BF16, 2>,
                                                     ma_decode_kernel<BF16, 3>, ma_decode_kernel<BF16, 4>,
                                                     ma_decode_kernel<BF16, 5>, ma_decode_kernel<BF16, 6>};
  if (c->decode_ctas_per_sm[di] == 0) {
    for (int i = 0; i < SPLIT_MERGES; i++)
      IK_CUDA(cudaFuncSetAttribute(kerns[i], cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM_BYTES));
    /* The least of the five (shared memory sets it for all: 2 on sm_90,
     * though the register merges use more registers). */
    int least = 0;
    for (int i = 0; i < SPLIT_MERGES; i++) {
      int n = 0;
      IK_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kerns[i], THREADS, SMEM_BYTES));
      if (i == 0 || n < least) least = n;
    }
    c->decode_ctas_per_sm[di] = least > 0 ? least : 1;
    int rows_n = 0;
    IK_CUDA(rows_prepare(BF16, &rows_n));
    c->decode_rows_ctas_per_sm[di] = rows_n > 0 ? rows_n : 1;
  }
  DecodeParams p;
  p.h = a->num_q_heads;
  p.g = a->num_kv_heads;
  p.group = p.h / p.g;
  p.qgroups = (p.group + 15) / 16;
  p.bt = a->block_tokens;
  p.bt_stride = a->block_table_stride;
  p.scale_log2 = a->softmax_scale * LOG2E;
  const int64_t cta_rows = (int64_t)a->num_requests * p.g * p.qgroups;
  const int64_t slots = (int64_t)c->sm_count * c->decode_ctas_per_sm[di]; /* CTAs of one wave */
  int splits = a->num_splits;
  if (splits == 0) {
    /* Splits trade the stream rate of the few CTAs a small batch has
     * (one CTA streams ~40 GB/s, so ~75 are needed to reach HBM speed)
     * against the merge, which one CTA per (request, KV head, head group)
     * does after the others, at a cost linear in the split count. Measured
     * on an H100 (bench_kernels --only splits, one 32K-token request of a
     * 70B TP 8 layer): 1 split 423 us, 8: 65, 32: 31, 64: 34, 264: 80. The
     * best count grows about as context^0.4: 16 at 4K tokens, ~32 at 16K-32K,
     * 64 at 128K, ~100 at 512K; so splits = 16 (context / 4096)^0.4, at
     * most one wave of CTAs (floor: 5 splits of a 64-row batch ran 320 CTAs
     * on 264 slots, a second wave 21% full, 8% slower than 4) and >= 2
     * tiles per warp. Every term grows smoothly with context and falls
     * with batch, so neighbouring shapes run neighbouring split counts.
     * The former rule (fill >= 95% of the slots) ran 251 splits of 131
     * tokens for one 32K request: 104 us. */
    const int64_t tiles = ((int64_t)a->max_context_tokens + TILE - 1) / TILE;
    int64_t cap = (tiles + MIN_SPLIT_TILES - 1) / MIN_SPLIT_TILES;
    const int64_t best = (int64_t)(16.0 * pow((double)a->max_context_tokens / 4096.0, 0.4) + 0.5);
    if (cap > best) cap = best;
    if (cap > MAX_SPLITS) cap = MAX_SPLITS;
    if (cap < 1) cap = 1;
    if (cta_rows < slots) {
      const int64_t s = slots / cta_rows;
      splits = (int)(s < cap ? s : cap);
    } else {
      /* Several waves anyway: the fewest splits whose CTAs use >= 95% of
       * the slots of the waves they need, else the best fill found. */
      double best_fill = -1.0;
      splits = 1;
      for (int64_t s = 1; s <= cap; s++) {
        int64_t ctas = cta_rows * s, waves = (ctas + slots - 1) / slots;
        double fill = (double)ctas / (double)(waves * slots);
        if (fill > best_fill + 1e-9) {
          best_fill = fill;
          splits = (int)s;
        }
        if (fill >= 0.95 || ctas >= 8 * slots) break;
      }
    }
  }
  if (splits < 1) splits = 1;
  if (splits > MAX_SPLITS) splits = MAX_SPLITS;
  const int64_t rows = (int64_t)a->num_requests * p.h;
  p.nrem = a->num_remote;
  if (cta_rows > 0x7fffffff) return infsim_fail(err, INFSIM_EINPUT, "kernels: ma_decode: too many requests x heads");
  /* One split never reaches the split merge: 1-3 run kernel 1 then (its
   * one-split epilogue). 4 and 5 run their own kernels only with remote
   * partials (each CTA takes its share into its own partial), else 3's (1
   * with one split): the decode without partials runs the same code
   * whatever the partials cost in registers. Auto: ik_decode_auto_merge,
   * whose comment gives the rounds behind it (kernels/NOTES.md has them
   * all). */
  int merge = a->split_merge >= 4 && p.nrem == 0 ? 3 : a->split_merge;
  if (a->split_merge == 0)
    merge = ik_decode_auto_merge(splits, p.nrem, cta_rows * (splits > 1 ? splits + 1 : 1) <= slots);
  /* 6 (the remote partials' own CTA) with splits only, and where every
   * row group takes the register merge (> 2 query heads); else 3. */
  const int tail = p.group % 16;
  if (merge == 6 && (splits == 1 || (tail != 0 && tail <= 2))) merge = 3;
  if (splits == 1 && merge < 4) merge = 1;
  const int ents = splits + (merge == 6 ? 1 : 0);
  if (splits > 1) {
    const int64_t counter_bytes = (cta_rows * 4 + 255) / 256 * 256;
    infsim_status st = ik_cuda_workspace(c, counter_bytes, rows * ents * (D + 1) * 4, err);
    if (st != INFSIM_OK) return st;
    p.counters = (unsigned *)c->ws;
    p.ws_out = (float *)((char *)c->ws + c->ws_counter_bytes);
    p.ws_lse = p.ws_out + rows * ents * D;
  } else {
    p.counters = NULL;
    p.ws_out = p.ws_lse = NULL;
  }
  p.splits = splits;
  p.q = (const uint16_t *)a->q;
  p.k_pool = (const uint16_t *)a->k_pool;
  p.v_pool = (const uint16_t *)a->v_pool;
  p.block_table = a->block_table;
  p.context_tokens = a->context_tokens;
  p.out = a->out;
  p.lse = a->lse;
  p.rows = rows;
  p.rem_f16 = a->remote_dtype == INFSIM_KDTYPE_F16;
  p.rem_out = a->remote_out;
  p.rem_lse = a->remote_lse;
  if (splits == 1) {
    const int grid = a->decode_grid ? a->decode_grid : ik_decode_auto_grid(a->max_context_tokens, cta_rows <= slots, p.nrem);
    const int64_t rslots = (int64_t)c->sm_count * c->decode_rows_ctas_per_sm[di];
    if (grid == 2) {
      rows_launch(BF16, p, cta_rows, (int)(cta_rows < rslots ? cta_rows : rslots), c->stream);
      IK_LAUNCHED();
      return INFSIM_OK;
    }
  }
  kerns[merge - 1]<<<dim3((unsigned)cta_rows, (unsigned)ents), THREADS, SMEM_BYTES, c->stream>>>(p);
  IK_LAUNCHED();
  return INFSIM_OK;
}

} /* namespace */

extern "C" infsim_status ik_cuda_ma_decode(void *self, const infsim_ma_decode_args *a, infsim_error *err) {
  ik_cuda *c = (ik_cuda *)self;
  return a->dtype == INFSIM_KDTYPE_BF16 ? launch<true>(c, a, err) : launch<false>(c, a, err);
}
