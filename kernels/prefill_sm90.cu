/*
** prefill_sm90.cu: the Hopper causal prefill attention kernel (sm_90a
** warpgroup MMAs), same contract as the sm_80 kernel in prefill.cu, which
** appends the new K/V to the pool before launching this one.
**
** One CTA per (128-query tile, query head, request), two warpgroups of 64
** query rows each. Per 128-key tile: S = Q K^T by eight m64n128k16 wgmmas
** reading Q and K from shared memory, the online softmax in registers (base
** 2, the scale folded into each exponent's FFMA), then O += P V by eight
** m64n128k16 wgmmas with P from registers and V read transposed from
** shared memory. K/V tiles (32 KiB each) are double-buffered with cp.async
** through the block table (16-key runs are contiguous in the pool, so the
** bulk tensor copy engine would need one copy per run: not worth it here).
** 160 KiB of shared memory, one CTA per SM. Query tiles run heaviest first.
** The next tile's loads are issued while S = Q K^T runs, and the two
** warpgroups take turns issuing it (ping-pong, IK_SM90_PINGPONG, default
** on), so one's softmax overlaps the other's products. Measurements of each
** step: kernels/NOTES.md.
**
** Why wgmma: mma.sync on H100 peaks near 2/3 of the tensor-core rate and
** every fragment passes through registers via ldmatrix; wgmma reads both
** operands of S = Q K^T straight from shared memory and runs at full rate.
**
** A second kernel below (version 14, pipeline 2) keeps three K and three
** V tiles and runs the softmax of one key tile under the P V product of
** the one before; this one stays as pipeline 1. Version 15 (the default,
** pipelines 4 and 5) is in prefill_sm90_ws.cu.
**
** Built for sm_90a only in effect: in other passes the body traps, and
** prefill.cu never launches it on a device other than compute capability 9.0.
*/
#include "prefill_sm90.cuh"

namespace {

/* Q, then 2 stages of (K, V); plus slack to align the base to 1024 bytes. */
constexpr int SMEM = (int)(Q_BYTES + 2 * 2 * TILE_BYTES) + 1024;

template <bool BF16, bool POW2, bool PINGPONG>
__global__ void __launch_bounds__(THREADS, 1) prefill_sm90_kernel(ik_prefill_params p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const uint32_t sbase = (smem_addr(smem_raw) + 1023u) & ~1023u;
  const uint32_t q_s = sbase;
  const uint32_t kv_s = sbase + Q_BYTES; /* stage s: K at kv_s + 2 s TILE_BYTES, V after it */

  const int tid = threadIdx.x, wg = tid / 128, warp = (tid % 128) / 32, lane = tid % 32;
  const int qt = gridDim.x - 1 - blockIdx.x;
  const int hh = blockIdx.y, kh = hh / p.group;
  const int64_t r = blockIdx.z;
  const int total = p.past + p.new_tokens;
  const int qbase = qt * QT;
  const int last_pos = min(p.past + qbase + QT - 1, total - 1);
  const int n_kt = last_pos / KT + 1;
  const int32_t *table = p.block_table + r * p.bt_stride;

  /* Q rows past new_tokens are zero-filled (their outputs are not written). */
#pragma unroll
  for (int i = 0; i < QT * 16 / THREADS; i++) {
    const int c = tid + THREADS * i, row = c >> 4, ch = c & 15;
    const bool ok = qbase + row < p.new_tokens;
    const uint16_t *src = p.q + (ok ? ((r * p.new_tokens + qbase + row) * p.h + hh) * D + ch * 8 : 0);
    cp_async16_s(q_s + sw128(QT, row, ch), src, ok);
  }
  /* Branch-free (it runs between a wgmma's issue and its wait, where
   * control flow would make ptxas serialize the wgmmas): keys past the end,
   * and a tile past the last (kt == n_kt), read a valid key and zero-fill. */
  auto issue = [&](int kt) {
    const uint32_t ks = kv_s + (kt & 1) * 2 * TILE_BYTES, vs = ks + TILE_BYTES;
#pragma unroll
    for (int i = 0; i < KT * 16 / THREADS; i++) {
      const int c = tid + THREADS * i, row = c >> 4, ch = c & 15;
      const int key = kt * KT + row;
      const bool ok = kt < n_kt && key < total;
      const int kc = min(key, total - 1);
      const int bi = POW2 ? kc >> p.bt_shift : kc / p.bt;
      const int slot = POW2 ? kc & (p.bt - 1) : kc % p.bt;
      const int64_t off = ((int64_t)table[bi] * p.g + kh) * (int64_t)(p.bt * D) + slot * D + ch * 8;
      cp_async16_s(ks + sw128(KT, row, ch), p.k_pool + off, ok);
      cp_async16_s(vs + sw128(KT, row, ch), p.v_pool + off, ok);
    }
    cp_async_commit();
  };
  issue(0); /* the group carries Q too */

  const int wrow = wg * 64; /* first row of this warpgroup in the CTA tile */
  const int wg_first = min(p.past + qbase + wrow, total - 1);
  const int wg_last = min(p.past + qbase + wrow + 63, total - 1);
  /* The two rows of each accumulator fragment this thread holds. */
  const int pos0 = min(p.past + qbase + wrow + warp * 16 + lane / 4, total - 1);
  const int pos1 = min(p.past + qbase + wrow + warp * 16 + lane / 4 + 8, total - 1);

  float o[64];
#pragma unroll
  for (int i = 0; i < 64; i++) o[i] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;

  /* One barrier per tile: after it, every thread is done with tile kt - 1
   * (its wgmmas were waited for), so its stage can take tile kt + 1. The
   * loads of tile kt + 1 are issued behind S = Q K^T of tile kt, whose
   * tensor-core time hides their block-table lookups.
   * PINGPONG: the warpgroups take turns issuing S = Q K^T (named barriers
   * 1 and 2: each waits on its own, then arrives on the other's), so one
   * warpgroup's softmax runs while the other's matrix products do. */
  const int my_bar = 1 + wg, other_bar = 2 - wg;
  if (PINGPONG && wg == 1) named_bar_arrive(1); /* warpgroup 0 goes first */
  for (int kt = 0; kt < n_kt; kt++) {
    cp_async_wait<0>();
    fence_proxy_async();
    __syncthreads();
    const uint32_t ks = kv_s + (kt & 1) * 2 * TILE_BYTES, vs = ks + TILE_BYTES;
    if (PINGPONG) named_bar_sync(my_bar);
    if (kt * KT > wg_last) { /* no key of the tile is visible to this warpgroup */
      if (PINGPONG) named_bar_arrive(other_bar);
      issue(kt + 1);
      continue;
    }
    {
      float s[64];
      wgmma_fence();
      issue_s_ss<BF16>(s, q_s + wrow * 128, ks);
      if (PINGPONG) named_bar_arrive(other_bar);
      issue(kt + 1);
      wgmma_wait<0>();
      reg_fence(s);

      /* Scores stay unscaled until the exponent: the launcher sends only
       * positive scales here, so max(s) * scale = max(s * scale) and each
       * exponent is one FFMA. Masking only on tiles that cross the diagonal. */
      if (kt * KT + KT - 1 > wg_first) mask_tile(s, kt, lane, pos0, pos1);
      /* The softmax and the rescale stay written out here: through
       * softmax_tile and finish_tile (prefill_sm90.cuh) ptxas orders this
       * kernel's instructions differently (same registers, no spills, but
       * another schedule), so they would not be the same kernel. */
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
      /* Key 0 is visible to every row, so after tile 0 each m is finite and a
       * fully masked row in a later tile keeps its m (exp2(-inf) = 0). */
      const float mn0 = fmaxf(m0, mx0 * p.scale_log2), mn1 = fmaxf(m1, mx1 * p.scale_log2);
      const float a0 = fast_exp2(m0 - mn0), a1 = fast_exp2(m1 - mn1);
      m0 = mn0;
      m1 = mn1;
      float ps0 = 0.f, ps1 = 0.f;
      uint32_t pf[KT / 16][4];
#pragma unroll
      for (int nt = 0; nt < KT / 8; nt++) {
#pragma unroll
        for (int e = 0; e < 2; e++) {
          s[nt * 4 + e] = fast_exp2(fmaf(s[nt * 4 + e], p.scale_log2, -mn0));
          s[nt * 4 + 2 + e] = fast_exp2(fmaf(s[nt * 4 + 2 + e], p.scale_log2, -mn1));
          ps0 += s[nt * 4 + e];
          ps1 += s[nt * 4 + 2 + e];
        }
      }
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
      reg_fence(o);
      wgmma_fence();
      issue_pv_tile<BF16>(o, pf, vs);
      wgmma_wait<0>();
      reg_fence_op(o, pf);
    }
  }

  cp_async_wait<0>(); /* the zero-filled tile past the last */
  if (PINGPONG && wg == 0) named_bar_sync(1); /* warpgroup 1's last arrival */
  store_rows<BF16>(p, o, m0, m1, l0, l1, r, hh, qbase + wrow + warp * 16, lane);
#else
  (void)p;
  __trap();
#endif
}

/* Version 14 (kernels/NOTES.md): the same CTA tile with three K and three V
 * buffers and the softmax of key tile j run while O += P_{j-1} V_{j-1} is on
 * the tensor cores (FlashAttention-3's intra-warpgroup overlap, Shah et al.
 * 2024, section 3.2 and its Algorithm 2: S_j and P_{j-1} V_{j-1} issued
 * back to back, the rescale of O after both complete). V_j is read one
 * iteration after K_j, so K and V rotate separately: iteration j loads
 * K_{j+2} and V_{j+1} into the buffers that K_{j-1} and V_{j-2} left (their
 * products were waited for in iteration j - 1, and the barrier at the top
 * of iteration j says every thread is past it), two iterations ahead of
 * their use. Tiles that cross the diagonal run a second copy of the loop
 * body with the mask (no branch between a wgmma's issue and its wait).
 * QREG: Q is held in registers as the wgmmas' A operand (read once from
 * shared memory), so S = Q K^T reads only K from shared memory.
 * 32 + 6 x 32 KiB + 1 KiB alignment = 225 KiB of shared memory. */
constexpr int RUN_SLOTS = 4; /* staged pool offsets of the 8 16-key runs of a tile: tiles j+1 .. j+3 and one spare */
constexpr int SMEM_OV = (int)(Q_BYTES + 2 * NST * TILE_BYTES) + RUN_SLOTS * 8 * 8 + 1024;


template <bool BF16, bool POW2, bool PINGPONG, bool QREG>
__global__ void __launch_bounds__(THREADS, 1) prefill_sm90_ov_kernel(ik_prefill_params p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const uint32_t sbase = (smem_addr(smem_raw) + 1023u) & ~1023u;
  const uint32_t q_s = sbase, k_s = sbase + Q_BYTES, v_s = k_s + NST * TILE_BYTES;
  const uint32_t run_s = v_s + NST * TILE_BYTES;
  const int64_t *runoff = (const int64_t *)(smem_raw + (run_s - smem_addr(smem_raw)));

  const int tid = threadIdx.x, wg = tid / 128, warp = (tid % 128) / 32, lane = tid % 32;
  const int qt = gridDim.x - 1 - blockIdx.x;
  const int hh = blockIdx.y, kh = hh / p.group;
  const int64_t r = blockIdx.z;
  const int total = p.past + p.new_tokens;
  const int qbase = qt * QT;
  const int last_pos = min(p.past + qbase + QT - 1, total - 1);
  const int n_kt = last_pos / KT + 1;
  const int32_t *table = p.block_table + r * p.bt_stride;

#pragma unroll
  for (int i = 0; i < QT * 16 / THREADS; i++) {
    const int c = tid + THREADS * i, row = c >> 4, ch = c & 15;
    const bool ok = qbase + row < p.new_tokens;
    const uint16_t *src = p.q + (ok ? ((r * p.new_tokens + qbase + row) * p.h + hh) * D + ch * 8 : 0);
    cp_async16_s(q_s + sw128(QT, row, ch), src, ok);
  }
  /* Branch-free, as in the kernel above: keys past the end and tiles past
   * the last read a valid key and zero-fill. */
  auto load = [&](uint32_t base, const uint16_t *pool, int kt) {
    const uint32_t dst = base + (uint32_t)(kt % NST) * TILE_BYTES;
#pragma unroll
    for (int i = 0; i < KT * 16 / THREADS; i++) {
      const int c = tid + THREADS * i, row = c >> 4, ch = c & 15;
      const int key = kt * KT + row;
      const bool ok = kt < n_kt && key < total;
      const int kc = min(key, total - 1);
      const int bi = POW2 ? kc >> p.bt_shift : kc / p.bt;
      const int slot = POW2 ? kc & (p.bt - 1) : kc % p.bt;
      const int64_t off = ((int64_t)table[bi] * p.g + kh) * (int64_t)(p.bt * D) + slot * D + ch * 8;
      cp_async16_s(dst + sw128(KT, row, ch), pool + off, ok);
    }
  };
  /* Pool offset (elements) of run i (keys 16 i .. 16 i + 15) of key tile
   * kt: runs past the last key take the last key's run, so every address
   * stays inside a block the table names (those rows are zero-filled). */
  const int last_run = (total - 1) & ~15;
  auto run_offset = [&](int32_t block, int kt, int i) {
    const int start = min(kt * KT + 16 * i, last_run);
    const int slot = POW2 ? start & (p.bt - 1) : start % p.bt;
    return ((int64_t)block * p.g + kh) * (int64_t)(p.bt * D) + slot * D;
  };
  auto run_block = [&](int kt, int i) {
    const int start = min(kt * KT + 16 * i, last_run);
    return table[POW2 ? start >> p.bt_shift : start / p.bt];
  };
  load(k_s, p.k_pool, 0);
  cp_async_commit(); /* group: Q, K_0 */
  load(k_s, p.k_pool, 1);
  load(v_s, p.v_pool, 0);
  cp_async_commit(); /* group: K_1, V_0 */
  /* Runs of tiles 0-2 staged for the loads of iterations 0-1 (the barrier
   * at the top of iteration 0 publishes them); iteration j stages tile
   * j + 3, so no load waits on a block-table read of its own (at 255
   * registers ptxas chained each table read to its copy). */
  if (tid < 3 * 8) {
    const int kt = tid / 8, i = tid % 8;
    *(int64_t *)(smem_raw + (run_s - smem_addr(smem_raw)) + 8 * (kt * 8 + i)) = run_offset(run_block(kt, i), kt, i);
  }
  /* Copies of a tile from its staged runs: thread's row in each run and chunk
   * are fixed (row = tid / 16 + 16 i, chunk = tid % 16). */
  auto load_staged = [&](uint32_t base, const uint16_t *pool, int kt) {
    const uint32_t dst = base + (uint32_t)(kt % NST) * TILE_BYTES;
    const int64_t *ro = runoff + (kt % RUN_SLOTS) * 8;
    const int rr = tid >> 4, ch = tid & 15;
#pragma unroll
    for (int i = 0; i < KT * 16 / THREADS; i++) {
      const int row = rr + 16 * i;
      const bool ok = kt < n_kt && kt * KT + row < total;
      cp_async16_s(dst + sw128(KT, row, ch), pool + ro[i] + rr * D + ch * 8, ok);
    }
  };

  const int wrow = wg * 64;
  const int pos0 = min(p.past + qbase + wrow + warp * 16 + lane / 4, total - 1);
  const int pos1 = min(p.past + qbase + wrow + warp * 16 + lane / 4 + 8, total - 1);
  /* First key tile that crosses the CTA's diagonal (tile kt needs the mask
   * when its last key, kt KT + KT - 1, is past the first row's position).
   * One split for the whole CTA, not one per warpgroup: the loop below is
   * two copies (unmasked, masked), and top()'s barrier 0 is `bar.sync`, the
   * aligned form, which all 256 threads must reach through the same
   * instruction (PTX ISA, "bar"). Split per warpgroup, the warpgroups ran
   * in different copies whenever their first rows' positions fell in
   * different key tiles (64 cached tokens, then a 200-token chunk), and
   * compute-sanitizer's synccheck reported divergent threads there.
   * Warpgroup 1 now masks at most one tile that needs no mask (a no-op). */
  const int first_masked = (min(p.past + qbase, total - 1) + 1) / KT;

  float o[64];
#pragma unroll
  for (int i = 0; i < 64; i++) o[i] = 0.f;
  uint32_t pf[KT / 16][4];
  uint32_t qf[QREG ? 8 : 1][4];
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
  const int my_bar = 1 + wg, other_bar = 2 - wg;
  if (PINGPONG && wg == 1) named_bar_arrive(1);

  /* Top of iteration j: K_j and V_{j-1} landed (each thread waits for its own
   * copies: all groups but the newest), then every thread's copies are
   * visible to the tensor cores after the fence and the barrier. */
  auto top = [&]() {
    cp_async_wait<1>();
    fence_proxy_async();
    named_bar_sync(0);
    if (PINGPONG) named_bar_sync(my_bar);
  };
  auto issue_s = [&](float (&s)[64], int kt) {
    const uint32_t ks = k_s + (uint32_t)(kt % NST) * TILE_BYTES;
    if (QREG) {
#pragma unroll
      for (int kk = 0; kk < 8; kk++) {
        const uint64_t db = wg_desc(ks + (kk >> 2) * (KT * 128) + (kk & 3) * 32, 16, 1024);
        wgmma_rs_m64n128k16_sd<BF16, 0>(s, qf[QREG ? kk : 0], db, kk > 0);
      }
      wgmma_commit();
    } else {
      issue_s_ss<BF16>(s, q_s + wrow * 128, ks);
    }
  };
  auto issue_pv = [&](int kt) { issue_pv_tile<BF16>(o, pf, v_s + (uint32_t)(kt % NST) * TILE_BYTES); };
  auto load_ahead = [&](int j) {
    if (IK_SM90_DIAG != 1 || j == 0) {
      load_staged(k_s, p.k_pool, j + 2);
      load_staged(v_s, p.v_pool, j + 1);
    }
    cp_async_commit();
  };
  /* Tile j + 3's runs: every thread reads run tid % 8's block (one line for
   * all) right after its products are issued, threads 0-7 store the offset
   * after the softmax (predicated: no branch while wgmmas are in flight). */
  auto stage_store = [&](int j, int32_t block) {
    const int64_t v = run_offset(block, j + 3, tid & 7);
    const uint32_t at = run_s + 8u * (uint32_t)(((j + 3) % RUN_SLOTS) * 8 + (tid & 7));
    asm volatile("{\n.reg .pred q;\nsetp.lt.s32 q, %2, 8;\n@q st.shared.b64 [%0], %1;\n}\n" ::"r"(at), "l"(v), "r"(tid)
                 : "memory");
  };
  auto mask = [&](float (&s)[64], int kt) { mask_tile(s, kt, lane, pos0, pos1); };
  auto softmax = [&](float (&s)[64], float &a0, float &a1, float &ps0, float &ps1) {
    softmax_tile(s, p.scale_log2, m0, m1, a0, a1, ps0, ps1);
  };
  auto finish = [&](float (&s)[64], float a0, float a1, float ps0, float ps1) {
    finish_tile<BF16>(s, a0, a1, ps0, ps1, l0, l1, pf, o);
  };

  /* Iteration 0: S_0 alone (no P V yet; O is zero, so no rescale). */
  {
    top();
    if (QREG) {
      /* A fragment of k-step kk: rows g and g + 8 of the warp's 16, columns
       * 16 kk + 2 t (+ 8), t = lane % 4 (mma.sync m16n8k16's A layout). */
      const int row = wrow + warp * 16 + lane / 4, col = 2 * (lane % 4);
#pragma unroll
      for (int kk = 0; kk < (QREG ? 8 : 0); kk++) {
#pragma unroll
        for (int x = 0; x < 4; x++) {
          const int rr = row + 8 * (x & 1), cc = 16 * kk + col + 8 * (x >> 1);
          const uint32_t at = q_s + sw128(QT, rr, cc >> 3) + (cc & 7) * 2;
          asm volatile("ld.shared.b32 %0, [%1];\n" : "=r"(qf[QREG ? kk : 0][x]) : "r"(at));
        }
      }
    }
    float s[64];
    wgmma_fence();
    issue_s(s, 0);
    if (PINGPONG) named_bar_arrive(other_bar);
    const int32_t blk = run_block(3, tid & 7);
    load_ahead(0);
    wgmma_wait<0>();
    reg_fence(s);
    if (first_masked == 0) mask(s, 0);
    float a0, a1, ps0, ps1;
    softmax(s, a0, a1, ps0, ps1);
    stage_store(0, blk);
    finish(s, 0.f, 0.f, ps0, ps1);
  }
  /* Iteration j >= 1: S_j and P_{j-1} V_{j-1} issued together; S_j's softmax
   * while the second runs; O rescaled once both are done. */
  auto step = [&](int j, auto masked) {
    top();
    float s[64];
    reg_fence_op(o, pf);
    wgmma_fence();
    issue_s(s, j);
    issue_pv(j - 1);
    if (PINGPONG) named_bar_arrive(other_bar);
    const int32_t blk = run_block(j + 3, tid & 7);
    load_ahead(j);
    wgmma_wait<1>();
    reg_fence(s);
    if (decltype(masked)::value) mask(s, j);
    float a0, a1, ps0, ps1;
    softmax(s, a0, a1, ps0, ps1);
    /* The exponents and sums before the wait, or ptxas sinks most of them
     * below it and the softmax no longer overlaps P V. */
    reg_fence(s);
    asm volatile("" : "+f"(ps0), "+f"(ps1)::"memory");
    stage_store(j, blk);
    wgmma_wait<0>();
    reg_fence_op(o, pf);
    finish(s, a0, a1, ps0, ps1);
  };
  const int mid = max(1, min(first_masked, n_kt));
  for (int j = 1; j < mid; j++) step(j, std::false_type());
  for (int j = mid; j < n_kt; j++) step(j, std::true_type());
  /* The last P V, after the barrier that makes V_{n-1} visible. */
  top();
  reg_fence_op(o, pf);
  wgmma_fence();
  issue_pv(n_kt - 1);
  if (PINGPONG) named_bar_arrive(other_bar);
  wgmma_wait<0>();
  reg_fence(o);
  cp_async_wait<0>(); /* the zero-filled tiles past the last */
  if (PINGPONG && wg == 0) named_bar_sync(1);

  store_rows<BF16>(p, o, m0, m1, l0, l1, r, hh, qbase + wrow + warp * 16, lane);
#else
  (void)p;
  __trap();
#endif
}

template <bool BF16, bool POW2>
infsim_status launch(ik_cuda *c, const ik_prefill_params &p, int reqs, int pipeline, infsim_error *err) {
  /* prefill_ready bits 0-3 belong to prefill.cu; 4-5 version 6, 6-9 version 14, 10-33 versions 15-18
   * (prefill_sm90_ws.cu). */
  auto kern = prefill_sm90_kernel<BF16, POW2, IK_SM90_PINGPONG != 0>;
  int smem = SMEM, bit = 1 << (POW2 ? 4 : 5);
  if (pipeline == 2) {
    kern = prefill_sm90_ov_kernel<BF16, POW2, IK_SM90_PINGPONG != 0, false>;
    smem = SMEM_OV, bit = 1 << (POW2 ? 6 : 7);
  } else if (pipeline == 3) {
    kern = prefill_sm90_ov_kernel<BF16, POW2, IK_SM90_PINGPONG != 0, true>;
    smem = SMEM_OV, bit = 1 << (POW2 ? 8 : 9);
  } else if (pipeline >= 4) {
    return ik_prefill_sm90_ws(c, p, BF16, reqs, (pipeline % 2 == 1 && pipeline < 12) || pipeline == 14,
                              pipeline >= 6, pipeline >= 8, pipeline >= 10, pipeline == 12 || pipeline == 15, pipeline >= 13,
                              err);
  }
  if (!(c->prefill_ready[BF16 ? 1 : 0] & bit)) {
    IK_CUDA(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    c->prefill_ready[BF16 ? 1 : 0] |= bit;
  }
  dim3 grid((unsigned)((p.new_tokens + QT - 1) / QT), (unsigned)p.h, (unsigned)reqs);
  kern<<<grid, THREADS, smem, c->stream>>>(p);
  IK_LAUNCHED();
  return INFSIM_OK;
}

} /* namespace */

infsim_status ik_prefill_sm90(ik_cuda *c, const ik_prefill_params &p, bool bf16, int reqs, int pipeline,
                              infsim_error *err) {
  const bool pow2 = p.bt_shift >= 0;
  if (bf16) return pow2 ? launch<true, true>(c, p, reqs, pipeline, err) : launch<true, false>(c, p, reqs, pipeline, err);
  return pow2 ? launch<false, true>(c, p, reqs, pipeline, err) : launch<false, false>(c, p, reqs, pipeline, err);
}
