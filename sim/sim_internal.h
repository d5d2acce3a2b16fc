/*
** sim_internal.h: the simulation's state, shared by sim.c (event loop,
** dispatch, sampling) and instance.c (the per-instance scheduler). Not a
** public header: users see sim.h.
**
** Decode progress is kept in step counters, not per request per
** iteration: an instance counts its decode iterations in `step`, and a
** decoding request that joined at step s0 with k0 KV tokens and g0 tokens
** generated has, at step s, k0 + (s - s0) KV tokens and g0 + (s - s0)
** tokens generated. Its finish and its next KV block boundary are keys in
** the instance's step-event heaps, so an iteration costs O(1) whatever the
** batch size, and runs of identical-shape decode iterations collapse into
** one engine event (a "macro-step") that ends at the next finish. Block
** boundaries end a macro-step only when free blocks might not cover every
** boundary in it; otherwise they are applied in bulk at its end.
*/
#ifndef INFSIM_SIM_INTERNAL_H
#define INFSIM_SIM_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "infsim/event_heap.h"
#include "infsim/sim.h"

/* Event priorities at equal time: finished iterations free memory before
 * arrivals look for it; samples see the state after both. */
enum { EV_ITERATION_DONE = 0, EV_ARRIVAL = 1, EV_SAMPLE = 2 };

/* A step event: request `req` finishes, or needs one more KV block before
 * the next decode step, once the instance reaches `step`. */
typedef struct {
  int64_t step;
  int32_t req;
  uint32_t epoch;
} step_event;

/* A min-heap of step events ordered by (step, req). */
typedef struct {
  step_event *items;
  int32_t count;
  int32_t capacity;
} step_heap;

typedef struct {
  int32_t *items;
  int32_t head;
  int32_t count;
  int32_t capacity;
} req_deque;

/* Scheduling state of a request (records hold what is reported). */
typedef struct {
  int64_t prefill_target; /* tokens the current prefill must process */
  int64_t prefilled;
  int64_t generated0; /* tokens generated as of step0 */
  int64_t kv0;        /* KV tokens as of step0 */
  int64_t step0;
  int64_t blocks; /* KV blocks held on the GPU (or in swap while swapped) */
  int32_t run_slot;
  uint32_t epoch; /* bumped on preemption: stale step events are skipped */
  bool decoding;
} req_sched;

typedef struct {
  int32_t req;
  int64_t chunk_tokens;
} prefill_chunk;

typedef struct {
  int32_t id;
  int64_t total_blocks;
  int64_t used_blocks;
  int64_t swap_capacity_blocks;
  int64_t swap_used_blocks;
  req_deque waiting;
  req_deque swapped;
  req_deque prefilling; /* admitted, prompt not done, in admission order */
  int32_t *running;     /* every request holding GPU blocks */
  int32_t running_count;
  int64_t decode_n; /* decoding requests */
  int64_t kv_sum;   /* sum of their KV tokens as of `step` */
  int64_t step;     /* decode iterations done */
  step_heap finishes;
  step_heap boundaries;
  /* the iteration in flight */
  bool busy;
  uint32_t generation;
  int64_t iter_start_ns;
  int64_t iter_steps; /* decode steps in it (0: prefill only) */
  int64_t iter_lead_ns; /* swap time etc. charged at its start */
  infsim_decode_run iter_run; /* cost of its decode steps */
  prefill_chunk *chunks;
  int32_t chunk_count;
  int64_t pending_overhead_ns; /* swap traffic to charge to the next iteration */
} instance;

struct infsim_sim {
  infsim_sim_params p;
  infsim_cost_model cost;
  int64_t block_bytes;
  int32_t n_instances;
  instance *inst;
  infsim_request_record *rec;
  req_sched *rs;
  size_t n_requests;
  size_t next_arrival;
  int64_t done_requests; /* finished + rejected */
  infsim_event_heap heap;
  void *policy; /* the policy's state (s->p.policy is its table) */
  infsim_sample_row *samples;
  size_t n_samples;
  size_t cap_samples;
  infsim_run_counters counters;
  int64_t now_ns;
  int64_t total_waiting;
  int64_t total_running;
  int64_t integral_last_ns;
  int64_t events_since_full_check;
};

/* instance.c */
infsim_status instance_init(infsim_sim *s, instance *in, int32_t id, infsim_error *err);
void instance_free(instance *in);
/* A dispatched request joins the instance's waiting queue (or is rejected). */
infsim_status instance_arrive(infsim_sim *s, instance *in, int32_t req, infsim_error *err);
/* The iteration in flight ended at s->now_ns. */
infsim_status instance_iteration_done(infsim_sim *s, instance *in, infsim_error *err);
/* Debug builds: the instance's block and queue invariants. */
void instance_check(const infsim_sim *s, const instance *in);

/* sim.c */
void sim_counts_changed(infsim_sim *s, int64_t d_waiting, int64_t d_running);
void sim_load_changed(infsim_sim *s, const instance *in);
infsim_status sim_schedule_event(infsim_sim *s, int64_t time_ns, int32_t priority, int32_t target, int64_t arg,
                                 infsim_error *err);

#endif
