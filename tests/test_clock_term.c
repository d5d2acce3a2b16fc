/*
** test_clock_term.c: the cost model's clock-after-idle term (costmodel.h):
** the compute load's closed form on a hand-worked busy/idle sequence, a
** prefill priced on toy curves against the formula worked by hand, and
** the term off where no fit exists (roofline, a DB without the fit).
*/
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "infsim/calib.h"
#include "infsim/costmodel.h"

/* Toy curves: a layer's GEMMs 1000 ns, prefill attention 500 ns, decode
 * attention 200 ns, whatever the batch. */
static double toy_gemm(void *self, int64_t tokens) { (void)self, (void)tokens; return 1000.0; }
static double toy_prefill(void *self, int64_t tokens, int64_t pairs) { (void)self, (void)tokens, (void)pairs; return 500.0; }
static double toy_decode(void *self, int64_t requests, int64_t context) { (void)self, (void)requests, (void)context; return 200.0; }

static infsim_cost_model toy_model(double tau_ns, double gain) {
  infsim_cost_model cm;
  memset(&cm, 0, sizeof cm);
  cm.curves.gemm_layer_ns = toy_gemm;
  cm.curves.prefill_attn_layer_ns = toy_prefill;
  cm.curves.decode_attn_layer_ns = toy_decode;
  cm.curves.clock_tau_ns = tau_ns;
  cm.curves.clock_idle_gain = gain;
  cm.model.layers = 1;
  cm.model.hidden = 64;
  cm.model.dtype_bytes = 2;
  cm.layout.tp = 1;
  cm.layout.pp = 1;
  return cm;
}

/* tau 1 s. Busy (share 1) for 1 s from 0: 1 - e^-1 = 0.6321206; idle 2 s:
 * 0.6321206 e^-2 = 0.0855482; share 0.5 for 0.5 s: 0.5 - (0.5 - 0.0855482)
 * e^-0.5 = 0.2486223; 0 s changes nothing. */
static void test_busy_closed_form(void **state) {
  (void)state;
  infsim_cost_model cm = toy_model(1e9, 0.2);
  double u = infsim_cost_busy_fraction(&cm.curves, 0.0, 1000000000, 1.0);
  assert_true(fabs(u - 0.6321206) < 1e-6);
  u = infsim_cost_busy_fraction(&cm.curves, u, 2000000000, 0.0);
  assert_true(fabs(u - 0.0855482) < 1e-6);
  u = infsim_cost_busy_fraction(&cm.curves, u, 500000000, 0.5);
  assert_true(fabs(u - 0.2486223) < 1e-6);
  assert_true(fabs(infsim_cost_busy_fraction(&cm.curves, u, 0, 1.0) - u) < 1e-15);
}

/* A prefill of toy layers: 1500 ns, all of it compute-bound (share 1).
 * tau 1000 ns, gain 0.2, starting after long idle (u0 = 0): the load's
 * mean over the batch 1 - (1000 / 1500)(1 - e^-1.5) = 0.4820868, so
 * 1500 - 0.2 x 0.5179132 x 1500 = 1344.63 -> 1345 ns. Half loaded (u0
 * 0.5): mean 1 - 0.5 x 0.5179132 = 0.7410434, 1500 - 0.2 x 0.2589566 x
 * 1500 = 1422.31 -> 1422 ns. At u0 = 1 and for a decode step: unchanged. */
static void test_prefill_priced(void **state) {
  (void)state;
  infsim_cost_model cm = toy_model(1000.0, 0.2);
  infsim_batch_agg pre = {0};
  pre.prefill_tokens = 4096;
  pre.prefill_attn_pairs = 4096 * 2048;
  assert_true(fabs(infsim_cost_compute_share(&cm, &pre) - 1.0) < 1e-12);
  assert_int_equal(infsim_cost_iteration_busy_ns(&cm, &pre, 0.0), 1345);
  assert_int_equal(infsim_cost_iteration_busy_ns(&cm, &pre, 0.5), 1422);
  assert_int_equal(infsim_cost_iteration_busy_ns(&cm, &pre, 1.0), 1500);
  assert_int_equal(infsim_cost_iteration_ns(&cm, &pre), 1500);
  infsim_batch_agg dec = {0};
  dec.decode_requests = 8;
  dec.decode_context_tokens = 8000;
  assert_true(infsim_cost_compute_share(&cm, &dec) == 0.0);
  assert_int_equal(infsim_cost_iteration_busy_ns(&cm, &dec, 0.0), 1200);
}

/* Without a fit (tau 0) the load reads 1 and a prefill after idle costs
 * what it costs under load; the shipped DB has the fit only where it was
 * made (llama2-7b, TP 1, on the h200 and the h100-sxm), not for TP 2. */
static void test_off_without_fit(void **state) {
  (void)state;
  infsim_cost_model cm = toy_model(0.0, 0.2);
  assert_true(infsim_cost_busy_fraction(&cm.curves, 0.0, 5000000000, 0.0) == 1.0);
  infsim_batch_agg pre = {0};
  pre.prefill_tokens = 4096;
  assert_int_equal(infsim_cost_iteration_busy_ns(&cm, &pre, 0.0), 1500);
  char db[4096];
  snprintf(db, sizeof db, "%s/data/calibration.db", INFSIM_SRC_DIR);
  infsim_model_shape m;
  assert_true(infsim_model_builtin("llama2-7b", &m));
  struct { const char *profile; int64_t tp; bool on; } cases[] = {
      {"h200", 1, true}, {"h200", 2, false}, {"h100-sxm", 1, true}, {"h100-sxm", 2, false}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    infsim_cost_curves c;
    int found = 0;
    infsim_error err = {0};
    assert_int_equal(infsim_cost_curves_calibrated(db, cases[i].profile, &m, cases[i].tp, &found, &c, &err), INFSIM_OK);
    assert_int_equal(found, 1);
    assert_true((c.clock_tau_ns > 0.0) == cases[i].on);
    assert_true((c.clock_idle_gain > 0.0) == cases[i].on);
    c.destroy(c.self);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_busy_closed_form),
      cmocka_unit_test(test_prefill_priced),
      cmocka_unit_test(test_off_without_fit),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
