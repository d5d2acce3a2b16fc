/*
** queues.h: the scheduler's small containers (internal to sched/).
**
** req_deque: a ring buffer of request ids (waiting, swapped and
** prefilling queues). step_heap: a min-heap of step events ordered by
** (step, req): the finishes of an instance's decoding requests, keyed by
** the decode step at which they fall due. An event carries its request's
** epoch, bumped on preemption, so events of a preempted request are
** recognised as stale and dropped when they surface. phase_set: request
** ids in ascending order, each with the step of its next KV block
** boundary (the decoding requests whose boundaries fall on one phase of
** the step count).
*/
#ifndef INFSIM_SCHED_QUEUES_H
#define INFSIM_SCHED_QUEUES_H

#include <stdbool.h>
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
  int64_t boundary; /* the step of the request's next KV block boundary (a regular member's: its set's `next`) */
  int32_t req;
  bool grows;   /* its KV table takes its blocks by itself (infsim_kv_grow_begin) */
  bool regular; /* it grows, its next boundary is its set's `next`: counted with the set */
} phase_member;

typedef struct {
  phase_member *items;
  int32_t count;
  int32_t capacity;
  int32_t regular; /* regular members (kept by the scheduler) */
  int64_t next;    /* the step of their next boundary, while there are any */
} phase_set;

/* Adds req (not present) with its next boundary, keeping the order; O(count). */
infsim_status phase_set_add(phase_set *q, phase_member m, infsim_error *err);
/* Removes req (which must be present) and returns its entry; O(count). */
phase_member phase_set_remove(phase_set *q, int32_t req);
/* req's entry (which must be present); O(log count). */
phase_member *phase_set_find(const phase_set *q, int32_t req);
void phase_set_free(phase_set *q);

#endif
