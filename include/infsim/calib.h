/*
** calib.h: calibration of the cost curves on real kernels.
**
** Pipeline (DESIGN.md, docs/calibration.md):
**   run   times the real kernels (kernels.h, CUDA or the CPU reference) over
**         a grid of shapes for one model sharded over tp GPUs and writes raw
**         measurements as CSV; it needs neither SQLite nor GSL, because the
**         GPU machine has neither.
**   load  puts a raw file into a SQLite DB (STRICT tables, schema version in
**         PRAGMA user_version): one profile row per GPU + model, one row per
**         measurement.
**   fit   fits, with GSL weighted least squares, one curve per
**         (profile, model, tp, kernel) as a function of the cost model's
**         batch aggregates, piecewise linear (form below), and
**         stores coefficients, the fit error and a held-out error.
**   show  prints measured against fitted, and plots it with gnuplot.
** The simulator reads the fitted curves back (sim/calib_curves.c, in
** libinfsim, SQLite only) into an infsim_cost_curves vtable.
**
** Curve form. For kernel k with variables x_v (v in the kernel's set):
**   t_ns = c_const + sum_v c_v * x_v                  (no hinge), or, with a
**   hinge on variable h at x_h = K, the term c_h * x_h replaced by
**   c_h * min(x_h, K) + c_above * max(x_h - K, 0).
** A second bend K2 > K on the same variable (GEMM tile waves, a kernel
** switching algorithm) caps the middle stretch at K2 - K and adds
** c_above2 * max(x_h - K2, 0); hinge2_at = 0 means no second bend.
** Where two limits bind in different corners of the grid, the curve is
** the larger of that and a second, straight piece:
**   t_ns = max(above, alt_const + sum_v alt_v x_v).
** Invariants: every slope (c_v, c_above, c_above2, alt_v) is >= 0, so a
** curve never decreases in any aggregate; evaluation clamps at 0 and gives
** 0 when the kernel's work variable is 0 (no work, no launch).
*/
#ifndef INFSIM_CALIB_H
#define INFSIM_CALIB_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "infsim/costmodel.h"
#include "infsim/hardware.h"
#include "infsim/status.h"

/* Version of the raw CSV (column `schema`) and of the DB (user_version). */
enum { INFSIM_CALIB_RAW_VERSION = 1, INFSIM_CALIB_DB_VERSION = 1 };

/* Measured kernels. GEMMs are the four of one layer, per TP shard. */
typedef enum {
  INFSIM_CALIB_GEMM_QKV,    /* [tokens, hidden] x [hidden, (heads + 2 kv_heads) head_dim / tp] */
  INFSIM_CALIB_GEMM_O,      /* [tokens, heads head_dim / tp] x [.., hidden] */
  INFSIM_CALIB_GEMM_GATEUP, /* [tokens, hidden] x [hidden, 2 intermediate / tp] */
  INFSIM_CALIB_GEMM_DOWN,   /* [tokens, intermediate / tp] x [.., hidden] */
  INFSIM_CALIB_PREFILL_ATTN,
  INFSIM_CALIB_DECODE_ATTN, /* micro-attention over paged rBlocks */
  INFSIM_CALIB_MERGE,       /* aggregation of partials */
  INFSIM_CALIB_KV_COPY,     /* rBlock copy within one GPU */
  INFSIM_CALIB_HOST_COPY,   /* device -> host -> device staging (swap, no-P2P transfer) */
  INFSIM_CALIB_KERNELS
} infsim_calib_kernel;

/* Aggregates a curve can depend on (costmodel.h). */
typedef enum {
  INFSIM_CALIB_TOKENS,
  INFSIM_CALIB_PAIRS,
  INFSIM_CALIB_REQUESTS,
  INFSIM_CALIB_CONTEXT_TOKENS,
  INFSIM_CALIB_PARTIALS,
  INFSIM_CALIB_BYTES,
  INFSIM_CALIB_VARS
} infsim_calib_var;

typedef struct {
  const char *name;  /* "gemm_qkv", ... (raw CSV `kernel`, DB `kernel`) */
  unsigned var_mask; /* bit v set: the curve has a slope in variable v */
  int work_var;      /* variable whose 0 means no work (curve gives 0) */
  int hinge_var;     /* variable the fitter may bend on */
} infsim_calib_kernel_info;

const infsim_calib_kernel_info *infsim_calib_kernel_get(infsim_calib_kernel k);
/* Kernel by name; -1 if unknown. */
int infsim_calib_kernel_from_name(const char *name);
/* Column name of a variable ("tokens", "context_tokens", ...). */
const char *infsim_calib_var_name(infsim_calib_var v);

typedef struct {
  double c_const;
  double c_var[INFSIM_CALIB_VARS]; /* slope per variable; below hinge_at for hinge_var */
  int hinge_var;                   /* -1: straight line */
  double hinge_at;
  double c_above; /* slope of hinge_var above hinge_at (up to hinge2_at) */
  double hinge2_at; /* second bend, > hinge_at; 0: none */
  double c_above2;  /* slope of hinge_var above hinge2_at */
  /* Optional second piece: the curve is max(above, alt_const + sum alt_var[v] x_v). */
  int has_alt;
  double alt_const;
  double alt_var[INFSIM_CALIB_VARS]; /* >= 0 */
} infsim_calib_curve;

/* t_ns of the curve for kernel k at x (clamped at 0; 0 when x[work_var] == 0). */
double infsim_calib_curve_eval(const infsim_calib_curve *c, infsim_calib_kernel k,
                               const double x[INFSIM_CALIB_VARS]);

/* Calibrated cost curves of `model` at `tp` from profile `profile` in the DB
 * at db_path. *found = 0 and INFSIM_OK when the DB has no fitted curves for
 * that profile, model (name and shape) and tp, so that the caller falls back
 * to the roofline; an unreadable DB or one of another schema version is
 * INFSIM_EINPUT. On success out's name is "calibrated:PROFILE". */
infsim_status infsim_cost_curves_calibrated(const char *db_path, const char *profile,
                                            const infsim_model_shape *model, int64_t tp, int *found,
                                            infsim_cost_curves *out, infsim_error *err);

/* ---- Everything below lives in libinfsim_calibrate. ---- */

/* Profile name from a GPU's name: "NVIDIA H100 80GB HBM3" -> "h100-sxm",
 * "NVIDIA A100-SXM4-80GB" -> "a100-80gb", "NVIDIA H200" -> "h200"; else the
 * name lowercased with runs of other characters turned into '-'. */
void infsim_calib_profile_from_gpu(const char *gpu_name, char *out, size_t out_bytes);

/* One measurement point for the fitter. */
typedef struct {
  double x[INFSIM_CALIB_VARS];
  double t_ns;
} infsim_calib_point;

typedef struct {
  infsim_calib_curve curve;
  size_t points;
  double rms_rel_err; /* in-sample, relative to the measurement */
  double max_rel_err;
} infsim_calib_fit_result;

/* Fits the curve of kernel k to n points (n >= 2) by least squares weighted
 * by 1/t^2 (relative error), trying every measured value of the kernel's
 * hinge variable as the bend and keeping the best, with slopes kept >= 0;
 * a second bend, and then a second straight piece (max of the two), are
 * each kept only where they cut the squared relative error by 30% or more.
 * INFSIM_EINPUT when the points cannot determine a curve. */
infsim_status infsim_calib_fit_points(infsim_calib_kernel k, const infsim_calib_point *pts, size_t n,
                                      infsim_calib_fit_result *out, infsim_error *err);

/* Held-out check: sorts the points by the hinge variable, fits on the even
 * ranks and writes |pred - t| / t of the odd ranks into rel_err (capacity
 * n / 2 + 1), setting *n_err. */
infsim_status infsim_calib_heldout(infsim_calib_kernel k, const infsim_calib_point *pts, size_t n,
                                   double *rel_err, size_t *n_err, infsim_error *err);

/* Nearest-rank percentile (0..100) of n values (sorted in place). */
double infsim_calib_percentile(double *v, size_t n, double pct);

/* Options of `calibrate run`. */
typedef struct {
  const char *backend; /* "cuda" or "cpu" */
  const char *model;   /* built-in model name */
  int64_t tp[8];       /* TP degrees to measure */
  int n_tp;
  int quick;           /* smaller grid, fewer repeats */
  const char *out_path;
  FILE *log;           /* progress lines, may be NULL */
} infsim_calib_run_opts;

/* Runs the grid and writes the raw CSV atomically. INFSIM_ENODEV (exit 77)
 * when the backend is cuda and there is no GPU. */
infsim_status infsim_calib_run(const infsim_calib_run_opts *opts, infsim_error *err);

typedef struct {
  const char *profile; /* NULL: derived from the file's GPU name */
  const char *model;   /* NULL: any; else the file must be for this model */
} infsim_calib_load_opts;

/* Loads raw CSV into the DB (created if missing) in one transaction:
 * replaces the measurements of that profile + model. Bad files are
 * INFSIM_EINPUT naming file:line:field, and leave the DB untouched. */
infsim_status infsim_calib_load(const char *raw_path, const char *db_path, const infsim_calib_load_opts *opts,
                                FILE *log, infsim_error *err);

/* Fits every (profile, model, tp, kernel) in the DB, stores curves, fit
 * and held-out errors, and prints a report to `report`. *goal_met is set
 * to 1 when every profile's held-out median <= 3% and p95 <= 8%. */
infsim_status infsim_calib_fit_db(const char *db_path, FILE *report, int *goal_met, infsim_error *err);

/* Prints measured against fitted for every point; with plot_dir, writes
 * one PNG per (profile, model, tp, kernel) there through gnuplot. */
infsim_status infsim_calib_show(const char *db_path, const char *plot_dir, FILE *out, infsim_error *err);

#endif
