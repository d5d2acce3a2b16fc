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

/* Fits all kernels of one (profile, tp); adds held-out errors to `all`. */
static infsim_status fit_group(sqlite3 *db, const char *db_path, int64_t profile_id, const char *profile,
                               const char *model, int64_t tp, const char *now, FILE *report, err_list *all,
                               int *goal_met, infsim_error *err) {
  err_list group = {0};
  size_t group_points = 0;
  infsim_status st = INFSIM_OK;
  for (int k = 0; k < INFSIM_CALIB_KERNELS && st == INFSIM_OK; k++) {
    const infsim_calib_kernel_info *info = infsim_calib_kernel_get(k);
    infsim_calib_point *pts = NULL;
    size_t n = 0;
    st = read_points(db, db_path, profile_id, tp, info->name, &pts, &n, err);
    if (st != INFSIM_OK || n == 0) {
      free(pts);
      continue;
    }
    infsim_calib_fit_result fit;
    st = infsim_calib_fit_points(k, pts, n, &fit, err);
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
