/*
** gmanager.c: the global debt ledger and the borrow planners (gmanager.h).
**
** Requests are dense ids, so the ledger is an array of per-request
** records; each holds a short list of (holder, blocks, as_of) entries (one
** for a request that lives on its owner, a few for a split one). Entries
** that drop to zero blocks stay in the list with their time stamp, so that
** an older report cannot bring them back; infsim_gm_forget clears the list
** and sets a floor under which reports about the request are ignored.
** Per instance the gManager keeps its view of free memory and the sums
** lent, borrowed and held, updated with every entry change, and the list
** of requests it owns (the planner's candidates). Split requests (some
** blocks away from the owner) are kept in an array with each request's
** position in it, for O(1) insertion and removal, and per owner in a
** second such array (a report looks only at its instance's).
**
** Invariants: gmanager.h; infsim_gm_check recomputes every sum.
*/
#include "infsim/gmanager.h"
#include "infsim/bigmem.h"
#include "infsim/grow.h"
#include "infsim/planner.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  int32_t holder;
  int32_t guest_pos; /* a non-owner's entry with blocks: its index in the holder's guests, else -1 */
  int64_t blocks;
  int64_t as_of_ns;
} gm_hold;

/* A request of another owner with blocks at an instance: its entry there is h[k]. */
typedef struct {
  int64_t req;
  int32_t k;
} gm_guest;

/* 64 bytes: in a ledger on huge pages (bigmem.h: its records start on a
 * line), one cache line, so a lookup, a report's entry or a finishing
 * request reads one line, not two.
 * Positions are int32 (request ids are), pieces int16 (at most one a
 * holder: infsim_gm_new takes at most INFSIM_GM_INSTANCES_MAX instances). */
typedef struct {
  int32_t owner; /* -1: no entries */
  int32_t n, cap;
  int32_t own_k;         /* index of the owner's entry in h, or -1: most lookups are the owner's */
  int32_t split_pos;     /* index in gm->split, or -1 */
  int32_t split_own_pos; /* index in its owner's split list, or -1 (as split_pos) */
  int32_t owned_pos;     /* index in its owner's list, or -1 */
  int16_t pieces, small_pieces; /* entries away from the owner with blocks, those of at most gm->small_piece */
  int64_t total;
  int64_t floor_ns; /* reports older than this are ignored (forgotten) */
  int64_t remote;   /* blocks held away from the owner */
  gm_hold *h;
} gm_req;
enum { GM_REQ_BYTES = 64 };
/* A heartbeat's walk of its entries asks for the entries of the request
 * this many entries ahead, and for the record twice as far ahead
 * (infsim_gm_prefetch, infsim_gm_prefetch_entries). */
enum { GM_AHEAD = 4 };
_Static_assert(INFSIM_GM_INSTANCES_MAX <= INT16_MAX, "pieces, at most one a holder, are int16_t");
_Static_assert(sizeof(gm_req) == GM_REQ_BYTES, "a ledger record fills one cache line");

typedef struct {
  gm_hold *h;
  int32_t cap;
} gm_spare_holds;

/* A match of the tournament of free memory: its winner and the winner's
 * free memory in the view. */
typedef struct {
  int64_t free;
  int32_t id;
} gm_match;

typedef struct {
  int64_t free_view;
  int64_t free_as_of_ns;
  int64_t lent, borrowed, held;
  uint64_t guest_gen; /* changes to its entries of others' requests (infsim_gm_guest_generation) */
  int64_t split_owned; /* its requests in gm->split: those in split_own */
  int64_t *split_own;
  size_t split_own_cap;
  gm_guest *guests; /* the requests of others it holds blocks of (the planner's guests) */
  size_t guests_n, guests_cap;
  /* Its first owned_live are marked live (infsim_gm_set_live), its last
   * owned_ended ended (infsim_gm_set_ended), the others between. */
  int64_t *owned;
  size_t owned_n, owned_cap, owned_live, owned_ended;
  int64_t ended_split; /* of its ended requests, those in gm->split */
} gm_inst;

struct infsim_gm {
  int32_t instances, per_node;
  int64_t capacity, reserve;
  int64_t requests;
  gm_req *req;
  gm_inst *inst;
  int64_t *split;
  size_t split_n, split_cap;
  size_t split_peak;
  int64_t tracked, tracked_peak; /* requests with entries in the ledger */
  /* Entry arrays of requests that left the ledger, for the next ones to
   * take: a request's first entry would cost an allocation otherwise
   * (each request's, tens of thousands in a ten-minute run). */
  gm_spare_holds *spare_h;
  size_t spare_h_n, spare_h_cap;
  /* scratch of the planner */
  int32_t *order, *rank;
  int64_t *spare; /* the order's spare blocks, position by position */
  int64_t *cand;
  size_t cand_cap;
  bool guests_first; /* the planner moves a debtor's guests before its own requests */
  int64_t small_piece; /* gm_req.small_pieces counts pieces of at most this many blocks (<= 0: any) */
  int64_t defrag_n;    /* requests with two remote pieces or more, one of them small (infsim_gm_defrag_candidates) */
  /* The instances by free memory in the view, as a tournament: node k
   * (1 <= k < 2 x leaves) holds the instance with the most free memory
   * of its leaves and that memory, the lowest id of those with as much
   * (id -1: none), leaf leaves + i instance i. The planners' first creditor without ranks is
   * its winner, or the winner without the debtor: O(log instances)
   * where a scan was O(instances), for each plan's opening check and
   * each creditor taken; every change of free memory in the view
   * replays the matches above its leaf (set_free). */
  gm_match *cred;
  int32_t cred_leaves;
  int64_t *fresh; /* requests that joined an owned list in the last infsim_gm_heartbeat */
  size_t fresh_n, fresh_cap;
  bool noting; /* inside infsim_gm_heartbeat: joins are noted in fresh */
  bool out_of_memory; /* a ledger list could not grow (infsim_gm_out_of_memory) */
  /* the spread planner's costs and scratch (instances each) */
  int64_t spread_remote, spread_near;
  bool spread_relay; /* node relay: a remote node's holders share one NIC crossing */
  infsim_planner_creditor *sp_c;
  bool *sp_use;
  int64_t *sp_take;
  int32_t *sp_id;
};

/* The winner of matches a and b: more free memory, else the lower id
 * (an empty leaf, id -1 and the least free memory, loses to any). */
static gm_match more_free(gm_match a, gm_match b) {
  return a.free > b.free || (a.free == b.free && (unsigned)a.id < (unsigned)b.id) ? a : b;
}

/* Instance i's free memory in the view becomes v; the matches above it
 * are replayed, up to one whose outcome stays. */
static void set_free(infsim_gm *gm, int32_t i, int64_t v) {
  if (gm->inst[i].free_view == v) return; /* (a heartbeat of an instance whose free memory stayed) */
  gm->inst[i].free_view = v;
  int32_t k = gm->cred_leaves + i;
  gm->cred[k].free = v;
  for (k >>= 1; k >= 1; k >>= 1) {
    gm_match w = more_free(gm->cred[2 * k], gm->cred[2 * k + 1]);
    if (w.id == gm->cred[k].id && w.free == gm->cred[k].free) break;
    gm->cred[k] = w;
  }
}

/* Every match, from the leaves up. */
static void cred_rebuild(infsim_gm *gm) {
  for (int32_t k = 0; k < gm->cred_leaves; k++)
    gm->cred[gm->cred_leaves + k] = k < gm->instances ? (gm_match){gm->inst[k].free_view, k} : (gm_match){INT64_MIN, -1};
  for (int32_t k = gm->cred_leaves - 1; k >= 1; k--) gm->cred[k] = more_free(gm->cred[2 * k], gm->cred[2 * k + 1]);
}

/* The instance other than `exclude` with the most free memory, the
 * lowest id of those with as much (-1: none): the winner, else the
 * winner of the matches on exclude's path up that it was not in. */
static int32_t most_free_but(const infsim_gm *gm, int32_t exclude) {
  if (gm->cred[1].id != exclude) return gm->cred[1].id;
  gm_match w = {INT64_MIN, -1};
  for (int32_t k = gm->cred_leaves + exclude; k > 1; k >>= 1) w = more_free(w, gm->cred[k ^ 1]);
  return w.id;
}

const char *infsim_gm_planner_name(infsim_gm_planner p) {
  switch (p) {
  case INFSIM_PLAN_GREEDY: return "greedy";
  case INFSIM_PLAN_SAME_NODE: return "same-node";
  case INFSIM_PLAN_AFFINITY: return "affinity";
  case INFSIM_PLAN_FIT: return "fit";
  case INFSIM_PLAN_LEVEL: return "level";
  case INFSIM_PLAN_SPREAD: return "spread";
  }
  return "?";
}

bool infsim_gm_planner_from_name(const char *name, infsim_gm_planner *out) {
  for (int p = INFSIM_PLAN_GREEDY; p <= INFSIM_PLAN_SPREAD; p++)
    if (strcmp(name, infsim_gm_planner_name((infsim_gm_planner)p)) == 0) {
      *out = (infsim_gm_planner)p;
      return true;
    }
  return false;
}

infsim_status infsim_gm_new(int32_t instances, int32_t instances_per_node, int64_t capacity_blocks, int64_t requests,
                            int64_t reserve_blocks, infsim_gm **out, infsim_error *err) {
  if (instances < 1 || instances_per_node < 1 || capacity_blocks < 0 || requests < 0 || reserve_blocks < 0)
    return infsim_fail(err, INFSIM_EINPUT, "gmanager: instances, capacity, requests and reserve must be >= 0");
  if (instances > INFSIM_GM_INSTANCES_MAX || requests > INT32_MAX)
    return infsim_fail(err, INFSIM_EINPUT, "gmanager: at most %d instances and %d requests", INFSIM_GM_INSTANCES_MAX,
                       INT32_MAX);
  infsim_gm *gm = calloc(1, sizeof *gm);
  if (!gm) return infsim_fail(err, INFSIM_ENOMEM, "gmanager: out of memory");
  gm->instances = instances;
  gm->per_node = instances_per_node;
  gm->capacity = capacity_blocks;
  gm->reserve = reserve_blocks;
  gm->requests = requests;
  gm->req = infsim_big_calloc((size_t)requests, sizeof *gm->req);
  gm->inst = calloc((size_t)instances, sizeof *gm->inst);
  gm->order = calloc((size_t)instances, sizeof *gm->order);
  gm->rank = calloc((size_t)instances, sizeof *gm->rank);
  gm->spare = calloc((size_t)instances, sizeof *gm->spare);
  gm->sp_c = calloc((size_t)instances, sizeof *gm->sp_c);
  gm->sp_use = calloc((size_t)instances, sizeof *gm->sp_use);
  gm->sp_take = calloc((size_t)instances, sizeof *gm->sp_take);
  gm->sp_id = calloc((size_t)instances, sizeof *gm->sp_id);
  gm->cred_leaves = 1;
  while (gm->cred_leaves < instances) gm->cred_leaves *= 2;
  gm->cred = calloc(2 * (size_t)gm->cred_leaves, sizeof *gm->cred);
  if (!gm->req || !gm->inst || !gm->order || !gm->rank || !gm->spare || !gm->sp_c || !gm->sp_use || !gm->sp_take ||
      !gm->sp_id || !gm->cred) {
    infsim_gm_free(gm);
    return infsim_fail(err, INFSIM_ENOMEM, "gmanager: out of memory");
  }
  for (int64_t r = 0; r < requests; r++) gm->req[r] = (gm_req){.owner = -1, .own_k = -1, .split_pos = -1, .split_own_pos = -1, .owned_pos = -1};
  for (int32_t i = 0; i < instances; i++) gm->inst[i].free_view = capacity_blocks;
  cred_rebuild(gm);
  *out = gm;
  return INFSIM_OK;
}

void infsim_gm_free(infsim_gm *gm) {
  if (!gm) return;
  /* Entry arrays are held by records in the ledger only (leave takes a
   * leaving record's), each in its owner's list unless a list could not
   * grow (out_of_memory): the lists name them, where a walk of every
   * record would read them all (9 MB on bench/distkv_speed's hour). */
  if (gm->req && gm->inst && !gm->out_of_memory)
    for (int32_t i = 0; i < gm->instances; i++)
      for (size_t k = 0; k < gm->inst[i].owned_n; k++) free(gm->req[gm->inst[i].owned[k]].h);
  else if (gm->req)
    for (int64_t r = 0; r < gm->requests; r++) free(gm->req[r].h);
  if (gm->inst)
    for (int32_t i = 0; i < gm->instances; i++) {
      free(gm->inst[i].owned);
      free(gm->inst[i].split_own);
      free(gm->inst[i].guests);
    }
  infsim_big_free(gm->req);
  free(gm->inst);
  free(gm->split);
  free(gm->order);
  free(gm->rank);
  free(gm->spare);
  free(gm->sp_c);
  free(gm->sp_use);
  free(gm->sp_take);
  free(gm->sp_id);
  free(gm->cred);
  free(gm->cand);
  free(gm->fresh);
  for (size_t k = 0; k < gm->spare_h_n; k++) free(gm->spare_h[k].h);
  free(gm->spare_h);
  free(gm);
}

/* Room for one more item in a ledger list of n. The lists are bounded by
 * the requests in flight, so a failure means the machine is out of memory:
 * it is kept (the entry is not added) and the policy ends the run with
 * INFSIM_ENOMEM at its next message (infsim_gm_out_of_memory). */
static bool room(infsim_gm *gm, void **arr, size_t *cap, size_t n, size_t elem) {
  if (n < *cap || infsim_grow(arr, cap, n + 1, elem, 4)) return true; /* no call while there is room */
  gm->out_of_memory = true;
  return false;
}

static void list_add(infsim_gm *gm, int64_t **arr, size_t *n, size_t *cap, int64_t r, int32_t *pos) {
  if (!room(gm, (void **)arr, cap, *n, sizeof **arr)) return;
  *pos = (int32_t)*n;
  (*arr)[(*n)++] = r;
}

bool infsim_gm_out_of_memory(const infsim_gm *gm) { return gm->out_of_memory; }

/* Removes r (at *pos) by moving the last element into its place. */
static void list_remove(infsim_gm *gm, int64_t *arr, size_t *n, int32_t *pos, bool split) {
  int64_t last = arr[*n - 1];
  arr[*pos] = last;
  if (split)
    gm->req[last].split_pos = *pos;
  else
    gm->req[last].owned_pos = *pos;
  (*n)--;
  *pos = -1;
}

/* The owned requests at positions a and b of o's list trade places. */
static void owned_swap(infsim_gm *gm, gm_inst *o, int64_t a, int64_t b) {
  int64_t ra = o->owned[a], rb = o->owned[b];
  o->owned[a] = rb;
  o->owned[b] = ra;
  gm->req[rb].owned_pos = a;
  gm->req[ra].owned_pos = b;
}

/* The owned request at pos leaves o's live part, if it is in it: it
 * trades places with the part's last, which the part then ends before. */
static void owned_unlive(infsim_gm *gm, gm_inst *o, int64_t pos) {
  if (pos >= (int64_t)o->owned_live) return;
  owned_swap(gm, o, pos, (int64_t)o->owned_live - 1);
  o->owned_live--;
}

/* Where o's ended part starts. */
static int64_t ended_from(const gm_inst *o) { return (int64_t)(o->owned_n - o->owned_ended); }

/* The owned request r (not live) joins o's ended part: it trades places
 * with the last of the part before, which the ended part then starts at. */
static void owned_end(infsim_gm *gm, gm_inst *o, int64_t r) {
  gm_req *q = &gm->req[r];
  if (q->owned_pos >= ended_from(o)) return;
  owned_swap(gm, o, q->owned_pos, ended_from(o) - 1);
  o->owned_ended++;
  if (q->split_pos >= 0) o->ended_split++;
}

/* A request new to o's list (appended last, into the ended part's place
 * when there is one) goes before the ended part. */
static void owned_joined(infsim_gm *gm, gm_inst *o) {
  if (o->owned_ended > 0) owned_swap(gm, o, (int64_t)o->owned_n - 1, ended_from(o) - 1);
}

/* The owned request at position `from` moves to `to`, a hole (nothing
 * when from is the hole itself: what is left there moved on already). */
static void owned_move(infsim_gm *gm, gm_inst *o, int64_t from, int64_t to) {
  if (from == to) return;
  int64_t r = o->owned[from];
  o->owned[to] = r;
  gm->req[r].owned_pos = to;
}

/* r, with no remote blocks, leaves o's list. Its place is taken by the
 * last of its part, whose place the next part's last takes, and so on
 * (the parts keep their order): a move per part from its own on, one for
 * the usual ended request. */
static void owned_remove(infsim_gm *gm, gm_inst *o, int64_t r) {
  gm_req *q = &gm->req[r];
  int64_t hole = q->owned_pos;
  if (hole < 0) return; /* never joined (memory was short) */
  assert(q->split_pos < 0);
  if (hole < (int64_t)o->owned_live) {
    owned_move(gm, o, (int64_t)o->owned_live - 1, hole);
    hole = (int64_t)--o->owned_live;
  }
  if (hole < ended_from(o)) {
    owned_move(gm, o, ended_from(o) - 1, hole);
    hole = ended_from(o) - 1;
  } else {
    o->owned_ended--;
  }
  owned_move(gm, o, (int64_t)o->owned_n - 1, hole);
  o->owned_n--;
  q->owned_pos = -1;
}

void infsim_gm_set_live(infsim_gm *gm, int64_t req, bool live) {
  gm_req *q = &gm->req[req];
  if (q->owner < 0) return;
  gm_inst *o = &gm->inst[q->owner];
  if (!live) {
    owned_unlive(gm, o, q->owned_pos);
  } else if (q->owned_pos >= (int64_t)o->owned_live) { /* it trades places with the first not live */
    assert(q->owned_pos < ended_from(o)); /* an ended request runs no more */
    owned_swap(gm, o, q->owned_pos, (int64_t)o->owned_live);
    o->owned_live++;
  }
}

void infsim_gm_set_ended(infsim_gm *gm, int64_t req) {
  gm_req *q = &gm->req[req];
  if (q->owner < 0) return;
  gm_inst *o = &gm->inst[q->owner];
  owned_unlive(gm, o, q->owned_pos);
  owned_end(gm, o, req);
}

bool infsim_gm_ended(const infsim_gm *gm, int64_t req) {
  const gm_req *q = &gm->req[req];
  return q->owner >= 0 && q->owned_pos >= ended_from(&gm->inst[q->owner]);
}

size_t infsim_gm_owned_pending(const infsim_gm *gm, int32_t instance, const int64_t **reqs) {
  const gm_inst *o = &gm->inst[instance];
  *reqs = o->owned + o->owned_live;
  return o->owned_n - o->owned_live - o->owned_ended;
}

size_t infsim_gm_owned_ended(const infsim_gm *gm, int32_t instance, const int64_t **reqs) {
  const gm_inst *o = &gm->inst[instance];
  *reqs = o->owned + ended_from(o);
  return o->owned_ended;
}

int64_t infsim_gm_ended_split(const infsim_gm *gm, int32_t instance) { return gm->inst[instance].ended_split; }

size_t infsim_gm_new_owned(const infsim_gm *gm, const int64_t **reqs) {
  *reqs = gm->fresh;
  return gm->fresh_n;
}

size_t infsim_gm_owned_not_live(const infsim_gm *gm, int32_t instance, const int64_t **reqs) {
  const gm_inst *o = &gm->inst[instance];
  *reqs = o->owned + o->owned_live;
  return o->owned_n - o->owned_live;
}

bool infsim_gm_live(const infsim_gm *gm, int64_t req) {
  const gm_req *q = &gm->req[req];
  return q->owner >= 0 && q->owned_pos < (int64_t)gm->inst[q->owner].owned_live;
}

static void update_split_lists(infsim_gm *gm, int64_t r) {
  gm_req *q = &gm->req[r];
  bool is_split = q->remote > 0;
  gm_inst *o = &gm->inst[q->owner];
  if (is_split && q->split_pos < 0) {
    /* Both lists or neither: room in the owner's first. */
    if (!room(gm, (void **)&o->split_own, &o->split_own_cap, (size_t)o->split_owned, sizeof *o->split_own)) return;
    list_add(gm, &gm->split, &gm->split_n, &gm->split_cap, r, &q->split_pos);
    if (gm->split_n > gm->split_peak) gm->split_peak = gm->split_n;
    if (q->split_pos >= 0) {
      q->split_own_pos = o->split_owned;
      o->split_own[o->split_owned++] = r;
      if (q->owned_pos >= ended_from(o)) o->ended_split++;
    }
  }
  if (!is_split && q->split_pos >= 0) {
    list_remove(gm, gm->split, &gm->split_n, &q->split_pos, true);
    int64_t last = o->split_own[--o->split_owned];
    o->split_own[q->split_own_pos] = last;
    gm->req[last].split_own_pos = q->split_own_pos;
    q->split_own_pos = -1;
    if (q->owned_pos >= ended_from(o)) o->ended_split--;
  }
}

/* r joins or leaves the split lists when it became split or whole: the
 * check inline, as most entry changes (an owner's, a request's first or
 * last) leave it as it was. */
static inline void update_split(infsim_gm *gm, int64_t r) {
  const gm_req *q = &gm->req[r];
  if ((q->remote > 0) != (q->split_pos >= 0)) update_split_lists(gm, r);
}

static void set_entry_any(infsim_gm *gm, int64_t r, int32_t owner, int32_t holder, int64_t blocks, int64_t at);

/* A request DGFM may consolidate or swap pieces of (defrag_n counts them). */
static inline bool defrag_candidate(const gm_req *q) { return q->pieces >= 2 && q->small_pieces > 0; }

/* A piece small enough for gm_req.small_pieces. */
static int32_t small(const infsim_gm *gm, int64_t blocks) {
  return blocks > 0 && (gm->small_piece <= 0 || blocks <= gm->small_piece);
}

/* Sets the entry (r, holder) to blocks as of `at`; owner given when the
 * request is new to the ledger. */
static inline void set_entry(infsim_gm *gm, int64_t r, int32_t owner, int32_t holder, int64_t blocks, int64_t at) {
  assert(r >= 0 && r < gm->requests && holder >= 0 && holder < gm->instances && blocks >= 0);
  gm_req *q = &gm->req[r];
  if (holder == q->owner && blocks > 0 && at >= q->floor_ns && q->own_k >= 0) {
    /* The usual entry, an owner's own blocks that stay above zero: its
     * remote blocks stay as they were and its total above zero, so the
     * lists (split, owned) stay as they are and only the sums move. */
    gm_hold *e = &q->h[q->own_k];
    if (at < e->as_of_ns) return; /* an older report than what we know */
    q->total += blocks - e->blocks;
    gm->inst[holder].held += blocks - e->blocks;
    e->blocks = blocks;
    e->as_of_ns = at;
    return;
  }
  set_entry_any(gm, r, owner, holder, blocks, at);
}

/* r's entry h[k] at a holder other than its owner got blocks: r joins
 * the holder's guests (not when memory is short: infsim_gm_out_of_memory). */
static void guest_add(infsim_gm *gm, int64_t r, int32_t k) {
  gm_hold *e = &gm->req[r].h[k];
  gm_inst *in = &gm->inst[e->holder];
  if (!room(gm, (void **)&in->guests, &in->guests_cap, in->guests_n, sizeof *in->guests)) return;
  e->guest_pos = (int32_t)in->guests_n;
  in->guests[in->guests_n++] = (gm_guest){r, k};
}

/* Entry e, in its holder's guests, has no blocks left there: it leaves them. */
static void guest_remove(infsim_gm *gm, gm_hold *e) {
  gm_inst *in = &gm->inst[e->holder];
  if (e->guest_pos < 0) return; /* never joined (memory was short) */
  gm_guest last = in->guests[--in->guests_n];
  in->guests[e->guest_pos] = last;
  gm->req[last.req].h[last.k].guest_pos = e->guest_pos;
  e->guest_pos = -1;
}

/* q's entry array, when the spares have no room for it: they grow, or
 * it is freed (out of line: the spares grow a few times a run, and the
 * calls would give every leave a frame). */
static __attribute__((noinline)) void spare_full(infsim_gm *gm, gm_req *q) {
  if (infsim_grow((void **)&gm->spare_h, &gm->spare_h_cap, gm->spare_h_n + 1, sizeof *gm->spare_h, 64))
    gm->spare_h[gm->spare_h_n++] = (gm_spare_holds){q->h, q->cap};
  else
    free(q->h);
}

/* Nothing of r is left anywhere (its entries are all zero): it leaves
 * its owner's list and the ledger, as of `at`. */
static void leave(infsim_gm *gm, int64_t r, int64_t at) {
  gm_req *q = &gm->req[r];
  gm_inst *o = &gm->inst[q->owner];
  owned_remove(gm, o, r);
  gm->tracked--;
  q->owner = -1;
  q->n = 0; /* its zero entries go; its floor keeps stale reports out */
  q->own_k = -1;
  /* Its entry array goes to the spares (or, where they cannot grow, is
   * freed): only records in the ledger hold one (infsim_gm_free). */
  if (gm->spare_h_n < gm->spare_h_cap)
    gm->spare_h[gm->spare_h_n++] = (gm_spare_holds){q->h, q->cap};
  else
    spare_full(gm, q);
  q->h = NULL;
  q->cap = 0;
  q->floor_ns = at > q->floor_ns ? at : q->floor_ns;
}

/* set_entry, every case. */
static void set_entry_any(infsim_gm *gm, int64_t r, int32_t owner, int32_t holder, int64_t blocks, int64_t at) {
  gm_req *q = &gm->req[r];
  if (at < q->floor_ns) return;
  if (q->owner < 0) {
    if (blocks == 0) return;
    assert(owner >= 0 && owner < gm->instances);
    q->owner = owner;
    gm_inst *o = &gm->inst[owner];
    size_t cap = o->owned_cap;
    list_add(gm, &o->owned, &o->owned_n, &cap, r, &q->owned_pos);
    o->owned_cap = cap;
    if (q->owned_pos >= 0) owned_joined(gm, o);
    if (gm->noting && room(gm, (void **)&gm->fresh, &gm->fresh_cap, gm->fresh_n, sizeof *gm->fresh))
      gm->fresh[gm->fresh_n++] = r;
    if (++gm->tracked > gm->tracked_peak) gm->tracked_peak = gm->tracked;
  }
  assert(owner < 0 || owner == q->owner); /* ownership never changes */
  gm_hold *e = NULL;
  for (int32_t k = 0; k < q->n; k++)
    if (q->h[k].holder == holder) e = &q->h[k];
  if (!e) {
    if (blocks == 0) return;
    if (q->h == NULL && gm->spare_h_n > 0) {
      gm_spare_holds sp = gm->spare_h[--gm->spare_h_n];
      q->h = sp.h;
      q->cap = sp.cap;
    }
    size_t cap = (size_t)q->cap;
    if (!room(gm, (void **)&q->h, &cap, (size_t)q->n, sizeof *q->h)) return;
    q->cap = (int32_t)cap;
    if (holder == q->owner) q->own_k = q->n;
    e = &q->h[q->n++];
    *e = (gm_hold){.holder = holder, .guest_pos = -1, .blocks = 0, .as_of_ns = at};
  }
  if (at < e->as_of_ns) return; /* an older report than what we know */
  int64_t d = blocks - e->blocks;
  e->blocks = blocks;
  e->as_of_ns = at;
  q->total += d;
  gm->inst[holder].held += d;
  if (holder != q->owner) {
    if (blocks > 0 && blocks - d == 0) guest_add(gm, r, (int32_t)(e - q->h));
    if (blocks == 0 && blocks - d > 0) guest_remove(gm, e);
    bool was = defrag_candidate(q);
    q->pieces += (blocks > 0) - (blocks - d > 0);
    q->small_pieces += small(gm, blocks) - small(gm, blocks - d);
    gm->defrag_n += defrag_candidate(q) - was;
    gm->inst[holder].lent += d;
    gm->inst[q->owner].borrowed += d;
    gm->inst[holder].guest_gen++;
    q->remote += d;
  }
  update_split(gm, r);
  if (q->total == 0) leave(gm, r, at);
}

void infsim_gm_heartbeat(infsim_gm *gm, int32_t from, int64_t snapshot_ns, int64_t free_blocks,
                         const infsim_gm_entry *entries, size_t n, bool full) {
  assert(from >= 0 && from < gm->instances);
  gm_inst *in = &gm->inst[from];
  if (snapshot_ns >= in->free_as_of_ns) {
    set_free(gm, from, free_blocks);
    in->free_as_of_ns = snapshot_ns;
  }
  if (full) {
    /* Everything `from` holds and did not list is gone: zero its entries
     * first (over every request in the ledger), then apply the list. */
    for (int32_t o = 0; o < gm->instances; o++)
      for (size_t k = gm->inst[o].owned_n; k-- > 0;) {
        if (k >= gm->inst[o].owned_n) continue; /* the list shrank under us */
        int64_t r = gm->inst[o].owned[k];
        bool listed = false;
        for (size_t j = 0; j < n && !listed; j++) listed = entries[j].req == r;
        if (!listed && infsim_gm_held_by(gm, r, from) > 0) set_entry(gm, r, -1, from, 0, snapshot_ns);
      }
  }
  gm->fresh_n = 0;
  gm->noting = true;
  for (size_t j = 0; j < n; j++) {
    assert(entries[j].holder == from);
    if (j + 2 * GM_AHEAD < n) infsim_gm_prefetch(gm, entries[j + 2 * GM_AHEAD].req);
    if (j + GM_AHEAD < n) infsim_gm_prefetch_entries(gm, entries[j + GM_AHEAD].req, from);
    set_entry(gm, entries[j].req, entries[j].owner, from, entries[j].blocks, snapshot_ns);
  }
  gm->noting = false;
}

void infsim_gm_record_move(infsim_gm *gm, const infsim_gm_move *m, int64_t now_ns) {
  int32_t owner = gm->req[m->req].owner;
  int64_t at_from = infsim_gm_held_by(gm, m->req, m->from);
  int64_t at_to = infsim_gm_held_by(gm, m->req, m->to);
  /* New blocks placed remotely take nothing from `from`; a copy takes what
   * the ledger knows there (a stale view may know fewer). */
  int64_t taken = m->fresh ? 0 : at_from < m->blocks ? at_from : m->blocks;
  /* First blocks of a request: only its owner places new ones. A copy of
   * a request the ledger does not know (its entries dropped while the
   * confirm was late) may come from a creditor, so `from` need not be the
   * owner: leave it to the holders' next heartbeats. */
  if (owner < 0 && !m->fresh) return;
  if (owner < 0) owner = m->from;
  set_entry(gm, m->req, owner, m->to, at_to + m->blocks, now_ns);
  if (taken > 0) set_entry(gm, m->req, owner, m->from, at_from - taken, now_ns);
}

void infsim_gm_prefetch(const infsim_gm *gm, int64_t req) { __builtin_prefetch(&gm->req[req]); }

void infsim_gm_prefetch_entries(const infsim_gm *gm, int64_t req, int32_t holder) {
  const gm_req *q = &gm->req[req];
  if (q->h != NULL) __builtin_prefetch(&q->h[holder == q->owner && q->own_k >= 0 ? q->own_k : 0]);
}

/* infsim_gm_forget, every case but the most usual (out of line: that one
 * then needs no frame). */
static __attribute__((noinline)) void forget_any(infsim_gm *gm, int64_t req, int64_t now_ns) {
  gm_req *q = &gm->req[req];
  /* The usual news: every block the ledger has of req is as of now_ns or
   * older, so it leaves the ledger whole, as zeroing each entry in turn
   * (below) would leave it, in one pass. */
  bool whole = q->owner >= 0 && now_ns >= q->floor_ns;
  for (int32_t k = 0; k < q->n && whole; k++) whole = q->h[k].blocks == 0 || q->h[k].as_of_ns <= now_ns;
  if (whole) {
    for (int32_t k = 0; k < q->n; k++) {
      gm_hold *e = &q->h[k];
      gm->inst[e->holder].held -= e->blocks;
      if (e->holder != q->owner && e->blocks > 0) guest_remove(gm, e);
      if (e->holder != q->owner) {
        gm->inst[e->holder].lent -= e->blocks;
        gm->inst[q->owner].borrowed -= e->blocks;
        gm->inst[e->holder].guest_gen++;
      }
    }
    q->total = q->remote = 0;
    gm->defrag_n -= defrag_candidate(q);
    q->pieces = q->small_pieces = 0;
    update_split(gm, req);
    leave(gm, req, now_ns);
    return;
  }
  /* Entries set after now_ns (a move confirmed since, a new life after a
   * recompute) are newer than the news and stay. */
  for (int32_t k = q->n; k-- > 0;) {
    if (k >= q->n) continue; /* the list emptied under us */
    const gm_hold *e = &q->h[k];
    if (e->blocks > 0 && e->as_of_ns <= now_ns) set_entry(gm, req, -1, e->holder, 0, now_ns);
  }
  if (q->owner < 0) {
    q->n = 0;
    q->own_k = -1;
  }
  if (now_ns > q->floor_ns) q->floor_ns = now_ns;
}

void infsim_gm_forget(infsim_gm *gm, int64_t req, int64_t now_ns) {
  gm_req *q = &gm->req[req];
  /* The most usual: a request whose owner's entry alone (no lists but the
   * owned one), as of now_ns or older, leaves the ledger whole. */
  if (q->owner >= 0 && now_ns >= q->floor_ns && q->n == 1 && q->own_k == 0 && q->remote == 0 &&
      (q->h[0].blocks == 0 || q->h[0].as_of_ns <= now_ns)) {
    gm->inst[q->h[0].holder].held -= q->h[0].blocks;
    q->total = 0;
    q->pieces = q->small_pieces = 0; /* (none: no remote blocks; nor is it split, nor a DGFM candidate) */
    assert(q->split_pos < 0);
    leave(gm, req, now_ns);
    return;
  }
  forget_any(gm, req, now_ns);
}

void infsim_gm_reset(infsim_gm *gm) {
  for (int64_t r = 0; r < gm->requests; r++) {
    free(gm->req[r].h);
    gm->req[r] = (gm_req){.owner = -1, .own_k = -1, .split_pos = -1, .split_own_pos = -1, .owned_pos = -1};
  }
  for (int32_t i = 0; i < gm->instances; i++) {
    gm_inst *in = &gm->inst[i];
    in->owned_n = in->owned_live = in->owned_ended = 0;
    in->ended_split = 0;
    in->guests_n = 0;
    in->free_view = 0;
    in->free_as_of_ns = 0;
    in->lent = in->borrowed = in->held = 0;
    in->guest_gen++; /* (not zeroed: a generation never goes back) */
    in->split_owned = 0;
  }
  gm->split_n = 0;
  gm->tracked = 0;
  gm->defrag_n = 0;
  cred_rebuild(gm);
}

void infsim_gm_high_water(const infsim_gm *gm, int64_t *ledger_now, int64_t *ledger_peak, int64_t *split_now,
                          int64_t *split_peak) {
  *ledger_now = gm->tracked;
  *ledger_peak = gm->tracked_peak;
  *split_now = (int64_t)gm->split_n;
  *split_peak = (int64_t)gm->split_peak;
}

int32_t infsim_gm_instances(const infsim_gm *gm) { return gm->instances; }
int32_t infsim_gm_node_of(const infsim_gm *gm, int32_t i) { return i / gm->per_node; }
int32_t infsim_gm_owner(const infsim_gm *gm, int64_t req) { return gm->req[req].owner; }
int64_t infsim_gm_blocks(const infsim_gm *gm, int64_t req) { return gm->req[req].total; }
int64_t infsim_gm_remote_blocks(const infsim_gm *gm, int64_t req) { return gm->req[req].remote; }

int64_t infsim_gm_held_by(const infsim_gm *gm, int64_t req, int32_t holder) {
  const gm_req *q = &gm->req[req];
  /* The owner's entry holds what is not away from it: read from the
   * record, not from its entry in h (another cache line; a report looks
   * up the owner's entry of each of its running requests). */
  assert(holder != q->owner || q->total - q->remote == (q->own_k >= 0 ? q->h[q->own_k].blocks : 0));
  if (holder == q->owner) return q->total - q->remote;
  for (int32_t k = 0; k < q->n; k++)
    if (q->h[k].holder == holder) return q->h[k].blocks;
  return 0;
}

void infsim_gm_set_small_piece(infsim_gm *gm, int64_t blocks) {
  gm->small_piece = blocks;
  /* An empty ledger (a run's set-up) has no entries to count: every
   * count stays 0, and a walk of the records would read them all (9 MB
   * on bench/distkv_speed's hour). Only a record with an owner has
   * entries (set_entry_any gives it one first; leave drops both). */
  if (gm->tracked == 0) return;
  gm->defrag_n = 0;
  for (int64_t r = 0; r < gm->requests; r++) {
    gm_req *q = &gm->req[r];
    q->small_pieces = 0;
    for (int32_t k = 0; k < q->n; k++) q->small_pieces += q->h[k].holder != q->owner && small(gm, q->h[k].blocks);
    gm->defrag_n += defrag_candidate(q);
  }
}

/* Whether pieces of at most max_blocks (<= 0: any) are the ones the
 * ledger counts as small (gm_req.small_pieces). */
static bool counts_small(const infsim_gm *gm, int64_t max_blocks) {
  return max_blocks == gm->small_piece || (max_blocks <= 0 && gm->small_piece <= 0);
}

int64_t infsim_gm_defrag_candidates(const infsim_gm *gm, int64_t max_blocks) {
  return counts_small(gm, max_blocks) ? gm->defrag_n : -1;
}

int64_t infsim_gm_most_spare(const infsim_gm *gm) {
  int64_t s = gm->cred[1].id >= 0 ? gm->cred[1].free - gm->reserve : 0;
  return s > 0 ? s : 0;
}

int64_t infsim_gm_remote_pieces(const infsim_gm *gm, int64_t req, int64_t max_blocks, int64_t *small_n) {
  const gm_req *q = &gm->req[req];
  if (counts_small(gm, max_blocks)) {
    *small_n = q->small_pieces;
    return q->pieces;
  }
  int64_t n = 0, m = 0;
  for (int32_t k = 0; k < q->n; k++) {
    const gm_hold *e = &q->h[k];
    if (e->blocks == 0 || e->holder == q->owner) continue;
    n++;
    m += max_blocks <= 0 || e->blocks <= max_blocks;
  }
  *small_n = m;
  return n;
}

int64_t infsim_gm_held_by_hint(const infsim_gm *gm, int64_t req, int32_t holder, int32_t *k) {
  const gm_req *q = &gm->req[req];
  int32_t j = *k;
  if (j >= 0 && j < q->n && q->h[j].holder == holder) return q->h[j].blocks;
  for (j = 0; j < q->n; j++)
    if (q->h[j].holder == holder) {
      *k = j;
      return q->h[j].blocks;
    }
  return 0;
}

size_t infsim_gm_placement(const infsim_gm *gm, int64_t req, infsim_gm_entry *out, size_t cap) {
  const gm_req *q = &gm->req[req];
  size_t n = 0;
  for (int32_t k = 0; k < q->n; k++) {
    if (q->h[k].blocks == 0) continue;
    if (n < cap) out[n] = (infsim_gm_entry){req, q->owner, q->h[k].holder, q->h[k].blocks};
    n++;
  }
  return n;
}

int64_t infsim_gm_free_blocks(const infsim_gm *gm, int32_t i) { return gm->inst[i].free_view; }
int64_t infsim_gm_spare_blocks(const infsim_gm *gm, int32_t i) {
  int64_t s = gm->inst[i].free_view - gm->reserve;
  return s > 0 ? s : 0;
}
int64_t infsim_gm_lent(const infsim_gm *gm, int32_t i) { return gm->inst[i].lent; }
int64_t infsim_gm_borrowed(const infsim_gm *gm, int32_t i) { return gm->inst[i].borrowed; }
int64_t infsim_gm_held(const infsim_gm *gm, int32_t i) { return gm->inst[i].held; }
uint64_t infsim_gm_guest_generation(const infsim_gm *gm, int32_t i) { return gm->inst[i].guest_gen; }

size_t infsim_gm_owned(const infsim_gm *gm, int32_t instance, const int64_t **reqs) {
  *reqs = gm->inst[instance].owned;
  return gm->inst[instance].owned_n;
}

int64_t infsim_gm_split_owned(const infsim_gm *gm, int32_t instance) { return gm->inst[instance].split_owned; }

size_t infsim_gm_split_owned_requests(const infsim_gm *gm, int32_t instance, const int64_t **reqs) {
  *reqs = gm->inst[instance].split_own;
  return (size_t)gm->inst[instance].split_owned;
}

size_t infsim_gm_split_requests(const infsim_gm *gm, const int64_t **reqs) {
  *reqs = gm->split;
  return gm->split_n;
}

size_t infsim_gm_debtors(const infsim_gm *gm, int32_t *out) {
  size_t n = 0;
  for (int32_t i = 0; i < gm->instances; i++)
    if (infsim_gm_spare_blocks(gm, i) == 0) out[n++] = i;
  return n;
}

/* Creditor order: `rank` groups first (lower first), then spare, most
 * first, then id. Insertion sort over the instances' spare, read once:
 * instances are few. */
static size_t order_creditors(const infsim_gm *gm, int32_t exclude, const int32_t *rank, int32_t *out) {
  size_t n = 0;
  int64_t *spare = gm->spare;
  for (int32_t i = 0; i < gm->instances; i++) {
    int64_t si = infsim_gm_spare_blocks(gm, i);
    if (i == exclude || si == 0) continue;
    int32_t ri = rank ? rank[i] : 0;
    size_t j = n++;
    while (j > 0) {
      int32_t p = out[j - 1];
      int32_t rp = rank ? rank[p] : 0;
      bool after = rp < ri || (rp == ri && spare[j - 1] >= si);
      if (after) break;
      out[j] = p;
      spare[j] = spare[j - 1];
      j--;
    }
    out[j] = i;
    spare[j] = si;
  }
  return n;
}

size_t infsim_gm_creditors(const infsim_gm *gm, int32_t *out) { return order_creditors(gm, -1, NULL, out); }

/* The first creditor of order_creditors' order (rank groups, then most
 * spare, then id), or -1 when no instance but `exclude` has spare: one
 * scan. A plan gives a piece to creditors in this order until the piece
 * is placed, which seldom takes more than one or two of them; a creditor
 * it takes is left with no spare or the piece is placed, so scanning again
 * gives the next one in the order without sorting them all. */
static int32_t first_creditor(const infsim_gm *gm, int32_t exclude, const int32_t *rank) {
  if (!rank) {
    /* One group: the most free memory above the reserve (spare > 0),
     * the lowest id of those with as much. */
    int32_t best = most_free_but(gm, exclude);
    return best >= 0 && gm->inst[best].free_view > gm->reserve ? best : -1;
  }
  int32_t best = -1, best_rank = 0;
  int64_t best_spare = 0;
  for (int32_t i = 0; i < gm->instances; i++) {
    int64_t si = infsim_gm_spare_blocks(gm, i);
    if (i == exclude || si == 0) continue;
    int32_t ri = rank ? rank[i] : 0;
    if (best < 0 || ri < best_rank || (ri == best_rank && si > best_spare)) {
      best = i;
      best_rank = ri;
      best_spare = si;
    }
  }
  return best;
}


/* The spread planner's moves of `*movable` new blocks of r for `debtor`
 * (planner.h): every other instance with spare or blocks of r, its
 * placement, then the moves, the debtor's node first (a prompt's first
 * blocks are attended by every later chunk: the cheap holders take them;
 * measured: remote first was no better), most blocks first. True when no
 * instance has spare left. */
static bool spread_moves(infsim_gm *gm, int32_t debtor, int64_t r, int64_t *movable, int64_t *left,
                         infsim_gm_move *out, size_t *n, size_t cap) {
  size_t nk = 0;
  int32_t node = infsim_gm_node_of(gm, debtor);
  bool any = false;
  for (int32_t i = 0; i < gm->instances; i++) {
    if (i == debtor) continue;
    int64_t s = infsim_gm_spare_blocks(gm, i), h = infsim_gm_held_by(gm, r, i);
    if (s == 0 && h == 0) continue;
    any |= s > 0;
    gm->sp_id[nk] = i;
    gm->sp_c[nk++] = (infsim_planner_creditor){.spare = s, .held = h, .remote = infsim_gm_node_of(gm, i) != node,
                                               .node = infsim_gm_node_of(gm, i)};
  }
  if (!any) return true;
  infsim_planner_spread(gm->sp_c, nk, *movable, gm->spread_remote, gm->spread_near, gm->spread_relay, gm->sp_use,
                        gm->sp_take);
  for (int pass = 0; pass < 2; pass++)
    for (;;) {
      size_t bk = nk;
      for (size_t k = 0; k < nk; k++)
        if (gm->sp_take[k] > 0 && gm->sp_c[k].remote == (pass == 1) && (bk == nk || gm->sp_take[k] > gm->sp_take[bk]))
          bk = k;
      if (bk == nk || *movable == 0 || *n == cap) break;
      int64_t b = gm->sp_take[bk] < *movable ? gm->sp_take[bk] : *movable;
      gm->sp_take[bk] = 0;
      int32_t to = gm->sp_id[bk];
      out[(*n)++] = (infsim_gm_move){.req = r, .from = debtor, .to = to, .blocks = b, .fresh = true};
      set_free(gm, to, gm->inst[to].free_view - b);
      *movable -= b;
      *left -= b;
    }
  return false;
}

void infsim_gm_set_spread_costs(infsim_gm *gm, int64_t remote_blocks, int64_t near_blocks) {
  gm->spread_remote = remote_blocks;
  gm->spread_near = near_blocks;
}

void infsim_gm_set_spread_relay(infsim_gm *gm, bool relay) { gm->spread_relay = relay; }

size_t infsim_gm_plan(infsim_gm *gm, infsim_gm_planner planner, int32_t debtor, int64_t req, int64_t need,
                      infsim_gm_move *out, size_t cap) {
  assert(debtor >= 0 && debtor < gm->instances && need >= 0);
  /* Which instances are creditors (those with spare) does not depend on
   * the request whose blocks move: with none, nothing can be planned. */
  int32_t first = first_creditor(gm, debtor, NULL);
  if (first < 0) return 0;
  gm_inst *d = &gm->inst[debtor];
  /* Candidates: req, the guests held at the debtor (guests_first), the
   * debtor's requests with blocks there. */
  size_t want = d->owned_n + 1 + (gm->guests_first ? d->guests_n : 0);
  if (gm->cand_cap < want) {
    free(gm->cand);
    gm->cand_cap = want;
    gm->cand = malloc(gm->cand_cap * sizeof *gm->cand);
    assert(gm->cand);
  }
  size_t nc = 0;
  if (req >= 0) gm->cand[nc++] = req;
  size_t fixed = nc;
  /* Own work first (policy.own_work_first): a holder short of memory for
   * its own requests moves its guests' pieces on before any of its own
   * KV, most blocks held there first (ties by id). A guest is already
   * split, so moving its piece adds no holder to a request's span where
   * moving an own request would. */
  if (gm->guests_first)
    for (size_t k = 0; k < d->guests_n; k++) {
      int64_t r = d->guests[k].req, h = gm->req[r].h[d->guests[k].k].blocks;
      if (r == req || gm->req[r].owner == debtor || h <= 0) continue;
      size_t j = nc++;
      for (; j > fixed; j--) {
        int64_t q = gm->cand[j - 1], hq = infsim_gm_held_by(gm, q, debtor);
        if (hq > h || (hq == h && q < r)) break;
        gm->cand[j] = q;
      }
      gm->cand[j] = r;
    }
  fixed = nc;
  /* Longest first, ties by id (deterministic); but a request that may take
   * new blocks goes first whatever its length: new blocks placed at a
   * creditor cost no copy, moving another request's KV does. The next
   * candidate is selected when it is needed (a plan seldom goes past the
   * first), not sorted up front; the debtor's own requests join the
   * candidates only when the plan gets to them (a plan for a request that
   * may take new blocks mostly ends with it: a walk of the debtor's
   * requests saved). */
  int32_t *rank = gm->rank;
  size_t n = 0;
  int64_t left = need;
  bool own_joined = false;
  for (size_t c = 0; left > 0 && n < cap; c++) {
    if (c == fixed && !own_joined) {
      for (size_t k = 0; k < d->owned_n; k++) {
        int64_t r = d->owned[k];
        if (r != req && infsim_gm_held_by(gm, r, debtor) > 0) gm->cand[nc++] = r;
      }
      own_joined = true;
    }
    if (c >= nc) break;
    if (c >= fixed) {
      size_t best = c;
      for (size_t k = c + 1; k < nc; k++) {
        int64_t q = gm->cand[k], b = gm->cand[best];
        if (gm->req[q].total > gm->req[b].total || (gm->req[q].total == gm->req[b].total && q < b)) best = k;
      }
      int64_t t = gm->cand[c];
      gm->cand[c] = gm->cand[best];
      gm->cand[best] = t;
    }
    int64_t r = gm->cand[c];
    int64_t movable = r == req ? need : infsim_gm_held_by(gm, r, debtor);
    if (movable > left) movable = left;
    /* Greedy, level and spread rank every creditor alike (no ranks). */
    bool ranked = planner != INFSIM_PLAN_GREEDY && planner != INFSIM_PLAN_LEVEL && planner != INFSIM_PLAN_SPREAD;
    for (int32_t i = 0; ranked && i < gm->instances; i++) {
      bool same_node = infsim_gm_node_of(gm, i) == infsim_gm_node_of(gm, debtor);
      switch (planner) {
      case INFSIM_PLAN_SAME_NODE: rank[i] = same_node ? 0 : 1; break;
      case INFSIM_PLAN_AFFINITY: rank[i] = infsim_gm_held_by(gm, r, i) > 0 ? 0 : same_node ? 1 : 2; break;
      case INFSIM_PLAN_FIT:
        rank[i] = infsim_planner_fit_rank(infsim_gm_spare_blocks(gm, i), movable, infsim_gm_held_by(gm, r, i) > 0,
                                          same_node);
        break;
      default: break;
      }
    }
    const int32_t *ranks = ranked ? rank : NULL;
    if (planner == INFSIM_PLAN_LEVEL) {
      /* The water level is over every creditor's spare: the whole order. */
      size_t nk = order_creditors(gm, debtor, NULL, gm->order);
      if (nk == 0) break; /* no spare left for this or any later candidate */
      int64_t level = infsim_planner_water_level(gm, gm->order, nk, movable);
      for (size_t k = 0; k < nk && movable > 0 && n < cap; k++) {
        int32_t to = gm->order[k];
        int64_t b = infsim_planner_level_piece(infsim_gm_spare_blocks(gm, to), level, movable);
        if (b > movable) b = movable;
        out[n++] = (infsim_gm_move){.req = r, .from = debtor, .to = to, .blocks = b, .fresh = r == req};
        set_free(gm, to, gm->inst[to].free_view - b);
        movable -= b;
        left -= b;
      }
      continue;
    }
    /* spread places a gathering prompt's new blocks; the KV of other
     * requests that must move goes as greedy's does. */
    if (planner == INFSIM_PLAN_SPREAD && r == req) {
      if (spread_moves(gm, debtor, r, &movable, &left, out, &n, cap)) break;
      continue;
    }
    /* Before the first move (the view unchanged), without ranks: the one found above. */
    int32_t to = !ranks && n == 0 ? first : first_creditor(gm, debtor, ranks);
    if (to < 0) break; /* no spare left for this or any later candidate */
    for (;;) {
      int64_t b = infsim_gm_spare_blocks(gm, to);
      if (b > movable) b = movable;
      out[n++] = (infsim_gm_move){.req = r, .from = debtor, .to = to, .blocks = b, .fresh = r == req};
      set_free(gm, to, gm->inst[to].free_view - b);
      movable -= b;
      left -= b;
      if (movable == 0 || n == cap || (to = first_creditor(gm, debtor, ranks)) < 0) break;
    }
  }
  return n;
}

void infsim_gm_set_guests_first(infsim_gm *gm, bool on) { gm->guests_first = on; }

void infsim_gm_unpropose(infsim_gm *gm, const infsim_gm_move *m) {
  set_free(gm, m->to, gm->inst[m->to].free_view + m->blocks);
}
void infsim_gm_propose(infsim_gm *gm, const infsim_gm_move *m) {
  set_free(gm, m->to, gm->inst[m->to].free_view - m->blocks);
}

bool infsim_gm_same_ledger(const infsim_gm *a, const infsim_gm *b) {
  if (a->requests != b->requests || a->instances != b->instances) return false;
  for (int64_t r = 0; r < a->requests; r++) {
    if (a->req[r].total != b->req[r].total) return false;
    if (a->req[r].total == 0) continue;
    if (a->req[r].owner != b->req[r].owner) return false;
    for (int32_t i = 0; i < a->instances; i++)
      if (infsim_gm_held_by(a, r, i) != infsim_gm_held_by(b, r, i)) return false;
  }
  return true;
}

void infsim_gm_check(const infsim_gm *gm) {
  int64_t *lent = calloc((size_t)gm->instances, sizeof *lent);
  int64_t *borrowed = calloc((size_t)gm->instances, sizeof *borrowed);
  int64_t *held = calloc((size_t)gm->instances, sizeof *held);
  int64_t *split_owned = calloc((size_t)gm->instances, sizeof *split_owned);
  int64_t *ended_split = calloc((size_t)gm->instances, sizeof *ended_split);
  assert(ended_split);
  size_t *guests = calloc((size_t)gm->instances, sizeof *guests);
  assert(guests);
  assert(lent && borrowed && held && split_owned);
  size_t split = 0;
  int64_t tracked = 0, defrag = 0;
  for (int64_t r = 0; r < gm->requests; r++) {
    const gm_req *q = &gm->req[r];
    tracked += q->owner >= 0;
    defrag += defrag_candidate(q);
    /* Only a record in the ledger holds an entry array, and one in the
     * ledger is in its owner's list unless a list could not grow: the
     * lists name every array infsim_gm_free frees. */
    assert(q->h == NULL || q->owner >= 0);
    assert(q->owner < 0 || gm->out_of_memory ||
           (q->owned_pos >= 0 && (size_t)q->owned_pos < gm->inst[q->owner].owned_n &&
            gm->inst[q->owner].owned[q->owned_pos] == r));
    int64_t total = 0, remote = 0;
    int32_t own_k = -1, pieces = 0, small_pieces = 0;
    for (int32_t k = 0; k < q->n; k++) {
      const gm_hold *e = &q->h[k];
      assert(e->blocks >= 0);
      if (e->holder == q->owner) own_k = k;
      for (int32_t j = 0; j < k; j++) assert(q->h[j].holder != e->holder); /* one entry per holder */
      total += e->blocks;
      held[e->holder] += e->blocks;
      if (e->holder != q->owner) {
        assert(q->owner >= 0);
        lent[e->holder] += e->blocks;
        borrowed[q->owner] += e->blocks;
        remote += e->blocks;
        pieces += e->blocks > 0;
        small_pieces += small(gm, e->blocks);
        guests[e->holder] += e->blocks > 0;
        if (e->blocks > 0) {
          const gm_inst *in = &gm->inst[e->holder];
          assert(e->guest_pos >= 0 && (size_t)e->guest_pos < in->guests_n);
          assert(in->guests[e->guest_pos].req == r && in->guests[e->guest_pos].k == k);
          (void)in;
        }
      }
    }
    assert(pieces == q->pieces && small_pieces == q->small_pieces);
    (void)pieces;
    (void)small_pieces;
    assert(total == q->total && remote == q->remote);
    assert(own_k == q->own_k); /* the owner's entry where the lookups take it */
    (void)own_k;
    (void)total; /* read only by the asserts */
    (void)remote;
    assert((q->owner >= 0) == (total > 0));
    assert((q->split_pos >= 0) == (remote > 0));
    assert((q->split_own_pos >= 0) == (q->split_pos >= 0));
    if (q->split_pos >= 0) {
      assert(gm->split[q->split_pos] == r);
      assert(q->split_own_pos < gm->inst[q->owner].split_owned && gm->inst[q->owner].split_own[q->split_own_pos] == r);
      split++;
      split_owned[q->owner]++;
    }
    if (q->owner >= 0) assert(q->owned_pos >= 0 && gm->inst[q->owner].owned[q->owned_pos] == r);
    if (q->owner >= 0) {
      const gm_inst *o = &gm->inst[q->owner];
      assert(o->owned_live + o->owned_ended <= o->owned_n);
      ended_split[q->owner] += q->owned_pos >= ended_from(o) && q->split_pos >= 0;
    }
  }
  assert(split == gm->split_n && split <= gm->split_peak);
  assert(tracked == gm->tracked && tracked <= gm->tracked_peak);
  assert(defrag == gm->defrag_n);
  (void)defrag;
  (void)tracked;
  int64_t sum_lent = 0, sum_borrowed = 0;
  for (int32_t i = 0; i < gm->instances; i++) {
    assert(lent[i] == gm->inst[i].lent && borrowed[i] == gm->inst[i].borrowed && held[i] == gm->inst[i].held);
    assert(split_owned[i] == gm->inst[i].split_owned);
    assert(ended_split[i] == gm->inst[i].ended_split); /* the ended part's requests in gm->split */
    assert(guests[i] == gm->inst[i].guests_n); /* and each is an entry with blocks (above) */
    sum_lent += lent[i];
    sum_borrowed += borrowed[i];
  }
  assert(sum_lent == sum_borrowed);
  /* The tournament of free memory: every match as replayed now. */
  for (int32_t k = 0; k < gm->cred_leaves; k++) {
    const gm_match *m = &gm->cred[gm->cred_leaves + k];
    assert(m->id == (k < gm->instances ? k : -1) && (k >= gm->instances || m->free == gm->inst[k].free_view));
    (void)m;
  }
  for (int32_t k = gm->cred_leaves - 1; k >= 1; k--) {
    gm_match w = more_free(gm->cred[2 * k], gm->cred[2 * k + 1]);
    assert(gm->cred[k].id == w.id && gm->cred[k].free == w.free);
    (void)w;
  }
  (void)sum_lent;
  (void)sum_borrowed;
  free(lent);
  free(borrowed);
  free(held);
  free(split_owned);
  free(ended_split);
  free(guests);
}
