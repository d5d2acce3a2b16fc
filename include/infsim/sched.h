/*
** sched.h: the scheduler of every instance of a run (vLLM semantics), the
** same code under the simulator and cluster mode.
**
** The scheduler decides: dispatch (through the policy), admission, batch
** formation, preemption victims, borrowing (policy hooks). It never
** prices and never owns a clock: a driver (the engine in sim/, cluster
** mode's loop in cluster/) calls it at arrivals, at the end of an
** iteration and when a message arrives, with the time; it answers by
** submitting batches to the executor and messages to the transport.
**
** Decode progress lives in step counters: a request that joined decoding
** at step s0 with k0 KV tokens has k0 + (s - s0) at step s. Finishes and
** KV block boundaries are keys in per-instance step heaps, so an
** iteration costs O(1) whatever the batch size, and a run of decode
** iterations that differ only in context is one batch with steps > 1.
*/
#ifndef INFSIM_SCHED_H
#define INFSIM_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "infsim/executor.h"
#include "infsim/high_water.h"
#include "infsim/kv.h"
#include "infsim/policy.h"
#include "infsim/status.h"
#include "infsim/trace.h"
#include "infsim/transport.h"

typedef enum { INFSIM_PREEMPT_RECOMPUTE = 0, INFSIM_PREEMPT_SWAP = 1 } infsim_preemption_mode;

/* What the scheduler needs to know (plain bytes). */
typedef struct {
  int32_t instances;
  int64_t gpu_blocks_per_instance; /* KV blocks each instance's GPUs hold */
  int64_t host_blocks_per_instance; /* swap space: the most an instance swaps out at once */
  int32_t instances_per_host;       /* instances of a node, which share its host memory (0: 1) */
  int64_t host_blocks;              /* one node's host memory pool (0: its instances' swap space) */
  int64_t block_tokens;
  int64_t block_bytes; /* one block, all layers */
  int64_t max_batch_size;
  int64_t max_batched_tokens;
  bool chunked_prefill;
  infsim_preemption_mode preemption;
  int64_t max_steps_per_event; /* 0: no limit; 1 checks the fast path */
  int64_t max_context_tokens;  /* 0: not enforced */
  char policy_name[64];
  unsigned char policy_settings[INFSIM_POLICY_SETTINGS_BYTES];
  uint64_t seed;
  /* Keep the decoding requests' longest context for the batch aggregates
   * (decode_max_context_tokens; otherwise 0): set where something reads
   * it (iterations.csv, a cost model with the longest-CTA term, cluster
   * mode), since keeping it costs a heap push and pop per request. */
  bool longest_context;
} infsim_sched_params;

typedef enum {
  INFSIM_REQ_PENDING = 0, /* not arrived yet */
  INFSIM_REQ_WAITING,
  INFSIM_REQ_RUNNING,
  INFSIM_REQ_SWAPPED,
  INFSIM_REQ_FINISHED,
  INFSIM_REQ_REJECTED
} infsim_req_state;

typedef enum {
  INFSIM_REJECT_NONE = 0,
  INFSIM_REJECT_KV_CAPACITY,   /* prompt + output never fit in one instance's KV cache */
  INFSIM_REJECT_CONTEXT_LIMIT, /* longer than model.max_context_tokens */
  INFSIM_REJECT_BATCH_TOKENS   /* prompt > max_batched_tokens without chunked prefill */
} infsim_reject_reason;

const char *infsim_reject_reason_name(infsim_reject_reason r);

/* What a run records of one request (times -1 until they happen). */
typedef struct {
  int64_t arrival_ns;
  int64_t prompt_tokens;
  int64_t output_tokens;
  int64_t first_token_ns;
  int64_t finish_ns;
  int32_t instance;
  int32_t preemptions;
  int32_t instances_touched;
  uint8_t state;  /* infsim_req_state */
  uint8_t reason; /* infsim_reject_reason */
} infsim_request_record;

/* One row of timeseries.csv: an instance's state at a sample time. */
typedef struct {
  int64_t time_ns;
  int32_t instance;
  int32_t running;
  int32_t waiting;
  int64_t kv_used_blocks;
  int64_t kv_free_blocks;
  int64_t kv_lent_blocks;
  int64_t kv_borrowed_blocks;
} infsim_sample_row;

/* Run-wide counters. */
typedef struct {
  int64_t events;
  int64_t iterations;
  int64_t preemptions;
  int64_t end_ns; /* time of the last finish or rejection */
  int64_t kv_blocks_per_instance;
  int64_t borrowed_blocks_peak;
  int64_t network_bytes;
  int64_t max_context_tokens;   /* longest prompt + output completed */
  double waiting_integral_ns;   /* integral over time of waiting requests (all instances) */
  double running_integral_ns;   /* same for running requests */
} infsim_run_counters;

typedef struct infsim_sched infsim_sched;

/* A scheduler for the requests (borrowed: they must outlive it), running
 * batches on exec and messages on net. */
infsim_status infsim_sched_new(const infsim_sched_params *p, const infsim_trace_request *requests, size_t count,
                               infsim_executor exec, infsim_transport net, infsim_sched **out, infsim_error *err);
void infsim_sched_free(infsim_sched *s);

/* Request `req` (an index into the requests, in arrival order) arrives now. */
infsim_status infsim_sched_arrive(infsim_sched *s, int64_t req, int64_t now_ns, infsim_error *err);
/* The batch in flight on `instance` ended at now_ns. */
infsim_status infsim_sched_iteration_done(infsim_sched *s, int32_t instance, int64_t now_ns, infsim_error *err);
/* A message (or timer) reached its destination at now_ns. */
infsim_status infsim_sched_deliver(infsim_sched *s, const infsim_msg *msg, int64_t now_ns, infsim_error *err);

/* Every arrived request finished or rejected, and every request arrived. */
bool infsim_sched_all_done(const infsim_sched *s);
int64_t infsim_sched_done_count(const infsim_sched *s);

/* The instances' state now, one row each, into rows[0..instances). */
void infsim_sched_sample(const infsim_sched *s, int64_t now_ns, infsim_sample_row *rows);

const infsim_request_record *infsim_sched_requests(const infsim_sched *s, size_t *count);
/* Counters as of now_ns (closes the time integrals there). */
const infsim_run_counters *infsim_sched_counters(infsim_sched *s, int64_t now_ns);
infsim_kv *infsim_sched_kv(infsim_sched *s);
int32_t infsim_sched_instances(const infsim_sched *s);

/* An instance's free KV blocks as one decode step at a time would have
 * them at now_ns: a batch of several steps books its block boundaries at
 * its end, so the blocks its steps ended by now_ns have already taken are
 * left out. What policies read of another instance's memory. */
int64_t infsim_sched_free_blocks_now(infsim_sched *s, int32_t instance, int64_t now_ns);
/* Bounds lo <= infsim_sched_free_blocks_now(s, instance, t) <= hi for any
 * t within the instance's current batch, without asking the executor how
 * many of its steps ended (a search over the run's step times). */
void infsim_sched_free_blocks_bounds(const infsim_sched *s, int32_t instance, int64_t *lo, int64_t *hi);

/* req's blocks held by `holder` as one step at a time would show them. */
int64_t infsim_sched_blocks_now(infsim_sched *s, int64_t req, int32_t holder, int64_t now_ns);

/* Something outside the instance's own schedule (a borrow, a move, a
 * recall) changed its KV at now_ns: a batch of several decode steps in
 * flight ends at its first step boundary at or after now_ns, so the next
 * step sees the change, as it would one step at a time. */
void infsim_sched_touch(infsim_sched *s, int32_t instance, int64_t now_ns);

/* Who wants to hear of the scheduler's decisions (timelines, studies). */
typedef struct {
  void *self;
  /* req on instance gave up its GPU memory at now_ns (to host memory if swapped). */
  void (*preempted)(void *self, int32_t instance, int64_t req, int64_t now_ns, bool swapped);
} infsim_sched_observer;

void infsim_sched_observe(infsim_sched *s, infsim_sched_observer observer);

/* The high-water marks of the instances' queues and KV pools, and the
 * policy's (high_water.h). */
void infsim_sched_high_water(const infsim_sched *s, infsim_high_water_set *out);
/* What per-request state costs: the slots of the scheduler's state ring
 * and of the KV manager's tables (each grows, doubling, only with the
 * requests in flight, from the oldest not done to the latest arrived),
 * and the most requests that span held at an arrival. */
void infsim_sched_request_slots(const infsim_sched *s, int64_t *state_slots, int64_t *table_slots,
                                int64_t *span_peak);

/* Debug builds: every instance's block and queue invariants. */
void infsim_sched_check(const infsim_sched *s);

#endif
