/*
** test_dgfm.c: DGFM passes on hand-built debt graphs (which pieces are
** recalled, consolidated or swapped, and in what order), and on random
** ledgers the properties dgfm.c promises, checked by applying the moves to
** an independent table: moved blocks exist where they leave, no recall or
** consolidation takes an instance below its reserve, swaps leave memory
** unchanged, requests keep their blocks and never span more holders, and
** the limits hold.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <gsl/gsl_rng.h>

#include "infsim/dgfm.h"
#include "infsim/rng.h"

enum { CAPB = 100, RESERVE = 5 };

/* A ledger from a table: held[r * inst + i] blocks of r at i, owner[r];
 * every instance's free = CAPB - what it holds. */
static infsim_gm *ledger_in_order(int32_t inst, int64_t reqs, const int64_t *held, const int32_t *owner,
                                   bool reversed) {
  infsim_gm *gm = NULL;
  assert_int_equal(infsim_gm_new(inst, inst, CAPB, reqs, RESERVE, &gm, NULL), INFSIM_OK);
  for (int32_t ii = 0; ii < inst; ii++) {
    int32_t i = reversed ? inst - 1 - ii : ii;
    infsim_gm_entry e[64];
    size_t n = 0;
    int64_t used = 0;
    for (int64_t rr = 0; rr < reqs; rr++) {
      int64_t r = reversed ? reqs - 1 - rr : rr;
      if (held[r * inst + i] > 0) {
        e[n++] = (infsim_gm_entry){r, owner[r], i, held[r * inst + i]};
        used += held[r * inst + i];
      }
    }
    assert_true(used <= CAPB);
    infsim_gm_heartbeat(gm, i, 1, CAPB - used, e, n, true);
  }
  infsim_gm_check(gm);
  return gm;
}

static infsim_gm *ledger(int32_t inst, int64_t reqs, const int64_t *held, const int32_t *owner) {
  return ledger_in_order(inst, reqs, held, owner, false);
}

static const infsim_dgfm_limits wide = {.max_moves = 100, .max_blocks = 100000};

static size_t pass(const infsim_gm *gm, int32_t inst, const infsim_dgfm_limits *lim, infsim_dgfm_move *out) {
  infsim_dgfm *d = NULL;
  assert_int_equal(infsim_dgfm_new(inst, &d, NULL), INFSIM_OK);
  size_t n = infsim_dgfm_pass(d, gm, lim, out, 64);
  infsim_dgfm_free(d);
  return n;
}

static void assert_dmove(const infsim_dgfm_move *m, infsim_dgfm_kind kind, int64_t req, int32_t from, int32_t to,
                         int64_t blocks) {
  assert_int_equal(m->kind, kind);
  assert_int_equal(m->move.req, req);
  assert_int_equal(m->move.from, from);
  assert_int_equal(m->move.to, to);
  assert_int_equal(m->move.blocks, blocks);
}

/* Owner 0 has 13 spare (free 18, reserve 5). r0 has 6 at i1, r1 has 3 at
 * i2: both come home, the smaller first; with less spare only it fits. */
static void test_recall_smallest_first(void **state) {
  (void)state;
  /* instances 0..2; r0: 0:40, 1:6; r1: 0:42, 2:3; r2 fills i1 and i2. */
  int64_t held[3 * 3] = {40, 6, 0, 42, 0, 3, 0, 50, 50};
  int32_t owner[3] = {0, 0, 1};
  infsim_gm *gm = ledger(3, 3, held, owner);
  assert_int_equal(infsim_gm_spare_blocks(gm, 0), 13);
  infsim_dgfm_move m[64];
  /* Spare 13 >= 3 + 6: both come home, smaller first. */
  assert_int_equal(pass(gm, 3, &wide, m), 2);
  assert_dmove(&m[0], INFSIM_DGFM_RECALL, 1, 2, 0, 3);
  assert_dmove(&m[1], INFSIM_DGFM_RECALL, 0, 1, 0, 6);
  infsim_gm_free(gm);
  /* With 8 more blocks used at the owner (spare 5): only the 3 fit. */
  held[0] = 48;
  gm = ledger(3, 3, held, owner);
  assert_int_equal(pass(gm, 3, &wide, m), 1);
  assert_dmove(&m[0], INFSIM_DGFM_RECALL, 1, 2, 0, 3);
  /* The move limit: one move per pass at most. */
  held[0] = 40;
  infsim_gm_free(gm);
  gm = ledger(3, 3, held, owner);
  const infsim_dgfm_limits one = {.max_moves = 1, .max_blocks = 1000};
  assert_int_equal(pass(gm, 3, &one, m), 1);
  const infsim_dgfm_limits few = {.max_moves = 10, .max_blocks = 2};
  assert_int_equal(pass(gm, 3, &few, m), 0);
  infsim_gm_free(gm);
}

/* Recall only into an owner that keeps room: the owner's spare must cover
 * the request's whole remote part plus the headroom, else nothing comes
 * home (it would be short again at its next block boundaries and send the
 * blocks away once more). */
static void test_recall_keeps_headroom(void **state) {
  (void)state;
  /* r0 owned by 0: 40 at 0, 3 at 1, 6 at 2 (remote 9); r1 fills the rest
   * of 0 but 15 (spare 10); r2 and r3 fill i1 and i2 (no spare there: no
   * consolidation). */
  int64_t held[4 * 3] = {40, 3, 6, /* r0 */ 45, 0, 0, /* r1 */ 0, 92, 0, /* r2 */ 0, 0, 89 /* r3 */};
  int32_t owner[4] = {0, 0, 1, 2};
  infsim_gm *gm = ledger(3, 4, held, owner);
  assert_int_equal(infsim_gm_spare_blocks(gm, 0), 10);
  infsim_dgfm_move m[64];
  infsim_dgfm_limits lim = wide;
  lim.recall_headroom_blocks = 1; /* 10 - 9 = 1: the smaller piece comes home */
  assert_int_equal(pass(gm, 3, &lim, m), 1);
  assert_dmove(&m[0], INFSIM_DGFM_RECALL, 0, 1, 0, 3);
  lim.recall_headroom_blocks = 2; /* 10 - 9 < 2: nothing, although 3 would fit */
  assert_int_equal(pass(gm, 3, &lim, m), 0);
  infsim_gm_free(gm);
  /* A request whose owner holds none of it (a prompt gathering blocks
   * before its admission) is left alone, room or not. */
  held[0] = 0;
  held[3] = 85;
  gm = ledger(3, 4, held, owner);
  assert_int_equal(infsim_gm_spare_blocks(gm, 0), 10);
  assert_int_equal(pass(gm, 3, &wide, m), 0);
  infsim_gm_free(gm);
  held[0] = 40;
  /* Spare 8 < remote 9: nothing comes home even without headroom. */
  held[3] = 47;
  gm = ledger(3, 4, held, owner);
  assert_int_equal(infsim_gm_spare_blocks(gm, 0), 8);
  assert_int_equal(pass(gm, 3, &wide, m), 0);
  infsim_gm_free(gm);
}

/* r0 (owner 0, full) spans 0:50, 1:8, 2:2; i1 has spare: the 2 at i2 join
 * the 8 at i1. */
static void test_consolidate(void **state) {
  (void)state;
  int64_t held[4 * 3] = {50, 8, 2, /* r0 */ 50, 0, 0, /* r1 fills 0 */ 0, 60, 0, /* r2 at 1 */ 0, 0, 90 /* r3 */};
  int32_t owner[4] = {0, 0, 1, 2};
  infsim_gm *gm = ledger(3, 4, held, owner);
  infsim_dgfm_move m[64];
  assert_int_equal(pass(gm, 3, &wide, m), 1);
  assert_dmove(&m[0], INFSIM_DGFM_CONSOLIDATE, 0, 2, 1, 2);
  /* A piece larger than max_piece_blocks stays: the copy would not pay. */
  infsim_dgfm_limits small = wide;
  small.max_piece_blocks = 1;
  assert_int_equal(pass(gm, 3, &small, m), 0);
  small.max_piece_blocks = 2;
  assert_int_equal(pass(gm, 3, &small, m), 1);
  infsim_gm_free(gm);
}

/* Consolidations go request by request in id order, whatever order the
 * ledger learned the split requests in: instance 0 is full (no recalls),
 * requests 1..n own a block there and hold one at i1 and one at i2 (the
 * piece at i1 can join the one at i2); with room for one move only the
 * lowest id moves. The entries reach the ledger highest id first, so its
 * split list starts in descending order; a few or many split requests. */
static void consolidation_order(int64_t n) {
  enum { INST = 3 };
  infsim_gm *gm = NULL;
  assert_true(n < CAPB - RESERVE - 5);
  assert_int_equal(infsim_gm_new(INST, INST, CAPB, n + 1, RESERVE, &gm, NULL), INFSIM_OK);
  infsim_gm_entry *e = calloc((size_t)n + 1, sizeof *e);
  assert_non_null(e);
  for (int32_t i = 0; i < INST; i++) {
    size_t k = 0;
    for (int64_t r = n; r >= 1; r--) e[k++] = (infsim_gm_entry){r, 0, i, 1};
    if (i == 0) e[k++] = (infsim_gm_entry){0, 0, 0, CAPB - n}; /* fills instance 0 */
    infsim_gm_heartbeat(gm, i, 1, i == 0 ? 0 : CAPB - n, e, k, true);
  }
  infsim_gm_check(gm);
  infsim_dgfm_limits one = wide;
  one.max_moves = 1;
  infsim_dgfm_move m[64];
  assert_int_equal(pass(gm, INST, &one, m), 1);
  assert_dmove(&m[0], INFSIM_DGFM_CONSOLIDATE, 1, 1, 2, 1);
  free(e);
  infsim_gm_free(gm);
}

static void test_consolidation_order(void **state) {
  (void)state;
  consolidation_order(10);
  consolidation_order(80);
}

/* As above but i1 is full too: r0's 2 at i2 swap with 2 of q's blocks at
 * i1, q owned by i2 (they go home). */
static void test_swap(void **state) {
  (void)state;
  int64_t held[4 * 3] = {50, 8, 2, /* r0 */ 50, 0, 0, /* r1 */ 0, 87, 0, /* r2 fills 1 */ 0, 5, 60 /* q = r3 */};
  int32_t owner[4] = {0, 0, 1, 2};
  infsim_gm *gm = ledger(3, 4, held, owner);
  assert_int_equal(infsim_gm_spare_blocks(gm, 1), 0);
  infsim_dgfm_move m[64];
  size_t n = pass(gm, 3, &wide, m);
  /* i2 has 33 spare: q's 5 at i1 come home. The room that frees at i1 is
   * not counted until the move is done, so r0 waits for the next pass. */
  assert_int_equal(n, 1);
  assert_dmove(&m[0], INFSIM_DGFM_RECALL, 3, 1, 2, 5);
  infsim_gm_free(gm);
  /* With i2 full (q cannot come home), the swap. */
  held[3 * 3 + 2] = 98 - 2; /* i2: r0's 2 + q's 96 = 98, free 2 < reserve */
  gm = ledger(3, 4, held, owner);
  assert_int_equal(infsim_gm_spare_blocks(gm, 2), 0);
  n = pass(gm, 3, &wide, m);
  assert_int_equal(n, 2);
  assert_dmove(&m[0], INFSIM_DGFM_SWAP, 0, 2, 1, 2);
  assert_dmove(&m[1], INFSIM_DGFM_SWAP, 3, 1, 2, 2);
  assert_int_equal(m[0].pair, 1);
  assert_int_equal(m[1].pair, 0);
  infsim_gm_free(gm);
}

static int span(const int64_t *row, int32_t inst) {
  int s = 0;
  for (int32_t i = 0; i < inst; i++) s += row[i] > 0;
  return s;
}

/* Step 1 of a pass worked out from the table by its definition (dgfm.h):
 * every remote piece of a request whose owner holds blocks, smallest
 * first (then request, then holder); a piece comes home when its request
 * moved in no earlier recall, its owner's spare less the request's whole
 * remote part keeps the headroom, and the limits allow. Returns how many
 * recalls, written to want. */
static size_t recalls_by_definition(const int64_t *held, const int32_t *owner, int32_t inst, int64_t reqs,
                                    const infsim_dgfm_limits *lim, infsim_gm_move *want) {
  int64_t spare[16], pb[512], pr[512];
  int32_t ph[512];
  bool moved[128] = {false};
  assert_true(inst <= 16 && reqs <= 128);
  for (int32_t i = 0; i < inst; i++) {
    int64_t used = 0;
    for (int64_t r = 0; r < reqs; r++) used += held[r * inst + i];
    spare[i] = CAPB - used - RESERVE > 0 ? CAPB - used - RESERVE : 0;
  }
  size_t np = 0;
  for (int64_t r = 0; r < reqs; r++)
    for (int32_t i = 0; i < inst && held[r * inst + owner[r]] > 0; i++)
      if (i != owner[r] && held[r * inst + i] > 0) {
        /* insertion by (blocks, request, holder) */
        size_t j = np++;
        while (j > 0 && (pb[j - 1] > held[r * inst + i] || (pb[j - 1] == held[r * inst + i] && pr[j - 1] > r))) {
          pb[j] = pb[j - 1], pr[j] = pr[j - 1], ph[j] = ph[j - 1];
          j--;
        }
        pb[j] = held[r * inst + i], pr[j] = r, ph[j] = i;
      }
  size_t n = 0;
  int64_t blocks = 0;
  for (size_t k = 0; k < np; k++) {
    int64_t r = pr[k], remote = 0;
    for (int32_t i = 0; i < inst; i++)
      if (i != owner[r]) remote += held[r * inst + i];
    if (moved[r] || spare[owner[r]] - remote < lim->recall_headroom_blocks) continue;
    if ((int64_t)n + 1 > lim->max_moves || n + 1 > 64 || blocks + pb[k] > lim->max_blocks) continue;
    want[n++] = (infsim_gm_move){.req = r, .from = ph[k], .to = owner[r], .blocks = pb[k]};
    blocks += pb[k];
    spare[owner[r]] -= pb[k];
    moved[r] = true;
  }
  return n;
}

/* Random placements: each request's owner, then up to 1 + max_extra
 * pieces of 1-12 blocks (the first at its owner), a piece left out where
 * its instance would pass CAPB. */
static void random_holdings(gsl_rng *rng, int32_t inst, int64_t reqs, int max_extra, int32_t *owner, int64_t *held,
                            int64_t *used) {
  for (int64_t r = 0; r < reqs; r++) {
    owner[r] = (int32_t)gsl_rng_uniform_int(rng, (unsigned long)inst);
    int pieces = 1 + (int)gsl_rng_uniform_int(rng, (unsigned long)max_extra + 1);
    for (int k = 0; k < pieces; k++) {
      int32_t i = k == 0 ? owner[r] : (int32_t)gsl_rng_uniform_int(rng, (unsigned long)inst);
      int64_t b = 1 + (int64_t)gsl_rng_uniform_int(rng, 12);
      if (used[i] + b > CAPB) continue;
      held[r * inst + i] += b;
      used[i] += b;
    }
  }
}

/* Random ledgers; the pass's moves applied to a table. */
static void test_random_ledgers_properties(void **state) {
  (void)state;
  enum { INST = 6, REQS = 30 };
  gsl_rng *rng = infsim_rng_new(5, "test.dgfm");
  int moved_total = 0, swaps = 0, recalls = 0;
  for (int trial = 0; trial < 300; trial++) {
    int64_t held[REQS * INST] = {0}, used[INST] = {0};
    int32_t owner[REQS];
    random_holdings(rng, INST, REQS, 3, owner, held, used);
    infsim_gm *gm = ledger(INST, REQS, held, owner);
    infsim_dgfm_limits lim = {.max_moves = 1 + (int64_t)gsl_rng_uniform_int(rng, 12),
                              .max_blocks = 1 + (int64_t)gsl_rng_uniform_int(rng, 200),
                              .recall_headroom_blocks = (int64_t)gsl_rng_uniform_int(rng, 16),
                              .max_piece_blocks = (int64_t)gsl_rng_uniform_int(rng, 13)};
    infsim_dgfm_move m[64];
    size_t n = pass(gm, INST, &lim, m);
    assert_true((int64_t)n <= lim.max_moves);
    /* Its recalls come first and are exactly those of the definition. */
    infsim_gm_move want[64];
    size_t nw = recalls_by_definition(held, owner, INST, REQS, &lim, want), nr = 0;
    while (nr < n && m[nr].kind == INFSIM_DGFM_RECALL) nr++;
    assert_int_equal(nr, nw);
    for (size_t k = 0; k < nw; k++) assert_dmove(&m[k], INFSIM_DGFM_RECALL, want[k].req, want[k].from, want[k].to, want[k].blocks);
    recalls += (int)nw;
    int64_t before_span[REQS], total[REQS], local0[REQS], blocks = 0;
    for (int64_t r = 0; r < REQS; r++) {
      local0[r] = held[r * INST + owner[r]];
      before_span[r] = span(&held[r * INST], INST);
      total[r] = 0;
      for (int32_t i = 0; i < INST; i++) total[r] += held[r * INST + i];
    }
    for (size_t k = 0; k < n; k++) {
      const infsim_gm_move *mv = &m[k].move;
      blocks += mv->blocks;
      assert_true(local0[mv->req] > 0); /* no gathering prompt moves */
      assert_true(held[mv->req * INST + mv->from] >= mv->blocks);
      if (m[k].kind != INFSIM_DGFM_RECALL && lim.max_piece_blocks > 0) assert_true(mv->blocks <= lim.max_piece_blocks);
      if (m[k].kind == INFSIM_DGFM_RECALL) {
        /* The owner keeps the headroom after taking the whole remote part. */
        int32_t o = owner[mv->req];
        int64_t remote = 0;
        for (int32_t i = 0; i < INST; i++)
          if (i != o) remote += held[mv->req * INST + i];
        assert_true(CAPB - used[o] - RESERVE - remote >= lim.recall_headroom_blocks);
      }
      if (m[k].kind == INFSIM_DGFM_SWAP) {
        const infsim_gm_move *o = &m[m[k].pair].move;
        assert_int_equal(o->from, mv->to);
        assert_int_equal(o->to, mv->from);
        assert_int_equal(o->blocks, mv->blocks);
        if (m[k].pair < (int32_t)k) swaps++;
      } else {
        assert_true(CAPB - used[mv->to] - mv->blocks >= RESERVE);
        if (m[k].kind == INFSIM_DGFM_RECALL) assert_int_equal(mv->to, owner[mv->req]);
      }
      held[mv->req * INST + mv->from] -= mv->blocks;
      held[mv->req * INST + mv->to] += mv->blocks;
      used[mv->from] -= mv->blocks;
      used[mv->to] += mv->blocks;
    }
    assert_true(blocks <= lim.max_blocks);
    for (int32_t i = 0; i < INST; i++) assert_true(used[i] <= CAPB);
    for (int64_t r = 0; r < REQS; r++) {
      int64_t t = 0;
      for (int32_t i = 0; i < INST; i++) t += held[r * INST + i];
      assert_int_equal(t, total[r]);
      assert_true(span(&held[r * INST], INST) <= before_span[r]);
    }
    moved_total += (int)n;
    infsim_gm_free(gm);
  }
  assert_true(moved_total > 300); /* the pass had work to do */
  assert_true(swaps > 0);
  assert_true(recalls > 50);
  gsl_rng_free(rng);
}

/* A pass's moves do not depend on the order in which the ledger learnt
 * its requests (its split list's order): the same placements heard in
 * the opposite order give the same moves, in the same order. The pass
 * sorts the split requests only when one may be consolidated or swapped
 * (infsim_dgfm_pass); a pass that skipped the sort when it matters would
 * follow the list's order here. */
static void test_moves_independent_of_ledger_order(void **state) {
  (void)state;
  enum { INST = 6, REQS = 30 };
  gsl_rng *rng = infsim_rng_new(11, "test.dgfm.order");
  int defrag = 0, recalls_only = 0;
  for (int trial = 0; trial < 400; trial++) {
    int64_t held[REQS * INST] = {0}, used[INST] = {0};
    int32_t owner[REQS];
    int max_pieces = 1 + trial % 4; /* one piece: nothing to consolidate or swap */
    random_holdings(rng, INST, REQS, max_pieces, owner, held, used);
    infsim_gm *a = ledger_in_order(INST, REQS, held, owner, false);
    infsim_gm *b = ledger_in_order(INST, REQS, held, owner, true);
    infsim_dgfm_limits lim = {.max_moves = 1 + (int64_t)gsl_rng_uniform_int(rng, 12),
                              .max_blocks = 1 + (int64_t)gsl_rng_uniform_int(rng, 200),
                              .recall_headroom_blocks = (int64_t)gsl_rng_uniform_int(rng, 60),
                              .max_piece_blocks = (int64_t)gsl_rng_uniform_int(rng, 13)};
    infsim_dgfm_move ma[64], mb[64];
    size_t na = pass(a, INST, &lim, ma), nb = pass(b, INST, &lim, mb);
    assert_int_equal(na, nb);
    bool any = false;
    for (size_t k = 0; k < na; k++) {
      assert_dmove(&mb[k], ma[k].kind, ma[k].move.req, ma[k].move.from, ma[k].move.to, ma[k].move.blocks);
      assert_int_equal(mb[k].pair, ma[k].pair);
      any |= ma[k].kind != INFSIM_DGFM_RECALL;
    }
    defrag += any;
    recalls_only += na > 0 && !any;
    infsim_gm_free(a);
    infsim_gm_free(b);
  }
  assert_true(defrag > 50); /* consolidations and swaps, whose order the sort sets */
  assert_true(recalls_only > 20); /* and passes with recalls alone (no sort: step 1 orders its own) */
  gsl_rng_free(rng);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_recall_smallest_first),
      cmocka_unit_test(test_recall_keeps_headroom),
      cmocka_unit_test(test_consolidate),
      cmocka_unit_test(test_swap),
      cmocka_unit_test(test_consolidation_order),
      cmocka_unit_test(test_random_ledgers_properties),
      cmocka_unit_test(test_moves_independent_of_ledger_order),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
