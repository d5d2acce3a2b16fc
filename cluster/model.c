/*
** model.c: the synthetic LLaMA-shaped decoder of cluster_model.h.
**
** A forward lays its tokens out as rows: the decode parts first (row i is
** decode part i, in the order given), then each prefill chunk's tokens.
** Per layer (LLaMA2: pre-norm, RoPE, no QK-norm, SwiGLU MLP):
**   xn = rmsnorm(x); qkv = xn Wqkv; RoPE on q, k; split q, k, v;
**   decodes: append k, v at the request's next slot, MA decode over its
**   local blocks (+ the remote partial, merged by LSE in the same launch);
**   prefills: the prefill kernel appends k, v and attends causally;
**   x += attn Wo; x += down(silu(xn2 Wgate) * (xn2 Wup)), xn2 = rmsnorm(x);
** then the final norm and the LM head on each part's last row (the logits
** are computed and dropped: the next token is fixed).
**
** Every host-side input of a forward (token ids, positions, block tables,
** decode positions and contexts, logit rows) goes to the device in one
** upload into one int32 buffer, so a forward is one upload followed by
** kernel launches on one stream, without a host sync. That is what makes
** a decode-only forward capturable: with the buffers at fixed addresses and
** the MA grid sized for a power-of-two context bucket, the same launches
** serve every step with the same (requests, bucket); the graph replays
** them with no per-kernel launch gaps.
**
** Weights: uniform in +-sqrt(3 / fan_in) (unit variance through a GEMM),
** norms in [0.8, 1.2), embeddings in [-1, 1); each tensor its own seed
** derived from params.seed, so every model with the same seed matches.
*/
#include "infsim/cluster_model.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

/* Graphs kept: every (padded size, context bucket) a run can meet, 13 sizes
 * x up to 12 buckets (256 .. 512K), captured once (infsim_cmodel_capture_graphs). */
enum { ICL_GRAPHS = 160 };

typedef struct {
  void *qkv, *o, *gate_up, *down, *attn_norm, *mlp_norm;
  void *k_pool, *v_pool;
} icl_layer;

typedef struct {
  int32_t decodes, bucket, logits;
  void *exec;
} icl_graph;

struct infsim_cmodel {
  infsim_kernels *k;
  infsim_cmodel_params p;
  const icl_ops *ops;
  bool graphs;
  icl_layer *layers;
  void *embed, *final_norm, *lm_head;
  /* activations */
  void *x, *xn, *qkv, *q, *kk, *v, *attn, *tmp, *gu, *act, *last, *last_n, *logits;
  float *dec_out, *dec_lse; /* decode attention [R][h][d], [R][h] (merged with the remote partial, if any) */
  float *rem_out, *rem_lse; /* the remote partial the MA decode merges, same shapes */
  /* per-forward int32 inputs, device and host mirror */
  int32_t *ints, *ints_host;
  int64_t ints_count;
  int64_t off_tokens, off_pos, off_tables, off_dec_pos, off_dec_ctx, off_logit_rows;
  /* holder side (infsim_cmodel_attend_partial), apart from the forward's
   * buffers so that a holder can serve a query between two layers of its
   * own forward */
  void *hq, *hk, *hv;
  float *hout, *hlse;
  int32_t *hints, *hints_host;
  int64_t hints_count;
  /* host scratch for the remote partials */
  uint16_t *rq_host, *rk_host, *rv_host;
  float *rout_host, *rlse_host;
  int32_t *rparts;
  /* last forward */
  int64_t rows;
  int32_t inspect_layer;
  uint16_t *insp_q, *insp_k, *insp_v, *insp_attn;
  /* Which (request, table index) each pool slot's KV belongs to, as the
   * forwards wrote it (-1: none): every block a part reads must hold its
   * own request's KV at that index, or the block tables and the KV have
   * come apart (the check that a wrong slot, a shared block or a block
   * reused without its KV cannot pass silently). */
  int64_t *claim_req;
  int32_t *claim_idx;
  icl_graph graph[ICL_GRAPHS];
  int32_t graph_next;
  int64_t graph_replays, graph_captures;
};

static int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

infsim_status infsim_cmodel_params_from_shape(const infsim_model_shape *m, int32_t block_tokens,
                                              int64_t pool_blocks, int64_t max_tokens, int64_t max_requests,
                                              int64_t max_blocks_per_request, infsim_cmodel_params *out,
                                              infsim_error *err) {
  if (m->head_dim != INFSIM_KERNEL_HEAD_DIM)
    return infsim_fail(err, INFSIM_EINPUT, "cluster: model %s: head_dim %lld: the kernels take only %d", m->name,
                       (long long)m->head_dim, INFSIM_KERNEL_HEAD_DIM);
  memset(out, 0, sizeof *out);
  out->shape = (infsim_kernel_model){m->hidden, m->heads, m->kv_heads, m->head_dim, m->intermediate};
  out->layers = m->layers;
  out->vocab = m->vocab;
  out->block_tokens = block_tokens;
  out->pool_blocks = pool_blocks;
  out->max_tokens = max_tokens;
  out->max_requests = max_requests;
  out->max_blocks_per_request = max_blocks_per_request;
  out->seed = 0x5eed;
  out->rope_theta = 10000.0f;
  out->norm_eps = 1e-5f;
  out->decode_graphs = true;
  out->pad_decodes = true;
  return INFSIM_OK;
}

int32_t infsim_cmodel_token(const infsim_cmodel_params *p, int64_t req, int64_t prompt_tokens, int64_t pos) {
  if (pos >= prompt_tokens) return INFSIM_CMODEL_NEXT_TOKEN;
  uint64_t h = (uint64_t)req * 0x9E3779B97F4A7C15ull ^ ((uint64_t)pos + 0x632BE59BD9B4E019ull);
  h ^= h >> 31;
  h *= 0xBF58476D1CE4E5B9ull;
  h ^= h >> 29;
  return (int32_t)(h % (uint64_t)p->vocab);
}

static infsim_status alloc_fill(infsim_cmodel *m, void **buf, int64_t count, uint64_t seed, float lo, float hi,
                                infsim_error *err) {
  infsim_status st = infsim_kernels_alloc(m->k, count * 2, buf, err);
  if (st != INFSIM_OK) return st;
  return infsim_kernels_fill_random(m->k, *buf, INFSIM_KDTYPE_BF16, count, seed, lo, hi, err);
}

static infsim_status alloc_bytes(infsim_cmodel *m, void **buf, int64_t bytes, infsim_error *err) {
  return infsim_kernels_alloc(m->k, bytes < 16 ? 16 : bytes, buf, err);
}

/* Bytes of one layer's K (or V) pool: one slot past the pool is the
 * scratch block that padding rows attend. */
static int64_t pool_bytes(const infsim_cmodel *m) {
  const infsim_kernel_model *s = &m->p.shape;
  return (m->p.pool_blocks + 1) * s->kv_heads * m->p.block_tokens * s->head_dim * 2;
}

static infsim_status make_weights(infsim_cmodel *m, infsim_error *err) {
  const infsim_kernel_model *s = &m->p.shape;
  int64_t H = s->hidden, d = s->head_dim, qkv_n = (s->heads + 2 * s->kv_heads) * d, I = s->intermediate;
  int64_t pool = pool_bytes(m);
  uint64_t seed = m->p.seed * 1000003u;
  infsim_status st;
#define FILL(buf, count, fan_in)                                                                           \
  do {                                                                                                     \
    float a_ = sqrtf(3.0f / (float)(fan_in));                                                              \
    if ((st = alloc_fill(m, &(buf), (count), ++seed, -a_, a_, err)) != INFSIM_OK) return st;               \
  } while (0)
  for (int64_t l = 0; l < m->p.layers; l++) {
    icl_layer *L = &m->layers[l];
    FILL(L->qkv, qkv_n * H, H);
    FILL(L->o, H * s->heads * d, s->heads * d);
    FILL(L->gate_up, 2 * I * H, H);
    FILL(L->down, H * I, I);
    if ((st = alloc_fill(m, &L->attn_norm, H, ++seed, 0.8f, 1.2f, err)) != INFSIM_OK) return st;
    if ((st = alloc_fill(m, &L->mlp_norm, H, ++seed, 0.8f, 1.2f, err)) != INFSIM_OK) return st;
    if ((st = alloc_bytes(m, &L->k_pool, pool, err)) != INFSIM_OK) return st;
    if ((st = alloc_bytes(m, &L->v_pool, pool, err)) != INFSIM_OK) return st;
    if ((st = infsim_kernels_memset(m->k, L->k_pool, 0, pool, err)) != INFSIM_OK) return st;
    if ((st = infsim_kernels_memset(m->k, L->v_pool, 0, pool, err)) != INFSIM_OK) return st;
  }
  if ((st = alloc_fill(m, &m->embed, m->p.vocab * H, ++seed, -1.0f, 1.0f, err)) != INFSIM_OK) return st;
  if ((st = alloc_fill(m, &m->final_norm, H, ++seed, 0.8f, 1.2f, err)) != INFSIM_OK) return st;
  FILL(m->lm_head, m->p.vocab * H, H);
#undef FILL
  return INFSIM_OK;
}

static infsim_status make_activations(infsim_cmodel *m, infsim_error *err) {
  const infsim_kernel_model *s = &m->p.shape;
  int64_t T = m->p.max_tokens, R = m->p.max_requests, H = s->hidden, d = s->head_dim, h = s->heads,
          g = s->kv_heads, I = s->intermediate;
  infsim_status st;
  void **bf16[] = {&m->x, &m->xn, &m->tmp, &m->qkv, &m->q, &m->kk, &m->v, &m->attn, &m->gu, &m->act};
  int64_t elems[] = {T * H, T * H, T * H, T * (h + 2 * g) * d, T * h * d, T * g * d, T * g * d, T * h * d,
                     T * 2 * I, T * I};
  for (size_t i = 0; i < sizeof elems / sizeof elems[0]; i++)
    if ((st = alloc_bytes(m, bf16[i], elems[i] * 2, err)) != INFSIM_OK) return st;
  if ((st = alloc_bytes(m, &m->last, R * H * 2, err)) != INFSIM_OK) return st;
  if ((st = alloc_bytes(m, &m->last_n, R * H * 2, err)) != INFSIM_OK) return st;
  if ((st = alloc_bytes(m, &m->logits, R * m->p.vocab * 2, err)) != INFSIM_OK) return st;
  if ((st = alloc_bytes(m, (void **)&m->dec_out, R * h * d * 4, err)) != INFSIM_OK) return st;
  if ((st = alloc_bytes(m, (void **)&m->dec_lse, R * h * 4, err)) != INFSIM_OK) return st;
  if ((st = alloc_bytes(m, (void **)&m->rem_out, R * h * d * 4, err)) != INFSIM_OK) return st;
  if ((st = alloc_bytes(m, (void **)&m->rem_lse, R * h * 4, err)) != INFSIM_OK) return st;
  m->off_tokens = 0;
  m->off_pos = round16(T);
  m->off_tables = m->off_pos + round16(T);
  m->off_dec_pos = m->off_tables + round16(R * m->p.max_blocks_per_request);
  m->off_dec_ctx = m->off_dec_pos + round16(R);
  m->off_logit_rows = m->off_dec_ctx + round16(R);
  m->ints_count = m->off_logit_rows + round16(R);
  if ((st = alloc_bytes(m, (void **)&m->ints, m->ints_count * 4, err)) != INFSIM_OK) return st;
  m->ints_host = calloc((size_t)m->ints_count, 4);
  if ((st = alloc_bytes(m, &m->hq, R * h * d * 2, err)) != INFSIM_OK) return st;
  if ((st = alloc_bytes(m, &m->hk, R * g * d * 2, err)) != INFSIM_OK) return st;
  if ((st = alloc_bytes(m, &m->hv, R * g * d * 2, err)) != INFSIM_OK) return st;
  if ((st = alloc_bytes(m, (void **)&m->hout, R * h * d * 4, err)) != INFSIM_OK) return st;
  if ((st = alloc_bytes(m, (void **)&m->hlse, R * h * 4, err)) != INFSIM_OK) return st;
  m->hints_count = R * m->p.max_blocks_per_request + 2 * R;
  if ((st = alloc_bytes(m, (void **)&m->hints, m->hints_count * 4, err)) != INFSIM_OK) return st;
  m->hints_host = calloc((size_t)m->hints_count, 4);
  m->rk_host = malloc((size_t)(R * g * d) * 2);
  m->rv_host = malloc((size_t)(R * g * d) * 2);
  if (!m->hints_host || !m->rk_host || !m->rv_host) return infsim_fail(err, INFSIM_ENOMEM, "cluster: model: out of memory");
  m->rq_host = malloc((size_t)(R * h * d) * 2);
  m->rout_host = malloc((size_t)(R * h * d) * 4);
  m->rlse_host = malloc((size_t)(R * h) * 4);
  m->rparts = malloc((size_t)R * 4);
  m->claim_req = malloc((size_t)m->p.pool_blocks * sizeof *m->claim_req);
  m->claim_idx = malloc((size_t)m->p.pool_blocks * sizeof *m->claim_idx);
  if (!m->ints_host || !m->rq_host || !m->rout_host || !m->rlse_host || !m->rparts || !m->claim_req || !m->claim_idx)
    return infsim_fail(err, INFSIM_ENOMEM, "cluster: model: out of memory");
  for (int64_t i = 0; i < m->p.pool_blocks; i++) m->claim_req[i] = -1, m->claim_idx[i] = -1;
  return INFSIM_OK;
}

/* Checks the blocks a part reads and claims the ones it starts (see claim_req). */
static infsim_status claim_blocks(infsim_cmodel *m, const infsim_cmodel_part *pt, infsim_error *err) {
  const int64_t bt = m->p.block_tokens;
  int64_t before = (int64_t)pt->context_tokens - pt->remote_tokens;
  int64_t after = before + (pt->append_remote ? 0 : pt->query_tokens);
  for (int64_t i = 0; i * bt < after; i++) {
    int32_t slot = pt->slots[i];
    bool fresh = i * bt >= before; /* the part writes this block from its start */
    if (fresh) {
      m->claim_req[slot] = pt->req;
      m->claim_idx[slot] = (int32_t)i;
    } else if (m->claim_req[slot] != pt->req || (pt->remote_tokens == 0 && m->claim_idx[slot] != i)) {
      /* With remote blocks the local index is not the table index: then
       * only whose KV it is can be checked. */
      return infsim_fail(err, INFSIM_ERUN,
                         "cluster: model: request %lld reads slot %d as its local block %lld, which holds KV of "
                         "request %lld block %d: the block tables and the KV written have come apart",
                         (long long)pt->req, slot, (long long)i, (long long)m->claim_req[slot], m->claim_idx[slot]);
    }
  }
  return INFSIM_OK;
}

infsim_status infsim_cmodel_new(infsim_kernels *k, const infsim_cmodel_params *p, infsim_cmodel **out,
                                infsim_error *err) {
  *out = NULL;
  const infsim_kernel_model *s = &p->shape;
  if (s->head_dim != INFSIM_KERNEL_HEAD_DIM || s->heads < 1 || s->kv_heads < 1 || s->heads % s->kv_heads ||
      s->hidden < 8 || s->hidden % 8 || s->intermediate < 8 || s->intermediate % 8 || p->layers < 1 ||
      p->vocab < 2 || p->block_tokens < 16 || p->block_tokens % 16 || p->pool_blocks < 1 || p->max_tokens < 1 ||
      p->max_requests < 1 || p->max_blocks_per_request < 1 || p->pool_blocks > INT32_MAX)
    return infsim_fail(err, INFSIM_EINPUT,
                       "cluster: model: unsupported shape (head_dim 128, heads a multiple of kv_heads, hidden and "
                       "intermediate multiples of 8, block_tokens a multiple of 16, sizes >= 1)");
  infsim_cmodel *m = calloc(1, sizeof *m);
  if (!m) return infsim_fail(err, INFSIM_ENOMEM, "cluster: model: out of memory");
  m->k = k;
  m->p = *p;
  m->inspect_layer = -1;
  bool cuda = infsim_kernels_backend(k) == INFSIM_KBACKEND_CUDA;
  m->ops = cuda ? icl_ops_cuda() : icl_ops_cpu();
  m->graphs = cuda && p->decode_graphs;
  m->layers = calloc((size_t)p->layers, sizeof *m->layers);
  infsim_status st = INFSIM_OK;
  if (!m->ops)
    st = infsim_fail(err, INFSIM_ENODEV, "cluster: model: this build has no CUDA element-wise ops");
  else if (!m->layers)
    st = infsim_fail(err, INFSIM_ENOMEM, "cluster: model: out of memory");
  if (st == INFSIM_OK) st = make_weights(m, err);
  if (st == INFSIM_OK) st = make_activations(m, err);
  if (st == INFSIM_OK) st = infsim_kernels_sync(k, err);
  if (st != INFSIM_OK) {
    infsim_cmodel_free(m);
    return st;
  }
  *out = m;
  return INFSIM_OK;
}

void infsim_cmodel_free(infsim_cmodel *m) {
  if (!m) return;
  for (int i = 0; i < ICL_GRAPHS; i++) icl_graph_free(m->graph[i].exec);
  if (m->layers)
    for (int64_t l = 0; l < m->p.layers; l++) {
      icl_layer *L = &m->layers[l];
      void *bufs[] = {L->qkv, L->o, L->gate_up, L->down, L->attn_norm, L->mlp_norm, L->k_pool, L->v_pool};
      for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) infsim_kernels_free(m->k, bufs[i]);
    }
  void *bufs[] = {m->embed, m->final_norm, m->lm_head, m->x,      m->xn,      m->qkv,     m->q,
                  m->kk,    m->v,          m->attn,    m->tmp,    m->gu,      m->act,     m->last,
                  m->last_n, m->logits,    m->dec_out, m->dec_lse, m->rem_out, m->rem_lse, m->ints,
                  m->hq,    m->hk,         m->hv,      m->hout,   m->hlse,    m->hints};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) infsim_kernels_free(m->k, bufs[i]);
  free(m->layers);
  free(m->ints_host);
  free(m->rq_host);
  free(m->rk_host);
  free(m->rv_host);
  free(m->hints_host);
  free(m->rout_host);
  free(m->rlse_host);
  free(m->rparts);
  free(m->claim_req);
  free(m->claim_idx);
  free(m->insp_q);
  free(m->insp_k);
  free(m->insp_v);
  free(m->insp_attn);
  free(m);
}

const infsim_cmodel_params *infsim_cmodel_params_of(const infsim_cmodel *m) { return &m->p; }
infsim_kernels *infsim_cmodel_kernels(infsim_cmodel *m) { return m->k; }
int64_t infsim_cmodel_graph_replays(const infsim_cmodel *m) { return m->graph_replays; }

static bool is_decode(const infsim_cmodel_part *pt) { return pt->query_tokens == 1 && pt->context_tokens > 0; }

/* The shape of one forward after its host inputs are laid out. */
typedef struct {
  const infsim_cmodel_part *parts;
  int32_t count;
  int32_t *order; /* decodes first, then prefills: indices into parts */
  int32_t decodes;
  int32_t remote; /* decodes with remote tokens */
  int32_t max_ctx; /* MA grid size: the largest local context after the append (or its bucket) */
  int32_t logits;
  int64_t tokens;
  int64_t *row; /* first row of order[i] */
} icl_plan;

static infsim_status lay_out(infsim_cmodel *m, icl_plan *pl, infsim_error *err) {
  const int64_t B = m->p.max_blocks_per_request, bt = m->p.block_tokens;
  int32_t *h = m->ints_host;
  int32_t n = 0;
  for (int pass = 0; pass < 2; pass++)
    for (int32_t i = 0; i < pl->count; i++)
      if (is_decode(&pl->parts[i]) == (pass == 0)) pl->order[n++] = i;
  int64_t row = 0;
  pl->decodes = pl->remote = pl->max_ctx = pl->logits = 0;
  for (int32_t j = 0; j < pl->count; j++) {
    const infsim_cmodel_part *pt = &pl->parts[pl->order[j]];
    /* Local tokens after the part: the new token stays out when a holder appends it. */
    int64_t local = (int64_t)pt->context_tokens - pt->remote_tokens + (pt->append_remote ? 0 : pt->query_tokens);
    /* The local blocks hold a prefix of the local tokens: remote blocks are
     * whole, except the last block (the one the new token goes to) when a
     * holder appends; then every local block is full. */
    int64_t full_local = (int64_t)pt->context_tokens - pt->remote_tokens;
    if (pt->query_tokens < 1 || pt->context_tokens < 0 || pt->remote_tokens < 0 ||
        pt->remote_tokens > pt->context_tokens || (!pt->append_remote && pt->remote_tokens % bt) ||
        (pt->append_remote && (full_local % bt || pt->remote_tokens == 0 || full_local / bt >= B)) ||
        ((pt->remote_tokens > 0 || pt->append_remote) && !is_decode(pt)) || pt->slot_count > B ||
        local > (int64_t)pt->slot_count * bt || row + pt->query_tokens > m->p.max_tokens)
      return infsim_fail(err, INFSIM_EINPUT,
                         "cluster: model: part %d (request %lld): %d query + %d context tokens (%d remote) do not fit "
                         "%d blocks or the forward's %lld tokens",
                         pl->order[j], (long long)pt->req, pt->query_tokens, pt->context_tokens, pt->remote_tokens,
                         pt->slot_count, (long long)m->p.max_tokens);
    for (int32_t s = 0; s < pt->slot_count; s++) {
      if (pt->slots[s] < 0 || pt->slots[s] >= m->p.pool_blocks)
        return infsim_fail(err, INFSIM_EINPUT, "cluster: model: request %lld: slot %d outside the pool of %lld",
                           (long long)pt->req, pt->slots[s], (long long)m->p.pool_blocks);
      h[m->off_tables + j * B + s] = pt->slots[s];
    }
    for (int32_t s = pt->slot_count; s < B; s++) h[m->off_tables + j * B + s] = 0;
    /* A holder appends the new token: the local append goes to the scratch
     * block past the pool, which nothing reads as KV. */
    if (pt->append_remote) h[m->off_tables + j * B + full_local / bt] = (int32_t)m->p.pool_blocks;
    pl->row[j] = row;
    for (int32_t t = 0; t < pt->query_tokens; t++) {
      int64_t pos = (int64_t)pt->context_tokens + t;
      h[m->off_tokens + row + t] = infsim_cmodel_token(&m->p, pt->req, pt->prompt_tokens, pos);
      h[m->off_pos + row + t] = (int32_t)pos;
    }
    if (is_decode(pt)) {
      h[m->off_dec_pos + pl->decodes] = pt->context_tokens - pt->remote_tokens;
      h[m->off_dec_ctx + pl->decodes] = (int32_t)local;
      if (local > pl->max_ctx) pl->max_ctx = (int32_t)local;
      if (pt->remote_tokens > 0 || pt->append_remote) pl->remote++;
      pl->decodes++;
    }
    h[m->off_logit_rows + pl->logits++] = (int32_t)(row + pt->query_tokens - 1);
    row += pt->query_tokens;
  }
  pl->tokens = row;
  for (int32_t j = 0; j < pl->count; j++) {
    infsim_status st = claim_blocks(m, &pl->parts[pl->order[j]], err);
    if (st != INFSIM_OK) return st;
  }
  return INFSIM_OK;
}

static infsim_status keep(infsim_cmodel *m, uint16_t **dst, const void *src, int64_t elems, infsim_error *err) {
  uint16_t *p = realloc(*dst, (size_t)(elems > 0 ? elems : 1) * 2);
  if (!p) return infsim_fail(err, INFSIM_ENOMEM, "cluster: model: out of memory");
  *dst = p;
  return infsim_kernels_download(m->k, p, src, elems * 2, err);
}

/* Fetches the remote partial of this layer's decodes (the holders' output
 * and LSE for the parts with remote KV) into rem_out / rem_lse, for the MA
 * decode to merge. */
static infsim_status remote_partial(infsim_cmodel *m, const icl_plan *pl, int32_t layer,
                                    const infsim_cmodel_remote *remote, infsim_error *err) {
  const int64_t h = m->p.shape.heads, d = m->p.shape.head_dim, D = pl->decodes;
  infsim_status st;
  /* Rows of the remote partial: neutral (lse -inf, out 0) except the parts with remote KV. */
  for (int64_t i = 0; i < D * h; i++) m->rlse_host[i] = -INFINITY;
  memset(m->rout_host, 0, (size_t)(D * h * d) * 4);
  const int64_t g = m->p.shape.kv_heads;
  int32_t n = 0;
  for (int32_t j = 0; j < D; j++)
    if (pl->parts[pl->order[j]].remote_tokens > 0 || pl->parts[pl->order[j]].append_remote) m->rparts[n++] = j;
  uint16_t *q_all = malloc((size_t)(D * h * d) * 2), *k_all = malloc((size_t)(D * g * d) * 2),
           *v_all = malloc((size_t)(D * g * d) * 2);
  float *out = malloc((size_t)(n * h * d) * 4), *lse = malloc((size_t)(n * h) * 4);
  int32_t *ids = malloc((size_t)n * 4);
  if (!q_all || !k_all || !v_all || !out || !lse || !ids) {
    free(q_all), free(k_all), free(v_all), free(out), free(lse), free(ids);
    return infsim_fail(err, INFSIM_ENOMEM, "cluster: model: out of memory");
  }
  /* Decode rows come first: row j of q, k and v is decode j's (after RoPE). */
  st = infsim_kernels_download(m->k, q_all, m->q, D * h * d * 2, err);
  if (st == INFSIM_OK) st = infsim_kernels_download(m->k, k_all, m->kk, D * g * d * 2, err);
  if (st == INFSIM_OK) st = infsim_kernels_download(m->k, v_all, m->v, D * g * d * 2, err);
  for (int32_t i = 0; i < n && st == INFSIM_OK; i++) {
    memcpy(m->rq_host + i * h * d, q_all + m->rparts[i] * h * d, (size_t)(h * d) * 2);
    memcpy(m->rk_host + i * g * d, k_all + m->rparts[i] * g * d, (size_t)(g * d) * 2);
    memcpy(m->rv_host + i * g * d, v_all + m->rparts[i] * g * d, (size_t)(g * d) * 2);
    ids[i] = pl->order[m->rparts[i]];
  }
  if (st == INFSIM_OK)
    st = remote->attend(remote->self, layer, ids, n, m->rq_host, m->rk_host, m->rv_host, out, lse, err);
  free(k_all), free(v_all);
  for (int32_t i = 0; i < n && st == INFSIM_OK; i++) {
    memcpy(m->rout_host + m->rparts[i] * h * d, out + i * h * d, (size_t)(h * d) * 4);
    memcpy(m->rlse_host + m->rparts[i] * h, lse + i * h, (size_t)h * 4);
  }
  free(q_all), free(out), free(lse), free(ids);
  if (st != INFSIM_OK) return st;
  if ((st = infsim_kernels_upload(m->k, m->rem_out, m->rout_host, D * h * d * 4, err)) != INFSIM_OK) return st;
  return infsim_kernels_upload(m->k, m->rem_lse, m->rlse_host, D * h * 4, err);
}

static infsim_status attention(infsim_cmodel *m, const icl_plan *pl, int32_t layer,
                               const infsim_cmodel_remote *remote, infsim_error *err) {
  const infsim_kernel_model *s = &m->p.shape;
  const int64_t h = s->heads, g = s->kv_heads, d = s->head_dim, B = m->p.max_blocks_per_request;
  icl_layer *L = &m->layers[layer];
  infsim_status st;
  const int32_t D = pl->decodes;
  if (D > 0) {
    if ((st = m->ops->kv_append(m->k, m->kk, m->v, m->ints + m->off_tables, (int32_t)B, m->ints + m->off_dec_pos, D, g,
                                d, m->p.block_tokens, L->k_pool, L->v_pool, err)) != INFSIM_OK)
      return st;
    infsim_ma_decode_args a = {.num_requests = D, .num_q_heads = (int32_t)h, .num_kv_heads = (int32_t)g,
                               .head_dim = (int32_t)d, .block_tokens = m->p.block_tokens,
                               .dtype = INFSIM_KDTYPE_BF16, .q = m->q, .k_pool = L->k_pool, .v_pool = L->v_pool,
                               .block_table = m->ints + m->off_tables, .block_table_stride = (int32_t)B,
                               .context_tokens = m->ints + m->off_dec_ctx, .max_context_tokens = pl->max_ctx,
                               .softmax_scale = 1.0f / sqrtf((float)d), .out = m->dec_out, .lse = m->dec_lse};
    if (pl->remote > 0) {
      /* The holders' partial is merged inside the MA decode (no merge launch). */
      if ((st = remote_partial(m, pl, layer, remote, err)) != INFSIM_OK) return st;
      a.num_remote = 1;
      a.remote_dtype = INFSIM_KDTYPE_F32;
      a.remote_out = m->rem_out;
      a.remote_lse = m->rem_lse;
    }
    if ((st = infsim_kernels_ma_decode(m->k, &a, err)) != INFSIM_OK) return st;
    if ((st = m->ops->cast_f32(m->k, m->dec_out, D * h * d, m->attn, err)) != INFSIM_OK) return st;
  }
  for (int32_t j = D; j < pl->count; j++) {
    const infsim_cmodel_part *pt = &pl->parts[pl->order[j]];
    int64_t r = pl->row[j];
    infsim_prefill_args a = {.num_requests = 1, .num_q_heads = (int32_t)h, .num_kv_heads = (int32_t)g,
                             .head_dim = (int32_t)d, .new_tokens = pt->query_tokens,
                             .past_tokens = pt->context_tokens, .block_tokens = m->p.block_tokens,
                             .dtype = INFSIM_KDTYPE_BF16, .q = (uint16_t *)m->q + r * h * d,
                             .k_new = (uint16_t *)m->kk + r * g * d, .v_new = (uint16_t *)m->v + r * g * d,
                             .k_pool = L->k_pool, .v_pool = L->v_pool, .block_table = m->ints + m->off_tables + j * B,
                             .block_table_stride = (int32_t)B, .softmax_scale = 1.0f / sqrtf((float)d),
                             .out_dtype = INFSIM_KDTYPE_BF16, .out = (uint16_t *)m->attn + r * h * d};
    if ((st = infsim_kernels_prefill(m->k, &a, err)) != INFSIM_OK) return st;
  }
  return INFSIM_OK;
}

static infsim_status gemm(infsim_cmodel *m, int64_t rows, int64_t n, int64_t kdim, const void *a, const void *w,
                          void *c, infsim_error *err) {
  infsim_gemm_args g = {.m = rows, .n = n, .k = kdim, .dtype = INFSIM_KDTYPE_BF16, .a = a, .w = w, .c = c};
  return infsim_kernels_gemm(m->k, &g, err);
}

/* Every launch of one forward after its inputs are on the device. */
static infsim_status launch_all(infsim_cmodel *m, const icl_plan *pl, const infsim_cmodel_remote *remote,
                                infsim_error *err) {
  const infsim_kernel_model *s = &m->p.shape;
  const int64_t T = pl->tokens, H = s->hidden, h = s->heads, g = s->kv_heads, d = s->head_dim, I = s->intermediate;
  const int64_t qkv_n = (h + 2 * g) * d;
  infsim_status st;
  if ((st = m->ops->embed(m->k, m->ints + m->off_tokens, T, m->embed, H, m->x, err)) != INFSIM_OK) return st;
  for (int32_t l = 0; l < m->p.layers; l++) {
    icl_layer *L = &m->layers[l];
    if ((st = m->ops->rmsnorm(m->k, m->x, L->attn_norm, T, H, m->p.norm_eps, m->xn, err)) != INFSIM_OK) return st;
    if ((st = gemm(m, T, qkv_n, H, m->xn, L->qkv, m->qkv, err)) != INFSIM_OK) return st;
    infsim_norm_rope_args nr = {.tokens = (int32_t)T, .num_q_heads = (int32_t)h, .num_kv_heads = (int32_t)g,
                                .head_dim = (int32_t)d, .dtype = INFSIM_KDTYPE_BF16, .qkv = m->qkv,
                                .positions = m->ints + m->off_pos, .eps = m->p.norm_eps,
                                .rope_theta = m->p.rope_theta, .stages = INFSIM_NR_ROPE};
    if ((st = infsim_kernels_norm_rope(m->k, &nr, err)) != INFSIM_OK) return st;
    if ((st = m->ops->split_qkv(m->k, m->qkv, T, h, g, d, m->q, m->kk, m->v, err)) != INFSIM_OK) return st;
    if ((st = attention(m, pl, l, remote, err)) != INFSIM_OK) return st;
    if (l == m->inspect_layer) {
      if ((st = keep(m, &m->insp_q, m->q, T * h * d, err)) != INFSIM_OK) return st;
      if ((st = keep(m, &m->insp_k, m->kk, T * g * d, err)) != INFSIM_OK) return st;
      if ((st = keep(m, &m->insp_v, m->v, T * g * d, err)) != INFSIM_OK) return st;
      if ((st = keep(m, &m->insp_attn, m->attn, T * h * d, err)) != INFSIM_OK) return st;
    }
    if ((st = gemm(m, T, H, h * d, m->attn, L->o, m->tmp, err)) != INFSIM_OK) return st;
    if ((st = m->ops->add(m->k, m->x, m->tmp, T * H, err)) != INFSIM_OK) return st;
    if ((st = m->ops->rmsnorm(m->k, m->x, L->mlp_norm, T, H, m->p.norm_eps, m->xn, err)) != INFSIM_OK) return st;
    if ((st = gemm(m, T, 2 * I, H, m->xn, L->gate_up, m->gu, err)) != INFSIM_OK) return st;
    if ((st = m->ops->silu_mul(m->k, m->gu, T, I, m->act, err)) != INFSIM_OK) return st;
    if ((st = gemm(m, T, H, I, m->act, L->down, m->tmp, err)) != INFSIM_OK) return st;
    if ((st = m->ops->add(m->k, m->x, m->tmp, T * H, err)) != INFSIM_OK) return st;
  }
  if ((st = m->ops->gather_rows(m->k, m->x, m->ints + m->off_logit_rows, pl->logits, H, m->last, err)) != INFSIM_OK)
    return st;
  if ((st = m->ops->rmsnorm(m->k, m->last, m->final_norm, pl->logits, H, m->p.norm_eps, m->last_n, err)) !=
      INFSIM_OK)
    return st;
  return gemm(m, pl->logits, m->p.vocab, H, m->last_n, m->lm_head, m->logits, err);
}

/* The MA grid's context for a captured decode step: a power of two (so
 * that a few graphs serve a growing context), at most what a block table
 * row holds (the kernel sizes its grid by it and checks it fits). */
/* Rows a decode-only forward of n requests is padded to: 1, 2, 4, ..., 32,
 * then a multiple of 32. Padding rows cost little (decode GEMMs read the
 * weights once whatever the rows, and a padding row attends one token), and
 * few sizes keep few graphs. */
static int32_t padded_decodes(const infsim_cmodel *m, int32_t n) {
  int64_t p = n <= 32 ? 1 : (n + 31) / 32 * 32;
  while (n <= 32 && p < n) p *= 2;
  if (p > m->p.max_requests) p = m->p.max_requests;
  if (p > m->p.max_tokens) p = m->p.max_tokens;
  return (int32_t)(p > n ? p : n);
}

/* Dummy decode rows [decodes, to): the fixed token at position 0,
 * appending to and attending the scratch slot (pool_blocks) alone. */
static void pad_rows(infsim_cmodel *m, icl_plan *pl, int32_t to) {
  const int64_t B = m->p.max_blocks_per_request;
  int32_t *h = m->ints_host;
  for (int32_t i = pl->decodes; i < to; i++) {
    h[m->off_tokens + i] = INFSIM_CMODEL_NEXT_TOKEN;
    h[m->off_pos + i] = 0;
    for (int64_t s = 0; s < B; s++) h[m->off_tables + i * B + s] = (int32_t)m->p.pool_blocks;
    h[m->off_dec_pos + i] = 0;
    h[m->off_dec_ctx + i] = 1;
    h[m->off_logit_rows + i] = i;
  }
  pl->decodes = pl->logits = to;
  pl->tokens = to;
}

static int32_t bucket_of(const infsim_cmodel *m, int32_t ctx) {
  int64_t cap = m->p.max_blocks_per_request * m->p.block_tokens, b = 256;
  while (b < ctx) b *= 2;
  return (int32_t)(b < cap ? b : cap);
}

/* Replays the graph of this decode-only plan's (size, bucket), or runs the
 * launches and records them as one (the inputs are on the device already). */
static infsim_status run_graph(infsim_cmodel *m, const icl_plan *pl, infsim_error *err) {
  infsim_status st;
  for (int i = 0; i < ICL_GRAPHS; i++) {
    icl_graph *gr = &m->graph[i];
    if (gr->exec && gr->decodes == pl->decodes && gr->bucket == pl->max_ctx && gr->logits == pl->logits) {
      m->graph_replays++;
      return icl_graph_launch(m->k, gr->exec, err);
    }
  }
  /* First forward of this shape: run it (which also sizes every workspace
   * and plan the kernels keep), then record the same launches for the next. */
  if ((st = launch_all(m, pl, NULL, err)) != INFSIM_OK) return st;
  icl_graph *gr = &m->graph[m->graph_next];
  m->graph_next = (m->graph_next + 1) % ICL_GRAPHS;
  icl_graph_free(gr->exec);
  gr->exec = NULL;
  if ((st = icl_graph_begin(m->k, err)) != INFSIM_OK) return st;
  infsim_status run = launch_all(m, pl, NULL, err);
  void *exec = NULL;
  infsim_error end_err;
  infsim_status end = icl_graph_end(m->k, &exec, &end_err);
  if (run != INFSIM_OK) {
    icl_graph_free(exec);
    return run;
  }
  if (end != INFSIM_OK) {
    if (err) *err = end_err;
    return end;
  }
  *gr = (icl_graph){pl->decodes, pl->max_ctx, pl->logits, exec};
  m->graph_captures++;
  return INFSIM_OK;
}

infsim_status infsim_cmodel_forward(infsim_cmodel *m, const infsim_cmodel_part *parts, int32_t count,
                                    const infsim_cmodel_remote *remote, infsim_error *err) {
  if (count < 1 || count > m->p.max_requests)
    return infsim_fail(err, INFSIM_EINPUT, "cluster: model: %d parts in one forward (1..%lld)", count,
                       (long long)m->p.max_requests);
  int32_t order[count];
  int64_t row[count];
  icl_plan pl = {.parts = parts, .count = count, .order = order, .row = row};
  infsim_status st = lay_out(m, &pl, err);
  if (st != INFSIM_OK) return st;
  if (pl.remote > 0 && !remote)
    return infsim_fail(err, INFSIM_EINPUT, "cluster: model: parts with remote KV but no remote attention");
  m->rows = pl.tokens; /* the real rows: padding comes after them */
  bool decode_only = pl.decodes == count && pl.remote == 0;
  if (decode_only && m->p.pad_decodes) pad_rows(m, &pl, padded_decodes(m, count));
  bool graph = m->graphs && decode_only && m->inspect_layer < 0;
  if (graph) pl.max_ctx = bucket_of(m, pl.max_ctx);
  if ((st = infsim_kernels_upload(m->k, m->ints, m->ints_host, m->ints_count * 4, err)) != INFSIM_OK) return st;
  if (!graph) return launch_all(m, &pl, remote, err);
  return run_graph(m, &pl, err);
}

infsim_status infsim_cmodel_capture_graphs(infsim_cmodel *m, int64_t max_decodes, int64_t *captured,
                                           infsim_error *err) {
  int64_t before = m->graph_captures;
  infsim_status st = INFSIM_OK;
  if (m->graphs && m->p.pad_decodes) {
    int64_t cap = m->p.max_blocks_per_request * m->p.block_tokens;
    int32_t last = 0;
    for (int32_t n = 1; n <= max_decodes && st == INFSIM_OK; n++) {
      int32_t size = padded_decodes(m, n);
      if (size == last) continue;
      last = size;
      for (int64_t b = 256;; b *= 2) {
        /* Padding rows only: they append to and attend the scratch slot. */
        icl_plan pl = {.max_ctx = bucket_of(m, (int32_t)(b < cap ? b : cap))};
        pad_rows(m, &pl, size);
        m->rows = 0;
        st = infsim_kernels_upload(m->k, m->ints, m->ints_host, m->ints_count * 4, err);
        if (st == INFSIM_OK) st = run_graph(m, &pl, err);
        if (st != INFSIM_OK || b >= cap) break;
      }
    }
    if (st == INFSIM_OK) st = infsim_kernels_sync(m->k, err);
  }
  if (captured) *captured = m->graph_captures - before;
  return st;
}

/* Blocks of t tokens. */
static int32_t blocks_of(const infsim_cmodel *m, int64_t t) {
  return (int32_t)((t + m->p.block_tokens - 1) / m->p.block_tokens);
}

infsim_status infsim_cmodel_warm_up(infsim_cmodel *m, int32_t *forwards, infsim_error *err) {
  const int64_t bt = m->p.block_tokens, B = m->p.max_blocks_per_request;
  int32_t ran = 0;
  if (forwards) *forwards = 0;
  /* The longest prefill: a forward's rows, and one token short of a
   * block-table row and of the pool (the decode after it appends one). */
  int64_t longest = m->p.max_tokens;
  if (longest > B * bt - 1) longest = B * bt - 1;
  if (longest > m->p.pool_blocks * bt - 1) longest = m->p.pool_blocks * bt - 1;
  int32_t *slots = malloc((size_t)m->p.pool_blocks * sizeof *slots);
  if (!slots) return infsim_fail(err, INFSIM_ENOMEM, "cluster: model: out of memory");
  for (int64_t i = 0; i < m->p.pool_blocks; i++) slots[i] = (int32_t)i;
  /* Requests -2 and -3: no trace request has a negative id, and -1 marks
   * an unclaimed slot. */
  infsim_status st = INFSIM_OK;
  for (int64_t t = bt < longest ? bt : longest; st == INFSIM_OK; t = t * 2 < longest ? t * 2 : longest) {
    infsim_cmodel_part pre = {.req = -2, .prompt_tokens = (int32_t)t, .query_tokens = (int32_t)t,
                              .slots = slots, .slot_count = blocks_of(m, t)};
    st = infsim_cmodel_forward(m, &pre, 1, NULL, err);
    ran += st == INFSIM_OK;
    if (t == longest) break;
  }
  /* A mixed forward: request -2 decodes after its longest prefill while
   * request -3 prefills in the blocks left (the decode path outside a
   * graph, at a context no graph bucket has). */
  int32_t first = blocks_of(m, longest + 1);
  int64_t second = (m->p.pool_blocks - first) * bt;
  if (second > m->p.max_tokens - 1) second = m->p.max_tokens - 1;
  if (second > B * bt) second = B * bt;
  if (st == INFSIM_OK && second >= 1 && m->p.max_requests >= 2) {
    infsim_cmodel_part mixed[2] = {
        {.req = -2, .prompt_tokens = (int32_t)longest, .query_tokens = 1, .context_tokens = (int32_t)longest,
         .slots = slots, .slot_count = first},
        {.req = -3, .prompt_tokens = (int32_t)second, .query_tokens = (int32_t)second, .slots = slots + first,
         .slot_count = blocks_of(m, second)}};
    st = infsim_cmodel_forward(m, mixed, 2, NULL, err);
    ran += st == INFSIM_OK;
  }
  free(slots);
  /* Leave the model as new: pools zeroed, no slot claimed. */
  for (int64_t l = 0; l < m->p.layers && st == INFSIM_OK; l++) {
    st = infsim_kernels_memset(m->k, m->layers[l].k_pool, 0, pool_bytes(m), err);
    if (st == INFSIM_OK) st = infsim_kernels_memset(m->k, m->layers[l].v_pool, 0, pool_bytes(m), err);
  }
  for (int64_t i = 0; i < m->p.pool_blocks; i++) m->claim_req[i] = -1, m->claim_idx[i] = -1;
  if (st == INFSIM_OK) st = infsim_kernels_sync(m->k, err);
  if (forwards) *forwards = ran;
  return st;
}

infsim_status infsim_cmodel_attend_partial(infsim_cmodel *m, int32_t layer, const infsim_cmodel_query *qs, int32_t n,
                                           const uint16_t *q, const uint16_t *k_new, const uint16_t *v_new,
                                           float *out, float *lse, infsim_error *err) {
  const int64_t h = m->p.shape.heads, g = m->p.shape.kv_heads, d = m->p.shape.head_dim,
                B = m->p.max_blocks_per_request, bt = m->p.block_tokens;
  if (n < 1 || n > m->p.max_requests || layer < 0 || layer >= m->p.layers)
    return infsim_fail(err, INFSIM_EINPUT, "cluster: model: partial of %d queries at layer %d", n, layer);
  int32_t max_ctx = 0, appends = 0;
  int32_t *tables = m->hints_host, *ctx = m->hints_host + n * B, *pos = m->hints_host + n * B + n;
  for (int32_t i = 0; i < n; i++) {
    const infsim_cmodel_query *x = &qs[i];
    if (x->slot_count > B || x->slot_count < 0 || x->tokens < 0 || x->tokens > (int64_t)x->slot_count * bt ||
        (x->append && x->tokens < 1))
      return infsim_fail(err, INFSIM_EINPUT, "cluster: model: partial %d: %d tokens in %d blocks", i, x->tokens,
                         x->slot_count);
    for (int32_t s = 0; s < x->slot_count; s++) {
      int32_t slot = x->slots[s];
      if (slot < 0 || slot >= m->p.pool_blocks)
        return infsim_fail(err, INFSIM_EINPUT, "cluster: model: partial %d: slot %d outside the pool", i, slot);
      /* A holder's blocks must hold the asking request's KV (a block that
       * arrives empty is the request's from its first appended token). */
      bool fresh = x->append && (int64_t)s * bt >= x->tokens - 1 && m->claim_req[slot] < 0;
      if (fresh) {
        m->claim_req[slot] = x->req;
        m->claim_idx[slot] = -1;
      } else if ((int64_t)s * bt < x->tokens && m->claim_req[slot] != x->req) {
        return infsim_fail(err, INFSIM_ERUN,
                           "cluster: model: a query of request %lld reads slot %d, which holds KV of request %lld: "
                           "the block tables and the KV moved have come apart",
                           (long long)x->req, slot, (long long)m->claim_req[slot]);
      }
    }
    for (int32_t s = 0; s < B; s++) tables[i * B + s] = s < x->slot_count ? x->slots[s] : 0;
    ctx[i] = x->tokens;
    /* Rows without an append write theirs to the scratch block past the pool. */
    pos[i] = x->append ? x->tokens - 1 : 0;
    appends += x->append;
    if (x->tokens > max_ctx) max_ctx = x->tokens;
  }
  infsim_status st;
  icl_layer *L = &m->layers[layer];
  if ((st = infsim_kernels_upload(m->k, m->hq, q, n * h * d * 2, err)) != INFSIM_OK) return st;
  if (appends > 0) {
    /* The owner's new token goes into this holder's last block first, so
     * that the partial attends it. Rows without an append are pointed at
     * the scratch block (table row of one entry) for the one launch. */
    int32_t *atab = malloc((size_t)(n * B) * 4);
    if (!atab) return infsim_fail(err, INFSIM_ENOMEM, "cluster: model: out of memory");
    memcpy(atab, tables, (size_t)(n * B) * 4);
    for (int32_t i = 0; i < n; i++)
      if (!qs[i].append) atab[i * B] = (int32_t)m->p.pool_blocks;
    st = infsim_kernels_upload(m->k, m->hints, atab, n * B * 4, err);
    free(atab);
    if (st == INFSIM_OK) st = infsim_kernels_upload(m->k, m->hints + n * B + n, pos, n * 4, err);
    if (st == INFSIM_OK) st = infsim_kernels_upload(m->k, m->hk, k_new, n * g * d * 2, err);
    if (st == INFSIM_OK) st = infsim_kernels_upload(m->k, m->hv, v_new, n * g * d * 2, err);
    if (st == INFSIM_OK)
      st = m->ops->kv_append(m->k, m->hk, m->hv, m->hints, (int32_t)B, m->hints + n * B + n, n, g, d,
                             m->p.block_tokens, L->k_pool, L->v_pool, err);
    if (st != INFSIM_OK) return st;
  }
  if ((st = infsim_kernels_upload(m->k, m->hints, m->hints_host, (n * B + n) * 4, err)) != INFSIM_OK) return st;
  infsim_ma_decode_args a = {.num_requests = n, .num_q_heads = (int32_t)h, .num_kv_heads = (int32_t)g,
                             .head_dim = (int32_t)d, .block_tokens = m->p.block_tokens, .dtype = INFSIM_KDTYPE_BF16,
                             .q = m->hq, .k_pool = L->k_pool, .v_pool = L->v_pool,
                             .block_table = m->hints, .block_table_stride = (int32_t)B,
                             .context_tokens = m->hints + n * B, .max_context_tokens = max_ctx,
                             .softmax_scale = 1.0f / sqrtf((float)d), .out = m->hout, .lse = m->hlse};
  if ((st = infsim_kernels_ma_decode(m->k, &a, err)) != INFSIM_OK) return st;
  if ((st = infsim_kernels_download(m->k, out, m->hout, n * h * d * 4, err)) != INFSIM_OK) return st;
  return infsim_kernels_download(m->k, lse, m->hlse, n * h * 4, err);
}

int64_t infsim_cmodel_block_bytes(const infsim_cmodel *m) {
  return m->p.layers * 2 * m->p.shape.kv_heads * m->p.block_tokens * m->p.shape.head_dim * 2;
}

static infsim_status block_io(infsim_cmodel *m, int32_t slot, void *host, bool write, infsim_error *err) {
  if (slot < 0 || slot >= m->p.pool_blocks)
    return infsim_fail(err, INFSIM_EINPUT, "cluster: model: block slot %d outside the pool of %lld", slot,
                       (long long)m->p.pool_blocks);
  int64_t per = m->p.shape.kv_heads * m->p.block_tokens * m->p.shape.head_dim * 2;
  infsim_status st = INFSIM_OK;
  for (int64_t l = 0; l < m->p.layers && st == INFSIM_OK; l++)
    for (int kv = 0; kv < 2 && st == INFSIM_OK; kv++) {
      char *pool = kv ? m->layers[l].v_pool : m->layers[l].k_pool;
      char *h = (char *)host + (l * 2 + kv) * per;
      st = write ? infsim_kernels_upload(m->k, pool + slot * per, h, per, err)
                 : infsim_kernels_download(m->k, h, pool + slot * per, per, err);
    }
  return st;
}

infsim_status infsim_cmodel_block_read(infsim_cmodel *m, int32_t slot, void *host, infsim_error *err) {
  return block_io(m, slot, host, false, err);
}

infsim_status infsim_cmodel_block_write(infsim_cmodel *m, int32_t slot, const void *host, infsim_error *err) {
  infsim_status st = block_io(m, slot, (void *)host, true, err);
  if (st == INFSIM_OK) m->claim_req[slot] = -1; /* moved KV: whose it is travels with the block table */
  return st;
}

void infsim_cmodel_claim(infsim_cmodel *m, int32_t slot, int64_t req, int32_t index) {
  assert(slot >= 0 && slot < m->p.pool_blocks);
  m->claim_req[slot] = req;
  m->claim_idx[slot] = index;
}

void infsim_cmodel_inspect(infsim_cmodel *m, int32_t layer) { m->inspect_layer = layer; }

const uint16_t *infsim_cmodel_inspected(const infsim_cmodel *m, int64_t *tokens, const uint16_t **k,
                                        const uint16_t **v, const uint16_t **attn) {
  *tokens = m->rows;
  *k = m->insp_k;
  *v = m->insp_v;
  *attn = m->insp_attn;
  return m->insp_q;
}

infsim_status infsim_cmodel_hidden(infsim_cmodel *m, uint16_t *host, infsim_error *err) {
  return infsim_kernels_download(m->k, host, m->x, m->rows * m->p.shape.hidden * 2, err);
}
