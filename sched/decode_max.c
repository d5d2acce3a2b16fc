/*
** decode_max.c: the longest context among an instance's decoding requests.
**
** The MA decode's time follows the batch's longest request when it is
** much longer than the others (calib.h, layer_decode_long), so a batch's
** aggregates carry that context too. A decoding request's KV is
** kv0 + (step - step0): kv0 - step0 stays fixed while it decodes and every
** request grows by one token a step, so the order never changes and the
** longest is the largest kv0 - step0. Entries join a max-heap when a
** request joins decode and are dropped lazily, when found on top after
** their request has left (finished, preempted, stalled) or rejoined; the
** heap is rebuilt from the live entries when stale ones outnumber them,
** so it stays within a constant factor of the decoding requests.
*/
#include <assert.h>
#include <stdlib.h>

#include "sched_internal.h"

typedef struct decode_max_entry entry;

static bool entry_live(const infsim_sched *s, int32_t in_id, const entry *e) {
  if (sched_forgotten(s, e->req)) return false; /* finished long ago */
  const req_sched *r = rs_of(s, e->req);
  return r->decoding && s->rec[e->req].instance == in_id && r->step0 == e->step0 && r->kv0 - r->step0 == e->key;
}

static void sift_up(entry *h, int32_t i) {
  entry e = h[i];
  while (i > 0) {
    int32_t p = (i - 1) / 2;
    if (h[p].key >= e.key) break;
    h[i] = h[p];
    i = p;
  }
  h[i] = e;
}

static void sift_down(entry *h, int32_t n, int32_t i) {
  entry e = h[i];
  for (;;) {
    int32_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && h[c + 1].key > h[c].key) c++;
    if (h[c].key <= e.key) break;
    h[i] = h[c];
    i = c;
  }
  h[i] = e;
}

static void drop_stale(const infsim_sched *s, instance *in) {
  int32_t n = 0;
  for (int32_t i = 0; i < in->longest_count; i++)
    if (entry_live(s, in->id, &in->longest[i])) in->longest[n++] = in->longest[i];
  in->longest_count = n;
  for (int32_t i = n / 2 - 1; i >= 0; i--) sift_down(in->longest, n, i);
}

infsim_status decode_max_add(const infsim_sched *s, instance *in, int32_t req, infsim_error *err) {
  if (in->longest_count > 2 * in->decode_n + 64) drop_stale(s, in);
  if (in->longest_count == in->longest_capacity) {
    int32_t cap = in->longest_capacity ? 2 * in->longest_capacity : 64;
    entry *h = realloc(in->longest, (size_t)cap * sizeof *h);
    if (h == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
    in->longest = h;
    in->longest_capacity = cap;
  }
  const req_sched *r = rs_of(s, req);
  in->longest[in->longest_count] = (entry){r->kv0 - r->step0, r->step0, req};
  sift_up(in->longest, in->longest_count++);
  return INFSIM_OK;
}

int64_t decode_max_kv(const infsim_sched *s, instance *in) {
  while (in->longest_count > 0 && !entry_live(s, in->id, &in->longest[0])) {
    in->longest[0] = in->longest[--in->longest_count];
    if (in->longest_count > 0) sift_down(in->longest, in->longest_count, 0);
  }
  return in->longest_count > 0 ? in->longest[0].key + in->step : 0;
}

void decode_max_free(instance *in) {
  free(in->longest);
  in->longest = NULL;
  in->longest_count = in->longest_capacity = 0;
}

void decode_max_check(const infsim_sched *s, const instance *in, int64_t kv_max) {
  int64_t best = INT64_MIN;
  for (int32_t i = 0; i < in->longest_count; i++) {
    assert(i == 0 || in->longest[(i - 1) / 2].key >= in->longest[i].key);
    if (entry_live(s, in->id, &in->longest[i]) && in->longest[i].key > best) best = in->longest[i].key;
  }
  /* Every decoding request has a live entry, so the largest is the longest. */
  assert(in->decode_n == 0 ? best == INT64_MIN : best + in->step == kv_max);
  (void)best;
  (void)kv_max;
}
