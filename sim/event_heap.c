/*
** event_heap.c: the engine's event queue (see event_heap.h): a radix heap
** on the event time, ties broken by priority, then insertion order.
*/
#include "infsim/event_heap.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

static inline int event_before(const infsim_event *a, const infsim_event *b) {
  if (a->time_ns != b->time_ns) return a->time_ns < b->time_ns;
  return a->priority != b->priority ? a->priority < b->priority : a->seq < b->seq;
}

/* The bucket of an event due at t, seen from the last popped time. */
static inline int bucket_of(const infsim_event_heap *h, int64_t t) {
  uint64_t x = (uint64_t)t ^ (uint64_t)h->last_ns;
  return x == 0 ? 0 : 64 - __builtin_clzll(x);
}

void infsim_event_heap_init(infsim_event_heap *h) { memset(h, 0, sizeof *h); }

void infsim_event_heap_free(infsim_event_heap *h) {
  for (int k = 0; k < INFSIM_EVENT_BUCKETS; k++) free(h->bucket[k].items);
  infsim_event_heap_init(h);
}

/* Appends ev to bucket k, room made; false when memory is short. */
static inline int bucket_add(infsim_event_heap *h, int k, const infsim_event *ev) {
  infsim_event_bucket *b = &h->bucket[k];
  if (b->n == b->capacity) {
    uint32_t cap = b->capacity ? 2 * b->capacity : 4;
    infsim_event *items = realloc(b->items, (size_t)cap * sizeof *items);
    if (items == NULL) return 0;
    b->items = items;
    h->capacity += cap - b->capacity;
    b->capacity = cap;
  }
  b->items[b->n++] = *ev;
  if (k > 0) h->nonempty |= UINT64_C(1) << (k - 1);
  return 1;
}

infsim_status infsim_event_heap_push(infsim_event_heap *h, int64_t time_ns, int32_t priority, int32_t target,
                                     int64_t arg, infsim_error *err) {
  assert(time_ns >= h->last_ns); /* the clock never goes back */
  infsim_event ev = {time_ns, priority, target, h->next_seq, arg};
  if (!bucket_add(h, bucket_of(h, time_ns), &ev)) return infsim_fail(err, INFSIM_ENOMEM, "event heap: out of memory");
  h->next_seq++;
  if (++h->count > h->peak) h->peak = h->count;
  return INFSIM_OK;
}

/* Bucket 0 empty, the heap not: the lowest non-empty bucket's earliest
 * time becomes the last popped time and its events go to lower buckets
 * (each to a strictly lower one: they share its bits above k - 1; the
 * earliest ones to bucket 0). */
static void refill(infsim_event_heap *h) {
  int k = __builtin_ctzll(h->nonempty) + 1;
  infsim_event_bucket *b = &h->bucket[k];
  int64_t min = b->items[0].time_ns;
  for (uint32_t i = 1; i < b->n; i++)
    if (b->items[i].time_ns < min) min = b->items[i].time_ns;
  h->last_ns = min;
  h->nonempty &= ~(UINT64_C(1) << (k - 1));
  for (uint32_t i = 0; i < b->n; i++) {
    int to = bucket_of(h, b->items[i].time_ns);
    assert(to < k);
    /* out of memory in a pop, which cannot fail: as the KV manager's accessors */
    if (!bucket_add(h, to, &b->items[i])) abort();
  }
  b->n = 0;
}

int infsim_event_heap_pop(infsim_event_heap *h, infsim_event *out) {
  if (h->count == 0) return 0;
  if (h->bucket[0].n == 0) refill(h);
  infsim_event_bucket *b = &h->bucket[0];
  uint32_t best = 0;
  for (uint32_t i = 1; i < b->n; i++)
    if (event_before(&b->items[i], &b->items[best])) best = i;
  *out = b->items[best];
  b->items[best] = b->items[--b->n];
  h->count--;
  return 1;
}

const infsim_event *infsim_event_heap_peek(const infsim_event_heap *h) {
  if (h->count == 0) return NULL;
  const infsim_event_bucket *b = h->bucket[0].n > 0 ? &h->bucket[0] : &h->bucket[__builtin_ctzll(h->nonempty) + 1];
  uint32_t best = 0;
  for (uint32_t i = 1; i < b->n; i++)
    if (event_before(&b->items[i], &b->items[best])) best = i;
  return &b->items[best];
}
