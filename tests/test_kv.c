/*
** test_kv.c: the KV manager (kv.h) against a per-block reference model and
** its invariants. The reference keeps, for every request, the pool of each
** of its blocks in token order (a plain array, changed block by block);
** random allocations, decode boundaries, releases (whole and of the tail),
** moves of any stretch (lend, recall, the middle of a run), tail moves and
** swaps are applied to both, and after every operation the manager's runs,
** expanded to ids, must give the same pools block for block, every id must
** be in one table only and inside its pool, and the counts (free, local,
** lent, borrowed, swapped, guests, split lists, holdings) must be what the
** reference adds up to. The extents themselves: a prompt is one run,
** freed neighbours coalesce, a decode block continues its run when it can.
** Blocks at a request's owner take their ids only when the table is read
** (kv.h): the random cases read every table after every step, or one
** step in 16 (the counts checked after every step all the same); and n
** boundaries taken at once give the same ids as n taken one by one.
*/
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "infsim/kv.h"

/* req's block ids, expanded from its runs, into ids (room for max). */
static int64_t table_ids(const infsim_kv *kv, int64_t req, int64_t *ids, int64_t max) {
  int64_t n_runs = 0, n = 0;
  const infsim_kv_run *runs = infsim_kv_runs(kv, req, &n_runs);
  for (int64_t i = 0; i < n_runs; i++) {
    assert_true(runs[i].blocks > 0);
    if (i > 0) assert_true(runs[i - 1].first + runs[i - 1].blocks != runs[i].first); /* maximal runs */
    for (int64_t k = 0; k < runs[i].blocks; k++) {
      assert_true(n < max);
      ids[n++] = runs[i].first + k;
    }
  }
  assert_int_equal(n, infsim_kv_blocks(kv, req));
  return n;
}

static int64_t runs_of(const infsim_kv *kv, int64_t req) {
  int64_t n = 0;
  (void)infsim_kv_runs(kv, req, &n);
  return n;
}

static void test_lend_borrow_zero_sum(void **state) {
  (void)state;
  infsim_kv *kv = NULL;
  assert_int_equal(infsim_kv_new(2, 10, 2, 5, 3, &kv, NULL), INFSIM_OK);
  infsim_kv_set_owner(kv, 0, 0);
  infsim_kv_set_owner(kv, 1, 1);
  assert_int_equal(infsim_kv_alloc(kv, 0, 0, 4, NULL), INFSIM_OK);
  assert_int_equal(infsim_kv_alloc(kv, 0, 1, 3, NULL), INFSIM_OK); /* 3 borrowed from instance 1 */
  infsim_kv_counts a = infsim_kv_counts_of(kv, 0), b = infsim_kv_counts_of(kv, 1);
  assert_int_equal(a.local, 4);
  assert_int_equal(a.borrowed, 3);
  assert_int_equal(b.lent, 3);
  assert_int_equal(b.free, 7);
  assert_int_equal(infsim_kv_blocks_at(kv, 0, 1), 3);
  int64_t ids[16];
  assert_int_equal(table_ids(kv, 0, ids, 16), 7);
  for (int i = 0; i < 7; i++) assert_int_equal(infsim_kv_holder_of(kv, ids[i]), i < 4 ? 0 : 1);
  assert_int_equal(runs_of(kv, 0), 2);
  assert_int_equal(infsim_kv_borrowed_peak(kv), 3);
  /* Recall: the 3 blocks come home, after the 4 local ones: one run. */
  assert_int_equal(infsim_kv_move(kv, 0, 4, 3, 0, NULL), INFSIM_OK);
  a = infsim_kv_counts_of(kv, 0);
  b = infsim_kv_counts_of(kv, 1);
  assert_int_equal(a.local, 7);
  assert_int_equal(a.borrowed + b.lent, 0);
  assert_int_equal(runs_of(kv, 0), 1);
  assert_int_equal(infsim_kv_borrowed_peak(kv), 3);
  /* Too few free blocks: an error, nothing changes. */
  infsim_error err = {0};
  assert_int_equal(infsim_kv_alloc(kv, 1, 1, 11, &err), INFSIM_ERUN);
  assert_int_equal(infsim_kv_counts_of(kv, 1).free, 10);
  infsim_kv_check(kv);
  infsim_kv_free(kv);
}

/* ---- the reference model --------------------------------------------------- */

typedef struct {
  int32_t instances;
  int64_t gpu_blocks;
  int64_t host_blocks;
  int32_t requests;
  int64_t max_alloc; /* blocks of one allocation, at most */
  int32_t steps;
  unsigned seed;
  int64_t min_peak; /* slots pool 0 must have handed out at once (the bitmap levels reached) */
  /* Read the tables' ids (which gives deferred blocks their slots) after
   * one step in read_every (0 or 1: every step); the counts are checked
   * after every step all the same, from the reference alone. */
  int32_t read_every;
} shape;

/* Per request: its blocks' pools in token order (instances + h: host h;
 * host h serves instance h here). */
typedef struct {
  int32_t *pool;
  int64_t n;
  int64_t cap;
  int32_t owner;
} ref_req;

static void ref_push(ref_req *r, int32_t pool, int64_t n) {
  if (r->n + n > r->cap) {
    r->cap = 2 * (r->n + n);
    r->pool = realloc(r->pool, (size_t)r->cap * sizeof *r->pool);
    assert_non_null(r->pool);
  }
  for (int64_t i = 0; i < n; i++) r->pool[r->n++] = pool;
}

static int64_t ref_at(const ref_req *r, int32_t pool) {
  int64_t n = 0;
  for (int64_t i = 0; i < r->n; i++) n += r->pool[i] == pool;
  return n;
}

static int64_t table_room(const shape *sh) { return sh->instances * (sh->gpu_blocks + sh->host_blocks) + 1; }

/* Everything the manager reports, against the reference; the tables' ids
 * only when `read` (reading them settles deferred blocks). */
static void expect_same(const infsim_kv *kv, const shape *sh, const ref_req *ref, int64_t *ids, bool *used, bool read) {
  int32_t pools = 2 * sh->instances;
  int64_t span = infsim_kv_first_block(kv, pools);
  memset(used, 0, (size_t)span * sizeof *used);
  int64_t *held = calloc((size_t)pools, sizeof *held);
  int64_t *at = calloc((size_t)(pools * sh->requests), sizeof *at); /* at[r * pools + q]: blocks of r in q */
  assert_true(held != NULL && at != NULL);
  for (int32_t r = 0; r < sh->requests && !read; r++)
    for (int64_t i = 0; i < ref[r].n; i++) {
      held[ref[r].pool[i]]++;
      at[r * pools + ref[r].pool[i]]++;
    }
  for (int32_t r = 0; r < sh->requests && read; r++) {
    int64_t n = table_ids(kv, r, ids, table_room(sh));
    assert_int_equal(n, ref[r].n);
    int64_t flat_n = 0;
    const int64_t *flat = infsim_kv_table(kv, r, &flat_n); /* the ids written out: the same */
    assert_int_equal(flat_n, n);
    for (int64_t i = 0; i < n; i++) assert_int_equal(flat[i], ids[i]);
    for (int64_t i = 0; i < n; i++) {
      int32_t q = infsim_kv_holder_of(kv, ids[i]);
      assert_int_equal(q, ref[r].pool[i]); /* block for block, token order */
      int64_t slot = ids[i] - infsim_kv_first_block(kv, q);
      assert_true(slot >= 0 && slot < (q < sh->instances ? sh->gpu_blocks : sh->host_blocks));
      assert_false(used[ids[i]]); /* one table per block */
      used[ids[i]] = true;
      held[q]++;
      at[r * pools + q]++;
    }
    infsim_kv_check_request(kv, r);
  }
  for (int32_t r = 0; r < sh->requests; r++) {
    assert_int_equal(infsim_kv_blocks(kv, r), ref[r].n);
    infsim_kv_check_request(kv, r);
  }
  for (int32_t q = 0; q < pools; q++) {
    int64_t in_use = 0, peak = 0, capacity = 0;
    infsim_kv_pool_usage(kv, q, &in_use, &peak, &capacity);
    assert_int_equal(in_use, held[q]);
    assert_true(peak >= in_use && peak <= capacity);
  }
  for (int32_t i = 0; i < sh->instances; i++) {
    int64_t local = 0, lent = 0, borrowed = 0, swapped = 0, guests = 0, split = 0;
    for (int32_t r = 0; r < sh->requests; r++) {
      int64_t here = at[r * pools + i], in_host = at[r * pools + sh->instances + i];
      if (ref[r].owner == i) {
        local += here;
        swapped += in_host;
        borrowed += ref[r].n - here - in_host;
        split += ref[r].n > here;
      } else {
        lent += here;
        guests += here > 0;
      }
    }
    infsim_kv_counts c = infsim_kv_counts_of(kv, i);
    assert_int_equal(c.local, local);
    assert_int_equal(c.lent, lent);
    assert_int_equal(c.borrowed, borrowed);
    assert_int_equal(c.swapped, swapped);
    assert_int_equal(c.free, sh->gpu_blocks - local - lent);
    assert_int_equal(infsim_kv_guests(kv, i), guests);
    int64_t n_split = 0;
    const int64_t *sp = infsim_kv_split_requests(kv, i, &n_split);
    assert_int_equal(n_split, split);
    for (int64_t k = 0; k < n_split; k++) assert_int_equal(ref[sp[k]].owner, i);
  }
  for (int32_t r = 0; r < sh->requests; r++) {
    int32_t owner = ref[r].owner;
    const int64_t *a = &at[r * pools];
    for (int32_t q = 0; q < sh->instances; q++) assert_int_equal(infsim_kv_blocks_at(kv, r, q), a[q]);
    assert_int_equal(infsim_kv_foreign_blocks(kv, r), ref[r].n - a[owner]);
    int32_t hp[64];
    int64_t hb[64];
    int32_t nh = infsim_kv_holdings(kv, r, hp, hb, 64);
    int32_t want = 0;
    for (int32_t q = 0; q < pools; q++) want += q != owner && a[q] > 0;
    assert_int_equal(nh, want);
    for (int32_t k = 0; k < nh && k < 64; k++) assert_int_equal(hb[k], a[hp[k]]);
  }
  infsim_kv_check(kv);
  free(held);
  free(at);
}

/* infsim_kv_guest_generation's promise, from the reference: an instance
 * whose count stayed since the last step holds every request owned
 * elsewhere as it did then (then: its guests' blocks then, per instance
 * and request, and the counts; both brought up to date). */
static void expect_guests_kept(const infsim_kv *kv, const shape *sh, const ref_req *ref, int64_t *then,
                               uint64_t *gen_then) {
  int64_t *now = calloc((size_t)(sh->instances * sh->requests), sizeof *now);
  assert_non_null(now);
  for (int32_t r = 0; r < sh->requests; r++)
    for (int64_t i = 0; i < ref[r].n; i++)
      if (ref[r].pool[i] < sh->instances && ref[r].pool[i] != ref[r].owner) now[ref[r].pool[i] * sh->requests + r]++;
  for (int32_t q = 0; q < sh->instances; q++) {
    uint64_t gen = infsim_kv_guest_generation(kv, q);
    for (int32_t r = 0; r < sh->requests && gen == gen_then[q]; r++)
      assert_int_equal(now[q * sh->requests + r], then[q * sh->requests + r]);
    gen_then[q] = gen;
  }
  memcpy(then, now, (size_t)(sh->instances * sh->requests) * sizeof *now);
  free(now);
}

/* What the rehome hook reported since the last check. */
typedef struct {
  int64_t req[4096], index[4096], from[4096], to[4096];
  int64_t n;
} hook_log;

static void on_rehome(void *self, int64_t req, int64_t index, int64_t from, int64_t to) {
  hook_log *h = self;
  if (h->n < 4096) {
    h->req[h->n] = req;
    h->index[h->n] = index;
    h->from[h->n] = from;
    h->to[h->n] = to;
  }
  h->n++;
}

static void random_against_reference(const shape *sh) {
  infsim_kv *kv = NULL;
  assert_int_equal(
      infsim_kv_new(sh->instances, sh->gpu_blocks, sh->instances, sh->host_blocks, sh->requests, &kv, NULL), INFSIM_OK);
  ref_req *ref = calloc((size_t)sh->requests, sizeof *ref);
  int64_t *ids = calloc((size_t)table_room(sh), sizeof *ids);
  bool *used = calloc((size_t)infsim_kv_first_block(kv, 2 * sh->instances), sizeof *used);
  int32_t *reqs = calloc((size_t)sh->requests, sizeof *reqs);
  assert_true(ref != NULL && ids != NULL && used != NULL && reqs != NULL);
  for (int32_t r = 0; r < sh->requests; r++) {
    ref[r].owner = r % sh->instances;
    infsim_kv_set_owner(kv, r, ref[r].owner);
  }
  srand(sh->seed);
  int64_t ops[9] = {0};
  static hook_log log;
  infsim_kv_set_rehome_hook(kv, on_rehome, &log);
  int64_t *before = calloc((size_t)table_room(sh), sizeof *before);
  int64_t *guests_then = calloc((size_t)(sh->instances * sh->requests), sizeof *guests_then);
  uint64_t *guest_gen_then = calloc((size_t)sh->instances, sizeof *guest_gen_then);
  assert_true(before != NULL && guests_then != NULL && guest_gen_then != NULL);
  /* Blocks lent cluster-wide and the most at any moment, as moving blocks
   * one at a time in table order counts them (each arrives, then leaves
   * where it was): the reference for infsim_kv_borrowed_peak. */
  int64_t lent = 0, lent_peak = 0;
  for (int32_t step = 0; step < sh->steps; step++) {
    int32_t r = rand() % sh->requests, op = rand() % 9, h = rand() % sh->instances;
    bool read = sh->read_every <= 1 || rand() % sh->read_every == 0;
    ref_req *R = &ref[r];
    int64_t n_before = read ? table_ids(kv, r, before, table_room(sh)) : 0;
    int32_t *pools_before = malloc((size_t)(R->n > 0 ? R->n : 1) * sizeof *pools_before);
    assert_non_null(pools_before);
    if (R->n > 0) memcpy(pools_before, R->pool, (size_t)R->n * sizeof *pools_before);
    int64_t n_ref = R->n; /* blocks before the step, by the reference */
    log.n = 0;
    int32_t home = R->owner, host = sh->instances + R->owner;
    bool in_host = ref_at(R, host) > 0;
    if (op == 0) { /* one block each for a few requests (one decode step's boundaries) */
      int32_t n = 1 + rand() % (sh->requests < 8 ? sh->requests : 8);
      for (int32_t k = 0; k < n; k++) reqs[k] = (r + k) % sh->requests;
      int64_t free_before = infsim_kv_counts_of(kv, h).free;
      infsim_status st;
      if (free_before >= n && rand() % 2) { /* as the scheduler takes them: one call a request */
        st = INFSIM_OK;
        for (int32_t k = 0; k < n && st == INFSIM_OK; k++) st = infsim_kv_alloc_one(kv, reqs[k], h, NULL);
      } else {
        st = infsim_kv_alloc_each(kv, reqs, n, h, NULL);
      }
      if (free_before >= n) {
        assert_int_equal(st, INFSIM_OK);
        for (int32_t k = 0; k < n; k++) ref_push(&ref[reqs[k]], h, 1);
      } else {
        assert_int_equal(st, INFSIM_ERUN);
        assert_int_equal(infsim_kv_counts_of(kv, h).free, free_before);
      }
    } else if (op <= 2) { /* a prompt (or more blocks) at its owner, sometimes elsewhere */
      int32_t where = rand() % 3 == 0 ? h : home;
      int64_t n = 1 + rand() % sh->max_alloc;
      int64_t free_before = infsim_kv_counts_of(kv, where).free;
      infsim_error err = {0};
      infsim_status st = infsim_kv_alloc(kv, r, where, n, &err);
      if (free_before >= n) {
        assert_int_equal(st, INFSIM_OK);
        ref_push(R, where, n);
      } else {
        assert_int_equal(st, INFSIM_ERUN);
        assert_int_equal(infsim_kv_counts_of(kv, where).free, free_before);
      }
    } else if (op == 3 && R->n > 0 && rand() % 3 == 0) { /* finish */
      infsim_kv_release(kv, r);
      R->n = 0;
    } else if (op == 4 && R->n > 0) { /* shrink: the last blocks go */
      int64_t n = 1 + rand() % R->n;
      infsim_kv_release_tail(kv, r, n);
      R->n -= n;
    } else if (op == 5 && R->n > 0) { /* move any stretch to h: lend, recall, a run's middle */
      int64_t first = rand() % R->n, n = 1 + rand() % (R->n - first);
      int64_t arriving = 0;
      for (int64_t i = first; i < first + n; i++) arriving += R->pool[i] != h;
      int64_t free_before = infsim_kv_counts_of(kv, h).free;
      infsim_status st = infsim_kv_move(kv, r, first, n, h, NULL);
      if (free_before >= arriving) {
        assert_int_equal(st, INFSIM_OK);
        for (int64_t i = first; i < first + n; i++) R->pool[i] = h;
      } else {
        assert_int_equal(st, INFSIM_ERUN);
      }
    } else if (op == 6 && R->n > 0) { /* the newest blocks at one pool to another (tail move) */
      int32_t from = rand() % 2 ? h : home, to = rand() % 2 ? home : (rand() % 2 ? host : (h + 1) % sh->instances);
      if (from == to) {
        free(pools_before);
        continue;
      }
      int64_t n = 1 + rand() % R->n, room = to < sh->instances ? infsim_kv_counts_of(kv, to).free
                                                                : infsim_kv_host_free_blocks(kv, to - sh->instances);
      if (n > room) n = room;
      int64_t moved = infsim_kv_move_tail(kv, r, from, to, n), want = 0;
      for (int64_t i = R->n - 1; i >= 0 && want < n; i--)
        if (R->pool[i] == from) {
          R->pool[i] = to;
          want++;
        }
      assert_int_equal(moved, want);
    } else if (op == 7 && R->n > 0) { /* swap out, or back in */
      infsim_status st = in_host ? infsim_kv_swap_in(kv, r, home, NULL) : infsim_kv_swap_out(kv, r, home, NULL);
      int32_t to = in_host ? home : host;
      int64_t arriving = R->n - ref_at(R, to);
      int64_t room = to < sh->instances ? infsim_kv_counts_of(kv, to).free : infsim_kv_host_free_blocks(kv, R->owner);
      if (st == INFSIM_OK) {
        for (int64_t i = 0; i < R->n; i++) R->pool[i] = to;
      } else {
        assert_int_equal(st, INFSIM_ERUN);
        assert_true(room < arriving);
      }
    } else if (op == 8 && R->n > 0) { /* finish and start again: a new prompt in recycled slots */
      infsim_kv_release(kv, r);
      R->n = 0;
      int64_t n = 1 + rand() % sh->max_alloc;
      if (infsim_kv_counts_of(kv, home).free >= n) {
        assert_int_equal(infsim_kv_alloc(kv, r, home, n, NULL), INFSIM_OK);
        ref_push(R, home, n);
      }
    }
    ops[op]++;
    expect_same(kv, sh, ref, ids, used, read);
    expect_guests_kept(kv, sh, ref, guests_then, guest_gen_then);
    if (op >= 5 && op <= 7)
      for (int64_t i = 0; i < n_ref && i < R->n; i++) {
        if (pools_before[i] == R->pool[i]) continue;
        lent += R->pool[i] < sh->instances && R->pool[i] != R->owner;
        if (lent > lent_peak) lent_peak = lent;
        lent -= pools_before[i] < sh->instances && pools_before[i] != R->owner;
      }
    int64_t lent_now = 0;
    for (int32_t q = 0; q < sh->requests; q++)
      for (int64_t i = 0; i < ref[q].n; i++) lent_now += ref[q].pool[i] < sh->instances && ref[q].pool[i] != ref[q].owner;
    if (op >= 5 && op <= 7) assert_int_equal(lent, lent_now);
    lent = lent_now;
    if (lent > lent_peak) lent_peak = lent; /* allocations only add, releases only take away */
    assert_int_equal(infsim_kv_borrowed_peak(kv), lent_peak);
    /* The hook saw exactly the blocks whose pool changed (moves and swaps
     * only), each with its id before and after. */
    int64_t moved = 0;
    if (op >= 5 && op <= 7)
      for (int64_t i = 0; i < n_ref && i < R->n; i++) moved += pools_before[i] != R->pool[i];
    assert_int_equal(log.n, moved);
    if (!read) { /* the ids before were not read: the hook's ids not checked (its calls are) */
      free(pools_before);
      continue;
    }
    int64_t n_after = table_ids(kv, r, ids, table_room(sh));
    for (int64_t k = 0; k < log.n && k < 4096; k++) {
      assert_int_equal(log.req[k], r);
      assert_true(log.index[k] >= 0 && log.index[k] < n_before && log.index[k] < n_after);
      assert_int_equal(log.from[k], before[log.index[k]]);
      assert_int_equal(log.to[k], ids[log.index[k]]);
    }
    free(pools_before);
  }
  free(before);
  free(guests_then);
  free(guest_gen_then);
  for (int32_t k = 0; k < 9; k++) assert_true(ops[k] > 0); /* every operation ran */
  int64_t in_use = 0, peak = 0, capacity = 0;
  infsim_kv_pool_usage(kv, 0, &in_use, &peak, &capacity);
  assert_true(peak >= sh->min_peak);
  for (int32_t r = 0; r < sh->requests; r++) free(ref[r].pool);
  free(ref);
  free(ids);
  free(used);
  free(reqs);
  infsim_kv_free(kv);
}

/* Tight pools (errors, heavy fragmentation, one-word bitmaps). */
static void test_random_small_pools(void **state) {
  (void)state;
  shape sh = {.instances = 4, .gpu_blocks = 50, .host_blocks = 30, .requests = 40, .max_alloc = 6,
              .steps = 20000, .seed = 12345};
  random_against_reference(&sh);
}

/* Pools of several bitmap words and two summary levels; long prompts. */
static void test_random_two_levels(void **state) {
  (void)state;
  shape sh = {.instances = 3, .gpu_blocks = 700, .host_blocks = 300, .requests = 30, .max_alloc = 90,
              .steps = 6000, .seed = 777, .min_peak = 300};
  random_against_reference(&sh);
}

/* Pools of three levels (more than 64 x 64 words' worth of slots). */
static void test_random_three_levels(void **state) {
  (void)state;
  shape sh = {.instances = 2, .gpu_blocks = 20000, .host_blocks = 5000, .requests = 24, .max_alloc = 600,
              .steps = 3000, .seed = 4242, .min_peak = 64 * 64 + 1};
  random_against_reference(&sh);
}

/* Tables read one step in 16 (and the one a step works on, only then):
 * blocks at their owner stay deferred across allocations, decode
 * boundaries, tail releases, moves, swaps and lending until a read or a
 * move gives them slots. */
static void test_random_deferred_small_pools(void **state) {
  (void)state;
  shape sh = {.instances = 4, .gpu_blocks = 50, .host_blocks = 30, .requests = 40, .max_alloc = 6,
              .steps = 20000, .seed = 2468, .read_every = 16};
  random_against_reference(&sh);
}

static void test_random_deferred_two_levels(void **state) {
  (void)state;
  shape sh = {.instances = 3, .gpu_blocks = 700, .host_blocks = 300, .requests = 30, .max_alloc = 90,
              .steps = 6000, .seed = 1357, .read_every = 16};
  random_against_reference(&sh);
}

/* Two managers driven alike (the randomized tests below): a read of
 * req's table gives the same ids in both. */
static void same_ids(infsim_kv *kv[2], int64_t req) {
  int64_t n0 = 0, n1 = 0;
  const int64_t *t0 = infsim_kv_table(kv[0], req, &n0);
  int64_t *copy = malloc((size_t)(n0 > 0 ? n0 : 1) * sizeof *copy);
  assert_non_null(copy);
  if (n0 > 0) memcpy(copy, t0, (size_t)n0 * sizeof *copy);
  const int64_t *t1 = infsim_kv_table(kv[1], req, &n1);
  assert_int_equal(n0, n1);
  assert_memory_equal(copy, t1, (size_t)n0 * sizeof *copy);
  free(copy);
}

/* Both report the same counts at each of their first `instances` pools. */
static void same_counts(infsim_kv *kv[2], int32_t instances) {
  for (int32_t i = 0; i < instances; i++) {
    infsim_kv_counts a = infsim_kv_counts_of(kv[0], i), b = infsim_kv_counts_of(kv[1], i);
    assert_memory_equal(&a, &b, sizeof a);
  }
}

/* Both managers' own checks (every pool, then each of the first `requests`
 * tables), then both freed. */
static void check_and_free(infsim_kv *kv[2], int requests) {
  for (int m = 0; m < 2; m++) {
    infsim_kv_check(kv[m]);
    for (int r = 0; r < requests; r++) infsim_kv_check_request(kv[m], r);
    infsim_kv_free(kv[m]);
  }
}

/* Both lend a random number of req's newest blocks at `owner` (as many
 * as `to` has room for) to `to`. */
static void lend_newest(infsim_kv *kv[2], int64_t req, int32_t owner, int32_t to) {
  int64_t n = 1 + rand() % infsim_kv_blocks_at(kv[0], req, owner);
  if (n > infsim_kv_free_blocks(kv[0], to)) n = infsim_kv_free_blocks(kv[0], to);
  for (int m = 0; m < 2; m++) assert_int_equal(infsim_kv_move_tail(kv[m], req, owner, to, n), n);
}
/* Decode boundaries taken in bulk (infsim_kv_alloc of n blocks a
 * request, as a long run's boundaries are applied) and one at a time
 * (infsim_kv_alloc_one, infsim_kv_alloc_each, step by step): two
 * managers driven by the same random prompts, boundaries, finishes,
 * lending and reads must hold the same ids, bit for bit, whenever the
 * tables are read. */
static void test_bulk_boundaries_equal_single_ones(void **state) {
  (void)state;
  enum { INST = 3, REQS = 24, BLOCKS = 300, ROUNDS = 4000 };
  infsim_kv *kv[2] = {NULL, NULL};
  for (int m = 0; m < 2; m++) {
    assert_int_equal(infsim_kv_new(INST, BLOCKS, INST, 50, REQS, &kv[m], NULL), INFSIM_OK);
    for (int r = 0; r < REQS; r++) infsim_kv_set_owner(kv[m], r, r % INST);
  }
  srand(97531);
  int64_t bulk_calls = 0, reads = 0;
  for (int round = 0; round < ROUNDS; round++) {
    int32_t r = rand() % REQS, op = rand() % 6, owner = r % INST;
    if (op == 0) { /* a prompt at its owner */
      int64_t n = 1 + rand() % 40;
      if (infsim_kv_free_blocks(kv[0], owner) >= n)
        for (int m = 0; m < 2; m++) assert_int_equal(infsim_kv_alloc(kv[m], r, owner, n, NULL), INFSIM_OK);
    } else if (op <= 2) { /* k steps of boundaries for a few requests of one owner */
      int32_t reqs[8], n = 0;
      for (int32_t q = owner; q < REQS && n < 8; q += INST)
        if (infsim_kv_blocks(kv[0], q) > 0 && rand() % 2) reqs[n++] = q;
      int64_t k = 1 + rand() % 5;
      if (n == 0 || infsim_kv_free_blocks(kv[0], owner) < n * k) continue;
      for (int32_t i = 0; i < n; i++) assert_int_equal(infsim_kv_alloc(kv[0], reqs[i], owner, k, NULL), INFSIM_OK);
      bulk_calls += n;
      for (int64_t step = 0; step < k; step++) {
        if (rand() % 2) {
          assert_int_equal(infsim_kv_alloc_each(kv[1], reqs, n, owner, NULL), INFSIM_OK);
        } else {
          for (int32_t i = 0; i < n; i++) assert_int_equal(infsim_kv_alloc_one(kv[1], reqs[i], owner, NULL), INFSIM_OK);
        }
      }
    } else if (op == 3 && infsim_kv_blocks(kv[0], r) > 0) { /* a finish */
      for (int m = 0; m < 2; m++) infsim_kv_release(kv[m], r);
    } else if (op == 4 && infsim_kv_blocks_at(kv[0], r, owner) > 0) { /* lend its newest blocks to the next instance */
      lend_newest(kv, r, owner, (owner + 1) % INST);
    } else if (op == 5) { /* a read: ids given now, the same in both */
      same_ids(kv, r);
      reads++;
    }
    same_counts(kv, INST);
  }
  assert_true(bulk_calls > 500 && reads > 500);
  check_and_free(kv, REQS);
}

/* Tables that grow by themselves (infsim_kv_grow_begin, one block every
 * BT steps of their owner's step count, the pool told once a step) and
 * the same boundaries taken one at a time (infsim_kv_alloc_one at each
 * step): two managers driven by the same random prompts, steps,
 * finishes, lending and reads must report the same blocks, counts and
 * peaks after every operation and hold the same ids whenever the tables
 * are read. */
static void test_growing_tables_equal_single_ones(void **state) {
  (void)state;
  enum { INST = 2, REQS = 16, BLOCKS = 400, ROUNDS = 6000, BT = 4 };
  infsim_kv *kv[2] = {NULL, NULL};
  for (int m = 0; m < 2; m++) {
    assert_int_equal(infsim_kv_new(INST, BLOCKS, INST, 50, REQS, &kv[m], NULL), INFSIM_OK);
    for (int r = 0; r < REQS; r++) infsim_kv_set_owner(kv[m], r, r % INST);
  }
  int64_t step[INST] = {0, 0}, next[REQS];
  bool decoding[REQS] = {false};
  srand(24680);
  int64_t grown = 0, reads = 0;
  for (int round = 0; round < ROUNDS; round++) {
    int32_t r = rand() % REQS, op = rand() % 8, owner = r % INST;
    if (op == 0 && !decoding[r] && infsim_kv_blocks(kv[0], r) == 0) { /* a prompt, then decoding */
      int64_t n = 1 + rand() % 30;
      if (infsim_kv_free_blocks(kv[0], owner) < n) continue;
      for (int m = 0; m < 2; m++) assert_int_equal(infsim_kv_alloc(kv[m], r, owner, n, NULL), INFSIM_OK);
      next[r] = step[owner] + 1 + rand() % BT;
      assert_true(infsim_kv_grow_begin(kv[0], r, next[r], BT, step[owner] + 100000));
      assert_int_equal(infsim_kv_grow_next(kv[0], r), next[r]);
      decoding[r] = true;
    } else if (op <= 3) { /* the owner's next step: its due boundaries */
      int64_t t = step[owner] + 1, due = 0;
      for (int32_t q = owner; q < REQS; q += INST) due += decoding[q] && next[q] == t;
      if (infsim_kv_free_blocks(kv[0], owner) < due) continue;
      for (int32_t q = owner; q < REQS; q += INST)
        if (decoding[q] && next[q] == t) {
          assert_int_equal(infsim_kv_alloc_one(kv[1], q, owner, NULL), INFSIM_OK);
          next[q] += BT;
        }
      infsim_kv_grow_pool(kv[0], owner, t, due);
      grown += due;
      step[owner] = t;
    } else if (op == 4 && infsim_kv_blocks(kv[0], r) > 0) { /* a finish (or its decoding stops) */
      if (decoding[r]) infsim_kv_grow_end(kv[0], r);
      assert_int_equal(infsim_kv_grow_next(kv[0], r), INT64_MAX);
      decoding[r] = false;
      if (rand() % 2)
        for (int m = 0; m < 2; m++) infsim_kv_release(kv[m], r);
    } else if (op == 5 && infsim_kv_blocks_at(kv[0], r, owner) > 0) { /* lend its newest blocks */
      lend_newest(kv, r, owner, (owner + 1) % INST);
    } else if (op == 6) { /* a read: ids given now, the same in both */
      same_ids(kv, r);
      reads++;
    }
    same_counts(kv, INST);
    for (int32_t i = 0; i < INST; i++) {
      int64_t use[2], peak[2], cap[2];
      for (int m = 0; m < 2; m++) infsim_kv_pool_usage(kv[m], i, &use[m], &peak[m], &cap[m]);
      assert_int_equal(use[0], use[1]);
      assert_int_equal(peak[0], peak[1]);
    }
    for (int32_t q = 0; q < REQS; q++) {
      assert_int_equal(infsim_kv_blocks(kv[0], q), infsim_kv_blocks(kv[1], q));
      assert_int_equal(infsim_kv_blocks_at(kv[0], q, q % INST), infsim_kv_blocks_at(kv[1], q, q % INST));
    }
  }
  assert_true(grown > 1000 && reads > 300);
  check_and_free(kv, REQS);
}

/* ---- extents ---------------------------------------------------------------- */

static void test_prompts_are_runs_and_coalesce(void **state) {
  (void)state;
  infsim_kv *kv = NULL;
  assert_int_equal(infsim_kv_new(1, 1000, 0, 0, 5, &kv, NULL), INFSIM_OK);
  for (int r = 0; r < 5; r++) infsim_kv_set_owner(kv, r, 0);
  /* Three prompts from a fresh pool: one run each, side by side. */
  for (int r = 0; r < 3; r++) {
    assert_int_equal(infsim_kv_alloc(kv, r, 0, 100, NULL), INFSIM_OK);
    assert_int_equal(runs_of(kv, r), 1);
  }
  /* The middle one and the first one finish: their slots coalesce into
   * one run of 200 that the next prompt of 200 takes whole. */
  infsim_kv_release(kv, 1);
  infsim_kv_release(kv, 0);
  assert_int_equal(infsim_kv_alloc(kv, 3, 0, 200, NULL), INFSIM_OK);
  assert_int_equal(runs_of(kv, 3), 1);
  int64_t in_use = 0, peak = 0, capacity = 0;
  infsim_kv_pool_usage(kv, 0, &in_use, &peak, &capacity);
  assert_int_equal(peak, 300); /* reused, not fresh */
  /* Releasing the end of a run (a tail of 50): the table is one shorter
   * run; the next prompt of 80 goes in at most two runs; peak 330. */
  infsim_kv_release_tail(kv, 3, 50);
  assert_int_equal(infsim_kv_blocks(kv, 3), 150);
  assert_int_equal(runs_of(kv, 3), 1);
  assert_int_equal(infsim_kv_alloc(kv, 4, 0, 80, NULL), INFSIM_OK);
  assert_true(runs_of(kv, 4) <= 2);
  infsim_kv_pool_usage(kv, 0, &in_use, &peak, &capacity);
  assert_int_equal(peak, 330);
  infsim_kv_check(kv);
  for (int r = 0; r < 5; r++) infsim_kv_check_request(kv, r);
  infsim_kv_free(kv);
}

static void test_decode_blocks_continue_runs(void **state) {
  (void)state;
  infsim_kv *kv = NULL;
  assert_int_equal(infsim_kv_new(1, 1000, 0, 0, 3, &kv, NULL), INFSIM_OK);
  for (int r = 0; r < 3; r++) infsim_kv_set_owner(kv, r, 0);
  /* Alone, a request's decode blocks follow its prompt: still one run. */
  assert_int_equal(infsim_kv_alloc(kv, 0, 0, 10, NULL), INFSIM_OK);
  int32_t req0 = 0;
  for (int k = 0; k < 5; k++) assert_int_equal(infsim_kv_alloc_each(kv, &req0, 1, 0, NULL), INFSIM_OK);
  assert_int_equal(infsim_kv_blocks(kv, 0), 15);
  assert_int_equal(runs_of(kv, 0), 1);
  /* Two requests in step: interleaved slots, a run per block at most. */
  assert_int_equal(infsim_kv_alloc(kv, 1, 0, 10, NULL), INFSIM_OK);
  int32_t both[2] = {0, 1};
  for (int k = 0; k < 4; k++) assert_int_equal(infsim_kv_alloc_each(kv, both, 2, 0, NULL), INFSIM_OK);
  assert_int_equal(infsim_kv_blocks(kv, 0), 19);
  assert_int_equal(infsim_kv_blocks(kv, 1), 14);
  assert_true(runs_of(kv, 0) <= 5 && runs_of(kv, 1) <= 5);
  /* Released, every slot is free again in one stretch: a prompt of all
   * 33 blocks is one run. */
  infsim_kv_release(kv, 0);
  infsim_kv_release(kv, 1);
  assert_int_equal(infsim_kv_alloc(kv, 2, 0, 33, NULL), INFSIM_OK);
  assert_int_equal(runs_of(kv, 2), 1);
  infsim_kv_check(kv);
  infsim_kv_free(kv);
}

static void test_move_splits_and_rejoins_a_run(void **state) {
  (void)state;
  infsim_kv *kv = NULL;
  assert_int_equal(infsim_kv_new(2, 100, 1, 100, 1, &kv, NULL), INFSIM_OK);
  infsim_kv_set_owner(kv, 0, 0);
  assert_int_equal(infsim_kv_alloc(kv, 0, 0, 30, NULL), INFSIM_OK);
  /* Lend the middle ten: three runs, pools 0, 1, 0. */
  assert_int_equal(infsim_kv_move(kv, 0, 10, 10, 1, NULL), INFSIM_OK);
  int64_t n = 0;
  const infsim_kv_run *runs = infsim_kv_runs(kv, 0, &n);
  assert_int_equal(n, 3);
  int64_t want_blocks[3] = {10, 10, 10};
  int32_t want_pool[3] = {0, 1, 0};
  for (int i = 0; i < 3; i++) {
    assert_int_equal(runs[i].blocks, want_blocks[i]);
    assert_int_equal(infsim_kv_holder_of(kv, runs[i].first), want_pool[i]);
  }
  assert_int_equal(infsim_kv_counts_of(kv, 1).lent, 10);
  /* Recalled, the ten land in the lowest free slots, the hole they left:
   * the table is one run again. */
  assert_int_equal(infsim_kv_move(kv, 0, 10, 10, 0, NULL), INFSIM_OK);
  assert_int_equal(runs_of(kv, 0), 1);
  /* The newest 12 to host memory by a tail move, then swapped back in. */
  assert_int_equal(infsim_kv_move_tail(kv, 0, 0, 2, 12), 12);
  assert_int_equal(infsim_kv_counts_of(kv, 0).swapped, 12);
  assert_int_equal(runs_of(kv, 0), 2);
  assert_int_equal(infsim_kv_swap_in(kv, 0, 0, NULL), INFSIM_OK);
  assert_int_equal(infsim_kv_counts_of(kv, 0).local, 30);
  assert_int_equal(runs_of(kv, 0), 1);
  infsim_kv_check(kv);
  infsim_kv_check_request(kv, 0);
  infsim_kv_free(kv);
}

/* A claim (free slots set aside after a table's last run) makes decode
 * blocks continue the run, counts as free, and gives way when another
 * request needs the slots. */
static void test_claims_give_way(void **state) {
  (void)state;
  infsim_kv *kv = NULL;
  assert_int_equal(infsim_kv_new(1, 1000, 0, 0, 3, &kv, NULL), INFSIM_OK);
  for (int r = 0; r < 3; r++) infsim_kv_set_owner(kv, r, 0);
  assert_int_equal(infsim_kv_alloc(kv, 0, 0, 100, NULL), INFSIM_OK);
  int32_t req0 = 0;
  for (int k = 0; k < 30; k++) assert_int_equal(infsim_kv_alloc_each(kv, &req0, 1, 0, NULL), INFSIM_OK);
  assert_int_equal(runs_of(kv, 0), 1); /* 130 blocks, one run */
  assert_int_equal(infsim_kv_counts_of(kv, 0).free, 870);
  /* Two more prompts take every free block: the claim must give way. */
  assert_int_equal(infsim_kv_alloc(kv, 1, 0, 700, NULL), INFSIM_OK);
  assert_int_equal(infsim_kv_alloc(kv, 2, 0, 170, NULL), INFSIM_OK);
  assert_int_equal(infsim_kv_counts_of(kv, 0).free, 0);
  infsim_kv_check(kv);
  for (int r = 0; r < 3; r++) infsim_kv_check_request(kv, r);
  /* Full: one more block is an error, nothing changes. */
  assert_int_equal(infsim_kv_alloc_each(kv, &req0, 1, 0, NULL), INFSIM_ERUN);
  infsim_kv_release(kv, 1);
  for (int k = 0; k < 20; k++) assert_int_equal(infsim_kv_alloc_each(kv, &req0, 1, 0, NULL), INFSIM_OK);
  assert_int_equal(infsim_kv_blocks(kv, 0), 150);
  int64_t in_use = 0, peak = 0, capacity = 0;
  infsim_kv_pool_usage(kv, 0, &in_use, &peak, &capacity);
  assert_int_equal(in_use, 320);
  assert_int_equal(peak, 1000);
  infsim_kv_check(kv);
  for (int r = 0; r < 3; r++) infsim_kv_check_request(kv, r);
  infsim_kv_free(kv);
}

/* On a pool short of free slots, two requests decoding in step, their
 * tables read after every allocation (as an executor that hands block
 * tables to kernels reads them every step: each read gives the deferred
 * blocks their slots): with 32 or more unclaimed free slots each gets a
 * claim of 4 (a sixteenth of them is under 8), so 4 boundaries each stay
 * in one run; with fewer than 32 none, and each block is a run of its
 * own: the requests' blocks interleave at the mark (0..174 and 175..179
 * are the prompts, then 180 for request 0, 181 for request 1, ...). */
static void test_claims_on_a_tight_pool(void **state) {
  (void)state;
  for (int tight = 0; tight < 2; tight++) {
    infsim_kv *kv = NULL;
    assert_int_equal(infsim_kv_new(1, 200, 0, 0, 2, &kv, NULL), INFSIM_OK);
    for (int r = 0; r < 2; r++) infsim_kv_set_owner(kv, r, 0);
    /* 200 - 150 = 50 free (claim 4, 46 left), then 200 - 164 = 36 (claim 4);
     * or 200 - 175 = 25 free, then 20: no claim. */
    assert_int_equal(infsim_kv_alloc(kv, 0, 0, tight ? 175 : 150, NULL), INFSIM_OK);
    assert_int_equal(runs_of(kv, 0), 1);
    assert_int_equal(infsim_kv_alloc(kv, 1, 0, tight ? 5 : 10, NULL), INFSIM_OK);
    assert_int_equal(runs_of(kv, 1), 1);
    int32_t both[2] = {0, 1};
    for (int k = 0; k < 4; k++) {
      assert_int_equal(infsim_kv_alloc_each(kv, both, 2, 0, NULL), INFSIM_OK);
      (void)runs_of(kv, 0);
      (void)runs_of(kv, 1);
    }
    assert_int_equal(runs_of(kv, 0), tight ? 5 : 1);
    assert_int_equal(runs_of(kv, 1), tight ? 5 : 1);
    if (tight) {
      int64_t ids[200];
      assert_int_equal(table_ids(kv, 0, ids, 200), 179);
      for (int k = 0; k < 4; k++) assert_int_equal(ids[175 + k], 180 + 2 * k);
    }
    assert_int_equal(infsim_kv_counts_of(kv, 0).free, tight ? 12 : 32);
    infsim_kv_check(kv);
    for (int r = 0; r < 2; r++) infsim_kv_check_request(kv, r);
    infsim_kv_free(kv);
  }
}

/* Freed ids are reused: a pool's arrays grow with blocks in use at once
 * (and the claim after them: at most 256 blocks), not with rounds. */
static void test_ids_reused(void **state) {
  (void)state;
  infsim_kv *kv = NULL;
  assert_int_equal(infsim_kv_new(1, 1000000, 1, 0, 2, &kv, NULL), INFSIM_OK);
  infsim_kv_set_owner(kv, 0, 0);
  for (int round = 0; round < 100; round++) {
    assert_int_equal(infsim_kv_alloc(kv, 0, 0, 10, NULL), INFSIM_OK);
    int64_t ids[16];
    int64_t n = table_ids(kv, 0, ids, 16);
    for (int64_t i = 0; i < n; i++) assert_true(ids[i] - infsim_kv_first_block(kv, 0) < 10 + 256);
    infsim_kv_release(kv, 0);
  }
  int64_t in_use = 0, peak = 0, capacity = 0;
  infsim_kv_pool_usage(kv, 0, &in_use, &peak, &capacity);
  assert_int_equal(peak, 10);
  infsim_kv_free(kv);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lend_borrow_zero_sum),
      cmocka_unit_test(test_random_small_pools),
      cmocka_unit_test(test_random_two_levels),
      cmocka_unit_test(test_random_three_levels),
      cmocka_unit_test(test_random_deferred_small_pools),
      cmocka_unit_test(test_random_deferred_two_levels),
      cmocka_unit_test(test_bulk_boundaries_equal_single_ones),
      cmocka_unit_test(test_growing_tables_equal_single_ones),
      cmocka_unit_test(test_prompts_are_runs_and_coalesce),
      cmocka_unit_test(test_decode_blocks_continue_runs),
      cmocka_unit_test(test_move_splits_and_rejoins_a_run),
      cmocka_unit_test(test_claims_give_way),
      cmocka_unit_test(test_ids_reused),
      cmocka_unit_test(test_claims_on_a_tight_pool),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
