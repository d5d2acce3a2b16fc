/*
** bench_decode_more.c: the kernel benchmarks added for issue 16, beside
** bench_kernels.c's: MA decode split counts at the 1-4 GiB shapes, remote
** partials merged inside MA decode against a separate merge launch, a mixed
** iteration (decodes + a prefill chunk) sequential against concurrent, and
** the L2 flush method against the decode time it reports.
*/
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_kernels.h"

/* A paged decode at 64/8 heads over up to 8 GiB of K + V (16-token
 * blocks, batch <= 256): pools, Q, outputs, block table and contexts, and
 * the host's block ids; dec_shape sets batch B at C tokens a request, its
 * blocks shuffled by seed, and gives the args (num_splits 0, auto). */
typedef struct {
  void *kp, *vp, *q, *out, *lse, *table, *ctx;
  int32_t *ids;
} dec_bufs;

enum { DEC_MAX_BATCH = 256 };
static const int64_t DEC_LIMIT_BYTES = 8LL << 30;

static dec_bufs dec_alloc(bench *b, uint64_t seed) {
  dec_bufs d;
  d.kp = balloc(b, DEC_LIMIT_BYTES / 2), d.vp = balloc(b, DEC_LIMIT_BYTES / 2);
  bfill(b, d.kp, INFSIM_KDTYPE_BF16, DEC_LIMIT_BYTES / 4, seed);
  bfill(b, d.vp, INFSIM_KDTYPE_BF16, DEC_LIMIT_BYTES / 4, seed + 1);
  d.q = balloc(b, DEC_MAX_BATCH * H70 * D * 2), d.out = balloc(b, DEC_MAX_BATCH * H70 * D * 4);
  d.lse = balloc(b, DEC_MAX_BATCH * H70 * 4);
  bfill(b, d.q, INFSIM_KDTYPE_BF16, DEC_MAX_BATCH * H70 * D, seed + 2);
  const int64_t max_blocks = DEC_LIMIT_BYTES / 2 / ((int64_t)G70 * D * 2) / 16;
  d.ids = malloc(sizeof *d.ids * (size_t)max_blocks);
  d.table = balloc(b, (int64_t)sizeof *d.ids * max_blocks), d.ctx = balloc(b, DEC_MAX_BATCH * 4);
  return d;
}

static infsim_ma_decode_args dec_shape(bench *b, dec_bufs *d, int64_t B, int64_t C, uint64_t seed) {
  int32_t ctxs[DEC_MAX_BATCH];
  for (int i = 0; i < B; i++) ctxs[i] = (int32_t)C;
  bupload(b, d->ctx, ctxs, B * 4);
  shuffle_ids(d->ids, B * C / 16, seed);
  bupload(b, d->table, d->ids, B * C / 16 * 4);
  infsim_ma_decode_args a = {.num_requests = (int32_t)B, .num_q_heads = H70, .num_kv_heads = G70, .head_dim = D,
                             .block_tokens = 16, .dtype = INFSIM_KDTYPE_BF16, .q = d->q, .k_pool = d->kp,
                             .v_pool = d->vp, .block_table = d->table, .block_table_stride = (int32_t)(C / 16),
                             .context_tokens = d->ctx, .max_context_tokens = (int32_t)C,
                             .softmax_scale = 0.08838834764f, .out = d->out, .lse = d->lse};
  return a;
}

static void dec_free(bench *b, dec_bufs *d) {
  free(d->ids);
  void *all[] = {d->kp, d->vp, d->q, d->out, d->lse, d->table, d->ctx};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) infsim_kernels_free(b->k, all[i]);
}

/* Split counts at the 70B shapes with 1-4 GiB of KV whose decode ran below
 * the rest on an H200 (issue 16: batch 32 at 8K, 8 at 64K, 1 at 512K):
 * auto against fixed counts around it, paged 16-token blocks, 64/8 heads. */
void bench_splits_big(bench *b) {
  const int64_t shapes[][2] = {{32, 8192}, {8, 65536}, {1, 524288}, {128, 8192}, {256, 1024}, {1, 1048576}};
  const int32_t few[] = {0, 1, 2, 3, 4, 5, 6, 8}, many[] = {0, 16, 24, 33, 48, 66, 99, 132, 198, 264};
  const int64_t per_token = (int64_t)G70 * D * 2;
  dec_bufs d = dec_alloc(b, 81);
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    const int64_t B = shapes[si][0], C = shapes[si][1], kv = 2 * B * C * per_token;
    infsim_ma_decode_args a = dec_shape(b, &d, B, C, (uint64_t)(B * 977 + C));
    const int32_t *counts = B == 1 ? many : few;
    const size_t n = B == 1 ? sizeof many / sizeof many[0] : sizeof few / sizeof few[0];
    for (size_t ci = 0; ci < n; ci++) {
      a.num_splits = counts[ci];
      infsim_kernel_timing t = btime(b, infsim_kernel_op_ma_decode, &a, 10, true);
      row_info r = {"decode_splits_big", "paged", "bf16", B, C, H70, G70, 16, counts[ci], 0, 0, 0, 0, (double)kv, 0};
      emit(b, &r, &t);
    }
  }
  dec_free(b, &d);
}

/* Decode then a separate merge launch over [local, remote ..] (the path the
 * fused merge replaces): the decode writes partial slot 0 of the merge's input. */
typedef struct {
  infsim_ma_decode_args *dec;
  infsim_merge_args *merge;
} decode_merge;

static infsim_status decode_then_merge_op(infsim_kernels *k, void *arg, infsim_error *err) {
  decode_merge *dm = arg;
  infsim_status st = infsim_kernels_ma_decode(k, dm->dec, err);
  return st == INFSIM_OK ? infsim_kernels_merge(k, dm->merge, err) : st;
}

/* The owner's paged MA decode (16-token shuffled blocks, 64/8 heads) with
 * R remote partials merged in the same launch (fp32 and fp16), against the
 * decode alone and against decode + a separate merge launch. Goal (issue
 * 16): the added time within 1.2x of reading the partials once at the copy
 * ceiling measured in this run, and <= 2% of the decode where the partials
 * are <= 1% of the KV bytes. Rows: kernel decode_fused, parts = R, bytes =
 * the partials' bytes (outputs + LSEs); a summary per point on stderr. */
static void fused(bench *b, bool warm);
void bench_fused(bench *b) { fused(b, false); }

/* The device copy ceiling of this run (read + write, 2 GiB), once; its
 * row beside the rows it is the yardstick of. */
static void measure_copy_ceiling(bench *b) {
  if (b->copy_gbps != 0) return;
  int64_t bytes = 2LL << 30;
  d2d c = {balloc(b, bytes), balloc(b, bytes), bytes, (cudaStream_t)infsim_kernels_native_stream(b->k)};
  measure_copy(b, &c);
  infsim_kernels_free(b->k, c.dst), infsim_kernels_free(b->k, c.src);
}

/* The fused-merge benches' inputs: paged KV pools, queries, outputs, and
 * `slots` partials of up to max_rows rows (fp32 outputs and LSEs in
 * [2, 9)), `slots - 1` of them also in fp16, all random. */
typedef struct {
  void *kp, *vp, *q, *lse, *out, *parts16;
  float *parts, *plse;
} fused_bufs;

static fused_bufs fused_alloc(bench *b, int64_t kv_bytes, int64_t max_rows, int slots) {
  fused_bufs f;
  f.kp = balloc(b, kv_bytes / 2), f.vp = balloc(b, kv_bytes / 2);
  bfill(b, f.kp, INFSIM_KDTYPE_BF16, kv_bytes / 4, 71);
  bfill(b, f.vp, INFSIM_KDTYPE_BF16, kv_bytes / 4, 72);
  f.q = balloc(b, max_rows * D * 2), f.lse = balloc(b, max_rows * 4), f.out = balloc(b, max_rows * D * 4);
  bfill(b, f.q, INFSIM_KDTYPE_BF16, max_rows * D, 73);
  f.parts = balloc(b, slots * max_rows * D * 4), f.plse = balloc(b, slots * max_rows * 4);
  f.parts16 = balloc(b, (slots - 1) * max_rows * D * 2);
  bfill(b, f.parts, INFSIM_KDTYPE_F32, slots * max_rows * D, 74);
  bfill(b, f.parts16, INFSIM_KDTYPE_F16, (slots - 1) * max_rows * D, 75);
  infsim_error err;
  if (infsim_kernels_fill_random(b->k, f.plse, INFSIM_KDTYPE_F32, slots * max_rows, 76, 2.0f, 9.0f, &err) !=
      INFSIM_OK)
    die("fill", &err);
  return f;
}

static void fused_free(bench *b, fused_bufs *f) {
  void *all[] = {f->kp, f->vp, f->q, f->lse, f->out, f->parts, f->plse, f->parts16};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) infsim_kernels_free(b->k, all[i]);
}

/* Where the fused merge's fixed ~0.5 us at batch 1-8 comes from: the same
 * decode alone and with R f32 partials, timed after the L2 flush (as
 * bench_fused) and without it (code, tables and partials left in L2 by
 * the warm-up), three alternating rounds. If the added time is the
 * remote path's code or data fetched cold after the flush, it shrinks
 * without the flush; if it is instructions executed, it stays. Only when
 * named (`--only fused_warm`). */
void bench_fused_warm(bench *b) { fused(b, true); }

static void fused(bench *b, bool warm) {
  const int64_t batches[] = {1, 8, 32, 128};
  const int64_t contexts[] = {1024, 8192, 65536};
  const int32_t remotes[] = {1, 2, 4, 8};
  const int64_t per_token = (int64_t)G70 * D * 2, limit = 8LL << 30;
  measure_copy_ceiling(b);
  const int64_t max_rows = 128 * H70;
  /* Slot 0: the local result (separate-merge path); slots 1..8: remote. */
  fused_bufs fb = fused_alloc(b, limit, max_rows, 9);
  void *kp = fb.kp, *vp = fb.vp, *q = fb.q, *lse = fb.lse, *out = fb.out, *parts16 = fb.parts16;
  float *parts = fb.parts, *plse = fb.plse;
  const int64_t max_blocks = limit / 2 / per_token / 16;
  int32_t *ids = malloc(sizeof *ids * (size_t)max_blocks);
  void *table = balloc(b, (int64_t)sizeof *ids * max_blocks), *ctx = balloc(b, 128 * 4);
  for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++)
    for (size_t ci = 0; ci < sizeof contexts / sizeof contexts[0]; ci++) {
      const int64_t B = batches[bi], C = contexts[ci], kv = 2 * B * C * per_token, rows = B * H70;
      if (kv > limit || (b->quick && kv > (1LL << 30))) continue;
      if (warm && C > 8192) continue;
      int32_t ctxs[128];
      for (int i = 0; i < B; i++) ctxs[i] = (int32_t)C;
      bupload(b, ctx, ctxs, B * 4);
      shuffle_ids(ids, B * C / 16, (uint64_t)(B * 131 + C));
      bupload(b, table, ids, B * C / 16 * 4);
      infsim_ma_decode_args a = {.num_requests = (int32_t)B, .num_q_heads = H70, .num_kv_heads = G70,
                                 .head_dim = D, .block_tokens = 16, .dtype = INFSIM_KDTYPE_BF16, .q = q,
                                 .k_pool = kp, .v_pool = vp, .block_table = table,
                                 .block_table_stride = (int32_t)(C / 16), .context_tokens = ctx,
                                 .max_context_tokens = (int32_t)C, .softmax_scale = 0.08838834764f,
                                 .out = out, .lse = lse, .split_merge = b->split_merge};
      const int reps = kv > (1LL << 30) ? 10 : 30;
      if (warm) {
        for (size_t ri = 0; ri < sizeof remotes / sizeof remotes[0]; ri++) {
          const int32_t R = remotes[ri];
          if (R != 1 && R != 4) continue;
          infsim_ma_decode_args f = a;
          f.num_remote = R;
          f.remote_dtype = INFSIM_KDTYPE_F32;
          f.remote_out = parts + rows * D;
          f.remote_lse = plse + rows;
          const double pbytes = (double)R * (double)rows * (D * 4 + 4);
          for (int round = 0; round < 3; round++)
            for (int flush = 1; flush >= 0; flush--) {
              infsim_kernel_timing ta = btime(b, infsim_kernel_op_ma_decode, &a, reps, flush);
              infsim_kernel_timing tf = btime(b, infsim_kernel_op_ma_decode, &f, reps, flush);
              row_info ra = {"decode_fused", flush ? "alone" : "alone-noflush", "bf16", B, C, H70, G70, 16, 0,
                             0, 0, 0, 0, (double)kv, 0};
              row_info rf = {"decode_fused", flush ? "f32-remote" : "f32-remote-noflush", "bf16", B, C, H70, G70,
                             16, 0, R, 0, 0, 0, pbytes, 0};
              emit(b, &ra, &ta);
              emit(b, &rf, &tf);
              fprintf(stderr, "fused_warm b=%-4lld ctx=%-6lld R=%d round %d %-8s: alone %.2f us, added %.2f us\n",
                      (long long)B, (long long)C, R, round, flush ? "flushed" : "warm", ta.median_ms * 1e3,
                      (tf.median_ms - ta.median_ms) * 1e3);
            }
        }
        continue;
      }
      infsim_kernel_timing alone = btime(b, infsim_kernel_op_ma_decode, &a, reps, true);
      row_info r0 = {"decode_fused", "alone", "bf16", B, C, H70, G70, 16, 0, 0, 0, 0, 0, (double)kv, 0};
      emit(b, &r0, &alone);
      for (size_t ri = 0; ri < sizeof remotes / sizeof remotes[0]; ri++) {
        const int32_t R = remotes[ri];
        for (int v = 0; v < 3; v++) {
          infsim_ma_decode_args f = a;
          infsim_merge_args m = {.num_partials = R + 1, .rows = rows, .head_dim = D, .part_out = parts,
                                 .part_lse = plse, .out = out, .lse = lse};
          decode_merge dm = {&f, &m};
          /* The remote partials of this batch: rows x R, laid out [R][rows]. */
          double pbytes = (double)R * (double)rows * (D * (v == 1 ? 2 : 4) + 4);
          infsim_kernel_timing t;
          if (v < 2) {
            f.num_remote = R;
            f.remote_dtype = v == 0 ? INFSIM_KDTYPE_F32 : INFSIM_KDTYPE_F16;
            f.remote_out = v == 0 ? (const void *)(parts + rows * D) : parts16;
            f.remote_lse = plse + rows;
            t = btime(b, infsim_kernel_op_ma_decode, &f, reps, true);
          } else {
            f.out = parts, f.lse = plse; /* slot 0 */
            t = btime(b, decode_then_merge_op, &dm, reps, true);
          }
          const char *variant = v == 0 ? "f32-remote" : (v == 1 ? "f16-remote" : "separate-merge-f32");
          row_info r = {"decode_fused", variant, "bf16", B, C, H70, G70, 16, 0, R, 0, 0, 0, pbytes, 0};
          emit(b, &r, &t);
          const double added_us = (t.median_ms - alone.median_ms) * 1e3;
          const double ceil_us = pbytes / (b->copy_gbps * 1e9) * 1e6;
          fprintf(stderr, "fused   %-18s b=%-4lld ctx=%-6lld R=%d: alone %.2f us, added %.2f us = %.2fx the "
                          "partials at the copy ceiling (%.2f us), %.2f%% of the decode; partials %.3f%% of KV\n",
                  variant, (long long)B, (long long)C, R, alone.median_ms * 1e3, added_us, added_us / ceil_us,
                  ceil_us, 100.0 * added_us / (alone.median_ms * 1e3), 100.0 * pbytes / (double)kv);
        }
      }
    }
  free(ids);
  fused_free(b, &fb);
  infsim_kernels_free(b->k, table), infsim_kernels_free(b->k, ctx);
}

/* A mixed iteration's attention: decodes and one prefill chunk, either one
 * after the other on the context's stream, or the chunk on a second
 * context's stream concurrently (joined by events). Concurrent time is what
 * a single launch covering both could at best reach by overlapping the
 * bytes-bound decode with the FLOP-bound chunk; if it is no faster than
 * sequential, one launch has nothing to win (issue 16). */
typedef struct {
  infsim_kernels *k2;
  infsim_ma_decode_args *dec;
  infsim_prefill_args *pre;
  cudaEvent_t fork, join;
  bool concurrent;
} mixed_op_arg;

static infsim_status mixed_op(infsim_kernels *k, void *arg, infsim_error *err) {
  mixed_op_arg *m = arg;
  if (!m->concurrent) {
    infsim_status st = infsim_kernels_ma_decode(k, m->dec, err);
    return st == INFSIM_OK ? infsim_kernels_prefill(k, m->pre, err) : st;
  }
  cudaStream_t s1 = infsim_kernels_native_stream(k), s2 = infsim_kernels_native_stream(m->k2);
  if (cudaEventRecord(m->fork, s1) != cudaSuccess || cudaStreamWaitEvent(s2, m->fork, 0) != cudaSuccess)
    return infsim_fail(err, INFSIM_ERUN, "mixed: fork event failed");
  infsim_status st = infsim_kernels_prefill(m->k2, m->pre, err);
  if (st == INFSIM_OK) st = infsim_kernels_ma_decode(k, m->dec, err);
  if (st != INFSIM_OK) return st;
  if (cudaEventRecord(m->join, s2) != cudaSuccess || cudaStreamWaitEvent(s1, m->join, 0) != cudaSuccess)
    return infsim_fail(err, INFSIM_ERUN, "mixed: join event failed");
  return INFSIM_OK;
}

void bench_mixed(bench *b) {
  const int64_t decodes[][2] = {{8, 8192}, {32, 8192}, {128, 4096}, {32, 32768}};
  const int64_t chunks[][2] = {{512, 0}, {512, 8192}, {2048, 0}, {2048, 8192}};
  const int64_t per_token = (int64_t)G70 * D * 2, limit = 2LL << 30;
  infsim_kernels *k2 = NULL;
  infsim_error err;
  if (infsim_kernels_open(INFSIM_KBACKEND_CUDA, &k2, &err) != INFSIM_OK) die("open second context", &err);
  mixed_op_arg m = {.k2 = k2};
  if (cudaEventCreateWithFlags(&m.fork, cudaEventDisableTiming) != cudaSuccess ||
      cudaEventCreateWithFlags(&m.join, cudaEventDisableTiming) != cudaSuccess)
    die("event", NULL);
  void *kp = balloc(b, limit / 2), *vp = balloc(b, limit / 2);
  bfill(b, kp, INFSIM_KDTYPE_BF16, limit / 4, 91);
  bfill(b, vp, INFSIM_KDTYPE_BF16, limit / 4, 92);
  void *q = balloc(b, 128 * H70 * D * 2), *out = balloc(b, 128 * H70 * D * 4), *lse = balloc(b, 128 * H70 * 4);
  bfill(b, q, INFSIM_KDTYPE_BF16, 128 * H70 * D, 93);
  const int64_t max_blocks = limit / 2 / per_token / 16;
  int32_t *ids = malloc(sizeof *ids * (size_t)max_blocks);
  void *table = balloc(b, (int64_t)sizeof *ids * max_blocks), *ctx = balloc(b, 128 * 4);
  /* The chunk's own pool (prefix + chunk) and inputs, at the largest size. */
  const int64_t cmax = 2048, nmax = 2048 + 8192;
  void *pq = balloc(b, cmax * H70 * D * 2), *pk = balloc(b, cmax * G70 * D * 2), *pv = balloc(b, cmax * G70 * D * 2);
  void *ppk = balloc(b, nmax * G70 * D * 2), *ppv = balloc(b, nmax * G70 * D * 2), *pout = balloc(b, cmax * H70 * D * 2);
  void *ptable = balloc(b, nmax / 16 * 4);
  bfill(b, pq, INFSIM_KDTYPE_BF16, cmax * H70 * D, 94);
  bfill(b, pk, INFSIM_KDTYPE_BF16, cmax * G70 * D, 95);
  bfill(b, pv, INFSIM_KDTYPE_BF16, cmax * G70 * D, 96);
  bfill(b, ppk, INFSIM_KDTYPE_BF16, nmax * G70 * D, 97);
  bfill(b, ppv, INFSIM_KDTYPE_BF16, nmax * G70 * D, 98);
  int32_t *pids = malloc(sizeof *pids * (size_t)(nmax / 16));
  shuffle_ids(pids, nmax / 16, 99);
  bupload(b, ptable, pids, nmax / 16 * 4);
  free(pids);
  for (size_t di = 0; di < sizeof decodes / sizeof decodes[0]; di++) {
    const int64_t B = decodes[di][0], C = decodes[di][1], kv = 2 * B * C * per_token;
    if (kv > limit) continue;
    int32_t ctxs[128];
    for (int i = 0; i < B; i++) ctxs[i] = (int32_t)C;
    bupload(b, ctx, ctxs, B * 4);
    shuffle_ids(ids, B * C / 16, (uint64_t)(B * 31 + C));
    bupload(b, table, ids, B * C / 16 * 4);
    infsim_ma_decode_args a = {.num_requests = (int32_t)B, .num_q_heads = H70, .num_kv_heads = G70, .head_dim = D,
                               .block_tokens = 16, .dtype = INFSIM_KDTYPE_BF16, .q = q, .k_pool = kp, .v_pool = vp,
                               .block_table = table, .block_table_stride = (int32_t)(C / 16),
                               .context_tokens = ctx, .max_context_tokens = (int32_t)C,
                               .softmax_scale = 0.08838834764f, .out = out, .lse = lse};
    for (size_t ci = 0; ci < sizeof chunks / sizeof chunks[0]; ci++) {
      const int64_t c = chunks[ci][0], L = chunks[ci][1];
      infsim_prefill_args p = {.num_requests = 1, .num_q_heads = H70, .num_kv_heads = G70, .head_dim = D,
                               .new_tokens = (int32_t)c, .past_tokens = (int32_t)L, .block_tokens = 16,
                               .dtype = INFSIM_KDTYPE_BF16, .q = pq, .k_new = pk, .v_new = pv, .k_pool = ppk,
                               .v_pool = ppv, .block_table = ptable, .block_table_stride = (int32_t)(nmax / 16),
                               .softmax_scale = 0.08838834764f, .out_dtype = INFSIM_KDTYPE_BF16, .out = pout};
      m.dec = &a;
      m.pre = &p;
      const double pairs = (double)c * (double)L + (double)c * (double)(c + 1) / 2.0;
      const char *names[4] = {"decode-only", "chunk-only", "sequential", "concurrent"};
      double ms[4];
      for (int v = 0; v < 4; v++) {
        infsim_kernel_timing t;
        if (v == 0)
          t = btime(b, infsim_kernel_op_ma_decode, &a, 20, true);
        else if (v == 1)
          t = btime(b, infsim_kernel_op_prefill, &p, 20, true);
        else {
          m.concurrent = v == 3;
          t = btime(b, mixed_op, &m, 20, true);
        }
        ms[v] = t.median_ms;
        row_info r = {"mixed", names[v], "bf16", B, C, H70, G70, 16, 0, 0, c, L, 0, v == 1 ? 0 : (double)kv,
                      v == 0 ? 0 : 4.0 * H70 * D * pairs};
        emit(b, &r, &t);
      }
      fprintf(stderr, "mixed   decode b=%lld ctx=%lld + chunk %lld after %lld: decode %.1f us, chunk %.1f us, "
                      "sequential %.1f us, concurrent %.1f us (%.3f of sequential)\n",
              (long long)B, (long long)C, (long long)c, (long long)L, ms[0] * 1e3, ms[1] * 1e3, ms[2] * 1e3,
              ms[3] * 1e3, ms[3] / ms[2]);
    }
  }
  free(ids);
  void *all[] = {kp, vp, q, out, lse, table, ctx, pq, pk, pv, ppk, ppv, pout, ptable};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) infsim_kernels_free(b->k, all[i]);
  cudaEventDestroy(m.fork);
  cudaEventDestroy(m.join);
  infsim_kernels_close(k2);
}

/* The flush method against the decode time it reports, paged 16-token
 * blocks, 64/8 heads: "clean" = the library's flush (a 2x-L2 buffer
 * overwritten, then read, untimed); "dirty" = overwritten only (the flush
 * of earlier runs: the timed kernel pays the write-back of the dirty lines
 * it evicts); "none" = no flush (KV of 1 GiB and more does not fit in L2
 * anyway). Events around each call; median of 20. */
void bench_flush(bench *b) {
  const int64_t shapes[][2] = {{32, 8192}, {256, 1024}, {8, 65536}, {1, 524288}, {128, 8192}};
  const int64_t per_token = (int64_t)G70 * D * 2, limit = 4LL << 30;
  void *kp = balloc(b, limit / 2), *vp = balloc(b, limit / 2);
  bfill(b, kp, INFSIM_KDTYPE_BF16, limit / 4, 101);
  bfill(b, vp, INFSIM_KDTYPE_BF16, limit / 4, 102);
  void *q = balloc(b, 256 * H70 * D * 2), *out = balloc(b, 256 * H70 * D * 4), *lse = balloc(b, 256 * H70 * 4);
  bfill(b, q, INFSIM_KDTYPE_BF16, 256 * H70 * D, 103);
  const int64_t max_blocks = limit / 2 / per_token / 16, flush_bytes = 2 * b->dev.l2_bytes;
  int32_t *ids = malloc(sizeof *ids * (size_t)max_blocks);
  void *table = balloc(b, (int64_t)sizeof *ids * max_blocks), *ctx = balloc(b, 256 * 4);
  void *fbuf = balloc(b, flush_bytes);
  cudaStream_t s = infsim_kernels_native_stream(b->k);
  cudaEvent_t e0, e1;
  if (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess) die("event", NULL);
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    const int64_t B = shapes[si][0], C = shapes[si][1], kv = 2 * B * C * per_token;
    int32_t ctxs[256];
    for (int i = 0; i < B; i++) ctxs[i] = (int32_t)C;
    bupload(b, ctx, ctxs, B * 4);
    shuffle_ids(ids, B * C / 16, (uint64_t)(B * 577 + C));
    bupload(b, table, ids, B * C / 16 * 4);
    infsim_ma_decode_args a = {.num_requests = (int32_t)B, .num_q_heads = H70, .num_kv_heads = G70, .head_dim = D,
                               .block_tokens = 16, .dtype = INFSIM_KDTYPE_BF16, .q = q, .k_pool = kp, .v_pool = vp,
                               .block_table = table, .block_table_stride = (int32_t)(C / 16),
                               .context_tokens = ctx, .max_context_tokens = (int32_t)C,
                               .softmax_scale = 0.08838834764f, .out = out, .lse = lse};
    infsim_kernel_timing t = btime(b, infsim_kernel_op_ma_decode, &a, 20, true);
    row_info r = {"decode_flush", "clean", "bf16", B, C, H70, G70, 16, 0, 0, 0, 0, 0, (double)kv, 0};
    emit(b, &r, &t);
    for (int v = 0; v < 2; v++) { /* dirty, none: timed here with events */
      enum { REPS = 20 };
      double ms[REPS];
      infsim_error err;
      for (int i = 0; i < REPS + 2; i++) {
        if (v == 0 && cudaMemsetAsync(fbuf, i & 0xff, (size_t)flush_bytes, s) != cudaSuccess) die("memset", NULL);
        if (cudaEventRecord(e0, s) != cudaSuccess) die("event", NULL);
        if (infsim_kernels_ma_decode(b->k, &a, &err) != INFSIM_OK) die("decode", &err);
        float f = 0;
        if (cudaEventRecord(e1, s) != cudaSuccess || cudaEventSynchronize(e1) != cudaSuccess ||
            cudaEventElapsedTime(&f, e0, e1) != cudaSuccess)
          die("event", NULL);
        if (i >= 2) ms[i - 2] = f;
      }
      for (int i = 1; i < REPS; i++) /* insertion sort: 20 values */
        for (int j = i; j > 0 && ms[j] < ms[j - 1]; j--) {
          double x = ms[j];
          ms[j] = ms[j - 1];
          ms[j - 1] = x;
        }
      infsim_kernel_timing tt = {.median_ms = 0.5 * (ms[9] + ms[10]), .min_ms = ms[0], .max_ms = ms[REPS - 1],
                                 .p10_ms = ms[2], .p90_ms = ms[17], .repeats = REPS};
      row_info rr = {"decode_flush", v == 0 ? "dirty" : "none", "bf16", B, C, H70, G70, 16, 0, 0, 0, 0, 0,
                     (double)kv, 0};
      emit(b, &rr, &tt);
    }
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  free(ids);
  void *all[] = {kp, vp, q, out, lse, table, ctx, fbuf};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) infsim_kernels_free(b->k, all[i]);
}

static int cmp_double(const void *x, const void *y) {
  const double a = *(const double *)x, c = *(const double *)y;
  return (a > c) - (a < c);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* One timing of bench_fused_paths: btime's, or with `once` one warm-up
 * and one timed launch (btime's warm-up count follows a probe launch's
 * time, which a profiler stretches, so its launch numbers would move). */
static infsim_kernel_timing time_path(bench *b, infsim_ma_decode_args *a, int reps, bool once) {
  if (!once) return btime(b, infsim_kernel_op_ma_decode, a, reps, true);
  const infsim_time_opts o = {.warmup = 1, .repeats = 1, .flush_l2 = true};
  infsim_kernel_timing t;
  infsim_error err;
  if (infsim_kernels_time_ms(b->k, infsim_kernel_op_ma_decode, a, &o, &t, &err) != INFSIM_OK) die("time", &err);
  return t;
}

/* The fused merge's paths side by side: split_merge 3 (the last CTA's
 * register split merge; with one split, batch >= 32 here, the remote
 * partials folded in after the CTA's cross-warp merge), 4 (each CTA folds
 * its share of them into that merge, loaded during the KV stream) and 5
 * (as 4, loaded after the stream), or the paths INFSIM_BENCH_FUSED_PATHS
 * lists (digits 0-7, say "0356"; 6: the partials merged by a CTA of their
 * own with splits; 0: auto, split merge and grid; 1-6 run on the grid of
 * one CTA a row group; 7: auto's split merge, one split on the persistent
 * grid, decode_grid 2), at the fused-merge shapes
 * (batch 1-128, 1K-64K, KV <= 8 GiB; INFSIM_BENCH_FUSED_MAX_CTX caps the
 * listed contexts; INFSIM_BENCH_FUSED_BATCH and _CTX time one batch
 * (1-128) and one context (a multiple of 16) instead,
 * and INFSIM_BENCH_FUSED_ONCE times each variant by one launch after one
 * warm-up, for a profiler: per round and path the decode alone is the
 * shape's launches 0-1, fp32 R = 1, 2, 4, 8 and fp16 R = 1, 2, 4, 8 two
 * each after it): the
 * decode alone and with R remote partials (fp32, fp16), five rounds
 * (INFSIM_BENCH_FUSED_ROUNDS), the paths interleaved within each round and
 * a path's nine timings (alone, fp32 R = 1-8, fp16 R = 1-8) one after
 * another, both orders rotated a place a round, so that clock drift falls
 * on all alike (nine rounds put each timing in each place once;
 * INFSIM_BENCH_ROUND = i starts the rotations at round i).
 * Rows: kernel decode_merge_paths, variant "mP/alone" or "mP/f32-remote" /
 * "mP/f16-remote", splits = the round. Summary on stderr per point, medians
 * of the rounds: added = with partials - alone in the same round, its ratio
 * to the partials' bytes at the copy ceiling measured in this run (goal <=
 * 1.2x) and its share of the decode (goal <= 2% where the partials are <=
 * 1% of the KV). Only when named (`--only fused_paths`). */
void bench_fused_paths(bench *b) {
  enum { MAX_ROUNDS = 9, MAX_PATHS = 8, NR = 4 };
  int paths[MAX_PATHS] = {3, 4, 5}, PATHS = 3;
  const char *env_rounds = getenv("INFSIM_BENCH_FUSED_ROUNDS"), *env_ctx = getenv("INFSIM_BENCH_FUSED_MAX_CTX");
  const char *env_paths = getenv("INFSIM_BENCH_FUSED_PATHS");
  if (env_paths) {
    PATHS = 0;
    for (const char *c = env_paths; *c && PATHS < MAX_PATHS; c++)
      if (*c >= '0' && *c <= '7') paths[PATHS++] = *c - '0';
    if (PATHS == 0) die("INFSIM_BENCH_FUSED_PATHS names no path 0-7", NULL);
  }
  int64_t only_batch = 0, only_ctx = 0; /* 0: the lists below */
  env_counts("INFSIM_BENCH_FUSED_BATCH", 1, 128, 1, &only_batch, 1);
  env_counts("INFSIM_BENCH_FUSED_CTX", 16, 1 << 30, 16, &only_ctx, 1);
  const bool once = getenv("INFSIM_BENCH_FUSED_ONCE") != NULL;
  const int round0 = bench_round();
  const int rounds_env = env_rounds ? atoi(env_rounds) : 5;
  const int ROUNDS = rounds_env < 1 ? 1 : (rounds_env > MAX_ROUNDS ? MAX_ROUNDS : rounds_env);
  const int64_t max_ctx = env_ctx ? atoll(env_ctx) : 65536;
  /* A batch or context named by the environment replaces the list (batch
   * 2-4 is where the split merges run outside one wave with 8-16 splits). */
  const int64_t batches[] = {1, 8, 32, 128}, one_batch[] = {only_batch};
  const int64_t contexts[] = {1024, 8192, 65536}, one_ctx[] = {only_ctx};
  const int64_t *bl = only_batch ? one_batch : batches, *cl = only_ctx ? one_ctx : contexts;
  const size_t nb = only_batch ? 1 : sizeof batches / sizeof batches[0];
  const size_t nc = only_ctx ? 1 : sizeof contexts / sizeof contexts[0];
  const int32_t remotes[NR] = {1, 2, 4, 8};
  const int64_t per_token = (int64_t)G70 * D * 2, limit = 8LL << 30, max_rows = 128 * H70;
  measure_copy_ceiling(b);
  fprintf(stderr, "fused_paths: copy ceiling %.0f GB/s\n", b->copy_gbps);
  fused_bufs fb = fused_alloc(b, limit, max_rows, 9);
  const int64_t max_blocks = limit / 2 / per_token / 16;
  int32_t *ids = malloc(sizeof *ids * (size_t)max_blocks);
  void *table = balloc(b, (int64_t)sizeof *ids * max_blocks), *ctx = balloc(b, 128 * 4);
  for (size_t bi = 0; bi < nb; bi++)
    for (size_t ci = 0; ci < nc; ci++) {
      const int64_t B = bl[bi], C = cl[ci], kv = 2 * B * C * per_token, rows = B * H70;
      if (C > max_ctx && !only_ctx) continue;
      if (kv > limit) {
        fprintf(stderr, "fused_paths: b=%lld ctx=%lld skipped: KV over 8 GiB\n", (long long)B, (long long)C);
        continue;
      }
      int32_t ctxs[128];
      for (int i = 0; i < B; i++) ctxs[i] = (int32_t)C;
      bupload(b, ctx, ctxs, B * 4);
      shuffle_ids(ids, B * C / 16, (uint64_t)(B * 131 + C));
      bupload(b, table, ids, B * C / 16 * 4);
      const int reps = kv > (1LL << 30) ? 10 : 30;
      double added[MAX_PATHS][2][NR][MAX_ROUNDS], alone_us[MAX_PATHS][MAX_ROUNDS];
      for (int round = 0; round < ROUNDS; round++)
        for (int k = 0; k < PATHS; k++) {
          const int pi = (k + round0 + round) % PATHS; /* each path first in some round */
          /* 0 = what auto runs (split merge and grid); 1-6 on the grid of
           * one CTA a row group, the one they were written for; 7 auto's
           * split merge on the persistent grid. */
          infsim_ma_decode_args a = {.num_requests = (int32_t)B, .num_q_heads = H70, .num_kv_heads = G70,
                                     .head_dim = D, .block_tokens = 16, .dtype = INFSIM_KDTYPE_BF16, .q = fb.q,
                                     .k_pool = fb.kp, .v_pool = fb.vp, .block_table = table,
                                     .block_table_stride = (int32_t)(C / 16), .context_tokens = ctx,
                                     .max_context_tokens = (int32_t)C, .softmax_scale = 0.08838834764f,
                                     .out = fb.out, .lse = fb.lse, .split_merge = paths[pi] == 7 ? 0 : paths[pi],
                                     .decode_grid = paths[pi] == 7 ? 2 : paths[pi] ? 1 : 0};
          /* The decode alone (slot 0) and with R partials (slots 1-8: fp32
           * R = 1, 2, 4, 8, then fp16), the order rotated a slot a round
           * (not in ONCE mode, whose launches a profiler counts): a clock
           * or temperature drift within a round would otherwise fall on
           * the slots timed last, always the same ones. */
          double slot_us[1 + 2 * NR];
          for (int k2 = 0; k2 < 1 + 2 * NR; k2++) {
            const int si = once ? k2 : (k2 + round0 + round) % (1 + 2 * NR);
            infsim_ma_decode_args f = a;
            char variant[32];
            double pbytes = (double)kv;
            int32_t R = 0;
            if (si == 0) {
              snprintf(variant, sizeof variant, "m%d/alone", paths[pi]);
            } else {
              const int dt = (si - 1) / NR;
              R = remotes[(si - 1) % NR];
              f.num_remote = R;
              f.remote_dtype = dt == 0 ? INFSIM_KDTYPE_F32 : INFSIM_KDTYPE_F16;
              f.remote_out = dt == 0 ? (const void *)fb.parts : fb.parts16;
              f.remote_lse = fb.plse;
              pbytes = (double)R * (double)rows * (D * (dt == 0 ? 4 : 2) + 4);
              snprintf(variant, sizeof variant, "m%d/%s-remote", paths[pi], dt == 0 ? "f32" : "f16");
            }
            infsim_kernel_timing t = time_path(b, &f, reps, once);
            row_info r = {"decode_merge_paths", variant, "bf16", B, C, H70, G70, 16, round, R, 0, 0, 0, pbytes, 0};
            emit(b, &r, &t);
            slot_us[si] = t.median_ms * 1e3;
          }
          alone_us[pi][round] = slot_us[0];
          for (int dt = 0; dt < 2; dt++)
            for (int ri = 0; ri < NR; ri++) added[pi][dt][ri][round] = slot_us[1 + dt * NR + ri] - slot_us[0];
        }
      for (int pi = 0; pi < PATHS; pi++) {
        const double al = median(alone_us[pi], ROUNDS);
        fprintf(stderr, "paths b=%-3lld ctx=%-6lld m%d: alone %8.2f us\n", (long long)B, (long long)C, paths[pi], al);
        for (int dt = 0; dt < 2; dt++)
          for (int ri = 0; ri < NR; ri++) {
            const int32_t R = remotes[ri];
            const double pbytes = (double)R * (double)rows * (D * (dt == 0 ? 4 : 2) + 4);
            const double ad = median(added[pi][dt][ri], ROUNDS), ceil_us = pbytes / (b->copy_gbps * 1e9) * 1e6;
            const double share = 100.0 * pbytes / (double)kv, pct = 100.0 * ad / al;
            fprintf(stderr, "paths b=%-3lld ctx=%-6lld m%d %s R=%d: added %6.2f us = %5.2fx bytes (%.2f us) %s, "
                            "%5.2f%% of decode %s; partials %.3f%% of KV\n",
                    (long long)B, (long long)C, paths[pi], dt == 0 ? "f32" : "f16", R, ad, ad / ceil_us, ceil_us,
                    ad <= 1.2 * ceil_us ? "MET " : "miss", pct,
                    share > 1.0 ? "(n/a)" : (pct <= 2.0 ? "MET " : "miss"), share);
          }
      }
    }
  free(ids);
  fused_free(b, &fb);
  infsim_kernels_free(b->k, table), infsim_kernels_free(b->k, ctx);
}

/* The decode's two grids for one split (decode_grid 1: one CTA per row
 * group, in as many waves as they take; 2: the persistent grid, whose CTAs
 * fetch the next row group's Q and first tiles before a row group's
 * merge) at batch 32-256 and 1K-8K tokens (64/8 heads, paged 16-token
 * blocks, KV 256 MiB - 8 GiB; batch 32 is one wave, where both run one
 * row group a CTA), INFSIM_BENCH_GRID_ROUNDS rounds (5, at most 9), the
 * grid timed first alternating. Rows: kernel decode_grid, variant g1 or
 * g2, splits = the round. Summary on stderr per shape: medians of the
 * rounds, GB/s, % of the copy ceiling measured in this run, and g2 / g1
 * (time). Only when named (`--only decode_grid`). */
void bench_decode_grid(bench *b) {
  enum { MAX_ROUNDS = 9 };
  const int64_t batches[] = {32, 64, 128, 256}, contexts[] = {1024, 2048, 4096, 8192};
  const char *env_rounds = getenv("INFSIM_BENCH_GRID_ROUNDS");
  const int rounds_env = env_rounds ? atoi(env_rounds) : 5;
  const int ROUNDS = rounds_env < 1 ? 1 : (rounds_env > MAX_ROUNDS ? MAX_ROUNDS : rounds_env);
  const int64_t per_token = (int64_t)G70 * D * 2;
  measure_copy_ceiling(b);
  fprintf(stderr, "decode_grid: copy ceiling %.0f GB/s\n", b->copy_gbps);
  dec_bufs d = dec_alloc(b, 91);
  for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++)
    for (size_t ci = 0; ci < sizeof contexts / sizeof contexts[0]; ci++) {
      const int64_t B = batches[bi], C = contexts[ci], kv = 2 * B * C * per_token;
      if (kv > DEC_LIMIT_BYTES) continue;
      infsim_ma_decode_args a = dec_shape(b, &d, B, C, (uint64_t)(B * 1009 + C));
      a.num_splits = 1;
      double us[2][MAX_ROUNDS];
      for (int round = 0; round < ROUNDS; round++)
        for (int k = 0; k < 2; k++) {
          const int gi = (k + round) % 2;
          a.decode_grid = gi + 1;
          infsim_kernel_timing t = btime(b, infsim_kernel_op_ma_decode, &a, kv > (1LL << 30) ? 10 : 30, true);
          row_info r = {"decode_grid", gi ? "g2" : "g1", "bf16", B, C, H70, G70, 16, round, 0, 0, 0, 0, (double)kv, 0};
          emit(b, &r, &t);
          us[gi][round] = t.median_ms * 1e3;
        }
      const double u1 = median(us[0], ROUNDS), u2 = median(us[1], ROUNDS);
      const double g1 = kv / (u1 * 1e3), g2 = kv / (u2 * 1e3);
      fprintf(stderr,
              "grid b=%-3lld ctx=%-5lld KV %6.0f MiB: g1 %8.2f us %5.0f GB/s (%5.1f%% of copy), "
              "g2 %8.2f us %5.0f GB/s (%5.1f%%), g2/g1 %.3f\n",
              (long long)B, (long long)C, kv / 1048576.0, u1, g1, 100.0 * g1 / b->copy_gbps, u2, g2,
              100.0 * g2 / b->copy_gbps, u2 / u1);
    }
  dec_free(b, &d);
}
