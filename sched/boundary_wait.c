/*
** boundary_wait.c: waiting, instead of preempting, at a decode block
** boundary (policy.when_short: wait; docs/distkv.md, "Contract protocol").
**
** A decoding request whose KV fills its blocks needs one more before its
** next step. When none is free and the policy answers INFSIM_SHORT_WAIT
** (a borrow is in flight), the request leaves the batch with its KV and
** progress kept: it is still running (it holds GPU blocks) but no longer
** decoding, and its step events are dropped (its epoch moves on). The rest
** of the instance runs on. At every batch boundary the stalled requests,
** first stalled first, take a block when one is free and rejoin decoding
** at the current step; for the first that finds none the policy is asked
** again, and when it does not answer WAIT (its borrow failed) a victim is
** preempted as vLLM would. While any request is stalled nobody is admitted
** (running work first), so blocks that come free go to it.
**
** The policy must kick the instance (instance_kick) when the borrow ends,
** landed or failed: an instance whose requests are all stalled has no
** batch end to wake it.
*/
#include <assert.h>

#include "sched_internal.h"

infsim_status boundary_wait_stall(infsim_sched *s, instance *in, int32_t req, infsim_error *err) {
  req_sched *r = rs_of(s, req);
  assert(r->decoding && !r->stalled);
  /* As of now: generated tokens and KV (its blocks are exactly full). */
  r->generated0 += in->step - r->step0;
  r->kv0 += in->step - r->step0;
  r->step0 = in->step;
  leave_decode(s, in, req);
  r->stalled = true;
  r->epoch++; /* its finish and boundary events are stale: rejoining pushes new ones */
  return deque_push_back(&in->stalled, req, err);
}

void boundary_wait_forget(infsim_sched *s, instance *in, int32_t req) {
  assert(rs_of(s, req)->stalled);
  deque_remove(&in->stalled, req);
  rs_of(s, req)->stalled = false;
}

infsim_status boundary_wait_resume(infsim_sched *s, instance *in, bool *preempted, infsim_error *err) {
  infsim_status st;
  while (in->stalled.count > 0) {
    int32_t req = deque_front(&in->stalled);
    req_sched *r = rs_of(s, req);
    if (infsim_kv_free_blocks(s->kv, in->id) >= 1) {
      deque_pop_front(&in->stalled);
      r->stalled = false;
      if ((st = infsim_kv_alloc(s->kv, req, in->id, 1, err)) != INFSIM_OK) return st;
      if ((st = join_decode(s, in, req, r->kv0, err)) != INFSIM_OK) return st;
      continue;
    }
    infsim_short_action act = INFSIM_SHORT_PREEMPT;
    if (s->policy->short_of_blocks != NULL)
      act = s->policy->short_of_blocks(s->policy_self, in->id, req, 1, s->now_ns);
    if (act == INFSIM_SHORT_WAIT) return INFSIM_OK;
    *preempted = true;
    if ((st = preempt(s, in, pick_victim(s, in), err)) != INFSIM_OK) return st;
  }
  return INFSIM_OK;
}
