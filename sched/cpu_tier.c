/*
** cpu_tier.c: host memory as a KV creditor over PCIe (cpu_tier.h).
**
** Moves in flight live in a short array searched linearly (a few per
** instance at most: one per debtor and request); each carries the pool
** blocks it will take, reserved at its host until it lands. Recalls
** (host -> GPU, `home`) live there too and reserve nothing at the host.
**
** A move whose request's KV ends on the way is cancelled at once
** (infsim_cpu_tier_cancel), as the contract protocol cancels a GPU
** creditor's move (contract.h), but with no message: the host pool is the
** node's own memory, so the debtor frees the reservation itself, and
** stops the copy on the PCIe link. Before, the copy ran to its end and
** landed on a finished request (committing nothing) or, for a request
** preempted by recompute and admitted again meanwhile, moved the blocks
** of its new prefill; the pool's blocks stayed reserved until then.
*/
#include "infsim/cpu_tier.h"

#include <assert.h>
#include <stdlib.h>

#include "sched_internal.h"

enum { FRESH_MSG_BYTES = 64 };

typedef struct {
  uint32_t id;
  int32_t debtor;
  int32_t host;
  int64_t req;    /* the request that asked */
  int64_t victim; /* the request whose blocks go (req itself when fresh) */
  int64_t blocks;
  bool fresh;
  bool home; /* a recall: host memory -> the owner's GPU */
} tier_move;

struct infsim_cpu_tier {
  infsim_sched *s;
  infsim_transport net;
  int64_t ahead;
  infsim_cpu_tier_done_fn done;
  bool (*may_gather)(void *self, int64_t req);
  infsim_cpu_tier_cancelled_fn cancelled;
  void *done_self;
  int64_t *reserved; /* per host */
  int64_t peak_reserved; /* most reserved at one host at once */
  tier_move *m;
  size_t nm, cm;
  uint32_t next_id;
  infsim_cpu_tier_counters n;
};

static int32_t host_of(const infsim_cpu_tier *t, int32_t instance) {
  return instance / t->s->p.instances_per_host;
}

static int32_t hosts_of(const infsim_sched *s) {
  return (s->n_instances + s->p.instances_per_host - 1) / s->p.instances_per_host;
}

infsim_status infsim_cpu_tier_new(infsim_sched *s, infsim_transport net, int64_t ahead_blocks,
                                  infsim_cpu_tier_done_fn done, bool (*may_gather)(void *self, int64_t req),
                                  infsim_cpu_tier_cancelled_fn cancelled, void *done_self, infsim_cpu_tier **out,
                                  infsim_error *err) {
  infsim_cpu_tier *t = calloc(1, sizeof *t);
  if (t) t->reserved = calloc((size_t)hosts_of(s), sizeof *t->reserved);
  if (!t || !t->reserved) {
    infsim_cpu_tier_free(t);
    return infsim_fail(err, INFSIM_ENOMEM, "CPU tier: out of memory");
  }
  *t = (infsim_cpu_tier){.s = s, .net = net, .ahead = ahead_blocks, .done = done, .may_gather = may_gather,
                         .cancelled = cancelled, .done_self = done_self,
                         .reserved = t->reserved, .next_id = 1};
  *out = t;
  return INFSIM_OK;
}

void infsim_cpu_tier_free(infsim_cpu_tier *t) {
  if (!t) return;
  free(t->reserved);
  free(t->m);
  free(t);
}

int64_t infsim_cpu_tier_room(const infsim_cpu_tier *t, int32_t instance) {
  int32_t h = host_of(t, instance);
  return infsim_kv_host_free_blocks(t->s->kv, h) - t->reserved[h];
}

int64_t infsim_cpu_tier_reserved(const infsim_cpu_tier *t, int32_t instance) { return t->reserved[host_of(t, instance)]; }

bool infsim_cpu_tier_in_flight(const infsim_cpu_tier *t, int32_t debtor, int64_t req) {
  for (size_t k = 0; k < t->nm; k++)
    if (t->m[k].debtor == debtor && t->m[k].req == req) return true;
  return false;
}

static int64_t blocks_for(const infsim_sched *s, int64_t tokens) {
  return (tokens + s->p.block_tokens - 1) / s->p.block_tokens;
}

/* What req still lacks on debtor: the rest of its prompt (admission), its
 * KV's next token (swap-in), or the next block (a decode boundary). */
static int64_t shortfall(const infsim_sched *s, int32_t debtor, int64_t req) {
  const infsim_request_record *rec = &s->rec[req];
  int64_t have = infsim_kv_blocks(s->kv, req) + infsim_kv_free_blocks(s->kv, debtor), want = have + 1;
  if (rec->state == INFSIM_REQ_WAITING) want = blocks_for(s, rs_of(s, req)->prefill_target);
  if (rec->state == INFSIM_REQ_SWAPPED) want = blocks_for(s, rs_of(s, req)->kv0 + 1);
  return want > have ? want - have : 1;
}

/* The request whose blocks go to host memory: req when it has blocks on
 * debtor, else the debtor's running request with the most there. */
static int64_t pick_victim_blocks(const infsim_sched *s, int32_t debtor, int64_t req) {
  if (infsim_kv_blocks_at(s->kv, req, debtor) > 0) return req;
  const instance *in = &s->inst[debtor];
  int64_t best = -1, most = 0;
  for (int32_t k = 0; k < in->running_count; k++) {
    int64_t b = infsim_kv_blocks_at(s->kv, in->running[k], debtor);
    if (b > most) {
      most = b;
      best = in->running[k];
    }
  }
  return best;
}

static infsim_status room_for_move(infsim_cpu_tier *t, infsim_error *err) {
  if (t->nm < t->cm) return INFSIM_OK;
  size_t cap = t->cm ? 2 * t->cm : 16;
  tier_move *m = realloc(t->m, cap * sizeof *m);
  if (!m) return infsim_fail(err, INFSIM_ENOMEM, "CPU tier: out of memory");
  t->m = m;
  t->cm = cap;
  return INFSIM_OK;
}

infsim_status infsim_cpu_tier_fallback(infsim_cpu_tier *t, int32_t debtor, int64_t req, bool fresh_ok,
                                       int64_t now_ns, bool *started, infsim_error *err) {
  infsim_sched *s = t->s;
  *started = false;
  if (infsim_cpu_tier_in_flight(t, debtor, req)) return INFSIM_OK;
  bool fresh = fresh_ok && s->rec[req].state == INFSIM_REQ_WAITING;
  int64_t victim = fresh ? req : pick_victim_blocks(s, debtor, req);
  if (victim < 0) return INFSIM_OK;
  int64_t n = shortfall(s, debtor, req) + t->ahead;
  int64_t room = infsim_cpu_tier_room(t, debtor);
  if (n > room) n = room;
  if (!fresh && n > infsim_kv_blocks_at(s->kv, victim, debtor)) n = infsim_kv_blocks_at(s->kv, victim, debtor);
  if (n <= 0) return INFSIM_OK;
  infsim_status st = room_for_move(t, err);
  if (st != INFSIM_OK) return st;
  int32_t host = host_of(t, debtor);
  tier_move *mv = &t->m[t->nm++];
  *mv = (tier_move){.id = t->next_id++, .debtor = debtor, .host = host, .req = req, .victim = victim, .blocks = n,
                    .fresh = fresh};
  t->reserved[host] += n;
  if (t->reserved[host] > t->peak_reserved) t->peak_reserved = t->reserved[host];
  *started = true;
  infsim_msg m = {.kind = INFSIM_MSG_MOVE, .src = debtor, .dst = s->n_instances + host, .seq = mv->id,
                  .req = victim, .blocks = n, .bytes = fresh ? FRESH_MSG_BYTES : n * s->p.block_bytes};
  return t->net.send(t->net.self, &m, now_ns, err);
}

bool infsim_cpu_tier_handles(const infsim_cpu_tier *t, const infsim_msg *msg) {
  return msg->dst >= t->s->n_instances || msg->src >= t->s->n_instances;
}

infsim_status infsim_cpu_tier_recall(infsim_cpu_tier *t, int32_t owner, int64_t keep_free, int64_t now_ns,
                                     infsim_error *err) {
  infsim_sched *s = t->s;
  const instance *in = &s->inst[owner];
  if (in->lost) return INFSIM_OK;
  int32_t host = host_of(t, owner), pool = s->n_instances + host;
  int64_t room = infsim_sched_free_blocks_now(s, owner, now_ns) - keep_free;
  for (size_t k = 0; k < t->nm; k++)
    if (t->m[k].home && t->m[k].debtor == owner) room -= t->m[k].blocks; /* landing here soon */
  while (room > 0) {
    /* Smallest host part first (as DGFM recalls GPU pieces): the most
     * requests come home whole. Decoding requests only: a prompt still
     * prefilling reads its host KV by fetching it anyway. */
    int64_t best = -1, best_blocks = 0;
    for (int32_t k = 0; k < in->running_count; k++) {
      int64_t r = in->running[k];
      if (!rs_of(s, r)->decoding) continue;
      int64_t b = infsim_kv_blocks_at(s->kv, r, pool);
      if (b == 0 || b > room || infsim_cpu_tier_in_flight(t, owner, r)) continue;
      if (best < 0 || b < best_blocks || (b == best_blocks && r < best)) {
        best = r;
        best_blocks = b;
      }
    }
    if (best < 0) return INFSIM_OK;
    infsim_status st = room_for_move(t, err);
    if (st != INFSIM_OK) return st;
    tier_move *mv = &t->m[t->nm++];
    *mv = (tier_move){.id = t->next_id++, .debtor = owner, .host = host, .req = best, .victim = best,
                      .blocks = best_blocks, .home = true};
    infsim_msg m = {.kind = INFSIM_MSG_MOVE, .src = pool, .dst = owner, .seq = mv->id, .req = best,
                    .blocks = best_blocks, .bytes = best_blocks * s->p.block_bytes};
    if ((st = t->net.send(t->net.self, &m, now_ns, err)) != INFSIM_OK) return st;
    room -= best_blocks;
  }
  return INFSIM_OK;
}

/* A recall reached the owner's GPU: what is still in host memory moves,
 * as far as the GPU's free blocks allow now (nothing was reserved there:
 * the recall left keep_free as headroom). */
static void land_home(infsim_cpu_tier *t, const tier_move *mv, int64_t now_ns) {
  infsim_sched *s = t->s;
  int32_t pool = s->n_instances + mv->host;
  int64_t n = 0;
  if (!s->inst[mv->debtor].lost && infsim_kv_owner(s->kv, mv->victim) == mv->debtor &&
      s->rec[mv->victim].state == INFSIM_REQ_RUNNING) {
    int64_t room = infsim_sched_free_blocks_now(s, mv->debtor, now_ns);
    int64_t there = infsim_kv_blocks_at(s->kv, mv->victim, pool);
    n = mv->blocks < room ? mv->blocks : room;
    if (n > there) n = there;
    if (n > 0) n = infsim_kv_move_tail(s->kv, mv->victim, pool, mv->debtor, n);
  }
  if (n > 0) {
    t->n.recalls++;
    t->n.recalled_blocks += n;
    t->n.recalled_bytes += n * s->p.block_bytes;
    infsim_sched_touch(s, mv->debtor, now_ns); /* its next decode step sees the change */
  }
  /* A request of it that ran short meanwhile waited for this move: it looks again. */
  t->done(t->done_self, mv->debtor, mv->req, true, now_ns);
}

infsim_status infsim_cpu_tier_deliver(infsim_cpu_tier *t, const infsim_msg *msg, int64_t now_ns, infsim_error *err) {
  (void)err;
  infsim_sched *s = t->s;
  size_t k = 0;
  while (k < t->nm && t->m[k].id != msg->seq) k++;
  if (k == t->nm) return INFSIM_OK; /* not ours any more (its instance was lost) */
  tier_move mv = t->m[k];
  t->m[k] = t->m[--t->nm];
  if (mv.home) {
    land_home(t, &mv, now_ns);
    return INFSIM_OK;
  }
  t->reserved[mv.host] -= mv.blocks;
  int32_t pool = s->n_instances + mv.host;
  const infsim_request_record *rec = &s->rec[mv.victim];
  int64_t n = mv.blocks, room = infsim_kv_host_free_blocks(s->kv, mv.host);
  if (n > room) n = room;
  bool owned = infsim_kv_owner(s->kv, mv.victim) == mv.debtor;
  if (mv.fresh) {
    /* New blocks only for a prompt still waiting for admission. */
    if (!owned || rec->state != INFSIM_REQ_WAITING || !t->may_gather(t->done_self, mv.victim)) n = 0;
    if (n > 0) {
      infsim_status st = infsim_kv_alloc(s->kv, mv.victim, pool, n, NULL);
      assert(st == INFSIM_OK);
      (void)st;
    }
  } else if (owned && (rec->state == INFSIM_REQ_RUNNING || rec->state == INFSIM_REQ_WAITING)) {
    n = infsim_kv_move_tail(s->kv, mv.victim, mv.debtor, pool, n);
    t->n.moved_bytes += n * s->p.block_bytes;
  } else {
    n = 0;
  }
  if (n > 0) {
    t->n.moves++;
    t->n.blocks += n;
    infsim_sched_touch(s, mv.debtor, now_ns); /* its next decode step sees the change */
  }
  t->done(t->done_self, mv.debtor, mv.req, n > 0, now_ns);
  return INFSIM_OK;
}

infsim_status infsim_cpu_tier_cancel(infsim_cpu_tier *t, int64_t req, int64_t now_ns, infsim_error *err) {
  infsim_sched *s = t->s;
  for (size_t k = t->nm; k-- > 0;) {
    if (t->m[k].victim != req) continue;
    tier_move mv = t->m[k];
    t->m[k] = t->m[--t->nm];
    if (!mv.home) t->reserved[mv.host] -= mv.blocks; /* the pool's blocks are free for others now */
    t->n.cancelled++;
    if (t->net.abort) {
      /* The copy stops where it is: the link carries no more of it (a
       * fresh move's control message is not stopped: it lands on no
       * record and is dropped). */
      int32_t pool = s->n_instances + mv.host;
      infsim_msg m = {.kind = INFSIM_MSG_MOVE, .src = mv.home ? pool : mv.debtor, .dst = mv.home ? mv.debtor : pool,
                      .seq = mv.id};
      int64_t unsent = 0;
      infsim_status st = t->net.abort(t->net.self, &m, now_ns, &unsent, err);
      if (st != INFSIM_OK) return st;
    }
    if (t->cancelled) t->cancelled(t->done_self, mv.debtor, mv.req, now_ns);
  }
  return INFSIM_OK;
}

const infsim_cpu_tier_counters *infsim_cpu_tier_counters_of(const infsim_cpu_tier *t) { return &t->n; }

void infsim_cpu_tier_high_water(const infsim_cpu_tier *t, infsim_high_water_set *out) {
  for (int32_t h = 0; h < hosts_of(t->s); h++)
    infsim_high_water_note(out, "cpu_tier_reserved", t->peak_reserved, t->reserved[h], t->s->p.host_blocks);
}

void infsim_cpu_tier_check(const infsim_cpu_tier *t) {
  int32_t hosts = hosts_of(t->s);
  int64_t *sum = calloc((size_t)hosts, sizeof *sum);
  assert(sum);
  for (size_t k = 0; k < t->nm; k++)
    if (!t->m[k].home) sum[t->m[k].host] += t->m[k].blocks;
  for (int32_t h = 0; h < hosts; h++)
    assert(sum[h] == t->reserved[h] && sum[h] >= 0);
  free(sum);
}
