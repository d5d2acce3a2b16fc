/*
** sim.c: the engine: the event loop of one run, arrivals, sampling and
** invariants (sim.h).
**
** Arrivals enter the heap one at a time (the next one is pushed when the
** current one is handled), so the heap holds at most one arrival, one
** sample, one live batch end per instance and the messages in flight:
** O(instances), not O(trace). A batch-end event carries its instance's
** generation; one whose generation is stale (its batch was cut short) is
** dropped when popped.
**
** Sampling: one tick every sample interval from time 0 while requests
** remain. When an instance would pass max_samples_per_instance ticks (or
** the ticks that keep all instances' rows under INFSIM_MAX_SAMPLES_TOTAL),
** the interval doubles and every other tick is dropped, so output stays
** bounded and idle stretches cost O(log) ticks, whatever the trace's span
** or the cluster's size.
*/
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim_internal.h"

static void on_preempted(void *self, int32_t instance, int64_t req, int64_t now_ns, bool swapped) {
  infsim_timeline_preemption(self, instance, req, now_ns, swapped);
}

infsim_status infsim_sim_new(const infsim_sim_config *c, infsim_cost_model *cost, const infsim_trace *trace,
                             infsim_sim **out, infsim_error *err) {
  *out = NULL;
  infsim_sim *s = calloc(1, sizeof *s);
  if (s == NULL) {
    infsim_cost_model_destroy(cost);
    return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  }
  s->c = *c;
  s->cost = *cost; /* moved in */
  cost->curves.destroy = NULL;
  cost->curves.self = NULL;
  s->n_instances = c->sched.instances;
  s->sample_interval_ns = c->sample_interval_ns > 0 ? c->sample_interval_ns : 1000000000;
  s->max_ticks = c->max_samples_per_instance > 0 ? c->max_samples_per_instance : INFSIM_MAX_SAMPLES_PER_INSTANCE;
  /* Each tick writes a row per instance: 100,000 instances at the
   * per-instance cap would be 1e10 rows. The total cap bounds the rows,
   * and with them the time sampling takes. */
  int64_t by_total = INFSIM_MAX_SAMPLES_TOTAL / (s->n_instances > 0 ? s->n_instances : 1);
  if (by_total < 2) by_total = 2;
  if (s->max_ticks > by_total) s->max_ticks = by_total;
  s->next_watch_ns = c->watch.every_ns;
  infsim_event_heap_init(&s->heap);
  /* (a record a whole number of cache lines: its size is a multiple of
   * its alignment, as aligned_alloc needs) */
  s->exec = aligned_alloc(_Alignof(sim_exec_instance), (size_t)s->n_instances * sizeof *s->exec);
  if (s->exec == NULL) {
    infsim_sim_free(s);
    return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  }
  memset(s->exec, 0, (size_t)s->n_instances * sizeof *s->exec);
  infsim_status st = infsim_network_new_cluster(&c->topology, &s->net, err);
  if (st != INFSIM_OK) {
    infsim_sim_free(s);
    return st;
  }
  st = infsim_sched_new(&c->sched, trace->requests, trace->count, sim_executor_make(s),
                                      sim_transport_make(s), &s->sched, err);
  if (st != INFSIM_OK) {
    infsim_sim_free(s);
    return st;
  }
  if (c->timeline != NULL)
    infsim_sched_observe(s->sched, (infsim_sched_observer){.self = c->timeline, .preempted = on_preempted});
  *out = s;
  return INFSIM_OK;
}

void infsim_sim_free(infsim_sim *s) {
  if (s == NULL) return;
  infsim_sched_free(s->sched);
  if (s->exec != NULL)
    for (int32_t i = 0; i < s->n_instances; i++) {
      free(s->exec[i].memo);
      free(s->exec[i].flow_set);
    }
  free(s->exec);
  free(s->iterations);
  free(s->msgs);
  free(s->net_done);
  infsim_network_free(s->net);
  free(s->samples);
  infsim_event_heap_free(&s->heap);
  infsim_cost_model_destroy(&s->cost);
  free(s);
}

/* Doubles the interval and keeps the ticks at its multiples (every other). */
static void thin_samples(infsim_sim *s) {
  s->sample_interval_ns *= 2;
  size_t n = s->n_instances > 0 ? (size_t)s->n_instances : 1, kept = 0;
  for (size_t i = 0; i < s->n_samples; i += n) {
    if (s->samples[i].time_ns % s->sample_interval_ns != 0) continue;
    memmove(&s->samples[kept], &s->samples[i], n * sizeof *s->samples);
    kept += n;
  }
  s->n_samples = kept;
}

static infsim_status take_sample(infsim_sim *s, infsim_error *err) {
  size_t n = (size_t)s->n_instances;
  if (s->n_samples + n > s->cap_samples) {
    size_t cap = s->cap_samples ? 2 * s->cap_samples : 1024;
    while (cap < s->n_samples + n) cap *= 2;
    infsim_sample_row *rows = realloc(s->samples, cap * sizeof *rows);
    if (rows == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
    s->samples = rows;
    s->cap_samples = cap;
  }
  infsim_sched_sample(s->sched, s->now_ns, &s->samples[s->n_samples]);
  s->n_samples += n;
  if (s->n_samples > s->samples_peak) s->samples_peak = s->n_samples;
  if ((int64_t)(s->n_samples / n) >= s->max_ticks) thin_samples(s);
  return INFSIM_OK;
}

/* The next tick: the first multiple of the interval after now. */
static infsim_status schedule_sample(infsim_sim *s, infsim_error *err) {
  int64_t next = (s->now_ns / s->sample_interval_ns + 1) * s->sample_interval_ns;
  if (next < s->now_ns) return INFSIM_OK; /* past the clock's range: no more ticks */
  return infsim_event_heap_push(&s->heap, next, EV_SAMPLE, -1, 0, err);
}

/* Debug builds: conservation of requests and blocks after every event. */
static void check_invariants(infsim_sim *s) {
#ifdef INFSIM_CHECK_INVARIANTS
  infsim_sched_check(s->sched);
  /* Every arrived request is waiting, running, finished or rejected, once.
   * The full scan costs O(arrived): run it every arrived/8 events (at least
   * 64), so checking stays O(1) amortized per event, and at the end. */
  int64_t every = (int64_t)s->next_arrival / 8 > 64 ? (int64_t)s->next_arrival / 8 : 64;
  if (++s->events_since_full_check >= every || infsim_sched_all_done(s->sched)) {
    s->events_since_full_check = 0;
    size_t n = 0;
    const infsim_request_record *rec = infsim_sched_requests(s->sched, &n);
    int64_t by_state[6] = {0};
    for (size_t r = 0; r < s->next_arrival; r++) by_state[rec[r].state]++;
    for (size_t r = s->next_arrival; r < n; r++) assert(rec[r].state == INFSIM_REQ_PENDING);
    assert(by_state[INFSIM_REQ_PENDING] == 0);
    assert(by_state[INFSIM_REQ_FINISHED] + by_state[INFSIM_REQ_REJECTED] == infsim_sched_done_count(s->sched));
    (void)by_state;
  }
#else
  (void)s;
#endif
}

/* Not inlined into its caller under link-time optimization: the event
 * loop keeps its name in profiles (bench/sim_speed --instructions counts
 * it by name). */
__attribute__((noinline)) infsim_status infsim_sim_run(infsim_sim *s, infsim_error *err) {
  infsim_status st;
  /* Arrival times from the records, which hold the trace's rows: the
   * trace itself may be gone (infsim_run_execute_consume). */
  size_t count = 0;
  const infsim_request_record *arrivals = infsim_sched_requests(s->sched, &count);
  if (count > 0 &&
      (st = infsim_event_heap_push(&s->heap, arrivals[0].arrival_ns, EV_ARRIVAL, -1, 0, err)) != INFSIM_OK)
    return st;
  if ((st = infsim_event_heap_push(&s->heap, 0, EV_SAMPLE, -1, 0, err)) != INFSIM_OK) return st;
  infsim_event ev;
  while (infsim_event_heap_pop(&s->heap, &ev)) {
    if (ev.priority == EV_ITERATION_DONE && !sim_executor_current(s, ev.target, (uint32_t)ev.arg)) continue;
    if (ev.priority == EV_MESSAGE && ev.target == NETWORK_TARGET && (uint32_t)ev.arg != s->net_generation) continue;
    if (ev.priority == EV_SAMPLE && infsim_sched_all_done(s->sched) && s->next_arrival >= count) continue;
    assert(ev.time_ns >= s->now_ns); /* time never goes back */
    s->now_ns = ev.time_ns;
    s->counters.events++;
    switch (ev.priority) {
      case EV_ITERATION_DONE: {
        const sim_exec_instance *x = &s->exec[ev.target];
        s->distattn_bytes += (double)x->steps * x->da_step_bytes;
        infsim_timeline_batch(s->c.timeline, ev.target, x->start_ns, s->now_ns, x->steps, &x->agg);
        st = sim_executor_run_ended(s, ev.target, err);
        if (st == INFSIM_OK) st = infsim_sched_iteration_done(s->sched, ev.target, s->now_ns, err);
        break;
      }
      case EV_MESSAGE: {
        if (ev.target == NETWORK_TARGET) {
          st = sim_transport_network_event(s, (uint32_t)ev.arg, err);
          break;
        }
        int64_t sent_ns = 0;
        infsim_msg msg = sim_transport_take(s, (int32_t)ev.arg, &sent_ns);
        if (msg.kind != INFSIM_MSG_TIMER) infsim_timeline_message(s->c.timeline, &msg, sent_ns, s->now_ns);
        st = infsim_sched_deliver(s->sched, &msg, s->now_ns, err);
        break;
      }
      case EV_ARRIVAL:
        s->next_arrival = (size_t)ev.arg + 1;
        st = infsim_sched_arrive(s->sched, ev.arg, s->now_ns, err);
        if (st == INFSIM_OK && s->next_arrival < count)
          st = infsim_event_heap_push(&s->heap, arrivals[s->next_arrival].arrival_ns, EV_ARRIVAL, -1,
                                      (int64_t)s->next_arrival, err);
        break;
      case EV_SAMPLE:
        st = take_sample(s, err);
        if (st == INFSIM_OK && !(infsim_sched_all_done(s->sched) && s->next_arrival >= count))
          st = schedule_sample(s, err);
        break;
      default:
        assert(!"unknown event");
        st = INFSIM_ERUN;
    }
    if (st != INFSIM_OK) return st;
    check_invariants(s);
    const infsim_sim_watch *w = &s->c.watch;
    while (w->every_ns > 0 && s->now_ns >= s->next_watch_ns) {
      w->tick(w->self, s, s->next_watch_ns);
      s->next_watch_ns = s->next_watch_ns <= INT64_MAX - w->every_ns ? s->next_watch_ns + w->every_ns : INT64_MAX;
      if (s->next_watch_ns == INT64_MAX) break;
    }
  }
  if (!infsim_sched_all_done(s->sched))
    return infsim_fail(err, INFSIM_ERUN, "run ended with %lld of %zu requests unfinished (seed %llu)",
                       (long long)((int64_t)count - infsim_sched_done_count(s->sched)), count,
                       (unsigned long long)s->c.sched.seed);
  /* The run's span ends at the last finish or rejection, whatever the sampling. */
  const infsim_run_counters *c = infsim_sched_counters(s->sched, 0);
  int64_t events = s->counters.events;
  s->counters = *c;
  s->counters.events = events;
  return INFSIM_OK;
}

const infsim_request_record *infsim_sim_requests(const infsim_sim *s, size_t *count) {
  return infsim_sched_requests(s->sched, count);
}

const infsim_sample_row *infsim_sim_samples(const infsim_sim *s, size_t *count) {
  *count = s->n_samples;
  return s->samples;
}

const infsim_iteration_row *infsim_sim_iterations(const infsim_sim *s, size_t *count) {
  *count = s->n_iterations;
  return s->iterations;
}

const infsim_run_counters *infsim_sim_counters(const infsim_sim *s) { return &s->counters; }

const infsim_network *infsim_sim_network(const infsim_sim *s) { return s->net; }

const infsim_sched *infsim_sim_sched(const infsim_sim *s) { return s->sched; }

int64_t infsim_sim_now_ns(const infsim_sim *s) { return s->now_ns; }

void infsim_sim_high_water(const infsim_sim *s, infsim_high_water_set *out) {
  out->count = 0;
  infsim_high_water_note(out, "event_heap", (int64_t)s->heap.peak, (int64_t)s->heap.count, (int64_t)s->heap.capacity);
  infsim_high_water_note(out, "messages_in_flight", s->msgs_peak, s->msgs_in_use, s->msg_capacity);
  size_t flow_slots = 0;
  size_t flow_peak = infsim_network_flow_peak(s->net, &flow_slots);
  infsim_high_water_note(out, "network_flows", (int64_t)flow_peak, (int64_t)infsim_network_flow_count(s->net),
                         (int64_t)flow_slots);
  /* Rows of the time series: bounded by max_ticks ticks of every instance. */
  infsim_high_water_note(out, "timeseries_rows", (int64_t)s->samples_peak, (int64_t)s->n_samples,
                         s->max_ticks * (int64_t)s->n_instances);
  infsim_sched_high_water(s->sched, out);
}

int64_t infsim_sim_sample_interval_used_ns(const infsim_sim *s) { return s->sample_interval_ns; }

const char *infsim_sim_cost_model_name(const infsim_sim *s) { return s->cost.curves.name; }
