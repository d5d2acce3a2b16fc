/*
** plot_common.h: one gnuplot run for `infsim plot`: a private working
** directory inside the output directory, data files and a script written
** there, gnuplot started with that directory as its working directory,
** and the images renamed into place only when all of them are good.
**
** gnuplot never sees a path we did not make: data files and images have
** fixed names relative to the working directory, so a directory name with
** quotes, newlines or other control characters cannot break the script.
** User text (titles) goes through plot_assign, which quotes it and shows
** control characters as '?'.
**
** Templates are the files in plots/ (*.gp), built into the binary
** (plot_templates.c is generated from them), so an installed infsim plots
** from any directory.
*/
#ifndef INFSIM_CLI_PLOT_COMMON_H
#define INFSIM_CLI_PLOT_COMMON_H

#include <stdbool.h>
#include <stdio.h>

#include <stddef.h>
#include <stdint.h>

#include "infsim/atomic_file.h"
#include "infsim/status.h"
#include "infsim/text.h"

enum { PLOT_PATH_BYTES = 4096, PLOT_MAX_OUTPUTS = 256 };

typedef struct {
  char out_dir[PLOT_PATH_BYTES];
  char work_dir[PLOT_PATH_BYTES]; /* OUT_DIR/.infsim-plot-XXXXXX */
  infsim_atomic_set *dirs;        /* the directories made for out_dir: removed again if the plot fails */
  bool svg;
  char *script;
  size_t script_bytes;
  FILE *fp; /* the script being written */
  char *outputs[PLOT_MAX_OUTPUTS]; /* stems, e.g. "kv_usage" */
  int output_count;
  char *data[PLOT_MAX_OUTPUTS]; /* data files made, removed at the end */
  int data_count;
} plot_job;

/* The template plots/NAME.gp, or NULL (generated plot_templates.c). */
const char *plot_template(const char *name);

/* Makes out_dir (and parents) and the working directory inside it, and
 * starts the script with the terminal. */
infsim_status plot_begin(plot_job *pj, const char *out_dir, bool svg, infsim_error *err);

/* Opens the working directory's data file `name` for writing. */
FILE *plot_data_open(plot_job *pj, const char *name);

/* Starts one image: reset, its output file, `datafile` = data. Follow with
 * plot_assign / plot_number for the template's variables, then
 * plot_template_add. */
void plot_start(plot_job *pj, const char *stem, const char *data);
void plot_assign(plot_job *pj, const char *name, const char *value);
void plot_number(plot_job *pj, const char *name, double value);
/* Appends template NAME (or no_data.gp when has_data is false). */
infsim_status plot_template_add(plot_job *pj, const char *name, bool has_data, infsim_error *err);

/* Runs gnuplot, checks every image is non-empty, renames them into
 * out_dir (printing each path), and removes the working directory; on
 * failure no image of this run replaces an earlier one. */
infsim_status plot_finish(plot_job *pj, infsim_error *err);

/* Removes the working directory and frees (after a failure before finish). */
void plot_abort(plot_job *pj);

/* How a gnuplot that failed ended, from its wait status (waitpid's or
 * pclose's), in words for a message: "killed by signal 9", "exited with
 * status 3"; false (words untouched) when it exited with status 0. The
 * signal is said as such, never as a raw wait status or a shell's 128 + N.
 * `infsim plot` and `infsim compare --plot` both say it this way. */
enum { PLOT_EXIT_WORDS_BYTES = 40 };
bool plot_gnuplot_failed(int wait_status, char words[PLOT_EXIT_WORDS_BYTES]);


/* ---- data shared by the plots (plot_run.c) ---- */

enum { PLOT_MAX_FIELDS = 64 /* columns per CSV row */, PLOT_KEY_MAX_SERIES = 12 /* more: no legend */ };

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

typedef struct {
  infsim_line_reader lines;
  infsim_fields f;
  size_t n_header;
} csv_reader;

bool plot_dvec_push(dvec *d, double x);
void plot_data_free(plot_data *pd);

/* CSV with a header: open maps names[0..n) to columns (missing: error
 * FILE:LINE), next reads a row (1 row, 0 end, -1 error), number parses
 * one field as a finite number. */
infsim_status plot_csv_open(csv_reader *r, const char *path, const char *const *names, int n, int *cols,
                            infsim_error *err);
int plot_csv_next(csv_reader *r, infsim_error *err);
const char *plot_csv_field(const csv_reader *r, int c);
infsim_status plot_csv_number(const csv_reader *r, int col, const char *name, double *out, infsim_error *err);
void plot_csv_close(csv_reader *r);

/* Completed requests' latencies from a run's requests.csv. */
infsim_status plot_read_requests(const char *path, plot_data *pd, infsim_error *err);
/* The empirical CDF of values (sorted in place) as steps: (x_1, 0), then (x_i, i/n). */
bool plot_write_cdf(FILE *fp, dvec *values);

/* ---- the plot families ---- */

/* A run directory's plots (requests.csv, timeseries.csv). */
infsim_status plot_run_dir(plot_job *pj, const char *dir, infsim_error *err);
/* Latency CDFs of several runs on one chart each (DIR's subdirectories
 * with a requests.csv, labelled by name); *found = how many. */
infsim_status plot_compare_dirs(plot_job *pj, const char *dir, int *found, infsim_error *err);
/* DIR/capacity.csv (series,slo_s,instances|rate_rps[,slo]): one curve per
 * series; the optional column slo says what the bound is on (x axis). */
infsim_status plot_capacity_csv(plot_job *pj, const char *path, infsim_error *err);

typedef struct {
  const char *x;      /* grid column on the x axis; NULL: rate_scale, else the first grid column */
  const char *series; /* grid column naming the curves; NULL: policy.name if a grid column, else none */
  const char *where;  /* SQL condition on `runs`, or NULL */
} plot_sweep_opts;

/* A sweep DB: throughput and p99 latencies against x, a curve per series,
 * each point the mean over seeds (and any other grid column). */
infsim_status plot_sweep_db(plot_job *pj, const char *path, const plot_sweep_opts *o, infsim_error *err);

/* A calibration DB: measured points and fitted curves, one image per
 * profile, model and TP degree. */
infsim_status plot_calib_db(plot_job *pj, const char *path, infsim_error *err);

#endif
