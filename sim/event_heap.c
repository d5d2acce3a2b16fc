/*
** event_heap.c: binary min-heap of events (see event_heap.h).
*/
#include "infsim/event_heap.h"

#include <stdlib.h>

static int event_before(const infsim_event *a, const infsim_event *b) {
  if (a->time_ns != b->time_ns) return a->time_ns < b->time_ns;
  if (a->priority != b->priority) return a->priority < b->priority;
  return a->seq < b->seq;
}

void infsim_event_heap_init(infsim_event_heap *h) {
  h->items = NULL;
  h->count = 0;
  h->capacity = 0;
  h->peak = 0;
  h->next_seq = 0;
}

void infsim_event_heap_free(infsim_event_heap *h) {
  free(h->items);
  infsim_event_heap_init(h);
}

infsim_status infsim_event_heap_push(infsim_event_heap *h, int64_t time_ns, int32_t priority, int32_t target,
                                     int64_t arg, infsim_error *err) {
  if (h->count == h->capacity) {
    size_t cap = h->capacity ? 2 * h->capacity : 64;
    infsim_event *items = realloc(h->items, cap * sizeof *items);
    if (items == NULL) return infsim_fail(err, INFSIM_ENOMEM, "event heap: out of memory");
    h->items = items;
    h->capacity = cap;
  }
  infsim_event ev = {time_ns, priority, target, h->next_seq++, arg};
  size_t i = h->count++;
  if (h->count > h->peak) h->peak = h->count;
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!event_before(&ev, &h->items[parent])) break;
    h->items[i] = h->items[parent];
    i = parent;
  }
  h->items[i] = ev;
  return INFSIM_OK;
}

int infsim_event_heap_pop(infsim_event_heap *h, infsim_event *out) {
  if (h->count == 0) return 0;
  *out = h->items[0];
  infsim_event last = h->items[--h->count];
  size_t i = 0, n = h->count;
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && event_before(&h->items[child + 1], &h->items[child])) child++;
    if (!event_before(&h->items[child], &last)) break;
    h->items[i] = h->items[child];
    i = child;
  }
  if (n > 0) h->items[i] = last;
  return 1;
}

const infsim_event *infsim_event_heap_peek(const infsim_event_heap *h) { return h->count ? &h->items[0] : NULL; }
