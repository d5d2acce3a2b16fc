/*
** planner.c: the fit, level and spread borrow planners' rules (planner.h).
*/
#include "infsim/planner.h"

#include <assert.h>
#include <stdlib.h>

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

double infsim_planner_holder_tokens(const infsim_model_shape *m, double wire_bytes_per_value, double attn_flops_per_s,
                                    double link_bytes_per_s) {
  assert(attn_flops_per_s > 0 && link_bytes_per_s > 0);
  double hd = (double)m->heads * (double)m->head_dim;
  /* Per query token and layer: the query out and the partial back (d + 1
   * values per head, docs/distkv.md "Prefill"). The chunk's new KV goes
   * to one holder only, the one filling, whose micro-attention is then
   * the smallest: the slowest holder is a full one, which carries these. */
  double bytes = hd * wire_bytes_per_value + (double)m->heads * (double)(m->head_dim + 1) * wire_bytes_per_value;
  /* Per query token, layer and key token: QK^T and PV, 2 x d FLOPs each per
   * head (the roofline's prefill attention, cost/roofline.c). Tensor
   * parallelism divides both the heads a shard sends and those it
   * computes: it cancels. */
  double flops = 4.0 * hd;
  return (bytes / link_bytes_per_s) / (flops / attn_flops_per_s);
}

/* Per-link counts of a choice of holders: rr remote and nn near holders,
 * and with relay the remote nodes holding (nodes) and each remote
 * holder's node's holders (on_node[k]). */
typedef struct {
  int64_t rr, nn, nodes;
  bool relay;
  int64_t *on_node; /* n, or NULL without relay */
} links;

/* Step cost of a holder of the request, in blocks: what it holds, plus its
 * link's term for every holder behind that link (with relay: every remote
 * node behind the owner's NIC, every holder behind its relay's NVLink). */
static int64_t base_cost(const infsim_planner_creditor *c, size_t k, int64_t remote_blocks, int64_t near_blocks,
                         const links *l) {
  if (!c[k].remote) return c[k].held + near_blocks * l->nn;
  if (l->relay) return c[k].held + remote_blocks * l->nodes + near_blocks * l->on_node[k];
  return c[k].held + remote_blocks * l->rr;
}

/* Blocks creditor c takes at step cost `cost`: what lifts it to the cost,
 * within its spare. */
static int64_t take_at(const infsim_planner_creditor *c, int64_t base, int64_t cost) {
  int64_t t = cost - base;
  if (t < 0) t = 0;
  return t > c->spare ? c->spare : t;
}

/* Marks in use[] the creditors a choice of m new remote holders may give
 * to: every near one, every remote one already holding, and the m remote
 * non-holders with the most spare (ties: lower index). False when fewer
 * than m remote non-holders have spare. */
static bool choose(const infsim_planner_creditor *c, size_t n, int64_t m, bool *use) {
  for (size_t k = 0; k < n; k++) use[k] = !c[k].remote || c[k].held > 0;
  for (int64_t j = 0; j < m; j++) {
    size_t bk = n;
    for (size_t k = 0; k < n; k++)
      if (!use[k] && c[k].spare > 0 && (bk == n || c[k].spare > c[bk].spare)) bk = k;
    if (bk == n) return false;
    use[bk] = true;
  }
  return true;
}

/* The remote holders of a choice (use[], r0 + m of them), and with relay
 * their nodes: how many, and per remote creditor its node's holders. */
static void count_links(const infsim_planner_creditor *c, size_t n, const bool *use, int64_t rr, links *l) {
  l->rr = rr;
  if (!l->relay) return;
  l->nodes = 0;
  for (size_t k = 0; k < n; k++) {
    l->on_node[k] = 0;
    if (!c[k].remote) continue;
    bool first = true;
    for (size_t i = 0; i < n; i++) {
      if (!c[i].remote || c[i].node != c[k].node || !(use[i] && (c[i].held > 0 || c[i].spare > 0))) continue;
      if (i < k) first = false;
      l->on_node[k]++;
    }
    if (first && l->on_node[k] > 0 && use[k]) l->nodes++;
  }
}

/* The least step cost at which the creditors in use take `need` blocks
 * (their spare covers it). */
static int64_t least_cost(const infsim_planner_creditor *c, size_t n, const bool *use, int64_t need,
                          int64_t remote_blocks, int64_t near_blocks, const links *l) {
  int64_t lo = -1, hi = 0;
  for (size_t k = 0; k < n; k++) {
    int64_t top = base_cost(c, k, remote_blocks, near_blocks, l) + c[k].spare;
    if (use[k] && top > hi) hi = top;
  }
  /* takes grow with the cost: bisection (lo does not cover, hi does) */
  while (hi - lo > 1) {
    int64_t mid = lo + (hi - lo) / 2, sum = 0;
    for (size_t k = 0; k < n; k++)
      if (use[k]) sum += take_at(&c[k], base_cost(c, k, remote_blocks, near_blocks, l), mid);
    if (sum >= need) hi = mid;
    else lo = mid;
  }
  return hi;
}

int64_t infsim_planner_spread(const infsim_planner_creditor *c, size_t n, int64_t need, int64_t remote_blocks,
                              int64_t near_blocks, bool relay, bool *use, int64_t *take) {
  assert(need >= 0 && remote_blocks >= 0 && near_blocks >= 0);
  int64_t r0 = 0, nn = 0, total = 0;
  for (size_t k = 0; k < n; k++) {
    if (c[k].held > 0 && c[k].remote) r0++;
    /* every near creditor counts as a holder on the owner's NVLink: a
     * level over them reaches all of them but for a tiny need */
    if (!c[k].remote && (c[k].held > 0 || c[k].spare > 0)) nn++;
    total += c[k].spare;
  }
  if (total <= need) {
    for (size_t k = 0; k < n; k++) {
      use[k] = c[k].spare > 0;
      take[k] = c[k].spare;
    }
    return -1;
  }
  links l = {.nn = nn, .relay = relay};
  if (relay && (l.on_node = calloc(n > 0 ? n : 1, sizeof *l.on_node)) == NULL) l.relay = false; /* no memory: per holder */
  /* One more remote holder lowers the level the need reaches and adds
   * remote_blocks to every remote holder's cost (with relay: when it opens
   * a node, and near_blocks to its node's): try each count, keep the
   * cheapest (the fewest on ties). */
  int64_t best = -1, best_m = 0;
  for (int64_t m = 0; choose(c, n, m, use); m++) {
    count_links(c, n, use, r0 + m, &l);
    int64_t room = 0, floor = 0;
    for (size_t k = 0; k < n; k++) {
      if (!use[k]) continue;
      room += c[k].spare;
      int64_t b = base_cost(c, k, remote_blocks, near_blocks, &l);
      if (c[k].held > 0 && b > floor) floor = b; /* a holder's cost stands even if it takes nothing */
    }
    if (room < need) continue;
    int64_t cost = least_cost(c, n, use, need, remote_blocks, near_blocks, &l);
    if (cost < floor) cost = floor;
    if (best < 0 || cost < best) {
      best = cost;
      best_m = m;
    }
  }
  choose(c, n, best_m, use);
  count_links(c, n, use, r0 + best_m, &l);
  int64_t level = least_cost(c, n, use, need, remote_blocks, near_blocks, &l), sum = 0;
  for (size_t k = 0; k < n; k++) {
    take[k] = use[k] ? take_at(&c[k], base_cost(c, k, remote_blocks, near_blocks, &l), level) : 0;
    sum += take[k];
  }
  free(l.on_node);
  /* The level's last step may overshoot: give back from remote takes
   * first (near ones are the cheaper holders), in index order. */
  for (int pass = 0; pass < 2 && sum > need; pass++)
    for (size_t k = 0; k < n && sum > need; k++) {
      if (c[k].remote != (pass == 0) || take[k] == 0) continue;
      int64_t cut = take[k] < sum - need ? take[k] : sum - need;
      take[k] -= cut;
      sum -= cut;
    }
  return best;
}
