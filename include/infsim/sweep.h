/*
** sweep.h: many runs of one config: a grid of settings (the cross product
** of `--grid key=v1,v2,...` axes) times a number of seeds, run in parallel
** over local cores (threads) and MPI ranks, into one SQLite results DB with
** one row per run.
**
**   infsim_grid *g = infsim_grid_new();
**   infsim_grid_add(g, "scheduler.max_batch_size=16,64", &err);
**   infsim_sweep_db *db; infsim_sweep_db_open("r.db", &db, &err);
**   infsim_sweep_opts o = {.config_path = "c.yaml", .grid = g, .seeds = 3,
**                          .jobs = 2, .db = db};
**   infsim_sweep_outcome out; infsim_sweep_run(&o, &out, &err);
**
** A run ("job") is one grid point with one seed: seeds are the config's
** seed, seed + 1, ... Each job has a key, the SHA-256 of the resolved
** config (without the trace's file name), the trace's content, the seed
** and the infsim version: a job whose key is in the DB is not run again,
** so a sweep resumes where it stopped and a changed config reruns exactly
** what changed. Rows are committed one by one: an interrupted sweep keeps
** what finished.
**
** The pseudo key `rate_scale` multiplies the arrival rate of the trace
** (arrival times divided by it) without a config key of its own.
**
** Jobs run through a runner (a table of functions): the run library's by
** default (sweep_runner.c), a stand-in in tests.
**
** Before the DB is opened every grid point's first job (seed index 0) is
** prepared, so a bad value at any point, or a bad combination of keys,
** fails before anything is written. Those prepared jobs are kept and run
** as they are (up to INFSIM_SWEEP_KEEP_BYTES): each job is prepared once.
*/
#ifndef INFSIM_SWEEP_H
#define INFSIM_SWEEP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "infsim/hash.h"
#include "infsim/status.h"
#include "infsim/trace.h"

/* Bounds, named so messages and docs agree. */
#define INFSIM_GRID_MAX_POINTS 1000000 /* grid points x seeds */
#define INFSIM_GRID_MAX_AXES 32
#define INFSIM_SWEEP_MAX_SEEDS 10000
#define INFSIM_RATE_SCALE_KEY "rate_scale"
/* The first pass of infsim_sweep_run keeps the grid points' prepared
 * jobs for their runs up to this many bytes (the runner's `bytes`): about
 * 1,400 points of the shipped default config (46 KiB each), 27 of a
 * generated 100,000-request workload (2.3 MiB each, where one run peaks
 * at about 22 MiB). Points past it are prepared again when they run:
 * keeping every point would grow with the grid (112 MiB for 2,500 points
 * of the default config). */
#define INFSIM_SWEEP_KEEP_BYTES ((size_t)64 * 1024 * 1024)

/* ---- grid ---------------------------------------------------------------- */

typedef struct infsim_grid infsim_grid;

infsim_grid *infsim_grid_new(void);
void infsim_grid_free(infsim_grid *g);

/* Adds an axis from "key=v1,v2,..." or "key=LO:HI:STEP" (numbers from LO
 * to HI inclusive, STEP > 0). Fails (INFSIM_EINPUT, message starting with
 * "--grid SPEC:") on a missing '=', an empty key or value, a key given
 * twice, `seed` (use the seed count), a rate_scale that is not a positive
 * number, or a grid beyond INFSIM_GRID_MAX_POINTS. */
infsim_status infsim_grid_add(infsim_grid *g, const char *spec, infsim_error *err);

size_t infsim_grid_axis_count(const infsim_grid *g);
const char *infsim_grid_axis_key(const infsim_grid *g, size_t axis);
size_t infsim_grid_axis_size(const infsim_grid *g, size_t axis);
/* The product of the axis sizes (1 for a grid without axes: the config as is). */
size_t infsim_grid_point_count(const infsim_grid *g);
/* Axis `axis`'s value at point `point`: points count in mixed radix, the
 * last axis fastest (nested loops in the order the axes were added). */
const char *infsim_grid_value(const infsim_grid *g, size_t point, size_t axis);

/* ---- keys ---------------------------------------------------------------- */

/* SHA-256 of the trace's requests (arrival_ns, prompt, output as 64-bit
 * little-endian integers): the same requests give the same digest whatever
 * file they came from. */
void infsim_trace_digest(const infsim_trace *trace, uint8_t out[INFSIM_SHA256_BYTES]);

/* A job's key: SHA-256 over the config (keys sorted, compact, without
 * workload.trace, whose content the trace digest stands for), the trace
 * digest, the seed and the version, each length-prefixed. False only when
 * out of memory. */
bool infsim_point_key(const json_t *config, const uint8_t trace_digest[INFSIM_SHA256_BYTES], uint64_t seed,
                      const char *version, char out[INFSIM_SHA256_HEX_BYTES]);

/* ---- results DB ---------------------------------------------------------- */

/* One table `runs`, one row per job: key (primary key), point, seed,
 * settings (the grid values as a JSON object), one column per grid key
 * (named as the key), one column per summary field (nested objects joined
 * with '_': ttft_s_p99), config and summary (JSON text of summary.json),
 * run_wall_s (setup and simulation of this job), host and pid of the
 * process that ran it, label (the sweep's --label: a name for a variant in
 * plots), finished_at (UTC,
 * ISO 8601). Columns are added as new grid keys and summary fields appear;
 * `meta` holds the schema version. */
typedef struct infsim_sweep_db infsim_sweep_db;

/* Opens or creates; fails (INFSIM_EINPUT) on a file that is not a sweep DB. */
infsim_status infsim_sweep_db_open(const char *path, infsim_sweep_db **out, infsim_error *err);
void infsim_sweep_db_close(infsim_sweep_db *db);

/* The summary stored under key (new reference), or NULL when there is none. */
json_t *infsim_sweep_db_summary(infsim_sweep_db *db, const char *key);

typedef struct {
  const char *key;
  size_t point;
  uint64_t seed;
  const infsim_grid *grid; /* settings: grid values of `point`; NULL: none */
  const json_t *summary;   /* summary.json's object, config inside */
  double run_wall_s;
  const char *host;
  int64_t pid; /* of the process that ran it (an MPI rank, say) */
  const char *label; /* the sweep's --label, or NULL */
} infsim_sweep_row;

/* Adds the row in one transaction (replacing a row with the same key). */
infsim_status infsim_sweep_db_insert(infsim_sweep_db *db, const infsim_sweep_row *row, infsim_error *err);

/* ---- runner -------------------------------------------------------------- */

typedef struct {
  const char *config_path;
  const char *trace_path;   /* NULL: the config decides */
  const char *const *sets;  /* "key=value", the sweep's own then the point's */
  size_t set_count;
  const char *seed_text;    /* NULL: the config's seed */
  double rate_scale;        /* arrival rate multiplier, 1: the trace as is */
} infsim_job_args;

typedef struct {
  void *self;
  /* Reads and checks everything the job needs, computes its key and seed;
   * the handle goes to execute (maybe) and release (always, on success). */
  infsim_status (*prepare)(void *self, const infsim_job_args *args, void **handle,
                           char key[INFSIM_SHA256_HEX_BYTES], uint64_t *seed, infsim_error *err);
  /* Runs it; *summary is summary.json's object (new reference). */
  infsim_status (*execute)(void *self, void *handle, json_t **summary, infsim_error *err);
  void (*release)(void *self, void *handle);
  /* About how much memory the handle holds: what a kept handle costs
   * (INFSIM_SWEEP_KEEP_BYTES). NULL: handles are never kept, each job is
   * prepared again when it runs. */
  size_t (*bytes)(void *self, const void *handle);
} infsim_sweep_runner;

/* The run library's runner (sweep_runner.c). */
infsim_status infsim_sweep_runner_new(infsim_sweep_runner *out, infsim_error *err);
void infsim_sweep_runner_free(infsim_sweep_runner *r);

/* ---- the sweep ------------------------------------------------------------ */

typedef enum {
  INFSIM_PROGRESS_NONE = 0,
  INFSIM_PROGRESS_BAR,   /* one redrawn line with a bar and ETA (a terminal) */
  INFSIM_PROGRESS_LINES, /* plain lines, at most about one a second (a log) */
} infsim_progress_mode;

/* A sweep in progress (run/sweep_internal.h), as the function that
 * spreads its jobs over processes sees it. */
typedef struct infsim_sweep_ctx infsim_sweep_ctx;
typedef infsim_status (*infsim_sweep_ranks_fn)(infsim_sweep_ctx *c, infsim_error *err);

typedef struct {
  const char *config_path;
  const char *trace_path;        /* NULL: the config decides */
  const char *const *sets;       /* applied before each point's values */
  size_t set_count;
  const infsim_grid *grid;       /* NULL: one point, the config as is */
  int seeds;                     /* >= 1 */
  int jobs;                      /* local worker threads, >= 1 */
  infsim_sweep_db *db;           /* NULL: db_path, else nothing stored or skipped */
  const char *db_path;           /* with db NULL: opened by the sweep (under MPI by rank 0 only) */
  const infsim_sweep_runner *runner; /* NULL: the run library's */
  infsim_progress_mode progress;
  const char *progress_label;    /* prefix of progress lines ("sweep") */
  const char *label;             /* stored in each row's `label` (not part of the key), or NULL */
  bool keep_summaries;           /* fill outcome.summaries */
  /* Under mpirun: spreads the jobs over the ranks. infsim_sweep_mpi
   * (libinfsim_sweep_mpi, below) or NULL: this process's threads only.
   * libinfsim itself links no MPI, so that a plain `infsim run` does not
   * load it; the MPI executable (infsim-mpi) passes infsim_sweep_mpi. */
  infsim_sweep_ranks_fn ranks;
} infsim_sweep_opts;

typedef struct {
  size_t total;   /* points x seeds */
  size_t ran;     /* run now (by any rank) */
  size_t skipped; /* found in the DB */
  /* keep_summaries: total entries, job (point p, seed s) at p * seeds + s,
   * each a new reference (from the run or the DB); else NULL. */
  json_t **summaries;
  bool is_root;   /* false on MPI worker ranks, which hold no results */
} infsim_sweep_outcome;

/* Runs every job not in the DB. On the first failure no new job starts,
 * the running ones finish and are stored, and the failure is returned
 * (bad input exits 2). Outcome is filled on success and on failure. */
infsim_status infsim_sweep_run(const infsim_sweep_opts *opts, infsim_sweep_outcome *out, infsim_error *err);
void infsim_sweep_outcome_free(infsim_sweep_outcome *out);

/* True when this process was started by mpirun/srun with more than one rank. */
bool infsim_sweep_mpi_launched(void);

/* run/sweep_mpi.c, in libinfsim_sweep_mpi (built where MPI is found):
 * rank 0 hands out the jobs and writes the DB, every rank runs jobs. */
infsim_status infsim_sweep_mpi(infsim_sweep_ctx *c, infsim_error *err);

#endif
