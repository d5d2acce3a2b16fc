/*
** test_grow.c: room in a growable array (base/grow.c).
**
** Growth keeps every item written so far; capacity doubles from `first`
** (so n one-by-one additions reallocate about log2(n) times); a need
** already met changes nothing; a size that would overflow size_t is
** refused with the array and capacity unchanged (the callers then report
** INFSIM_ENOMEM instead of writing past the end). infsim_grow_each
** grows parallel arrays of different item sizes to one shared capacity,
** and a refusal leaves that capacity as it was.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "infsim/grow.h"

static void test_keeps_items_and_doubles(void **state) {
  (void)state;
  int64_t *a = NULL;
  size_t cap = 0, reallocs = 0;
  for (size_t n = 0; n < 10000; n++) {
    size_t before = cap;
    assert_true(infsim_grow((void **)&a, &cap, n + 1, sizeof *a, 16));
    if (cap != before) {
      reallocs++;
      assert_int_equal(cap, before ? 2 * before : 16);
    }
    assert_true(cap >= n + 1);
    a[n] = (int64_t)(n * 7 + 3);
  }
  for (size_t n = 0; n < 10000; n++) assert_int_equal(a[n], (int64_t)(n * 7 + 3));
  /* 16, 32, ..., 16384: 11 allocations for 10,000 items. */
  assert_int_equal(reallocs, 11);
  free(a);
}

static void test_need_met_is_a_no_op(void **state) {
  (void)state;
  char *a = NULL;
  size_t cap = 0;
  assert_true(infsim_grow((void **)&a, &cap, 100, 1, 0)); /* first 0: from 1, doubled to 128 */
  assert_int_equal(cap, 128);
  char *same = a;
  assert_true(infsim_grow((void **)&a, &cap, 128, 1, 0));
  assert_ptr_equal(a, same);
  assert_int_equal(cap, 128);
  free(a);
}

static void test_overflow_refused(void **state) {
  (void)state;
  int64_t *a = NULL;
  size_t cap = 0;
  assert_true(infsim_grow((void **)&a, &cap, 4, sizeof *a, 4));
  int64_t *kept = a;
  a[3] = 42;
  /* Bytes past SIZE_MAX, and a count that cannot double past SIZE_MAX / 2. */
  assert_false(infsim_grow((void **)&a, &cap, SIZE_MAX / 4, sizeof *a, 4));
  assert_false(infsim_grow((void **)&a, &cap, SIZE_MAX, 1, 4));
  assert_ptr_equal(a, kept);
  assert_int_equal(cap, 4);
  assert_int_equal(a[3], 42);
  free(a);
}

static void test_each_shares_one_capacity(void **state) {
  (void)state;
  int32_t *small = NULL;
  double *big = NULL;
  void **const items[] = {(void **)&small, (void **)&big};
  const size_t bytes[] = {sizeof *small, sizeof *big};
  size_t cap = 0, reallocs = 0;
  for (size_t n = 0; n < 1000; n++) {
    size_t before = cap;
    assert_true(infsim_grow_each(&cap, n + 1, 16, 2, items, bytes));
    if (cap != before) {
      reallocs++;
      assert_int_equal(cap, before ? 2 * before : 16);
    }
    small[n] = (int32_t)n;
    big[n] = (double)n / 4;
  }
  for (size_t n = 0; n < 1000; n++) {
    assert_int_equal(small[n], (int32_t)n);
    assert_true(big[n] == (double)n / 4);
  }
  assert_int_equal(reallocs, 7); /* 16, 32, ..., 1024 */
  /* The second array cannot grow that far: the capacity stays, and the
   * first array's items are kept whether or not it grew. */
  const size_t huge[] = {sizeof *small, SIZE_MAX / 2};
  assert_false(infsim_grow_each(&cap, 4096, 16, 2, items, huge));
  assert_int_equal(cap, 1024);
  assert_int_equal(small[999], 999);
  assert_true(big[999] == 999.0 / 4);
  free(small);
  free(big);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_keeps_items_and_doubles),
      cmocka_unit_test(test_need_met_is_a_no_op),
      cmocka_unit_test(test_overflow_refused),
      cmocka_unit_test(test_each_shares_one_capacity),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
