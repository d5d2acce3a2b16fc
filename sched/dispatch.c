/*
** dispatch.c: round-robin and least-loaded dispatch (see dispatch.h).
**
** Invariant (least-loaded; round-robin keeps only the loads): heap[pos[i]]
** == i for every instance i, and the heap is ordered by (load, id).
*/
#include "infsim/dispatch.h"

#include <stdlib.h>

struct infsim_dispatcher {
  infsim_dispatch_kind kind;
  int32_t n;
  int32_t next_rr;
  int64_t *load;
  int32_t *heap; /* instance ids */
  int32_t *pos;  /* position of each instance in heap */
};

static int less(const infsim_dispatcher *d, int32_t a, int32_t b) {
  if (d->load[a] != d->load[b]) return d->load[a] < d->load[b];
  return a < b;
}

static void swap_at(infsim_dispatcher *d, int32_t i, int32_t j) {
  int32_t a = d->heap[i], b = d->heap[j];
  d->heap[i] = b;
  d->heap[j] = a;
  d->pos[b] = i;
  d->pos[a] = j;
}

static void sift_up(infsim_dispatcher *d, int32_t i) {
  while (i > 0) {
    int32_t parent = (i - 1) / 2;
    if (!less(d, d->heap[i], d->heap[parent])) break;
    swap_at(d, i, parent);
    i = parent;
  }
}

static void sift_down(infsim_dispatcher *d, int32_t i) {
  for (;;) {
    int32_t best = i, l = 2 * i + 1, r = l + 1;
    if (l < d->n && less(d, d->heap[l], d->heap[best])) best = l;
    if (r < d->n && less(d, d->heap[r], d->heap[best])) best = r;
    if (best == i) return;
    swap_at(d, i, best);
    i = best;
  }
}

infsim_status infsim_dispatcher_new(infsim_dispatch_kind kind, int32_t instances, infsim_dispatcher **out, infsim_error *err) {
  infsim_dispatcher *d = calloc(1, sizeof *d);
  if (d == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  d->kind = kind;
  d->n = instances;
  d->load = calloc((size_t)instances, sizeof *d->load);
  d->heap = calloc((size_t)instances, sizeof *d->heap);
  d->pos = calloc((size_t)instances, sizeof *d->pos);
  if (d->load == NULL || d->heap == NULL || d->pos == NULL) {
    infsim_dispatcher_free(d);
    return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  }
  for (int32_t i = 0; i < instances; i++) d->heap[i] = d->pos[i] = i; /* all loads 0: ordered by id */
  *out = d;
  return INFSIM_OK;
}

void infsim_dispatcher_free(infsim_dispatcher *d) {
  if (d == NULL) return;
  free(d->load);
  free(d->heap);
  free(d->pos);
  free(d);
}

int32_t infsim_dispatcher_pick(infsim_dispatcher *d) {
  if (d->kind == INFSIM_DISPATCH_ROUND_ROBIN) {
    int32_t i = d->next_rr;
    d->next_rr = (i + 1) % d->n;
    return i;
  }
  return d->heap[0];
}

void infsim_dispatcher_set_load(infsim_dispatcher *d, int32_t instance, int64_t load) {
  int64_t old = d->load[instance];
  d->load[instance] = load;
  if (d->kind == INFSIM_DISPATCH_ROUND_ROBIN) return; /* its picks never read the heap */
  if (load < old) sift_up(d, d->pos[instance]);
  else if (load > old) sift_down(d, d->pos[instance]);
}
