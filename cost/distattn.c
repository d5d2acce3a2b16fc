/*
** distattn.c: DistAttention's per-layer cost from the calibrated curves
** (distattn.h; formulas and their sources in docs/distkv.md).
**
** The partial is normalized by its own softmax sum and carries one LSE
** per head (DESIGN.md, "DistAttention"), so it is d + 1 values per head;
** the query is d values per head. Both travel at wire precision.
*/
#include "infsim/distattn.h"

#include <assert.h>
#include <math.h>

double infsim_distattn_query_bytes(const infsim_distattn_shape *s, int64_t queries) {
  return (double)queries * (double)s->heads * (double)s->head_dim * s->wire_bytes_per_value;
}

double infsim_distattn_partial_bytes(const infsim_distattn_shape *s, int64_t queries) {
  return (double)queries * (double)s->heads * (double)(s->head_dim + 1) * s->wire_bytes_per_value;
}

/* fmax(a, b) for times (never both zeros of different signs here), as a
 * comparison rather than libm's call: a NaN loses, as with fmax. */
static double max_of(double a, double b) { return a > b || b != b ? a : b; }

static double back_rate(const infsim_distattn_holder *h) {
  return h->back_bytes_per_s > 0 ? h->back_bytes_per_s : h->bytes_per_s;
}

/* R_j without the MA: both latencies, `out` bytes to the holder and
 * `back` bytes from it, each at its direction's rate. */
static double wire_ns(const infsim_distattn_holder *h, double out, double back) {
  assert(h->bytes_per_s > 0);
  return 2.0 * (double)h->latency_ns + (out / h->bytes_per_s + back / back_rate(h)) * 1e9;
}

static double combine(const infsim_distattn_shape *s, infsim_distattn_layer *out) {
  out->attention_ns = s->overlap ? max_of(out->local_ns, out->remote_ns) + out->merge_ns
                                 : out->local_ns + out->remote_ns + out->merge_ns;
  return out->attention_ns;
}

static double hop_back_rate(const infsim_distattn_holder *h) {
  return h->hop_back_bytes_per_s > 0 ? h->hop_back_bytes_per_s : h->hop_bytes_per_s;
}

/* F_i of a relayed holder without its MA: the queries from the relay and
 * the partial back to it, over the node's NVLink. */
static double hop_ns(const infsim_distattn_holder *h, double out, double back) {
  assert(h->hop_bytes_per_s > 0);
  return 2.0 * (double)h->hop_latency_ns + (out / h->hop_bytes_per_s + back / hop_back_rate(h)) * 1e9;
}

void infsim_distattn_relay_assign(infsim_distattn_holder *h, const int32_t *node, int k, int32_t owner_node,
                                  int64_t queries, bool prefill) {
  for (int j = 0; j < k; j++) h[j].via = 0, h[j].relay_queries = 0;
  for (int j = 0; j < k; j++) {
    bool takes = prefill ? h[j].context_tokens > 0 : h[j].requests > 0;
    if (!takes || h[j].kind != INFSIM_HOLDER_GPU || node[j] == owner_node || h[j].via != 0) continue;
    /* j is its node's first holder taking queries: relay for the others */
    int64_t sum = h[j].requests;
    int members = 0;
    for (int i = j + 1; i < k; i++) {
      bool t = prefill ? h[i].context_tokens > 0 : h[i].requests > 0;
      if (!t || h[i].kind != INFSIM_HOLDER_GPU || node[i] != node[j]) continue;
      h[i].via = j + 1;
      sum += h[i].requests;
      members++;
    }
    /* alone on its node: reached directly, as without relay */
    if (members > 0) h[j].relay_queries = prefill ? queries : (sum < queries ? sum : queries);
  }
}

/* R_j of a holder reached directly: q bytes of queries out, p of
 * partials back, kv its KV bytes, gpu_ma its micro-attention on a GPU. */
static inline double direct_remote_ns(const infsim_distattn_shape *s, const infsim_distattn_holder *h, double q,
                                      double p, double kv, double gpu_ma) {
  if (h->kind == INFSIM_HOLDER_HOST_MA) return wire_ns(h, q, p) + kv / s->cpu_attn_bytes_per_s * 1e9;
  if (h->kind == INFSIM_HOLDER_HOST_FETCH)
    return (double)h->latency_ns + kv / back_rate(h) * 1e9 + gpu_ma; /* one way: the blocks come */
  return wire_ns(h, q, p) + gpu_ma;
}

infsim_distattn_holders_part infsim_distattn_direct_holders(const infsim_distattn_shape *s,
                                                            const infsim_distattn_holder *h, int k,
                                                            const double *ma_ns) {
  infsim_distattn_holders_part out = {.merge_requests = -1};
  for (int j = 0; j < k; j++) {
    if (h[j].requests <= 0) continue;
    assert(h[j].via == 0 && h[j].relay_queries == 0);
    double q = infsim_distattn_query_bytes(s, h[j].requests), p = infsim_distattn_partial_bytes(s, h[j].requests);
    double kv = (double)h[j].context_tokens * s->kv_bytes_per_token_layer;
    out.partials += h[j].requests;
    out.remote_ns = max_of(out.remote_ns, direct_remote_ns(s, &h[j], q, p, kv, ma_ns[j]));
    out.bytes += h[j].kind == INFSIM_HOLDER_HOST_FETCH ? kv : q + p;
  }
  return out;
}

infsim_distattn_layer infsim_distattn_decode_layer_parts(const infsim_cost_curves *c, const infsim_distattn_shape *s,
                                                         int64_t requests, int64_t local_context,
                                                         int64_t remote_requests, infsim_distattn_holders_part *part) {
  infsim_distattn_layer out = {0};
  if (requests > 0) out.local_ns = c->decode_attn_layer_ns(c->self, requests, local_context);
  out.remote_ns = part->remote_ns;
  out.bytes = part->bytes;
  if (part->partials > 0) {
    if (part->merge_requests != remote_requests) {
      part->merge_ns = c->merge_layer_ns(c->self, remote_requests, remote_requests + part->partials);
      part->merge_requests = remote_requests;
    }
    out.merge_ns = part->merge_ns;
  }
  combine(s, &out);
  return out;
}

infsim_distattn_layer infsim_distattn_decode_layer_direct(const infsim_cost_curves *c, const infsim_distattn_shape *s,
                                                          int64_t requests, int64_t local_context,
                                                          int64_t remote_requests, const infsim_distattn_holder *h,
                                                          int k, const double *ma_ns) {
  infsim_distattn_holders_part part = infsim_distattn_direct_holders(s, h, k, ma_ns);
  return infsim_distattn_decode_layer_parts(c, s, requests, local_context, remote_requests, &part);
}

infsim_distattn_layer infsim_distattn_decode_layer(const infsim_cost_curves *c, const infsim_distattn_shape *s,
                                                   int64_t requests, int64_t local_context,
                                                   int64_t remote_requests, const infsim_distattn_holder *h, int k) {
  infsim_distattn_layer out = {0};
  if (requests > 0) out.local_ns = c->decode_attn_layer_ns(c->self, requests, local_context);
  int64_t partials = 0;
  for (int j = 0; j < k; j++) {
    if (h[j].requests <= 0 || h[j].via != 0) continue; /* a relayed holder: with its relay */
    double q = infsim_distattn_query_bytes(s, h[j].requests), p = infsim_distattn_partial_bytes(s, h[j].requests);
    double bytes = q + p;
    double kv = (double)h[j].context_tokens * s->kv_bytes_per_token_layer;
    double gpu_ma = c->decode_attn_layer_ns(c->self, h[j].requests, h[j].context_tokens);
    double r = direct_remote_ns(s, &h[j], q, p, kv, gpu_ma);
    if (h[j].relay_queries > 0) {
      /* a relay: the node's queries in, its own MA or the fan-out, the
       * node's merge, one partial per request back */
      int64_t u = h[j].relay_queries, held = h[j].requests;
      double qn = infsim_distattn_query_bytes(s, u), pn = infsim_distattn_partial_bytes(s, u);
      double in = (double)h[j].latency_ns + qn / h[j].bytes_per_s * 1e9, done = in + gpu_ma;
      bytes = qn + pn;
      for (int i = j + 1; i < k; i++) {
        if (h[i].via != j + 1 || h[i].requests <= 0) continue;
        double qi = infsim_distattn_query_bytes(s, h[i].requests), pi = infsim_distattn_partial_bytes(s, h[i].requests);
        done = max_of(done, in + hop_ns(&h[i], qi, pi) + c->decode_attn_layer_ns(c->self, h[i].requests, h[i].context_tokens));
        bytes += qi + pi;
        held += h[i].requests;
      }
      r = done + c->merge_layer_ns(c->self, u, held) + (double)h[j].latency_ns + pn / back_rate(&h[j]) * 1e9;
      partials += u;
    } else {
      partials += h[j].requests;
    }
    out.remote_ns = max_of(out.remote_ns, r);
    out.bytes += h[j].kind == INFSIM_HOLDER_HOST_FETCH ? kv : bytes;
  }
  /* Each request with a remote part merges its local partial and one per
   * holder it has blocks at (per node, relayed). */
  if (partials > 0) out.merge_ns = c->merge_layer_ns(c->self, remote_requests, remote_requests + partials);
  combine(s, &out);
  return out;
}

infsim_distattn_layer infsim_distattn_prefill_layer(const infsim_cost_curves *c, const infsim_distattn_shape *s,
                                                    int64_t tokens, int64_t local_pairs,
                                                    const infsim_distattn_holder *h, int k) {
  infsim_distattn_layer out = {0};
  if (tokens <= 0) return out;
  out.local_ns = c->prefill_attn_layer_ns(c->self, tokens, local_pairs);
  int holders = 0;
  double q = infsim_distattn_query_bytes(s, tokens), p = infsim_distattn_partial_bytes(s, tokens);
  for (int j = 0; j < k; j++) {
    double to = (double)h[j].write_bytes, back = 0; /* new KV goes to the holder */
    double ma = 0;
    if (h[j].via != 0) {
      out.bytes += to; /* its KV goes to it directly; the rest with its relay */
      continue;
    }
    if (h[j].context_tokens > 0 && h[j].kind != INFSIM_HOLDER_GPU) {
      /* host KV comes to the GPU and is attended there */
      back = (double)h[j].context_tokens * s->kv_bytes_per_token_layer;
      ma = c->prefill_attn_layer_ns(c->self, tokens, tokens * h[j].context_tokens);
      holders++;
    } else if (h[j].context_tokens > 0) {
      to += q;
      back = p;
      ma = c->prefill_attn_layer_ns(c->self, tokens, tokens * h[j].context_tokens);
      holders++;
    }
    if (h[j].relay_queries > 0) {
      /* a relay: the queries (and its own new KV) in, then its MA or the
       * fan-out, whichever ends later, the node's merge, one partial back */
      double in = (double)h[j].latency_ns + to / h[j].bytes_per_s * 1e9, done = in + ma;
      int64_t m = 1;
      for (int i = j + 1; i < k; i++) {
        if (h[i].via != j + 1) continue;
        double q_at = in + (double)h[i].hop_latency_ns + q / h[i].hop_bytes_per_s * 1e9;
        double kv_at = h[i].write_bytes > 0
                           ? (double)h[i].latency_ns + (double)h[i].write_bytes / h[i].bytes_per_s * 1e9 : 0;
        double ma_i = c->prefill_attn_layer_ns(c->self, tokens, tokens * h[i].context_tokens);
        done = max_of(done, max_of(q_at, kv_at) + ma_i + (double)h[i].hop_latency_ns + p / hop_back_rate(&h[i]) * 1e9);
        out.bytes += q + p;
        m++;
      }
      double r = done + c->merge_layer_ns(c->self, tokens, tokens * m) + (double)h[j].latency_ns +
                 back / back_rate(&h[j]) * 1e9;
      out.remote_ns = max_of(out.remote_ns, r);
      out.bytes += to + back;
      continue;
    }
    if (to + back > 0) out.remote_ns = max_of(out.remote_ns, wire_ns(&h[j], to, back) + ma);
    out.bytes += to + back;
  }
  /* Every query token merges its local partial and one per holder (per
   * node, relayed). */
  if (holders > 0) out.merge_ns = c->merge_layer_ns(c->self, tokens, tokens * (holders + 1));
  combine(s, &out);
  return out;
}

double infsim_distattn_creditor_step_ns(const infsim_cost_curves *c, const infsim_distattn_shape *s,
                                        int64_t guest_requests, int64_t guest_tokens) {
  if (guest_requests <= 0) return 0;
  return (double)s->layers * c->decode_attn_layer_ns(c->self, guest_requests, guest_tokens);
}

double infsim_distattn_steady_bytes_per_s(const infsim_distattn_shape *s, int64_t requests, int64_t step_ns) {
  assert(step_ns > 0);
  double per_step = (double)s->layers *
                    (infsim_distattn_query_bytes(s, requests) + infsim_distattn_partial_bytes(s, requests));
  return per_step / ((double)step_ns * 1e-9);
}
