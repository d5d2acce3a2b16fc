/*
** test_gmanager.c: the gManager's ledger against an independent truth
** table (per request, per holder) driven by random allocations, moves and
** finishes: the ledger stays zero-sum, placement agrees with holders, an
** older report never overwrites a newer one, and a ledger rebuilt from
** full heartbeats after a loss equals the one kept all along; the marks
** of owned requests (live, ended) and the count of split ended ones
** against the truth's; an instance's guest generation stays only while
** its entries of others' requests do. The planners
** against hand-solved cases, with and without guests first (a debtor's
** guests move before its own requests: policy.own_work_first); a plan
** stopped at its first move against the whole plan, the rest taken back.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <gsl/gsl_rng.h>

#include "infsim/config.h"
#include "infsim/gmanager.h"
#include "infsim/params.h"
#include "infsim/rng.h"

enum { I = 6, R = 40, CAP = 200, SMALL = 4 };

typedef struct {
  int64_t held[R][I];
  int32_t owner[R];
  int64_t used[I];
  bool live[R]; /* marked live in the ledger (infsim_gm_set_live) */
  bool ended[R]; /* marked ended (infsim_gm_set_ended) */
  /* What the ledger said at the last step: each instance's guest
   * generation, each request's owner and entries. */
  uint64_t gen[I];
  int32_t seen_owner[R];
  int64_t seen[R][I];
} truth;

static void send_entry(infsim_gm *gm, const truth *t, int64_t r, int32_t holder, int64_t at) {
  infsim_gm_entry e = {r, t->owner[r], holder, t->held[r][holder]};
  infsim_gm_heartbeat(gm, holder, at, CAP - t->used[holder], &e, 1, false);
}

static void assert_agrees(const infsim_gm *gm, const truth *t) {
  infsim_gm_check(gm);
  int64_t lent = 0, borrowed = 0;
  for (int32_t i = 0; i < I; i++) {
    int64_t held = 0, l = 0, b = 0, split_owned = 0;
    for (int64_t r = 0; r < R; r++) {
      held += t->held[r][i];
      if (t->owner[r] >= 0 && t->owner[r] != i) l += t->held[r][i];
      if (t->owner[r] == i) {
        int64_t away = 0;
        for (int32_t j = 0; j < I; j++)
          if (j != i) away += t->held[r][j];
        b += away;
        split_owned += away > 0;
      }
    }
    assert_int_equal(infsim_gm_split_owned(gm, i), split_owned);
    /* The owner's split list holds exactly those requests. */
    const int64_t *own_split;
    size_t nos = infsim_gm_split_owned_requests(gm, i, &own_split);
    assert_int_equal((int64_t)nos, split_owned);
    for (size_t k = 0; k < nos; k++) {
      int64_t r = own_split[k], away = 0;
      assert_int_equal(t->owner[r], i);
      for (int32_t j = 0; j < I; j++)
        if (j != i) away += t->held[r][j];
      assert_true(away > 0);
    }
    /* The owned requests not marked live are the owned ones the truth
     * has unmarked. */
    const int64_t *owned, *not_live;
    size_t no = infsim_gm_owned(gm, i, &owned), nn = infsim_gm_owned_not_live(gm, i, &not_live);
    size_t live = 0;
    for (size_t k = 0; k < no; k++) {
      assert_int_equal(t->owner[owned[k]], i);
      assert_int_equal(infsim_gm_live(gm, owned[k]), t->live[owned[k]]);
      live += t->live[owned[k]];
    }
    assert_int_equal(nn, no - live);
    for (size_t k = 0; k < nn; k++) assert_false(t->live[not_live[k]]);
    /* Those neither live nor ended, and the ended ones split (a count). */
    const int64_t *pending;
    size_t np = infsim_gm_owned_pending(gm, i, &pending), pend = 0;
    int64_t ended_split = 0;
    for (size_t k = 0; k < no; k++) {
      int64_t r = owned[k], away = 0;
      assert_int_equal(infsim_gm_ended(gm, r), t->ended[r]);
      for (int32_t j = 0; j < I; j++)
        if (j != i) away += t->held[r][j];
      pend += !t->live[r] && !t->ended[r];
      ended_split += t->ended[r] && away > 0;
    }
    assert_int_equal(np, pend);
    for (size_t k = 0; k < np; k++) assert_false(t->live[pending[k]] || t->ended[pending[k]]);
    assert_int_equal(infsim_gm_ended_split(gm, i), ended_split);
    assert_int_equal(infsim_gm_held(gm, i), held);
    assert_int_equal(infsim_gm_lent(gm, i), l);
    assert_int_equal(infsim_gm_borrowed(gm, i), b);
    lent += l;
    borrowed += b;
  }
  assert_int_equal(lent, borrowed);
  /* The most spare memory, against each instance's. */
  int64_t most = 0;
  for (int32_t i = 0; i < I; i++)
    if (infsim_gm_spare_blocks(gm, i) > most) most = infsim_gm_spare_blocks(gm, i);
  assert_int_equal(infsim_gm_most_spare(gm), most);
  int64_t candidates = 0; /* requests with two remote pieces or more, one of them small */
  for (int64_t r = 0; r < R; r++) {
    infsim_gm_entry e[I];
    size_t n = infsim_gm_placement(gm, r, e, I);
    size_t expect = 0;
    int64_t pieces = 0, small = 0, any = 0;
    for (int32_t i = 0; i < I; i++) {
      expect += t->held[r][i] > 0;
      assert_int_equal(infsim_gm_held_by(gm, r, i), t->held[r][i]);
      /* From any guess of where the entry is, then from where it was found. */
      int32_t k = (int32_t)((r + i) % 3) - 1;
      assert_int_equal(infsim_gm_held_by_hint(gm, r, i, &k), t->held[r][i]);
      assert_int_equal(infsim_gm_held_by_hint(gm, r, i, &k), t->held[r][i]);
      if (i != t->owner[r] && t->held[r][i] > 0) {
        pieces++;
        small += t->held[r][i] <= SMALL;
        any += t->held[r][i] <= SMALL + 3;
      }
    }
    /* Remote pieces: the small limit the ledger counts (O(1)) and another. */
    int64_t n_small = -1;
    assert_int_equal(infsim_gm_remote_pieces(gm, r, SMALL, &n_small), pieces);
    assert_int_equal(n_small, small);
    assert_int_equal(infsim_gm_remote_pieces(gm, r, SMALL + 3, &n_small), pieces);
    assert_int_equal(n_small, any);
    assert_int_equal(n, expect);
    for (size_t k = 0; k < n; k++) assert_int_equal(e[k].blocks, t->held[r][e[k].holder]);
    candidates += pieces >= 2 && small > 0;
  }
  int64_t counted = infsim_gm_defrag_candidates(gm, SMALL);
  assert_true(counted == -1 || counted == candidates); /* -1: a ledger not counting small pieces of SMALL */
}

/* An instance whose guest generation stayed since the last step holds
 * every entry of a request owned elsewhere as it did (those with blocks);
 * a generation never goes back. */
static void assert_guest_generations(const infsim_gm *gm, truth *t) {
  for (int32_t i = 0; i < I; i++) {
    uint64_t g = infsim_gm_guest_generation(gm, i);
    assert_true(g >= t->gen[i]);
    for (int64_t r = 0; r < R && g == t->gen[i]; r++)
      if (t->seen_owner[r] >= 0 && t->seen_owner[r] != i && t->seen[r][i] > 0) {
        assert_int_equal(infsim_gm_owner(gm, r), t->seen_owner[r]);
        assert_int_equal(infsim_gm_held_by(gm, r, i), t->seen[r][i]);
      }
    t->gen[i] = g;
  }
  for (int64_t r = 0; r < R; r++) {
    t->seen_owner[r] = infsim_gm_owner(gm, r);
    for (int32_t i = 0; i < I; i++) t->seen[r][i] = infsim_gm_held_by(gm, r, i);
  }
}

/* Random life of requests: allocate at the owner or elsewhere, move
 * blocks (confirmed moves), free some, finish. */
static void random_history(gsl_rng *rng, truth *t, infsim_gm *a, infsim_gm *b, int steps) {
  memset(t, 0, sizeof *t);
  for (int64_t r = 0; r < R; r++) t->owner[r] = t->seen_owner[r] = -1;
  for (int s = 1; s <= steps; s++) {
    int64_t r = (int64_t)gsl_rng_uniform_int(rng, R);
    int32_t i = (int32_t)gsl_rng_uniform_int(rng, I);
    int op = (int)gsl_rng_uniform_int(rng, 4);
    int64_t now = s * 1000;
    if (t->owner[r] < 0) t->owner[r] = i; /* first blocks: at their owner */
    if (op == 0 || op == 1) {            /* allocate n at holder i */
      int64_t n = 1 + (int64_t)gsl_rng_uniform_int(rng, 8);
      if (t->used[i] + n > CAP) continue;
      t->held[r][i] += n;
      t->used[i] += n;
      send_entry(a, t, r, i, now);
      send_entry(b, t, r, i, now);
    } else if (op == 2) { /* move some of r from one holder to i, confirmed */
      int32_t from = (int32_t)gsl_rng_uniform_int(rng, I);
      int64_t n = t->held[r][from] / 2;
      if (from == i || n == 0 || t->used[i] + n > CAP) continue;
      t->held[r][from] -= n;
      t->used[from] -= n;
      t->held[r][i] += n;
      t->used[i] += n;
      infsim_gm_move m = {r, from, i, n, false};
      infsim_gm_record_move(a, &m, now);
      infsim_gm_record_move(b, &m, now);
      /* An older heartbeat of `from`, delayed, arrives now: ignored. */
      infsim_gm_entry old = {r, t->owner[r], from, t->held[r][from] + n};
      infsim_gm_heartbeat(a, from, now - 500, 0, &old, 1, false);
    } else { /* finish: every holder frees it */
      for (int32_t j = 0; j < I; j++) t->used[j] -= t->held[r][j];
      memset(t->held[r], 0, sizeof t->held[r]);
      t->owner[r] = -1;
      infsim_gm_forget(a, r, now);
      infsim_gm_forget(b, r, now);
      t->live[r] = false; /* it left the ledger, and its marks with it */
      t->ended[r] = false;
    }
    /* Marks set and cleared along the way (a's only: b keeps none). */
    int64_t total = 0;
    for (int32_t j = 0; j < I; j++) total += t->held[r][j];
    if (s % 5 == 0 && total > 0 && !t->ended[r]) { /* only a request the ledger holds keeps a mark */
      bool live = s % 10 == 0;
      infsim_gm_set_live(a, r, live);
      t->live[r] = live;
    }
    if (s % 7 == 0 && total > 0) { /* ended: out of the live part for good */
      infsim_gm_set_ended(a, r);
      t->ended[r] = true;
      t->live[r] = false;
    }
    assert_agrees(a, t);
    assert_guest_generations(a, t);
  }
}

/* Two ledgers (instances per_node to a node) fed the same random history
 * of `steps` events from stream `seed`, and its truth. */
typedef struct {
  gsl_rng *rng;
  truth *t;
  infsim_gm *a, *b;
} twin_ledgers;

static twin_ledgers twins_after(uint64_t seed, int32_t per_node, int steps) {
  twin_ledgers x = {.rng = infsim_rng_new(seed, "test.gmanager"), .t = malloc(sizeof(truth))};
  assert_non_null(x.t);
  assert_int_equal(infsim_gm_new(I, per_node, CAP, R, 0, &x.a, NULL), INFSIM_OK);
  assert_int_equal(infsim_gm_new(I, per_node, CAP, R, 0, &x.b, NULL), INFSIM_OK);
  infsim_gm_set_small_piece(x.a, SMALL); /* a counts small pieces as it goes; b is asked by walks */
  random_history(x.rng, x.t, x.a, x.b, steps);
  return x;
}

static void twins_free(twin_ledgers *x) {
  infsim_gm_free(x->a);
  infsim_gm_free(x->b);
  free(x->t);
  gsl_rng_free(x->rng);
}

static void test_ledger_zero_sum_and_placement(void **state) {
  (void)state;
  twin_ledgers x = twins_after(3, 2, 3000);
  infsim_gm *a = x.a, *b = x.b;
  const truth *t = x.t;
  assert_true(infsim_gm_same_ledger(a, b));
  /* Something was actually split (the test would be empty otherwise). */
  const int64_t *split;
  size_t ns = infsim_gm_split_requests(a, &split);
  assert_true(ns > 0);
  for (size_t k = 0; k < ns; k++) {
    int64_t r = split[k], away = 0;
    for (int32_t i = 0; i < I; i++)
      if (i != t->owner[r]) away += t->held[r][i];
    assert_true(away > 0);
  }
  twins_free(&x);
}

/* The small piece set on a ledger with entries (after set-up): the
 * counts kept from then on are every request's remote pieces of at most
 * that many blocks, as the truth has them. */
static void test_small_piece_recount(void **state) {
  (void)state;
  twin_ledgers x = twins_after(5, 2, 3000);
  int64_t now = 0, peak = 0, split_now = 0, split_peak = 0;
  infsim_gm_high_water(x.b, &now, &peak, &split_now, &split_peak);
  assert_true(now > 0 && split_now > 0); /* entries to count, some of them remote */
  infsim_gm_set_small_piece(x.b, SMALL + 3);
  int64_t small_total = 0;
  for (int64_t r = 0; r < R; r++) {
    int64_t pieces = 0, small = 0, n_small = -1;
    for (int32_t i = 0; i < I; i++)
      if (i != x.t->owner[r] && x.t->held[r][i] > 0) {
        pieces++;
        small += x.t->held[r][i] <= SMALL + 3;
      }
    assert_int_equal(infsim_gm_remote_pieces(x.b, r, SMALL + 3, &n_small), pieces);
    assert_int_equal(n_small, small);
    small_total += small;
  }
  assert_true(small_total > 0);
  twins_free(&x);
}

/* A report from after a request finished is applied; one from before is
 * not (a finished request never comes back from a delayed heartbeat). */
static void test_forget_floor(void **state) {
  (void)state;
  infsim_gm *gm = NULL;
  assert_int_equal(infsim_gm_new(2, 2, 100, 4, 0, &gm, NULL), INFSIM_OK);
  infsim_gm_entry e = {1, 0, 1, 7};
  infsim_gm_heartbeat(gm, 1, 100, 93, &e, 1, false);
  assert_int_equal(infsim_gm_borrowed(gm, 0), 7);
  infsim_gm_forget(gm, 1, 200);
  assert_int_equal(infsim_gm_borrowed(gm, 0), 0);
  infsim_gm_heartbeat(gm, 1, 150, 93, &e, 1, false); /* delayed */
  assert_int_equal(infsim_gm_held_by(gm, 1, 1), 0);
  infsim_gm_heartbeat(gm, 1, 250, 93, &e, 1, false); /* new life (e.g. after recompute) */
  assert_int_equal(infsim_gm_held_by(gm, 1, 1), 7);
  /* News of an end older than an entry leaves the entry: a move confirmed
   * at 300 survives an owner's report (snapshot 280) that the request had
   * left the GPUs; the older entry at 1 goes. */
  infsim_gm_move mv = {1, 0, 0, 3, true};
  infsim_gm_record_move(gm, &mv, 300);
  infsim_gm_forget(gm, 1, 280);
  assert_int_equal(infsim_gm_held_by(gm, 1, 1), 0);
  assert_int_equal(infsim_gm_held_by(gm, 1, 0), 3);
  assert_int_equal(infsim_gm_blocks(gm, 1), 3);
  infsim_gm_check(gm);
  infsim_gm_free(gm);
}

/* The gManager is lost; every instance sends a full heartbeat of what it
 * holds; the rebuilt ledger equals one that was never lost. */
static void test_rebuild_equals_original(void **state) {
  (void)state;
  twin_ledgers x = twins_after(4, 3, 1500);
  infsim_gm *a = x.a, *b = x.b;
  const truth *t = x.t;
  infsim_gm_reset(a);
  memset(x.t->live, 0, sizeof x.t->live); /* the marks went with the ledger */
  memset(x.t->ended, 0, sizeof x.t->ended);
  for (int32_t i = 0; i < I; i++) assert_int_equal(infsim_gm_held(a, i), 0);
  /* Full reports; one instance first sends a stale full report listing a
   * request it no longer holds, then the fresh one drops it. */
  for (int32_t i = 0; i < I; i++) {
    infsim_gm_entry e[R];
    size_t n = 0;
    for (int64_t r = 0; r < R; r++)
      if (t->held[r][i] > 0) e[n++] = (infsim_gm_entry){r, t->owner[r], i, t->held[r][i]};
    if (i == 0) {
      infsim_gm_entry ghost[R + 1];
      memcpy(ghost, e, n * sizeof *e);
      int64_t g = 0;
      while (g < R && t->held[g][0] > 0) g++;
      ghost[n] = (infsim_gm_entry){g, 0, 0, 3};
      infsim_gm_heartbeat(a, i, 1000000, 0, ghost, n + 1, true);
      assert_int_equal(infsim_gm_held_by(a, g, 0), 3);
    }
    infsim_gm_heartbeat(a, i, 2000000, CAP - t->used[i], e, n, true);
  }
  assert_true(infsim_gm_same_ledger(a, b));
  assert_agrees(a, t);
  twins_free(&x);
}

/* Hand case: 4 instances, 2 per node, 100 blocks each, reserve 10.
 * Debtor 0 (no free) owns r0 (40 blocks at 0, 5 at 3), r1 (20 at 0), r2
 * (30 at 0). Free: i1 30, i2 60, i3 50, so spare 20, 50, 40. */
static infsim_gm *hand_case(void) {
  infsim_gm *gm = NULL;
  assert_int_equal(infsim_gm_new(4, 2, 100, 8, 10, &gm, NULL), INFSIM_OK);
  infsim_gm_entry at0[3] = {{0, 0, 0, 40}, {1, 0, 0, 20}, {2, 0, 0, 30}};
  infsim_gm_heartbeat(gm, 0, 1, 0, at0, 3, false);
  infsim_gm_heartbeat(gm, 1, 1, 30, NULL, 0, false);
  infsim_gm_heartbeat(gm, 2, 1, 60, NULL, 0, false);
  infsim_gm_entry at3 = {0, 0, 3, 5};
  infsim_gm_heartbeat(gm, 3, 1, 50, &at3, 1, false);
  infsim_gm_check(gm);
  return gm;
}

static void assert_move(const infsim_gm_move *m, int64_t req, int32_t to, int64_t blocks, bool fresh) {
  assert_int_equal(m->req, req);
  assert_int_equal(m->from, 0);
  assert_int_equal(m->to, to);
  assert_int_equal(m->blocks, blocks);
  assert_int_equal(m->fresh, fresh);
}

static void test_planners_hand_cases(void **state) {
  (void)state;
  infsim_gm_move m[8];
  infsim_gm *gm = hand_case();
  int32_t ids[4];
  assert_int_equal(infsim_gm_creditors(gm, ids), 3);
  assert_int_equal(ids[0], 2);
  assert_int_equal(ids[1], 3);
  assert_int_equal(ids[2], 1);
  assert_int_equal(infsim_gm_debtors(gm, ids), 1);
  assert_int_equal(ids[0], 0);
  /* r2 needs 45: it is then the longest (30 + 45 > 45): its new blocks go
   * to the most spare creditor, i2 (50). */
  assert_int_equal(infsim_gm_plan(gm, INFSIM_PLAN_GREEDY, 0, 2, 45, m, 8), 1);
  assert_move(&m[0], 2, 2, 45, true);
  assert_int_equal(infsim_gm_spare_blocks(gm, 2), 5); /* deducted */
  infsim_gm_unpropose(gm, &m[0]);
  assert_int_equal(infsim_gm_spare_blocks(gm, 2), 50);
  /* 10 blocks, no request may take new ones: r0 (45) is the longest: 10
   * of its blocks go to i2. */
  assert_int_equal(infsim_gm_plan(gm, INFSIM_PLAN_GREEDY, 0, -1, 10, m, 8), 1);
  assert_move(&m[0], 0, 2, 10, false);
  infsim_gm_unpropose(gm, &m[0]);
  /* r1 (20) may take new blocks: its 10 go to i2 although r0 is longer
   * (new blocks cost no copy). */
  assert_int_equal(infsim_gm_plan(gm, INFSIM_PLAN_GREEDY, 0, 1, 10, m, 8), 1);
  assert_move(&m[0], 1, 2, 10, true);
  infsim_gm_unpropose(gm, &m[0]);
  /* Same node: i1 first (spare 20), then the most spare (i2). */
  assert_int_equal(infsim_gm_plan(gm, INFSIM_PLAN_SAME_NODE, 0, -1, 10, m, 8), 1);
  assert_move(&m[0], 0, 1, 10, false);
  infsim_gm_unpropose(gm, &m[0]);
  /* 24 blocks: i1's 20, then 4 at the most spare, i2. */
  assert_int_equal(infsim_gm_plan(gm, INFSIM_PLAN_SAME_NODE, 0, -1, 24, m, 8), 2);
  assert_move(&m[0], 0, 1, 20, false);
  assert_move(&m[1], 0, 2, 4, false);
  infsim_gm_unpropose(gm, &m[0]);
  infsim_gm_unpropose(gm, &m[1]);
  /* Affinity: r0 already has blocks at i3, so i3 first. */
  assert_int_equal(infsim_gm_plan(gm, INFSIM_PLAN_AFFINITY, 0, -1, 10, m, 8), 1);
  assert_move(&m[0], 0, 3, 10, false);
  infsim_gm_unpropose(gm, &m[0]);
  /* More than the cluster's spare (110): r2 takes it all, nothing is
   * proposed beyond it. */
  size_t n = infsim_gm_plan(gm, INFSIM_PLAN_GREEDY, 0, 2, 200, m, 8);
  int64_t sum = 0;
  for (size_t k = 0; k < n; k++) sum += m[k].blocks;
  assert_int_equal(n, 3);
  assert_int_equal(sum, 110);
  assert_int_equal(infsim_gm_creditors(gm, ids), 0);
  /* A confirmed move updates the ledger: r0's 10 blocks from 0 to 2. */
  infsim_gm_move mv = {0, 0, 2, 10, false};
  infsim_gm_record_move(gm, &mv, 5);
  assert_int_equal(infsim_gm_held_by(gm, 0, 0), 30);
  assert_int_equal(infsim_gm_lent(gm, 2), 10);
  assert_int_equal(infsim_gm_borrowed(gm, 0), 15);
  infsim_gm_move fresh = {2, 0, 1, 4, true};
  infsim_gm_record_move(gm, &fresh, 6);
  assert_int_equal(infsim_gm_held_by(gm, 2, 0), 30); /* new blocks take nothing from the owner */
  assert_int_equal(infsim_gm_blocks(gm, 2), 34);
  infsim_gm_check(gm);
  infsim_gm_free(gm);
}

/* Own work first (infsim_gm_set_guests_first): the hand case, where i3
 * also owns r3 (30 blocks at 3) and holds r0's 5 as a guest. i3 short of
 * 8 blocks moves the guest's 5 first, then 3 of r3; without the switch, 8
 * of its own r3 (its longest). Both to i2, the most spare. */
static void test_guests_first(void **state) {
  (void)state;
  infsim_gm_move m[8];
  infsim_gm *gm = hand_case();
  infsim_gm_entry at3[2] = {{0, 0, 3, 5}, {3, 3, 3, 30}};
  infsim_gm_heartbeat(gm, 3, 2, 20, at3, 2, false);
  infsim_gm_check(gm);
  assert_int_equal(infsim_gm_plan(gm, INFSIM_PLAN_GREEDY, 3, -1, 8, m, 8), 1);
  assert_true(m[0].req == 3 && m[0].from == 3 && m[0].to == 2 && m[0].blocks == 8 && !m[0].fresh);
  infsim_gm_unpropose(gm, &m[0]);
  infsim_gm_set_guests_first(gm, true);
  assert_int_equal(infsim_gm_plan(gm, INFSIM_PLAN_GREEDY, 3, -1, 8, m, 8), 2);
  assert_true(m[0].req == 0 && m[0].from == 3 && m[0].to == 2 && m[0].blocks == 5 && !m[0].fresh);
  assert_true(m[1].req == 3 && m[1].from == 3 && m[1].to == 2 && m[1].blocks == 3 && !m[1].fresh);
  infsim_gm_unpropose(gm, &m[0]);
  infsim_gm_unpropose(gm, &m[1]);
  /* The owner of a piece is no guest of its own: i0, short, still moves
   * its longest request r0 first (45 blocks, 40 of them at 0). */
  assert_int_equal(infsim_gm_plan(gm, INFSIM_PLAN_GREEDY, 0, -1, 10, m, 8), 1);
  assert_move(&m[0], 0, 2, 10, false);
  infsim_gm_free(gm);
}

static void test_planner_names(void **state) {
  (void)state;
  infsim_gm_planner p;
  for (int k = 0; k < 3; k++) {
    assert_true(infsim_gm_planner_from_name(infsim_gm_planner_name((infsim_gm_planner)k), &p));
    assert_int_equal(p, k);
  }
  assert_false(infsim_gm_planner_from_name("best", &p));
}

/* Random free memory with many ties: a plan for more than the cluster's
 * spare takes every creditor once, in the order worked out here by
 * sorting (rank, most spare, id), each for all its spare. */
static void test_plan_order_random(void **state) {
  (void)state;
  enum { INST = 9, PER_NODE = 4 };
  gsl_rng *rng = infsim_rng_new(3, "test.gmanager.order");
  for (int trial = 0; trial < 300; trial++) {
    infsim_gm *gm = NULL;
    assert_int_equal(infsim_gm_new(INST, PER_NODE, 100, 4, 5, &gm, NULL), INFSIM_OK);
    int64_t spare[INST], total = 0;
    for (int32_t i = 0; i < INST; i++) {
      int64_t free_blocks = 5 + 10 * (int64_t)gsl_rng_uniform_int(rng, 4); /* spare 0, 10, 20 or 30 */
      infsim_gm_heartbeat(gm, i, 1, free_blocks, NULL, 0, false);
      spare[i] = free_blocks - 5;
      total += spare[i];
    }
    int32_t debtor = (int32_t)gsl_rng_uniform_int(rng, INST);
    infsim_gm_planner planner = (infsim_gm_planner)gsl_rng_uniform_int(rng, 3);
    int32_t want[INST], rank[INST];
    size_t nw = 0;
    for (int32_t i = 0; i < INST; i++) {
      bool same_node = i / PER_NODE == debtor / PER_NODE;
      rank[i] = planner == INFSIM_PLAN_GREEDY ? 0 : planner == INFSIM_PLAN_SAME_NODE ? !same_node : 2 - same_node;
      if (i != debtor && spare[i] > 0) want[nw++] = i;
    }
    for (size_t a = 0; a < nw; a++) /* selection sort by (rank, -spare, id) */
      for (size_t b = a + 1; b < nw; b++) {
        int32_t x = want[a], y = want[b];
        bool before = rank[y] < rank[x] || (rank[y] == rank[x] && (spare[y] > spare[x] || (spare[y] == spare[x] && y < x)));
        if (before) want[a] = y, want[b] = x;
      }
    infsim_gm_move m[16];
    size_t n = infsim_gm_plan(gm, planner, debtor, 1, total + 5, m, 16);
    assert_int_equal(n, nw);
    for (size_t k = 0; k < n; k++) {
      assert_int_equal(m[k].to, want[k]);
      assert_int_equal(m[k].blocks, spare[want[k]]);
    }
    infsim_gm_free(gm);
  }
  gsl_rng_free(rng);
}

/* The greedy planner's first creditor over a long run of changes to the
 * view's free memory (heartbeats, proposals and their undoing, plans),
 * against a scan of the test's own record: the most free memory above
 * the reserve, not the debtor, the lowest id of those with as much. */
/* Two ledgers fed the same random heartbeats (free memory, entries of
 * requests owned across the cluster). */
static void same_random_views(gsl_rng *rng, infsim_gm *a, infsim_gm *b, int32_t inst, int64_t reqs) {
  for (int32_t i = 0; i < inst; i++) {
    infsim_gm_entry e[16];
    size_t n = 0;
    for (int64_t r = 0; r < reqs && n < 16; r++)
      if (gsl_rng_uniform_int(rng, 3) == 0)
        e[n++] = (infsim_gm_entry){r, (int32_t)(r % inst), i, 1 + (int64_t)gsl_rng_uniform_int(rng, 20)};
    int64_t free_blocks = (int64_t)gsl_rng_uniform_int(rng, 60);
    infsim_gm_heartbeat(a, i, 1, free_blocks, e, n, false);
    infsim_gm_heartbeat(b, i, 1, free_blocks, e, n, false);
  }
}

/* A borrow takes a plan's first move only (contract_ledger.c): every
 * planner capped at one move gives the first move of its whole plan, and
 * leaves the view as the whole plan with its other moves taken back (the
 * next plans agree too). */
static void test_plan_first_move_alone(void **state) {
  (void)state;
  enum { INST = 9, PER_NODE = 4, REQS = 12 };
  gsl_rng *rng = infsim_rng_new(5, "test.gmanager.first");
  for (int trial = 0; trial < 600; trial++) {
    infsim_gm *a = NULL, *b = NULL;
    assert_int_equal(infsim_gm_new(INST, PER_NODE, 100, REQS, 5, &a, NULL), INFSIM_OK);
    assert_int_equal(infsim_gm_new(INST, PER_NODE, 100, REQS, 5, &b, NULL), INFSIM_OK);
    infsim_gm_set_guests_first(a, trial % 2);
    infsim_gm_set_guests_first(b, trial % 2);
    infsim_gm_set_spread_costs(a, 3, 1);
    infsim_gm_set_spread_costs(b, 3, 1);
    same_random_views(rng, a, b, INST, REQS);
    infsim_gm_planner planner = (infsim_gm_planner)(trial % 6);
    for (int round = 0; round < 3; round++) {
      int32_t debtor = (int32_t)gsl_rng_uniform_int(rng, INST);
      int64_t req = (int64_t)gsl_rng_uniform_int(rng, REQS + 1) - 1, need = 1 + (int64_t)gsl_rng_uniform_int(rng, 80);
      infsim_gm_move all[8], first[1];
      size_t n = infsim_gm_plan(a, planner, debtor, req, need, all, 8);
      for (size_t k = 1; k < n; k++) infsim_gm_unpropose(a, &all[k]);
      size_t n1 = infsim_gm_plan(b, planner, debtor, req, need, first, 1);
      assert_int_equal(n1, n > 0);
      if (n > 0)
        assert_true(first[0].req == all[0].req && first[0].from == all[0].from && first[0].to == all[0].to &&
                    first[0].blocks == all[0].blocks && first[0].fresh == all[0].fresh);
      for (int32_t i = 0; i < INST; i++) assert_int_equal(infsim_gm_free_blocks(a, i), infsim_gm_free_blocks(b, i));
      infsim_gm_check(a);
      infsim_gm_check(b);
    }
    infsim_gm_free(a);
    infsim_gm_free(b);
  }
  gsl_rng_free(rng);
}

static void test_first_creditor_random(void **state) {
  (void)state;
  enum { INST = 13, RESERVE = 5 };
  gsl_rng *rng = infsim_rng_new(5, "test.gmanager.creditor");
  infsim_gm *gm = NULL;
  assert_int_equal(infsim_gm_new(INST, 4, 60, 4, RESERVE, &gm, NULL), INFSIM_OK);
  int64_t free_blocks[INST];
  for (int32_t i = 0; i < INST; i++) free_blocks[i] = 60;
  for (int step = 0; step < 20000; step++) {
    int32_t i = (int32_t)gsl_rng_uniform_int(rng, INST);
    int op = (int)gsl_rng_uniform_int(rng, 4);
    infsim_gm_move m = {.req = 0, .from = 0, .to = i, .blocks = 1 + (int64_t)gsl_rng_uniform_int(rng, 3)};
    if (op == 0) { /* a heartbeat: few values, so that ties are common */
      free_blocks[i] = (int64_t)gsl_rng_uniform_int(rng, 12);
      infsim_gm_heartbeat(gm, i, step, free_blocks[i], NULL, 0, false);
    } else if (op == 1) {
      infsim_gm_propose(gm, &m);
      free_blocks[i] -= m.blocks;
    } else if (op == 2) {
      infsim_gm_unpropose(gm, &m);
      free_blocks[i] += m.blocks;
    } else { /* a one-block plan for a new request of debtor i: its creditor */
      int32_t want = -1;
      for (int32_t j = 0; j < INST; j++)
        if (j != i && free_blocks[j] > RESERVE && (want < 0 || free_blocks[j] > free_blocks[want])) want = j;
      infsim_gm_move out[4];
      size_t n = infsim_gm_plan(gm, INFSIM_PLAN_GREEDY, i, 1, 1, out, 4);
      assert_int_equal(n, want >= 0);
      if (n > 0) {
        assert_int_equal(out[0].to, want);
        free_blocks[want] -= 1; /* the plan's proposal */
      }
    }
    for (int32_t j = 0; j < INST; j++) assert_int_equal(infsim_gm_free_blocks(gm, j), free_blocks[j]);
    if (step % 1000 == 0) infsim_gm_check(gm);
  }
  infsim_gm_reset(gm); /* every view unknown (0): no creditor */
  infsim_gm_move out[4];
  assert_int_equal(infsim_gm_plan(gm, INFSIM_PLAN_GREEDY, 0, 1, 1, out, 4), 0);
  infsim_gm_check(gm);
  infsim_gm_free(gm);
  gsl_rng_free(rng);
}

/* The ledger's 16-bit piece counts bound the instances: the largest count
 * is taken, one more is refused by the ledger, and a config asking
 * infinite-llm for more names its field (the other policies keep no
 * ledger and take it). */
static void test_instance_limit(void **state) {
  (void)state;
  infsim_gm *gm = NULL;
  infsim_error err = {0};
  assert_int_equal(infsim_gm_new(INFSIM_GM_INSTANCES_MAX, 8, 100, 4, 0, &gm, &err), INFSIM_OK);
  infsim_gm_free(gm);
  gm = NULL;
  assert_int_equal(infsim_gm_new(INFSIM_GM_INSTANCES_MAX + 1, 8, 100, 4, 0, &gm, &err), INFSIM_EINPUT);
  assert_null(gm);
  char many[64];
  snprintf(many, sizeof many, "cluster.instances=%d", INFSIM_GM_INSTANCES_MAX + 1);
  for (int infinite = 0; infinite < 2; infinite++) {
    infsim_config *cfg = infsim_config_new();
    const char *const sets[] = {many, infinite ? "policy.name=infinite-llm" : "policy.name=vllm-multi"};
    for (size_t i = 0; i < 2; i++) assert_int_equal(infsim_config_set(cfg, sets[i], &err), INFSIM_OK);
    infsim_run_params p;
    infsim_status st = infsim_run_params_from_config(cfg, &p, &err);
    if (infinite) {
      assert_int_equal(st, INFSIM_EINPUT);
      assert_non_null(strstr(err.msg, "cluster.instances: at most 32767 instances with policy infinite-llm"));
    } else {
      assert_int_equal(st, INFSIM_OK);
    }
    infsim_config_free(cfg);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ledger_zero_sum_and_placement), cmocka_unit_test(test_small_piece_recount),
      cmocka_unit_test(test_forget_floor),
      cmocka_unit_test(test_rebuild_equals_original),       cmocka_unit_test(test_planners_hand_cases),
      cmocka_unit_test(test_planner_names),
      cmocka_unit_test(test_guests_first),
      cmocka_unit_test(test_plan_order_random),
      cmocka_unit_test(test_first_creditor_random),
      cmocka_unit_test(test_plan_first_move_alone),
      cmocka_unit_test(test_instance_limit),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
