/*
** event_heap.h: the engine's one event queue.
**
** Fixed-size events ordered by (time_ns, priority, seq): ties in time
** break by the event kind's priority, then by insertion order, so a run is
** deterministic whatever the queue's internal layout (libuv's timer heap
** habit). Events are values stored in one array that grows by doubling:
** pushing allocates only when the array is full, never per event.
**
** Two layouts of that array: while the queue has never held more than
** INFSIM_EVENT_SORTED_MAX events it is kept sorted, latest first, so a pop
** takes the last element and a push shifts the few events due before the
** new one (a run on a few instances holds a handful: one batch end per
** instance, an arrival, a sample tick, stale batch ends); past that it
** becomes a binary min-heap for good (the sorted array, reversed, is one),
** O(log n) either way for thousands of instances. The order events come
** out in is the same in both.
*/
#ifndef INFSIM_EVENT_HEAP_H
#define INFSIM_EVENT_HEAP_H

#include <stddef.h>
#include <stdint.h>

#include "infsim/status.h"

typedef struct {
  int64_t time_ns;
  int32_t priority; /* lower runs first at equal time */
  int32_t target;   /* e.g. the instance an event is for */
  uint64_t seq;     /* insertion order */
  int64_t arg;      /* kind-specific: a generation number, a request id */
} infsim_event;

/* Events in a queue of at most this many at once stay a sorted array. */
enum { INFSIM_EVENT_SORTED_MAX = 128 };

typedef struct {
  infsim_event *items;
  size_t count;
  size_t capacity;
  size_t peak; /* most events at once */
  uint64_t next_seq;
  int heap; /* 0: items sorted latest first; 1: a binary min-heap (once more than INFSIM_EVENT_SORTED_MAX) */
} infsim_event_heap;

void infsim_event_heap_init(infsim_event_heap *h);
void infsim_event_heap_free(infsim_event_heap *h);
infsim_status infsim_event_heap_push(infsim_event_heap *h, int64_t time_ns, int32_t priority, int32_t target,
                                     int64_t arg, infsim_error *err);
/* Removes the first event into *out; returns 0 when the heap is empty. */
int infsim_event_heap_pop(infsim_event_heap *h, infsim_event *out);
/* The first event without removing it, or NULL. */
const infsim_event *infsim_event_heap_peek(const infsim_event_heap *h);

#endif
