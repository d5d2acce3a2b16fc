/*
** cmd_plot.c: `infsim plot DIR|DB [--format png|svg] [--out PLOTDIR]
** [--x KEY] [--series KEY] [--where SQL]`.
**
** What it draws depends on what it is given (plots/README.md):
**   a run directory (requests.csv, timeseries.csv): the run's plots;
**   a directory of run directories: latency CDFs of all runs on one chart;
**   a directory with capacity.csv: capacity curves;
**   a sweep DB (infsim sweep --out): throughput and p99 against a grid key;
**   a calibration DB: measured kernel times and the fitted curves.
** All images of one call come from one gnuplot run (plot_common.h) and
** replace earlier ones only when every one of them was drawn.
**
** Bad input (missing files, malformed CSV, an unknown DB) exits 2 naming
** file:line; a missing or failing gnuplot exits 1.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "cli_opts.h"
#include "commands.h"
#include "plot_common.h"

static void print_help(FILE *out) {
  fprintf(out,
          "usage: infsim plot DIR|DB [--format png|svg] [--out PLOTDIR] [--x KEY] [--series KEY]\n"
          "                   [--where SQL]\n"
          "\n"
          "A run directory (DIR/requests.csv, DIR/timeseries.csv), with gnuplot:\n"
          "  kv_usage          KV cache blocks in use over time, per instance\n"
          "  kv_borrowing      KV blocks lent and borrowed over time, per instance\n"
          "  link_bytes        bytes each network link carried (links.csv), busiest first\n"
          "  requests          running and waiting requests over time, per instance\n"
          "  ttft_cdf          CDF of time to first token (completed requests)\n"
          "  tpot_cdf          CDF of time per output token (completed, >= 2 output tokens)\n"
          "  e2e_cdf           CDF of end-to-end latency (completed requests)\n"
          "  e2e_vs_arrival    end-to-end latency against arrival time\n"
          "A directory whose subdirectories are runs (one per policy, say):\n"
          "  compare_ttft_cdf, compare_tpot_cdf, compare_e2e_cdf   one curve per run\n"
          "A directory with capacity.csv (columns series,slo_s,instances or series,slo_s,rate_rps):\n"
          "  capacity          instances needed (or highest rate) against the SLO bound\n"
          "A sweep DB (infsim sweep --out):\n"
          "  sweep_throughput  output tokens/s against --x, one curve per --series\n"
          "  sweep_latency     TTFT and TPOT p99 against --x, one curve per --series\n"
          "A calibration DB (infsim calibrate load/fit):\n"
          "  calib_PROFILE_MODEL_tpN   measured kernel times and fitted curves\n"
          "\n"
          "  --format png|svg  image format (default png)\n"
          "  --out PLOTDIR     where to write them (default DIR/plots, or DB's directory/plots)\n"
          "  --x KEY           sweep: grid column for the x axis (default rate_scale, else the first)\n"
          "  --series KEY      sweep: grid column naming the curves (default policy.name if swept,\n"
          "                    else the sweeps' --label)\n"
          "  --where SQL       sweep: only rows of `runs` meeting this SQL condition\n"
          "\n"
          "Exit codes: 0 ok, 1 gnuplot missing or failed, 2 bad input.\n");
}

static bool is_file(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Which kind of SQLite DB: 1 sweep, 2 calibration, 0 neither, -1 not SQLite. */
static int db_kind(const char *path) {
  sqlite3 *db = NULL;
  int kind = -1;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(db, "SELECT name FROM sqlite_master WHERE type = 'table'", -1, &q, NULL) == SQLITE_OK) {
      bool runs = false, meta = false, fit = false, measurement = false;
      int rc;
      while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *n = (const char *)sqlite3_column_text(q, 0);
        runs |= strcmp(n, "runs") == 0;
        meta |= strcmp(n, "meta") == 0;
        fit |= strcmp(n, "fit") == 0;
        measurement |= strcmp(n, "measurement") == 0;
      }
      if (rc == SQLITE_DONE) kind = runs && meta ? 1 : fit && measurement ? 2 : 0;
      sqlite3_finalize(q);
    }
  }
  sqlite3_close(db);
  return kind;
}

static infsim_status plot_dir(plot_job *pj, const char *dir, infsim_error *err) {
  char path[PLOT_PATH_BYTES + 32];
  int found = 0;
  infsim_status st = INFSIM_OK;
  snprintf(path, sizeof path, "%s/requests.csv", dir);
  if (is_file(path)) {
    st = plot_run_dir(pj, dir, err);
    found++;
  }
  int runs = 0;
  if (st == INFSIM_OK) st = plot_compare_dirs(pj, dir, &runs, err);
  found += runs;
  snprintf(path, sizeof path, "%s/capacity.csv", dir);
  if (st == INFSIM_OK && is_file(path)) {
    st = plot_capacity_csv(pj, path, err);
    found++;
  }
  if (st == INFSIM_OK && found == 0)
    st = infsim_fail(err, INFSIM_EINPUT,
                     "%s/requests.csv: cannot open: no such file (nor run subdirectories or capacity.csv)", dir);
  return st;
}

int infsim_cmd_plot(int argc, char **argv) {
  const char *src = NULL, *out_dir = NULL, *format = "png";
  plot_sweep_opts so = {0};
  for (int i = 1; i < argc; i++) {
    const char *value = NULL, *option = argv[i];
    int got;
    if (strcmp(option, "--help") == 0 || strcmp(option, "-h") == 0) {
      print_help(stdout);
      return 0;
    }
    if ((got = cli_option_value(argc, argv, &i, "--format", &value)) > 0)
      format = value;
    else if (got == 0 && (got = cli_option_value(argc, argv, &i, "--out", &value)) > 0)
      out_dir = value;
    else if (got == 0 && (got = cli_option_value(argc, argv, &i, "--x", &value)) > 0)
      so.x = value;
    else if (got == 0 && (got = cli_option_value(argc, argv, &i, "--series", &value)) > 0)
      so.series = value;
    else if (got == 0 && (got = cli_option_value(argc, argv, &i, "--where", &value)) > 0)
      so.where = value;
    if (got < 0) {
      fprintf(stderr, "infsim plot: %s needs a value (try infsim plot --help)\n", option);
      return 2;
    }
    if (got > 0) continue;
    if (option[0] == '-' && option[1] != '\0') {
      fprintf(stderr, "infsim plot: unknown option '%s' (try infsim plot --help)\n", option);
      return 2;
    }
    if (src != NULL) {
      fprintf(stderr, "infsim plot: one directory or DB expected, got '%s' and '%s'\n", src, option);
      return 2;
    }
    src = option;
  }
  if (src == NULL) {
    fputs("infsim plot: a run directory or a DB expected (try infsim plot --help)\n", stderr);
    return 2;
  }
  if (strcmp(format, "png") != 0 && strcmp(format, "svg") != 0) {
    fprintf(stderr, "infsim plot: --format: expected png or svg, got '%s'\n", format);
    return 2;
  }
  struct stat sb;
  if (stat(src, &sb) != 0 || !(S_ISREG(sb.st_mode) || S_ISDIR(sb.st_mode))) {
    /* Nothing is created for a source that is not there. */
    fprintf(stderr, "infsim plot: %s%s: cannot open: no such file or directory\n", src,
            strlen(src) > 3 && strcmp(src + strlen(src) - 3, ".db") == 0 ? "" : "/requests.csv");
    return 2;
  }
  bool file = S_ISREG(sb.st_mode);
  int kind = file ? db_kind(src) : 0;
  if (file && kind <= 0) {
    fprintf(stderr, "infsim plot: %s: %s\n", src,
            kind < 0 ? "not a directory or an SQLite DB"
                     : "neither a sweep DB (table runs) nor a calibration DB (tables fit, measurement)");
    return 2;
  }
  char default_out[PLOT_PATH_BYTES];
  if (out_dir == NULL) {
    if (file) {
      const char *slash = strrchr(src, '/');
      if (slash == NULL)
        snprintf(default_out, sizeof default_out, "plots");
      else
        snprintf(default_out, sizeof default_out, "%.*s/plots", (int)(slash - src), src);
    } else {
      snprintf(default_out, sizeof default_out, "%.4000s/plots", src);
    }
    out_dir = default_out;
  }
  infsim_error err = {0};
  plot_job pj;
  infsim_status st = plot_begin(&pj, out_dir, strcmp(format, "svg") == 0, &err);
  if (st == INFSIM_OK) {
    if (!file)
      st = plot_dir(&pj, src, &err);
    else if (kind == 1)
      st = plot_sweep_db(&pj, src, &so, &err);
    else
      st = plot_calib_db(&pj, src, &err);
    if (st == INFSIM_OK)
      st = plot_finish(&pj, &err);
    else
      plot_abort(&pj);
  }
  if (st != INFSIM_OK) {
    fprintf(stderr, "infsim plot: %s\n", err.msg);
    return infsim_status_exit_code(err.status);
  }
  return 0;
}
