/*
** sim_executor.c: the simulated executor (executor.h): prices a batch with
** the cost model on the virtual clock and schedules its end as an engine
** event. A batch of k identical decode steps is priced in closed form
** (costmodel.h's decode runs), so it costs O(1) whatever k; cutting it
** short finds the first step boundary at or after a time by bisection, the
** run's time being non-decreasing in its steps.
**
** Every time sum is checked: a batch that would end beyond what int64
** nanoseconds hold (about 292 years) fails the run with the reason rather
** than wrapping or clamping.
*/
#include <assert.h>
#include <stdlib.h>

#include "sim_internal.h"

static int64_t decode_run_ns(const infsim_sim *s, const sim_exec_instance *x, int64_t steps) {
  return infsim_cost_decode_run_ns(&s->cost, &x->run, x->first_context, steps);
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

static infsim_status exec_submit(void *self, const infsim_batch *b, int64_t now_ns, int64_t *end_ns,
                                 infsim_error *err) {
  infsim_sim *s = self;
  sim_exec_instance *x = &s->exec[b->instance];
  int64_t lead = add_time(infsim_cost_transfer_ns(b->swap_out_bytes, s->c.pcie_bytes_per_s, 0),
                          infsim_cost_transfer_ns(b->swap_in_bytes, s->c.pcie_bytes_per_s, 0));
  int64_t compute;
  x->decode_only = b->agg.prefill_tokens == 0;
  if (!x->decode_only) {
    assert(b->steps == 1);
    compute = infsim_cost_iteration_ns(&s->cost, &b->agg);
  } else {
    infsim_cost_decode_run_init(&s->cost, b->agg.decode_requests, &x->run);
    x->first_context = b->agg.decode_context_tokens;
    compute = decode_run_ns(s, x, b->steps);
  }
  int64_t start = add_time(now_ns, lead < 0 ? INT64_MAX : lead);
  int64_t end = start < 0 || compute == INT64_MAX ? -1 : add_time(start, compute);
  if (end < 0) return time_overflow(b, now_ns, err);
  x->start_ns = now_ns;
  x->agg = b->agg;
  x->lead_ns = lead;
  x->steps = b->steps;
  x->generation++;
  *end_ns = end;
  infsim_status st = record_row(s, x, b, end, err);
  if (st != INFSIM_OK) return st;
  return infsim_event_heap_push(&s->heap, end, EV_ITERATION_DONE, b->instance, x->generation, err);
}

static int64_t exec_cut(void *self, int32_t instance, int64_t t_ns) {
  infsim_sim *s = self;
  sim_exec_instance *x = &s->exec[instance];
  assert(x->decode_only && x->steps > 1);
  int64_t t0 = x->start_ns + x->lead_ns;
  int64_t lo = 1, hi = x->steps;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (t0 + decode_run_ns(s, x, mid) >= t_ns) hi = mid;
    else lo = mid + 1;
  }
  if (lo == x->steps) return x->steps;
  int64_t end = t0 + decode_run_ns(s, x, lo);
  x->steps = lo;
  x->generation++;
  if (x->row >= 0) {
    s->iterations[x->row].steps = lo;
    s->iterations[x->row].end_ns = end;
  }
  /* The heap only grows here by one event; a failed push (out of memory)
   * leaves the old end, which the scheduler's step count then contradicts:
   * treat it as fatal. */
  infsim_error err = {0};
  if (infsim_event_heap_push(&s->heap, end, EV_ITERATION_DONE, instance, x->generation, &err) != INFSIM_OK) abort();
  return lo;
}

bool sim_executor_current(const infsim_sim *s, int32_t instance, uint32_t generation) {
  return s->exec[instance].generation == generation;
}

infsim_executor sim_executor_make(infsim_sim *s) {
  return (infsim_executor){.self = s, .wants_entries = false, .max_steps = 0, .submit = exec_submit, .cut = exec_cut};
}
