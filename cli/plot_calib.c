/*
** plot_calib.c: `infsim plot CALIBRATION.db`: for each profile, model and
** TP degree one image with a panel per kernel: measured medians (points)
** and the fitted curve (lines) against the kernel's hinge aggregate, log
** axes, time per layer in microseconds.
**
** A kernel whose curve has one variable gets its curve drawn densely
** (120 log-spaced points between the smallest and largest measurement).
** A kernel of several variables is drawn as slices: the measurements that
** share the values of its other variables (decode attention at 16
** requests, say), each slice's fitted values joined by a line. At most
** CALIB_MAX_SLICES slices per panel, spread evenly over the sorted slice
** keys, so a panel stays readable.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "infsim/calib.h"
#include "plot_common.h"

enum { CALIB_MAX_SLICES = 6, CALIB_DENSE_POINTS = 120, CALIB_MAX_POINTS = 4096 };

typedef struct {
  double x[INFSIM_CALIB_VARS];
  double measured_ns;
  double key; /* slice key: a combination of the other variables */
} calib_pt;

static int cmp_pt(const void *a, const void *b) {
  const calib_pt *p = a, *q = b;
  if (p->key != q->key) return p->key < q->key ? -1 : 1;
  return 0;
}

/* One panel: the measurements of (profile, tp, kernel) into the data file,
 * a block per slice; returns the blocks written and their labels. */
static int write_panel(FILE *fp, sqlite3_stmt *pts, int k, const infsim_calib_curve *c, int *block,
                       plot_job *pj) {
  const infsim_calib_kernel_info *info = infsim_calib_kernel_get((infsim_calib_kernel)k);
  static calib_pt p[CALIB_MAX_POINTS];
  int n = 0;
  while (n < CALIB_MAX_POINTS && sqlite3_step(pts) == SQLITE_ROW) {
    for (int v = 0; v < INFSIM_CALIB_VARS; v++) p[n].x[v] = (double)sqlite3_column_int64(pts, v);
    p[n].measured_ns = sqlite3_column_double(pts, 6);
    n++;
  }
  if (n == 0) return 0;
  /* A variable splits the points into slices when two measurements share
   * the hinge value but differ in it (decode attention: the same context
   * at several request counts); one that moves with the hinge value
   * (prefill's tokens with its pairs) does not. */
  unsigned key_mask = 0;
  for (int v = 0; v < INFSIM_CALIB_VARS; v++) {
    if (!(info->var_mask & (1u << v)) || v == info->hinge_var) continue;
    for (int i = 0; i < n && !(key_mask & (1u << v)); i++)
      for (int j = i + 1; j < n; j++)
        if (p[i].x[info->hinge_var] == p[j].x[info->hinge_var] && p[i].x[v] != p[j].x[v]) {
          key_mask |= 1u << v;
          break;
        }
  }
  for (int i = 0; i < n; i++) {
    /* Packs the key variables (distinct combinations give distinct keys
     * for the sizes measured). */
    double key = 0;
    for (int v = 0; v < INFSIM_CALIB_VARS; v++)
      if (key_mask & (1u << v)) key = key * 1e6 + p[i].x[v];
    p[i].key = key;
  }
  /* Stable order within a slice: sort by (key, hinge x). */
  for (int i = 1; i < n; i++) {
    calib_pt t = p[i];
    int j = i - 1;
    while (j >= 0 && (cmp_pt(&p[j], &t) > 0 || (p[j].key == t.key && p[j].x[info->hinge_var] > t.x[info->hinge_var]))) {
      p[j + 1] = p[j];
      j--;
    }
    p[j + 1] = t;
  }
  int starts[CALIB_MAX_POINTS], n_slices = 0;
  for (int i = 0; i < n; i++)
    if (i == 0 || p[i].key != p[i - 1].key) starts[n_slices++] = i;
  starts[n_slices] = n;
  int shown = n_slices < CALIB_MAX_SLICES ? n_slices : CALIB_MAX_SLICES;
  bool one_var = key_mask == 0;
  int written = 0;
  for (int s = 0; s < shown; s++) {
    int slice = shown == 1 ? 0 : (int)lround((double)s * (n_slices - 1) / (shown - 1));
    int a = starts[slice], b = starts[slice + 1];
    if (*block > 0) fputs("\n\n", fp);
    /* Columns: x, measured_ns (or NaN), fitted_ns. */
    for (int i = a; i < b; i++)
      fprintf(fp, "%.9g %.9g %.9g\n", p[i].x[info->hinge_var], p[i].measured_ns,
              infsim_calib_curve_eval(c, (infsim_calib_kernel)k, p[i].x));
    if ((info->var_mask & (info->var_mask - 1)) == 0 && p[b - 1].x[info->hinge_var] > p[a].x[info->hinge_var] && p[a].x[info->hinge_var] > 0) {
      double lo = log(p[a].x[info->hinge_var]), hi = log(p[b - 1].x[info->hinge_var]);
      fputc('\n', fp); /* same block, new line segment: the dense curve */
      for (int i = 0; i < CALIB_DENSE_POINTS; i++) {
        double x[INFSIM_CALIB_VARS];
        memcpy(x, p[a].x, sizeof x);
        x[info->hinge_var] = exp(lo + (hi - lo) * i / (CALIB_DENSE_POINTS - 1));
        fprintf(fp, "%.9g NaN %.9g\n", x[info->hinge_var], infsim_calib_curve_eval(c, (infsim_calib_kernel)k, x));
      }
    }
    char label[128] = "", name[32];
    int at = 0;
    for (int v = 0; v < INFSIM_CALIB_VARS; v++)
      if ((key_mask & (1u << v)) && at < (int)sizeof label - 40)
        at += snprintf(label + at, sizeof label - (size_t)at, "%s%s %.0f", at > 0 ? ", " : "",
                       infsim_calib_var_name((infsim_calib_var)v), p[a].x[v]);
    snprintf(name, sizeof name, "s%d", *block + 1);
    plot_assign(pj, name, one_var ? "measured" : label);
    (*block)++;
    written++;
  }
  return written;
}

infsim_status plot_calib_db(plot_job *pj, const char *path, infsim_error *err) {
  sqlite3 *db = NULL;
  infsim_status st = INFSIM_OK;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
    st = infsim_fail(err, INFSIM_EIO, "%s: cannot open: %s", path, sqlite3_errmsg(db));
  sqlite3_stmt *groups = NULL, *curves = NULL, *pts = NULL;
  if (st == INFSIM_OK &&
      (sqlite3_prepare_v2(db,
                          "SELECT DISTINCT p.id, p.name, p.model, p.gpu, f.tp FROM fit f JOIN profile p ON"
                          " p.id = f.profile_id ORDER BY p.name, p.model, f.tp",
                          -1, &groups, NULL) != SQLITE_OK ||
       sqlite3_prepare_v2(db,
                          "SELECT f.kernel, " INFSIM_CALIB_CURVE_COLUMNS
                          " FROM fit f WHERE f.profile_id = ?1 AND f.tp = ?2 ORDER BY f.kernel",
                          -1, &curves, NULL) != SQLITE_OK ||
       sqlite3_prepare_v2(db,
                          "SELECT tokens, pairs, requests, context_tokens, partials, bytes, median_ns FROM measurement"
                          " WHERE profile_id = ?1 AND tp = ?2 AND kernel = ?3",
                          -1, &pts, NULL) != SQLITE_OK))
    st = infsim_fail(err, INFSIM_EINPUT, "%s: not a calibration DB of this version: %s", path, sqlite3_errmsg(db));
  int images = 0;
  while (st == INFSIM_OK && sqlite3_step(groups) == SQLITE_ROW) {
    int64_t pid = sqlite3_column_int64(groups, 0), tp = sqlite3_column_int64(groups, 4);
    char profile[128], model[128], gpu[128], stem[420], data[440];
    snprintf(profile, sizeof profile, "%s", (const char *)sqlite3_column_text(groups, 1));
    snprintf(model, sizeof model, "%s", (const char *)sqlite3_column_text(groups, 2));
    snprintf(gpu, sizeof gpu, "%s", (const char *)sqlite3_column_text(groups, 3));
    snprintf(stem, sizeof stem, "calib_%s_%s_tp%lld", profile, model, (long long)tp);
    for (char *s = stem; *s != '\0'; s++)
      if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '-'))
        *s = '_'; /* a file name gnuplot and shells take as is */
    snprintf(data, sizeof data, "%s.dat", stem);
    FILE *fp = plot_data_open(pj, data);
    if (fp == NULL) {
      st = infsim_fail(err, INFSIM_EIO, "%s: cannot write plot data", pj->work_dir);
      break;
    }
    plot_start(pj, stem, data);
    int block = 0, panel = 0;
    sqlite3_reset(curves);
    sqlite3_bind_int64(curves, 1, pid);
    sqlite3_bind_int64(curves, 2, tp);
    while (st == INFSIM_OK && sqlite3_step(curves) == SQLITE_ROW) {
      const char *kname = (const char *)sqlite3_column_text(curves, 0);
      int k = infsim_calib_kernel_from_name(kname);
      infsim_calib_curve c;
      if (k < 0) continue;
      char why[256];
      if (!infsim_calib_curve_from_row(curves, 1, &c, why, sizeof why)) {
        st = infsim_fail(err, INFSIM_EINPUT, "%s: fit: %s, %s, tp %lld, kernel %s: %s", path, profile, model,
                         (long long)tp, kname, why);
        break;
      }
      sqlite3_reset(pts);
      sqlite3_bind_int64(pts, 1, pid);
      sqlite3_bind_int64(pts, 2, tp);
      sqlite3_bind_text(pts, 3, kname, -1, SQLITE_TRANSIENT);
      int first = block;
      int n = write_panel(fp, pts, k, &c, &block, pj);
      if (n == 0) continue;
      panel++;
      char name[32];
      const infsim_calib_kernel_info *info = infsim_calib_kernel_get((infsim_calib_kernel)k);
      snprintf(name, sizeof name, "p%d_first", panel);
      plot_number(pj, name, first);
      snprintf(name, sizeof name, "p%d_n", panel);
      plot_number(pj, name, n);
      snprintf(name, sizeof name, "p%d_title", panel);
      plot_assign(pj, name, kname);
      /* One variable: a true curve (lines). Several in one slice (prefill:
       * tokens move with pairs, not in step): fitted values at the
       * measured points, open circles, as a line through them would zigzag. */
      snprintf(name, sizeof name, "p%d_curve", panel);
      plot_number(pj, name, (info->var_mask & (info->var_mask - 1)) == 0 || n > 1);
      snprintf(name, sizeof name, "p%d_xlabel", panel);
      plot_assign(pj, name, infsim_calib_var_name((infsim_calib_var)info->hinge_var));
    }
    if (fclose(fp) != 0 && st == INFSIM_OK) st = infsim_fail(err, INFSIM_EIO, "%s: cannot write plot data", data);
    char title[600];
    snprintf(title, sizeof title, "%s, TP %lld, on %s (profile %s)", model, (long long)tp, gpu, profile);
    plot_number(pj, "npanels", panel);
    plot_assign(pj, "run", title);
    plot_assign(pj, "what", "Calibration fits");
    if (st == INFSIM_OK) st = plot_template_add(pj, "calib_fit", panel > 0, err);
    images++;
  }
  if (st == INFSIM_OK && images == 0)
    st = infsim_fail(err, INFSIM_EINPUT, "%s: fit: no fitted curves (run `infsim calibrate fit`)", path);
  sqlite3_finalize(groups);
  sqlite3_finalize(curves);
  sqlite3_finalize(pts);
  sqlite3_close(db);
  return st;
}
