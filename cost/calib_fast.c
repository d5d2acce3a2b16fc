/*
** calib_fast.c: fast forms of fitted cost curves (calib.h), the
** simulator's hot path when it runs on calibrated curves.
**
** The fitted curves (calib_curves.c) are evaluated term by term: a decode
** attention curve has a shape-ratio term with a bend at every measured
** ratio (about 14) in each of its two pieces, and summing a run of decode
** steps in closed form means finding where the curve bends along the run,
** sorting, and evaluating it once per stretch. Done at every event that
** costs about four times what the whole roofline event costs. But along a
** decode run only the context changes; the request count is fixed. So for
** each request count R the curve is tabulated once as a function of the
** context alone: cut at every place it can bend (the context hinges, the
** ratio bends at context = bend x R, where the pieces A and B cross and
** where the larger one crosses 0), it is one straight line per segment,
** stored as (start, value at start, slope) from two evaluations of the
** fitted curve at the segment's ends. Then:
**   one step   the segment found last for this request count if it holds
**              the context, else a binary search; then one multiply-add;
**   a run      the context first + j x step crosses the segments in order;
**              each crossed segment adds count x its value at the mean
**              context of its steps (exact for a straight line), O(1) each;
**              a run inside one segment (most) is one multiply-add.
** The four GEMMs of a layer depend on the token count alone: their sum is
** kept per token count, computed by the fitted curves themselves on first
** use (so it is the same double, bit for bit).
**
** Invariants: a segment table of R, once built, has seg_count[R] >= 1
** segments with increasing starts, the first at context 0; the tables hold
** values of the fitted curve and nothing else (no extrapolation of their
** own: the last segment is a straight line because the fitted curve is one
** there). Memory for every table is reserved by infsim_calib_fast_new;
** evaluation never allocates. Not for use by two threads at once (tables
** fill on first use).
*/
#include "infsim/calib.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Most places a decode curve bends along the context at fixed requests:
 * two context hinges and the bends of the two ratio terms; between two of
 * those the pieces A and B cross at most once and the larger crosses 0 at
 * most once on each side, so at most four segments an interval. */
enum {
  MAX_KINKS = 2 + 2 * INFSIM_CALIB_MAX_RBENDS,
  MAX_SEGS = 4 * (MAX_KINKS + 1),
};

typedef struct {
  double c0;    /* context where the segment starts */
  double f0;    /* the curve there */
  double slope; /* ns per context token within the segment */
} segment;

struct infsim_calib_fast {
  infsim_calib_curve curve[INFSIM_CALIB_KERNELS];
  int decode_tabulated; /* 0: the decode curve is a lookup; evaluated directly */
  double *gemm_ns;      /* [GEMM_TOKENS + 1]; 0: not yet computed */
  int32_t *seg_count;   /* [DECODE_REQUESTS + 1]; 0: not yet built */
  int32_t *seg_hint;    /* [DECODE_REQUESTS + 1]: the segment last found */
  segment *segs;        /* MAX_SEGS per request count */
  infsim_calib_split_shape split; /* sm_count 0: no longest-CTA term */
};

infsim_calib_fast *infsim_calib_fast_new(const infsim_calib_curve curves[INFSIM_CALIB_KERNELS]) {
  infsim_calib_fast *f = calloc(1, sizeof *f);
  if (f == NULL) return NULL;
  memcpy(f->curve, curves, sizeof f->curve);
  f->decode_tabulated = curves[INFSIM_CALIB_DECODE_ATTN].n_knots == 0;
  /* calloc: untouched pages cost nothing, so only the counts in use take memory. */
  f->gemm_ns = calloc(INFSIM_CALIB_FAST_GEMM_TOKENS + 1, sizeof *f->gemm_ns);
  f->seg_count = calloc(INFSIM_CALIB_FAST_DECODE_REQUESTS + 1, sizeof *f->seg_count);
  f->seg_hint = calloc(INFSIM_CALIB_FAST_DECODE_REQUESTS + 1, sizeof *f->seg_hint);
  f->segs = calloc((size_t)(INFSIM_CALIB_FAST_DECODE_REQUESTS + 1) * MAX_SEGS, sizeof *f->segs);
  if (f->gemm_ns == NULL || f->seg_count == NULL || f->seg_hint == NULL || f->segs == NULL) {
    infsim_calib_fast_free(f);
    return NULL;
  }
  return f;
}

void infsim_calib_fast_set_split(infsim_calib_fast *f, const infsim_calib_split_shape *s) { f->split = *s; }

double infsim_calib_fast_longest_ns(infsim_calib_fast *f, int64_t requests, int64_t context_tokens,
                                    int64_t max_context_tokens, int graph) {
  int64_t w = infsim_calib_longest_cta_tokens(&f->split, requests, max_context_tokens, graph);
  if (w <= 0) return 0.0;
  const infsim_calib_curve *line = &f->curve[INFSIM_CALIB_LAYER_DECODE_LONG];
  double x[INFSIM_CALIB_VARS] = {0};
  x[INFSIM_CALIB_TOKENS] = (double)w;
  double t = infsim_calib_curve_eval(line, INFSIM_CALIB_LAYER_DECODE_LONG, x);
  double waits = infsim_calib_longest_cta_waits(&f->split, requests, max_context_tokens, graph);
  if (waits > 0 && requests > 1) {
    int64_t others = (context_tokens - max_context_tokens) / (requests - 1);
    int64_t wo = infsim_calib_cta_tokens(&f->split, requests, max_context_tokens, others > 0 ? others : 1, graph);
    x[INFSIM_CALIB_TOKENS] = (double)wo;
    t += waits * infsim_calib_curve_eval(line, INFSIM_CALIB_LAYER_DECODE_LONG, x);
  }
  /* The long request's CTAs do not walk alone from the start: while the
   * others' CTAs stream, each CTA gets its share of the bandwidth, and
   * only the tokens past that share are walked at one CTA's speed (the
   * line's slope) once the others are done. The batch less that tail
   * streams as the decode curve says. */
  int64_t shared = infsim_calib_longest_cta_shared_tokens(&f->split, requests, context_tokens, max_context_tokens,
                                                          graph);
  if (shared > 0 && shared < w) {
    int64_t splits = (max_context_tokens + w - 1) / w; /* each of its CTAs walks w of its tokens */
    int64_t tail_tokens = (w - shared) * splits;
    double bulk = infsim_calib_fast_decode_ns(f, requests, context_tokens - tail_tokens);
    x[INFSIM_CALIB_TOKENS] = (double)w;
    double tw = infsim_calib_curve_eval(line, INFSIM_CALIB_LAYER_DECODE_LONG, x);
    x[INFSIM_CALIB_TOKENS] = (double)shared;
    double ts = infsim_calib_curve_eval(line, INFSIM_CALIB_LAYER_DECODE_LONG, x);
    if (bulk + tw - ts > t) t = bulk + tw - ts;
  }
  return t;
}

void infsim_calib_fast_free(infsim_calib_fast *f) {
  if (f == NULL) return;
  free(f->gemm_ns);
  free(f->seg_count);
  free(f->seg_hint);
  free(f->segs);
  free(f);
}

double infsim_calib_fast_eval(const infsim_calib_fast *f, infsim_calib_kernel k, const double x[INFSIM_CALIB_VARS]) {
  return infsim_calib_curve_eval(&f->curve[k], k, x);
}

/* ---- GEMMs ---- */

static double gemm_sum(const infsim_calib_fast *f, int64_t tokens) {
  double x[INFSIM_CALIB_VARS] = {0};
  x[INFSIM_CALIB_TOKENS] = (double)tokens;
  double t = 0;
  for (int k = INFSIM_CALIB_GEMM_QKV; k <= INFSIM_CALIB_GEMM_DOWN; k++) t += infsim_calib_curve_eval(&f->curve[k], k, x);
  return t;
}

double infsim_calib_fast_gemm_layer_ns(infsim_calib_fast *f, int64_t tokens) {
  if (tokens <= 0) return 0;
  if (tokens > INFSIM_CALIB_FAST_GEMM_TOKENS) return gemm_sum(f, tokens);
  double t = f->gemm_ns[tokens];
  if (t > 0) return t;
  /* A sum that is truly 0 is recomputed every time: correct, only slower. */
  t = gemm_sum(f, tokens);
  f->gemm_ns[tokens] = t;
  return t;
}

/* ---- decode attention, tabulated per request count ---- */

static double decode_at(const infsim_calib_fast *f, double requests, double context) {
  double x[INFSIM_CALIB_VARS] = {0};
  x[INFSIM_CALIB_REQUESTS] = requests;
  x[INFSIM_CALIB_CONTEXT_TOKENS] = context;
  return infsim_calib_curve_eval(&f->curve[INFSIM_CALIB_DECODE_ATTN], INFSIM_CALIB_DECODE_ATTN, x);
}

static void decode_pieces(const infsim_calib_fast *f, double requests, double context, double *a, double *b) {
  double x[INFSIM_CALIB_VARS] = {0};
  x[INFSIM_CALIB_REQUESTS] = requests;
  x[INFSIM_CALIB_CONTEXT_TOKENS] = context;
  infsim_calib_curve_pieces(&f->curve[INFSIM_CALIB_DECODE_ATTN], INFSIM_CALIB_DECODE_ATTN, x, a, b);
}

static void sort_doubles(double *v, int n) { /* insertion sort: n <= MAX_SEGS */
  for (int i = 1; i < n; i++) {
    double key = v[i];
    int j = i - 1;
    for (; j >= 0 && v[j] > key; j--) v[j + 1] = v[j];
    v[j + 1] = key;
  }
}

/* A point of the interval's far side to fit a line through: its end, or,
 * for the last interval (no end), a point as far again from 0. */
static double probe_end(double lo, double hi) { return isfinite(hi) ? hi : 2 * lo + 1; }

/* Where the line through (lo, v_lo) and (e, v_e) crosses 0 strictly
 * inside (lo, hi); NAN when it does not. */
static double root_inside(double lo, double v_lo, double e, double v_e, double hi) {
  if ((v_lo < 0) == (v_e < 0) && isfinite(hi)) return NAN;
  if (v_lo == v_e) return NAN;
  double t = lo + (e - lo) * v_lo / (v_lo - v_e);
  return t > lo && t < hi ? t : NAN;
}

/* Relative difference below which two lines count as one: a few hundred
 * roundings of a double, far under what the tests allow (1e-9). */
#define SAME_LINE 1e-13

/* Whether segment b continues segment a's line: same slope, and a's line
 * reaches b's value at b's start. */
static int same_line(const segment *a, const segment *b) {
  double at_b = a->f0 + a->slope * (b->c0 - a->c0);
  double scale = fabs(b->f0) > 1 ? fabs(b->f0) : 1;
  double slope_scale = fabs(b->slope) > 1e-300 ? fabs(b->slope) : 1e-300;
  return fabs(at_b - b->f0) <= SAME_LINE * scale && fabs(a->slope - b->slope) <= SAME_LINE * slope_scale;
}

/* Cuts the decode curve at `requests` into straight segments (file comment). */
static int build_line(const infsim_calib_fast *f, double requests, segment *out) {
  const infsim_calib_curve *c = &f->curve[INFSIM_CALIB_DECODE_ATTN];
  double cut[MAX_SEGS + 1];
  int n = 0;
  cut[n++] = 0;
  if (c->hinge_var == INFSIM_CALIB_CONTEXT_TOKENS) {
    if (c->hinge_at > 0) cut[n++] = c->hinge_at;
    if (c->hinge2_at > c->hinge_at && c->hinge2_at > 0) cut[n++] = c->hinge2_at;
  }
  for (int i = 0; i < c->ratio.n_bends; i++) cut[n++] = c->ratio.bend[i] * requests;
  for (int i = 0; c->has_alt && i < c->alt_ratio.n_bends; i++) cut[n++] = c->alt_ratio.bend[i] * requests;
  sort_doubles(cut, n);
  int kinks = n;
  /* Between two kinks A and B are straight: add where they cross. */
  for (int i = 0; i < kinks && c->has_alt; i++) {
    double lo = cut[i], hi = i + 1 < kinks ? cut[i + 1] : INFINITY, e = probe_end(lo, hi);
    if (!(hi > lo)) continue;
    double a_lo, b_lo, a_e, b_e;
    decode_pieces(f, requests, lo, &a_lo, &b_lo);
    decode_pieces(f, requests, e, &a_e, &b_e);
    double t = root_inside(lo, a_lo - b_lo, e, a_e - b_e, hi);
    if (!isnan(t)) cut[n++] = t;
  }
  sort_doubles(cut, n);
  /* Between those max(A, B) is straight: add where it crosses 0 (the clamp). */
  int pieces = n;
  for (int i = 0; i < pieces; i++) {
    double lo = cut[i], hi = i + 1 < pieces ? cut[i + 1] : INFINITY, e = probe_end(lo, hi);
    if (!(hi > lo)) continue;
    double a_lo, b_lo, a_e, b_e;
    decode_pieces(f, requests, lo, &a_lo, &b_lo);
    decode_pieces(f, requests, e, &a_e, &b_e);
    double t = root_inside(lo, a_lo > b_lo ? a_lo : b_lo, e, a_e > b_e ? a_e : b_e, hi);
    if (!isnan(t)) cut[n++] = t;
  }
  assert(n <= MAX_SEGS);
  sort_doubles(cut, n);
  /* One segment per distinct cut; its line through the fitted curve at both
   * ends. A cut where the curve does not bend (a bend of the piece that is
   * not the larger one) joins its two segments, so that searches are
   * shorter: the joined line is the same up to rounding (SAME_LINE). */
  int segs = 0;
  for (int i = 0; i < n; i++) {
    if (i > 0 && !(cut[i] > cut[i - 1])) continue;
    int next = i + 1;
    while (next < n && !(cut[next] > cut[i])) next++;
    double lo = cut[i], hi = next < n ? cut[next] : INFINITY, e = probe_end(lo, hi);
    double v_lo = decode_at(f, requests, lo), v_e = decode_at(f, requests, e);
    segment cur = {lo, v_lo, (v_e - v_lo) / (e - lo)};
    if (segs > 0 && same_line(&out[segs - 1], &cur)) continue;
    out[segs++] = cur;
  }
  return segs;
}

/* The table of `requests`, built on first use; NULL when there is none
 * (a lookup decode curve, or more requests than the tables hold). */
static const segment *decode_line(infsim_calib_fast *f, int64_t requests, int *n) {
  if (!f->decode_tabulated || requests > INFSIM_CALIB_FAST_DECODE_REQUESTS) return NULL;
  segment *s = f->segs + (size_t)requests * MAX_SEGS;
  if (f->seg_count[requests] == 0) f->seg_count[requests] = build_line(f, (double)requests, s);
  *n = f->seg_count[requests];
  return s;
}

/* Index of the segment holding context c: the last one starting at or
 * before it. The segment found last time for this request count is tried
 * first: a run cut short at an arrival is priced again from the same
 * context (a binary search over its steps), and runs move forward. */
static int find_segment(const segment *s, int n, double c, int32_t *hint) {
  int h = *hint;
  if (s[h].c0 <= c && (h + 1 == n || c < s[h + 1].c0)) return h;
  int lo = 0, hi = n; /* s[lo].c0 <= c (or lo = 0), s[hi].c0 > c (or hi = n) */
  while (hi - lo > 1) {
    int mid = (lo + hi) / 2;
    if (s[mid].c0 <= c) lo = mid;
    else hi = mid;
  }
  *hint = lo;
  return lo;
}

static double segment_at(const segment *s, double c) {
  double t = s->f0 + s->slope * (c - s->c0);
  return t > 0 ? t : 0;
}

double infsim_calib_fast_decode_ns(infsim_calib_fast *f, int64_t requests, int64_t context_tokens) {
  if (requests <= 0) return 0;
  int n = 0;
  const segment *s = decode_line(f, requests, &n);
  if (s == NULL) return decode_at(f, (double)requests, (double)context_tokens);
  double c = (double)context_tokens;
  return segment_at(&s[find_segment(s, n, c, &f->seg_hint[requests])], c);
}

double infsim_calib_fast_decode_sum_ns(infsim_calib_fast *f, int64_t requests, int64_t first_context,
                                       int64_t context_step, int64_t steps) {
  if (steps <= 0 || requests <= 0) return 0;
  int n = 0;
  const segment *s = decode_line(f, requests, &n);
  if (s == NULL || context_step < 0)
    return infsim_calib_decode_sum(&f->curve[INFSIM_CALIB_DECODE_ATTN], (double)requests, (double)first_context,
                                   (double)context_step, steps);
  double first = (double)first_context, step = (double)context_step;
  int i = find_segment(s, n, first, &f->seg_hint[requests]);
  /* Most runs stay inside one segment: one straight line, no division. */
  double last = first + step * (double)(steps - 1);
  if (i + 1 == n || last < s[i + 1].c0) return (double)steps * segment_at(&s[i], 0.5 * (first + last));
  /* Steps j in [j, j_end) lie in segment i: context first + j step below
   * the next segment's start. */
  double sum = 0;
  int64_t j = 0;
  for (; j < steps; i++) {
    int64_t j_end = steps;
    if (i + 1 < n) {
      double t = ceil((s[i + 1].c0 - first) / step);
      if (t < (double)steps) j_end = (int64_t)t;
    }
    if (j_end > j) {
      double mean_c = first + step * 0.5 * (double)(j + j_end - 1);
      sum += (double)(j_end - j) * segment_at(&s[i], mean_c);
      j = j_end;
    }
  }
  return sum;
}
