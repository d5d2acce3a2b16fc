/*
** sched.c: the scheduler's entry points (sched.h): arrivals through the
** policy's dispatch, batch ends, messages, records, samples, invariants.
**
** The scheduler keeps the run's request records and the time integrals of
** waiting and running requests; it learns the time only from the driver's
** calls, so the same code runs on the engine's virtual clock and on cluster
** mode's wall clock.
*/
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "infsim/bigmem.h"
#include "infsim/policy_infinite.h"
#include "sched_internal.h"

const char *infsim_reject_reason_name(infsim_reject_reason r) {
  switch (r) {
    case INFSIM_REJECT_NONE:
      return "";
    case INFSIM_REJECT_KV_CAPACITY:
      return "kv_capacity";
    case INFSIM_REJECT_CONTEXT_LIMIT:
      return "context_limit";
    case INFSIM_REJECT_BATCH_TOKENS:
      return "prompt_exceeds_max_batched_tokens";
  }
  return "unknown";
}

void sched_counts_changed(infsim_sched *s, int64_t d_waiting, int64_t d_running) {
  int64_t dt = s->now_ns - s->integral_last_ns;
  s->counters.waiting_integral_ns += (double)s->total_waiting * (double)dt;
  s->counters.running_integral_ns += (double)s->total_running * (double)dt;
  s->integral_last_ns = s->now_ns;
  s->total_waiting += d_waiting;
  s->total_running += d_running;
}

void sched_load_changed(infsim_sched *s, const instance *in) {
  if (s->policy->load_changed != NULL)
    s->policy->load_changed(s->policy_self, in->id, in->waiting.count + in->running_count + in->swapped.count);
}

/* A request finished or was rejected now: the run's span ends no earlier. */
void sched_request_done(infsim_sched *s, int32_t req) {
  s->done_requests++;
  if (s->now_ns > s->counters.end_ns) s->counters.end_ns = s->now_ns;
  if (s->policy->request_ended != NULL) s->policy->request_ended(s->policy_self, s->rec[req].instance, req, s->now_ns);
}

infsim_status infsim_sched_new(const infsim_sched_params *p, const infsim_trace_request *requests, size_t count,
                               infsim_executor exec, infsim_transport net, infsim_sched **out, infsim_error *err) {
  infsim_status st;
  *out = NULL;
  const infsim_policy_ops *policy = infsim_policy_lookup(p->policy_name);
  if (policy == NULL) return infsim_fail(err, INFSIM_EINPUT, "policy.name: unknown policy '%s'", p->policy_name);
  if (p->instances < 1) return infsim_fail(err, INFSIM_EINPUT, "a run needs at least one instance");
  infsim_sched *s = calloc(1, sizeof *s);
  if (s == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  s->p = *p;
  s->policy = policy;
  s->exec = exec;
  s->net = net;
  s->n_requests = count;
  s->n_instances = p->instances;
  s->max_steps = p->max_steps_per_event;
  if (exec.max_steps > 0 && (s->max_steps == 0 || exec.max_steps < s->max_steps)) s->max_steps = exec.max_steps;
  s->counters.kv_blocks_per_instance = p->gpu_blocks_per_instance;
  /* Per-request arrays, first touched here (bigmem.h: huge pages). */
  s->rec = infsim_big_calloc(count, sizeof *s->rec);
  s->rs_mask = SCHED_RS_MIN - 1;
  s->rs = aligned_alloc(SCHED_RS_ALIGN, SCHED_RS_MIN * sizeof *s->rs);
  s->inst = calloc((size_t)s->n_instances, sizeof *s->inst);
  if (s->rec == NULL || s->rs == NULL || s->inst == NULL) {
    infsim_sched_free(s);
    return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  }
  memset(s->rs, 0, SCHED_RS_MIN * sizeof *s->rs);
  for (size_t i = 0; i < count; i++) {
    const infsim_trace_request *t = &requests[i];
    s->rec[i] = (infsim_request_record){t->arrival_ns, t->prompt_tokens, t->output_tokens, -1, -1, -1, 0, 0,
                                        INFSIM_REQ_PENDING, INFSIM_REJECT_NONE};
  }
  /* One host pool per node (kv.h's host pool h is node h's memory). */
  if (s->p.instances_per_host < 1) s->p.instances_per_host = 1;
  if (s->p.host_blocks <= 0) s->p.host_blocks = s->p.host_blocks_per_instance * s->p.instances_per_host;
  int32_t hosts = (s->n_instances + s->p.instances_per_host - 1) / s->p.instances_per_host;
  st = infsim_kv_new(s->n_instances, p->gpu_blocks_per_instance, hosts, s->p.host_blocks, 0, &s->kv,
                     err);
  if (st == INFSIM_OK) infsim_kv_keep_owners(s->kv, &s->rec[0].instance, sizeof *s->rec); /* set with the owner */
  for (int32_t i = 0; st == INFSIM_OK && i < s->n_instances; i++) st = instance_init(s, &s->inst[i], i, err);
  if (st == INFSIM_OK) st = policy->create(p->policy_settings, s, s->n_instances, &s->policy_self, err);
  if (st != INFSIM_OK) {
    infsim_sched_free(s);
    return st;
  }
  *out = s;
  return INFSIM_OK;
}

void infsim_sched_free(infsim_sched *s) {
  if (s == NULL) return;
  if (s->inst != NULL)
    for (int32_t i = 0; i < s->n_instances; i++) instance_free(s, &s->inst[i]);
  if (s->policy_self != NULL) s->policy->destroy(s->policy_self);
  infsim_kv_free(s->kv);
  free(s->inst);
  infsim_big_free(s->rec);
  free(s->rs);
  free(s->entries);
  free(s->holders);
  free(s->holder_at);
  free(s->due);
  free(s);
}

static bool request_done(const infsim_sched *s, int64_t req) {
  uint8_t st = s->rec[req].state;
  return st == INFSIM_REQ_FINISHED || st == INFSIM_REQ_REJECTED;
}

/* Request req arrives: the requests done since the last arrival leave the
 * front of the state ring (their slots go to later requests), and the
 * ring doubles while req would not fit behind the oldest one in flight. */
static infsim_status rs_admit(infsim_sched *s, int64_t req, infsim_error *err) {
  while (s->oldest < s->arrived && request_done(s, s->oldest)) s->oldest++;
  if (req - s->oldest > s->rs_mask) {
    int64_t cap = s->rs_mask + 1;
    while (req - s->oldest >= cap) cap *= 2;
    req_sched *ring = aligned_alloc(SCHED_RS_ALIGN, (size_t)cap * sizeof *ring);
    if (ring == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
    for (int64_t q = s->oldest; q < s->arrived; q++) ring[q & (cap - 1)] = s->rs[q & s->rs_mask];
    free(s->rs);
    s->rs = ring;
    s->rs_mask = cap - 1;
  }
  infsim_status st = infsim_kv_admit(s->kv, req, s->oldest, err);
  if (st != INFSIM_OK) return st;
  s->rs[req & s->rs_mask] = (req_sched){.run_slot = -1};
  if (req - s->oldest + 1 > s->rs_span_peak) s->rs_span_peak = req - s->oldest + 1;
  return INFSIM_OK;
}

infsim_status infsim_sched_arrive(infsim_sched *s, int64_t req, int64_t now_ns, infsim_error *err) {
  assert(req >= 0 && (size_t)req < s->n_requests && now_ns >= s->now_ns && req >= s->arrived);
  s->now_ns = now_ns;
  infsim_status st = rs_admit(s, req, err);
  if (st != INFSIM_OK) return st;
  s->arrived = req + 1;
  /* The next request's slots in the rings, last used by requests that
   * ended long ago (their lines gone from the caches), are asked for now:
   * the events until its arrival hide the wait. */
  if ((size_t)req + 1 < s->n_requests) {
    __builtin_prefetch(&s->rs[(req + 1) & s->rs_mask], 1);
    infsim_kv_prefetch(s->kv, req + 1);
  }
  int32_t target = s->policy->dispatch(s->policy_self, req);
  assert(target >= 0 && target < s->n_instances);
  return instance_arrive(s, &s->inst[target], (int32_t)req, err);
}

infsim_status infsim_sched_iteration_done(infsim_sched *s, int32_t instance, int64_t now_ns, infsim_error *err) {
  assert(instance >= 0 && instance < s->n_instances && now_ns >= s->now_ns);
  s->now_ns = now_ns;
  return instance_iteration_done(s, &s->inst[instance], err);
}

infsim_status infsim_sched_deliver(infsim_sched *s, const infsim_msg *msg, int64_t now_ns, infsim_error *err) {
  assert(now_ns >= s->now_ns);
  s->now_ns = now_ns;
  if (s->policy->on_message == NULL)
    return infsim_fail(err, INFSIM_ERUN, "policy %s got a %s message it has no handler for", s->policy->name,
                       infsim_msg_kind_name((infsim_msg_kind)msg->kind));
  return s->policy->on_message(s->policy_self, msg, now_ns, err);
}

bool infsim_sched_all_done(const infsim_sched *s) { return s->done_requests == (int64_t)s->n_requests; }

int64_t infsim_sched_done_count(const infsim_sched *s) { return s->done_requests; }

void infsim_sched_sample(const infsim_sched *s, int64_t now_ns, infsim_sample_row *rows) {
  for (int32_t i = 0; i < s->n_instances; i++) {
    const instance *in = &s->inst[i];
    infsim_kv_counts c = infsim_kv_counts_of(s->kv, i);
    rows[i] = (infsim_sample_row){now_ns,        i,      in->running_count, in->waiting.count + in->swapped.count,
                                  c.local + c.lent, c.free, c.lent,           c.borrowed};
  }
}

const infsim_request_record *infsim_sched_requests(const infsim_sched *s, size_t *count) {
  *count = s->n_requests;
  return s->rec;
}

const infsim_run_counters *infsim_sched_counters(infsim_sched *s, int64_t now_ns) {
  if (now_ns > s->now_ns) s->now_ns = now_ns;
  sched_counts_changed(s, 0, 0);
  s->counters.borrowed_blocks_peak = infsim_kv_borrowed_peak(s->kv);
  s->counters.network_bytes = s->net.bytes_sent != NULL ? s->net.bytes_sent(s->net.self) : 0;
  return &s->counters;
}

infsim_kv *infsim_sched_kv(infsim_sched *s) { return s->kv; }

/* The instance is in a batch of several decode steps (no prompt chunk). */
static bool in_decode_run(const infsim_sched *s, const instance *in) {
  return in->busy && in->chunk_count == 0 && in->iter_steps > 1 && s->exec.steps_done != NULL;
}

int64_t infsim_sched_free_blocks_now(infsim_sched *s, int32_t id, int64_t now_ns) {
  const instance *in = &s->inst[id];
  int64_t free_blocks = infsim_kv_free_blocks(s->kv, id);
  if (!in_decode_run(s, in)) return free_blocks;
  int64_t done = s->exec.steps_done(s->exec.self, id, now_ns);
  return free_blocks - instance_blocks_due(s, in, -1, done);
}

void infsim_sched_free_blocks_bounds(const infsim_sched *s, int32_t id, int64_t *lo, int64_t *hi) {
  const instance *in = &s->inst[id];
  *lo = *hi = infsim_kv_free_blocks(s->kv, id);
  if (!in_decode_run(s, in)) return;
  /* A decoding request's next boundary lies after `step`, so by step
   * step + d (d <= iter_steps) it has taken at most 1 + (d - 1) /
   * block_tokens blocks (boundaries_through in instance.c). */
  *lo -= in->decode_n * (1 + (in->iter_steps - 1) / s->p.block_tokens);
}

int64_t infsim_sched_blocks_now(infsim_sched *s, int64_t req, int32_t holder, int64_t now_ns) {
  int64_t blocks = infsim_kv_blocks_at(s->kv, req, holder);
  int32_t owner = infsim_kv_owner(s->kv, req);
  if (owner != holder || owner < 0) return blocks;
  const instance *in = &s->inst[owner];
  if (!in_decode_run(s, in)) return blocks;
  int64_t done = s->exec.steps_done(s->exec.self, owner, now_ns);
  return blocks + instance_blocks_due(s, in, (int32_t)req, done);
}

int64_t sched_steps_done_now(infsim_sched *s, const instance *in, int64_t now_ns) {
  return in_decode_run(s, in) ? s->exec.steps_done(s->exec.self, in->id, now_ns) : -1;
}

int64_t sched_blocks_now_done(const infsim_sched *s, const instance *in, int64_t req, int64_t done) {
  int64_t blocks = infsim_kv_blocks_at(s->kv, req, in->id);
  if (done < 0 || infsim_kv_owner(s->kv, req) != in->id) return blocks;
  return blocks + instance_running_blocks_due(s, in, (int32_t)req, done);
}

int64_t sched_blocks_now_lazy(infsim_sched *s, const instance *in, int64_t req, int64_t now_ns, int64_t *done) {
  if (*done == -2) {
    /* a boundary after the batch's last step: none of its steps books one
     * (the steps done run up to iter_steps, the executor's) */
    if (!rs_of(s, req)->decoding || instance_next_boundary(s, (int32_t)req) > in->step + in->iter_steps)
      return sched_blocks_now_done(s, in, req, -1);
    *done = sched_steps_done_now(s, in, now_ns);
  }
  return sched_blocks_now_done(s, in, req, *done);
}

void infsim_sched_touch(infsim_sched *s, int32_t id, int64_t now_ns) {
  instance *in = &s->inst[id];
  if (in_decode_run(s, in)) in->iter_steps = s->exec.cut(s->exec.self, id, now_ns);
}

void infsim_sched_observe(infsim_sched *s, infsim_sched_observer observer) { s->observer = observer; }

int32_t infsim_sched_instances(const infsim_sched *s) { return s->n_instances; }

void infsim_sched_high_water(const infsim_sched *s, infsim_high_water_set *out) {
  for (int32_t i = 0; i < s->n_instances; i++) {
    const instance *in = &s->inst[i];
    infsim_high_water_note(out, "instance_waiting", in->waiting.peak, in->waiting.count, in->waiting.capacity);
    infsim_high_water_note(out, "instance_swapped", in->swapped.peak, in->swapped.count, in->swapped.capacity);
    infsim_high_water_note(out, "instance_prefilling", in->prefilling.peak, in->prefilling.count,
                           in->prefilling.capacity);
    infsim_high_water_note(out, "instance_running", in->running_peak, in->running_count, in->running_capacity);
    infsim_high_water_note(out, "instance_finish_events", in->finishes.peak, in->finishes.count,
                           in->finishes.capacity);
    int64_t members = 0, slots = 0; /* decoding requests in the block-boundary phase sets */
    for (int64_t p = 0; p < s->n_phases; p++) {
      members += in->phases[p].count;
      slots += in->phases[p].capacity;
    }
    infsim_high_water_note(out, "instance_block_boundary_events", in->phase_peak, members, slots);
    int64_t used, peak, capacity;
    infsim_kv_pool_usage(s->kv, i, &used, &peak, &capacity);
    infsim_high_water_note(out, "kv_gpu_blocks", peak, used, capacity);
  }
  int32_t hosts = (s->n_instances + s->p.instances_per_host - 1) / s->p.instances_per_host;
  for (int32_t h = 0; h < hosts; h++) { /* a node's host memory: swap space and the CPU tier */
    int64_t used, peak, capacity;
    infsim_kv_pool_usage(s->kv, s->n_instances + h, &used, &peak, &capacity);
    infsim_high_water_note(out, "kv_host_blocks", peak, used, capacity);
  }
  infsim_policy_infinite_high_water(s, out);
}

void infsim_sched_request_slots(const infsim_sched *s, int64_t *state_slots, int64_t *table_slots,
                                int64_t *span_peak) {
  *state_slots = s->rs_mask + 1;
  *table_slots = infsim_kv_table_slots(s->kv);
  *span_peak = s->rs_span_peak;
}

void infsim_sched_check(const infsim_sched *s) {
#ifndef NDEBUG
  int64_t waiting = 0, running = 0;
  for (int32_t i = 0; i < s->n_instances; i++) {
    const instance *in = &s->inst[i];
    waiting += in->waiting.count + in->swapped.count;
    running += in->running_count;
    instance_check(s, in);
  }
  assert(waiting == s->total_waiting && running == s->total_running);
  infsim_kv_check(s->kv);
  (void)waiting;
  (void)running;
#else
  (void)s;
#endif
}
