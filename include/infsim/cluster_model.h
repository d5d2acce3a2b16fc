/*
** cluster_model.h: a LLaMA-shaped decoder with synthetic weights, run layer
** by layer on the kernels of kernels.h (CPU reference or CUDA): what
** cluster mode's executors run for each batch the scheduler forms.
**
** Shapes and dtypes are real (bf16, the model's GEMMs, paged KV in rBlocks
** of block_tokens), values are random from a fixed seed, so two models
** made with the same parameters hold bit-identical weights (on either
** backend: fill_random is bit-identical across backends). Sampling is
** replaced by a fixed next token (INFSIM_CMODEL_NEXT_TOKEN): a request's
** token at position p is a hash of (request, p) inside its prompt and the
** fixed token after it, so a recomputed request sees the same inputs.
**
** One forward runs the parts of one batch: decodes (one query token over
** the request's KV, paged MA decode) and prefill chunks (causal attention
** over the chunk and the cached prefix, writing K/V into the blocks). Each
** part names its blocks as slots of this model's KV pool in token order.
** DistAttention: a decode part whose context has remote_tokens held by
** other holders attends its local blocks here, asks `remote` for the
** partial (output + LSE) of the rest, and merges the two by LSE, layer by
** layer, as DESIGN.md describes. The holder side is
** infsim_cmodel_attend_partial.
**
** Invariants: every block a part reads holds its own request's KV at that
** index of its table (checked on the host each forward); a forward's parts fit the sizes given at creation
** (max_tokens, max_requests, max_blocks_per_request); a part's slots are
** distinct and inside the pool; remote blocks are whole blocks (the block
** being appended to is local).
*/
#ifndef INFSIM_CLUSTER_MODEL_H
#define INFSIM_CLUSTER_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "infsim/hardware.h"
#include "infsim/kernels.h"
#include "infsim/status.h"

enum { INFSIM_CMODEL_NEXT_TOKEN = 1 };

typedef struct {
  infsim_kernel_model shape; /* hidden, heads, kv_heads, head_dim (128), intermediate */
  int64_t layers;
  int64_t vocab;
  int32_t block_tokens;  /* multiple of 16 */
  int64_t pool_blocks;   /* rBlocks this model's KV pools hold (slots 0..pool_blocks-1) */
  int64_t max_tokens;    /* most query tokens in one forward */
  int64_t max_requests;  /* most parts in one forward */
  int64_t max_blocks_per_request;
  uint64_t seed;         /* weights */
  float rope_theta;      /* 10000 for LLaMA2 */
  float norm_eps;        /* 1e-5 for LLaMA2 */
  bool decode_graphs;    /* CUDA: replay decode-only forwards as CUDA graphs */
  /* Pad decode-only forwards to 1, 2, 4, ..., 32, then a multiple of 32
   * requests (dummy rows over a scratch block outside the pool), so that a
   * few graphs serve every batch size (vLLM pads to graph sizes the same
   * way). params_from_shape sets it with decode_graphs. */
  bool pad_decodes;
} infsim_cmodel_params;

/* Parameters for a model shape from hardware.h (head_dim must be 128). */
infsim_status infsim_cmodel_params_from_shape(const infsim_model_shape *m, int32_t block_tokens,
                                              int64_t pool_blocks, int64_t max_tokens, int64_t max_requests,
                                              int64_t max_blocks_per_request, infsim_cmodel_params *out,
                                              infsim_error *err);

/* One request's part of a forward. */
typedef struct {
  int64_t req;            /* request id (token ids only) */
  int32_t prompt_tokens;  /* positions below this hold prompt tokens */
  int32_t query_tokens;   /* >= 1: 1 with context_tokens > 0 is a decode */
  int32_t context_tokens; /* KV tokens before this part, on every holder */
  int32_t remote_tokens;  /* of those, held elsewhere (decode only; whole blocks, unless append_remote) */
  const int32_t *slots;   /* local blocks, token order: enough for the local tokens after the part */
  int32_t slot_count;
  /* Decode whose new token goes to a holder (the block it falls in is
   * remote: moved away part-filled): the holder appends its K/V and
   * attends it; every local block is full, the remote share may end
   * mid-block. */
  bool append_remote;
} infsim_cmodel_part;

/* One query of the holder side: the asking request's blocks here (slots of
 * this holder's pool, token order), the tokens they hold after the step,
 * and whether the new token is appended here (into the last of them). */
typedef struct {
  int64_t req;
  const int32_t *slots;
  int32_t slot_count;
  int32_t tokens;
  bool append;
} infsim_cmodel_query;

/* Decode attention of the remote share of some parts for one layer. */
typedef struct {
  void *self;
  /* parts[i] (indices into the forward's parts) with queries q[i][h][d]
   * and the new token's k[i][g][d], v[i][g][d] (bf16, after RoPE; a holder
   * appends them where the part says append_remote): write the partial
   * over their remote KV into out[i][h][d] and lse[i][h] (host memory;
   * empty: lse -inf, out 0). */
  infsim_status (*attend)(void *self, int32_t layer, const int32_t *parts, int32_t n, const uint16_t *q,
                          const uint16_t *k, const uint16_t *v, float *out, float *lse, infsim_error *err);
} infsim_cmodel_remote;

typedef struct infsim_cmodel infsim_cmodel;

/* Allocates weights (filled from p->seed), KV pools and activations on k
 * (borrowed; it must outlive the model). */
infsim_status infsim_cmodel_new(infsim_kernels *k, const infsim_cmodel_params *p, infsim_cmodel **out,
                                infsim_error *err);
void infsim_cmodel_free(infsim_cmodel *m);
const infsim_cmodel_params *infsim_cmodel_params_of(const infsim_cmodel *m);
infsim_kernels *infsim_cmodel_kernels(infsim_cmodel *m);

/* Runs one forward (returns once its work is queued; infsim_kernels_sync
 * waits for it). remote may be NULL when no part has remote_tokens. */
infsim_status infsim_cmodel_forward(infsim_cmodel *m, const infsim_cmodel_part *parts, int32_t count,
                                    const infsim_cmodel_remote *remote, infsim_error *err);

/* Runs the forward on m, then (shadow not NULL) each part alone on shadow,
 * a model made with the same parameters and fed the same parts so far;
 * INFSIM_ERUN when a part's rows differ from its solo rows (bit for bit on
 * the CPU, to bf16 rounding on CUDA): the end-to-end check that batching
 * and the block tables leave every request's numbers alone. Waits for the
 * device. Parts with remote KV are not supported here. */
infsim_status infsim_cmodel_forward_verified(infsim_cmodel *m, infsim_cmodel *shadow, const infsim_cmodel_part *parts,
                                             int32_t count, infsim_error *err);

/* Warm-up before a run's clock starts, as a serving engine runs a dummy
 * forward at start-up (vLLM's profile run): prefills of one block, then
 * twice that up to the longest a forward takes, then one mixed forward (a
 * decode beside a prefill), so that the device's first-use costs (kernel
 * modules loaded on first launch, the GEMM library's kernels and plans
 * for each row count, workspaces) are paid before serving rather than by
 * the run's first batches. Leaves the KV pools zeroed and no slot claimed,
 * as a new model; waits for the device. *forwards (may be NULL): how many
 * forwards ran. */
infsim_status infsim_cmodel_warm_up(infsim_cmodel *m, int32_t *forwards, infsim_error *err);

/* Holder side of DistAttention: decode attention for layer `layer` of n
 * queries q[n][h][d] (bf16, host) over each query's blocks here, after
 * appending k_new[i], v_new[i] ([g][d] bf16, host) where qs[i].append,
 * into out[n][h][d] and lse[n][h] (host, f32). k_new and v_new may be
 * NULL when no query appends. Uses buffers of its own: a holder may serve
 * it between two layers of its own forward. Checks that each block read
 * holds the asking request's KV (INFSIM_ERUN otherwise). */
infsim_status infsim_cmodel_attend_partial(infsim_cmodel *m, int32_t layer, const infsim_cmodel_query *qs, int32_t n,
                                           const uint16_t *q, const uint16_t *k_new, const uint16_t *v_new,
                                           float *out, float *lse, infsim_error *err);

/* Bytes of one rBlock over all layers (K and V), and its copy to or from
 * host memory, as a KV move carries it: [layer][k|v][g][block_tokens][d]. */
int64_t infsim_cmodel_block_bytes(const infsim_cmodel *m);
infsim_status infsim_cmodel_block_read(infsim_cmodel *m, int32_t slot, void *host, infsim_error *err);
infsim_status infsim_cmodel_block_write(infsim_cmodel *m, int32_t slot, const void *host, infsim_error *err);
/* The model checks that every block a forward reads holds KV its own
 * request wrote (at that table index, when the request has no remote
 * blocks): INFSIM_ERUN otherwise, block tables and KV out of step. A block written by block_write belongs to nobody
 * until claimed: the receiver of a KV move names it here. */
void infsim_cmodel_claim(infsim_cmodel *m, int32_t slot, int64_t req, int32_t index);

/* Tests: keep layer `layer`'s q, k, v (after RoPE) and attention output of
 * the next forwards (-1: none), and read them back: q[T][h][d],
 * k[T][g][d], v[T][g][d], attn[T][h d] (bf16, host; T = tokens of the
 * last forward). Rows: the decode parts first, one row each, then each
 * prefill part's tokens, both in the order the parts were given. */
void infsim_cmodel_inspect(infsim_cmodel *m, int32_t layer);
const uint16_t *infsim_cmodel_inspected(const infsim_cmodel *m, int64_t *tokens, const uint16_t **k,
                                        const uint16_t **v, const uint16_t **attn);
/* The residual stream after the last layer (before the final norm) of the
 * last forward: hidden[T][hidden] bf16 into host, rows as above. */
infsim_status infsim_cmodel_hidden(infsim_cmodel *m, uint16_t *host, infsim_error *err);
/* Token id at position pos of request req with prompt_tokens of prompt. */
int32_t infsim_cmodel_token(const infsim_cmodel_params *p, int64_t req, int64_t prompt_tokens, int64_t pos);
/* Forwards so far that ran as a replayed CUDA graph. */
int64_t infsim_cmodel_graph_replays(const infsim_cmodel *m);
/* Records, before serving, the decode graph of every padded size up to
 * max_decodes requests at every context bucket a block-table row allows
 * (as vLLM captures its graphs at start-up), so that no decode step of a
 * run pays a capture. Runs padding rows only (no KV of the pool is touched);
 * *captured (may be NULL) counts the new graphs. Without graphs (CPU, or
 * decode_graphs off) it does nothing. */
infsim_status infsim_cmodel_capture_graphs(infsim_cmodel *m, int64_t max_decodes, int64_t *captured,
                                           infsim_error *err);

#endif
