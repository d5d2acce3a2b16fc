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
**   D -> C                 RELEASE        (D gives up: C drops the reservation; a cancel,
**                                          below, asks for an answer)
**   D -> C                 PROBE          (a MOVE past its timeout: has it arrived?)
**   C -> D                 CONFIRM        (answer: landed, refused, arriving, or nothing seen)
**   gManager -> C          PROBE          (a proposal not confirmed after 8 timeouts: what became of it?)
**   C -> gManager          CONFIRM        (answer: landed, refused, arriving, nothing seen, or unknown)
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
** kept a while for repeats, then dropped (a reservation dropped unused
** is kept as a refusal, so that data or a probe coming later is refused).
**
** The gManager keeps its record of a proposed move until the move is
** confirmed (it enters the ledger then), refused, or known lost: a record
** not confirmed 8 timeouts after the proposal is checked by a PROBE to
** the creditor, which answers from its own record (landed: into the
** ledger; refused or no record at all: dropped; arriving or nothing seen
** yet: asked again later); a creditor that does not answer max_retries + 1
** times in a row is taken for lost. A debtor's next attempt tells the
** gManager that the one before was refused.
**
** A move whose request ended while it was on the way (infsim_contract_cancel)
** is cancelled: the debtor sends RELEASE asking for an answer, with the
** usual timeout and retries, and stops its payload on the way (transport.h:
** abort); the creditor drops the reservation (or, if none
** came yet, keeps a refusal, so a late RESERVE or MOVE reserves nothing)
** and answers with a CONFIRM.
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
enum {
  INFSIM_CONTRACT_TIMER_STEP = 0x7100,
  INFSIM_CONTRACT_TIMER_LEASE = 0x7101,
  INFSIM_CONTRACT_TIMER_LEDGER = 0x7102 /* the gManager checks its records not confirmed */
};
/* CONFIRM's a: the move landed, was refused (no reservation: the lease
 * ran out, or the blocks are gone), or (answers to a PROBE) its KV is
 * arriving, or the creditor has seen none of it; to the gManager's PROBE
 * also: the creditor has no record of it at all (its reservation never
 * came, or its answer expired long ago). */
enum {
  INFSIM_CONFIRM_REFUSED = 0,
  INFSIM_CONFIRM_LANDED = 1,
  INFSIM_CONFIRM_ARRIVING = 2,
  INFSIM_CONFIRM_NOT_SEEN = 3,
  INFSIM_CONFIRM_UNKNOWN = 4
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
  /* Optional: the bytes of KV that moving m now carries: of the blocks
   * that would leave m->from (its newest there, at most m->blocks), those
   * that hold KV. NULL: m->blocks full blocks. */
  int64_t (*move_bytes)(void *self, const infsim_gm_move *m, int64_t now_ns);
  /* Optional: a borrow for req on debtor (or a planned move from it) was
   * cancelled (infsim_contract_cancel): it ends here, without
   * borrow_done or move_done; the debtor may look again for room. */
  void (*cancelled)(void *self, int32_t debtor, int64_t req, int64_t now_ns);
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
  int64_t kv_sent_bytes;  /* bytes of all of them (less what a cancel stopped before it was carried) */
  int64_t probes;         /* PROBEs sent by debtors */
  int64_t cancelled;      /* borrows and moves cancelled: their request ended on the way */
  int64_t ledger_probes;  /* PROBEs sent by the gManager about its records not confirmed */
  int64_t ledger_lost;    /* ... records dropped with no answer from their creditor */
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

/* Request req ended (finished, rejected, or its KV dropped): every move of
 * its KV on the way is cancelled (a RELEASE to its creditor, answered,
 * with the usual timeout and retries), and a borrow for req still asking
 * the gManager ends. Each ends through env.cancelled. A move of another
 * request's KV made for req goes on (it still makes room). */
infsim_status infsim_contract_cancel(infsim_contract *c, int64_t req, int64_t now_ns, infsim_error *err);

/* Borrows and planned moves on record (in flight, or cancelled and being
 * wound up); O(1). */
size_t infsim_contract_borrows(const infsim_contract *c);

/* True when a borrow for (debtor, req) is in flight (a cancelled one being
 * wound up is not). */
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
 * proposals to it or from it end without a callback (nobody is left to
 * finish them; a move into it can land nowhere). */
void infsim_contract_instance_lost(infsim_contract *c, int32_t instance);
int64_t infsim_contract_reserved(const infsim_contract *c, int32_t instance);
/* The gManager's records of proposed moves (answers kept for repeats included). */
int64_t infsim_contract_proposals(const infsim_contract *c);
/* True while the gManager keeps a record of the move (debtor, req) proposed,
 * not yet confirmed. */
bool infsim_contract_proposal_open(const infsim_contract *c, int32_t debtor, int64_t req);
const infsim_contract_counters *infsim_contract_counters_of(const infsim_contract *c);
/* The protocol's tables in flight (borrows, reservations, proposals). */
void infsim_contract_high_water(const infsim_contract *c, infsim_high_water_set *out);

/* Aborts when an invariant of the header comment is broken. */
void infsim_contract_check(const infsim_contract *c);

#endif
