/*
** contract.c: the contract protocol's debtor and creditor (contract.h),
** and the module's entry points; the gManager's side (its proposals and
** their records until a move is confirmed, its probes of creditors) is in
** contract_ledger.c, the state both share in contract_internal.h.
**
** State lives in short arrays searched linearly (borrows in flight,
** creditors' reservations and kept answers; the gManager's proposals):
** they hold what is in flight, tens of entries, not the run's history.
** Kept answers and proposals expire KEEP_TIMEOUTS timeouts after they
** were given, long past any retry of the step; expired ones are swept
** whenever a message is delivered (before it is handled, as a timer at
** the same time would have dropped them), so they cost no event; a
** delivery before the earliest expiry (kept as a bound) walks nothing.
**
** A borrow has one timer at a time, however many steps it goes through:
** each step sets the borrow's deadline, and the timer, when it fires
** before the deadline (an earlier step's), is set again for it. A borrow
** that ends before its first deadline (the common case) costs one timer
** event, not one per step. Timers carry a generation number: a timer
** whose generation is stale is ignored, so no timer needs cancelling.
**
** A MOVE past its deadline is not sent again: a slow transfer (a narrow
** or crowded link) is not a lost one, and sending the whole payload again
** while the first copy is still arriving only crowds the link more (a
** congestion collapse: in an overloaded run thousands of copies of the
** same moves shared the links, each timing out in turn). The debtor sends
** a PROBE instead; the creditor answers from what it sees at its end (the
** move landed: CONFIRM as before; its bytes are arriving; nothing came).
** The payload goes again only when nothing came (a lost message, or one
** held back before it left), as TCP retransmits only unacknowledged data
** after its timer and backs its timer off (RFC 6298); while bytes arrive
** the debtor probes again at a doubling interval (up to
** probe_backoff_max times the move's first timeout), so a long transfer
** costs a few control messages. The creditor's lease on a reservation is
** extended the same way while a MOVE into it is arriving, and by each
** probe (its debtor is alive and may resend), so slow data does not land
** after its reservation was dropped; with nothing arriving and no probe,
** it still runs out and a lost debtor leaks nothing.
**
** The gManager keeps its record of a move it proposed until the move is
** confirmed, refused or known lost, checking it with a PROBE to the
** creditor when it is slow to be confirmed (contract_ledger.c); the
** creditor answers from its own record, as it answers a debtor's probe
** (answer_gm below), and extends no lease for it.
**
** A move whose request ends on the way (finished, rejected, its KV lost)
** is cancelled (infsim_contract_cancel): the debtor sends RELEASE asking
** for an answer and retries it on the step's timeout, as any step; the
** creditor drops the reservation at once (before, it held the blocks
** until its lease ran out, and longer while the dead request's payload
** kept arriving) and keeps a refusal, so that the payload landing later,
** or a RESERVE overtaken by the cancel, reserves and commits nothing.
** The debtor's side ends at once for its policy (env.cancelled); the
** record lives on, not counted as in flight, only to resend the cancel.
**
** A MOVE carries the KV its blocks hold (env.move_bytes: the blocks of a
** prompt not prefilled yet, or of one still gathering, hold none), not
** blocks x block_bytes; a move with none is a control message.
*/
#include "contract_internal.h"
#include "infsim/grow.h"

#include <assert.h>
#include <stdlib.h>

/* RESERVE's b: flags. */
enum { RESERVE_FRESH = 1, RESERVE_EXCHANGE = 2, RESERVE_WHOLE = 4 };
/* RELEASE's b: a cancel, answered by a CONFIRM (a give-up is not). */
enum { RELEASE_CANCEL = 1 };

typedef enum { B_ASKING = 0, B_RESERVING, B_MOVING, B_CANCELLING } borrow_state;

typedef struct contract_borrow {
  uint32_t id;
  int32_t debtor;
  int64_t req, need;
  borrow_state st;
  infsim_gm_move mv;
  int64_t attempt;
  int32_t retries;
  int64_t gen;         /* of the live timer */
  int64_t timer_ns;    /* when the live timer fires */
  int64_t deadline_ns; /* the current step times out then */
  int32_t arriving;    /* "arriving" answers in a row to this MOVE's probes */
  int64_t payload;     /* bytes of KV the last MOVE carried */
  bool probing;        /* a PROBE awaits its answer */
  bool exchange; /* a DGFM swap half */
  bool planned;  /* the gManager's own move: no new plan after a refusal */
  bool fresh_ok; /* req's new blocks may go to the creditor */
} borrow;

typedef enum { R_RESERVED = 0, R_COMMITTED, R_REFUSED } resv_state;

typedef struct contract_resv {
  int32_t debtor;
  uint32_t id;
  int64_t attempt;
  infsim_gm_move mv;
  resv_state st;
  int64_t gen;        /* of its lease timer */
  int64_t lease_ns;   /* a reservation runs out then (its timer re-arms until then) */
  int32_t extensions; /* lease extensions for a MOVE arriving */
  int64_t expires_ns; /* a kept answer (not a reservation) is dropped then */
} resv;

/* The arrays hold what is in flight. */
infsim_status contract_grow(void **arr, size_t *cap, size_t count, size_t elem, size_t *peak, infsim_error *err) {
  if (count + 1 > *peak) *peak = count + 1;
  if (!infsim_grow(arr, cap, count + 1, elem, 16)) return infsim_fail(err, INFSIM_ENOMEM, "contract: out of memory");
  return INFSIM_OK;
}

infsim_status infsim_contract_new(const infsim_contract_params *p, infsim_gm *gm, infsim_transport net,
                                  infsim_contract_env env, int32_t instances, infsim_contract **out,
                                  infsim_error *err) {
  if (p->timeout_ns <= 0 || p->max_retries < 0 || p->reserve_blocks < 0 || p->block_bytes <= 0 ||
      !(p->move_bytes_per_s > 0) || p->probe_backoff_max < 1 || instances < 1)
    return infsim_fail(err, INFSIM_EINPUT,
                       "contract: timeout, block bytes, move rate and probe back-off must be > 0");
  infsim_contract *c = calloc(1, sizeof *c);
  if (c) c->reserved = calloc((size_t)instances, sizeof *c->reserved);
  if (!c || !c->reserved) {
    infsim_contract_free(c);
    return infsim_fail(err, INFSIM_ENOMEM, "contract: out of memory");
  }
  c->p = *p;
  c->gm = gm;
  c->net = net;
  c->env = env;
  c->instances = instances;
  c->next_id = 1;
  c->r_sweep_ns = c->g_sweep_ns = INT64_MAX;
  *out = c;
  return INFSIM_OK;
}

void infsim_contract_free(infsim_contract *c) {
  if (!c) return;
  free(c->reserved);
  free(c->b);
  free(c->r);
  free(c->g);
  free(c);
}

bool infsim_contract_handles(const infsim_msg *m) {
  switch ((infsim_msg_kind)m->kind) {
  case INFSIM_MSG_BORROW_REQUEST:
  case INFSIM_MSG_BORROW_PROPOSE:
  case INFSIM_MSG_RESERVE:
  case INFSIM_MSG_RESERVE_ACK:
  case INFSIM_MSG_MOVE:
  case INFSIM_MSG_CONFIRM:
  case INFSIM_MSG_PROBE: return true;
  case INFSIM_MSG_RELEASE: return m->seq != 0; /* seq 0: a finished request's release, not ours */
  case INFSIM_MSG_TIMER:
    return m->a == INFSIM_CONTRACT_TIMER_STEP || m->a == INFSIM_CONTRACT_TIMER_LEASE ||
           m->a == INFSIM_CONTRACT_TIMER_LEDGER;
  default: return false;
  }
}

infsim_status contract_send(infsim_contract *c, infsim_msg_kind kind, int32_t src, int32_t dst, uint32_t seq,
                            int64_t req, int64_t blocks, int64_t bytes, int64_t a, int64_t b, int64_t now,
                            infsim_error *err) {
  infsim_msg m = {.kind = kind, .src = src, .dst = dst, .seq = seq, .req = req, .blocks = blocks,
                  .bytes = bytes > 0 ? bytes : c->p.control_bytes, .a = a, .b = b};
  c->n.messages++;
  return c->net.send(c->net.self, &m, now, err);
}

infsim_status contract_timer(infsim_contract *c, int32_t at_endpoint, int64_t kind, uint32_t seq, int64_t req,
                             int64_t blocks, int64_t gen, int64_t at, infsim_error *err) {
  infsim_msg m = {.kind = INFSIM_MSG_TIMER, .src = at_endpoint, .dst = at_endpoint, .seq = seq, .req = req,
                  .blocks = blocks, .a = kind, .b = gen};
  return c->net.timer(c->net.self, &m, at, err);
}

/* The most a move can carry: its blocks, full. */
static int64_t move_bytes(const infsim_contract *c, const infsim_gm_move *mv) {
  return mv->fresh ? 0 : mv->blocks * c->p.block_bytes;
}

/* What a MOVE of mv sent now carries: the KV its blocks hold (env). */
static int64_t payload_bytes(const infsim_contract *c, const infsim_gm_move *mv, int64_t now) {
  if (mv->fresh) return 0;
  if (!c->env.move_bytes) return move_bytes(c, mv);
  int64_t b = c->env.move_bytes(c->env.self, mv, now);
  assert(b >= 0 && b <= move_bytes(c, mv));
  return b;
}

/* Twice the transfer time of `bytes` at policy.move_GBps. */
static int64_t transfer_ns(const infsim_contract *c, int64_t bytes) {
  return (int64_t)(2.0 * (double)bytes / c->p.move_bytes_per_s * 1e9);
}

int64_t contract_move_ns(const infsim_contract *c, const infsim_gm_move *mv) {
  return transfer_ns(c, move_bytes(c, mv));
}

int64_t contract_backed_off(int64_t t, int32_t k, int32_t max_mult) {
  int64_t mult = 1;
  while (k-- > 0 && mult < max_mult) mult *= 2;
  return t * (mult < max_mult ? mult : max_mult);
}

/* True when the KV of the MOVE (debtor, seq, attempt) to creditor is
 * arriving there now (transport.h: in_flight; without it, never). */
static bool arriving(const infsim_contract *c, int32_t debtor, int32_t creditor, uint32_t seq, int64_t attempt,
                     int64_t now) {
  infsim_msg m = {.kind = INFSIM_MSG_MOVE, .src = debtor, .dst = creditor, .seq = seq, .a = attempt};
  return c->net.in_flight != NULL && c->net.in_flight(c->net.self, &m, now);
}

/* ---- debtor ---- */

static borrow *find_borrow(infsim_contract *c, int32_t debtor, uint32_t id) {
  for (size_t k = 0; k < c->nb; k++)
    if (c->b[k].debtor == debtor && c->b[k].id == id) return &c->b[k];
  return NULL;
}

size_t infsim_contract_borrows(const infsim_contract *c) { return c->nb; }

bool infsim_contract_in_flight(const infsim_contract *c, int32_t debtor, int64_t req) {
  for (size_t k = 0; k < c->nb; k++)
    if (c->b[k].debtor == debtor && c->b[k].req == req && c->b[k].st != B_CANCELLING) return true;
  return false;
}

int64_t infsim_contract_pending(const infsim_contract *c, int32_t debtor) {
  int64_t n = 0;
  for (size_t k = 0; k < c->nb; k++) n += c->b[k].debtor == debtor && c->b[k].st != B_CANCELLING;
  return n;
}

int64_t infsim_contract_planned_in_flight(const infsim_contract *c) {
  int64_t n = 0;
  for (size_t k = 0; k < c->nb; k++) n += c->b[k].planned && c->b[k].st != B_CANCELLING;
  return n;
}

/* The current step times out at deadline; one timer per borrow. */
static infsim_status set_deadline(infsim_contract *c, borrow *b, int64_t deadline, infsim_error *err) {
  b->deadline_ns = deadline;
  if (b->gen != 0 && b->timer_ns <= b->deadline_ns) return INFSIM_OK; /* the live timer fires first: it re-arms */
  b->gen = ++c->next_gen;
  b->timer_ns = b->deadline_ns;
  return contract_timer(c, b->debtor, INFSIM_CONTRACT_TIMER_STEP, b->id, b->req, 0, b->gen, b->timer_ns, err);
}

/* Sends the message of the borrow's current step and arms its timer. */
static infsim_status step(infsim_contract *c, borrow *b, int64_t now, infsim_error *err) {
  infsim_status st = INFSIM_OK;
  int64_t wait = c->p.timeout_ns;
  switch (b->st) {
  case B_ASKING:
    st = contract_send(c, INFSIM_MSG_BORROW_REQUEST, b->debtor, INFSIM_ENDPOINT_GMANAGER, b->id, b->req, b->need, 0,
              b->attempt, b->fresh_ok, now, err);
    break;
  case B_RESERVING:
    st = contract_send(c, INFSIM_MSG_RESERVE, b->debtor, b->mv.to, b->id, b->mv.req, b->mv.blocks, 0, b->attempt,
                  (b->mv.fresh ? RESERVE_FRESH : 0) | (b->exchange ? RESERVE_EXCHANGE : 0) |
                      (b->planned ? RESERVE_WHOLE : 0),
                  now, err);
    break;
  case B_MOVING:
    /* b: the KV carried (a MOVE of blocks holding none is a control message). */
    b->payload = payload_bytes(c, &b->mv, now);
    st = contract_send(c, INFSIM_MSG_MOVE, b->debtor, b->mv.to, b->id, b->mv.req, b->mv.blocks, b->payload, b->attempt,
                  b->payload, now, err);
    wait += transfer_ns(c, b->payload);
    b->probing = false;
    c->n.kv_sends++;
    c->n.kv_sent_bytes += b->payload;
    break;
  case B_CANCELLING:
    st = contract_send(c, INFSIM_MSG_RELEASE, b->debtor, b->mv.to, b->id, b->mv.req, b->mv.blocks, 0, b->attempt,
                  RELEASE_CANCEL, now, err);
    break;
  }
  if (st != INFSIM_OK) return st;
  return set_deadline(c, b, now + wait, err);
}

/* A MOVE past its deadline: ask the creditor what it sees, one timeout
 * for the answer. */
static infsim_status probe(infsim_contract *c, borrow *b, int64_t now, infsim_error *err) {
  c->n.probes++;
  b->probing = true;
  infsim_status st = contract_send(c, INFSIM_MSG_PROBE, b->debtor, b->mv.to, b->id, b->mv.req, b->mv.blocks, 0,
                              b->attempt, 0, now, err);
  if (st != INFSIM_OK) return st;
  return set_deadline(c, b, now + c->p.timeout_ns, err);
}

static void end_borrow(infsim_contract *c, borrow *b, bool ok, int64_t now) {
  int32_t debtor = b->debtor;
  int64_t req = b->req;
  bool planned = b->planned;
  if (ok)
    c->n.borrows++;
  else
    c->n.failed++;
  *b = c->b[--c->nb];
  if (planned) {
    if (c->env.move_done) c->env.move_done(c->env.self, debtor, req, ok, now);
  } else {
    c->env.borrow_done(c->env.self, debtor, req, ok, now);
  }
}

/* A cancelled borrow's record goes (its policy was told at the cancel). */
static void drop_borrow(infsim_contract *c, borrow *b) { *b = c->b[--c->nb]; }

static infsim_status give_up(infsim_contract *c, borrow *b, int64_t now, infsim_error *err) {
  if (b->st == B_CANCELLING) { /* no answer to the cancel: the creditor's lease bounds what it holds */
    drop_borrow(c, b);
    return INFSIM_OK;
  }
  if (b->st != B_ASKING) {
    infsim_status st = contract_send(c, INFSIM_MSG_RELEASE, b->debtor, b->mv.to, b->id, b->mv.req, b->mv.blocks, 0,
                            b->attempt, 0, now, err);
    if (st != INFSIM_OK) return st;
  }
  end_borrow(c, b, false, now);
  return INFSIM_OK;
}

/* A refusal or a failed move: ask the gManager again, or give up. */
static infsim_status new_attempt(infsim_contract *c, borrow *b, int64_t now, infsim_error *err) {
  if (b->planned || ++b->retries > c->p.max_retries) return give_up(c, b, now, err);
  c->n.retries++;
  b->attempt++;
  b->st = B_ASKING;
  return step(c, b, now, err);
}

infsim_status infsim_contract_borrow(infsim_contract *c, int32_t debtor, int64_t req, int64_t need, bool fresh_ok,
                                     int64_t now_ns, infsim_error *err) {
  assert(debtor >= 0 && debtor < c->instances && need > 0);
  if (infsim_contract_in_flight(c, debtor, req)) return INFSIM_OK;
  infsim_status st = contract_grow((void **)&c->b, &c->cb, c->nb, sizeof *c->b, &c->peak_b, err);
  if (st != INFSIM_OK) return st;
  borrow *b = &c->b[c->nb++];
  *b = (borrow){.id = c->next_id++, .debtor = debtor, .req = req, .need = need, .st = B_ASKING, .fresh_ok = fresh_ok};
  if (c->next_id == 0) c->next_id = 1; /* seq 0 is a release outside the protocol */
  return step(c, b, now_ns, err);
}

infsim_status infsim_contract_move(infsim_contract *c, const infsim_gm_move *m, bool exchange, int64_t now_ns,
                                   infsim_error *err) {
  assert(m->from >= 0 && m->from < c->instances && m->to >= 0 && m->to < c->instances && m->blocks > 0);
  if (infsim_contract_in_flight(c, m->from, m->req)) return INFSIM_OK;
  infsim_status st = contract_grow((void **)&c->b, &c->cb, c->nb, sizeof *c->b, &c->peak_b, err);
  if (st == INFSIM_OK) st = contract_gm_room(c, err);
  if (st != INFSIM_OK) return st;
  borrow *b = &c->b[c->nb++];
  *b = (borrow){.id = c->next_id++, .debtor = m->from, .req = m->req, .need = m->blocks, .st = B_RESERVING,
                .mv = *m, .exchange = exchange, .planned = true};
  if (c->next_id == 0) c->next_id = 1;
  contract_gm_note_plan(c, b->id, m, now_ns);
  return step(c, b, now_ns, err);
}

static infsim_status debtor_deliver(infsim_contract *c, const infsim_msg *m, int64_t now, infsim_error *err) {
  borrow *b = find_borrow(c, m->dst, m->seq);
  if (!b) return INFSIM_OK; /* a late answer to a borrow that ended */
  if (b->st == B_CANCELLING && m->kind != INFSIM_MSG_TIMER) {
    /* Only the cancel's answer ends it; the others are late answers. */
    if (m->kind == INFSIM_MSG_CONFIRM && m->b == b->attempt) drop_borrow(c, b);
    return INFSIM_OK;
  }
  switch ((infsim_msg_kind)m->kind) {
  case INFSIM_MSG_BORROW_PROPOSE:
    if (b->st != B_ASKING || (m->b >> 1) != b->attempt) return INFSIM_OK;
    if (m->a < 0 || m->blocks <= 0) { /* no creditor has room */
      end_borrow(c, b, false, now);
      return INFSIM_OK;
    }
    b->mv = (infsim_gm_move){.req = m->req, .from = b->debtor, .to = (int32_t)m->a, .blocks = m->blocks,
                             .fresh = (m->b & 1) != 0};
    b->st = B_RESERVING;
    return step(c, b, now, err);
  case INFSIM_MSG_RESERVE_ACK:
    if (b->st != B_RESERVING || m->b != b->attempt) return INFSIM_OK;
    if (m->a == 0) return new_attempt(c, b, now, err);
    b->mv.blocks = m->blocks; /* what the creditor granted */
    if (b->mv.fresh) {
      end_borrow(c, b, true, now);
      return INFSIM_OK;
    }
    b->st = B_MOVING;
    b->arriving = 0;
    return step(c, b, now, err);
  case INFSIM_MSG_CONFIRM:
    if (b->st != B_MOVING || m->b != b->attempt) return INFSIM_OK;
    if (m->a == INFSIM_CONFIRM_ARRIVING || m->a == INFSIM_CONFIRM_NOT_SEEN) {
      if (!b->probing) return INFSIM_OK; /* a late or repeated answer: a newer step is under way */
      b->probing = false;
      if (m->a == INFSIM_CONFIRM_ARRIVING) { /* slow, not lost: wait longer, then ask again */
        int64_t wait =
            contract_backed_off(c->p.timeout_ns + transfer_ns(c, b->payload), ++b->arriving, c->p.probe_backoff_max);
        return set_deadline(c, b, now + wait, err);
      }
      /* Nothing came: the payload was lost or held back. Send it again. */
      if (++b->retries > c->p.max_retries) return give_up(c, b, now, err);
      c->n.retries++;
      c->n.kv_resends++;
      b->arriving = 0;
      return step(c, b, now, err);
    }
    if (m->a == INFSIM_CONFIRM_REFUSED) return new_attempt(c, b, now, err);
    end_borrow(c, b, true, now);
    return INFSIM_OK;
  case INFSIM_MSG_TIMER:
    if (m->b != b->gen) return INFSIM_OK; /* a timer replaced by an earlier one */
    if (now < b->deadline_ns) { /* a later step moved the deadline */
      b->timer_ns = b->deadline_ns;
      return contract_timer(c, b->debtor, INFSIM_CONTRACT_TIMER_STEP, b->id, b->req, 0, b->gen, b->timer_ns, err);
    }
    b->gen = 0; /* no live timer: the resend arms one */
    if (b->st == B_MOVING && !b->probing) return probe(c, b, now, err); /* not a retry: nothing was lost yet */
    if (++b->retries > c->p.max_retries) return give_up(c, b, now, err);
    c->n.retries++;
    if (b->st == B_MOVING) return probe(c, b, now, err); /* the probe or its answer was lost: ask again */
    return step(c, b, now, err); /* resend, same attempt */
  default: return INFSIM_OK;
  }
}

/* ---- creditor ---- */

static resv *find_resv(infsim_contract *c, int32_t debtor, uint32_t id, int64_t attempt) {
  for (size_t k = 0; k < c->nr; k++)
    if (c->r[k].debtor == debtor && c->r[k].id == id && c->r[k].attempt == attempt) return &c->r[k];
  return NULL;
}

static void drop_resv(infsim_contract *c, resv *r) {
  if (r->st == R_RESERVED) c->reserved[r->mv.to] -= r->mv.blocks;
  *r = c->r[--c->nr];
}

/* Commits a reserved or fresh move whose data (payload bytes of KV for
 * the blocks asked) arrived; true when it happened. Blocks the creditor
 * cannot take any more (env.commit gives fewer) carried their share. */
static bool commit(infsim_contract *c, resv *r, int64_t payload, int64_t now) {
  if (r->st == R_RESERVED) c->reserved[r->mv.to] -= r->mv.blocks;
  int64_t asked = r->mv.blocks;
  int64_t n = c->env.commit(c->env.self, &r->mv, now);
  assert(n >= 0 && n <= r->mv.blocks);
  r->st = n > 0 ? R_COMMITTED : R_REFUSED;
  if (n > 0) {
    r->mv.blocks = n;
    c->n.kv_moves++;
    c->n.kv_moved_bytes += payload * n / asked;
  }
  return n > 0;
}

/* The answer is kept for repeats until it expires (swept, no timer). */
static void keep(infsim_contract *c, resv *r, int64_t now) {
  r->gen = ++c->next_gen; /* its lease timer, if any, is over */
  r->expires_ns = now + KEEP_TIMEOUTS * c->p.timeout_ns;
  contract_expires_at(&c->r_sweep_ns, r->expires_ns);
}

/* A reservation given up unused (its lease ran out, its debtor released
 * or cancelled it): the blocks are free again, and the refusal is kept,
 * so that data or a probe coming later is refused, and the gManager,
 * asking, learns that the move will not land. */
static void refuse_resv(infsim_contract *c, resv *r, int64_t now) {
  if (r->st == R_RESERVED) c->reserved[r->mv.to] -= r->mv.blocks;
  r->st = R_REFUSED;
  keep(c, r, now);
}

/* A reservation's lease: LEASE_TIMEOUTS timeouts plus twice the move's
 * transfer time at policy.move_GBps; doubled with each extension for a
 * MOVE arriving (at most probe_backoff_max times). */
static int64_t lease_len(const infsim_contract *c, const resv *r) {
  return contract_backed_off(LEASE_TIMEOUTS * c->p.timeout_ns + contract_move_ns(c, &r->mv), r->extensions,
                             c->p.probe_backoff_max);
}

static infsim_status arm_lease(infsim_contract *c, resv *r, int64_t at, infsim_error *err) {
  r->lease_ns = at;
  return contract_timer(c, r->mv.to, INFSIM_CONTRACT_TIMER_LEASE, r->id, r->debtor, r->attempt, r->gen, at, err);
}

static infsim_status confirm(infsim_contract *c, const resv *r, bool to_gm, int64_t now, infsim_error *err) {
  bool ok = r->st == R_COMMITTED;
  infsim_status st = contract_send(c, INFSIM_MSG_CONFIRM, r->mv.to, r->debtor, r->id, r->mv.req, r->mv.blocks, 0,
                              ok ? INFSIM_CONFIRM_LANDED : INFSIM_CONFIRM_REFUSED,
                          r->attempt, now, err);
  if (st == INFSIM_OK && ok && to_gm)
    st = contract_send(c, INFSIM_MSG_CONFIRM, r->mv.to, INFSIM_ENDPOINT_GMANAGER, r->id, r->mv.req, r->mv.blocks, 0,
                  r->debtor, r->attempt << STATUS_BITS | INFSIM_CONFIRM_LANDED, now, err);
  return st;
}

/* The gManager asks what became of the move (m->b, m->seq, m->a) it
 * proposed: the creditor answers from its record, as to its debtor, but
 * extends no lease (the gManager is not the debtor: a lost debtor's
 * reservation must still run out). */
static infsim_status answer_gm(infsim_contract *c, const infsim_msg *m, int64_t now, infsim_error *err) {
  const resv *r = find_resv(c, (int32_t)m->b, m->seq, m->a);
  int64_t status = !r                     ? INFSIM_CONFIRM_UNKNOWN
                   : r->st == R_COMMITTED ? INFSIM_CONFIRM_LANDED
                   : r->st == R_REFUSED   ? INFSIM_CONFIRM_REFUSED
                   : arriving(c, r->debtor, r->mv.to, r->id, r->attempt, now) ? INFSIM_CONFIRM_ARRIVING
                                                                             : INFSIM_CONFIRM_NOT_SEEN;
  return contract_send(c, INFSIM_MSG_CONFIRM, m->dst, INFSIM_ENDPOINT_GMANAGER, m->seq, m->req,
                  r ? r->mv.blocks : m->blocks, 0, m->b, m->a << STATUS_BITS | status, now, err);
}

static infsim_status creditor_reserve(infsim_contract *c, const infsim_msg *m, int64_t now, infsim_error *err) {
  int32_t me = m->dst;
  resv *r = find_resv(c, m->src, m->seq, m->a);
  if (!r) {
    infsim_status st = contract_grow((void **)&c->r, &c->cr, c->nr, sizeof *c->r, &c->peak_r, err);
    if (st != INFSIM_OK) return st;
    r = &c->r[c->nr++];
    bool fresh = (m->b & RESERVE_FRESH) != 0, exchange = (m->b & RESERVE_EXCHANGE) != 0;
    bool whole = exchange || (m->b & RESERVE_WHOLE) != 0;
    *r = (resv){.debtor = m->src, .id = m->seq, .attempt = m->a,
                .mv = {.req = m->req, .from = m->src, .to = me, .blocks = m->blocks, .fresh = fresh},
                .st = R_REFUSED};
    /* First come, first served: the creditor's own truth, less what it has
     * promised already, less the reserve it keeps for itself. A borrow
     * gets what is there when that is less than it asked (the gManager's
     * view lags by a heartbeat); the gManager's own moves all or nothing
     * (half a piece moved does not shorten a request's span). */
    int64_t spare = c->env.free_blocks(c->env.self, me) - c->reserved[me] - (exchange ? 0 : c->p.reserve_blocks);
    int64_t grant = spare >= m->blocks ? m->blocks : whole || spare <= 0 ? 0 : spare;
    if (grant > 0) {
      r->st = R_RESERVED;
      r->mv.blocks = grant;
      c->reserved[me] += grant;
    } else {
      c->n.refused++;
      if (c->env.refused) c->env.refused(c->env.self, me, now);
    }
    if (r->st == R_RESERVED && r->mv.fresh) {
      commit(c, r, 0, now);
      if (r->st == R_COMMITTED && (st = confirm(c, r, true, now, err)) != INFSIM_OK) return st;
    }
    if (r->st == R_RESERVED) {
      r->gen = ++c->next_gen;
      st = arm_lease(c, r, now + lease_len(c, r), err);
    } else {
      keep(c, r, now);
    }
    if (st != INFSIM_OK) return st;
  }
  return contract_send(c, INFSIM_MSG_RESERVE_ACK, me, r->debtor, r->id, r->mv.req, r->mv.blocks, 0, r->st != R_REFUSED,
              r->attempt, now, err);
}

static infsim_status creditor_deliver(infsim_contract *c, const infsim_msg *m, int64_t now, infsim_error *err) {
  resv *r;
  switch ((infsim_msg_kind)m->kind) {
  case INFSIM_MSG_RESERVE: return creditor_reserve(c, m, now, err);
  case INFSIM_MSG_MOVE:
    r = find_resv(c, m->src, m->seq, m->a);
    if (!r) { /* the lease ran out before the data came: refuse */
      resv gone = {.debtor = m->src, .id = m->seq, .attempt = m->a,
                   .mv = {.req = m->req, .from = m->src, .to = m->dst, .blocks = m->blocks}, .st = R_REFUSED};
      return confirm(c, &gone, false, now, err);
    }
    if (r->st != R_RESERVED) return confirm(c, r, false, now, err); /* a repeat */
    commit(c, r, m->b, now);
    keep(c, r, now);
    return confirm(c, r, true, now, err);
  case INFSIM_MSG_PROBE: {
    if (m->src == INFSIM_ENDPOINT_GMANAGER) return answer_gm(c, m, now, err);
    r = find_resv(c, m->src, m->seq, m->a);
    if (!r) { /* no reservation (its lease ran out, or it never was): refuse, a new plan follows */
      resv gone = {.debtor = m->src, .id = m->seq, .attempt = m->a,
                   .mv = {.req = m->req, .from = m->src, .to = m->dst, .blocks = m->blocks}, .st = R_REFUSED};
      return confirm(c, &gone, false, now, err);
    }
    if (r->st != R_RESERVED) return confirm(c, r, false, now, err); /* it landed (or was refused): as before */
    bool in = arriving(c, r->debtor, r->mv.to, r->id, r->attempt, now);
    /* The debtor is alive: keep the blocks at least one more lease, for
     * the KV arriving or the one it is about to send again. The live
     * timer, firing earlier, re-arms for the later time. */
    if (now + lease_len(c, r) > r->lease_ns) r->lease_ns = now + lease_len(c, r);
    return contract_send(c, INFSIM_MSG_CONFIRM, r->mv.to, r->debtor, r->id, r->mv.req, r->mv.blocks, 0,
                    in ? INFSIM_CONFIRM_ARRIVING : INFSIM_CONFIRM_NOT_SEEN, r->attempt, now, err);
  }
  case INFSIM_MSG_RELEASE: {
    r = find_resv(c, m->src, m->seq, m->a);
    if (r && r->st == R_RESERVED) refuse_resv(c, r, now);
    if (!(m->b & RELEASE_CANCEL)) return INFSIM_OK;
    if (!r) { /* the RESERVE has not come (lost, or overtaken): refuse it when it does */
      infsim_status st = contract_grow((void **)&c->r, &c->cr, c->nr, sizeof *c->r, &c->peak_r, err);
      if (st != INFSIM_OK) return st;
      r = &c->r[c->nr++];
      *r = (resv){.debtor = m->src, .id = m->seq, .attempt = m->a,
                  .mv = {.req = m->req, .from = m->src, .to = m->dst, .blocks = m->blocks}, .st = R_REFUSED};
      keep(c, r, now);
    }
    /* Landed before the cancel came: its request's blocks went with it. */
    return confirm(c, r, false, now, err);
  }
  case INFSIM_MSG_TIMER:
    r = find_resv(c, (int32_t)m->req, m->seq, m->blocks);
    if (!r || r->gen != m->b || r->st != R_RESERVED) return INFSIM_OK;
    if (now < r->lease_ns) return arm_lease(c, r, r->lease_ns, err); /* a probe extended it */
    if (arriving(c, r->debtor, r->mv.to, r->id, r->attempt, now)) { /* slow data, not none: wait for it */
      r->extensions++;
      return arm_lease(c, r, now + lease_len(c, r), err);
    }
    refuse_resv(c, r, now); /* a lease that ran out: nothing arrived */
    return INFSIM_OK;
  default: return INFSIM_OK;
  }
}

/* Drops kept answers and the gManager's records that expired by now; a
 * record of a move not confirmed is checked instead (contract_ledger.c). */
static infsim_status sweep(infsim_contract *c, int64_t now, infsim_error *err) {
  if (now >= c->r_sweep_ns) {
    c->r_sweep_ns = INT64_MAX;
    for (size_t k = c->nr; k-- > 0;) {
      if (c->r[k].st == R_RESERVED) continue;
      if (c->r[k].expires_ns <= now)
        c->r[k] = c->r[--c->nr]; /* (the one moved here was walked: the walk goes down) */
      else
        contract_expires_at(&c->r_sweep_ns, c->r[k].expires_ns);
    }
  }
  return contract_gm_sweep(c, now, err);
}

infsim_status infsim_contract_deliver(infsim_contract *c, const infsim_msg *m, int64_t now_ns, infsim_error *err) {
  assert(infsim_contract_handles(m));
  infsim_status st = sweep(c, now_ns, err);
  if (st != INFSIM_OK) return st;
  if (m->dst == INFSIM_ENDPOINT_GMANAGER) return contract_gm_deliver(c, m, now_ns, err);
  assert(m->dst >= 0 && m->dst < c->instances);
  switch ((infsim_msg_kind)m->kind) {
  case INFSIM_MSG_BORROW_PROPOSE:
  case INFSIM_MSG_RESERVE_ACK:
  case INFSIM_MSG_CONFIRM: return debtor_deliver(c, m, now_ns, err);
  case INFSIM_MSG_TIMER:
    return m->a == INFSIM_CONTRACT_TIMER_STEP ? debtor_deliver(c, m, now_ns, err) : creditor_deliver(c, m, now_ns, err);
  default: return creditor_deliver(c, m, now_ns, err);
  }
}

infsim_status infsim_contract_cancel(infsim_contract *c, int64_t req, int64_t now_ns, infsim_error *err) {
  for (size_t k = c->nb; k-- > 0;) {
    borrow *b = &c->b[k];
    bool moves_it = b->st != B_ASKING && b->st != B_CANCELLING && b->mv.req == req;
    bool asks_for_it = b->st == B_ASKING && b->req == req;
    if (!moves_it && !asks_for_it) continue;
    int32_t debtor = b->debtor;
    int64_t for_req = b->req;
    c->n.cancelled++;
    if (asks_for_it) {
      /* No creditor yet: the proposal, when it comes, finds no borrow,
       * and the gManager's record of it goes when its creditor says it
       * has none. */
      drop_borrow(c, b);
    } else {
      infsim_status st = INFSIM_OK;
      if (b->st == B_MOVING && b->payload > 0 && c->net.abort) {
        /* The sender stops its payload: the link carries no more of it. */
        infsim_msg mv = {.kind = INFSIM_MSG_MOVE, .src = b->debtor, .dst = b->mv.to, .seq = b->id, .a = b->attempt};
        int64_t unsent = 0;
        st = c->net.abort(c->net.self, &mv, now_ns, &unsent, err);
        c->n.kv_sent_bytes -= unsent;
      }
      b->st = B_CANCELLING;
      b->retries = 0;
      b->probing = false;
      if (st == INFSIM_OK) st = step(c, b, now_ns, err);
      if (st != INFSIM_OK) return st;
    }
    if (c->env.cancelled) c->env.cancelled(c->env.self, debtor, for_req, now_ns);
  }
  return INFSIM_OK;
}

void infsim_contract_instance_lost(infsim_contract *c, int32_t instance) {
  for (size_t k = c->nr; k-- > 0;)
    if (c->r[k].mv.to == instance) drop_resv(c, &c->r[k]); /* its memory is gone */
  for (size_t k = c->nb; k-- > 0;)
    if (c->b[k].debtor == instance) c->b[k] = c->b[--c->nb]; /* nobody is left to finish it */
  contract_gm_instance_lost(c, instance);
}

int64_t infsim_contract_reserved(const infsim_contract *c, int32_t instance) { return c->reserved[instance]; }

void infsim_contract_high_water(const infsim_contract *c, infsim_high_water_set *out) {
  /* Final counts are of the entries still in play: reservations holding
   * blocks, proposals whose move is not confirmed. A kept answer (waiting
   * only to answer a repeat) holds nothing and is dropped when it expires,
   * which may fall after the run's last event. Peak and capacity count
   * every record. */
  int64_t live_r = 0;
  for (size_t k = 0; k < c->nr; k++) live_r += c->r[k].st == R_RESERVED;
  infsim_high_water_note(out, "contract_borrows", (int64_t)c->peak_b, (int64_t)c->nb, (int64_t)c->cb);
  infsim_high_water_note(out, "contract_reservations", (int64_t)c->peak_r, live_r, (int64_t)c->cr);
  int64_t live_g = 0; /* proposals of a move not confirmed yet, of a borrow still in flight (the others
                        * only wait to expire, swept at the next delivery) */
  for (size_t k = 0; k < c->ng; k++) {
    bool in_flight = false;
    for (size_t j = 0; j < c->nb && !in_flight; j++) in_flight = c->b[j].debtor == c->g[k].debtor && c->b[j].id == c->g[k].id;
    live_g += c->g[k].has_move && !c->g[k].confirmed && in_flight;
  }
  infsim_high_water_note(out, "contract_proposals", (int64_t)c->peak_g, live_g, (int64_t)c->cg);
}

const infsim_contract_counters *infsim_contract_counters_of(const infsim_contract *c) { return &c->n; }

void infsim_contract_check(const infsim_contract *c) {
  int64_t *sum = calloc((size_t)c->instances, sizeof *sum);
  assert(sum);
  for (size_t k = 0; k < c->nr; k++)
    if (c->r[k].st == R_RESERVED) sum[c->r[k].mv.to] += c->r[k].mv.blocks;
  for (int32_t i = 0; i < c->instances; i++) assert(sum[i] == c->reserved[i] && sum[i] >= 0);
  /* The sweeps' bounds: nothing expires before them. */
  for (size_t k = 0; k < c->nr; k++) assert(c->r[k].st == R_RESERVED || c->r[k].expires_ns >= c->r_sweep_ns);
  for (size_t k = 0; k < c->ng; k++) assert(c->g[k].expires_ns >= c->g_sweep_ns);
  for (size_t k = 0; k < c->nb; k++) {
    assert(c->b[k].st == B_ASKING || c->b[k].st == B_RESERVING || c->b[k].st == B_MOVING ||
           c->b[k].st == B_CANCELLING);
    for (size_t j = 0; j < k; j++) assert(c->b[j].id != c->b[k].id);
  }
  free(sum);
}
