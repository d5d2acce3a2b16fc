/*
** contract.h: DistKV-LLM's contract protocol (docs/distkv.md, "Contract
** protocol"): a debtor borrows KV blocks through the gManager and a
** creditor, every step a message on the transport that may be lost or
** delayed.
**
**   debtor D -> gManager   BORROW_REQUEST (req r, need n, attempt, fresh allowed)
**   gManager -> D          BORROW_PROPOSE (move: request q, creditor C, b blocks, fresh)
**   D -> C                 RESERVE        (C sets b blocks aside, or what its spare allows: FCFS;
**                                          an exchange needs free, not spare; the gManager's
**                                          own moves are all or nothing)
**   C -> D                 RESERVE_ACK    (blocks granted, or refused; fresh blocks are committed here)
**   D -> C                 MOVE           (b blocks of KV; nothing for fresh blocks)
**   C -> D, C -> gManager  CONFIRM        (the blocks are q's, held by C)
**   D -> C                 RELEASE        (D gives up: C drops the reservation)
**   D -> C                 PROBE          (a MOVE past its timeout: has it arrived?)
**   C -> D                 CONFIRM        (answer: landed, refused, arriving, or nothing seen)
**
** One borrow is one move: the gManager proposes the first move of its
** plan; a need larger than one creditor's spare takes more borrows.
** Every message of a borrow carries its id as seq and its attempt number.
** Receivers de-duplicate: the gManager answers a repeated request with the
** same proposal, a creditor a repeated RESERVE or MOVE with the same
** answer. The debtor keeps one timer per step; on timeout it resends (same
** attempt), except a MOVE: its KV is not sent again on a timeout, only a
** PROBE, and the creditor answers what it sees (the data landed, is
** arriving, or nothing came); the KV is sent again only when nothing came
** (lost or delayed before it left), and an arriving move is probed again
** later, at a doubling interval. A refusal or failed move starts a new
** attempt (a new plan);
** after max_retries the borrow fails (the debtor sends RELEASE and is told
** through borrow_done). A creditor's reservation is a lease that expires
** when no MOVE comes, so a lost debtor leaks nothing; a MOVE arriving into
** it, or a probe from its debtor, extends it; its answers are
** kept a while for repeats, then dropped.
**
** What a move does to KV memory is the caller's (env.commit): the module
** only decides when. It keeps no global state and is driven by calls: a
** new borrow, a delivered message (including its own timers).
**
** Invariants (infsim_contract_check): per creditor, reserved blocks are
** the sum of its live reservations; every borrow is in exactly one state.
*/
#ifndef INFSIM_CONTRACT_H
#define INFSIM_CONTRACT_H

#include <stdbool.h>
#include <stdint.h>

#include "infsim/gmanager.h"
#include "infsim/high_water.h"
#include "infsim/status.h"
#include "infsim/transport.h"

/* Timers of this module carry a = one of these (policies use others). */
enum { INFSIM_CONTRACT_TIMER_STEP = 0x7100, INFSIM_CONTRACT_TIMER_LEASE = 0x7101 };
/* CONFIRM's a: the move landed, was refused (no reservation: the lease
 * ran out, or the blocks are gone), or (answers to a PROBE) its KV is
 * arriving, or the creditor has seen none of it. */
enum {
  INFSIM_CONFIRM_REFUSED = 0,
  INFSIM_CONFIRM_LANDED = 1,
  INFSIM_CONFIRM_ARRIVING = 2,
  INFSIM_CONFIRM_NOT_SEEN = 3
};

typedef struct {
  void *self;
  /* The instance's free GPU blocks now (the rManager's truth). */
  int64_t (*free_blocks)(void *self, int32_t instance);
  /* Makes a move real at C (fresh: new blocks of m->req at m->to; else
   * m->blocks of m->req's blocks held at m->from move to m->to). Returns
   * the blocks moved: 0 when it cannot happen any more (the request ended,
   * its blocks are no longer there). */
  int64_t (*commit)(void *self, const infsim_gm_move *m, int64_t now_ns);
  /* A borrow for req on debtor ended: ok, or given up (the caller falls
   * back, e.g. to preemption). */
  void (*borrow_done)(void *self, int32_t debtor, int64_t req, bool ok, int64_t now_ns);
  /* Optional: a move the gManager planned (infsim_contract_move) ended at
   * its source: ok when its blocks left. */
  void (*move_done)(void *self, int32_t source, int64_t req, bool ok, int64_t now_ns);
  /* Optional: creditor refused a reservation (the gManager's view of it
   * was wrong: it may want to report at once). */
  void (*refused)(void *self, int32_t creditor, int64_t now_ns);
} infsim_contract_env;

typedef struct {
  int64_t timeout_ns;       /* a step's wait for its answer */
  int32_t max_retries;      /* per borrow */
  int64_t reserve_blocks;   /* a creditor never lends its last reserve_blocks */
  int64_t block_bytes;      /* one block's KV, all layers */
  int64_t control_bytes;    /* a control message on the wire */
  double move_bytes_per_s;  /* for the MOVE timeout: 2 x b x block_bytes at this rate */
  int32_t probe_backoff_max; /* an arriving move's probe interval (and its lease's extension)
                              * doubles up to this many times the first (>= 1) */
  infsim_gm_planner planner;
} infsim_contract_params;

typedef struct {
  int64_t borrows;        /* ended ok */
  int64_t failed;         /* given up */
  int64_t kv_moves;       /* moves committed (fresh ones included) */
  int64_t kv_moved_bytes; /* bytes of the non-fresh ones */
  int64_t messages;       /* sent */
  int64_t retries;        /* resends and new attempts */
  int64_t refused;        /* reservations refused by creditors */
  int64_t kv_sends;       /* MOVE payloads sent (non-fresh), resends included */
  int64_t kv_resends;     /* ... of them resent: the creditor had seen nothing */
  int64_t kv_sent_bytes;  /* bytes of all of them */
  int64_t probes;         /* PROBEs sent */
} infsim_contract_counters;

typedef struct infsim_contract infsim_contract;

/* gm (the gManager's ledger) and net are borrowed and must outlive it. */
infsim_status infsim_contract_new(const infsim_contract_params *p, infsim_gm *gm, infsim_transport net,
                                  infsim_contract_env env, int32_t instances, infsim_contract **out,
                                  infsim_error *err);
void infsim_contract_free(infsim_contract *c);

/* Debtor `debtor` starts a borrow of `need` blocks for req at now_ns;
 * nothing happens when one is already in flight for (debtor, req).
 * fresh_ok: req's new blocks may be placed at the creditor (a prompt being
 * admitted); otherwise only existing blocks move (the planner is told no
 * request needs new ones). */
infsim_status infsim_contract_borrow(infsim_contract *c, int32_t debtor, int64_t req, int64_t need, bool fresh_ok,
                                     int64_t now_ns, infsim_error *err);
/* A move the gManager planned itself (DGFM: a recall, consolidation or
 * swap half), run by its source m->from as a borrow from the reservation
 * on. An exchange (a swap half) needs only free blocks at the destination,
 * not spare above the reserve: its partner frees as many there. */
infsim_status infsim_contract_move(infsim_contract *c, const infsim_gm_move *m, bool exchange, int64_t now_ns,
                                   infsim_error *err);

/* True when a borrow for (debtor, req) is in flight. */
bool infsim_contract_in_flight(const infsim_contract *c, int32_t debtor, int64_t req);
/* Borrows in flight from debtor (any request). */
int64_t infsim_contract_pending(const infsim_contract *c, int32_t debtor);
/* Moves the gManager planned itself (infsim_contract_move) still in flight. */
int64_t infsim_contract_planned_in_flight(const infsim_contract *c);

/* True for the message kinds and timers this module handles. */
bool infsim_contract_handles(const infsim_msg *msg);
/* A message (or one of its timers) reached msg->dst at now_ns. */
infsim_status infsim_contract_deliver(infsim_contract *c, const infsim_msg *msg, int64_t now_ns, infsim_error *err);

/* The gManager is down (its messages are dropped on arrival) or back. */
void infsim_contract_set_gm_down(infsim_contract *c, bool down);

/* Blocks set aside at a creditor for moves that have not landed. */
/* instance was lost: its reservations (as a creditor) go with its memory,
 * its borrows and moves (as a debtor or DGFM source) and the gManager's
 * proposals to it end without a callback (nobody is left to finish them). */
void infsim_contract_instance_lost(infsim_contract *c, int32_t instance);
int64_t infsim_contract_reserved(const infsim_contract *c, int32_t instance);
const infsim_contract_counters *infsim_contract_counters_of(const infsim_contract *c);
/* The protocol's tables in flight (borrows, reservations, proposals). */
void infsim_contract_high_water(const infsim_contract *c, infsim_high_water_set *out);

/* Aborts when an invariant of the header comment is broken. */
void infsim_contract_check(const infsim_contract *c);

#endif
