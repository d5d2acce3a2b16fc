/*
** sim.c: the event loop of one run, dispatch, sampling and invariants.
**
** Arrivals enter the heap one at a time (the next one is pushed when the
** current one is handled), so the heap holds at most one arrival, one
** sample and one live iteration per instance: O(instances), not O(trace).
** An iteration event carries its instance's generation number; an event
** whose generation is stale (its macro-step was cut short by an arrival)
** is dropped when popped.
*/
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "infsim/calib.h"
#include "sim_internal.h"

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

void sim_counts_changed(infsim_sim *s, int64_t d_waiting, int64_t d_running) {
  int64_t dt = s->now_ns - s->integral_last_ns;
  s->counters.waiting_integral_ns += (double)s->total_waiting * (double)dt;
  s->counters.running_integral_ns += (double)s->total_running * (double)dt;
  s->integral_last_ns = s->now_ns;
  s->total_waiting += d_waiting;
  s->total_running += d_running;
}

void sim_load_changed(infsim_sim *s, const instance *in) {
  s->p.policy->load_changed(s->policy, in->id, in->waiting.count + in->running_count + in->swapped.count);
}

infsim_status sim_schedule_event(infsim_sim *s, int64_t time_ns, int32_t priority, int32_t target, int64_t arg,
                                 infsim_error *err) {
  assert(time_ns >= s->now_ns);
  return infsim_event_heap_push(&s->heap, time_ns, priority, target, arg, err);
}

/* An instance of `gpus` GPUs: tensor parallel within a node, pipeline
 * stages across nodes when it is larger than a node. */
static infsim_instance_layout make_layout(const infsim_sim_params *p, int64_t gpus) {
  infsim_instance_layout l = {0};
  l.tp = gpus < p->gpus_per_node ? gpus : p->gpus_per_node;
  l.pp = (gpus + l.tp - 1) / l.tp;
  l.tp_link_bytes_per_s = p->intra_node_bytes_per_s;
  l.pp_link_bytes_per_s = p->inter_node_bytes_per_s;
  l.remote_link_bytes_per_s = p->inter_node_bytes_per_s;
  l.link_latency_ns = p->link_latency_ns;
  l.iteration_overhead_ns = p->iteration_overhead_ns;
  l.wire_bytes_per_value = 2.0;
  l.overlap_remote = 1;
  return l;
}

static infsim_status build_cost_model(infsim_sim *s, int64_t gpus, infsim_error *err) {
  const infsim_sim_params *p = &s->p;
  s->cost.model = p->model;
  s->cost.layout = make_layout(p, gpus);
  int found = 0;
  if (access(p->calibration_db, R_OK) != 0) {
    /* The shipped default DB may be absent from a trimmed install: roofline then. */
    if (p->calibration_db_given)
      return infsim_fail(err, INFSIM_EINPUT, "calibration.db: cannot read '%s'", p->calibration_db);
  } else {
    infsim_status st = infsim_cost_curves_calibrated(p->calibration_db, p->gpu_profile, &p->model, s->cost.layout.tp,
                                                     &found, &s->cost.curves, err);
    if (st != INFSIM_OK) return st;
  }
  if (found) return INFSIM_OK;
  if (strchr(p->gpu_profile, '-') != NULL && !infsim_gpu_builtin(p->gpu_profile, &(infsim_gpu_spec){0}))
    return infsim_fail(err, INFSIM_EINPUT, "gpu: no calibrated profile '%s' for model %s, tp %lld in %s",
                       p->gpu_profile, p->model.name, (long long)s->cost.layout.tp, p->calibration_db);
  return infsim_cost_curves_roofline(&p->model, &p->gpu, s->cost.layout.tp, &p->roofline, &s->cost.curves, err);
}

infsim_status infsim_sim_new(const infsim_sim_params *p, const infsim_trace *trace, infsim_sim **out,
                             infsim_error *err) {
  infsim_status st;
  infsim_sim *s = calloc(1, sizeof *s);
  if (s == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  *out = s;
  s->p = *p;
  s->n_requests = trace->count;
  infsim_event_heap_init(&s->heap);

  infsim_policy_layout layout = p->policy->layout(p);
  int64_t gpus_per_instance = layout.gpus_per_instance;
  s->n_instances = (int32_t)layout.instances;
  if ((st = build_cost_model(s, gpus_per_instance, err)) != INFSIM_OK) return st;

  s->block_bytes = p->block_tokens * infsim_model_kv_bytes_per_token(&p->model);
  double usable = (double)p->gpu.memory_bytes * (double)gpus_per_instance * p->gpu_memory_utilization;
  double kv_bytes = usable - (double)infsim_model_weight_bytes(&p->model);
  if (kv_bytes < (double)s->block_bytes)
    return infsim_fail(err, INFSIM_EINPUT,
                       "%s on %lld x %s: weights (%.1f GiB) leave no room for the KV cache; add "
                       "cluster.gpus_per_instance",
                       p->model.name, (long long)gpus_per_instance, p->gpu.name,
                       (double)infsim_model_weight_bytes(&p->model) / (1 << 30));
  s->counters.kv_blocks_per_instance = (int64_t)(kv_bytes / (double)s->block_bytes);

  s->rec = calloc(s->n_requests ? s->n_requests : 1, sizeof *s->rec);
  s->rs = calloc(s->n_requests ? s->n_requests : 1, sizeof *s->rs);
  s->inst = calloc((size_t)s->n_instances, sizeof *s->inst);
  if (s->rec == NULL || s->rs == NULL || s->inst == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  for (size_t i = 0; i < s->n_requests; i++) {
    const infsim_trace_request *t = &trace->requests[i];
    s->rec[i] = (infsim_request_record){t->arrival_ns, t->prompt_tokens, t->output_tokens, -1, -1, -1, 0, 0,
                                        INFSIM_REQ_PENDING, INFSIM_REJECT_NONE};
    s->rs[i].run_slot = -1;
  }
  for (int32_t i = 0; i < s->n_instances; i++)
    if ((st = instance_init(s, &s->inst[i], i, err)) != INFSIM_OK) return st;
  return p->policy->create(p, s->n_instances, &s->policy, err);
}

void infsim_sim_free(infsim_sim *s) {
  if (s == NULL) return;
  if (s->inst != NULL)
    for (int32_t i = 0; i < s->n_instances; i++) instance_free(&s->inst[i]);
  free(s->inst);
  free(s->rec);
  free(s->rs);
  free(s->samples);
  infsim_event_heap_free(&s->heap);
  if (s->policy != NULL) s->p.policy->destroy(s->policy);
  infsim_cost_model_destroy(&s->cost);
  free(s);
}

static infsim_status take_sample(infsim_sim *s, infsim_error *err) {
  if (s->n_samples + (size_t)s->n_instances > s->cap_samples) {
    size_t cap = s->cap_samples ? 2 * s->cap_samples : 1024;
    while (cap < s->n_samples + (size_t)s->n_instances) cap *= 2;
    infsim_sample_row *rows = realloc(s->samples, cap * sizeof *rows);
    if (rows == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
    s->samples = rows;
    s->cap_samples = cap;
  }
  for (int32_t i = 0; i < s->n_instances; i++) {
    const instance *in = &s->inst[i];
    s->samples[s->n_samples++] = (infsim_sample_row){s->now_ns,
                                                     i,
                                                     in->running_count,
                                                     in->waiting.count + in->swapped.count,
                                                     in->used_blocks,
                                                     in->total_blocks - in->used_blocks,
                                                     0,
                                                     0};
  }
  return INFSIM_OK;
}

/* Debug builds: conservation of requests and blocks after every event. */
static void check_invariants(infsim_sim *s) {
#ifdef INFSIM_CHECK_INVARIANTS
  int64_t waiting = 0, running = 0;
  for (int32_t i = 0; i < s->n_instances; i++) {
    const instance *in = &s->inst[i];
    waiting += in->waiting.count + in->swapped.count;
    running += in->running_count;
    instance_check(s, in);
  }
  assert(waiting == s->total_waiting && running == s->total_running);
  /* Every arrived request is waiting, running, finished or rejected, once. */
  /* The full scan costs O(arrived): run it every arrived/8 events (at least
   * 64), so checking stays O(1) amortized per event, and at the end. */
  int64_t every = (int64_t)s->next_arrival / 8 > 64 ? (int64_t)s->next_arrival / 8 : 64;
  if (++s->events_since_full_check >= every || s->done_requests == (int64_t)s->n_requests) {
    s->events_since_full_check = 0;
    int64_t by_state[6] = {0};
    for (size_t r = 0; r < s->next_arrival; r++) by_state[s->rec[r].state]++;
    assert(by_state[INFSIM_REQ_PENDING] == 0);
    assert(by_state[INFSIM_REQ_WAITING] + by_state[INFSIM_REQ_SWAPPED] == waiting);
    assert(by_state[INFSIM_REQ_RUNNING] == running);
    assert(by_state[INFSIM_REQ_FINISHED] + by_state[INFSIM_REQ_REJECTED] == s->done_requests);
    (void)by_state;
  }
#else
  (void)s;
#endif
}

infsim_status infsim_sim_run(infsim_sim *s, infsim_error *err) {
  infsim_status st;
  if (s->n_requests > 0 &&
      (st = sim_schedule_event(s, s->rec[0].arrival_ns, EV_ARRIVAL, -1, 0, err)) != INFSIM_OK)
    return st;
  if ((st = sim_schedule_event(s, 0, EV_SAMPLE, -1, 0, err)) != INFSIM_OK) return st;
  infsim_event ev;
  while (infsim_event_heap_pop(&s->heap, &ev)) {
    if (ev.priority == EV_ITERATION_DONE && (uint32_t)ev.arg != s->inst[ev.target].generation) continue;
    assert(ev.time_ns >= s->now_ns); /* time never goes back */
    s->now_ns = ev.time_ns;
    s->counters.events++;
    switch (ev.priority) {
      case EV_ITERATION_DONE:
        st = instance_iteration_done(s, &s->inst[ev.target], err);
        break;
      case EV_ARRIVAL: {
        int32_t req = (int32_t)ev.arg;
        s->next_arrival = (size_t)req + 1;
        st = instance_arrive(s, &s->inst[s->p.policy->dispatch(s->policy, req)], req, err);
        if (st == INFSIM_OK && s->next_arrival < s->n_requests)
          st = sim_schedule_event(s, s->rec[s->next_arrival].arrival_ns, EV_ARRIVAL, -1, (int64_t)s->next_arrival,
                                  err);
        break;
      }
      case EV_SAMPLE:
        st = take_sample(s, err);
        if (st == INFSIM_OK && s->done_requests < (int64_t)s->n_requests)
          st = sim_schedule_event(s, s->now_ns + s->p.sample_interval_ns, EV_SAMPLE, -1, 0, err);
        break;
      default:
        assert(!"unknown event");
        st = INFSIM_ERUN;
    }
    if (st != INFSIM_OK) return st;
    check_invariants(s);
  }
  sim_counts_changed(s, 0, 0);
  s->counters.end_ns = s->now_ns;
  if (s->done_requests != (int64_t)s->n_requests)
    return infsim_fail(err, INFSIM_ERUN, "run ended with %lld of %zu requests unfinished (seed %llu)",
                       (long long)((int64_t)s->n_requests - s->done_requests), s->n_requests,
                       (unsigned long long)s->p.seed);
  return INFSIM_OK;
}

const infsim_request_record *infsim_sim_requests(const infsim_sim *s, size_t *count) {
  *count = s->n_requests;
  return s->rec;
}

const infsim_sample_row *infsim_sim_samples(const infsim_sim *s, size_t *count) {
  *count = s->n_samples;
  return s->samples;
}

const infsim_run_counters *infsim_sim_counters(const infsim_sim *s) { return &s->counters; }

const infsim_sim_params *infsim_sim_params_of(const infsim_sim *s) { return &s->p; }

const char *infsim_sim_cost_model_name(const infsim_sim *s) { return s->cost.curves.name; }
