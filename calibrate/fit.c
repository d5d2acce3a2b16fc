/*
** fit.c: least-squares curves for one kernel's measurements (calib.h).
**
** Model: t = c_const + sum_v c_v x_v, with the hinge variable h split into
** min(x_h, K) and max(x_h - K, 0) so the curve can bend once: a launch- or
** occupancy-bound stretch, then linear in bytes or FLOPs. For a fixed K the
** model is linear in its coefficients, so each candidate K is one weighted
** linear least-squares solve (gsl_multifit_wlinear, SVD based, so a column
** that the grid does not excite is dropped rather than blowing up).
** Weights are 1/t^2: we minimise relative error, since a 10 us kernel and a
** 10 ms one matter equally to an iteration-time estimate in percent.
** K is searched over the measured values of h, then refined on a log grid
** around the best one. Slopes are kept >= 0 by dropping the most negative
** slope's column and solving again (an active-set NNLS on the slopes), which
** keeps every curve monotone in every aggregate, as the simulator assumes.
** A second bend is kept only when it cuts the squared error by at least
** 30%: GEMM time steps with tile waves and some kernels switch algorithm
** with size, but a bend bought by noise alone would hurt the held-out
** error. (On the H100 data, 50% and 80% thresholds gave held-out medians
** within 0.1 point of 70%.)
*/
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_errno.h>
#include <gsl/gsl_multifit.h>

#include "calib_internal.h"

enum { MAX_COLS = 3 + INFSIM_CALIB_VARS, REFINE_STEPS = 24, ABOVE1 = INFSIM_CALIB_VARS, ABOVE2 };

/* Column j of the design: -1 the constant, v a variable's (below-hinge)
 * part, ABOVE1 / ABOVE2 the stretches of the hinge variable past each bend. */
typedef struct {
  int kind[MAX_COLS];
  int n;
} design;

typedef struct {
  int var;   /* -1: straight */
  double k1; /* first bend */
  double k2; /* second bend, > k1; 0: none */
} bends;

static double column_value(int kind, const double *x, const bends *b) {
  if (kind < 0) return 1.0;
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

/* One weighted solve over the columns of d. */
static int solve(const design *d, const infsim_calib_point *pts, size_t n, const bends *b, double *coef,
                 double *chisq) {
  if ((size_t)d->n > n) return 0;
  gsl_matrix *X = gsl_matrix_alloc(n, (size_t)d->n);
  gsl_vector *y = gsl_vector_alloc(n);
  gsl_vector *w = gsl_vector_alloc(n);
  gsl_vector *c = gsl_vector_alloc((size_t)d->n);
  gsl_matrix *cov = gsl_matrix_alloc((size_t)d->n, (size_t)d->n);
  gsl_multifit_linear_workspace *ws = gsl_multifit_linear_alloc(n, (size_t)d->n);
  int ok = X && y && w && c && cov && ws;
  if (ok) {
    for (size_t i = 0; i < n; i++) {
      for (int j = 0; j < d->n; j++)
        gsl_matrix_set(X, i, (size_t)j, column_value(d->kind[j], pts[i].x, b));
      gsl_vector_set(y, i, pts[i].t_ns);
      gsl_vector_set(w, i, 1.0 / (pts[i].t_ns * pts[i].t_ns));
    }
    ok = gsl_multifit_wlinear(X, w, y, c, cov, chisq, ws) == GSL_SUCCESS && isfinite(*chisq);
    for (int j = 0; ok && j < d->n; j++) {
      coef[j] = gsl_vector_get(c, (size_t)j);
      ok = isfinite(coef[j]);
    }
  }
  gsl_multifit_linear_free(ws);
  gsl_matrix_free(cov);
  gsl_vector_free(c);
  gsl_vector_free(w);
  gsl_vector_free(y);
  gsl_matrix_free(X);
  return ok;
}

/* Fits with the bends b fixed, slopes >= 0. */
static trial fit_fixed(infsim_calib_kernel k, const infsim_calib_point *pts, size_t n, bends b) {
  const infsim_calib_kernel_info *info = infsim_calib_kernel_get(k);
  trial t;
  memset(&t, 0, sizeof t);
  design d = {.n = 0};
  d.kind[d.n++] = -1;
  for (int v = 0; v < INFSIM_CALIB_VARS; v++)
    if (info->var_mask & (1u << v)) d.kind[d.n++] = v;
  if (b.var >= 0) d.kind[d.n++] = ABOVE1;
  if (b.var >= 0 && b.k2 > b.k1) d.kind[d.n++] = ABOVE2;
  double coef[MAX_COLS];
  for (;;) {
    double chisq = 0;
    if (!solve(&d, pts, n, &b, coef, &chisq)) return t;
    int worst = -1;
    for (int j = 1; j < d.n; j++)
      if (coef[j] < 0 && (worst < 0 || coef[j] < coef[worst])) worst = j;
    if (worst < 0) {
      t.curve.hinge_var = b.var;
      t.curve.hinge_at = b.var >= 0 ? b.k1 : 0;
      t.curve.hinge2_at = b.var >= 0 && b.k2 > b.k1 ? b.k2 : 0;
      for (int j = 0; j < d.n; j++) {
        if (d.kind[j] < 0) t.curve.c_const = coef[j];
        else if (d.kind[j] == ABOVE1) t.curve.c_above = coef[j];
        else if (d.kind[j] == ABOVE2) t.curve.c_above2 = coef[j];
        else t.curve.c_var[d.kind[j]] = coef[j];
      }
      t.chisq = chisq;
      t.ok = 1;
      return t;
    }
    memmove(&d.kind[worst], &d.kind[worst + 1], (size_t)(d.n - worst - 1) * sizeof d.kind[0]);
    d.n--;
  }
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

/* The additive piecewise fit (no second piece): straight, one bend, or two
 * bends. *oom set when memory ran out. */
static trial fit_additive(infsim_calib_kernel k, const infsim_calib_point *pts, size_t n, int *oom) {
  const infsim_calib_kernel_info *info = infsim_calib_kernel_get(k);
  int h = info->hinge_var;
  trial best = fit_fixed(k, pts, n, (bends){-1, 0, 0});
  /* Distinct values of the hinge variable; the bend goes strictly inside. */
  double *u = malloc((n ? n : 1) * sizeof *u);
  if (u == NULL) {
    *oom = 1;
    return best;
  }
  for (size_t i = 0; i < n; i++) u[i] = pts[i].x[h];
  qsort(u, n, sizeof *u, cmp_double);
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (m == 0 || u[i] != u[m - 1]) u[m++] = u[i];
  size_t best_i = 0;
  for (size_t i = 1; i + 1 < m; i++) {
    trial t = fit_fixed(k, pts, n, (bends){h, u[i], 0});
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
      trial t = fit_fixed(k, pts, n, (bends){h, at, 0});
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
      bends b = u[i] < k_one ? (bends){h, u[i], k_one} : (bends){h, k_one, u[i]};
      trial t = fit_fixed(k, pts, n, b);
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
        bends b = pass % 2 == 0 ? (bends){h, k1, x} : (bends){h, x, k2};
        if (!(b.k1 < b.k2)) continue;
        trial t = fit_fixed(k, pts, n, b);
        if (t.ok && t.chisq < two.chisq) two = t;
      }
    }
  }
  if (two.ok && best.ok && two.chisq < 0.7 * best.chisq) best = two;
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
 * variables. Where two limits bind in different corners of the grid (decode:
 * a per-request cost with many short requests, KV bandwidth with long ones)
 * no sum of per-variable terms fits, but the larger of two lines does.
 * Alternating fit (Magnani and Boyd, "Convex piecewise-linear fitting",
 * 2009): assign each point to the piece that predicts more, refit each piece
 * on its points, until the assignment settles. Kept only where it cuts the
 * squared relative error by at least 30%. */
static trial fit_with_alt(infsim_calib_kernel k, const infsim_calib_point *pts, size_t n, trial a, double start,
                          int *oom) {
  enum { MAX_ITER = 12, MIN_PIECE_POINTS = 4 };
  double base = predict_rel_chisq(k, &a.curve, pts, n);
  char *in_b = calloc(n ? n : 1, 1);
  infsim_calib_point *sub = malloc((n ? n : 1) * sizeof *sub);
  trial best = a;
  if (in_b == NULL || sub == NULL) {
    *oom = 1;
    goto done;
  }
  /* Start B on the points A underestimates by more than `start`. */
  for (size_t i = 0; i < n; i++) in_b[i] = infsim_calib_curve_eval(&a.curve, k, pts[i].x) < (1 - start) * pts[i].t_ns;
  infsim_calib_curve cur = a.curve;
  for (int iter = 0; iter < MAX_ITER; iter++) {
    size_t nb = 0, na = 0;
    for (size_t i = 0; i < n; i++) nb += in_b[i] != 0;
    na = n - nb;
    if (nb < MIN_PIECE_POINTS || na < MIN_PIECE_POINTS) break;
    size_t j = 0;
    for (size_t i = 0; i < n; i++)
      if (!in_b[i]) sub[j++] = pts[i];
    trial ta = fit_additive(k, sub, na, oom);
    j = 0;
    for (size_t i = 0; i < n; i++)
      if (in_b[i]) sub[j++] = pts[i];
    trial tb = fit_fixed(k, sub, nb, (bends){-1, 0, 0});
    if (*oom || !ta.ok || !tb.ok) break;
    cur = ta.curve;
    cur.has_alt = 1;
    cur.alt_const = tb.curve.c_const;
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
    for (size_t i = 0; i < n; i++) {
      double pa = infsim_calib_curve_eval(&only_a, k, pts[i].x);
      double pb = cur.alt_const;
      for (int v = 0; v < INFSIM_CALIB_VARS; v++) pb += cur.alt_var[v] * pts[i].x[v];
      char want = pb > pa;
      changed |= want != in_b[i];
      in_b[i] = want;
    }
    if (!changed) break;
  }
  if (!(best.curve.has_alt && best.chisq < 0.7 * base)) best = a;
done:
  free(sub);
  free(in_b);
  return best;
}

infsim_status infsim_calib_fit_points(infsim_calib_kernel k, const infsim_calib_point *pts, size_t n,
                                      infsim_calib_fit_result *out, infsim_error *err) {
  const infsim_calib_kernel_info *info = infsim_calib_kernel_get(k);
  memset(out, 0, sizeof *out);
  for (size_t i = 0; i < n; i++)
    if (!(pts[i].t_ns > 0) || !isfinite(pts[i].t_ns))
      return infsim_fail(err, INFSIM_EINPUT, "%s: point %zu: t_ns: not a positive finite time", info->name, i);
  gsl_error_handler_t *old = gsl_set_error_handler_off();
  int oom = 0;
  trial best = fit_additive(k, pts, n, &oom);
  if (best.ok && !oom) {
    best.chisq = predict_rel_chisq(k, &best.curve, pts, n);
    /* The alternating fit finds a local optimum: start it from several
     * splits and keep the best. */
    static const double k_starts[] = {0.03, 0.1, 0.2};
    trial one = best;
    for (size_t s = 0; s < sizeof k_starts / sizeof k_starts[0] && !oom; s++) {
      trial t = fit_with_alt(k, pts, n, one, k_starts[s], &oom);
      if (t.chisq < best.chisq) best = t;
    }
  }
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
