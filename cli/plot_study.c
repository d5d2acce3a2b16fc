/*
** plot_study.c: plots over many runs: latency CDFs of sibling run
** directories on one chart, capacity curves from capacity.csv, and
** throughput and p99 latencies against a grid key from a sweep DB.
**
** Curve titles go to gnuplot as variables title1, title2, ... (read back
** with value()), so a name may hold blanks or quotes; data files hold one
** block per curve, separated by two blank lines (gnuplot's `index`).
*/
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <sqlite3.h>

#include "plot_common.h"

enum { STUDY_MAX_SERIES = 64 };

static void assign_titles(plot_job *pj, char *const *titles, int n) {
  for (int i = 0; i < n; i++) {
    char name[32];
    snprintf(name, sizeof name, "title%d", i + 1);
    plot_assign(pj, name, titles[i]);
  }
  plot_number(pj, "nseries", n);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* ---- runs side by side ---- */

infsim_status plot_compare_dirs(plot_job *pj, const char *dir, int *found, infsim_error *err) {
  *found = 0;
  DIR *d = opendir(dir);
  if (d == NULL) return INFSIM_OK; /* not a directory: nothing to compare */
  char *names[STUDY_MAX_SERIES];
  int n = 0;
  struct dirent *e;
  char path[PLOT_PATH_BYTES + 600];
  while ((e = readdir(d)) != NULL && n < STUDY_MAX_SERIES) {
    if (e->d_name[0] == '.') continue;
    snprintf(path, sizeof path, "%s/%s/requests.csv", dir, e->d_name);
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && (names[n] = strdup(e->d_name)) != NULL) n++;
  }
  closedir(d);
  if (n == 0) return INFSIM_OK;
  qsort(names, (size_t)n, sizeof *names, cmp_str);
  static const char *const metric_files[3] = {"cmp_ttft.dat", "cmp_tpot.dat", "cmp_e2e.dat"};
  FILE *fp[3] = {0};
  infsim_status st = INFSIM_OK;
  for (int m = 0; m < 3 && st == INFSIM_OK; m++)
    if ((fp[m] = plot_data_open(pj, metric_files[m])) == NULL)
      st = infsim_fail(err, INFSIM_EIO, "%s: cannot write plot data: %s", pj->work_dir, strerror(errno));
  size_t counts[3] = {0, 0, 0};
  for (int i = 0; i < n && st == INFSIM_OK; i++) {
    plot_data pd = {0};
    snprintf(path, sizeof path, "%s/%s/requests.csv", dir, names[i]);
    st = plot_read_requests(path, &pd, err);
    dvec *v[3] = {&pd.ttft_s, &pd.tpot_s, &pd.e2e_s};
    for (int m = 0; m < 3 && st == INFSIM_OK; m++) {
      if (i > 0) fputs("\n\n", fp[m]);
      /* An empty run still gets its (empty) block, so indices match titles. */
      if (v[m]->n == 0) fputs("NaN NaN\n", fp[m]);
      counts[m] += v[m]->n;
      if (!plot_write_cdf(fp[m], v[m])) st = infsim_fail(err, INFSIM_EIO, "%s: cannot write plot data", pj->work_dir);
    }
    plot_data_free(&pd);
  }
  for (int m = 0; m < 3; m++)
    if (fp[m] != NULL && fclose(fp[m]) != 0 && st == INFSIM_OK)
      st = infsim_fail(err, INFSIM_EIO, "%s: cannot write plot data", pj->work_dir);
  static const char *const stems[3] = {"compare_ttft_cdf", "compare_tpot_cdf", "compare_e2e_cdf"};
  static const char *const metrics[3] = {"TTFT", "TPOT", "E2E latency"};
  for (int m = 0; m < 3 && st == INFSIM_OK; m++) {
    plot_start(pj, stems[m], metric_files[m]);
    assign_titles(pj, names, n);
    plot_assign(pj, "metric", metrics[m]);
    plot_assign(pj, "what", metrics[m]);
    plot_assign(pj, "run", dir);
    st = plot_template_add(pj, "compare_cdf", counts[m] > 0, err);
  }
  for (int i = 0; i < n; i++) free(names[i]);
  *found = n;
  return st;
}

/* ---- capacity.csv ---- */

typedef struct {
  char *series;
  double slo_s, value;
  size_t row;
} cap_row;

static int cmp_cap(const void *a, const void *b) {
  const cap_row *x = a, *y = b;
  if (x->row != y->row) return x->row < y->row ? -1 : 1; /* series in order of first appearance */
  return (x->slo_s > y->slo_s) - (x->slo_s < y->slo_s);
}

infsim_status plot_capacity_csv(plot_job *pj, const char *path, infsim_error *err) {
  csv_reader r;
  static const char *const names[] = {"series", "slo_s"};
  int cols[3];
  infsim_status st = plot_csv_open(&r, path, names, 2, cols, err);
  const char *ylabel = NULL;
  int slo_col = st == INFSIM_OK ? infsim_fields_find(&r.f, "slo") : -1; /* optional: what the bound is on */
  char xlabel[200] = "SLO bound (s)";
  if (st == INFSIM_OK) {
    if ((cols[2] = infsim_fields_find(&r.f, "instances")) >= 0)
      ylabel = "instances needed";
    else if ((cols[2] = infsim_fields_find(&r.f, "rate_rps")) >= 0)
      ylabel = "highest arrival rate (requests/s)";
    else
      st = infsim_fail(err, INFSIM_EINPUT, "%s:1: missing column 'instances' or 'rate_rps'", path);
  }
  cap_row *rows = NULL;
  size_t n = 0, cap = 0;
  char *series[STUDY_MAX_SERIES];
  int n_series = 0;
  int got;
  while (st == INFSIM_OK && (got = plot_csv_next(&r, err)) != 0) {
    if (got < 0) {
      st = err->status;
      break;
    }
    cap_row c = {0};
    st = plot_csv_number(&r, cols[1], "slo_s", &c.slo_s, err);
    if (st == INFSIM_OK) st = plot_csv_number(&r, cols[2], ylabel[0] == 'i' ? "instances" : "rate_rps", &c.value, err);
    if (st != INFSIM_OK) break;
    if (slo_col >= 0 && n == 0) snprintf(xlabel, sizeof xlabel, "%.180s (s)", plot_csv_field(&r, slo_col));
    const char *name = plot_csv_field(&r, cols[0]);
    int s = 0;
    while (s < n_series && strcmp(series[s], name) != 0) s++;
    if (s == n_series) {
      if (n_series == STUDY_MAX_SERIES || (series[s] = strdup(name)) == NULL) {
        st = infsim_fail(err, INFSIM_EINPUT, "%s:%lld: more than %d series", path, (long long)r.lines.line_no,
                         STUDY_MAX_SERIES);
        break;
      }
      n_series++;
    }
    c.series = series[s];
    c.row = (size_t)s;
    if (n == cap) {
      cap = cap == 0 ? 64 : 2 * cap;
      cap_row *p = realloc(rows, cap * sizeof *p);
      if (p == NULL) {
        st = infsim_fail(err, INFSIM_ENOMEM, "out of memory");
        break;
      }
      rows = p;
    }
    rows[n++] = c;
  }
  plot_csv_close(&r);
  if (st == INFSIM_OK && n == 0) st = infsim_fail(err, INFSIM_EINPUT, "%s: no rows below the header", path);
  FILE *fp = st == INFSIM_OK ? plot_data_open(pj, "capacity.dat") : NULL;
  if (st == INFSIM_OK && fp == NULL) st = infsim_fail(err, INFSIM_EIO, "%s: cannot write plot data", pj->work_dir);
  if (fp != NULL) {
    if (n > 0) qsort(rows, n, sizeof *rows, cmp_cap);
    for (size_t i = 0; i < n; i++) {
      if (i > 0 && rows[i].row != rows[i - 1].row) fputs("\n\n", fp);
      fprintf(fp, "%.9g %.9g\n", rows[i].slo_s, rows[i].value);
    }
    if (fclose(fp) != 0) st = infsim_fail(err, INFSIM_EIO, "%s: cannot write plot data", pj->work_dir);
  }
  if (st == INFSIM_OK) {
    plot_start(pj, "capacity", "capacity.dat");
    assign_titles(pj, series, n_series);
    plot_assign(pj, "ylabel", ylabel);
    plot_assign(pj, "xlabel", xlabel);
    plot_assign(pj, "what", "Capacity against the SLO");
    plot_assign(pj, "run", path);
    st = plot_template_add(pj, "capacity", n > 0, err);
  }
  for (int s = 0; s < n_series; s++) free(series[s]);
  free(rows);
  return st;
}

/* ---- sweep DB ---- */

/* Appends name as an SQL identifier. */
static void put_ident(FILE *fp, const char *name) {
  fputc('"', fp);
  for (; *name != '\0'; name++) {
    if (*name == '"') fputc('"', fp);
    fputc(*name, fp);
  }
  fputc('"', fp);
}

/* The grid keys of the sweep: the keys of the first row's settings. */
static json_t *grid_keys(sqlite3 *db) {
  sqlite3_stmt *q;
  json_t *keys = NULL;
  if (sqlite3_prepare_v2(db, "SELECT settings FROM runs LIMIT 1", -1, &q, NULL) != SQLITE_OK) return NULL;
  if (sqlite3_step(q) == SQLITE_ROW) keys = json_loads((const char *)sqlite3_column_text(q, 0), 0, NULL);
  sqlite3_finalize(q);
  return keys != NULL ? keys : json_object();
}

infsim_status plot_sweep_db(plot_job *pj, const char *path, const plot_sweep_opts *o, infsim_error *err) {
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
    infsim_status st = infsim_fail(err, INFSIM_EIO, "%s: cannot open: %s", path, sqlite3_errmsg(db));
    sqlite3_close(db);
    return st;
  }
  json_t *keys = grid_keys(db);
  const char *x = o->x, *series = o->series;
  if (x == NULL) {
    if (json_object_get(keys, "rate_scale") != NULL) {
      x = "rate_scale";
    } else {
      void *it = json_object_iter(keys);
      x = it != NULL ? json_object_iter_key(it) : NULL;
    }
  }
  if (series == NULL && json_object_get(keys, "policy.name") != NULL && (x == NULL || strcmp(x, "policy.name") != 0))
    series = "policy.name";
  if (series == NULL) { /* several sweeps in one DB, told apart by --label */
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(db, "SELECT count(DISTINCT label) FROM runs WHERE label <> ''", -1, &q, NULL) == SQLITE_OK) {
      if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_int(q, 0) > 0) series = "label";
      sqlite3_finalize(q);
    }
  }
  if (series == NULL && json_object_size(keys) == 2) {
    const char *k;
    json_t *v;
    json_object_foreach(keys, k, v) if (x != NULL && strcmp(k, x) != 0) series = k;
  }
  infsim_status st = INFSIM_OK;
  if (x == NULL)
    st = infsim_fail(err, INFSIM_EINPUT, "%s: the sweep has no grid key to plot against (give --x KEY)", path);
  /* SQLite reads an unknown "name" as a string: check the names first. */
  const char *check[2] = {x, series};
  for (int i = 0; i < 2 && st == INFSIM_OK; i++) {
    if (check[i] == NULL) continue;
    sqlite3_stmt *q;
    bool found = false;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM pragma_table_info('runs') WHERE name = ?", -1, &q, NULL) == SQLITE_OK) {
      sqlite3_bind_text(q, 1, check[i], -1, SQLITE_STATIC);
      found = sqlite3_step(q) == SQLITE_ROW;
      sqlite3_finalize(q);
    }
    if (!found)
      st = infsim_fail(err, INFSIM_EINPUT, "%s: %s: no such column in table runs (a grid key or summary field)", path,
                       check[i]);
  }
  /* avg() reads a text value as 0: a metric that is not a number is bad
   * input, named here rather than drawn as a zero (or refused by gnuplot on
   * a log scale). */
  static const char *const metrics[] = {"throughput_tok_s", "ttft_s_p99", "tpot_s_p99"};
  for (size_t i = 0; i < sizeof metrics / sizeof metrics[0] && st == INFSIM_OK; i++) {
    char check_sql[200];
    snprintf(check_sql, sizeof check_sql,
             "SELECT rowid, %s FROM runs WHERE typeof(%s) NOT IN ('integer', 'real', 'null') LIMIT 1", metrics[i],
             metrics[i]);
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(db, check_sql, -1, &q, NULL) != SQLITE_OK) {
      st = infsim_fail(err, INFSIM_EINPUT, "%s: runs: %s", path, sqlite3_errmsg(db));
      break;
    }
    if (sqlite3_step(q) == SQLITE_ROW)
      st = infsim_fail(err, INFSIM_EINPUT, "%s: runs row %lld: %s: expected a number, got '%.40s'", path,
                       (long long)sqlite3_column_int64(q, 0), metrics[i], (const char *)sqlite3_column_text(q, 1));
    sqlite3_finalize(q);
  }
  char *sql = NULL;
  size_t sql_bytes = 0;
  FILE *s = st == INFSIM_OK ? open_memstream(&sql, &sql_bytes) : NULL;
  if (s != NULL) {
    fputs("SELECT ", s);
    if (series != NULL) put_ident(s, series);
    else fputs("''", s);
    fputs(", ", s);
    put_ident(s, x);
    fputs(", avg(throughput_tok_s), avg(ttft_s_p99), avg(tpot_s_p99), count(*) FROM runs", s);
    if (o->where != NULL) fprintf(s, " WHERE (%s)", o->where);
    fputs(" GROUP BY 1, 2 ORDER BY 1, 2", s);
    fclose(s);
  }
  sqlite3_stmt *q = NULL;
  if (st == INFSIM_OK && sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK)
    st = infsim_fail(err, INFSIM_EINPUT, "%s: %s (check --x, --series and --where)", path, sqlite3_errmsg(db));
  FILE *fp = st == INFSIM_OK ? plot_data_open(pj, "sweep.dat") : NULL;
  if (st == INFSIM_OK && fp == NULL) st = infsim_fail(err, INFSIM_EIO, "%s: cannot write plot data", pj->work_dir);
  char *titles[STUDY_MAX_SERIES], *last = NULL;
  int n_series = 0;
  size_t rows = 0;
  int rc = SQLITE_DONE;
  while (st == INFSIM_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
    const char *name = (const char *)sqlite3_column_text(q, 0);
    if (name == NULL) name = "";
    if (last == NULL || strcmp(last, name) != 0) {
      if (n_series == STUDY_MAX_SERIES) {
        st = infsim_fail(err, INFSIM_EINPUT, "%s: more than %d values of %s", path, STUDY_MAX_SERIES, series);
        break;
      }
      if (n_series > 0) fputs("\n\n", fp);
      char label[256];
      bool bare = series == NULL || strcmp(series, "label") == 0; /* a label names itself */
      snprintf(label, sizeof label, "%s%s%s", bare ? "" : series, bare ? "" : " = ", name);
      titles[n_series++] = strdup(label);
      free(last);
      last = strdup(name);
    }
    if (sqlite3_column_type(q, 1) != SQLITE_INTEGER && sqlite3_column_type(q, 1) != SQLITE_FLOAT) {
      st = infsim_fail(err, INFSIM_EINPUT, "%s: %s: expected numbers to plot against, got '%.40s'", path, x,
                       (const char *)sqlite3_column_text(q, 1));
      break;
    }
    fprintf(fp, "%.9g %.9g %.9g %.9g %d\n", sqlite3_column_double(q, 1), sqlite3_column_double(q, 2),
            sqlite3_column_double(q, 3), sqlite3_column_double(q, 4), sqlite3_column_int(q, 5));
    rows++;
  }
  if (st == INFSIM_OK && rc != SQLITE_DONE) st = infsim_fail(err, INFSIM_EIO, "%s: %s", path, sqlite3_errmsg(db));
  if (fp != NULL && fclose(fp) != 0 && st == INFSIM_OK)
    st = infsim_fail(err, INFSIM_EIO, "%s: cannot write plot data", pj->work_dir);
  if (st == INFSIM_OK) {
    bool rate = strcmp(x, "rate_scale") == 0;
    char xlabel[300];
    snprintf(xlabel, sizeof xlabel, "%s", rate ? "arrival rate (multiple of the trace's rate)" : x);
    static const char *const stems[2] = {"sweep_throughput", "sweep_latency"};
    for (int i = 0; i < 2 && st == INFSIM_OK; i++) {
      plot_start(pj, stems[i], "sweep.dat");
      assign_titles(pj, titles, n_series);
      plot_assign(pj, "xlabel", xlabel);
      plot_assign(pj, "what", i == 0 ? "Throughput" : "p99 latency");
      plot_assign(pj, "run", path);
      st = plot_template_add(pj, stems[i], rows > 0, err);
    }
  }
  for (int i = 0; i < n_series; i++) free(titles[i]);
  free(last);
  sqlite3_finalize(q);
  free(sql);
  json_decref(keys);
  sqlite3_close(db);
  return st;
}
