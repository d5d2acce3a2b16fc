/*
** bench_kernels.c: times the CUDA kernels at LLaMA2-70B shapes and writes
** one CSV row per measurement (bench/kernels/run_all.sh runs it next to the
** torch reference script, which joins both into ratios).
**
** What is measured (median of event-timed repeats, L2 flushed before each
** repeat where the working set could sit in L2):
**  - MA decode, 64 query heads on 8 KV heads (one 70B layer), bf16, batch x
**    context over a grid whose KV fits in 60 GiB: contiguous KV (one block
**    per request) and paged KV (shuffled 16-token blocks; 64 and 256 for a
**    few shapes); HBM GB/s counts K and V bytes read once.
**  - merge of 2..32 partials per (request, head) at the decode batches;
**  - (bench_decode_more.c) a mixed iteration, MA decode merging remote
**    partials in the same launch, the flush methods, split counts at 1-4 GiB;
**  - causal prefill bf16, TFLOP/s with 2 * h * d * N(N+1) FLOPs (64/8, 32/32 and
**    8/1 heads), and chunked prefill after a cached prefix (4 h d pairs),
**    each chunk beside a fresh prompt of as many pairs;
**  - layer GEMMs through our wrapper and through cublasGemmEx directly;
**  - device-to-device copy (the bandwidth ceiling), KV block copy, staged copy;
**  - per-head RMSNorm + RoPE on the QKV output (64 + 8 + 8 heads): fused
**    (one call), unfused (NORM call, then ROPE call) and RoPE alone; GB/s
**    counts the q and k heads read and written once.
** Inputs are random (fill_random), never zeros.
*/
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_kernels.h"

static const int64_t KV_LIMIT_BYTES = 60LL << 30;


void die(const char *what, const infsim_error *err) {
  fprintf(stderr, "bench_kernels: %s: %s\n", what, err ? err->msg : "");
  exit(1);
}

void *balloc(bench *b, int64_t bytes) {
  void *p = NULL;
  infsim_error err;
  if (infsim_kernels_alloc(b->k, bytes, &p, &err) != INFSIM_OK) die("alloc", &err);
  return p;
}

void bfill(bench *b, void *p, infsim_kdtype t, int64_t n, uint64_t seed) {
  infsim_error err;
  if (infsim_kernels_fill_random(b->k, p, t, n, seed, -1.0f, 1.0f, &err) != INFSIM_OK) die("fill", &err);
}

void bupload(bench *b, void *dst, const void *src, int64_t bytes) {
  infsim_error err;
  if (infsim_kernels_upload(b->k, dst, src, bytes, &err) != INFSIM_OK) die("upload", &err);
}

/* Warm-up long enough (~30 ms of calls, at most 200) for the clocks to
 * leave their idle state: with 2 warm-up calls, the first point of each
 * section (after seconds of host-side allocation and filling) ran 5-12%
 * slow on an H200 (kernels/NOTES.md version 10). Under a power cap 30 ms is
 * not yet the steady clock: on an H100 at 4K tokens, 32/32 heads, the first
 * prefill timed after a shape's set-up read 460-550 TFLOP/s, the same
 * kernels later 380-430; --warm-ms sets a longer warm-up (at most 100,000
 * calls). */
infsim_kernel_timing btime(bench *b, infsim_kernel_op op, void *arg, int repeats, bool flush) {
  infsim_time_opts probe = {.warmup = 1, .repeats = 1, .flush_l2 = flush};
  infsim_kernel_timing t;
  infsim_error err;
  if (infsim_kernels_time_ms(b->k, op, arg, &probe, &t, &err) != INFSIM_OK) die("time", &err);
  const double warm_ms = b->warm_ms > 0 ? b->warm_ms : 30.0;
  const int cap = b->warm_ms > 0 ? 100000 : 200;
  const double n = t.median_ms > 0 ? warm_ms / t.median_ms : cap;
  const int warm = n < 2 ? 2 : (n > cap ? cap : (int)n);
  infsim_time_opts o = {.warmup = warm, .repeats = repeats, .flush_l2 = flush};
  if (infsim_kernels_time_ms(b->k, op, arg, &o, &t, &err) != INFSIM_OK) die("time", &err);
  return t;
}


void emit(bench *b, const row_info *r, const infsim_kernel_timing *t) {
  double s = t->median_ms * 1e-3;
  fprintf(b->csv, "ours,%s,%s,%s,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%.6f,%.6f,%.6f,%.0f,%.2f,%.3f,\"%s\",%s,%d,%d\n",
          r->kernel, r->variant, r->dtype, (long long)r->batch, (long long)r->context, (long long)r->q_heads,
          (long long)r->kv_heads, (long long)r->block_tokens, (long long)r->splits, (long long)r->parts,
          (long long)r->m, (long long)r->n, (long long)r->k, t->median_ms, t->p10_ms, t->p90_ms, r->bytes,
          r->bytes > 0 ? r->bytes / s * 1e-9 : 0.0, r->flops > 0 ? r->flops / s * 1e-12 : 0.0, b->dev.name,
          b->dev.driver_version, b->dev.sm_clock_mhz, b->dev.mem_clock_mhz);
  fflush(b->csv);
  fprintf(stderr, "%-8s %-14s b=%-4lld ctx=%-8lld P=%-3lld m=%-5lld n=%-6lld k=%-6lld %9.4f ms  %8.1f GB/s  %7.1f TF/s\n",
          r->kernel, r->variant, (long long)r->batch, (long long)r->context, (long long)r->parts, (long long)r->m,
          (long long)r->n, (long long)r->k, t->median_ms, r->bytes > 0 ? r->bytes / s * 1e-9 : 0.0,
          r->flops > 0 ? r->flops / s * 1e-12 : 0.0);
}

/* Shuffled block ids 0..n-1 (xorshift: deterministic across runs). */
void shuffle_ids(int32_t *ids, int64_t n, uint64_t seed) {
  for (int64_t i = 0; i < n; i++) ids[i] = (int32_t)i;
  uint64_t x = seed | 1;
  for (int64_t i = n - 1; i > 0; i--) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    int64_t j = (int64_t)(x % (uint64_t)(i + 1));
    int32_t t = ids[i];
    ids[i] = ids[j];
    ids[j] = t;
  }
}

static void bench_decode(bench *b) {
  const int64_t batches[] = {1, 8, 32, 128, 256};
  const int64_t contexts[] = {1024, 8192, 65536, 524288, 1048576};
  const int64_t per_token = (int64_t)G70 * D * 2; /* K or V bytes per token, one layer */
  const int64_t pool_bytes = KV_LIMIT_BYTES / 2;
  void *kp = balloc(b, pool_bytes), *vp = balloc(b, pool_bytes);
  bfill(b, kp, INFSIM_KDTYPE_BF16, pool_bytes / 2, 11);
  bfill(b, vp, INFSIM_KDTYPE_BF16, pool_bytes / 2, 12);
  void *q = balloc(b, 256 * H70 * D * 2), *out = balloc(b, 256 * H70 * D * 4), *lse = balloc(b, 256 * H70 * 4);
  bfill(b, q, INFSIM_KDTYPE_BF16, 256 * H70 * D, 13);
  int64_t max_blocks = pool_bytes / per_token / 16;
  int32_t *ids = malloc(sizeof *ids * (size_t)max_blocks);
  void *table = balloc(b, (int64_t)sizeof *ids * max_blocks), *ctx = balloc(b, 256 * 4);
  for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
    for (size_t ci = 0; ci < sizeof contexts / sizeof contexts[0]; ci++) {
      int64_t B = batches[bi], C = contexts[ci];
      int64_t kv = 2 * B * C * per_token;
      if (kv > KV_LIMIT_BYTES) continue;
      if (b->quick && kv > (4LL << 30)) continue;
      int32_t ctxs[256];
      for (int i = 0; i < B; i++) ctxs[i] = (int32_t)C;
      bupload(b, ctx, ctxs, B * 4);
      const int64_t bts[] = {C, 16, 64, 256};
      for (size_t ti = 0; ti < 4; ti++) {
        int64_t bt = bts[ti];
        bool extra = ti >= 2;
        if (extra && !((B == 1 && C == 1048576) || (B == 32 && C == 65536) || (B == 256 && C == 8192))) continue;
        int64_t nb = B * C / bt;
        if (ti == 0)
          for (int64_t i = 0; i < nb; i++) ids[i] = (int32_t)i;
        else
          shuffle_ids(ids, nb, (uint64_t)(B * 1315423911u + C + bt));
        bupload(b, table, ids, nb * 4);
        infsim_ma_decode_args a = {.num_requests = (int32_t)B, .num_q_heads = H70, .num_kv_heads = G70,
                                   .head_dim = D, .block_tokens = (int32_t)bt, .dtype = INFSIM_KDTYPE_BF16,
                                   .q = q, .k_pool = kp, .v_pool = vp, .block_table = table,
                                   .block_table_stride = (int32_t)(C / bt), .context_tokens = ctx,
                                   .max_context_tokens = (int32_t)C, .softmax_scale = 0.08838834764f,
                                   .num_splits = 0, .out = out, .lse = lse, .split_merge = b->split_merge};
        infsim_kernel_timing t = btime(b, infsim_kernel_op_ma_decode, &a, kv > (1LL << 30) ? 10 : 30, true);
        char variant[32];
        snprintf(variant, sizeof variant, ti == 0 ? "contiguous" : "paged");
        row_info r = {"decode", variant, "bf16", B, C, H70, G70, bt, 0, 0, 0, 0, 0, (double)kv, 0};
        emit(b, &r, &t);
      }
    }
  }
  free(ids);
  infsim_kernels_free(b->k, kp), infsim_kernels_free(b->k, vp), infsim_kernels_free(b->k, q);
  infsim_kernels_free(b->k, out), infsim_kernels_free(b->k, lse), infsim_kernels_free(b->k, table);
  infsim_kernels_free(b->k, ctx);
}

/* Decode time against the split count at the small batches of a TP shard
 * (70B TP 8 and 4, 13B TP 8), paged 16-token blocks, auto (splits 0) and
 * fixed counts: the data behind the auto split rule in ma_decode.cu. */
static void bench_splits(bench *b) {
  const int hg[][2] = {{8, 1}, {16, 2}, {5, 5}};
  const int64_t batches[] = {1, 2, 4, 8, 16};
  const int64_t contexts[] = {4096, 16384, 32768, 131072, 524288};
  const int32_t splits[] = {0, 1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 264};
  const int64_t limit = 4LL << 30; /* K + V bytes per point */
  void *kp = balloc(b, limit / 2), *vp = balloc(b, limit / 2);
  bfill(b, kp, INFSIM_KDTYPE_BF16, limit / 4, 31);
  bfill(b, vp, INFSIM_KDTYPE_BF16, limit / 4, 32);
  void *q = balloc(b, 16 * 16 * D * 2), *out = balloc(b, 16 * 16 * D * 4), *lse = balloc(b, 16 * 16 * 4);
  bfill(b, q, INFSIM_KDTYPE_BF16, 16 * 16 * D, 33);
  const int64_t max_blocks = limit / 2 / (D * 2 * 16);
  int32_t *ids = malloc(sizeof *ids * (size_t)max_blocks);
  void *table = balloc(b, (int64_t)sizeof *ids * max_blocks), *ctx = balloc(b, 16 * 4);
  for (size_t hi = 0; hi < 3; hi++)
    for (size_t bi = 0; bi < 5; bi++)
      for (size_t ci = 0; ci < 5; ci++) {
        const int64_t B = batches[bi], C = contexts[ci], g = hg[hi][1];
        const int64_t kv = 2 * B * C * g * D * 2;
        if (kv > limit) continue;
        int32_t ctxs[16];
        for (int i = 0; i < B; i++) ctxs[i] = (int32_t)C;
        bupload(b, ctx, ctxs, B * 4);
        const int64_t nb = B * C / 16; /* blocks of g heads x 16 tokens */
        shuffle_ids(ids, nb, (uint64_t)(B * 7919 + C + g));
        bupload(b, table, ids, nb * 4);
        for (size_t si = 0; si < sizeof splits / sizeof splits[0]; si++) {
          infsim_ma_decode_args a = {.num_requests = (int32_t)B, .num_q_heads = hg[hi][0],
                                     .num_kv_heads = (int32_t)g, .head_dim = D, .block_tokens = 16,
                                     .dtype = INFSIM_KDTYPE_BF16, .q = q, .k_pool = kp, .v_pool = vp,
                                     .block_table = table, .block_table_stride = (int32_t)(C / 16),
                                     .context_tokens = ctx, .max_context_tokens = (int32_t)C,
                                     .softmax_scale = 0.08838834764f, .num_splits = splits[si], .out = out,
                                     .lse = lse};
          infsim_kernel_timing t = btime(b, infsim_kernel_op_ma_decode, &a, 10, true);
          row_info r = {"decode_splits", "paged", "bf16", B, C, hg[hi][0], g, 16, splits[si], 0, 0, 0, 0,
                        (double)kv, 0};
          emit(b, &r, &t);
        }
      }
  free(ids);
  infsim_kernels_free(b->k, kp), infsim_kernels_free(b->k, vp), infsim_kernels_free(b->k, q);
  infsim_kernels_free(b->k, out), infsim_kernels_free(b->k, lse), infsim_kernels_free(b->k, table);
  infsim_kernels_free(b->k, ctx);
}

static void bench_merge(bench *b) {
  const int64_t batches[] = {1, 8, 32, 128, 256};
  const int32_t parts[] = {2, 4, 8, 16, 32};
  int64_t max_rows = 256 * H70;
  void *po = balloc(b, 32 * max_rows * D * 4), *pl = balloc(b, 32 * max_rows * 4);
  void *out = balloc(b, max_rows * D * 4), *lse = balloc(b, max_rows * 4);
  bfill(b, po, INFSIM_KDTYPE_F32, 32 * max_rows * D, 21);
  bfill(b, pl, INFSIM_KDTYPE_F32, 32 * max_rows, 22);
  for (size_t bi = 0; bi < 5; bi++) {
    for (size_t pi = 0; pi < 5; pi++) {
      int64_t rows = batches[bi] * H70;
      infsim_merge_args a = {.num_partials = parts[pi], .rows = rows, .head_dim = D, .part_out = po,
                             .part_lse = pl, .out = out, .lse = lse};
      infsim_kernel_timing t = btime(b, infsim_kernel_op_merge, &a, 30, true);
      row_info r = {"merge", "fp32", "f32", batches[bi], 0, H70, G70, 0, 0, parts[pi], 0, 0, 0,
                    (double)(rows * parts[pi] * (D + 1) * 4 + rows * (D + 1) * 4), 0};
      emit(b, &r, &t);
    }
  }
  infsim_kernels_free(b->k, po), infsim_kernels_free(b->k, pl), infsim_kernels_free(b->k, out);
  infsim_kernels_free(b->k, lse);
}

/* The buffers of a prefill case (lse NULL when not asked). */
typedef struct {
  void *q, *kn, *vn, *kp, *vp, *out, *lse, *table;
} prefill_bufs;

/* A fresh causal prefill of N tokens, h query heads on g KV heads, bf16,
 * its pool blocks in shuffled order (bench_prefill, bench_prefill_one,
 * bench_chunks); N need not be a multiple of bt (the last block is part
 * full); the LSE written only with_lse. prefill_bufs_free gives m back. */
static infsim_prefill_args prefill_fresh(bench *b, int64_t N, int64_t h, int64_t g, int64_t bt, bool with_lse,
                                         prefill_bufs *m) {
  const int64_t nb = (N + bt - 1) / bt;
  m->q = balloc(b, N * h * D * 2), m->kn = balloc(b, N * g * D * 2), m->vn = balloc(b, N * g * D * 2);
  m->kp = balloc(b, nb * bt * g * D * 2), m->vp = balloc(b, nb * bt * g * D * 2), m->out = balloc(b, N * h * D * 2);
  m->lse = with_lse ? balloc(b, N * h * 4) : NULL;
  m->table = balloc(b, nb * 4);
  bfill(b, m->q, INFSIM_KDTYPE_BF16, N * h * D, 31);
  bfill(b, m->kn, INFSIM_KDTYPE_BF16, N * g * D, 32);
  bfill(b, m->vn, INFSIM_KDTYPE_BF16, N * g * D, 33);
  int32_t *ids = malloc(sizeof *ids * (size_t)nb);
  shuffle_ids(ids, nb, (uint64_t)N);
  bupload(b, m->table, ids, nb * 4);
  free(ids);
  return (infsim_prefill_args){.num_requests = 1, .num_q_heads = (int32_t)h, .num_kv_heads = (int32_t)g,
                               .head_dim = D, .new_tokens = (int32_t)N, .past_tokens = 0,
                               .block_tokens = (int32_t)bt, .dtype = INFSIM_KDTYPE_BF16, .q = m->q,
                               .k_new = m->kn, .v_new = m->vn, .k_pool = m->kp, .v_pool = m->vp,
                               .block_table = m->table, .block_table_stride = (int32_t)nb,
                               .softmax_scale = 0.08838834764f, .out_dtype = INFSIM_KDTYPE_BF16, .out = m->out,
                               .lse = m->lse};
}

static void prefill_bufs_free(bench *b, prefill_bufs *m) {
  void *all[] = {m->q, m->kn, m->vn, m->kp, m->vp, m->out, m->lse, m->table};
  for (int i = 0; i < 8; i++) infsim_kernels_free(b->k, all[i]);
}

/* A chunk of c tokens after a cached prefix of L, on h query heads over g
 * KV heads. */
typedef struct {
  int64_t c, L, h, g;
} chunk_shape;

/* The fresh prompt whose c' (c' + 1) / 2 query-key pairs come closest to
 * `pairs`. */
static int64_t fresh_of_pairs(double pairs) {
  int64_t n = (int64_t)((sqrt(1.0 + 8.0 * pairs) - 1.0) / 2.0);
  double best = -1;
  int64_t at = n;
  for (int64_t x = n - 1; x <= n + 1; x++) {
    const double d = fabs((double)x * (double)(x + 1) / 2.0 - pairs);
    if (x > 0 && (best < 0 || d < best)) best = d, at = x;
  }
  return at;
}

/* Chunked prefill: each shape's chunk after its cached prefix (the
 * prefix's K/V already in the pool; 16-token blocks) with the wgmma
 * pipelines pls (0 = auto), and in the same turn a fresh prompt (auto)
 * with as many query-key pairs, c L + c (c + 1) / 2, as the chunk: FLOPs
 * count those pairs, so the chunk's TFLOP/s over the fresh prompt's is
 * what a chunk costs per pair against a prompt (issue 16). The fresh
 * prompt's row is kernel prefill_chunk_fresh, with the chunk's L
 * (context) and c (m) and its own length (n). `round` rotates the order
 * of each shape's calls (the pipelines, then the fresh prompt) by that
 * many places, so that over rounds none is always first on a card whose
 * clock drifts as it heats (kernels/NOTES.md 17). */
static void bench_chunks(bench *b, const chunk_shape *shapes, size_t nshapes, const int *pls, int npl, int round) {
  for (size_t ci = 0; ci < nshapes; ci++) {
    const int64_t c = shapes[ci].c, L = shapes[ci].L, N = c + L, h = shapes[ci].h, g = shapes[ci].g, bt = 16;
    void *q = balloc(b, c * h * D * 2), *kn = balloc(b, c * g * D * 2), *vn = balloc(b, c * g * D * 2);
    void *kp = balloc(b, N * g * D * 2), *vp = balloc(b, N * g * D * 2), *out = balloc(b, c * h * D * 2);
    void *table = balloc(b, N / bt * 4);
    bfill(b, q, INFSIM_KDTYPE_BF16, c * h * D, 41);
    bfill(b, kn, INFSIM_KDTYPE_BF16, c * g * D, 42);
    bfill(b, vn, INFSIM_KDTYPE_BF16, c * g * D, 43);
    bfill(b, kp, INFSIM_KDTYPE_BF16, N * g * D, 44);
    bfill(b, vp, INFSIM_KDTYPE_BF16, N * g * D, 45);
    int32_t *ids = malloc(sizeof *ids * (size_t)(N / bt));
    shuffle_ids(ids, N / bt, (uint64_t)(N + c));
    bupload(b, table, ids, N / bt * 4);
    free(ids);
    infsim_prefill_args a = {.num_requests = 1, .num_q_heads = (int32_t)h, .num_kv_heads = (int32_t)g,
                             .head_dim = D, .new_tokens = (int32_t)c, .past_tokens = (int32_t)L,
                             .block_tokens = (int32_t)bt, .dtype = INFSIM_KDTYPE_BF16, .q = q, .k_new = kn,
                             .v_new = vn, .k_pool = kp, .v_pool = vp, .block_table = table,
                             .block_table_stride = (int32_t)(N / bt), .softmax_scale = 0.08838834764f,
                             .out_dtype = INFSIM_KDTYPE_BF16, .out = out};
    const double pairs = (double)c * (double)L + (double)c * (double)(c + 1) / 2.0;
    const int64_t n = fresh_of_pairs(pairs);
    prefill_bufs m;
    infsim_prefill_args fa = prefill_fresh(b, n, h, g, bt, false, &m);
    for (int i = 0; i <= npl; i++) {
      const int at = (i + round) % (npl + 1);
      if (at == npl) {
        infsim_kernel_timing t = btime(b, infsim_kernel_op_prefill, &fa, 10, false);
        row_info r = {"prefill_chunk_fresh", "causal-auto", "bf16", 1, L, h, g, bt, 0, 0, c, n, 0, 0,
                      2.0 * (double)h * D * (double)n * (double)(n + 1)};
        emit(b, &r, &t);
        continue;
      }
      a.sm90_pipeline = pls[at]; /* 0 = auto; 2-3 version 14, 4-5 15, 6-7 16, 8-9 17, 10-15 18 */
      infsim_kernel_timing t = btime(b, infsim_kernel_op_prefill, &a, 10, false);
      char variant[32];
      if (pls[at])
        snprintf(variant, sizeof variant, "causal-p%d", pls[at]);
      else
        snprintf(variant, sizeof variant, "causal-auto");
      row_info r = {"prefill_chunk", variant, "bf16", 1, L, h, g, bt, 0, 0, c, 0, 0, 0, 4.0 * h * D * pairs};
      emit(b, &r, &t);
    }
    prefill_bufs_free(b, &m);
    void *all[] = {q, kn, vn, kp, vp, out, table};
    for (int i = 0; i < 7; i++) infsim_kernels_free(b->k, all[i]);
  }
}

/* The chunks bench_prefill and prefill_cmp time (64/8 heads). */
static const chunk_shape CHUNKS_70B[] = {{512, 4096, H70, G70}, {2048, 2048, H70, G70}, {2048, 14336, H70, G70},
                                         {4096, 12288, H70, G70}};

static void bench_prefill(bench *b) {
  const int64_t lens[] = {1024, 4096, 16384};
  const int64_t heads[][2] = {{H70, G70}, {32, 32}, {8, 1}};
  for (size_t hi = 0; hi < 3; hi++) {
    for (size_t li = 0; li < 3; li++) {
      int64_t N = lens[li], h = heads[hi][0], g = heads[hi][1], bt = 16;
      prefill_bufs m;
      infsim_prefill_args a = prefill_fresh(b, N, h, g, bt, true, &m);
      /* auto first and 128 x 128 next to it (the same kernel on Hopper: their
       * spread shows the run-to-run noise; the long 16K runs heat the card). */
      /* {rows, keys, wgmma pipeline}: the wgmma kernel's pipelines 2 and 3
       * (version 14), 4-5 (version 15), 6-7 (version 16: K/V by bulk
       * tensor copies), 8-9 (version 17: its consumers) and 10-12 (version
       * 18) beside version 6 on compute capability 9.0. */
      const int tiles[16][3] = {{0, 0, 0},      {128, 128, 1},  {128, 128, 2},  {128, 128, 3}, {128, 128, 4},
                                {128, 128, 5},  {128, 128, 6},  {128, 128, 7},  {128, 128, 8}, {128, 128, 9},
                                {128, 128, 10}, {128, 128, 11}, {128, 128, 12}, {64, 64, 0},   {128, 32, 0},
                                {128, 64, 0}};
      for (int v = 0; v < (h == 32 ? 13 : 16); v++) { /* 32/32 (MHA, 7B-like): auto and the wgmma ones */
        a.q_tile_rows = tiles[v][0];
        a.k_tile_tokens = tiles[v][1];
        a.sm90_pipeline = tiles[v][2];
        infsim_kernel_timing t = btime(b, infsim_kernel_op_prefill, &a, 10, false);
        char variant[32];
        if (v == 0)
          snprintf(variant, sizeof variant, "causal-auto");
        else if (tiles[v][2] > 1)
          snprintf(variant, sizeof variant, "causal-q%dk%dp%d", tiles[v][0], tiles[v][1], tiles[v][2]);
        else
          snprintf(variant, sizeof variant, "causal-q%dk%d", tiles[v][0], tiles[v][1]);
        row_info r = {"prefill", variant, "bf16", 1, N, h, g, bt, 0, 0, 0, 0, 0, 0,
                      2.0 * (double)h * D * (double)N * (double)(N + 1)};
        emit(b, &r, &t);
      }
      prefill_bufs_free(b, &m);
    }
  }
  const int pls[14] = {0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 15};
  bench_chunks(b, CHUNKS_70B, sizeof CHUNKS_70B / sizeof *CHUNKS_70B, pls, 14, 0);
}

/* One fresh 16K-token prefill on 64/8 heads (32/32 with
 * INFSIM_BENCH_HEADS=32) with the wgmma pipeline named by
 * INFSIM_BENCH_PIPELINE (default 4): a short run for a profiler to pick
 * one launch of (kernels/NOTES.md, 16 and 18). */
static void bench_prefill_one(bench *b) {
  const char *env = getenv("INFSIM_BENCH_PIPELINE"), *henv = getenv("INFSIM_BENCH_HEADS");
  const int pipeline = env ? atoi(env) : 4;
  const bool mha = henv && atoi(henv) == 32;
  const int64_t N = 16384, h = mha ? 32 : H70, g = mha ? 32 : G70, bt = 16;
  prefill_bufs m;
  infsim_prefill_args a = prefill_fresh(b, N, h, g, bt, false, &m);
  a.q_tile_rows = 128;
  a.k_tile_tokens = 128;
  a.sm90_pipeline = pipeline;
  infsim_kernel_timing t = btime(b, infsim_kernel_op_prefill, &a, 3, false);
  char variant[32];
  snprintf(variant, sizeof variant, "causal-q128k128p%d", pipeline);
  row_info r = {"prefill_one", variant, "bf16", 1, N, h, g, bt, 0, 0, 0, 0, 0, 0,
                2.0 * (double)h * D * (double)N * (double)(N + 1)};
  emit(b, &r, &t);
  prefill_bufs_free(b, &m);
}

int bench_round(void) {
  int64_t round = 0;
  env_counts("INFSIM_BENCH_ROUND", 0, 1000000, 1, &round, 1);
  return (int)round;
}

size_t env_counts(const char *name, int64_t lo, int64_t hi, int64_t step, int64_t *out, size_t cap) {
  const char *env = getenv(name);
  if (!env) return 0;
  size_t k = 0;
  for (const char *s = env; k == 0 || *s;) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || v < lo || v > hi || v % step) {
      if (step > 1)
        fprintf(stderr, "bench_kernels: %s: expected %lld-%lld in steps of %lld, got '%s'\n", name, (long long)lo,
                (long long)hi, (long long)step, env);
      else
        fprintf(stderr, "bench_kernels: %s: expected %lld-%lld, got '%s'\n", name, (long long)lo, (long long)hi, env);
      exit(2);
    }
    if (*end && *end != ',') {
      fprintf(stderr, "bench_kernels: %s: expected %s, got '%s'\n", name, cap > 1 ? "a comma list" : "one number", env);
      exit(2);
    }
    if (k == cap) {
      fprintf(stderr, "bench_kernels: %s: at most %zu values, got '%s'\n", name, cap, env);
      exit(2);
    }
    out[k++] = v;
    s = *end ? end + 1 : end;
  }
  return k;
}

/* Version 18 with and without the K/V append folded in (kernels/NOTES.md
 * 19): auto and pipelines 10, 11, 13 and 14 on fresh prompts of 1K, 4K and
 * 16K tokens (64/8, 32/32 and 8/1 heads), then the chunks with auto, 8 and
 * 12 (versions 17 and 18 side by side, NOTES.md 18, ran 8-12). One call is one round;
 * INFSIM_BENCH_ROUND rotates the order of each shape's variants, so a
 * script that runs several rounds (torch between them) gives every variant
 * every place in the order: the card's clock drifts as it heats, and a
 * variant timed first reads up to 10% higher (NOTES.md 17). */
static void bench_prefill_cmp(bench *b) {
  const int round = bench_round();
  /* $INFSIM_BENCH_LENS replaces the fresh prompt lengths (e.g.
   * 2048,3072,4096: where auto's rule changes pipeline). */
  int64_t lens[8] = {1024, 4096, 16384};
  const size_t swept = env_counts("INFSIM_BENCH_LENS", 16, 65536, 1, lens, sizeof lens / sizeof *lens);
  const size_t nlens = swept ? swept : 3;
  const int64_t heads[][2] = {{H70, G70}, {32, 32}, {8, 1}};
  enum { NPL = 5 };
  const int pls[NPL] = {0, 10, 11, 13, 14};
  for (size_t hi = 0; hi < 3; hi++) {
    for (size_t li = 0; li < nlens; li++) {
      const int64_t N = lens[li], h = heads[hi][0], g = heads[hi][1], bt = 16;
      prefill_bufs m;
      infsim_prefill_args a = prefill_fresh(b, N, h, g, bt, false, &m);
      for (int i = 0; i < NPL; i++) {
        const int pl = pls[(i + round) % NPL];
        a.q_tile_rows = pl ? 128 : 0;
        a.k_tile_tokens = pl ? 128 : 0;
        a.sm90_pipeline = pl;
        infsim_kernel_timing t = btime(b, infsim_kernel_op_prefill, &a, 10, false);
        char variant[32];
        if (pl)
          snprintf(variant, sizeof variant, "causal-q128k128p%d", pl);
        else
          snprintf(variant, sizeof variant, "causal-auto");
        row_info r = {"prefill", variant, "bf16", 1, N, h, g, bt, 0, 0, 0, 0, 0, 0,
                      2.0 * (double)h * D * (double)N * (double)(N + 1)};
        emit(b, &r, &t);
      }
      prefill_bufs_free(b, &m);
    }
  }
  if (swept) return; /* a sweep of fresh prompts only */
  const int cpl[3] = {0, 8, 12};
  bench_chunks(b, CHUNKS_70B, sizeof CHUNKS_70B / sizeof *CHUNKS_70B, cpl, 3, round);
}

/* Chunked prefill against fresh prompts of as many query-key pairs (issue
 * 16): the chunks the simulator runs (512 after 256 and 1K, 1024 after 1K)
 * and longer ones, on 32/32 heads (LLaMA2-7B, TP 1) and 64/8 (70B), with
 * auto, the unfused grids 11 and 12 (the append kernel first: auto's
 * choice for chunks before the fold, kernels/NOTES.md 21) and the fused
 * ones 13, 14 and 15; one round in the order $INFSIM_BENCH_ROUND. */
static void bench_chunk_cmp(bench *b) {
  const int round = bench_round();
  const int64_t cl[][2] = {{512, 256}, {512, 1024}, {1024, 1024}, {2048, 2048}, {512, 4096}, {2048, 14336},
                           {4096, 12288}};
  enum { NC = sizeof cl / sizeof cl[0] };
  chunk_shape shapes[2 * NC];
  for (int i = 0; i < 2 * NC; i++)
    shapes[i] = (chunk_shape){cl[i % NC][0], cl[i % NC][1], i < NC ? 32 : H70, i < NC ? 32 : G70};
  const int pls[6] = {0, 11, 12, 13, 14, 15};
  bench_chunks(b, shapes, 2 * NC, pls, 6, round);
}

/* The unfused sequence: RMSNorm in one pass, RoPE in a second. */
static infsim_status unfused_norm_rope_op(infsim_kernels *k, void *arg, infsim_error *err) {
  infsim_norm_rope_args a = *(const infsim_norm_rope_args *)arg;
  a.stages = INFSIM_NR_NORM;
  infsim_status st = infsim_kernels_norm_rope(k, &a, err);
  if (st != INFSIM_OK) return st;
  a.stages = INFSIM_NR_ROPE;
  return infsim_kernels_norm_rope(k, &a, err);
}

static void bench_norm_rope(bench *b) {
  const int64_t tokens[] = {1, 64, 1024, 16384, 65536};
  const int64_t h = H70, g = G70, rows = h + 2 * g;
  for (size_t ti = 0; ti < sizeof tokens / sizeof *tokens; ti++) {
    const int64_t T = tokens[ti];
    void *qkv = balloc(b, T * rows * D * 2), *pos = balloc(b, T * 4), *qw = balloc(b, D * 2), *kw = balloc(b, D * 2);
    bfill(b, qkv, INFSIM_KDTYPE_BF16, T * rows * D, 41);
    bfill(b, qw, INFSIM_KDTYPE_BF16, D, 42);
    bfill(b, kw, INFSIM_KDTYPE_BF16, D, 43);
    int32_t *p = malloc(sizeof *p * (size_t)T);
    for (int64_t i = 0; i < T; i++) p[i] = (int32_t)i;
    bupload(b, pos, p, T * 4);
    free(p);
    infsim_norm_rope_args a = {.tokens = (int32_t)T, .num_q_heads = (int32_t)h, .num_kv_heads = (int32_t)g,
                               .head_dim = D, .dtype = INFSIM_KDTYPE_BF16, .qkv = qkv, .positions = pos,
                               .q_weight = qw, .k_weight = kw, .eps = 1e-6f, .rope_theta = 10000.0f};
    const char *variants[3] = {"fused", "unfused", "rope"};
    for (int v = 0; v < 3; v++) {
      a.stages = v == 2 ? INFSIM_NR_ROPE : INFSIM_NR_NORM | INFSIM_NR_ROPE;
      infsim_kernel_timing t = btime(b, v == 1 ? unfused_norm_rope_op : infsim_kernel_op_norm_rope, &a, 20, true);
      row_info r = {"norm_rope", variants[v], "bf16", T, 0, h, g, 0, 0, 0, 0, 0, 0,
                    (double)T * (double)(h + g) * D * 2 * 2, 0};
      emit(b, &r, &t);
    }
    infsim_kernels_free(b->k, qkv), infsim_kernels_free(b->k, pos);
    infsim_kernels_free(b->k, qw), infsim_kernels_free(b->k, kw);
  }
}

typedef struct {
  cublasHandle_t h;
  infsim_gemm_args g;
} direct_gemm;

static infsim_status direct_gemm_op(infsim_kernels *k, void *arg, infsim_error *err) {
  (void)k;
  direct_gemm *d = arg;
  const float one = 1.0f, zero = 0.0f;
  cublasStatus_t s = cublasGemmEx(d->h, CUBLAS_OP_T, CUBLAS_OP_N, (int)d->g.n, (int)d->g.m, (int)d->g.k, &one,
                                  d->g.w, CUDA_R_16BF, (int)d->g.k, d->g.a, CUDA_R_16BF, (int)d->g.k, &zero, d->g.c,
                                  CUDA_R_16BF, (int)d->g.n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (s != CUBLAS_STATUS_SUCCESS) {
    snprintf(err->msg, sizeof err->msg, "cublasGemmEx: status %d", (int)s);
    err->status = INFSIM_ERUN;
    return INFSIM_ERUN;
  }
  return INFSIM_OK;
}

static void bench_gemm(bench *b) {
  struct {
    const char *name;
    infsim_kernel_model m;
    int64_t tp;
  } models[] = {{"llama2-70b-tp8", {8192, 64, 8, 128, 28672}, 8}, {"llama2-7b-tp1", {4096, 32, 32, 128, 11008}, 1}};
  const int64_t tokens[] = {1, 16, 128, 512, 2048, 8192};
  direct_gemm d;
  if (cublasCreate(&d.h) != CUBLAS_STATUS_SUCCESS) die("cublasCreate", NULL);
  cublasSetStream(d.h, (cudaStream_t)infsim_kernels_native_stream(b->k));
  int64_t cap = 8192LL * 57344; /* largest operand in elements */
  void *A = balloc(b, cap * 2), *W = balloc(b, cap * 2), *C = balloc(b, cap * 2);
  bfill(b, A, INFSIM_KDTYPE_BF16, cap, 41);
  bfill(b, W, INFSIM_KDTYPE_BF16, cap, 42);
  for (size_t mi = 0; mi < 2; mi++) {
    for (int kind = 0; kind < INFSIM_GEMM_KINDS; kind++) {
      for (size_t ti = 0; ti < 6; ti++) {
        infsim_error err;
        int64_t m, n, k;
        if (infsim_kernels_gemm_shape(&models[mi].m, models[mi].tp, (infsim_gemm_kind)kind, tokens[ti], &m, &n, &k,
                                      &err) != INFSIM_OK)
          die("gemm_shape", &err);
        infsim_gemm_args g = {.m = m, .n = n, .k = k, .dtype = INFSIM_KDTYPE_BF16, .a = A, .w = W, .c = C};
        row_info r = {"gemm", "", "bf16", 0, 0, 0, 0, 0, 0, 0, m, n, k, (double)(m * k + n * k + m * n) * 2,
                      2.0 * (double)m * n * k};
        char variant[64];
        snprintf(variant, sizeof variant, "%s:%s:ours", models[mi].name, infsim_gemm_kind_name((infsim_gemm_kind)kind));
        r.variant = variant;
        infsim_kernel_timing t = btime(b, infsim_kernel_op_gemm, &g, 20, true);
        emit(b, &r, &t);
        d.g = g;
        snprintf(variant, sizeof variant, "%s:%s:cublas", models[mi].name,
                 infsim_gemm_kind_name((infsim_gemm_kind)kind));
        t = btime(b, direct_gemm_op, &d, 20, true);
        emit(b, &r, &t);
      }
    }
  }
  cublasDestroy(d.h);
  infsim_kernels_free(b->k, A), infsim_kernels_free(b->k, W), infsim_kernels_free(b->k, C);
}


infsim_status d2d_op(infsim_kernels *k, void *arg, infsim_error *err) {
  (void)k;
  d2d *c = arg;
  cudaError_t e = cudaMemcpyAsync(c->dst, c->src, (size_t)c->bytes, cudaMemcpyDeviceToDevice, c->s);
  if (e != cudaSuccess) {
    snprintf(err->msg, sizeof err->msg, "cudaMemcpyAsync: %s", cudaGetErrorString(e));
    err->status = INFSIM_ERUN;
    return INFSIM_ERUN;
  }
  return INFSIM_OK;
}

void measure_copy(bench *b, d2d *c) {
  bfill(b, c->src, INFSIM_KDTYPE_F32, c->bytes / 4, 51);
  infsim_kernel_timing t = btime(b, d2d_op, c, 10, false);
  row_info r = {"copy", "d2d", "u8", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2.0 * (double)c->bytes, 0};
  emit(b, &r, &t);
  b->copy_gbps = 2.0 * (double)c->bytes / (t.median_ms * 1e-3) * 1e-9;
}

static void bench_copies(bench *b) {
  int64_t bytes = 4LL << 30;
  d2d c = {balloc(b, bytes), balloc(b, bytes), bytes, (cudaStream_t)infsim_kernels_native_stream(b->k)};
  measure_copy(b, &c);
  /* KV block copy: 4096 shuffled blocks of 64 KiB (16 tokens of one 70B
   * layer) and of 5 MiB (16 tokens, all 80 layers: a whole rBlock). */
  const int64_t block_bytes[] = {64 << 10, 5 << 20};
  for (int i = 0; i < 2; i++) {
    int64_t nb = bytes / block_bytes[i] / 2;
    int32_t *ids = malloc(sizeof *ids * (size_t)nb), *ids2 = malloc(sizeof *ids2 * (size_t)nb);
    shuffle_ids(ids, nb, 61);
    shuffle_ids(ids2, nb, 62);
    void *si = balloc(b, nb * 4), *di = balloc(b, nb * 4);
    bupload(b, si, ids, nb * 4);
    bupload(b, di, ids2, nb * 4);
    infsim_kv_copy_args a = {.dst_pool = c.dst, .src_pool = c.src, .block_bytes = block_bytes[i], .src_ids = si,
                             .dst_ids = di, .num_blocks = (int32_t)nb};
    infsim_kernel_timing t = btime(b, infsim_kernel_op_kv_copy, &a, 10, false);
    row_info rr = {"kv_copy", i == 0 ? "64KiB-blocks" : "5MiB-blocks", "u8", 0, 0, 0, 0, 0, 0, nb, 0, 0, 0,
                   2.0 * (double)(nb * block_bytes[i]), 0};
    emit(b, &rr, &t);
    free(ids), free(ids2);
    infsim_kernels_free(b->k, si), infsim_kernels_free(b->k, di);
  }
  void *stage = NULL;
  infsim_error err;
  int64_t chunk = 4 << 20, sbytes = 512LL << 20;
  if (infsim_kernels_host_alloc(b->k, 2 * chunk, &stage, &err) != INFSIM_OK) die("host_alloc", &err);
  infsim_staged_copy_args s = {.dst_buf = c.dst, .src_buf = c.src, .bytes = sbytes, .staging_host = stage,
                               .chunk_bytes = chunk};
  infsim_kernel_timing t = btime(b, infsim_kernel_op_staged_copy, &s, 5, false);
  row_info rs = {"staged_copy", "4MiB-chunks", "u8", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, (double)sbytes, 0};
  emit(b, &rs, &t);
  infsim_kernels_host_free(b->k, stage);
  infsim_kernels_free(b->k, c.dst), infsim_kernels_free(b->k, c.src);
}

/* Whether the comma list `only` (NULL: everything) names kind. */
static bool wants(const char *only, const char *kind) {
  if (!only) return true;
  size_t n = strlen(kind);
  for (const char *s = only; (s = strstr(s, kind)) != NULL; s += n)
    if ((s == only || s[-1] == ',') && (s[n] == ',' || s[n] == '\0')) return true;
  return false;
}

int main(int argc, char **argv) {
  const char *path = NULL;
  bench b = {0};
  const char *only = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
      path = argv[++i];
    else if (strcmp(argv[i], "--quick") == 0)
      b.quick = true;
    else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
      only = argv[++i];
    else if (strcmp(argv[i], "--warm-ms") == 0 && i + 1 < argc) {
      char *end;
      b.warm_ms = strtod(argv[++i], &end);
      if (*end || !(b.warm_ms > 0) || b.warm_ms > 600000) {
        fprintf(stderr, "bench_kernels: --warm-ms: expected milliseconds > 0, got '%s'\n", argv[i]);
        return 2;
      }
    } else {
      fprintf(stderr,
              "usage: bench_kernels --out FILE.csv [--quick] [--only KINDS] [--warm-ms MS]\n"
              "KINDS: a comma list of decode, merge, fused, mixed, prefill, gemm, copy, norm_rope, flush, splits\n"
              "(splits: decode against fixed split counts at small batches, splits_big: at the\n"
              "1-4 GiB shapes, fused_warm: the fused merge with and without the L2 flush, fused_paths: the\n"
              "fused merge's paths (split_merge 3, 4 and 5, or $INFSIM_BENCH_FUSED_PATHS) side by side,\n"
              "decode_grid: the one-split decode's two grids (decode_grid 1 and 2), prefill_one: one\n"
              "16K prefill with pipeline $INFSIM_BENCH_PIPELINE, for a profiler, prefill_cmp: versions 17\n"
              "and 18 side by side, one round in the order $INFSIM_BENCH_ROUND (fresh prompts of\n"
              "$INFSIM_BENCH_LENS tokens only, a comma list, where set), chunk_cmp: chunks after a\n"
              "cached prefix beside fresh prompts of as many pairs, one round likewise; only when named).\n"
              "--warm-ms: warm each measurement up with MS ms of calls (default 30 ms, at most 200 calls).\n"
              "Times the CUDA kernels at LLaMA2-70B shapes; one CSV row per measurement.\n");
      return strcmp(argv[i], "--help") == 0 ? 0 : 2;
    }
  }
  if (!path) {
    fprintf(stderr, "bench_kernels: --out FILE.csv is required (see --help)\n");
    return 2;
  }
  if (!infsim_kernels_cuda_available()) {
    fprintf(stderr, "bench_kernels: no usable CUDA GPU\n");
    return 77;
  }
  infsim_error err;
  if (infsim_kernels_open(INFSIM_KBACKEND_CUDA, &b.k, &err) != INFSIM_OK) die("open", &err);
  if (infsim_kernels_describe(b.k, &b.dev, &err) != INFSIM_OK) die("describe", &err);
  const char *split_merge = getenv("INFSIM_BENCH_SPLIT_MERGE");
  b.split_merge = split_merge ? atoi(split_merge) : 0;
  if (b.split_merge) fprintf(stderr, "decode and fused kinds: split_merge %d\n", b.split_merge);
  b.csv = fopen(path, "w");
  if (!b.csv) die("cannot open output", NULL);
  fprintf(b.csv, "source,kernel,variant,dtype,batch,context,q_heads,kv_heads,block_tokens,splits,parts,m,n,k,"
                 "median_ms,p10_ms,p90_ms,bytes,gbps,tflops,gpu,driver,sm_clock_mhz,mem_clock_mhz\n");
  fprintf(stderr, "%s, driver %s, SM clock %d MHz (max %d), mem clock %d MHz, %d SMs\n", b.dev.name,
          b.dev.driver_version, b.dev.sm_clock_mhz, b.dev.max_sm_clock_mhz, b.dev.mem_clock_mhz, b.dev.sm_count);
  if (wants(only, "copy")) bench_copies(&b);
  if (wants(only, "decode")) bench_decode(&b);
  if (wants(only, "merge")) bench_merge(&b);
  if (wants(only, "fused")) bench_fused(&b);
  if (wants(only, "mixed")) bench_mixed(&b);
  if (wants(only, "prefill")) bench_prefill(&b);
  if (only && wants(only, "prefill_one")) bench_prefill_one(&b);
  if (only && wants(only, "prefill_cmp")) bench_prefill_cmp(&b);
  if (only && wants(only, "chunk_cmp")) bench_chunk_cmp(&b);
  if (wants(only, "gemm")) bench_gemm(&b);
  if (wants(only, "norm_rope")) bench_norm_rope(&b);
  if (only && wants(only, "splits")) bench_splits(&b);
  if (only && wants(only, "splits_big")) bench_splits_big(&b);
  if (only && wants(only, "fused_warm")) bench_fused_warm(&b);
  if (only && wants(only, "fused_paths")) bench_fused_paths(&b);
  if (only && wants(only, "decode_grid")) bench_decode_grid(&b);
  if (wants(only, "flush")) bench_flush(&b);
  fclose(b.csv);
  infsim_kernels_close(b.k);
  return 0;
}
