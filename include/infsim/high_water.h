/*
** high_water.h: high-water marks of a run's pools and queues: the most
** each ever held at once, what it holds at the end, and what it could
** hold (summary.json's `high_water` object; docs/high-water.md lists every
** mark). A soak checks that none grows with the run's length.
**
** Marks of per-instance pools and queues are the largest over instances
** (peak, final and capacity each taken separately, so peak <= capacity
** and final <= peak still hold for the set when they hold for each).
*/
#ifndef INFSIM_HIGH_WATER_H
#define INFSIM_HIGH_WATER_H

#include <stdint.h>

typedef struct {
  const char *name; /* a static string */
  int64_t peak;     /* most at once, over the whole run */
  int64_t final;    /* at the end (or now, during a run) */
  int64_t capacity; /* the bound: blocks of a pool, slots allocated for a container that grows */
} infsim_high_water;

enum { INFSIM_HIGH_WATER_MAX = 32 };

typedef struct {
  infsim_high_water mark[INFSIM_HIGH_WATER_MAX];
  int count;
} infsim_high_water_set;

/* Adds a mark, or raises an existing one of the same name to the larger
 * of each field (per-instance marks: call once per instance). */
void infsim_high_water_note(infsim_high_water_set *set, const char *name, int64_t peak, int64_t final,
                            int64_t capacity);

#endif
