/*
** distattn.h: what DistAttention adds to an iteration when a batch's KV
** lives on several instances (docs/distkv.md, "DistAttention cost").
**
** Per layer, for an owner whose batch has KV at remote holders j:
**   query out   Q_j = n_j x H x d x w bytes,
**   partial back P_j = n_j x H x (d + 1) x w bytes (normalized partial and
**                one LSE per head, at wire precision w),
**   holder MA   MA_j = decode_attn(n_j, C_j) on the holder's GPU,
**   remote path R_j = 2 lat_j + Q_j / bw_j + P_j / bw'_j + MA_j,
**                bw_j and bw'_j the rates the queries out and the partials
**                back get: the max-min shares of the step's flows on the
**                route's links (the simulated executor probes the network),
**   merge       M = merge(n_r, n_r + sum_j n_j),
**   local       A = decode_attn(n, C_local),
**   attention   = max(A, max_j R_j) + M with overlap (paper sec. 4),
**                 A + max_j R_j + M without.
** Holders work in parallel with each other, so the slowest one bounds the
** owner's layer: the owner's step ends no earlier than the last partial's
** arrival. A holder pays for the MA it computes for others inside its own
** iterations: L x decode_attn(guest requests, guest tokens) per step.
** Prefill chunks attend to remote KV the same way, with the prefill
** attention curve and the chunk's tokens as queries.
**
** Host memory (the CPU tier) is a holder over PCIe, with its own path:
**   ma     R_j = 2 lat_j + Q_j / bw_j + P_j / bw'_j + C_j x kv / cpu_bw
**          (the CPU streams the KV once: bandwidth-bound),
**   fetch  R_j = lat_j + C_j x kv / bw'_j + decode_attn(n_j, C_j)
**          (the blocks come to the owner's GPU, attended there),
** kv the KV bytes of one token and layer (on one TP shard), merged like
** any holder's partial. A prompt chunk always fetches host KV (its many
** queries make the GPU the place to attend it).
**
** Node relay (policy.distattn_relay: node; docs/distkv.md, "Node
** relay"): the holders of one remote node that get the same queries take
** them through one of them, the relay r (the node's first such holder):
** the queries cross the owner's NIC once, the relay forwards them over
** its node's NVLink, merges the node's partials and sends one back:
**   R_N = lat_r + Q_N / bw_r + max(MA_r, max_i F_i) + merge(n_N, sum n_i)
**         + lat_r + P_N / bw'_r,
**   F_i = 2 hlat_i + Q_i / hbw_i + P_i / hbw'_i + MA_i (relay <-> holder i),
** Q_N and P_N for the queries the node takes (a chunk's tokens; for
** decodes the requests with KV there, at most the sum over its holders),
** and the owner merges one partial per node instead of one per holder. A
** prompt chunk's KV written to a relayed holder goes to it directly
** (owner -> holder over the NIC) in parallel with the queries: F_i starts
** from the later of the two arrivals. Without relay (the paper's
** DistAttention) every holder gets its own copy of the queries.
**
** All times are per layer in ns (double: the cost model rounds once per
** iteration), from the calibrated curves of costmodel.h.
*/
#ifndef INFSIM_DISTATTN_H
#define INFSIM_DISTATTN_H

#include <stdbool.h>
#include <stdint.h>

#include "infsim/costmodel.h"

typedef struct {
  int64_t heads;    /* query heads on one TP shard */
  int64_t head_dim;
  int64_t layers;
  double wire_bytes_per_value; /* 2: fp16 (default), 4: fp32 */
  bool overlap;
  int32_t host_kind;              /* infsim_distattn_holder_kind of host holders (CPU tier) */
  double kv_bytes_per_token_layer; /* one token's K and V, one layer, one TP shard */
  double cpu_attn_bytes_per_s;    /* host memory bandwidth CPU MA reaches, one shard's share */
  int32_t relay;                  /* infsim_distattn_relay (policy.distattn_relay) */
} infsim_distattn_shape;

/* How a step's queries reach the holders on other nodes. */
typedef enum {
  INFSIM_DISTATTN_RELAY_NONE = 0, /* one copy per holder (the paper) */
  INFSIM_DISTATTN_RELAY_NODE = 1  /* one copy per node, fanned out there over NVLink */
} infsim_distattn_relay;

typedef enum {
  INFSIM_HOLDER_GPU = 0,        /* another instance: MA on its GPU */
  INFSIM_HOLDER_HOST_MA = 1,    /* host memory, MA on the CPU (policy.cpu_tier: ma) */
  INFSIM_HOLDER_HOST_FETCH = 2  /* host memory, blocks shipped to the owner each step (fetch) */
} infsim_distattn_holder_kind;

/* One remote holder of a batch's KV, and the route to it. */
typedef struct {
  int64_t requests;       /* n_j: requests (or prefill query tokens) with KV there */
  int64_t context_tokens; /* C_j: their KV tokens there */
  double bytes_per_s;     /* owner -> holder: the rate the step's queries (and KV written) get */
  double back_bytes_per_s; /* holder -> owner: the partials' (or fetched KV's) rate; 0: bytes_per_s */
  int64_t latency_ns;     /* one way */
  int64_t write_bytes;    /* new KV written there this layer (prefill into borrowed blocks) */
  int32_t kind;           /* infsim_distattn_holder_kind */
  /* Node relay (all 0: the holder is reached directly). A relayed holder
   * has via = 1 + the index in h[] of its relay, and the route between
   * them; its bytes_per_s is then the direct route's, which only the KV
   * written there takes. A relay has relay_queries > 0: the queries it
   * takes for its node (decode: requests; prefill: the chunk's tokens). */
  int32_t via;
  int64_t relay_queries;
  double hop_bytes_per_s;      /* relay -> holder */
  double hop_back_bytes_per_s; /* holder -> relay; 0: hop_bytes_per_s */
  int64_t hop_latency_ns;      /* one way */
} infsim_distattn_holder;

typedef struct {
  double local_ns;     /* A */
  double remote_ns;    /* max_j R_j */
  double merge_ns;     /* M */
  double attention_ns; /* the layer's attention, overlap applied */
  double bytes;        /* what crosses the routes to all holders, this layer: Q_j + P_j, KV written or fetched */
} infsim_distattn_layer;

/* Q_j and P_j of n queries. */
double infsim_distattn_query_bytes(const infsim_distattn_shape *s, int64_t queries);
double infsim_distattn_partial_bytes(const infsim_distattn_shape *s, int64_t queries);

/* Node relay's roles over h[0..k) (sets via and relay_queries): on each
 * node but the owner's, the GPU holders taking the step's queries
 * (decode: requests > 0; prefill: context_tokens > 0), when two or more,
 * take them through the first of them. node[j]: holder j's node.
 * queries: decode, the batch's remote requests (a bound on a node's
 * distinct requests beside the sum over its holders); prefill, the
 * chunk's tokens. */
void infsim_distattn_relay_assign(infsim_distattn_holder *h, const int32_t *node, int k, int32_t owner_node,
                                  int64_t queries, bool prefill);

/* A decode step's attention, one layer: n requests over local_context
 * tokens here, of which remote_requests have KV at the k holders. */
infsim_distattn_layer infsim_distattn_decode_layer(const infsim_cost_curves *c, const infsim_distattn_shape *s,
                                                   int64_t requests, int64_t local_context,
                                                   int64_t remote_requests, const infsim_distattn_holder *h, int k);

/* infsim_distattn_decode_layer for holders reached directly (no relay:
 * every via and relay_queries 0), with each holder's micro-attention on
 * its GPU, c->decode_attn_layer_ns(h[j].requests, h[j].context_tokens),
 * given in ma_ns[j] (0 for a holder without requests): a caller pricing
 * the same holders again keeps them. The same result, to the bit. */
infsim_distattn_layer infsim_distattn_decode_layer_direct(const infsim_cost_curves *c, const infsim_distattn_shape *s,
                                                          int64_t requests, int64_t local_context,
                                                          int64_t remote_requests, const infsim_distattn_holder *h,
                                                          int k, const double *ma_ns);

/* What the holders reached directly add to a decode layer (the loop of
 * infsim_distattn_decode_layer_direct over h[0..k)): the slowest one's
 * R_j, the bytes to and from them all, and their partials. It depends on
 * the holders, their micro-attention and s only: a caller pricing the
 * same holders at the same rates again keeps it. */
typedef struct {
  double remote_ns;
  double bytes;
  int64_t partials;
  /* the merge M as last priced with it, for merge_requests remote
   * requests (-1: none yet; infsim_distattn_decode_layer_parts keeps it) */
  int64_t merge_requests;
  double merge_ns;
} infsim_distattn_holders_part;

infsim_distattn_holders_part infsim_distattn_direct_holders(const infsim_distattn_shape *s,
                                                            const infsim_distattn_holder *h, int k,
                                                            const double *ma_ns);

/* infsim_distattn_decode_layer_direct from its holders' part: the same
 * result, to the bit. The part keeps its merge for the next pricing. */
infsim_distattn_layer infsim_distattn_decode_layer_parts(const infsim_cost_curves *c, const infsim_distattn_shape *s,
                                                         int64_t requests, int64_t local_context,
                                                         int64_t remote_requests, infsim_distattn_holders_part *part);

/* A prefill chunk's attention, one layer: `tokens` queries with
 * local_pairs (query, key) pairs here (the causal part and local KV);
 * holder j has h[j].context_tokens earlier tokens (h[j].requests is
 * ignored: every query of the chunk goes there). New KV written to
 * holders (h[j].write_bytes) travels with the partials. */
infsim_distattn_layer infsim_distattn_prefill_layer(const infsim_cost_curves *c, const infsim_distattn_shape *s,
                                                    int64_t tokens, int64_t local_pairs,
                                                    const infsim_distattn_holder *h, int k);

/* What a creditor's iteration gains per step for computing MA over the
 * guest_tokens it holds for guest_requests decoding elsewhere (all layers). */
double infsim_distattn_creditor_step_ns(const infsim_cost_curves *c, const infsim_distattn_shape *s,
                                        int64_t guest_requests, int64_t guest_tokens);

/* The demand of the steady flow of queries and partials between an owner
 * and a holder over a decode run: all layers' Q + P per step / step time. */
double infsim_distattn_steady_bytes_per_s(const infsim_distattn_shape *s, int64_t requests, int64_t step_ns);

#endif
