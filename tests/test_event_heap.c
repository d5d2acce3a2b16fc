/*
** test_event_heap.c: the event heap pops in (time, priority, insertion)
** order whatever the push order, checked against a sorted reference.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>
#include <gsl/gsl_rng.h>

#include "infsim/event_heap.h"
#include "infsim/rng.h"

static int reference_order(const void *a, const void *b) {
  const infsim_event *x = a, *y = b;
  if (x->time_ns != y->time_ns) return x->time_ns < y->time_ns ? -1 : 1;
  if (x->priority != y->priority) return x->priority < y->priority ? -1 : 1;
  return x->seq < y->seq ? -1 : (x->seq > y->seq);
}

/* Many ties: times from a small range, three priorities. */
static void test_pops_in_time_priority_insertion_order(void **state) {
  (void)state;
  enum { N = 20000 };
  gsl_rng *rng = infsim_rng_new(1, "test.heap");
  infsim_event_heap h;
  infsim_event_heap_init(&h);
  infsim_event *ref = malloc(N * sizeof *ref);
  for (int i = 0; i < N; i++) {
    int64_t t = (int64_t)gsl_rng_uniform_int(rng, 500);
    int32_t prio = (int32_t)gsl_rng_uniform_int(rng, 3);
    assert_int_equal(infsim_event_heap_push(&h, t, prio, i, i, NULL), INFSIM_OK);
    ref[i] = (infsim_event){t, prio, i, (uint64_t)i, i};
  }
  qsort(ref, N, sizeof *ref, reference_order);
  infsim_event ev;
  for (int i = 0; i < N; i++) {
    assert_int_equal(infsim_event_heap_peek(&h)->arg, ref[i].arg);
    assert_true(infsim_event_heap_pop(&h, &ev));
    assert_int_equal(ev.arg, ref[i].arg);
    assert_int_equal(ev.time_ns, ref[i].time_ns);
  }
  assert_false(infsim_event_heap_pop(&h, &ev));
  assert_null(infsim_event_heap_peek(&h));
  free(ref);
  infsim_event_heap_free(&h);
  gsl_rng_free(rng);
}

/* Interleaved pushes and pops, as the engine does (every push strictly
 * after the current time): time never goes back, and events of one time
 * come out by priority, then insertion order. */
static void test_interleaved_use_is_monotone(void **state) {
  (void)state;
  gsl_rng *rng = infsim_rng_new(2, "test.heap");
  infsim_event_heap h;
  infsim_event_heap_init(&h);
  int64_t now = 0;
  uint64_t last_seq_at_now = 0;
  int32_t last_prio = -1;
  for (int i = 0; i < 64; i++) infsim_event_heap_push(&h, (int64_t)gsl_rng_uniform_int(rng, 1000), 0, 0, 0, NULL);
  infsim_event ev;
  for (int i = 0; i < 100000 && infsim_event_heap_pop(&h, &ev); i++) {
    assert_true(ev.time_ns >= now);
    if (ev.time_ns == now) {
      assert_true(ev.priority >= last_prio);
      if (ev.priority == last_prio) assert_true(ev.seq > last_seq_at_now);
    }
    now = ev.time_ns;
    last_prio = ev.priority;
    last_seq_at_now = ev.seq;
    infsim_event_heap_push(&h, now + 1 + (int64_t)gsl_rng_uniform_int(rng, 50), (int32_t)gsl_rng_uniform_int(rng, 2),
                           0, 0, NULL);
  }
  infsim_event_heap_free(&h);
  gsl_rng_free(rng);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pops_in_time_priority_insertion_order),
      cmocka_unit_test(test_interleaved_use_is_monotone),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
