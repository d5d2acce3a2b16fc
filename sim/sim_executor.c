/*
** sim_executor.c: the simulated executor (executor.h): prices a batch with
** the cost model on the virtual clock and schedules its end as an engine
** event. A batch of k identical decode steps is priced in closed form
** (costmodel.h's decode runs), so it costs O(1) whatever k; cutting it
** short finds the first step boundary at or after a time (the run's time
** being non-decreasing in its steps) from the step its share of the run's
** time points at, by bisection where that misses.
**
** Every time sum is checked: a batch that would end beyond what int64
** nanoseconds hold (about 292 years) fails the run with the reason rather
** than wrapping or clamping.
*/
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sim_internal.h"

/* Local decode attention of steps [0, k) of the run, one layer. */
static double local_attn_sum(const infsim_sim *s, const sim_exec_instance *x, int64_t k) {
  const infsim_cost_curves *c = &s->cost.curves;
  int64_t n = x->run.requests;
  if (k <= 0) return 0.0;
  if (c->decode_attn_sum_layer_ns != NULL) return c->decode_attn_sum_layer_ns(c->self, n, x->first_context, n, k);
  double sum = 0.0;
  for (int64_t j = 0; j < k; j++) sum += c->decode_attn_layer_ns(c->self, n, x->first_context + j * n);
  return sum;
}

/* The first `steps` steps with every route at the rates its step's
 * transfers get (distattn_step_ns), before any floor, for a run with
 * remote holders: DistAttention's share of the steps added exactly as the
 * same steps one at a time would price it. Without overlap each step pays
 * R + M; with overlap it pays max(0, R - A_j) + M, and A_j only grows, so
 * the sum is R min(k, j*) - sum_{j < min(k, j*)} A_j + k M. The run's
 * own time sums the same A_j over its steps: taken from it when
 * min(k, j*) = k (most runs: local attention rarely hides R). Out of the
 * callers' line: full_rate_run_ns's common case (no remote holders) is
 * vllm-multi's every call. */
static __attribute__((noinline)) int64_t remote_run_ns(const infsim_sim *s, const sim_exec_instance *x,
                                                       int64_t steps) {
  double local_sum = 0.0;
  int64_t base = infsim_cost_decode_run_attn_ns(&s->cost, &x->run, x->first_context, steps, &local_sum);
#ifdef INFSIM_CHECK_INVARIANTS
  assert(base == infsim_cost_decode_run_ns(&s->cost, &x->run, x->first_context, steps));
  assert(local_sum == local_attn_sum(s, x, steps));
#endif
  if (base == INT64_MAX) return base;
  double layers = (double)s->c.distattn.layers;
  double extra = (double)steps * x->da_guest_ns;
  if (!s->c.distattn.overlap) {
    extra = extra + layers * (double)steps * (x->da_remote_ns + x->da_merge_ns);
  } else {
    int64_t k = steps < x->da_cross ? steps : x->da_cross;
    double hidden = (double)k * x->da_remote_ns - (k == steps ? local_sum : local_attn_sum(s, x, k));
    extra = extra + layers * (hidden + (double)steps * x->da_merge_ns);
  }
  return extra < 9.2e18 - (double)base ? base + infsim_cost_round_ns(extra) : INT64_MAX;
}

/* The first `steps` steps with every route at the rates its step's
 * transfers get (distattn_step_ns), before any floor: the creditor's
 * micro-attention for its guests, steps times, beside the run's own. */
static int64_t full_rate_run_ns(const infsim_sim *s, const sim_exec_instance *x, int64_t steps) {
  if (!(x->da_remote_ns <= 0.0)) return remote_run_ns(s, x, steps);
  int64_t base = infsim_cost_decode_run_ns(&s->cost, &x->run, x->first_context, steps);
  if (x->da_guest_ns <= 0.0 || base == INT64_MAX) return base;
  double extra = (double)steps * x->da_guest_ns;
  return extra < 9.2e18 - (double)base ? base + infsim_cost_round_ns(extra) : INT64_MAX;
}

/* The first `steps` steps, each no shorter than the floor its contended
 * routes set: the steps before da_floor_steps take the floor, the rest
 * their full-rate time (steps only grow, so those are the ones above it). */
static int64_t decode_run_ns(const infsim_sim *s, const sim_exec_instance *x, int64_t steps) {
  if (x->da_floor_ns <= 0.0) return full_rate_run_ns(s, x, steps);
  int64_t m = steps < x->da_floor_steps ? steps : x->da_floor_steps;
  int64_t all = full_rate_run_ns(s, x, steps), before = full_rate_run_ns(s, x, m);
  if (all == INT64_MAX) return all;
  double floored = x->da_floor_ns * (double)m;
  return floored < 9.2e18 - (double)(all - before) ? all - before + infsim_cost_round_ns(floored) : INT64_MAX;
}

/* What DistAttention adds to one step of the batch, all layers (distattn.h):
 * on the owner's side, the remote path beyond what local attention hides
 * (or all of it without overlap) and the merge, for its decoding requests
 * and prompt chunks with KV at other instances; on the holder's side, the
 * micro-attention it computes for its guests. Remote KV does not grow over
 * a run of steps (new tokens go to the owner's blocks), so the first
 * step's figure is used for every step of the run; the local attention it
 * is set against grows, so this is an upper bound that stays within one
 * step's growth. */
/* Instances of `instance`'s node, other than it, whose latest batch
 * attends host KV on the CPU and has not ended before now: their CPU
 * micro-attention shares the node's host memory bandwidth
 * (cluster.cpu_attn_GBps is per node) with a batch starting now. */
static int64_t host_ma_neighbours(const infsim_sim *s, int32_t instance, int64_t now_ns) {
  int32_t per = s->c.topology.instances_per_node > 0 ? s->c.topology.instances_per_node : 1;
  int32_t first = instance / per * per, n = 0;
  for (int32_t j = first; j < first + per && j < s->n_instances; j++)
    if (j != instance && s->exec[j].host_ma && s->exec[j].end_ns >= now_ns) n++;
  return n;
}

/* What one step sends to holder h and gets back from it, per layer, as
 * distattn.c prices it: decode queries and partials (a fetch ships the
 * host KV back instead), a prompt chunk's queries and the KV it writes
 * there, and its partials (or the host KV it fetches). With node relay
 * (distattn.h) this is the owner's route to h: decode_queries are the
 * node's at a relay, 0 at a relayed holder (its queries come from the
 * relay), and a relayed holder gets no chunk queries (chunk_queries
 * false) but its KV written. */
static void holder_layer_bytes(const infsim_distattn_shape *shape, const infsim_batch *b, const infsim_batch_holder *h,
                               int32_t kind, bool prefill, double kv_write_bytes, int64_t decode_queries,
                               bool chunk_queries, double *out, double *back) {
  *out = *back = 0.0;
  if (decode_queries > 0 && b->agg.remote_requests > 0) {
    if (kind == INFSIM_HOLDER_HOST_FETCH) {
      *back += (double)h->decode_context_tokens * shape->kv_bytes_per_token_layer;
    } else {
      *out += infsim_distattn_query_bytes(shape, decode_queries);
      *back += infsim_distattn_partial_bytes(shape, decode_queries);
    }
  }
  if (!prefill || b->agg.prefill_tokens <= 0) return;
  *out += kv_write_bytes;
  if (h->prefill_context_tokens <= 0 || !chunk_queries) return;
  if (kind == INFSIM_HOLDER_GPU) {
    *out += infsim_distattn_query_bytes(shape, b->agg.prefill_tokens);
    *back += infsim_distattn_partial_bytes(shape, b->agg.prefill_tokens);
  } else {
    *back += (double)h->prefill_context_tokens * shape->kv_bytes_per_token_layer;
  }
}

/* A new route of the step from `from` to `to` carrying out / back bytes a
 * layer, at bw, the nominal rate of its path (sim_transport_route), until
 * the probe sets its share; its probe entries appended to paths / lens /
 * route. Returns its index. */
static int add_route(const infsim_sim *s, sim_exec_instance *x, int32_t from, int32_t to, double bw, double out,
                     double back, int32_t (*paths)[INFSIM_NET_MAX_PATH], int *lens, int *route, int *dir, int *n) {
  int r = x->da_routes++;
  double layers = (double)s->c.distattn.layers;
  x->da_from[r] = from;
  x->da_holder[r] = to;
  x->da_out_bytes[r] = layers * out;
  x->da_back_bytes[r] = layers * back;
  x->da_out_rate[r] = x->da_back_rate[r] = bw;
  if (out > 0) {
    lens[*n] = infsim_network_route(s->net, from, to, paths[*n]);
    route[*n] = r;
    dir[(*n)++] = 0;
  }
  if (back > 0) {
    lens[*n] = infsim_network_route(s->net, to, from, paths[*n]);
    route[*n] = r;
    dir[(*n)++] = 1;
  }
  return r;
}

/* The nominal rate of the route from `from` to `to` (sim_transport_route). */
static double nominal_bytes_per_s(const infsim_sim *s, int32_t from, int32_t to) {
  double bw = 0;
  int64_t lat = 0;
  sim_transport_route(s, from, to, &bw, &lat);
  return bw;
}

/* Whether the local attention of step j of a decode run starting with
 * batch aggregates a hides R (remote_ns, one layer): A_j >= R, or a
 * context past what int64 holds. */
static bool local_hides(const infsim_cost_curves *c, const infsim_batch_agg *a, int64_t j, double remote_ns) {
  int64_t ctx = a->decode_context_tokens + j * a->decode_requests;
  return ctx < 0 || c->decode_attn_layer_ns(c->self, a->decode_requests, ctx) >= remote_ns;
}

/* The first step in [lo, hi) whose local attention hides R (bisection:
 * A_j grows), hi when none does. */
static int64_t first_hiding_step(const infsim_cost_curves *c, const infsim_batch_agg *a, int64_t lo, int64_t hi,
                                 double remote_ns) {
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (local_hides(c, a, mid, remote_ns)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/* The step's DistAttention terms once its holders' rates are set
 * (distattn_step_ns): the decode layer (R, M, the step j* from which
 * local attention hides R) and a prompt chunk's layer, all layers;
 * returns extra plus what they add to the step. In its callers' line:
 * passing its dozen arguments cost more than most of its work (a kept
 * holders' part, the local attention and j*). */
static inline __attribute__((always_inline)) double priced_layers(
    const infsim_sim *s, const infsim_batch *b, sim_exec_instance *x, int64_t now_ns,
    const infsim_distattn_shape *shape, const infsim_distattn_holder *dec, const infsim_distattn_holder *pre, int k,
    bool chunk, const double *ma_ns, sim_da_memo *m, double extra) {
  const infsim_batch_agg *a = &b->agg;
  const infsim_cost_curves *c = &s->cost.curves;
  /* The node's CPU memory bandwidth, shared equally by the instances
   * attending host KV on it at once; fixed for the batch (as every
   * holder's term is, from its first step). */
  infsim_distattn_shape host;
  if (x->host_ma && a->remote_requests > 0) {
    host = *shape;
    host.cpu_attn_bytes_per_s /= (double)(1 + host_ma_neighbours(s, b->instance, now_ns));
    shape = &host;
  }
  if (a->remote_requests > 0) {
    infsim_distattn_layer l;
    if (ma_ns != NULL) {
      /* Holders reached directly: their part as the memo's last pricing
       * left it while their rates stay (most batches of a decode run). */
      infsim_distattn_holders_part fresh;
      infsim_distattn_holders_part *part =
          m != NULL && m->part_valid && m->part_cpu_bytes_per_s == shape->cpu_attn_bytes_per_s ? &m->part : NULL;
#ifdef INFSIM_CHECK_INVARIANTS
      if (part != NULL) {
        fresh = infsim_distattn_direct_holders(shape, dec, k, ma_ns);
        assert(fresh.remote_ns == part->remote_ns && fresh.bytes == part->bytes && fresh.partials == part->partials);
        assert(part->merge_requests < 0 || part->merge_ns == c->merge_layer_ns(c->self, part->merge_requests,
                                                                               part->merge_requests + part->partials));
      }
#endif
      if (part == NULL) {
        fresh = infsim_distattn_direct_holders(shape, dec, k, ma_ns);
        part = &fresh;
        if (m != NULL) {
          m->part = fresh;
          m->part_cpu_bytes_per_s = shape->cpu_attn_bytes_per_s;
          m->part_valid = true;
          part = &m->part;
        }
      }
      l = infsim_distattn_decode_layer_parts(c, shape, a->decode_requests, a->decode_context_tokens,
                                             a->remote_requests, part);
    } else {
      l = infsim_distattn_decode_layer(c, shape, a->decode_requests, a->decode_context_tokens, a->remote_requests,
                                       dec, k);
    }
    extra += (double)shape->layers * (l.attention_ns - l.local_ns);
    x->da_step_bytes += (double)shape->layers * l.bytes;
    x->da_remote_ns = l.remote_ns;
    x->da_merge_ns = l.merge_ns;
    /* j*: the first step whose local attention hides R (bisection: A_j
     * grows), or the batch's steps when none of them does: pricing reads
     * min(steps, j*) of a run never longer than the batch. A prompt
     * batch is one step priced whole (exec_submit): no j*. */
    int64_t steps = b->steps > 0 ? b->steps : 1, cross = 0; /* (a prompt batch's) */
    if (a->prefill_tokens == 0 && c->decode_attn_grows && steps > 1) {
      /* where A_j is known to grow the bisection finds the first step
       * that hides R: the first step, or none, settle most runs */
      if (local_hides(c, a, 0, l.remote_ns)) cross = 0;
      else if (!local_hides(c, a, steps - 1, l.remote_ns)) cross = steps;
      else cross = first_hiding_step(c, a, 1, steps - 1, l.remote_ns);
#ifdef INFSIM_CHECK_INVARIANTS
      assert(cross == first_hiding_step(c, a, 0, steps, l.remote_ns)); /* the plain bisection's answer */
#endif
    } else if (a->prefill_tokens == 0) {
      cross = first_hiding_step(c, a, 0, steps, l.remote_ns);
    }
    x->da_cross = cross;
  }
  if (chunk) {
    infsim_distattn_layer l = infsim_distattn_prefill_layer(c, shape, a->prefill_tokens, a->prefill_attn_pairs, pre, k);
    extra += (double)shape->layers * (l.attention_ns - l.local_ns);
    x->da_step_bytes += (double)shape->layers * l.bytes;
  }
  return extra;
}

/* Whether m was built for holders of b's instances whose decode parts
 * (requests, KV tokens) are b's: then its holders' kinds, nominal routes,
 * decode holders and micro-attention are b's too (a split prompt's
 * chunks mostly change only their prompt parts). */
static bool memo_decode_same(const sim_da_memo *m, const infsim_batch *b, int32_t count) {
  if (m->holder_count != b->holder_count || m->remote != (b->agg.remote_requests > 0)) return false;
  for (int j = 0; j < count; j++) {
    const infsim_batch_holder *o = &m->holders[j], *h = &b->holders[j];
    if (o->holder != h->holder || o->decode_requests != h->decode_requests ||
        o->decode_context_tokens != h->decode_context_tokens)
      return false;
  }
  return true;
}

/* Sets up m for batch b (distattn_step_ns without relay, before its
 * probe): per holder its kind, nominal route and KV written; per holder
 * with traffic a route and its bytes a step; the probe's entries and
 * their paths. decode_same (memo_decode_same): the per-holder part that
 * depends on the decode parts is kept, but the decode holders' rates,
 * set back to their nominal. */
static void memo_build(const infsim_sim *s, const infsim_batch *b, sim_exec_instance *x, sim_da_memo *m,
                       int32_t count, bool decode_same) {
  const infsim_distattn_shape *shape = &s->c.distattn;
  const infsim_cost_curves *c = &s->cost.curves;
  m->holder_count = b->holder_count;
  m->part_valid = false;
  m->remote = b->agg.remote_requests > 0;
  m->prefill_tokens = b->agg.prefill_tokens;
  memcpy(m->holders, b->holders, (size_t)count * sizeof *b->holders);
  double kv_bytes_per_token_layer = 2.0 * (double)s->cost.model.kv_heads * (double)s->cost.model.head_dim *
                                    (double)s->cost.model.dtype_bytes;
  double layers = (double)shape->layers;
  m->prefill = m->host_ma = m->in_exec = false;
  m->routes = m->n = 0;
  for (int j = 0; j < count && decode_same; j++) {
    const infsim_batch_holder *h = &b->holders[j];
    m->writes[j] = (double)h->write_tokens * kv_bytes_per_token_layer;
    m->dec[j].bytes_per_s = m->dec[j].back_bytes_per_s = m->nominal[j];
    m->prefill |= h->prefill_tokens > 0;
    m->host_ma |= m->kinds[j] == INFSIM_HOLDER_HOST_MA && h->decode_requests > 0;
  }
  for (int j = 0; j < count && !decode_same; j++) {
    const infsim_batch_holder *h = &b->holders[j];
    double bw = 0;
    int64_t lat = 0;
    sim_transport_route(s, b->instance, h->holder, &bw, &lat);
    /* host memory (the CPU tier) per policy.cpu_tier; a prompt chunk fetches it */
    int32_t kind = h->holder >= s->n_instances ? shape->host_kind : INFSIM_HOLDER_GPU;
    m->kinds[j] = kind;
    m->writes[j] = (double)h->write_tokens * kv_bytes_per_token_layer;
    m->nominal[j] = bw;
    /* field by field: a compound literal is zeroed first (rep stos) */
    infsim_distattn_holder *d = &m->dec[j];
    d->requests = h->decode_requests;
    d->context_tokens = h->decode_context_tokens;
    d->bytes_per_s = d->back_bytes_per_s = bw;
    d->latency_ns = lat;
    d->write_bytes = 0;
    d->kind = kind;
    d->via = 0; /* reached directly */
    d->relay_queries = d->hop_latency_ns = 0;
    d->hop_bytes_per_s = d->hop_back_bytes_per_s = 0;
    m->ma[j] = h->decode_requests > 0 ? c->decode_attn_layer_ns(c->self, h->decode_requests, h->decode_context_tokens)
                                      : 0.0;
    m->prefill |= h->prefill_tokens > 0;
    m->host_ma |= kind == INFSIM_HOLDER_HOST_MA && h->decode_requests > 0;
  }
  m->k = count;
  for (int j = 0; j < count; j++) {
    double out = 0, back = 0;
    holder_layer_bytes(shape, b, &b->holders[j], m->kinds[j], m->prefill, (double)(int64_t)m->writes[j],
                       b->holders[j].decode_requests, true, &out, &back);
    if (out <= 0 && back <= 0) continue;
    int r = m->routes++;
    int32_t to = b->holders[j].holder;
    m->route_to[r] = to;
    m->route_of[r] = j;
    m->out_bytes[r] = layers * out;
    m->back_bytes[r] = layers * back;
    if (out > 0) {
      m->lens[m->n] = infsim_network_route(s->net, b->instance, to, m->paths[m->n]);
      m->route[m->n] = r;
      m->entry_holder[m->n] = j;
      m->route_rate[m->n] = &x->da_out_rate[r];
      m->holder_rate[m->n] = &m->dec[j].bytes_per_s;
      m->entry_bytes[m->n] = m->out_bytes[r];
      m->dir[m->n++] = 0;
    }
    if (back > 0) {
      m->lens[m->n] = infsim_network_route(s->net, to, b->instance, m->paths[m->n]);
      m->route[m->n] = r;
      m->entry_holder[m->n] = j;
      m->route_rate[m->n] = &x->da_back_rate[r];
      m->holder_rate[m->n] = &m->dec[j].back_bytes_per_s;
      m->entry_bytes[m->n] = m->back_bytes[r];
      m->dir[m->n++] = 1;
    }
  }
}

#ifdef INFSIM_CHECK_INVARIANTS
/* Whether entry i of m writes holder j's (route r's, with `route`) rate
 * of direction dir: only entries with a link get a share from the probe. */
static bool entry_writes(const sim_da_memo *m, int j, int dir, bool route) {
  for (int i = 0; i < m->n; i++)
    if (m->lens[i] > 0 && m->dir[i] == dir && (route ? m->route[i] : m->entry_holder[i]) == j) return true;
  return false;
}

/* What skipping the resets to the nominal rates assumes of a memo priced
 * before: the rates no entry writes are still at their nominal (the
 * holders' in the memo; the routes' in x too when they are the memo's). */
static void check_unwritten_nominal(const sim_da_memo *m, const sim_exec_instance *x, bool routes) {
  for (int j = 0; j < m->k; j++) {
    assert(entry_writes(m, j, 0, false) || m->dec[j].bytes_per_s == m->nominal[j]);
    assert(entry_writes(m, j, 1, false) || m->dec[j].back_bytes_per_s == m->nominal[j]);
  }
  for (int r = 0; r < m->routes && routes; r++) {
    assert(entry_writes(m, r, 0, true) || x->da_out_rate[r] == m->nominal[m->route_of[r]]);
    assert(entry_writes(m, r, 1, true) || x->da_back_rate[r] == m->nominal[m->route_of[r]]);
  }
}

/* m, its holders' rates at their nominal, as memo_build makes it afresh
 * for batch b: the memo kept, or rebuilt keeping its decode parts. */
static void check_memo_as_built(const infsim_sim *s, const infsim_batch *b, sim_exec_instance *x,
                                const sim_da_memo *m, int32_t count) {
  sim_da_memo *fresh = aligned_alloc(_Alignof(sim_da_memo), sizeof *fresh);
  if (fresh == NULL) return;
  memo_build(s, b, x, fresh, count, false);
  assert(fresh->k == m->k && fresh->routes == m->routes && fresh->n == m->n && fresh->prefill == m->prefill &&
         fresh->host_ma == m->host_ma);
  assert(memcmp(fresh->kinds, m->kinds, (size_t)m->k * sizeof *m->kinds) == 0);
  assert(memcmp(fresh->nominal, m->nominal, (size_t)m->k * sizeof *m->nominal) == 0);
  assert(memcmp(fresh->dec, m->dec, (size_t)m->k * sizeof *m->dec) == 0);
  assert(memcmp(fresh->writes, m->writes, (size_t)m->k * sizeof *m->writes) == 0);
  assert(memcmp(fresh->ma, m->ma, (size_t)m->k * sizeof *m->ma) == 0);
  assert(memcmp(fresh->out_bytes, m->out_bytes, (size_t)m->routes * sizeof *m->out_bytes) == 0);
  assert(memcmp(fresh->back_bytes, m->back_bytes, (size_t)m->routes * sizeof *m->back_bytes) == 0);
  assert(memcmp(fresh->route_to, m->route_to, (size_t)m->routes * sizeof *m->route_to) == 0);
  assert(memcmp(fresh->lens, m->lens, (size_t)m->n * sizeof *m->lens) == 0);
  for (int i = 0; i < m->n; i++)
    assert(memcmp(fresh->paths[i], m->paths[i], (size_t)m->lens[i] * sizeof m->paths[i][0]) == 0);
  assert(memcmp(fresh->dir, m->dir, (size_t)m->n * sizeof *m->dir) == 0);
  assert(memcmp(fresh->entry_bytes, m->entry_bytes, (size_t)m->n * sizeof *m->entry_bytes) == 0);
  free(fresh);
}
#endif

/* distattn_step_ns without node relay: the setup before the probe is
 * the instance's memo, built again only when the batch's holders (or
 * whether it has remote decodes, or its prompt tokens) differ from its
 * last batch with holders; the probe and all that follows are done for
 * every batch, so the price is the one the setup made afresh gives. */
static double direct_step_ns(const infsim_sim *s, const infsim_batch *b, sim_exec_instance *x, int64_t now_ns,
                             double extra) {
  const infsim_batch_agg *a = &b->agg;
  sim_da_memo *m = x->memo;
  if (m == NULL && (m = x->memo = aligned_alloc(_Alignof(sim_da_memo), sizeof *m)) != NULL) m->holder_count = -1;
  sim_da_memo *scratch = NULL; /* out of memory for a memo: a batch's own, freed below */
  if (m == NULL && (m = scratch = aligned_alloc(_Alignof(sim_da_memo), sizeof *m)) != NULL) m->holder_count = -1;
  if (m == NULL) abort(); /* as the KV manager's accessors: pricing cannot fail */
  int32_t count = b->holder_count < INFSIM_KV_MAX_HOLDINGS ? b->holder_count : INFSIM_KV_MAX_HOLDINGS;
  /* The prompt tokens count only where a holder takes a chunk's queries
   * (m->prefill, from the holders): a decode run and a prompt batch with
   * the same split requests decoding share the setup. */
  /* The rates are at their nominal until the probe sets their shares:
   * memo_build sets the holders', a new memo's first pricing the routes'
   * (the instance's, in_exec false); a kept memo's pricings write the
   * same entries each time, every entry with a link a finite share, so
   * the rest stay at their nominal and need no reset. */
  bool routes_nominal = false;
  if (m->holder_count != b->holder_count || m->remote != (a->remote_requests > 0) ||
      memcmp(m->holders, b->holders, (size_t)count * sizeof *b->holders) != 0 ||
      (m->prefill && m->prefill_tokens != a->prefill_tokens)) {
    bool decode_same = memo_decode_same(m, b, count);
    memo_build(s, b, x, m, count, decode_same);
    m->paths_id = ++x->da_paths_named; /* new entries (mostly the same paths: compared once) */
    routes_nominal = false;
#ifdef INFSIM_CHECK_INVARIANTS
    if (decode_same) check_memo_as_built(s, b, x, m, count); /* the decode parts kept */
#endif
  } else {
    routes_nominal = m->in_exec;
#ifdef INFSIM_CHECK_INVARIANTS
    check_unwritten_nominal(m, x, routes_nominal);
    for (int j = 0; j < m->k; j++) m->dec[j].bytes_per_s = m->dec[j].back_bytes_per_s = m->nominal[j];
    check_memo_as_built(s, b, x, m, count);
#endif
  }
  x->host_ma = m->host_ma;
  x->da_routes = m->routes;
  /* The routes' ends and bytes: as the instance's last batch with holders
   * left them when it was priced from this memo too (nothing else writes
   * them without relay); the rates each time. */
  for (int r = 0; r < m->routes && !m->in_exec; r++) {
    x->da_from[r] = b->instance;
    x->da_holder[r] = m->route_to[r];
    x->da_out_bytes[r] = m->out_bytes[r];
    x->da_back_bytes[r] = m->back_bytes[r];
  }
  m->in_exec = m != scratch;
#ifdef INFSIM_CHECK_INVARIANTS
  for (int r = 0; r < m->routes; r++)
    assert(x->da_from[r] == b->instance && x->da_holder[r] == m->route_to[r] &&
           x->da_out_bytes[r] == m->out_bytes[r] && x->da_back_bytes[r] == m->back_bytes[r]);
#endif
  for (int r = 0; r < m->routes && !routes_nominal; r++)
    x->da_out_rate[r] = x->da_back_rate[r] = m->nominal[m->route_of[r]]; /* until the probe sets its share */
  /* The step's traffic, per route and direction, and the rate each gets:
   * its max-min share beside the step's other transfers (the owner's NIC
   * or NVLink carries all of its holders' queries out and partials in at
   * once) and the flows already on those links (other runs' steady flows,
   * KV moves). Every entry is a holder's own route: its rate is the
   * holder's too (a route left at its nominal rate keeps the holder's
   * nominal one). */
  double rates[2 * INFSIM_KV_MAX_HOLDINGS];
  /* A kept memo priced before holds its last answer (below): the probe
   * need not copy it out again (checked builds read it: copied). */
  bool rates_held = routes_nominal;
#ifdef INFSIM_CHECK_INVARIANTS
  rates_held = false;
#endif
  bool again = infsim_network_probe_keyed_id(s->net, b->instance, m != scratch ? m->paths_id : 0, m->n,
                                             (const int32_t(*)[INFSIM_NET_MAX_PATH])m->paths, m->lens, rates,
                                             rates_held);
  /* (each entry's route and holder rate, by the pointers memo_build set;
   * a kept memo priced before, whose probe gives its last answer again,
   * has them already: that answer was written there last, and nothing
   * else writes them) */
  bool written = again && routes_nominal;
  if (!written) m->part_valid = false; /* the holders' rates are written below */
#ifdef INFSIM_CHECK_INVARIANTS
  for (int i = 0; i < m->n && written; i++)
    assert(!isfinite(rates[i]) || *m->route_rate[i] == rates[i]); /* (the holders' were reset above) */
  written = false; /* checked builds reset the holders' rates above: written afresh */
#endif
  for (int i = 0; i < m->n && !written; i++) {
    double rate = rates[i];
    if (!isfinite(rate)) continue; /* the path's nominal rate */
    assert(rate > 0);
    assert(m->route_rate[i] == (m->dir[i] == 0 ? &x->da_out_rate[m->route[i]] : &x->da_back_rate[m->route[i]]));
    assert(m->holder_rate[i] == (m->dir[i] == 0 ? &m->dec[m->entry_holder[i]].bytes_per_s
                                                : &m->dec[m->entry_holder[i]].back_bytes_per_s));
    *m->route_rate[i] = *m->holder_rate[i] = rate;
  }
  bool chunk = m->prefill && a->prefill_tokens > 0;
  infsim_distattn_holder pre[INFSIM_KV_MAX_HOLDINGS];
  /* The prompt chunk's holders: only for a batch with a chunk. */
  for (int j = 0; j < m->k && chunk; j++) {
    /* the decode holder's route (rates, latency) and no relay (memo_build
     * sets no relay field), with the chunk's parts: a copy and four
     * stores, where a compound literal is zeroed first (rep stos) */
    const infsim_batch_holder *h = &b->holders[j];
    assert(m->dec[j].via == 0 && m->dec[j].relay_queries == 0 && m->dec[j].hop_bytes_per_s == 0 &&
           m->dec[j].hop_back_bytes_per_s == 0 && m->dec[j].hop_latency_ns == 0);
    pre[j] = m->dec[j];
    pre[j].requests = h->prefill_tokens;
    pre[j].context_tokens = h->prefill_context_tokens;
    pre[j].write_bytes = (int64_t)m->writes[j];
    pre[j].kind = m->kinds[j] == INFSIM_HOLDER_GPU ? INFSIM_HOLDER_GPU : INFSIM_HOLDER_HOST_FETCH;
#ifdef INFSIM_CHECK_INVARIANTS
    {
      /* as the batch's entry and its route give it, with the probe's rates */
      double bw = 0;
      int64_t lat = 0;
      sim_transport_route(s, b->instance, h->holder, &bw, &lat);
      double kv_bytes_per_token_layer = 2.0 * (double)s->cost.model.kv_heads * (double)s->cost.model.head_dim *
                                        (double)s->cost.model.dtype_bytes;
      bool fetch = h->holder >= s->n_instances && s->c.distattn.host_kind != INFSIM_HOLDER_GPU;
      infsim_distattn_holder want = {.requests = h->prefill_tokens, .context_tokens = h->prefill_context_tokens,
                                     .bytes_per_s = m->dec[j].bytes_per_s,
                                     .back_bytes_per_s = m->dec[j].back_bytes_per_s, .latency_ns = lat,
                                     .write_bytes = (int64_t)((double)h->write_tokens * kv_bytes_per_token_layer),
                                     .kind = fetch ? INFSIM_HOLDER_HOST_FETCH : INFSIM_HOLDER_GPU};
      assert(memcmp(&want, &pre[j], sizeof want) == 0);
    }
#endif
  }
  extra = priced_layers(s, b, x, now_ns, &s->c.distattn, m->dec, pre, m->k, chunk, m->ma, m != scratch ? m : NULL,
                        extra);
  x->da_memo = m != scratch ? m : NULL;
  if (scratch != NULL) free(scratch);
  return extra;
}

static double distattn_step_ns(const infsim_sim *s, const infsim_batch *b, sim_exec_instance *x, int64_t now_ns) {
  const infsim_batch_agg *a = &b->agg;
  const infsim_cost_curves *c = &s->cost.curves;
  x->host_ma = false;
  if (a->guest_requests != x->guest_requests || a->guest_context_tokens != x->guest_tokens) {
    x->guest_requests = a->guest_requests;
    x->guest_tokens = a->guest_context_tokens;
    x->guest_step_ns = infsim_distattn_creditor_step_ns(c, &s->c.distattn, a->guest_requests, a->guest_context_tokens);
  }
#ifdef INFSIM_CHECK_INVARIANTS
  assert(x->guest_step_ns ==
         infsim_distattn_creditor_step_ns(c, &s->c.distattn, a->guest_requests, a->guest_context_tokens));
#endif
  double extra = x->guest_step_ns;
  x->da_guest_ns = extra;
  x->da_remote_ns = x->da_merge_ns = 0.0;
  x->da_cross = 0;
  x->da_step_bytes = 0.0;
  x->da_routes = 0;
  x->da_memo = NULL;
  if (b->holder_count == 0) return extra; /* most batches */
  if (s->c.distattn.relay != INFSIM_DISTATTN_RELAY_NODE) return direct_step_ns(s, b, x, now_ns, extra);
  const infsim_distattn_shape *shape = &s->c.distattn;
  infsim_distattn_holder dec[INFSIM_KV_MAX_HOLDINGS], pre[INFSIM_KV_MAX_HOLDINGS];
  int32_t kinds[INFSIM_KV_MAX_HOLDINGS];
  double writes[INFSIM_KV_MAX_HOLDINGS];
  int k = 0;
  bool prefill = false;
  double kv_bytes_per_token_layer = 2.0 * (double)s->cost.model.kv_heads * (double)s->cost.model.head_dim *
                                    (double)s->cost.model.dtype_bytes;
  for (int32_t i = 0; i < b->holder_count && k < INFSIM_KV_MAX_HOLDINGS; i++, k++) {
    const infsim_batch_holder *h = &b->holders[i];
    double bw = 0;
    int64_t lat = 0;
    sim_transport_route(s, b->instance, h->holder, &bw, &lat);
    /* host memory (the CPU tier) per policy.cpu_tier; a prompt chunk fetches it */
    int32_t kind = h->holder >= s->n_instances ? shape->host_kind : INFSIM_HOLDER_GPU;
    kinds[k] = kind;
    writes[k] = (double)h->write_tokens * kv_bytes_per_token_layer;
    dec[k] = (infsim_distattn_holder){.requests = h->decode_requests, .context_tokens = h->decode_context_tokens,
                                      .bytes_per_s = bw, .back_bytes_per_s = bw, .latency_ns = lat, .kind = kind};
    prefill |= h->prefill_tokens > 0;
    x->host_ma |= kind == INFSIM_HOLDER_HOST_MA && h->decode_requests > 0;
  }
  bool chunk = prefill && a->prefill_tokens > 0;
  bool relay = shape->relay == INFSIM_DISTATTN_RELAY_NODE; /* off: every holder reached directly (via 0) */
  /* The prompt chunk's holders: read only with a chunk (or by relay's
   * pass), so a decode batch without relay leaves them unset. */
  if (chunk || relay)
    for (int j = 0; j < k; j++) {
      const infsim_batch_holder *h = &b->holders[j];
      pre[j] = (infsim_distattn_holder){.requests = h->prefill_tokens, .context_tokens = h->prefill_context_tokens,
                                        .bytes_per_s = dec[j].bytes_per_s, .back_bytes_per_s = dec[j].bytes_per_s,
                                        .latency_ns = dec[j].latency_ns, .write_bytes = (int64_t)writes[j],
                                        .kind = kinds[j] == INFSIM_HOLDER_GPU ? INFSIM_HOLDER_GPU
                                                                              : INFSIM_HOLDER_HOST_FETCH};
    }
  if (relay) {
    int32_t node[INFSIM_KV_MAX_HOLDINGS];
    for (int j = 0; j < k; j++) node[j] = infsim_network_node_of(s->net, b->holders[j].holder);
    int32_t own = infsim_network_node_of(s->net, b->instance);
    if (a->remote_requests > 0) infsim_distattn_relay_assign(dec, node, k, own, a->remote_requests, false);
    if (chunk) infsim_distattn_relay_assign(pre, node, k, own, a->prefill_tokens, true);
  }
  /* The step's traffic, per route and direction, and the rate each gets:
   * its max-min share beside the step's other transfers (the owner's NIC
   * or NVLink carries all of its holders' queries out and partials in at
   * once) and the flows already on those links (other runs' steady flows,
   * KV moves). A route per holder from the owner; with node relay, one
   * more from the relay to each holder it forwards to. */
  int32_t paths[2 * SIM_DA_MAX_ROUTES][INFSIM_NET_MAX_PATH];
  int lens[2 * SIM_DA_MAX_ROUTES], route[2 * SIM_DA_MAX_ROUTES], dir[2 * SIM_DA_MAX_ROUTES], n = 0;
  int direct[INFSIM_KV_MAX_HOLDINGS], dec_hop[INFSIM_KV_MAX_HOLDINGS], pre_hop[INFSIM_KV_MAX_HOLDINGS];
  double rates[2 * SIM_DA_MAX_ROUTES];
  double layers = (double)shape->layers;
  int entry_holder[2 * SIM_DA_MAX_ROUTES]; /* without relay: the holder of probe entry i */
  for (int j = 0; j < k; j++) {
    double out = 0, back = 0;
    int64_t dq = !relay          ? b->holders[j].decode_requests
                 : dec[j].via != 0 ? 0
                 : dec[j].relay_queries > 0 ? dec[j].relay_queries
                                            : b->holders[j].decode_requests;
    holder_layer_bytes(shape, b, &b->holders[j], kinds[j], prefill, (double)(int64_t)writes[j], dq,
                       !relay || !chunk || pre[j].via == 0, &out, &back);
    direct[j] = -1;
    if (relay) dec_hop[j] = pre_hop[j] = -1;
    if (out <= 0 && back <= 0) continue;
    /* add_route's work, written out: the owner's routes are most of the
     * step's pricing, and a call per holder costs more than its body */
    int r = direct[j] = x->da_routes++;
    int32_t to = b->holders[j].holder;
    x->da_from[r] = b->instance;
    x->da_holder[r] = to;
    x->da_out_bytes[r] = layers * out;
    x->da_back_bytes[r] = layers * back;
    x->da_out_rate[r] = x->da_back_rate[r] = dec[j].bytes_per_s; /* still the route's nominal rate */
    if (out > 0) {
      lens[n] = infsim_network_route(s->net, b->instance, to, paths[n]);
      route[n] = r;
      entry_holder[n] = j;
      dir[n++] = 0;
    }
    if (back > 0) {
      lens[n] = infsim_network_route(s->net, to, b->instance, paths[n]);
      route[n] = r;
      entry_holder[n] = j;
      dir[n++] = 1;
    }
  }
  for (int j = 0; j < k && relay; j++) {
    double dq = 0, dp = 0, cq = 0, cp = 0;
    if (dec[j].via != 0) {
      dq = infsim_distattn_query_bytes(shape, dec[j].requests);
      dp = infsim_distattn_partial_bytes(shape, dec[j].requests);
    }
    if (pre[j].via != 0) {
      cq = infsim_distattn_query_bytes(shape, a->prefill_tokens);
      cp = infsim_distattn_partial_bytes(shape, a->prefill_tokens);
    }
    if (dec[j].via != 0 && pre[j].via == dec[j].via) { /* one relay for both: one route */
      int32_t from = b->holders[dec[j].via - 1].holder;
      int32_t to = b->holders[j].holder;
      dec_hop[j] = pre_hop[j] =
          add_route(s, x, from, to, nominal_bytes_per_s(s, from, to), dq + cq, dp + cp, paths, lens, route, dir, &n);
      continue;
    }
    if (dec[j].via != 0) {
      int32_t from = b->holders[dec[j].via - 1].holder;
      dec_hop[j] = add_route(s, x, from, b->holders[j].holder, nominal_bytes_per_s(s, from, b->holders[j].holder), dq,
                             dp, paths, lens, route, dir, &n);
    }
    if (pre[j].via != 0) {
      int32_t from = b->holders[pre[j].via - 1].holder;
      pre_hop[j] = add_route(s, x, from, b->holders[j].holder, nominal_bytes_per_s(s, from, b->holders[j].holder), cq,
                             cp, paths, lens, route, dir, &n);
    }
  }
  infsim_network_probe_keyed(s->net, b->instance, n, (const int32_t(*)[INFSIM_NET_MAX_PATH])paths, lens, rates);
  if (!relay) {
    /* every entry is a holder's own route: its rate is the holder's too
     * (a route left at its nominal rate keeps the holder's nominal one) */
    for (int i = 0; i < n; i++) {
      if (!isfinite(rates[i])) continue; /* the path's nominal rate */
      assert(rates[i] > 0);
      if (dir[i] == 0) x->da_out_rate[route[i]] = dec[entry_holder[i]].bytes_per_s = rates[i];
      else x->da_back_rate[route[i]] = dec[entry_holder[i]].back_bytes_per_s = rates[i];
    }
    if (chunk)
      for (int j = 0; j < k; j++) {
        pre[j].bytes_per_s = dec[j].bytes_per_s;
        pre[j].back_bytes_per_s = dec[j].back_bytes_per_s;
      }
  }
  for (int i = 0; i < n && relay; i++) {
    if (!isfinite(rates[i])) continue; /* the path's nominal rate */
    assert(rates[i] > 0);
    if (dir[i] == 0) x->da_out_rate[route[i]] = rates[i];
    else x->da_back_rate[route[i]] = rates[i];
  }
  for (int j = 0; j < k && relay; j++) {
    if (direct[j] >= 0) {
      dec[j].bytes_per_s = pre[j].bytes_per_s = x->da_out_rate[direct[j]];
      dec[j].back_bytes_per_s = pre[j].back_bytes_per_s = x->da_back_rate[direct[j]];
    }
    if (dec_hop[j] >= 0 || pre_hop[j] >= 0) {
      int r = dec_hop[j] >= 0 ? dec_hop[j] : pre_hop[j];
      double bw = 0;
      int64_t lat = 0;
      sim_transport_route(s, x->da_from[r], x->da_holder[r], &bw, &lat);
      dec[j].hop_latency_ns = pre[j].hop_latency_ns = lat;
    }
    if (dec_hop[j] >= 0) {
      dec[j].hop_bytes_per_s = x->da_out_rate[dec_hop[j]];
      dec[j].hop_back_bytes_per_s = x->da_back_rate[dec_hop[j]];
    }
    if (pre_hop[j] >= 0) {
      pre[j].hop_bytes_per_s = x->da_out_rate[pre_hop[j]];
      pre[j].hop_back_bytes_per_s = x->da_back_rate[pre_hop[j]];
    }
  }
  return priced_layers(s, b, x, now_ns, shape, dec, pre, k, chunk, NULL, NULL, extra);
}

/* The links of route r's direction dir (0: out from da_from, 1: back). */
static int route_path(const infsim_sim *s, const sim_exec_instance *x, int r, int dir, int32_t *path) {
  return dir == 0 ? infsim_network_route(s->net, x->da_from[r], x->da_holder[r], path)
                  : infsim_network_route(s->net, x->da_holder[r], x->da_from[r], path);
}

static infsim_status time_overflow(const infsim_batch *b, int64_t now_ns, infsim_error *err) {
  return infsim_fail(err, INFSIM_EINPUT,
                     "instance %d: a batch starting at %.3f s (%lld prefill tokens, %lld decodes) ends beyond the "
                     "simulator's time range (2^63 ns, about 292 years): the configuration is too slow for this "
                     "trace",
                     (int)b->instance, (double)now_ns * 1e-9, (long long)b->agg.prefill_tokens,
                     (long long)b->agg.decode_requests);
}

/* a + b, or -1 when it would not fit in int64 (both non-negative). */
static int64_t add_time(int64_t a, int64_t b) { return b > INT64_MAX - a ? -1 : a + b; }

static infsim_status record_row(infsim_sim *s, sim_exec_instance *x, const infsim_batch *b, int64_t end_ns,
                                infsim_error *err) {
  x->row = -1;
  if (!s->c.record_iterations) return INFSIM_OK;
  if (s->n_iterations == s->cap_iterations) {
    size_t cap = s->cap_iterations ? 2 * s->cap_iterations : 1024;
    infsim_iteration_row *rows = realloc(s->iterations, cap * sizeof *rows);
    if (rows == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
    s->iterations = rows;
    s->cap_iterations = cap;
  }
  x->row = (int64_t)s->n_iterations;
  s->iterations[s->n_iterations++] =
      (infsim_iteration_row){b->instance, x->start_ns, end_ns, b->steps, b->agg, b->swap_in_bytes, b->swap_out_bytes};
  return INFSIM_OK;
}

/* A prompt batch's DistAttention traffic, once its step ended: its bytes
 * on every link of each route, and the time they took there at the share
 * the step priced them at. Not flows: a prompt batch is one step, and a
 * steady flow per holder and direction over it doubled the flows in the
 * network (each filling and each step's probe walks them all) for load
 * that lasts one step; other owners' steps and KV moves do not see it. */
static void account_prompt(infsim_sim *s, sim_exec_instance *x) {
  x->da_prompt_pending = false;
  const sim_da_memo *m = x->da_memo;
  if (m != NULL) { /* its entries are the routes' directions with bytes, in this order, with their paths */
    for (int i = 0; i < m->n; i++) {
      double bytes = m->entry_bytes[i], rate = *m->route_rate[i];
#ifdef INFSIM_CHECK_INVARIANTS
      int r = m->route[i];
      int32_t path[INFSIM_NET_MAX_PATH];
      int len = route_path(s, x, r, m->dir[i], path);
      assert(len == m->lens[i] && memcmp(path, m->paths[i], (size_t)len * sizeof *path) == 0 && bytes > 0.0);
      assert(bytes == (m->dir[i] == 0 ? x->da_out_bytes[r] : x->da_back_bytes[r]));
      assert(rate == (m->dir[i] == 0 ? x->da_out_rate[r] : x->da_back_rate[r]));
#endif
      if (m->lens[i] > 0)
        infsim_network_account(s->net, m->paths[i], m->lens[i], bytes, infsim_cost_round_ns(bytes / rate * 1e9));
    }
    return;
  }
  for (int r = 0; r < x->da_routes; r++)
    for (int dir = 0; dir < 2; dir++) {
      double bytes = dir == 0 ? x->da_out_bytes[r] : x->da_back_bytes[r];
      double rate = dir == 0 ? x->da_out_rate[r] : x->da_back_rate[r];
      int32_t path[INFSIM_NET_MAX_PATH];
      int len = route_path(s, x, r, dir, path);
      if (bytes > 0.0 && len > 0)
        infsim_network_account(s->net, path, len, bytes, infsim_cost_round_ns(bytes / rate * 1e9));
    }
}

/* A batch with holders has ended, and the owner's next batch mostly has
 * them too: its pricing reads the owner's memo first (direct_step_ns),
 * which this batch's pricing left milliseconds ago, so beyond the L1 and
 * L2 caches. Its scalars and first holders, on its first three lines,
 * are asked for now, while the scheduler forms that batch. */
static void prefetch_memo(const sim_exec_instance *x) {
  if (x->memo != NULL)
    for (int line = 0; line < 3; line++) __builtin_prefetch((const char *)x->memo + 64 * line);
}

infsim_status sim_executor_run_ended(infsim_sim *s, int32_t instance, infsim_error *err) {
  sim_exec_instance *x = &s->exec[instance];
  if (x->da_prompt_pending) {
    prefetch_memo(x);
    account_prompt(s, x);
  }
  if (x->da_flows == 0) return INFSIM_OK;
  prefetch_memo(x);
  infsim_network_remove_steady_set(s->net, x->da_flow, x->da_flows, s->now_ns);
  x->da_flows = 0;
  return sim_transport_reschedule(s, err);
}

/* A decode run with remote holders: per holder and direction, its
 * traffic is a steady flow of demand = the route's bytes over the run /
 * the run's span, sharing links max-min with KV moves and other runs'
 * flows from its start to its end: the load other owners' steps meet when
 * they take their shares (distattn_step_ns), and the bytes in links.csv.
 * Where a link cannot carry a flow's demand, the flow gets its share, and
 * a step takes at least that route's bytes per step at the share (the
 * link bounds the run's throughput). The price is fixed as of the run's
 * start: flows starting or ending later change the shares, and the next
 * run prices with them. */
/* start_flows' flows of paths[f][0..lens[f]), bytes[f] a step, demand[f]
 * over the run, f < x->da_flows, into the network; the run's floor where
 * a link gives one less than its demand. */
static infsim_status add_flows(infsim_sim *s, sim_exec_instance *x, int64_t now_ns,
                               const int32_t (*paths)[INFSIM_NET_MAX_PATH], const int *lens, const double *bytes,
                               const double *demand, infsim_error *err) {
  double floor_ns = 0.0;
  /* every flow at its demand: no step is held to a share */
  if (infsim_network_add_steady_set(s->net, x->da_flows, paths, lens, demand, now_ns, x->da_flow))
    return sim_transport_reschedule(s, err);
  /* the shares, once every flow of the run competes */
  for (int f = 0; f < x->da_flows; f++) {
    double rate = infsim_network_rate(s->net, x->da_flow[f]);
    if (rate > 0.0 && rate < demand[f] * (1.0 - 1e-9)) floor_ns = fmax(floor_ns, bytes[f] / rate * 1e9);
  }
  if (floor_ns > 0.0) {
    /* the first step at or above the floor (steps only grow) */
    int64_t lo = 0, hi = x->steps;
    while (lo < hi) {
      int64_t mid = lo + (hi - lo) / 2;
      if ((double)(full_rate_run_ns(s, x, mid + 1) - full_rate_run_ns(s, x, mid)) >= floor_ns) hi = mid;
      else lo = mid + 1;
    }
    x->da_floor_ns = floor_ns;
    x->da_floor_steps = lo;
  }
  return sim_transport_reschedule(s, err);
}

/* A decode run's routes grouped into flows, kept for the owner's next
 * run: the key is each route's ends and which of its directions carry
 * bytes (with the route count: whether start_flows' table applies), all
 * the grouping depends on; an owner's runs mostly repeat their holders.
 * of[r][dir]: the flow of route r's direction (-1: none); flows are
 * numbered in the order of their first route, as start_flows makes them. */
typedef struct sim_flow_set_s {
  int routes; /* -1: nothing kept */
  /* the memo whose routes these are (its paths_id; 0: none), and the
   * flows' bytes a step they gave (the memo's bytes, summed as below) */
  uint64_t paths_id;
  double bytes[2 * SIM_DA_MAX_ROUTES];
  int32_t from[SIM_DA_MAX_ROUTES], holder[SIM_DA_MAX_ROUTES];
  uint8_t dirs[SIM_DA_MAX_ROUTES]; /* bit d: direction d has bytes */
  int16_t of[SIM_DA_MAX_ROUTES][2];
  int flows;
  int lens[2 * SIM_DA_MAX_ROUTES];
  int32_t paths[2 * SIM_DA_MAX_ROUTES][INFSIM_NET_MAX_PATH];
} sim_flow_set;

/* Which directions of a route carry bytes (start_flows skips b <= 0). */
static uint8_t route_dirs(double out, double back) {
  return (uint8_t)((out <= 0.0 ? 0 : 1) | (back <= 0.0 ? 0 : 2));
}

/* The bytes per step of the flows of x's routes, when they group as the
 * kept set does (then the set's flow count; else -1): summed route by
 * route in start_flows' order, so bit for bit its sums. */
static int kept_flows(const sim_flow_set *fs, const sim_exec_instance *x, double *bytes) {
  if (fs == NULL || fs->routes != x->da_routes) return -1;
  int seen = 0;
  for (int r = 0; r < x->da_routes; r++) {
    double out = x->da_out_bytes[r], back = x->da_back_bytes[r];
    uint8_t dirs = route_dirs(out, back);
    if (fs->from[r] != x->da_from[r] || fs->holder[r] != x->da_holder[r] || fs->dirs[r] != dirs) return -1;
    for (int dir = 0; dir < 2; dir++) {
      int f = fs->of[r][dir];
      if (f < 0) continue;
      double b = dir == 0 ? out : back;
      if (f == seen) {
        bytes[f] = b;
        seen++;
      } else {
        bytes[f] += b;
      }
    }
  }
  return fs->flows;
}

/* start_flows' grouping of x's routes into flows: paths[f][0..lens[f])
 * and bytes[f] a step for f < the count returned, of[r][dir] each
 * route's flow (-1: none). */
static int group_flows(const infsim_sim *s, const sim_exec_instance *x, int32_t (*paths)[INFSIM_NET_MAX_PATH],
                       int *lens, double *bytes, int16_t (*of)[2]) {
  int n = 0;
  bool per_path = s->c.distattn_flow_per_path;
  /* a table for up to 32 flows (at most half full); a run of more routes
   * looks its flows up one by one */
  enum { FLOW_TABLE = 64 };
  int8_t by_ends[FLOW_TABLE];
  bool table = 2 * x->da_routes <= FLOW_TABLE / 2;
  if (per_path && table) memset(by_ends, 0xff, sizeof by_ends);
  for (int r = 0; r < x->da_routes; r++)
    for (int dir = 0; dir < 2; dir++) {
      double b = dir == 0 ? x->da_out_bytes[r] : x->da_back_bytes[r];
      of[r][dir] = -1;
      if (b <= 0.0) continue;
      int f = n;
      lens[f] = route_path(s, x, r, dir, paths[f]);
      if (lens[f] == 0) continue;
      /* routes over the same links (holders on one other node) share one
       * flow, found by a path's ends (an owner's routes out share their
       * first link, those back their last) in a small open-addressed
       * table; the middle links, where there are any, are compared */
      int len = lens[f], g = -1;
      int32_t first = paths[f][0], last = paths[f][len - 1];
      unsigned h = ((unsigned)first * 31u + (unsigned)last) & (FLOW_TABLE - 1);
      for (int c = 0; per_path && (table ? by_ends[h] >= 0 : c < f); c++, h = (h + 1) & (FLOW_TABLE - 1)) {
        int e = table ? by_ends[h] : c;
        if (paths[e][0] != first || paths[e][lens[e] - 1] != last || lens[e] != len) continue;
        int k = 1;
        while (k < len - 1 && paths[e][k] == paths[f][k]) k++;
        if (k >= len - 1) {
          g = e;
          break;
        }
      }
      if (g >= 0) {
        bytes[g] += b;
        of[r][dir] = (int16_t)g;
        continue;
      }
      if (per_path && table) by_ends[h] = (int8_t)f;
      bytes[f] = b;
      of[r][dir] = (int16_t)f;
      n++;
    }
  return n;
}

static infsim_status start_flows(infsim_sim *s, sim_exec_instance *x, int64_t now_ns, infsim_error *err) {
  x->da_floor_ns = 0.0;
  x->da_floor_steps = 0;
  if (x->da_routes == 0 || x->steps < 1) return INFSIM_OK;
  double span_s = (double)(x->lead_ns + x->compute_ns) * 1e-9;
  if (!(span_s > 0.0)) return INFSIM_OK;
  double bytes[2 * SIM_DA_MAX_ROUTES], demand[2 * SIM_DA_MAX_ROUTES];
  int32_t paths[2 * SIM_DA_MAX_ROUTES][INFSIM_NET_MAX_PATH];
  int lens[2 * SIM_DA_MAX_ROUTES];
  infsim_network_sync(s->net, now_ns);
  sim_flow_set *fs = x->flow_set;
  if (fs == NULL && (fs = x->flow_set = malloc(sizeof *fs)) != NULL) {
    fs->routes = -1;
    fs->paths_id = 0;
  }
  /* The routes of the memo the set was kept for (the same ends, bytes
   * and order: the same grouping and sums), or compared route by route. */
  uint64_t paths_id = x->da_memo != NULL ? x->da_memo->paths_id : 0;
  int kept = -1;
  if (fs != NULL && paths_id != 0 && fs->routes >= 0 && fs->paths_id == paths_id) {
    kept = fs->flows;
#ifdef INFSIM_CHECK_INVARIANTS
    double compared[2 * SIM_DA_MAX_ROUTES];
    assert(kept_flows(fs, x, compared) == kept && memcmp(compared, fs->bytes, (size_t)kept * sizeof *bytes) == 0);
#endif
  } else if ((kept = kept_flows(fs, x, bytes)) >= 0) {
    fs->paths_id = paths_id;
    memcpy(fs->bytes, bytes, (size_t)kept * sizeof *bytes);
  }
  if (kept >= 0) { /* the set's flows, their bytes a step in fs->bytes */
#ifdef INFSIM_CHECK_INVARIANTS
    double fresh_bytes[2 * SIM_DA_MAX_ROUTES];
    int16_t fresh_of[SIM_DA_MAX_ROUTES][2];
    int fresh = group_flows(s, x, paths, lens, fresh_bytes, fresh_of);
    assert(fresh == kept);
    for (int f = 0; f < kept; f++) {
      assert(fresh_bytes[f] == fs->bytes[f] && lens[f] == fs->lens[f]);
      assert(memcmp(paths[f], fs->paths[f], (size_t)lens[f] * sizeof paths[f][0]) == 0);
    }
#endif
    x->da_flows = kept;
    for (int f = 0; f < kept; f++) demand[f] = fs->bytes[f] * (double)x->steps / span_s;
    return add_flows(s, x, now_ns, (const int32_t(*)[INFSIM_NET_MAX_PATH])fs->paths, fs->lens, fs->bytes, demand,
                     err);
  }
  int16_t of[SIM_DA_MAX_ROUTES][2];
  x->da_flows = group_flows(s, x, paths, lens, bytes, of);
  if (fs != NULL) { /* kept for the owner's next run */
    fs->routes = x->da_routes;
    fs->flows = x->da_flows;
    fs->paths_id = paths_id;
    memcpy(fs->bytes, bytes, (size_t)x->da_flows * sizeof *bytes);
    for (int r = 0; r < x->da_routes; r++) {
      fs->from[r] = x->da_from[r];
      fs->holder[r] = x->da_holder[r];
      fs->dirs[r] = route_dirs(x->da_out_bytes[r], x->da_back_bytes[r]);
      fs->of[r][0] = of[r][0];
      fs->of[r][1] = of[r][1];
    }
    for (int f = 0; f < x->da_flows; f++) {
      fs->lens[f] = lens[f];
      memcpy(fs->paths[f], paths[f], (size_t)lens[f] * sizeof paths[f][0]);
    }
  }
  for (int f = 0; f < x->da_flows; f++) demand[f] = bytes[f] * (double)x->steps / span_s;
  return add_flows(s, x, now_ns, (const int32_t(*)[INFSIM_NET_MAX_PATH])paths, lens, bytes, demand, err);
}

static infsim_status exec_submit(void *self, const infsim_batch *b, int64_t now_ns, int64_t *end_ns,
                                 infsim_error *err) {
  infsim_sim *s = self;
  sim_exec_instance *x = &s->exec[b->instance];
  x->da_prompt_pending = false; /* a prompt batch that never ended (its instance lost) carried nothing */
  /* none left: a run ends before the next (the call only when it has flows) */
  infsim_status st = x->da_flows > 0 ? sim_executor_run_ended(s, b->instance, err) : INFSIM_OK;
  if (st != INFSIM_OK) return st;
  x->da_floor_ns = 0.0;
  int64_t lead = add_time(infsim_cost_transfer_ns(b->swap_out_bytes, s->c.pcie_bytes_per_s, 0),
                          infsim_cost_transfer_ns(b->swap_in_bytes, s->c.pcie_bytes_per_s, 0));
  int64_t compute;
  x->decode_only = b->agg.prefill_tokens == 0;
  x->distattn_step_ns = distattn_step_ns(s, b, x, now_ns);
  if (!x->decode_only) x->da_remote_ns = x->da_guest_ns = 0.0; /* a prompt batch: one step, priced below */
  /* The compute load now (the clock term; 1 with it off): the latest
   * batch's compute share through its compute (to its end after cuts),
   * idle since. */
  const infsim_cost_curves *cc = &s->cost.curves;
  int64_t busy_from = x->start_ns + x->lead_ns, busy_to = x->end_ns < now_ns ? x->end_ns : now_ns;
  double busy_u = infsim_cost_busy_fraction(cc, x->busy_u_at_start, busy_to - busy_from, x->compute_share);
  busy_u = infsim_cost_busy_fraction(cc, busy_u, now_ns - busy_to, 0.0);
  if (!x->decode_only) {
    assert(b->steps == 1);
    compute = infsim_cost_iteration_busy_ns(&s->cost, &b->agg, busy_u);
    if (compute != INT64_MAX && x->distattn_step_ns > 0.0)
      compute = x->distattn_step_ns < 9.2e18 - (double)compute ? compute + infsim_cost_round_ns(x->distattn_step_ns)
                                                               : INT64_MAX;
  } else {
    /* A run's fixed part depends on its size only: kept per size (a
     * size's fixed part is > 0; 0: not priced yet) */
    int64_t n = b->agg.decode_requests;
    if (n > 0 && n < SIM_RUN_FIXED_SIZES && s->run_fixed_ns[n] > 0.0) {
      x->run = (infsim_decode_run){.fixed_ns = s->run_fixed_ns[n], .requests = n, .first_max_context_tokens = 0};
    } else {
      infsim_cost_decode_run_init(&s->cost, n, &x->run);
      if (n > 0 && n < SIM_RUN_FIXED_SIZES) s->run_fixed_ns[n] = x->run.fixed_ns;
    }
#ifdef INFSIM_CHECK_INVARIANTS
    infsim_decode_run fresh;
    infsim_cost_decode_run_init(&s->cost, b->agg.decode_requests, &fresh);
    assert(fresh.fixed_ns == x->run.fixed_ns && fresh.requests == x->run.requests);
#endif
    x->run.first_max_context_tokens = b->agg.decode_max_context_tokens;
    x->first_context = b->agg.decode_context_tokens;
    compute = decode_run_ns(s, x, b->steps);
  }
  int64_t start = add_time(now_ns, lead < 0 ? INT64_MAX : lead);
  int64_t end = start < 0 || compute == INT64_MAX ? -1 : add_time(start, compute);
  if (end < 0) return time_overflow(b, now_ns, err);
  x->da_prompt_pending = !x->decode_only && x->da_routes > 0;
  if (x->decode_only && x->da_routes > 0) {
    x->steps = b->steps;
    x->lead_ns = lead;
    x->compute_ns = compute;
    st = start_flows(s, x, now_ns, err);
    if (st != INFSIM_OK) return st;
    if (x->da_floor_ns > 0.0) {
      compute = decode_run_ns(s, x, b->steps);
      end = compute == INT64_MAX ? -1 : add_time(start, compute);
      if (end < 0) return time_overflow(b, now_ns, err);
    }
  }
  /* idle through the swap lead */
  x->busy_u_at_start = infsim_cost_busy_fraction(cc, busy_u, lead, 0.0);
  x->compute_share = cc->clock_tau_ns > 0.0 ? infsim_cost_compute_share(&s->cost, &b->agg) : 0.0;
  x->start_ns = now_ns;
  if (s->c.timeline != NULL) x->agg = b->agg;
  x->lead_ns = lead;
  x->steps = b->steps;
  x->compute_ns = compute;
  x->end_ns = end;
  x->generation++;
  *end_ns = end;
  st = record_row(s, x, b, end, err);
  if (st != INFSIM_OK) return st;
  return infsim_event_heap_push(&s->heap, end, EV_ITERATION_DONE, b->instance, x->generation, err);
}

static int64_t exec_cut(void *self, int32_t instance, int64_t t_ns) {
  infsim_sim *s = self;
  sim_exec_instance *x = &s->exec[instance];
  assert(x->decode_only && x->steps > 1);
  int64_t t0 = x->start_ns + x->lead_ns;
  /* The first k in [1, steps) whose end is at or after t_ns, else steps.
   * A run's steps take nearly equal times, so the share of the run's time
   * before t_ns points at k: that step and one beside it settle it almost
   * always; bisection between what they leave. Invariant: steps below lo
   * end before t_ns, and hi is steps or a step ending at or after it. */
  int64_t lo = 1, hi = x->steps;
  int64_t hi_end = -1; /* hi's end once priced (the cut's end: not priced again) */
  double share = x->compute_ns > 0 ? (double)(t_ns - t0) / (double)x->compute_ns : 0.0;
  int64_t guess = share > 0.0 ? (int64_t)ceil(share * (double)x->steps) : 1;
  if (guess < 1) guess = 1;
  if (guess > x->steps - 1) guess = x->steps - 1;
  int64_t e = t0 + decode_run_ns(s, x, guess);
  if (e >= t_ns) {
    hi = guess, hi_end = e;
    if (guess > 1) {
      if ((e = t0 + decode_run_ns(s, x, guess - 1)) >= t_ns) hi = guess - 1, hi_end = e;
      else lo = guess;
    }
  } else {
    lo = guess + 1;
    if (lo < hi) {
      if ((e = t0 + decode_run_ns(s, x, lo)) >= t_ns) hi = lo, hi_end = e;
      else lo++;
    }
  }
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if ((e = t0 + decode_run_ns(s, x, mid)) >= t_ns) hi = mid, hi_end = e;
    else lo = mid + 1;
  }
  if (lo == x->steps) return x->steps;
  int64_t end = hi_end >= 0 ? hi_end : t0 + decode_run_ns(s, x, lo);
  x->steps = lo;
  x->end_ns = end;
  x->generation++;
  if (x->row >= 0) {
    s->iterations[x->row].steps = lo;
    s->iterations[x->row].end_ns = end;
  }
  /* The heap only grows here by one event; a failed push (out of memory)
   * leaves the old end, which the scheduler's step count then contradicts:
   * treat it as fatal. */
  if (infsim_event_heap_push(&s->heap, end, EV_ITERATION_DONE, instance, x->generation, NULL) != INFSIM_OK) abort();
  return lo;
}

/* Whether the first k steps of instance x's run end by t_ns: moves the
 * bracket of exec_steps_done's answer (lo, hi) and keeps the end of the
 * last count found to end after t_ns (*after_end_ns). */
static bool steps_end_by(const infsim_sim *s, const sim_exec_instance *x, int64_t k, int64_t t_ns, int64_t *lo,
                         int64_t *hi, int64_t *after_end_ns) {
  int64_t end = x->start_ns + x->lead_ns + decode_run_ns(s, x, k);
  if (end <= t_ns) {
    *lo = k;
    return true;
  }
  *hi = k - 1;
  *after_end_ns = end;
  return false;
}

static int64_t exec_steps_done(void *self, int32_t instance, int64_t t_ns) {
  infsim_sim *s = self;
  sim_exec_instance *x = &s->exec[instance];
  if (!x->decode_only) return 0;
  /* The most steps whose end is <= t. Invariant: lo steps end by t (0
   * trivially), and no count above hi does. Time only goes forward: the
   * last answer of this run (its steps end by then) is a floor, and while
   * the next step's end is still ahead it is the answer again. */
  int64_t lo = 0, hi = x->steps, after_end = -1;
  if (x->done_generation == x->generation && x->done_at_ns <= t_ns) {
    if (x->done_steps == x->steps || x->done_after_ns > t_ns) {
      x->done_at_ns = t_ns;
      return x->done_steps;
    }
    lo = x->done_steps + 1; /* that step ended at done_after_ns, by t */
  }
  int64_t t0 = x->start_ns + x->lead_ns;
  /* As in exec_cut, the share of the run's time before t points at the
   * answer (steps take nearly equal times): that count and the next
   * settle it almost always; bisection between what they leave. */
  double at = x->compute_ns > 0 ? (double)(t_ns - t0) / (double)x->compute_ns * (double)x->steps : 0.0;
  int64_t guess = at <= 0.0 ? 0 : at >= (double)hi ? hi : (int64_t)floor(at);
  if (guess < lo) guess = lo;
  if (guess > lo && !steps_end_by(s, x, guess, t_ns, &lo, &hi, &after_end)) {
    if (hi > lo) steps_end_by(s, x, hi, t_ns, &lo, &hi, &after_end);
  } else {
    lo = guess; /* known to end by t */
    if (guess < hi) steps_end_by(s, x, guess + 1, t_ns, &lo, &hi, &after_end);
  }
  while (lo < hi) steps_end_by(s, x, lo + (hi - lo + 1) / 2, t_ns, &lo, &hi, &after_end);
  /* hi last moved below a count found to end after t: lo + 1, whose end
   * after_end is (when lo < steps) */
#ifdef INFSIM_CHECK_INVARIANTS
  assert(lo == 0 || t0 + decode_run_ns(s, x, lo) <= t_ns);
  assert(lo == x->steps || (t0 + decode_run_ns(s, x, lo + 1) > t_ns && t0 + decode_run_ns(s, x, lo + 1) == after_end));
#endif
  x->done_generation = x->generation;
  x->done_at_ns = t_ns;
  x->done_steps = lo;
  x->done_after_ns = after_end;
  return lo;
}

bool sim_executor_current(const infsim_sim *s, int32_t instance, uint32_t generation) {
  return s->exec[instance].generation == generation;
}

infsim_executor sim_executor_make(infsim_sim *s) {
  return (infsim_executor){.self = s,
                           .wants_entries = false,
                           .max_steps = 0,
                           .submit = exec_submit,
                           .cut = exec_cut,
                           .steps_done = exec_steps_done};
}
