/*
** metrics.h: a run's summary statistics, by DESIGN.md's definitions.
**
**  TTFT = arrival -> end of the iteration producing the first token;
**  E2E = arrival -> last token; TPOT = (E2E - TTFT) / (output_tokens - 1)
**  over requests with output_tokens >= 2. Statistics cover completed
**  requests that arrived at or after metrics.warmup_s; percentiles are
**  nearest-rank (the ceil(p/100 x n)-th smallest); an empty set gives
**  count 0 and zeros. throughput_tok_s = output tokens of completed
**  requests / (last finish - first arrival); requests_per_s = completed /
**  the same span; slo_attainment = requests that completed within both
**  slo.ttft_s and slo.tpot_s (a one-token request has no TPOT and meets
**  that bound) / all requests counted, completed and rejected, after
**  warm-up: a rejection is a miss; goodput_req_s = those requests / the span.
*/
#ifndef INFSIM_METRICS_H
#define INFSIM_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "infsim/params.h"
#include "infsim/sched.h"

typedef struct {
  int64_t count;
  double mean;
  double p50;
  double p90;
  double p99;
} infsim_stat;

/* Statistics of values[0..n) (sorted in place). */
void infsim_stat_compute(double *values, size_t n, infsim_stat *out);
/* Statistics of the seconds of ns[0..n) (each ns x 1e-9), bit for bit
 * what infsim_stat_compute gives on those seconds; ns is sorted in place.
 * Faster: integers have fewer radix digits that differ than doubles. */
void infsim_stat_compute_ns(int64_t *ns, size_t n, infsim_stat *out);

/* Nearest-rank percentile of sorted[0..n), p in (0, 100]. */
double infsim_percentile_sorted(const double *sorted, size_t n, double p);

typedef struct {
  int64_t arrived;
  int64_t completed;
  int64_t rejected;
  double span_s;
  double throughput_tok_s;
  double requests_per_s;
  infsim_stat ttft_s;
  infsim_stat tpot_s;
  infsim_stat e2e_s;
  double slo_attainment;
  double goodput_req_s;
  double mean_waiting_requests; /* time-averaged, whole cluster */
  double mean_running_requests;
} infsim_summary;

infsim_status infsim_summary_compute(const infsim_run_params *p, const infsim_request_record *rec, size_t n,
                                     const infsim_run_counters *c, infsim_summary *out, infsim_error *err);

#endif
