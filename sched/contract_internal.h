/*
** contract_internal.h: the contract protocol's state, shared by its two
** sources (not a public header: users see contract.h):
**  - contract.c: the debtor and the creditor (borrows, reservations, the
**    cancel of a move whose request ended, the module's entry points);
**  - contract_ledger.c: the gManager (proposals it made, their records
**    until the move is confirmed, refused or known lost, its probes of
**    creditors about them).
** The debtor's and creditor's records are private to contract.c; the
** gManager's proposals are here, since the debtor's side starts one for a
** move the gManager planned itself and reports them as high-water marks.
*/
#ifndef INFSIM_CONTRACT_INTERNAL_H
#define INFSIM_CONTRACT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "infsim/contract.h"

/* How long answers are kept for repeats, and a reservation's lease, in
 * timeouts: a retry of a step comes within max_retries timeouts. */
enum { KEEP_TIMEOUTS = 8, LEASE_TIMEOUTS = 4 };
/* CONFIRM to the gManager: b = attempt << STATUS_BITS | status (INFSIM_CONFIRM_*). */
enum { STATUS_BITS = 3 };

typedef struct contract_borrow contract_borrow; /* contract.c */
typedef struct contract_resv contract_resv;     /* contract.c */

/* The gManager's record of a move it proposed (contract_ledger.c). */
typedef struct {
  int32_t debtor;
  uint32_t id;
  int64_t attempt;
  infsim_gm_move mv;
  bool has_move;
  bool confirmed;
  int32_t strikes;    /* probes to the creditor in a row not answered (or unknown to it) */
  int32_t waits;      /* answers "arriving" or "nothing seen yet" in a row */
  int64_t expires_ns; /* dropped then; a move not confirmed: checked then */
} contract_proposal;

struct infsim_contract {
  infsim_contract_params p;
  infsim_gm *gm;
  infsim_transport net;
  infsim_contract_env env;
  int32_t instances;
  bool gm_down;
  uint32_t next_id;
  int64_t next_gen;
  int64_t *reserved; /* per instance */
  contract_borrow *b;
  size_t nb, cb;
  contract_resv *r;
  size_t nr, cr;
  contract_proposal *g;
  size_t ng, cg;
  /* No kept answer (r) and no record (g) expires before these: a
   * delivery's sweep walks them only from then on (a bound, lowered as
   * expiries are set, raised by the walk). */
  int64_t r_sweep_ns, g_sweep_ns;
  size_t peak_b, peak_r, peak_g; /* most borrows, reservations, proposals at once */
  infsim_contract_counters n;
};

/* ---- shared by both sources (contract.c) ---- */

/* Grows an array by doubling for one more element (which the caller then
 * adds: *peak counts it). */
infsim_status contract_grow(void **arr, size_t *cap, size_t count, size_t elem, size_t *peak, infsim_error *err);
/* Sends a message of the protocol (a control message unless bytes > 0). */
infsim_status contract_send(infsim_contract *c, infsim_msg_kind kind, int32_t src, int32_t dst, uint32_t seq,
                            int64_t req, int64_t blocks, int64_t bytes, int64_t a, int64_t b, int64_t now,
                            infsim_error *err);
/* A timer of the module's (kind: INFSIM_CONTRACT_TIMER_*) at at_endpoint. */
infsim_status contract_timer(infsim_contract *c, int32_t at_endpoint, int64_t kind, uint32_t seq, int64_t req,
                             int64_t blocks, int64_t gen, int64_t at, infsim_error *err);
/* A kept answer or record of the gManager's now expires at t (the sweep's bound). */
static inline void contract_expires_at(int64_t *sweep_ns, int64_t t) {
  if (t < *sweep_ns) *sweep_ns = t;
}
/* Twice the transfer time of mv's blocks, full, at policy.move_GBps. */
int64_t contract_move_ns(const infsim_contract *c, const infsim_gm_move *mv);
/* t doubled k times, at most max_mult x t. */
int64_t contract_backed_off(int64_t t, int32_t k, int32_t max_mult);

/* ---- the gManager's side (contract_ledger.c) ---- */

/* A message (or timer) for the gManager. */
infsim_status contract_gm_deliver(infsim_contract *c, const infsim_msg *m, int64_t now, infsim_error *err);
/* Drops records that expired by now; a record of a move not confirmed is
 * checked instead (a probe to its creditor). */
infsim_status contract_gm_sweep(infsim_contract *c, int64_t now, infsim_error *err);
/* Room for one more record (contract_gm_note_plan then cannot fail). */
infsim_status contract_gm_room(infsim_contract *c, infsim_error *err);
/* The gManager's record of its own plan m, run by m->from as borrow id. */
void contract_gm_note_plan(infsim_contract *c, uint32_t id, const infsim_gm_move *m, int64_t now);
/* instance was lost: the records of moves from it or to it go. */
void contract_gm_instance_lost(infsim_contract *c, int32_t instance);

#endif
