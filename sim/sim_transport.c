/*
** sim_transport.c: the simulated transport (transport.h): a message is
** delivered as an engine event after the link latency plus its bytes over
** the link between instances. Messages in flight live in a pool with a
** free list, so a message costs no allocation once the pool has grown.
*/
#include <stdlib.h>

#include "sim_internal.h"

static infsim_status put(infsim_sim *s, const infsim_msg *msg, int64_t now_ns, int64_t at_ns, infsim_error *err) {
  if (s->msg_free < 0) {
    int32_t cap = s->msg_capacity ? 2 * s->msg_capacity : 64;
    msg_slot *slots = realloc(s->msgs, (size_t)cap * sizeof *slots);
    if (slots == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
    for (int32_t i = s->msg_capacity; i < cap; i++) slots[i].next_free = i + 1 < cap ? i + 1 : -1;
    s->msgs = slots;
    s->msg_free = s->msg_capacity;
    s->msg_capacity = cap;
  }
  int32_t slot = s->msg_free;
  s->msg_free = s->msgs[slot].next_free;
  s->msgs[slot].msg = *msg;
  s->msgs[slot].sent_ns = now_ns;
  return infsim_event_heap_push(&s->heap, at_ns, EV_MESSAGE, msg->dst, slot, err);
}

infsim_msg sim_transport_take(infsim_sim *s, int32_t slot, int64_t *sent_ns) {
  infsim_msg m = s->msgs[slot].msg;
  *sent_ns = s->msgs[slot].sent_ns;
  s->msgs[slot].next_free = s->msg_free;
  s->msg_free = slot;
  return m;
}

static infsim_status net_send(void *self, const infsim_msg *msg, int64_t now_ns, infsim_error *err) {
  infsim_sim *s = self;
  int64_t delay = infsim_cost_transfer_ns(msg->bytes, s->c.link_bytes_per_s, s->c.link_latency_ns);
  if (msg->bytes <= 0) delay = s->c.link_latency_ns;
  s->bytes_sent += msg->bytes;
  return put(s, msg, now_ns, now_ns + delay, err);
}

static infsim_status net_timer(void *self, const infsim_msg *msg, int64_t at_ns, infsim_error *err) {
  infsim_msg m = *msg;
  m.dst = m.src;
  infsim_sim *s = self;
  return put(s, &m, s->now_ns, at_ns, err);
}

static int64_t net_bytes_sent(const void *self) { return ((const infsim_sim *)self)->bytes_sent; }

infsim_transport sim_transport_make(infsim_sim *s) {
  s->msg_free = -1;
  return (infsim_transport){.self = s, .send = net_send, .timer = net_timer, .bytes_sent = net_bytes_sent};
}
