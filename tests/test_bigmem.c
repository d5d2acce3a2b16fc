/*
** test_bigmem.c: large zeroed arrays (base/bigmem.c).
**
** Every block, below and above INFSIM_BIG_MIN_BYTES, must come back
** zeroed, writable over its whole size without disturbing any other
** block (each is filled with its own byte and checked after all are
** filled), and aligned for any type; a size whose product overflows must
** fail rather than wrap. Where the kernel offers transparent huge pages
** to advised memory ("always" or "madvise" in
** /sys/kernel/mm/transparent_hugepage/enabled), a large block must lie
** in a mapping the kernel counts as eligible for them (smaps'
** THPeligible: 1): that is the point of the module, and what a missing
** or misaligned madvise loses.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "infsim/bigmem.h"

static void test_zeroed_disjoint(void **state) {
  (void)state;
  static const size_t sizes[] = {0, 1, 63, 4096, INFSIM_BIG_MIN_BYTES - 1, INFSIM_BIG_MIN_BYTES,
                                 2 * 1024 * 1024 - 64, 2 * 1024 * 1024, 3200000, 9 * 1024 * 1024 + 7,
                                 INFSIM_BIG_MAX_BYTES, INFSIM_BIG_MAX_BYTES + 1, 40 * 1024 * 1024};
  enum { N = sizeof sizes / sizeof sizes[0] };
  unsigned char *blocks[N];
  for (size_t i = 0; i < N; i++) {
    blocks[i] = infsim_big_calloc(sizes[i], 1);
    assert_non_null(blocks[i]);
    assert_int_equal((uintptr_t)blocks[i] % 16, 0);
    for (size_t b = 0; b < sizes[i]; b++)
      if (blocks[i][b] != 0) fail_msg("block of %zu bytes: byte %zu not zero", sizes[i], b);
    memset(blocks[i], (int)(i + 1), sizes[i]);
  }
  for (size_t i = 0; i < N; i++) {
    for (size_t b = 0; b < sizes[i]; b++)
      if (blocks[i][b] != (unsigned char)(i + 1)) fail_msg("block of %zu bytes: byte %zu overwritten", sizes[i], b);
    infsim_big_free(blocks[i]);
  }
  infsim_big_free(NULL);
  /* count x size, not count alone, decides; a reused address is zeroed again. */
  for (int round = 0; round < 3; round++) {
    uint64_t *v = infsim_big_calloc(400000, sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < 400000; i++)
      if (v[i] != 0) fail_msg("round %d: element %zu not zero", round, i);
    for (size_t i = 0; i < 400000; i++) v[i] = ~(uint64_t)0;
    infsim_big_free(v);
  }
}

static void test_overflow(void **state) {
  (void)state;
  assert_null(infsim_big_calloc(SIZE_MAX / 8 + 1, 8));
  assert_null(infsim_big_calloc(SIZE_MAX, 2));
  assert_null(infsim_big_calloc(SIZE_MAX - 1024, 1));
}

/* The THPeligible line of the smaps entry holding addr; -1 when absent. */
static int thp_eligible(const void *addr) {
  FILE *f = fopen("/proc/self/smaps", "r");
  if (f == NULL) return -1;
  char line[512];
  int in = 0, out = -1;
  uintptr_t a = (uintptr_t)addr;
  while (fgets(line, sizeof line, f) != NULL) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      in = a >= lo && a < hi;
      continue;
    }
    int v;
    if (in && sscanf(line, "THPeligible: %d", &v) == 1) {
      out = v;
      break;
    }
  }
  fclose(f);
  return out;
}

static void test_huge_pages_advised(void **state) {
  (void)state;
  FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
  char mode[128] = "";
  if (f != NULL) {
    if (fgets(mode, sizeof mode, f) == NULL) mode[0] = '\0';
    fclose(f);
  }
  if (strstr(mode, "[always]") == NULL && strstr(mode, "[madvise]") == NULL) skip();
  size_t bytes = 5 * 1024 * 1024;
  unsigned char *p = infsim_big_calloc(bytes, 1);
  assert_non_null(p);
  memset(p, 1, bytes);
  int at_start = thp_eligible(p), at_end = thp_eligible(p + bytes - 1);
  infsim_big_free(p);
  if (at_start < 0) skip(); /* a kernel without the THPeligible line */
  assert_int_equal(at_start, 1);
  assert_int_equal(at_end, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_zeroed_disjoint),
      cmocka_unit_test(test_overflow),
      cmocka_unit_test(test_huge_pages_advised),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
