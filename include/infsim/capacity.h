/*
** capacity.h: the highest arrival rate, or the fewest instances, at which
** a config meets a latency SLO: "how many A100-80GB for this trace at
** TTFT p99 <= 2 s?".
**
** An SLO is a list of upper bounds on summary statistics,
** `ttft_p99=2s,tpot_p99=100ms` (metric ttft, tpot or e2e; statistic mean,
** p50, p90 or p99; unit s or ms). A value meets it when every seed's run
** meets every bound: the answer holds for each seed tried, not on average.
**
** The search assumes the SLO is met below a threshold and missed above it
** (rate) or the other way round (instances). It brackets the threshold by
** doubling or halving from a start, then bisects: for rate to a stated
** relative tolerance, for instances exactly. Every round is a small sweep
** (sweep.h): with a results DB a repeated search reruns nothing. With
** probes > 1 a round tries several values at once (run in parallel): the
** bracket shrinks probes + 1 ways per round instead of two. Where the SLO
** is not monotone near the threshold the answer can depend on the probes,
** so they are an option, never the machine's core count.
*/
#ifndef INFSIM_CAPACITY_H
#define INFSIM_CAPACITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "infsim/status.h"
#include "infsim/sweep.h"

enum { INFSIM_SLO_MAX_BOUNDS = 12, INFSIM_CAPACITY_MAX_STEPS = 80 };

typedef struct {
  char field[16]; /* summary field: "ttft_s", "tpot_s", "e2e_s" */
  char stat[8];   /* "mean", "p50", "p90", "p99" */
  char name[24];  /* as written: "ttft_p99" */
  double bound_s;
} infsim_slo_bound;

typedef struct {
  infsim_slo_bound bounds[INFSIM_SLO_MAX_BOUNDS];
  size_t count;
} infsim_slo;

/* Parses "ttft_p99=2s,tpot_p99=100ms"; errors start with "--slo TEXT:". */
infsim_status infsim_slo_parse(const char *text, infsim_slo *out, infsim_error *err);

/* True when summary meets every bound; else why names the first missed
 * ("ttft_p99 2.31 s > 2 s"). A run without completed requests misses. */
bool infsim_slo_met(const infsim_slo *slo, const json_t *summary, char *why, size_t why_bytes);

typedef enum { INFSIM_TARGET_RATE = 0, INFSIM_TARGET_INSTANCES = 1 } infsim_capacity_target;

typedef struct {
  infsim_sweep_opts sweep; /* config, trace, sets, seeds, jobs, db, runner, progress; grid unused */
  infsim_slo slo;
  infsim_capacity_target target;
  double tolerance;     /* rate: stop when (fail - met) <= tolerance x met; in (0, 1) */
  double start;         /* first value tried: rate scale (e.g. 1) or instance count */
  double min_value;     /* rate: smallest scale tried (1/1024); instances: 1 */
  double max_value;     /* rate: largest scale (1024); instances: e.g. 4096 */
  int probes;           /* values tried at once per round, 1..8 (0: 1) */
} infsim_capacity_opts;

typedef struct {
  double value;
  bool met;
  char why[96]; /* the first bound missed, by the first seed that missed it */
} infsim_capacity_step;

typedef struct {
  bool found;       /* some value within [min_value, max_value] met the SLO */
  bool capped;      /* even max_value met it: the answer is a lower bound */
  double value;     /* highest rate scale / fewest instances that met it */
  double failed_at; /* nearest value that missed (rate: above; instances: below; 0 when none) */
  infsim_capacity_step steps[INFSIM_CAPACITY_MAX_STEPS];
  size_t step_count;
  size_t runs, runs_skipped; /* jobs run and found in the DB */
  bool is_root;              /* false on MPI worker ranks: they print nothing */
} infsim_capacity_result;

infsim_status infsim_capacity_search(const infsim_capacity_opts *opts, infsim_capacity_result *out,
                                     infsim_error *err);

#endif
