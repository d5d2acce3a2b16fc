/*
** executor.h: the seam between the scheduler and what runs a batch.
**
** The scheduler decides (admission, batch, victims, borrowing) and never
** prices; an executor prices or runs a batch and never decides. The
** scheduler offers a batch with the number of identical decode steps that
** may follow it (the same requests, each context one token longer per
** step; 1 when anything may change), and the executor:
**  - simulated (sim/sim_executor.c): prices it with the cost model on the
**    virtual clock, closed form over the steps, and delivers the end as an
**    engine event;
**  - cuda / cpu (cluster/): runs it on real kernels over the KV manager's
**    block tables and reports the end by wall clock.
** Either way the end of a batch reaches the scheduler as
** infsim_sched_iteration_done(instance) from the driver that owns the
** clock (the engine, or cluster mode's loop).
*/
#ifndef INFSIM_EXECUTOR_H
#define INFSIM_EXECUTOR_H

#include <stdbool.h>
#include <stdint.h>

#include "infsim/batch.h"
#include "infsim/kv.h"
#include "infsim/status.h"

/* One request's part of a batch (filled only for executors that ask). */
typedef struct {
  int64_t req;
  int64_t query_tokens;   /* prompt chunk tokens, or 1 for a decode */
  int64_t context_tokens; /* KV tokens before this part (its cached prefix) */
} infsim_batch_entry;

/* KV of this batch's requests held by another instance (DistAttention):
 * the owner sends queries there and merges the partials that come back. */
typedef struct {
  int32_t holder;
  int64_t decode_requests;       /* decoding requests with blocks there */
  int64_t decode_context_tokens; /* their KV tokens there */
  int64_t prefill_tokens;        /* query tokens of prompt chunks with earlier KV there */
  int64_t prefill_context_tokens; /* that earlier KV, tokens */
  int64_t write_tokens;          /* new prompt KV stored there (moved over the link) */
} infsim_batch_holder;

typedef struct {
  int32_t instance;
  infsim_batch_agg agg; /* the first step's aggregates; decode_context_tokens counts local KV only */
  const infsim_batch_holder *holders; /* remote holders of the batch's KV (none: NULL) */
  int32_t holder_count;
  /* Identical decode steps (>= 1 when decode_requests > 0, else 1): step j
   * attends agg.decode_context_tokens + j x agg.decode_requests tokens. */
  int64_t steps; /* remote KV stays put over the steps: new tokens go to the owner's blocks */
  int64_t swap_in_bytes;  /* KV brought back from host memory before the batch */
  int64_t swap_out_bytes; /* KV sent to host memory (preemption by swap) */
  const infsim_batch_entry *entries; /* NULL unless the executor wants them */
  int32_t entry_count;
  const infsim_kv *kv; /* the block tables of the batch's requests */
} infsim_batch;

typedef struct {
  void *self;
  /* True: fill infsim_batch.entries (O(batch) per iteration). */
  bool wants_entries;
  /* Decode steps one batch may cover (0: no limit). Real executors run one. */
  int64_t max_steps;
  /* Starts the batch at now_ns; *end_ns is its end when known in advance
   * (simulated), else -1 (real: the driver reports it). */
  infsim_status (*submit)(void *self, const infsim_batch *batch, int64_t now_ns, int64_t *end_ns,
                          infsim_error *err);
  /* The instance's running batch covers several decode steps: end it at the
   * first step boundary at or after t_ns (an arrival could join there).
   * Returns the steps it now covers (unchanged when none ends sooner). */
  int64_t (*cut)(void *self, int32_t instance, int64_t t_ns);
  /* The steps of the instance's running batch that have ended by t_ns
   * (NULL: executors that run one step at a time). */
  int64_t (*steps_done)(void *self, int32_t instance, int64_t t_ns);
} infsim_executor;

#endif
