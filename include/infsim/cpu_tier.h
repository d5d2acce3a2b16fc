/*
** cpu_tier.h: a node's host memory as a KV creditor over PCIe (the CPU
** tier of the infinite-llm policy; docs/distkv.md, "CPU tier").
**
** Each node's host memory is one pool (kv.h's host pool h is node h's);
** preemption swap space is part of it. With policy.cpu_tier on, a borrow
** that finds no GPU creditor (the gManager proposes none, or creditors
** refuse until the retries are spent) falls back to the debtor's own
** node's host pool: GPU creditors first, host memory last (it is slower
** to attend). The host pool is node-local memory, so there is no contract
** with a remote party: the debtor takes the blocks itself, and the only
** message is the copy, a MOVE over its PCIe link to the host endpoint
** (instances + node in the transport and network). What moves: a prompt
** gathering blocks for admission gets new (fresh) blocks there, nothing
** copied; otherwise the newest blocks of the request that asked (or the
** debtor's request with the most blocks on it) are copied, which frees as
** many on the GPU. The amount is the shortfall plus
** policy.borrow_ahead_blocks, at most what the pool has free less what
** moves in flight will take. Blocks in host memory come back to the
** owner's GPU when it has room again (infsim_cpu_tier_recall, at the
** owner's heartbeat ticks: a copy over its PCIe link from the host, as the
** way out); else they stay until their request finishes or is preempted
** (DGFM moves GPU pieces only).
**
** A move of a request's KV whose request ends on the way (finished,
** rejected, preempted by recompute, or lost with its instance) is
** cancelled (infsim_cpu_tier_cancel): its host reservation is free at
** once, its copy stops on the PCIe link (transport.h: abort) and never
** lands. No message is needed: the pool is the debtor's node's own memory.
**
** Invariants: per host, reserved blocks are the sum of the moves in
** flight to it (infsim_cpu_tier_check). A swap-out may take a reserved
** block meanwhile: a move lands what room is left.
*/
#ifndef INFSIM_CPU_TIER_H
#define INFSIM_CPU_TIER_H

#include <stdbool.h>
#include <stdint.h>

#include "infsim/high_water.h"
#include "infsim/status.h"
#include "infsim/transport.h"

struct infsim_sched;

typedef enum { INFSIM_CPU_TIER_OFF = 0, INFSIM_CPU_TIER_MA = 1, INFSIM_CPU_TIER_FETCH = 2 } infsim_cpu_tier_mode;

typedef struct infsim_cpu_tier infsim_cpu_tier;

/* A move to host memory ended: ok when blocks landed there. */
typedef void (*infsim_cpu_tier_done_fn)(void *self, int32_t debtor, int64_t req, bool ok, int64_t now_ns);
/* A move made for req on debtor was cancelled (infsim_cpu_tier_cancel):
 * it ends here, without done(); the debtor may look again for room. */
typedef void (*infsim_cpu_tier_cancelled_fn)(void *self, int32_t debtor, int64_t req, int64_t now_ns);

typedef struct {
  int64_t moves;       /* moves that landed */
  int64_t moved_bytes; /* KV copied GPU -> host (fresh blocks copy nothing) */
  int64_t blocks;      /* blocks placed in host memory */
  int64_t recalls;         /* recalls that landed (host -> GPU) */
  int64_t recalled_blocks; /* blocks they brought back */
  int64_t recalled_bytes;  /* KV copied host -> GPU */
  int64_t cancelled;       /* moves (either way) cancelled: their request's KV ended on the way */
} infsim_cpu_tier_counters;

/* The tier of the scheduler's host pools; net carries the copies (never
 * lost: a PCIe copy inside a node is not a network message). */
/* may_gather(self, req): req may still take new blocks (the policy's one
 * gathering prompt) when its fresh move lands. cancelled may be NULL. */
infsim_status infsim_cpu_tier_new(struct infsim_sched *s, infsim_transport net, int64_t ahead_blocks,
                                  infsim_cpu_tier_done_fn done, bool (*may_gather)(void *self, int64_t req),
                                  infsim_cpu_tier_cancelled_fn cancelled, void *self, infsim_cpu_tier **out,
                                  infsim_error *err);
void infsim_cpu_tier_free(infsim_cpu_tier *t);

/* Free blocks of instance's node's host pool, less moves in flight there. */
int64_t infsim_cpu_tier_room(const infsim_cpu_tier *t, int32_t instance);
/* True while a move for (debtor, req) is in flight. */
bool infsim_cpu_tier_in_flight(const infsim_cpu_tier *t, int32_t debtor, int64_t req);

/* debtor's borrow for req found no GPU creditor: start a move to its
 * node's host pool (fresh_ok: req, a prompt waiting for admission, may
 * get new blocks there). *started is false when there is nothing to move
 * or no room. */
infsim_status infsim_cpu_tier_fallback(infsim_cpu_tier *t, int32_t debtor, int64_t req, bool fresh_ok,
                                       int64_t now_ns, bool *started, infsim_error *err);

/* Recalls to instance's GPU the host blocks of its decoding requests
 * whose whole host part fits its free blocks less keep_free (and less
 * recalls in flight to it), smallest host part first: each a MOVE of its
 * blocks from the node's host endpoint over the instance's PCIe link,
 * landing what room is left when it arrives. One at a time per request. */
infsim_status infsim_cpu_tier_recall(infsim_cpu_tier *t, int32_t instance, int64_t keep_free, int64_t now_ns,
                                     infsim_error *err);

/* Request req's KV ended (finished, rejected, preempted by recompute, or
 * dropped with a lost instance): every move of its KV, to host memory or
 * back to its GPU, is cancelled: its host reservation is freed now, its
 * copy stopped on the link (the bytes not carried yet are never sent),
 * and cancelled() called. A move of another request's KV made for req
 * goes on (it still makes room). */
infsim_status infsim_cpu_tier_cancel(infsim_cpu_tier *t, int64_t req, int64_t now_ns, infsim_error *err);

/* True for messages to or from a host endpoint (the tier's copies). */
bool infsim_cpu_tier_handles(const infsim_cpu_tier *t, const infsim_msg *msg);
/* A copy reached host memory: the blocks move (what is still there to
 * move, as far as room allows), then done() is called. */
infsim_status infsim_cpu_tier_deliver(infsim_cpu_tier *t, const infsim_msg *msg, int64_t now_ns, infsim_error *err);

/* Blocks in flight to instance's node's host pool. */
int64_t infsim_cpu_tier_reserved(const infsim_cpu_tier *t, int32_t instance);
const infsim_cpu_tier_counters *infsim_cpu_tier_counters_of(const infsim_cpu_tier *t);
/* The mark cpu_tier_reserved: host blocks reserved for moves in flight to
 * a node's pool (the largest over nodes; capacity: a node's pool). */
void infsim_cpu_tier_high_water(const infsim_cpu_tier *t, infsim_high_water_set *out);

/* Aborts when an invariant of the header comment is broken. */
void infsim_cpu_tier_check(const infsim_cpu_tier *t);

#endif
