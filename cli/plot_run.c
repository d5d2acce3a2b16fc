/*
** plot_run.c: the plots of one run directory (requests.csv,
** timeseries.csv) and the CSV readers the other plot families share.
**
** Data files for gnuplot are plain whitespace-separated columns: the time
** series sorted by (instance, time), one data block per instance; each
** CDF as sorted values `x_i  i/n` preceded by `x_1  0`, drawn with steps.
** Every step is linear in the rows after one sort, whatever the number of
** instances (the templates draw more than PLOT_KEY_MAX_SERIES instances
** in one pass, without a legend).
*/
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plot_common.h"

/* ---- growable arrays --------------------------------------------------- */

bool plot_dvec_push(dvec *d, double x) {
  if (d->n == d->cap) {
    size_t cap = d->cap == 0 ? 256 : d->cap * 2;
    double *p = realloc(d->v, cap * sizeof *p);
    if (p == NULL) return false;
    d->v = p;
    d->cap = cap;
  }
  d->v[d->n++] = x;
  return true;
}

void plot_data_free(plot_data *pd) {
  free(pd->rows);
  free(pd->ttft_s.v);
  free(pd->tpot_s.v);
  free(pd->e2e_s.v);
  free(pd->arrival_s.v);
}

/* ---- CSV --------------------------------------------------------------- */

/* Field c of the current row. */
const char *plot_csv_field(const csv_reader *r, int c) { return r->f.fields[c].text; }

/* Reads the next non-blank row into r->f; 1 row, 0 end, -1 error. */
int plot_csv_next(csv_reader *r, infsim_error *err) {
  infsim_line_reader *lr = &r->lines;
  for (;;) {
    errno = 0;
    int got = infsim_lines_next(lr);
    if (got < 0) {
      infsim_fail(err, INFSIM_EIO, "%s:%lld: read error: %s", lr->path, (long long)lr->line_no + 1, strerror(errno));
      return -1;
    }
    if (got == 0) return 0;
    if (lr->len == 0) continue;
    if (strlen(lr->buf) != lr->len) {
      infsim_fail(err, INFSIM_EINPUT, "%s:%lld: NUL byte in line", lr->path, (long long)lr->line_no);
      return -1;
    }
    const char *why = NULL;
    if (!infsim_csv_split(lr->buf, lr->len, &r->f, &why) || r->f.count > PLOT_MAX_FIELDS) {
      infsim_fail(err, INFSIM_EINPUT, "%s:%lld: malformed CSV row", lr->path, (long long)lr->line_no);
      return -1;
    }
    if (r->n_header > 0 && r->f.count != r->n_header) {
      infsim_fail(err, INFSIM_EINPUT, "%s:%lld: expected %zu fields, got %zu", lr->path, (long long)lr->line_no,
                  r->n_header, r->f.count);
      return -1;
    }
    return 1;
  }
}

/* Opens path and maps each of names[0..n) to its column in the header. */
infsim_status plot_csv_open(csv_reader *r, const char *path, const char *const *names, int n, int *cols,
                              infsim_error *err) {
  memset(r, 0, sizeof *r);
  infsim_status st = infsim_lines_open(&r->lines, path, err);
  if (st != INFSIM_OK) return st;
  int got = plot_csv_next(r, err);
  if (got < 0) return err->status;
  if (got == 0) return infsim_fail(err, INFSIM_EINPUT, "%s:1: empty file, expected a header row", path);
  r->n_header = r->f.count;
  for (int i = 0; i < n; i++) {
    cols[i] = infsim_fields_find(&r->f, names[i]);
    if (cols[i] < 0)
      return infsim_fail(err, INFSIM_EINPUT, "%s:%lld: missing column '%s'", path, (long long)r->lines.line_no,
                         names[i]);
  }
  return INFSIM_OK;
}

void plot_csv_close(csv_reader *r) {
  if (r->lines.fp != NULL) infsim_lines_close(&r->lines);
  infsim_fields_free(&r->f);
}

/* Parses the whole field as a finite number. */
infsim_status plot_csv_number(const csv_reader *r, int col, const char *name, double *out, infsim_error *err) {
  const char *s = plot_csv_field(r, col);
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (s[0] == '\0' || *end != '\0' || !isfinite(v) || errno == ERANGE)
    return infsim_fail(err, INFSIM_EINPUT, "%s:%lld: %s: expected a number, got '%.40s'", r->lines.path,
                       (long long)r->lines.line_no, name, s);
  *out = v;
  return INFSIM_OK;
}

/* ---- reading the run --------------------------------------------------- */

infsim_status plot_read_requests(const char *path, plot_data *pd, infsim_error *err) {
  enum { C_ARRIVAL, C_OUTPUT, C_STATUS, C_TTFT, C_TPOT, C_E2E, C_N };
  static const char *const names[C_N] = {"arrival_s", "output_tokens", "status", "ttft_s", "tpot_s", "e2e_s"};
  int cols[C_N];
  csv_reader r;
  infsim_status st = plot_csv_open(&r, path, names, C_N, cols, err);
  int got;
  while (st == INFSIM_OK && (got = plot_csv_next(&r, err)) != 0) {
    if (got < 0) {
      st = err->status;
      break;
    }
    const char *status = plot_csv_field(&r, cols[C_STATUS]);
    if (strcmp(status, "rejected") == 0) continue;
    if (strcmp(status, "completed") != 0) {
      st = infsim_fail(err, INFSIM_EINPUT, "%s:%lld: status: expected completed or rejected, got '%.40s'", path,
                       (long long)r.lines.line_no, status);
      break;
    }
    double v[C_N];
    for (int c = 0; c < C_N && st == INFSIM_OK; c++)
      if (c != C_STATUS && c != C_TPOT) st = plot_csv_number(&r, cols[c], names[c], &v[c], err);
    /* TPOT is defined only for requests with two output tokens or more. */
    bool has_tpot = st == INFSIM_OK && v[C_OUTPUT] >= 2;
    if (has_tpot) st = plot_csv_number(&r, cols[C_TPOT], names[C_TPOT], &v[C_TPOT], err);
    if (st != INFSIM_OK) break;
    if (!plot_dvec_push(&pd->ttft_s, v[C_TTFT]) || !plot_dvec_push(&pd->e2e_s, v[C_E2E]) ||
        !plot_dvec_push(&pd->arrival_s, v[C_ARRIVAL]) || (has_tpot && !plot_dvec_push(&pd->tpot_s, v[C_TPOT])))
      st = infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", path);
  }
  plot_csv_close(&r);
  return st;
}

static infsim_status read_timeseries(const char *path, plot_data *pd, infsim_error *err) {
  enum { C_TIME, C_INSTANCE, C_RUNNING, C_WAITING, C_USED, C_FREE, C_LENT, C_BORROWED, C_N };
  static const char *const names[C_N] = {"time_s",         "instance",       "running",        "waiting",
                                         "kv_used_blocks", "kv_free_blocks", "kv_lent_blocks", "kv_borrowed_blocks"};
  int cols[C_N];
  csv_reader r;
  infsim_status st = plot_csv_open(&r, path, names, C_N, cols, err);
  int got;
  while (st == INFSIM_OK && (got = plot_csv_next(&r, err)) != 0) {
    if (got < 0) {
      st = err->status;
      break;
    }
    double v[C_N];
    for (int c = 0; c < C_N && st == INFSIM_OK; c++) st = plot_csv_number(&r, cols[c], names[c], &v[c], err);
    if (st != INFSIM_OK) break;
    if (v[C_INSTANCE] != floor(v[C_INSTANCE]) || v[C_INSTANCE] < 0 || v[C_INSTANCE] > 1e9) {
      st = infsim_fail(err, INFSIM_EINPUT, "%s:%lld: instance: expected an integer in [0, 1e9], got '%.40s'", path,
                       (long long)r.lines.line_no, plot_csv_field(&r, cols[C_INSTANCE]));
      break;
    }
    if (pd->n == pd->cap) {
      size_t cap = pd->cap == 0 ? 256 : pd->cap * 2;
      ts_row *p = realloc(pd->rows, cap * sizeof *p);
      if (p == NULL) {
        st = infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", path);
        break;
      }
      pd->rows = p;
      pd->cap = cap;
    }
    pd->rows[pd->n] = (ts_row){v[C_TIME], (int64_t)v[C_INSTANCE], v[C_RUNNING], v[C_WAITING], v[C_USED],
                               v[C_FREE],  v[C_LENT],              v[C_BORROWED], pd->n};
    pd->n++;
  }
  plot_csv_close(&r);
  return st;
}

/* ---- data files for gnuplot -------------------------------------------- */

static int cmp_ts(const void *a, const void *b) {
  const ts_row *x = a, *y = b;
  if (x->instance != y->instance) return x->instance < y->instance ? -1 : 1;
  if (x->time_s != y->time_s) return x->time_s < y->time_s ? -1 : 1;
  return x->row < y->row ? -1 : x->row > y->row;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* One block per instance, ascending ids, separated by two blank lines (a
 * gnuplot "index"; the blank lines also break the lines drawn when all
 * blocks are plotted in one pass); column 8 is a colour index cycling over
 * 8. Counts the instances into *nids and, for up to PLOT_KEY_MAX_SERIES of
 * them, writes their ids, space-separated, into ids (else ""). Linear in
 * the rows after the sort. */
static bool write_timeseries(FILE *fp, plot_data *pd, char **ids, size_t *nids) {
  if (pd->n > 0) qsort(pd->rows, pd->n, sizeof *pd->rows, cmp_ts);
  char *list = NULL;
  size_t list_bytes = 0;
  FILE *ids_fp = open_memstream(&list, &list_bytes);
  if (ids_fp == NULL) return false;
  size_t count = 0;
  for (size_t i = 0; i < pd->n; i++) {
    const ts_row *t = &pd->rows[i];
    if (i == 0 || t->instance != pd->rows[i - 1].instance) {
      if (i > 0) fputs("\n\n", fp);
      fprintf(ids_fp, "%s%" PRId64, count > 0 ? " " : "", t->instance);
      count++;
    }
    fprintf(fp, "%.9g %.9g %.9g %.9g %.9g %.9g %.9g %zu\n", t->time_s, t->running, t->waiting, t->kv_used, t->kv_free,
            t->kv_lent, t->kv_borrowed, (count - 1) % 8 + 1);
  }
  bool ok = fclose(ids_fp) == 0 && list != NULL;
  if (ok && count > PLOT_KEY_MAX_SERIES) list[0] = '\0';
  *ids = list;
  *nids = count;
  return ok;
}

/* The empirical CDF of values as steps: a (min, 0) point, then (x_i, i/n). */
bool plot_write_cdf(FILE *fp, dvec *values) {
  if (values->n > 0) qsort(values->v, values->n, sizeof *values->v, cmp_double);
  if (values->n > 0) fprintf(fp, "%.9g 0\n", values->v[0]);
  for (size_t i = 0; i < values->n; i++)
    fprintf(fp, "%.9g %.9g\n", values->v[i], (double)(i + 1) / (double)values->n);
  return !ferror(fp);
}

static bool write_pairs(FILE *fp, const dvec *x, const dvec *y) {
  for (size_t i = 0; i < x->n; i++) fprintf(fp, "%.9g %.9g\n", x->v[i], y->v[i]);
  return !ferror(fp);
}


typedef struct {
  char label[48];
  double gb;
} link_row;

static int cmp_link_desc(const void *a, const void *b) {
  double x = ((const link_row *)a)->gb, y = ((const link_row *)b)->gb;
  return (x < y) - (x > y);
}

/* links.csv (link,kind,src,dst,bytes,busy_s) into datafile rows of the
 * busiest links that carried anything; *drawn gets their count. A run
 * without links.csv (an older one, cluster mode) draws nothing. */
static bool write_links(FILE *out, const char *dir, size_t *drawn) {
  enum { MAX_DRAWN = 40 };
  char path[PLOT_PATH_BYTES + 32], line[256];
  snprintf(path, sizeof path, "%s/links.csv", dir);
  *drawn = 0;
  FILE *fp = fopen(path, "r");
  if (fp == NULL) return true;
  link_row *rows = NULL;
  size_t n = 0, cap = 0;
  bool ok = fgets(line, sizeof line, fp) != NULL; /* the header */
  while (ok && fgets(line, sizeof line, fp) != NULL) {
    char kind[16], src[16], dst[16];
    long long id = 0;
    double bytes = 0;
    if (sscanf(line, "%lld,%15[^,],%15[^,],%15[^,],%lf", &id, kind, src, dst, &bytes) != 5) continue;
    if (bytes <= 0) continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 64;
      link_row *r = realloc(rows, cap * sizeof *r);
      if (r == NULL) {
        ok = false;
        break;
      }
      rows = r;
    }
    snprintf(rows[n].label, sizeof rows[n].label, "%s>%s %s", src, dst, kind);
    rows[n++].gb = bytes / 1e9;
  }
  fclose(fp);
  if (n > 0) qsort(rows, n, sizeof *rows, cmp_link_desc);
  for (size_t i = 0; ok && i < n && i < MAX_DRAWN; i++) fprintf(out, "%zu \"%s\" %.9g\n", i, rows[i].label, rows[i].gb);
  *drawn = n < MAX_DRAWN ? n : MAX_DRAWN;
  free(rows);
  return ok && !ferror(out);
}

infsim_status plot_run_dir(plot_job *pj, const char *dir, infsim_error *err) {
  char path[PLOT_PATH_BYTES + 32];
  plot_data pd = {0};
  snprintf(path, sizeof path, "%s/requests.csv", dir);
  infsim_status st = plot_read_requests(path, &pd, err);
  if (st == INFSIM_OK) {
    snprintf(path, sizeof path, "%s/timeseries.csv", dir);
    st = read_timeseries(path, &pd, err);
  }
  char *ids = NULL;
  size_t nids = 0;
  static const char *const names[] = {"ts.dat", "e2e_arrival.dat", "ttft.dat", "tpot.dat", "e2e.dat", "links.dat"};
  FILE *fp[6] = {0};
  size_t links_drawn = 0;
  for (int i = 0; st == INFSIM_OK && i < 6; i++)
    if ((fp[i] = plot_data_open(pj, names[i])) == NULL)
      st = infsim_fail(err, INFSIM_EIO, "%s: cannot write plot data: %s", pj->work_dir, strerror(errno));
  if (st == INFSIM_OK) {
    bool ok = write_timeseries(fp[0], &pd, &ids, &nids) && write_pairs(fp[1], &pd.arrival_s, &pd.e2e_s) &&
              plot_write_cdf(fp[2], &pd.ttft_s) && plot_write_cdf(fp[3], &pd.tpot_s) &&
              plot_write_cdf(fp[4], &pd.e2e_s) && write_links(fp[5], dir, &links_drawn);
    if (!ok) st = infsim_fail(err, INFSIM_EIO, "%s: cannot write plot data", pj->work_dir);
  }
  for (int i = 0; i < 6; i++)
    if (fp[i] != NULL && fclose(fp[i]) != 0 && st == INFSIM_OK)
      st = infsim_fail(err, INFSIM_EIO, "%s: cannot write plot data", pj->work_dir);
  const struct {
    const char *stem, *what, *tpl, *data, *metric;
    size_t n;
  } specs[] = {
      {"kv_usage", "KV cache blocks in use", "kv_usage", "ts.dat", "", pd.n},
      {"kv_borrowing", "KV blocks lent and borrowed", "kv_borrowing", "ts.dat", "", pd.n},
      {"requests", "Running and waiting requests", "requests", "ts.dat", "", pd.n},
      {"ttft_cdf", "CDF of TTFT", "cdf", "ttft.dat", "TTFT", pd.ttft_s.n},
      {"tpot_cdf", "CDF of TPOT", "cdf", "tpot.dat", "TPOT", pd.tpot_s.n},
      {"e2e_cdf", "CDF of E2E latency", "cdf", "e2e.dat", "E2E latency", pd.e2e_s.n},
      {"e2e_vs_arrival", "E2E latency by arrival time", "e2e_vs_arrival", "e2e_arrival.dat", "", pd.e2e_s.n},
      {"link_bytes", "Bytes per network link", "link_bytes", "links.dat", "", links_drawn},
  };
  for (size_t i = 0; st == INFSIM_OK && i < sizeof specs / sizeof specs[0]; i++) {
    plot_start(pj, specs[i].stem, specs[i].data);
    plot_assign(pj, "ids", ids != NULL ? ids : "");
    plot_number(pj, "nids", (double)nids);
    plot_assign(pj, "run", dir);
    plot_assign(pj, "metric", specs[i].metric);
    plot_assign(pj, "what", specs[i].what);
    plot_number(pj, "n", (double)specs[i].n);
    st = plot_template_add(pj, specs[i].tpl, specs[i].n > 0, err);
  }
  free(ids);
  plot_data_free(&pd);
  return st;
}
