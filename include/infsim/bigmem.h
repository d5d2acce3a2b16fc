/*
** bigmem.h: large zeroed arrays, on transparent huge pages where the
** kernel gives them.
**
** Why: a run's per-request arrays (scheduler state, records, KV tables:
** some 170 bytes a request) are each touched once, and the kernel's first
** touch of a 4 KiB page costs about 1.8 us on the dev VM (the fault,
** allocation, accounting and clearing): 2,000 of them were 3.7 ms of the p50k
** case's 60 (bench/README.md). A 2 MiB page is one fault and costs about
** 0.35 us per 4 KiB it holds, most of it clearing the page. Arrays of
** INFSIM_BIG_MIN_BYTES to INFSIM_BIG_MAX_BYTES are mapped 2 MiB-aligned
** and marked MADV_HUGEPAGE (Linux, THP "always" or "madvise"); other
** sizes, or where the mapping fails, come from calloc.
** Where the kernel has no huge page to give, it gives small ones: the
** same memory as calloc's. The rounding up to 2 MiB costs at most that
** much memory per array.
**
** Memory from infsim_big_calloc goes back with infsim_big_free only.
*/
#ifndef INFSIM_BIGMEM_H
#define INFSIM_BIGMEM_H

#include <stddef.h>

/* Below this a huge page costs more than the small pages it replaces:
 * 170 us to clear 2 MiB against 1.9 us per 4 KiB page touched (dev VM,
 * fresh processes), even at about 360 KiB. */
enum { INFSIM_BIG_MIN_BYTES = 512 * 1024 };
/* Above this, calloc again. Measured on the dev VM (whole runs, the same
 * binary with huge pages allowed and refused, PR_SET_THP_DISABLE): 12%
 * less CPU at 50,000 requests, 7% at 100,000 and 144,000, but 10% more
 * at 400,000 and 1,000,000, where system time doubled (arrays of 20-64
 * MiB: 2 MiB pages the kernel must find and clear afresh cost more than
 * small ones it recycles). */
#define INFSIM_BIG_MAX_BYTES ((size_t)16 * 1024 * 1024)

/* count x size zeroed bytes, aligned for any type; NULL when out of
 * memory or count x size overflows (count 0: a valid, empty block). */
void *infsim_big_calloc(size_t count, size_t size);
/* NULL is a no-op. */
void infsim_big_free(void *p);

#endif
