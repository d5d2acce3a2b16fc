/*
** queues.c: ring-buffer deques and step-event heaps (queues.h).
*/
#include "queues.h"

#include <assert.h>
#include <stdlib.h>

static infsim_status deque_reserve(req_deque *q, infsim_error *err) {
  if (q->count < q->capacity) return INFSIM_OK;
  int32_t cap = q->capacity ? 2 * q->capacity : 16;
  int32_t *items = malloc((size_t)cap * sizeof *items);
  if (items == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  for (int32_t i = 0; i < q->count; i++) items[i] = q->items[(q->head + i) % q->capacity];
  free(q->items);
  q->items = items;
  q->head = 0;
  q->capacity = cap;
  return INFSIM_OK;
}

infsim_status deque_push_back(req_deque *q, int32_t v, infsim_error *err) {
  infsim_status st = deque_reserve(q, err);
  if (st != INFSIM_OK) return st;
  q->items[(q->head + q->count) % q->capacity] = v;
  if (++q->count > q->peak) q->peak = q->count;
  return INFSIM_OK;
}

infsim_status deque_push_front(req_deque *q, int32_t v, infsim_error *err) {
  infsim_status st = deque_reserve(q, err);
  if (st != INFSIM_OK) return st;
  q->head = (q->head + q->capacity - 1) % q->capacity;
  q->items[q->head] = v;
  if (++q->count > q->peak) q->peak = q->count;
  return INFSIM_OK;
}

int32_t deque_front(const req_deque *q) { return q->items[q->head]; }

int32_t deque_at(const req_deque *q, int32_t i) { return q->items[(q->head + i) % q->capacity]; }

void deque_pop_front(req_deque *q) {
  q->head = (q->head + 1) % q->capacity;
  q->count--;
}

void deque_remove(req_deque *q, int32_t v) {
  int32_t i = 0;
  while (i < q->count && deque_at(q, i) != v) i++;
  assert(i < q->count);
  for (; i + 1 < q->count; i++) q->items[(q->head + i) % q->capacity] = deque_at(q, i + 1);
  q->count--;
}

void deque_free(req_deque *q) {
  free(q->items);
  q->items = NULL;
  q->count = q->capacity = q->head = 0;
}

static int step_event_before(const step_event *a, const step_event *b) {
  if (a->step != b->step) return a->step < b->step;
  return a->req < b->req;
}

/* ev goes into the hole at i, rising past the parents it comes before
 * (a push's new item; a pop's last one, from the leaf its hole reached). */
static inline void sift_up(step_heap *h, int32_t i, step_event ev) {
  while (i > 0) {
    int32_t parent = (i - 1) / 2;
    if (!step_event_before(&ev, &h->items[parent])) break;
    h->items[i] = h->items[parent];
    i = parent;
  }
  h->items[i] = ev;
}

infsim_status step_heap_push(step_heap *h, step_event ev, infsim_error *err) {
  if (h->count == h->capacity) {
    int32_t cap = h->capacity ? 2 * h->capacity : 64;
    step_event *items = realloc(h->items, (size_t)cap * sizeof *items);
    if (items == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
    h->items = items;
    h->capacity = cap;
  }
  int32_t i = h->count++;
  if (h->count > h->peak) h->peak = h->count;
  sift_up(h, i, ev);
  return INFSIM_OK;
}

/* The hole at the root goes down to a leaf along the smaller children,
 * one comparison a level, and the last item rises from there: it came
 * from the bottom, so it seldom rises far (Floyd's bottom-up pop; the
 * items are distinct in (step, req) but for stale copies of one request,
 * so the order of pops is that of any heap). */
void step_heap_pop(step_heap *h) {
  int32_t n = --h->count;
  step_event last = h->items[n];
  int32_t i = 0;
  for (int32_t child = 1; child < n; child = 2 * i + 1) {
    if (child + 1 < n && step_event_before(&h->items[child + 1], &h->items[child])) child++;
    h->items[i] = h->items[child];
    i = child;
  }
  sift_up(h, i, last);
}

void step_heap_free(step_heap *h) {
  free(h->items);
  h->items = NULL;
  h->count = h->capacity = 0;
}

infsim_status phase_set_add(phase_set *q, phase_member m, infsim_error *err) {
  if (q->count == q->capacity) {
    int32_t cap = q->capacity ? 2 * q->capacity : 16;
    phase_member *items = realloc(q->items, (size_t)cap * sizeof *items);
    if (items == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
    q->items = items;
    q->capacity = cap;
  }
  int32_t i = q->count++;
  while (i > 0 && q->items[i - 1].req > m.req) {
    q->items[i] = q->items[i - 1];
    i--;
  }
  assert(i == 0 || q->items[i - 1].req != m.req);
  q->items[i] = m;
  return INFSIM_OK;
}

phase_member *phase_set_find(const phase_set *q, int32_t req) {
  int32_t lo = 0, hi = q->count - 1; /* req is within [lo, hi] */
  while (lo < hi) {
    int32_t mid = lo + (hi - lo) / 2;
    if (q->items[mid].req < req) lo = mid + 1;
    else hi = mid;
  }
  assert(lo < q->count && q->items[lo].req == req);
  return &q->items[lo];
}

phase_member phase_set_remove(phase_set *q, int32_t req) {
  int32_t i = (int32_t)(phase_set_find(q, req) - q->items);
  phase_member m = q->items[i];
  for (; i + 1 < q->count; i++) q->items[i] = q->items[i + 1];
  q->count--;
  return m;
}

void phase_set_free(phase_set *q) {
  free(q->items);
  q->items = NULL;
  q->count = q->capacity = 0;
}
