/*
** instance.c: one model replica's scheduler, with vLLM semantics.
**
** At every batch boundary the scheduler (1) applies step events that fall
** due: finishes free their blocks, block boundaries take one more KV block,
** preempting a victim (the policy's, else the latest-arrived running
** request) when none is free; (2) admits work FCFS, swapped requests before
** waiting ones, allocating each prompt's blocks on admission (as vLLM's
** block manager does); (3) forms the batch: every decoding request plus
** prefill chunks up to max_batched_tokens (chunked prefill), or a
** prefill-only batch when new prompts were admitted (vLLM's prefill-first
** scheduling without chunking); (4) offers it to the executor with the
** number of identical decode steps that may follow. It never prices: the
** executor answers when the batch ends.
**
** Invariants (checked after every event in debug builds):
**  - each running request holds at least the blocks its KV fills;
**  - decode_n and kv_sum equal the count and KV sum of decoding requests;
**  - the KV manager's own invariants (kv.h).
**
** No livelock: a request is rejected on arrival if it could not complete
** even alone, and preemption takes the latest-arrived request, so the
** earliest-arrived running request always makes progress.
*/
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "infsim/grow.h"
#include "sched_internal.h"

/* The epoch of a finish event whose request left decode other than by
 * that finish (preempted, stalled: leave_decode marks it); no request's
 * epoch reaches it. */
static const uint32_t FINISH_LEFT = UINT32_MAX;

#ifndef NDEBUG
/* A finish event is stale when its request left decode other than by
 * that finish: its epoch has moved on since (or it is done). */
static bool finish_stale(const infsim_sched *s, const step_event *ev) {
  return sched_forgotten(s, ev->req) || ev->epoch != rs_of(s, ev->req)->epoch;
}
#endif

/* The first live finish (stale ones are dropped), or NULL. Stale events
 * are marked (FINISH_LEFT), so the top's request's state, a cache line
 * elsewhere, is not read for it (twice a batch). */
static const step_event *heap_top(const infsim_sched *s, step_heap *h) {
  while (h->count > 0 && h->items[0].epoch == FINISH_LEFT) step_heap_pop(h);
  assert(h->count == 0 || !finish_stale(s, &h->items[0]));
  (void)s;
  return h->count > 0 ? &h->items[0] : NULL;
}

/* ---- request bookkeeping ------------------------------------------------- */

/* How many phase sets an instance keeps (set by instance_init): the
 * largest power of two up to 16 that divides block_tokens (16 for every
 * allowed block size), so a request's boundaries, block_tokens steps
 * apart, stay in one set. */
static int64_t phase_count(const infsim_sched *s) { return s->n_phases; }

static int64_t blocks_for(const infsim_sched *s, int64_t tokens) {
  return (tokens + s->p.block_tokens - 1) / s->p.block_tokens;
}

static int64_t free_blocks(const infsim_sched *s, const instance *in) { return infsim_kv_free_blocks(s->kv, in->id); }

static int64_t kv_now(const instance *in, const req_sched *r) { return r->kv0 + (in->step - r->step0); }

/* The step of decoding request q's next block boundary: its KV, kv0 +
 * (step - step0), fills the blocks it holds then (join_decode; each
 * boundary adds a block). Its phase set keeps the same step with it. */
static int64_t boundary_of(const infsim_sched *s, const req_sched *r, int32_t q) {
  return r->step0 - r->kv0 + infsim_kv_blocks(s->kv, q) * s->p.block_tokens;
}

int64_t instance_next_boundary(const infsim_sched *s, int32_t req) { return boundary_of(s, rs_of(s, req), req); }

/* The phase set of decoding request q: its boundaries are block_tokens
 * steps apart, a multiple of the phase count, so all have the phase of
 * step0 - kv0, which stays fixed while it decodes. */
static phase_set *phase_of(const infsim_sched *s, const instance *in, const req_sched *r) {
  return &in->phases[(r->step0 - r->kv0) & (phase_count(s) - 1)];
}

/* A member's next boundary: a regular member's is its set's. */
static int64_t member_boundary(const phase_set *set, const phase_member *e) {
  return e->regular ? set->next : e->boundary;
}

/* Growing member e becomes regular where its next boundary is the set's
 * regular members' (or there are none): the step walks then count it
 * with them, without reading it. */
static void try_regular(phase_set *set, phase_member *e) {
  assert(!e->regular);
  if (!e->grows || (set->regular > 0 && e->boundary != set->next)) return;
  if (set->regular == 0) set->next = e->boundary;
  e->regular = true;
  set->regular++;
}

/* Decoding request q's KV table grows by itself from its boundary at
 * step `next` on (infsim_kv_grow_begin: the step walks then count its
 * blocks in the pool only, and its table catches up when read); false
 * where the KV manager leaves that boundary to the walk. Its last
 * possible boundary is the step before its finish. */
static bool grow_until(const infsim_sched *s, int32_t q, int64_t next, int64_t finish) {
  return infsim_kv_grow_begin(s->kv, q, next, s->p.block_tokens, finish - 1);
}

static bool grow_from(const infsim_sched *s, const req_sched *r, int32_t q, int64_t next) {
  return grow_until(s, q, next, r->step0 + (s->rec[q].output_tokens - r->generated0));
}

static int64_t generated_now(const instance *in, const req_sched *r) {
  return r->decoding ? r->generated0 + (in->step - r->step0) : r->generated0;
}

static void running_add(infsim_sched *s, instance *in, int32_t req) {
  rs_of(s, req)->run_slot = in->running_count;
  in->running[in->running_count++] = req;
  if (in->running_count > in->running_peak) in->running_peak = in->running_count;
  s->rec[req].state = INFSIM_REQ_RUNNING;
}

static void running_remove(infsim_sched *s, instance *in, int32_t req) {
  int32_t slot = rs_of(s, req)->run_slot;
  int32_t last = in->running[--in->running_count];
  in->running[slot] = last;
  rs_of(s, last)->run_slot = slot;
  rs_of(s, req)->run_slot = -1;
}

/* A request whose prefill just completed (or that was swapped back in)
 * starts decoding at the current step: schedule its finish and its first
 * KV block boundary. */
infsim_status join_decode(infsim_sched *s, instance *in, int32_t req, int64_t kv_tokens, infsim_error *err) {
  req_sched *r = rs_of(s, req);
  r->decoding = true;
  if (infsim_kv_foreign_blocks(s->kv, req) > 0) in->decode_gen++; /* a decode run's remote holders change */
  r->kv0 = kv_tokens;
  r->step0 = in->step;
  in->decode_n++;
  in->kv_sum += kv_tokens;
  if (s->p.longest_context) {
    infsim_status added = decode_max_add(s, in, req, err);
    if (added != INFSIM_OK) return added;
  }
  int64_t finish_step = r->step0 + (s->rec[req].output_tokens - r->generated0);
  assert(r->epoch != FINISH_LEFT);
  infsim_status st = step_heap_push(&in->finishes, (step_event){finish_step, req, r->epoch}, err);
  if (st != INFSIM_OK) return st;
  /* Before decode step s+1 the KV grows from kv(s) to kv(s)+1 tokens: a new
   * block is needed once kv(s) fills the blocks held. A boundary at or
   * after the finish never comes (the request is gone by then). */
  int64_t boundary = r->step0 + infsim_kv_blocks(s->kv, req) * s->p.block_tokens - kv_tokens;
  assert(boundary >= r->step0 && boundary == boundary_of(s, r, req));
  if (boundary < in->boundary_from) in->boundary_from = boundary; /* due at this very step */
  int64_t phase = boundary & (phase_count(s) - 1);
  in->phase_mask |= UINT32_C(1) << phase;
  if (in->decode_n > in->phase_peak) in->phase_peak = (int32_t)in->decode_n; /* every decoding request is in a set */
  phase_set *set = &in->phases[phase];
  phase_member m = {boundary, req, grow_until(s, req, boundary, finish_step), false};
  try_regular(set, &m); /* counted before it is in the set: a failure to add it ends the run */
  return phase_set_add(set, m, err);
}

/* leave_decode for a request whose finish event has just been popped:
 * its table, released next (finish_request), stops growing there. */
static void leave_decode_finished(const infsim_sched *s, instance *in, int32_t req) {
  req_sched *r = rs_of(s, req);
  assert(r->decoding);
  in->decode_n--;
  in->kv_sum -= kv_now(in, r);
  r->decoding = false;
  if (infsim_kv_foreign_blocks(s->kv, req) > 0) in->decode_gen++;
  phase_set *set = phase_of(s, in, r);
  set->regular -= phase_set_remove(set, req).regular;
  if (set->count == 0) in->phase_mask &= ~(UINT32_C(1) << (set - in->phases));
}

void leave_decode(const infsim_sched *s, instance *in, int32_t req) {
  uint32_t epoch = rs_of(s, req)->epoch;
  leave_decode_finished(s, in, req);
  infsim_kv_grow_end(s->kv, req); /* its table as of the last step done */
  /* Its finish event, still in the heap, is stale: marked where it is
   * (the epoch is not part of the heap's order). Rare: preemptions and
   * stalls. */
  step_heap *h = &in->finishes;
  int32_t i = 0;
  while (i < h->count && !(h->items[i].req == req && h->items[i].epoch == epoch)) i++;
  assert(i < h->count);
  if (i < h->count) h->items[i].epoch = FINISH_LEFT;
}

/* req's KV at other instances is about to go: their guest work changes
 * from their next decode step on, as one step at a time would see it. */
static void touch_holders(infsim_sched *s, int32_t req) {
  if (infsim_kv_foreign_blocks(s->kv, req) == 0) return;
  int32_t pools[INFSIM_KV_MAX_HOLDINGS];
  int64_t blocks[INFSIM_KV_MAX_HOLDINGS];
  int32_t nh = infsim_kv_holdings(s->kv, req, pools, blocks, INFSIM_KV_MAX_HOLDINGS);
  for (int32_t i = 0; i < nh && i < INFSIM_KV_MAX_HOLDINGS; i++)
    if (pools[i] < s->n_instances) infsim_sched_touch(s, pools[i], s->now_ns);
}

static void finish_request(infsim_sched *s, instance *in, int32_t req) {
  req_sched *r = rs_of(s, req);
  infsim_request_record *rec = &s->rec[req];
  if (r->decoding) leave_decode_finished(s, in, req); /* its finish, just popped (apply_step_events) */
  running_remove(s, in, req);
  touch_holders(s, req);
  infsim_kv_release(s->kv, req);
  r->epoch++;
  rec->state = INFSIM_REQ_FINISHED;
  rec->finish_ns = s->now_ns;
  int64_t ctx = rec->prompt_tokens + rec->output_tokens;
  if (ctx > s->counters.max_context_tokens) s->counters.max_context_tokens = ctx;
  sched_request_done(s, req);
  sched_counts_changed(s, 0, -1);
  sched_load_changed(s, in);
}

/* The policy's victim, else the running request that arrived last (vLLM's
 * lowest priority). */
int32_t pick_victim(infsim_sched *s, const instance *in) {
  if (s->policy->pick_victim != NULL) {
    int64_t v = s->policy->pick_victim(s->policy_self, in->id);
    if (v >= 0) return (int32_t)v;
  }
  int32_t victim = -1;
  for (int32_t i = 0; i < in->running_count; i++) {
    int32_t q = in->running[i];
    if (victim < 0 || s->rec[q].arrival_ns > s->rec[victim].arrival_ns ||
        (s->rec[q].arrival_ns == s->rec[victim].arrival_ns && q > victim))
      victim = q;
  }
  return victim;
}

infsim_status preempt(infsim_sched *s, instance *in, int32_t req, infsim_error *err) {
  infsim_status st = preempt_as(s, in, req, true, true, err);
  if (st == INFSIM_OK) instance_loss_reject_if_too_large(s, in, req); /* after a loss: it may never fit again */
  return st;
}

infsim_status preempt_as(infsim_sched *s, instance *in, int32_t req, bool may_swap, bool counted, infsim_error *err) {
  req_sched *r = rs_of(s, req);
  infsim_request_record *rec = &s->rec[req];
  bool was_decoding = r->decoding, was_stalled = r->stalled;
  int64_t kv = was_decoding ? kv_now(in, r) : was_stalled ? r->kv0 : 0;
  r->generated0 = generated_now(in, r);
  if (was_decoding) leave_decode(s, in, req);
  else if (was_stalled) boundary_wait_forget(s, in, req);
  else deque_remove(&in->prefilling, req);
  running_remove(s, in, req);
  r->epoch++;
  rec->preemptions += counted;
  s->counters.preemptions += counted;
  sched_counts_changed(s, 1, -1);
  int64_t blocks = infsim_kv_blocks(s->kv, req);
  touch_holders(s, req);
  int32_t host = in->id / s->p.instances_per_host; /* its node's host memory */
  if ((was_decoding || was_stalled) && may_swap && s->p.preemption == INFSIM_PREEMPT_SWAP &&
      blocks <= infsim_kv_host_free_blocks(s->kv, host) && in->swap_blocks + blocks <= s->p.host_blocks_per_instance &&
      blocks < s->p.gpu_blocks_per_instance) { /* a request larger than its GPU could never swap back in */
    /* Swap out: the KV goes to host memory over PCIe; the request keeps its progress. */
    infsim_status st = infsim_kv_swap_out(s->kv, req, host, err);
    if (st != INFSIM_OK) return st;
    in->swap_blocks += blocks;
    in->swap_out_bytes += blocks * s->p.block_bytes;
    r->kv0 = kv;
    rec->state = INFSIM_REQ_SWAPPED;
    if (s->observer.preempted != NULL) s->observer.preempted(s->observer.self, in->id, req, s->now_ns, true);
    return deque_push_back(&in->swapped, req, err);
  }
  /* Recompute: drop the KV; the prompt and every token generated so far are
   * prefilled again, and that prefill yields the next token. */
  infsim_kv_release(s->kv, req);
  if (s->policy->kv_dropped != NULL) s->policy->kv_dropped(s->policy_self, in->id, req, s->now_ns);
  if (s->observer.preempted != NULL) s->observer.preempted(s->observer.self, in->id, req, s->now_ns, false);
  r->prefill_target = rec->prompt_tokens + r->generated0;
  r->prefilled = 0;
  rec->state = INFSIM_REQ_WAITING;
  return deque_push_front(&in->waiting, req, err);
}

/* ---- the scheduler ------------------------------------------------------- */

/* Takes the block of req's boundary at its step (due now), its next one
 * block_tokens steps later. */
static infsim_status take_boundary_block(infsim_sched *s, instance *in, int32_t req, infsim_error *err) {
  const req_sched *r = rs_of(s, req);
  phase_set *set = phase_of(s, in, r);
  phase_member *e = phase_set_find(set, req);
  assert(!e->grows && !e->regular);
  e->boundary += s->p.block_tokens;
  infsim_status st = infsim_kv_alloc(s->kv, req, in->id, 1, err);
  if (st != INFSIM_OK) return st;
  e->grows = grow_from(s, r, req, e->boundary);
  try_regular(set, e);
  return INFSIM_OK;
}

/* The block boundaries at step t of a set with more members than free
 * blocks, in request order, preempting latest arrivals when no block is
 * free (as one boundary at a time would). Rare: kept out of the hot
 * path. */
__attribute__((noinline, cold)) static infsim_status apply_boundaries_short(infsim_sched *s, instance *in, int64_t t,
                                                                          bool *preempted, infsim_error *err) {
  infsim_status st;
  phase_set *set = &in->phases[t & (phase_count(s) - 1)];
  /* Preemption may take members out of the set: walk a copy. */
  if (set->count > s->due_capacity) {
    step_event *due = realloc(s->due, (size_t)set->count * sizeof *due);
    if (due == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
    s->due = due;
    s->due_capacity = set->count;
  }
  if (set->regular > 0 && set->next == t) {
    /* all due now: each with its own boundary, as the others */
    for (int32_t i = 0; i < set->count; i++)
      if (set->items[i].regular) {
        set->items[i].boundary = t;
        set->items[i].regular = false;
      }
    set->regular = 0;
  }
  int32_t n = 0;
  for (int32_t i = 0; i < set->count; i++) {
    int32_t req = set->items[i].req;
    if (set->items[i].regular || set->items[i].boundary != t) continue;
    s->due[n++] = (step_event){t, req, rs_of(s, req)->epoch};
    /* each takes its block here, one by one: none grows by itself */
    if (set->items[i].grows) infsim_kv_grow_end(s->kv, req);
    set->items[i].grows = false;
  }
  for (int32_t i = 0; i < n; i++) {
    step_event ev = s->due[i];
    /* A victim of an earlier due request's shortage is gone: it must not
     * preempt others (nor, with nobody left running, a victim of -1). */
    if (rs_of(s, ev.req)->epoch != ev.epoch) continue;
    /* Take one block, preempting latest arrivals if none is free, unless
     * the policy is getting blocks and the request may wait for them. */
    bool stall = false;
    while (free_blocks(s, in) < 1) {
      infsim_short_action act = INFSIM_SHORT_PREEMPT;
      if (s->policy->short_of_blocks != NULL)
        act = s->policy->short_of_blocks(s->policy_self, in->id, ev.req, 1, s->now_ns);
      if (act == INFSIM_SHORT_WAIT && ev.step == in->step && rs_of(s, ev.req)->epoch == ev.epoch) {
        stall = true;
        break;
      }
      int32_t victim = pick_victim(s, in);
      *preempted = true;
      if ((st = preempt(s, in, victim, err)) != INFSIM_OK) return st;
      if (victim == ev.req) break;
    }
    if (rs_of(s, ev.req)->epoch != ev.epoch) continue; /* the requester itself was preempted */
    if (stall) {
      if ((st = boundary_wait_stall(s, in, ev.req, err)) != INFSIM_OK) return st;
      continue;
    }
    if ((st = take_boundary_block(s, in, ev.req, err)) != INFSIM_OK) return st;
  }
  return INFSIM_OK;
}

/* The block boundaries at step t, in request order. */
static infsim_status apply_boundaries_at(infsim_sched *s, instance *in, int64_t t, bool *preempted,
                                         infsim_error *err) {
  phase_set *set = &in->phases[t & (phase_count(s) - 1)];
  int32_t n_set = set->count;
  if (n_set > free_blocks(s, in)) return apply_boundaries_short(s, in, t, preempted, err);
  /* Enough blocks for every one: nobody is preempted, the set stays put.
   * A member whose table grows by itself is only counted (the pool
   * takes them all at once, and each table catches up when next read:
   * a chunked prefill's one-step batches meet a few boundaries a step,
   * millions an hour, and the table's line was the walk's cost); any
   * other takes its block as it is met, counted in its table, and grows
   * from its next boundary on. */
  int64_t counted = 0, grown = 0;
  if (set->regular > 0 && set->next == t) {
    grown = set->regular; /* the regular members, without a read of any */
    set->next += s->p.block_tokens;
  }
  for (int32_t i = 0; i < n_set && set->regular < n_set; i++) {
    phase_member *e = &set->items[i];
    if (e->regular || e->boundary != t) continue; /* a first boundary further on */
    e->boundary += s->p.block_tokens;
    if (e->grows) {
      grown++;
    } else {
      int32_t req = e->req;
      if (infsim_kv_step_table(s->kv, req, in->id)) {
        counted++;
      } else {
        infsim_kv_grow_pool(s->kv, in->id, t, grown);
        infsim_kv_step_pool(s->kv, in->id, counted);
        counted = grown = 0;
        infsim_status st = infsim_kv_alloc_one(s->kv, req, in->id, err);
        if (st != INFSIM_OK) return st;
      }
      e->grows = grow_from(s, rs_of(s, req), req, e->boundary);
    }
    try_regular(set, e);
  }
  infsim_kv_grow_pool(s->kv, in->id, t, grown);
  infsim_kv_step_pool(s->kv, in->id, counted);
  return INFSIM_OK;
}

/* Boundaries of a decoding request whose next one is at step `next`, at steps up to `last`. */
static int64_t boundaries_through(const infsim_sched *s, int64_t next, int64_t last) {
  return next <= last ? 1 + (last - next) / s->p.block_tokens : 0;
}

/* Every boundary at steps [from, to] when the free blocks cover them all
 * (no preemption: the order does not matter), each request's at once.
 * False, nothing done, when they do not. */
static bool apply_boundaries_bulk(infsim_sched *s, instance *in, int64_t to, infsim_status *st, infsim_error *err) {
  int64_t total = 0;
  for (uint32_t m = in->phase_mask; m != 0; m &= m - 1) {
    const phase_set *set = &in->phases[__builtin_ctz(m)];
    if (set->regular > 0) total += set->regular * boundaries_through(s, set->next, to);
    for (int32_t i = 0; i < set->count && set->regular < set->count; i++)
      if (!set->items[i].regular) total += boundaries_through(s, set->items[i].boundary, to);
  }
  if (total > free_blocks(s, in)) return false;
  *st = INFSIM_OK;
  int64_t grown = 0; /* blocks of tables that grow by themselves, for the pool */
  for (uint32_t m = in->phase_mask; m != 0 && *st == INFSIM_OK; m &= m - 1) {
    phase_set *set = &in->phases[__builtin_ctz(m)];
    if (set->regular > 0) {
      int64_t n = boundaries_through(s, set->next, to);
      grown += n * set->regular;
      set->next += n * s->p.block_tokens;
    }
    int32_t irregular = set->count - set->regular;
    for (int32_t i = 0; i < set->count && irregular > 0 && *st == INFSIM_OK; i++) {
      phase_member *e = &set->items[i];
      if (e->regular) continue;
      irregular--;
      int64_t n = boundaries_through(s, e->boundary, to);
      if (n == 0) continue;
      e->boundary += n * s->p.block_tokens;
      if (e->grows) {
        grown += n;
      } else {
        infsim_kv_grow_pool(s->kv, in->id, to, grown);
        grown = 0;
        *st = infsim_kv_alloc(s->kv, e->req, in->id, n, err);
        if (*st == INFSIM_OK) e->grows = grow_from(s, rs_of(s, e->req), e->req, e->boundary);
      }
      if (*st == INFSIM_OK) try_regular(set, e);
    }
  }
  if (*st == INFSIM_OK) infsim_kv_grow_pool(s->kv, in->id, to, grown);
  return true;
}

/* Applies the step events due by the current step: finishes (due exactly
 * now: a multi-step batch never runs past one), then block boundaries, in
 * step order (a bulk batch may have passed several), each step's in
 * request order. Sets *preempted if any request had to give up its memory. */
static infsim_status apply_step_events(infsim_sched *s, instance *in, bool *preempted, infsim_error *err) {
  infsim_status st;
  const step_event *top;
  while ((top = heap_top(s, &in->finishes)) != NULL && top->step <= in->step) {
    assert(top->step == in->step);
    int32_t req = top->req;
    step_heap_pop(&in->finishes);
    finish_request(s, in, req);
  }
  int64_t from = in->boundary_from, to = in->step;
  in->boundary_from = to + 1;
  /* A long stretch: one pass over the decoding requests, unless blocks run short. */
  if (to - from >= phase_count(s) && apply_boundaries_bulk(s, in, to, &st, err)) return st;
  for (int64_t t = from; t <= to; t++)
    if ((in->phase_mask >> (t & (phase_count(s) - 1)) & 1) &&
        (st = apply_boundaries_at(s, in, t, preempted, err)) != INFSIM_OK)
      return st;
  return INFSIM_OK;
}

/* True when admission must stop for want of `need` blocks (the policy may
 * be getting them; it is told either way). */
static bool short_of(infsim_sched *s, instance *in, int32_t req, int64_t need) {
  if (need <= free_blocks(s, in)) return false;
  if (s->policy->short_of_blocks != NULL)
    (void)s->policy->short_of_blocks(s->policy_self, in->id, req, need - free_blocks(s, in), s->now_ns);
  return true;
}

/* Admits swapped, then waiting requests, FCFS, while slots, tokens and
 * blocks last. `token_budget` is what prefill may still use this iteration. */
static infsim_status admit(infsim_sched *s, instance *in, int64_t token_budget, infsim_error *err) {
  infsim_status st;
  while (in->swapped.count > 0 && in->running_count < s->p.max_batch_size) {
    int32_t req = deque_front(&in->swapped);
    req_sched *r = rs_of(s, req);
    /* Back in with room for the next token: its first boundary lies ahead,
     * so no block is due before the iteration that starts now. */
    int64_t held = infsim_kv_blocks(s->kv, req);
    int64_t need = blocks_for(s, r->kv0 + 1);
    if (short_of(s, in, req, need)) return INFSIM_OK; /* FCFS: nobody overtakes a stuck swap-in */
    deque_pop_front(&in->swapped);
    in->swap_blocks -= held;
    in->swap_in_bytes += held * s->p.block_bytes;
    if (held > need) infsim_kv_release_tail(s->kv, req, held - need);
    if ((st = infsim_kv_swap_in(s->kv, req, in->id, err)) != INFSIM_OK) return st;
    if (need > held && (st = infsim_kv_alloc(s->kv, req, in->id, need - held, err)) != INFSIM_OK) return st;
    running_add(s, in, req);
    sched_counts_changed(s, -1, 1);
    if ((st = join_decode(s, in, req, r->kv0, err)) != INFSIM_OK) return st;
  }
  if (in->swapped.count > 0) return INFSIM_OK;
  int64_t queued_tokens = 0; /* prefill tokens already claimed by admitted prompts */
  for (int32_t i = 0; i < in->prefilling.count; i++) {
    const req_sched *r = rs_of(s, deque_at(&in->prefilling, i));
    queued_tokens += r->prefill_target - r->prefilled;
  }
  while (in->waiting.count > 0 && in->running_count < s->p.max_batch_size) {
    int32_t req = deque_front(&in->waiting);
    req_sched *r = rs_of(s, req);
    /* Blocks a borrowing policy already placed for it elsewhere count. */
    int64_t need = blocks_for(s, r->prefill_target) - infsim_kv_blocks(s->kv, req);
    if (need < 0) need = 0;
    if (short_of(s, in, req, need)) break;
    if (!s->p.chunked_prefill) {
      /* Whole prompts only; a recomputed request longer than the budget
       * still goes alone, or it could never run again. */
      bool alone = in->prefilling.count == 0;
      if (queued_tokens + r->prefill_target > token_budget && !alone) break;
    } else if (queued_tokens >= token_budget && in->prefilling.count > 0) {
      break; /* the chunk budget is spoken for: admit next iteration */
    }
    deque_pop_front(&in->waiting);
    if ((st = infsim_kv_alloc(s->kv, req, in->id, need, err)) != INFSIM_OK) return st;
    queued_tokens += r->prefill_target;
    running_add(s, in, req);
    sched_counts_changed(s, -1, 1);
    if ((st = deque_push_back(&in->prefilling, req, err)) != INFSIM_OK) return st;
  }
  return INFSIM_OK;
}

/* The step of the next block boundary after the current step (every one
 * up to it is applied), INT64_MAX when none. With a set per phase
 * (block_tokens 16), the set of each step ahead in turn: its first member
 * is almost always due then; a first boundary further on (a request
 * holding more blocks than its KV fills) is found by the full scan, as
 * are all with larger blocks. A boundary at or after its
 * request's finish may be returned: it lies beyond the nearest finish,
 * which limits the batch anyway. */
static int64_t next_boundary(const infsim_sched *s, const instance *in) {
  int64_t np = phase_count(s);
  for (int64_t t = in->step + 1; np == s->p.block_tokens && t <= in->step + np; t++) {
    if (!(in->phase_mask >> (t & (np - 1)) & 1)) continue;
    const phase_set *set = &in->phases[t & (np - 1)];
    if (set->regular > 0 && set->next == t) return t;
    for (int32_t i = 0; i < set->count && set->regular < set->count; i++)
      if (!set->items[i].regular && set->items[i].boundary == t) return t;
  }
  int64_t next = INT64_MAX;
  for (int64_t p = 0; p < np; p++)
    for (int32_t i = 0; i < in->phases[p].count; i++) {
      int64_t b = member_boundary(&in->phases[p], &in->phases[p].items[i]);
      assert(b > in->step);
      if (b < next) next = b;
    }
  return next;
}

/* How many identical-shape decode iterations may run as one batch: up to
 * the next finish, and past block boundaries only when the free blocks
 * cover every boundary the run could meet (each decoding request needs at
 * most ceil(k / block_tokens) blocks in k steps). */
static int64_t decode_steps(const infsim_sched *s, instance *in) {
  const step_event *fin = heap_top(s, &in->finishes);
  assert(fin != NULL); /* every decoding request has a pending finish */
  int64_t k = fin->step - in->step;
  assert(k >= 1);
  if (s->max_steps > 0 && k > s->max_steps) k = s->max_steps;
  int64_t worst_blocks = in->decode_n * ((k + s->p.block_tokens - 1) / s->p.block_tokens);
  if (worst_blocks > free_blocks(s, in)) {
    int64_t b = next_boundary(s, in);
    if (b - in->step < k) k = b - in->step;
    assert(k >= 1);
  }
  return k;
}

/* The batch's entries, for executors that run real kernels: prefill
 * chunks, then every decoding request. O(batch), only when asked. */
static infsim_status fill_entries(infsim_sched *s, const instance *in, bool decode, infsim_batch *b,
                                  infsim_error *err) {
  int32_t need = in->chunk_count + (decode ? in->running_count : 0);
  if (need > s->entry_capacity) {
    infsim_batch_entry *e = realloc(s->entries, (size_t)need * sizeof *e);
    if (e == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
    s->entries = e;
    s->entry_capacity = need;
  }
  int32_t n = 0;
  for (int32_t i = 0; i < in->chunk_count; i++) {
    const req_sched *r = rs_of(s, in->chunks[i].req);
    s->entries[n++] = (infsim_batch_entry){in->chunks[i].req, in->chunks[i].chunk_tokens, r->prefilled};
  }
  if (decode)
    for (int32_t i = 0; i < in->running_count; i++) {
      const req_sched *r = rs_of(s, in->running[i]);
      if (r->decoding) s->entries[n++] = (infsim_batch_entry){in->running[i], 1, kv_now(in, r)};
    }
  b->entries = s->entries;
  b->entry_count = n;
  return INFSIM_OK;
}

/* Instance j's new entry at the end of the batch's list; NULL when out
 * of memory. */
static infsim_batch_holder *holder_add(infsim_sched *s, infsim_batch *b, int32_t j, infsim_error *err) {
  if (j >= s->holder_at_capacity) {
    int32_t cap = s->holder_at_capacity ? 2 * s->holder_at_capacity : 64;
    while (cap <= j) cap *= 2;
    int32_t *at = realloc(s->holder_at, (size_t)cap * sizeof *at);
    if (at == NULL) {
      infsim_fail(err, INFSIM_ENOMEM, "out of memory");
      return NULL;
    }
    for (int32_t i = s->holder_at_capacity; i < cap; i++) at[i] = -1;
    s->holder_at = at;
    s->holder_at_capacity = cap;
  }
  if (b->holder_count == s->holder_capacity) {
    int32_t cap = s->holder_capacity ? 2 * s->holder_capacity : 8;
    infsim_batch_holder *h = realloc(s->holders, (size_t)cap * sizeof *h);
    if (h == NULL) {
      infsim_fail(err, INFSIM_ENOMEM, "out of memory");
      return NULL;
    }
    s->holders = h;
    s->holder_capacity = cap;
  }
  s->holder_at[j] = b->holder_count;
  infsim_batch_holder *e = &s->holders[b->holder_count++];
  *e = (infsim_batch_holder){.holder = j};
  b->holders = s->holders;
  return e;
}

/* The holder entry of instance j in the batch's list (added if new).
 * O(1): holder_at[j] is where j was last put in the list; it is j's entry
 * in this batch exactly when it is within the list and names j (a holder
 * is in the list at most once), so nothing resets it between batches. A
 * prompt chunk of a long split request looks its holders up once per run
 * of its block table: millions of times an hour on a fragmented table. */
static inline infsim_batch_holder *holder_entry(infsim_sched *s, infsim_batch *b, int32_t j, infsim_error *err) {
  assert(j >= 0);
  if (j < s->holder_at_capacity) {
    int32_t i = s->holder_at[j];
    if (i >= 0 && i < b->holder_count && s->holders[i].holder == j) return &s->holders[i];
  }
  return holder_add(s, b, j, err);
}

/* Run `run` (of `tokens` tokens, at holder j) joins the memo; false when
 * out of memory (the memo is then dropped: it is only a shortcut). */
static bool memo_add(split_memo *m, const infsim_kv_run *run, int32_t j, int64_t tokens, int32_t owner) {
  if (m->runs == m->copy_capacity) {
    int64_t cap = m->copy_capacity ? 2 * m->copy_capacity : 64;
    infsim_kv_run *c = realloc(m->copy, (size_t)cap * sizeof *c);
    if (c == NULL) return false;
    m->copy = c;
    m->copy_capacity = cap;
  }
  m->copy[m->runs++] = *run;
  m->blocks += run->blocks;
  if (j == owner) return true;
  int32_t h = 0;
  while (h < m->holders && m->holder[h] != j) h++;
  if (h == m->holders) {
    if (m->holders == m->holder_capacity) {
      int32_t cap = m->holder_capacity ? 2 * m->holder_capacity : 8;
      int32_t *hl = realloc(m->holder, (size_t)cap * sizeof *hl);
      if (hl == NULL) return false;
      m->holder = hl;
      int64_t *tk = realloc(m->tokens, (size_t)cap * sizeof *tk);
      if (tk == NULL) return false;
      m->tokens = tk;
      m->holder_capacity = cap;
    }
    m->holder[m->holders] = j;
    m->tokens[m->holders++] = 0;
  }
  m->tokens[h] += tokens;
  return true;
}

#ifndef NDEBUG
/* The memo against its reference: the holders of runs [0, m->runs) of
 * the table as it is now, in first-appearance order, and their tokens. */
static void memo_check(const infsim_sched *s, const split_memo *m, const infsim_kv_run *runs, int32_t owner) {
  int32_t holders = 0;
  int64_t blocks = 0;
  for (int64_t i = 0; i < m->runs; i++) {
    blocks += runs[i].blocks;
    int32_t j = infsim_kv_holder_of(s->kv, runs[i].first);
    if (j == owner) continue;
    int32_t h = 0;
    while (h < holders && m->holder[h] != j) h++;
    assert(h < m->holders && m->holder[h] == j); /* first seen in the memo's order */
    if (h == holders) holders++;
  }
  assert(holders == m->holders && blocks == m->blocks);
  for (int32_t h = 0; h < m->holders; h++) {
    int64_t tokens = 0;
    for (int64_t i = 0; i < m->runs; i++)
      if (infsim_kv_holder_of(s->kv, runs[i].first) == m->holder[h]) tokens += runs[i].blocks * s->p.block_tokens;
    assert(tokens == m->tokens[h]);
  }
}
#endif

/* A prompt chunk of a split request: its earlier KV and its new KV per
 * holder, from the block table (token order): O(runs it covers). The
 * runs wholly before the chunk count all their tokens as earlier KV at
 * their holder, so the instance keeps their sums per holder (in the order
 * the holders first appear: the batch's list takes them in that order)
 * with a copy of those runs; the next chunk of the same prompt, finding
 * the table's first runs as copied and still wholly before it, takes the
 * sums and reads only the runs after them. A 120K-token prompt's chunks
 * read a table of thousands of runs from its start each time otherwise. */
static infsim_status add_split_chunk(infsim_sched *s, instance *in, int32_t req, int64_t chunk,
                                     infsim_batch *b, infsim_error *err) {
  const req_sched *r = rs_of(s, req);
  int64_t n = 0;
  const infsim_kv_run *runs = infsim_kv_runs(s->kv, req, &n);
  int64_t bt = s->p.block_tokens, first = r->prefilled, end = r->prefilled + chunk;
  int32_t touched[INFSIM_KV_MAX_HOLDINGS]; /* holders this chunk reaches: its queries go there once */
  int32_t n_touched = 0;
  split_memo *m = &in->memo;
  bool memo = m->req == req && m->runs > 0 && m->runs <= n && m->blocks * bt <= first &&
              memcmp(m->copy, runs, (size_t)m->runs * sizeof *runs) == 0;
  if (!memo) {
    m->req = req;
    m->runs = m->blocks = 0;
    m->holders = 0;
  }
#ifndef NDEBUG
  memo_check(s, m, runs, in->id);
#endif
  for (int32_t h = 0; h < m->holders; h++) {
    infsim_batch_holder *e = holder_entry(s, b, m->holder[h], err);
    if (e == NULL) return INFSIM_ENOMEM;
    e->prefill_context_tokens += m->tokens[h];
    b->agg.prefill_attn_pairs -= chunk * m->tokens[h];
    if (n_touched < INFSIM_KV_MAX_HOLDINGS) {
      touched[n_touched++] = m->holder[h];
      e->prefill_tokens += chunk;
    }
  }
  bool growing = true; /* the runs so far are wholly before `end` and in the memo */
  /* One holder entry per run of the table (a run lies in one pool): the
   * sums below add up the same over any split of the blocks. */
  for (int64_t i = m->runs, blk = m->blocks; i < n && blk * bt < end; i++) {
    int32_t j = infsim_kv_holder_of(s->kv, runs[i].first);
    int64_t run = blk;
    blk += runs[i].blocks;
    if (growing && blk * bt <= end && !memo_add(m, &runs[i], j, runs[i].blocks * bt, in->id)) {
      m->runs = m->blocks = 0; /* out of memory for the memo: none */
      m->holders = 0;
      m->req = -1;
      growing = false;
    }
    growing &= blk * bt <= end;
    if (blk * bt > end) blk = (end + bt - 1) / bt; /* the blocks this chunk reaches */
    if (j == in->id) continue; /* host memory (the CPU tier) is a holder too */
    int64_t lo = run * bt, hi = blk * bt;
    int64_t before = (hi < first ? hi : first) - lo; /* earlier tokens in these blocks */
    int64_t from = lo > first ? lo : first, to = hi < end ? hi : end;
    int64_t written = to - from; /* this chunk's tokens in them */
    infsim_batch_holder *e = holder_entry(s, b, j, err);
    if (e == NULL) return INFSIM_ENOMEM;
    if (before > 0) {
      e->prefill_context_tokens += before;
      b->agg.prefill_attn_pairs -= chunk * before; /* those pairs are computed there */
    }
    if (written > 0) e->write_tokens += written;
    int32_t k = 0;
    while (k < n_touched && touched[k] != j) k++;
    if (k == n_touched && n_touched < INFSIM_KV_MAX_HOLDINGS) {
      touched[n_touched++] = j;
      e->prefill_tokens += chunk; /* counted once per chunk, not once per batch's chunks */
    }
  }
#ifndef NDEBUG
  memo_check(s, m, runs, in->id);
#endif
  return INFSIM_OK;
}

/* Request req's remote tokens (`remote`, before clipping) and holders
 * count in the batch: what add_remote adds to its totals. */
static void add_remote_totals(infsim_batch *b, int64_t remote, int64_t holders) {
  if (remote > b->agg.decode_context_tokens) remote = b->agg.decode_context_tokens;
  b->agg.remote_requests++;
  b->agg.remote_partials += holders;
  b->agg.remote_context_tokens += remote;
  b->agg.decode_context_tokens -= remote;
}

static bool remote_memo_reserve(remote_memo *m, int32_t holders, int32_t requests) {
  return infsim_grow((void **)&m->holders, &m->holder_capacity, (size_t)holders, sizeof *m->holders, 8) &&
         infsim_grow((void **)&m->per_request, &m->request_capacity, (size_t)requests, sizeof *m->per_request, 16);
}

/* A decode run with no prompt chunk whose split requests' holdings and
 * decoding are as at the memo's making: its holder entries and totals
 * from the memo (the entries copied, the totals replayed in order). */
static infsim_status add_remote_memo(infsim_sched *s, const remote_memo *m, infsim_batch *b, infsim_error *err) {
  /* An empty list with room for them all (the memo's holders are
   * distinct): copied at once, as the entries added one by one leave it
   * but for holder_at, which nothing reads before the next batch's list
   * (add_remote returns, and holder_entry trusts holder_at[j] only where
   * it names an entry for j in the batch's list, which entries added by
   * holder_add set). */
  bool room = b->holder_count == 0 && m->holder_count <= s->holder_capacity;
  if (room && m->holder_count > 0) {
    memcpy(s->holders, m->holders, (size_t)m->holder_count * sizeof *s->holders);
    b->holders = s->holders;
    b->holder_count = m->holder_count;
  }
  for (int32_t i = 0; i < m->holder_count && !room; i++) {
    infsim_batch_holder *e = holder_entry(s, b, m->holders[i].holder, err);
    if (e == NULL) return INFSIM_ENOMEM;
    *e = m->holders[i];
  }
  for (int32_t k = 0; k < m->requests; k++)
    add_remote_totals(b, m->per_request[k].remote_tokens, m->per_request[k].partials);
  return INFSIM_OK;
}

/* DistAttention's share of a batch: the instance's split requests in it
 * (KV partly at other instances) and the KV it holds for others. Only
 * split requests cost anything: O(split requests x holders); a decode
 * run with no prompt chunk takes them from the instance's remote memo
 * while its requests' holdings and decoding stay the same. */
static infsim_status add_remote(infsim_sched *s, instance *in, bool decode, infsim_batch *b, infsim_error *err) {
  infsim_kv_counts c = infsim_kv_counts_of(s->kv, in->id);
  b->agg.guest_requests = infsim_kv_guests(s->kv, in->id);
  b->agg.guest_context_tokens = c.lent * s->p.block_tokens;
  remote_memo *m = &in->remote;
  bool memo = decode && in->chunk_count == 0;
  uint64_t kv_gen = infsim_kv_split_generation(s->kv, in->id);
#ifndef INFSIM_CHECK_INVARIANTS
  if (memo && m->valid && m->kv_gen == kv_gen && m->decode_gen == in->decode_gen)
    return add_remote_memo(s, m, b, err);
#endif
#ifdef INFSIM_CHECK_INVARIANTS
  /* Checked builds build the batch afresh, then again from the memo where
   * it would have been used: the two must be the same (below). */
  infsim_batch_agg agg0 = b->agg;
  bool was_valid = memo && m->valid && m->kv_gen == kv_gen && m->decode_gen == in->decode_gen;
  remote_memo m_before = *m; /* its holders stay as they are until the end; its per-request list is copied */
  m_before.valid = false;
  m_before.per_request = malloc((size_t)(m->requests > 0 ? m->requests : 1) * sizeof *m_before.per_request);
  if (was_valid && m_before.per_request != NULL) {
    if (m->requests > 0) memcpy(m_before.per_request, m->per_request, (size_t)m->requests * sizeof *m->per_request);
    m_before.valid = true;
  }
#endif
  if (memo) {
    m->valid = false;
    m->requests = 0;
  }
  int64_t n_split = 0;
  const int64_t *split = infsim_kv_split_requests(s->kv, in->id, &n_split);
  int32_t pools[INFSIM_KV_MAX_HOLDINGS];
  int64_t blocks[INFSIM_KV_MAX_HOLDINGS];
  for (int64_t k = 0; k < n_split; k++) {
    int32_t req = (int32_t)split[k];
    const req_sched *r = rs_of(s, req);
    if (s->rec[req].state != INFSIM_REQ_RUNNING) continue;
    if (decode && r->decoding) {
      int32_t nh = infsim_kv_holdings(s->kv, req, pools, blocks, INFSIM_KV_MAX_HOLDINGS);
      if (nh > INFSIM_KV_MAX_HOLDINGS) nh = INFSIM_KV_MAX_HOLDINGS;
      int64_t remote_tokens = 0, holders = 0;
      for (int32_t i = 0; i < nh; i++) {
        infsim_batch_holder *e = holder_entry(s, b, pools[i], err);
        if (e == NULL) return INFSIM_ENOMEM;
        e->decode_requests++;
        e->decode_context_tokens += blocks[i] * s->p.block_tokens;
        remote_tokens += blocks[i] * s->p.block_tokens;
        holders++;
      }
      if (memo && remote_memo_reserve(m, 0, m->requests + 1)) {
        m->per_request[m->requests++] = (remote_request){remote_tokens, holders};
      } else {
        memo = false;
      }
      add_remote_totals(b, remote_tokens, holders);
      continue;
    }
    for (int32_t i = 0; i < in->chunk_count; i++)
      if (in->chunks[i].req == req) {
        infsim_status st = add_split_chunk(s, in, req, in->chunks[i].chunk_tokens, b, err);
        if (st != INFSIM_OK) return st;
      }
  }
#ifdef INFSIM_CHECK_INVARIANTS
  /* Where the memo would have been used (its entries from before this
   * batch: m->requests was reset above, so a copy is replayed), it gives
   * this batch exactly: the holder entries in order and every total. */
  if (was_valid && m_before.valid) {
    infsim_batch fresh = *b;
    infsim_batch_holder *kept = malloc((size_t)(b->holder_count > 0 ? b->holder_count : 1) * sizeof *kept);
    if (kept != NULL) {
      if (b->holder_count > 0) memcpy(kept, b->holders, (size_t)b->holder_count * sizeof *kept);
      b->holder_count = 0;
      b->agg = agg0;
      infsim_status st = add_remote_memo(s, &m_before, b, err);
      assert(st == INFSIM_OK && b->holder_count == fresh.holder_count);
      assert(fresh.holder_count == 0 || memcmp(kept, b->holders, (size_t)fresh.holder_count * sizeof *kept) == 0);
      assert(b->agg.remote_requests == fresh.agg.remote_requests &&
             b->agg.remote_partials == fresh.agg.remote_partials &&
             b->agg.remote_context_tokens == fresh.agg.remote_context_tokens &&
             b->agg.decode_context_tokens == fresh.agg.decode_context_tokens);
      (void)st;
      free(kept);
    }
  }
  free(m_before.per_request);
#endif
  if (!memo || !remote_memo_reserve(m, b->holder_count, 0)) return INFSIM_OK;
  if (b->holder_count > 0) memcpy(m->holders, b->holders, (size_t)b->holder_count * sizeof *m->holders);
  m->holder_count = b->holder_count;
  m->kv_gen = kv_gen;
  m->decode_gen = in->decode_gen;
  m->valid = true;
  return INFSIM_OK;
}

/* A decode batch of `steps` steps is being formed (decode_steps has just
 * dropped the stale finishes off the top): when its first finish ends
 * it, the policy may fetch what it reads then (request_ending), and the
 * finishing request's own lines are asked for. Only for a policy with
 * the op: its instances run many decoding requests in short runs, so
 * those lines are cold by the finish (perf samples on the hour trace:
 * finish_request 1.78% -> 0.97% of infinite-llm's run). Not inlined: a
 * policy without the op pays one test a batch. */
__attribute__((noinline)) static void ending_soon(const infsim_sched *s, const instance *in, int64_t steps) {
  const step_event *fin = &in->finishes.items[0];
  if (fin->step != in->step + steps) return;
  /* finish_request's own lines too: its scheduling state, record and KV
   * table, last read when it joined the decode (its boundaries are its
   * phase set's), so long gone from the caches. */
  __builtin_prefetch(rs_of(s, fin->req), 1);
  __builtin_prefetch(&s->rec[fin->req], 1);
  infsim_kv_prefetch(s->kv, fin->req);
  s->policy->request_ending(s->policy_self, fin->req);
}

/* Forms the next batch and offers it to the executor, if there is work. */
static infsim_status start_batch(infsim_sched *s, instance *in, infsim_error *err) {
  infsim_status st;
  bool preempted = false;
  if ((st = apply_step_events(s, in, &preempted, err)) != INFSIM_OK) return st;
  if (in->doomed.count > 0 && (st = instance_loss_apply(s, in, &preempted, err)) != INFSIM_OK) return st;
  if (in->stalled.count > 0 && (st = boundary_wait_resume(s, in, &preempted, err)) != INFSIM_OK) return st;
  int64_t budget = s->p.max_batched_tokens - (s->p.chunked_prefill ? in->decode_n : 0);
  /* Stalled requests are served first: nobody is admitted past them. */
  if (!preempted && in->stalled.count == 0 && (st = admit(s, in, budget, err)) != INFSIM_OK) return st;
  sched_load_changed(s, in);

  infsim_batch b = {0};
  b.instance = in->id;
  b.kv = s->kv;
  in->chunk_count = 0;
  bool decode = in->decode_n > 0 && (s->p.chunked_prefill || in->prefilling.count == 0);
  if (in->prefilling.count > 0) {
    int64_t left = s->p.chunked_prefill ? budget : INT64_MAX;
    for (int32_t i = 0; i < in->prefilling.count && left > 0; i++) {
      int32_t req = deque_at(&in->prefilling, i);
      const req_sched *r = rs_of(s, req);
      int64_t remaining = r->prefill_target - r->prefilled;
      int64_t chunk = remaining < left ? remaining : left;
      if (chunk <= 0) break;
      left -= chunk;
      in->chunks[in->chunk_count++] = (prefill_chunk){req, chunk};
      b.agg.prefill_tokens += chunk;
      b.agg.prefill_attn_pairs += chunk * r->prefilled + chunk * (chunk + 1) / 2;
      if (chunk == remaining) b.agg.logits_tokens++;
    }
  }
  if (!decode && in->chunk_count == 0) {
    in->busy = false;
    return INFSIM_OK;
  }
  if (decode) {
    /* step j attends kv_sum + (j + 1) x decode_n tokens (each request's new token included) */
    b.agg.decode_requests = in->decode_n;
    b.agg.decode_context_tokens = in->kv_sum + in->decode_n;
    b.agg.logits_tokens += in->decode_n;
  }
  if (in->chunk_count > 0) {
    b.steps = 1; /* prefill chunks, with every decoding request riding along (chunked prefill) */
  } else {
    /* After a preemption admission waited a turn: the next boundary is a
     * scheduling point that a longer run would skip. */
    bool admission_waits = preempted && (in->waiting.count > 0 || in->swapped.count > 0);
    b.steps = admission_waits ? 1 : decode_steps(s, in);
    if (!admission_waits && s->policy->request_ending != NULL) ending_soon(s, in, b.steps);
  }
  if ((st = add_remote(s, in, decode, &b, err)) != INFSIM_OK) return st;
  /* The longest context, as step 0 attends it; not known where part of
   * the batch's KV is held elsewhere (priced from the totals then). */
  if (decode && s->p.longest_context && b.agg.remote_requests == 0)
    b.agg.decode_max_context_tokens = decode_max_kv(s, in) + 1;
  b.swap_in_bytes = in->swap_in_bytes;
  b.swap_out_bytes = in->swap_out_bytes;
  in->swap_in_bytes = in->swap_out_bytes = 0;
  if (s->exec.wants_entries && (st = fill_entries(s, in, decode, &b, err)) != INFSIM_OK) return st;
  in->busy = true;
  in->iter_steps = decode ? b.steps : 0;
  int64_t end_ns = -1;
  return s->exec.submit(s->exec.self, &b, s->now_ns, &end_ns, err);
}

infsim_status instance_kick(infsim_sched *s, instance *in, infsim_error *err) {
  if (in->lost) return INFSIM_OK;
  if (!in->busy) return start_batch(s, in, err);
  /* Busy with several decode steps: the next step boundary is where one
   * step at a time would look again (admission, a landed borrow). */
  infsim_sched_touch(s, in->id, s->now_ns);
  return INFSIM_OK;
}

infsim_status instance_arrive(infsim_sched *s, instance *in, int32_t req, infsim_error *err) {
  infsim_request_record *rec = &s->rec[req];
  req_sched *r = rs_of(s, req);
  rec->instance = in->id;
  rec->instances_touched = 1;
  infsim_kv_set_owner(s->kv, req, in->id);
  int64_t max_kv = rec->prompt_tokens + rec->output_tokens - 1; /* the last token is never appended */
  infsim_reject_reason reason = INFSIM_REJECT_NONE;
  if (s->p.max_context_tokens > 0 && rec->prompt_tokens + rec->output_tokens > s->p.max_context_tokens)
    reason = INFSIM_REJECT_CONTEXT_LIMIT;
  else if (blocks_for(s, max_kv) > s->p.gpu_blocks_per_instance &&
           (s->policy->accept_oversized == NULL ||
            !s->policy->accept_oversized(s->policy_self, in->id, req, blocks_for(s, max_kv))))
    reason = INFSIM_REJECT_KV_CAPACITY;
  else if (!s->p.chunked_prefill && rec->prompt_tokens > s->p.max_batched_tokens)
    reason = INFSIM_REJECT_BATCH_TOKENS;
  if (reason != INFSIM_REJECT_NONE) {
    rec->state = INFSIM_REQ_REJECTED;
    rec->reason = (uint8_t)reason;
    sched_request_done(s, req);
    return INFSIM_OK;
  }
  r->prefill_target = rec->prompt_tokens;
  r->run_slot = -1;
  rec->state = INFSIM_REQ_WAITING;
  infsim_status st = deque_push_back(&in->waiting, req, err);
  if (st != INFSIM_OK) return st;
  sched_counts_changed(s, 1, 0);
  sched_load_changed(s, in);
  if (!in->busy) return start_batch(s, in, err);
  /* A request that arrives while a multi-step decode batch runs could join
   * at its next step boundary: ask the executor to end the batch there. */
  /* It could join, or (short of blocks) a policy that gets blocks would
   * start doing so at that boundary, as one step at a time would. */
  bool could_join = in->waiting.count == 1 && in->swapped.count == 0 && in->running_count < s->p.max_batch_size &&
                    (blocks_for(s, r->prefill_target) <= free_blocks(s, in) || s->policy->short_of_blocks != NULL);
  if (could_join && in->iter_steps > 1 && in->chunk_count == 0)
    in->iter_steps = s->exec.cut(s->exec.self, in->id, rec->arrival_ns);
  return INFSIM_OK;
}

infsim_status instance_iteration_done(infsim_sched *s, instance *in, infsim_error *err) {
  infsim_status st;
  if (in->lost) return INFSIM_OK; /* the batch died with its instance */
  s->counters.iterations += in->iter_steps > 0 ? in->iter_steps : 1;
  if (in->iter_steps > 0) {
    in->step += in->iter_steps;
    in->kv_sum += in->decode_n * in->iter_steps;
  }
  for (int32_t i = 0; i < in->chunk_count; i++) {
    int32_t req = in->chunks[i].req;
    req_sched *r = rs_of(s, req);
    infsim_request_record *rec = &s->rec[req];
    r->prefilled += in->chunks[i].chunk_tokens;
    if (r->prefilled < r->prefill_target) continue;
    /* Prefill done: it yields the next token. */
    deque_remove(&in->prefilling, req);
    r->generated0++;
    if (rec->first_token_ns < 0) rec->first_token_ns = s->now_ns;
    if (r->generated0 >= rec->output_tokens) {
      finish_request(s, in, req);
      continue;
    }
    if ((st = join_decode(s, in, req, r->prefill_target, err)) != INFSIM_OK) return st;
  }
  in->chunk_count = 0;
  in->busy = false;
  return start_batch(s, in, err);
}

infsim_status instance_init(infsim_sched *s, instance *in, int32_t id, infsim_error *err) {
  memset(in, 0, sizeof *in);
  in->id = id;
  size_t slots = (size_t)s->p.max_batch_size;
  if (slots > s->n_requests) slots = s->n_requests > 0 ? s->n_requests : 1;
  in->running = malloc(slots * sizeof *in->running);
  in->running_capacity = (int32_t)slots;
  in->chunks = malloc(slots * sizeof *in->chunks);
  int64_t low_bit = s->p.block_tokens & -s->p.block_tokens;
  s->n_phases = low_bit < 16 ? low_bit : 16;
  in->phases = calloc((size_t)phase_count(s), sizeof *in->phases);
  if (in->running == NULL || in->chunks == NULL || in->phases == NULL)
    return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  return INFSIM_OK;
}

void instance_free(const infsim_sched *s, instance *in) {
  deque_free(&in->waiting);
  deque_free(&in->swapped);
  deque_free(&in->prefilling);
  deque_free(&in->stalled);
  deque_free(&in->doomed);
  free(in->running);
  free(in->chunks);
  free(in->memo.copy);
  free(in->memo.holder);
  free(in->memo.tokens);
  free(in->remote.holders);
  free(in->remote.per_request);
  step_heap_free(&in->finishes);
  decode_max_free(in);
  if (in->phases != NULL)
    for (int64_t p = 0; p < phase_count(s); p++) phase_set_free(&in->phases[p]);
  free(in->phases);
  in->phases = NULL;
}

/* Blocks due by step in->step + done for decoding request q. A request is
 * in one of its instance's phase sets exactly while it decodes there
 * (join_decode, leave_decode), so one request's count is read directly,
 * O(1), instead of searching the sets. One step at a time books none at
 * or after the request's finish; a finish by then is looked up only
 * when the earliest pending one (the heap's top, live or stale: a
 * decoding request's own finish is at or after it) comes by then, which
 * a run's heartbeats, before its end, never see. */
static int64_t request_blocks_due(const infsim_sched *s, const instance *in, int32_t q, int64_t next, int64_t done) {
  const req_sched *r = rs_of(s, q);
  int64_t last = in->step + done, due = 0;
  assert(next == boundary_of(s, r, q));
  if (next > in->step && next <= last &&
      (in->finishes.items[0].step > last || next < r->step0 + (s->rec[q].output_tokens - r->generated0)))
    due = boundaries_through(s, next, last);
  assert(due == (next > in->step && next < r->step0 + (s->rec[q].output_tokens - r->generated0)
                     ? boundaries_through(s, next, last)
                     : 0));
  return due;
}

/* Blocks due by step in->step + done for every decoding request: a walk
 * over all phase sets, O(decoding requests). */
static int64_t all_blocks_due(const infsim_sched *s, const instance *in, int64_t done) {
  int64_t due = 0;
  for (int64_t p = 0; p < phase_count(s); p++)
    for (int32_t i = 0; i < in->phases[p].count; i++)
      due += request_blocks_due(s, in, in->phases[p].items[i].req,
                                member_boundary(&in->phases[p], &in->phases[p].items[i]), done);
  return due;
}

/* all_blocks_due when no decoding request finishes by then: a set's
 * members whose next boundary is its phase's first step after `step`
 * (all but those holding a block ahead) are due as many blocks each,
 * counted once a set. */
static int64_t all_blocks_due_unclipped(const infsim_sched *s, const instance *in, int64_t done) {
  int64_t np = phase_count(s), last = in->step + done, due = 0;
  for (int64_t p = 0; p < np; p++) {
    const phase_set *set = &in->phases[p];
    int64_t first = in->step + 1 + ((p - (in->step + 1)) & (np - 1));
    int64_t each = first <= last ? 1 + (last - first) / s->p.block_tokens : 0;
    if (set->regular > 0) /* the regular members alike */
      due += set->regular *
             (set->next == first ? each : set->next > in->step ? boundaries_through(s, set->next, last) : 0);
    for (int32_t i = 0; i < set->count && set->regular < set->count; i++) {
      if (set->items[i].regular) continue;
      int64_t next = set->items[i].boundary;
      due += next == first ? each : next > in->step ? boundaries_through(s, next, last) : 0;
    }
  }
  return due;
}

int64_t instance_running_blocks_due(const infsim_sched *s, const instance *in, int32_t req, int64_t done) {
  assert(!sched_forgotten(s, req) && s->rec[req].state == INFSIM_REQ_RUNNING && s->rec[req].instance == in->id);
  return rs_of(s, req)->decoding ? request_blocks_due(s, in, req, instance_next_boundary(s, req), done) : 0;
}

int64_t instance_blocks_due(const infsim_sched *s, const instance *in, int32_t req, int64_t done) {
  /* A forgotten request finished: nothing of it decodes (a report may
   * still name it, lent or owned, until its entries leave). */
  if (req >= 0)
    return !sched_forgotten(s, req) && rs_of(s, req)->decoding && s->rec[req].instance == in->id
               ? request_blocks_due(s, in, req, instance_next_boundary(s, req), done)
               : 0;
  int64_t np = phase_count(s), due = 0;
  /* No request's finish by then (the earliest pending one, the heap's
   * top, is later): none is clipped (request_blocks_due). */
  bool unclipped = in->finishes.count > 0 && in->finishes.items[0].step > in->step + done;
  if (done < np) {
    /* Every next boundary lies after `step`, so one due within `done` <
     * np steps is step t's own: the set of t's phase holds it, with
     * boundary t (the others there are np or more steps later),
     * and it is one block unless clipped. */
    for (int64_t t = in->step + 1; t <= in->step + done; t++) {
      if (!(in->phase_mask >> (t & (np - 1)) & 1)) continue;
      const phase_set *set = &in->phases[t & (np - 1)];
      if (unclipped && set->regular == set->count) {
        due += set->next == t ? set->regular : 0; /* no member read */
        continue;
      }
      for (int32_t i = 0; i < set->count; i++)
        if (member_boundary(set, &set->items[i]) == t)
          due += unclipped ? 1 : request_blocks_due(s, in, set->items[i].req, t, done);
    }
  } else {
    due = unclipped ? all_blocks_due_unclipped(s, in, done) : all_blocks_due(s, in, done);
  }
  /* the shortcuts against the walk over every member they stand for */
  assert(due == all_blocks_due(s, in, done));
  return due;
}

void instance_check(const infsim_sched *s, const instance *in) {
  int64_t decode_n = 0, kv_sum = 0, kv_max = 0;
  if (in->lost) instance_loss_check(s, in);
  for (int32_t i = 0; i < in->running_count; i++) {
    int32_t q = in->running[i];
    const req_sched *r = rs_of(s, q);
    assert(s->rec[q].state == INFSIM_REQ_RUNNING);
    assert(r->run_slot == i);
    /* A table's own check is O(its blocks): every event for ordinary
     * requests, never for a giant one (a 1e9-token prompt has 62.5M blocks). */
    if (infsim_kv_blocks(s->kv, q) <= 65536) infsim_kv_check_request(s->kv, q);
    if (r->decoding) {
      decode_n++;
      kv_sum += kv_now(in, r);
      if (kv_now(in, r) > kv_max) kv_max = kv_now(in, r);
      assert(infsim_kv_blocks(s->kv, q) >= blocks_for(s, kv_now(in, r)));
      /* the next boundary is the step its blocks fill, kept in its phase's set */
      int64_t next = boundary_of(s, r, q);
      const phase_set *set = &in->phases[next & (phase_count(s) - 1)];
      const phase_member *e = phase_set_find(set, q);
      assert(member_boundary(set, e) == next && set == phase_of(s, in, r));
      /* a table that grows by itself next grows at the set's boundary */
      assert(e->grows ? infsim_kv_grow_next(s->kv, q) == next : infsim_kv_grow_next(s->kv, q) == INT64_MAX);
      assert(!e->regular || e->grows);
      (void)e;
    }
  }
  for (int32_t i = 0; i < in->stalled.count; i++) {
    int32_t q = deque_at(&in->stalled, i);
    assert(s->rec[q].state == INFSIM_REQ_RUNNING && rs_of(s, q)->stalled && !rs_of(s, q)->decoding);
    assert(infsim_kv_blocks(s->kv, q) >= blocks_for(s, rs_of(s, q)->kv0));
    (void)q;
  }
  for (int32_t i = 0; i < in->swapped.count; i++)
    assert(s->rec[deque_at(&in->swapped, i)].state == INFSIM_REQ_SWAPPED);
  assert(decode_n == in->decode_n);
  /* the finish events marked stale are exactly those whose request left decode otherwise */
  for (int32_t i = 0; i < in->finishes.count; i++)
    assert((in->finishes.items[i].epoch == FINISH_LEFT) == finish_stale(s, &in->finishes.items[i]));
  int64_t members = 0;
  for (int64_t p = 0; p < phase_count(s); p++) {
    members += in->phases[p].count;
    assert((in->phases[p].count > 0) == ((in->phase_mask >> p) & 1));
    int32_t regular = 0;
    for (int32_t i = 0; i < in->phases[p].count; i++) regular += in->phases[p].items[i].regular;
    assert(regular == in->phases[p].regular);
    (void)regular;
    for (int32_t i = 1; i < in->phases[p].count; i++)
      assert(in->phases[p].items[i - 1].req < in->phases[p].items[i].req);
  }
  assert(members == decode_n);
  (void)members;
  assert(kv_sum == in->kv_sum); /* both as of `step`, the last boundary */
  if (s->p.longest_context) decode_max_check(s, in, kv_max);
  (void)kv_max;
  /* One request's blocks due, read directly, add up to the instance's,
   * found by scanning its phase sets (a few steps into a decode run). */
  const int64_t dones[] = {0, 1, phase_count(s) - 1, phase_count(s), 2 * s->p.block_tokens + 2};
  for (size_t d = 0; d < sizeof dones / sizeof *dones; d++) {
    int64_t done = dones[d], each = 0;
    for (int32_t i = 0; i < in->running_count; i++) each += instance_blocks_due(s, in, in->running[i], done);
    assert(each == instance_blocks_due(s, in, -1, done));
    (void)each;
  }
  (void)decode_n;
  (void)kv_sum;
}
