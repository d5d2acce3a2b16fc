/*
** sim_transport.c: the simulated transport (transport.h) over the
** simulated network (network.h): every message is a flow of its bytes
** along the route between its endpoints, sharing links max-min fairly with
** the flows in flight, and is delivered when the flow ends (its route's
** latency plus its bytes at its share of the links). The gManager is an
** endpoint at its node's host memory. Timers bypass the network.
**
** Control messages (at most INFSIM_CONTROL_MSG_BYTES: heartbeats, borrow
** requests, proposals, acknowledgements) take the route's latency plus
** their bytes at its narrowest link's bandwidth, without entering the
** max-min sharing: they are tiny beside KV moves, and a heartbeat every few
** tens of milliseconds from every instance would otherwise recompute the
** network's rates thousands of times a simulated second. Their bytes count
** in network_bytes, not in links.csv.
**
** DistAttention's per-step traffic (queries out, partials back, a prompt
** chunk's KV written to the holders of its blocks) is priced by the cost
** model inside each step (distattn.h), not sent as messages: its bytes
** are added to network_bytes per finished step. Each step prices them at
** the max-min shares they get on the route's links beside each other and
** the flows there (infsim_network_probe). A decode run's queries and
** partials are also steady flows over the run (sim_executor.c), so they
** share links and are in links.csv; a prompt batch's bytes go into
** links.csv when it ends, not as flows.
**
** Messages in flight live in a pool with a free list, so a message costs no
** allocation once the pool has grown. The network changes rates only when a
** flow starts or ends; one EV_NETWORK event stands at the next such time,
** and a generation number drops events made stale by a newer flow.
*/
#include <math.h>
#include <stdlib.h>

#include "sim_internal.h"

/* The pool doubles (out of line: it grows a few times a run, and its
 * call would give every send and timer a frame). */
static __attribute__((noinline)) infsim_status grow_pool(infsim_sim *s, infsim_error *err) {
  int32_t cap = s->msg_capacity ? 2 * s->msg_capacity : 64;
  msg_slot *slots = realloc(s->msgs, (size_t)cap * sizeof *slots);
  if (slots == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  for (int32_t i = s->msg_capacity; i < cap; i++) {
    slots[i].next_free = i + 1 < cap ? i + 1 : -1;
    slots[i].msg.kind = -1; /* free: net_in_flight skips it */
  }
  s->msgs = slots;
  s->msg_free = s->msg_capacity;
  s->msg_capacity = cap;
  return INFSIM_OK;
}

/* A pool slot for msg, sent at now_ns. */
static inline infsim_status take_slot(infsim_sim *s, const infsim_msg *msg, int64_t now_ns, int32_t *out,
                                      infsim_error *err) {
  if (s->msg_free < 0) {
    infsim_status st = grow_pool(s, err);
    if (st != INFSIM_OK) return st;
  }
  int32_t slot = s->msg_free;
  s->msg_free = s->msgs[slot].next_free;
  s->msgs[slot].msg = *msg;
  s->msgs[slot].sent_ns = now_ns;
  s->msgs[slot].flow = -1;
  if (++s->msgs_in_use > s->msgs_peak) s->msgs_peak = s->msgs_in_use;
  *out = slot;
  return INFSIM_OK;
}

infsim_msg sim_transport_take(infsim_sim *s, int32_t slot, int64_t *sent_ns) {
  infsim_msg m = s->msgs[slot].msg;
  *sent_ns = s->msgs[slot].sent_ns;
  s->msgs[slot].next_free = s->msg_free;
  s->msgs[slot].msg.kind = -1;
  s->msgs[slot].flow = -1;
  s->msg_free = slot;
  s->msgs_in_use--;
  return m;
}

/* The network endpoint of a transport endpoint. */
static int32_t endpoint_of(const infsim_sim *s, int32_t e) {
  if (e == INFSIM_ENDPOINT_GMANAGER) return s->n_instances + s->c.gmanager_node;
  return e;
}

/* Keeps one live EV_NETWORK event at the network's next change. */
infsim_status sim_transport_reschedule(infsim_sim *s, infsim_error *err) {
  int64_t next = infsim_network_next_ns(s->net);
  if (next == s->net_scheduled_ns) return INFSIM_OK;
  s->net_scheduled_ns = next;
  s->net_generation++;
  if (next == INT64_MAX) return INFSIM_OK;
  return infsim_event_heap_push(&s->heap, next, EV_NETWORK, NETWORK_TARGET, s->net_generation, err);
}

/* A message of more than a control message's bytes: a flow along its
 * route. Out of line, so that a control message passes net_send without
 * its frame. */
static __attribute__((noinline)) infsim_status send_as_flow(infsim_sim *s, int32_t slot, int32_t src, int32_t dst,
                                                            int64_t now_ns, infsim_error *err) {
  const infsim_msg *msg = &s->msgs[slot].msg;
  int32_t path[INFSIM_NET_MAX_PATH];
  int len = infsim_network_route(s->net, src, dst, path);
  int64_t id = 0;
  infsim_status st =
      infsim_network_add_flow(s->net, msg->bytes > 0 ? msg->bytes : 0, path, len, now_ns, 0.0, slot, &id, err);
  if (st != INFSIM_OK) return st;
  s->msgs[slot].flow = id;
  return sim_transport_reschedule(s, err);
}

static infsim_status net_send(void *self, const infsim_msg *msg, int64_t now_ns, infsim_error *err) {
  infsim_sim *s = self;
  int32_t slot = 0;
  infsim_status st = take_slot(s, msg, now_ns, &slot, err);
  if (st != INFSIM_OK) return st;
  int64_t bytes = msg->bytes > 0 ? msg->bytes : 0;
  s->bytes_sent += bytes;
  int32_t src = endpoint_of(s, msg->src), dst = endpoint_of(s, msg->dst);
  if (src == dst) /* to itself: no link to cross (an empty route) */
    return infsim_event_heap_push(&s->heap, now_ns, EV_MESSAGE, msg->dst, slot, err);
  if (msg->bytes > INFSIM_CONTROL_MSG_BYTES) return send_as_flow(s, slot, src, dst, now_ns, err);
  /* The route's rate: no path needed. Its latency plus the bytes at its
   * narrowest link, rounded up to a nanosecond (ceil, without the call). */
  double bw = 0;
  int64_t lat = 0;
  sim_transport_route(s, src, dst, &bw, &lat);
  double wire_ns = (double)bytes / bw * 1e9;
  int64_t up = (int64_t)wire_ns;
  if ((double)up < wire_ns) up++;
  return infsim_event_heap_push(&s->heap, now_ns + lat + up, EV_MESSAGE, msg->dst, slot, err);
}

static infsim_status net_timer(void *self, const infsim_msg *msg, int64_t at_ns, infsim_error *err) {
  infsim_sim *s = self;
  int32_t slot = 0;
  infsim_status st = take_slot(s, msg, s->now_ns, &slot, err);
  if (st != INFSIM_OK) return st;
  s->msgs[slot].msg.dst = msg->src; /* a timer goes off where it was set */
  return infsim_event_heap_push(&s->heap, at_ns, EV_MESSAGE, msg->src, slot, err);
}

/* Messages' bytes plus DistAttention's per-step traffic (sim_internal.h). */
static int64_t net_bytes_sent(const void *self) {
  const infsim_sim *s = self;
  return s->bytes_sent + (int64_t)llround(s->distattn_bytes);
}

/* A scan of the pool: asked only when a protocol step times out (a KV
 * move's status probe, a reservation's lease), not per message. A message
 * is in flight at its receiver from the time its first bytes arrive (sent
 * plus the route's latency; a delayed message is sent late) until it is
 * delivered (its slot is freed then). */
static bool net_in_flight(const void *self, const infsim_msg *m, int64_t now_ns) {
  const infsim_sim *s = self;
  for (int32_t i = 0; i < s->msg_capacity; i++) {
    const msg_slot *q = &s->msgs[i];
    if (q->msg.kind != m->kind || q->msg.src != m->src || q->msg.dst != m->dst || q->msg.seq != m->seq ||
        q->msg.a != m->a)
      continue;
    double bw = 0;
    int64_t lat = 0;
    sim_transport_route(s, endpoint_of(s, m->src), endpoint_of(s, m->dst), &bw, &lat);
    if (q->sent_ns + lat <= now_ns) return true;
  }
  return false;
}

/* transport.h's abort: a scan of the pool, as net_in_flight's (asked only
 * when a move is cancelled). A stopped flow leaves the network at now_ns
 * with the bytes it carried (links.csv keeps those); its slot is freed,
 * so it is never delivered. */
static infsim_status net_abort(void *self, const infsim_msg *m, int64_t now_ns, int64_t *unsent_bytes,
                               infsim_error *err) {
  infsim_sim *s = self;
  *unsent_bytes = 0;
  bool stopped = false;
  for (int32_t i = 0; i < s->msg_capacity; i++) {
    msg_slot *q = &s->msgs[i];
    if (q->flow < 0 || q->msg.kind != m->kind || q->msg.src != m->src || q->msg.dst != m->dst ||
        q->msg.seq != m->seq || q->msg.a != m->a)
      continue;
    double carried = infsim_network_remove(s->net, q->flow, now_ns);
    if (carried < 0) continue; /* its flow ended at now_ns: it is being delivered */
    int64_t unsent = q->msg.bytes - (int64_t)llround(carried);
    if (unsent < 0) unsent = 0;
    *unsent_bytes += unsent;
    s->bytes_sent -= unsent;
    int64_t sent_ns = 0;
    (void)sim_transport_take(s, i, &sent_ns);
    stopped = true;
  }
  return stopped ? sim_transport_reschedule(s, err) : INFSIM_OK;
}

static void flow_done(void *ctx, int64_t id, int64_t tag, int64_t at_ns) {
  (void)id;
  (void)at_ns;
  infsim_sim *s = ctx;
  if (s->n_net_done == s->cap_net_done) {
    size_t cap = s->cap_net_done ? 2 * s->cap_net_done : 64;
    int64_t *p = realloc(s->net_done, cap * sizeof *p);
    if (p == NULL) abort(); /* a lost completion would hang the run: fail loudly */
    s->net_done = p;
    s->cap_net_done = cap;
  }
  s->net_done[s->n_net_done++] = tag;
}

infsim_status sim_transport_network_event(infsim_sim *s, uint32_t generation, infsim_error *err) {
  if (generation != s->net_generation) return INFSIM_OK; /* stale */
  s->net_scheduled_ns = INT64_MAX;
  s->n_net_done = 0;
  infsim_network_advance(s->net, s->now_ns, flow_done, s);
  infsim_status st = INFSIM_OK;
  /* Deliver in completion order. A delivery may send more (a new flow),
   * which never advances the network: net_done stays as it is meanwhile. */
  for (size_t i = 0; i < s->n_net_done && st == INFSIM_OK; i++) {
    int64_t sent_ns = 0;
    infsim_msg msg = sim_transport_take(s, (int32_t)s->net_done[i], &sent_ns);
    infsim_timeline_message(s->c.timeline, &msg, sent_ns, s->now_ns);
    st = infsim_sched_deliver(s->sched, &msg, s->now_ns, err);
  }
  if (st != INFSIM_OK) return st;
  return sim_transport_reschedule(s, err);
}

void sim_transport_route(const infsim_sim *s, int32_t src, int32_t dst, double *bytes_per_s, int64_t *latency_ns) {
  infsim_network_route_rate(s->net, src, dst, bytes_per_s, latency_ns);
  if (*bytes_per_s == 0.0) *bytes_per_s = 1e18; /* the same instance: no link */
}

infsim_transport sim_transport_make(infsim_sim *s) {
  s->msg_free = -1;
  s->net_scheduled_ns = INT64_MAX;
  return (infsim_transport){.self = s, .send = net_send, .timer = net_timer, .bytes_sent = net_bytes_sent,
                            .in_flight = net_in_flight, .abort = net_abort};
}
