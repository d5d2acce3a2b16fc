/*
** executor.c: cluster_executor.h. Batches travel as one control message:
** a header, one record per part, then every part's slots. The worker runs
** the forward, waits for the device, and answers with its status; rank 0
** stamps the end when the answer arrives (instance 0: when its thread
** finishes), on the same clock it replays arrivals with.
**
** Invariant: at most one batch in flight per instance (the scheduler
** starts the next only after infsim_sched_iteration_done), so answers need
** no matching beyond the sender.
*/
#include "infsim/cluster_executor.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "infsim/kv.h"

enum { ICL_TAG_BATCH = 1, ICL_TAG_DONE = 2, ICL_TAG_STOP = 3, ICL_TAG_ALIVE = 4 };

typedef struct {
  int64_t seq;
  int32_t instance;
  int32_t count;
  int64_t slots;
} icl_wire_head;

typedef struct {
  int64_t req;
  int32_t prompt, query, context, remote, slot_count, pad;
} icl_wire_part;

typedef struct {
  int64_t seq;
  int32_t status;
  int32_t pad;
  char msg[INFSIM_ERROR_MSG_BYTES];
} icl_wire_done;

/* Instance 0's runner on rank 0: one batch at a time. */
typedef struct {
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool started, has_work, done, stop;
  char *buf;
  int64_t buf_bytes;
  double end_s;
  infsim_status status;
  infsim_error err;
  infsim_cmodel *model;
  infsim_cmodel *shadow; /* NULL unless verifying */
} icl_local;

typedef struct {
  bool busy;
  int64_t start_ns;
  size_t iteration; /* its row in iterations */
} icl_instance;

struct infsim_cexec {
  infsim_ctransport *t;
  const infsim_trace_request *requests;
  size_t request_count;
  double t0_s;
  int32_t instances;
  icl_instance *inst;
  icl_local local;
  char *wire;
  int64_t wire_cap;
  int64_t seq;
  infsim_status failed;
  infsim_error fail_err;
  infsim_iteration_row *iters;
  size_t iter_count, iter_cap;
  bool stopped;
};

static int64_t now_ns(const infsim_cexec *x) { return (int64_t)((infsim_cluster_now_s() - x->t0_s) * 1e9); }

/* Runs one wire batch on m and waits for the device. */
static infsim_status run_wire(infsim_cmodel *m, infsim_cmodel *shadow, const char *buf, int64_t bytes,
                              infsim_error *err) {
  icl_wire_head h;
  if (bytes < (int64_t)sizeof h) return infsim_fail(err, INFSIM_ERUN, "cluster: short batch message");
  memcpy(&h, buf, sizeof h);
  int64_t need = (int64_t)sizeof h + h.count * (int64_t)sizeof(icl_wire_part) + h.slots * 4;
  if (h.count < 1 || h.slots < 0 || bytes != need)
    return infsim_fail(err, INFSIM_ERUN, "cluster: batch message of %lld bytes, expected %lld", (long long)bytes,
                       (long long)need);
  infsim_cmodel_part *parts = calloc((size_t)h.count, sizeof *parts);
  int32_t *slots = malloc((size_t)(h.slots > 0 ? h.slots : 1) * 4);
  if (!parts || !slots) {
    free(parts), free(slots);
    return infsim_fail(err, INFSIM_ENOMEM, "cluster: out of memory");
  }
  const char *p = buf + sizeof h;
  memcpy(slots, p + h.count * sizeof(icl_wire_part), (size_t)h.slots * 4);
  int64_t at = 0;
  infsim_status st = INFSIM_OK;
  for (int32_t i = 0; i < h.count; i++) {
    icl_wire_part w;
    memcpy(&w, p + i * sizeof w, sizeof w);
    if (w.slot_count < 0 || at + w.slot_count > h.slots) {
      st = infsim_fail(err, INFSIM_ERUN, "cluster: batch message: part %d overruns the slots", i);
      break;
    }
    parts[i] = (infsim_cmodel_part){.req = w.req, .prompt_tokens = w.prompt, .query_tokens = w.query,
                                    .context_tokens = w.context, .remote_tokens = w.remote, .slots = slots + at,
                                    .slot_count = w.slot_count};
    at += w.slot_count;
  }
  /* With a shadow (--verify) the parts also run one by one and are
   * compared, inside the batch's measured time: verified runs check
   * numbers, not speed. */
  if (st == INFSIM_OK) st = infsim_cmodel_forward_verified(m, shadow, parts, h.count, err);
  if (st == INFSIM_OK) st = infsim_kernels_sync(infsim_cmodel_kernels(m), err);
  free(parts);
  free(slots);
  return st;
}

static void *local_main(void *arg) {
  icl_local *l = arg;
  pthread_mutex_lock(&l->mu);
  for (;;) {
    while (!l->has_work && !l->stop) pthread_cond_wait(&l->cv, &l->mu);
    if (l->stop) break;
    pthread_mutex_unlock(&l->mu);
    infsim_error err;
    infsim_status st = run_wire(l->model, l->shadow, l->buf, l->buf_bytes, &err);
    double end = infsim_cluster_now_s();
    pthread_mutex_lock(&l->mu);
    l->has_work = false;
    l->done = true;
    l->end_s = end;
    l->status = st;
    if (st != INFSIM_OK) l->err = err;
  }
  pthread_mutex_unlock(&l->mu);
  return NULL;
}

static int64_t wire_cap_for(const infsim_cmodel_params *p) {
  return (int64_t)sizeof(icl_wire_head) + p->max_requests * ((int64_t)sizeof(icl_wire_part) + p->max_blocks_per_request * 4);
}

static infsim_status submit(void *self, const infsim_batch *batch, int64_t now, int64_t *end_ns, infsim_error *err);

infsim_status infsim_cexec_new(infsim_ctransport *t, infsim_cmodel *local, infsim_cmodel *shadow,
                               const infsim_trace_request *requests, size_t count, double t0_s, infsim_cexec **out,
                               infsim_error *err) {
  *out = NULL;
  infsim_cexec *x = calloc(1, sizeof *x);
  if (!x) return infsim_fail(err, INFSIM_ENOMEM, "cluster: out of memory");
  x->t = t;
  x->requests = requests;
  x->request_count = count;
  x->t0_s = t0_s;
  x->instances = infsim_ctransport_size(t);
  x->inst = calloc((size_t)x->instances, sizeof *x->inst);
  x->wire_cap = wire_cap_for(infsim_cmodel_params_of(local));
  x->wire = malloc((size_t)x->wire_cap);
  x->local.buf = malloc((size_t)x->wire_cap);
  x->local.model = local;
  x->local.shadow = shadow;
  if (!x->inst || !x->wire || !x->local.buf) {
    infsim_cexec_free(x);
    return infsim_fail(err, INFSIM_ENOMEM, "cluster: out of memory");
  }
  pthread_mutex_init(&x->local.mu, NULL);
  pthread_cond_init(&x->local.cv, NULL);
  if (pthread_create(&x->local.thread, NULL, local_main, &x->local) != 0) {
    infsim_cexec_free(x);
    return infsim_fail(err, INFSIM_ERUN, "cluster: cannot start instance 0's thread");
  }
  x->local.started = true;
  *out = x;
  return INFSIM_OK;
}

void infsim_cexec_free(infsim_cexec *x) {
  if (!x) return;
  if (!x->stopped) infsim_cexec_stop(x, NULL);
  if (x->local.started) {
    pthread_mutex_destroy(&x->local.mu);
    pthread_cond_destroy(&x->local.cv);
  }
  free(x->inst);
  free(x->wire);
  free(x->local.buf);
  free(x->iters);
  free(x);
}

infsim_executor infsim_cexec_seam(infsim_cexec *x) {
  return (infsim_executor){.self = x, .wants_entries = true, .max_steps = 1, .submit = submit, .cut = NULL};
}

infsim_status infsim_cexec_error(const infsim_cexec *x, infsim_error *err) {
  if (x->failed != INFSIM_OK && err) *err = x->fail_err;
  return x->failed;
}

/* Lays the batch out as a wire message in x->wire; returns its size. */
static infsim_status encode(infsim_cexec *x, const infsim_batch *b, int64_t *bytes, infsim_error *err) {
  icl_wire_head h = {.seq = ++x->seq, .instance = b->instance, .count = b->entry_count, .slots = 0};
  int64_t first = infsim_kv_first_block(b->kv, b->instance);
  int64_t slots_total = 0;
  for (int32_t i = 0; i < b->entry_count; i++) slots_total += infsim_kv_blocks(b->kv, b->entries[i].req);
  int64_t need = (int64_t)sizeof h + b->entry_count * (int64_t)sizeof(icl_wire_part) + slots_total * 4;
  if (need > x->wire_cap)
    return infsim_fail(err, INFSIM_ERUN, "cluster: a batch of %d requests needs %lld bytes, the model takes %lld",
                       b->entry_count, (long long)need, (long long)x->wire_cap);
  char *parts = x->wire + sizeof h;
  int32_t *slots = (int32_t *)(void *)(parts + b->entry_count * sizeof(icl_wire_part));
  int64_t at = 0;
  for (int32_t i = 0; i < b->entry_count; i++) {
    const infsim_batch_entry *e = &b->entries[i];
    int64_t n = 0;
    const int64_t *table = infsim_kv_table(b->kv, e->req, &n);
    icl_wire_part w = {.req = e->req, .query = (int32_t)e->query_tokens, .context = (int32_t)e->context_tokens};
    assert((size_t)e->req < x->request_count);
    w.prompt = (int32_t)x->requests[e->req].prompt_tokens;
    int32_t start = (int32_t)at;
    bool remote = false;
    for (int64_t j = 0; j < n; j++) {
      if (infsim_kv_holder_of(b->kv, table[j]) == b->instance) {
        slots[at++] = (int32_t)(table[j] - first);
      } else {
        remote = true;
      }
    }
    w.slot_count = (int32_t)(at - start);
    if (remote) {
      /* Remote attention needs the holders' ranks to serve queries, which
       * comes with DistKV-LLM's borrowing in cluster mode. */
      return infsim_fail(err, INFSIM_ERUN,
                         "cluster: request %lld has KV on another instance: DistAttention across ranks is not "
                         "wired into cluster mode yet",
                         (long long)e->req);
    }
    memcpy(parts + i * sizeof w, &w, sizeof w);
  }
  h.slots = at;
  memcpy(x->wire, &h, sizeof h);
  *bytes = (int64_t)sizeof h + b->entry_count * (int64_t)sizeof(icl_wire_part) + at * 4;
  return INFSIM_OK;
}

static infsim_status push_iteration(infsim_cexec *x, const infsim_batch *b, int64_t start_ns, infsim_error *err) {
  if (x->iter_count == x->iter_cap) {
    size_t cap = x->iter_cap ? x->iter_cap * 2 : 1024;
    infsim_iteration_row *p = realloc(x->iters, cap * sizeof *p);
    if (!p) return infsim_fail(err, INFSIM_ENOMEM, "cluster: out of memory");
    x->iters = p;
    x->iter_cap = cap;
  }
  x->iters[x->iter_count] = (infsim_iteration_row){.instance = b->instance, .start_ns = start_ns, .end_ns = -1,
                                                    .steps = 1, .agg = b->agg, .swap_in_bytes = b->swap_in_bytes,
                                                    .swap_out_bytes = b->swap_out_bytes};
  x->inst[b->instance].iteration = x->iter_count++;
  return INFSIM_OK;
}

static infsim_status submit(void *self, const infsim_batch *b, int64_t now, int64_t *end_ns, infsim_error *err) {
  infsim_cexec *x = self;
  *end_ns = -1;
  (void)now;
  infsim_status st = INFSIM_OK;
  if (b->instance < 0 || b->instance >= x->instances || x->inst[b->instance].busy || !b->entries ||
      b->entry_count < 1)
    st = infsim_fail(err, INFSIM_ERUN, "cluster: batch for instance %d: bad instance, busy, or no entries",
                     b->instance);
  int64_t bytes = 0;
  if (st == INFSIM_OK) st = encode(x, b, &bytes, err);
  int64_t start = now_ns(x);
  if (st == INFSIM_OK) st = push_iteration(x, b, start, err);
  if (st == INFSIM_OK) {
    if (b->instance == 0) {
      icl_local *l = &x->local;
      pthread_mutex_lock(&l->mu);
      memcpy(l->buf, x->wire, (size_t)bytes);
      l->buf_bytes = bytes;
      l->has_work = true;
      l->done = false;
      pthread_cond_signal(&l->cv);
      pthread_mutex_unlock(&l->mu);
    } else {
      st = infsim_ctransport_send(x->t, b->instance, ICL_TAG_BATCH, x->wire, bytes, err);
    }
  }
  if (st != INFSIM_OK) {
    if (x->failed == INFSIM_OK) {
      x->failed = st;
      if (err) x->fail_err = *err;
    }
    return st;
  }
  x->inst[b->instance].busy = true;
  x->inst[b->instance].start_ns = start;
  return INFSIM_OK;
}

static void finish(infsim_cexec *x, int32_t instance, int64_t end) {
  x->inst[instance].busy = false;
  x->iters[x->inst[instance].iteration].end_ns = end;
}

infsim_status infsim_cexec_poll(infsim_cexec *x, bool *got, int32_t *instance, int64_t *end_ns, infsim_error *err) {
  *got = false;
  if (x->failed != INFSIM_OK) return infsim_cexec_error(x, err);
  if (x->inst[0].busy) {
    icl_local *l = &x->local;
    pthread_mutex_lock(&l->mu);
    bool done = l->done;
    infsim_status st = l->status;
    infsim_error lerr = l->err;
    double end_s = l->end_s;
    l->done = false;
    pthread_mutex_unlock(&l->mu);
    if (done) {
      if (st != INFSIM_OK) {
        if (err) *err = lerr;
        return st;
      }
      finish(x, 0, (int64_t)((end_s - x->t0_s) * 1e9));
      *got = true;
      *instance = 0;
      *end_ns = x->iters[x->inst[0].iteration].end_ns;
      return INFSIM_OK;
    }
  }
  if (infsim_ctransport_probe(x->t, -1, ICL_TAG_DONE)) {
    icl_wire_done d;
    int32_t from = -1;
    infsim_status st = infsim_ctransport_recv(x->t, -1, ICL_TAG_DONE, &d, sizeof d, 0, &from, NULL, NULL, err);
    if (st != INFSIM_OK) return st;
    int64_t end = now_ns(x);
    if (d.status != INFSIM_OK)
      return infsim_fail(err, (infsim_status)d.status, "cluster: rank %d: %s", from, d.msg);
    if (from < 1 || from >= x->instances || !x->inst[from].busy)
      return infsim_fail(err, INFSIM_ERUN, "cluster: an answer from rank %d, which runs no batch", from);
    finish(x, from, end);
    *got = true;
    *instance = from;
    *end_ns = end;
    return INFSIM_OK;
  }
  int64_t now = now_ns(x), limit = (int64_t)(infsim_ctransport_timeout_s(x->t) * 1e9);
  for (int32_t i = 0; i < x->instances; i++)
    if (x->inst[i].busy && now - x->inst[i].start_ns > limit)
      return infsim_fail(err, INFSIM_ERUN,
                         "cluster: instance %d (rank %d) has not finished its batch after %g s: dead or hung; "
                         "stopping",
                         i, i, infsim_ctransport_timeout_s(x->t));
  return INFSIM_OK;
}

int32_t infsim_cexec_in_flight(const infsim_cexec *x) {
  int32_t n = 0;
  for (int32_t i = 0; i < x->instances; i++) n += x->inst[i].busy;
  return n;
}

infsim_status infsim_cexec_keepalive(infsim_cexec *x, infsim_error *err) {
  char b = 0;
  for (int32_t r = 1; r < x->instances; r++)
    if (!x->inst[r].busy) {
      infsim_status st = infsim_ctransport_send(x->t, r, ICL_TAG_ALIVE, &b, 1, err);
      if (st != INFSIM_OK) return st;
    }
  return INFSIM_OK;
}

infsim_status infsim_cexec_stop(infsim_cexec *x, infsim_error *err) {
  if (x->stopped) return INFSIM_OK;
  x->stopped = true;
  infsim_status st = INFSIM_OK;
  char b = 0;
  /* A worker still running a batch reads the stop after answering it. */
  for (int32_t r = 1; r < x->instances; r++) {
    infsim_status s = infsim_ctransport_send(x->t, r, ICL_TAG_STOP, &b, 1, err);
    if (st == INFSIM_OK) st = s;
  }
  if (x->local.started) {
    pthread_mutex_lock(&x->local.mu);
    x->local.stop = true;
    pthread_cond_signal(&x->local.cv);
    pthread_mutex_unlock(&x->local.mu);
    pthread_join(x->local.thread, NULL);
  }
  return st;
}

const infsim_iteration_row *infsim_cexec_iterations(const infsim_cexec *x, size_t *count) {
  *count = x->iter_count;
  return x->iters;
}

static void injected_fault(const infsim_cexec_fault *fault, int32_t rank) {
  fprintf(stderr, "cluster: rank %d: injected fault: %s\n", rank, fault->kind == 2 ? "exiting" : "hanging");
  if (fault->kind == 2) _exit(3);
  for (;;) sleep(60);
}

infsim_status infsim_cexec_serve(infsim_ctransport *t, infsim_cmodel *m, infsim_cmodel *shadow,
                                 const infsim_cexec_fault *fault, infsim_error *err) {
  int64_t served = 0;
  int64_t cap = wire_cap_for(infsim_cmodel_params_of(m));
  char *buf = malloc((size_t)cap);
  if (!buf) return infsim_fail(err, INFSIM_ENOMEM, "cluster: out of memory");
  infsim_status st = INFSIM_OK;
  for (;;) {
    int32_t tag = -1;
    int64_t bytes = 0;
    st = infsim_ctransport_recv(t, 0, -1, buf, cap, 0, NULL, &tag, &bytes, err);
    if (st != INFSIM_OK) break;
    if (tag == ICL_TAG_STOP) break;
    if (tag == ICL_TAG_ALIVE) continue;
    if (tag != ICL_TAG_BATCH) {
      st = infsim_fail(err, INFSIM_ERUN, "cluster: rank %d: unexpected message tag %d from rank 0",
                       infsim_ctransport_rank(t), tag);
      break;
    }
    if (fault && fault->kind != 0 && fault->after >= 0 && served++ >= fault->after)
      injected_fault(fault, infsim_ctransport_rank(t));
    icl_wire_done d = {0};
    memcpy(&d.seq, buf, sizeof d.seq);
    infsim_error run_err = {0};
    d.status = run_wire(m, shadow, buf, bytes, &run_err);
    if (d.status != INFSIM_OK) memcpy(d.msg, run_err.msg, sizeof d.msg);
    st = infsim_ctransport_send(t, 0, ICL_TAG_DONE, &d, sizeof d, err);
    if (st != INFSIM_OK) break;
  }
  free(buf);
  return st;
}
