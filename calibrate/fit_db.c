/*
** fit_db.c: `calibrate fit`: fits every curve in a calibration DB.
**
** For each profile, TP degree and kernel: the curve fitted on all points is
** stored (it is what the simulator uses); the held-out error comes from a
** second fit on half the grid (even ranks along the hinge variable) tested
** on the other half, so it says how well the curve predicts shapes it was
** not fitted to, which is what the simulator asks of it. Goal (issue 6):
** held-out median <= 3% and p95 <= 8% per profile and TP degree.
** All fits of one run are one transaction.
**
** Whole layers (layer_prefill, layer_decode: measured as the cuda executor
** runs them) are fitted last, on what they take beyond the kernel curves of
** the same profile and TP composed at the same aggregates: the stored curve
** is that rest, which the cost model adds per layer. Their report line
** gives the composition error of the whole layer before (kernel curves
** alone, all points) and after (kernel curves + the rest fitted on the
** even points, tested on the odd ones); they stay out of the kernels'
** held-out summary.
*/
#include <float.h>
#include <math.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "calib_internal.h"

static const double k_goal_median = 0.03, k_goal_p95 = 0.08;


/* Points of one curve; *pts malloc'ed. */
static infsim_status read_points(sqlite3 *db, const char *db_path, int64_t profile_id, int64_t tp, const char *kernel,
                                 infsim_calib_point **pts_out, size_t *n_out, infsim_error *err) {
  *pts_out = NULL;
  *n_out = 0;
  sqlite3_stmt *q = NULL;
  if (sqlite3_prepare_v2(db,
                         "SELECT tokens, pairs, requests, context_tokens, partials, bytes, median_ns, id, source_line"
                         " FROM measurement"
                         " WHERE profile_id = ?1 AND tp = ?2 AND kernel = ?3 ORDER BY id",
                         -1, &q, NULL) != SQLITE_OK)
    return calib_sql_fail(db, db_path, err);
  sqlite3_bind_int64(q, 1, profile_id);
  sqlite3_bind_int64(q, 2, tp);
  sqlite3_bind_text(q, 3, kernel, -1, SQLITE_STATIC);
  infsim_calib_point *pts = NULL;
  size_t n = 0, cap = 0;
  int rc;
  while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
    if (n == cap) {
      cap = cap ? 2 * cap : 64;
      infsim_calib_point *g = realloc(pts, cap * sizeof *pts);
      if (g == NULL) {
        free(pts);
        sqlite3_finalize(q);
        return infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", db_path);
      }
      pts = g;
    }
    /* The DB may have been written by an older load or by hand: a value no
     * load accepts is named by its row, not left to fail inside the fit. */
    const char *bad = NULL;
    int bad_col = 0;
    for (int v = 0; v < INFSIM_CALIB_VARS && bad == NULL; v++) {
      int64_t x = sqlite3_column_int64(q, v);
      if (sqlite3_column_type(q, v) != SQLITE_INTEGER || x < 0) bad = "not a non-negative integer", bad_col = v;
      pts[n].x[v] = (double)x;
    }
    pts[n].t_ns = sqlite3_column_double(q, INFSIM_CALIB_VARS);
    if (bad == NULL && !(isfinite(pts[n].t_ns) && pts[n].t_ns >= DBL_MIN))
      bad = "not a positive normal number", bad_col = INFSIM_CALIB_VARS;
    if (bad != NULL) {
      infsim_status st = infsim_fail(err, INFSIM_EINPUT, "%s: measurement id %lld (raw line %lld): %s: %s (%.17g)",
                                     db_path, (long long)sqlite3_column_int64(q, INFSIM_CALIB_VARS + 1),
                                     (long long)sqlite3_column_int64(q, INFSIM_CALIB_VARS + 2),
                                     sqlite3_column_name(q, bad_col), bad, sqlite3_column_double(q, bad_col));
      free(pts);
      sqlite3_finalize(q);
      return st;
    }
    n++;
  }
  sqlite3_finalize(q);
  if (rc != SQLITE_DONE) {
    free(pts);
    return calib_sql_fail(db, db_path, err);
  }
  *pts_out = pts;
  *n_out = n;
  return INFSIM_OK;
}

static infsim_status store_fit(sqlite3 *db, const char *db_path, int64_t profile_id, int64_t tp, const char *kernel,
                               const infsim_calib_fit_result *fit, double ho_median, double ho_p95, const char *now,
                               infsim_error *err) {
  sqlite3_stmt *q = NULL;
  if (sqlite3_prepare_v2(db,
                         "INSERT OR REPLACE INTO fit (profile_id, tp, kernel, c_const, c_tokens, c_pairs, c_requests,"
                         " c_context_tokens, c_partials, c_bytes, hinge_var, hinge_at, c_above, points, rms_rel_err,"
                         " max_rel_err, heldout_median, heldout_p95, fitted_at, hinge2_at, c_above2, has_alt,"
                         " alt_const, alt_tokens, alt_pairs, alt_requests, alt_context_tokens, alt_partials, alt_bytes,"
                         " ratio_terms, alt_ratio_terms, knots, tail_cap, c_tail, den_hinge_at, c_den_above, head_cap, c_head)"
                         " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,"
                         " ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35, ?36, ?37, ?38)",
                         -1, &q, NULL) != SQLITE_OK)
    return calib_sql_fail(db, db_path, err);
  const infsim_calib_curve *c = &fit->curve;
  sqlite3_bind_int64(q, 1, profile_id);
  sqlite3_bind_int64(q, 2, tp);
  sqlite3_bind_text(q, 3, kernel, -1, SQLITE_STATIC);
  sqlite3_bind_double(q, 4, c->c_const);
  for (int v = 0; v < INFSIM_CALIB_VARS; v++) sqlite3_bind_double(q, 5 + v, c->c_var[v]);
  sqlite3_bind_text(q, 11, c->hinge_var >= 0 ? infsim_calib_var_name(c->hinge_var) : "", -1, SQLITE_STATIC);
  sqlite3_bind_double(q, 12, c->hinge_at);
  sqlite3_bind_double(q, 13, c->c_above);
  sqlite3_bind_int64(q, 14, (int64_t)fit->points);
  sqlite3_bind_double(q, 15, fit->rms_rel_err);
  sqlite3_bind_double(q, 16, fit->max_rel_err);
  sqlite3_bind_double(q, 17, ho_median);
  sqlite3_bind_double(q, 18, ho_p95);
  sqlite3_bind_text(q, 19, now, -1, SQLITE_STATIC);
  sqlite3_bind_double(q, 20, c->hinge2_at);
  sqlite3_bind_double(q, 21, c->c_above2);
  sqlite3_bind_int(q, 22, c->has_alt);
  sqlite3_bind_double(q, 23, c->alt_const);
  for (int v = 0; v < INFSIM_CALIB_VARS; v++) sqlite3_bind_double(q, 24 + v, c->alt_var[v]);
  char knots[INFSIM_CALIB_MAX_KNOTS * 52 + 1], ratio[INFSIM_CALIB_MAX_RBENDS * 52 + 32];
  char alt_ratio[INFSIM_CALIB_MAX_RBENDS * 52 + 32];
  if (!infsim_calib_knots_format(c, knots, sizeof knots) || !infsim_calib_ratio_format(&c->ratio, ratio, sizeof ratio) ||
      !infsim_calib_ratio_format(&c->alt_ratio, alt_ratio, sizeof alt_ratio)) {
    sqlite3_finalize(q);
    return infsim_fail(err, INFSIM_EINPUT, "%s: fit: kernel %s: knots do not fit the text column", db_path, kernel);
  }
  sqlite3_bind_text(q, 30, ratio, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(q, 31, alt_ratio, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(q, 32, knots, -1, SQLITE_TRANSIENT);
  sqlite3_bind_double(q, 33, c->tail_cap);
  sqlite3_bind_double(q, 34, c->c_tail);
  sqlite3_bind_double(q, 35, c->den_hinge_at);
  sqlite3_bind_double(q, 36, c->c_den_above);
  sqlite3_bind_double(q, 37, c->head_cap);
  sqlite3_bind_double(q, 38, c->c_head);
  int rc = sqlite3_step(q);
  sqlite3_finalize(q);
  return rc == SQLITE_DONE ? INFSIM_OK : calib_sql_fail(db, db_path, err);
}

typedef struct {
  double *v;
  size_t n, cap;
} err_list;

static int err_list_add(err_list *l, const double *v, size_t n) {
  if (l->n + n > l->cap) {
    size_t cap = l->cap ? l->cap : 256;
    while (cap < l->n + n) cap *= 2;
    double *g = realloc(l->v, cap * sizeof *g);
    if (g == NULL) return 0;
    l->v = g;
    l->cap = cap;
  }
  memcpy(l->v + l->n, v, n * sizeof *v);
  l->n += n;
  return 1;
}

/* Median and p95 of a layer's relative errors before the fit's term
 * (every point) and after it (held-out points; 0 when none). */
typedef struct {
  double b50, b95, a50, a95;
} error_percentiles;

static error_percentiles errors_before_after(double *before, size_t n, double *after, size_t n_after) {
  error_percentiles e = {infsim_calib_percentile(before, n, 50), infsim_calib_percentile(before, n, 95), 0, 0};
  if (n_after > 0) {
    e.a50 = infsim_calib_percentile(after, n_after, 50);
    e.a95 = infsim_calib_percentile(after, n_after, 95);
  }
  return e;
}

static int is_layer(int k) { return k == INFSIM_CALIB_LAYER_PREFILL || k == INFSIM_CALIB_LAYER_DECODE; }

/* The kernel curves composed as the cost model composes one layer of a
 * prompt (tokens, pairs) or of a decode batch (requests, context). */
static double composed_ns(const infsim_calib_curve *fitted, int k, const double *x) {
  double g[INFSIM_CALIB_VARS] = {0};
  g[INFSIM_CALIB_TOKENS] = k == INFSIM_CALIB_LAYER_PREFILL ? x[INFSIM_CALIB_TOKENS] : x[INFSIM_CALIB_REQUESTS];
  double t = 0;
  for (int j = INFSIM_CALIB_GEMM_QKV; j <= INFSIM_CALIB_GEMM_DOWN; j++) t += infsim_calib_curve_eval(&fitted[j], j, g);
  int attn = k == INFSIM_CALIB_LAYER_PREFILL ? INFSIM_CALIB_PREFILL_ATTN : INFSIM_CALIB_DECODE_ATTN;
  return t + infsim_calib_curve_eval(&fitted[attn], attn, x);
}

/* A whole-layer kernel: pts (the layers' times) become the rests beyond
 * the composed kernel curves; before[] and after[] get the whole layer's
 * relative composition error without the rest (every point) and with a
 * rest fitted on the even points (the odd ones). */
static infsim_status layer_rests(int k, const infsim_calib_curve *fitted, infsim_calib_point *pts, size_t n,
                                 double *before, double *after, size_t *n_after, infsim_error *err) {
  double *layer = malloc(n * sizeof *layer), *comp = malloc(n * sizeof *comp);
  infsim_calib_point *even = malloc(n * sizeof *even);
  if (!layer || !comp || !even) {
    free(layer), free(comp), free(even);
    return infsim_fail(err, INFSIM_ENOMEM, "calibrate fit: out of memory");
  }
  size_t n_even = 0;
  for (size_t i = 0; i < n; i++) {
    layer[i] = pts[i].t_ns;
    comp[i] = composed_ns(fitted, k, pts[i].x);
    before[i] = fabs(comp[i] - layer[i]) / layer[i];
    /* The fit weighs points by 1/t^2: a rest near 0 (the kernels already
     * account for nearly all of the layer) is floored at 1% of the layer
     * so that it does not outweigh the others. */
    pts[i].t_ns = fmax(layer[i] - comp[i], 0.01 * layer[i]);
    if (i % 2 == 0) even[n_even++] = pts[i];
  }
  *n_after = 0;
  infsim_status st = INFSIM_OK;
  infsim_calib_fit_result half;
  /* Too few even points to fit the rest on (a tiny grid): no held-out figure. */
  if (n_even >= 3 && infsim_calib_fit_points(k, even, n_even, &half, NULL) == INFSIM_OK) {
    for (size_t i = 1; i < n; i += 2)
      after[(*n_after)++] = fabs(comp[i] + infsim_calib_curve_eval(&half.curve, k, pts[i].x) - layer[i]) / layer[i];
  }
  free(layer), free(comp), free(even);
  return st;
}

/* The profile's model heads (query, KV); nonzero when not found. */
static int profile_heads(sqlite3 *db, int64_t profile_id, int64_t *heads, int64_t *kv_heads) {
  sqlite3_stmt *q = NULL;
  int bad = 1;
  if (sqlite3_prepare_v2(db, "SELECT heads, kv_heads FROM profile WHERE id = ?1", -1, &q, NULL) == SQLITE_OK) {
    sqlite3_bind_int64(q, 1, profile_id);
    if (sqlite3_step(q) == SQLITE_ROW) {
      *heads = sqlite3_column_int64(q, 0);
      *kv_heads = sqlite3_column_int64(q, 1);
      bad = 0;
    }
  }
  sqlite3_finalize(q);
  return bad;
}

/* Weighted (1/t^2) least-squares line t = a + b w through pts (x[TOKENS]
 * = w), a and b >= 0 (a line through 0 when the free one starts below). */
static void fit_line(const infsim_calib_point *pts, size_t n, infsim_calib_fit_result *out) {
  double sw = 0, swx = 0, swy = 0, swxx = 0, swxy = 0;
  for (size_t i = 0; i < n; i++) {
    double w = 1.0 / (pts[i].t_ns * pts[i].t_ns), x = pts[i].x[INFSIM_CALIB_TOKENS], y = pts[i].t_ns;
    sw += w, swx += w * x, swy += w * y, swxx += w * x * x, swxy += w * x * y;
  }
  double det = sw * swxx - swx * swx, a = 0, b = 0;
  if (det > 0) {
    a = (swxx * swy - swx * swxy) / det;
    b = (sw * swxy - swx * swy) / det;
  }
  if (!(det > 0) || a < 0 || b < 0) {
    a = 0;
    b = swxx > 0 ? fmax(swxy / swxx, 0.0) : 0.0;
  }
  memset(out, 0, sizeof *out);
  out->curve.hinge_var = -1;
  out->curve.c_const = a;
  out->curve.c_var[INFSIM_CALIB_TOKENS] = b;
  out->points = n;
  double ss = 0;
  for (size_t i = 0; i < n; i++) {
    double e = fabs(a + b * pts[i].x[INFSIM_CALIB_TOKENS] - pts[i].t_ns) / pts[i].t_ns;
    ss += e * e;
    if (e > out->max_rel_err) out->max_rel_err = e;
  }
  out->rms_rel_err = n ? sqrt(ss / (double)n) : 0;
}

/* Skewed decode layers (layer_decode_long): each measured layer less its
 * GEMMs and decode rest is the layer's attention; where that exceeds the
 * decode curve at the batch's totals (and stays under the curve with every
 * request as long), the longest request's CTAs bound it, and the line in
 * the tokens one of them walks is fitted to those points.
 * before[]: the layer priced without the term (every point); after[]: with
 * a line fitted on the even points, on the odd ones. */
static infsim_status long_layers(const infsim_calib_curve *fitted, const infsim_calib_split_shape *shape,
                                 infsim_calib_point *pts, size_t n, double *before, double *after, size_t *n_after,
                                 infsim_calib_fit_result *fit, infsim_error *err) {
  double *layer = malloc(n * sizeof *layer), *base = malloc(n * sizeof *base), *curve = malloc(n * sizeof *curve);
  double *uniform = malloc(n * sizeof *uniform);
  infsim_calib_point *all = malloc(n * sizeof *all), *even = malloc(n * sizeof *even);
  if (!layer || !base || !curve || !uniform || !all || !even) {
    free(layer), free(base), free(curve), free(uniform), free(all), free(even);
    return infsim_fail(err, INFSIM_ENOMEM, "calibrate fit: out of memory");
  }
  size_t n_all = 0, n_even = 0;
  for (size_t i = 0; i < n; i++) {
    const double *x = pts[i].x;
    double g[INFSIM_CALIB_VARS] = {0};
    g[INFSIM_CALIB_TOKENS] = x[INFSIM_CALIB_REQUESTS];
    g[INFSIM_CALIB_REQUESTS] = x[INFSIM_CALIB_REQUESTS];
    double d[INFSIM_CALIB_VARS] = {0};
    d[INFSIM_CALIB_REQUESTS] = x[INFSIM_CALIB_REQUESTS];
    d[INFSIM_CALIB_CONTEXT_TOKENS] = x[INFSIM_CALIB_CONTEXT_TOKENS];
    double gemm = 0;
    for (int j = INFSIM_CALIB_GEMM_QKV; j <= INFSIM_CALIB_GEMM_DOWN; j++)
      gemm += infsim_calib_curve_eval(&fitted[j], j, g);
    base[i] = gemm + infsim_calib_curve_eval(&fitted[INFSIM_CALIB_LAYER_DECODE], INFSIM_CALIB_LAYER_DECODE, g);
    curve[i] = infsim_calib_curve_eval(&fitted[INFSIM_CALIB_DECODE_ATTN], INFSIM_CALIB_DECODE_ATTN, d);
    /* The cost model's cap: the batch with every request as long. */
    d[INFSIM_CALIB_CONTEXT_TOKENS] = x[INFSIM_CALIB_REQUESTS] * x[INFSIM_CALIB_TOKENS];
    uniform[i] = infsim_calib_curve_eval(&fitted[INFSIM_CALIB_DECODE_ATTN], INFSIM_CALIB_DECODE_ATTN, d);
    layer[i] = pts[i].t_ns;
    before[i] = fabs(base[i] + curve[i] - layer[i]) / layer[i];
    infsim_calib_split_shape sh = *shape;
    sh.sm_count = (int64_t)x[INFSIM_CALIB_PARTIALS];
    int64_t w = infsim_calib_longest_cta_tokens(&sh, (int64_t)x[INFSIM_CALIB_REQUESTS],
                                                (int64_t)x[INFSIM_CALIB_TOKENS], 1);
    double attn = layer[i] - base[i];
    pts[i].x[INFSIM_CALIB_TOKENS] = (double)w; /* the points become (tokens walked, attention) */
    pts[i].t_ns = attn;
    /* Points at the curve or at the cap (every request as long) say
     * nothing of the line: kept 1% clear of both. */
    if (w > 0 && attn > 1.01 * curve[i] && attn < 0.99 * uniform[i]) {
      all[n_all++] = pts[i];
      if (i % 2 == 0) even[n_even++] = pts[i];
    }
  }
  *n_after = 0;
  if (n_even >= 2) {
    infsim_calib_fit_result half;
    fit_line(even, n_even, &half);
    for (size_t i = 1; i < n; i += 2) {
      double line = infsim_calib_curve_eval(&half.curve, INFSIM_CALIB_LAYER_DECODE_LONG, pts[i].x);
      after[(*n_after)++] = fabs(base[i] + fmax(curve[i], fmin(line, uniform[i])) - layer[i]) / layer[i];
    }
  }
  fit_line(all, n_all, fit);
  free(layer), free(base), free(curve), free(uniform), free(all), free(even);
  return INFSIM_OK;
}

/* Fits all kernels of one (profile, tp); adds held-out errors to `all`. */
static infsim_status fit_group(sqlite3 *db, const char *db_path, int64_t profile_id, const char *profile,
                               const char *model, int64_t tp, const char *now, FILE *report, err_list *all,
                               int *goal_met, infsim_error *err) {
  err_list group = {0};
  size_t group_points = 0;
  infsim_status st = INFSIM_OK;
  infsim_calib_curve fitted[INFSIM_CALIB_KERNELS];
  unsigned have = 0;
  for (int k = 0; k < INFSIM_CALIB_KERNELS && st == INFSIM_OK; k++) {
    const infsim_calib_kernel_info *info = infsim_calib_kernel_get(k);
    infsim_calib_point *pts = NULL;
    size_t n = 0;
    st = read_points(db, db_path, profile_id, tp, info->name, &pts, &n, err);
    int attn = k == INFSIM_CALIB_LAYER_PREFILL ? INFSIM_CALIB_PREFILL_ATTN : INFSIM_CALIB_DECODE_ATTN;
    unsigned needs = 0xfu << INFSIM_CALIB_GEMM_QKV | 1u << attn;
    /* A layer needs the curves it is composed of (and two points). */
    if (st != INFSIM_OK || n == 0 || (is_layer(k) && ((have & needs) != needs || n < 2))) {
      free(pts);
      continue;
    }
    if (k == INFSIM_CALIB_LAYER_DECODE_LONG) {
      /* After the decode layers' rest, which it builds on; skipped without
       * it, or without the GPU's multiprocessors or the model's heads. */
      int64_t heads = 0, kv_heads = 0;
      if (!(have & (1u << INFSIM_CALIB_LAYER_DECODE)) || (have & needs) != needs || n < 2 ||
          profile_heads(db, profile_id, &heads, &kv_heads) != 0 || kv_heads <= 0) {
        free(pts);
        continue;
      }
      infsim_calib_split_shape shape = {heads / tp, kv_heads / tp, 0};
      double *before = malloc(n * sizeof *before), *after = malloc((n / 2 + 1) * sizeof *after);
      size_t n_after = 0;
      infsim_calib_fit_result fit;
      if (!before || !after) st = infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", db_path);
      if (st == INFSIM_OK) st = long_layers(fitted, &shape, pts, n, before, after, &n_after, &fit, err);
      error_percentiles e = {0};
      if (st == INFSIM_OK) {
        e = errors_before_after(before, n, after, n_after);
        st = store_fit(db, db_path, profile_id, tp, info->name, &fit, e.a50, e.a95, now, err);
      }
      if (st == INFSIM_OK && report)
        fprintf(report,
                "%-14s %-11s %3lld %-13s %6zu skewed decode layers vs composed: median %.2f%%, p95 %.2f%%; with the "
                "longest CTA (%.4g + %.4g ns/token walked; held out, %zu points): median %.2f%%, p95 %.2f%%\n",
                profile, model, (long long)tp, info->name, n, 100 * e.b50, 100 * e.b95, fit.curve.c_const,
                fit.curve.c_var[INFSIM_CALIB_TOKENS], n_after, 100 * e.a50, 100 * e.a95);
      free(before);
      free(after);
      free(pts);
      continue;
    }
    double *before = NULL;
    if (is_layer(k)) {
      before = malloc(n * sizeof *before);
      double *after = malloc((n / 2 + 1) * sizeof *after);
      size_t n_after = 0;
      if (!before || !after) st = infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", db_path);
      if (st == INFSIM_OK) st = layer_rests(k, fitted, pts, n, before, after, &n_after, err);
      infsim_calib_fit_result fit;
      if (st == INFSIM_OK) st = infsim_calib_fit_points(k, pts, n, &fit, err);
      if (st != INFSIM_OK && err != NULL) {
        infsim_error inner = *err;
        st = infsim_fail(err, inner.status, "%s: profile %s, model %s, tp %lld: %s", db_path, profile, model,
                         (long long)tp, inner.msg);
      }
      error_percentiles e = {0};
      if (st == INFSIM_OK) {
        e = errors_before_after(before, n, after, n_after);
        st = store_fit(db, db_path, profile_id, tp, info->name, &fit, e.a50, e.a95, now, err);
      }
      if (st == INFSIM_OK) {
        fitted[k] = fit.curve;
        have |= 1u << k;
      }
      if (st == INFSIM_OK && report)
        fprintf(report,
                "%-14s %-11s %3lld %-13s %6zu whole layer vs composed kernels: median %.2f%%, p95 %.2f%%; with the "
                "fitted rest (held out, %zu points): median %.2f%%, p95 %.2f%%\n",
                profile, model, (long long)tp, info->name, n, 100 * e.b50, 100 * e.b95, n_after, 100 * e.a50, 100 * e.a95);
      free(before);
      free(after);
      free(pts);
      continue;
    }
    infsim_calib_fit_result fit;
    st = infsim_calib_fit_points(k, pts, n, &fit, err);
    if (st == INFSIM_OK) {
      fitted[k] = fit.curve;
      have |= 1u << k;
    }
    double *ho = malloc((n / 2 + 1) * sizeof *ho);
    size_t n_ho = 0;
    if (st == INFSIM_OK && ho == NULL) st = infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", db_path);
    /* Too few points to split: the held-out error is the in-sample one. */
    if (st == INFSIM_OK && n >= 8) {
      st = infsim_calib_heldout(k, pts, n, ho, &n_ho, err);
    } else if (st == INFSIM_OK) {
      ho[0] = fit.max_rel_err;
      n_ho = 1;
    }
    if (st != INFSIM_OK && err != NULL) {
      infsim_error inner = *err;
      st = infsim_fail(err, inner.status, "%s: profile %s, model %s, tp %lld: %s", db_path, profile, model,
                       (long long)tp, inner.msg);
    }
    if (st == INFSIM_OK && (!err_list_add(&group, ho, n_ho) || !err_list_add(all, ho, n_ho)))
      st = infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", db_path);
    double med = 0, p95 = 0;
    if (st == INFSIM_OK) {
      med = infsim_calib_percentile(ho, n_ho, 50);
      p95 = infsim_calib_percentile(ho, n_ho, 95);
      st = store_fit(db, db_path, profile_id, tp, info->name, &fit, med, p95, now, err);
    }
    if (st == INFSIM_OK && report) {
      const infsim_calib_curve *c = &fit.curve;
      char hinge[96] = "-";
      if (c->n_knots > 0)
        snprintf(hinge, sizeof hinge, "lookup:%d", c->n_knots);
      else if (c->hinge_var >= 0 && c->hinge2_at > c->hinge_at)
        snprintf(hinge, sizeof hinge, "%s@%.4g,%.4g", infsim_calib_var_name(c->hinge_var), c->hinge_at, c->hinge2_at);
      else if (c->hinge_var >= 0)
        snprintf(hinge, sizeof hinge, "%s@%.4g", infsim_calib_var_name(c->hinge_var), c->hinge_at);
      /* Shape terms: g(r) with its bends, tail, bend in the denominator, head. */
      int any_g = 0;
      for (int j = 0; j <= c->ratio.n_bends; j++) any_g |= c->ratio.slope[j] > 0;
      if (any_g) {
        size_t used = strlen(hinge);
        snprintf(hinge + used, sizeof hinge - used, " +r/%d", c->ratio.n_bends);
      }
      if (c->tail_cap > 0 && c->c_tail > 0) strncat(hinge, " +tail", sizeof hinge - strlen(hinge) - 1);
      if (c->den_hinge_at > 0 && c->c_den_above > 0) strncat(hinge, " +wave", sizeof hinge - strlen(hinge) - 1);
      if (c->head_cap > 0 && c->c_head > 0) strncat(hinge, " +head", sizeof hinge - strlen(hinge) - 1);
      if (c->has_alt) strncat(hinge, " +max", sizeof hinge - strlen(hinge) - 1);
      fprintf(report, "%-14s %-11s %3lld %-13s %6zu %-40s %8.2f%% %8.2f%% %8.2f%% %8.2f%%\n", profile, model,
              (long long)tp, info->name, n, hinge, 100 * fit.rms_rel_err, 100 * fit.max_rel_err, 100 * med,
              100 * p95);
    }
    group_points += n;
    free(ho);
    free(pts);
  }
  if (st == INFSIM_OK && group.n > 0) {
    double med = infsim_calib_percentile(group.v, group.n, 50);
    double p95 = infsim_calib_percentile(group.v, group.n, 95);
    if (med > k_goal_median || p95 > k_goal_p95) *goal_met = 0;
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(db,
                           "INSERT OR REPLACE INTO fit_summary (profile_id, tp, points, heldout_points,"
                           " heldout_median, heldout_p95, fitted_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                           -1, &q, NULL) != SQLITE_OK)
      st = calib_sql_fail(db, db_path, err);
    if (st == INFSIM_OK) {
      sqlite3_bind_int64(q, 1, profile_id);
      sqlite3_bind_int64(q, 2, tp);
      sqlite3_bind_int64(q, 3, (int64_t)group_points);
      sqlite3_bind_int64(q, 4, (int64_t)group.n);
      sqlite3_bind_double(q, 5, med);
      sqlite3_bind_double(q, 6, p95);
      sqlite3_bind_text(q, 7, now, -1, SQLITE_STATIC);
      if (sqlite3_step(q) != SQLITE_DONE) st = calib_sql_fail(db, db_path, err);
    }
    sqlite3_finalize(q);
    if (st == INFSIM_OK && report)
      fprintf(report, "%-14s %-11s %3lld %-13s held-out error over %zu points: median %.2f%%, p95 %.2f%% (%s)\n",
              profile, model, (long long)tp, "all", group.n, 100 * med, 100 * p95,
              med <= k_goal_median && p95 <= k_goal_p95 ? "goal met" : "goal missed");
  }
  free(group.v);
  return st;
}

infsim_status infsim_calib_fit_db(const char *db_path, FILE *report, int *goal_met, infsim_error *err) {
  *goal_met = 1;
  sqlite3 *db = NULL;
  infsim_status st = calib_db_open(db_path, 0, &db, err);
  if (st != INFSIM_OK) return st;
  char now[CALIB_TIME_BYTES];
  calib_utc_now(now);
  if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
    st = calib_sql_fail(db, db_path, err);
    sqlite3_close(db);
    return st;
  }
  sqlite3_stmt *groups = NULL;
  if (sqlite3_prepare_v2(db,
                         "SELECT DISTINCT p.id, p.name, p.model, m.tp FROM profile p JOIN measurement m"
                         " ON m.profile_id = p.id ORDER BY p.name, p.model, m.tp",
                         -1, &groups, NULL) != SQLITE_OK)
    st = calib_sql_fail(db, db_path, err);
  if (st == INFSIM_OK && report)
    fprintf(report, "%-14s %-11s %3s %-13s %6s %-40s %9s %9s %9s %9s\n", "profile", "model", "tp", "kernel",
            "points", "hinge", "fit_rms", "fit_max", "ho_med", "ho_p95");
  err_list all = {0};
  int groups_seen = 0, rc = SQLITE_DONE;
  while (st == INFSIM_OK && (rc = sqlite3_step(groups)) == SQLITE_ROW) {
    char profile[CALIB_TEXT_BYTES], model[CALIB_TEXT_BYTES];
    snprintf(profile, sizeof profile, "%s", (const char *)sqlite3_column_text(groups, 1));
    snprintf(model, sizeof model, "%s", (const char *)sqlite3_column_text(groups, 2));
    st = fit_group(db, db_path, sqlite3_column_int64(groups, 0), profile, model, sqlite3_column_int64(groups, 3),
                   now, report, &all, goal_met, err);
    groups_seen++;
  }
  if (st == INFSIM_OK && rc != SQLITE_DONE) st = calib_sql_fail(db, db_path, err);
  sqlite3_finalize(groups);
  if (st == INFSIM_OK && groups_seen == 0)
    st = infsim_fail(err, INFSIM_EINPUT, "%s: measurement: no measurements to fit (run `infsim calibrate load`)",
                     db_path);
  if (st == INFSIM_OK && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) st = calib_sql_fail(db, db_path, err);
  if (st != INFSIM_OK) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  if (st == INFSIM_OK && report && all.n > 0) {
    double med = infsim_calib_percentile(all.v, all.n, 50);
    double p95 = infsim_calib_percentile(all.v, all.n, 95);
    fprintf(report, "held-out error, all curves: median %.2f%%, p95 %.2f%% over %zu points (goal: median <= 3%%, "
                    "p95 <= 8%% per profile and tp: %s)\n",
            100 * med, 100 * p95, all.n, *goal_met ? "met" : "missed");
  }
  free(all.v);
  sqlite3_close(db);
  return st;
}
