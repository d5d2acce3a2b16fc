/*
** test_kernels_cpu.c: the CPU reference kernels against independent truth.
**
** - fp16/bf16 conversions: known bit patterns, round-half-even, and the
**   exact round trip of every 16-bit value;
** - MA decode and prefill against a naive float64 attention written here;
** - the LSE merge: random splits of a context (empty pieces included) merge
**   to one-shot attention, extreme logits (+-1e4) stay finite, all-empty
**   gives zeros and -inf, and merging is associative;
** - MA decode with remote partials merged in the same call (fp32 and fp16
**   partials, random splits, empty ones holding NaN) against one-shot
**   float64 attention;
** - GEMM against float64, block copies bit-exact, GEMM shapes of LLaMA2-70B
**   on 8 GPUs by hand, argument checks, and the timing function's ordering;
** - per-head RMSNorm + RoPE against float64 (each stage and both), with
**   exact invariants: v heads untouched, position 0 rotates nothing.
*/
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "infsim/kernels.h"

enum { D = INFSIM_KERNEL_HEAD_DIM };

static void must(infsim_status st, const infsim_error *err) {
  if (st != INFSIM_OK) fail_msg("kernel call failed: %s", err->msg);
}

static int setup(void **state) {
  infsim_kernels *k = NULL;
  infsim_error err;
  if (infsim_kernels_open(INFSIM_KBACKEND_CPU, &k, &err) != INFSIM_OK) return -1;
  *state = k;
  return 0;
}

static int teardown(void **state) {
  infsim_kernels_close(*state);
  return 0;
}

static float load16(const uint16_t *p, infsim_kdtype t, int64_t i) {
  return t == INFSIM_KDTYPE_BF16 ? infsim_bf16_to_float(p[i]) : infsim_f16_to_float(p[i]);
}

/* ||a - b|| / ||b||, NaN -> inf, equal infinities ignored. */
static double rel_err(const float *a, const double *b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) {
    if (isnan(a[i]) || isnan(b[i])) return INFINITY;
    if (isinf(a[i]) || isinf(b[i])) {
      if ((double)a[i] != b[i]) return INFINITY;
      continue;
    }
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void test_f16_known_values(void **state) {
  (void)state;
  assert_int_equal(infsim_float_to_f16(1.0f), 0x3c00);
  assert_int_equal(infsim_float_to_f16(-2.0f), 0xc000);
  assert_int_equal(infsim_float_to_f16(65504.0f), 0x7bff);
  assert_int_equal(infsim_float_to_f16(65519.0f), 0x7bff); /* below the halfway point to 65536 */
  assert_int_equal(infsim_float_to_f16(65520.0f), 0x7c00); /* halfway rounds to even: inf */
  assert_int_equal(infsim_float_to_f16(ldexpf(1.0f, -24)), 0x0001);
  assert_int_equal(infsim_float_to_f16(ldexpf(1.0f, -25)), 0x0000);        /* tie to even: 0 */
  assert_int_equal(infsim_float_to_f16(ldexpf(3.0f, -25)), 0x0002);        /* 1.5 units: tie to even 2 */
  assert_int_equal(infsim_float_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00); /* tie: stays even */
  assert_int_equal(infsim_float_to_f16(1.0f + ldexpf(3.0f, -11)), 0x3c02); /* tie: up to even */
  assert_true(isinf(infsim_f16_to_float(0x7c00)));
  assert_true(isnan(infsim_f16_to_float(0x7e00)));
  assert_true(isnan(infsim_f16_to_float(infsim_float_to_f16(NAN))));
  assert_true(infsim_f16_to_float(0x0001) == ldexpf(1.0f, -24));
  assert_int_equal(infsim_float_to_bf16(1.0f), 0x3f80);
  assert_int_equal(infsim_float_to_bf16(1.0f + ldexpf(1.0f, -8)), 0x3f80); /* tie: even */
  assert_int_equal(infsim_float_to_bf16(1.0f + ldexpf(3.0f, -8)), 0x3f82); /* tie: up to even */
  assert_true(isnan(infsim_bf16_to_float(infsim_float_to_bf16(NAN))));
  assert_true(isinf(infsim_bf16_to_float(infsim_float_to_bf16(INFINITY))));
}

static void test_every_16bit_value_round_trips(void **state) {
  (void)state;
  for (uint32_t u = 0; u < 65536; u++) {
    uint16_t h = (uint16_t)u;
    float f = infsim_f16_to_float(h);
    if (!isnan(f)) assert_int_equal(infsim_float_to_f16(f), h);
    float b = infsim_bf16_to_float(h);
    if (!isnan(b)) assert_int_equal(infsim_float_to_bf16(b), h);
  }
}

static void test_fill_is_deterministic_and_in_range(void **state) {
  (void)state;
  enum { N = 10000 };
  float a[N], b[N];
  infsim_kernels_fill_random_host(a, INFSIM_KDTYPE_F32, N, 42, -2.0f, 3.0f);
  infsim_kernels_fill_random_host(b, INFSIM_KDTYPE_F32, N, 42, -2.0f, 3.0f);
  assert_memory_equal(a, b, sizeof a);
  double mean = 0;
  for (int i = 0; i < N; i++) {
    assert_true(a[i] >= -2.0f && a[i] < 3.0f);
    mean += a[i] / N;
  }
  assert_true(fabs(mean - 0.5) < 0.05); /* uniform on [-2, 3): mean 0.5, sd of mean 0.014 */
  infsim_kernels_fill_random_host(b, INFSIM_KDTYPE_F32, N, 43, -2.0f, 3.0f);
  assert_memory_not_equal(a, b, sizeof a);
}

/* A paged KV cache in host memory (the CPU backend's buffers are host memory). */
typedef struct {
  int32_t reqs, h, g, bt, stride, nblocks;
  infsim_kdtype t;
  uint16_t *q, *k, *v;
  int32_t *table, *ctx;
} kvcache;

static void kv_make(kvcache *c, infsim_kdtype t, int32_t reqs, int32_t h, int32_t g, int32_t bt, int32_t max_ctx,
                    uint64_t seed) {
  c->t = t, c->reqs = reqs, c->h = h, c->g = g, c->bt = bt;
  c->stride = (max_ctx + bt - 1) / bt;
  c->nblocks = reqs * c->stride + 1;
  int64_t pool = (int64_t)c->nblocks * g * bt * D;
  c->q = malloc(sizeof *c->q * (size_t)(reqs * h * D));
  c->k = malloc(sizeof *c->k * (size_t)pool);
  c->v = malloc(sizeof *c->v * (size_t)pool);
  c->table = malloc(sizeof *c->table * (size_t)(reqs * c->stride));
  c->ctx = malloc(sizeof *c->ctx * (size_t)reqs);
  infsim_kernels_fill_random_host(c->q, t, reqs * h * D, seed, -1, 1);
  infsim_kernels_fill_random_host(c->k, t, pool, seed + 1, -1, 1);
  infsim_kernels_fill_random_host(c->v, t, pool, seed + 2, -1, 1);
  /* Blocks in a scrambled order: pool block 0 is never used. */
  for (int32_t i = 0; i < reqs * c->stride; i++) c->table[i] = 1 + (int32_t)(((int64_t)i * 7919) % (reqs * c->stride));
  srand((unsigned)seed);
  for (int32_t r = 0; r < reqs; r++) c->ctx[r] = r == 0 ? max_ctx : rand() % (max_ctx + 1);
}

static void kv_free(kvcache *c) {
  free(c->q), free(c->k), free(c->v), free(c->table), free(c->ctx);
}

/* Naive float64 attention of query row (r, head) over tokens [t0, t1). */
static double naive(const kvcache *c, int32_t r, int32_t hh, int64_t t0, int64_t t1, float scale, double *out) {
  int32_t kh = hh / (c->h / c->g);
  for (int d = 0; d < D; d++) out[d] = 0;
  if (t1 <= t0) return -INFINITY;
  double *s = malloc(sizeof *s * (size_t)(t1 - t0));
  double m = -INFINITY;
  for (int64_t t = t0; t < t1; t++) {
    int64_t base = (((int64_t)c->table[r * c->stride + t / c->bt] * c->g + kh) * c->bt + t % c->bt) * D;
    double acc = 0;
    for (int d = 0; d < D; d++) acc += (double)load16(c->q, c->t, ((int64_t)r * c->h + hh) * D + d) * load16(c->k, c->t, base + d);
    s[t - t0] = acc * scale;
    if (s[t - t0] > m) m = s[t - t0];
  }
  double l = 0;
  for (int64_t t = t0; t < t1; t++) {
    int64_t base = (((int64_t)c->table[r * c->stride + t / c->bt] * c->g + kh) * c->bt + t % c->bt) * D;
    double p = exp(s[t - t0] - m);
    l += p;
    for (int d = 0; d < D; d++) out[d] += p * load16(c->v, c->t, base + d);
  }
  for (int d = 0; d < D; d++) out[d] /= l;
  free(s);
  return m + log(l);
}

static infsim_ma_decode_args decode_args(const kvcache *c, float scale, float *out, float *lse) {
  int32_t mx = 0;
  for (int32_t r = 0; r < c->reqs; r++)
    if (c->ctx[r] > mx) mx = c->ctx[r];
  return (infsim_ma_decode_args){.num_requests = c->reqs, .num_q_heads = c->h, .num_kv_heads = c->g, .head_dim = D,
                                 .block_tokens = c->bt, .dtype = c->t, .q = c->q, .k_pool = c->k, .v_pool = c->v,
                                 .block_table = c->table, .block_table_stride = c->stride, .context_tokens = c->ctx,
                                 .max_context_tokens = mx, .softmax_scale = scale, .out = out, .lse = lse};
}

static void check_decode_vs_naive(infsim_kernels *k, infsim_kdtype t, int32_t reqs, int32_t h, int32_t g,
                                  int32_t bt, int32_t max_ctx, float scale, uint64_t seed) {
  kvcache c;
  kv_make(&c, t, reqs, h, g, bt, max_ctx, seed);
  float *out = malloc(sizeof *out * (size_t)(reqs * h * D)), *lse = malloc(sizeof *lse * (size_t)(reqs * h));
  memset(out, 0xff, sizeof *out * (size_t)(reqs * h * D));
  infsim_ma_decode_args a = decode_args(&c, scale, out, lse);
  infsim_error err;
  must(infsim_kernels_ma_decode(k, &a, &err), &err);
  double ref[D];
  for (int32_t r = 0; r < reqs; r++) {
    for (int32_t hh = 0; hh < h; hh++) {
      double l = naive(&c, r, hh, 0, c.ctx[r], scale, ref);
      int64_t row = (int64_t)r * h + hh;
      double e = rel_err(out + row * D, ref, D);
      if (e > 1e-4 || !(fabs(lse[row] - l) <= 1e-5 * (1 + fabs(l)) || (isinf(l) && lse[row] == l)))
        fail_msg("decode r=%d h=%d ctx=%d: out err %.3g, lse %.9g vs %.9g (seed %llu)", r, hh, c.ctx[r], e,
                 lse[row], l, (unsigned long long)seed);
    }
  }
  free(out), free(lse);
  kv_free(&c);
}

static void test_decode_matches_float64(void **state) {
  infsim_kernels *k = *state;
  /* The tiny CI model (2 heads of 128), 70B's GQA ratio, MHA, long context. */
  check_decode_vs_naive(k, INFSIM_KDTYPE_BF16, 3, 2, 2, 16, 300, 0.0883883f, 1);
  check_decode_vs_naive(k, INFSIM_KDTYPE_F16, 2, 8, 1, 32, 513, 0.0883883f, 2);
  check_decode_vs_naive(k, INFSIM_KDTYPE_BF16, 2, 4, 4, 256, 700, 0.2f, 3);
  check_decode_vs_naive(k, INFSIM_KDTYPE_F16, 1, 2, 1, 64, 20000, 0.0883883f, 4);
}

/* Holder partials: request r's tokens [cut[j], cut[j+1]) attended alone
 * (through a sub-table starting at the piece's block); cuts fall on block
 * boundaries, as rBlocks are whole. */
static void decode_piece(infsim_kernels *k, const kvcache *c, const int32_t *cut_blocks, int pieces, int j,
                         float scale, float *out, float *lse) {
  int32_t *sub = calloc((size_t)(c->reqs * c->stride), sizeof *sub), *sctx = malloc(sizeof *sctx * (size_t)c->reqs);
  for (int32_t r = 0; r < c->reqs; r++) {
    int64_t lo = (int64_t)cut_blocks[r * (pieces + 1) + j] * c->bt;
    int64_t hi = (int64_t)cut_blocks[r * (pieces + 1) + j + 1] * c->bt;
    if (hi > c->ctx[r]) hi = c->ctx[r];
    sctx[r] = hi > lo ? (int32_t)(hi - lo) : 0;
    for (int32_t b = 0; b + cut_blocks[r * (pieces + 1) + j] < c->stride; b++)
      sub[r * c->stride + b] = c->table[r * c->stride + cut_blocks[r * (pieces + 1) + j] + b];
  }
  kvcache s = *c;
  s.table = sub;
  s.ctx = sctx;
  infsim_ma_decode_args a = decode_args(&s, scale, out, lse);
  a.max_context_tokens = c->stride * c->bt;
  infsim_error err;
  must(infsim_kernels_ma_decode(k, &a, &err), &err);
  free(sub), free(sctx);
}

static void check_split_merge(infsim_kernels *k, float scale, int pieces, uint64_t seed) {
  kvcache c;
  kv_make(&c, INFSIM_KDTYPE_BF16, 3, 4, 2, 16, 1500, seed);
  int64_t rows = (int64_t)c.reqs * c.h;
  float *one = malloc(sizeof *one * (size_t)(rows * D)), *one_lse = malloc(sizeof *one_lse * (size_t)rows);
  infsim_ma_decode_args a = decode_args(&c, scale, one, one_lse);
  infsim_error err;
  must(infsim_kernels_ma_decode(k, &a, &err), &err);
  /* Random block cuts per request, sorted; repeated cuts make empty pieces. */
  int32_t *cuts = malloc(sizeof *cuts * (size_t)(c.reqs * (pieces + 1)));
  srand((unsigned)seed * 31u);
  for (int32_t r = 0; r < c.reqs; r++) {
    int32_t *cr = cuts + r * (pieces + 1);
    cr[0] = 0;
    cr[pieces] = c.stride;
    for (int j = 1; j < pieces; j++) cr[j] = rand() % (c.stride + 1);
    for (int x = 1; x < pieces; x++)
      for (int y = x + 1; y < pieces; y++)
        if (cr[y] < cr[x]) {
          int32_t t = cr[x];
          cr[x] = cr[y];
          cr[y] = t;
        }
  }
  float *po = malloc(sizeof *po * (size_t)(pieces * rows * D)), *pl = malloc(sizeof *pl * (size_t)(pieces * rows));
  for (int j = 0; j < pieces; j++) decode_piece(k, &c, cuts, pieces, j, scale, po + j * rows * D, pl + j * rows);
  float *m = malloc(sizeof *m * (size_t)(rows * D)), *ml = malloc(sizeof *ml * (size_t)rows);
  infsim_merge_args g = {.num_partials = pieces, .rows = rows, .head_dim = D, .part_out = po, .part_lse = pl,
                         .out = m, .lse = ml};
  must(infsim_kernels_merge(k, &g, &err), &err);
  double *ref = calloc((size_t)(rows * D), sizeof *ref);
  for (int64_t i = 0; i < rows * D; i++) ref[i] = one[i];
  double e = rel_err(m, ref, rows * D);
  if (e > 1e-5) fail_msg("merge of %d pieces vs one shot: %.3g (scale %g, seed %llu)", pieces, e, scale,
                         (unsigned long long)seed);
  for (int64_t i = 0; i < rows; i++) {
    assert_false(isnan(ml[i]));
    assert_true(fabs(ml[i] - one_lse[i]) <= 1e-5 * (1 + fabs(one_lse[i])) || ml[i] == one_lse[i]);
  }
  free(one), free(one_lse), free(cuts), free(po), free(pl), free(m), free(ml), free(ref);
  kv_free(&c);
}

static void test_random_splits_merge_to_one_shot(void **state) {
  for (uint64_t s = 1; s <= 6; s++) check_split_merge(*state, 0.0883883f, 1 + (int)s % 5 + (s == 6 ? 10 : 0), s);
}

/* Scores of magnitude ~1e4: exp overflows unless every step subtracts the max. */
static void test_extreme_logits_stay_finite(void **state) {
  check_split_merge(*state, 1000.0f, 4, 77);
  check_split_merge(*state, -1000.0f, 3, 78);
}

static void test_merge_edge_cases(void **state) {
  infsim_kernels *k = *state;
  enum { P = 3, R = 4, DD = 8 };
  float po[P * R * DD], pl[P * R], out[R * DD], lse[R];
  infsim_kernels_fill_random_host(po, INFSIM_KDTYPE_F32, P * R * DD, 5, -1, 1);
  /* row 0: all empty; row 1: only partial 1; row 2: +-1e4; row 3: equal LSEs. */
  float l[P][R] = {{-INFINITY, -INFINITY, 1e4f, 0.5f}, {-INFINITY, 2.0f, -1e4f, 0.5f}, {-INFINITY, -INFINITY, 1e4f, 0.5f}};
  for (int j = 0; j < P; j++)
    for (int r = 0; r < R; r++) pl[j * R + r] = l[j][r];
  infsim_merge_args a = {.num_partials = P, .rows = R, .head_dim = DD, .part_out = po, .part_lse = pl, .out = out,
                         .lse = lse};
  infsim_error err;
  must(infsim_kernels_merge(k, &a, &err), &err);
  for (int d = 0; d < DD; d++) assert_true(out[d] == 0.0f);
  assert_true(isinf(lse[0]) && lse[0] < 0);
  for (int d = 0; d < DD; d++) assert_true(out[DD + d] == po[1 * R * DD + DD + d]); /* exactly the one partial */
  assert_true(lse[1] == 2.0f);
  for (int d = 0; d < DD; d++) {
    float want = 0.5f * (po[2 * DD + d] + po[2 * R * DD + 2 * DD + d]); /* -1e4 weighs exp(-2e4) = 0 */
    assert_true(fabsf(out[2 * DD + d] - want) < 1e-6f);
    float mean3 = (po[3 * DD + d] + po[R * DD + 3 * DD + d] + po[2 * R * DD + 3 * DD + d]) / 3.0f;
    assert_true(fabsf(out[3 * DD + d] - mean3) < 1e-6f);
  }
  assert_true(fabsf(lse[2] - (1e4f + logf(2.0f))) < 2e-3f); /* float spacing at 1e4 is 1e-3 */
  assert_true(fabsf(lse[3] - (0.5f + logf(3.0f))) < 1e-6f);
}

/* The owner's MA decode with the holders' partials merged in the same call:
 * random block cuts of every request's context; piece 0 is the owner's
 * local KV, pieces 1.. are holders' partials (computed by MA decode over
 * their slices, then stored as rdt). The fused result must equal one-shot
 * float64 attention over the whole context. Empty partials (LSE -inf) hold
 * NaN outputs: they must be neither weighted nor read. Request 1 has no KV
 * at all: zeros and -inf. */
static void check_fused_remote(infsim_kernels *k, infsim_kdtype rdt, int pieces, uint64_t seed) {
  kvcache c;
  kv_make(&c, INFSIM_KDTYPE_BF16, 3, 8, 2, 16, 900, seed);
  c.ctx[1] = 0;
  const int64_t rows = (int64_t)c.reqs * c.h;
  const float scale = 0.0883883f;
  int32_t *cuts = malloc(sizeof *cuts * (size_t)(c.reqs * (pieces + 1)));
  srand((unsigned)seed * 17u);
  for (int32_t r = 0; r < c.reqs; r++) {
    int32_t *cr = cuts + r * (pieces + 1);
    cr[0] = 0;
    cr[pieces] = c.stride;
    for (int j = 1; j < pieces; j++) cr[j] = rand() % (c.stride + 1);
    for (int x = 1; x < pieces; x++)
      for (int y = x + 1; y < pieces; y++)
        if (cr[y] < cr[x]) {
          int32_t t = cr[x];
          cr[x] = cr[y];
          cr[y] = t;
        }
  }
  float *po = malloc(sizeof *po * (size_t)(pieces * rows * D)), *pl = malloc(sizeof *pl * (size_t)(pieces * rows));
  for (int j = 0; j < pieces; j++) decode_piece(k, &c, cuts, pieces, j, scale, po + j * rows * D, pl + j * rows);
  /* Remote partials 1.. in rdt; NaN where empty. */
  const int nrem = pieces - 1;
  const size_t es = infsim_kdtype_bytes(rdt);
  unsigned char *ro = malloc(es * (size_t)(nrem * rows * D) + 1);
  for (int64_t i = 0; i < nrem * rows; i++)
    for (int d = 0; d < D; d++) {
      float v = pl[rows + i] == -INFINITY ? NAN : po[(rows + i) * D + d];
      if (rdt == INFSIM_KDTYPE_F32)
        memcpy(ro + 4 * (i * D + d), &v, 4);
      else {
        uint16_t h = infsim_float_to_f16(v);
        memcpy(ro + 2 * (i * D + d), &h, 2);
      }
    }
  /* The owner: piece 0's sub-context, the whole table (cut 0 is block 0). */
  int32_t *lctx = malloc(sizeof *lctx * (size_t)c.reqs);
  for (int32_t r = 0; r < c.reqs; r++) {
    int64_t hi = (int64_t)cuts[r * (pieces + 1) + 1] * c.bt;
    lctx[r] = (int32_t)(hi < c.ctx[r] ? hi : c.ctx[r]);
  }
  kvcache own = c;
  own.ctx = lctx;
  float *out = malloc(sizeof *out * (size_t)(rows * D)), *lse = malloc(sizeof *lse * (size_t)rows);
  memset(out, 0xff, sizeof *out * (size_t)(rows * D));
  infsim_ma_decode_args a = decode_args(&own, scale, out, lse);
  a.max_context_tokens = c.stride * c.bt;
  a.num_remote = nrem;
  a.remote_dtype = rdt;
  a.remote_out = ro;
  a.remote_lse = pl + rows;
  infsim_error err;
  must(infsim_kernels_ma_decode(k, &a, &err), &err);
  const double bound = rdt == INFSIM_KDTYPE_F32 ? 1e-4 : 2e-3; /* fp16: 11 significant bits per partial */
  double ref[D];
  for (int32_t r = 0; r < c.reqs; r++)
    for (int32_t hh = 0; hh < c.h; hh++) {
      const int64_t row = (int64_t)r * c.h + hh;
      double l = naive(&c, r, hh, 0, c.ctx[r], scale, ref);
      double e = rel_err(out + row * D, ref, D);
      if (e > bound || !(fabs(lse[row] - l) <= 1e-5 * (1 + fabs(l)) || (isinf(l) && lse[row] == l)))
        fail_msg("fused merge %s, %d pieces, r=%d h=%d: out err %.3g, lse %.9g vs %.9g (seed %llu)",
                 rdt == INFSIM_KDTYPE_F32 ? "f32" : "f16", pieces, r, hh, e, lse[row], l, (unsigned long long)seed);
    }
  for (int64_t x = 0; x < c.h * D; x++) assert_true(out[c.h * D + x] == 0.0f); /* request 1: no KV anywhere */
  free(cuts), free(po), free(pl), free(ro), free(lctx), free(out), free(lse);
  kv_free(&c);
}

static void test_decode_merges_remote_partials(void **state) {
  for (uint64_t s = 1; s <= 4; s++) {
    check_fused_remote(*state, INFSIM_KDTYPE_F32, 1 + (int)s, s);
    check_fused_remote(*state, INFSIM_KDTYPE_F16, 2 + (int)s * 2, 100 + s);
  }
  /* Bad remote arguments. */
  kvcache c;
  kv_make(&c, INFSIM_KDTYPE_BF16, 1, 2, 2, 16, 32, 1);
  float out[2 * D], lse[2], rl[2] = {0, 0};
  infsim_ma_decode_args a = decode_args(&c, 0.1f, out, lse);
  infsim_error err;
  a.num_remote = 1;
  assert_int_equal(infsim_kernels_ma_decode(*state, &a, &err), INFSIM_EINPUT); /* NULL partials */
  a.remote_out = out, a.remote_lse = rl, a.remote_dtype = INFSIM_KDTYPE_BF16;
  assert_int_equal(infsim_kernels_ma_decode(*state, &a, &err), INFSIM_EINPUT);
  a.remote_dtype = INFSIM_KDTYPE_F32, a.num_remote = INFSIM_KERNEL_MAX_REMOTE + 1;
  assert_int_equal(infsim_kernels_ma_decode(*state, &a, &err), INFSIM_EINPUT);
  assert_non_null(strstr(err.msg, "num_remote"));
  a.num_remote = 1, a.split_merge = 7; /* only 0 to 6 name a split merge */
  assert_int_equal(infsim_kernels_ma_decode(*state, &a, &err), INFSIM_EINPUT);
  assert_non_null(strstr(err.msg, "split_merge"));
  a.split_merge = 6; /* a CUDA knob: the CPU runs as with 0 */
  assert_int_equal(infsim_kernels_ma_decode(*state, &a, &err), INFSIM_OK);
  a.decode_grid = 3; /* only 0 to 2 name a grid */
  assert_int_equal(infsim_kernels_ma_decode(*state, &a, &err), INFSIM_EINPUT);
  assert_non_null(strstr(err.msg, "decode_grid"));
  a.decode_grid = -1;
  assert_int_equal(infsim_kernels_ma_decode(*state, &a, &err), INFSIM_EINPUT);
  a.decode_grid = 2; /* a CUDA knob too */
  assert_int_equal(infsim_kernels_ma_decode(*state, &a, &err), INFSIM_OK);
  kv_free(&c);
}

/* merge(merge(A, B), C) = merge(A, merge(B, C)) = merge(A, B, C). */
static void test_merge_is_associative(void **state) {
  infsim_kernels *k = *state;
  enum { R = 50, DD = 16 };
  float po[3 * R * DD], pl[3 * R];
  infsim_kernels_fill_random_host(po, INFSIM_KDTYPE_F32, 3 * R * DD, 9, -3, 3);
  infsim_kernels_fill_random_host(pl, INFSIM_KDTYPE_F32, 3 * R, 10, -30, 30);
  for (int i = 0; i < 3 * R; i += 7) pl[i] = -INFINITY;
  infsim_error err;
  float all[R * DD], all_l[R];
  infsim_merge_args a = {.num_partials = 3, .rows = R, .head_dim = DD, .part_out = po, .part_lse = pl, .out = all,
                         .lse = all_l};
  must(infsim_kernels_merge(k, &a, &err), &err);
  /* Left: (A, B) then C. Right: A then (B, C). */
  float ab[2 * R * DD], ab_l[2 * R], left[R * DD], left_l[R];
  a = (infsim_merge_args){.num_partials = 2, .rows = R, .head_dim = DD, .part_out = po, .part_lse = pl, .out = ab,
                          .lse = ab_l};
  must(infsim_kernels_merge(k, &a, &err), &err);
  memcpy(ab + R * DD, po + 2 * R * DD, sizeof(float) * R * DD);
  memcpy(ab_l + R, pl + 2 * R, sizeof(float) * R);
  a = (infsim_merge_args){.num_partials = 2, .rows = R, .head_dim = DD, .part_out = ab, .part_lse = ab_l,
                          .out = left, .lse = left_l};
  must(infsim_kernels_merge(k, &a, &err), &err);
  float bc[2 * R * DD], bc_l[2 * R], right[R * DD], right_l[R];
  memcpy(bc, po, sizeof(float) * R * DD);
  memcpy(bc_l, pl, sizeof(float) * R);
  a = (infsim_merge_args){.num_partials = 2, .rows = R, .head_dim = DD, .part_out = po + R * DD,
                          .part_lse = pl + R, .out = bc + R * DD, .lse = bc_l + R};
  must(infsim_kernels_merge(k, &a, &err), &err);
  a = (infsim_merge_args){.num_partials = 2, .rows = R, .head_dim = DD, .part_out = bc, .part_lse = bc_l,
                          .out = right, .lse = right_l};
  must(infsim_kernels_merge(k, &a, &err), &err);
  double ref[R * DD];
  for (int i = 0; i < R * DD; i++) ref[i] = all[i];
  assert_true(rel_err(left, ref, R * DD) < 1e-6);
  assert_true(rel_err(right, ref, R * DD) < 1e-6);
  for (int r = 0; r < R; r++) {
    assert_true(fabsf(left_l[r] - all_l[r]) < 1e-5f || left_l[r] == all_l[r]);
    assert_true(fabsf(right_l[r] - all_l[r]) < 1e-5f || right_l[r] == all_l[r]);
  }
}

/* Two prefill chunks (the second after a cached prefix) vs naive causal
 * attention in float64 over the pool the chunks wrote. */
static void test_prefill_matches_float64(void **state) {
  infsim_kernels *k = *state;
  enum { R = 2, H = 4, G = 2, BT = 16, FIRST = 50, SECOND = 33 };
  kvcache c;
  kv_make(&c, INFSIM_KDTYPE_BF16, R, H, G, BT, FIRST + SECOND, 99);
  const float scale = 0.0883883f;
  int32_t past = 0, chunks[2] = {FIRST, SECOND};
  for (int ci = 0; ci < 2; ci++) {
    int32_t n = chunks[ci];
    uint16_t *q = malloc(2u * R * n * H * D), *kn = malloc(2u * R * n * G * D), *vn = malloc(2u * R * n * G * D);
    float *out = malloc(4u * R * n * H * D), *lse = malloc(4u * R * n * H);
    infsim_kernels_fill_random_host(q, c.t, (int64_t)R * n * H * D, 200 + ci, -1, 1);
    infsim_kernels_fill_random_host(kn, c.t, (int64_t)R * n * G * D, 300 + ci, -1, 1);
    infsim_kernels_fill_random_host(vn, c.t, (int64_t)R * n * G * D, 400 + ci, -1, 1);
    infsim_prefill_args a = {.num_requests = R, .num_q_heads = H, .num_kv_heads = G, .head_dim = D, .new_tokens = n,
                             .past_tokens = past, .block_tokens = BT, .dtype = c.t, .q = q, .k_new = kn, .v_new = vn,
                             .k_pool = c.k, .v_pool = c.v, .block_table = c.table, .block_table_stride = c.stride,
                             .softmax_scale = scale, .out_dtype = INFSIM_KDTYPE_F32, .out = out, .lse = lse};
    infsim_error err;
    must(infsim_kernels_prefill(k, &a, &err), &err);
    /* The pool now holds the new K/V at their slots, bit for bit. */
    for (int32_t r = 0; r < R; r++)
      for (int32_t i = 0; i < n; i++)
        for (int32_t kh = 0; kh < G; kh++) {
          int64_t tok = past + i;
          int64_t at = (((int64_t)c.table[r * c.stride + tok / BT] * G + kh) * BT + tok % BT) * D;
          assert_memory_equal(c.k + at, kn + (((int64_t)r * n + i) * G + kh) * D, 2 * D);
          assert_memory_equal(c.v + at, vn + (((int64_t)r * n + i) * G + kh) * D, 2 * D);
        }
    /* Query (r, i, head) == decode of that query over tokens 0..past+i. */
    double ref[D];
    for (int32_t r = 0; r < R; r++)
      for (int32_t i = 0; i < n; i++)
        for (int32_t hh = 0; hh < H; hh++) {
          int64_t row = ((int64_t)r * n + i) * H + hh;
          kvcache one = c;
          memcpy(one.q + ((int64_t)r * H + hh) * D, q + row * D, 2 * D); /* place it as request r's query */
          double l = naive(&one, r, hh, 0, past + i + 1, scale, ref);
          double e = rel_err(out + row * D, ref, D);
          if (e > 1e-4 || fabs(lse[row] - l) > 1e-5 * (1 + fabs(l)))
            fail_msg("prefill r=%d i=%d h=%d past=%d: err %.3g lse %.8g vs %.8g", r, i, hh, past, e, lse[row], l);
        }
    free(q), free(kn), free(vn), free(out), free(lse);
    past += n;
  }
  /* The wgmma pipeline knob takes 0-15 only (checked before any backend). */
  uint16_t one[H * D] = {0};
  float o1[H * D];
  infsim_prefill_args bad = {.num_requests = 1, .num_q_heads = H, .num_kv_heads = G, .head_dim = D, .new_tokens = 1,
                             .past_tokens = 0, .block_tokens = BT, .dtype = c.t, .q = one, .k_new = one, .v_new = one,
                             .k_pool = c.k, .v_pool = c.v, .block_table = c.table, .block_table_stride = c.stride,
                             .softmax_scale = scale, .out_dtype = INFSIM_KDTYPE_F32, .out = o1, .sm90_pipeline = 16};
  infsim_error err;
  assert_int_equal(infsim_kernels_prefill(k, &bad, &err), INFSIM_EINPUT);
  bad.sm90_pipeline = -1;
  assert_int_equal(infsim_kernels_prefill(k, &bad, &err), INFSIM_EINPUT);
  kv_free(&c);
}

/* The Hopper prefill's auto rule at the shapes kernels/NOTES.md times it
 * (20: the append folded in on fresh prompts; 21: in chunks after a cached
 * prefix whose length is a multiple of 16, the simulator's chunks among
 * them; "prefill auto at 2K-4K": fresh prompts of 2K-4K tokens with at
 * least 32 query heads on the unfused persistent grid with grouped KV
 * heads, one CTA a work tile with the append folded in otherwise): which
 * pipeline each fresh prompt and each chunk gets, on either side of the
 * 2K- and 4K-token boundaries and of 32 query heads, for both head
 * layouts, and the unfused twin after a prefix of any other length (a
 * 16-key run would hold keys of both kinds). */
static void test_prefill_sm90_auto_rule(void **state) {
  (void)state;
  const struct {
    int32_t past, fresh, q_heads, kv_heads, want;
  } cases[] = {{0, 1, 32, 32, 14}, {0, 1024, 32, 32, 14}, {0, 2048, 32, 32, 14}, {0, 2049, 32, 32, 13},
               {0, 4096, 32, 32, 13}, {0, 4097, 32, 32, 13}, {0, 16384, 32, 32, 13}, {0, 2048, 64, 8, 14},
               {0, 2049, 64, 8, 11}, {0, 4096, 64, 8, 11}, {0, 3072, 32, 4, 11}, {0, 3072, 40, 40, 13},
               {0, 3072, 31, 31, 14}, {0, 3072, 16, 2, 14}, {0, 3072, 8, 8, 14}, {0, 4096, 8, 1, 14},
               {0, 4097, 64, 8, 13}, {0, 16384, 64, 8, 13}, {256, 512, 32, 32, 14}, {1024, 512, 32, 32, 14},
               {1024, 1024, 32, 32, 14}, {2048, 2048, 32, 32, 14}, {2048, 2048, 64, 8, 14}, {16, 1, 32, 32, 14},
               {4080, 16, 32, 32, 14}, {4095, 1, 32, 32, 11}, {520, 130, 32, 32, 11}, {8, 4088, 32, 32, 11},
               {4096, 1, 32, 32, 15}, {4096, 512, 64, 8, 15}, {14336, 2048, 64, 8, 15}, {12288, 4096, 32, 32, 15},
               {4104, 64, 32, 32, 12}, {4097, 1, 32, 32, 12}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const infsim_prefill_args a = {.num_requests = 1, .num_q_heads = cases[i].q_heads,
                                   .num_kv_heads = cases[i].kv_heads, .past_tokens = cases[i].past,
                                   .new_tokens = cases[i].fresh};
    if (infsim_kernels_prefill_sm90_auto(&a) != cases[i].want)
      fail_msg("past %d new %d heads %d/%d: auto ran pipeline %d, want %d", cases[i].past, cases[i].fresh,
               cases[i].q_heads, cases[i].kv_heads, infsim_kernels_prefill_sm90_auto(&a), cases[i].want);
  }
}

/* MA decode's split-merge auto rule at the shapes kernels/NOTES.md times
 * it: no partials; with splits, the partials' own CTA in one wave, else
 * the seeded splits on either side of one partial a warp (4 splits) and
 * more splits; one split on either side of 8 partials. */
static void test_decode_auto_merge_rule(void **state) {
  (void)state;
  const struct {
    int32_t splits, remote;
    bool one_wave;
    int32_t want;
  } cases[] = {{1, 0, true, 3},    {21, 0, true, 3},  {21, 0, false, 3}, {8, 1, true, 6},  {21, 8, true, 6},
               {2, 1, true, 6},    {4, 1, false, 4},  {4, 2, false, 4},  {4, 8, false, 4}, {4, 16, false, 4},
               {4, 17, false, 3},  {2, 9, false, 3},  {9, 1, false, 4},  {300, 1, false, 4}, {1, 1, true, 4},
               {1, 4, true, 4},    {1, 8, true, 4},   {1, 9, true, 5},   {1, 1, false, 4}, {1, 9, false, 5},
               {1, 64, false, 5}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const int32_t got = infsim_kernels_decode_auto_merge(cases[i].splits, cases[i].remote, cases[i].one_wave);
    if (got != cases[i].want)
      fail_msg("splits %d, %d remote partials, one wave %d: auto ran split merge %d, want %d", cases[i].splits,
               cases[i].remote, cases[i].one_wave, got, cases[i].want);
  }
}

/* The decode grid's auto rule: the persistent grid up to 2048 tokens, or
 * in one wave, with up to 8 remote partials as without them (5-8 at 1K-2K
 * tokens outside one wave among the cases); past 8 one CTA a row group. */
static void test_decode_auto_grid_rule(void **state) {
  (void)state;
  const int64_t ctx[] = {0,    1,    1024, 2048, 2049, 4096, 1 << 20, 2049, 8192, 1024, 8192, 1024,
                         8192, 1024, 1024, 8192, 1024, 1024,    2048, 1024, 2049, 4096};
  const bool one_wave[] = {false, false, false, false, false, false, false, true,  true,  true,  true,
                           false, false, true,  true,  true,  false, false, false, false, false, false};
  const int32_t remote[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 8, 1, 1, 4, 9, 64, 4, 5, 8, 9, 8, 6};
  const int32_t want[] = {2, 2, 2, 2, 1, 1, 1, 2, 2, 2, 2, 2, 1, 2, 1, 1, 2, 2, 2, 1, 1, 1};
  for (size_t i = 0; i < sizeof ctx / sizeof ctx[0]; i++) {
    const int32_t got = infsim_kernels_decode_auto_grid(ctx[i], one_wave[i], remote[i]);
    if (got != want[i])
      fail_msg("max context %lld, one wave %d, %d remote partials: auto grid %d, want %d", (long long)ctx[i],
               one_wave[i], remote[i], got, want[i]);
  }
}

static void test_gemm_matches_float64(void **state) {
  infsim_kernels *k = *state;
  enum { M = 7, N = 33, K = 256 };
  uint16_t a[M * K], w[N * K], cc[M * N];
  infsim_kernels_fill_random_host(a, INFSIM_KDTYPE_BF16, M * K, 1, -1, 1);
  infsim_kernels_fill_random_host(w, INFSIM_KDTYPE_BF16, N * K, 2, -1, 1);
  infsim_gemm_args g = {.m = M, .n = N, .k = K, .dtype = INFSIM_KDTYPE_BF16, .a = a, .w = w, .c = cc};
  infsim_error err;
  must(infsim_kernels_gemm(k, &g, &err), &err);
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double s = 0;
      for (int x = 0; x < K; x++) s += (double)infsim_bf16_to_float(a[i * K + x]) * infsim_bf16_to_float(w[j * K + x]);
      float got = infsim_bf16_to_float(cc[i * N + j]);
      assert_true(fabs(got - s) <= fabs(s) * 4e-3 + 1e-4); /* one bf16 rounding of the result */
    }
}

static void test_gemm_shapes_llama2_70b_tp8(void **state) {
  (void)state;
  infsim_kernel_model m70 = {8192, 64, 8, 128, 28672};
  int64_t m, n, kk;
  infsim_error err;
  must(infsim_kernels_gemm_shape(&m70, 8, INFSIM_GEMM_QKV, 5, &m, &n, &kk, &err), &err);
  assert_true(m == 5 && n == (8 + 2) * 128 && kk == 8192);
  must(infsim_kernels_gemm_shape(&m70, 8, INFSIM_GEMM_O, 5, &m, &n, &kk, &err), &err);
  assert_true(n == 8192 && kk == 1024);
  must(infsim_kernels_gemm_shape(&m70, 8, INFSIM_GEMM_GATE_UP, 5, &m, &n, &kk, &err), &err);
  assert_true(n == 7168 && kk == 8192);
  must(infsim_kernels_gemm_shape(&m70, 8, INFSIM_GEMM_DOWN, 5, &m, &n, &kk, &err), &err);
  assert_true(n == 8192 && kk == 3584);
  /* 16-way TP: 8 KV heads replicated, one per GPU. */
  must(infsim_kernels_gemm_shape(&m70, 16, INFSIM_GEMM_QKV, 1, &m, &n, &kk, &err), &err);
  assert_true(n == (4 + 2) * 128);
  infsim_kernel_model tiny = {256, 2, 2, 128, 688};
  assert_int_equal(infsim_kernels_gemm_shape(&tiny, 3, INFSIM_GEMM_O, 1, &m, &n, &kk, &err), INFSIM_EINPUT);
}

static void test_copies_are_exact(void **state) {
  infsim_kernels *k = *state;
  enum { NB = 8, BB = 64 };
  unsigned char src[NB * BB], dst[NB * BB], before[NB * BB], stage[2 * 10];
  infsim_kernels_fill_random_host(src, INFSIM_KDTYPE_F32, NB * BB / 4, 3, -1, 1);
  infsim_kernels_fill_random_host(dst, INFSIM_KDTYPE_F32, NB * BB / 4, 4, -1, 1);
  memcpy(before, dst, sizeof dst);
  int32_t s_ids[3] = {7, 0, 3}, d_ids[3] = {1, 2, 6};
  infsim_kv_copy_args a = {.dst_pool = dst, .src_pool = src, .block_bytes = BB, .src_ids = s_ids, .dst_ids = d_ids,
                           .num_blocks = 3};
  infsim_error err;
  must(infsim_kernels_kv_copy(k, &a, &err), &err);
  for (int b = 0; b < NB; b++) {
    const unsigned char *want = before + b * BB;
    for (int i = 0; i < 3; i++)
      if (d_ids[i] == b) want = src + s_ids[i] * BB;
    assert_memory_equal(dst + b * BB, want, BB);
  }
  unsigned char out[NB * BB] = {0};
  infsim_staged_copy_args s = {.dst_buf = out, .src_buf = src, .bytes = NB * BB - 3, .staging_host = stage,
                               .chunk_bytes = 10};
  must(infsim_kernels_staged_copy(k, &s, &err), &err);
  assert_memory_equal(out, src, NB * BB - 3);
  assert_int_equal(out[NB * BB - 1], 0);
}

/* float64 RMSNorm + RoPE of one head, in place, as kernels.h states it
 * (only the angle is rounded to fp32 first, as the contract says). */
static void norm_rope_f64(double *x, const double *w, double eps, int32_t pos, double theta, int stages) {
  if (stages & INFSIM_NR_NORM) {
    double ss = 0;
    for (int i = 0; i < D; i++) ss += x[i] * x[i];
    const double r = 1.0 / sqrt(ss / D + eps);
    for (int i = 0; i < D; i++) x[i] *= r * w[i];
  }
  if (stages & INFSIM_NR_ROPE) {
    for (int i = 0; i < D / 2; i++) {
      const float inv_freq = (float)pow(theta, -2.0 * i / D);
      const double a = (double)((float)pos * inv_freq);
      const double lo = x[i], hi = x[i + D / 2];
      x[i] = lo * cos(a) - hi * sin(a);
      x[i + D / 2] = hi * cos(a) + lo * sin(a);
    }
  }
}

static void check_norm_rope(infsim_kernels *k, infsim_kdtype t, int32_t tokens, int32_t h, int32_t g, int stages,
                            uint64_t seed) {
  const int32_t rows = h + 2 * g;
  const int64_t n = (int64_t)tokens * rows * D;
  uint16_t *qkv = malloc(sizeof *qkv * (size_t)n), *in = malloc(sizeof *in * (size_t)n);
  uint16_t qw[D], kw[D];
  int32_t *pos = malloc(sizeof *pos * (size_t)tokens);
  infsim_kernels_fill_random_host(qkv, t, n, seed, -3.0f, 3.0f);
  infsim_kernels_fill_random_host(qw, t, D, seed + 1, 0.5f, 1.5f);
  infsim_kernels_fill_random_host(kw, t, D, seed + 2, 0.5f, 1.5f);
  memcpy(in, qkv, sizeof *in * (size_t)n);
  /* Positions from 0 to about 1M (long contexts), token 0 at position 0. */
  for (int32_t i = 0; i < tokens; i++) pos[i] = i == 0 ? 0 : (int32_t)((seed * 7919u + (uint64_t)i * 104729u) % 1048576u);
  infsim_norm_rope_args a = {.tokens = tokens, .num_q_heads = h, .num_kv_heads = g, .head_dim = D, .dtype = t,
                             .qkv = qkv, .positions = pos, .q_weight = qw, .k_weight = kw, .eps = 1e-5f,
                             .rope_theta = 500000.0f, .stages = stages};
  infsim_error err;
  must(infsim_kernels_norm_rope(k, &a, &err), &err);
  float *got = malloc(sizeof *got * (size_t)n);
  double *ref = malloc(sizeof *ref * (size_t)n);
  int64_t m = 0;
  for (int32_t tok = 0; tok < tokens; tok++) {
    for (int32_t j = 0; j < h + g; j++) {
      const int64_t base = ((int64_t)tok * rows + j) * D;
      double x[D], w[D];
      for (int i = 0; i < D; i++) {
        x[i] = load16(in, t, base + i);
        w[i] = load16(j < h ? qw : kw, t, i);
      }
      norm_rope_f64(x, w, 1e-5, pos[tok], 500000.0, stages);
      for (int i = 0; i < D; i++) {
        got[m] = load16(qkv, t, base + i);
        ref[m++] = x[i];
      }
      if (tok == 0 && stages == INFSIM_NR_ROPE) /* cos 0 = 1, sin 0 = 0: bit-exact */
        assert_memory_equal(qkv + base, in + base, sizeof *in * D);
    }
    /* v heads are never touched. */
    const int64_t vbase = ((int64_t)tok * rows + h + g) * D;
    assert_memory_equal(qkv + vbase, in + vbase, sizeof *in * (size_t)(g * D));
  }
  /* One rounding to the dtype dominates: 2^-9 (bf16) or 2^-12 (fp16) at most, relative. */
  const double e = rel_err(got, ref, m), bound = t == INFSIM_KDTYPE_BF16 ? 4e-3 : 5e-4;
  if (!(e <= bound)) fail_msg("norm_rope stages %d dtype %d: rel err %.3g > %.3g", stages, (int)t, e, bound);
  free(qkv), free(in), free(pos), free(got), free(ref);
}

static void test_norm_rope_matches_float64(void **state) {
  infsim_kernels *k = *state;
  for (int stages = 1; stages <= 3; stages++) {
    check_norm_rope(k, INFSIM_KDTYPE_BF16, 5, 8, 1, stages, 11);
    check_norm_rope(k, INFSIM_KDTYPE_F16, 3, 4, 2, stages, 12);
  }
  /* RMSNorm with unit gains: every q and k head comes out with mean square 1. */
  enum { T = 2, H = 2, G = 1, ROWS = H + 2 * G };
  uint16_t qkv[T * ROWS * D], ones[D];
  infsim_kernels_fill_random_host(qkv, INFSIM_KDTYPE_F16, T * ROWS * D, 5, -10.0f, 10.0f);
  for (int i = 0; i < D; i++) ones[i] = infsim_float_to_f16(1.0f);
  infsim_norm_rope_args a = {.tokens = T, .num_q_heads = H, .num_kv_heads = G, .head_dim = D,
                             .dtype = INFSIM_KDTYPE_F16, .qkv = qkv, .q_weight = ones, .k_weight = ones,
                             .eps = 1e-6f, .stages = INFSIM_NR_NORM};
  infsim_error err;
  must(infsim_kernels_norm_rope(k, &a, &err), &err);
  for (int r = 0; r < T * ROWS; r++) {
    if (r % ROWS >= H + G) continue;
    double ms = 0;
    for (int i = 0; i < D; i++) ms += pow(infsim_f16_to_float(qkv[r * D + i]), 2) / D;
    assert_true(fabs(ms - 1.0) < 2e-3);
  }
}

static void test_bad_arguments_are_rejected(void **state) {
  infsim_kernels *k = *state;
  kvcache c;
  kv_make(&c, INFSIM_KDTYPE_BF16, 1, 2, 2, 16, 32, 1);
  float out[2 * D], lse[2];
  infsim_ma_decode_args a = decode_args(&c, 0.1f, out, lse);
  infsim_error err;
  a.head_dim = 64;
  assert_int_equal(infsim_kernels_ma_decode(k, &a, &err), INFSIM_EINPUT);
  assert_non_null(strstr(err.msg, "head_dim"));
  a = decode_args(&c, 0.1f, out, lse);
  a.block_tokens = 24;
  assert_int_equal(infsim_kernels_ma_decode(k, &a, &err), INFSIM_EINPUT);
  a = decode_args(&c, 0.1f, out, lse);
  a.num_kv_heads = 3;
  assert_int_equal(infsim_kernels_ma_decode(k, &a, &err), INFSIM_EINPUT);
  a = decode_args(&c, 0.1f, out, lse);
  a.dtype = INFSIM_KDTYPE_F32;
  assert_int_equal(infsim_kernels_ma_decode(k, &a, &err), INFSIM_EINPUT);
  kv_free(&c);
  uint16_t qkv[4 * D] = {0};
  infsim_norm_rope_args nr = {.tokens = 1, .num_q_heads = 2, .num_kv_heads = 1, .head_dim = D,
                              .dtype = INFSIM_KDTYPE_BF16, .qkv = qkv, .stages = INFSIM_NR_NORM, .eps = 1e-5f};
  assert_int_equal(infsim_kernels_norm_rope(k, &nr, &err), INFSIM_EINPUT); /* no weights */
  assert_non_null(strstr(err.msg, "q_weight"));
  nr.stages = INFSIM_NR_ROPE;
  assert_int_equal(infsim_kernels_norm_rope(k, &nr, &err), INFSIM_EINPUT); /* no positions */
  nr.stages = 0;
  assert_int_equal(infsim_kernels_norm_rope(k, &nr, &err), INFSIM_EINPUT);
  infsim_kernels *gpu = NULL;
  if (!infsim_kernels_cuda_available()) {
    assert_int_equal(infsim_kernels_open(INFSIM_KBACKEND_CUDA, &gpu, &err), INFSIM_ENODEV);
    assert_null(gpu);
  }
  infsim_kernel_backend b;
  assert_true(infsim_kernel_backend_parse("cuda", &b) && b == INFSIM_KBACKEND_CUDA);
  assert_false(infsim_kernel_backend_parse("tpu", &b));
}

static void test_timing_is_ordered(void **state) {
  infsim_kernels *k = *state;
  enum { R = 64, DD = 128, P = 4 };
  static float po[P * R * DD], pl[P * R], out[R * DD];
  infsim_kernels_fill_random_host(po, INFSIM_KDTYPE_F32, P * R * DD, 1, -1, 1);
  infsim_kernels_fill_random_host(pl, INFSIM_KDTYPE_F32, P * R, 2, -1, 1);
  infsim_merge_args a = {.num_partials = P, .rows = R, .head_dim = DD, .part_out = po, .part_lse = pl, .out = out};
  infsim_time_opts o = {.warmup = 1, .repeats = 7};
  infsim_kernel_timing t;
  infsim_error err;
  must(infsim_kernels_time_ms(k, infsim_kernel_op_merge, &a, &o, &t, &err), &err);
  assert_int_equal(t.repeats, 7);
  assert_true(t.min_ms >= 0 && t.min_ms <= t.p10_ms && t.p10_ms <= t.median_ms && t.median_ms <= t.p90_ms &&
              t.p90_ms <= t.max_ms);
  infsim_kernel_device d;
  must(infsim_kernels_describe(k, &d, &err), &err);
  assert_string_equal(d.name, "cpu reference");
  assert_null(infsim_kernels_native_stream(k));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_f16_known_values),
      cmocka_unit_test(test_every_16bit_value_round_trips),
      cmocka_unit_test(test_fill_is_deterministic_and_in_range),
      cmocka_unit_test(test_decode_matches_float64),
      cmocka_unit_test(test_random_splits_merge_to_one_shot),
      cmocka_unit_test(test_extreme_logits_stay_finite),
      cmocka_unit_test(test_merge_edge_cases),
      cmocka_unit_test(test_merge_is_associative),
      cmocka_unit_test(test_decode_merges_remote_partials),
      cmocka_unit_test(test_prefill_matches_float64),
      cmocka_unit_test(test_prefill_sm90_auto_rule),
      cmocka_unit_test(test_decode_auto_merge_rule),
      cmocka_unit_test(test_decode_auto_grid_rule),
      cmocka_unit_test(test_gemm_matches_float64),
      cmocka_unit_test(test_gemm_shapes_llama2_70b_tp8),
      cmocka_unit_test(test_copies_are_exact),
      cmocka_unit_test(test_norm_rope_matches_float64),
      cmocka_unit_test(test_bad_arguments_are_rejected),
      cmocka_unit_test(test_timing_is_ordered),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
