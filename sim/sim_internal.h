/*
** sim_internal.h: the engine's state, shared by sim.c (the loop),
** sim_executor.c and sim_transport.c (which deliver into its heap). Not a
** public header: users see sim.h.
*/
#ifndef INFSIM_SIM_INTERNAL_H
#define INFSIM_SIM_INTERNAL_H

#include <stddef.h>

#include "infsim/event_heap.h"
#include "infsim/sim.h"

/* Event priorities at equal time: finished batches free memory before
 * messages and arrivals look for it; samples see the state after all. */
enum { EV_ITERATION_DONE = 0, EV_MESSAGE = 1, EV_NETWORK = 1, EV_ARRIVAL = 2, EV_SAMPLE = 3 };
/* EV_NETWORK shares EV_MESSAGE's priority; the two are told apart by target. */
enum { NETWORK_TARGET = -3 };
/* Messages this small skip the max-min network (sim_transport.c). */
enum { INFSIM_CONTROL_MSG_BYTES = 64 * 1024 };

/* A step's DistAttention routes: one per holder (owner -> holder), and
 * with node relay (distattn.h) up to two more per relayed holder (its
 * decode and its prompt chunk relay -> holder). */
enum { SIM_DA_MAX_ROUTES = 3 * INFSIM_KV_MAX_HOLDINGS };

/* Decode run sizes whose fixed part the simulator keeps (run_fixed_ns). */
enum { SIM_RUN_FIXED_SIZES = 512 };

/* What distattn_step_ns sets up before its probe, without node relay
 * (sim_executor.c): it depends only on the batch's holders, whether it
 * has remote decodes and its prompt tokens, so an owner keeps it for its
 * next batches (its split requests' remote KV does not grow). */
typedef struct {
  /* What pricing from a kept memo reads besides its holders, first and
   * together (the memo is some 20 KB, and an owner's batches with holders
   * come milliseconds apart: each line it reads is a miss; laid out field
   * by field, a kept memo's pricing read a dozen lines). */
  _Alignas(64) int32_t holder_count; /* the key; -1: nothing kept */
  bool remote;
  bool prefill, host_ma;
  bool in_exec;    /* its routes' ends and bytes are the instance's da_from, da_holder, da_*_bytes now */
  bool part_valid; /* part holds the decode holders' part of its last pricing (below) */
  int k;      /* holders */
  int routes; /* one per holder with traffic */
  int n;      /* the probe's entries */
  int64_t prefill_tokens;
  uint64_t paths_id; /* names its entries' paths for the probe (infsim_network_probe_keyed_id) */
  /* The decode holders' part of its last pricing (part_valid: dec's rates
   * and the CPU attention rate part_cpu_bytes_per_s are still those) */
  double part_cpu_bytes_per_s;
  infsim_distattn_holders_part part;
  infsim_batch_holder holders[INFSIM_KV_MAX_HOLDINGS];
  /* per holder j < k */
  int32_t kinds[INFSIM_KV_MAX_HOLDINGS];
  double writes[INFSIM_KV_MAX_HOLDINGS];  /* KV written, bytes a layer */
  double nominal[INFSIM_KV_MAX_HOLDINGS]; /* its route's nominal rate */
  double ma[INFSIM_KV_MAX_HOLDINGS];      /* its decodes' micro-attention on a GPU, one layer (0: none) */
  infsim_distattn_holder dec[INFSIM_KV_MAX_HOLDINGS]; /* the decode holders (rates: the last probe's) */
  /* per route r < routes */
  int32_t route_to[INFSIM_KV_MAX_HOLDINGS], route_of[INFSIM_KV_MAX_HOLDINGS]; /* its holder: pool, index j */
  double out_bytes[INFSIM_KV_MAX_HOLDINGS], back_bytes[INFSIM_KV_MAX_HOLDINGS]; /* a step, all layers */
  /* the probe's entries i < n: route, direction (0: to the holder), holder index, path */
  int route[2 * INFSIM_KV_MAX_HOLDINGS], dir[2 * INFSIM_KV_MAX_HOLDINGS], entry_holder[2 * INFSIM_KV_MAX_HOLDINGS];
  int lens[2 * INFSIM_KV_MAX_HOLDINGS];
  int32_t paths[2 * INFSIM_KV_MAX_HOLDINGS][INFSIM_NET_MAX_PATH];
  /* where an entry's share goes: its route's rate in the instance
   * (da_out_rate or da_back_rate) and its holder's (dec) */
  double *route_rate[2 * INFSIM_KV_MAX_HOLDINGS], *holder_rate[2 * INFSIM_KV_MAX_HOLDINGS];
  double entry_bytes[2 * INFSIM_KV_MAX_HOLDINGS]; /* its route's bytes that way, a step, all layers (> 0) */
} sim_da_memo;
_Static_assert(offsetof(sim_da_memo, holders) <= 128, "sim_da_memo: a kept memo's scalars stay on its first two cache lines");

/* The simulated executor's view of one instance's batch in flight. The
 * fields every batch reads or writes come first, in the order a batch's
 * end and the next start touch them (its end: the generation, steps,
 * bytes, start and what is left to do on the links, in the first cache
 * line); the per-route arrays, which only batches with holders use, last.
 * A record starts on a cache line (aligned, allocated so). */
typedef struct {
  _Alignas(64) uint32_t generation; /* bumped when a batch starts or is cut: older events are stale */
  int da_flows;
  bool da_prompt_pending; /* a prompt batch's traffic goes on the links when it ends */
  bool decode_only;
  bool host_ma; /* its decode steps attend host KV on the CPU (policy.cpu_tier: ma) */
  int da_routes;
  int64_t steps;
  double da_step_bytes; /* what one step sends to and gets from the holders, all layers */
  int64_t start_ns;
  int64_t lead_ns;    /* swap traffic before the batch's compute */
  int64_t compute_ns; /* the batch's time after lead_ns */
  int64_t end_ns;     /* the batch's end (after cuts) */
  int64_t first_context;
  infsim_decode_run run; /* cost of its decode steps (decode-only batches) */
  /* DistAttention over a run of decode steps (distattn.h): per layer, the
   * slowest holder's path R and the merge M stay put while the local
   * attention A_j grows; with overlap a step pays max(0, R - A_j) + M. */
  double distattn_step_ns; /* a prompt batch's extra (one step) */
  double da_remote_ns;     /* R, per layer */
  double da_merge_ns;      /* M, per layer */
  double da_guest_ns;      /* the creditor's MA for guests, per step (all layers) */
  int64_t da_cross;        /* the first step j with A_j >= R (overlap hides R from there) */
  /* Links short of the flows' demand: no step is shorter than the slowest
   * route's bytes per step at its max-min share (da_floor_ns); steps before
   * da_floor_steps are held to it (a run's steps only grow). */
  double da_floor_ns;
  int64_t da_floor_steps;
  /* The memo whose probe entries are the batch's routes' directions with
   * bytes, in route order (direct_step_ns, a kept memo); NULL: none. */
  const sim_da_memo *da_memo;
  int64_t row; /* its iterations.csv row, or -1 */
  /* The creditor's micro-attention for its guests, last priced: for
   * guest_requests over guest_tokens (its guests' KV does not grow while
   * their owners' runs go on: the next batches mostly ask the same). */
  int64_t guest_requests, guest_tokens;
  double guest_step_ns;
  /* The clock term (costmodel.h): the instance's busy fraction when its
   * latest batch's compute started (0 at the start: an idle GPU). */
  double busy_u_at_start;
  double compute_share; /* its compute-bound share (costmodel.h) */
  /* The last steps_done answer (a policy reads many requests' blocks at
   * one time, and again later in the run): for this generation, as of
   * done_at_ns; done_after_ns: the end of the step after it (while
   * done_steps < steps). */
  uint32_t done_generation;
  int64_t done_at_ns, done_steps, done_after_ns;
  sim_da_memo *memo; /* its last batch with holders (no relay): allocated at its first; NULL before */
  struct sim_flow_set_s *flow_set; /* its last decode run's flows by route (sim_executor.c); NULL before */
  uint64_t da_paths_named; /* the last paths_id given to its memo */
  infsim_batch_agg agg; /* its first step's aggregates (for a timeline only: not kept without one) */
  /* Per route of a batch's DistAttention (from da_from, the owner or a
   * node's relay, to da_holder): what one step sends there and gets back
   * (all layers), at what rates, and a decode run's steady flows
   * (network.h), one per direction, from its start until it ends. */
  int32_t da_holder[SIM_DA_MAX_ROUTES], da_from[SIM_DA_MAX_ROUTES];
  double da_out_bytes[SIM_DA_MAX_ROUTES], da_back_bytes[SIM_DA_MAX_ROUTES];
  double da_out_rate[SIM_DA_MAX_ROUTES], da_back_rate[SIM_DA_MAX_ROUTES]; /* the step's shares */
  int64_t da_flow[2 * SIM_DA_MAX_ROUTES];
} sim_exec_instance;
_Static_assert(offsetof(sim_exec_instance, end_ns) + sizeof(int64_t) <= 64,
               "sim_exec_instance: what a batch's end reads stays in the record's first cache line");

typedef struct {
  infsim_msg msg;
  int64_t sent_ns;
  int64_t flow; /* its network flow, or -1 (a control message, a timer) */
  int32_t next_free;
} msg_slot;

struct infsim_sim {
  infsim_sim_config c;
  infsim_cost_model cost;
  infsim_sched *sched;
  int32_t n_instances;
  infsim_event_heap heap;
  int64_t now_ns;
  size_t next_arrival;
  /* executor */
  sim_exec_instance *exec;
  infsim_iteration_row *iterations;
  size_t n_iterations;
  size_t cap_iterations;
  /* transport */
  infsim_network *net;
  uint32_t net_generation;  /* the live EV_NETWORK event's */
  int64_t net_scheduled_ns; /* its time, or INT64_MAX */
  int64_t *net_done;        /* slots of messages whose flows ended, to deliver */
  size_t n_net_done;
  size_t cap_net_done;
  msg_slot *msgs;
  int32_t msg_capacity;
  int32_t msg_free;
  int32_t msgs_in_use; /* messages and timers in flight */
  int32_t msgs_peak;
  int64_t bytes_sent;
  /* DistAttention's queries, partials and KV written to holders, counted
   * per finished step (the cost model prices them; they are no messages) */
  double distattn_bytes;
  /* samples */
  infsim_sample_row *samples;
  size_t n_samples;
  size_t cap_samples;
  size_t samples_peak; /* most rows held at once (thinning drops some) */
  int64_t sample_interval_ns;
  int64_t max_ticks;
  infsim_run_counters counters;
  int64_t events_since_full_check;
  int64_t next_watch_ns; /* the watch's next tick */
  /* A decode run's fixed part by its size (costmodel.h's decode run
   * init; the one cost model prices every instance), 0 until a run of
   * that size is priced: most runs are of a few dozen requests. */
  double run_fixed_ns[SIM_RUN_FIXED_SIZES];
};

/* sim_executor.c */
infsim_executor sim_executor_make(infsim_sim *s);
/* True when an iteration event of `instance` with this generation is current. */
bool sim_executor_current(const infsim_sim *s, int32_t instance, uint32_t generation);

/* sim_transport.c */
infsim_transport sim_transport_make(infsim_sim *s);
/* Takes the message of an EV_MESSAGE event out of the pool. */
infsim_msg sim_transport_take(infsim_sim *s, int32_t slot, int64_t *sent_ns);
/* An EV_NETWORK event: advances the network to now, delivering the
 * messages whose flows ended, and schedules the next. */
/* Keeps one live EV_NETWORK event at the network's next change (after
 * flows are added or removed outside a network event). */
infsim_status sim_transport_reschedule(infsim_sim *s, infsim_error *err);
/* Ends the steady DistAttention flows of the instance's run (at its end). */
infsim_status sim_executor_run_ended(infsim_sim *s, int32_t instance, infsim_error *err);
infsim_status sim_transport_network_event(infsim_sim *s, uint32_t generation, infsim_error *err);
/* The route's bandwidth (its narrowest link) and latency between two instances. */
void sim_transport_route(const infsim_sim *s, int32_t src, int32_t dst, double *bytes_per_s, int64_t *latency_ns);

#endif
