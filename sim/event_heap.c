/*
** event_heap.c: the engine's event queue (see event_heap.h): a sorted
** array while small, a binary min-heap once large.
*/
#include "infsim/event_heap.h"

#include <stdlib.h>

static int event_before(const infsim_event *a, const infsim_event *b) {
  if (a->time_ns != b->time_ns) return a->time_ns < b->time_ns;
  return a->priority != b->priority ? a->priority < b->priority : a->seq < b->seq;
}

void infsim_event_heap_init(infsim_event_heap *h) {
  h->items = NULL;
  h->count = 0;
  h->capacity = 0;
  h->peak = 0;
  h->next_seq = 0;
  h->heap = 0;
}

void infsim_event_heap_free(infsim_event_heap *h) {
  free(h->items);
  infsim_event_heap_init(h);
}

/* The sorted array (latest first) becomes a min-heap: reversed, it is
 * sorted earliest first, and a sorted array is a heap. */
static void become_heap(infsim_event_heap *h) {
  for (size_t i = 0, j = h->count - 1; i < j; i++, j--) {
    infsim_event t = h->items[i];
    h->items[i] = h->items[j];
    h->items[j] = t;
  }
  h->heap = 1;
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
  if (!h->heap && h->count == INFSIM_EVENT_SORTED_MAX) become_heap(h);
  infsim_event ev = {time_ns, priority, target, h->next_seq++, arg};
  size_t i = h->count++;
  if (h->count > h->peak) h->peak = h->count;
  if (!h->heap) {
    /* Sorted layout: the events due before the new one move up a place
     * (usually few: new events mostly fall behind the batch ends queued). */
    while (i > 0 && event_before(&h->items[i - 1], &ev)) {
      h->items[i] = h->items[i - 1];
      i--;
    }
    h->items[i] = ev;
    return INFSIM_OK;
  }
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
  if (!h->heap) {
    *out = h->items[--h->count]; /* sorted layout: the earliest is last */
    return 1;
  }
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

const infsim_event *infsim_event_heap_peek(const infsim_event_heap *h) {
  if (h->count == 0) return NULL;
  return h->heap ? &h->items[0] : &h->items[h->count - 1];
}
