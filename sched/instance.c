/*
** instance.c: one model replica's scheduler, with vLLM semantics.
**
** At every iteration boundary the scheduler (1) applies step events that
** fall due: finishes free their blocks, block boundaries take one more KV
** block, preempting the latest-arrived running request when none is free;
** (2) admits work FCFS, swapped requests before waiting ones, allocating
** each prompt's blocks on admission (as vLLM's block manager does);
** (3) forms the batch: every decoding request plus prefill chunks up to
** max_batched_tokens (chunked prefill), or a prefill-only batch when new
** prompts were admitted (vLLM's prefill-first scheduling without chunking).
**
** Invariants (checked after every event in debug builds):
**  - used_blocks == sum of blocks of running requests <= total_blocks;
**  - swap_used_blocks == sum of blocks of swapped requests;
**  - decode_n and kv_sum equal the count and KV sum of decoding requests.
**
** No livelock: a request is rejected on arrival if it could not complete
** even alone, and preemption takes the latest-arrived request, so the
** earliest-arrived running request always makes progress.
*/
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "../sim/sim_internal.h"

/* ---- small containers ---------------------------------------------------- */

static infsim_status deque_reserve(req_deque *q, infsim_error *err) {
  if (q->count < q->capacity) return INFSIM_OK;
  int32_t cap = q->capacity ? 2 * q->capacity : 16;
  int32_t *items = malloc((size_t)cap * sizeof *items);
  if (items == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  for (int32_t i = 0; i < q->count; i++) items[i] = q->items[(q->head + i) % q->capacity];
  free(q->items);
  q->items = items;
  q->head = 0;
  q->capacity = cap;
  return INFSIM_OK;
}

static infsim_status deque_push_back(req_deque *q, int32_t v, infsim_error *err) {
  infsim_status st = deque_reserve(q, err);
  if (st != INFSIM_OK) return st;
  q->items[(q->head + q->count) % q->capacity] = v;
  q->count++;
  return INFSIM_OK;
}

static infsim_status deque_push_front(req_deque *q, int32_t v, infsim_error *err) {
  infsim_status st = deque_reserve(q, err);
  if (st != INFSIM_OK) return st;
  q->head = (q->head + q->capacity - 1) % q->capacity;
  q->items[q->head] = v;
  q->count++;
  return INFSIM_OK;
}

static int32_t deque_front(const req_deque *q) { return q->items[q->head]; }

static int32_t deque_at(const req_deque *q, int32_t i) { return q->items[(q->head + i) % q->capacity]; }

static void deque_pop_front(req_deque *q) {
  q->head = (q->head + 1) % q->capacity;
  q->count--;
}

/* Removes the first occurrence of v (preemption of a prefilling request). */
static void deque_remove(req_deque *q, int32_t v) {
  int32_t i = 0;
  while (i < q->count && deque_at(q, i) != v) i++;
  assert(i < q->count);
  for (; i + 1 < q->count; i++) q->items[(q->head + i) % q->capacity] = deque_at(q, i + 1);
  q->count--;
}

static int step_event_before(const step_event *a, const step_event *b) {
  if (a->step != b->step) return a->step < b->step;
  return a->req < b->req;
}

static infsim_status heap_push(step_heap *h, step_event ev, infsim_error *err) {
  if (h->count == h->capacity) {
    int32_t cap = h->capacity ? 2 * h->capacity : 64;
    step_event *items = realloc(h->items, (size_t)cap * sizeof *items);
    if (items == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
    h->items = items;
    h->capacity = cap;
  }
  int32_t i = h->count++;
  while (i > 0) {
    int32_t parent = (i - 1) / 2;
    if (!step_event_before(&ev, &h->items[parent])) break;
    h->items[i] = h->items[parent];
    i = parent;
  }
  h->items[i] = ev;
  return INFSIM_OK;
}

static void heap_pop(step_heap *h) {
  step_event last = h->items[--h->count];
  int32_t i = 0, n = h->count;
  for (;;) {
    int32_t child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && step_event_before(&h->items[child + 1], &h->items[child])) child++;
    if (!step_event_before(&h->items[child], &last)) break;
    h->items[i] = h->items[child];
    i = child;
  }
  if (n > 0) h->items[i] = last;
}

/* The first live event (stale ones, of preempted requests, are dropped), or NULL. */
static const step_event *heap_top(const infsim_sim *s, step_heap *h) {
  while (h->count > 0 && h->items[0].epoch != s->rs[h->items[0].req].epoch) heap_pop(h);
  return h->count > 0 ? &h->items[0] : NULL;
}

/* ---- request bookkeeping ------------------------------------------------- */

static int64_t blocks_for(const infsim_sim *s, int64_t tokens) {
  return (tokens + s->p.block_tokens - 1) / s->p.block_tokens;
}

static int64_t free_blocks(const instance *in) { return in->total_blocks - in->used_blocks; }

static int64_t kv_now(const instance *in, const req_sched *r) { return r->kv0 + (in->step - r->step0); }

static int64_t generated_now(const instance *in, const req_sched *r) {
  return r->decoding ? r->generated0 + (in->step - r->step0) : r->generated0;
}

static infsim_status running_add(infsim_sim *s, instance *in, int32_t req) {
  s->rs[req].run_slot = in->running_count;
  in->running[in->running_count++] = req;
  s->rec[req].state = INFSIM_REQ_RUNNING;
  return INFSIM_OK;
}

static void running_remove(infsim_sim *s, instance *in, int32_t req) {
  int32_t slot = s->rs[req].run_slot;
  int32_t last = in->running[--in->running_count];
  in->running[slot] = last;
  s->rs[last].run_slot = slot;
  s->rs[req].run_slot = -1;
}

/* A request whose prefill just completed (or that was swapped back in)
 * starts decoding at the current step: schedule its finish and its first
 * KV block boundary. */
static infsim_status join_decode(infsim_sim *s, instance *in, int32_t req, int64_t kv_tokens, infsim_error *err) {
  req_sched *r = &s->rs[req];
  r->decoding = true;
  r->kv0 = kv_tokens;
  r->step0 = in->step;
  in->decode_n++;
  in->kv_sum += kv_tokens;
  int64_t finish_step = r->step0 + (s->rec[req].output_tokens - r->generated0);
  infsim_status st = heap_push(&in->finishes, (step_event){finish_step, req, r->epoch}, err);
  if (st != INFSIM_OK) return st;
  /* Before decode step s+1 the KV grows from kv(s) to kv(s)+1 tokens: a new
   * block is needed once kv(s) fills the blocks held. */
  int64_t boundary = r->step0 + r->blocks * s->p.block_tokens - kv_tokens;
  assert(boundary >= r->step0);
  if (boundary < finish_step) return heap_push(&in->boundaries, (step_event){boundary, req, r->epoch}, err);
  return INFSIM_OK;
}

static void leave_decode(instance *in, req_sched *r) {
  assert(r->decoding);
  in->decode_n--;
  in->kv_sum -= kv_now(in, r);
  r->decoding = false;
}

static void finish_request(infsim_sim *s, instance *in, int32_t req) {
  req_sched *r = &s->rs[req];
  infsim_request_record *rec = &s->rec[req];
  if (r->decoding) leave_decode(in, r);
  running_remove(s, in, req);
  in->used_blocks -= r->blocks;
  r->blocks = 0;
  r->epoch++;
  rec->state = INFSIM_REQ_FINISHED;
  rec->finish_ns = s->now_ns;
  int64_t ctx = rec->prompt_tokens + rec->output_tokens;
  if (ctx > s->counters.max_context_tokens) s->counters.max_context_tokens = ctx;
  s->done_requests++;
  sim_counts_changed(s, 0, -1);
  sim_load_changed(s, in);
}

/* The running request that arrived last (vLLM's lowest priority). */
static int32_t pick_victim(const infsim_sim *s, const instance *in) {
  int32_t victim = -1;
  for (int32_t i = 0; i < in->running_count; i++) {
    int32_t q = in->running[i];
    if (victim < 0 || s->rec[q].arrival_ns > s->rec[victim].arrival_ns ||
        (s->rec[q].arrival_ns == s->rec[victim].arrival_ns && q > victim))
      victim = q;
  }
  return victim;
}

static infsim_status preempt(infsim_sim *s, instance *in, int32_t req, infsim_error *err) {
  req_sched *r = &s->rs[req];
  infsim_request_record *rec = &s->rec[req];
  bool was_decoding = r->decoding;
  int64_t kv = was_decoding ? kv_now(in, r) : 0;
  r->generated0 = generated_now(in, r);
  if (was_decoding) leave_decode(in, r);
  else deque_remove(&in->prefilling, req);
  running_remove(s, in, req);
  in->used_blocks -= r->blocks;
  r->epoch++;
  rec->preemptions++;
  s->counters.preemptions++;
  sim_counts_changed(s, 1, -1);
  if (was_decoding && s->p.preemption == INFSIM_PREEMPT_SWAP &&
      in->swap_used_blocks + r->blocks <= in->swap_capacity_blocks) {
    /* Swap out: the KV goes to host memory over PCIe; the request keeps its progress. */
    in->swap_used_blocks += r->blocks;
    in->pending_overhead_ns += infsim_cost_transfer_ns(r->blocks * s->block_bytes, s->p.pcie_bytes_per_s, 0);
    r->kv0 = kv;
    rec->state = INFSIM_REQ_SWAPPED;
    return deque_push_back(&in->swapped, req, err);
  }
  /* Recompute: drop the KV; the prompt and every token generated so far are
   * prefilled again, and that prefill yields the next token. */
  r->blocks = 0;
  r->prefill_target = rec->prompt_tokens + r->generated0;
  r->prefilled = 0;
  rec->state = INFSIM_REQ_WAITING;
  return deque_push_front(&in->waiting, req, err);
}

/* ---- the scheduler ------------------------------------------------------- */

/* Applies the step events due by the current step: finishes (due exactly
 * now: a macro-step never runs past one), then block boundaries, in step
 * order (a bulk macro-step may have passed several). Sets *preempted if any
 * request had to give up its memory. */
static infsim_status apply_step_events(infsim_sim *s, instance *in, bool *preempted, infsim_error *err) {
  infsim_status st;
  const step_event *top;
  while ((top = heap_top(s, &in->finishes)) != NULL && top->step <= in->step) {
    assert(top->step == in->step);
    int32_t req = top->req;
    heap_pop(&in->finishes);
    finish_request(s, in, req);
  }
  while ((top = heap_top(s, &in->boundaries)) != NULL && top->step <= in->step) {
    step_event ev = *top;
    heap_pop(&in->boundaries);
    /* Take one block, preempting latest arrivals if none is free. */
    while (free_blocks(in) < 1) {
      int32_t victim = pick_victim(s, in);
      *preempted = true;
      if ((st = preempt(s, in, victim, err)) != INFSIM_OK) return st;
      if (victim == ev.req) break;
    }
    req_sched *r = &s->rs[ev.req];
    if (r->epoch != ev.epoch) continue; /* the requester itself was preempted */
    r->blocks++;
    in->used_blocks++;
    int64_t next = ev.step + s->p.block_tokens;
    int64_t finish_step = r->step0 + (s->rec[ev.req].output_tokens - r->generated0);
    if (next < finish_step &&
        (st = heap_push(&in->boundaries, (step_event){next, ev.req, r->epoch}, err)) != INFSIM_OK)
      return st;
  }
  return INFSIM_OK;
}

/* Admits swapped, then waiting requests, FCFS, while slots, tokens and
 * blocks last. `token_budget` is what prefill may still use this iteration. */
static infsim_status admit(infsim_sim *s, instance *in, int64_t token_budget, infsim_error *err) {
  infsim_status st;
  while (in->swapped.count > 0 && in->running_count < s->p.max_batch_size) {
    int32_t req = deque_front(&in->swapped);
    req_sched *r = &s->rs[req];
    /* Back in with room for the next token: its first boundary lies ahead,
     * so no block is due before the iteration that starts now. */
    int64_t need = blocks_for(s, r->kv0 + 1);
    if (need > free_blocks(in)) return INFSIM_OK; /* FCFS: nobody overtakes a stuck swap-in */
    deque_pop_front(&in->swapped);
    in->swap_used_blocks -= r->blocks;
    in->pending_overhead_ns += infsim_cost_transfer_ns(r->blocks * s->block_bytes, s->p.pcie_bytes_per_s, 0);
    r->blocks = need;
    in->used_blocks += need;
    running_add(s, in, req);
    sim_counts_changed(s, -1, 1);
    if ((st = join_decode(s, in, req, r->kv0, err)) != INFSIM_OK) return st;
  }
  if (in->swapped.count > 0) return INFSIM_OK;
  int64_t queued_tokens = 0; /* prefill tokens already claimed by admitted prompts */
  for (int32_t i = 0; i < in->prefilling.count; i++) {
    const req_sched *r = &s->rs[deque_at(&in->prefilling, i)];
    queued_tokens += r->prefill_target - r->prefilled;
  }
  while (in->waiting.count > 0 && in->running_count < s->p.max_batch_size) {
    int32_t req = deque_front(&in->waiting);
    req_sched *r = &s->rs[req];
    int64_t need = blocks_for(s, r->prefill_target);
    if (need > free_blocks(in)) break;
    if (!s->p.chunked_prefill) {
      /* Whole prompts only; a recomputed request longer than the budget
       * still goes alone, or it could never run again. */
      bool alone = in->prefilling.count == 0;
      if (queued_tokens + r->prefill_target > token_budget && !alone) break;
    } else if (queued_tokens >= token_budget && in->prefilling.count > 0) {
      break; /* the chunk budget is spoken for: admit next iteration */
    }
    deque_pop_front(&in->waiting);
    r->blocks = need;
    in->used_blocks += need;
    queued_tokens += r->prefill_target;
    running_add(s, in, req);
    sim_counts_changed(s, -1, 1);
    if ((st = deque_push_back(&in->prefilling, req, err)) != INFSIM_OK) return st;
  }
  return INFSIM_OK;
}

/* How many identical-shape decode iterations may run as one engine event:
 * up to the next finish, and past block boundaries only when the free
 * blocks cover every boundary the run could meet (each decoding request
 * needs at most ceil(k / block_tokens) blocks in k steps). */
static int64_t macro_steps(const infsim_sim *s, instance *in) {
  const step_event *fin = heap_top(s, &in->finishes);
  assert(fin != NULL); /* every decoding request has a pending finish */
  int64_t k = fin->step - in->step;
  assert(k >= 1);
  if (s->p.max_steps_per_event > 0 && k > s->p.max_steps_per_event) k = s->p.max_steps_per_event;
  int64_t worst_blocks = in->decode_n * ((k + s->p.block_tokens - 1) / s->p.block_tokens);
  if (worst_blocks <= free_blocks(in)) return k;
  const step_event *b = heap_top(s, &in->boundaries);
  if (b != NULL && b->step - in->step < k) k = b->step - in->step;
  assert(k >= 1);
  return k;
}

/* The first `steps` iterations of the current decode run: step j attends
 * kv_sum + (j + 1) x decode_n tokens (each request's new token included). */
static int64_t decode_run_ns(const infsim_sim *s, const instance *in, int64_t steps) {
  return infsim_cost_decode_run_ns(&s->cost, &in->iter_run, in->kv_sum + in->decode_n, steps);
}

/* Starts the next iteration if there is work. */
static infsim_status start_iteration(infsim_sim *s, instance *in, infsim_error *err) {
  infsim_status st;
  bool preempted = false;
  if ((st = apply_step_events(s, in, &preempted, err)) != INFSIM_OK) return st;
  int64_t budget = s->p.max_batched_tokens - (s->p.chunked_prefill ? in->decode_n : 0);
  if (!preempted && (st = admit(s, in, budget, err)) != INFSIM_OK) return st;
  sim_load_changed(s, in);

  infsim_batch_agg agg = {0};
  in->chunk_count = 0;
  bool decode = in->decode_n > 0 && (s->p.chunked_prefill || in->prefilling.count == 0);
  if (in->prefilling.count > 0) {
    int64_t left = s->p.chunked_prefill ? budget : INT64_MAX;
    for (int32_t i = 0; i < in->prefilling.count && left > 0; i++) {
      int32_t req = deque_at(&in->prefilling, i);
      const req_sched *r = &s->rs[req];
      int64_t remaining = r->prefill_target - r->prefilled;
      int64_t chunk = remaining < left ? remaining : left;
      if (chunk <= 0) break;
      left -= chunk;
      in->chunks[in->chunk_count++] = (prefill_chunk){req, chunk};
      agg.prefill_tokens += chunk;
      agg.prefill_attn_pairs += chunk * r->prefilled + chunk * (chunk + 1) / 2;
      if (chunk == remaining) agg.logits_tokens++;
    }
  }
  if (!decode && in->chunk_count == 0) {
    in->busy = false;
    return INFSIM_OK;
  }
  int64_t lead_ns = in->pending_overhead_ns;
  in->pending_overhead_ns = 0;
  int64_t duration_ns = lead_ns;
  int64_t steps = 0;
  if (in->chunk_count > 0) {
    /* Prefill chunks, with every decoding request riding along (chunked prefill). */
    if (decode) {
      agg.decode_requests = in->decode_n;
      agg.decode_context_tokens = in->kv_sum + in->decode_n;
      agg.logits_tokens += in->decode_n;
      steps = 1;
    }
    duration_ns += infsim_cost_iteration_ns(&s->cost, &agg);
  } else {
    /* A macro-step: decode iterations that differ only in context length. */
    infsim_cost_decode_run_init(&s->cost, in->decode_n, &in->iter_run);
    /* After a preemption admission waited a turn: the next boundary is a
     * scheduling point that a longer run would skip. */
    bool admission_waits = preempted && (in->waiting.count > 0 || in->swapped.count > 0);
    steps = admission_waits ? 1 : macro_steps(s, in);
    duration_ns += decode_run_ns(s, in, steps);
  }
  in->busy = true;
  in->generation++;
  in->iter_start_ns = s->now_ns;

  in->iter_steps = steps;
  in->iter_lead_ns = lead_ns;
  return sim_schedule_event(s, s->now_ns + duration_ns, EV_ITERATION_DONE, in->id, in->generation, err);
}

/* A request that arrives while a macro-step runs could join at the next
 * iteration boundary: cut the macro-step there. */
static infsim_status truncate_macro_step(infsim_sim *s, instance *in, int64_t arrival_ns, infsim_error *err) {
  if (!in->busy || in->iter_steps <= 1 || in->chunk_count > 0) return INFSIM_OK;
  /* The first step boundary at or after the arrival: binary search, the
   * run's time being non-decreasing in its steps. */
  int64_t t0 = in->iter_start_ns + in->iter_lead_ns;
  int64_t lo = 1, hi = in->iter_steps;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (t0 + decode_run_ns(s, in, mid) >= arrival_ns) hi = mid;
    else lo = mid + 1;
  }
  int64_t steps = lo;
  int64_t t = t0 + decode_run_ns(s, in, steps);
  if (steps == in->iter_steps) return INFSIM_OK;
  in->iter_steps = steps;
  in->generation++;
  return sim_schedule_event(s, t, EV_ITERATION_DONE, in->id, in->generation, err);
}

infsim_status instance_arrive(infsim_sim *s, instance *in, int32_t req, infsim_error *err) {
  infsim_request_record *rec = &s->rec[req];
  req_sched *r = &s->rs[req];
  rec->instance = in->id;
  rec->instances_touched = 1;
  int64_t max_kv = rec->prompt_tokens + rec->output_tokens - 1; /* the last token is never appended */
  infsim_reject_reason reason = INFSIM_REJECT_NONE;
  if (s->p.model.max_context_tokens > 0 && rec->prompt_tokens + rec->output_tokens > s->p.model.max_context_tokens)
    reason = INFSIM_REJECT_CONTEXT_LIMIT;
  else if (blocks_for(s, max_kv) > in->total_blocks)
    reason = INFSIM_REJECT_KV_CAPACITY;
  else if (!s->p.chunked_prefill && rec->prompt_tokens > s->p.max_batched_tokens)
    reason = INFSIM_REJECT_BATCH_TOKENS;
  if (reason != INFSIM_REJECT_NONE) {
    rec->state = INFSIM_REQ_REJECTED;
    rec->reason = (uint8_t)reason;
    s->done_requests++;
    return INFSIM_OK;
  }
  r->prefill_target = rec->prompt_tokens;
  r->run_slot = -1;
  rec->state = INFSIM_REQ_WAITING;
  infsim_status st = deque_push_back(&in->waiting, req, err);
  if (st != INFSIM_OK) return st;
  sim_counts_changed(s, 1, 0);
  sim_load_changed(s, in);
  if (!in->busy) return start_iteration(s, in, err);
  bool could_join = in->waiting.count == 1 && in->swapped.count == 0 && in->running_count < s->p.max_batch_size &&
                    blocks_for(s, r->prefill_target) <= free_blocks(in);
  return could_join ? truncate_macro_step(s, in, rec->arrival_ns, err) : INFSIM_OK;
}

infsim_status instance_iteration_done(infsim_sim *s, instance *in, infsim_error *err) {
  infsim_status st;
  s->counters.iterations += in->iter_steps > 0 ? in->iter_steps : 1;
  if (in->iter_steps > 0) {
    in->step += in->iter_steps;
    in->kv_sum += in->decode_n * in->iter_steps;
  }
  for (int32_t i = 0; i < in->chunk_count; i++) {
    int32_t req = in->chunks[i].req;
    req_sched *r = &s->rs[req];
    infsim_request_record *rec = &s->rec[req];
    r->prefilled += in->chunks[i].chunk_tokens;
    if (r->prefilled < r->prefill_target) continue;
    /* Prefill done: it yields the next token. */
    deque_remove(&in->prefilling, req);
    r->generated0++;
    if (rec->first_token_ns < 0) rec->first_token_ns = s->now_ns;
    if (r->generated0 >= rec->output_tokens) {
      finish_request(s, in, req);
      continue;
    }
    if ((st = join_decode(s, in, req, r->prefill_target, err)) != INFSIM_OK) return st;
  }
  in->chunk_count = 0;
  in->busy = false;
  return start_iteration(s, in, err);
}

infsim_status instance_init(infsim_sim *s, instance *in, int32_t id, infsim_error *err) {
  memset(in, 0, sizeof *in);
  in->id = id;
  in->total_blocks = s->counters.kv_blocks_per_instance;
  in->swap_capacity_blocks = s->p.swap_space_bytes / s->block_bytes;
  size_t slots = (size_t)s->p.max_batch_size;
  if (slots > s->n_requests) slots = s->n_requests > 0 ? s->n_requests : 1;
  in->running = malloc(slots * sizeof *in->running);
  in->chunks = malloc(slots * sizeof *in->chunks);
  if (in->running == NULL || in->chunks == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  return INFSIM_OK;
}

void instance_free(instance *in) {
  free(in->waiting.items);
  free(in->swapped.items);
  free(in->prefilling.items);
  free(in->running);
  free(in->chunks);
  free(in->finishes.items);
  free(in->boundaries.items);
}

void instance_check(const infsim_sim *s, const instance *in) {
  int64_t used = 0, decode_n = 0, kv_sum = 0;
  for (int32_t i = 0; i < in->running_count; i++) {
    const req_sched *r = &s->rs[in->running[i]];
    assert(s->rec[in->running[i]].state == INFSIM_REQ_RUNNING);
    assert(r->run_slot == i);
    used += r->blocks;
    if (r->decoding) {
      decode_n++;
      kv_sum += kv_now(in, r);
      assert(r->blocks >= blocks_for(s, kv_now(in, r)));
    }
  }
  int64_t swapped = 0;
  for (int32_t i = 0; i < in->swapped.count; i++) swapped += s->rs[deque_at(&in->swapped, i)].blocks;
  assert(used == in->used_blocks);
  assert(in->used_blocks >= 0 && in->used_blocks <= in->total_blocks);
  assert(swapped == in->swap_used_blocks && swapped <= in->swap_capacity_blocks);
  assert(decode_n == in->decode_n);
  assert(kv_sum == in->kv_sum); /* both as of `step`, the last boundary */
  (void)used;
  (void)decode_n;
  (void)kv_sum;
  (void)swapped;
}
