/*
** high_water.c: a run's high-water marks (high_water.h).
*/
#include "infsim/high_water.h"

#include <assert.h>
#include <string.h>

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

void infsim_high_water_note(infsim_high_water_set *set, const char *name, int64_t peak, int64_t final,
                            int64_t capacity) {
  for (int i = 0; i < set->count; i++) {
    infsim_high_water *m = &set->mark[i];
    if (strcmp(m->name, name) != 0) continue;
    m->peak = max64(m->peak, peak);
    m->final = max64(m->final, final);
    m->capacity = max64(m->capacity, capacity);
    return;
  }
  assert(set->count < INFSIM_HIGH_WATER_MAX);
  if (set->count >= INFSIM_HIGH_WATER_MAX) return;
  set->mark[set->count++] = (infsim_high_water){name, peak, final, capacity};
}
