/*
** bigmem.c: large zeroed arrays on transparent huge pages (bigmem.h).
**
** Each block starts with a header of HEADER_BYTES holding the size of its
** mapping (0: it came from calloc), so that free needs no size. A mapped
** block is reserved 2 MiB larger than it needs, then trimmed to a 2 MiB
** boundary at both ends: huge pages back only aligned 2 MiB ranges.
*/
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, MADV_HUGEPAGE */
#include "infsim/bigmem.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

enum { HEADER_BYTES = 64, HUGE_BYTES = 2 * 1024 * 1024 };

static void *from_heap(size_t bytes) {
  char *raw = calloc(1, HEADER_BYTES + bytes);
  if (raw == NULL) return NULL;
  *(size_t *)(void *)raw = 0;
  return raw + HEADER_BYTES;
}

void *infsim_big_calloc(size_t count, size_t size) {
  if (size != 0 && count > (SIZE_MAX - 2 * (size_t)HUGE_BYTES) / size) return NULL;
  size_t bytes = count * size;
  if (bytes < INFSIM_BIG_MIN_BYTES || bytes > INFSIM_BIG_MAX_BYTES) return from_heap(bytes);
#if defined(MAP_ANONYMOUS) && defined(MADV_HUGEPAGE)
  size_t total = (HEADER_BYTES + bytes + HUGE_BYTES - 1) / HUGE_BYTES * HUGE_BYTES;
  char *raw = mmap(NULL, total + HUGE_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return from_heap(bytes);
  char *base = (char *)(((uintptr_t)raw + HUGE_BYTES - 1) / HUGE_BYTES * HUGE_BYTES);
  size_t head = (size_t)(base - raw);
  if (head > 0) munmap(raw, head);
  if (HUGE_BYTES - head > 0) munmap(base + total, HUGE_BYTES - head);
  /* Advice only: without it (THP off) the pages are small, as calloc's. */
  (void)madvise(base, total, MADV_HUGEPAGE);
  *(size_t *)(void *)base = total;
  return base + HEADER_BYTES;
#else
  return from_heap(bytes);
#endif
}

void infsim_big_free(void *p) {
  if (p == NULL) return;
  char *base = (char *)p - HEADER_BYTES;
  size_t mapped = *(size_t *)(void *)base;
  if (mapped == 0) {
    free(base);
    return;
  }
#if defined(MAP_ANONYMOUS) && defined(MADV_HUGEPAGE)
  munmap(base, mapped);
#endif
}
