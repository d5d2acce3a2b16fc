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

/* Pushes event op (time t, priority prio) onto both the queue and the
 * reference; seq counts the reference's insertions. */
static void push_both(infsim_event_heap *h, ref_queue *q, int64_t t, int32_t prio, int op, uint64_t *seq) {
  assert_int_equal(infsim_event_heap_push(h, t, prio, op, op, NULL), INFSIM_OK);
  q->items[q->n++] = (infsim_event){t, prio, op, (*seq)++, op};
}

/* Pops the queue and removes the reference's first event: the peek, the
 * pop and every field must be that event's. Returns its time. */
static int64_t pop_both(infsim_event_heap *h, ref_queue *q) {
  int k = ref_first(q);
  infsim_event want = q->items[k], got;
  assert_int_equal(infsim_event_heap_peek(h)->arg, want.arg);
  assert_true(infsim_event_heap_pop(h, &got));
  assert_int_equal(got.arg, want.arg);
  assert_int_equal(got.time_ns, want.time_ns);
  assert_int_equal(got.priority, want.priority);
  assert_int_equal(got.seq, want.seq);
  q->items[k] = q->items[--q->n];
  return got.time_ns;
}

/* One round of 5000 random operations on a fresh queue and reference,
 * starting at start_ns: push when want_push says (always when empty), at
 * next_time's time and a random priority of four, else pop; the counts agree
 * after every operation. */
typedef bool (*push_rule)(gsl_rng *rng, int n, int op, int round);
typedef int64_t (*time_rule)(gsl_rng *rng, int64_t now);

static void round_against_reference(gsl_rng *rng, int round, int64_t start_ns, push_rule want_push,
                                    time_rule next_time) {
  infsim_event_heap h;
  infsim_event_heap_init(&h);
  ref_queue *q = calloc(1, sizeof *q);
  uint64_t seq = 0;
  int64_t now = start_ns;
  for (int op = 0; op < 5000; op++) {
    if (q->n == 0 || want_push(rng, q->n, op, round)) {
      int64_t t = next_time(rng, now);
      push_both(&h, q, t, (int32_t)gsl_rng_uniform_int(rng, 4), op, &seq);
    } else {
      now = pop_both(&h, q);
    }
    assert_int_equal(h.count, (size_t)q->n);
  }
  free(q);
  infsim_event_heap_free(&h);
}

/* Some rounds stay small, others grow larger; pushes more likely in the
 * first 600 operations of every thousand. */
static bool push_growing_and_shrinking(gsl_rng *rng, int n, int op, int round) {
  int limit = round % 2 == 0 ? 128 : 384;
  return n < limit && gsl_rng_uniform(rng) < (op % 1000 < 600 ? 0.7 : 0.35);
}

/* Ties, as events at one time are. */
static int64_t time_close(gsl_rng *rng, int64_t now) { return now + (int64_t)gsl_rng_uniform_int(rng, 8); }

/* Random pushes and pops against the reference, the queue growing and
 * shrinking (from empty to a few hundred events),
 * with many ties in time and priority: every pop and peek is the
 * reference's first event. */
static void test_random_operations_match_a_reference(void **state) {
  (void)state;
  gsl_rng *rng = infsim_rng_new(3, "test.heap.ref");
  for (int round = 0; round < 40; round++) round_against_reference(rng, round, 0, push_growing_and_shrinking, time_close);
  gsl_rng_free(rng);
}

static bool push_up_to_300(gsl_rng *rng, int n, int op, int round) {
  (void)op;
  (void)round;
  return n < 300 && gsl_rng_uniform(rng) < 0.55;
}

/* From 0 to 2^50 - 1 ns ahead, a fifth of them 0-2 ns ahead (ties too). */
static int64_t time_wide(gsl_rng *rng, int64_t now) {
  int bits = (int)gsl_rng_uniform_int(rng, 51);
  uint64_t r64 = ((uint64_t)gsl_rng_get(rng) << 32) ^ (uint64_t)gsl_rng_get(rng);
  int64_t ahead = bits == 0 ? 0 : (int64_t)(r64 & ((UINT64_C(1) << bits) - 1));
  if (gsl_rng_uniform(rng) < 0.2) ahead = (int64_t)gsl_rng_uniform_int(rng, 3);
  return now + ahead;
}

/* Times spread from the next nanosecond to 2^50 ns ahead (and a few near
 * the top of int64), pushed and popped at random against the reference:
 * events cross many radix buckets before they come out. */
static void test_wide_times_match_a_reference(void **state) {
  (void)state;
  gsl_rng *rng = infsim_rng_new(4, "test.heap.wide");
  for (int round = 0; round < 20; round++)
    round_against_reference(rng, round, round % 4 == 3 ? INT64_MAX / 2 : 0, push_up_to_300, time_wide);
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
