/*
** instance_loss.c: the loss of an instance (faults.lose_instance;
** docs/distkv.md, "Faults").
**
** What is lost: the instance's GPU memory (its own requests' KV and the
** blocks it held for others) and its process's swap space. What is not:
** requests (every one is finished or rejected in the end), the host
** memory pool of its node (the CPU tier's blocks of other instances stay).
** Requests are recomputed, never partly: KV of one token depends on every
** token before it, and a request missing a middle piece would have to
** recompute from there on anyway; vLLM's recompute (prompt plus the tokens
** generated so far, which the user already has) is the one path.
**
** A request of another instance that had blocks there is running inside
** its owner's batch in flight: it is dropped at the owner's next batch
** boundary (the batch is cut at its next step), not in the middle of one.
*/
#include <assert.h>
#include <stdlib.h>

#include "sched_internal.h"

static int64_t blocks_for(const infsim_sched *s, int64_t tokens) {
  return (tokens + s->p.block_tokens - 1) / s->p.block_tokens;
}

/* True when req can never complete in what is left of the cluster. */
static bool too_large(const infsim_sched *s, int32_t req) {
  const infsim_request_record *rec = &s->rec[req];
  return s->loss.max_blocks > 0 && blocks_for(s, rec->prompt_tokens + rec->output_tokens - 1) > s->loss.max_blocks;
}

/* Rejects req, waiting on `in` with no blocks. */
static void reject_waiting(infsim_sched *s, instance *in, int32_t req) {
  deque_remove(&in->waiting, req);
  if (infsim_kv_blocks(s->kv, req) > 0) infsim_kv_release(s->kv, req);
  s->rec[req].state = INFSIM_REQ_REJECTED;
  s->rec[req].reason = INFSIM_REJECT_KV_CAPACITY;
  s->loss.requests_rejected++;
  sched_counts_changed(s, -1, 0);
  sched_request_done(s, req);
  sched_load_changed(s, in);
}

/* Blocks of KV req has computed (what recomputing it redoes). */
static int64_t computed_blocks(const infsim_sched *s, const instance *in, int32_t req) {
  const req_sched *r = rs_of(s, req);
  switch ((infsim_req_state)s->rec[req].state) {
  case INFSIM_REQ_RUNNING:
    if (r->decoding) return blocks_for(s, r->kv0 + (in->step - r->step0));
    if (r->stalled) return blocks_for(s, r->kv0);
    return blocks_for(s, r->prefilled);
  case INFSIM_REQ_SWAPPED: return blocks_for(s, r->kv0);
  default: return 0;
  }
}

/* True when req has blocks on a lost instance. */
static bool touches_lost(const infsim_sched *s, int32_t req) {
  int32_t pools[INFSIM_KV_MAX_HOLDINGS];
  int64_t blocks[INFSIM_KV_MAX_HOLDINGS];
  int32_t n = infsim_kv_holdings(s->kv, req, pools, blocks, INFSIM_KV_MAX_HOLDINGS);
  for (int32_t i = 0; i < n && i < INFSIM_KV_MAX_HOLDINGS; i++)
    if (pools[i] < s->n_instances && s->inst[pools[i]].lost) return true;
  return false;
}

/* Other instances' requests with blocks on `lost`. */
static infsim_status doom_guests(infsim_sched *s, int32_t lost, void (*dropped)(void *, int64_t), void *self,
                                 infsim_error *err) {
  for (int64_t q = s->oldest; q < s->arrived; q++) { /* those before are done */
    int32_t owner = infsim_kv_owner(s->kv, q);
    if (owner == lost || owner < 0 || infsim_kv_blocks_at(s->kv, q, lost) == 0) continue;
    instance *o = &s->inst[owner];
    if (s->rec[q].state == INFSIM_REQ_WAITING) {
      /* Blocks gathered for admission hold no KV yet: gather again. */
      infsim_kv_release(s->kv, q);
      infsim_sched_touch(s, owner, s->now_ns);
    } else {
      assert(s->rec[q].state == INFSIM_REQ_RUNNING); /* a swapped request is all in host memory */
      infsim_status st = deque_push_back(&o->doomed, (int32_t)q, err);
      if (st == INFSIM_OK) st = instance_kick(s, o, err);
      if (st != INFSIM_OK) return st;
    }
    dropped(self, q);
  }
  return INFSIM_OK;
}

/* Admission may go on at the same boundary (unlike after a vLLM
 * preemption, nothing here says memory is short): *preempted stays. */
infsim_status instance_loss_apply(infsim_sched *s, instance *in, bool *preempted, infsim_error *err) {
  (void)preempted;
  while (in->doomed.count > 0) {
    int32_t req = deque_front(&in->doomed);
    deque_pop_front(&in->doomed);
    if (s->rec[req].state != INFSIM_REQ_RUNNING || !touches_lost(s, req)) continue; /* done, or moved off */
    s->loss.blocks_recomputed += computed_blocks(s, in, req);
    infsim_status st = preempt_as(s, in, req, false, false, err);
    if (st != INFSIM_OK) return st;
    if (too_large(s, req)) reject_waiting(s, in, req);
  }
  return INFSIM_OK;
}

void instance_loss_reject_if_too_large(infsim_sched *s, instance *in, int32_t req) {
  if (s->rec[req].state == INFSIM_REQ_WAITING && too_large(s, req)) reject_waiting(s, in, req);
}

/* Waiting requests of live instances that can never complete now. */
static void reject_too_large(infsim_sched *s) {
  for (int64_t q = s->oldest; q < s->arrived; q++) { /* those before are done */
    if (s->rec[q].state != INFSIM_REQ_WAITING || !too_large(s, (int32_t)q)) continue;
    instance *in = &s->inst[s->rec[q].instance];
    if (!in->lost) reject_waiting(s, in, (int32_t)q);
  }
}

infsim_status instance_lose(infsim_sched *s, int32_t lost, void (*dropped)(void *, int64_t), void *self,
                            infsim_error *err) {
  instance *in = &s->inst[lost];
  assert(!in->lost);
  infsim_status st;
  /* The decode steps of its batch in flight that ended by now did happen:
   * their tokens were generated (the user has them) and their KV computed. */
  if (in->busy && in->iter_steps > 1 && in->chunk_count == 0 && s->exec.steps_done != NULL) {
    int64_t done = s->exec.steps_done(s->exec.self, lost, s->now_ns);
    in->step += done;
    in->kv_sum += in->decode_n * done;
  }
  /* Its running requests back to its queue, by recompute (no swap: the
   * host's swap space went with the process), not counted as preemptions. */
  while (in->running_count > 0) {
    int32_t req = in->running[in->running_count - 1];
    s->loss.blocks_recomputed += computed_blocks(s, in, req);
    if ((st = preempt_as(s, in, req, false, false, err)) != INFSIM_OK) return st;
  }
  while (in->swapped.count > 0) {
    int32_t req = deque_front(&in->swapped);
    req_sched *r = rs_of(s, req);
    deque_pop_front(&in->swapped);
    s->loss.blocks_recomputed += computed_blocks(s, in, req);
    in->swap_blocks -= infsim_kv_blocks(s->kv, req);
    infsim_kv_release(s->kv, req);
    r->prefill_target = s->rec[req].prompt_tokens + r->generated0;
    r->prefilled = 0;
    s->rec[req].state = INFSIM_REQ_WAITING;
    if ((st = deque_push_back(&in->waiting, req, err)) != INFSIM_OK) return st;
  }
  /* Requests it was to drop for an earlier loss were its own running
   * ones, requeued above with everything else. */
  while (in->doomed.count > 0) deque_pop_front(&in->doomed);
  in->lost = true;
  in->busy = true; /* never starts a batch again; its batch in flight is ignored */
  in->iter_steps = 0;
  in->chunk_count = 0;
  s->loss.instances_lost++;
  if ((st = doom_guests(s, lost, dropped, self, err)) != INFSIM_OK) return st;
  /* Its requests, oldest first, to the instances the policy picks. */
  while (in->waiting.count > 0) {
    int32_t req = deque_front(&in->waiting);
    deque_pop_front(&in->waiting);
    if (infsim_kv_blocks(s->kv, req) > 0) infsim_kv_release(s->kv, req); /* gathered, no KV */
    dropped(self, req);
    if (too_large(s, req)) {
      s->rec[req].state = INFSIM_REQ_REJECTED;
      s->rec[req].reason = INFSIM_REJECT_KV_CAPACITY;
      s->loss.requests_rejected++;
      sched_counts_changed(s, -1, 0);
      sched_request_done(s, req);
      continue;
    }
    int32_t target = s->policy->dispatch(s->policy_self, req);
    assert(target >= 0 && target < s->n_instances && !s->inst[target].lost);
    instance *t = &s->inst[target];
    infsim_kv_set_owner(s->kv, req, target);
    s->rec[req].instance = target;
    s->loss.requests_requeued++;
    if ((st = deque_push_back(&t->waiting, req, err)) != INFSIM_OK) return st;
    sched_load_changed(s, t);
    if ((st = instance_kick(s, t, err)) != INFSIM_OK) return st;
  }
  sched_load_changed(s, in);
  reject_too_large(s);
  return INFSIM_OK;
}

/* A lost instance holds nothing once its loss is processed: no queued
 * work, none of its own requests' blocks anywhere (they were dropped with
 * its queues), and the only blocks left in its memory are those of other
 * instances' running requests still to be dropped at their owner's next
 * batch boundary (in the owner's doomed queue). Counted both ways: the
 * distinct doomed requests with blocks here equal the guests here, so a
 * guest nobody will drop (a leak), or a doomed request dropped without its
 * blocks here freed, breaks it. */
void instance_loss_check(const infsim_sched *s, const instance *in) {
  assert(in->lost && in->running_count == 0 && in->waiting.count == 0 && in->swapped.count == 0);
  assert(in->prefilling.count == 0 && in->stalled.count == 0 && in->decode_n == 0 && in->doomed.count == 0);
  infsim_kv_counts c = infsim_kv_counts_of(s->kv, in->id);
  assert(c.local == 0 && c.borrowed == 0 && c.swapped == 0 && in->swap_blocks == 0);
  int64_t doomed_here = 0, doomed_blocks = 0;
  for (int32_t o = 0; o < s->n_instances; o++) {
    const req_deque *d = &s->inst[o].doomed;
    for (int32_t k = 0; k < d->count; k++) {
      int32_t q = deque_at(d, k);
      int64_t here = infsim_kv_blocks_at(s->kv, q, in->id);
      bool again = false; /* a request doomed by two losses is listed twice */
      for (int32_t j = 0; j < k && !again; j++) again = deque_at(d, j) == q;
      if (here == 0 || again) continue;
      assert(s->rec[q].state == INFSIM_REQ_RUNNING && infsim_kv_owner(s->kv, q) == o);
      doomed_here++;
      doomed_blocks += here;
    }
  }
  assert(doomed_here == infsim_kv_guests(s->kv, in->id) && doomed_blocks == c.lent);
  (void)c;
  (void)doomed_here;
  (void)doomed_blocks;
}
