/*
** policy_infinite.h: what the `infinite-llm` policy (sched/policy_infinite.c)
** offers besides its policy.h table: the table itself, for policy.c's
** registry, and its counters, for summary.json's `distkv` object.
*/
#ifndef INFSIM_POLICY_INFINITE_H
#define INFSIM_POLICY_INFINITE_H

#include <stdbool.h>
#include <stdint.h>

#include "infsim/hardware.h"
#include "infsim/high_water.h"
#include "infsim/policy.h"

struct infsim_sched;

extern const infsim_policy_ops infsim_policy_infinite;

/* summary.json's distkv object (docs/distkv.md, "Outputs"). */
typedef struct {
  int64_t borrows;           /* borrows that landed */
  int64_t borrows_failed;    /* given up (the request fell back to preemption) */
  int64_t kv_moves;          /* moves committed, DGFM's included */
  int64_t kv_moved_bytes;
  int64_t recalls;           /* DGFM recalls issued */
  int64_t swaps;             /* DGFM swap pairs issued */
  int64_t consolidations;    /* DGFM consolidations issued */
  int64_t messages;          /* protocol, heartbeats and DGFM messages sent */
  int64_t messages_lost;     /* dropped by faults.message_loss */
  int64_t retries;
  int64_t blocks_recomputed; /* KV blocks dropped by a lost instance's requests and its guests (faults) */
  int64_t instances_lost;    /* faults.lose_instance */
  int64_t requests_requeued; /* the lost instance's requests, dispatched again */
  int64_t heartbeats;
  int64_t gmanager_rebuilds;
  int64_t host_moves;       /* moves to host memory (CPU tier) that landed */
  int64_t host_moved_bytes; /* KV copied GPU -> host by them */
  int64_t host_blocks;      /* blocks they placed in host memory */
  int64_t gathers_undone;   /* gathered prompts that gave their blocks back to an older one */
  int64_t kv_sends;         /* KV move payloads put on the wire, resends included */
  int64_t kv_resends;       /* ... of them resends (the creditor had seen nothing of the first) */
  int64_t kv_sent_bytes;    /* their bytes */
  int64_t probes;           /* status probes of moves past their timeout */
  int64_t kv_moves_cancelled; /* moves (and borrows asking) whose request ended on the way */
  int64_t ledger_probes;    /* the gManager's checks of proposed moves not confirmed in 8 timeouts */
} infsim_distkv_stats;

/* What the simulated executor and transport need of the policy's
 * settings: DistAttention's wire precision (bytes per value) and overlap,
 * and the node whose host runs the gManager. Defaults (fp16, overlap,
 * node 0) for any other policy. */
void infsim_policy_infinite_wire(const char *policy_name, const void *settings, double *wire_bytes_per_value,
                                 bool *overlap, int32_t *gmanager_node);

/* The spread planner weighs a holder's link against micro-attention
 * (planner.h): the run (run/params.c), which knows the model, the GPU's
 * roofline attention rate and the links, gives them here, so that the
 * scheduler needs no cost model; relay: policy.distattn_relay is node.
 * Nothing for another policy or planner. */
void infsim_policy_infinite_set_link_costs(const char *policy_name, void *settings, const infsim_model_shape *model,
                                           double attn_flops_per_s, double nic_bytes_per_s, double nvlink_bytes_per_s,
                                           bool relay);

/* policy.cpu_tier (infsim_cpu_tier_mode) of infinite-llm's settings; off
 * for any other policy. */
int32_t infsim_policy_infinite_cpu_tier(const char *policy_name, const void *settings);

/* The counters of a scheduler running infinite-llm; false for any other policy. */
bool infsim_policy_infinite_stats(const struct infsim_sched *s, infsim_distkv_stats *out);

/* Adds the gManager ledger's and the protocol's high-water marks of a
 * scheduler running infinite-llm; nothing for any other policy. */
void infsim_policy_infinite_high_water(const struct infsim_sched *s, infsim_high_water_set *out);

#endif
