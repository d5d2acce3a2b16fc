/*
** calib_split.c: the MA decode's split rule, for the longest-CTA term of
** calibrated decode pricing (calib.h).
**
** A replica of what decides the grid, kept to the kernel's and the
** executor's rules (kernels/ma_decode.cu launch(), cluster/model.c
** padded_decodes() and bucket_of()); the fitted layer_decode_long line
** turns its result into time, so a change of either rule shows as a
** layer_decode_long fit that no longer holds out (calibrate fit).
*/
#include <math.h>

#include "infsim/calib.h"

enum {
  TILE_TOKENS = 16,      /* tokens per warp tile */
  MIN_SPLIT_TILES = 8,   /* each split keeps >= 2 tiles per warp (4 warps) */
  MAX_SPLITS = 1024,
  CTAS_PER_SM = 2,       /* 3 pipeline stages: two CTAs fit an SM's shared memory */
  HEADS_PER_CTA = 16,    /* query heads of one KV head a CTA serves */
  GRAPH_MIN_CONTEXT = 256,
};

static int64_t padded_rows(int64_t n) {
  if (n > 32) return (n + 31) / 32 * 32;
  int64_t p = 1;
  while (p < n) p *= 2;
  return p;
}

static int64_t splits_for(const infsim_calib_split_shape *s, int64_t rows, int64_t grid_context) {
  int64_t group = s->kv_heads > 0 ? s->q_heads / s->kv_heads : 1;
  if (group < 1) group = 1;
  const int64_t cta_rows = rows * s->kv_heads * ((group + HEADS_PER_CTA - 1) / HEADS_PER_CTA);
  const int64_t slots = s->sm_count * CTAS_PER_SM;
  const int64_t tiles = (grid_context + TILE_TOKENS - 1) / TILE_TOKENS;
  int64_t cap = (tiles + MIN_SPLIT_TILES - 1) / MIN_SPLIT_TILES;
  const int64_t best = (int64_t)(16.0 * pow((double)grid_context / 4096.0, 0.4) + 0.5);
  if (cap > best) cap = best;
  if (cap > MAX_SPLITS) cap = MAX_SPLITS;
  if (cap < 1) cap = 1;
  if (cta_rows < slots) {
    int64_t sp = slots / cta_rows;
    return sp < cap ? sp : cap;
  }
  /* Several waves: the fewest splits that fill >= 95% of the waves' slots. */
  double best_fill = -1.0;
  int64_t splits = 1;
  for (int64_t sp = 1; sp <= cap; sp++) {
    int64_t ctas = cta_rows * sp, waves = (ctas + slots - 1) / slots;
    double fill = (double)ctas / (double)(waves * slots);
    if (fill > best_fill + 1e-9) {
      best_fill = fill;
      splits = sp;
    }
    if (fill >= 0.95 || ctas >= 8 * slots) break;
  }
  return splits;
}

/* sum over i in [0, n) of floor((a i + b) / m), for a, b >= 0 and m > 0,
 * in O(log m): the Euclid-like reduction of the floor-sum identity (the
 * terms with a >= m or b >= m taken out whole, then the lattice points
 * under the line counted from the other axis). */
static int64_t floor_sum(int64_t n, int64_t m, int64_t a, int64_t b) {
  int64_t sum = 0;
  while (n > 0) {
    if (a >= m) {
      sum += n * (n - 1) / 2 * (a / m);
      a %= m;
    }
    if (b >= m) {
      sum += n * (b / m);
      b %= m;
    }
    int64_t top = a * n + b; /* the line's value at i = n */
    if (top < m) break;
    /* Points (i, j), 1 <= j <= floor((a i + b) / m): counted by rows j,
     * each the i with a i + b >= j m, which is another floor sum with the
     * roles of a and m swapped. */
    n = top / m;
    b = top % m;
    int64_t t = m;
    m = a;
    a = t;
  }
  return sum;
}

/* The grid's CTA rows, splits and slots as the kernel launches them. */
static void grid_of(const infsim_calib_split_shape *s, int64_t requests, int64_t max_context_tokens, int graph,
                    int64_t *rows_per_request, int64_t *cta_rows, int64_t *splits, int64_t *slots) {
  int64_t rows = requests, grid_context = max_context_tokens;
  if (graph) {
    rows = padded_rows(requests);
    grid_context = GRAPH_MIN_CONTEXT;
    while (grid_context < max_context_tokens) grid_context *= 2;
  }
  int64_t group = s->kv_heads > 0 ? s->q_heads / s->kv_heads : 1;
  if (group < 1) group = 1;
  *rows_per_request = s->kv_heads * ((group + HEADS_PER_CTA - 1) / HEADS_PER_CTA);
  *cta_rows = rows * *rows_per_request;
  *splits = splits_for(s, rows, grid_context);
  *slots = s->sm_count * CTAS_PER_SM;
}

double infsim_calib_longest_cta_waits(const infsim_calib_split_shape *s, int64_t requests,
                                      int64_t max_context_tokens, int graph) {
  if (s == NULL || s->sm_count <= 0 || s->kv_heads <= 0 || requests <= 0 || max_context_tokens <= 0) return 0.0;
  int64_t per, cta_rows, splits, slots;
  grid_of(s, requests, max_context_tokens, graph, &per, &cta_rows, &splits, &slots);
  /* The grid is (CTA row, split), rows fastest: the long request's last
   * split starts once the CTAs before it have left their slots, a wave of
   * slots at a time. Its place among the requests is not in the
   * aggregates: the mean over all places. */
  return (double)floor_sum(requests, slots, per, (splits - 1) * cta_rows) / (double)requests;
}

int64_t infsim_calib_cta_tokens(const infsim_calib_split_shape *s, int64_t requests, int64_t max_context_tokens,
                                int64_t context_tokens, int graph) {
  if (s == NULL || s->sm_count <= 0 || s->kv_heads <= 0 || requests <= 0 || max_context_tokens <= 0 ||
      context_tokens <= 0)
    return 0;
  int64_t per, cta_rows, splits, slots;
  grid_of(s, requests, max_context_tokens, graph, &per, &cta_rows, &splits, &slots);
  int64_t tiles = (context_tokens + TILE_TOKENS - 1) / TILE_TOKENS;
  return (tiles + splits - 1) / splits * TILE_TOKENS;
}

int64_t infsim_calib_longest_cta_tokens(const infsim_calib_split_shape *s, int64_t requests,
                                        int64_t max_context_tokens, int graph) {
  return infsim_calib_cta_tokens(s, requests, max_context_tokens, max_context_tokens, graph);
}

/* sum over p in [0, n) of min(cap, max(0, b + a p)), for a > 0, cap >= 0:
 * the terms are 0, then an arithmetic run, then cap. */
static int64_t clipped_run_sum(int64_t n, int64_t a, int64_t b, int64_t cap) {
  int64_t lo = b > 0 ? 0 : (-b) / a + 1;                  /* first p with b + a p > 0 */
  int64_t hi = cap - b <= 0 ? 0 : (cap - b + a - 1) / a; /* first p with b + a p >= cap */
  if (lo > n) lo = n;
  if (hi > n) hi = n;
  if (hi < lo) hi = lo;
  int64_t k = hi - lo;
  return k * b + a * (lo + hi - 1) * k / 2 + (n - hi) * cap;
}

int64_t infsim_calib_longest_cta_shared_tokens(const infsim_calib_split_shape *s, int64_t requests,
                                               int64_t context_tokens, int64_t max_context_tokens, int graph) {
  if (s == NULL || s->sm_count <= 0 || s->kv_heads <= 0 || requests <= 1 || max_context_tokens <= 0 ||
      context_tokens <= max_context_tokens)
    return 0;
  int64_t per, cta_rows, splits, slots;
  grid_of(s, requests, max_context_tokens, graph, &per, &cta_rows, &splits, &slots);
  /* The batch's real CTAs (a padded row walks one token: not counted).
   * While the others' CTAs stream, the kernel is bandwidth-bound and each
   * resident CTA gets an equal share, so a CTA of the long request
   * advances as far as the others' CTA tokens per slot they hold beside
   * it: every slot but its own over several waves, their own CTAs' in one
   * wave (there the share is the others' mean context a split). One wave
   * was once left to the line alone; with the term the H100's decode-only
   * iterations of four end-to-end calls (4 loads each, LLaMA2-7B) read a
   * p95 of 3.5-7.1 % against 5.3-9.2 % (their batches of 5-8 requests run
   * one wave); the H200's eleven calls no worse but in one run, 4.9 to
   * 6.8 % at 30 % load (all priced with the shipped curves;
   * bench/fidelity/README.md). */
  const int64_t real = requests * per * splits, mine = per * splits, others_ctas = real - mine;
  const int64_t beside = others_ctas < slots - mine ? others_ctas : slots - mine;
  if (beside <= 0) return 0;
  const double share = (double)((context_tokens - max_context_tokens) * per) / (double)beside;
  /* It shares only what is left when its last split's CTAs get a slot:
   * after (splits - 1) cta_rows + p per + per - slots CTAs have left, p
   * its place among the requests, which the aggregates do not say: the
   * mean over the places, as for the waves before it. */
  const int64_t before = clipped_run_sum(requests, per, (splits - 1) * cta_rows + per - slots, others_ctas);
  const double done = (double)before / (double)requests / (double)others_ctas;
  const int64_t x = (int64_t)(share * (1.0 - done));
  const int64_t w = infsim_calib_cta_tokens(s, requests, max_context_tokens, max_context_tokens, graph);
  return x < w ? x : w;
}
