/*
** dgfm.c: one bounded DGFM pass: recalls, consolidations, swaps (dgfm.h).
**
** The pass works on copies: the instances' spare memory (deducted as moves
** are planned) and the split requests sorted by id (so the outcome does
** not depend on the ledger's internal order). Requests already moved in
** this pass are kept in a short list (at most max_moves long).
**
** Invariants of a pass's output (tests/test_dgfm.c checks them on random
** ledgers): applied in order, no recall or consolidation takes an
** instance below its reserve; swaps leave every instance's memory as it
** was; every request keeps its blocks; no request spans more holders than
** before.
*/
#include "infsim/dgfm.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>

typedef struct {
  int64_t req;
  int32_t holder;
  int64_t blocks;
} piece;

struct infsim_dgfm {
  int32_t instances;
  int64_t *spare;
  infsim_gm_entry *entries; /* one request's placement */
  int64_t *reqs;
  size_t reqs_cap;
  piece *pieces;
  size_t pieces_cap;
  int64_t *touched;
  size_t touched_n, touched_cap;
};

const char *infsim_dgfm_kind_name(infsim_dgfm_kind k) {
  switch (k) {
  case INFSIM_DGFM_RECALL: return "recall";
  case INFSIM_DGFM_CONSOLIDATE: return "consolidate";
  case INFSIM_DGFM_SWAP: return "swap";
  }
  return "?";
}

infsim_status infsim_dgfm_new(int32_t instances, infsim_dgfm **out, infsim_error *err) {
  if (instances < 1) return infsim_fail(err, INFSIM_EINPUT, "dgfm: instances must be >= 1");
  infsim_dgfm *d = calloc(1, sizeof *d);
  if (d) {
    d->instances = instances;
    d->spare = calloc((size_t)instances, sizeof *d->spare);
    d->entries = calloc((size_t)instances, sizeof *d->entries);
  }
  if (!d || !d->spare || !d->entries) {
    infsim_dgfm_free(d);
    return infsim_fail(err, INFSIM_ENOMEM, "dgfm: out of memory");
  }
  *out = d;
  return INFSIM_OK;
}

void infsim_dgfm_free(infsim_dgfm *d) {
  if (!d) return;
  free(d->spare);
  free(d->entries);
  free(d->reqs);
  free(d->pieces);
  free(d->touched);
  free(d);
}

/* Scratch growth; the arrays are bounded by the requests in flight, and
 * running out of memory there is fatal. */
static void *reserve(void *p, size_t *cap, size_t need, size_t elem) {
  if (*cap >= need) return p;
  size_t c = *cap ? *cap : 16;
  while (c < need) c *= 2;
  void *q = realloc(p, c * elem);
  assert(q);
  *cap = c;
  return q;
}

static int by_id(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* Ids ascending (distinct, so any sort gives the same order). The split
 * list is mostly in id order already (requests split in about the order
 * they arrive; a removal moves the last one into the hole), and a pass's
 * list is short: insertion sort, which is then about linear, up to 64
 * ids; qsort beyond, where its O(n log n) bound matters. */
static void sort_ids(int64_t *a, size_t n) {
  if (n > 64) {
    qsort(a, n, sizeof *a, by_id);
    return;
  }
  for (size_t k = 1; k < n; k++) {
    int64_t x = a[k];
    size_t j = k;
    for (; j > 0 && a[j - 1] > x; j--) a[j] = a[j - 1];
    a[j] = x;
  }
}

static int by_size(const void *a, const void *b) {
  const piece *x = a, *y = b;
  if (x->blocks != y->blocks) return x->blocks < y->blocks ? -1 : 1;
  if (x->req != y->req) return x->req < y->req ? -1 : 1;
  return (x->holder > y->holder) - (x->holder < y->holder);
}

static bool touched(const infsim_dgfm *d, int64_t r) {
  for (size_t k = 0; k < d->touched_n; k++)
    if (d->touched[k] == r) return true;
  return false;
}

static void touch(infsim_dgfm *d, int64_t r) {
  d->touched = reserve(d->touched, &d->touched_cap, d->touched_n + 1, sizeof *d->touched);
  d->touched[d->touched_n++] = r;
}

typedef struct {
  infsim_dgfm_move *out;
  size_t cap, n;
  int64_t blocks;
  const infsim_dgfm_limits *lim;
} emitter;

static bool room(const emitter *e, size_t moves, int64_t blocks) {
  return e->n + moves <= e->cap && (int64_t)(e->n + moves) <= e->lim->max_moves &&
         e->blocks + blocks <= e->lim->max_blocks;
}

static void emit(emitter *e, int64_t req, int32_t from, int32_t to, int64_t blocks, infsim_dgfm_kind kind,
                 int32_t pair) {
  assert(room(e, 1, blocks) && from != to && blocks > 0);
  e->out[e->n++] = (infsim_dgfm_move){
      .move = {.req = req, .from = from, .to = to, .blocks = blocks, .fresh = false}, .kind = kind, .pair = pair};
  e->blocks += blocks;
}

/* req's entries held away from its owner, smallest first; unsorted (and
 * of no use to defragment) when fewer than two, or when the smallest is
 * above max_piece (> 0). */
static size_t remote_pieces(infsim_dgfm *d, const infsim_gm *gm, int64_t r, int64_t max_piece, piece *out) {
  size_t n = infsim_gm_placement(gm, r, d->entries, (size_t)d->instances), m = 0;
  int64_t smallest = INT64_MAX;
  for (size_t k = 0; k < n; k++)
    if (d->entries[k].holder != d->entries[k].owner) {
      out[m++] = (piece){r, d->entries[k].holder, d->entries[k].blocks};
      if (d->entries[k].blocks < smallest) smallest = d->entries[k].blocks;
    }
  if (m > 1 && (max_piece <= 0 || smallest <= max_piece)) qsort(out, m, sizeof *out, by_size);
  return m;
}

/* Consolidation or swap for r (dgfm.h, steps 2 and 3). */
static void defragment(infsim_dgfm *d, const infsim_gm *gm, int64_t r, size_t nreqs, emitter *e) {
  /* Most split requests have one remote piece, or none small enough to
   * move: asked of the ledger first, without copying the pieces out. */
  int64_t small_n = 0, pieces = infsim_gm_remote_pieces(gm, r, e->lim->max_piece_blocks, &small_n);
  if (pieces < 2 || small_n == 0) return;
  piece local[64];
  piece *pc = d->instances <= 64 ? local : malloc((size_t)d->instances * sizeof *pc);
  assert(pc);
  size_t m = remote_pieces(d, gm, r, e->lim->max_piece_blocks, pc);
  if (m >= 2 && (e->lim->max_piece_blocks <= 0 || pc[0].blocks <= e->lim->max_piece_blocks)) {
    const piece small = pc[0];
    const int32_t s = small.holder;
    const int64_t p = small.blocks;
    bool done = false;
    /* Targets: r's other remote holders, largest piece first. */
    for (size_t t = m; t-- > 1 && !done;) {
      int32_t to = pc[t].holder;
      if (d->spare[to] >= p && room(e, 1, p)) {
        emit(e, r, s, to, p, INFSIM_DGFM_CONSOLIDATE, -1);
        d->spare[to] -= p;
        done = true;
      }
    }
    for (size_t t = m; t-- > 1 && !done;) {
      int32_t to = pc[t].holder;
      for (size_t k = 0; k < nreqs && !done; k++) {
        int64_t q = d->reqs[k];
        int64_t q_at_to = infsim_gm_held_by(gm, q, to);
        if (q == r || touched(d, q) || q_at_to < p) continue;
        /* q must not span more: it already holds blocks at s, or its whole
         * piece at `to` moves (it leaves `to` as it arrives at s). */
        if (infsim_gm_held_by(gm, q, s) == 0 && q_at_to != p) continue;
        if (!room(e, 2, 2 * p)) break;
        int32_t first = (int32_t)e->n;
        emit(e, r, s, to, p, INFSIM_DGFM_SWAP, first + 1);
        emit(e, q, to, s, p, INFSIM_DGFM_SWAP, first);
        touch(d, q);
        done = true;
      }
    }
    if (done) touch(d, r);
  }
  if (pc != local) free(pc);
}

size_t infsim_dgfm_pass(infsim_dgfm *d, const infsim_gm *gm, const infsim_dgfm_limits *lim, infsim_dgfm_move *out,
                        size_t cap) {
  assert(infsim_gm_instances(gm) == d->instances);
  /* Nothing to do, known without a walk: a recall needs its owner's spare
   * above the headroom by the piece (a block at least), and steps 2 and 3
   * a request with two remote pieces and a small one (the ledger counts
   * them): a third of the passes on bench/distkv_speed's hour. */
  if (infsim_gm_defrag_candidates(gm, lim->max_piece_blocks) == 0 &&
      infsim_gm_most_spare(gm) <= lim->recall_headroom_blocks)
    return 0;
  emitter e = {.out = out, .cap = cap, .lim = lim};
  for (int32_t i = 0; i < d->instances; i++) d->spare[i] = infsim_gm_spare_blocks(gm, i);
  d->touched_n = 0;
  const int64_t *split;
  size_t nreqs = infsim_gm_split_requests(gm, &split);
  d->reqs = reserve(d->reqs, &d->reqs_cap, nreqs, sizeof *d->reqs);
  /* Steps 2 and 3 act only on a request with two remote pieces and a
   * small one (defragment's first test; the ledger does not change during
   * the pass). Without one, the requests' order matters nowhere (step 1
   * sorts its pieces by a total order), so they are not sorted, and step
   * 2 is skipped: most passes find none. */
  size_t kept = 0;
  bool any_defrag = false;
  for (size_t k = 0; k < nreqs; k++)
    if (infsim_gm_held_by(gm, split[k], infsim_gm_owner(gm, split[k])) > 0) {
      d->reqs[kept++] = split[k];
      int64_t small_n = 0;
      if (!any_defrag && infsim_gm_remote_pieces(gm, split[k], lim->max_piece_blocks, &small_n) >= 2 && small_n > 0)
        any_defrag = true;
    }
  nreqs = kept;
  if (any_defrag) sort_ids(d->reqs, nreqs);

  /* 1. Recalls, smallest piece first over the whole graph. An owner's
   * spare only shrinks during the pass, so a piece whose owner lacks the
   * headroom now never qualifies: only the others are collected and
   * sorted (owners short of memory, the usual case, cost nothing). */
  size_t np = 0;
  for (size_t k = 0; k < nreqs; k++) {
    int32_t owner = infsim_gm_owner(gm, d->reqs[k]);
    if (d->spare[owner] - infsim_gm_remote_blocks(gm, d->reqs[k]) < lim->recall_headroom_blocks) continue;
    d->pieces = reserve(d->pieces, &d->pieces_cap, np + (size_t)d->instances, sizeof *d->pieces);
    size_t n = infsim_gm_placement(gm, d->reqs[k], d->entries, (size_t)d->instances);
    for (size_t j = 0; j < n; j++)
      if (d->entries[j].holder != d->entries[j].owner)
        d->pieces[np++] = (piece){d->reqs[k], d->entries[j].holder, d->entries[j].blocks};
  }
  if (np > 1) qsort(d->pieces, np, sizeof *d->pieces, by_size);
  for (size_t k = 0; k < np; k++) {
    const piece *pc = &d->pieces[k];
    int32_t owner = infsim_gm_owner(gm, pc->req);
    int64_t remote = infsim_gm_remote_blocks(gm, pc->req);
    if (touched(d, pc->req) || d->spare[owner] - remote < lim->recall_headroom_blocks || !room(&e, 1, pc->blocks))
      continue;
    emit(&e, pc->req, pc->holder, owner, pc->blocks, INFSIM_DGFM_RECALL, -1);
    d->spare[owner] -= pc->blocks;
    touch(d, pc->req);
  }
  /* 2 and 3. Consolidations, else swaps, request by request. */
  for (size_t k = 0; any_defrag && k < nreqs && room(&e, 1, 1); k++)
    if (!touched(d, d->reqs[k])) defragment(d, gm, d->reqs[k], nreqs, &e);
  return e.n;
}
