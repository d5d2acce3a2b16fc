/*
** grow.c: room in a growable array (grow.h).
*/
#include "infsim/grow.h"

#include <stdint.h>
#include <stdlib.h>

bool infsim_grow(void **items, size_t *cap, size_t need, size_t item_bytes, size_t first) {
  if (need <= *cap) return true;
  size_t c = *cap ? *cap : (first ? first : 1);
  while (c < need) {
    if (c > SIZE_MAX / 2) return false;
    c *= 2;
  }
  if (item_bytes != 0 && c > SIZE_MAX / item_bytes) return false;
  void *bigger = realloc(*items, c * item_bytes);
  if (bigger == NULL) return false;
  *items = bigger;
  *cap = c;
  return true;
}

bool infsim_grow_each(size_t *cap, size_t need, size_t first, size_t count, void **const items[],
                      const size_t item_bytes[]) {
  if (need <= *cap) return true;
  size_t c = *cap;
  for (size_t i = 0; i < count; i++) {
    c = *cap; /* each array holds *cap items now */
    if (!infsim_grow(items[i], &c, need, item_bytes[i], first)) return false;
  }
  *cap = c;
  return true;
}
