/*
** planner.c: the fit and level borrow planners' rules (planner.h).
*/
#include "infsim/planner.h"

#include <assert.h>

int32_t infsim_planner_fit_rank(int64_t spare, int64_t piece, bool holds_request, bool same_node) {
  if (spare >= piece) return holds_request ? 0 : same_node ? 1 : 2;
  return same_node ? 3 : 4;
}

/* Creditors' spare above `level`. */
static int64_t above(const infsim_gm *gm, const int32_t *creditors, size_t n, int64_t level) {
  int64_t sum = 0;
  for (size_t k = 0; k < n; k++) {
    int64_t s = infsim_gm_spare_blocks(gm, creditors[k]);
    if (s > level) sum += s - level;
  }
  return sum;
}

int64_t infsim_planner_water_level(const infsim_gm *gm, const int32_t *creditors, size_t n, int64_t need) {
  assert(need >= 0);
  int64_t hi = 0;
  for (size_t k = 0; k < n; k++) {
    int64_t s = infsim_gm_spare_blocks(gm, creditors[k]);
    if (s > hi) hi = s;
  }
  if (above(gm, creditors, n, 0) <= need) return 0;
  /* above() falls as the level rises: bisection for the largest level
   * whose spare above still covers the need (lo covers, hi does not). */
  int64_t lo = 0;
  while (hi - lo > 1) {
    int64_t mid = lo + (hi - lo) / 2;
    if (above(gm, creditors, n, mid) >= need) lo = mid;
    else hi = mid;
  }
  return lo;
}

int64_t infsim_planner_level_piece(int64_t spare, int64_t level, int64_t left) {
  int64_t piece = spare > level ? spare - level : 0;
  int64_t least = left < INFSIM_PLANNER_LEVEL_MIN_PIECE ? left : INFSIM_PLANNER_LEVEL_MIN_PIECE;
  if (piece < least) piece = least;
  if (piece > left) piece = left;
  if (piece > spare) piece = spare;
  return piece;
}
