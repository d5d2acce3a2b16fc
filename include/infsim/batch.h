/*
** batch.h: what one iteration of one instance processes, as aggregates.
**
** The scheduler fills these sums incrementally (DESIGN.md: the cost of an
** iteration is a function of the batch's aggregates, never of a
** per-request list); the cost model prices them and a real executor reads
** them beside the batch's entries. This header sits below both so that the
** scheduler compiles without the cost model.
*/
#ifndef INFSIM_BATCH_H
#define INFSIM_BATCH_H

#include <stdint.h>

typedef struct {
  int64_t prefill_tokens;        /* tokens of prompt chunks in this iteration */
  int64_t prefill_attn_pairs;    /* sum over chunks of chunk x (tokens before it) + chunk (chunk + 1) / 2 */
  int64_t decode_requests;       /* requests generating one token */
  int64_t decode_context_tokens; /* sum of their contexts (KV tokens attended) held locally */
  int64_t logits_tokens;         /* tokens whose logits are computed: decodes + prefills that complete */
  /* DistAttention: KV of this batch's requests held by other instances. */
  int64_t remote_requests;       /* requests with part of their KV remote */
  int64_t remote_context_tokens; /* KV tokens attended remotely (sum over holders) */
  int64_t remote_partials;       /* (request, holder) pairs whose partials are merged */
  /* DistAttention, creditor side: KV this instance holds for requests
   * owned elsewhere, whose micro-attention it computes in its iterations. */
  int64_t guest_requests;
  int64_t guest_context_tokens;
  /* The longest local context among the decoding requests (0: not known;
   * priced as if every request had the mean). The MA decode's grid and
   * split count follow it, and its longest CTA bounds the kernel's time. */
  int64_t decode_max_context_tokens;
} infsim_batch_agg;

#endif
