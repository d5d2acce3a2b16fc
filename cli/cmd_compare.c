/*
** cmd_compare.c: `infsim compare SIM_OUT CLUSTER_OUT [--plot FILE] [--no-plot]`:
** how far a simulated run is from a measured one (`infsim cluster`), as
** relative errors (sim - cluster) / cluster:
**  - throughput (output tokens/s) and requests/s;
**  - TTFT, TPOT and E2E at mean, p50, p90 and p99 (summary.json);
**  - per-iteration time when both have iterations.csv: the time of one
**    step ((end - start) / steps, steps weighted), decode-only iterations
**    and iterations with prefill apart, at mean, p50, p90, p99.
** and draws them (gnuplot): the sim / cluster ratio of every row, 1 being
** exact. The plot goes to CLUSTER_OUT/compare.png unless --plot names a
** .png or .svg file. The plot and --reprice-rows form one output set
** (atomic_file.h): both appear once gnuplot succeeded, or neither.
**
** Bad input (a missing file, a field that is not a number, an output
** location that cannot be written) exits 2 naming the file and field; a
** failing gnuplot exits 1 after the table.
*/
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli_opts.h"
#include "commands.h"
#include "plot_common.h"
#include "infsim/atomic_file.h"
#include "infsim/config.h"
#include "infsim/costmodel.h"
#include "infsim/params.h"
#include "infsim/run.h"
#include "infsim/status.h"
#include "infsim/text.h"

static const char k_usage[] =
    "usage: infsim compare SIM_OUT CLUSTER_OUT [--plot FILE.png|FILE.svg] [--no-plot] [--reprice CONFIG.yaml]\n"
    "\n"
    "Prints the relative error (sim - cluster) / cluster of throughput, TTFT, TPOT and E2E\n"
    "(mean, p50, p90, p99) and, when both directories hold iterations.csv, of the per-step\n"
    "iteration time; draws the sim/cluster ratios (default CLUSTER_OUT/compare.png).\n"
    "\n"
    "  --reprice CONFIG  also price every iteration of CLUSTER_OUT/iterations.csv with the cost\n"
    "                    model CONFIG gives (its gpu, calibration, policy) and print the relative\n"
    "                    error of each predicted against its measured time (median, p95)\n"
    "  --reprice-rows F  with --reprice: write each row's batch, measured and predicted time\n"
    "                    (per step) to F (CSV)\n"
    "\n"
    "Exit codes: 0 ok, 1 gnuplot failed, 2 bad input.\n";

enum { MAX_ROWS = 40 };

typedef struct {
  char name[48];
  double sim, cluster;
} cmp_row;

typedef struct {
  cmp_row rows[MAX_ROWS];
  int n;
} cmp_table;

static void add_row(cmp_table *t, const char *name, double sim, double cluster) {
  if (t->n >= MAX_ROWS) return;
  cmp_row *r = &t->rows[t->n++];
  snprintf(r->name, sizeof r->name, "%s", name);
  r->sim = sim;
  r->cluster = cluster;
}

static infsim_status number_at(json_t *root, const char *path, const char *key, const char *sub, double *out,
                               infsim_error *err) {
  json_t *v = json_object_get(root, key);
  if (v && sub) v = json_object_get(v, sub);
  if (!json_is_number(v))
    return infsim_fail(err, INFSIM_EINPUT, "%s: %s%s%s: missing or not a number", path, key, sub ? "." : "",
                       sub ? sub : "");
  *out = json_number_value(v);
  return INFSIM_OK;
}

static infsim_status load_summary(const char *dir, json_t **out, char *path, size_t path_bytes, infsim_error *err) {
  snprintf(path, path_bytes, "%s/summary.json", dir);
  json_error_t je;
  *out = json_load_file(path, 0, &je);
  if (!*out)
    return infsim_fail(err, INFSIM_EINPUT, "%s:%d: %s", path, je.line > 0 ? je.line : 1,
                       access(path, R_OK) == 0 ? je.text : "cannot read the file");
  return INFSIM_OK;
}

/* Per-step iteration times of one iterations.csv, split by kind (0:
 * decode only, 1: with prefill); NULL lists when the file is absent. */
typedef struct {
  double *v[2];
  size_t n[2], cap[2];
} iter_times;

static bool push_time(iter_times *it, int kind, double v) {
  if (it->n[kind] == it->cap[kind]) {
    size_t cap = it->cap[kind] ? 2 * it->cap[kind] : 256;
    double *p = realloc(it->v[kind], cap * sizeof *p);
    if (!p) return false;
    it->v[kind] = p;
    it->cap[kind] = cap;
  }
  it->v[kind][it->n[kind]++] = v;
  return true;
}

static infsim_status load_iterations(const char *dir, iter_times *it, bool *present, infsim_error *err) {
  char path[4096];
  snprintf(path, sizeof path, "%s/iterations.csv", dir);
  *present = access(path, R_OK) == 0;
  if (!*present) return INFSIM_OK;
  infsim_line_reader lr;
  infsim_status st = infsim_lines_open(&lr, path, err);
  if (st != INFSIM_OK) return st;
  infsim_fields f = {0};
  int c_start = -1, c_end = -1, c_steps = -1, c_prefill = -1;
  const char *why = NULL;
  int r;
  while (st == INFSIM_OK && (r = infsim_lines_next(&lr)) == 1) {
    if (infsim_line_blank(&lr)) continue;
    if (!infsim_csv_split(lr.buf, lr.len, &f, &why)) {
      st = infsim_fail(err, INFSIM_EINPUT, "%s:%lld: %s", path, (long long)lr.line_no, why);
      break;
    }
    if (c_start < 0) {
      c_start = infsim_fields_find(&f, "start_s");
      c_end = infsim_fields_find(&f, "end_s");
      c_steps = infsim_fields_find(&f, "steps");
      c_prefill = infsim_fields_find(&f, "prefill_tokens");
      if (c_start < 0 || c_end < 0 || c_steps < 0 || c_prefill < 0)
        st = infsim_fail(err, INFSIM_EINPUT, "%s:1: header lacks start_s, end_s, steps or prefill_tokens", path);
      continue;
    }
    int need = c_start > c_end ? c_start : c_end;
    need = need > c_steps ? need : c_steps;
    need = need > c_prefill ? need : c_prefill;
    if ((int)f.count <= need) {
      st = infsim_fail(err, INFSIM_EINPUT, "%s:%lld: too few fields", path, (long long)lr.line_no);
      break;
    }
    char *e1, *e2, *e3, *e4;
    double start = strtod(f.fields[c_start].text, &e1), end = strtod(f.fields[c_end].text, &e2);
    double steps = strtod(f.fields[c_steps].text, &e3), prefill = strtod(f.fields[c_prefill].text, &e4);
    if (*e1 || *e2 || *e3 || *e4 || !(steps >= 1) || !(end >= start)) {
      st = infsim_fail(err, INFSIM_EINPUT, "%s:%lld: start_s, end_s, steps or prefill_tokens: not a valid number",
                       path, (long long)lr.line_no);
      break;
    }
    /* A run of identical steps counts once per step. */
    for (long s = 0; s < (long)steps && st == INFSIM_OK; s++)
      if (!push_time(it, prefill > 0, (end - start) / steps)) st = infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  }
  infsim_fields_free(&f);
  infsim_lines_close(&lr);
  return st;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted v (as summary.json's). */
static double pct(const double *v, size_t n, double q) {
  if (n == 0) return 0.0;
  size_t rank = (size_t)ceil(q * (double)n);
  if (rank < 1) rank = 1;
  return v[rank - 1];
}

static void iteration_rows(cmp_table *t, iter_times *sim, iter_times *cl) {
  static const char *kinds[] = {"iteration decode (s)", "iteration prefill (s)"};
  for (int k = 0; k < 2; k++) {
    if (sim->n[k] == 0 || cl->n[k] == 0) continue;
    qsort(sim->v[k], sim->n[k], sizeof(double), cmp_double);
    qsort(cl->v[k], cl->n[k], sizeof(double), cmp_double);
    double ms = 0, mc = 0;
    for (size_t i = 0; i < sim->n[k]; i++) ms += sim->v[k][i];
    for (size_t i = 0; i < cl->n[k]; i++) mc += cl->v[k][i];
    char name[48];
    snprintf(name, sizeof name, "%s mean", kinds[k]);
    add_row(t, name, ms / (double)sim->n[k], mc / (double)cl->n[k]);
    const double qs[] = {0.5, 0.9, 0.99};
    const char *qn[] = {"p50", "p90", "p99"};
    for (int q = 0; q < 3; q++) {
      snprintf(name, sizeof name, "%s %s", kinds[k], qn[q]);
      add_row(t, name, pct(sim->v[k], sim->n[k], qs[q]), pct(cl->v[k], cl->n[k], qs[q]));
    }
  }
}

static double rel_err(const cmp_row *r) { return r->cluster != 0 ? (r->sim - r->cluster) / r->cluster : 0.0; }

/* Plots t into temp_path, a file of the output set that becomes out_path
 * (gnuplot writes it by name). */
static infsim_status draw(const cmp_table *t, const char *temp_path, const char *out_path, infsim_error *err) {
  const char *ext = strrchr(out_path, '.');
  bool svg = ext && strcmp(ext, ".svg") == 0;
  /* exec: the shell becomes gnuplot, so that a signal that ends gnuplot is
   * seen as such and not as the shell's exit status 128 + N. */
  FILE *gp = popen("exec gnuplot 2>&1", "w");
  if (!gp) return infsim_fail(err, INFSIM_EIO, "%s: no plot: cannot start gnuplot: %s", out_path, strerror(errno));
  fprintf(gp, "set terminal %s size 1000,%d\n", svg ? "svg" : "pngcairo", 200 + 22 * t->n);
  fprintf(gp, "set output '%s'\n", temp_path);
  fprintf(gp, "set title 'simulated / measured (1 = exact)'\nset style fill solid 0.6\nset grid x\n"
              "set yrange [-0.5:%d]\nset ytics nomirror font ',9'\nunset key\n"
              "set xlabel 'sim / cluster (log scale; bars run from 1 to the ratio)'\nset logscale x\n"
              "set arrow from 1,-0.5 to 1,%d nohead dt 2\n",
          t->n, t->n);
  fprintf(gp, "plot '-' using (1):0:($2 < 1 ? $2 : 1):($2 > 1 ? $2 : 1):($0-0.35):($0+0.35):ytic(1) "
              "with boxxyerror\n");
  for (int i = 0; i < t->n; i++) {
    /* Ratios at or below 0 (a zero on either side) have no place on a log scale: 1 (no bar). */
    double ratio = t->rows[i].cluster > 0 && t->rows[i].sim > 0 ? t->rows[i].sim / t->rows[i].cluster : 1.0;
    fprintf(gp, "\"%s\" %.6g\n", t->rows[i].name, ratio);
  }
  fprintf(gp, "e\n");
  /* pclose gives a wait status: said as the exit status or the signal. */
  int ws = pclose(gp);
  if (ws == -1) return infsim_fail(err, INFSIM_EIO, "%s: no plot: gnuplot: %s", out_path, strerror(errno));
  if (WIFEXITED(ws) && WEXITSTATUS(ws) == 127) /* the shell's "command not found" */
    return infsim_fail(err, INFSIM_EIO, "%s: no plot: gnuplot not found", out_path);
  char words[PLOT_EXIT_WORDS_BYTES];
  if (plot_gnuplot_failed(ws, words)) return infsim_fail(err, INFSIM_EIO, "%s: no plot: gnuplot %s", out_path, words);
  struct stat sb;
  if (stat(temp_path, &sb) != 0 || sb.st_size == 0)
    return infsim_fail(err, INFSIM_EIO, "%s: no plot: gnuplot wrote nothing", out_path);
  return INFSIM_OK;
}

/* ---- re-pricing measured iterations ------------------------------------ */

/* One iterations.csv row's batch as the cost model takes it. The CSV has no
 * logits count: decodes plus one completing prefill when the row has
 * prefill tokens (exact for decode rows; off by a few LM-head rows at
 * most otherwise). */
typedef struct {
  double start_s;
  double measured_s;
  int64_t steps;
  infsim_batch_agg agg;
} priced_row;

static infsim_status reprice_rows(const char *dir, priced_row **out, size_t *n, infsim_error *err) {
  static const char *cols[] = {"start_s",         "end_s",         "steps",          "prefill_tokens",
                               "prefill_attention_pairs", "decode_requests", "decode_context_tokens",
                               "remote_holders",  "remote_context_tokens"};
  enum { NCOL = sizeof cols / sizeof cols[0] };
  char path[4096];
  snprintf(path, sizeof path, "%s/iterations.csv", dir);
  infsim_line_reader lr;
  infsim_status st = infsim_lines_open(&lr, path, err);
  if (st != INFSIM_OK) return st;
  infsim_fields f = {0};
  int idx[NCOL];
  int max_idx = -1; /* decode_max_context_tokens: optional (older files lack it) */
  bool header = true;
  size_t cap = 0;
  *out = NULL;
  *n = 0;
  const char *why = NULL;
  while (st == INFSIM_OK && infsim_lines_next(&lr) == 1) {
    if (infsim_line_blank(&lr)) continue;
    if (!infsim_csv_split(lr.buf, lr.len, &f, &why)) {
      st = infsim_fail(err, INFSIM_EINPUT, "%s:%lld: %s", path, (long long)lr.line_no, why);
      break;
    }
    if (header) {
      header = false;
      for (int c = 0; c < NCOL && st == INFSIM_OK; c++)
        if ((idx[c] = infsim_fields_find(&f, cols[c])) < 0)
          st = infsim_fail(err, INFSIM_EINPUT, "%s:1: no column %s", path, cols[c]);
      max_idx = infsim_fields_find(&f, "decode_max_context_tokens");
      continue;
    }
    double v[NCOL];
    for (int c = 0; c < NCOL && st == INFSIM_OK; c++) {
      char *end = NULL;
      v[c] = idx[c] < (int)f.count ? strtod(f.fields[idx[c]].text, &end) : NAN;
      if (!end || *end || !(v[c] >= 0))
        st = infsim_fail(err, INFSIM_EINPUT, "%s:%lld: %s: not a number >= 0", path, (long long)lr.line_no,
                         cols[c]);
    }
    if (st != INFSIM_OK) break;
    if (*n == cap) {
      cap = cap ? 2 * cap : 256;
      priced_row *p = realloc(*out, cap * sizeof *p);
      if (!p) {
        st = infsim_fail(err, INFSIM_ENOMEM, "out of memory");
        break;
      }
      *out = p;
    }
    priced_row *r = &(*out)[(*n)++];
    memset(r, 0, sizeof *r);
    r->start_s = v[0];
    r->measured_s = v[1] - v[0];
    r->steps = v[2] >= 1 ? (int64_t)v[2] : 1;
    r->agg.prefill_tokens = (int64_t)v[3];
    r->agg.prefill_attn_pairs = (int64_t)v[4];
    r->agg.decode_requests = (int64_t)v[5];
    r->agg.decode_context_tokens = (int64_t)v[6];
    r->agg.remote_partials = (int64_t)v[7];
    r->agg.remote_context_tokens = (int64_t)v[8];
    r->agg.remote_requests = r->agg.remote_partials < r->agg.decode_requests ? r->agg.remote_partials
                                                                             : r->agg.decode_requests;
    r->agg.logits_tokens = r->agg.decode_requests + (r->agg.prefill_tokens > 0);
    if (max_idx >= 0 && max_idx < (int)f.count) {
      char *end = NULL;
      double m = strtod(f.fields[max_idx].text, &end);
      if (!end || *end || !(m >= 0)) {
        st = infsim_fail(err, INFSIM_EINPUT, "%s:%lld: decode_max_context_tokens: not a number >= 0", path,
                         (long long)lr.line_no);
        break;
      }
      r->agg.decode_max_context_tokens = (int64_t)m;
    }
  }
  infsim_fields_free(&f);
  infsim_lines_close(&lr);
  return st;
}

static infsim_status load_cost_model(const char *config_path, infsim_cost_model *cm, infsim_error *err) {
  infsim_config *cfg = infsim_config_new();
  if (!cfg) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  infsim_run_params p;
  infsim_status st = infsim_config_load_yaml(cfg, config_path, err);
  if (st == INFSIM_OK) st = infsim_run_params_from_config(cfg, &p, err);
  if (st == INFSIM_OK) {
    infsim_config_mark_used(cfg, "workload"); /* the trace is not needed to price a batch */
    st = infsim_config_check_unused(cfg, err);
  }
  if (st == INFSIM_OK) st = infsim_run_cost_model(&p, cm, err);
  infsim_config_free(cfg);
  return st;
}

/* |predicted - measured| / measured per step, all rows and by kind. */
/* rf: NULL, or --reprice-rows' stream (the output set's: written, not closed, here). */
static infsim_status reprice(const char *dir, const char *config_path, FILE *rf, infsim_error *err) {
  infsim_cost_model cm;
  infsim_status st = load_cost_model(config_path, &cm, err);
  if (st != INFSIM_OK) return st;
  priced_row *rows = NULL;
  size_t n = 0;
  st = reprice_rows(dir, &rows, &n, err);
  double *e[3] = {malloc((n ? n : 1) * sizeof(double)), malloc((n ? n : 1) * sizeof(double)),
                  malloc((n ? n : 1) * sizeof(double))};
  size_t ne[3] = {0, 0, 0};
  double signed_sum = 0.0;
  size_t used = 0;
  if (st == INFSIM_OK && (!e[0] || !e[1] || !e[2])) st = infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  if (st == INFSIM_OK && rf)
    fprintf(rf, "row,steps,prefill_tokens,decode_requests,decode_context_tokens,decode_max_context_tokens,"
                "measured_s,predicted_s,busy_fraction,compute_bound_s\n");
  /* The clock term's compute load follows the measured timeline: each
   * row at its compute share from its start to its end, idle between
   * rows. compute_bound_s: the part the term scales. */
  double busy_u = 0.0, busy_t_s = 0.0;
  for (size_t i = 0; i < n && st == INFSIM_OK; i++) {
    const priced_row *r = &rows[i];
    if (r->start_s > busy_t_s) {
      busy_u = infsim_cost_busy_fraction(&cm.curves, busy_u, (int64_t)((r->start_s - busy_t_s) * 1e9), 0.0);
      busy_t_s = r->start_s;
    }
    double row_u = busy_u, share = infsim_cost_compute_share(&cm, &r->agg);
    if (r->start_s + r->measured_s > busy_t_s) {
      busy_u = infsim_cost_busy_fraction(&cm.curves, busy_u,
                                         (int64_t)((r->start_s + r->measured_s - busy_t_s) * 1e9), share);
      busy_t_s = r->start_s + r->measured_s;
    }
    if (!(r->measured_s > 0)) continue;
    int64_t ns;
    double bound_s = 0.0;
    if (r->agg.prefill_tokens == 0 && r->agg.decode_requests > 0) {
      infsim_decode_run run;
      infsim_cost_decode_run_init(&cm, r->agg.decode_requests, &run);
      run.first_max_context_tokens = r->agg.decode_max_context_tokens;
      ns = infsim_cost_decode_run_ns(&cm, &run, r->agg.decode_context_tokens, r->steps);
    } else {
      ns = infsim_cost_iteration_busy_ns(&cm, &r->agg, row_u);
      bound_s = share * (double)infsim_cost_iteration_ns(&cm, &r->agg) * 1e-9;
    }
    double rel = ((double)ns * 1e-9 - r->measured_s) / r->measured_s;
    if (rf)
      fprintf(rf, "%zu,%lld,%lld,%lld,%lld,%lld,%.9f,%.9f,%.6f,%.9f\n", i, (long long)r->steps,
              (long long)r->agg.prefill_tokens, (long long)r->agg.decode_requests,
              (long long)r->agg.decode_context_tokens, (long long)r->agg.decode_max_context_tokens, r->measured_s,
              (double)ns * 1e-9 / (double)r->steps, row_u, bound_s);
    signed_sum += rel;
    used++;
    int kind = r->agg.prefill_tokens > 0 ? 2 : 1;
    e[0][ne[0]++] = fabs(rel);
    e[kind][ne[kind]++] = fabs(rel);
  }
  if (st == INFSIM_OK) {
    printf("\nrepriced: %zu iterations of %s by the cost model of %s (%s)\n", used, dir, config_path,
           cm.curves.name);
    const char *names[] = {"all", "decode only", "with prefill"};
    for (int k = 0; k < 3; k++) {
      if (ne[k] == 0) continue;
      qsort(e[k], ne[k], sizeof(double), cmp_double);
      printf("  %-14s |predicted - measured| / measured: median %.1f%%, p95 %.1f%% (%zu rows)\n", names[k],
             100.0 * pct(e[k], ne[k], 0.5), 100.0 * pct(e[k], ne[k], 0.95), ne[k]);
    }
    if (used) printf("  mean signed error %+.1f%%\n", 100.0 * signed_sum / (double)used);
  }
  for (int k = 0; k < 3; k++) free(e[k]);
  free(rows);
  infsim_cost_model_destroy(&cm);
  return st;
}

/* The options that take a value, given as "--name VALUE" or "--name=VALUE". */
static const char *const k_value_options[] = {"--plot", "--reprice", "--reprice-rows", NULL};

int infsim_cmd_compare(int argc, char **argv) {
  const char *dirs[2] = {NULL, NULL}, *plot = NULL, *reprice_config = NULL, *rows_path = NULL;
  bool no_plot = false;
  int nd = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = NULL;
    int got = cli_option_among(argc, argv, &i, k_value_options, &a, &v);
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(k_usage, stdout);
      return 0;
    } else if (strcmp(a, "--no-plot") == 0) {
      no_plot = true;
    } else if (got > 0 && strcmp(a, "--plot") == 0) {
      plot = v;
    } else if (got > 0 && strcmp(a, "--reprice") == 0) {
      reprice_config = v;
    } else if (got > 0 && strcmp(a, "--reprice-rows") == 0) {
      rows_path = v;
    } else if (a[0] == '-' || nd == 2) {
      fprintf(stderr, "infsim compare: unexpected argument '%s'\n%s", a, k_usage);
      return 2;
    } else {
      dirs[nd++] = a;
    }
  }
  if (nd != 2) {
    fprintf(stderr, "infsim compare: two directories expected (SIM_OUT CLUSTER_OUT), got %d (try infsim compare --help)\n",
            nd);
    return 2;
  }
  infsim_error err = {0};
  json_t *sum[2] = {NULL, NULL};
  char paths[2][4300];
  iter_times it[2];
  memset(it, 0, sizeof it);
  bool have_it[2] = {false, false};
  cmp_table t = {.n = 0};
  infsim_status st = INFSIM_OK;
  for (int d = 0; d < 2 && st == INFSIM_OK; d++) st = load_summary(dirs[d], &sum[d], paths[d], sizeof paths[d], &err);
  double a = 0.0, b = 0.0;
  if (st == INFSIM_OK) {
    const char *tops[][2] = {{"throughput_tok_s", "throughput (tok/s)"}, {"requests_per_s", "requests/s"}};
    for (size_t i = 0; i < 2 && st == INFSIM_OK; i++) {
      st = number_at(sum[0], paths[0], tops[i][0], NULL, &a, &err);
      if (st == INFSIM_OK) st = number_at(sum[1], paths[1], tops[i][0], NULL, &b, &err);
      if (st == INFSIM_OK) add_row(&t, tops[i][1], a, b);
    }
    const char *lat[] = {"ttft_s", "tpot_s", "e2e_s"}, *names[] = {"TTFT", "TPOT", "E2E"};
    const char *stats[] = {"mean", "p50", "p90", "p99"};
    for (int l = 0; l < 3 && st == INFSIM_OK; l++)
      for (int s = 0; s < 4 && st == INFSIM_OK; s++) {
        st = number_at(sum[0], paths[0], lat[l], stats[s], &a, &err);
        if (st == INFSIM_OK) st = number_at(sum[1], paths[1], lat[l], stats[s], &b, &err);
        char name[48];
        snprintf(name, sizeof name, "%s %s (s)", names[l], stats[s]);
        if (st == INFSIM_OK) add_row(&t, name, a, b);
      }
  }
  for (int d = 0; d < 2 && st == INFSIM_OK; d++) st = load_iterations(dirs[d], &it[d], &have_it[d], &err);
  if (st == INFSIM_OK && have_it[0] && have_it[1]) iteration_rows(&t, &it[0], &it[1]);
  /* The files written (--reprice-rows, the plot): made ready before
   * anything is printed, so that a place that cannot hold them is bad
   * input found first, and put in place together at the end. */
  infsim_atomic_set *outs = infsim_atomic_set_new();
  FILE *rows_fp = NULL;
  const char *plot_temp = NULL;
  char plot_path[4096];
  if (st == INFSIM_OK && outs == NULL) st = infsim_fail(&err, INFSIM_ENOMEM, "out of memory");
  if (st == INFSIM_OK && reprice_config && rows_path) st = infsim_atomic_set_add(outs, rows_path, &rows_fp, &err);
  if (st == INFSIM_OK && !no_plot) {
    int len = plot ? snprintf(plot_path, sizeof plot_path, "%s", plot)
                   : snprintf(plot_path, sizeof plot_path, "%s/compare.png", dirs[1]);
    if (len < 0 || (size_t)len >= sizeof plot_path)
      st = infsim_fail(&err, INFSIM_EINPUT, "%s: plot path too long", plot ? plot : dirs[1]);
    else
      st = infsim_atomic_set_add_path(outs, plot_path, &plot_temp, &err);
  }
  int rc = 0;
  if (st != INFSIM_OK) {
    fprintf(stderr, "infsim compare: %s\n", err.msg);
    rc = infsim_status_exit_code(st);
  } else {
    printf("%-30s %14s %14s %10s\n", "metric", "sim", "cluster", "rel. err");
    for (int i = 0; i < t.n; i++) {
      const cmp_row *r = &t.rows[i];
      /* No error relative to a zero the simulator did not also give. */
      if (r->cluster == 0 && r->sim != 0)
        printf("%-30s %14.6g %14.6g %10s\n", r->name, r->sim, r->cluster, "n/a");
      else
        printf("%-30s %14.6g %14.6g %+9.1f%%\n", r->name, r->sim, r->cluster, 100.0 * rel_err(r));
    }
    if (!(have_it[0] && have_it[1]))
      printf("(per-iteration rows need iterations.csv in both: metrics.iterations: true)\n");
    if (reprice_config) st = reprice(dirs[1], reprice_config, rows_fp, &err);
    if (st == INFSIM_OK && !no_plot) st = draw(&t, plot_temp, plot_path, &err);
    if (st == INFSIM_OK) st = infsim_atomic_set_commit(outs, &err);
    if (st != INFSIM_OK) {
      fprintf(stderr, "infsim compare: %s\n", err.msg);
      rc = infsim_status_exit_code(st);
    } else if (!no_plot) {
      printf("plot: %s\n", plot_path);
    }
  }
  infsim_atomic_set_free(outs); /* after a failure: no file written */
  for (int d = 0; d < 2; d++) {
    json_decref(sum[d]);
    free(it[d].v[0]);
    free(it[d].v[1]);
  }
  return rc;
}
