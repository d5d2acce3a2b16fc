/*
** prefill_sm90_ws.cu: prefill versions 15 to 18 on Hopper (sm_90a), 18 the
** default there: version 14's two consumer warpgroups (prefill_sm90.cu)
** fed by a producer warpgroup, which loads K/V by 16-byte cp.async
** (version 15, pipelines 4 and 5) or by bulk tensor copies (version 16,
** pipelines 6 and 7; versions 17 and 18, pipelines 8-15, with fewer
** consumer instructions per key tile). Same contract and results as the
** kernels in prefill_sm90.cu; prefill.cu appends the new K/V before
** launching it (but for pipelines 13-15, which append it themselves) and
** never launches it on a device other than compute capability 9.0 (in
** other passes the body traps). Measurements: kernels/NOTES.md, 15-21.
*/
#include "prefill_sm90.cuh"

#include <cuda.h> /* CUtensorMap and its encoder's types (the encoder itself is fetched at run time) */

namespace {

/* Pipelines 6 and 7 (kernels/NOTES.md 16): K and V by bulk tensor copies
 * (TMA) through four tensor maps over the pools, each a 3-D view
 * [block x KV head][slot][128 dims]: a box is 16 slots (one 16-key run) x
 * 64 dims (2 KiB, one 128-byte-swizzled column half, so the shared layout
 * is version 15's). The "tail" maps stop the slot extent at the last key of
 * the last block, so the run holding it loads zeros past it. */
struct ik_kv_maps {
  CUtensorMap k, v, k_tail, v_tail;
  CUtensorMap k_new, v_new; /* pipelines 13 and 14: k_new / v_new (encode_kv_maps) */
};

/* Version 15 (kernels/NOTES.md): version 14's consumer loop with the copies
 * taken off the consumer warps. A third warpgroup, the producer, gives its
 * registers up (setmaxnreg: 24 a thread, the consumers get 240) and loads
 * Q, then K_{j+1} and V_j in turn through the block table by cp.async into
 * the same three K and three V buffers; each copy group is announced on its
 * buffer's "full" mbarrier once it has landed, and the consumers free a
 * buffer on its "empty" mbarrier when the wgmma that read it has completed
 * (FlashAttention-3's producer/consumer pipeline, Shah et al. 2024,
 * section 3.1). So each consumer warpgroup waits only for the tile it
 * needs, not for the other warpgroup at a CTA barrier, and the two drift
 * as far as the ping-pong turns let them.
 * The pool is contiguous per 16-key run only, so a tile is 16 boxes of
 * 2 KiB for TMA (two column halves per run). Version 12 issued them from a
 * per-lane loop, version 15's fifth call all 16 from one lane of this
 * producer: both slower than cp.async, whose 16-byte copies still cost
 * ~14% at 16K (NOTES.md 15). Version 16 (TMA) has each of the four
 * producer warps issue the boxes of its two runs, so a tile's boxes go out
 * from four schedulers at once: 7-9% faster than cp.async at 16K (NOTES.md
 * 16). The producer reads the table itself, two words per lane per tile
 * (lane 0 of each warp uses them with TMA), before it waits for the buffer.
 * PERSIST (pipelines 5 and 7): one CTA per SM takes work tiles (query tile, head,
 * request) heaviest first, dealt round-robin in a snake order (the
 * direction alternates each round, so no CTA is first in every round), and
 * the rings run on across them: the producer loads the next tile's Q and
 * first K/V while the consumers finish the last P V and store O. Q has one
 * buffer, freed on its own mbarrier after a tile's last S = Q K^T. */
constexpr int WS_THREADS = 384;
constexpr int WS_BARS = 4 * NST + 2; /* K full, V full, K empty, V empty (one per buffer), Q empty, Q full (TMA) */
constexpr int SMEM_WS = (int)(Q_BYTES + 2 * NST * TILE_BYTES) + WS_BARS * 8 + 1024;

/* FUSED (pipelines 13, 14 and 15, as 10, 11 and 12; past_tokens a
 * multiple of 16): version 18 with the K/V append folded in. The producer
 * loads the new keys' runs from k_new / v_new (the launch runs no append
 * kernel first, so the pool holds nothing of this chunk yet) and the
 * cached prefix's runs from the pool, and the CTA whose query positions a
 * new key has (its query tile, the first query head of its KV head)
 * writes that key's run, already in shared memory, to its pool block by
 * bulk tensor stores once it has landed: each new key is written once, by
 * a CTA that reads it anyway, instead of a separate kernel reading and
 * writing all of them before the attention starts (~3.5% of a 16K call on
 * 32/32 heads; kernels/NOTES.md 18-19, 21). On a fresh prompt those runs
 * are the diagonal key tile's; after a cached prefix they fill one key
 * tile or straddle two. The stores go through the pool maps, the run
 * holding the last key through the tail map, which drops the rows past it.
 * A run is 16 keys in one pool block (block_tokens is a multiple of 16),
 * so with past_tokens a multiple of 16 no run holds keys of both kinds;
 * prefill.cu sends any other chunk to the unfused twin. */
template <bool BF16, bool POW2, bool PINGPONG, bool PERSIST, bool TMA, bool V17, bool V18, bool GROUPED,
          bool FUSED = false>
__global__ void __launch_bounds__(WS_THREADS, 1)
    prefill_sm90_ws_kernel(ik_prefill_params p, int reqs, const __grid_constant__ ik_kv_maps maps) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int WS_PRODUCER_REGS = 24, WS_CONSUMER_REGS = 240; /* 128 x 24 + 256 x 240 <= 64K registers */
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const uint32_t sbase = (smem_addr(smem_raw) + 1023u) & ~1023u;
  const uint32_t q_s = sbase, k_s = sbase + Q_BYTES, v_s = k_s + NST * TILE_BYTES;
  const uint32_t bars = v_s + NST * TILE_BYTES;
  /* Barrier of buffer b: K full, V full, K empty, V empty. */
  auto kfull = [&](int b) { return bars + 8u * (uint32_t)b; };
  auto vfull = [&](int b) { return bars + 8u * (uint32_t)(NST + b); };
  auto kempty = [&](int b) { return bars + 8u * (uint32_t)(2 * NST + b); };
  auto vempty = [&](int b) { return bars + 8u * (uint32_t)(3 * NST + b); };
  const uint32_t qempty = bars + 8u * (uint32_t)(4 * NST);
  const uint32_t qfull = qempty + 8u; /* TMA: Q by cp.async has a barrier of its own */

  const int tid = threadIdx.x, wg = tid / 128;
  const int total = p.past + p.new_tokens;
  const int nq = (p.new_tokens + QT - 1) / QT;
  /* Work tile k of this CTA (k = 0 only without PERSIST): false past the last. */
  int qt = 0, hh = 0, qbase = 0, n_kt = 0;
  int64_t r = 0;
  auto tile = [&](int k) {
    if (PERSIST) {
      const int per = p.h * reqs, cta = (k & 1) ? (int)gridDim.x - 1 - (int)blockIdx.x : (int)blockIdx.x;
      const int w = k * (int)gridDim.x + cta;
      if (w >= nq * per) return false;
      qt = nq - 1 - w / per;
      hh = w % per % p.h;
      r = w % per / p.h;
    } else if (GROUPED) {
      /* Pipeline 12: the CTAs of a request taken in groups of hg heads
       * (one KV head's query heads, at least 4), heaviest query tile first
       * within the group and the group's heads side by side. The hardware
       * deals CTAs in launch order, so head by head (pipelines 8 and 10)
       * starts the last head's heaviest tile (a whole context of keys)
       * when only that head's lighter ones are left to run beside it; in
       * groups, the heaviest tiles start with a group's worth of work
       * after them, and the CTAs in flight still read the K/V of hg heads
       * at most (the persistent order reads every head's: NOTES.md 15). */
      if (k > 0) return false;
      const int hg = p.group * ((3 + p.group) / p.group), nqt = (int)gridDim.x;
      const int lin = (int)blockIdx.x + nqt * (int)blockIdx.y, h0 = lin / (nqt * hg) * hg;
      const int in = min(hg, p.h - h0), w = lin - h0 * nqt;
      qt = nqt - 1 - w / in;
      hh = h0 + w % in;
      r = blockIdx.z;
    } else {
      if (k > 0) return false;
      qt = (int)gridDim.x - 1 - (int)blockIdx.x;
      hh = blockIdx.y;
      r = blockIdx.z;
    }
    qbase = qt * QT;
    n_kt = min(p.past + qbase + QT - 1, total - 1) / KT + 1;
    return true;
  };

  if (tid == 0) {
    for (int b = 0; b < NST; b++) {
      /* cp.async: every producer thread, once its copies landed; TMA: one
       * lane of each producer warp, announcing its boxes' bytes. */
      mbar_init(kfull(b), TMA ? 4 : 128);
      mbar_init(vfull(b), TMA ? 4 : 128);
      mbar_init(kempty(b), 8); /* one lane of each consumer warp, after its wgmma wait */
      mbar_init(vempty(b), 8);
    }
    mbar_init(qempty, 8);
    mbar_init(qfull, 128);
  }
  __syncthreads();

  if (wg == 0) {
    /* Producer. Warp w copies keys 32 w .. 32 w + 31 of a tile (two 16-key
     * runs), lane l chunk l % 16 of every second row from l / 16, so each
     * lane needs two table words per tile, read together before the wait for
     * the buffer: one table round trip per tile, off the copies' path (at
     * one word per copy pair the first version waited for four in a row). */
    setmaxnreg_dec<WS_PRODUCER_REGS>();
    const int pw = tid >> 5, lr = (tid >> 4) & 1, ch = tid & 15;
    const int last_run = (total - 1) & ~15;
    const int32_t *table = p.block_table;
    int kh = 0;
    /* Start of this warp's run h of tile kt; runs past the last key take the
     * last key's run, so every address stays inside a block the table names
     * (those rows zero-fill). */
    auto run_start = [&](int kt, int h) { return min((IK_SM90_DIAG == 3 ? 0 : kt) * KT + 32 * pw + 16 * h, last_run); };
    auto run_block = [&](int kt, int h) {
      const int start = run_start(kt, h);
      return table[POW2 ? start >> p.bt_shift : start / p.bt];
    };
    auto load_tile = [&](uint32_t dst, const uint16_t *pool, int kt, int32_t blk0, int32_t blk1) {
#pragma unroll 1
      for (int h = 0; h < 2; h++) {
        const int start = run_start(kt, h);
        const int slot = POW2 ? start & (p.bt - 1) : start % p.bt;
        const uint16_t *src =
            pool + ((int64_t)(h ? blk1 : blk0) * p.g + kh) * (int64_t)(p.bt * D) + (slot + lr) * D + ch * 8;
#pragma unroll
        for (int i = 0; i < 8; i++) {
          const int row = 32 * pw + 16 * h + lr + 2 * i;
          cp_async16_s(dst + sw128(KT, row, ch), src + 2 * i * D, kt * KT + row < total);
        }
      }
    };
    if (TMA) {
      /* Pipelines 6 and 7: warp w's lane 0 issues the four boxes of its two
       * runs (two column halves each) of every K and V tile, so four
       * warps, one per scheduler, issue a tile's 16 boxes at once (version
       * 15's fifth call issued all 16 from one lane: slower than cp.async),
       * arriving on the full barrier with the 8 KiB they bring. Q stays
       * 16-byte cp.async from all 128 threads, announced on its own
       * barrier. The run holding the last key and the runs clamped to it
       * go through the tail maps (zeros past the last key, as cp.async's
       * zero fill). */
      const int lane = tid & 31;
      auto tma_tile = [&](uint32_t bar, uint32_t dst, const CUtensorMap *map, const CUtensorMap *tail, int kt,
                          int32_t blk0, int32_t blk1) {
        if (FUSED) {
          /* A run of keys before past_tokens from the pool (never the tail
           * map's run: it ends at or before past_tokens), any other from
           * k_new / v_new at its token less past_tokens; rows past the last
           * new token (and so past this request) zero-fill. past_tokens is
           * a multiple of 16 here, so no run holds keys of both kinds. */
          const CUtensorMap *nmap = map == &maps.k ? &maps.k_new : &maps.v_new;
          if (lane == 0) {
            mbar_arrive_expect_tx(bar, 4u * 2048u);
#pragma unroll
            for (int h = 0; h < 2; h++) {
              const int row = 32 * pw + 16 * h, tok = kt * KT + row;
              const uint32_t lo = dst + (uint32_t)row * 128u, hi = dst + (uint32_t)(KT * 128 + row * 128);
              if (tok >= p.past) {
                tma_load_4d(lo, nmap, 0, kh, tok - p.past, (int)r, bar);
                tma_load_4d(hi, nmap, 64, kh, tok - p.past, (int)r, bar);
              } else {
                const int slot = POW2 ? tok & (p.bt - 1) : tok % p.bt, bh = (h ? blk1 : blk0) * p.g + kh;
                tma_load_3d(lo, map, 0, slot, bh, bar);
                tma_load_3d(hi, map, 64, slot, bh, bar);
              }
            }
          }
        } else if (lane == 0 && IK_SM90_DIAG == 1 && kt >= NST) {
          mbar_arrive(bar); /* bench-only: no loads past the first tiles */
        } else if (lane == 0) {
          mbar_arrive_expect_tx(bar, 4u * 2048u);
#pragma unroll
          for (int h = 0; h < 2; h++) {
            const int start = run_start(kt, h), row = 32 * pw + 16 * h;
            const int slot = POW2 ? start & (p.bt - 1) : start % p.bt;
            const CUtensorMap *m = start + 16 > total ? tail : map;
            const int bh = (h ? blk1 : blk0) * p.g + kh;
            tma_load_3d(dst + (uint32_t)row * 128u, m, 0, slot, bh, bar);
            tma_load_3d(dst + (uint32_t)(KT * 128 + row * 128), m, 64, slot, bh, bar);
          }
        }
      };
      int base = 0;
      for (int k = 0; tile(k); k++) {
        table = p.block_table + r * p.bt_stride;
        kh = hh / p.group;
        if (k > 0) mbar_wait(qempty, (uint32_t)((k - 1) & 1));
#pragma unroll 4
        for (int i = 0; i < QT * 16 / 128; i++) {
          const int c = tid + 128 * i, row = c >> 4, cq = c & 15;
          const bool ok = qbase + row < p.new_tokens;
          const uint16_t *src = p.q + (ok ? ((r * p.new_tokens + qbase + row) * p.h + hh) * D + cq * 8 : 0);
          cp_async16_s(q_s + sw128(QT, row, cq), src, ok);
        }
        cp_async_commit();
        {
          const int b = base % NST;
          const int32_t b0 = run_block(0, 0), b1 = run_block(0, 1);
          if (base >= NST) mbar_wait(kempty(b), (uint32_t)((base / NST + 1) & 1));
          tma_tile(kfull(b), k_s + (uint32_t)b * TILE_BYTES, &maps.k, &maps.k_tail, 0, b0, b1);
        }
        cp_async_wait<0>();
        fence_proxy_async();
        mbar_arrive(qfull);
        for (int t = 0; t < n_kt; t++) {
          const int kt = t + 1;
          if (kt < n_kt) {
            const int n = base + kt, b = n % NST;
            const int32_t b0 = run_block(kt, 0), b1 = run_block(kt, 1);
            if (n >= NST) mbar_wait(kempty(b), (uint32_t)((n / NST + 1) & 1));
            tma_tile(kfull(b), k_s + (uint32_t)b * TILE_BYTES, &maps.k, &maps.k_tail, kt, b0, b1);
          }
          const int n = base + t, b = n % NST;
          const int32_t b0 = run_block(t, 0), b1 = run_block(t, 1);
          if (n >= NST) mbar_wait(vempty(b), (uint32_t)((n / NST + 1) & 1));
          tma_tile(vfull(b), v_s + (uint32_t)b * TILE_BYTES, &maps.v, &maps.v_tail, t, b0, b1);
        }
        if (FUSED && hh % p.group == 0) {
          /* The new keys at this CTA's own query positions (first .. last,
           * the runs of its key tiles from first / KT on: the diagonal tile
           * kt = qt on a fresh prompt, one or two tiles after a cached
           * prefix) to the pool, K then V of each tile, each once its
           * loads have landed: every new key once, by a CTA that read it.
           * The producer waits for the stores before it refills the
           * buffers (a persistent CTA's next tile) or exits (its shared
           * memory goes with it); no buffer of these tiles is refilled
           * before (the ring of three holds the last two). The whole warp
           * waits, and meets again after lane 0's stores: lanes left to run
           * ahead reach a barrier wait two phases early on a persistent
           * CTA's third work tile, which a parity wait passes at once (the
           * first build hung so at 1K tokens on 64/8 heads). */
          const int first = p.past + qbase, last = min(first + QT - 1, total - 1);
          for (int kt = first / KT; kt < n_kt; kt++) {
            const int n = base + kt, b = n % NST;
            const uint32_t ph = (uint32_t)((n / NST) & 1);
            for (int kv = 0; kv < 2; kv++) {
              mbar_wait(kv ? vfull(b) : kfull(b), ph);
              const uint32_t src = (kv ? v_s : k_s) + (uint32_t)b * TILE_BYTES;
#pragma unroll
              for (int h = 0; h < 2 && lane == 0; h++) {
                const int start = kt * KT + 32 * pw + 16 * h, row = 32 * pw + 16 * h;
                if (start < first || start > last) continue;
                const int slot = POW2 ? start & (p.bt - 1) : start % p.bt;
                const CUtensorMap *m =
                    start + 16 > total ? (kv ? &maps.v_tail : &maps.k_tail) : (kv ? &maps.v : &maps.k);
                const int bh = run_block(kt, h) * p.g + kh;
                tma_store_3d(m, 0, slot, bh, src + (uint32_t)row * 128u);
                tma_store_3d(m, 64, slot, bh, src + (uint32_t)(KT * 128 + row * 128));
              }
            }
          }
          if (lane == 0) {
            bulk_commit();
            bulk_wait_all();
          }
          __syncwarp();
        }
        base += n_kt;
      }
      return;
    }
    /* The n-th K (or V) tile this CTA loads, counted over its work tiles,
     * goes to buffer n % 3; filling it waits until tile n - 3's reads are
     * done (that buffer's empty barrier, completion n / 3 - 1). */
    int base = 0; /* K (and V) tiles of this CTA's earlier work tiles */
    for (int k = 0; tile(k); k++) {
    table = p.block_table + r * p.bt_stride;
    kh = hh / p.group;
    if (k > 0) mbar_wait(qempty, (uint32_t)((k - 1) & 1)); /* the last S of the previous tile done */
    /* Group 0: Q and K_0 (Q rows past new_tokens zero-filled). */
#pragma unroll 4
    for (int i = 0; i < QT * 16 / 128; i++) {
      const int c = tid + 128 * i, row = c >> 4, cq = c & 15;
      const bool ok = qbase + row < p.new_tokens;
      const uint16_t *src = p.q + (ok ? ((r * p.new_tokens + qbase + row) * p.h + hh) * D + cq * 8 : 0);
      cp_async16_s(q_s + sw128(QT, row, cq), src, ok);
    }
    {
      const int b = base % NST;
      const int32_t b0 = run_block(0, 0), b1 = run_block(0, 1);
      if (base >= NST) mbar_wait(kempty(b), (uint32_t)((base / NST + 1) & 1));
      load_tile(k_s + (uint32_t)b * TILE_BYTES, p.k_pool, 0, b0, b1);
    }
    cp_async_commit();
    /* Then K_{t+1} and V_t for t = 0, 1, ...: the order the consumers use
     * them in. Each group is announced after the next one is issued (two in
     * flight per thread; three measured no faster): wait for all but the
     * newest, make the copies visible to the tensor cores' proxy, arrive. */
    uint32_t pending = kfull(base % NST);
    auto announce = [&](uint32_t next) {
      cp_async_wait<1>();
      fence_proxy_async();
      mbar_arrive(pending);
      pending = next;
    };
    for (int t = 0; t < n_kt; t++) {
      const int kt = t + 1;
      if (kt < n_kt) {
        const int n = base + kt, b = n % NST;
        const int32_t b0 = run_block(kt, 0), b1 = run_block(kt, 1);
        if (n >= NST) mbar_wait(kempty(b), (uint32_t)((n / NST + 1) & 1)); /* S of tile n - 3 done */
        if (IK_SM90_DIAG != 1 || kt < NST) load_tile(k_s + (uint32_t)b * TILE_BYTES, p.k_pool, kt, b0, b1);
        cp_async_commit();
        announce(kfull(b));
      }
      const int n = base + t, b = n % NST;
      const int32_t b0 = run_block(t, 0), b1 = run_block(t, 1);
      if (n >= NST) mbar_wait(vempty(b), (uint32_t)((n / NST + 1) & 1)); /* P V of tile n - 3 done */
      if (IK_SM90_DIAG != 1 || t < NST) load_tile(v_s + (uint32_t)b * TILE_BYTES, p.v_pool, t, b0, b1);
      cp_async_commit();
      announce(vfull(b));
    }
    cp_async_wait<0>();
    fence_proxy_async();
    mbar_arrive(pending);
    base += n_kt;
    }
    return;
  }

  /* Consumers: warpgroups 1 and 2, 64 query rows each; the loop is version
   * 14's (S_j and P_{j-1} V_{j-1} issued back to back, S_j's softmax under
   * the second), with mbarrier waits instead of the CTA barrier. */
  setmaxnreg_inc<WS_CONSUMER_REGS>();
  /* Version 18: the warpgroup's index broadcast from lane 0, so ptxas sees
   * it is the same in every lane and may keep what derives from it (Q's
   * matrix descriptors) in uniform registers (CUTLASS does the same). */
  const int cw = V18 ? __shfl_sync(0xffffffffu, wg - 1, 0) : wg - 1, warp = (tid % 128) / 32, lane = tid % 32;
  const int wrow = cw * 64;
  const bool releaser = lane == 0;
  int pos0 = 0, pos1 = 0, base = 0;

  float o[64];
  uint32_t pf[KT / 16][4];
  float m0, m1, l0, l1;
  const int my_bar = 1 + cw, other_bar = 2 - cw; /* named barriers over the 256 consumer threads */
  if (PINGPONG && cw == 1) named_bar_arrive(1);

  auto issue_s = [&](float (&s)[64], int kt) {
    issue_s_ss<BF16>(s, q_s + wrow * 128, k_s + (uint32_t)((base + kt) % NST) * TILE_BYTES);
  };
  auto issue_pv = [&](int kt) { issue_pv_tile<BF16>(o, pf, v_s + (uint32_t)((base + kt) % NST) * TILE_BYTES); };
  /* Barrier and phase of this CTA's n-th K or V tile (see the producer). */
  auto kready = [&](int kt) { mbar_wait(kfull((base + kt) % NST), (uint32_t)(((base + kt) / NST) & 1)); };
  auto vready = [&](int kt) { mbar_wait(vfull((base + kt) % NST), (uint32_t)(((base + kt) / NST) & 1)); };
  auto mask = [&](float (&s)[64], int kt) { mask_tile(s, kt, lane, pos0, pos1); };
  auto softmax = [&](float (&s)[64], float &a0, float &a1, float &ps0, float &ps1) {
    softmax_tile(s, p.scale_log2, m0, m1, a0, a1, ps0, ps1);
  };
  auto finish = [&](float (&s)[64], float a0, float a1, float ps0, float ps1) {
    finish_tile<BF16>(s, a0, a1, ps0, ps1, l0, l1, pf, o);
  };

  for (int k = 0; tile(k); k++) {
  const int wg_first = min(p.past + qbase + wrow, total - 1);
  pos0 = min(p.past + qbase + wrow + warp * 16 + lane / 4, total - 1);
  pos1 = min(p.past + qbase + wrow + warp * 16 + lane / 4 + 8, total - 1);
  const int first_masked = (wg_first + 1) / KT;
#pragma unroll
  for (int i = 0; i < 64; i++) o[i] = 0.f;
  m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
  /* Key tile 0, the same in every version: S_0 alone (Q arrived with K_0;
   * with TMA on its own barrier), issued by `issue`; K_0's buffer freed
   * once it is done (and Q's, if it is the last tile), masked if it holds
   * the diagonal. The caller's softmax follows. */
  auto first_s = [&](float (&s)[64], auto issue) {
    if (TMA) mbar_wait(qfull, (uint32_t)(k & 1));
    kready(0);
    if (PINGPONG) named_bar_sync(my_bar);
    wgmma_fence();
    issue(s);
    if (PINGPONG) named_bar_arrive(other_bar);
    wgmma_wait<0>();
    reg_fence(s);
    mbar_arrive_if(kempty(base % NST), releaser);
    mbar_arrive_if(qempty, releaser && n_kt == 1);
    if (first_masked == 0) mask(s, 0);
  };
  /* After the last key tile, the same in every version: its P V from the
   * fragments pl (issued by `issue`), V's buffer freed, O's rows stored. */
  auto last_pv = [&](uint32_t (&pl)[KT / 16][4], auto issue) {
    vready(n_kt - 1);
    if (PINGPONG) named_bar_sync(my_bar);
    reg_fence_op(o, pl);
    wgmma_fence();
    issue();
    if (PINGPONG) named_bar_arrive(other_bar);
    wgmma_wait<0>();
    reg_fence(o);
    mbar_arrive_if(vempty((base + n_kt - 1) % NST), releaser);
    store_rows<BF16>(p, o, m0, m1, l0, l1, r, hh, qbase + wrow + warp * 16, lane);
    base += n_kt;
  };
  /* Key tile j >= 1, the same turn in every version: wait for K_j and
   * V_{j-1} (no branch may sit between a wgmma's issue and its wait, so
   * both waits come first), issue S_j and P_{j-1} V_{j-1} from the
   * fragments pin (`issue`), wait for S_j only. */
  auto pair_s_pv = [&](float (&s)[64], int j, uint32_t (&pin)[KT / 16][4], auto issue) {
    kready(j);
    vready(j - 1);
    if (PINGPONG) named_bar_sync(my_bar);
    reg_fence_op(o, pin);
    wgmma_fence();
    issue(s);
    if (PINGPONG) named_bar_arrive(other_bar);
    wgmma_wait<1>();
    reg_fence(s);
  };
  if constexpr (V18) {
    /* Version 18 (kernels/NOTES.md 18): version 17's turns, products and
     * release order, with two changes. (1) After the first key tile the
     * exponents are taken against the reference as it stands, with no row
     * max (exp_pack_v18), straight into the fragments of the next P V; the
     * rare tile whose sums say the reference is too low is redone from its
     * raw scores with version 17's softmax, after the P V wait (a branch
     * the same in every lane, no wgmma in flight). So S_j's raw scores and
     * two sets of P fragments are live at once: P_{j-1}'s, which the P V in
     * flight reads, and P_j's; the loop is unrolled by two so the two sets
     * trade roles without copies. (2) The buffer offsets of the matrix
     * descriptors are broadcast from lane 0 (so are Q's, through cw), so
     * ptxas may build them in uniform registers: version 17 built all 48
     * words of a tile's 16 descriptors in ordinary registers and moved each
     * over (R2UR). */
    float a0 = 1.f, a1 = 1.f;
    bool moved = false;
    const uint32_t q_lo = (uint32_t)wg_desc(q_s + wrow * 128, 16, 1024), hi = (uint32_t)(wg_desc(q_s, 16, 1024) >> 32);
    const uint32_t k_lo0 = (uint32_t)wg_desc(k_s, 16, 1024), v_lo0 = (uint32_t)wg_desc(v_s, KT * 128, 1024);
    /* Low word of the descriptor of this CTA's n-th K (or V) tile's buffer. */
    auto buf_lo = [&](uint32_t lo0, int kt) {
      return __shfl_sync(0xffffffffu, lo0 + (uint32_t)((base + kt) % NST) * (TILE_BYTES >> 4), 0);
    };
    uint32_t pa[KT / 16][4], pb[KT / 16][4];
    {
      const uint32_t kl = buf_lo(k_lo0, 0);
      float s[64];
      first_s(s, [&](float (&s0)[64]) { issue_s_v17<BF16>(s0, q_lo, kl, hi); });
      float ps0, ps1;
      softmax_tile_v17(s, p.scale_log2, m0, m1, a0, a1, ps0, ps1, moved);
      l0 = ps0, l1 = ps1; /* O is zero */
      pack_p<BF16>(s, pa);
    }
    /* Key tile j >= 1: S_j and P_{j-1} V_{j-1} (from pin), P_j into pout. */
    auto step18 = [&](int j, auto masked, uint32_t (&pin)[KT / 16][4], uint32_t (&pout)[KT / 16][4]) {
      const uint32_t kl = buf_lo(k_lo0, j), vl = buf_lo(v_lo0, j - 1);
      float s[64];
      pair_s_pv(s, j, pin, [&](float (&sj)[64]) {
        issue_s_v17<BF16>(sj, q_lo, kl, hi);
        issue_pv_v17<BF16>(o, pin, vl, hi);
      });
      if (decltype(masked)::value) mask(s, j);
      float ps0, ps1;
      exp_pack_v18<BF16>(s, p.scale_log2, m0, m1, pout, ps0, ps1);
      const bool slow = __any_sync(0xffffffffu, ps0 > SUM_MAX_V18 || ps1 > SUM_MAX_V18);
      /* As version 17: the release reads every exponent, so they stay above the P V wait. */
      mbar_arrive_if(kempty((base + j) % NST), releaser && !(ps0 + ps1 < 0.f));
      mbar_arrive_if(qempty, releaser && j == n_kt - 1);
      wgmma_wait<0>();
      reg_fence_op(o, pin);
      mbar_arrive_if(vempty((base + j - 1) % NST), releaser);
      if (__builtin_expect(slow, 0)) {
        softmax_tile_v17(s, p.scale_log2, m0, m1, a0, a1, ps0, ps1, moved);
        pack_p<BF16>(s, pout);
        if (moved) rescale_o(o, a0, a1);
        l0 = l0 * a0 + ps0;
        l1 = l1 * a1 + ps1;
      } else {
        l0 += ps0;
        l1 += ps1;
      }
    };
    auto copy_p = [&]() {
#pragma unroll
      for (int kg = 0; kg < KT / 16; kg++) {
#pragma unroll
        for (int i = 0; i < 4; i++) pa[kg][i] = pb[kg][i];
      }
    };
    const int mid = max(1, min(first_masked, n_kt));
    int j = 1;
    for (; j + 1 < mid; j += 2) {
      step18(j, std::false_type(), pa, pb);
      step18(j + 1, std::false_type(), pb, pa);
    }
    if (j < mid) {
      step18(j, std::false_type(), pa, pb);
      copy_p();
    }
    for (j = mid; j < n_kt; j++) { /* the diagonal: one or two tiles */
      step18(j, std::true_type(), pa, pb);
      copy_p();
    }
    const uint32_t vl = buf_lo(v_lo0, n_kt - 1);
    last_pv(pa, [&] { issue_pv_v17<BF16>(o, pa, vl, hi); });
    continue;
  }
  if constexpr (V17) {
    /* Version 17 (kernels/NOTES.md 17). The same turns and products as
     * below, with four changes. (1) O is rescaled only when the running
     * max moved by more than a factor 2^8 in some row of the warp
     * (softmax_tile_v17), after the P V wait as before, behind a branch
     * that is the same in every lane (no wgmma is in flight there). (2)
     * S_j's exponents stay above the P V wait: an asm volatile orders
     * nothing for ptxas, which had hoisted that wait above all 64 of them
     * in version 16's unmasked loop (the softmax then ran after P V, not
     * under it); here K_j's release comes after the softmax, its predicate
     * reads the sum of every exponent (always true: a sum of exponents is
     * never negative, and NaN compares false), and ptxas keeps an mbarrier
     * arrive above a later wgmma wait. (3) The matrix descriptors are made
     * once (issue_s_v17). (4) softmax_tile_v17's shorter chains. */
    float a0 = 1.f, a1 = 1.f;
    bool moved = false;
    /* Descriptors' low words (Q: leading byte offset 16; K: 16; V: KT x
     * 128) and their common high word (stride byte offset 1024, 128-byte
     * swizzle); buffer b's K or V is b x TILE_BYTES further. */
    const uint32_t q_lo = (uint32_t)wg_desc(q_s + wrow * 128, 16, 1024), hi = (uint32_t)(wg_desc(q_s, 16, 1024) >> 32);
    const uint32_t k_lo0 = (uint32_t)wg_desc(k_s, 16, 1024), v_lo0 = (uint32_t)wg_desc(v_s, KT * 128, 1024);
    auto issue_s17 = [&](float (&s)[64], int kt) {
      issue_s_v17<BF16>(s, q_lo, k_lo0 + (uint32_t)((base + kt) % NST) * (TILE_BYTES >> 4), hi);
    };
    auto issue_pv17 = [&](int kt) {
      issue_pv_v17<BF16>(o, pf, v_lo0 + (uint32_t)((base + kt) % NST) * (TILE_BYTES >> 4), hi);
    };
    {
      float s[64];
      first_s(s, [&](float (&s0)[64]) { issue_s17(s0, 0); });
      float ps0, ps1;
      softmax_tile_v17(s, p.scale_log2, m0, m1, a0, a1, ps0, ps1, moved);
      l0 = ps0, l1 = ps1; /* O is zero */
      pack_p<BF16>(s, pf);
    }
    auto step17 = [&](int j, auto masked) {
      float s[64];
      pair_s_pv(s, j, pf, [&](float (&sj)[64]) {
        issue_s17(sj, j);
        issue_pv17(j - 1);
      });
      if (decltype(masked)::value) mask(s, j);
      float ps0, ps1;
      softmax_tile_v17(s, p.scale_log2, m0, m1, a0, a1, ps0, ps1, moved);
      mbar_arrive_if(kempty((base + j) % NST), releaser && !(ps0 + ps1 < 0.f));
      mbar_arrive_if(qempty, releaser && j == n_kt - 1);
      wgmma_wait<0>();
      reg_fence_op(o, pf);
      mbar_arrive_if(vempty((base + j - 1) % NST), releaser);
      if (moved) rescale_o(o, a0, a1);
      l0 = l0 * a0 + ps0;
      l1 = l1 * a1 + ps1;
      pack_p<BF16>(s, pf);
    };
    const int mid = max(1, min(first_masked, n_kt));
    for (int j = 1; j < mid; j++) step17(j, std::false_type());
    for (int j = mid; j < n_kt; j++) step17(j, std::true_type());
    last_pv(pf, [&] { issue_pv17(n_kt - 1); });
    continue;
  }
  /* Versions 15 and 16 (pipelines 4-7) keep their own copy of the first
   * tile, the turn and the last P V: written with first_s, pair_s_pv and
   * last_pv, ptxas allocated their registers otherwise (pipeline 5 spilled
   * 8 bytes) and pipeline 5 read 0.95x its old build (median of 13 shapes,
   * one call; kernels/NOTES.md 20). These baselines stay as measured. */
  /* Iteration 0: S_0 alone (Q arrived with K_0; with TMA on its own barrier). */
  {
    if (TMA) mbar_wait(qfull, (uint32_t)(k & 1));
    kready(0);
    if (PINGPONG) named_bar_sync(my_bar);
    float s[64];
    wgmma_fence();
    issue_s(s, 0);
    if (PINGPONG) named_bar_arrive(other_bar);
    wgmma_wait<0>();
    reg_fence(s);
    mbar_arrive_if(kempty(base % NST), releaser);
    mbar_arrive_if(qempty, releaser && n_kt == 1);
    if (first_masked == 0) mask(s, 0);
    float a0, a1, ps0, ps1;
    softmax(s, a0, a1, ps0, ps1);
    finish(s, 0.f, 0.f, ps0, ps1);
  }
  /* Iteration j >= 1: wait for K_j and V_{j-1} (no branch may sit between
   * a wgmma's issue and its wait, so both waits come first), issue both
   * products, free K_j's buffer (and Q after the last S) once S_j is done
   * and V_{j-1}'s once P V is. */
  auto step = [&](int j, auto masked) {
    kready(j);
    vready(j - 1);
    if (PINGPONG) named_bar_sync(my_bar);
    float s[64];
    reg_fence_op(o, pf);
    wgmma_fence();
    issue_s(s, j);
    issue_pv(j - 1);
    if (PINGPONG) named_bar_arrive(other_bar);
    wgmma_wait<1>();
    reg_fence(s);
    mbar_arrive_if(kempty((base + j) % NST), releaser);
    mbar_arrive_if(qempty, releaser && j == n_kt - 1);
    if (decltype(masked)::value) mask(s, j);
    float a0, a1, ps0, ps1;
    softmax(s, a0, a1, ps0, ps1);
    /* The exponents and sums before the wait (version 14: else ptxas sinks
     * them below it and the softmax no longer overlaps P V). */
    reg_fence(s);
    asm volatile("" : "+f"(ps0), "+f"(ps1)::"memory");
    wgmma_wait<0>();
    reg_fence_op(o, pf);
    mbar_arrive_if(vempty((base + j - 1) % NST), releaser);
    finish(s, a0, a1, ps0, ps1);
  };
  const int mid = max(1, min(first_masked, n_kt));
  for (int j = 1; j < mid; j++) step(j, std::false_type());
  for (int j = mid; j < n_kt; j++) step(j, std::true_type());
  /* The last P V. */
  vready(n_kt - 1);
  if (PINGPONG) named_bar_sync(my_bar);
  reg_fence_op(o, pf);
  wgmma_fence();
  issue_pv(n_kt - 1);
  if (PINGPONG) named_bar_arrive(other_bar);
  wgmma_wait<0>();
  reg_fence(o);
  mbar_arrive_if(vempty((base + n_kt - 1) % NST), releaser);
  store_rows<BF16>(p, o, m0, m1, l0, l1, r, hh, qbase + wrow + warp * 16, lane);
  base += n_kt;
  }
  if (PINGPONG && cw == 0) named_bar_sync(1); /* warpgroup 2's last arrival */
#else
  (void)p;
  __trap();
#endif
}

/* The four maps of pipelines 6 and 7 over this launch's pools. The
 * [block x KV head] extent is left at its largest: the block table, not the
 * map, bounds the blocks read. cuTensorMapEncodeTiled is a driver entry
 * point, fetched once per context through the runtime. */
infsim_status encode_kv_maps(ik_cuda *c, const ik_prefill_params &p, int reqs, bool fused, ik_kv_maps *maps,
                             infsim_error *err) {
  typedef CUresult (*encode_fn)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *, const cuuint64_t *,
                                const cuuint64_t *, const cuuint32_t *, const cuuint32_t *, CUtensorMapInterleave,
                                CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
  if (!c->tmap_encode) {
    cudaDriverEntryPointQueryResult q;
    IK_CUDA(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &c->tmap_encode, 12000, cudaEnableDefault, &q));
    if (q != cudaDriverEntryPointSuccess || !c->tmap_encode)
      return infsim_fail(err, INFSIM_ERUN, "kernels: prefill: cuTensorMapEncodeTiled not found in the driver");
  }
  const encode_fn encode = (encode_fn)c->tmap_encode;
  const int total = p.past + p.new_tokens;
  const cuuint32_t box[3] = {64, 16, 1}, estride[3] = {1, 1, 1};
  const cuuint64_t strides[2] = {(cuuint64_t)D * 2, (cuuint64_t)p.bt * D * 2};
  for (int i = 0; i < 4; i++) {
    const cuuint64_t dims[3] = {(cuuint64_t)D, (cuuint64_t)(i < 2 ? p.bt : (total - 1) % p.bt + 1), 0x7fffffffull};
    CUtensorMap *m = i == 0 ? &maps->k : i == 1 ? &maps->v : i == 2 ? &maps->k_tail : &maps->v_tail;
    const CUresult r = encode(m, CU_TENSOR_MAP_DATA_TYPE_UINT16, 3, (void *)(i % 2 ? p.v_pool : p.k_pool), dims,
                              strides, box, estride, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                              CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS)
      return infsim_fail(err, INFSIM_ERUN, "kernels: prefill: cuTensorMapEncodeTiled failed (%d) for map %d", (int)r, i);
  }
  if (fused) {
    /* k_new is [request][new token][KV head][128 dims]; a box is 64 dims x
     * one head x 16 tokens (one run, the pool boxes' shared layout), and
     * the token extent ends at the request's last new token. */
    const cuuint32_t box4[4] = {64, 1, 16, 1}, estride4[4] = {1, 1, 1, 1};
    const cuuint64_t dims4[4] = {(cuuint64_t)D, (cuuint64_t)p.g, (cuuint64_t)p.new_tokens, (cuuint64_t)reqs};
    const cuuint64_t strides4[3] = {(cuuint64_t)D * 2, (cuuint64_t)p.g * D * 2, (cuuint64_t)p.new_tokens * p.g * D * 2};
    for (int i = 0; i < 2; i++) {
      const CUresult r = encode(i ? &maps->v_new : &maps->k_new, CU_TENSOR_MAP_DATA_TYPE_UINT16, 4,
                                (void *)(i ? p.v_new : p.k_new), dims4, strides4, box4, estride4,
                                CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
      if (r != CUDA_SUCCESS)
        return infsim_fail(err, INFSIM_ERUN, "kernels: prefill: cuTensorMapEncodeTiled failed (%d) for new map %d",
                           (int)r, i);
    }
  }
  return INFSIM_OK;
}

/* One CTA per (query tile, head, request), or (persist) one per SM over all
 * of them. prefill_ready bits 10-13 (prefill_sm90.cu names the others). */
template <bool BF16, bool POW2>
infsim_status launch_ws(ik_cuda *c, const ik_prefill_params &p, int reqs, bool persist, bool tma, bool v17,
                        bool v18, bool grouped, bool fused, infsim_error *err) {
  constexpr bool PP = IK_SM90_PINGPONG != 0;
  auto kern = fused ? (grouped   ? prefill_sm90_ws_kernel<BF16, POW2, PP, false, true, true, true, true, true>
                       : persist ? prefill_sm90_ws_kernel<BF16, POW2, PP, true, true, true, true, false, true>
                                 : prefill_sm90_ws_kernel<BF16, POW2, PP, false, true, true, true, false, true>)
              : grouped ? prefill_sm90_ws_kernel<BF16, POW2, PP, false, true, true, true, true>
              : v18   ? (persist ? prefill_sm90_ws_kernel<BF16, POW2, PP, true, true, true, true, false>
                                 : prefill_sm90_ws_kernel<BF16, POW2, PP, false, true, true, true, false>)
              : v17   ? (persist ? prefill_sm90_ws_kernel<BF16, POW2, PP, true, true, true, false, false>
                                 : prefill_sm90_ws_kernel<BF16, POW2, PP, false, true, true, false, false>)
              : tma   ? (persist ? prefill_sm90_ws_kernel<BF16, POW2, PP, true, true, false, false, false>
                                 : prefill_sm90_ws_kernel<BF16, POW2, PP, false, true, false, false, false>)
                      : (persist ? prefill_sm90_ws_kernel<BF16, POW2, PP, true, false, false, false, false>
                                 : prefill_sm90_ws_kernel<BF16, POW2, PP, false, false, false, false, false>);
  /* Bits 10-17 versions 15 and 16, 18-21 version 17, 22-25 version 18,
   * 26-27 its grouped order, 28-31 its fused append (one CTA per tile or per
   * SM), 32-33 the fused append in groups of heads. */
  const uint64_t bit = 1ull << (fused ? (grouped ? 32 : 28 + (persist ? 2 : 0)) + (POW2 ? 0 : 1)
                        : grouped ? 26 + (POW2 ? 0 : 1)
                        : v18   ? 22 + (persist ? 2 : 0) + (POW2 ? 0 : 1)
                        : v17   ? 18 + (persist ? 2 : 0) + (POW2 ? 0 : 1)
                                : 10 + (persist ? 2 : 0) + (tma ? 4 : 0) + (POW2 ? 0 : 1));
  if (!(c->prefill_ready[BF16 ? 1 : 0] & bit)) {
    IK_CUDA(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM_WS));
    c->prefill_ready[BF16 ? 1 : 0] |= bit;
  }
  ik_kv_maps maps;
  memset(&maps, 0, sizeof maps);
  if (tma || v17 || v18) {
    const infsim_status st = encode_kv_maps(c, p, reqs, fused, &maps, err);
    if (st != INFSIM_OK) return st;
  }
  const int64_t nq = (p.new_tokens + QT - 1) / QT, work = nq * p.h * reqs;
  dim3 grid((unsigned)nq, (unsigned)p.h, (unsigned)reqs);
  if (persist) grid = dim3((unsigned)(work < c->sm_count ? work : c->sm_count), 1, 1);
  kern<<<grid, WS_THREADS, SMEM_WS, c->stream>>>(p, reqs, maps);
  IK_LAUNCHED();
  return INFSIM_OK;
}

} /* namespace */

infsim_status ik_prefill_sm90_ws(ik_cuda *c, const ik_prefill_params &p, bool bf16, int reqs, bool persist, bool tma,
                                 bool v17, bool v18, bool grouped, bool fused, infsim_error *err) {
  const bool pow2 = p.bt_shift >= 0;
  if (bf16)
    return pow2 ? launch_ws<true, true>(c, p, reqs, persist, tma, v17, v18, grouped, fused, err)
                : launch_ws<true, false>(c, p, reqs, persist, tma, v17, v18, grouped, fused, err);
  return pow2 ? launch_ws<false, true>(c, p, reqs, persist, tma, v17, v18, grouped, fused, err)
              : launch_ws<false, false>(c, p, reqs, persist, tma, v17, v18, grouped, fused, err);
}
