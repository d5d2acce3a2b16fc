/*
** dgfm.h: debt-graph-based fragmentation mitigation (Infinite-LLM v1's
** DGFM), one bounded pass over the gManager's ledger.
**
** The debts form a graph: an edge from owner to holder for every request
** with blocks held away from its owner. Left alone, borrowing scatters a
** long request over many instances (more partials to ship and merge every
** step) and leaves owners that have room again still paying remote
** attention. The paper names two remedies, recall and swap, and leaves the
** algorithm open; ours, per pass:
**
**  1. Recall. Pieces (request, holder away from its owner) come home,
**     smallest piece first, when the owner has spare memory for the
**     request's whole remote part and would keep `recall_headroom_blocks`
**     spare after taking it: each recall removes one holder from a
**     request's span, and smallest first removes the most holders for the
**     spare at hand. An owner that would be short again at its next block
**     boundaries gets nothing back (its shortage would send the blocks
**     away again: borrow ping-pong), nor does a request that can never
**     come home whole. Partial pieces are not recalled (they would not
**     shrink the span).
**  2. Consolidate. For a request still spanning 3 or more holders, or 2
**     away from its owner, its smallest remote piece moves to another of
**     its holders with spare for it (its largest piece first): one holder
**     fewer, no instance new to it.
**  3. Swap. When no holder has spare: request r has a piece of p blocks at
**     S and a piece at T; request q has a piece of at least p at T and
**     holds blocks at S already (its owner being S or not), or has exactly
**     p at T. Exchange p blocks: r's go S -> T, q's go T -> S. Memory at S
**     and T is unchanged (the pair runs block by block, so it needs no
**     spare), r spans one holder fewer, and q none more (one fewer if its
**     piece at T was exactly p and it held blocks at S).
**
** Consolidations and swaps move a piece only when it is at most
** `max_piece_blocks`: what they buy (one holder fewer: one query and
** partial less per decode step, about one token of KV per layer) repays
** the copy of p blocks (block_tokens x p tokens of KV) only after about
** block_tokens x p decode steps, which a large piece's request seldom
** has left.
**
** A request whose owner holds none of its blocks is a prompt still
** gathering blocks at creditors before its admission: it is left alone
** (recalling its pieces would undo the gathering).
**
** Each request takes part in at most one move (or pair) per pass, and a
** pass stops at limits on moves and blocks (DESIGN: bounds on everything),
** so a pass costs O(split requests^2) at worst and its moves can be priced
** and run before the next pass. Spare memory is the gManager's view
** (free above the reserve); the pass deducts what it plans as it goes.
*/
#ifndef INFSIM_DGFM_H
#define INFSIM_DGFM_H

#include <stddef.h>
#include <stdint.h>

#include "infsim/gmanager.h"
#include "infsim/status.h"

typedef enum {
  INFSIM_DGFM_RECALL = 0,      /* to the owner */
  INFSIM_DGFM_CONSOLIDATE = 1, /* to another holder of the request */
  INFSIM_DGFM_SWAP = 2         /* one half of an exchange; `pair` is the other */
} infsim_dgfm_kind;

/* "recall", "consolidate", "swap". */
const char *infsim_dgfm_kind_name(infsim_dgfm_kind k);

typedef struct {
  infsim_gm_move move;
  infsim_dgfm_kind kind;
  int32_t pair; /* index of the other half of a swap in the pass's output, else -1 */
} infsim_dgfm_move;

typedef struct {
  int64_t max_moves;  /* per pass (a swap counts 2) */
  int64_t max_blocks; /* per pass, over all moves */
  int64_t recall_headroom_blocks; /* spare an owner keeps after a recall (step 1) */
  int64_t max_piece_blocks;       /* largest piece consolidated or swapped (steps 2, 3); 0: any */
} infsim_dgfm_limits;

typedef struct infsim_dgfm infsim_dgfm;

/* Scratch for passes over a ledger of `instances` instances. */
infsim_status infsim_dgfm_new(int32_t instances, infsim_dgfm **out, infsim_error *err);
void infsim_dgfm_free(infsim_dgfm *d);

/* One pass over gm: moves into out[0..cap), at most lim's; returns how
 * many. gm is not changed (the caller proposes, runs and confirms them). */
size_t infsim_dgfm_pass(infsim_dgfm *d, const infsim_gm *gm, const infsim_dgfm_limits *lim, infsim_dgfm_move *out,
                        size_t cap);

#endif
