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
** The simulator reads the fitted curves back (cost/calib_curves.c, in
** libinfsim, SQLite only) into an infsim_cost_curves vtable.
**
** Curve form (DB version 2). For kernel k with variables x_v (v in the
** kernel's set) and, for the kernels whose time depends on how the work is
** spread over requests, a shape ratio r = x[ratio_num] / x[ratio_den]
** (decode: context per request; prefill: mean prefix per query, pairs /
** tokens; merge: partials per request):
**   A = c_const + sum_v c_v * x_v + g(r) + c_tail * r * min(x[ratio_den], tail_cap)
**       + c_den_above * max(x[ratio_den] - den_hinge_at, 0)
**       + c_head * r * max(head_cap - x[ratio_den], 0)
** where the term of the hinge variable h is bent at x_h = K:
**   c_h * min(x_h, K) + c_above * max(x_h - K, 0)
** and may bend a second time at K2 > K (the middle stretch capped at
** K2 - K, plus c_above2 * max(x_h - K2, 0)); hinge2_at = 0 means no second
** bend. g is piecewise linear in r through 0 with slopes >= 0 and bends
** at given ratios (infsim_calib_ratio_term): one bend for prefill and
** merge, one at every measured ratio for decode, whose time steps with the
** split-KV kernel's choice of work per block. The tail term is the work
** of the first tail_cap requests (decode) or query tiles (prefill), which
** runs at a slower pace when there are too few of them to fill the GPU;
** the bend in the denominator is where its blocks start to queue in waves;
** the head term is the opposite: with fewer than head_cap requests the
** kernel splits each one's context into blocks that fill the GPU worse, so
** one request of 32K tokens can take longer than four of 32K each (the
** H100 70B TP 8 data). It makes the curve fall as requests are added at a
** fixed total, which is what the kernel does; it never makes it fall as
** context is added at fixed requests. Where two limits bind in different
** corners of the grid (decode: KV bandwidth with many requests, one
** request's walk over its context with few) the curve is the larger of A
** and a second, straight piece:
**   B = alt_const + sum_v alt_v x_v + g_B(r),   t_ns = max(A, B).
** One-variable kernels whose time steps up and down with size (GEMMs: the
** GEMM library picks another algorithm for some token counts) are instead
** a lookup of the measured points (knots), interpolated linearly between
** them, constant below the first and extended along the last segment's
** slope (clamped at >= 0) above the last.
** Invariants: every coefficient (c_v, c_above, c_above2, c_tail, c_den_above,
** c_head, alt_v, the slopes of g and g_B) and every cap is >= 0, and r grows
** with the kernel's work variable (context, pairs, partials) at a fixed
** denominator, so a curve never decreases in its work variable with the
** others held (GEMM lookups excepted, only where the measured knots step
** down by more than a quarter). Nothing is promised in the denominator at
** a fixed total: the head term lowers the time as requests are added.
** Evaluation is O(1) for the piecewise form (O(bends of g)) and O(log
** knots) for a lookup.
** Evaluation clamps at 0 and gives 0 when the kernel's work variable is 0
** (no work, no launch).
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
/* DB version 2: shape ratio terms and knots in `fit` (version 1 DBs are
 * refused with a message saying to reload and refit). */
enum { INFSIM_CALIB_RAW_VERSION = 1, INFSIM_CALIB_DB_VERSION = 2 };

/* Most knots a lookup curve holds (the GPU grid has 25 token counts), and
 * most bends of a shape ratio term (the decode grid has 16 ratios). */
enum { INFSIM_CALIB_MAX_KNOTS = 64, INFSIM_CALIB_MAX_RBENDS = 24 };

/* g(r) = s * (slope[0] min(r, bend[0])
 *      + sum_{0<k<n} slope[k] min(max(r - bend[k-1], 0), bend[k] - bend[k-1])
 *      + slope[n] max(r - bend[n-1], 0))       (n = n_bends; n = 0: slope[0] r)
 * with s = min(x[ratio_den], cap), or 1 when cap = 0: the work of the first
 * `cap` requests (query tiles), which finishes last when there are too few
 * of them to spread it (a latency tail). bend[] increasing and > 0,
 * slope[] >= 0, cap >= 0: non-decreasing in r and in the denominator. */
typedef struct {
  double cap;
  int n_bends;
  double bend[INFSIM_CALIB_MAX_RBENDS];
  double slope[INFSIM_CALIB_MAX_RBENDS + 1];
} infsim_calib_ratio_term;

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
  /* Whole layers as the cuda executor runs them (measured rows: the
   * layer's time; fitted curve: what the layer takes beyond the kernel
   * curves above composed at the same aggregates, i.e. the element-wise
   * steps, launch gaps and the clock under sustained load). Optional. */
  INFSIM_CALIB_LAYER_PREFILL, /* one prompt: tokens, pairs */
  INFSIM_CALIB_LAYER_DECODE,  /* decodes as a replayed CUDA graph: requests (context rides along) */
  /* Decode layers whose batch has one long request among short ones
   * (tokens: the longest context; partials: the GPU's multiprocessors).
   * Fitted curve: the MA decode's longest CTA, a line in the tokens one
   * CTA of the longest request walks (costmodel.h). Optional. */
  INFSIM_CALIB_LAYER_DECODE_LONG,
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
  int ratio_num;     /* shape ratio r = x[ratio_num] / x[ratio_den]; -1: none */
  int ratio_den;
  int mono_var;      /* variable the curve never decreases in, others held */
  int lookup;        /* 1: fitted as a lookup of the measured points (one variable) */
  int ratio_knots;   /* 1: the ratio term bends at every measured ratio, else at most once */
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
  /* Shape ratio terms of A and B (kernels with a ratio; 0 otherwise). */
  infsim_calib_ratio_term ratio;
  infsim_calib_ratio_term alt_ratio;
  double tail_cap; /* 0: no tail term */
  double c_tail;
  double den_hinge_at; /* 0: no bend in the ratio's denominator */
  double c_den_above;
  double head_cap; /* 0: no head term */
  double c_head;
  /* Lookup form: n_knots > 0 replaces all of the above. knot_x strictly
   * increasing, in the kernel's hinge (= work) variable. */
  int n_knots;
  double knot_x[INFSIM_CALIB_MAX_KNOTS];
  double knot_t[INFSIM_CALIB_MAX_KNOTS];
} infsim_calib_curve;

/* t_ns of the curve for kernel k at x (clamped at 0; 0 when x[work_var] == 0). */
double infsim_calib_curve_eval(const infsim_calib_curve *c, infsim_calib_kernel k,
                               const double x[INFSIM_CALIB_VARS]);

/* Sum over j < steps of the decode curve at (requests, first_context +
 * j x context_step), in closed form: along such a run every term of the
 * curve is piecewise linear in j, so the sum splits at the bends and at
 * the crossings of the two pieces into stretches where it is linear, each
 * summed exactly. O(1) whatever steps is. */
double infsim_calib_decode_sum(const infsim_calib_curve *c, double requests, double first_context,
                               double context_step, int64_t steps);

/* The two pieces of a piecewise curve (not a lookup) at x, before the
 * clamp: *a the additive piece A and *b the straight piece B (-INFINITY
 * when the curve has none); the curve is max(A, B) clamped at 0 (0 when
 * x[work_var] is 0). The fast forms below find where A and B cross. */
void infsim_calib_curve_pieces(const infsim_calib_curve *c, infsim_calib_kernel k,
                               const double x[INFSIM_CALIB_VARS], double *a, double *b);

/* A lower bound of a piecewise curve (not a lookup) over every point whose
 * variables are >= least[] and whose shape ratio is >= ratio_least (the
 * box above the least measured point, where the simulator extrapolates):
 * max(A, B) at that corner with A's head term, which falls as the ratio's
 * denominator grows, left out. The fit keeps it >= 0 over its own points'
 * box, and loading a DB checks it over the measured one. */
double infsim_calib_curve_floor(const infsim_calib_curve *c, infsim_calib_kernel k,
                                const double least[INFSIM_CALIB_VARS], double ratio_least);

/* Fast forms of one profile's curves, for the simulator's hot path (the
 * vtable of infsim_cost_curves_calibrated uses them). What the fit gives
 * is turned into tables once, so an evaluation costs about what the
 * roofline's does:
 *  - GEMMs: the four curves of a layer summed, per token count up to
 *    INFSIM_CALIB_FAST_GEMM_TOKENS (the same sum infsim_calib_curve_eval
 *    gives, bit for bit); evaluated directly above.
 *  - decode attention: for each request count up to
 *    INFSIM_CALIB_FAST_DECODE_REQUESTS, the curve as a function of context
 *    alone, cut where it bends (hinges, ratio bends at context = bend x
 *    requests, crossings of the pieces A and B, the clamp at 0) into
 *    segments where it is a straight line (start, value there, slope). One
 *    step finds its segment (the one found last for that request count,
 *    else a binary search) and is one multiply-add; a run of steps
 *    (context first + j x step) that stays in one segment is one
 *    multiply-add too, and one that crosses sums each segment it crosses
 *    in closed form, O(1) per segment, with no sorting.
 * Tables are filled on first use of a token or request count, into memory
 * reserved when the fast form is made, so evaluation never allocates; a
 * fast form belongs to one simulation (one thread). Outside the tables,
 * and for every other kernel, the fitted curve is evaluated directly.
 * Agreement: within rounding of the fitted curve (a relative 1e-12 or so),
 * at every point. */
enum { INFSIM_CALIB_FAST_GEMM_TOKENS = 16384, INFSIM_CALIB_FAST_DECODE_REQUESTS = 1024 };
typedef struct infsim_calib_fast infsim_calib_fast;

/* Takes a copy of curves[0 .. INFSIM_CALIB_KERNELS - 1]. NULL when out of memory. */
infsim_calib_fast *infsim_calib_fast_new(const infsim_calib_curve curves[INFSIM_CALIB_KERNELS]);
void infsim_calib_fast_free(infsim_calib_fast *f);
/* The curve of kernel k at x, as infsim_calib_curve_eval on the copy. */
double infsim_calib_fast_eval(const infsim_calib_fast *f, infsim_calib_kernel k, const double x[INFSIM_CALIB_VARS]);
/* Sum of the four GEMM curves at `tokens`. */
double infsim_calib_fast_gemm_layer_ns(infsim_calib_fast *f, int64_t tokens);
/* Decode attention at (requests, context_tokens). */
double infsim_calib_fast_decode_ns(infsim_calib_fast *f, int64_t requests, int64_t context_tokens);
/* Sum over j < steps of decode attention at (requests, first_context + j x
 * context_step), as infsim_calib_decode_sum. */
double infsim_calib_fast_decode_sum_ns(infsim_calib_fast *f, int64_t requests, int64_t first_context,
                                       int64_t context_step, int64_t steps);

/* The MA decode's longest CTA (layer_decode_long). The kernel cuts every
 * request of a batch into the same number of splits, chosen from the
 * batch's rows and its longest context (kernels/ma_decode.cu), and the
 * cuda executor replays decode steps as graphs padded to a few batch
 * sizes with the context rounded up to a power of two (cluster/model.c):
 * a batch with one long request among short ones waits for the long
 * one's CTAs, whatever the batch's total context. */
typedef struct {
  int64_t q_heads, kv_heads; /* of one TP shard */
  int64_t sm_count;          /* the GPU's multiprocessors (0: unknown) */
} infsim_calib_split_shape;

/* KV tokens one CTA of the longest request walks in a decode of
 * `requests` requests whose longest context is max_context_tokens, as the
 * kernel splits it; graph: as a replayed decode step (padded rows, context
 * bucket), else eagerly (a batch with prompt chunks). 0 when unknown. */
int64_t infsim_calib_longest_cta_tokens(const infsim_calib_split_shape *s, int64_t requests,
                                        int64_t max_context_tokens, int graph);
/* KV tokens one CTA walks of a request of context_tokens in that grid. */
int64_t infsim_calib_cta_tokens(const infsim_calib_split_shape *s, int64_t requests, int64_t max_context_tokens,
                                int64_t context_tokens, int graph);
/* Waves of CTAs that run before the longest request's last split starts,
 * the mean over its place among the requests (the grid runs CTA rows
 * first, split by split; the aggregates do not say where it is). 0 within
 * one wave. */
double infsim_calib_longest_cta_waits(const infsim_calib_split_shape *s, int64_t requests,
                                      int64_t max_context_tokens, int graph);
/* KV tokens one CTA of the longest request walks while the other
 * requests' CTAs stream beside it at the memory's speed (each CTA in a
 * slot with an equal share of the bandwidth): the others' CTA tokens over
 * the slots they hold beside it (all but its own over several waves,
 * their CTAs' in one wave), less what has streamed before its last split
 * starts. At most its CTA's tokens; 0 with one request. */
int64_t infsim_calib_longest_cta_shared_tokens(const infsim_calib_split_shape *s, int64_t requests,
                                               int64_t context_tokens, int64_t max_context_tokens, int graph);
/* Sets the shape the fast form's longest-CTA term uses (none: no term). */
void infsim_calib_fast_set_split(infsim_calib_fast *f, const infsim_calib_split_shape *s);
/* The layer's decode attention as bounded by the longest request: the
 * fitted layer_decode_long line at its CTA's tokens, after the waves that
 * start before it (each the line at a CTA's tokens of the others' mean
 * context); at least the decode curve at the batch less the long
 * request's tail past its shared tokens, plus that tail on the line; 0
 * when the profile has no such curve or shape. */
double infsim_calib_fast_longest_ns(infsim_calib_fast *f, int64_t requests, int64_t context_tokens,
                                    int64_t max_context_tokens, int graph);


/* The `fit` columns that hold a curve, in the order
 * infsim_calib_curve_from_row reads them, each prefixed by "f.". */
#define INFSIM_CALIB_CURVE_COLUMNS                                                                                 \
  "f.c_const, f.c_tokens, f.c_pairs, f.c_requests, f.c_context_tokens, f.c_partials, f.c_bytes, f.hinge_var,"    \
  " f.hinge_at, f.c_above, f.hinge2_at, f.c_above2, f.has_alt, f.alt_const, f.alt_tokens, f.alt_pairs,"          \
  " f.alt_requests, f.alt_context_tokens, f.alt_partials, f.alt_bytes, f.ratio_terms, f.alt_ratio_terms,"       \
  " f.tail_cap, f.c_tail, f.den_hinge_at, f.c_den_above, f.head_cap, f.c_head, f.knots"
enum { INFSIM_CALIB_CURVE_NCOLS = 29 };

/* Reads a curve from the columns INFSIM_CALIB_CURVE_COLUMNS of row q from
 * column col on. 0 when a value is out of range (a negative slope, a value
 * not finite, knots not increasing or unparsable): a corrupt DB. Then why
 * (when not NULL) names the first bad column and its value, "c_tokens -1:
 * want a finite number >= 0". (Loading for a run also checks that the
 * curve stays >= 0 over its measured domain.) */
struct sqlite3_stmt;
int infsim_calib_curve_from_row(struct sqlite3_stmt *q, int col, infsim_calib_curve *c, char *why, size_t why_bytes);

/* Knots as text ("x t x t ...", %.17g, so they read back exactly); returns
 * 0 when out_bytes is too small. */
int infsim_calib_knots_format(const infsim_calib_curve *c, char *out, size_t out_bytes);
/* A ratio term as text ("cap slope bend slope bend ... slope", %.17g); 0
 * when out_bytes is too small. */
int infsim_calib_ratio_format(const infsim_calib_ratio_term *g, char *out, size_t out_bytes);
/* Value of a ratio term at r >= 0 with denominator den. */
double infsim_calib_ratio_eval(const infsim_calib_ratio_term *g, double r, double den);

/* Calibrated cost curves of `model` at `tp` from profile `profile` in the DB
 * at db_path. *found = 0 and INFSIM_OK when the DB has no fitted curves for
 * that profile, model (name and shape) and tp, so that the caller falls back
 * to the roofline; an unreadable DB or one of another schema version is
 * INFSIM_EINPUT. On success out's name is "calibrated:PROFILE". The
 * optional tables clock_fit and iteration_fit (rows written by
 * calibrate/fit-clock.py and fit-overhead.py) fill the clock term and the
 * measured per-iteration time; a row out of range is INFSIM_EINPUT. */
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
 * a second bend is kept where it cuts the squared relative error by 30%,
 * the shape-ratio terms where they lower a cross-validation error, and a
 * second piece (max of the two) where it cuts the error by 10%. A
 * one-variable kernel marked `lookup` whose piecewise fit misses a point by
 * more than 5% becomes a lookup of its points (calib.h, curve form).
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
