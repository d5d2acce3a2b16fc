/*
** test_kernels_gpu.c: every CUDA kernel against the CPU reference backend
** on fresh random inputs (skipped with exit code 77 where no GPU is usable).
**
** Inputs come from infsim_kernels_fill_random with the same seed on both
** backends, which the first test checks to be bit-identical. Outputs are
** poisoned (0xFF bytes: NaN) before each run, so an unwritten element fails.
** Errors are normalized: ||gpu - cpu|| / ||cpu|| over a whole output, with
** bounds set by the 16-bit rounding of P inside the tensor-core kernels
** (bf16: 8 significant bits, fp16: 11).
*/
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "infsim/kernels.h"

typedef struct {
  infsim_kernels *cpu, *gpu;
  uint64_t seed;
} fixture;

typedef struct {
  void *c, *g;
  int64_t bytes;
} pair;

static void must(infsim_status st, const infsim_error *err) {
  if (st != INFSIM_OK) fail_msg("kernel call failed: %s", err->msg);
}

static pair pair_alloc(fixture *f, int64_t bytes) {
  infsim_error err;
  pair p = {NULL, NULL, bytes};
  must(infsim_kernels_alloc(f->cpu, bytes, &p.c, &err), &err);
  must(infsim_kernels_alloc(f->gpu, bytes, &p.g, &err), &err);
  return p;
}

static void pair_free(fixture *f, pair *p) {
  infsim_kernels_free(f->cpu, p->c);
  infsim_kernels_free(f->gpu, p->g);
}

static void pair_random(fixture *f, pair *p, infsim_kdtype t, float lo, float hi) {
  infsim_error err;
  int64_t n = p->bytes / (int64_t)infsim_kdtype_bytes(t);
  f->seed++;
  must(infsim_kernels_fill_random(f->cpu, p->c, t, n, f->seed, lo, hi, &err), &err);
  must(infsim_kernels_fill_random(f->gpu, p->g, t, n, f->seed, lo, hi, &err), &err);
}

static void pair_upload(fixture *f, pair *p, const void *host) {
  infsim_error err;
  memcpy(p->c, host, (size_t)p->bytes);
  must(infsim_kernels_upload(f->gpu, p->g, host, p->bytes, &err), &err);
}

static void pair_poison(fixture *f, pair *p) {
  infsim_error err;
  memset(p->c, 0xff, (size_t)p->bytes);
  must(infsim_kernels_memset(f->gpu, p->g, 0xff, p->bytes, &err), &err);
}

/* Downloads the GPU side into a fresh host array (caller frees). */
static void *pair_fetch(fixture *f, pair *p) {
  infsim_error err;
  void *h = malloc((size_t)p->bytes);
  assert_non_null(h);
  must(infsim_kernels_download(f->gpu, h, p->g, p->bytes, &err), &err);
  return h;
}

/* ||a - b|| / ||b|| over n floats, with -inf == -inf counted as equal;
 * NaN anywhere gives +inf. */
static double rel_err(const float *a, const float *b, int64_t n) {
  double num = 0.0, den = 0.0;
  for (int64_t i = 0; i < n; i++) {
    if (isnan(a[i]) || isnan(b[i])) return INFINITY;
    if (isinf(a[i]) || isinf(b[i])) {
      if (a[i] != b[i]) return INFINITY;
      continue;
    }
    double d = (double)a[i] - b[i];
    num += d * d;
    den += (double)b[i] * b[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* LSE agreement, relative above 1 (an LSE of 1e4 has float spacing 1e-3). */
static double lse_err(const float *a, const float *b, int64_t n) {
  double m = 0.0;
  for (int64_t i = 0; i < n; i++) {
    if (isnan(a[i]) || isnan(b[i])) return INFINITY;
    if (isinf(a[i]) || isinf(b[i])) {
      if (a[i] != b[i]) return INFINITY;
      continue;
    }
    double d = fabs((double)a[i] - b[i]) / (1.0 + fabs((double)b[i]));
    if (d > m) m = d;
  }
  return m;
}

static int setup(void **state) {
  if (!infsim_kernels_cuda_available()) return -1;
  fixture *f = calloc(1, sizeof *f);
  infsim_error err;
  if (!f || infsim_kernels_open(INFSIM_KBACKEND_CPU, &f->cpu, &err) != INFSIM_OK ||
      infsim_kernels_open(INFSIM_KBACKEND_CUDA, &f->gpu, &err) != INFSIM_OK)
    return -1;
  f->seed = 0x5eed0000u;
  const char *s = getenv("INFSIM_TEST_SEED");
  if (s) f->seed = strtoull(s, NULL, 0);
  fprintf(stderr, "seed 0x%llx (set INFSIM_TEST_SEED to replay)\n", (unsigned long long)f->seed);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  infsim_kernels_close(f->cpu);
  infsim_kernels_close(f->gpu);
  free(f);
  return 0;
}

/* The inputs of every comparison below rest on this. */
static void test_fill_is_bit_identical(void **state) {
  fixture *f = *state;
  infsim_kdtype types[3] = {INFSIM_KDTYPE_F16, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32};
  for (int t = 0; t < 3; t++) {
    pair p = pair_alloc(f, 4 * 100003);
    pair_random(f, &p, types[t], -3.0f, 5.0f);
    void *h = pair_fetch(f, &p);
    size_t n = (size_t)(100003 * infsim_kdtype_bytes(types[t]));
    assert_memory_equal(h, p.c, n);
    free(h);
    pair_free(f, &p);
  }
}

static void test_describe(void **state) {
  fixture *f = *state;
  infsim_kernel_device d;
  infsim_error err;
  must(infsim_kernels_describe(f->gpu, &d, &err), &err);
  fprintf(stderr, "device: %s, driver %s, runtime %s, cc %d.%d, %d SMs, SM clock %d/%d MHz, mem clock %d MHz\n",
          d.name, d.driver_version, d.runtime_version, d.cc_major, d.cc_minor, d.sm_count, d.sm_clock_mhz,
          d.max_sm_clock_mhz, d.mem_clock_mhz);
  assert_true(strlen(d.name) > 0);
  assert_true(d.cc_major >= 8);
  assert_true(d.sm_count > 0);
  assert_true(d.memory_bytes > (int64_t)1 << 30);
}

/* One decode configuration: random contexts (some 0), a shuffled block
 * table over a pool with spare blocks; every split count vs the CPU, and
 * one split through both grids (decode_grid 1 and 2: with more row groups
 * than a wave has CTAs, the persistent grid's CTAs take several in turn). */
static void decode_case(fixture *f, infsim_kdtype t, int32_t reqs, int32_t h, int32_t g, int32_t bt,
                        int32_t max_ctx) {
  enum { D = INFSIM_KERNEL_HEAD_DIM };
  int32_t stride = (max_ctx + bt - 1) / bt;
  int32_t nblocks = reqs * stride + 3;
  int32_t *ctx = malloc(sizeof *ctx * (size_t)reqs);
  int32_t *table = malloc(sizeof *table * (size_t)(reqs * stride));
  int32_t *perm = malloc(sizeof *perm * (size_t)nblocks);
  for (int32_t i = 0; i < nblocks; i++) perm[i] = i;
  srand((unsigned)f->seed);
  for (int32_t i = nblocks - 1; i > 0; i--) {
    int32_t j = rand() % (i + 1), x = perm[i];
    perm[i] = perm[j];
    perm[j] = x;
  }
  int32_t real_max = 0;
  for (int32_t r = 0; r < reqs; r++) {
    ctx[r] = r == 1 ? 0 : (r == 0 ? max_ctx : 1 + rand() % max_ctx);
    if (ctx[r] > real_max) real_max = ctx[r];
  }
  for (int32_t i = 0; i < reqs * stride; i++) table[i] = perm[i];
  size_t es = infsim_kdtype_bytes(t);
  pair q = pair_alloc(f, (int64_t)reqs * h * D * (int64_t)es);
  pair kp = pair_alloc(f, (int64_t)nblocks * g * bt * D * (int64_t)es);
  pair vp = pair_alloc(f, kp.bytes);
  pair tb = pair_alloc(f, (int64_t)sizeof *table * reqs * stride);
  pair cx = pair_alloc(f, (int64_t)sizeof *ctx * reqs);
  pair out = pair_alloc(f, (int64_t)reqs * h * D * 4);
  pair lse = pair_alloc(f, (int64_t)reqs * h * 4);
  pair_random(f, &q, t, -1.0f, 1.0f);
  pair_random(f, &kp, t, -1.0f, 1.0f);
  pair_random(f, &vp, t, -1.0f, 1.0f);
  pair_upload(f, &tb, table);
  pair_upload(f, &cx, ctx);
  infsim_ma_decode_args a = {
      .num_requests = reqs, .num_q_heads = h, .num_kv_heads = g, .head_dim = D, .block_tokens = bt, .dtype = t,
      .block_table_stride = stride, .max_context_tokens = real_max,
      .softmax_scale = 2.0f / sqrtf((float)D), /* sharper than 1/sqrt(d): stresses the running max */
  };
  infsim_error err;
  a.q = q.c, a.k_pool = kp.c, a.v_pool = vp.c, a.block_table = tb.c, a.context_tokens = cx.c, a.out = out.c,
  a.lse = lse.c;
  pair_poison(f, &out);
  pair_poison(f, &lse);
  must(infsim_kernels_ma_decode(f->cpu, &a, &err), &err);
  const double bound = t == INFSIM_KDTYPE_BF16 ? 1.2e-2 : 3e-3;
  /* 12: two batches of the register merge's loads at 5-8 heads a row;
   * 300: more splits than tiles, most empty; the last two: one split,
   * each grid. */
  const int32_t split_counts[] = {0, 1, 2, 3, 7, 12, 64, 300, 1, 1};
  const int32_t grids[] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 2};
  /* INFSIM_GPU_TEST_DECODE_GRID=N: only the launches on decode_grid N
   * (racecheck over the persistent grid, 2, fits a short GPU call). */
  const char *only_grid = getenv("INFSIM_GPU_TEST_DECODE_GRID");
  float *first = NULL;
  for (size_t s = 0; s < sizeof split_counts / sizeof split_counts[0]; s++) {
    if (only_grid && grids[s] != atoi(only_grid)) continue;
    a.num_splits = split_counts[s];
    a.decode_grid = grids[s];
    a.q = q.g, a.k_pool = kp.g, a.v_pool = vp.g, a.block_table = tb.g, a.context_tokens = cx.g, a.out = out.g,
    a.lse = lse.g;
    must(infsim_kernels_memset(f->gpu, out.g, 0xff, out.bytes, &err), &err);
    must(infsim_kernels_memset(f->gpu, lse.g, 0xff, lse.bytes, &err), &err);
    must(infsim_kernels_ma_decode(f->gpu, &a, &err), &err);
    float *go = pair_fetch(f, &out), *gl = pair_fetch(f, &lse);
    double eo = rel_err(go, out.c, (int64_t)reqs * h * D);
    double el = lse_err(gl, lse.c, (int64_t)reqs * h);
    if (eo > bound || el > 2e-4)
      fail_msg("decode %s r=%d h=%d g=%d bt=%d ctx<=%d splits=%d grid=%d: out err %.3g (bound %.3g), lse err %.3g",
               t == INFSIM_KDTYPE_BF16 ? "bf16" : "f16", reqs, h, g, bt, max_ctx, a.num_splits, a.decode_grid, eo,
               bound, el);
    /* Request 1 holds no tokens: zeros and -inf exactly. */
    for (int32_t x = 0; x < h * D; x++) assert_true(go[(int64_t)h * D + x] == 0.0f);
    for (int32_t x = 0; x < h; x++) assert_true(isinf(gl[h + x]) && gl[h + x] < 0);
    if (!first) {
      first = go;
    } else {
      /* Split patterns agree with each other as closely as with the CPU. */
      assert_true(rel_err(go, first, (int64_t)reqs * h * D) <= bound);
      free(go);
    }
    free(gl);
  }
  free(first);
  pair *all[] = {&q, &kp, &vp, &tb, &cx, &out, &lse};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) pair_free(f, all[i]);
  free(ctx);
  free(table);
  free(perm);
}

static void test_decode_matches_cpu(void **state) {
  fixture *f = *state;
  /* LLaMA2-70B on 8 GPUs (8 q heads on 1 KV head), the whole 70B (64/8),
   * MHA (7B-like), and a GQA group wider than one 16-row tile. */
  decode_case(f, INFSIM_KDTYPE_BF16, 3, 8, 1, 16, 1000);
  decode_case(f, INFSIM_KDTYPE_F16, 3, 8, 1, 64, 777);
  decode_case(f, INFSIM_KDTYPE_BF16, 4, 64, 8, 32, 300);
  decode_case(f, INFSIM_KDTYPE_F16, 2, 4, 4, 256, 2100);
  decode_case(f, INFSIM_KDTYPE_BF16, 2, 40, 2, 128, 500);
  decode_case(f, INFSIM_KDTYPE_BF16, 2, 8, 1, 4096, 4000); /* one block per request: contiguous */
  decode_case(f, INFSIM_KDTYPE_F16, 3, 16, 2, 48, 900);    /* block size not a power of two */
  /* More row groups than two CTAs on each of 132 SMs (the persistent grid
   * loops): 64/8 heads, 8 heads a KV head, and 40/2 (groups of 16 and 4).
   * Their split launches need more counters than the launches above,
   * whose partials (300 splits) lie where those counters would: the
   * workspace keeps its counter region apart (cuda_common.cuh). */
  decode_case(f, INFSIM_KDTYPE_BF16, 90, 64, 8, 16, 200);
  decode_case(f, INFSIM_KDTYPE_F16, 700, 8, 1, 32, 150);
  decode_case(f, INFSIM_KDTYPE_BF16, 200, 40, 2, 16, 70);
}

/* A batch whose requests hold no KV comes with no pools and no block table
 * (stride 0): every split count and both grids give zeros and LSE -inf,
 * and read no table (the persistent grid fetches a row group's first
 * block ids ahead: only those of tiles the request has). */
static void test_decode_without_kv(void **state) {
  fixture *f = *state;
  enum { D = INFSIM_KERNEL_HEAD_DIM, R = 300, H = 8, G = 1 };
  int32_t ctx[R] = {0};
  pair q = pair_alloc(f, R * H * D * 2), cx = pair_alloc(f, sizeof ctx);
  pair out = pair_alloc(f, R * H * D * 4), lse = pair_alloc(f, R * H * 4);
  pair_random(f, &q, INFSIM_KDTYPE_BF16, -1, 1);
  pair_upload(f, &cx, ctx);
  infsim_ma_decode_args a = {.num_requests = R, .num_q_heads = H, .num_kv_heads = G, .head_dim = D,
                             .block_tokens = 16, .dtype = INFSIM_KDTYPE_BF16, .q = q.g, .context_tokens = cx.g,
                             .softmax_scale = 1.0f / sqrtf(D), .out = out.g, .lse = lse.g};
  const int32_t splits[] = {0, 1, 1, 1, 4};
  const int32_t grids[] = {0, 0, 1, 2, 0};
  infsim_error err;
  for (size_t i = 0; i < sizeof splits / sizeof splits[0]; i++) {
    a.num_splits = splits[i], a.decode_grid = grids[i];
    must(infsim_kernels_memset(f->gpu, out.g, 0xff, out.bytes, &err), &err);
    must(infsim_kernels_memset(f->gpu, lse.g, 0xff, lse.bytes, &err), &err);
    must(infsim_kernels_ma_decode(f->gpu, &a, &err), &err);
    float *go = pair_fetch(f, &out), *gl = pair_fetch(f, &lse);
    for (int64_t x = 0; x < (int64_t)R * H * D; x++)
      if (go[x] != 0.0f)
        fail_msg("splits %d grid %d: out[%lld] = %g, want 0", splits[i], grids[i], (long long)x, go[x]);
    for (int64_t x = 0; x < (int64_t)R * H; x++)
      if (!(isinf(gl[x]) && gl[x] < 0))
        fail_msg("splits %d grid %d: lse[%lld] = %g, want -inf", splits[i], grids[i], (long long)x, gl[x]);
    free(go), free(gl);
  }
  pair *all[] = {&q, &cx, &out, &lse};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) pair_free(f, all[i]);
}

/* DistAttention end to end on the GPU: three holders each attend to a
 * slice of every request's blocks; the merge equals one-shot attention. */
static void test_holders_merge_to_one_shot(void **state) {
  fixture *f = *state;
  enum { D = INFSIM_KERNEL_HEAD_DIM, R = 3, H = 8, G = 1, BT = 16, NB = 40, HOLD = 3 };
  infsim_error err;
  int32_t ctx[R] = {NB * BT, 200, 37};
  int32_t table[R * NB];
  for (int i = 0; i < R * NB; i++) table[i] = (i * 7) % (R * NB);
  pair q = pair_alloc(f, R * H * D * 2), kp = pair_alloc(f, (int64_t)R * NB * G * BT * D * 2);
  pair vp = pair_alloc(f, kp.bytes);
  pair_random(f, &q, INFSIM_KDTYPE_BF16, -1, 1);
  pair_random(f, &kp, INFSIM_KDTYPE_BF16, -1, 1);
  pair_random(f, &vp, INFSIM_KDTYPE_BF16, -1, 1);
  pair tb = pair_alloc(f, sizeof table), cx = pair_alloc(f, sizeof ctx);
  pair_upload(f, &tb, table);
  pair_upload(f, &cx, ctx);
  pair one = pair_alloc(f, R * H * D * 4), one_lse = pair_alloc(f, R * H * 4);
  infsim_ma_decode_args a = {.num_requests = R, .num_q_heads = H, .num_kv_heads = G, .head_dim = D,
                             .block_tokens = BT, .dtype = INFSIM_KDTYPE_BF16, .q = q.g, .k_pool = kp.g,
                             .v_pool = vp.g, .block_table = tb.g, .block_table_stride = NB, .context_tokens = cx.g,
                             .max_context_tokens = NB * BT, .softmax_scale = 1.0f / sqrtf(D), .out = one.g,
                             .lse = one_lse.g};
  must(infsim_kernels_ma_decode(f->gpu, &a, &err), &err);
  /* Holder j gets blocks [j*NB/HOLD, (j+1)*NB/HOLD) of each request. */
  pair parts = pair_alloc(f, (int64_t)HOLD * R * H * D * 4), plse = pair_alloc(f, (int64_t)HOLD * R * H * 4);
  for (int j = 0; j < HOLD; j++) {
    int32_t sub_table[R * NB], sub_ctx[R];
    int b0 = j * NB / HOLD, b1 = (j + 1) * NB / HOLD;
    for (int r = 0; r < R; r++) {
      int lo = b0 * BT, hi = b1 * BT < ctx[r] ? b1 * BT : ctx[r];
      sub_ctx[r] = hi > lo ? hi - lo : 0;
      for (int b = 0; b < NB; b++) sub_table[r * NB + b] = b0 + b < NB ? table[r * NB + b0 + b] : 0;
    }
    pair st = pair_alloc(f, sizeof sub_table), sc = pair_alloc(f, sizeof sub_ctx);
    pair_upload(f, &st, sub_table);
    pair_upload(f, &sc, sub_ctx);
    infsim_ma_decode_args b = a;
    b.block_table = st.g;
    b.context_tokens = sc.g;
    b.out = (float *)parts.g + (int64_t)j * R * H * D;
    b.lse = (float *)plse.g + (int64_t)j * R * H;
    must(infsim_kernels_ma_decode(f->gpu, &b, &err), &err);
    must(infsim_kernels_sync(f->gpu, &err), &err);
    pair_free(f, &st);
    pair_free(f, &sc);
  }
  pair merged = pair_alloc(f, R * H * D * 4), mlse = pair_alloc(f, R * H * 4);
  pair_poison(f, &merged);
  infsim_merge_args m = {.num_partials = HOLD, .rows = R * H, .head_dim = D, .part_out = parts.g,
                         .part_lse = plse.g, .out = merged.g, .lse = mlse.g};
  must(infsim_kernels_merge(f->gpu, &m, &err), &err);
  float *o1 = pair_fetch(f, &one), *l1 = pair_fetch(f, &one_lse), *o2 = pair_fetch(f, &merged),
        *l2 = pair_fetch(f, &mlse);
  double e = rel_err(o2, o1, R * H * D);
  if (e > 1e-2) fail_msg("merged holders vs one shot: %.3g", e);
  assert_true(lse_err(l2, l1, R * H) < 2e-4);
  /* The owner (holder 0: the table's first blocks) merging holders 1.. in
   * its own decode launch gives the same one-shot result. */
  int32_t own_ctx[R];
  for (int r = 0; r < R; r++) own_ctx[r] = NB / HOLD * BT < ctx[r] ? NB / HOLD * BT : ctx[r];
  pair oc = pair_alloc(f, sizeof own_ctx), fused = pair_alloc(f, R * H * D * 4), flse = pair_alloc(f, R * H * 4);
  pair_upload(f, &oc, own_ctx);
  pair_poison(f, &fused);
  infsim_ma_decode_args o = a;
  o.context_tokens = oc.g, o.out = fused.g, o.lse = flse.g;
  o.num_remote = HOLD - 1, o.remote_dtype = INFSIM_KDTYPE_F32;
  o.remote_out = (float *)parts.g + R * H * D, o.remote_lse = (float *)plse.g + R * H;
  must(infsim_kernels_ma_decode(f->gpu, &o, &err), &err);
  float *o3 = pair_fetch(f, &fused), *l3 = pair_fetch(f, &flse);
  e = rel_err(o3, o1, R * H * D);
  if (e > 1e-2) fail_msg("owner's fused merge vs one shot: %.3g", e);
  assert_true(lse_err(l3, l1, R * H) < 2e-4);
  free(o3), free(l3);
  pair_free(f, &oc), pair_free(f, &fused), pair_free(f, &flse);
  free(o1), free(l1), free(o2), free(l2);
  pair *all[] = {&q, &kp, &vp, &tb, &cx, &one, &one_lse, &parts, &plse, &merged, &mlse};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) pair_free(f, all[i]);
}

/* MA decode with remote partials merged in the same launch, against the CPU
 * reference doing the same: random remote LSEs (empty ones, far above and
 * far below the local LSE), NaN in every empty partial's output (it must
 * not be read), every split count including more splits than tiles. Row
 * (request 1, head 0) has no KV anywhere: zeros and -inf exactly. */
static void remote_case(fixture *f, infsim_kdtype t, infsim_kdtype rdt, int32_t reqs, int32_t h, int32_t g,
                        int32_t bt, int32_t max_ctx, int32_t nrem) {
  enum { D = INFSIM_KERNEL_HEAD_DIM };
  const int32_t stride = (max_ctx + bt - 1) / bt;
  const int64_t rows = (int64_t)reqs * h;
  const int32_t nal = nrem > 0 ? nrem : 1; /* partials allocated (none allocates one, unused) */
  int32_t *ctx = malloc(sizeof *ctx * (size_t)reqs), *table = malloc(sizeof *table * (size_t)(reqs * stride));
  srand((unsigned)f->seed * 3u + 1u);
  for (int32_t i = 0; i < reqs * stride; i++) table[i] = (int32_t)(((int64_t)i * 7 + 3) % (reqs * stride));
  for (int32_t r = 0; r < reqs; r++) ctx[r] = r == 1 ? 0 : (r == 0 ? max_ctx : 1 + rand() % max_ctx);
  const size_t es = infsim_kdtype_bytes(t), rs = infsim_kdtype_bytes(rdt);
  pair q = pair_alloc(f, rows * D * (int64_t)es), kp = pair_alloc(f, (int64_t)reqs * stride * g * bt * D * (int64_t)es);
  pair vp = pair_alloc(f, kp.bytes), tb = pair_alloc(f, (int64_t)sizeof *table * reqs * stride);
  pair cx = pair_alloc(f, (int64_t)sizeof *ctx * reqs), ro = pair_alloc(f, nal * rows * D * (int64_t)rs);
  pair rl = pair_alloc(f, nal * rows * 4), out = pair_alloc(f, rows * D * 4), lse = pair_alloc(f, rows * 4);
  pair_random(f, &q, t, -1, 1);
  pair_random(f, &kp, t, -1, 1);
  pair_random(f, &vp, t, -1, 1);
  pair_random(f, &ro, rdt, -1, 1);
  pair_upload(f, &tb, table);
  pair_upload(f, &cx, ctx);
  float *l = malloc(sizeof *l * (size_t)(nal * rows));
  unsigned char *rh = malloc((size_t)ro.bytes);
  memcpy(rh, ro.c, (size_t)ro.bytes);
  for (int64_t i = 0; i < nal * rows; i++) {
    const int x = rand() % 20;
    l[i] = x < 3 ? -INFINITY : (x == 3 ? 40.0f : (x == 4 ? -40.0f : (float)(rand() % 1500) / 100.0f - 3.0f));
    if (i % rows == h) l[i] = -INFINITY; /* row (request 1, head 0): every partial empty */
    if (l[i] == -INFINITY) memset(rh + (size_t)i * D * rs, 0xff, D * rs); /* NaN: must not be read */
  }
  pair_upload(f, &rl, l);
  pair_upload(f, &ro, rh);
  infsim_ma_decode_args a = {.num_requests = reqs, .num_q_heads = h, .num_kv_heads = g, .head_dim = D,
                             .block_tokens = bt, .dtype = t, .block_table_stride = stride,
                             .max_context_tokens = max_ctx, .softmax_scale = 1.0f / sqrtf((float)D),
                             .num_remote = nrem, .remote_dtype = rdt};
  a.q = q.c, a.k_pool = kp.c, a.v_pool = vp.c, a.block_table = tb.c, a.context_tokens = cx.c, a.out = out.c,
  a.lse = lse.c, a.remote_out = ro.c, a.remote_lse = rl.c;
  infsim_error err;
  pair_poison(f, &out);
  must(infsim_kernels_ma_decode(f->cpu, &a, &err), &err);
  a.q = q.g, a.k_pool = kp.g, a.v_pool = vp.g, a.block_table = tb.g, a.context_tokens = cx.g, a.out = out.g,
  a.lse = lse.g, a.remote_out = ro.g, a.remote_lse = rl.g;
  const double bound = t == INFSIM_KDTYPE_BF16 ? 1.2e-2 : 3e-3;
  /* Every split count (300: more splits than tiles, so empty splits, and
   * more than one slice of the register merge) through each split merge
   * (4 and 5: the remote partials folded into each CTA's merge, with
   * splits a share of them in each split, more than 8 in one split at 2
   * splits and 17 or more partials; empty splits with partials to fold at
   * 300; 6: the partials merged by a CTA of their own, as one more split
   * entry) on the grid of one CTA a row group, auto (0), which picks among
   * them and the grids by the partials and the grid, and (7) the
   * persistent grid, its warps seeded with the partials (one split; with
   * splits as auto). */
  const int32_t splits[] = {0, 1, 2, 5, 8, 300}; /* 8: split merge 6 merges 9 entries */
  /* INFSIM_GPU_TEST_SPLIT_MERGE=N: split merge N alone (racecheck over one
   * path fits a short GPU call; 7 the persistent grid). */
  const char *only_sm = getenv("INFSIM_GPU_TEST_SPLIT_MERGE");
  for (int32_t sm = 0; sm <= 7; sm++)
    for (size_t si = 0; si < sizeof splits / sizeof splits[0]; si++) {
      if (only_sm && sm != atoi(only_sm)) continue;
      a.num_splits = splits[si];
      a.split_merge = sm == 7 ? 0 : sm;
      a.decode_grid = sm == 7 ? 2 : sm == 0 ? 0 : 1;
      must(infsim_kernels_memset(f->gpu, out.g, 0xff, out.bytes, &err), &err);
      must(infsim_kernels_memset(f->gpu, lse.g, 0xff, lse.bytes, &err), &err);
      must(infsim_kernels_ma_decode(f->gpu, &a, &err), &err);
      float *go = pair_fetch(f, &out), *gl = pair_fetch(f, &lse);
      const double eo = rel_err(go, out.c, rows * D), el = lse_err(gl, lse.c, rows);
      if (eo > bound || el > 2e-4)
        fail_msg("decode + %d remote (%s) %s h=%d g=%d bt=%d ctx<=%d splits=%d merge=%d: out err %.3g, lse err %.3g",
                 nrem, rdt == INFSIM_KDTYPE_F16 ? "f16" : "f32", t == INFSIM_KDTYPE_BF16 ? "bf16" : "f16", h, g, bt,
                 max_ctx, splits[si], sm, eo, el);
      for (int x = 0; x < D; x++) assert_true(go[(int64_t)h * D + x] == 0.0f);
      assert_true(isinf(gl[h]) && gl[h] < 0);
      free(go), free(gl);
    }
  free(l), free(rh), free(ctx), free(table);
  pair *all[] = {&q, &kp, &vp, &tb, &cx, &ro, &rl, &out, &lse};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) pair_free(f, all[i]);
}

static void test_decode_merges_remote_partials(void **state) {
  fixture *f = *state;
  remote_case(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32, 3, 8, 1, 16, 1000, 2);
  remote_case(f, INFSIM_KDTYPE_F16, INFSIM_KDTYPE_F16, 3, 64, 8, 32, 300, 3);
  remote_case(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F16, 2, 40, 2, 128, 500, INFSIM_KERNEL_MAX_REMOTE);
  remote_case(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32, 2, 4, 4, 256, 2100, 1);
  remote_case(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32, 3, 16, 2, 48, 9000, 5);
  /* Past the one-split fold's first batch (8) and slice of LSEs (8): three
   * batches of fp32 and of fp16 partials, rows of 12 heads. */
  remote_case(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32, 2, 24, 2, 16, 600, 19);
  remote_case(f, INFSIM_KDTYPE_F16, INFSIM_KDTYPE_F16, 2, 24, 2, 16, 600, 17);
  /* Warps with 0-2 tiles (contexts of 1-40 tokens: the prefetch and the
   * one-split fold's loads at the stream's start), and 19 partials with
   * rows of 16 heads (batches of 4 in the register split merge). */
  remote_case(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32, 3, 16, 2, 16, 40, 8);
  remote_case(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F16, 3, 16, 2, 16, 40, 7);
  remote_case(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32, 3, 32, 2, 16, 120, 19);
  /* More row groups than a wave of CTAs: the persistent grid's CTAs take
   * the partials of several row groups in turn (5 and 9: warps with one
   * to three seeds, a later row group's loaded after the merge of the one
   * before). */
  remote_case(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32, 300, 8, 1, 16, 100, 5);
  remote_case(f, INFSIM_KDTYPE_F16, INFSIM_KDTYPE_F16, 280, 16, 2, 32, 64, 9);
  /* The same with full row groups of 16 fp32 rows (a warp's second seed
   * fills its last stage) and with row groups of 3 rows. */
  remote_case(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32, 300, 16, 1, 16, 80, 6);
  remote_case(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F16, 400, 3, 1, 16, 48, 8);
}

/* The register split merge's row layouts (16, 8 and 32 lanes a row: groups
 * of 8, 16 and 3-4 query heads, a group of 3 leaving a row idle) and the
 * shared-memory one (a group of 1), with 0 to 8 remote partials of either
 * precision: the counts the fused merge's benchmarks run. */
static void test_decode_remote_counts(void **state) {
  fixture *f = *state;
  for (int32_t nrem = 0; nrem <= 8; nrem++)
    remote_case(f, INFSIM_KDTYPE_BF16, nrem % 2 ? INFSIM_KDTYPE_F16 : INFSIM_KDTYPE_F32, 2, 16, 2, 16, 700, nrem);
  remote_case(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32, 2, 16, 2, 16, 700, 1);
  remote_case(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F16, 2, 16, 2, 16, 700, 4);
  remote_case(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32, 2, 32, 2, 16, 900, 3);
  remote_case(f, INFSIM_KDTYPE_F16, INFSIM_KDTYPE_F16, 3, 8, 2, 32, 1200, 8);
  remote_case(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32, 2, 6, 2, 16, 800, 2);
  remote_case(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32, 2, 4, 4, 16, 800, 4);
}

static void test_merge_matches_cpu(void **state) {
  fixture *f = *state;
  enum { D = 128 };
  int32_t counts[] = {1, 2, 5, 32, 33};
  for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
    int32_t P = counts[c];
    int64_t rows = 301;
    pair po = pair_alloc(f, P * rows * D * 4), pl = pair_alloc(f, P * rows * 4);
    pair_random(f, &po, INFSIM_KDTYPE_F32, -2, 2);
    float *lse = malloc(sizeof *lse * (size_t)(P * rows));
    srand((unsigned)f->seed);
    for (int64_t i = 0; i < P * rows; i++) {
      int k = rand() % 10;
      lse[i] = k == 0 ? -INFINITY : (k == 1 ? 1e4f : (k == 2 ? -1e4f : (float)(rand() % 2000) / 100.0f - 10));
    }
    for (int64_t r = 0; r < P; r++) lse[r * rows + 7] = -INFINITY; /* row 7: all partials empty */
    pair_upload(f, &pl, lse);
    pair out = pair_alloc(f, rows * D * 4), ol = pair_alloc(f, rows * 4);
    pair_poison(f, &out);
    infsim_merge_args m = {.num_partials = P, .rows = rows, .head_dim = D, .part_out = po.c, .part_lse = pl.c,
                           .out = out.c, .lse = ol.c};
    infsim_error err;
    must(infsim_kernels_merge(f->cpu, &m, &err), &err);
    m.part_out = po.g, m.part_lse = pl.g, m.out = out.g, m.lse = ol.g;
    must(infsim_kernels_merge(f->gpu, &m, &err), &err);
    float *go = pair_fetch(f, &out), *gl = pair_fetch(f, &ol);
    assert_true(rel_err(go, out.c, rows * D) < 1e-5);
    assert_true(lse_err(gl, ol.c, rows) < 1e-5);
    for (int x = 0; x < D; x++) assert_true(go[7 * D + x] == 0.0f);
    assert_true(isinf(gl[7]) && gl[7] < 0);
    free(go), free(gl), free(lse);
    pair *all[] = {&po, &pl, &out, &ol};
    for (size_t i = 0; i < 4; i++) pair_free(f, all[i]);
  }
}

/* Prefill twice (a prompt, then a chunk after it) on both backends; the
 * pools must match bit for bit and the outputs within bf16 tolerance.
 * `variants` has bit i set for each row i of the tile table below to run.
 * grow_tokens > 0 (bf16 only): the new keys at position x are multiplied
 * by 2^(x / grow_tokens), exactly (a shift of the exponent field), so the
 * scores' running max keeps rising along the sequence. */
static void prefill_case_run(fixture *f, infsim_kdtype t, infsim_kdtype out_t, int32_t reqs, int32_t h, int32_t g,
                             int32_t bt, int32_t first, int32_t second, unsigned variants, bool nan_pool,
                             int32_t grow_tokens) {
  enum { D = INFSIM_KERNEL_HEAD_DIM };
  int32_t total = first + second, stride = (total + bt - 1) / bt, nblocks = reqs * stride + 2;
  int32_t *table = malloc(sizeof *table * (size_t)(reqs * stride));
  /* A shuffled permutation: every logical block gets its own pool block. */
  int32_t *perm = malloc(sizeof *perm * (size_t)nblocks);
  for (int32_t i = 0; i < nblocks; i++) perm[i] = i;
  srand((unsigned)f->seed);
  for (int32_t i = nblocks - 1; i > 0; i--) {
    int32_t j = rand() % (i + 1), x = perm[i];
    perm[i] = perm[j];
    perm[j] = x;
  }
  for (int32_t i = 0; i < reqs * stride; i++) table[i] = perm[i];
  free(perm);
  size_t es = infsim_kdtype_bytes(t), os = infsim_kdtype_bytes(out_t);
  pair kp = pair_alloc(f, (int64_t)nblocks * g * bt * D * (int64_t)es), vp = pair_alloc(f, kp.bytes);
  if (nan_pool) { /* slots past the last key hold NaN: a kernel must not let them reach O (0 x NaN) */
    pair_poison(f, &kp);
    pair_poison(f, &vp);
  } else {
    pair_random(f, &kp, t, -1, 1); /* old contents outside the written slots */
    pair_random(f, &vp, t, -1, 1);
  }
  pair tb = pair_alloc(f, (int64_t)sizeof *table * reqs * stride);
  pair_upload(f, &tb, table);
  int32_t chunks[2] = {first, second};
  int32_t past = 0;
  const double bound = t == INFSIM_KDTYPE_BF16 ? 1.2e-2 : 3e-3;
  for (int c = 0; c < 2; c++) {
    int32_t n = chunks[c];
    pair q = pair_alloc(f, (int64_t)reqs * n * h * D * (int64_t)es);
    pair kn = pair_alloc(f, (int64_t)reqs * n * g * D * (int64_t)es), vn = pair_alloc(f, kn.bytes);
    pair out = pair_alloc(f, (int64_t)reqs * n * h * D * (int64_t)os), lse = pair_alloc(f, (int64_t)reqs * n * h * 4);
    pair_random(f, &q, t, -1, 1);
    pair_random(f, &kn, t, -1, 1);
    if (grow_tokens > 0) {
      uint16_t *kh = malloc((size_t)kn.bytes);
      memcpy(kh, kn.c, (size_t)kn.bytes);
      for (int64_t e = 0; e < kn.bytes / 2; e++) {
        const int32_t x = past + (int32_t)(e / (D * g) % n);
        if (kh[e] & 0x7f80u) kh[e] = (uint16_t)(kh[e] + ((uint32_t)(x / grow_tokens) << 7));
      }
      pair_upload(f, &kn, kh);
      free(kh);
    }
    pair_random(f, &vn, t, -1, 1);
    pair_poison(f, &out);
    pair_poison(f, &lse);
    /* The pools before this chunk's append: pipelines 13, 14 and 15 append
     * inside the attention kernel, so they start from them (not from the
     * earlier variants' appends) and their pools are compared on their own;
     * so does auto, which runs them on compute capability 9.0
     * (infsim_kernels_prefill_sm90_auto). */
    void *k0 = malloc((size_t)kp.bytes), *v0 = malloc((size_t)vp.bytes);
    memcpy(k0, kp.c, (size_t)kp.bytes);
    memcpy(v0, vp.c, (size_t)vp.bytes);
    infsim_prefill_args a = {.num_requests = reqs, .num_q_heads = h, .num_kv_heads = g, .head_dim = D,
                             .new_tokens = n, .past_tokens = past, .block_tokens = bt, .dtype = t,
                             .block_table_stride = stride, .softmax_scale = 1.5f / sqrtf(D), .out_dtype = out_t};
    infsim_error err;
    a.q = q.c, a.k_new = kn.c, a.v_new = vn.c, a.k_pool = kp.c, a.v_pool = vp.c, a.block_table = tb.c,
    a.out = out.c, a.lse = lse.c;
    must(infsim_kernels_prefill(f->cpu, &a, &err), &err);
    a.q = q.g, a.k_new = kn.g, a.v_new = vn.g, a.k_pool = kp.g, a.v_pool = vp.g, a.block_table = tb.g,
    a.out = out.g, a.lse = lse.g;
    /* Every tile shape (each rewrites the same K/V into the pool); 128 x 128
     * is the wgmma kernel on compute capability 9.0, 128 x 64 elsewhere. */
    /* Third column: the wgmma kernel's pipeline (1 = version 6, 2 and 3 =
     * version 14 with Q in shared memory or registers, 4 and 5 = version 15
     * with one CTA per work tile or one per SM over them, 6 and 7 = the
     * same with K/V by bulk tensor copies, 8 and 9 = version 17's
     * consumers on version 16's loads, 10 and 11 = version 18's, 12 = 10
     * with the CTAs in groups of heads, 13, 14 and 15 = 10, 11 and 12 with
     * the append inside). */
    const int tiles[19][3] = {{64, 64, 0},    {128, 32, 0},   {128, 64, 0},   {128, 128, 1},  {128, 128, 2},
                              {128, 128, 3},  {0, 0, 0},      {128, 128, 4},  {128, 128, 5},  {128, 128, 6},
                              {128, 128, 7},  {128, 128, 8},  {128, 128, 9},  {128, 128, 10}, {128, 128, 11},
                              {128, 128, 12}, {128, 128, 13}, {128, 128, 14}, {128, 128, 15}};
    for (int variant = 0; variant < 19; variant++) {
    if (!(variants >> variant & 1u)) continue;
    a.q_tile_rows = tiles[variant][0];
    a.k_tile_tokens = tiles[variant][1];
    a.sm90_pipeline = tiles[variant][2];
    const bool alone = a.sm90_pipeline >= 13 || (a.q_tile_rows == 0 && a.k_tile_tokens == 0);
    if (alone) {
      must(infsim_kernels_upload(f->gpu, kp.g, k0, kp.bytes, &err), &err);
      must(infsim_kernels_upload(f->gpu, vp.g, v0, vp.bytes, &err), &err);
    }
    must(infsim_kernels_memset(f->gpu, out.g, 0xff, out.bytes, &err), &err);
    must(infsim_kernels_memset(f->gpu, lse.g, 0xff, lse.bytes, &err), &err);
    must(infsim_kernels_prefill(f->gpu, &a, &err), &err);
    void *go = pair_fetch(f, &out);
    float *gl = pair_fetch(f, &lse);
    int64_t n_out = (int64_t)reqs * n * h * D;
    float *gf = malloc(sizeof *gf * (size_t)n_out), *cf = malloc(sizeof *cf * (size_t)n_out);
    for (int64_t i = 0; i < n_out; i++) {
      gf[i] = out_t == INFSIM_KDTYPE_F32 ? ((float *)go)[i]
              : out_t == INFSIM_KDTYPE_BF16 ? infsim_bf16_to_float(((uint16_t *)go)[i])
                                            : infsim_f16_to_float(((uint16_t *)go)[i]);
      cf[i] = out_t == INFSIM_KDTYPE_F32 ? ((float *)out.c)[i]
              : out_t == INFSIM_KDTYPE_BF16 ? infsim_bf16_to_float(((uint16_t *)out.c)[i])
                                            : infsim_f16_to_float(((uint16_t *)out.c)[i]);
    }
    double e = rel_err(gf, cf, n_out), el = lse_err(gl, lse.c, (int64_t)reqs * n * h);
    if (e > bound || el > 2e-4)
      fail_msg("prefill r=%d h=%d g=%d bt=%d past=%d new=%d tile=%dx%d pipeline %d: out err %.3g (bound %.3g), "
               "lse err %.3g", reqs, h, g, bt, past, n, a.q_tile_rows, a.k_tile_tokens, a.sm90_pipeline, e, bound, el);
    free(go), free(gl), free(gf), free(cf);
    if (alone) {
      void *gk = pair_fetch(f, &kp), *gv = pair_fetch(f, &vp);
      if (memcmp(gk, kp.c, (size_t)kp.bytes) || memcmp(gv, vp.c, (size_t)vp.bytes))
        fail_msg("prefill r=%d h=%d g=%d bt=%d past=%d new=%d pipeline %d: pool differs from the reference append",
                 reqs, h, g, bt, past, n, a.sm90_pipeline);
      free(gk), free(gv);
    }
    }
    free(k0), free(v0);
    pair *all[] = {&q, &kn, &vn, &out, &lse};
    for (size_t i = 0; i < 5; i++) pair_free(f, all[i]);
    past += n;
  }
  void *gk = pair_fetch(f, &kp), *gv = pair_fetch(f, &vp);
  assert_memory_equal(gk, kp.c, (size_t)kp.bytes);
  assert_memory_equal(gv, vp.c, (size_t)vp.bytes);
  free(gk), free(gv), free(table);
  pair_free(f, &kp), pair_free(f, &vp), pair_free(f, &tb);
}

static void prefill_case_of(fixture *f, infsim_kdtype t, infsim_kdtype out_t, int32_t reqs, int32_t h, int32_t g,
                            int32_t bt, int32_t first, int32_t second, unsigned variants) {
  prefill_case_run(f, t, out_t, reqs, h, g, bt, first, second, variants, false, 0);
}

static void prefill_case(fixture *f, infsim_kdtype t, infsim_kdtype out_t, int32_t reqs, int32_t h, int32_t g,
                         int32_t bt, int32_t first, int32_t second) {
  prefill_case_of(f, t, out_t, reqs, h, g, bt, first, second, 0x7ffffu);
}

/* Version 14 (pipeline 2) alone at a size compute-sanitizer's
 * racecheck finishes in a short call: 520 prompt tokens give the last
 * query tile four unmasked key tiles before its diagonal (the K/V ring of
 * three buffers and the staged block-table runs wrap around), and the
 * 130-token chunk after them starts 8 tokens into a key tile, so the first
 * query tile's lower warpgroup gets a key tile it cannot see (fully
 * masked). 16-token blocks: eight table runs per key tile. */
static void test_prefill_small_v14(void **state) {
  fixture *f = *state;
  prefill_case_of(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32, 1, 2, 1, 16, 520, 130, 1u << 4);
  /* 200 tokens after 64 cached: in the second query tile, warpgroup 0's
   * first row (position 192) is in key tile 1 and warpgroup 1's (256) in
   * key tile 2, so a split of the loop per warpgroup would send them to
   * barrier 0 through different copies of the loop (synccheck: divergent
   * threads). Pipelines 2 and 3 (Q in shared memory, in registers). */
  prefill_case_of(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32, 1, 2, 1, 64, 64, 200, 3u << 4);
}

/* Version 15 at the same racecheck size: besides the wrapping rings, its
 * producer waits on every K and V buffer's "empty" barrier more than once
 * (phases of both parities) and the two consumer warpgroups release each
 * buffer separately. */
static void test_prefill_small_v15(void **state) {
  fixture *f = *state;
  prefill_case_of(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32, 1, 2, 1, 16, 520, 130, 3u << 7);
}

/* Version 15's persistent grid with more work tiles than SMs (192, then 128
 * after the prefix): CTAs take several tiles, of different lengths, and the
 * rings and Q's buffer carry over from one to the next. */
static void test_prefill_persist_v15(void **state) {
  fixture *f = *state;
  prefill_case_of(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_BF16, 2, 32, 4, 32, 300, 150, 1u << 8);
}

/* Pipelines 6 and 7 (K/V by bulk tensor copies) at the racecheck size of
 * version 15's test, then the persistent one with several work tiles per
 * CTA. */
static void test_prefill_small_v16(void **state) {
  fixture *f = *state;
  prefill_case_of(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32, 1, 2, 1, 16, 520, 130, 3u << 9);
  prefill_case_of(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_BF16, 2, 32, 4, 32, 300, 150, 1u << 10);
}

/* Version 17 (pipelines 8 and 9) at the same two sizes as version 16. */
static void test_prefill_small_v17(void **state) {
  fixture *f = *state;
  prefill_case_of(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32, 1, 2, 1, 16, 520, 130, 3u << 11);
  prefill_case_of(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_BF16, 2, 32, 4, 32, 300, 150, 1u << 12);
}

/* Version 18 (pipelines 10 and 11, 12 with its CTAs in groups of heads,
 * 13, 14 and 15 with the append inside) at the same two sizes as version 16;
 * the second size's 32 heads on 4 KV heads make four groups of 8 for
 * pipeline 12, of 3 query tiles each, then 2 after the prefix, and give
 * pipelines 13 and 14 two requests whose last key tiles end mid-run
 * (300 = 18 x 16 + 12), 192 work tiles: several per CTA of pipeline 14
 * on a 132-SM card. */
static void test_prefill_small_v18(void **state) {
  fixture *f = *state;
  prefill_case_of(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32, 1, 2, 1, 16, 520, 130, 0x3fu << 13);
  prefill_case_of(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_BF16, 2, 32, 4, 32, 300, 150, 0x3fu << 13);
}

/* Pipelines 13 and 14 alone (the append inside the attention kernel) at
 * version 18's two sizes, for a compute-sanitizer pass over them: the
 * diagonal CTAs' bulk stores from shared memory and the waits before the
 * buffers are refilled (pipeline 14's next work tile) or the CTA exits. */
static void test_prefill_small_fused(void **state) {
  fixture *f = *state;
  prefill_case_of(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32, 1, 2, 1, 16, 520, 130, 0x3u << 16);
  prefill_case_of(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_BF16, 2, 32, 4, 32, 300, 150, 0x3u << 16);
  /* 512 work tiles: three or four per CTA of pipeline 14 on a 132-SM card
   * (its producer lanes must not drift a work tile apart). */
  prefill_case_of(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_BF16, 1, 64, 8, 16, 1024, 1, 0x3u << 16);
}

/* Auto past 4K tokens, fresh (pipeline 13 on compute capability 9.0, the
 * append folded in) and then a chunk after that prefix (pipeline 15, the
 * append folded into 12's grid), beside 10, 12, 13 and 15 named: the
 * rule's long-prompt branches, which the cases above (all under 4K tokens)
 * do not reach. 4160 tokens end half-way into a key tile, so the chunk's
 * one query tile stores runs into two key tiles. */
static void test_prefill_fused_auto_long(void **state) {
  fixture *f = *state;
  infsim_prefill_args fresh = {.new_tokens = 4160}, chunk = {.past_tokens = 4160, .new_tokens = 64};
  assert_int_equal(infsim_kernels_prefill_sm90_auto(&fresh), 13);
  assert_int_equal(infsim_kernels_prefill_sm90_auto(&chunk), 15);
  prefill_case_of(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_BF16, 1, 2, 2, 16, 4160, 64, 1u << 6 | 0x2du << 13);
}

/* The append folded into chunks after a cached prefix (pipelines 13, 14
 * and 15 named, and auto, which takes 14 here): each chunk's prefix runs
 * come from the pool, its new runs from k_new / v_new, and the first query
 * head's CTA of each query tile stores the new runs at its own positions;
 * the pool must match the reference append bit for bit. Prefixes of whole
 * key tiles (512), of a key tile and a half ending mid-block (304 on
 * 32-token blocks: each query tile's positions straddle two key tiles, so
 * its CTA stores runs of both), on 48-token blocks (not a power of two:
 * 80 ends inside a block, 96 on one; f16 too), two requests; three
 * requests on 64/8 heads, 256 after 272 (384 work tiles, two or three per
 * CTA of pipeline 14 on a 132-SM card, each storing runs of two key
 * tiles; 576 before it). Then prefixes that are not a multiple of 16
 * (520, 300): these run the append kernel and 10, 11 and 12. */
static void test_prefill_chunk_fused(void **state) {
  fixture *f = *state;
  const unsigned fused = 0x7u << 16 | 1u << 6;
  prefill_case_of(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32, 1, 2, 1, 16, 512, 130, fused);
  prefill_case_of(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_BF16, 2, 32, 4, 32, 304, 150, fused);
  prefill_case_of(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32, 2, 4, 2, 48, 80, 90, fused);
  prefill_case_of(f, INFSIM_KDTYPE_F16, INFSIM_KDTYPE_F16, 2, 4, 2, 48, 96, 200, fused);
  prefill_case_of(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_BF16, 3, 64, 8, 16, 272, 256, 1u << 17 | 1u << 6);
  infsim_prefill_args odd = {.past_tokens = 520, .new_tokens = 130};
  assert_int_equal(infsim_kernels_prefill_sm90_auto(&odd), 11);
  prefill_case_of(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32, 1, 2, 1, 16, 520, 130, fused);
  prefill_case_of(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_BF16, 2, 32, 4, 32, 300, 150, fused);
}

/* A pool whose unwritten slots are NaN: the slots past the last key of the
 * last block are read (a 16-key run or a whole key tile past the end) and
 * must count as zeros, for the version-15 to -18 pipelines and auto. 100
 * and 37 tokens end inside a 16-token run; 64-token blocks put the last
 * run mid-block; 37 after 208 (a multiple of 16) is a chunk with the
 * append folded in (13, 14, 15 and auto), whose last run is a new one. */
static void test_prefill_nan_pool(void **state) {
  fixture *f = *state;
  const unsigned hopper = 1u << 6 | 0xfffu << 7;
  prefill_case_run(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32, 2, 4, 2, 16, 100, 37, hopper, true, 0);
  prefill_case_run(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32, 1, 8, 1, 64, 200, 90, hopper, true, 0);
  prefill_case_run(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32, 2, 4, 2, 64, 208, 37, hopper, true, 0);
}

/* Keys that double in size every 64 positions (up to 2^10 by the end): the
 * scores' max keeps rising by more than 2^8 in exponent terms from one key
 * tile to the next, so version 17's rescale of O (which it skips while
 * the max moves less) runs on most tiles, in the prompt and in the chunk
 * after it, and so does version 18's redo of a tile from its raw scores
 * (its exponents' sums pass 2^15, many of them infinite); every tile shape
 * and pipeline, then the append folded into the chunk after 512 tokens. */
static void test_prefill_rising_max(void **state) {
  fixture *f = *state;
  prefill_case_run(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32, 1, 2, 1, 16, 520, 130, 0x7ffffu, false, 64);
  prefill_case_run(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32, 1, 2, 1, 16, 512, 130, 0x7u << 16 | 1u << 6, false, 64);
}

static void test_prefill_matches_cpu(void **state) {
  fixture *f = *state;
  prefill_case(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32, 2, 4, 2, 16, 100, 37);
  prefill_case(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_BF16, 1, 8, 1, 64, 64, 200);
  prefill_case(f, INFSIM_KDTYPE_F16, INFSIM_KDTYPE_F16, 2, 2, 2, 32, 129, 1);
  prefill_case(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32, 1, 2, 1, 256, 700, 300);
  prefill_case(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32, 2, 4, 2, 48, 70, 90); /* block size not a power of two */
  /* More 128-query tiles than an H200 has SMs (192, then 128 with a cached
   * prefix): several waves of CTAs, or several tiles per persistent CTA. */
  prefill_case(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_BF16, 2, 32, 4, 32, 300, 150);
  /* Long enough for unmasked key tiles before the diagonal (version 14's
   * first loop); the chunk after 960 cached tokens leaves the first
   * query tile's lower warpgroup a tile with no visible key (it runs
   * fully masked). */
  prefill_case(f, INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F32, 1, 2, 1, 16, 960, 300);
  prefill_case(f, INFSIM_KDTYPE_F16, INFSIM_KDTYPE_F16, 1, 2, 2, 64, 600, 40);
}

static void test_gemm_matches_cpu(void **state) {
  fixture *f = *state;
  int64_t shapes[][3] = {{1, 768, 256}, {37, 96, 256}, {128, 512, 384}, {5, 256, 1024}};
  infsim_kdtype types[2] = {INFSIM_KDTYPE_BF16, INFSIM_KDTYPE_F16};
  for (size_t s = 0; s < 4; s++) {
    for (int t = 0; t < 2; t++) {
      int64_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
      pair a = pair_alloc(f, m * k * 2), w = pair_alloc(f, n * k * 2), c = pair_alloc(f, m * n * 2);
      pair_random(f, &a, types[t], -1, 1);
      pair_random(f, &w, types[t], -0.1f, 0.1f);
      pair_poison(f, &c);
      infsim_gemm_args g = {.m = m, .n = n, .k = k, .dtype = types[t], .a = a.c, .w = w.c, .c = c.c};
      infsim_error err;
      must(infsim_kernels_gemm(f->cpu, &g, &err), &err);
      g.a = a.g, g.w = w.g, g.c = c.g;
      must(infsim_kernels_gemm(f->gpu, &g, &err), &err);
      must(infsim_kernels_gemm(f->gpu, &g, &err), &err); /* cached plan */
      uint16_t *gc = pair_fetch(f, &c);
      float *x = malloc(sizeof *x * (size_t)(m * n)), *y = malloc(sizeof *y * (size_t)(m * n));
      for (int64_t i = 0; i < m * n; i++) {
        x[i] = types[t] == INFSIM_KDTYPE_BF16 ? infsim_bf16_to_float(gc[i]) : infsim_f16_to_float(gc[i]);
        uint16_t cv = ((uint16_t *)c.c)[i];
        y[i] = types[t] == INFSIM_KDTYPE_BF16 ? infsim_bf16_to_float(cv) : infsim_f16_to_float(cv);
      }
      double e = rel_err(x, y, m * n);
      if (e > 1e-2) fail_msg("gemm m=%lld n=%lld k=%lld: err %.3g", (long long)m, (long long)n, (long long)k, e);
      free(gc), free(x), free(y);
      pair_free(f, &a), pair_free(f, &w), pair_free(f, &c);
    }
  }
}

static void test_kv_copy_and_staged_copy(void **state) {
  fixture *f = *state;
  enum { NB = 50, BB = 4096 };
  pair src = pair_alloc(f, NB * BB), dst = pair_alloc(f, NB * BB);
  pair_random(f, &src, INFSIM_KDTYPE_F32, -1, 1);
  pair_random(f, &dst, INFSIM_KDTYPE_F32, -1, 1);
  int32_t s_ids[20], d_ids[20];
  for (int i = 0; i < 20; i++) s_ids[i] = (i * 3) % NB, d_ids[i] = (i * 7 + 1) % NB;
  pair si = pair_alloc(f, sizeof s_ids), di = pair_alloc(f, sizeof d_ids);
  pair_upload(f, &si, s_ids);
  pair_upload(f, &di, d_ids);
  infsim_kv_copy_args a = {.dst_pool = dst.c, .src_pool = src.c, .block_bytes = BB, .src_ids = si.c,
                           .dst_ids = di.c, .num_blocks = 20};
  infsim_error err;
  must(infsim_kernels_kv_copy(f->cpu, &a, &err), &err);
  a.dst_pool = dst.g, a.src_pool = src.g, a.src_ids = si.g, a.dst_ids = di.g;
  must(infsim_kernels_kv_copy(f->gpu, &a, &err), &err);
  void *h = pair_fetch(f, &dst);
  assert_memory_equal(h, dst.c, NB * BB);
  free(h);
  /* Staged copy of an odd size through two small chunks of pinned memory. */
  void *stage = NULL;
  must(infsim_kernels_host_alloc(f->gpu, 2 * 1000, &stage, &err), &err);
  pair big = pair_alloc(f, NB * BB);
  infsim_staged_copy_args s = {.dst_buf = big.g, .src_buf = src.g, .bytes = NB * BB - 16, .staging_host = stage,
                               .chunk_bytes = 1000};
  must(infsim_kernels_memset(f->gpu, big.g, 0, big.bytes, &err), &err);
  must(infsim_kernels_staged_copy(f->gpu, &s, &err), &err);
  h = pair_fetch(f, &big);
  assert_memory_equal(h, src.c, NB * BB - 16);
  assert_int_equal(((unsigned char *)h)[NB * BB - 1], 0);
  free(h);
  infsim_kernels_host_free(f->gpu, stage);
  pair *all[] = {&src, &dst, &si, &di, &big};
  for (size_t i = 0; i < 5; i++) pair_free(f, all[i]);
}

/* RMSNorm + RoPE in place: each stage and both, GPU vs CPU on the same
 * inputs; v heads must come back bit for bit. */
static void norm_rope_case(fixture *f, infsim_kdtype t, int32_t tokens, int32_t h, int32_t g, int stages) {
  enum { D = INFSIM_KERNEL_HEAD_DIM };
  const int32_t rows = h + 2 * g;
  const int64_t n = (int64_t)tokens * rows * D;
  const size_t es = infsim_kdtype_bytes(t);
  pair qkv = pair_alloc(f, n * (int64_t)es), qw = pair_alloc(f, D * (int64_t)es), kw = pair_alloc(f, qw.bytes);
  pair pos = pair_alloc(f, (int64_t)sizeof(int32_t) * tokens);
  pair_random(f, &qkv, t, -3, 3);
  pair_random(f, &qw, t, 0.5f, 1.5f);
  pair_random(f, &kw, t, 0.5f, 1.5f);
  int32_t *p = malloc(sizeof *p * (size_t)tokens);
  for (int32_t i = 0; i < tokens; i++) p[i] = (int32_t)(((uint64_t)i * 2654435761u + f->seed) % 1048576u);
  pair_upload(f, &pos, p);
  free(p);
  void *before = pair_fetch(f, &qkv);
  infsim_norm_rope_args a = {.tokens = tokens, .num_q_heads = h, .num_kv_heads = g, .head_dim = D, .dtype = t,
                             .eps = 1e-6f, .rope_theta = 10000.0f, .stages = stages};
  infsim_error err;
  a.qkv = qkv.c, a.positions = pos.c, a.q_weight = qw.c, a.k_weight = kw.c;
  must(infsim_kernels_norm_rope(f->cpu, &a, &err), &err);
  a.qkv = qkv.g, a.positions = pos.g, a.q_weight = qw.g, a.k_weight = kw.g;
  must(infsim_kernels_norm_rope(f->gpu, &a, &err), &err);
  uint16_t *gq = pair_fetch(f, &qkv), *cq = qkv.c, *bq = before;
  float *gf = malloc(sizeof *gf * (size_t)n), *cf = malloc(sizeof *cf * (size_t)n);
  int64_t m = 0;
  for (int32_t tok = 0; tok < tokens; tok++) {
    for (int32_t j = 0; j < h + g; j++)
      for (int i = 0; i < D; i++, m++) {
        int64_t at = ((int64_t)tok * rows + j) * D + i;
        gf[m] = t == INFSIM_KDTYPE_BF16 ? infsim_bf16_to_float(gq[at]) : infsim_f16_to_float(gq[at]);
        cf[m] = t == INFSIM_KDTYPE_BF16 ? infsim_bf16_to_float(cq[at]) : infsim_f16_to_float(cq[at]);
      }
    const int64_t vb = ((int64_t)tok * rows + h + g) * D;
    assert_memory_equal(gq + vb, bq + vb, (size_t)(g * D) * es);
  }
  /* Same formula, different fp32 rounding (sum order, FMA): a unit in the
   * last 16-bit place on a few elements. */
  const double e = rel_err(gf, cf, m), bound = t == INFSIM_KDTYPE_BF16 ? 3e-3 : 4e-4;
  if (!(e <= bound))
    fail_msg("norm_rope t=%d tokens=%d h=%d g=%d stages=%d: err %.3g > %.3g", (int)t, tokens, h, g, stages, e, bound);
  free(before), free(gq), free(gf), free(cf);
  pair *all[] = {&qkv, &qw, &kw, &pos};
  for (size_t i = 0; i < 4; i++) pair_free(f, all[i]);
}

static void test_norm_rope_matches_cpu(void **state) {
  fixture *f = *state;
  for (int stages = 1; stages <= 3; stages++) {
    norm_rope_case(f, INFSIM_KDTYPE_BF16, 37, 64, 8, stages); /* LLaMA2-70B heads */
    norm_rope_case(f, INFSIM_KDTYPE_F16, 5, 3, 1, stages);    /* fewer heads than warps */
    norm_rope_case(f, INFSIM_KDTYPE_BF16, 3, 13, 13, stages); /* no GQA, heads not a multiple of 4 */
  }
}

static void test_timing_is_ordered(void **state) {
  fixture *f = *state;
  pair po = pair_alloc(f, 4 * 1024 * 128 * 4), pl = pair_alloc(f, 4 * 1024 * 4), out = pair_alloc(f, 1024 * 128 * 4);
  pair_random(f, &po, INFSIM_KDTYPE_F32, -1, 1);
  pair_random(f, &pl, INFSIM_KDTYPE_F32, -5, 5);
  infsim_merge_args m = {.num_partials = 4, .rows = 1024, .head_dim = 128, .part_out = po.g, .part_lse = pl.g,
                         .out = out.g};
  infsim_time_opts o = {.warmup = 2, .repeats = 9, .flush_l2 = true};
  infsim_kernel_timing t;
  infsim_error err;
  must(infsim_kernels_time_ms(f->gpu, infsim_kernel_op_merge, &m, &o, &t, &err), &err);
  assert_int_equal(t.repeats, 9);
  assert_true(t.min_ms > 0.0 && t.min_ms <= t.p10_ms && t.p10_ms <= t.median_ms && t.median_ms <= t.p90_ms &&
              t.p90_ms <= t.max_ms);
  assert_true(t.max_ms < 100.0); /* 2 MiB read: far under 100 ms on any GPU */
  pair_free(f, &po), pair_free(f, &pl), pair_free(f, &out);
}

int main(void) {
  if (!infsim_kernels_cuda_available()) {
    fprintf(stderr, "no usable CUDA GPU: skipped\n");
    return 77;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fill_is_bit_identical),   cmocka_unit_test(test_describe),
      cmocka_unit_test(test_decode_matches_cpu),      cmocka_unit_test(test_decode_without_kv),
      cmocka_unit_test(test_holders_merge_to_one_shot),
      cmocka_unit_test(test_merge_matches_cpu),       cmocka_unit_test(test_prefill_matches_cpu),
      cmocka_unit_test(test_gemm_matches_cpu),        cmocka_unit_test(test_kv_copy_and_staged_copy),
      cmocka_unit_test(test_timing_is_ordered),       cmocka_unit_test(test_norm_rope_matches_cpu),
      cmocka_unit_test(test_decode_merges_remote_partials), cmocka_unit_test(test_decode_remote_counts),
      cmocka_unit_test(test_prefill_small_v14),
      cmocka_unit_test(test_prefill_small_v15), cmocka_unit_test(test_prefill_persist_v15),
      cmocka_unit_test(test_prefill_small_v16), cmocka_unit_test(test_prefill_small_v17),
      cmocka_unit_test(test_prefill_small_v18), cmocka_unit_test(test_prefill_small_fused),
      cmocka_unit_test(test_prefill_fused_auto_long), cmocka_unit_test(test_prefill_chunk_fused),
      cmocka_unit_test(test_prefill_nan_pool), cmocka_unit_test(test_prefill_rising_max),
  };
  /* INFSIM_GPU_TEST_ONLY=SUBSTRING runs the tests whose names contain it
   * (a compute-sanitizer pass over one path fits a short GPU call). */
  const char *only = getenv("INFSIM_GPU_TEST_ONLY");
  struct CMUnitTest run[sizeof tests / sizeof tests[0]];
  size_t n = 0;
  for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
    if (!only || strstr(tests[i].name, only)) run[n++] = tests[i];
  return _cmocka_run_group_tests("tests", run, n, setup, teardown);
}
