/*
** fit.c: least-squares curves for one kernel's measurements (calib.h).
**
** Model (calib.h): t = max(A, B), A = c_const + sum_v c_v x_v with the
** hinge variable h split into min(x_h, K) and max(x_h - K, 0) (up to two
** bends), plus terms in the kernel's shape ratio r (how the work is spread
** over requests or query tiles): a piecewise-linear g(r), a tail
** r min(den, cap), a bend in the denominator and a head r max(cap - den, 0).
** For fixed bends and caps the model is linear in its coefficients, so each
** candidate is one weighted linear least-squares solve
** (gsl_multifit_wlinear, SVD based, so a column that the grid does not
** excite is dropped rather than blowing up). Weights are 1/t^2: we minimise
** relative error, since a 10 us kernel and a 10 ms one matter equally to an
** iteration-time estimate in percent. Bends are searched over the measured
** values, then refined on a log grid around the best one. Slopes are kept
** >= 0 by dropping the most negative slope's column and solving again (an
** active-set NNLS on the slopes), which keeps every curve non-decreasing in
** its work variable, as the simulator assumes.
** Which extras a curve gets is decided on data it was not fitted to where
** there is enough of it: a second bend must cut the squared error by 30%
** (GEMM time steps with tile waves, but a bend bought by noise alone hurts
** the held-out error); the shape-ratio terms must lower a 5-fold
** cross-validation error (on the H100 decode grid, accepting them on the
** in-sample error alone traded a better fit for a worse held-out p95); the
** second piece B, fitted by alternating assignment, must cut the squared
** error by 10%. The curve must stay >= 0 above its least point (the bound
** loading checks, infsim_calib_curve_floor): a fit that noise pulls below
** falls back to a simpler one, at last to the line pinned at 0 there.
** One-variable kernels whose measured steps no piecewise line with slopes
** >= 0 follows become a lookup of the measured points.
*/
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_errno.h>
#include <gsl/gsl_multifit.h>

#include "calib_internal.h"

enum {
  MAX_COLS = 7 + INFSIM_CALIB_VARS + INFSIM_CALIB_MAX_RBENDS,
  REFINE_STEPS = 24,
  ABOVE1 = INFSIM_CALIB_VARS,
  ABOVE2,
  TAIL,  /* r * min(denominator, tail_cap) */
  DEN_ABOVE, /* max(denominator - den_hinge, 0) */
  HEAD,      /* r * max(head_cap - denominator, 0) */
  RATIO0 /* RATIO0 + k: the shape ratio's k-th stretch */
};

/* Column j of the design: -1 the constant, v a variable's (below-hinge)
 * part, ABOVE1 / ABOVE2 the stretches of the hinge variable past each bend,
 * RATIO0 + k the k-th stretch of the shape ratio between its bends. */
typedef struct {
  int kind[MAX_COLS];
  double shift[MAX_COLS]; /* subtracted from column j's values (a curve pinned at a point) */
  int n;
} design;

/* The least of each variable and of the shape ratio over a fit's points:
 * the corner of the box where the curve must stay >= 0
 * (infsim_calib_curve_floor). */
typedef struct {
  double x[INFSIM_CALIB_VARS];
  double r;
} corner;

typedef struct {
  int var;   /* -1: straight */
  double k1; /* first bend */
  double k2; /* second bend, > k1; 0: none */
  double cap; /* the ratio term scaled by min(denominator, cap); 0: by 1 */
  double tail_cap; /* > 0: a tail column */
  double den_hinge; /* > 0: a bend in the denominator */
  double head_cap;  /* > 0: a head column */
  int n_rb;  /* bends in the shape ratio */
  double rb[INFSIM_CALIB_MAX_RBENDS];
} bends;

/* The kernel's shape ratio (calib.h), 0 where it has none. */
static double ratio_of(const infsim_calib_kernel_info *info, const double *x) {
  if (info->ratio_num < 0 || !(x[info->ratio_den] > 0)) return 0;
  return x[info->ratio_num] / x[info->ratio_den];
}

static double column_value(int kind, const double *x, double r, double den, const bends *b) {
  if (kind < 0) return 1.0;
  if (kind == TAIL) return r * fmin(den, b->tail_cap);
  if (kind == DEN_ABOVE) return fmax(den - b->den_hinge, 0);
  if (kind == HEAD) return r * fmax(b->head_cap - den, 0);
  if (kind >= RATIO0) {
    int k = kind - RATIO0, n = b->n_rb;
    double s = b->cap > 0 ? fmin(den, b->cap) : 1;
    if (n == 0) return s * r;
    if (k == 0) return s * fmin(r, b->rb[0]);
    if (k == n) return s * fmax(r - b->rb[n - 1], 0);
    return s * fmin(fmax(r - b->rb[k - 1], 0), b->rb[k] - b->rb[k - 1]);
  }
  if (kind == ABOVE1) {
    double above = fmax(x[b->var] - b->k1, 0);
    return b->k2 > b->k1 ? fmin(above, b->k2 - b->k1) : above;
  }
  if (kind == ABOVE2) return fmax(x[b->var] - b->k2, 0);
  if (kind == b->var) return fmin(x[kind], b->k1);
  return x[kind];
}

typedef struct {
  infsim_calib_curve curve;
  double chisq; /* sum of squared relative residuals */
  int ok;
} trial;

/* What every solve of one fit reuses: the design, the targets and weights,
 * the coefficients and GSL's SVD workspace, sized once for the most points
 * (nmax) and columns the fit can ask for. A fit runs hundreds of solves
 * (every candidate bend, every NNLS round, every cross-validation fold);
 * allocating these per solve cost more than the solve itself. A solve on
 * n <= nmax points uses n x p views of the buffers, laid out as a fresh
 * n x p matrix would be, and GSL's workspace is documented to take any
 * n <= nmax, p <= pmax, so the results are those of a per-solve
 * allocation. */
typedef struct {
  size_t nmax;
  double *X, *y, *w, *c, *cov;
  gsl_multifit_linear_workspace *ws;
} solver;

static void solver_free(solver *sv) {
  gsl_multifit_linear_free(sv->ws);
  free(sv->X);
  free(sv->y);
  free(sv->w);
  free(sv->c);
  free(sv->cov);
  memset(sv, 0, sizeof *sv);
}

/* 0 out of memory. */
static int solver_init(solver *sv, size_t nmax) {
  memset(sv, 0, sizeof *sv);
  sv->nmax = nmax ? nmax : 1;
  sv->X = malloc(sv->nmax * MAX_COLS * sizeof *sv->X);
  sv->y = malloc(sv->nmax * sizeof *sv->y);
  sv->w = malloc(sv->nmax * sizeof *sv->w);
  sv->c = malloc(MAX_COLS * sizeof *sv->c);
  sv->cov = malloc(MAX_COLS * MAX_COLS * sizeof *sv->cov);
  sv->ws = gsl_multifit_linear_alloc(sv->nmax, MAX_COLS);
  if (sv->X && sv->y && sv->w && sv->c && sv->cov && sv->ws) return 1;
  solver_free(sv);
  return 0;
}

/* One weighted solve over the columns of d. */
static int solve(solver *sv, const design *d, const infsim_calib_kernel_info *info, const infsim_calib_point *pts,
                 size_t n, const bends *b, double *coef, double *chisq) {
  if ((size_t)d->n > n || n > sv->nmax) return 0;
  size_t p = (size_t)d->n;
  gsl_matrix_view X = gsl_matrix_view_array(sv->X, n, p);
  gsl_vector_view y = gsl_vector_view_array(sv->y, n);
  gsl_vector_view w = gsl_vector_view_array(sv->w, n);
  gsl_vector_view c = gsl_vector_view_array(sv->c, p);
  gsl_matrix_view cov = gsl_matrix_view_array(sv->cov, p, p);
  for (size_t i = 0; i < n; i++) {
    double r = ratio_of(info, pts[i].x), den = info->ratio_num >= 0 ? pts[i].x[info->ratio_den] : 0;
    for (size_t j = 0; j < p; j++) sv->X[i * p + j] = column_value(d->kind[j], pts[i].x, r, den, b) - d->shift[j];
    sv->y[i] = pts[i].t_ns;
    sv->w[i] = 1.0 / (pts[i].t_ns * pts[i].t_ns);
  }
  int ok = gsl_multifit_wlinear(&X.matrix, &w.vector, &y.vector, &c.vector, &cov.matrix, chisq, sv->ws) ==
               GSL_SUCCESS &&
           isfinite(*chisq);
  for (size_t j = 0; ok && j < p; j++) {
    coef[j] = sv->c[j];
    ok = isfinite(coef[j]);
  }
  return ok;
}

/* Fits with the bends b fixed, slopes >= 0. With `pin`, a curve whose
 * headless value at that corner is 0: every column is taken relative to
 * its value there and the constant is what makes the corner 0 (the least
 * squares under the constraint floor >= 0 where that is active; b has no
 * head term, whose column falls with the denominator). */
static trial fit_design(solver *sv, infsim_calib_kernel k, const infsim_calib_point *pts, size_t n, bends b,
                        const corner *pin) {
  const infsim_calib_kernel_info *info = infsim_calib_kernel_get(k);
  assert(pin == NULL || b.head_cap == 0);
  trial t;
  memset(&t, 0, sizeof t);
  design d = {.n = 0};
  if (pin == NULL) d.kind[d.n++] = -1;
  for (int v = 0; v < INFSIM_CALIB_VARS; v++)
    if (info->var_mask & (1u << v)) d.kind[d.n++] = v;
  if (b.var >= 0) d.kind[d.n++] = ABOVE1;
  if (b.var >= 0 && b.k2 > b.k1) d.kind[d.n++] = ABOVE2;
  for (int j = 0; info->ratio_num >= 0 && j <= b.n_rb; j++) d.kind[d.n++] = RATIO0 + j;
  if (info->ratio_num >= 0 && b.tail_cap > 0) d.kind[d.n++] = TAIL;
  if (info->ratio_num >= 0 && b.den_hinge > 0) d.kind[d.n++] = DEN_ABOVE;
  if (info->ratio_num >= 0 && b.head_cap > 0) d.kind[d.n++] = HEAD;
  double pin_den = pin && info->ratio_num >= 0 ? pin->x[info->ratio_den] : 0;
  for (int j = 0; pin && j < d.n; j++) d.shift[j] = column_value(d.kind[j], pin->x, pin->r, pin_den, &b);
  double coef[MAX_COLS];
  for (;;) {
    double chisq = 0;
    if (!solve(sv, &d, info, pts, n, &b, coef, &chisq)) return t;
    int worst = -1;
    for (int j = pin ? 0 : 1; j < d.n; j++)
      if (coef[j] < 0 && (worst < 0 || coef[j] < coef[worst])) worst = j;
    if (worst < 0) {
      t.curve.hinge_var = b.var;
      t.curve.hinge_at = b.var >= 0 ? b.k1 : 0;
      t.curve.hinge2_at = b.var >= 0 && b.k2 > b.k1 ? b.k2 : 0;
      t.curve.ratio.n_bends = info->ratio_num >= 0 ? b.n_rb : 0;
      memcpy(t.curve.ratio.bend, b.rb, sizeof b.rb);
      t.curve.ratio.cap = info->ratio_num >= 0 ? b.cap : 0;
      t.curve.tail_cap = info->ratio_num >= 0 ? b.tail_cap : 0;
      t.curve.den_hinge_at = info->ratio_num >= 0 ? b.den_hinge : 0;
      t.curve.head_cap = info->ratio_num >= 0 ? b.head_cap : 0;
      for (int j = 0; j < d.n; j++) {
        if (d.kind[j] < 0) t.curve.c_const = coef[j];
        else if (d.kind[j] == ABOVE1) t.curve.c_above = coef[j];
        else if (d.kind[j] == ABOVE2) t.curve.c_above2 = coef[j];
        else if (d.kind[j] == TAIL) t.curve.c_tail = coef[j];
        else if (d.kind[j] == DEN_ABOVE) t.curve.c_den_above = coef[j];
        else if (d.kind[j] == HEAD) t.curve.c_head = coef[j];
        else if (d.kind[j] >= RATIO0) t.curve.ratio.slope[d.kind[j] - RATIO0] = coef[j];
        else t.curve.c_var[d.kind[j]] = coef[j];
        if (pin) t.curve.c_const -= coef[j] * d.shift[j];
      }
      /* Rounding may leave the corner a hair below 0. */
      for (double step = 1e-9 + 1e-15 * fabs(t.curve.c_const);
           pin && infsim_calib_curve_floor(&t.curve, k, pin->x, pin->r) < 0; step *= 2)
        t.curve.c_const += step;
      t.chisq = chisq;
      t.ok = 1;
      return t;
    }
    memmove(&d.kind[worst], &d.kind[worst + 1], (size_t)(d.n - worst - 1) * sizeof d.kind[0]);
    memmove(&d.shift[worst], &d.shift[worst + 1], (size_t)(d.n - worst - 1) * sizeof d.shift[0]);
    d.n--;
  }
}

static trial fit_fixed(solver *sv, infsim_calib_kernel k, const infsim_calib_point *pts, size_t n, bends b) {
  return fit_design(sv, k, pts, n, b, NULL);
}

static corner least_of(const infsim_calib_kernel_info *info, const infsim_calib_point *pts, size_t n) {
  corner c = {.r = HUGE_VAL};
  for (int v = 0; v < INFSIM_CALIB_VARS; v++) c.x[v] = HUGE_VAL;
  for (size_t i = 0; i < n; i++) {
    for (int v = 0; v < INFSIM_CALIB_VARS; v++) c.x[v] = fmin(c.x[v], pts[i].x[v]);
    c.r = fmin(c.r, ratio_of(info, pts[i].x));
  }
  return c;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double infsim_calib_percentile(double *v, size_t n, double pct) {
  if (n == 0) return 0;
  qsort(v, n, sizeof *v, cmp_double);
  size_t rank = (size_t)ceil(pct / 100.0 * (double)n);
  if (rank < 1) rank = 1;
  if (rank > n) rank = n;
  return v[rank - 1];
}

static void errors_of(infsim_calib_kernel k, const infsim_calib_curve *c, const infsim_calib_point *pts, size_t n,
                      double *rms, double *max) {
  double sum = 0, worst = 0;
  for (size_t i = 0; i < n; i++) {
    double e = fabs(infsim_calib_curve_eval(c, k, pts[i].x) - pts[i].t_ns) / pts[i].t_ns;
    sum += e * e;
    worst = fmax(worst, e);
  }
  *rms = n ? sqrt(sum / (double)n) : 0;
  *max = worst;
}

/* The bends of a fitted curve. */
static bends bends_of(const infsim_calib_curve *c) {
  bends b = {.var = c->hinge_var, .k1 = c->hinge_at, .k2 = c->hinge2_at, .cap = c->ratio.cap,
             .tail_cap = c->tail_cap, .den_hinge = c->den_hinge_at, .head_cap = c->head_cap,
             .n_rb = c->ratio.n_bends};
  memcpy(b.rb, c->ratio.bend, sizeof b.rb);
  return b;
}

/* Cross-validation error of the form with bends b: the points split into
 * 5 folds by index (fewer with fewer points), each predicted by the form
 * fitted on the others; the sum of squared relative errors. Extra terms
 * are kept only where this falls: a term that only fits noise raises it.
 * HUGE_VAL where a fold cannot be fitted; -1 out of memory. */
static double cv_error(solver *sv, infsim_calib_kernel k, const infsim_calib_point *pts, size_t n, bends b) {
  size_t folds = n < 5 ? n : 5;
  infsim_calib_point *train = malloc((n ? n : 1) * sizeof *train);
  if (train == NULL) return -1;
  double sum = 0;
  for (size_t f = 0; f < folds && sum < HUGE_VAL; f++) {
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
      if (i % folds != f) train[m++] = pts[i];
    trial t = fit_fixed(sv, k, train, m, b);
    if (!t.ok) {
      sum = HUGE_VAL;
      break;
    }
    for (size_t i = f; i < n; i += folds) {
      double e = (infsim_calib_curve_eval(&t.curve, k, pts[i].x) - pts[i].t_ns) / pts[i].t_ns;
      sum += e * e;
    }
  }
  free(train);
  return sum;
}

/* The best bend in the shape ratio with the other bends of `base` fixed:
 * every measured ratio, then a log grid between the best one's neighbours.
 * u: scratch of n doubles. */
static trial ratio_bend_at_cap(solver *sv, infsim_calib_kernel k, const infsim_calib_point *pts, size_t n, bends base, double *u) {
  const infsim_calib_kernel_info *info = infsim_calib_kernel_get(k);
  trial rb = {.ok = 0};
  for (size_t i = 0; i < n; i++) u[i] = ratio_of(info, pts[i].x);
  qsort(u, n, sizeof *u, cmp_double);
  size_t m = 0, rb_i = 0;
  for (size_t i = 0; i < n; i++)
    if (m == 0 || u[i] != u[m - 1]) u[m++] = u[i];
  if (info->ratio_knots) {
    /* A bend at every measured ratio inside the range (at most
     * INFSIM_CALIB_MAX_RBENDS, evenly picked): the slopes >= 0 keep it
     * non-decreasing whatever steps the kernel takes. */
    size_t inner = m > 2 ? m - 2 : 0, want = inner < INFSIM_CALIB_MAX_RBENDS ? inner : INFSIM_CALIB_MAX_RBENDS;
    base.n_rb = 0;
    for (size_t j = 0; j < want; j++) {
      double at = u[1 + j * inner / want];
      if (base.n_rb == 0 || at > base.rb[base.n_rb - 1]) base.rb[base.n_rb++] = at;
    }
    return base.n_rb > 0 ? fit_fixed(sv, k, pts, n, base) : rb;
  }
  base.n_rb = 1;
  for (size_t i = 1; i + 1 < m; i++) {
    base.rb[0] = u[i];
    trial t = fit_fixed(sv, k, pts, n, base);
    if (t.ok && (!rb.ok || t.chisq < rb.chisq)) {
      rb = t;
      rb_i = i;
    }
  }
  if (rb.ok) {
    double lo = fmax(u[rb_i - 1], 1e-9), hi = u[rb_i + 1];
    for (int s = 1; s < REFINE_STEPS; s++) {
      base.rb[0] = lo * pow(hi / lo, (double)s / REFINE_STEPS);
      trial t = fit_fixed(sv, k, pts, n, base);
      if (t.ok && t.chisq < rb.chisq) rb = t;
    }
  }
  return rb;
}

/* The ratio term's bends as above for every cap (none, then each measured
 * value of the denominator), keeping the best. u: scratch of n doubles. */
static trial best_ratio_bend(solver *sv, infsim_calib_kernel k, const infsim_calib_point *pts, size_t n, bends base, double *u) {
  const infsim_calib_kernel_info *info = infsim_calib_kernel_get(k);
  base.cap = 0;
  trial best = ratio_bend_at_cap(sv, k, pts, n, base, u);
  double caps[64];
  size_t n_caps = 0;
  for (size_t i = 0; i < n; i++) {
    double d = pts[i].x[info->ratio_den];
    int seen = !(d > 1);
    for (size_t j = 0; j < n_caps && !seen; j++) seen = caps[j] == d;
    if (!seen && n_caps < sizeof caps / sizeof caps[0]) caps[n_caps++] = d;
  }
  for (size_t j = 0; j < n_caps; j++) {
    base.cap = caps[j];
    trial t = ratio_bend_at_cap(sv, k, pts, n, base, u);
    if (t.ok && (!best.ok || t.chisq < best.chisq)) best = t;
  }
  return best;
}

/* A shape term is kept where it cuts the cross-validation error by 5%:
 * less is within what fitting the noise of a 1%-spread grid gives. Below
 * k_exact per point (a relative error of 1e-4) a fit is exact and nothing
 * is gained: what changes there is rounding. */
static const double k_cv_gain = 0.95, k_exact = 1e-8;

/* Whether a squared error of `with` (extra term) against `without` over n
 * points is worth the extra term at `gain`. */
static int worth(double with, double without, double gain, size_t n) {
  return with >= 0 && with < gain * without && without > k_exact * (double)n;
}

/* Straight, one bend or two on variable h, the best; u: scratch of n. */
static trial fit_bends_on(solver *sv, infsim_calib_kernel k, const infsim_calib_point *pts, size_t n, int h, double *u) {
  trial best = fit_fixed(sv, k, pts, n, (bends){.var = -1});
  /* Distinct values of the hinge variable; the bend goes strictly inside. */
  for (size_t i = 0; i < n; i++) u[i] = pts[i].x[h];
  qsort(u, n, sizeof *u, cmp_double);
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (m == 0 || u[i] != u[m - 1]) u[m++] = u[i];
  size_t best_i = 0;
  for (size_t i = 1; i + 1 < m; i++) {
    trial t = fit_fixed(sv, k, pts, n, (bends){.var = h, .k1 = u[i], .k2 = 0});
    if (t.ok && (!best.ok || t.chisq < best.chisq)) {
      best = t;
      best_i = i;
    }
  }
  if (best_i > 0) {
    /* Refine between the neighbouring measured values, on a log scale
     * because the grids are geometric. */
    double lo = fmax(u[best_i - 1], 1e-9), hi = u[best_i + 1];
    for (int s = 1; s < REFINE_STEPS; s++) {
      double at = lo * pow(hi / lo, (double)s / REFINE_STEPS);
      trial t = fit_fixed(sv, k, pts, n, (bends){.var = h, .k1 = at, .k2 = 0});
      if (t.ok && t.chisq < best.chisq) best = t;
    }
  }
  /* Second bend: greedy from the best single one (a grid search over pairs
   * misses a bend that must sit precisely where the slope jumps), then each
   * bend refined between its neighbouring measured values, twice. */
  trial two = {.ok = 0};
  if (best.ok && best.curve.hinge_var >= 0) {
    double k_one = best.curve.hinge_at;
    for (size_t i = 1; i + 1 < m; i++) {
      if (u[i] == k_one) continue;
      bends b = u[i] < k_one ? (bends){.var = h, .k1 = u[i], .k2 = k_one} : (bends){.var = h, .k1 = k_one, .k2 = u[i]};
      trial t = fit_fixed(sv, k, pts, n, b);
      if (t.ok && (!two.ok || t.chisq < two.chisq)) two = t;
    }
    for (int pass = 0; two.ok && pass < 4; pass++) {
      double k1 = two.curve.hinge_at, k2 = two.curve.hinge2_at;
      double at = pass % 2 == 0 ? k2 : k1;
      double lo = u[0], hi = u[m - 1]; /* the measured values either side of `at` */
      for (size_t i = 0; i < m; i++)
        if (u[i] < at) lo = u[i];
      for (size_t i = m; i-- > 0;)
        if (u[i] > at) hi = u[i];
      lo = fmax(lo, 1e-9);
      for (int s = 1; s < REFINE_STEPS; s++) {
        double x = lo * pow(hi / lo, (double)s / REFINE_STEPS);
        bends b = pass % 2 == 0 ? (bends){.var = h, .k1 = k1, .k2 = x} : (bends){.var = h, .k1 = x, .k2 = k2};
        if (!(b.k1 < b.k2)) continue;
        trial t = fit_fixed(sv, k, pts, n, b);
        if (t.ok && t.chisq < two.chisq) two = t;
      }
    }
  }
  if (two.ok && best.ok && worth(two.chisq, best.chisq, 0.7, n)) best = two;
  return best;
}

/* The additive piece: bends on the hinge variable, then the shape-ratio
 * terms that cross-validation keeps. *oom set when memory ran out. */
static trial fit_additive(solver *sv, infsim_calib_kernel k, const infsim_calib_point *pts, size_t n, int *oom) {
  const infsim_calib_kernel_info *info = infsim_calib_kernel_get(k);
  double *u = malloc((n ? n : 1) * sizeof *u);
  if (u == NULL) {
    *oom = 1;
    return fit_fixed(sv, k, pts, n, (bends){.var = -1});
  }
  trial best = fit_bends_on(sv, k, pts, n, info->hinge_var, u);
  /* A bend in the shape ratio (one request's walk changes pace where the
   * kernel starts splitting it over more blocks), searched the same way
   * with the bends above fixed. */
  if (best.ok && info->ratio_num >= 0) {
    double cv_best = cv_error(sv, k, pts, n, bends_of(&best.curve));
    trial rb = best_ratio_bend(sv, k, pts, n, bends_of(&best.curve), u);
    double cv = rb.ok ? cv_error(sv, k, pts, n, bends_of(&rb.curve)) : HUGE_VAL;
    if (cv < 0 || cv_best < 0) *oom = 1;
    if (rb.ok && worth(cv, cv_best, k_cv_gain, n)) best = rb, cv_best = cv;
    /* The tail and head terms and the bend in the denominator: every
     * measured denominator strictly inside the measured range as the cap
     * and as the bend (at either end the column would be a sum of others),
     * the best of each kept where cross-validation says it predicts
     * better. */
    double den_lo = HUGE_VAL, den_hi = 0;
    for (size_t i = 0; i < n; i++) {
      den_lo = fmin(den_lo, pts[i].x[info->ratio_den]);
      den_hi = fmax(den_hi, pts[i].x[info->ratio_den]);
    }
    for (int pass = 0; pass < 3 && !*oom; pass++) {
      bends tb = bends_of(&best.curve);
      trial cand = {.ok = 0};
      for (size_t i = 0; i < n; i++) {
        double d = pts[i].x[info->ratio_den];
        int seen = !(d > den_lo && d < den_hi);
        for (size_t j = 0; j < i && !seen; j++) seen = pts[j].x[info->ratio_den] == d;
        if (seen) continue;
        if (pass == 0) tb.tail_cap = d;
        else if (pass == 1) tb.den_hinge = d;
        else tb.head_cap = d;
        trial t = fit_fixed(sv, k, pts, n, tb);
        if (t.ok && (!cand.ok || t.chisq < cand.chisq)) cand = t;
      }
      cv = cand.ok ? cv_error(sv, k, pts, n, bends_of(&cand.curve)) : HUGE_VAL;
      if (cv < 0) *oom = 1;
      if (cand.ok && worth(cv, cv_best, k_cv_gain, n)) best = cand, cv_best = cv;
    }
  }
  free(u);
  return best;
}

static double predict_rel_chisq(infsim_calib_kernel k, const infsim_calib_curve *c, const infsim_calib_point *pts,
                                size_t n) {
  double sum = 0;
  for (size_t i = 0; i < n; i++) {
    double e = (infsim_calib_curve_eval(c, k, pts[i].x) - pts[i].t_ns) / pts[i].t_ns;
    sum += e * e;
  }
  return sum;
}

/* Second piece: t = max(A(x), B(x)) with B affine in the kernel's
 * variables plus a term in the shape ratio (calib.h). Where two limits bind in different corners of the grid (decode:
 * a per-request cost with many short requests, KV bandwidth with long ones)
 * no sum of per-variable terms fits, but the larger of two lines does.
 * Alternating fit (Magnani and Boyd, "Convex piecewise-linear fitting",
 * 2009): assign each point to the piece that predicts more, refit each piece
 * on its points, until the assignment settles. Kept only where it cuts the
 * squared relative error by at least 30%. */
static trial fit_with_alt(solver *sv, infsim_calib_kernel k, const infsim_calib_point *pts, size_t n, trial a,
                          const infsim_calib_curve *split_by, double start, int *oom) {
  enum { MAX_ITER = 12, MIN_PIECE_POINTS = 4 };
  double base = predict_rel_chisq(k, &a.curve, pts, n);
  const infsim_calib_kernel_info *info = infsim_calib_kernel_get(k);
  char *in_b = calloc(n ? n : 1, 1);
  infsim_calib_point *sub = malloc((n ? n : 1) * sizeof *sub);
  double *scratch = malloc((n ? n : 1) * sizeof *scratch);
  trial best = a;
  if (in_b == NULL || sub == NULL || scratch == NULL) {
    *oom = 1;
    goto done;
  }
  /* Start B on the points split_by underestimates by more than `start`. */
  for (size_t i = 0; i < n; i++) in_b[i] = infsim_calib_curve_eval(split_by, k, pts[i].x) < (1 - start) * pts[i].t_ns;
  infsim_calib_curve cur = a.curve;
  for (int iter = 0; iter < MAX_ITER; iter++) {
    size_t nb = 0, na = 0;
    for (size_t i = 0; i < n; i++) nb += in_b[i] != 0;
    na = n - nb;
    if (nb < MIN_PIECE_POINTS || na < MIN_PIECE_POINTS) break;
    size_t j = 0;
    for (size_t i = 0; i < n; i++)
      if (!in_b[i]) sub[j++] = pts[i];
    trial ta = fit_additive(sv, k, sub, na, oom);
    j = 0;
    for (size_t i = 0; i < n; i++)
      if (in_b[i]) sub[j++] = pts[i];
    trial tb = fit_fixed(sv, k, sub, nb, (bends){.var = -1});
    if (tb.ok && info->ratio_num >= 0 && scratch) {
      trial tr = best_ratio_bend(sv, k, sub, nb, (bends){.var = -1}, scratch);
      if (tr.ok && worth(tr.chisq, tb.chisq, 0.9, nb)) tb = tr;
    }
    if (*oom || !ta.ok || !tb.ok) break;
    cur = ta.curve;
    cur.has_alt = 1;
    cur.alt_const = tb.curve.c_const;
    cur.alt_ratio = tb.curve.ratio;
    memcpy(cur.alt_var, tb.curve.c_var, sizeof cur.alt_var);
    double chisq = predict_rel_chisq(k, &cur, pts, n);
    if (chisq < best.chisq && chisq < base) {
      best.curve = cur;
      best.chisq = chisq;
    }
    /* Reassign by which piece predicts more. */
    int changed = 0;
    infsim_calib_curve only_a = cur;
    only_a.has_alt = 0;
    infsim_calib_curve only_b = {.hinge_var = -1, .c_const = cur.alt_const, .ratio = cur.alt_ratio};
    memcpy(only_b.c_var, cur.alt_var, sizeof only_b.c_var);
    for (size_t i = 0; i < n; i++) {
      double pa = infsim_calib_curve_eval(&only_a, k, pts[i].x);
      double pb = infsim_calib_curve_eval(&only_b, k, pts[i].x);
      char want = pb > pa;
      changed |= want != in_b[i];
      in_b[i] = want;
    }
    if (!changed) break;
  }
  if (!(best.curve.has_alt && worth(best.chisq, base, 0.7, n))) best = a;
done:
  free(scratch);
  free(sub);
  free(in_b);
  return best;
}

/* Lookup of the measured points (calib.h): repeats of one size averaged;
 * decreases smaller than a factor k_step_down pooled (isotonic regression,
 * pool-adjacent-violators) so that noise does not make the curve fall with
 * size, larger ones kept as the steps they are (the GEMM library switching
 * algorithm). 0 when the points have fewer than 2 or more than
 * INFSIM_CALIB_MAX_KNOTS distinct sizes; -1 out of memory. */
static const double k_step_down = 1.25, k_lookup_above = 0.05;

static int fit_lookup(const infsim_calib_point *pts, size_t n, int h, infsim_calib_curve *out) {
  double *xs = malloc((n ? n : 1) * 2 * sizeof *xs);
  if (xs == NULL) return -1;
  /* (x, t) pairs sorted by x. */
  for (size_t i = 0; i < n; i++) xs[2 * i] = pts[i].x[h], xs[2 * i + 1] = pts[i].t_ns;
  qsort(xs, n, 2 * sizeof *xs, cmp_double);
  infsim_calib_curve c;
  memset(&c, 0, sizeof c);
  c.hinge_var = h;
  double w[INFSIM_CALIB_MAX_KNOTS]; /* points pooled in each block */
  int ok = 1;
  for (size_t i = 0; i < n && ok; ) {
    size_t j = i;
    double sum = 0;
    while (j < n && xs[2 * j] == xs[2 * i]) sum += xs[2 * j + 1], j++;
    if (c.n_knots == INFSIM_CALIB_MAX_KNOTS) {
      ok = 0;
      break;
    }
    c.knot_x[c.n_knots] = xs[2 * i];
    c.knot_t[c.n_knots] = sum / (double)(j - i);
    w[c.n_knots] = (double)(j - i);
    c.n_knots++;
    i = j;
  }
  free(xs);
  if (!ok || c.n_knots < 2) return 0;
  /* Pool adjacent violators, one run between kept steps at a time. Blocks
   * are kept as [start, end) ranges of knots with their pooled mean. */
  int start[INFSIM_CALIB_MAX_KNOTS], nblk = 0;
  double mean[INFSIM_CALIB_MAX_KNOTS], wsum[INFSIM_CALIB_MAX_KNOTS];
  for (int i = 0; i < c.n_knots; i++) {
    int step = i > 0 && c.knot_t[i - 1] >= k_step_down * c.knot_t[i];
    start[nblk] = i, mean[nblk] = c.knot_t[i], wsum[nblk] = w[i], nblk++;
    /* A block that starts at a kept step carries a negative weight: it is
     * never pooled into the block before it. */
    if (step) wsum[nblk - 1] = -wsum[nblk - 1];
    while (nblk >= 2 && wsum[nblk - 1] > 0 && mean[nblk - 2] > mean[nblk - 1]) {
      double a = fabs(wsum[nblk - 2]), b = wsum[nblk - 1];
      mean[nblk - 2] = (mean[nblk - 2] * a + mean[nblk - 1] * b) / (a + b);
      wsum[nblk - 2] = wsum[nblk - 2] < 0 ? -(a + b) : a + b;
      nblk--;
    }
  }
  for (int bi = 0; bi < nblk; bi++) {
    int end = bi + 1 < nblk ? start[bi + 1] : c.n_knots;
    for (int i = start[bi]; i < end; i++) c.knot_t[i] = mean[bi];
  }
  *out = c;
  return 1;
}

infsim_status infsim_calib_fit_points(infsim_calib_kernel k, const infsim_calib_point *pts, size_t n,
                                      infsim_calib_fit_result *out, infsim_error *err) {
  const infsim_calib_kernel_info *info = infsim_calib_kernel_get(k);
  memset(out, 0, sizeof *out);
  for (size_t i = 0; i < n; i++)
    if (!(pts[i].t_ns > 0) || !isfinite(pts[i].t_ns))
      return infsim_fail(err, INFSIM_EINPUT, "%s: point %zu: t_ns: not a positive finite time", info->name, i);
  gsl_error_handler_t *old = gsl_set_error_handler_off();
  solver sv_store, *sv = &sv_store;
  int oom = !solver_init(sv, n);
  trial best = {.ok = 0}, one = {.ok = 0}, line = {.ok = 0};
  if (!oom) best = fit_additive(sv, k, pts, n, &oom);
  if (best.ok && !oom) {
    best.chisq = predict_rel_chisq(k, &best.curve, pts, n);
    /* The alternating fit finds a local optimum: start it from several
     * splits and keep the best. The splits come from the fitted piece's
     * misses and from those of one straight line (which the shape terms
     * may have made too small to split on where two limits bind). */
    static const double k_starts[] = {0.03, 0.1, 0.2};
    one = best, line = fit_fixed(sv, k, pts, n, (bends){.var = -1});
    for (int from = 0; from < 2; from++) {
      const infsim_calib_curve *split_by = from == 0 ? &one.curve : &line.curve;
      if (from == 1 && !line.ok) break;
      for (size_t s = 0; s < sizeof k_starts / sizeof k_starts[0] && !oom; s++) {
        trial t = fit_with_alt(sv, k, pts, n, one, split_by, k_starts[s], &oom);
        if (t.chisq < best.chisq) best = t;
      }
    }
  }
  /* The simulator extrapolates above the least measured point, so the
   * curve must stay >= 0 over that box (loading a DB checks it). Noisy
   * timings can pull a fit's constants below that (an extra piece fitted to
   * the large points, a head term that the bound cannot count on): then
   * the first of the simpler fits that stays >= 0 is taken, else the
   * straight line pinned at 0 there. */
  corner least = least_of(info, pts, n);
  if (best.ok && !oom && infsim_calib_curve_floor(&best.curve, k, least.x, least.r) < 0) {
    if (one.ok && infsim_calib_curve_floor(&one.curve, k, least.x, least.r) >= 0)
      best = one;
    else if (line.ok && infsim_calib_curve_floor(&line.curve, k, least.x, least.r) >= 0)
      best = line;
    else
      best = fit_design(sv, k, pts, n, (bends){.var = -1}, &least);
  }
  /* One-variable kernels whose steps the piecewise form cannot follow
   * (an error beyond k_lookup_above at some measured point) become a
   * lookup of the measured points. */
  if (best.ok && !oom && info->lookup) {
    double rms = 0, max = 0;
    errors_of(k, &best.curve, pts, n, &rms, &max);
    infsim_calib_curve lk;
    int got = max > k_lookup_above ? fit_lookup(pts, n, info->hinge_var, &lk) : 0;
    if (got < 0) oom = 1;
    if (got > 0) best.curve = lk;
  }
  solver_free(sv);
  gsl_set_error_handler(old);
  if (oom) return infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", info->name);
  if (!best.ok)
    return infsim_fail(err, INFSIM_EINPUT, "%s: %zu points cannot determine a curve", info->name, n);
  out->curve = best.curve;
  out->points = n;
  errors_of(k, &out->curve, pts, n, &out->rms_rel_err, &out->max_rel_err);
  return INFSIM_OK;
}

typedef struct {
  const infsim_calib_point *p;
  int hinge_var;
} sort_ref;

static int cmp_point(const void *a, const void *b) {
  const sort_ref *x = a, *y = b;
  int h = x->hinge_var;
  if (x->p->x[h] != y->p->x[h]) return x->p->x[h] < y->p->x[h] ? -1 : 1;
  for (int v = 0; v < INFSIM_CALIB_VARS; v++)
    if (x->p->x[v] != y->p->x[v]) return x->p->x[v] < y->p->x[v] ? -1 : 1;
  return 0;
}

infsim_status infsim_calib_heldout(infsim_calib_kernel k, const infsim_calib_point *pts, size_t n,
                                   double *rel_err, size_t *n_err, infsim_error *err) {
  const infsim_calib_kernel_info *info = infsim_calib_kernel_get(k);
  *n_err = 0;
  sort_ref *refs = malloc((n ? n : 1) * sizeof *refs);
  infsim_calib_point *train = malloc((n ? n : 1) * sizeof *train);
  infsim_status st = INFSIM_OK;
  if (refs == NULL || train == NULL) {
    st = infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", info->name);
    goto done;
  }
  for (size_t i = 0; i < n; i++) refs[i] = (sort_ref){&pts[i], info->hinge_var};
  qsort(refs, n, sizeof *refs, cmp_point);
  size_t n_train = 0;
  for (size_t i = 0; i < n; i += 2) train[n_train++] = *refs[i].p;
  infsim_calib_fit_result fit;
  st = infsim_calib_fit_points(k, train, n_train, &fit, err);
  if (st != INFSIM_OK) goto done;
  for (size_t i = 1; i < n; i += 2) {
    const infsim_calib_point *p = refs[i].p;
    rel_err[(*n_err)++] = fabs(infsim_calib_curve_eval(&fit.curve, k, p->x) - p->t_ns) / p->t_ns;
  }
done:
  free(train);
  free(refs);
  return st;
}
