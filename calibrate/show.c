/*
** show.c: `calibrate show`: measured against fitted, as a table and plots.
**
** The table has one line per measurement with the curve's prediction and
** the relative error; the plots (gnuplot, PNG) put each kernel's measured
** medians and fitted values against the kernel's hinge aggregate on log
** axes, one file per profile, model, TP degree and kernel. The data and
** the script are written beside the PNG so a plot can be redrawn or
** restyled without the DB.
*/
#include <math.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "calib_internal.h"
#include "infsim/atomic_file.h"


/* Draws one PNG from the data file through gnuplot. */
static infsim_status plot_one(const char *plot_dir, const char *stem, const char *title, const char *xlabel,
                              infsim_error *err) {
  char script_path[INFSIM_PATH_BYTES];
  snprintf(script_path, sizeof script_path, "%s/%s.gp", plot_dir, stem);
  infsim_atomic_file af;
  infsim_status st = infsim_atomic_open(&af, script_path, err);
  if (st != INFSIM_OK) return st;
  fprintf(af.fp,
          "set terminal pngcairo size 900,600\n"
          "set output '%s/%s.png'\n"
          "set title '%s' noenhanced\n"
          "set xlabel '%s' noenhanced\nset ylabel 'time per layer (us)'\n"
          "set logscale xy\nset grid\nset key top left\n"
          "plot '%s/%s.dat' using 1:($2/1000) with points pt 7 ps 0.8 title 'measured (median)', \\\n"
          "     '' using 1:($3/1000) with points pt 6 ps 1.2 title 'fitted'\n",
          plot_dir, stem, title, xlabel, plot_dir, stem);
  st = infsim_atomic_commit(&af, err);
  if (st != INFSIM_OK) return st;
  char cmd[2 * INFSIM_PATH_BYTES];
  snprintf(cmd, sizeof cmd, "gnuplot '%s' 2>&1", script_path);
  int rc = system(cmd);
  if (rc == -1 || !WIFEXITED(rc) || WEXITSTATUS(rc) != 0)
    return infsim_fail(err, INFSIM_ERUN, "%s: gnuplot failed (is gnuplot installed?)", script_path);
  return INFSIM_OK;
}

infsim_status infsim_calib_show(const char *db_path, const char *plot_dir, FILE *out, infsim_error *err) {
  sqlite3 *db = NULL;
  infsim_status st = calib_db_open(db_path, 0, &db, err);
  if (st != INFSIM_OK) return st;
  if (plot_dir) st = infsim_make_dirs(plot_dir, err);
  sqlite3_stmt *curves = NULL, *pts = NULL;
  if (st == INFSIM_OK &&
      (sqlite3_prepare_v2(db,
                          "SELECT p.id, p.name, p.model, p.gpu, f.tp, f.kernel, " INFSIM_CALIB_CURVE_COLUMNS
                          ", f.heldout_median, f.heldout_p95 FROM fit f JOIN profile p ON p.id = f.profile_id"
                          " ORDER BY p.name, p.model, f.tp, f.kernel",
                          -1, &curves, NULL) != SQLITE_OK ||
       sqlite3_prepare_v2(db,
                          "SELECT tokens, pairs, requests, context_tokens, partials, bytes, local_fraction, median_ns,"
                          " spread_ns FROM measurement WHERE profile_id = ?1 AND tp = ?2 AND kernel = ?3"
                          " ORDER BY tokens, pairs, requests, context_tokens, partials, bytes",
                          -1, &pts, NULL) != SQLITE_OK))
    st = calib_sql_fail(db, db_path, err);
  if (st == INFSIM_OK)
    fprintf(out, "%-14s %-11s %3s %-13s %10s %14s %9s %10s %12s %6s %12s %12s %12s %8s\n", "profile", "model", "tp",
            "kernel", "tokens", "pairs", "requests", "context", "partials", "local", "bytes", "measured_ns",
            "fitted_ns", "error");
  int shown = 0, rc = SQLITE_DONE;
  while (st == INFSIM_OK && (rc = sqlite3_step(curves)) == SQLITE_ROW) {
    int64_t profile_id = sqlite3_column_int64(curves, 0);
    char profile[CALIB_TEXT_BYTES], model[CALIB_TEXT_BYTES], gpu[CALIB_TEXT_BYTES], kname[CALIB_TEXT_BYTES];
    snprintf(profile, sizeof profile, "%s", (const char *)sqlite3_column_text(curves, 1));
    snprintf(model, sizeof model, "%s", (const char *)sqlite3_column_text(curves, 2));
    snprintf(gpu, sizeof gpu, "%s", (const char *)sqlite3_column_text(curves, 3));
    int64_t tp = sqlite3_column_int64(curves, 4);
    snprintf(kname, sizeof kname, "%s", (const char *)sqlite3_column_text(curves, 5));
    int k = infsim_calib_kernel_from_name(kname);
    if (k < 0) continue;
    infsim_calib_curve c;
    char why[256];
    if (!infsim_calib_curve_from_row(curves, 6, &c, why, sizeof why)) {
      st = infsim_fail(err, INFSIM_EINPUT, "%s: fit: %s, %s, tp %lld, kernel %s: %s", db_path, profile, model,
                       (long long)tp, kname, why);
      break;
    }
    double ho_med = sqlite3_column_double(curves, 6 + INFSIM_CALIB_CURVE_NCOLS);
    double ho_p95 = sqlite3_column_double(curves, 7 + INFSIM_CALIB_CURVE_NCOLS);
    const infsim_calib_kernel_info *info = infsim_calib_kernel_get(k);
    infsim_atomic_file af = {0};
    char stem[3 * CALIB_TEXT_BYTES + 32];
    snprintf(stem, sizeof stem, "%s-%s-tp%lld-%s", profile, model, (long long)tp, kname);
    if (plot_dir) {
      char dat[INFSIM_PATH_BYTES];
      snprintf(dat, sizeof dat, "%s/%s.dat", plot_dir, stem);
      st = infsim_atomic_open(&af, dat, err);
      if (st != INFSIM_OK) break;
      fprintf(af.fp, "# %s measured_ns fitted_ns (profile %s, model %s, tp %lld, kernel %s)\n",
              infsim_calib_var_name(info->hinge_var), profile, model, (long long)tp, kname);
    }
    sqlite3_reset(pts);
    sqlite3_bind_int64(pts, 1, profile_id);
    sqlite3_bind_int64(pts, 2, tp);
    sqlite3_bind_text(pts, 3, kname, -1, SQLITE_TRANSIENT);
    while (sqlite3_step(pts) == SQLITE_ROW) {
      double x[INFSIM_CALIB_VARS];
      for (int v = 0; v < INFSIM_CALIB_VARS; v++) x[v] = (double)sqlite3_column_int64(pts, v);
      double measured = sqlite3_column_double(pts, 7);
      double fitted = infsim_calib_curve_eval(&c, k, x);
      fprintf(out, "%-14s %-11s %3lld %-13s %10.0f %14.0f %9.0f %10.0f %12.0f %6.3f %12.0f %12.0f %12.0f %+7.2f%%\n",
              profile, model, (long long)tp, kname, x[0], x[1], x[2], x[3], x[4], sqlite3_column_double(pts, 6),
              x[5], measured, fitted, 100 * (fitted - measured) / measured);
      if (plot_dir) fprintf(af.fp, "%.17g %.6g %.6g\n", x[info->hinge_var], measured, fitted);
    }
    fprintf(out, "%-14s %-11s %3lld %-13s held-out error: median %.2f%%, p95 %.2f%%\n", profile, model,
            (long long)tp, kname, 100 * ho_med, 100 * ho_p95);
    shown++;
    if (plot_dir) {
      st = infsim_atomic_commit(&af, err);
      char title[5 * CALIB_TEXT_BYTES];
      snprintf(title, sizeof title, "%s: %s, tp %lld, on %s (profile %s)", kname, model, (long long)tp, gpu, profile);
      if (st == INFSIM_OK) st = plot_one(plot_dir, stem, title, infsim_calib_var_name(info->hinge_var), err);
    }
  }
  if (st == INFSIM_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) st = calib_sql_fail(db, db_path, err);
  if (st == INFSIM_OK && shown == 0)
    st = infsim_fail(err, INFSIM_EINPUT, "%s: fit: no fitted curves (run `infsim calibrate fit`)", db_path);
  sqlite3_finalize(curves);
  sqlite3_finalize(pts);
  sqlite3_close(db);
  return st;
}
