/*
** test_event_heap.c: the event queue pops in (time, priority, insertion)
** order whatever the push order, with times close together (ties) and
** spread over many bits (events moving down the radix buckets), checked
** against a sorted reference and a linear-scan one.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
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

/* The reference queue: an unordered list, the first event found by a
 * linear scan in (time, priority, insertion) order. */
typedef struct {
  infsim_event items[512];
  int n;
} ref_queue;

static int ref_first(const ref_queue *q) {
  int best = 0;
  for (int i = 1; i < q->n; i++)
    if (reference_order(&q->items[i], &q->items[best]) < 0) best = i;
  return best;
}

/* Random pushes and pops against the reference, the queue growing and
 * shrinking (from empty to a few hundred events),
 * with many ties in time and priority: every pop and peek is the
 * reference's first event. */
static void test_random_operations_match_a_reference(void **state) {
  (void)state;
  gsl_rng *rng = infsim_rng_new(3, "test.heap.ref");
  for (int round = 0; round < 40; round++) {
    infsim_event_heap h;
    infsim_event_heap_init(&h);
    ref_queue *q = calloc(1, sizeof *q);
    uint64_t seq = 0;
    int64_t now = 0;
    /* Some rounds stay small, others grow larger. */
    int limit = round % 2 == 0 ? 128 : 384;
    for (int op = 0; op < 5000; op++) {
      bool push = q->n == 0 || (q->n < limit && gsl_rng_uniform(rng) < (op % 1000 < 600 ? 0.7 : 0.35));
      if (push) {
        int64_t t = now + (int64_t)gsl_rng_uniform_int(rng, 8); /* ties, as events at one time are */
        int32_t prio = (int32_t)gsl_rng_uniform_int(rng, 4);
        assert_int_equal(infsim_event_heap_push(&h, t, prio, op, op, NULL), INFSIM_OK);
        q->items[q->n++] = (infsim_event){t, prio, op, seq++, op};
      } else {
        int k = ref_first(q);
        infsim_event want = q->items[k], got;
        assert_int_equal(infsim_event_heap_peek(&h)->arg, want.arg);
        assert_true(infsim_event_heap_pop(&h, &got));
        assert_int_equal(got.arg, want.arg);
        assert_int_equal(got.time_ns, want.time_ns);
        assert_int_equal(got.priority, want.priority);
        assert_int_equal(got.seq, want.seq);
        q->items[k] = q->items[--q->n];
        now = got.time_ns;
      }
      assert_int_equal(h.count, (size_t)q->n);
    }
    free(q);
    infsim_event_heap_free(&h);
  }
  gsl_rng_free(rng);
}

/* Times spread from the next nanosecond to 2^50 ns ahead (and a few near
 * the top of int64), pushed and popped at random against the reference:
 * events cross many radix buckets before they come out. */
static void test_wide_times_match_a_reference(void **state) {
  (void)state;
  gsl_rng *rng = infsim_rng_new(4, "test.heap.wide");
  for (int round = 0; round < 20; round++) {
    infsim_event_heap h;
    infsim_event_heap_init(&h);
    ref_queue *q = calloc(1, sizeof *q);
    uint64_t seq = 0;
    int64_t now = round % 4 == 3 ? INT64_MAX / 2 : 0;
    for (int op = 0; op < 5000; op++) {
      bool push = q->n == 0 || (q->n < 300 && gsl_rng_uniform(rng) < 0.55);
      if (push) {
        int bits = (int)gsl_rng_uniform_int(rng, 51);
        uint64_t r64 = ((uint64_t)gsl_rng_get(rng) << 32) ^ (uint64_t)gsl_rng_get(rng);
        int64_t ahead = bits == 0 ? 0 : (int64_t)(r64 & ((UINT64_C(1) << bits) - 1));
        if (gsl_rng_uniform(rng) < 0.2) ahead = (int64_t)gsl_rng_uniform_int(rng, 3); /* ties too */
        int32_t prio = (int32_t)gsl_rng_uniform_int(rng, 4);
        assert_int_equal(infsim_event_heap_push(&h, now + ahead, prio, op, op, NULL), INFSIM_OK);
        q->items[q->n++] = (infsim_event){now + ahead, prio, op, seq++, op};
      } else {
        int k = ref_first(q);
        infsim_event want = q->items[k], got;
        assert_int_equal(infsim_event_heap_peek(&h)->arg, want.arg);
        assert_true(infsim_event_heap_pop(&h, &got));
        assert_int_equal(got.arg, want.arg);
        assert_int_equal(got.time_ns, want.time_ns);
        assert_int_equal(got.seq, want.seq);
        q->items[k] = q->items[--q->n];
        now = got.time_ns;
      }
      assert_int_equal(h.count, (size_t)q->n);
    }
    free(q);
    infsim_event_heap_free(&h);
  }
  gsl_rng_free(rng);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pops_in_time_priority_insertion_order),
      cmocka_unit_test(test_interleaved_use_is_monotone),
      cmocka_unit_test(test_random_operations_match_a_reference),
      cmocka_unit_test(test_wide_times_match_a_reference),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
