/*
** calib_curves.c: cost curves fitted to GPU measurements (calib.h).
**
** Reads the `fit` rows that `infsim calibrate fit` stored for one profile,
** model and TP degree, and serves them through the infsim_cost_curves
** vtable. Only SQLite is needed here: the curves are evaluated in closed
** form (piecewise linear, or a lookup of knots; calib.h), so the simulator
** does not link GSL for them. A run of decode steps is summed in closed
** form too (infsim_calib_decode_sum), so pricing k steps costs O(1). The
** vtable handed to the simulator serves the same curves through their fast
** forms (calib_fast.c: tables per token count and per request count), which
** agree with the evaluation here to rounding.
**
** Invariants: a curve never decreases in its kernel's work variable with
** the others held fixed, except GEMM lookups where the measured knots step
** down (the fitter keeps slopes >= 0, and loading rejects a negative one
** as a corrupt DB), and evaluates to 0 when its work aggregate is 0.
*/
#include "infsim/calib.h"

#include <assert.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
  VAR_BIT_TOKENS = 1u << INFSIM_CALIB_TOKENS,
  VAR_BIT_PAIRS = 1u << INFSIM_CALIB_PAIRS,
  VAR_BIT_REQUESTS = 1u << INFSIM_CALIB_REQUESTS,
  VAR_BIT_CONTEXT = 1u << INFSIM_CALIB_CONTEXT_TOKENS,
  VAR_BIT_PARTIALS = 1u << INFSIM_CALIB_PARTIALS,
  VAR_BIT_BYTES = 1u << INFSIM_CALIB_BYTES,
};

/* Which aggregates each kernel's curve uses. The hinge is where the curves
 * bend: GEMMs go from weight-bandwidth bound to FLOP bound as tokens grow;
 * attention from launch/occupancy bound to KV-bandwidth (decode) or FLOP
 * (prefill) bound; copies from latency bound to bandwidth bound. The ratio
 * carries how the work is spread over requests, which the totals do not:
 * one request's walk over its context (decode), a query tile's walk over
 * its prefix (prefill), one request's partials merged in sequence (merge)
 * bound the time when there are too few of them to fill the GPU. GEMMs and
 * copies may become a lookup of the measured points where no piecewise
 * line follows them: the GEMM library's choice of algorithm makes GEMM time
 * step up and down with the token count, and host staging jumps where the
 * driver changes how it pins memory. */
#define K(name, mask, work, hinge, num, den, mono, lookup, rknots) {name, mask, work, hinge, num, den, mono, lookup, rknots}
static const infsim_calib_kernel_info k_kernels[INFSIM_CALIB_KERNELS] = {
    [INFSIM_CALIB_GEMM_QKV] = K("gemm_qkv", VAR_BIT_TOKENS, INFSIM_CALIB_TOKENS, INFSIM_CALIB_TOKENS, -1, -1,
                                INFSIM_CALIB_TOKENS, 1, 0),
    [INFSIM_CALIB_GEMM_O] = K("gemm_o", VAR_BIT_TOKENS, INFSIM_CALIB_TOKENS, INFSIM_CALIB_TOKENS, -1, -1,
                              INFSIM_CALIB_TOKENS, 1, 0),
    [INFSIM_CALIB_GEMM_GATEUP] = K("gemm_gateup", VAR_BIT_TOKENS, INFSIM_CALIB_TOKENS, INFSIM_CALIB_TOKENS, -1, -1,
                                   INFSIM_CALIB_TOKENS, 1, 0),
    [INFSIM_CALIB_GEMM_DOWN] = K("gemm_down", VAR_BIT_TOKENS, INFSIM_CALIB_TOKENS, INFSIM_CALIB_TOKENS, -1, -1,
                                 INFSIM_CALIB_TOKENS, 1, 0),
    [INFSIM_CALIB_PREFILL_ATTN] = K("prefill_attn", VAR_BIT_TOKENS | VAR_BIT_PAIRS, INFSIM_CALIB_TOKENS,
                                    INFSIM_CALIB_PAIRS, INFSIM_CALIB_PAIRS, INFSIM_CALIB_TOKENS, INFSIM_CALIB_PAIRS, 0, 0),
    [INFSIM_CALIB_DECODE_ATTN] = K("decode_attn", VAR_BIT_REQUESTS | VAR_BIT_CONTEXT, INFSIM_CALIB_REQUESTS,
                                   INFSIM_CALIB_CONTEXT_TOKENS, INFSIM_CALIB_CONTEXT_TOKENS, INFSIM_CALIB_REQUESTS,
                                   INFSIM_CALIB_CONTEXT_TOKENS, 0, 1),
    [INFSIM_CALIB_MERGE] = K("merge", VAR_BIT_REQUESTS | VAR_BIT_PARTIALS, INFSIM_CALIB_PARTIALS,
                             INFSIM_CALIB_PARTIALS, INFSIM_CALIB_PARTIALS, INFSIM_CALIB_REQUESTS,
                             INFSIM_CALIB_PARTIALS, 0, 0),
    [INFSIM_CALIB_KV_COPY] = K("kv_copy", VAR_BIT_BYTES, INFSIM_CALIB_BYTES, INFSIM_CALIB_BYTES, -1, -1,
                               INFSIM_CALIB_BYTES, 1, 0),
    [INFSIM_CALIB_HOST_COPY] = K("host_copy", VAR_BIT_BYTES, INFSIM_CALIB_BYTES, INFSIM_CALIB_BYTES, -1, -1,
                                 INFSIM_CALIB_BYTES, 1, 0),
    /* The rest of a layer beyond its kernels: element-wise work grows with
     * the tokens (prefill) or the rows (decode: one per request); the
     * decode rest is taken as independent of the context, so that a run of
     * decode steps keeps its closed form. */
    [INFSIM_CALIB_LAYER_PREFILL] = K("layer_prefill", VAR_BIT_TOKENS | VAR_BIT_PAIRS, INFSIM_CALIB_TOKENS,
                                     INFSIM_CALIB_TOKENS, -1, -1, INFSIM_CALIB_TOKENS, 0, 0),
    [INFSIM_CALIB_LAYER_DECODE] = K("layer_decode", VAR_BIT_REQUESTS, INFSIM_CALIB_REQUESTS, INFSIM_CALIB_REQUESTS,
                                    -1, -1, INFSIM_CALIB_REQUESTS, 0, 0),
    /* A line in the tokens the longest request's CTA walks (calib_fit
     * turns the measured layer into its attention, the rows' longest
     * context into those tokens). */
    [INFSIM_CALIB_LAYER_DECODE_LONG] = K("layer_decode_long", VAR_BIT_TOKENS, INFSIM_CALIB_TOKENS,
                                         INFSIM_CALIB_TOKENS, -1, -1, INFSIM_CALIB_TOKENS, 0, 0),
};
#undef K


static const char *const k_var_names[INFSIM_CALIB_VARS] = {
    "tokens", "pairs", "requests", "context_tokens", "partials", "bytes",
};

const infsim_calib_kernel_info *infsim_calib_kernel_get(infsim_calib_kernel k) {
  assert(k >= 0 && k < INFSIM_CALIB_KERNELS);
  return &k_kernels[k];
}

int infsim_calib_kernel_from_name(const char *name) {
  for (int k = 0; k < INFSIM_CALIB_KERNELS; k++)
    if (strcmp(k_kernels[k].name, name) == 0) return k;
  return -1;
}

const char *infsim_calib_var_name(infsim_calib_var v) {
  assert(v >= 0 && v < INFSIM_CALIB_VARS);
  return k_var_names[v];
}

/* min and max of finite values, inlined (libm's fmin/fmax are calls that
 * also handle NaN, which never reaches a curve: loading rejects it). */
static inline double min2(double a, double b) { return a < b ? a : b; }
static inline double max2(double a, double b) { return a > b ? a : b; }

/* Lookup: linear between knots, flat below the first, the last segment's
 * slope (>= 0) above the last. */
static double eval_knots(const infsim_calib_curve *c, double x) {
  int n = c->n_knots;
  if (n == 1 || x <= c->knot_x[0]) return c->knot_t[0];
  int lo = 0, hi = n - 1; /* knot_x[lo] < x; find the segment [lo, lo + 1] holding x */
  if (x >= c->knot_x[n - 1]) {
    lo = n - 2;
  } else {
    while (hi - lo > 1) {
      int mid = (lo + hi) / 2;
      if (c->knot_x[mid] < x) lo = mid;
      else hi = mid;
    }
  }
  double x0 = c->knot_x[lo], x1 = c->knot_x[lo + 1], t0 = c->knot_t[lo], t1 = c->knot_t[lo + 1];
  if (x >= x1) return t1 + max2((t1 - t0) / (x1 - x0), 0) * (x - x1);
  /* Exact on flat stretches and at knots, so pooled runs stay flat. */
  if (t0 == t1) return t0;
  return t0 + (t1 - t0) * ((x - x0) / (x1 - x0));
}

static double shape_ratio(const infsim_calib_kernel_info *info, const double *x) {
  if (info->ratio_num < 0 || !(x[info->ratio_den] > 0)) return 0;
  return x[info->ratio_num] / x[info->ratio_den];
}

double infsim_calib_ratio_eval(const infsim_calib_ratio_term *g, double r, double den) {
  double s = g->cap > 0 ? min2(den, g->cap) : 1;
  int n = g->n_bends;
  if (n == 0) return s * g->slope[0] * r;
  double t = g->slope[0] * min2(r, g->bend[0]);
  for (int k = 1; k < n && r > g->bend[k - 1]; k++)
    t += g->slope[k] * min2(r - g->bend[k - 1], g->bend[k] - g->bend[k - 1]);
  if (r > g->bend[n - 1]) t += g->slope[n] * (r - g->bend[n - 1]);
  return s * t;
}

/* The additive piece A. */
static double eval_main(const infsim_calib_curve *c, const infsim_calib_kernel_info *info, const double *x, double r) {
  double t = c->c_const;
  for (int v = 0; v < INFSIM_CALIB_VARS; v++) {
    if (!(info->var_mask & (1u << v))) continue;
    if (v == c->hinge_var) {
      double above = max2(x[v] - c->hinge_at, 0);
      if (c->hinge2_at > c->hinge_at) {
        t += c->c_above2 * max2(x[v] - c->hinge2_at, 0);
        above = min2(above, c->hinge2_at - c->hinge_at);
      }
      t += c->c_var[v] * min2(x[v], c->hinge_at) + c->c_above * above;
    } else {
      t += c->c_var[v] * x[v];
    }
  }
  double den = info->ratio_num >= 0 ? x[info->ratio_den] : 0;
  if (c->tail_cap > 0) t += c->c_tail * r * min2(den, c->tail_cap);
  if (c->den_hinge_at > 0) t += c->c_den_above * max2(den - c->den_hinge_at, 0);
  if (c->head_cap > 0) t += c->c_head * r * max2(c->head_cap - den, 0);
  return t + infsim_calib_ratio_eval(&c->ratio, r, den);
}

/* The straight piece B. */
static double eval_alt(const infsim_calib_curve *c, const infsim_calib_kernel_info *info, const double *x, double r) {
  double t = c->alt_const + infsim_calib_ratio_eval(&c->alt_ratio, r, info->ratio_num >= 0 ? x[info->ratio_den] : 0);
  for (int v = 0; v < INFSIM_CALIB_VARS; v++)
    if (info->var_mask & (1u << v)) t += c->alt_var[v] * x[v];
  return t;
}

void infsim_calib_curve_pieces(const infsim_calib_curve *c, infsim_calib_kernel k,
                               const double x[INFSIM_CALIB_VARS], double *a, double *b) {
  const infsim_calib_kernel_info *info = infsim_calib_kernel_get(k);
  assert(c->n_knots == 0);
  double r = shape_ratio(info, x);
  *a = eval_main(c, info, x, r);
  *b = c->has_alt ? eval_alt(c, info, x, r) : -INFINITY;
}

double infsim_calib_curve_floor(const infsim_calib_curve *c, infsim_calib_kernel k,
                                const double least[INFSIM_CALIB_VARS], double ratio_least) {
  assert(c->n_knots == 0);
  const infsim_calib_kernel_info *info = infsim_calib_kernel_get(k);
  /* Every term but the constants and the head grows with each variable and
   * with the ratio (slopes and caps >= 0, which loading checks first), and
   * the head is >= 0, so the curve with the head left out, at the corner,
   * is nowhere undercut. */
  infsim_calib_curve headless = *c;
  headless.c_head = 0;
  double a = eval_main(&headless, info, least, ratio_least);
  return c->has_alt ? max2(a, eval_alt(c, info, least, ratio_least)) : a;
}

double infsim_calib_curve_eval(const infsim_calib_curve *c, infsim_calib_kernel k,
                               const double x[INFSIM_CALIB_VARS]) {
  const infsim_calib_kernel_info *info = infsim_calib_kernel_get(k);
  if (x[info->work_var] <= 0) return 0;
  if (c->n_knots > 0) {
    double t = eval_knots(c, x[info->hinge_var]);
    return t > 0 ? t : 0;
  }
  double r = shape_ratio(info, x);
  double t = eval_main(c, info, x, r);
  if (c->has_alt) t = max2(t, eval_alt(c, info, x, r));
  return t > 0 ? t : 0;
}

/* Adds p to the breakpoints when it lies strictly inside (0, last). */
static void add_break(double *b, int *n, double p, double last) {
  if (p > 0 && p < last && isfinite(p)) b[(*n)++] = p;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double infsim_calib_decode_sum(const infsim_calib_curve *c, double requests, double first_context,
                               double context_step, int64_t steps) {
  const infsim_calib_kernel k = INFSIM_CALIB_DECODE_ATTN;
  const infsim_calib_kernel_info *info = infsim_calib_kernel_get(k);
  if (steps <= 0 || !(requests > 0)) return 0;
  double x[INFSIM_CALIB_VARS] = {0};
  x[INFSIM_CALIB_REQUESTS] = requests;
  if (c->n_knots > 0) { /* not a decode form; summed step by step */
    double sum = 0;
    for (int64_t j = 0; j < steps; j++) {
      x[INFSIM_CALIB_CONTEXT_TOKENS] = first_context + (double)j * context_step;
      sum += infsim_calib_curve_eval(c, k, x);
    }
    return sum;
  }
  /* Along the run, context = first + j step and r = context / requests are
   * linear in j; the curve bends where they cross a hinge, where A and B
   * cross, and where the larger of them crosses 0 (the clamp). */
  double last = (double)(steps - 1);
  double b[8 * (INFSIM_CALIB_MAX_RBENDS + 4)];
  int nb = 0;
  if (context_step > 0) {
    if (c->hinge_var == INFSIM_CALIB_CONTEXT_TOKENS) {
      add_break(b, &nb, (c->hinge_at - first_context) / context_step, last);
      if (c->hinge2_at > c->hinge_at) add_break(b, &nb, (c->hinge2_at - first_context) / context_step, last);
    }
    for (int i = 0; i < c->ratio.n_bends; i++)
      add_break(b, &nb, (c->ratio.bend[i] * requests - first_context) / context_step, last);
    for (int i = 0; c->has_alt && i < c->alt_ratio.n_bends; i++)
      add_break(b, &nb, (c->alt_ratio.bend[i] * requests - first_context) / context_step, last);
  }
  qsort(b, (size_t)nb, sizeof b[0], cmp_double);
  /* Within each stretch between those, A and B are linear in j. */
  double seg[2 * INFSIM_CALIB_MAX_RBENDS + 4]; /* 0, the bends, last */
  int ns = 0;
  seg[ns++] = 0;
  for (int i = 0; i < nb; i++) seg[ns++] = b[i];
  seg[ns++] = last;
  for (int i = 0; i + 1 < ns && nb + 3 <= (int)(sizeof b / sizeof b[0]); i++) {
    double p = seg[i], q = seg[i + 1];
    if (!(q > p)) continue;
    double xp[INFSIM_CALIB_VARS] = {0}, xq[INFSIM_CALIB_VARS] = {0};
    xp[INFSIM_CALIB_REQUESTS] = xq[INFSIM_CALIB_REQUESTS] = requests;
    xp[INFSIM_CALIB_CONTEXT_TOKENS] = first_context + p * context_step;
    xq[INFSIM_CALIB_CONTEXT_TOKENS] = first_context + q * context_step;
    double rp = shape_ratio(info, xp), rq = shape_ratio(info, xq);
    double ap = eval_main(c, info, xp, rp), aq = eval_main(c, info, xq, rq);
    double vals[3][2] = {{ap, aq}, {0, 0}, {0, 0}};
    int nv = 1;
    if (c->has_alt) {
      double bp = eval_alt(c, info, xp, rp), bq = eval_alt(c, info, xq, rq);
      vals[nv][0] = ap - bp, vals[nv][1] = aq - bq, nv++;
      vals[nv][0] = bp, vals[nv][1] = bq, nv++;
    }
    for (int v = 0; v < nv; v++)
      if ((vals[v][0] < 0) != (vals[v][1] < 0) && vals[v][0] != vals[v][1])
        add_break(b, &nb, p + (q - p) * vals[v][0] / (vals[v][0] - vals[v][1]), last);
  }
  qsort(b, (size_t)nb, sizeof b[0], cmp_double);
  /* Integers j in [lo, hi] between consecutive breaks: the curve is linear
   * there, so their sum is their count times its value at the middle. */
  double sum = 0;
  int64_t lo = 0;
  for (int i = 0; i <= nb; i++) {
    int64_t hi = i < nb ? (int64_t)ceil(b[i]) - 1 : steps - 1;
    if (hi >= lo) {
      x[INFSIM_CALIB_CONTEXT_TOKENS] = first_context + 0.5 * (double)(lo + hi) * context_step;
      sum += (double)(hi - lo + 1) * infsim_calib_curve_eval(c, k, x);
      lo = hi + 1;
    }
  }
  return sum;
}

/* ---- the vtable: the fast forms (calib_fast.c) ---- */

static double eval2(void *self, infsim_calib_kernel k, infsim_calib_var va, double a, infsim_calib_var vb,
                    double b) {
  double x[INFSIM_CALIB_VARS] = {0};
  x[va] = a;
  x[vb] = b;
  return infsim_calib_fast_eval(self, k, x);
}

static double calib_gemm_layer_ns(void *self, int64_t tokens) {
  return infsim_calib_fast_gemm_layer_ns(self, tokens);
}

static double calib_prefill_attn_layer_ns(void *self, int64_t tokens, int64_t pairs) {
  return eval2(self, INFSIM_CALIB_PREFILL_ATTN, INFSIM_CALIB_TOKENS, (double)tokens, INFSIM_CALIB_PAIRS,
               (double)pairs);
}

static double calib_decode_attn_layer_ns(void *self, int64_t requests, int64_t context_tokens) {
  return infsim_calib_fast_decode_ns(self, requests, context_tokens);
}

static double calib_merge_layer_ns(void *self, int64_t requests, int64_t partials) {
  return eval2(self, INFSIM_CALIB_MERGE, INFSIM_CALIB_REQUESTS, (double)requests, INFSIM_CALIB_PARTIALS,
               (double)partials);
}

static double calib_kv_copy_ns(void *self, int64_t bytes) {
  return eval2(self, INFSIM_CALIB_KV_COPY, INFSIM_CALIB_BYTES, (double)bytes, INFSIM_CALIB_BYTES,
               (double)bytes);
}

static double calib_decode_attn_sum_layer_ns(void *self, int64_t requests, int64_t first_context,
                                             int64_t context_step, int64_t steps) {
  return infsim_calib_fast_decode_sum_ns(self, requests, first_context, context_step, steps);
}

/* What a layer takes beyond its kernel curves (profiles with whole-layer
 * measurements only): the prefill rest at the prompt tokens, plus the
 * decode rest at the decoding requests. */
static double calib_layer_rest_ns(void *self, int64_t prefill_tokens, int64_t prefill_pairs, int64_t decode_requests) {
  double t = 0.0;
  if (prefill_tokens > 0)
    t += eval2(self, INFSIM_CALIB_LAYER_PREFILL, INFSIM_CALIB_TOKENS, (double)prefill_tokens, INFSIM_CALIB_PAIRS,
               (double)prefill_pairs);
  if (decode_requests > 0)
    t += eval2(self, INFSIM_CALIB_LAYER_DECODE, INFSIM_CALIB_REQUESTS, (double)decode_requests,
               INFSIM_CALIB_REQUESTS, (double)decode_requests);
  return t;
}

static double calib_decode_longest_layer_ns(void *self, int64_t requests, int64_t context_tokens,
                                            int64_t max_context_tokens, bool graph) {
  return infsim_calib_fast_longest_ns(self, requests, context_tokens, max_context_tokens, graph ? 1 : 0);
}

static void calib_destroy(void *self) { infsim_calib_fast_free(self); }

/* ---- curves in the DB ---- */

int infsim_calib_knots_format(const infsim_calib_curve *c, char *out, size_t out_bytes) {
  size_t used = 0;
  if (out_bytes == 0) return 0;
  out[0] = '\0';
  for (int i = 0; i < c->n_knots; i++) {
    int w = snprintf(out + used, out_bytes - used, "%s%.17g %.17g", i ? " " : "", c->knot_x[i], c->knot_t[i]);
    if (w < 0 || (size_t)w >= out_bytes - used) return 0;
    used += (size_t)w;
  }
  return 1;
}

static int parse_knots(const char *text, infsim_calib_curve *c) {
  c->n_knots = 0;
  const char *p = text ? text : "";
  for (;;) {
    while (*p == ' ') p++;
    if (*p == '\0') return 1;
    if (c->n_knots == INFSIM_CALIB_MAX_KNOTS) return 0;
    char *end = NULL;
    double x = strtod(p, &end);
    if (end == p) return 0;
    p = end;
    double t = strtod(p, &end);
    if (end == p || !isfinite(x) || !isfinite(t) || t < 0) return 0;
    if (c->n_knots > 0 && !(x > c->knot_x[c->n_knots - 1])) return 0;
    c->knot_x[c->n_knots] = x;
    c->knot_t[c->n_knots] = t;
    c->n_knots++;
    p = end;
  }
}

static int slope_ok(double v) { return v >= 0 && isfinite(v); }

int infsim_calib_ratio_format(const infsim_calib_ratio_term *g, char *out, size_t out_bytes) {
  int w = snprintf(out, out_bytes, "%.17g %.17g", g->cap, g->slope[0]);
  if (w < 0 || (size_t)w >= out_bytes) return 0;
  size_t used = (size_t)w;
  for (int k = 0; k < g->n_bends; k++) {
    w = snprintf(out + used, out_bytes - used, " %.17g %.17g", g->bend[k], g->slope[k + 1]);
    if (w < 0 || (size_t)w >= out_bytes - used) return 0;
    used += (size_t)w;
  }
  return 1;
}

/* "slope bend slope ... slope": bends increasing and > 0, slopes >= 0. */
static int parse_ratio(const char *text, infsim_calib_ratio_term *g) {
  memset(g, 0, sizeof *g);
  const char *p = text ? text : "";
  char *end = NULL;
  g->cap = strtod(p, &end);
  if (end == p || !slope_ok(g->cap)) return 0;
  p = end;
  g->slope[0] = strtod(p, &end);
  if (end == p || !slope_ok(g->slope[0])) return 0;
  for (p = end;;) {
    while (*p == ' ') p++;
    if (*p == '\0') return 1;
    if (g->n_bends == INFSIM_CALIB_MAX_RBENDS) return 0;
    double bend = strtod(p, &end);
    if (end == p || !(bend > 0) || !isfinite(bend)) return 0;
    if (g->n_bends > 0 && !(bend > g->bend[g->n_bends - 1])) return 0;
    p = end;
    double slope = strtod(p, &end);
    if (end == p || !slope_ok(slope)) return 0;
    g->bend[g->n_bends++] = bend;
    g->slope[g->n_bends] = slope;
    p = end;
  }
}

/* The first bad column of a fit row, for the message. */
typedef struct {
  struct sqlite3_stmt *q;
  char *why;
  size_t why_bytes;
  int bad;
} row_check;

/* Notes column i as bad (when ok is 0 and none was before): "NAME VALUE: want". */
static int note(row_check *rc, int i, int ok, const char *want) {
  if (ok || rc->bad) return ok;
  rc->bad = 1;
  if (rc->why == NULL || rc->why_bytes == 0) return 0;
  const char *name = sqlite3_column_name(rc->q, i);
  int type = sqlite3_column_type(rc->q, i);
  if (type == SQLITE_FLOAT || type == SQLITE_INTEGER)
    snprintf(rc->why, rc->why_bytes, "%s %.10g: %s", name ? name : "?", sqlite3_column_double(rc->q, i), want);
  else
    snprintf(rc->why, rc->why_bytes, "%s '%.60s': %s", name ? name : "?",
             type == SQLITE_NULL ? "NULL" : (const char *)sqlite3_column_text(rc->q, i), want);
  return 0;
}

static const char k_want_slope[] = "want a finite number >= 0";
static const char k_want_finite[] = "want a finite number";

int infsim_calib_curve_from_row(struct sqlite3_stmt *q, int col, infsim_calib_curve *c, char *why,
                                size_t why_bytes) {
  memset(c, 0, sizeof *c);
  row_check rc = {q, why, why_bytes, 0};
  if (why != NULL && why_bytes > 0) why[0] = '\0';
  c->c_const = sqlite3_column_double(q, col);
  int ok = note(&rc, col, isfinite(c->c_const), k_want_finite);
  for (int v = 0; v < INFSIM_CALIB_VARS; v++) {
    c->c_var[v] = sqlite3_column_double(q, col + 1 + v);
    ok &= note(&rc, col + 1 + v, slope_ok(c->c_var[v]), k_want_slope);
  }
  int i = col + 1 + INFSIM_CALIB_VARS;
  const char *hv = (const char *)sqlite3_column_text(q, i);
  c->hinge_var = -1;
  for (int v = 0; hv && v < INFSIM_CALIB_VARS; v++)
    if (strcmp(hv, k_var_names[v]) == 0) c->hinge_var = v;
  ok &= note(&rc, i, hv == NULL || hv[0] == '\0' || c->hinge_var >= 0, "want a variable name or ''");
  i++;
  double *hinge[4] = {&c->hinge_at, &c->c_above, &c->hinge2_at, &c->c_above2};
  for (int h = 0; h < 4; h++, i++) {
    *hinge[h] = sqlite3_column_double(q, i);
    /* even: a bend's position, any finite number; odd: the slope past it */
    ok &= h % 2 == 0 ? note(&rc, i, isfinite(*hinge[h]), k_want_finite)
                     : note(&rc, i, slope_ok(*hinge[h]), k_want_slope);
  }
  c->has_alt = sqlite3_column_int(q, i++) != 0;
  c->alt_const = sqlite3_column_double(q, i);
  ok &= note(&rc, i, isfinite(c->alt_const), k_want_finite);
  i++;
  for (int v = 0; v < INFSIM_CALIB_VARS; v++, i++) {
    c->alt_var[v] = sqlite3_column_double(q, i);
    ok &= note(&rc, i, slope_ok(c->alt_var[v]), k_want_slope);
  }
  static const char want_ratio[] = "want 'cap slope [bend slope]...', bends increasing and > 0, the rest >= 0";
  ok &= note(&rc, i, parse_ratio((const char *)sqlite3_column_text(q, i), &c->ratio), want_ratio);
  i++;
  ok &= note(&rc, i, parse_ratio((const char *)sqlite3_column_text(q, i), &c->alt_ratio), want_ratio);
  i++;
  double *terms[6] = {&c->tail_cap, &c->c_tail, &c->den_hinge_at, &c->c_den_above, &c->head_cap, &c->c_head};
  for (int t = 0; t < 6; t++, i++) {
    *terms[t] = sqlite3_column_double(q, i);
    ok &= note(&rc, i, slope_ok(*terms[t]), k_want_slope);
  }
  ok &= note(&rc, i, parse_knots((const char *)sqlite3_column_text(q, i), c),
             "want 'x t x t ...', x increasing, t >= 0, all finite");
  i++;
  assert(i == col + INFSIM_CALIB_CURVE_NCOLS);
  return ok;
}

/* ---- reading the DB ---- */

static infsim_status db_fail(sqlite3 *db, const char *db_path, infsim_error *err) {
  return infsim_fail(err, INFSIM_EINPUT, "%s: %s", db_path, sqlite3_errmsg(db));
}

/* Kernels a calibrated profile must have for the simulator to use it. */
static int kernel_required(int k) {
  return k != INFSIM_CALIB_HOST_COPY && k != INFSIM_CALIB_LAYER_PREFILL && k != INFSIM_CALIB_LAYER_DECODE &&
         k != INFSIM_CALIB_LAYER_DECODE_LONG;
}

/* The multiprocessors recorded with a profile's layer_decode_long rows (0: none). */
static infsim_status long_sm_count(sqlite3 *db, const char *db_path, const char *profile,
                                   const infsim_model_shape *model, int64_t tp, int64_t *sm, infsim_error *err) {
  static const char sql[] = "SELECT MAX(m.partials) FROM measurement m JOIN profile p ON p.id = m.profile_id"
                            " WHERE p.name = ?1 AND p.model = ?2 AND m.tp = ?3 AND m.kernel = 'layer_decode_long'";
  sqlite3_stmt *q = NULL;
  *sm = 0;
  if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK) return db_fail(db, db_path, err);
  sqlite3_bind_text(q, 1, profile, -1, SQLITE_STATIC);
  sqlite3_bind_text(q, 2, model->name, -1, SQLITE_STATIC);
  sqlite3_bind_int64(q, 3, tp);
  int rc = sqlite3_step(q);
  if (rc == SQLITE_ROW && sqlite3_column_type(q, 0) == SQLITE_INTEGER) *sm = sqlite3_column_int64(q, 0);
  infsim_status st = rc == SQLITE_ROW || rc == SQLITE_DONE ? INFSIM_OK : db_fail(db, db_path, err);
  sqlite3_finalize(q);
  return st;
}

/* Whether the DB has table `name` (the optional tables written by the
 * end-to-end fits, clock_fit and iteration_fit, not by `calibrate fit`),
 * and a statement for its row of a profile, model and TP degree. *q is
 * NULL when the table is absent. */
static infsim_status optional_fit_row(sqlite3 *db, const char *db_path, const char *name, const char *sql,
                                      const char *profile, const infsim_model_shape *model, int64_t tp,
                                      sqlite3_stmt **q, infsim_error *err) {
  *q = NULL;
  sqlite3_stmt *t = NULL;
  if (sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1", -1, &t, NULL) !=
      SQLITE_OK) {
    sqlite3_finalize(t);
    return db_fail(db, db_path, err);
  }
  sqlite3_bind_text(t, 1, name, -1, SQLITE_STATIC);
  if (sqlite3_step(t) != SQLITE_ROW) {
    sqlite3_finalize(t);
    return db_fail(db, db_path, err);
  }
  int have = sqlite3_column_int(t, 0);
  sqlite3_finalize(t);
  if (!have) return INFSIM_OK;
  if (sqlite3_prepare_v2(db, sql, -1, q, NULL) != SQLITE_OK) return db_fail(db, db_path, err);
  sqlite3_bind_text(*q, 1, profile, -1, SQLITE_STATIC);
  sqlite3_bind_text(*q, 2, model->name, -1, SQLITE_STATIC);
  sqlite3_bind_int64(*q, 3, tp);
  return INFSIM_OK;
}

/* The clock-after-idle fit of a profile, model and TP degree (tau_s 0:
 * none; the term stays off). Table clock_fit is optional: a DB without
 * it (or without a row) has no fit. Written by calibrate/fit-clock.py
 * from end-to-end runs' iterations, not by `calibrate fit`. */
static infsim_status clock_fit(sqlite3 *db, const char *db_path, const char *profile, const infsim_model_shape *model,
                               int64_t tp, double *tau_s, double *gain, infsim_error *err) {
  static const char sql[] = "SELECT c.tau_s, c.idle_gain FROM clock_fit c JOIN profile p ON p.id = c.profile_id"
                            " WHERE p.name = ?1 AND p.model = ?2 AND c.tp = ?3";
  sqlite3_stmt *q = NULL;
  *tau_s = *gain = 0.0;
  infsim_status found = optional_fit_row(db, db_path, "clock_fit", sql, profile, model, tp, &q, err);
  if (found != INFSIM_OK || !q) return found;
  int rc = sqlite3_step(q);
  infsim_status st = INFSIM_OK;
  if (rc == SQLITE_ROW) {
    double t = sqlite3_column_double(q, 0), g = sqlite3_column_double(q, 1);
    /* gain 1 would price a prefill after idle at nothing */
    if (!(t > 0.0 && t < 1e6) || !(g >= 0.0 && g < 1.0))
      st = infsim_fail(err, INFSIM_EINPUT, "%s: clock_fit: %s: tau_s %g, idle_gain %g: want 0 < tau_s < 1e6 and 0 <="
                       " idle_gain < 1", db_path, profile, t, g);
    else
      *tau_s = t, *gain = g;
  } else if (rc != SQLITE_DONE) {
    st = db_fail(db, db_path, err);
  }
  sqlite3_finalize(q);
  return st;
}

/* The serving loop's measured time per iteration beyond the priced
 * forward, of a profile, model and TP degree (*have 0: none; the config's
 * cost.iteration_overhead_us stands). Table iteration_fit is optional, as
 * clock_fit is: written by calibrate/fit-overhead.py from end-to-end runs'
 * decode-only rows, not by `calibrate fit`. */
static infsim_status iteration_fit(sqlite3 *db, const char *db_path, const char *profile,
                                   const infsim_model_shape *model, int64_t tp, int *have, double *overhead_us,
                                   infsim_error *err) {
  static const char sql[] = "SELECT i.overhead_us FROM iteration_fit i JOIN profile p ON p.id = i.profile_id"
                            " WHERE p.name = ?1 AND p.model = ?2 AND i.tp = ?3";
  sqlite3_stmt *q = NULL;
  *have = 0;
  *overhead_us = 0.0;
  infsim_status found = optional_fit_row(db, db_path, "iteration_fit", sql, profile, model, tp, &q, err);
  if (found != INFSIM_OK || !q) return found;
  int rc = sqlite3_step(q);
  infsim_status st = INFSIM_OK;
  if (rc == SQLITE_ROW) {
    int type = sqlite3_column_type(q, 0);
    bool number = type == SQLITE_FLOAT || type == SQLITE_INTEGER;
    double us = number ? sqlite3_column_double(q, 0) : 0.0;
    const unsigned char *text = number ? NULL : sqlite3_column_text(q, 0);
    /* the config key's range: a time, finite, not negative */
    if (!number || !(us >= 0.0 && us <= 1e9)) {
      char shown[64];
      if (number) snprintf(shown, sizeof shown, "%g", us);
      else snprintf(shown, sizeof shown, "'%.40s'", text ? (const char *)text : "NULL");
      st = infsim_fail(err, INFSIM_EINPUT, "%s: iteration_fit: %s, %s, tp %lld: overhead_us %s: want a number"
                       " in [0, 1e9] (microseconds)", db_path, profile, model->name, (long long)tp, shown);
    } else {
      *have = 1, *overhead_us = us;
    }
  } else if (rc != SQLITE_DONE) {
    st = db_fail(db, db_path, err);
  }
  sqlite3_finalize(q);
  return st;
}

/* The least of each variable and of the shape ratio over kernel k's
 * measured points (the fit's domain); *have 0 when there are none (an
 * edited DB), or when the curve's variable is not a measured column
 * (layer_decode_long: the tokens one CTA walks, worked out by the fit). */
static infsim_status measured_floor_point(sqlite3 *db, const char *db_path, int64_t profile_id, int64_t tp,
                                          infsim_calib_kernel k, double x[INFSIM_CALIB_VARS], double *r, int *have,
                                          infsim_error *err) {
  const infsim_calib_kernel_info *info = infsim_calib_kernel_get(k);
  *have = 0;
  if (k == INFSIM_CALIB_LAYER_DECODE_LONG) return INFSIM_OK;
  char sql[512];
  int num = info->ratio_num >= 0 ? info->ratio_num : 0, den = info->ratio_num >= 0 ? info->ratio_den : 0;
  snprintf(sql, sizeof sql,
           "SELECT count(*), MIN(tokens), MIN(pairs), MIN(requests), MIN(context_tokens), MIN(partials), MIN(bytes),"
           " MIN(CASE WHEN %s > 0 THEN CAST(%s AS REAL) / %s ELSE 0 END) FROM measurement"
           " WHERE profile_id = ?1 AND tp = ?2 AND kernel = ?3",
           k_var_names[den], k_var_names[num], k_var_names[den]);
  sqlite3_stmt *q = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK) return db_fail(db, db_path, err);
  sqlite3_bind_int64(q, 1, profile_id);
  sqlite3_bind_int64(q, 2, tp);
  sqlite3_bind_text(q, 3, info->name, -1, SQLITE_STATIC);
  infsim_status st = INFSIM_OK;
  if (sqlite3_step(q) != SQLITE_ROW) {
    st = db_fail(db, db_path, err);
  } else if (sqlite3_column_int64(q, 0) > 0) {
    for (int v = 0; v < INFSIM_CALIB_VARS; v++) x[v] = sqlite3_column_double(q, 1 + v);
    *r = info->ratio_num >= 0 ? sqlite3_column_double(q, 1 + INFSIM_CALIB_VARS) : 0;
    *have = 1;
  }
  sqlite3_finalize(q);
  return st;
}

/* The fitter leaves the constants free, and a negative one is fine while
 * the curve stays >= 0 over the measured domain (max(A, B): B's constant is
 * often negative where A is the curve). Checked at the domain's lowest
 * corner; without measurements, at the least a kernel with work does: its
 * work variable 1, the rest 0. */
static infsim_status check_floor(sqlite3 *db, const char *db_path, int64_t profile_id, int64_t tp,
                                 infsim_calib_kernel k, const infsim_calib_curve *c, char *why, size_t why_bytes,
                                 int *ok, infsim_error *err) {
  *ok = 1;
  if (c->n_knots > 0) return INFSIM_OK; /* a lookup: its knots' times are >= 0 */
  const infsim_calib_kernel_info *info = infsim_calib_kernel_get(k);
  double x[INFSIM_CALIB_VARS] = {0}, r = 0;
  int measured = 0;
  infsim_status st = measured_floor_point(db, db_path, profile_id, tp, k, x, &r, &measured, err);
  if (st != INFSIM_OK) return st;
  if (!measured) {
    memset(x, 0, sizeof x);
    x[info->work_var] = 1;
    r = 0;
  }
  double floor = infsim_calib_curve_floor(c, k, x, r);
  if (floor >= 0) return INFSIM_OK;
  *ok = 0;
  infsim_calib_curve only_a = *c;
  only_a.has_alt = 0;
  int a_at_fault = infsim_calib_curve_floor(&only_a, k, x, r) >= floor;
  /* the piece that is the curve there is the one whose constant is at fault */
  char at[160] = "";
  size_t used = 0;
  for (int v = 0; v < INFSIM_CALIB_VARS; v++)
    if ((info->var_mask & (1u << v)) && used < sizeof at)
      used += (size_t)snprintf(at + used, sizeof at - used, "%s%s %.6g", used ? ", " : "", k_var_names[v], x[v]);
  if (info->ratio_num >= 0 && used < sizeof at) snprintf(at + used, sizeof at - used, ", ratio %.6g", r);
  snprintf(why, why_bytes, "%s %.10g: the curve is %.6g ns at %s %s (want >= 0)", a_at_fault ? "c_const" : "alt_const",
           a_at_fault ? c->c_const : c->alt_const, floor,
           measured ? "the least measured" : "its domain's lowest point (no measurements),", at);
  return INFSIM_OK;
}

infsim_status infsim_cost_curves_calibrated(const char *db_path, const char *profile,
                                            const infsim_model_shape *model, int64_t tp, int *found,
                                            infsim_cost_curves *out, infsim_error *err) {
  assert(db_path && profile && model && found && out);
  *found = 0;
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
    infsim_status st = infsim_fail(err, INFSIM_EINPUT, "%s: calibration.db: cannot open: %s", db_path,
                                   db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close(db);
    return st;
  }
  infsim_status st = INFSIM_OK;
  sqlite3_stmt *q = NULL;
  infsim_calib_curve *curves = NULL;
  infsim_calib_fast *fast = NULL;
  if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &q, NULL) != SQLITE_OK || sqlite3_step(q) != SQLITE_ROW) {
    st = db_fail(db, db_path, err);
    goto done;
  }
  int version = sqlite3_column_int(q, 0);
  sqlite3_finalize(q);
  q = NULL;
  if (version != INFSIM_CALIB_DB_VERSION) {
    st = infsim_fail(err, INFSIM_EINPUT,
                     "%s: user_version: calibration schema version %d, expected %d (an older or newer infsim wrote"
                     " it: load the raw CSVs into a new DB and run `infsim calibrate fit`)",
                     db_path, version, INFSIM_CALIB_DB_VERSION);
    goto done;
  }
  static const char sql[] =
      "SELECT f.kernel, " INFSIM_CALIB_CURVE_COLUMNS ", p.id FROM fit f JOIN profile p ON p.id = f.profile_id"
      " WHERE p.name = ?1 AND p.model = ?2 AND p.hidden = ?3 AND p.heads = ?4 AND p.kv_heads = ?5"
      " AND p.head_dim = ?6 AND p.intermediate = ?7 AND p.dtype_bytes = ?8 AND f.tp = ?9";
  if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK) {
    st = db_fail(db, db_path, err);
    goto done;
  }
  sqlite3_bind_text(q, 1, profile, -1, SQLITE_STATIC);
  sqlite3_bind_text(q, 2, model->name, -1, SQLITE_STATIC);
  sqlite3_bind_int64(q, 3, model->hidden);
  sqlite3_bind_int64(q, 4, model->heads);
  sqlite3_bind_int64(q, 5, model->kv_heads);
  sqlite3_bind_int64(q, 6, model->head_dim);
  sqlite3_bind_int64(q, 7, model->intermediate);
  sqlite3_bind_int64(q, 8, model->dtype_bytes);
  sqlite3_bind_int64(q, 9, tp);
  curves = calloc(INFSIM_CALIB_KERNELS, sizeof *curves);
  if (curves == NULL) {
    st = infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", db_path);
    goto done;
  }
  unsigned have = 0;
  int rc;
  while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
    const char *kname = (const char *)sqlite3_column_text(q, 0);
    int k = kname ? infsim_calib_kernel_from_name(kname) : -1;
    if (k < 0) continue; /* a kernel this version does not use */
    char why[256];
    int ok = infsim_calib_curve_from_row(q, 1, &curves[k], why, sizeof why);
    if (ok) {
      st = check_floor(db, db_path, sqlite3_column_int64(q, 1 + INFSIM_CALIB_CURVE_NCOLS), tp, (infsim_calib_kernel)k,
                       &curves[k], why, sizeof why, &ok, err);
      if (st != INFSIM_OK) goto done;
    }
    if (!ok) {
      st = infsim_fail(err, INFSIM_EINPUT, "%s: fit: %s, %s, tp %lld, kernel %s: %s", db_path, profile, model->name,
                       (long long)tp, kname, why);
      goto done;
    }
    have |= 1u << k;
  }
  if (rc != SQLITE_DONE) {
    st = db_fail(db, db_path, err);
    goto done;
  }
  for (int k = 0; k < INFSIM_CALIB_KERNELS; k++)
    if (kernel_required(k) && !(have & (1u << k))) goto done; /* not found */
  fast = infsim_calib_fast_new(curves);
  if (fast == NULL) {
    st = infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", db_path);
    goto done;
  }
  memset(out, 0, sizeof *out);
  out->self = fast;
  out->gemm_layer_ns = calib_gemm_layer_ns;
  out->prefill_attn_layer_ns = calib_prefill_attn_layer_ns;
  out->decode_attn_layer_ns = calib_decode_attn_layer_ns;
  out->decode_attn_sum_layer_ns = calib_decode_attn_sum_layer_ns;
  out->merge_layer_ns = calib_merge_layer_ns;
  out->kv_copy_ns = calib_kv_copy_ns;
  out->destroy = calib_destroy;
  /* Both rests or neither: half a correction would price prefills and
   * decodes on different footings. */
  unsigned rests = (1u << INFSIM_CALIB_LAYER_PREFILL) | (1u << INFSIM_CALIB_LAYER_DECODE);
  out->layer_rest_ns = (have & rests) == rests ? calib_layer_rest_ns : NULL;
  /* The longest-CTA term needs the GPU's multiprocessors, recorded with
   * the skewed decode layers it was fitted on (their partials column). */
  if (out->layer_rest_ns != NULL && (have & (1u << INFSIM_CALIB_LAYER_DECODE_LONG))) {
    int64_t sm = 0;
    st = long_sm_count(db, db_path, profile, model, tp, &sm, err);
    if (st != INFSIM_OK) {
      infsim_calib_fast_free(fast);
      memset(out, 0, sizeof *out);
      goto done;
    }
    if (sm > 0 && tp > 0) {
      infsim_calib_split_shape sh = {model->heads / tp, model->kv_heads / tp, sm};
      infsim_calib_fast_set_split(fast, &sh);
      out->decode_longest_layer_ns = calib_decode_longest_layer_ns;
    }
  }
  double tau_s = 0.0, gain = 0.0;
  st = clock_fit(db, db_path, profile, model, tp, &tau_s, &gain, err);
  if (st != INFSIM_OK) {
    infsim_calib_fast_free(fast);
    memset(out, 0, sizeof *out);
    goto done;
  }
  out->clock_tau_ns = tau_s * 1e9;
  out->clock_idle_gain = gain;
  int have_overhead = 0;
  double overhead_us = 0.0;
  st = iteration_fit(db, db_path, profile, model, tp, &have_overhead, &overhead_us, err);
  if (st != INFSIM_OK) {
    infsim_calib_fast_free(fast);
    memset(out, 0, sizeof *out);
    goto done;
  }
  out->has_iteration_overhead = have_overhead != 0;
  out->iteration_overhead_ns = overhead_us * 1e3;
  snprintf(out->name, sizeof out->name, "calibrated:%s", profile);
  *found = 1;
done:
  free(curves);
  sqlite3_finalize(q);
  sqlite3_close(db);
  return st;
}
