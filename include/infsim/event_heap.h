/*
** event_heap.h: the engine's one event queue.
**
** A binary min-heap of fixed-size events ordered by (time_ns, priority,
** seq): ties in time break by the event kind's priority, then by insertion
** order, so a run is deterministic whatever the heap's internal layout
** (libuv's timer heap habit). Events are values stored in one array that
** grows by doubling: pushing allocates only when the array is full, never
** per event.
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

typedef struct {
  infsim_event *items;
  size_t count;
  size_t capacity;
  size_t peak; /* most events at once */
  uint64_t next_seq;
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
