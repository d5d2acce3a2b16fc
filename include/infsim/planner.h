/*
** planner.h: borrow planners beyond the paper's greedy one, as pure rules
** that infsim_gm_plan (gmanager.h) applies per candidate and creditor.
**
**  - fit: a piece goes whole to one creditor that can take all of it: one
**    already holding the request (no new holder: no extra partial per
**    step), else one on the debtor's node (partials over NVLink), else
**    any; only when none can is it split, same node first. Most spare
**    first within each group.
**  - level: creditors are drained by water-filling instead of one after
**    another. The paper's greedy gives the most spare creditor all it can
**    take, down to its reserve; a long prompt gathering its blocks thus
**    empties creditor after creditor, and their own short requests find
**    no room until the loan comes back. level computes the water level L
**    at which the creditors' spare above L covers the need, and asks of
**    the most spare creditor only what it has above L (at least a minimum
**    piece, so that a small need stays on one creditor as with greedy).
**    The contract takes one move per borrow and the debtor asks again for
**    the rest; each ask sees the same level, so successive borrows level
**    every creditor to L: each keeps spare - share, the most it can.
*/
#ifndef INFSIM_PLANNER_H
#define INFSIM_PLANNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "infsim/gmanager.h"

/* level's smallest piece, in blocks (4,096 tokens at 16 per block): a need
 * below it goes to one creditor, the most spare, as greedy's does. */
enum { INFSIM_PLANNER_LEVEL_MIN_PIECE = 256 };

/* fit's creditor group (lower first) for a creditor with `spare` blocks,
 * of a piece of `piece` blocks. */
int32_t infsim_planner_fit_rank(int64_t spare, int64_t piece, bool holds_request, bool same_node);

/* level's water level over creditors[0..n): the largest L >= 0 with
 * sum_i max(0, spare_i - L) >= need (0 when their spare sums to less). */
int64_t infsim_planner_water_level(const infsim_gm *gm, const int32_t *creditors, size_t n, int64_t need);

/* level's piece at a creditor with `spare` blocks, at water level `level`,
 * of `left` blocks still needed. */
int64_t infsim_planner_level_piece(int64_t spare, int64_t level, int64_t left);

#endif
