/*
** event_heap.h: the engine's one event queue.
**
** Fixed-size events ordered by (time_ns, priority, seq): ties in time
** break by the event kind's priority, then by insertion order, so a run is
** deterministic whatever the queue's internal layout (libuv's timer heap
** habit).
**
** The engine's clock never goes back: every event pushed is due at or
** after the last one popped. The queue is a radix heap on that promise
** (Ahuja, Mehlhorn, Orlin and Tarjan, "Faster algorithms for the shortest
** path problem", J. ACM 37(2), 1990): bucket 0 holds the events due at
** the last popped time, bucket k (1..64) those whose time first differs
** from it in bit k - 1 (from the top), so a push is O(1) and an event
** moves to a lower bucket at most 64 times in its life (in practice a
** few: most are due within a few bits' range of each other). A pop takes
** bucket 0's first event by (priority, seq) (it holds the few events of
** one time); when bucket 0 is empty, the lowest non-empty bucket's
** earliest time becomes the last popped time and its events spread over
** lower buckets. Each bucket is an array that grows by doubling: pushing
** allocates only when one is full, never per event.
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
  uint32_t n;
  uint32_t capacity;
} infsim_event_bucket;

enum { INFSIM_EVENT_BUCKETS = 65 };

typedef struct {
  infsim_event_bucket bucket[INFSIM_EVENT_BUCKETS];
  uint64_t nonempty; /* bit k - 1 set: bucket k (1..64) holds events */
  int64_t last_ns;   /* the last popped time (0 before any): no event is due before it */
  size_t count;
  size_t capacity; /* events the buckets have room for, all together */
  size_t peak;     /* most events at once */
  uint64_t next_seq;
} infsim_event_heap;

void infsim_event_heap_init(infsim_event_heap *h);
void infsim_event_heap_free(infsim_event_heap *h);
/* time_ns is at or after the last popped event's (the engine's clock). */
infsim_status infsim_event_heap_push(infsim_event_heap *h, int64_t time_ns, int32_t priority, int32_t target,
                                     int64_t arg, infsim_error *err);
/* Removes the first event into *out; returns 0 when the heap is empty. */
int infsim_event_heap_pop(infsim_event_heap *h, infsim_event *out);
/* The first event without removing it, or NULL. */
const infsim_event *infsim_event_heap_peek(const infsim_event_heap *h);

#endif
