/*
** grow.h: room in a growable array (the doubling realloc that the
** scheduler's lists, the contract's arrays and the KV manager's tables all
** need, in one place).
*/
#ifndef INFSIM_GROW_H
#define INFSIM_GROW_H

#include <stdbool.h>
#include <stddef.h>

/* Makes *items (capacity *cap items of item_bytes each) hold at least
 * `need` items: the capacity doubles (from `first` when 0) until it does,
 * so n additions cost O(n) copies in all. False, with *items and *cap
 * unchanged, when memory is short or the size would not fit a size_t:
 * the caller reports INFSIM_ENOMEM. */
bool infsim_grow(void **items, size_t *cap, size_t need, size_t item_bytes, size_t first);

/* infsim_grow for `count` parallel arrays that share one capacity *cap
 * (*items[i] of item_bytes[i] each): every array holds at least `need`
 * items, all at the same new capacity. False, with *cap unchanged (arrays
 * grown before the failure keep their larger size), as infsim_grow. */
bool infsim_grow_each(size_t *cap, size_t need, size_t first, size_t count, void **const items[],
                      const size_t item_bytes[]);

#endif
