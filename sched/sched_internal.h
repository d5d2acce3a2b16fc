/*
** sched_internal.h: the scheduler's state, shared by sched.c (the public
** entry points, records, samples, invariants) and instance.c (one
** instance's scheduling: step events, admission, batches, preemption).
** Not a public header: users see sched.h.
*/
#ifndef INFSIM_SCHED_INTERNAL_H
#define INFSIM_SCHED_INTERNAL_H

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>

#include "infsim/sched.h"
#include "queues.h"

/* What the loss of instances cost (instance_loss.c). */
typedef struct {
  int64_t instances_lost;
  int64_t blocks_recomputed; /* blocks of KV the dropped requests had computed */
  int64_t requests_requeued; /* the lost instances' requests, dispatched again */
  int64_t requests_rejected; /* too large for what is left of the cluster */
  int64_t max_blocks;        /* the most blocks one request can ever get now (0: no loss yet) */
} instance_loss_counts;

enum { SCHED_RS_ALIGN = 64 };

/* Scheduling state of a request (records hold what is reported). */
typedef struct {
  _Alignas(SCHED_RS_ALIGN) int64_t prefill_target; /* tokens the current prefill must process */
  int64_t prefilled;
  int64_t generated0; /* tokens generated as of step0 */
  int64_t kv0;        /* KV tokens as of step0 */
  int64_t step0;
  int32_t run_slot;
  uint32_t epoch; /* bumped on preemption: stale step events are skipped */
  bool decoding;
  bool stalled; /* at a block boundary, waiting for the policy's blocks (boundary_wait.c) */
} req_sched;
/* One cache line each: the state ring is aligned to lines (sched.c), so a
 * request's state is one line, not two. A decoding request's next KV
 * block boundary is not here but in its phase set (instance.phases),
 * next to the other members': the step walks read the sets, not a line
 * per member. */
_Static_assert(sizeof(req_sched) == SCHED_RS_ALIGN, "req_sched fills one cache line");

typedef struct {
  int32_t req;
  int64_t chunk_tokens;
} prefill_chunk;

/* A split prompt's earlier runs, as add_split_chunk last read them
 * (instance.c): a copy of the table's first `runs` runs (`blocks` blocks,
 * all before the prompt's next chunk) and, per holder other than the
 * owner in the order they first appear there, their tokens. */
typedef struct {
  int32_t req;
  int64_t runs, blocks;
  infsim_kv_run *copy;
  int64_t copy_capacity;
  int32_t *holder;
  int64_t *tokens;
  int32_t holders, holder_capacity;
} split_memo;

/* A decode run's remote holders as add_remote last built them (a batch
 * with no prompt chunk), kept while the KV manager's holdings of the
 * instance's requests (infsim_kv_split_generation) and which of them
 * decode (instance.decode_gen) stay the same: the holder entries, and per
 * decoding split request its remote tokens and holders, in order, to
 * replay the batch's totals (clipped as add_remote clips them). */
typedef struct {
  int64_t remote_tokens; /* unclipped */
  int64_t partials;
} remote_request;

typedef struct {
  bool valid;
  uint64_t kv_gen, decode_gen;
  infsim_batch_holder *holders;
  int32_t holder_count;
  size_t holder_capacity;
  /* one array of pairs, not two: a replay reads one line fewer, from a
   * memo last read at the instance's previous batch (a miss) */
  remote_request *per_request;
  int32_t requests;
  size_t request_capacity;
} remote_memo;

typedef struct {
  int32_t id;
  req_deque waiting;
  req_deque swapped;
  req_deque prefilling; /* admitted, prompt not done, in admission order */
  req_deque stalled;    /* running, out of the batch at a block boundary (boundary_wait.c) */
  req_deque doomed;     /* its requests with KV on a lost instance, dropped at the next batch boundary */
  int32_t *running;     /* every request holding GPU blocks */
  int32_t running_count;
  int32_t running_peak;
  int32_t running_capacity;
  int64_t decode_n; /* decoding requests */
  int64_t kv_sum;   /* sum of their KV tokens as of `step` */
  int64_t step;     /* decode iterations done */
  step_heap finishes;
  /* Decoding requests by the phase of their block boundaries: a request
   * whose KV fills a block at step t needs one more at t + block_tokens,
   * t + 2 x block_tokens..., so it stays in set t mod 16 while it decodes
   * (16 sets, as block_tokens is a multiple of 16; fewer otherwise). Each
   * member's next boundary is kept with it (instance.c's boundary_of
   * finds it from the request's state and blocks too), but for the
   * regular members: their KV tables grow by themselves and their next
   * boundary is the set's `next`, so a step counts them without reading
   * them. */
  phase_set *phases;
  uint32_t phase_mask;   /* bit p: phases[p] has members */
  int32_t phase_peak;    /* most members at once (summary.json's high_water) */
  int64_t boundary_from; /* the first step whose boundaries are not yet applied */
  /* the batch in flight */
  bool busy;
  int64_t iter_steps; /* decode steps in it (0: prefill only) */
  prefill_chunk *chunks;
  int32_t chunk_count;
  int64_t swap_in_bytes;  /* host -> GPU KV to charge to the next batch */
  int64_t swap_out_bytes; /* GPU -> host */
  int64_t swap_blocks;    /* in host memory for its swapped requests (at most host_blocks_per_instance) */
  bool lost;              /* faults.lose_instance: gone, with its memory (instance_loss.c) */
  /* Decoding requests by kv0 - step0 (their KV now is that + step), a
   * max-heap whose entries go stale when their request leaves decode
   * (decode_max.c): the batch's longest context in O(log n). */
  struct decode_max_entry *longest;
  int32_t longest_count, longest_capacity;
  split_memo memo;
  remote_memo remote;
  uint64_t decode_gen; /* bumped when a request with KV elsewhere joins or leaves decode */
} instance;

enum { SCHED_RS_MIN = 64 }; /* the state ring's first size (a power of two) */

struct infsim_sched {
  infsim_sched_params p;
  const infsim_policy_ops *policy;
  void *policy_self;
  infsim_executor exec;
  infsim_transport net;
  infsim_kv *kv;
  int64_t max_steps; /* decode steps one batch may cover (0: no limit) */
  int32_t n_instances;
  instance *inst;
  size_t n_requests;
  infsim_request_record *rec;
  /* Scheduling state of the requests from `oldest` (every request before
   * it is done) to the latest arrived, request r at rs[r & rs_mask]: a
   * ring that grows (doubling) only when that span outgrows it, so it
   * holds what is in flight, not what has finished (rs_of). */
  req_sched *rs;
  int64_t rs_mask;
  int64_t oldest; /* moved on at arrivals only: a slot is reused only by an arrival */
  int64_t rs_span_peak; /* the most requests from oldest to the latest arrived at an arrival */
  int64_t arrived;
  int64_t done_requests; /* finished + rejected */
  infsim_run_counters counters;
  int64_t now_ns;
  int64_t total_waiting;
  int64_t total_running;
  int64_t integral_last_ns;
  infsim_sched_observer observer;
  infsim_batch_entry *entries; /* for executors that want them */
  int32_t entry_capacity;
  infsim_batch_holder *holders; /* a batch's remote holders (DistAttention) */
  int32_t holder_capacity;
  int32_t *holder_at; /* per holder (pool id): its index in holders when it is in the batch's list (else stale) */
  int32_t holder_at_capacity;
  int64_t n_phases;  /* phase sets per instance (instance.c) */
  step_event *due; /* the boundaries of one step, when blocks may run short */
  int32_t due_capacity;
  instance_loss_counts loss; /* faults.lose_instance (instance_loss.c) */
};

/* The state of request req, which arrived and is not before s->oldest
 * (a request before it is done, and its slot may belong to a later one:
 * code holding ids of requests that may have finished checks
 * sched_forgotten first). */
static inline req_sched *rs_of(const infsim_sched *s, int64_t req) {
  assert(req >= s->oldest && req < s->arrived);
  return &s->rs[req & s->rs_mask];
}

/* req is done and its state may be gone (rs_of must not be asked). */
static inline bool sched_forgotten(const infsim_sched *s, int64_t req) { return req < s->oldest; }

/* instance.c */
infsim_status instance_init(infsim_sched *s, instance *in, int32_t id, infsim_error *err);
void instance_free(const infsim_sched *s, instance *in);
/* A dispatched request joins the instance's waiting queue (or is rejected). */
infsim_status instance_arrive(infsim_sched *s, instance *in, int32_t req, infsim_error *err);
/* The batch in flight ended at s->now_ns. */
infsim_status instance_iteration_done(infsim_sched *s, instance *in, infsim_error *err);
/* Starts the next batch if the instance is idle and has work. */
infsim_status instance_kick(infsim_sched *s, instance *in, infsim_error *err);
void instance_check(const infsim_sched *s, const instance *in);
/* Blocks that one step at a time would have booked at the boundaries of
 * req (every decoding request when req < 0) once `done` steps of the
 * running batch have ended (the batch books them all at its end). */
int64_t instance_blocks_due(const infsim_sched *s, const instance *in, int32_t req, int64_t done);
/* instance_blocks_due for req, which runs at `in` (in its running list):
 * its record, another line, is not read. */
int64_t instance_running_blocks_due(const infsim_sched *s, const instance *in, int32_t req, int64_t done);
/* The step of decoding request req's next KV block boundary. */
int64_t instance_next_boundary(const infsim_sched *s, int32_t req);
/* Steps of `in`'s run of decode steps done by now_ns (as
 * infsim_sched_blocks_now reads them), or -1 when it is in no such run. */
int64_t sched_steps_done_now(infsim_sched *s, const instance *in, int64_t now_ns);
/* infsim_sched_blocks_now(s, req, in->id, now_ns) for req running at
 * `in`, given `done` from sched_steps_done_now at now_ns: for many
 * requests of one instance. */
int64_t sched_blocks_now_done(const infsim_sched *s, const instance *in, int64_t req, int64_t done);
/* infsim_sched_blocks_now(s, req, in->id, now_ns) for many requests
 * running at one instance: *done is sched_steps_done_now's answer once looked up
 * (-2 before), which only a request with a block boundary inside the
 * running batch needs (the others' blocks stay put until it ends). */
int64_t sched_blocks_now_lazy(infsim_sched *s, const instance *in, int64_t req, int64_t now_ns, int64_t *done);
/* Shared with boundary_wait.c and instance_loss.c. */
infsim_status join_decode(infsim_sched *s, instance *in, int32_t req, int64_t kv_tokens, infsim_error *err);
void leave_decode(const infsim_sched *s, instance *in, int32_t req);
/* Preemption is rare (171 in the 1-hour distkv_speed case against 1.8M
 * batches): cold, kept out of the batch code's hot lines. */
__attribute__((cold)) int32_t pick_victim(infsim_sched *s, const instance *in);
__attribute__((cold)) infsim_status preempt(infsim_sched *s, instance *in, int32_t req, infsim_error *err);
/* preempt, optionally never to swap (the KV is gone) and not counted as a preemption. */
__attribute__((cold)) infsim_status preempt_as(infsim_sched *s, instance *in, int32_t req, bool may_swap, bool counted,
                                               infsim_error *err);

/* decode_max.c: the longest KV among an instance's decoding requests. */
struct decode_max_entry {
  int64_t key; /* kv0 - step0 of the request as it joined */
  int64_t step0;
  int32_t req;
};
/* req joined decode (join_decode): remember it. */
infsim_status decode_max_add(const infsim_sched *s, instance *in, int32_t req, infsim_error *err);
/* The most KV tokens a decoding request of `in` holds as of in->step (0: none). */
int64_t decode_max_kv(const infsim_sched *s, instance *in);
void decode_max_free(instance *in);
/* Invariants (debug builds): a heap, whose largest live entry is kv_max - in->step. */
void decode_max_check(const infsim_sched *s, const instance *in, int64_t kv_max);

/* instance_loss.c: an instance is lost (faults.lose_instance). */
/* Instance `lost` is gone at s->now_ns with its GPU memory and swap
 * space (docs/distkv.md, "Faults"). Its own requests drop all their KV
 * (wherever held) and are dispatched again through the policy (which must
 * not pick `lost` any more), to prefill their prompt and the tokens
 * generated so far. A waiting request of another instance drops the
 * blocks it gathered there; a running one is doomed: at its owner's next
 * batch boundary (its batch in flight is cut at the next step) it is
 * preempted by recompute, its KV being incomplete. dropped(self, req) is
 * told of every request whose KV is dropped or doomed. The lost instance
 * never runs again. Counts go to s->loss. */
infsim_status instance_lose(infsim_sched *s, int32_t lost, void (*dropped)(void *self, int64_t req), void *self,
                            infsim_error *err);
/* A request needing more than s->loss.max_blocks in all (the policy sets
 * it at the loss: what the instances left and host memory could ever give
 * one request) can never complete: it is rejected (kv_capacity) when the
 * loss is applied or its KV is dropped, instead of waiting forever. */
/* After a loss, a request preempted by recompute whose whole context
 * needs more than s->loss.max_blocks (it ran on what it had, short of its
 * last blocks) is rejected (kv_capacity) rather than waiting for ever. */
__attribute__((cold)) void instance_loss_reject_if_too_large(infsim_sched *s, instance *in, int32_t req);
/* At a batch boundary of `in`: preempts its doomed requests (those still
 * running with blocks on a lost instance) by recompute. */
__attribute__((cold)) infsim_status instance_loss_apply(infsim_sched *s, instance *in, bool *preempted, infsim_error *err);
/* Debug builds: a lost instance holds nothing and has nothing queued. */
void instance_loss_check(const infsim_sched *s, const instance *in);

/* boundary_wait.c: a decoding request at a block boundary with no free
 * block while the policy gets blocks (INFSIM_SHORT_WAIT) leaves the batch,
 * keeping its KV, instead of preempting (policy.when_short: wait). */
/* Takes req (decoding, its blocks full at the current step) out of the batch. */
infsim_status boundary_wait_stall(infsim_sched *s, instance *in, int32_t req, infsim_error *err);
/* Gives stalled requests their block, first stalled first, while blocks
 * are free; for the first that finds none the policy is asked again and,
 * unless it still answers WAIT, a victim is preempted (vLLM). Sets
 * *preempted when one was. */
infsim_status boundary_wait_resume(infsim_sched *s, instance *in, bool *preempted, infsim_error *err);
/* req leaves the stalled queue (preempted, or its instance lost). */
void boundary_wait_forget(infsim_sched *s, instance *in, int32_t req);

/* sched.c */
void sched_counts_changed(infsim_sched *s, int64_t d_waiting, int64_t d_running);
void sched_load_changed(infsim_sched *s, const instance *in);
/* req finished or was rejected now (the policy hears of it). */
void sched_request_done(infsim_sched *s, int32_t req);

#endif
