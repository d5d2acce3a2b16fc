/*
** test_kv.c: the KV manager (kv.h) against its invariants and a shadow
** model: random allocations, releases, moves between instances and swaps,
** checked after every operation against counts kept independently here
** (per instance: free, local, lent, borrowed, swapped), with the block
** tables' holders agreeing with where each block was put.
*/
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "infsim/kv.h"

enum { INSTANCES = 4, GPU_BLOCKS = 50, HOST_BLOCKS = 30, REQUESTS = 40 };

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
  int64_t n = 0;
  const int64_t *ids = infsim_kv_table(kv, 0, &n);
  assert_int_equal(n, 7);
  for (int i = 0; i < 7; i++) assert_int_equal(infsim_kv_holder_of(kv, ids[i]), i < 4 ? 0 : 1);
  assert_int_equal(infsim_kv_borrowed_peak(kv), 3);
  /* Recall: the 3 blocks come home. */
  assert_int_equal(infsim_kv_move(kv, 0, 4, 3, 0, NULL), INFSIM_OK);
  a = infsim_kv_counts_of(kv, 0);
  b = infsim_kv_counts_of(kv, 1);
  assert_int_equal(a.local, 7);
  assert_int_equal(a.borrowed + b.lent, 0);
  assert_int_equal(infsim_kv_borrowed_peak(kv), 3);
  /* Too few free blocks: an error, nothing changes. */
  infsim_error err = {0};
  assert_int_equal(infsim_kv_alloc(kv, 1, 1, 11, &err), INFSIM_ERUN);
  assert_int_equal(infsim_kv_counts_of(kv, 1).free, 10);
  infsim_kv_check(kv);
  infsim_kv_free(kv);
}

/* The shadow: where each request's blocks are, as counts per pool. */
typedef struct {
  int64_t at[INSTANCES * 2];
} shadow_req;

static void expect_counts(const infsim_kv *kv, const shadow_req *sh, const int32_t *owner) {
  for (int32_t i = 0; i < INSTANCES; i++) {
    int64_t local = 0, lent = 0, borrowed = 0, swapped = 0;
    for (int r = 0; r < REQUESTS; r++) {
      if (owner[r] == i) {
        local += sh[r].at[i];
        swapped += sh[r].at[INSTANCES + i];
        for (int32_t j = 0; j < INSTANCES; j++)
          if (j != i) borrowed += sh[r].at[j];
      } else if (owner[r] >= 0) {
        lent += sh[r].at[i];
      }
    }
    int64_t guests = 0, split = 0;
    for (int r = 0; r < REQUESTS; r++) {
      if (owner[r] != i && sh[r].at[i] > 0) guests++;
      bool elsewhere = false;
      for (int32_t j = 0; j < 2 * INSTANCES; j++) elsewhere |= j != owner[r] && sh[r].at[j] > 0; /* host too */
      if (owner[r] == i && elsewhere) split++;
    }
    assert_int_equal(infsim_kv_guests(kv, i), guests);
    int64_t n_split = 0;
    const int64_t *sp = infsim_kv_split_requests(kv, i, &n_split);
    assert_int_equal(n_split, split);
    for (int64_t k = 0; k < n_split; k++) assert_int_equal(owner[sp[k]], i);
    infsim_kv_counts c = infsim_kv_counts_of(kv, i);
    assert_int_equal(c.local, local);
    assert_int_equal(c.lent, lent);
    assert_int_equal(c.borrowed, borrowed);
    assert_int_equal(c.swapped, swapped);
    assert_int_equal(c.free, GPU_BLOCKS - local - lent);
  }
  for (int r = 0; r < REQUESTS; r++) {
    int64_t total = 0;
    for (int q = 0; q < 2 * INSTANCES; q++) {
      if (q < INSTANCES) assert_int_equal(infsim_kv_blocks_at(kv, r, q), sh[r].at[q]);
      total += sh[r].at[q];
    }
    assert_int_equal(infsim_kv_blocks(kv, r), total);
    assert_int_equal(infsim_kv_foreign_blocks(kv, r), total - sh[r].at[owner[r]]);
    int32_t pools[2 * INSTANCES];
    int64_t blocks[2 * INSTANCES];
    int32_t nh = infsim_kv_holdings(kv, r, pools, blocks, 2 * INSTANCES);
    int64_t want_nh = 0;
    for (int q = 0; q < 2 * INSTANCES; q++) want_nh += q != owner[r] && sh[r].at[q] > 0;
    assert_int_equal(nh, want_nh);
    for (int32_t k = 0; k < nh; k++) assert_int_equal(blocks[k], sh[r].at[pools[k]]);
    infsim_kv_check_request(kv, r);
  }
  infsim_kv_check(kv);
}

static void test_random_operations_match_shadow(void **state) {
  (void)state;
  infsim_kv *kv = NULL;
  assert_int_equal(infsim_kv_new(INSTANCES, GPU_BLOCKS, INSTANCES, HOST_BLOCKS, REQUESTS, &kv, NULL), INFSIM_OK);
  shadow_req sh[REQUESTS] = {0};
  int32_t owner[REQUESTS];
  for (int r = 0; r < REQUESTS; r++) {
    owner[r] = r % INSTANCES;
    infsim_kv_set_owner(kv, r, owner[r]);
  }
  srand(12345);
  for (int step = 0; step < 20000; step++) {
    int r = rand() % REQUESTS, op = rand() % 5;
    int32_t h = rand() % INSTANCES;
    int64_t blocks = infsim_kv_blocks(kv, r);
    int64_t on_gpu = 0;
    for (int q = 0; q < INSTANCES; q++) on_gpu += sh[r].at[q];
    if (op == 0 && rand() % 2 == 0) { /* one block for each of a few requests (decode boundaries) */
      int32_t reqs[4];
      int32_t n = 1 + rand() % 4;
      for (int32_t k = 0; k < n; k++) reqs[k] = (r + k) % REQUESTS;
      int64_t free_before = infsim_kv_counts_of(kv, h).free;
      infsim_status st = infsim_kv_alloc_each(kv, reqs, n, h, NULL);
      if (free_before >= n) {
        assert_int_equal(st, INFSIM_OK);
        for (int32_t k = 0; k < n; k++) sh[reqs[k]].at[h]++;
      } else {
        assert_int_equal(st, INFSIM_ERUN);
        assert_int_equal(infsim_kv_counts_of(kv, h).free, free_before);
      }
    } else if (op <= 1) { /* allocate at a random holder */
      int64_t n = 1 + rand() % 4;
      infsim_error err = {0};
      infsim_status st = infsim_kv_alloc(kv, r, h, n, &err);
      if (infsim_kv_counts_of(kv, h).free + (st == INFSIM_OK ? n : 0) >= n) {
        assert_int_equal(st, INFSIM_OK);
        sh[r].at[h] += n;
      } else {
        assert_int_equal(st, INFSIM_ERUN);
      }
    } else if (op == 2 && blocks > 0 && rand() % 4 == 0) { /* finish */
      infsim_kv_release(kv, r);
      for (int q = 0; q < 2 * INSTANCES; q++) sh[r].at[q] = 0;
    } else if (op == 3 && blocks > 0) { /* move a suffix to h (lend, recall, DGFM) */
      int64_t first = rand() % blocks, n = blocks - first;
      int64_t table_n = 0;
      const int64_t *ids = infsim_kv_table(kv, r, &table_n);
      int64_t moved[2 * INSTANCES] = {0};
      for (int64_t i = first; i < first + n; i++) moved[infsim_kv_holder_of(kv, ids[i])]++;
      if (moved[INSTANCES + owner[r]] > 0) continue; /* host blocks move by swap only */
      infsim_status st = infsim_kv_move(kv, r, first, n, h, NULL);
      if (st == INFSIM_OK)
        for (int q = 0; q < INSTANCES; q++) {
          sh[r].at[q] -= moved[q];
          sh[r].at[h] += moved[q];
        }
    } else if (op == 4 && blocks > 0) { /* swap out or back in */
      bool in_host = sh[r].at[INSTANCES + owner[r]] > 0;
      infsim_status st = in_host ? infsim_kv_swap_in(kv, r, owner[r], NULL)
                                 : infsim_kv_swap_out(kv, r, owner[r], NULL);
      if (st == INFSIM_OK) {
        for (int q = 0; q < 2 * INSTANCES; q++) sh[r].at[q] = 0;
        sh[r].at[in_host ? owner[r] : INSTANCES + owner[r]] = blocks;
      }
      (void)on_gpu;
    }
    expect_counts(kv, sh, owner);
  }
  infsim_kv_free(kv);
}

/* Freed ids are reused: a pool's arrays grow with blocks in use at once. */
static void test_ids_reused(void **state) {
  (void)state;
  infsim_kv *kv = NULL;
  assert_int_equal(infsim_kv_new(1, 1000000, 1, 0, 2, &kv, NULL), INFSIM_OK);
  infsim_kv_set_owner(kv, 0, 0);
  for (int round = 0; round < 100; round++) {
    assert_int_equal(infsim_kv_alloc(kv, 0, 0, 10, NULL), INFSIM_OK);
    int64_t n = 0;
    const int64_t *ids = infsim_kv_table(kv, 0, &n);
    for (int64_t i = 0; i < n; i++) assert_true(ids[i] - infsim_kv_first_block(kv, 0) < 10);
    infsim_kv_release(kv, 0);
  }
  infsim_kv_free(kv);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lend_borrow_zero_sum),
      cmocka_unit_test(test_random_operations_match_shadow),
      cmocka_unit_test(test_ids_reused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
