/*
** test_metrics.c: nearest-rank percentiles and DESIGN.md's definitions on
** hand-made records.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "infsim/metrics.h"

static void test_nearest_rank(void **state) {
  (void)state;
  double v[100];
  for (int i = 0; i < 100; i++) v[i] = 100 - i; /* unsorted */
  infsim_stat st;
  infsim_stat_compute(v, 100, &st);
  assert_int_equal(st.count, 100);
  assert_true(st.p50 == 50 && st.p90 == 90 && st.p99 == 99 && st.mean == 50.5);
  double three[] = {3, 1, 2};
  infsim_stat_compute(three, 3, &st); /* ranks ceil(1.5)=2, ceil(2.7)=3, ceil(2.97)=3 */
  assert_true(st.p50 == 2 && st.p90 == 3 && st.p99 == 3);
  infsim_stat_compute(NULL, 0, &st);
  assert_true(st.count == 0 && st.mean == 0 && st.p50 == 0 && st.p99 == 0);
}

/* A small deterministic generator: uniform in [0, 1). */
static double uniform(uint64_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return (double)(*x >> 11) * 0x1p-53;
}

static int compare_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The sort behind the statistics leaves the array exactly as qsort does,
 * bit for bit (so the mean, summed in sorted order, is the same double):
 * values of every sign and magnitude, many ties, infinities, subnormals;
 * arrays with -0.0 or NaN take another path and still come out sorted. */
static void test_sort_matches_qsort(void **state) {
  (void)state;
  uint64_t rng = 15;
  enum { MAX_N = 5000 };
  double *v = malloc(MAX_N * sizeof *v), *ref = malloc(MAX_N * sizeof *ref);
  assert_non_null(v);
  assert_non_null(ref);
  for (int trial = 0; trial < 300; trial++) {
    size_t n = 1 + (size_t)(uniform(&rng) * (trial < 100 ? 40 : MAX_N));
    int kind = trial % 6;
    for (size_t i = 0; i < n; i++) {
      double u = uniform(&rng);
      switch (kind) {
      case 0: v[i] = u * 10.0; break;                                  /* like latencies */
      case 1: v[i] = (double)(int)(u * 7.0) - 3.0; break;              /* few values, ties, +0 */
      case 2: v[i] = ldexp(u - 0.5, (int)(uniform(&rng) * 2000) - 1000); break; /* all exponents */
      case 3: v[i] = u < 0.1 ? INFINITY : u < 0.2 ? -INFINITY : u < 0.3 ? 4.9e-324 : -u; break;
      case 4: v[i] = 1e-9 * (double)(int64_t)(u * 1e9); break;         /* ns differences in seconds */
      default: v[i] = u < 0.05 ? -0.0 : u < 0.1 ? NAN : u - 0.5; break; /* the other path */
      }
    }
    memcpy(ref, v, n * sizeof *v);
    qsort(ref, n, sizeof *ref, compare_double);
    infsim_stat st;
    infsim_stat_compute(v, n, &st);
    if (kind == 5) {
      for (size_t i = 1; i < n; i++) assert_false(v[i] < v[i - 1]);
      continue;
    }
    assert_memory_equal(v, ref, n * sizeof *v);
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) sum += ref[i];
    assert_true(memcmp(&st.mean, &(double){sum / (double)n}, sizeof sum) == 0 || isnan(sum));
    assert_true(st.p50 == infsim_percentile_sorted(ref, n, 50.0));
    assert_true(st.p99 == infsim_percentile_sorted(ref, n, 99.0));
  }
  free(v);
  free(ref);
}

/* Statistics of ns durations sorted as integers equal, bit for bit,
 * those of their seconds (ns x 1e-9) sorted as doubles: latencies, ties,
 * negatives, values past 2^53 (where the doubles round) and single values. */
static void test_ns_stats_match_seconds(void **state) {
  (void)state;
  uint64_t rng = 16;
  enum { MAX_N = 5000 };
  int64_t *ns = malloc(MAX_N * sizeof *ns);
  double *sec = malloc(MAX_N * sizeof *sec);
  assert_non_null(ns);
  assert_non_null(sec);
  for (int trial = 0; trial < 200; trial++) {
    size_t n = 1 + (size_t)(uniform(&rng) * (trial < 50 ? 20 : MAX_N));
    int kind = trial % 4;
    for (size_t i = 0; i < n; i++) {
      double u = uniform(&rng);
      switch (kind) {
      case 0: ns[i] = (int64_t)(u * 6e10); break;                       /* up to a minute */
      case 1: ns[i] = (int64_t)(u * 5.0) * 1000; break;                  /* few values, ties, 0 */
      case 2: ns[i] = (int64_t)((u - 0.5) * 2e12); break;                /* negatives */
      default: ns[i] = (int64_t)(u * 9e18) - (int64_t)(uniform(&rng) * 4e18); break; /* beyond 2^53 */
      }
      sec[i] = (double)ns[i] * 1e-9;
    }
    infsim_stat a, b;
    infsim_stat_compute_ns(ns, n, &a);
    infsim_stat_compute(sec, n, &b);
    assert_memory_equal(&a, &b, sizeof a);
    for (size_t i = 0; i < n; i++) assert_true((double)ns[i] * 1e-9 == sec[i]); /* sorted the same way */
  }
  infsim_stat st;
  infsim_stat_compute_ns(NULL, 0, &st);
  assert_int_equal(st.count, 0);
  free(ns);
  free(sec);
}

static infsim_request_record done(int64_t arrival_s, int64_t first_s, int64_t finish_s, int64_t out) {
  return (infsim_request_record){arrival_s * 1000000000, 10, out, first_s * 1000000000, finish_s * 1000000000,
                                 0, 0, 1, INFSIM_REQ_FINISHED, 0};
}

static void test_summary_definitions(void **state) {
  (void)state;
  infsim_request_record rec[5] = {
      done(0, 1, 11, 11),  /* warm-up: counted in throughput, not in statistics */
      done(10, 11, 21, 6), /* TTFT 1, TPOT 2 */
      done(12, 16, 16, 1), /* TTFT 4, one token: no TPOT */
      done(14, 15, 35, 5), /* TTFT 1, TPOT 5: misses TPOT SLO */
      {13000000000, 10, 10, -1, -1, 0, 0, 1, INFSIM_REQ_REJECTED, 1},
  };
  infsim_run_params p;
  memset(&p, 0, sizeof p);
  p.warmup_ns = 5000000000;
  p.slo_ttft_s = 4.0;
  p.slo_tpot_s = 3.0;
  infsim_run_counters c = {.end_ns = 35000000000, .waiting_integral_ns = 70e9};
  infsim_summary s;
  assert_int_equal(infsim_summary_compute(&p, rec, 5, &c, &s, NULL), INFSIM_OK);
  assert_int_equal(s.arrived, 5);
  assert_int_equal(s.completed, 4);
  assert_int_equal(s.rejected, 1);
  assert_true(s.span_s == 35.0);                     /* last finish 35 - first arrival 0 */
  assert_true(s.throughput_tok_s == 23.0 / 35.0);    /* 11 + 6 + 1 + 5 tokens */
  assert_true(s.requests_per_s == 4.0 / 35.0);
  assert_int_equal(s.ttft_s.count, 3);
  assert_true(s.ttft_s.mean == 2.0 && s.ttft_s.p50 == 1.0 && s.ttft_s.p99 == 4.0);
  assert_int_equal(s.tpot_s.count, 2);
  assert_true(s.tpot_s.mean == 3.5 && s.tpot_s.p50 == 2.0 && s.tpot_s.p90 == 5.0);
  assert_true(s.e2e_s.mean == (11.0 + 4.0 + 21.0) / 3.0);
  assert_true(s.slo_attainment == 2.0 / 4.0); /* the rejection after warm-up is a miss */
  assert_true(s.goodput_req_s == 2.0 / 35.0);
  assert_true(s.mean_waiting_requests == 2.0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_nearest_rank),
      cmocka_unit_test(test_summary_definitions),
      cmocka_unit_test(test_sort_matches_qsort),
      cmocka_unit_test(test_ns_stats_match_seconds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
