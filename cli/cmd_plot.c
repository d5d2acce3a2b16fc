/*
** cmd_plot.c: `infsim plot DIR [--format png|svg] [--out PLOTDIR]`.
**
** Reads a run's requests.csv and timeseries.csv, prepares plain data files
** in a private temporary directory (per-instance blocks for the time
** series, sorted values for the CDFs), and drives one gnuplot process with
** a script made of the templates below (documented in plots/README.md).
** The templates live in this file, not beside it, so that an installed
** binary plots from any directory.
**
** Invariants: every output is written by gnuplot under a temporary name in
** PLOTDIR and renamed only after gnuplot exited cleanly, so a failed run
** leaves no half-written image; the temporary data directory is always
** removed. Bad input (missing files, malformed CSV) exits 2 naming
** file:line; a missing or failing gnuplot exits 1.
*/
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "commands.h"
#include "infsim/atomic_file.h"
#include "infsim/status.h"
#include "infsim/text.h"

enum {
  PLOT_MAX_FIELDS = 64,  /* columns per CSV row */
  PLOT_KEY_MAX_SERIES = 12, /* more instances than this: no legend */
};

/* ---- gnuplot templates ------------------------------------------------
 * Each runs after `reset` with `datafile` (its data), `ids` (instance ids,
 * space-separated, one data block per id in that order), `n` (rows) and
 * `run` (the run directory, for titles) defined. Time-series data columns:
 * 1 time_s, 2 running, 3 waiting, 4 kv_used, 5 kv_free, 6 kv_lent,
 * 7 kv_borrowed. CDF data: 1 value, 2 fraction <= value. */

static const char k_tpl_kv_usage[] =
    "set title sprintf('KV cache blocks in use per instance: %s', run)\n"
    "set xlabel 'simulated time (s)'\n"
    "set ylabel 'KV blocks used'\n"
    "set grid\nset key outside right top\n"
    "if (words(ids) > 12) { unset key }\n"
    "plot for [i=1:words(ids)] datafile index (i-1) using 1:4 with steps lw 2 "
    "title sprintf('instance %s', word(ids, i))\n";

static const char k_tpl_kv_borrowing[] =
    "set title sprintf('KV blocks lent (solid) and borrowed (dashed) per instance: %s', run)\n"
    "set xlabel 'simulated time (s)'\n"
    "set ylabel 'KV blocks'\n"
    /* all zero without borrowing: give the axis a height */
    "stats datafile using ($6 + $7) nooutput\n"
    "set yrange [0:(STATS_max > 0 ? 1.05 * STATS_max : 1)]\n"
    "set grid\nset key outside right top\n"
    "if (words(ids) > 12) { unset key }\n"
    "plot for [i=1:words(ids)] datafile index (i-1) using 1:6 with steps lw 2 lc i "
    "title sprintf('lent by %s', word(ids, i)), \\\n"
    "     for [i=1:words(ids)] datafile index (i-1) using 1:7 with steps lw 2 dt 2 lc i "
    "title sprintf('borrowed by %s', word(ids, i))\n";

static const char k_tpl_requests[] =
    "set multiplot layout 2,1 title sprintf('Requests per instance: %s', run)\n"
    "set grid\nset key outside right top\n"
    "if (words(ids) > 12) { unset key }\n"
    "set ylabel 'running'\n"
    "plot for [i=1:words(ids)] datafile index (i-1) using 1:2 with steps lw 2 "
    "title sprintf('instance %s', word(ids, i))\n"
    "set ylabel 'waiting'\n"
    "set xlabel 'simulated time (s)'\n"
    "plot for [i=1:words(ids)] datafile index (i-1) using 1:3 with steps lw 2 "
    "title sprintf('instance %s', word(ids, i))\n"
    "unset multiplot\n";

/* The CDF template takes `metric` (axis label) too. */
static const char k_tpl_cdf[] =
    "set title sprintf('CDF of %s over %d completed requests: %s', metric, n, run)\n"
    "set xlabel sprintf('%s (s)', metric)\n"
    "set ylabel 'fraction of requests'\n"
    "set yrange [0:1.02]\n"
    "set offsets graph 0.02, graph 0.02, 0, 0\n"
    "set grid\nset key bottom right\n"
    "plot datafile using 1:2 with steps lw 2 title metric\n";

static const char k_tpl_e2e_vs_arrival[] =
    "set title sprintf('End-to-end latency by arrival time (%d completed requests): %s', n, run)\n"
    "set xlabel 'arrival time (s)'\n"
    "set ylabel 'E2E latency (s)'\n"
    "set grid\nset key top left\n"
    "plot datafile using 1:2 with points pt 7 ps 0.5 title 'completed request'\n";

/* What a plot shows when its data set is empty (gnuplot refuses to plot
 * no data, and an absent file would look like a failure). */
static const char k_tpl_no_data[] =
    "set title sprintf('%s: %s', what, run)\n"
    "set label 1 'no data' at graph 0.5, 0.5 center\n"
    "unset xtics\nunset ytics\n"
    "plot [0:1] [0:1] NaN notitle\n";

/* ---- growable arrays --------------------------------------------------- */

typedef struct {
  double time_s;
  int64_t instance;
  double running, waiting, kv_used, kv_free, kv_lent, kv_borrowed;
  size_t row; /* input order, to keep sorting stable */
} ts_row;

typedef struct {
  double *v;
  size_t n, cap;
} dvec;

typedef struct {
  ts_row *rows;
  size_t n, cap;
  dvec ttft_s, tpot_s, e2e_s, arrival_s; /* arrival_s pairs with e2e_s */
} plot_data;

static bool dvec_push(dvec *d, double x) {
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

static void plot_data_free(plot_data *pd) {
  free(pd->rows);
  free(pd->ttft_s.v);
  free(pd->tpot_s.v);
  free(pd->e2e_s.v);
  free(pd->arrival_s.v);
}

/* ---- CSV --------------------------------------------------------------- */

typedef struct {
  infsim_line_reader lines;
  infsim_fields f;
  size_t n_header;
} csv_reader;

/* Field c of the current row. */
static const char *csv_field(const csv_reader *r, int c) { return r->f.fields[c].text; }

/* Reads the next non-blank row into r->f; 1 row, 0 end, -1 error. */
static int csv_next(csv_reader *r, infsim_error *err) {
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
static infsim_status csv_open(csv_reader *r, const char *path, const char *const *names, int n, int *cols,
                              infsim_error *err) {
  memset(r, 0, sizeof *r);
  infsim_status st = infsim_lines_open(&r->lines, path, err);
  if (st != INFSIM_OK) return st;
  int got = csv_next(r, err);
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

static void csv_close(csv_reader *r) {
  if (r->lines.fp != NULL) infsim_lines_close(&r->lines);
  infsim_fields_free(&r->f);
}

/* Parses the whole field as a finite number. */
static infsim_status csv_number(const csv_reader *r, int col, const char *name, double *out, infsim_error *err) {
  const char *s = csv_field(r, col);
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

static infsim_status read_requests(const char *path, plot_data *pd, infsim_error *err) {
  enum { C_ARRIVAL, C_OUTPUT, C_STATUS, C_TTFT, C_TPOT, C_E2E, C_N };
  static const char *const names[C_N] = {"arrival_s", "output_tokens", "status", "ttft_s", "tpot_s", "e2e_s"};
  int cols[C_N];
  csv_reader r;
  infsim_status st = csv_open(&r, path, names, C_N, cols, err);
  int got;
  while (st == INFSIM_OK && (got = csv_next(&r, err)) != 0) {
    if (got < 0) {
      st = err->status;
      break;
    }
    const char *status = csv_field(&r, cols[C_STATUS]);
    if (strcmp(status, "rejected") == 0) continue;
    if (strcmp(status, "completed") != 0) {
      st = infsim_fail(err, INFSIM_EINPUT, "%s:%lld: status: expected completed or rejected, got '%.40s'", path,
                       (long long)r.lines.line_no, status);
      break;
    }
    double v[C_N];
    for (int c = 0; c < C_N && st == INFSIM_OK; c++)
      if (c != C_STATUS && c != C_TPOT) st = csv_number(&r, cols[c], names[c], &v[c], err);
    /* TPOT is defined only for requests with two output tokens or more. */
    bool has_tpot = st == INFSIM_OK && v[C_OUTPUT] >= 2;
    if (has_tpot) st = csv_number(&r, cols[C_TPOT], names[C_TPOT], &v[C_TPOT], err);
    if (st != INFSIM_OK) break;
    if (!dvec_push(&pd->ttft_s, v[C_TTFT]) || !dvec_push(&pd->e2e_s, v[C_E2E]) ||
        !dvec_push(&pd->arrival_s, v[C_ARRIVAL]) || (has_tpot && !dvec_push(&pd->tpot_s, v[C_TPOT])))
      st = infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", path);
  }
  csv_close(&r);
  return st;
}

static infsim_status read_timeseries(const char *path, plot_data *pd, infsim_error *err) {
  enum { C_TIME, C_INSTANCE, C_RUNNING, C_WAITING, C_USED, C_FREE, C_LENT, C_BORROWED, C_N };
  static const char *const names[C_N] = {"time_s",         "instance",       "running",        "waiting",
                                         "kv_used_blocks", "kv_free_blocks", "kv_lent_blocks", "kv_borrowed_blocks"};
  int cols[C_N];
  csv_reader r;
  infsim_status st = csv_open(&r, path, names, C_N, cols, err);
  int got;
  while (st == INFSIM_OK && (got = csv_next(&r, err)) != 0) {
    if (got < 0) {
      st = err->status;
      break;
    }
    double v[C_N];
    for (int c = 0; c < C_N && st == INFSIM_OK; c++) st = csv_number(&r, cols[c], names[c], &v[c], err);
    if (st != INFSIM_OK) break;
    if (v[C_INSTANCE] != floor(v[C_INSTANCE]) || fabs(v[C_INSTANCE]) > 1e9) {
      st = infsim_fail(err, INFSIM_EINPUT, "%s:%lld: instance: expected an integer, got '%.40s'", path,
                       (long long)r.lines.line_no, csv_field(&r, cols[C_INSTANCE]));
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
  csv_close(&r);
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
 * gnuplot "index"); writes the ids, space-separated, into ids. */
static bool write_timeseries(const char *path, plot_data *pd, char **ids) {
  if (pd->n > 0) qsort(pd->rows, pd->n, sizeof *pd->rows, cmp_ts);
  FILE *fp = fopen(path, "w");
  char *list = NULL;
  size_t list_bytes = 0;
  FILE *ids_fp = open_memstream(&list, &list_bytes);
  if (fp == NULL || ids_fp == NULL) {
    if (fp != NULL) fclose(fp);
    if (ids_fp != NULL) fclose(ids_fp);
    free(list);
    return false;
  }
  for (size_t i = 0; i < pd->n; i++) {
    const ts_row *t = &pd->rows[i];
    if (i == 0 || t->instance != pd->rows[i - 1].instance) {
      if (i > 0) fputs("\n\n", fp);
      fprintf(ids_fp, "%s%" PRId64, i > 0 ? " " : "", t->instance);
    }
    fprintf(fp, "%.9g %.9g %.9g %.9g %.9g %.9g %.9g\n", t->time_s, t->running, t->waiting, t->kv_used, t->kv_free,
            t->kv_lent, t->kv_borrowed);
  }
  bool ok = fclose(ids_fp) == 0;
  ok &= !ferror(fp);
  ok &= fclose(fp) == 0;
  *ids = list;
  return ok && list != NULL;
}

/* The empirical CDF of values as steps: a (min, 0) point, then (x_i, i/n). */
static bool write_cdf(const char *path, dvec *values) {
  if (values->n > 0) qsort(values->v, values->n, sizeof *values->v, cmp_double);
  FILE *fp = fopen(path, "w");
  if (fp == NULL) return false;
  if (values->n > 0) fprintf(fp, "%.9g 0\n", values->v[0]);
  for (size_t i = 0; i < values->n; i++)
    fprintf(fp, "%.9g %.9g\n", values->v[i], (double)(i + 1) / (double)values->n);
  bool ok = !ferror(fp);
  return (fclose(fp) == 0) && ok;
}

static bool write_pairs(const char *path, const dvec *x, const dvec *y) {
  FILE *fp = fopen(path, "w");
  if (fp == NULL) return false;
  for (size_t i = 0; i < x->n; i++) fprintf(fp, "%.9g %.9g\n", x->v[i], y->v[i]);
  bool ok = !ferror(fp);
  return (fclose(fp) == 0) && ok;
}

/* ---- the gnuplot script ------------------------------------------------ */

typedef struct {
  const char *name;   /* output base name */
  const char *what;   /* title when there is no data */
  const char *tpl;    /* template */
  const char *data;   /* data file in the temporary directory */
  const char *metric; /* CDF axis name, or "" */
  size_t n;           /* data rows */
} plot_spec;

/* Writes s as a gnuplot single-quoted string, where '' stands for '. */
static void gp_quote(FILE *fp, const char *s) {
  fputc('\'', fp);
  for (; *s != '\0'; s++) {
    if (*s == '\'') fputc('\'', fp);
    if (*s != '\n') fputc(*s, fp);
  }
  fputc('\'', fp);
}

static void gp_assign(FILE *fp, const char *name, const char *value) {
  fprintf(fp, "%s = ", name);
  gp_quote(fp, value);
  fputc('\n', fp);
}

/* The whole script: terminal, then each plot into its temporary output. */
static char *build_script(const plot_spec *specs, size_t n_specs, char out_tmp[][INFSIM_PATH_BYTES],
                          const char *tmp_dir, const char *ids, const char *run, bool svg) {
  char *text = NULL;
  size_t bytes = 0;
  FILE *fp = open_memstream(&text, &bytes);
  if (fp == NULL) return NULL;
  /* pngcairo draws anti-aliased lines; libgd's png is the fallback where
   * gnuplot was built without cairo. */
  if (svg)
    fputs("set terminal svg size 1000,600 dynamic background rgb 'white'\n", fp);
  else
    fputs("if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
          "  set terminal pngcairo size 1000,600 background rgb 'white'\n"
          "} else {\n"
          "  set terminal png size 1000,600\n"
          "}\n",
          fp);
  /* Run names and ids hold underscores: no enhanced-text subscripts. */
  fputs("set termoption noenhanced\n", fp);
  for (size_t i = 0; i < n_specs; i++) {
    const plot_spec *p = &specs[i];
    char data[INFSIM_PATH_BYTES];
    snprintf(data, sizeof data, "%.3100s/%.32s", tmp_dir, p->data); /* tmp_dir is at most ~3030 bytes */
    fputs("reset\nset output ", fp);
    gp_quote(fp, out_tmp[i]);
    fputc('\n', fp);
    gp_assign(fp, "datafile", data);
    gp_assign(fp, "ids", ids);
    gp_assign(fp, "run", run);
    gp_assign(fp, "metric", p->metric);
    gp_assign(fp, "what", p->what);
    fprintf(fp, "n = %zu\n", p->n);
    fputs(p->n > 0 ? p->tpl : k_tpl_no_data, fp);
    fputs("unset output\n", fp);
  }
  if (fclose(fp) != 0) {
    free(text);
    return NULL;
  }
  return text;
}

/* The first executable "gnuplot" on PATH, or false. */
static bool find_gnuplot(char *path, size_t path_bytes) {
  const char *dirs = getenv("PATH");
  if (dirs == NULL) return false;
  while (*dirs != '\0') {
    size_t len = strcspn(dirs, ":");
    int n = snprintf(path, path_bytes, "%.*s/gnuplot", (int)(len == 0 ? 1 : len), len == 0 ? "." : dirs);
    if (n > 0 && (size_t)n < path_bytes && access(path, X_OK) == 0) return true;
    dirs += len;
    if (*dirs == ':') dirs++;
  }
  return false;
}

/* Runs gnuplot on script; its messages go to our stderr. */
static infsim_status run_gnuplot(const char *gnuplot, const char *script, infsim_error *err) {
  char command[INFSIM_PATH_BYTES * 2];
  size_t at = 0;
  command[at++] = '\'';
  for (const char *s = gnuplot; *s != '\0' && at + 8 < sizeof command; s++) {
    if (*s == '\'') {
      memcpy(command + at, "'\\''", 4);
      at += 4;
    } else {
      command[at++] = *s;
    }
  }
  command[at++] = '\'';
  command[at] = '\0';
  /* gnuplot may exit early on an error; a write to it must then fail
   * rather than kill us, so SIGPIPE is ignored while it runs. */
  struct sigaction ignore, saved;
  memset(&ignore, 0, sizeof ignore);
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  sigaction(SIGPIPE, &ignore, &saved);
  fflush(NULL);
  FILE *pipe = popen(command, "w");
  int status = -1;
  if (pipe != NULL) {
    fputs(script, pipe);
    status = pclose(pipe);
  }
  sigaction(SIGPIPE, &saved, NULL);
  if (pipe == NULL) return infsim_fail(err, INFSIM_ERUN, "cannot start %s: %s", gnuplot, strerror(errno));
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return infsim_fail(err, INFSIM_ERUN, "%s failed (exit status %d); see its messages above", gnuplot,
                       WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  return INFSIM_OK;
}

/* ---- the command ------------------------------------------------------- */

static void print_help(FILE *out) {
  fprintf(out,
          "usage: infsim plot DIR [--format png|svg] [--out PLOTDIR]\n"
          "\n"
          "Plots a run's outputs (DIR/requests.csv, DIR/timeseries.csv) with gnuplot:\n"
          "  kv_usage          KV cache blocks in use over time, per instance\n"
          "  kv_borrowing      KV blocks lent and borrowed over time, per instance\n"
          "  requests          running and waiting requests over time, per instance\n"
          "  ttft_cdf          CDF of time to first token (completed requests)\n"
          "  tpot_cdf          CDF of time per output token (completed, >= 2 output tokens)\n"
          "  e2e_cdf           CDF of end-to-end latency (completed requests)\n"
          "  e2e_vs_arrival    end-to-end latency against arrival time\n"
          "\n"
          "  --format png|svg  image format (default png)\n"
          "  --out PLOTDIR     where to write them (default DIR/plots)\n"
          "\n"
          "Exit codes: 0 ok, 1 gnuplot missing or failed, 2 bad input.\n");
}

/* Matches "--name VALUE" and "--name=VALUE"; advances *i past the value. */
static int option_value(int argc, char **argv, int *i, const char *name, const char **value) {
  size_t len = strlen(name);
  if (strncmp(argv[*i], name, len) != 0) return 0;
  if (argv[*i][len] == '=') {
    *value = argv[*i] + len + 1;
    return 1;
  }
  if (argv[*i][len] != '\0') return 0;
  if (*i + 1 >= argc) return -1;
  *value = argv[++*i];
  return 1;
}

/* The data files that plot_data_files() writes into the temporary
 * directory, which the templates read. */
static const char *const k_data_files[] = {"ts.dat", "e2e_arrival.dat", "ttft.dat", "tpot.dat", "e2e.dat"};
enum { N_DATA_FILES = sizeof k_data_files / sizeof k_data_files[0] };

static bool write_data_files(const char *tmp_dir, plot_data *pd, char **ids) {
  char path[INFSIM_PATH_BYTES + 32];
  bool ok = true;
  snprintf(path, sizeof path, "%s/%s", tmp_dir, k_data_files[0]);
  ok &= write_timeseries(path, pd, ids);
  snprintf(path, sizeof path, "%s/%s", tmp_dir, k_data_files[1]);
  ok &= write_pairs(path, &pd->arrival_s, &pd->e2e_s);
  snprintf(path, sizeof path, "%s/%s", tmp_dir, k_data_files[2]);
  ok &= write_cdf(path, &pd->ttft_s);
  snprintf(path, sizeof path, "%s/%s", tmp_dir, k_data_files[3]);
  ok &= write_cdf(path, &pd->tpot_s);
  snprintf(path, sizeof path, "%s/%s", tmp_dir, k_data_files[4]);
  ok &= write_cdf(path, &pd->e2e_s);
  return ok;
}

static void remove_data_files(const char *tmp_dir) {
  char path[INFSIM_PATH_BYTES + 32];
  for (size_t i = 0; i < N_DATA_FILES; i++) {
    snprintf(path, sizeof path, "%s/%s", tmp_dir, k_data_files[i]);
    unlink(path);
  }
  rmdir(tmp_dir);
}

/* Renders every plot from the prepared data: temporary outputs, one
 * gnuplot run, then the renames. Removes what it did not rename. */
static infsim_status render(const char *gnuplot, const char *dir, const char *out_dir, bool svg,
                            const char *tmp_dir, const char *ids, const plot_data *pd, infsim_error *err) {
  const plot_spec specs[] = {
      {"kv_usage", "KV cache blocks in use", k_tpl_kv_usage, "ts.dat", "", pd->n},
      {"kv_borrowing", "KV blocks lent and borrowed", k_tpl_kv_borrowing, "ts.dat", "", pd->n},
      {"requests", "Running and waiting requests", k_tpl_requests, "ts.dat", "", pd->n},
      {"ttft_cdf", "CDF of TTFT", k_tpl_cdf, "ttft.dat", "TTFT", pd->ttft_s.n},
      {"tpot_cdf", "CDF of TPOT", k_tpl_cdf, "tpot.dat", "TPOT", pd->tpot_s.n},
      {"e2e_cdf", "CDF of E2E latency", k_tpl_cdf, "e2e.dat", "E2E latency", pd->e2e_s.n},
      {"e2e_vs_arrival", "E2E latency by arrival time", k_tpl_e2e_vs_arrival, "e2e_arrival.dat", "", pd->e2e_s.n},
  };
  enum { N_SPECS = sizeof specs / sizeof specs[0] };
  char out_tmp[N_SPECS][INFSIM_PATH_BYTES];
  char out_final[N_SPECS][INFSIM_PATH_BYTES];
  size_t n_tmp = 0;
  infsim_status st = INFSIM_OK;
  const char *ext = svg ? "svg" : "png";
  for (size_t i = 0; i < N_SPECS; i++) {
    int len = snprintf(out_final[i], INFSIM_PATH_BYTES, "%s/%s.%s", out_dir, specs[i].name, ext);
    if (len < 0 || len + 12 >= INFSIM_PATH_BYTES) {
      st = infsim_fail(err, INFSIM_EINPUT, "%s: path too long", out_dir);
      break;
    }
    snprintf(out_tmp[i], INFSIM_PATH_BYTES, "%.4000s.tmpXXXXXX", out_final[i]); /* length checked above */
    int fd = mkstemp(out_tmp[i]);
    if (fd < 0) {
      st = infsim_fail(err, INFSIM_EIO, "%s: cannot create: %s", out_final[i], strerror(errno));
      break;
    }
    close(fd);
    n_tmp++;
  }
  if (st == INFSIM_OK) {
    char *script = build_script(specs, N_SPECS, out_tmp, tmp_dir, ids, dir, svg);
    st = script != NULL ? run_gnuplot(gnuplot, script, err) : infsim_fail(err, INFSIM_ENOMEM, "out of memory");
    free(script);
  }
  /* gnuplot can exit 0 when a terminal failed to write: an empty image is
   * a failure too. */
  for (size_t i = 0; st == INFSIM_OK && i < n_tmp; i++) {
    struct stat sb;
    if (stat(out_tmp[i], &sb) != 0 || sb.st_size == 0)
      st = infsim_fail(err, INFSIM_ERUN, "%s: gnuplot wrote nothing", out_final[i]);
  }
  for (size_t i = 0; st == INFSIM_OK && i < n_tmp; i++) {
    chmod(out_tmp[i], 0644);
    if (rename(out_tmp[i], out_final[i]) != 0)
      st = infsim_fail(err, INFSIM_EIO, "%s: cannot write: %s", out_final[i], strerror(errno));
    else
      printf("%s\n", out_final[i]);
  }
  for (size_t i = 0; i < n_tmp; i++) unlink(out_tmp[i]); /* fails harmlessly for the renamed */
  return st;
}

/* Reads the run, finds gnuplot, prepares the data and renders. */
static infsim_status plot_run(const char *dir, const char *out_dir, bool svg, infsim_error *err) {
  char path[INFSIM_PATH_BYTES + 32];
  plot_data pd = {0};
  snprintf(path, sizeof path, "%s/requests.csv", dir);
  infsim_status st = read_requests(path, &pd, err);
  if (st == INFSIM_OK) {
    snprintf(path, sizeof path, "%s/timeseries.csv", dir);
    st = read_timeseries(path, &pd, err);
  }
  char gnuplot[INFSIM_PATH_BYTES];
  if (st == INFSIM_OK && !find_gnuplot(gnuplot, sizeof gnuplot))
    st = infsim_fail(err, INFSIM_ERUN, "gnuplot not found on PATH (install gnuplot, e.g. gnuplot-nox)");
  if (st == INFSIM_OK) st = infsim_make_dirs(out_dir, err);
  if (st == INFSIM_OK) {
    const char *tmp = getenv("TMPDIR");
    char tmp_dir[INFSIM_PATH_BYTES];
    snprintf(tmp_dir, sizeof tmp_dir, "%.3000s/infsim_plot_XXXXXX", tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (mkdtemp(tmp_dir) == NULL) {
      st = infsim_fail(err, INFSIM_EIO, "%s: cannot create: %s", tmp_dir, strerror(errno));
    } else {
      char *ids = NULL;
      if (!write_data_files(tmp_dir, &pd, &ids))
        st = infsim_fail(err, INFSIM_EIO, "%s: cannot write plot data", tmp_dir);
      else
        st = render(gnuplot, dir, out_dir, svg, tmp_dir, ids, &pd, err);
      free(ids);
      remove_data_files(tmp_dir);
    }
  }
  plot_data_free(&pd);
  return st;
}

int infsim_cmd_plot(int argc, char **argv) {
  const char *dir = NULL, *out_dir = NULL, *format = "png";
  for (int i = 1; i < argc; i++) {
    const char *value = NULL;
    int got;
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      print_help(stdout);
      return 0;
    }
    const char *option = argv[i];
    if ((got = option_value(argc, argv, &i, "--format", &value)) != 0) {
      format = value;
    } else if ((got = option_value(argc, argv, &i, "--out", &value)) != 0) {
      out_dir = value;
    }
    if (got < 0) {
      fprintf(stderr, "infsim plot: %s needs a value (try infsim plot --help)\n", option);
      return 2;
    }
    if (got > 0) {
      continue;
    } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
      fprintf(stderr, "infsim plot: unknown option '%s' (try infsim plot --help)\n", argv[i]);
      return 2;
    } else if (dir == NULL) {
      dir = argv[i];
    } else {
      fprintf(stderr, "infsim plot: one run directory expected, got '%s' and '%s'\n", dir, argv[i]);
      return 2;
    }
  }
  if (dir == NULL) {
    print_help(stderr);
    return 2;
  }
  if (strcmp(format, "png") != 0 && strcmp(format, "svg") != 0) {
    fprintf(stderr, "infsim plot: --format: expected png or svg, got '%s'\n", format);
    return 2;
  }
  char default_out[INFSIM_PATH_BYTES];
  if (out_dir == NULL) {
    snprintf(default_out, sizeof default_out, "%.4000s/plots", dir);
    out_dir = default_out;
  }
  infsim_error err = {0};
  if (plot_run(dir, out_dir, strcmp(format, "svg") == 0, &err) != INFSIM_OK) {
    fprintf(stderr, "infsim plot: %s\n", err.msg);
    return infsim_status_exit_code(err.status);
  }
  return 0;
}
