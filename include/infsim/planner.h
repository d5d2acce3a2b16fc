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
**  - spread: a prompt gathering its blocks (its new blocks at creditors)
**    is placed to keep its chunks' step short. Each later chunk's queries
**    go to every holder of the prompt's earlier KV and its partials come
**    back, and the chunk's new KV goes to the holder taking it; a step
**    waits for the slowest holder (docs/distkv.md, "Prefill"): its
**    micro-attention grows with what it holds, its transfers with the
**    holders sharing its link, since the owner's NIC (or NVLink) is split
**    max-min among them. In blocks of micro-attention, holder j costs
**    held_j + W_link x (holders behind that link), W_remote for the NIC,
**    W_near for NVLink (infsim_planner_holder_tokens). spread picks the
**    number of new holders behind the NIC (the most spare first) and the
**    level at which the holders take the need, at the least largest cost:
**    the owner's node first and levelled (NVLink is 12x an A100 node's
**    NIC), few holders across nodes, each larger. The paper's greedy
**    drains the most spare creditors, wherever they are; level spreads
**    thin over every creditor, paying a NIC share per holder.
**    With node relay (policy.distattn_relay: node, distattn.h) the owner's
**    NIC carries one copy per remote node, not per holder, and the node's
**    relay fans the queries out over its NVLink: a remote holder on node N
**    then costs held + W_remote x (remote nodes holding) + W_near x
**    (holders on N), so holders behind a NIC already crossed are cheap.
*/
#ifndef INFSIM_PLANNER_H
#define INFSIM_PLANNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "infsim/gmanager.h"
#include "infsim/hardware.h"

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

/* One creditor as spread sees it: its spare, the blocks of the request it
 * holds already, and whether it is on another node than the request's
 * owner (reached over the NIC). A holder with no spare is listed too (its
 * cost stands). */
typedef struct {
  int64_t spare;
  int64_t held;
  bool remote;
  int32_t node; /* its node (read with relay only) */
} infsim_planner_creditor;

/* spread's placement of `need` blocks over c[0..n): take[k] blocks at
 * creditor k (use[k]: k is among those it chose). remote_blocks and
 * near_blocks: W_remote and W_near in blocks; relay: node relay's costs
 * (per remote node, then per holder on the node). Returns the largest
 * holder's cost it reaches, in blocks (-1 when the creditors' spare does
 * not cover the need: then every creditor gives all its spare). */
int64_t infsim_planner_spread(const infsim_planner_creditor *c, size_t n, int64_t need, int64_t remote_blocks,
                              int64_t near_blocks, bool relay, bool *use, int64_t *take);

/* W for a link of link_bytes_per_s: the key tokens of micro-attention
 * whose time equals what one holder's transfers per query token and layer
 * (query out, partial back) take on that link, with attention at
 * attn_flops_per_s (the roofline's: peak x cost.attention_efficiency).
 * LLaMA2-7B, fp16, A100 (156 TFLOP/s), a 25 GB/s NIC: 6,266 tokens (392
 * blocks of 16); 300 GB/s NVLink: 522 (33 blocks). */
double infsim_planner_holder_tokens(const infsim_model_shape *m, double wire_bytes_per_value, double attn_flops_per_s,
                                    double link_bytes_per_s);

#endif
