/*
** runner.c: `calibrate run`: times the real kernels over a shape grid.
**
** One layer of one tensor-parallel shard is measured (layers are identical;
** the cost model multiplies by the layer count): query heads / tp, KV heads
** / tp (replicated when fewer than tp, as Megatron does), GEMM columns / tp.
** That is also how a model that does not fit one GPU (LLaMA2-70B) is
** measured: one shard's layer always fits.
**
** Grids (geometric, so alternate points can be held out for validation):
**   gemm_*        tokens
**   prefill_attn  prompt lengths, plus chunks after a cached prefix
**                 (chunked prefill), giving (tokens, pairs) off the diagonal
**   decode_attn   batch x context per request x local fraction (the share
**                 of each request's KV held here under DistAttention)
**   merge         requests x holders
**   kv_copy       rBlock copies within the GPU, 1 .. thousands of blocks
**   host_copy     device -> pinned host -> device staging
**   layer_prefill, layer_decode (TP 1): whole layers of the cluster model
**                 (cluster_model.h) as the cuda executor runs them: one
**                 upload, the launches (decode as a replayed CUDA graph),
**                 a sync, back to back with no L2 flush (steady state, the
**                 clock as it settles under load); one layer's time is
**                 half the difference between a 3-layer and a 1-layer
**                 model's forward (embedding and LM head cancel out)
** Inputs are random (values do not change the time of these kernels);
** block tables are shuffled so paged reads are scattered as in a serving
** engine. The L2 cache is flushed before each timed call on the GPU, since
** each layer of a real iteration touches other weights and other KV.
** Output is CSV (calib_internal.h), written atomically, with no library.
*/
#include <math.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "calib_internal.h"
#include "infsim/atomic_file.h"
#include "infsim/cluster_model.h"
#include "infsim/hardware.h"
#include "infsim/kernels.h"

/* Grid of one mode; arrays end with 0. */
typedef struct {
  int64_t gemm_tokens[32];
  int64_t prompt_tokens[32];
  int64_t chunk_tokens, chunk_past[12];
  int64_t batch[12], context[16];
  double local_fraction[4];
  int64_t holders[8], merge_requests[8];
  int64_t copy_blocks_max;
  int64_t host_bytes_max;
  int64_t kv_pool_bytes_max; /* per K or V pool */
  int32_t warmup, repeats;
} grid;

static const grid k_grid_gpu = {
    .gemm_tokens = {1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072,
                    4096, 6144, 8192, 12288, 16384},
    /* Prefill cost per pair falls 3-4x from short to long prompts: dense
     * enough that a held-out half is interpolation, not extrapolation. */
    .prompt_tokens = {16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192,
                      12288, 16384, 24576, 32768},
    .chunk_tokens = 512,
    .chunk_past = {256, 512, 1024, 2048, 4096, 8192, 16384, 32768},
    .batch = {1, 2, 4, 8, 16, 32, 64, 128, 256},
    .context = {128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 131072, 524288},
    .local_fraction = {1.0, 0.5, 0.125},
    .holders = {2, 4, 8, 16, 32},
    .merge_requests = {1, 4, 16, 64, 256},
    .copy_blocks_max = 8192,
    .host_bytes_max = 256 << 20,
    .kv_pool_bytes_max = (int64_t)3 << 30,
    .warmup = 2,
    .repeats = 10,
};

static const grid k_grid_gpu_quick = {
    .gemm_tokens = {1, 4, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192},
    .prompt_tokens = {64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384},
    .chunk_tokens = 512,
    .chunk_past = {2048, 8192},
    .batch = {1, 4, 16, 64, 256},
    .context = {256, 1024, 4096, 16384, 65536, 262144},
    .local_fraction = {1.0, 0.25},
    .holders = {2, 8, 32},
    .merge_requests = {1, 16, 256},
    .copy_blocks_max = 4096,
    .host_bytes_max = 64 << 20,
    .kv_pool_bytes_max = (int64_t)1 << 30,
    .warmup = 2,
    .repeats = 7,
};

/* The CPU reference is single-threaded and unoptimized: small shapes only,
 * enough for the pipeline (and its tests) to run end to end in seconds. */
static const grid k_grid_cpu = {
    .gemm_tokens = {1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128},
    .prompt_tokens = {16, 32, 48, 64, 96, 128, 192, 256},
    .chunk_tokens = 32,
    .chunk_past = {64, 128},
    .batch = {1, 2, 4, 8, 16},
    .context = {64, 128, 256, 512, 1024},
    .local_fraction = {1.0, 0.5},
    .holders = {2, 4, 8},
    .merge_requests = {1, 4, 16},
    .copy_blocks_max = 256,
    .host_bytes_max = 4 << 20,
    .kv_pool_bytes_max = 64 << 20,
    .warmup = 1,
    .repeats = 5,
};

enum { BLOCK_TOKENS = 16 }; /* scheduler.block_tokens default (vLLM's) */

typedef struct {
  infsim_kernels *k;
  const grid *g;
  const infsim_model_shape *m;
  int64_t tp;
  int64_t q_heads, kv_heads; /* per shard */
  int cuda;
  calib_raw_row proto;
  FILE *out, *log;
  int64_t rows;
} runner;

enum { MAX_RETIMES = 3 };

static infsim_status emit(runner *r, infsim_calib_kernel kernel, infsim_kernel_op op, void *args,
                          const int64_t agg[INFSIM_CALIB_VARS], double local_fraction, infsim_error *err) {
  infsim_time_opts to = {.warmup = r->g->warmup, .repeats = r->g->repeats, .flush_l2 = r->cuda};
  infsim_kernel_timing t;
  infsim_status st = infsim_kernels_time_ms(r->k, op, args, &to, &t, err);
  if (st != INFSIM_OK) return st;
  /* A point whose repeats spread over more than a tenth of its median was
   * disturbed while it ran (on the H100 a few GEMM points spread 44-97 us
   * where their neighbours spread under 5 us): time it again, up to
   * MAX_RETIMES times, and keep the steadiest attempt. */
  for (int attempt = 0; attempt < MAX_RETIMES && t.p90_ms - t.p10_ms > 0.1 * t.median_ms; attempt++) {
    infsim_kernel_timing again;
    if ((st = infsim_kernels_time_ms(r->k, op, args, &to, &again, err)) != INFSIM_OK) return st;
    if (again.p90_ms - again.p10_ms < t.p90_ms - t.p10_ms) t = again;
  }
  calib_raw_row row = r->proto;
  snprintf(row.kernel, sizeof row.kernel, "%s", infsim_calib_kernel_get(kernel)->name);
  memcpy(row.agg, agg, sizeof row.agg);
  row.local_fraction = local_fraction;
  row.repeats = t.repeats;
  /* A CPU clock can read 0 for a sub-resolution call; a time is > 0. */
  row.median_ns = fmax(t.median_ms * 1e6, 1.0);
  row.spread_ns = fmax((t.p90_ms - t.p10_ms) * 1e6, 0.0);
  calib_raw_write_row(r->out, &row);
  r->rows++;
  return INFSIM_OK;
}

/* A row timed outside infsim_kernels_time_ms (whole layers). */
static infsim_status emit_measured(runner *r, infsim_calib_kernel kernel, const int64_t agg[INFSIM_CALIB_VARS],
                                   double ns, int repeats) {
  calib_raw_row row = r->proto;
  snprintf(row.kernel, sizeof row.kernel, "%s", infsim_calib_kernel_get(kernel)->name);
  memcpy(row.agg, agg, sizeof row.agg);
  row.local_fraction = 1.0;
  row.repeats = repeats;
  /* A difference of two noisy medians can be <= 0 on a CPU: a time is > 0. */
  row.median_ns = fmax(ns, 1.0);
  row.spread_ns = 0.0;
  calib_raw_write_row(r->out, &row);
  r->rows++;
  return INFSIM_OK;
}

/* A permutation of 0..n-1 (Fisher-Yates over a fixed LCG: reproducible). */
static void shuffle_ids(int32_t *ids, int64_t n, uint64_t seed) {
  for (int64_t i = 0; i < n; i++) ids[i] = (int32_t)i;
  uint64_t s = seed * 6364136223846793005ull + 1442695040888963407ull;
  for (int64_t i = n - 1; i > 0; i--) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    int64_t j = (int64_t)((s >> 33) % (uint64_t)(i + 1));
    int32_t tmp = ids[i];
    ids[i] = ids[j];
    ids[j] = tmp;
  }
}

#define TRY(expr)                                  \
  do {                                             \
    if ((st = (expr)) != INFSIM_OK) goto cleanup; \
  } while (0)

static infsim_status run_gemms(runner *r, infsim_error *err) {
  infsim_status st = INFSIM_OK;
  const infsim_kernel_model km = {r->m->hidden, r->m->heads, r->m->kv_heads, r->m->head_dim, r->m->intermediate};
  int64_t max_tokens = 0;
  for (int i = 0; r->g->gemm_tokens[i]; i++) max_tokens = r->g->gemm_tokens[i];
  void *a = NULL, *w = NULL, *c = NULL;
  int64_t elem = r->m->dtype_bytes;
  for (int kind = 0; kind < INFSIM_GEMM_KINDS && st == INFSIM_OK; kind++) {
    int64_t m, n, kk;
    TRY(infsim_kernels_gemm_shape(&km, r->tp, (infsim_gemm_kind)kind, max_tokens, &m, &n, &kk, err));
    TRY(infsim_kernels_alloc(r->k, m * kk * elem, &a, err));
    TRY(infsim_kernels_alloc(r->k, n * kk * elem, &w, err));
    TRY(infsim_kernels_alloc(r->k, m * n * elem, &c, err));
    TRY(infsim_kernels_fill_random(r->k, a, INFSIM_KDTYPE_BF16, m * kk, 1, -1, 1, err));
    TRY(infsim_kernels_fill_random(r->k, w, INFSIM_KDTYPE_BF16, n * kk, 2, -0.05f, 0.05f, err));
    for (int i = 0; r->g->gemm_tokens[i]; i++) {
      int64_t tokens = r->g->gemm_tokens[i];
      infsim_gemm_args ga = {.dtype = INFSIM_KDTYPE_BF16, .a = a, .w = w, .c = c};
      TRY(infsim_kernels_gemm_shape(&km, r->tp, (infsim_gemm_kind)kind, tokens, &ga.m, &ga.n, &ga.k, err));
      int64_t agg[INFSIM_CALIB_VARS] = {[INFSIM_CALIB_TOKENS] = tokens};
      TRY(emit(r, INFSIM_CALIB_GEMM_QKV + kind, infsim_kernel_op_gemm, &ga, agg, 1.0, err));
    }
    infsim_kernels_free(r->k, a);
    infsim_kernels_free(r->k, w);
    infsim_kernels_free(r->k, c);
    a = w = c = NULL;
  }
cleanup:
  infsim_kernels_free(r->k, a);
  infsim_kernels_free(r->k, w);
  infsim_kernels_free(r->k, c);
  return st;
}

/* Prefill of one request: `fresh` new tokens after `past` cached ones. */
static infsim_status run_prefill(runner *r, infsim_error *err) {
  infsim_status st = INFSIM_OK;
  const grid *g = r->g;
  int64_t max_new = 0, max_total = 0;
  for (int i = 0; g->prompt_tokens[i]; i++) max_new = max_total = g->prompt_tokens[i];
  for (int i = 0; g->chunk_past[i]; i++)
    if (g->chunk_past[i] + g->chunk_tokens > max_total) max_total = g->chunk_past[i] + g->chunk_tokens;
  if (g->chunk_tokens > max_new) max_new = g->chunk_tokens;
  int64_t d = r->m->head_dim, elem = r->m->dtype_bytes;
  int64_t blocks = (max_total + BLOCK_TOKENS - 1) / BLOCK_TOKENS;
  int64_t pool_elems = blocks * r->kv_heads * BLOCK_TOKENS * d;
  void *q = NULL, *kn = NULL, *vn = NULL, *kp = NULL, *vp = NULL, *out = NULL, *table = NULL;
  int32_t *ids = malloc((size_t)blocks * sizeof *ids);
  if (ids == NULL) return infsim_fail(err, INFSIM_ENOMEM, "calibrate: out of memory");
  TRY(infsim_kernels_alloc(r->k, max_new * r->q_heads * d * elem, &q, err));
  TRY(infsim_kernels_alloc(r->k, max_new * r->kv_heads * d * elem, &kn, err));
  TRY(infsim_kernels_alloc(r->k, max_new * r->kv_heads * d * elem, &vn, err));
  TRY(infsim_kernels_alloc(r->k, pool_elems * elem, &kp, err));
  TRY(infsim_kernels_alloc(r->k, pool_elems * elem, &vp, err));
  TRY(infsim_kernels_alloc(r->k, max_new * r->q_heads * d * elem, &out, err));
  TRY(infsim_kernels_alloc(r->k, blocks * (int64_t)sizeof(int32_t), &table, err));
  TRY(infsim_kernels_fill_random(r->k, q, INFSIM_KDTYPE_BF16, max_new * r->q_heads * d, 3, -1, 1, err));
  TRY(infsim_kernels_fill_random(r->k, kn, INFSIM_KDTYPE_BF16, max_new * r->kv_heads * d, 4, -1, 1, err));
  TRY(infsim_kernels_fill_random(r->k, vn, INFSIM_KDTYPE_BF16, max_new * r->kv_heads * d, 5, -1, 1, err));
  TRY(infsim_kernels_fill_random(r->k, kp, INFSIM_KDTYPE_BF16, pool_elems, 6, -1, 1, err));
  TRY(infsim_kernels_fill_random(r->k, vp, INFSIM_KDTYPE_BF16, pool_elems, 7, -1, 1, err));
  shuffle_ids(ids, blocks, 11);
  TRY(infsim_kernels_upload(r->k, table, ids, blocks * (int64_t)sizeof(int32_t), err));
  /* Points: whole prompts (past 0), then chunks after a prefix. */
  for (int i = 0; st == INFSIM_OK; i++) {
    int64_t fresh, past;
    int n_prompts = 0;
    while (g->prompt_tokens[n_prompts]) n_prompts++;
    if (i < n_prompts) {
      fresh = g->prompt_tokens[i];
      past = 0;
    } else if (g->chunk_past[i - n_prompts]) {
      fresh = g->chunk_tokens;
      past = g->chunk_past[i - n_prompts];
    } else {
      break;
    }
    infsim_prefill_args pa = {
        .num_requests = 1, .num_q_heads = (int32_t)r->q_heads, .num_kv_heads = (int32_t)r->kv_heads,
        .head_dim = (int32_t)d, .new_tokens = (int32_t)fresh, .past_tokens = (int32_t)past,
        .block_tokens = BLOCK_TOKENS, .dtype = INFSIM_KDTYPE_BF16, .q = q, .k_new = kn, .v_new = vn,
        .k_pool = kp, .v_pool = vp, .block_table = table, .block_table_stride = (int32_t)blocks,
        .softmax_scale = (float)(1.0 / sqrt((double)d)), .out_dtype = INFSIM_KDTYPE_BF16, .out = out, .lse = NULL};
    /* costmodel.h: pairs = chunk x (tokens before it + (chunk + 1) / 2). */
    int64_t agg[INFSIM_CALIB_VARS] = {[INFSIM_CALIB_TOKENS] = fresh,
                                      [INFSIM_CALIB_PAIRS] = fresh * past + fresh * (fresh + 1) / 2,
                                      [INFSIM_CALIB_REQUESTS] = 1,
                                      [INFSIM_CALIB_CONTEXT_TOKENS] = past};
    st = emit(r, INFSIM_CALIB_PREFILL_ATTN, infsim_kernel_op_prefill, &pa, agg, 1.0, err);
  }
cleanup:
  free(ids);
  void *bufs[] = {q, kn, vn, kp, vp, out, table};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) infsim_kernels_free(r->k, bufs[i]);
  return st;
}

static infsim_status run_decode(runner *r, infsim_error *err) {
  infsim_status st = INFSIM_OK;
  const grid *g = r->g;
  int64_t d = r->m->head_dim, elem = r->m->dtype_bytes;
  int64_t block_elems = r->kv_heads * BLOCK_TOKENS * d;
  int64_t max_tokens = g->kv_pool_bytes_max / (r->kv_heads * d * elem);
  int64_t max_batch = 0, max_ctx = 0;
  for (int i = 0; g->batch[i]; i++) max_batch = g->batch[i];
  for (int i = 0; g->context[i]; i++) max_ctx = g->context[i];
  if (max_tokens > max_batch * max_ctx) max_tokens = max_batch * max_ctx;
  int64_t blocks = max_tokens / BLOCK_TOKENS;
  max_tokens = blocks * BLOCK_TOKENS;
  void *q = NULL, *kp = NULL, *vp = NULL, *out = NULL, *lse = NULL, *table = NULL, *ctx = NULL;
  int32_t *ids = malloc((size_t)blocks * sizeof *ids);
  int32_t *ctx_host = malloc((size_t)max_batch * sizeof *ctx_host);
  if (ids == NULL || ctx_host == NULL) {
    st = infsim_fail(err, INFSIM_ENOMEM, "calibrate: out of memory");
    goto cleanup;
  }
  TRY(infsim_kernels_alloc(r->k, max_batch * r->q_heads * d * elem, &q, err));
  TRY(infsim_kernels_alloc(r->k, blocks * block_elems * elem, &kp, err));
  TRY(infsim_kernels_alloc(r->k, blocks * block_elems * elem, &vp, err));
  TRY(infsim_kernels_alloc(r->k, max_batch * r->q_heads * d * 4, &out, err));
  TRY(infsim_kernels_alloc(r->k, max_batch * r->q_heads * 4, &lse, err));
  TRY(infsim_kernels_alloc(r->k, blocks * (int64_t)sizeof(int32_t), &table, err));
  TRY(infsim_kernels_alloc(r->k, max_batch * (int64_t)sizeof(int32_t), &ctx, err));
  TRY(infsim_kernels_fill_random(r->k, q, INFSIM_KDTYPE_BF16, max_batch * r->q_heads * d, 8, -1, 1, err));
  TRY(infsim_kernels_fill_random(r->k, kp, INFSIM_KDTYPE_BF16, blocks * block_elems, 9, -1, 1, err));
  TRY(infsim_kernels_fill_random(r->k, vp, INFSIM_KDTYPE_BF16, blocks * block_elems, 10, -1, 1, err));
  /* One shuffled table; request i owns the i-th stretch of it. */
  shuffle_ids(ids, blocks, 12);
  TRY(infsim_kernels_upload(r->k, table, ids, blocks * (int64_t)sizeof(int32_t), err));
  for (int bi = 0; g->batch[bi]; bi++)
    for (int ci = 0; g->context[ci]; ci++)
      for (int fi = 0; g->local_fraction[fi] > 0; fi++) {
        int64_t batch = g->batch[bi];
        int64_t local = (int64_t)((double)g->context[ci] * g->local_fraction[fi]);
        local = (local + BLOCK_TOKENS - 1) / BLOCK_TOKENS * BLOCK_TOKENS;
        int64_t stride = local / BLOCK_TOKENS;
        if (batch * local > max_tokens || local < BLOCK_TOKENS) continue;
        for (int64_t i = 0; i < batch; i++) ctx_host[i] = (int32_t)local;
        TRY(infsim_kernels_upload(r->k, ctx, ctx_host, batch * (int64_t)sizeof(int32_t), err));
        infsim_ma_decode_args da = {
            .num_requests = (int32_t)batch, .num_q_heads = (int32_t)r->q_heads,
            .num_kv_heads = (int32_t)r->kv_heads, .head_dim = (int32_t)d, .block_tokens = BLOCK_TOKENS,
            .dtype = INFSIM_KDTYPE_BF16, .q = q, .k_pool = kp, .v_pool = vp, .block_table = table,
            .block_table_stride = (int32_t)stride, .context_tokens = ctx, .max_context_tokens = (int32_t)local,
            .softmax_scale = (float)(1.0 / sqrt((double)d)), .num_splits = 0, .out = out, .lse = lse};
        int64_t agg[INFSIM_CALIB_VARS] = {[INFSIM_CALIB_REQUESTS] = batch,
                                          [INFSIM_CALIB_CONTEXT_TOKENS] = batch * local,
                                          [INFSIM_CALIB_BYTES] = 2 * batch * local * r->kv_heads * d * elem};
        TRY(emit(r, INFSIM_CALIB_DECODE_ATTN, infsim_kernel_op_ma_decode, &da, agg, g->local_fraction[fi], err));
      }
cleanup:
  free(ids);
  free(ctx_host);
  void *bufs[] = {q, kp, vp, out, lse, table, ctx};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) infsim_kernels_free(r->k, bufs[i]);
  return st;
}

static infsim_status run_merge(runner *r, infsim_error *err) {
  infsim_status st = INFSIM_OK;
  const grid *g = r->g;
  int64_t d = r->m->head_dim, max_p = 0, max_req = 0;
  for (int i = 0; g->holders[i]; i++) max_p = g->holders[i];
  for (int i = 0; g->merge_requests[i]; i++) max_req = g->merge_requests[i];
  int64_t max_rows = max_req * r->q_heads;
  void *po = NULL, *pl = NULL, *out = NULL, *lse = NULL;
  TRY(infsim_kernels_alloc(r->k, max_p * max_rows * d * 4, &po, err));
  TRY(infsim_kernels_alloc(r->k, max_p * max_rows * 4, &pl, err));
  TRY(infsim_kernels_alloc(r->k, max_rows * d * 4, &out, err));
  TRY(infsim_kernels_alloc(r->k, max_rows * 4, &lse, err));
  TRY(infsim_kernels_fill_random(r->k, po, INFSIM_KDTYPE_F32, max_p * max_rows * d, 13, -1, 1, err));
  TRY(infsim_kernels_fill_random(r->k, pl, INFSIM_KDTYPE_F32, max_p * max_rows, 14, -5, 5, err));
  for (int ri = 0; g->merge_requests[ri]; ri++)
    for (int pi = 0; g->holders[pi]; pi++) {
      int64_t req = g->merge_requests[ri], holders = g->holders[pi];
      infsim_merge_args ma = {.num_partials = (int32_t)holders, .rows = req * r->q_heads, .head_dim = (int32_t)d,
                              .part_out = po, .part_lse = pl, .out = out, .lse = lse};
      int64_t agg[INFSIM_CALIB_VARS] = {[INFSIM_CALIB_REQUESTS] = req, [INFSIM_CALIB_PARTIALS] = req * holders};
      TRY(emit(r, INFSIM_CALIB_MERGE, infsim_kernel_op_merge, &ma, agg, 1.0, err));
    }
cleanup:
  infsim_kernels_free(r->k, po);
  infsim_kernels_free(r->k, pl);
  infsim_kernels_free(r->k, out);
  infsim_kernels_free(r->k, lse);
  return st;
}

/* rBlock copies (one layer's K+V of BLOCK_TOKENS tokens per block) and
 * host-staged transfers. */
static infsim_status run_copies(runner *r, infsim_error *err) {
  infsim_status st = INFSIM_OK;
  const grid *g = r->g;
  int64_t block_bytes = 2 * BLOCK_TOKENS * r->kv_heads * r->m->head_dim * r->m->dtype_bytes;
  int64_t n_max = g->copy_blocks_max;
  void *pool = NULL, *src_ids = NULL, *dst_ids = NULL, *a = NULL, *b = NULL, *staging = NULL;
  int32_t *ids = malloc((size_t)(2 * n_max) * sizeof *ids);
  if (ids == NULL) return infsim_fail(err, INFSIM_ENOMEM, "calibrate: out of memory");
  TRY(infsim_kernels_alloc(r->k, 2 * n_max * block_bytes, &pool, err));
  TRY(infsim_kernels_alloc(r->k, n_max * (int64_t)sizeof(int32_t), &src_ids, err));
  TRY(infsim_kernels_alloc(r->k, n_max * (int64_t)sizeof(int32_t), &dst_ids, err));
  TRY(infsim_kernels_memset(r->k, pool, 1, 2 * n_max * block_bytes, err));
  shuffle_ids(ids, 2 * n_max, 15);
  TRY(infsim_kernels_upload(r->k, src_ids, ids, n_max * (int64_t)sizeof(int32_t), err));
  TRY(infsim_kernels_upload(r->k, dst_ids, ids + n_max, n_max * (int64_t)sizeof(int32_t), err));
  for (int64_t n = 1; n <= n_max; n *= 2) {
    infsim_kv_copy_args ca = {.dst_pool = pool, .src_pool = pool, .block_bytes = block_bytes,
                              .src_ids = src_ids, .dst_ids = dst_ids, .num_blocks = (int32_t)n};
    int64_t agg[INFSIM_CALIB_VARS] = {[INFSIM_CALIB_BYTES] = n * block_bytes};
    TRY(emit(r, INFSIM_CALIB_KV_COPY, infsim_kernel_op_kv_copy, &ca, agg, 1.0, err));
  }
  int64_t chunk = 4 << 20;
  TRY(infsim_kernels_alloc(r->k, g->host_bytes_max, &a, err));
  TRY(infsim_kernels_alloc(r->k, g->host_bytes_max, &b, err));
  TRY(infsim_kernels_memset(r->k, a, 2, g->host_bytes_max, err));
  TRY(infsim_kernels_host_alloc(r->k, 2 * chunk, &staging, err));
  for (int64_t bytes = 64 << 10; bytes <= g->host_bytes_max; bytes *= 2) {
    infsim_staged_copy_args sa = {.dst_buf = b, .src_buf = a, .bytes = bytes, .staging_host = staging,
                                  .chunk_bytes = bytes < chunk ? bytes : chunk};
    int64_t agg[INFSIM_CALIB_VARS] = {[INFSIM_CALIB_BYTES] = bytes};
    TRY(emit(r, INFSIM_CALIB_HOST_COPY, infsim_kernel_op_staged_copy, &sa, agg, 1.0, err));
  }
cleanup:
  free(ids);
  if (staging) infsim_kernels_host_free(r->k, staging);
  void *bufs[] = {pool, src_ids, dst_ids, a, b};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) infsim_kernels_free(r->k, bufs[i]);
  return st;
}

/* Whole-layer grid: prompts, and decode batches x contexts (KV of a batch
 * at most layer_kv_tokens). Arrays end with 0. */
typedef struct {
  int64_t prompts[12], batch[12], context[6], kv_tokens;
  /* Skewed decode batches: long_batch requests, one at each long_context,
   * the others at short_context. */
  int64_t long_batch[12], long_context[6], short_context;
  int warmup, repeats, heat_ms;
} layer_grid;

static const layer_grid k_layers_gpu = {
    .prompts = {64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384},
    .batch = {1, 2, 4, 8, 16, 32, 64, 128, 256},
    .context = {512, 2048, 8192},
    .kv_tokens = 262144,
    .long_batch = {2, 3, 5, 6, 8, 12, 16, 24, 40, 64, 96},
    .long_context = {1024, 2048, 4096, 8192, 16384},
    .short_context = 256,
    .warmup = 3,
    .repeats = 15,
    .heat_ms = 2000,
};

static const layer_grid k_layers_cpu = {
    .prompts = {16, 32, 48, 64, 96, 128},
    .batch = {1, 2, 4},
    .context = {32, 64},
    .kv_tokens = 512,
    .long_batch = {2, 3},
    .long_context = {64, 96},
    .short_context = 16,
    .warmup = 1,
    .repeats = 3,
    .heat_ms = 0,
};

static double wall_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_dbl(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Median wall time of one forward (upload, launches, sync) over `repeats`
 * after `warmup`, back to back. */
static infsim_status time_forward(infsim_cmodel *m, const infsim_cmodel_part *parts, int32_t n, int warmup,
                                  int repeats, double *median_ns, infsim_error *err) {
  double t[64];
  infsim_status st = INFSIM_OK;
  if (repeats > 64) repeats = 64;
  for (int i = 0; i < warmup + repeats && st == INFSIM_OK; i++) {
    double t0 = wall_s();
    st = infsim_cmodel_forward(m, parts, n, NULL, err);
    if (st == INFSIM_OK) st = infsim_kernels_sync(infsim_cmodel_kernels(m), err);
    if (i >= warmup) t[i - warmup] = (wall_s() - t0) * 1e9;
  }
  if (st != INFSIM_OK) return st;
  qsort(t, (size_t)repeats, sizeof *t, cmp_dbl);
  *median_ns = t[repeats / 2];
  return INFSIM_OK;
}

static infsim_status run_layers(runner *r, infsim_error *err) {
  /* The cluster model runs whole, unsharded layers: TP 1 only. */
  if (r->tp != 1) return INFSIM_OK;
  const layer_grid *g = r->cuda ? &k_layers_gpu : &k_layers_cpu;
  int64_t max_prompt = 0, max_batch = 0, max_ctx = 0;
  for (int i = 0; g->prompts[i]; i++) max_prompt = g->prompts[i];
  for (int i = 0; g->batch[i]; i++) max_batch = g->batch[i];
  for (int i = 0; g->context[i]; i++) max_ctx = g->context[i];
  for (int i = 0; g->long_context[i]; i++)
    if (g->long_context[i] > max_ctx) max_ctx = g->long_context[i];
  const int64_t max_ctx_cap = max_ctx;
  int64_t pool = g->kv_tokens / BLOCK_TOKENS + max_batch + max_prompt / BLOCK_TOKENS + 1;
  infsim_cmodel *m[2] = {NULL, NULL}; /* 1 and 3 layers */
  int32_t *slots = malloc((size_t)pool * sizeof *slots);
  infsim_cmodel_part *parts = malloc((size_t)max_batch * sizeof *parts);
  infsim_status st = INFSIM_OK;
  if (!slots || !parts) st = infsim_fail(err, INFSIM_ENOMEM, "calibrate: out of memory");
  for (int64_t i = 0; st == INFSIM_OK && i < pool; i++) slots[i] = (int32_t)i;
  for (int v = 0; v < 2 && st == INFSIM_OK; v++) {
    infsim_model_shape s = *r->m;
    s.layers = v == 0 ? 1 : 3;
    infsim_cmodel_params p;
    st = infsim_cmodel_params_from_shape(&s, BLOCK_TOKENS, pool, max_prompt > max_batch ? max_prompt : max_batch,
                                         max_batch, (max_prompt > max_ctx ? max_prompt : max_ctx) / BLOCK_TOKENS + 2,
                                         &p, err);
    /* As the cuda executor: decode steps replayed as graphs, padded to the graphs' sizes. */
    p.decode_graphs = p.pad_decodes = r->cuda;
    if (st == INFSIM_OK) st = infsim_cmodel_new(r->k, &p, &m[v], err);
  }
  /* Sustained load first: under a power cap the clock settles below its
   * idle maximum within a second or two of serving. */
  if (st == INFSIM_OK && g->heat_ms > 0) {
    parts[0] = (infsim_cmodel_part){.req = 0, .prompt_tokens = (int32_t)max_prompt,
                                    .query_tokens = (int32_t)(max_prompt < 4096 ? max_prompt : 4096),
                                    .slots = slots, .slot_count = (int32_t)(max_prompt / BLOCK_TOKENS + 1)};
    for (double t0 = wall_s(); st == INFSIM_OK && wall_s() - t0 < g->heat_ms * 1e-3;) {
      double ignored;
      st = time_forward(m[1], parts, 1, 0, 4, &ignored, err);
    }
  }
  /* Prompts, then decode batches; one layer = (t(3) - t(1)) / 2. */
  for (int i = 0; st == INFSIM_OK && g->prompts[i]; i++) {
    int64_t n = g->prompts[i];
    parts[0] = (infsim_cmodel_part){.req = 0, .prompt_tokens = (int32_t)n, .query_tokens = (int32_t)n,
                                    .slots = slots, .slot_count = (int32_t)(n / BLOCK_TOKENS + 1)};
    double t1 = 0, t3 = 0;
    st = time_forward(m[0], parts, 1, g->warmup, g->repeats, &t1, err);
    if (st == INFSIM_OK) st = time_forward(m[1], parts, 1, g->warmup, g->repeats, &t3, err);
    if (st != INFSIM_OK) break;
    int64_t agg[INFSIM_CALIB_VARS] = {[INFSIM_CALIB_TOKENS] = n, [INFSIM_CALIB_PAIRS] = n * (n + 1) / 2,
                                      [INFSIM_CALIB_REQUESTS] = 1};
    st = emit_measured(r, INFSIM_CALIB_LAYER_PREFILL, agg, (t3 - t1) / 2, g->repeats);
  }
  for (int bi = 0; st == INFSIM_OK && g->batch[bi]; bi++)
    for (int ci = 0; st == INFSIM_OK && g->context[ci]; ci++) {
      int64_t b = g->batch[bi], c = g->context[ci], per = c / BLOCK_TOKENS + 1;
      if (b * c > g->kv_tokens) continue;
      /* The KV is not computed (its values do not change the time): each
       * request's blocks are declared its own. */
      for (int64_t q = 0; q < b; q++) {
        parts[q] = (infsim_cmodel_part){.req = q, .prompt_tokens = (int32_t)c, .query_tokens = 1,
                                        .context_tokens = (int32_t)c, .slots = slots + q * per,
                                        .slot_count = (int32_t)per};
        for (int v = 0; v < 2; v++)
          for (int64_t j = 0; j < per; j++) infsim_cmodel_claim(m[v], slots[q * per + j], q, (int32_t)j);
      }
      double t1 = 0, t3 = 0;
      st = time_forward(m[0], parts, (int32_t)b, g->warmup, g->repeats, &t1, err);
      if (st == INFSIM_OK) st = time_forward(m[1], parts, (int32_t)b, g->warmup, g->repeats, &t3, err);
      if (st != INFSIM_OK) break;
      int64_t agg[INFSIM_CALIB_VARS] = {[INFSIM_CALIB_REQUESTS] = b, [INFSIM_CALIB_CONTEXT_TOKENS] = b * c};
      st = emit_measured(r, INFSIM_CALIB_LAYER_DECODE, agg, (t3 - t1) / 2, g->repeats);
    }
  /* One long request among short ones: the MA decode cuts every request
   * into the splits the padded batch and the longest context choose, so
   * the long request's CTAs walk far more KV than the others and bound the
   * kernel (kernels/ma_decode.cu); the uniform batches above never show it. */
  int sm_count = 1;
  if (st == INFSIM_OK) {
    infsim_kernel_device dev;
    st = infsim_kernels_describe(r->k, &dev, err);
    if (st == INFSIM_OK && dev.sm_count > 0) sm_count = dev.sm_count;
  }
  for (int bi = 0; st == INFSIM_OK && g->long_batch[bi]; bi++)
    for (int ci = 0; st == INFSIM_OK && g->long_context[ci]; ci++) {
      int64_t b = g->long_batch[bi], lc = g->long_context[ci], sc = g->short_context, total = 0;
      if (b > max_batch || lc > max_ctx_cap) continue;
      int64_t at = 0;
      for (int64_t q = 0; q < b; q++) {
        int64_t c = q == 0 ? lc : sc, per = c / BLOCK_TOKENS + 1;
        parts[q] = (infsim_cmodel_part){.req = q, .prompt_tokens = (int32_t)c, .query_tokens = 1,
                                        .context_tokens = (int32_t)c, .slots = slots + at,
                                        .slot_count = (int32_t)per};
        for (int v = 0; v < 2; v++)
          for (int64_t j = 0; j < per; j++) infsim_cmodel_claim(m[v], slots[at + j], q, (int32_t)j);
        at += per;
        total += c;
      }
      double t1 = 0, t3 = 0;
      st = time_forward(m[0], parts, (int32_t)b, g->warmup, g->repeats, &t1, err);
      if (st == INFSIM_OK) st = time_forward(m[1], parts, (int32_t)b, g->warmup, g->repeats, &t3, err);
      if (st != INFSIM_OK) break;
      int64_t agg[INFSIM_CALIB_VARS] = {[INFSIM_CALIB_TOKENS] = lc, [INFSIM_CALIB_REQUESTS] = b,
                                        [INFSIM_CALIB_CONTEXT_TOKENS] = total, [INFSIM_CALIB_PARTIALS] = sm_count};
      st = emit_measured(r, INFSIM_CALIB_LAYER_DECODE_LONG, agg, (t3 - t1) / 2, g->repeats);
    }
  infsim_cmodel_free(m[0]);
  infsim_cmodel_free(m[1]);
  free(slots);
  free(parts);
  return st;
}

/* TP degrees that shard this model evenly (kernels.h's rule). */
static int tp_valid(const infsim_model_shape *m, int64_t tp) {
  const infsim_kernel_model km = {m->hidden, m->heads, m->kv_heads, m->head_dim, m->intermediate};
  int64_t a, b, c;
  for (int kind = 0; kind < INFSIM_GEMM_KINDS; kind++)
    if (infsim_kernels_gemm_shape(&km, tp, (infsim_gemm_kind)kind, 1, &a, &b, &c, NULL) != INFSIM_OK) return 0;
  return 1;
}

infsim_status infsim_calib_run(const infsim_calib_run_opts *opts, infsim_error *err) {
  infsim_model_shape m;
  if (!infsim_model_builtin(opts->model, &m))
    return infsim_fail(err, INFSIM_EINPUT, "--model: unknown model '%s' (llama2-7b, llama2-13b, llama2-70b, tiny)",
                       opts->model);
  if (m.head_dim != INFSIM_KERNEL_HEAD_DIM)
    return infsim_fail(err, INFSIM_EINPUT, "--model: %s has head_dim %lld; the kernels take %d", opts->model,
                       (long long)m.head_dim, INFSIM_KERNEL_HEAD_DIM);
  infsim_kernel_backend backend;
  if (!infsim_kernel_backend_parse(opts->backend, &backend))
    return infsim_fail(err, INFSIM_EINPUT, "--backend: unknown backend '%s' (cuda, cpu)", opts->backend);
  int64_t tps[8];
  int n_tp = 0;
  if (opts->n_tp > 0) {
    for (int i = 0; i < opts->n_tp; i++) {
      if (!tp_valid(&m, opts->tp[i]))
        return infsim_fail(err, INFSIM_EINPUT, "--tp: %lld does not divide the heads and columns of %s",
                           (long long)opts->tp[i], opts->model);
      tps[n_tp++] = opts->tp[i];
    }
  } else {
    for (int64_t tp = 1; tp <= 8; tp *= 2)
      if (tp_valid(&m, tp)) tps[n_tp++] = tp;
  }
  infsim_kernels *k = NULL;
  infsim_status st = infsim_kernels_open(backend, &k, err);
  if (st != INFSIM_OK) return st;
  infsim_kernel_device dev;
  st = infsim_kernels_describe(k, &dev, err);
  infsim_atomic_file af = {0};
  if (st == INFSIM_OK) st = infsim_atomic_open(&af, opts->out_path, err);
  if (st != INFSIM_OK) {
    infsim_kernels_close(k);
    return st;
  }
  runner r = {.k = k, .m = &m, .cuda = backend == INFSIM_KBACKEND_CUDA, .out = af.fp, .log = opts->log};
  r.g = !r.cuda ? &k_grid_cpu : opts->quick ? &k_grid_gpu_quick : &k_grid_gpu;
  calib_raw_row *p = &r.proto;
  p->schema = INFSIM_CALIB_RAW_VERSION;
  snprintf(p->gpu, sizeof p->gpu, "%s", dev.name);
  snprintf(p->driver, sizeof p->driver, "%s", dev.driver_version[0] ? dev.driver_version : "none");
  p->sm_clock_mhz = dev.sm_clock_mhz;
  p->mem_clock_mhz = dev.mem_clock_mhz;
  snprintf(p->backend, sizeof p->backend, "%s", infsim_kernel_backend_name(backend));
  snprintf(p->model, sizeof p->model, "%s", m.name);
  p->layers = m.layers;
  p->hidden = m.hidden;
  p->heads = m.heads;
  p->kv_heads = m.kv_heads;
  p->head_dim = m.head_dim;
  p->intermediate = m.intermediate;
  p->dtype_bytes = m.dtype_bytes;
  calib_raw_write_header(af.fp);
  if (r.log) fprintf(r.log, "calibrate: %s on %s (driver %s, SM clock %d MHz), TP", m.name, dev.name, p->driver,
                     dev.sm_clock_mhz);
  for (int i = 0; r.log && i < n_tp; i++) fprintf(r.log, " %lld", (long long)tps[i]);
  if (r.log) fprintf(r.log, "\n");
  static infsim_status (*const k_sections[])(runner *, infsim_error *) = {run_gemms, run_prefill, run_decode,
                                                                         run_merge, run_copies, run_layers};
  static const char *const k_section_names[] = {"gemm", "prefill", "decode", "merge", "copies", "layers"};
  for (int i = 0; i < n_tp && st == INFSIM_OK; i++) {
    r.tp = tps[i];
    r.proto.tp = tps[i];
    r.q_heads = m.heads / r.tp;
    r.kv_heads = m.kv_heads >= r.tp ? m.kv_heads / r.tp : 1;
    for (size_t s = 0; s < sizeof k_sections / sizeof k_sections[0] && st == INFSIM_OK; s++) {
      int64_t before = r.rows;
      st = k_sections[s](&r, err);
      if (st == INFSIM_OK && r.log)
        fprintf(r.log, "calibrate: tp %lld %-8s %4lld measurements\n", (long long)r.tp, k_section_names[s],
                (long long)(r.rows - before));
      if (r.log) fflush(r.log);
    }
  }
  if (st == INFSIM_OK) {
    st = infsim_atomic_commit(&af, err);
  } else {
    infsim_atomic_abort(&af);
  }
  infsim_kernels_close(k);
  if (st == INFSIM_OK && r.log) fprintf(r.log, "calibrate: wrote %lld measurements to %s\n", (long long)r.rows,
                                        opts->out_path);
  return st;
}
