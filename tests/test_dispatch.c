/*
** test_dispatch.c: least-loaded dispatch picks what a linear scan picks
** (fewest outstanding requests, lowest id on ties) through random load
** changes; round-robin cycles.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <gsl/gsl_rng.h>

#include "infsim/dispatch.h"
#include "infsim/rng.h"

static void test_least_loaded_matches_linear_scan(void **state) {
  (void)state;
  enum { N = 37 };
  int64_t load[N] = {0};
  infsim_dispatcher *d = NULL;
  assert_int_equal(infsim_dispatcher_new(0, N, &d, NULL), INFSIM_OK);
  gsl_rng *rng = infsim_rng_new(5, "test.dispatch");
  for (int step = 0; step < 50000; step++) {
    int32_t best = 0;
    for (int32_t i = 1; i < N; i++)
      if (load[i] < load[best]) best = i;
    assert_int_equal(infsim_dispatcher_pick(d), best);
    int32_t i = (int32_t)gsl_rng_uniform_int(rng, N);
    load[i] = (int64_t)gsl_rng_uniform_int(rng, 8); /* few values: many ties */
    infsim_dispatcher_set_load(d, i, load[i]);
  }
  gsl_rng_free(rng);
  infsim_dispatcher_free(d);
}

static void test_round_robin_cycles(void **state) {
  (void)state;
  infsim_dispatcher *d = NULL;
  assert_int_equal(infsim_dispatcher_new(1, 3, &d, NULL), INFSIM_OK);
  infsim_dispatcher_set_load(d, 1, 100); /* ignored by round-robin */
  for (int i = 0; i < 10; i++) assert_int_equal(infsim_dispatcher_pick(d), i % 3);
  infsim_dispatcher_free(d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_least_loaded_matches_linear_scan),
      cmocka_unit_test(test_round_robin_cycles),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
