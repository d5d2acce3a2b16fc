/*
** contract_ledger.c: the gManager's side of the contract protocol
** (contract.h; the debtor and the creditor are in contract.c, the state
** both share in contract_internal.h).
**
** The gManager answers a debtor's BORROW_REQUEST with the first move of
** its planner's plan, and keeps a record of each move it proposed (or
** planned itself: DGFM's moves) until the move is confirmed, refused or
** known lost, not for a fixed time: a slow move (a debtor's probes may
** wait 64 move timeouts) lands long after any fixed expiry, and its
** CONFIRM then found no record, so the ledger learnt of it only from a
** later heartbeat. A record still unconfirmed when its answer would have
** expired (KEEP_TIMEOUTS) is checked: a PROBE to the creditor, which
** answers from its own record as it answers a debtor's (a reservation
** dropped unused is kept as a refusal for that). Landed: the ledger
** records it; refused, or no record at all (the reservation never came,
** or its answer expired long ago): the record goes; arriving or nothing
** seen yet: asked again after the debtor's back-off. A creditor that
** answers none of max_retries + 1 probes in a row is taken for lost. The
** first check is made when a message next arrives (a sweep, like the
** creditors' kept answers', no event in the common case where the move
** was confirmed long before); the later ones on a timer of the
** gManager's, so that an unanswered probe is retried in a quiet cluster
** too. A debtor's next attempt says the one before was refused: its
** record goes when that request arrives.
**
** Records live in a short array searched linearly: they hold what is in
** flight, tens of entries, not the run's history. A lost gManager loses
** them all (infsim_contract_set_gm_down).
*/
#include "contract_internal.h"

static contract_proposal *find_prop(infsim_contract *c, int32_t debtor, uint32_t id, int64_t attempt) {
  for (size_t k = 0; k < c->ng; k++)
    if (c->g[k].debtor == debtor && c->g[k].id == id && c->g[k].attempt == attempt) return &c->g[k];
  return NULL;
}

static void drop_prop(infsim_contract *c, contract_proposal *g) { *g = c->g[--c->ng]; }

/* The gManager's record g, not confirmed, is due for a check now: it asks
 * the creditor, or takes the move for lost after max_retries + 1 probes
 * in a row with no answer; the next check is a timeout later, on a timer
 * (the probe or its answer may be lost in a quiet cluster). */
static infsim_status check_prop(infsim_contract *c, contract_proposal *g, int64_t now, infsim_error *err) {
  if (g->strikes > c->p.max_retries) {
    c->n.ledger_lost++;
    drop_prop(c, g);
    return INFSIM_OK;
  }
  g->strikes++;
  c->n.ledger_probes++;
  g->expires_ns = now + c->p.timeout_ns;
  contract_expires_at(&c->g_sweep_ns, g->expires_ns);
  infsim_status st = contract_send(c, INFSIM_MSG_PROBE, INFSIM_ENDPOINT_GMANAGER, g->mv.to, g->id, g->mv.req,
                                   g->mv.blocks, 0, g->attempt, g->debtor, now, err);
  if (st != INFSIM_OK) return st;
  return contract_timer(c, INFSIM_ENDPOINT_GMANAGER, INFSIM_CONTRACT_TIMER_LEDGER, g->id, g->mv.req, g->debtor,
                        0, g->expires_ns, err);
}

/* The creditor's answer about the move of record g. */
static infsim_status gm_answer(infsim_contract *c, contract_proposal *g, const infsim_msg *m, int64_t now,
                               infsim_error *err) {
  switch (m->b & ((1 << STATUS_BITS) - 1)) {
  case INFSIM_CONFIRM_LANDED: {
    infsim_gm_move done = g->mv;
    done.blocks = m->blocks; /* what the creditor committed */
    infsim_gm_record_move(c->gm, &done, now);
    g->confirmed = true; /* kept until expires_ns for repeats, then swept */
    return INFSIM_OK;
  }
  case INFSIM_CONFIRM_ARRIVING:
  case INFSIM_CONFIRM_NOT_SEEN: { /* it may still land: ask again later, as its debtor would */
    g->strikes = 0;
    g->expires_ns = now + contract_backed_off(c->p.timeout_ns + contract_move_ns(c, &g->mv), ++g->waits,
                                              c->p.probe_backoff_max);
    contract_expires_at(&c->g_sweep_ns, g->expires_ns);
    return contract_timer(c, INFSIM_ENDPOINT_GMANAGER, INFSIM_CONTRACT_TIMER_LEDGER, g->id, g->mv.req, g->debtor,
                          0, g->expires_ns, err);
  }
  case INFSIM_CONFIRM_UNKNOWN: /* no reservation came this long after the proposal, or it ended long ago */
  case INFSIM_CONFIRM_REFUSED:
  default: drop_prop(c, g); return INFSIM_OK;
  }
}

infsim_status contract_gm_deliver(infsim_contract *c, const infsim_msg *m, int64_t now, infsim_error *err) {
  if (c->gm_down) return INFSIM_OK; /* lost with the gManager */
  contract_proposal *g;
  infsim_status st;
  switch ((infsim_msg_kind)m->kind) {
  case INFSIM_MSG_BORROW_REQUEST:
    /* A debtor asks again only after a refusal: its earlier attempts' moves will not land. */
    for (size_t k = c->ng; m->a > 0 && k-- > 0;)
      if (c->g[k].debtor == m->src && c->g[k].id == m->seq && c->g[k].attempt < m->a && !c->g[k].confirmed)
        drop_prop(c, &c->g[k]);
    g = find_prop(c, m->src, m->seq, m->a);
    if (!g) {
      if ((st = contract_gm_room(c, err)) != INFSIM_OK) return st;
      g = &c->g[c->ng++];
      *g = (contract_proposal){.debtor = m->src, .id = m->seq, .attempt = m->a,
                               .expires_ns = now + KEEP_TIMEOUTS * c->p.timeout_ns};
      contract_expires_at(&c->g_sweep_ns, g->expires_ns);
      /* One move per borrow: a plan's first move does not depend on those
       * after it, so the planner stops there (their proposals would only
       * be taken back). */
      infsim_gm_move plan[1];
      size_t n = infsim_gm_plan(c->gm, c->p.planner, m->src, m->b ? m->req : -1, m->blocks, plan, 1);
      g->has_move = n > 0;
      if (n > 0) g->mv = plan[0];
    }
    return contract_send(c, INFSIM_MSG_BORROW_PROPOSE, INFSIM_ENDPOINT_GMANAGER, g->debtor, g->id,
                         g->has_move ? g->mv.req : -1, g->has_move ? g->mv.blocks : 0, 0,
                         g->has_move ? g->mv.to : -1, (g->attempt << 1) | (g->has_move && g->mv.fresh), now, err);
  case INFSIM_MSG_CONFIRM:
    g = find_prop(c, (int32_t)m->a, m->seq, m->b >> STATUS_BITS);
    if (g && g->has_move && !g->confirmed) return gm_answer(c, g, m, now, err);
    return INFSIM_OK;
  default: return INFSIM_OK; /* its timers: the sweep before did their work */
  }
}

infsim_status contract_gm_sweep(infsim_contract *c, int64_t now, infsim_error *err) {
  if (now < c->g_sweep_ns) return INFSIM_OK;
  c->g_sweep_ns = INT64_MAX; /* lowered again by the records that stay (check_prop's by itself) */
  for (size_t k = c->ng; k-- > 0;) {
    contract_proposal *g = &c->g[k];
    if (g->expires_ns > now) {
      contract_expires_at(&c->g_sweep_ns, g->expires_ns);
      continue;
    }
    if (!g->has_move || g->confirmed) {
      drop_prop(c, g);
      continue;
    }
    infsim_status st = check_prop(c, g, now, err);
    if (st != INFSIM_OK) return st;
  }
  return INFSIM_OK;
}

infsim_status contract_gm_room(infsim_contract *c, infsim_error *err) {
  return contract_grow((void **)&c->g, &c->cg, c->ng, sizeof *c->g, &c->peak_g, err);
}

void contract_gm_note_plan(infsim_contract *c, uint32_t id, const infsim_gm_move *m, int64_t now) {
  /* The gManager knows its own plan: the creditor's CONFIRM finds it. */
  contract_proposal *g = &c->g[c->ng++];
  *g = (contract_proposal){.debtor = m->from, .id = id, .attempt = 0, .mv = *m, .has_move = true,
                           .expires_ns = now + KEEP_TIMEOUTS * c->p.timeout_ns};
  contract_expires_at(&c->g_sweep_ns, g->expires_ns);
}

void contract_gm_instance_lost(infsim_contract *c, int32_t instance) {
  for (size_t k = c->ng; k-- > 0;)
    if (c->g[k].debtor == instance || (c->g[k].has_move && c->g[k].mv.to == instance)) drop_prop(c, &c->g[k]);
}

void infsim_contract_set_gm_down(infsim_contract *c, bool down) {
  c->gm_down = down;
  if (down) c->ng = 0; /* its proposals are lost with it */
}

int64_t infsim_contract_proposals(const infsim_contract *c) { return (int64_t)c->ng; }

bool infsim_contract_proposal_open(const infsim_contract *c, int32_t debtor, int64_t req) {
  for (size_t k = 0; k < c->ng; k++)
    if (c->g[k].debtor == debtor && c->g[k].has_move && c->g[k].mv.req == req && !c->g[k].confirmed) return true;
  return false;
}
