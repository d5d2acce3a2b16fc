/*
** metrics.c: summary statistics (definitions in metrics.h).
*/
#include "infsim/metrics.h"
#include "infsim/bigmem.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* A double's order as an unsigned key: negatives have every bit flipped,
 * the rest only the sign bit, so keys compare as the values do (NaN and
 * -0.0 aside: radix_sort leaves those to qsort). */
static uint64_t order_key(double v) {
  uint64_t bits;
  memcpy(&bits, &v, sizeof bits);
  return (bits >> 63) ? ~bits : bits | (UINT64_C(1) << 63);
}

enum { DIGIT_BITS = 11, DIGITS = (64 + DIGIT_BITS - 1) / DIGIT_BITS, RADIX = 1 << DIGIT_BITS };

/* 8-byte keys in a buffer of doubles or of keys, by bytes (no aliasing). */
static uint64_t key_at(const void *keys, size_t i) {
  uint64_t k;
  memcpy(&k, (const char *)keys + i * sizeof k, sizeof k);
  return k;
}

static void set_key(void *keys, size_t i, uint64_t k) { memcpy((char *)keys + i * sizeof k, &k, sizeof k); }

/* Sorts the n keys stored in buf (8 bytes each, read and written by
 * bytes) ascending, stably: LSD radix, skipping digits every key shares.
 * spare: room for n keys, or NULL to allocate it here. False, buf
 * untouched, when memory is short. */
static bool radix_sort_keys(void *buf, size_t n, void *spare) {
  void *scratch = spare != NULL ? spare : infsim_big_calloc(n, sizeof(uint64_t));
  size_t(*counts)[RADIX] = calloc(DIGITS, sizeof *counts);
  if (scratch == NULL || counts == NULL) {
    if (spare == NULL) infsim_big_free(scratch);
    free(counts);
    return false;
  }
  for (size_t i = 0; i < n; i++) {
    uint64_t k = key_at(buf, i);
    for (int d = 0; d < DIGITS; d++) counts[d][(k >> (d * DIGIT_BITS)) & (RADIX - 1)]++;
  }
  void *src = buf, *dst = scratch;
  for (int d = 0; d < DIGITS; d++) {
    size_t *c = counts[d];
    if (c[(key_at(src, 0) >> (d * DIGIT_BITS)) & (RADIX - 1)] == n) continue; /* one digit value: order unchanged */
    size_t at = 0;
    for (int b = 0; b < RADIX; b++) {
      size_t here = c[b];
      c[b] = at;
      at += here;
    }
    for (size_t i = 0; i < n; i++) {
      uint64_t k = key_at(src, i);
      set_key(dst, c[(k >> (d * DIGIT_BITS)) & (RADIX - 1)]++, k);
    }
    void *t = src;
    src = dst;
    dst = t;
  }
  if (src != buf) memcpy(buf, src, n * sizeof(uint64_t));
  if (spare == NULL) infsim_big_free(scratch);
  free(counts);
  return true;
}

/* Sorts values[0..n) ascending, stably, as qsort with a (x > y) - (x < y)
 * comparison and glibc's stable merge sort would (the same array, bit for
 * bit: the mean summed in sorted order stays the same), in O(n) per digit:
 * LSD radix on the order keys. qsort's comparison callback cost about 500
 * instructions a value. False, values untouched, when memory is short or
 * a value is NaN or -0.0 (which compares equal to +0.0 and would come out
 * as it). */
static bool radix_sort(double *values, size_t n, void *spare) {
  for (size_t i = 0; i < n; i++)
    if (isnan(values[i]) || (values[i] == 0.0 && signbit(values[i]))) return false;
  /* The keys take the values' place (one scratch array of n, not two). */
  for (size_t i = 0; i < n; i++) set_key(values, i, order_key(values[i]));
  bool sorted = radix_sort_keys(values, n, spare);
  for (size_t i = 0; i < n; i++) {
    uint64_t k = key_at(values, i);
    uint64_t bits = (k >> 63) ? k & ~(UINT64_C(1) << 63) : ~k;
    memcpy(&values[i], &bits, sizeof bits);
  }
  return sorted;
}

static int compare_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The nearest rank of percentile p among n > 0 values, 1..n. */
static size_t nearest_rank(size_t n, double p) {
  size_t rank = (size_t)ceil(p / 100.0 * (double)n);
  if (rank < 1) rank = 1;
  if (rank > n) rank = n;
  return rank;
}

double infsim_percentile_sorted(const double *sorted, size_t n, double p) {
  if (n == 0) return 0.0;
  return sorted[nearest_rank(n, p) - 1];
}

/* infsim_stat_compute with room for n keys (spare), or NULL. */
static void stat_compute(double *values, size_t n, void *spare, infsim_stat *out) {
  memset(out, 0, sizeof *out);
  if (n == 0) return;
  if (!radix_sort(values, n, spare)) qsort(values, n, sizeof *values, compare_double);
  double sum = 0.0;
  for (size_t i = 0; i < n; i++) sum += values[i];
  out->count = (int64_t)n;
  out->mean = sum / (double)n;
  out->p50 = infsim_percentile_sorted(values, n, 50.0);
  out->p90 = infsim_percentile_sorted(values, n, 90.0);
  out->p99 = infsim_percentile_sorted(values, n, 99.0);
}

static int compare_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* Seconds of a time in ns, as the summary computes them. */
static double ns_seconds(int64_t ns) { return (double)ns * 1e-9; }

void infsim_stat_compute(double *values, size_t n, infsim_stat *out) { stat_compute(values, n, NULL, out); }

/* infsim_stat_compute_ns with room for n keys (spare), or NULL. */
static void stat_compute_ns(int64_t *ns, size_t n, void *spare, infsim_stat *out) {
  memset(out, 0, sizeof *out);
  if (n == 0) return;
  /* Sorting the integers sorts the seconds: x * 1e-9 never decreases as x
   * grows, and equal seconds are the same bits whatever their order. The
   * keys (the sign bit flipped) have fewer digits that differ than a
   * double's (whose low mantissa bits vary in every value). */
  for (size_t i = 0; i < n; i++) set_key(ns, i, (uint64_t)ns[i] ^ (UINT64_C(1) << 63));
  bool sorted = radix_sort_keys(ns, n, spare);
  for (size_t i = 0; i < n; i++) ns[i] = (int64_t)(key_at(ns, i) ^ (UINT64_C(1) << 63));
  if (!sorted) qsort(ns, n, sizeof *ns, compare_i64);
  double sum = 0.0;
  for (size_t i = 0; i < n; i++) sum += ns_seconds(ns[i]);
  out->count = (int64_t)n;
  out->mean = sum / (double)n;
  out->p50 = ns_seconds(ns[nearest_rank(n, 50.0) - 1]);
  out->p90 = ns_seconds(ns[nearest_rank(n, 90.0) - 1]);
  out->p99 = ns_seconds(ns[nearest_rank(n, 99.0) - 1]);
}

void infsim_stat_compute_ns(int64_t *ns, size_t n, infsim_stat *out) { stat_compute_ns(ns, n, NULL, out); }

/* Whether record r enters the latency statistics (finished after the warmup). */
static bool counted_latency(const infsim_run_params *p, const infsim_request_record *r) {
  return r->state == INFSIM_REQ_FINISHED && r->arrival_ns >= p->warmup_ns;
}

/* r's time per output token after the first (r has two or more). */
static double tpot_of(const infsim_request_record *r) {
  double t_first = ns_seconds(r->first_token_ns - r->arrival_ns);
  double t_e2e = ns_seconds(r->finish_ns - r->arrival_ns);
  return (t_e2e - t_first) / (double)(r->output_tokens - 1);
}

infsim_status infsim_summary_compute(const infsim_run_params *p, const infsim_request_record *rec, size_t n,
                                     const infsim_run_counters *c, infsim_summary *out, infsim_error *err) {
  memset(out, 0, sizeof *out);
  /* One array for the values of one statistic at a time and one for the
   * sorts' scratch (bigmem.h: few page faults, one allocation): 16 bytes a
   * request at the end of a run, when the records are all there is. */
  size_t room = n ? n : 1;
  int64_t *values = infsim_big_calloc(2 * room, sizeof(int64_t));
  if (values == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  void *spare = values + room;
  size_t n_e2e = 0;
  int64_t first_arrival_ns = n ? rec[0].arrival_ns : 0, last_finish_ns = first_arrival_ns;
  double output_tokens = 0.0;
  int64_t meeting_slo = 0, rejected_counted = 0;
  for (size_t i = 0; i < n; i++) {
    const infsim_request_record *r = &rec[i];
    if (r->state == INFSIM_REQ_REJECTED) {
      out->rejected++;
      rejected_counted += r->arrival_ns >= p->warmup_ns;
    }
    if (r->state != INFSIM_REQ_FINISHED) continue;
    out->completed++;
    output_tokens += (double)r->output_tokens;
    if (r->finish_ns > last_finish_ns) last_finish_ns = r->finish_ns;
    if (r->arrival_ns < p->warmup_ns) continue;
    n_e2e++;
    double t_first = ns_seconds(r->first_token_ns - r->arrival_ns);
    int meets = t_first <= p->slo_ttft_s;
    if (r->output_tokens >= 2) meets = meets && tpot_of(r) <= p->slo_tpot_s;
    meeting_slo += meets;
  }
  out->arrived = (int64_t)n;
  out->span_s = (double)(last_finish_ns - first_arrival_ns) * 1e-9;
  if (out->span_s > 0) {
    out->throughput_tok_s = output_tokens / out->span_s;
    out->requests_per_s = (double)out->completed / out->span_s;
    out->goodput_req_s = (double)meeting_slo / out->span_s;
  }
  int64_t counted = (int64_t)n_e2e + rejected_counted; /* a rejection is a miss */
  out->slo_attainment = counted ? (double)meeting_slo / (double)counted : 0.0;
  /* TTFT in ns (sorted as integers: infsim_stat_compute_ns), then TPOT,
   * then E2E, each in record order. */
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (counted_latency(p, &rec[i])) values[k++] = rec[i].first_token_ns - rec[i].arrival_ns;
  stat_compute_ns(values, k, spare, &out->ttft_s);
  double *tpot = (double *)(void *)values;
  k = 0;
  for (size_t i = 0; i < n; i++)
    if (counted_latency(p, &rec[i]) && rec[i].output_tokens >= 2) tpot[k++] = tpot_of(&rec[i]);
  stat_compute(tpot, k, spare, &out->tpot_s);
  k = 0;
  for (size_t i = 0; i < n; i++)
    if (counted_latency(p, &rec[i])) values[k++] = rec[i].finish_ns - rec[i].arrival_ns;
  stat_compute_ns(values, k, spare, &out->e2e_s);
  if (c->end_ns > 0) {
    out->mean_waiting_requests = c->waiting_integral_ns / (double)c->end_ns;
    out->mean_running_requests = c->running_integral_ns / (double)c->end_ns;
  }
  infsim_big_free(values);
  return INFSIM_OK;
}
