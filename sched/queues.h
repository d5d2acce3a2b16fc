/*
** queues.h: the scheduler's small containers (internal to sched/).
**
** req_deque: a ring buffer of request ids (waiting, swapped and
** prefilling queues). step_heap: a min-heap of step events ordered by
** (step, req): the finishes of an instance's decoding requests, keyed by
** the decode step at which they fall due. An event carries its request's
** epoch, bumped on preemption, so events of a preempted request are
** recognised as stale and dropped when they surface. req_set: request ids
** in ascending order (the decoding requests whose KV block boundaries
** fall on one phase of the step count).
*/
#ifndef INFSIM_SCHED_QUEUES_H
#define INFSIM_SCHED_QUEUES_H

#include <stdint.h>

#include "infsim/status.h"

typedef struct {
  int32_t *items;
  int32_t head;
  int32_t count;
  int32_t capacity;
  int32_t peak; /* most items at once (summary.json's high_water) */
} req_deque;

infsim_status deque_push_back(req_deque *q, int32_t v, infsim_error *err);
infsim_status deque_push_front(req_deque *q, int32_t v, infsim_error *err);
int32_t deque_front(const req_deque *q);
int32_t deque_at(const req_deque *q, int32_t i);
void deque_pop_front(req_deque *q);
/* Removes the first occurrence of v (which must be present). */
void deque_remove(req_deque *q, int32_t v);
void deque_free(req_deque *q);

typedef struct {
  int64_t step;
  int32_t req;
  uint32_t epoch;
} step_event;

typedef struct {
  step_event *items;
  int32_t count;
  int32_t capacity;
  int32_t peak; /* most events at once */
} step_heap;

infsim_status step_heap_push(step_heap *h, step_event ev, infsim_error *err);
void step_heap_pop(step_heap *h);
void step_heap_free(step_heap *h);

typedef struct {
  int32_t *items;
  int32_t count;
  int32_t capacity;
} req_set;

/* Adds v (not present), keeping the order; O(count). */
infsim_status req_set_add(req_set *q, int32_t v, infsim_error *err);
/* Removes v (which must be present); O(count). */
void req_set_remove(req_set *q, int32_t v);
void req_set_free(req_set *q);

#endif
