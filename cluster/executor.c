/*
** executor.c: cluster_executor.h. Rank 0 is the hub: it runs the
** scheduler, sends every instance its batches, and routes everything
** between instances (DistAttention queries and partials, KV blocks that a
** move carries). Each instance runs one "side" (its model and the loop
** that serves what arrives): ranks 1..N-1 in their main thread over MPI,
** instance 0 in a thread on rank 0 over two in-memory queues. The hub
** never blocks: it sends with infsim_ctransport_isend and polls for what
** comes in, so a side that waits on it (a partial, its next batch) always
** gets an answer.
**
** Messages (control plane, one per item; every side talks to the hub only):
**   BATCH      hub -> side   a batch to run (head, parts, then an int32
**                            stream: each part's local slots and its remote
**                            groups: holder, slot count, tokens, append, slots)
**   DONE       side -> hub   the batch ended (status; seq -1: a side failed
**                            outside a batch)
**   QUERY      owner -> hub -> holder   one layer's queries of the owner's
**                            parts with KV there (+ the new token's K/V)
**   PARTIAL    holder -> hub -> owner   their partial output and LSE
**   BLOCK_OUT  hub -> source            read a moved block and send it
**   MOVE_DATA  source -> hub            its bytes (all layers, K and V)
**   BLOCK_IN   hub -> destination       write them there, claim the block
**   MOVE_DONE  destination -> hub
**
** Waiting for partials, a side serves the queries that reach it (a holder
** may be in its own forward: the model's holder side has its own buffers)
** and keeps anything else for after its batch, so two owners that query
** each other never wait on each other.
**
** KV moves: the KV manager reports every block a move rehomes
** (infsim_kv_set_rehome_hook); the hub copies them one at a time, in the
** order they were made. Order rules that keep the KV where the tables say:
**  - a move starts only when no batch in flight holds its request (the
**    source is read after the last write of it, no query reads it mid-move);
**  - a batch is held back (sent later, encoded from the tables then) while
**    a move of one of its requests, or from or to its instance, is pending:
**    its slots are where the tables say once it runs, and the slot a move
**    frees is read before a new batch can write it.
** Invariant: at most one batch per instance submitted and unfinished (the
** scheduler starts the next only after infsim_sched_iteration_done).
*/
#include "infsim/cluster_executor.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "infsim/kv.h"

enum {
  ICL_TAG_BATCH = 1,
  ICL_TAG_DONE = 2,
  ICL_TAG_STOP = 3,
  ICL_TAG_ALIVE = 4,
  ICL_TAG_QUERY = 5,
  ICL_TAG_PARTIAL = 6,
  ICL_TAG_BLOCK_OUT = 7,
  ICL_TAG_MOVE_DATA = 8,
  ICL_TAG_BLOCK_IN = 9,
  ICL_TAG_MOVE_DONE = 10,
};

typedef struct {
  int64_t seq;
  int32_t instance;
  int32_t count;
  int64_t ints; /* int32 values after the parts */
} icl_wire_head;

typedef struct {
  int64_t req;
  int32_t prompt, query, context, remote, slot_count, groups, append_remote, pad;
} icl_wire_part;

typedef struct {
  int64_t seq;
  int32_t status;
  int32_t pad;
  char msg[INFSIM_ERROR_MSG_BYTES];
} icl_wire_done;

/* QUERY and PARTIAL heads. */
typedef struct {
  int32_t origin, holder, layer, n;
  int32_t status, pad;
  int64_t ints; /* QUERY: int32 slots after the records */
} icl_wire_q;

typedef struct {
  int64_t req;
  int32_t slot_count, tokens, append, pad;
} icl_wire_qrec;

typedef struct {
  int64_t move;
  int64_t req;
  int32_t slot, index;
} icl_wire_move;

/* ---- messages in memory (instance 0's queues, deferred items) ---- */

typedef struct icl_msg {
  struct icl_msg *next;
  int32_t tag;
  int64_t bytes;
  char data[];
} icl_msg;

typedef struct {
  icl_msg *head, *tail;
  pthread_mutex_t mu;
  pthread_cond_t cv;
} icl_queue;

static icl_msg *msg_new(int32_t tag, const void *a, int64_t na, const void *b, int64_t nb) {
  icl_msg *m = malloc(sizeof *m + (size_t)(na + nb));
  if (!m) return NULL;
  m->next = NULL;
  m->tag = tag;
  m->bytes = na + nb;
  if (na) memcpy(m->data, a, (size_t)na);
  if (nb) memcpy(m->data + na, b, (size_t)nb);
  return m;
}

static void list_push(icl_msg **head, icl_msg **tail, icl_msg *m) {
  m->next = NULL;
  if (*tail) (*tail)->next = m;
  else *head = m;
  *tail = m;
}

static icl_msg *list_pop(icl_msg **head, icl_msg **tail) {
  icl_msg *m = *head;
  if (m) {
    *head = m->next;
    if (!*head) *tail = NULL;
  }
  return m;
}

static void queue_push(icl_queue *q, icl_msg *m) {
  pthread_mutex_lock(&q->mu);
  list_push(&q->head, &q->tail, m);
  pthread_cond_signal(&q->cv);
  pthread_mutex_unlock(&q->mu);
}

/* Waits up to timeout_s for a message (NULL on timeout). */
static icl_msg *queue_pop(icl_queue *q, double timeout_s) {
  pthread_mutex_lock(&q->mu);
  double deadline = infsim_cluster_now_s() + timeout_s;
  while (!q->head) {
    double left = deadline - infsim_cluster_now_s();
    if (left <= 0) break;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double w = left < 0.05 ? left : 0.05;
    ts.tv_nsec += (long)(w * 1e9);
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&q->cv, &q->mu, &ts);
  }
  icl_msg *m = list_pop(&q->head, &q->tail);
  pthread_mutex_unlock(&q->mu);
  return m;
}

static void queue_clear(icl_queue *q) {
  icl_msg *m;
  while ((m = list_pop(&q->head, &q->tail))) free(m);
}

/* ---- a side: one instance's model and the loop serving it ---- */

typedef struct icl_side icl_side;
struct icl_side {
  int32_t instance;
  infsim_cmodel *m, *shadow;
  FILE *outputs; /* NULL: none */
  double timeout_s;
  /* to and from the hub */
  infsim_ctransport *t; /* a worker rank's; NULL for instance 0 */
  icl_queue *in, *out;  /* instance 0's */
  icl_msg *deferred, *deferred_tail;
  /* the batch running: its decoded parts and remote groups */
  const int32_t *ints;
  const icl_wire_part *wparts;
  int32_t nparts;
  int64_t *group_at; /* per part: offset of its first group in ints */
  int64_t queries_sent, queries_served;
  char *scratch;
  int64_t scratch_bytes;
};

static infsim_status side_send(icl_side *s, int32_t tag, const void *a, int64_t na, const void *b, int64_t nb,
                               infsim_error *err) {
  if (!s->t) {
    icl_msg *m = msg_new(tag, a, na, b, nb);
    if (!m) return infsim_fail(err, INFSIM_ENOMEM, "cluster: out of memory");
    queue_push(s->out, m);
    return INFSIM_OK;
  }
  if (nb == 0) return infsim_ctransport_send(s->t, 0, tag, a, na, err);
  if (s->scratch_bytes < na + nb) {
    char *p = realloc(s->scratch, (size_t)(na + nb));
    if (!p) return infsim_fail(err, INFSIM_ENOMEM, "cluster: out of memory");
    s->scratch = p;
    s->scratch_bytes = na + nb;
  }
  memcpy(s->scratch, a, (size_t)na);
  memcpy(s->scratch + na, b, (size_t)nb);
  return infsim_ctransport_send(s->t, 0, tag, s->scratch, na + nb, err);
}

/* The next message from the hub (deferred ones first unless fresh). */
static infsim_status side_recv(icl_side *s, bool fresh, icl_msg **out, infsim_error *err) {
  *out = NULL;
  if (!fresh && s->deferred) {
    *out = list_pop(&s->deferred, &s->deferred_tail);
    return INFSIM_OK;
  }
  if (!s->t) {
    *out = queue_pop(s->in, s->timeout_s);
    if (!*out)
      return infsim_fail(err, INFSIM_ERUN, "cluster: instance 0: nothing from the driver within %g s", s->timeout_s);
    return INFSIM_OK;
  }
  double deadline = infsim_cluster_now_s() + s->timeout_s;
  int32_t from = -1, tag = -1;
  int64_t bytes = 0;
  while (!infsim_ctransport_probe_msg(s->t, 0, -1, &from, &tag, &bytes)) {
    if (infsim_cluster_now_s() > deadline)
      return infsim_fail(err, INFSIM_ERUN, "cluster: rank %d: timed out after %g s waiting for rank 0 (dead or hung?)",
                         s->instance, s->timeout_s);
    struct timespec ts = {0, 20000};
    nanosleep(&ts, NULL);
  }
  icl_msg *m = malloc(sizeof *m + (size_t)(bytes > 0 ? bytes : 1));
  if (!m) return infsim_fail(err, INFSIM_ENOMEM, "cluster: out of memory");
  m->next = NULL;
  infsim_status st = infsim_ctransport_recv(s->t, 0, tag, m->data, bytes, 0, NULL, &m->tag, &m->bytes, err);
  if (st != INFSIM_OK) {
    free(m);
    return st;
  }
  *out = m;
  return INFSIM_OK;
}

/* Holder side: one QUERY message; answers PARTIAL. */
static infsim_status serve_query(icl_side *s, const icl_msg *msg, infsim_error *err) {
  const infsim_cmodel_params *p = infsim_cmodel_params_of(s->m);
  const int64_t h = p->shape.heads, g = p->shape.kv_heads, d = p->shape.head_dim;
  icl_wire_q q;
  memcpy(&q, msg->data, sizeof q);
  int64_t n = q.n;
  const icl_wire_qrec *recs = (const icl_wire_qrec *)(const void *)(msg->data + sizeof q);
  const int32_t *ints = (const int32_t *)(const void *)(msg->data + sizeof q + n * sizeof *recs);
  const uint16_t *qv = (const uint16_t *)(const void *)(ints + q.ints);
  const uint16_t *kv = qv + n * h * d, *vv = kv + n * g * d;
  infsim_cmodel_query *qs = calloc((size_t)(n > 0 ? n : 1), sizeof *qs);
  float *out = malloc((size_t)(n * h * d + n * h) * 4);
  infsim_status st = (!qs || !out) ? infsim_fail(err, INFSIM_ENOMEM, "cluster: out of memory") : INFSIM_OK;
  int64_t at = 0;
  for (int64_t i = 0; i < n && st == INFSIM_OK; i++) {
    qs[i] = (infsim_cmodel_query){.req = recs[i].req, .slots = ints + at, .slot_count = recs[i].slot_count,
                                  .tokens = recs[i].tokens, .append = recs[i].append != 0};
    at += recs[i].slot_count;
  }
  infsim_error qerr = {0};
  icl_wire_q a = {.origin = q.origin, .holder = s->instance, .layer = q.layer, .n = q.n};
  if (st == INFSIM_OK) {
    a.status = infsim_cmodel_attend_partial(s->m, q.layer, qs, (int32_t)n, qv, kv, vv, out, out + n * h * d, &qerr);
    if (a.status == INFSIM_OK) a.status = infsim_kernels_sync(infsim_cmodel_kernels(s->m), &qerr);
  }
  s->queries_served++;
  if (st == INFSIM_OK) {
    /* A failed partial travels as its message: the owner stops naming it. */
    if (a.status != INFSIM_OK)
      st = side_send(s, ICL_TAG_PARTIAL, &a, sizeof a, qerr.msg, sizeof qerr.msg, err);
    else
      st = side_send(s, ICL_TAG_PARTIAL, &a, sizeof a, out, (n * h * d + n * h) * 4, err);
  }
  free(qs);
  free(out);
  return st;
}

/* Owner side: the remote hook of a forward. Sends one QUERY per holder,
 * waits for their partials (serving queries meanwhile), merges them by
 * LSE per part. */
static infsim_status side_attend(void *self, int32_t layer, const int32_t *parts, int32_t n, const uint16_t *q,
                                 const uint16_t *k, const uint16_t *v, float *out, float *lse, infsim_error *err) {
  icl_side *s = self;
  const infsim_cmodel_params *p = infsim_cmodel_params_of(s->m);
  const int64_t h = p->shape.heads, g = p->shape.kv_heads, d = p->shape.head_dim;
  for (int64_t i = 0; i < n * h * d; i++) out[i] = 0.0f;
  for (int64_t i = 0; i < n * h; i++) lse[i] = -INFINITY;
  /* The holders of these parts, in order of first appearance. */
  int32_t holders[64], nh = 0;
  for (int32_t i = 0; i < n; i++) {
    const icl_wire_part *w = &s->wparts[parts[i]];
    int64_t at = s->group_at[parts[i]];
    for (int32_t gi = 0; gi < w->groups; gi++) {
      int32_t hd = s->ints[at], cnt = s->ints[at + 1];
      int32_t j = 0;
      while (j < nh && holders[j] != hd) j++;
      if (j == nh) {
        if (nh == 64) return infsim_fail(err, INFSIM_ERUN, "cluster: more than 64 holders in one batch");
        holders[nh++] = hd;
      }
      at += 4 + cnt;
    }
  }
  infsim_status st = INFSIM_OK;
  for (int32_t j = 0; j < nh && st == INFSIM_OK; j++) {
    /* Records, slots, then q, k, v of the parts with blocks on this holder. */
    int32_t cnt = 0;
    int64_t nints = 0;
    for (int32_t i = 0; i < n; i++) {
      const icl_wire_part *w = &s->wparts[parts[i]];
      int64_t at = s->group_at[parts[i]];
      for (int32_t gi = 0; gi < w->groups; gi++) {
        if (s->ints[at] == holders[j]) cnt++, nints += s->ints[at + 1];
        at += 4 + s->ints[at + 1];
      }
    }
    int64_t bytes = (int64_t)sizeof(icl_wire_q) + cnt * (int64_t)sizeof(icl_wire_qrec) + nints * 4 +
                    cnt * (h * d + 2 * g * d) * 2;
    char *buf = malloc((size_t)bytes);
    if (!buf) return infsim_fail(err, INFSIM_ENOMEM, "cluster: out of memory");
    icl_wire_q head = {.origin = s->instance, .holder = holders[j], .layer = layer, .n = cnt, .ints = nints};
    memcpy(buf, &head, sizeof head);
    icl_wire_qrec *recs = (icl_wire_qrec *)(void *)(buf + sizeof head);
    int32_t *ints = (int32_t *)(void *)(buf + sizeof head + cnt * sizeof *recs);
    uint16_t *qo = (uint16_t *)(void *)(ints + nints), *ko = qo + cnt * h * d, *vo = ko + cnt * g * d;
    int32_t c = 0;
    int64_t ia = 0;
    for (int32_t i = 0; i < n; i++) {
      const icl_wire_part *w = &s->wparts[parts[i]];
      int64_t at = s->group_at[parts[i]];
      for (int32_t gi = 0; gi < w->groups; gi++) {
        int32_t gcnt = s->ints[at + 1];
        if (s->ints[at] == holders[j]) {
          recs[c] = (icl_wire_qrec){.req = w->req, .slot_count = gcnt, .tokens = s->ints[at + 2],
                                    .append = s->ints[at + 3]};
          memcpy(ints + ia, s->ints + at + 4, (size_t)gcnt * 4);
          ia += gcnt;
          memcpy(qo + c * h * d, q + i * h * d, (size_t)(h * d) * 2);
          memcpy(ko + c * g * d, k + i * g * d, (size_t)(g * d) * 2);
          memcpy(vo + c * g * d, v + i * g * d, (size_t)(g * d) * 2);
          c++;
        }
        at += 4 + gcnt;
      }
    }
    st = side_send(s, ICL_TAG_QUERY, buf, bytes, NULL, 0, err);
    free(buf);
    s->queries_sent++;
  }
  /* Partials, merged into out / lse by LSE as they come. */
  int32_t got = 0;
  while (st == INFSIM_OK && got < nh) {
    icl_msg *m = NULL;
    if ((st = side_recv(s, true, &m, err)) != INFSIM_OK) break;
    if (m->tag == ICL_TAG_QUERY) {
      st = serve_query(s, m, err);
      free(m);
      continue;
    }
    if (m->tag == ICL_TAG_STOP) { /* the run is stopping (a fault elsewhere) */
      free(m);
      st = infsim_fail(err, INFSIM_ERUN, "cluster: instance %d: stopped while waiting for partials", s->instance);
      break;
    }
    if (m->tag != ICL_TAG_PARTIAL) { /* for after this batch */
      list_push(&s->deferred, &s->deferred_tail, m);
      continue;
    }
    icl_wire_q a;
    memcpy(&a, m->data, sizeof a);
    if (a.status != INFSIM_OK) {
      st = infsim_fail(err, (infsim_status)a.status, "cluster: instance %d (holder): %.*s", a.holder,
                       (int)(m->bytes - (int64_t)sizeof a), m->data + sizeof a);
      free(m);
      break;
    }
    if (a.origin != s->instance || a.layer != layer) {
      st = infsim_fail(err, INFSIM_ERUN, "cluster: instance %d: a partial for instance %d layer %d while at layer %d",
                       s->instance, a.origin, a.layer, layer);
      free(m);
      break;
    }
    const float *po = (const float *)(const void *)(m->data + sizeof a), *pl = po + a.n * h * d;
    /* Walk the parts in the order the query listed them. */
    int32_t c = 0;
    for (int32_t i = 0; i < n; i++) {
      const icl_wire_part *w = &s->wparts[parts[i]];
      int64_t at = s->group_at[parts[i]];
      for (int32_t gi = 0; gi < w->groups; gi++) {
        if (s->ints[at] == a.holder) {
          for (int64_t hh = 0; hh < h; hh++) {
            float l1 = lse[i * h + hh], l2 = pl[c * h + hh];
            float mx = l1 > l2 ? l1 : l2;
            if (mx == -INFINITY) continue;
            float w1 = l1 == -INFINITY ? 0.0f : expf(l1 - mx), w2 = l2 == -INFINITY ? 0.0f : expf(l2 - mx);
            float *o = out + (i * h + hh) * d;
            const float *x2 = po + (c * h + hh) * d;
            for (int64_t e = 0; e < d; e++) o[e] = (w1 * o[e] + w2 * x2[e]) / (w1 + w2);
            lse[i * h + hh] = mx + logf(w1 + w2);
          }
          c++;
        }
        at += 4 + s->ints[at + 1];
      }
    }
    got++;
    free(m);
  }
  return st;
}

/* Writes each part's last row of the forward's hidden state (the row
 * whose logits would be sampled): "req position v0 v1 ...". */
static infsim_status write_outputs(icl_side *s, const infsim_cmodel_part *parts, int32_t count, infsim_error *err) {
  const int64_t H = infsim_cmodel_params_of(s->m)->shape.hidden;
  int64_t rows = 0, decodes = 0;
  for (int32_t i = 0; i < count; i++) {
    rows += parts[i].query_tokens;
    decodes += parts[i].query_tokens == 1 && parts[i].context_tokens > 0;
  }
  uint16_t *hid = malloc((size_t)(rows * H) * 2);
  if (!hid) return infsim_fail(err, INFSIM_ENOMEM, "cluster: out of memory");
  infsim_status st = infsim_cmodel_hidden(s->m, hid, err);
  /* Rows: the decodes first, then each prefill's tokens (cluster_model.h). */
  int64_t dec = 0, pre = decodes;
  for (int32_t i = 0; i < count && st == INFSIM_OK; i++) {
    const infsim_cmodel_part *pt = &parts[i];
    int64_t row;
    if (pt->query_tokens == 1 && pt->context_tokens > 0) {
      row = dec++;
    } else {
      row = pre + pt->query_tokens - 1;
      pre += pt->query_tokens;
    }
    fprintf(s->outputs, "%lld %d", (long long)pt->req, pt->context_tokens + pt->query_tokens - 1);
    for (int64_t e = 0; e < H; e++) fprintf(s->outputs, " %.6g", (double)infsim_bf16_to_float(hid[row * H + e]));
    fputc('\n', s->outputs);
  }
  free(hid);
  return st;
}

/* Runs one BATCH message and waits for the device. */
static infsim_status run_batch(icl_side *s, const icl_msg *msg, infsim_error *err) {
  icl_wire_head hd;
  if (msg->bytes < (int64_t)sizeof hd) return infsim_fail(err, INFSIM_ERUN, "cluster: short batch message");
  memcpy(&hd, msg->data, sizeof hd);
  int64_t need = (int64_t)sizeof hd + hd.count * (int64_t)sizeof(icl_wire_part) + hd.ints * 4;
  if (hd.count < 1 || hd.ints < 0 || msg->bytes != need)
    return infsim_fail(err, INFSIM_ERUN, "cluster: batch message of %lld bytes, expected %lld", (long long)msg->bytes,
                       (long long)need);
  const icl_wire_part *w = (const icl_wire_part *)(const void *)(msg->data + sizeof hd);
  const int32_t *ints = (const int32_t *)(const void *)(msg->data + sizeof hd + hd.count * sizeof *w);
  infsim_cmodel_part *parts = calloc((size_t)hd.count, sizeof *parts);
  int64_t *group_at = calloc((size_t)hd.count, sizeof *group_at);
  if (!parts || !group_at) {
    free(parts), free(group_at);
    return infsim_fail(err, INFSIM_ENOMEM, "cluster: out of memory");
  }
  infsim_status st = INFSIM_OK;
  int64_t at = 0;
  bool remote = false;
  for (int32_t i = 0; i < hd.count && st == INFSIM_OK; i++) {
    if (w[i].slot_count < 0 || at + w[i].slot_count > hd.ints) {
      st = infsim_fail(err, INFSIM_ERUN, "cluster: batch message: part %d overruns its slots", i);
      break;
    }
    parts[i] = (infsim_cmodel_part){.req = w[i].req, .prompt_tokens = w[i].prompt, .query_tokens = w[i].query,
                                    .context_tokens = w[i].context, .remote_tokens = w[i].remote,
                                    .slots = ints + at, .slot_count = w[i].slot_count,
                                    .append_remote = w[i].append_remote != 0};
    at += w[i].slot_count;
    group_at[i] = at;
    for (int32_t gi = 0; gi < w[i].groups; gi++) {
      if (at + 4 > hd.ints || at + 4 + ints[at + 1] > hd.ints) {
        st = infsim_fail(err, INFSIM_ERUN, "cluster: batch message: part %d overruns its groups", i);
        break;
      }
      at += 4 + ints[at + 1];
    }
    remote |= w[i].groups > 0;
  }
  s->ints = ints;
  s->wparts = w;
  s->nparts = hd.count;
  s->group_at = group_at;
  infsim_cmodel_remote hook = {.self = s, .attend = side_attend};
  /* With a shadow (--verify) the parts also run one by one and are
   * compared, inside the batch's measured time: verified runs check
   * numbers, not speed. Parts with remote KV have no solo twin. */
  if (st == INFSIM_OK && remote && s->shadow)
    st = infsim_fail(err, INFSIM_EINPUT,
                     "cluster: --verify runs each request alone on a twin, which a request split over instances has "
                     "not: run DistAttention without --verify (compare --outputs with a one-instance run)");
  else if (st == INFSIM_OK && remote)
    st = infsim_cmodel_forward(s->m, parts, hd.count, &hook, err);
  else if (st == INFSIM_OK)
    st = infsim_cmodel_forward_verified(s->m, s->shadow, parts, hd.count, err);
  if (st == INFSIM_OK) st = infsim_kernels_sync(infsim_cmodel_kernels(s->m), err);
  if (st == INFSIM_OK && s->outputs) st = write_outputs(s, parts, hd.count, err);
  s->ints = NULL;
  s->wparts = NULL;
  s->group_at = NULL;
  free(parts);
  free(group_at);
  return st;
}

static void injected_fault(const infsim_cexec_fault *fault, int32_t rank) {
  fprintf(stderr, "cluster: rank %d: injected fault: %s\n", rank, fault->kind == 2 ? "exiting" : "hanging");
  if (fault->kind == 2) _exit(3);
  for (;;) sleep(60);
}

/* A side's loop: runs what the hub sends until STOP. */
static infsim_status side_loop(icl_side *s, const infsim_cexec_fault *fault, infsim_error *err) {
  int64_t served = 0;
  const int64_t block_bytes = infsim_cmodel_block_bytes(s->m);
  char *block = malloc((size_t)block_bytes);
  if (!block) return infsim_fail(err, INFSIM_ENOMEM, "cluster: out of memory");
  infsim_status st = INFSIM_OK;
  for (;;) {
    icl_msg *m = NULL;
    if ((st = side_recv(s, false, &m, err)) != INFSIM_OK) break;
    int32_t tag = m->tag;
    infsim_error run_err = {0};
    infsim_status rs = INFSIM_OK;
    if (tag == ICL_TAG_STOP) {
      free(m);
      break;
    } else if (tag == ICL_TAG_ALIVE) {
    } else if (tag == ICL_TAG_BATCH) {
      if (fault && fault->kind != 0 && fault->after >= 0 && served++ >= fault->after)
        injected_fault(fault, s->instance);
      icl_wire_done d = {0};
      memcpy(&d.seq, m->data, sizeof d.seq);
      d.status = run_batch(s, m, &run_err);
      if (d.status != INFSIM_OK) memcpy(d.msg, run_err.msg, sizeof d.msg);
      st = side_send(s, ICL_TAG_DONE, &d, sizeof d, NULL, 0, err);
    } else if (tag == ICL_TAG_QUERY) {
      st = serve_query(s, m, err);
    } else if (tag == ICL_TAG_BLOCK_OUT) {
      icl_wire_move mv;
      memcpy(&mv, m->data, sizeof mv);
      rs = infsim_cmodel_block_read(s->m, mv.slot, block, &run_err);
      if (rs == INFSIM_OK) st = side_send(s, ICL_TAG_MOVE_DATA, &mv, sizeof mv, block, block_bytes, err);
    } else if (tag == ICL_TAG_BLOCK_IN) {
      icl_wire_move mv;
      memcpy(&mv, m->data, sizeof mv);
      if (m->bytes != (int64_t)sizeof mv + block_bytes)
        rs = infsim_fail(&run_err, INFSIM_ERUN, "cluster: a moved block of %lld bytes, expected %lld",
                         (long long)(m->bytes - (int64_t)sizeof mv), (long long)block_bytes);
      if (rs == INFSIM_OK) rs = infsim_cmodel_block_write(s->m, mv.slot, m->data + sizeof mv, &run_err);
      if (rs == INFSIM_OK) rs = infsim_kernels_sync(infsim_cmodel_kernels(s->m), &run_err);
      if (rs == INFSIM_OK) {
        /* The receiver of a KV move names the block (cluster_model.h). */
        infsim_cmodel_claim(s->m, mv.slot, mv.req, mv.index);
        st = side_send(s, ICL_TAG_MOVE_DONE, &mv, sizeof mv, NULL, 0, err);
      }
    } else {
      rs = infsim_fail(&run_err, INFSIM_ERUN, "cluster: instance %d: unexpected message tag %d", s->instance, tag);
    }
    free(m);
    if (rs != INFSIM_OK && st == INFSIM_OK) {
      /* A failure outside a batch: the hub stops the run with its message. */
      icl_wire_done d = {.seq = -1, .status = rs};
      memcpy(d.msg, run_err.msg, sizeof d.msg);
      st = side_send(s, ICL_TAG_DONE, &d, sizeof d, NULL, 0, err);
    }
    if (st != INFSIM_OK) break;
  }
  icl_msg *m;
  while ((m = list_pop(&s->deferred, &s->deferred_tail))) free(m);
  free(block);
  free(s->scratch);
  s->scratch = NULL;
  return st;
}

/* ---- rank 0: the hub ---- */

typedef struct {
  bool busy;  /* submitted, not finished */
  bool sent;  /* delivered to its side (else held back) */
  int64_t seq;
  int64_t start_ns;
  size_t iteration; /* its row in iterations */
  infsim_batch_entry *entries;
  int32_t entry_count, entry_cap;
} icl_instance;

typedef struct {
  int64_t req, index;
  int32_t src, dst, src_slot, dst_slot;
} icl_move;

typedef struct {
  pthread_t thread;
  bool started;
  icl_side side;
  icl_queue in, out;
  infsim_status status;
  infsim_error err;
} icl_local;

struct infsim_cexec {
  infsim_ctransport *t;
  const infsim_trace_request *requests;
  size_t request_count;
  double t0_s;
  int32_t instances;
  icl_instance *inst;
  icl_local local;
  const infsim_kv *kv;
  int64_t wire_cap;
  int64_t seq;
  infsim_status failed;
  infsim_error fail_err;
  infsim_iteration_row *iters;
  size_t iter_count, iter_cap;
  /* batch ends not yet handed to the driver */
  int32_t *ended;
  int64_t *ended_ns;
  int32_t n_ended;
  /* KV moves, in order; moves[0] in progress when moving */
  icl_move *moves;
  size_t n_moves, cap_moves;
  bool moving;
  int64_t moves_done, move_bytes, queries_routed;
  bool stopped;
};

static int64_t now_ns(const infsim_cexec *x) { return (int64_t)((infsim_cluster_now_s() - x->t0_s) * 1e9); }

static void fail_once(infsim_cexec *x, infsim_status st, const infsim_error *err) {
  if (x->failed == INFSIM_OK) {
    x->failed = st;
    if (err) x->fail_err = *err;
  }
}

static void *local_main(void *arg) {
  icl_local *l = arg;
  l->status = side_loop(&l->side, NULL, &l->err);
  if (l->status != INFSIM_OK) {
    /* Tell the hub: it stops the run with this message. */
    icl_wire_done d = {.seq = -1, .status = l->status};
    memcpy(d.msg, l->err.msg, sizeof d.msg);
    icl_msg *m = msg_new(ICL_TAG_DONE, &d, sizeof d, NULL, 0);
    if (m) queue_push(&l->out, m);
  }
  return NULL;
}

static int64_t wire_cap_for(const infsim_cmodel_params *p) {
  /* Each part's slots: local ones and its remote groups (4 ints each). */
  return (int64_t)sizeof(icl_wire_head) +
         p->max_requests * ((int64_t)sizeof(icl_wire_part) + (p->max_blocks_per_request + 4 * 8) * 4);
}

static infsim_status submit(void *self, const infsim_batch *batch, int64_t now, int64_t *end_ns, infsim_error *err);

infsim_status infsim_cexec_new(infsim_ctransport *t, infsim_cmodel *local, infsim_cmodel *shadow, FILE *outputs,
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
  x->ended = calloc((size_t)x->instances, sizeof *x->ended);
  x->ended_ns = calloc((size_t)x->instances, sizeof *x->ended_ns);
  x->wire_cap = wire_cap_for(infsim_cmodel_params_of(local));
  if (!x->inst || !x->ended || !x->ended_ns) {
    infsim_cexec_free(x);
    return infsim_fail(err, INFSIM_ENOMEM, "cluster: out of memory");
  }
  icl_local *l = &x->local;
  pthread_mutex_init(&l->in.mu, NULL);
  pthread_cond_init(&l->in.cv, NULL);
  pthread_mutex_init(&l->out.mu, NULL);
  pthread_cond_init(&l->out.cv, NULL);
  /* Instance 0 waits for its next message as long as it likes: the driver
   * watches the time. */
  l->side = (icl_side){.instance = 0, .m = local, .shadow = shadow, .outputs = outputs, .timeout_s = 1e9,
                       .in = &l->in, .out = &l->out};
  if (pthread_create(&l->thread, NULL, local_main, l) != 0) {
    infsim_cexec_free(x);
    return infsim_fail(err, INFSIM_ERUN, "cluster: cannot start instance 0's thread");
  }
  l->started = true;
  *out = x;
  return INFSIM_OK;
}

void infsim_cexec_free(infsim_cexec *x) {
  if (!x) return;
  if (!x->stopped) infsim_cexec_stop(x, NULL);
  if (x->local.started || x->inst) {
    queue_clear(&x->local.in);
    queue_clear(&x->local.out);
  }
  if (x->local.started) {
    pthread_mutex_destroy(&x->local.in.mu);
    pthread_cond_destroy(&x->local.in.cv);
    pthread_mutex_destroy(&x->local.out.mu);
    pthread_cond_destroy(&x->local.out.cv);
  }
  if (x->inst)
    for (int32_t i = 0; i < x->instances; i++) free(x->inst[i].entries);
  free(x->inst);
  free(x->ended);
  free(x->ended_ns);
  free(x->moves);
  free(x->iters);
  free(x);
}

/* Hands a message to instance i's side (takes buf). */
static infsim_status deliver(infsim_cexec *x, int32_t i, int32_t tag, void *buf, int64_t bytes, infsim_error *err) {
  if (i == 0) {
    icl_msg *m = msg_new(tag, buf, bytes, NULL, 0);
    free(buf);
    if (!m) return infsim_fail(err, INFSIM_ENOMEM, "cluster: out of memory");
    queue_push(&x->local.in, m);
    return INFSIM_OK;
  }
  return infsim_ctransport_isend(x->t, i, tag, buf, bytes, err);
}

static void on_rehome(void *self, int64_t req, int64_t index, int64_t from, int64_t to) {
  infsim_cexec *x = self;
  int32_t src = infsim_kv_holder_of(x->kv, from), dst = infsim_kv_holder_of(x->kv, to);
  if (src >= x->instances || dst >= x->instances) {
    infsim_error e;
    infsim_fail(&e, INFSIM_EINPUT,
                "cluster: request %lld: KV moved to or from host memory (policy.cpu_tier, swap): cluster mode moves "
                "KV between GPU instances only",
                (long long)req);
    fail_once(x, INFSIM_EINPUT, &e);
    return;
  }
  if (x->n_moves == x->cap_moves) {
    size_t cap = x->cap_moves ? 2 * x->cap_moves : 64;
    icl_move *p = realloc(x->moves, cap * sizeof *p);
    if (!p) {
      infsim_error e;
      infsim_fail(&e, INFSIM_ENOMEM, "cluster: out of memory");
      fail_once(x, INFSIM_ENOMEM, &e);
      return;
    }
    x->moves = p;
    x->cap_moves = cap;
  }
  /* Every moved block is copied, written or not: its claim travels with it. */
  x->moves[x->n_moves++] = (icl_move){.req = req, .index = index, .src = src, .dst = dst,
                                      .src_slot = (int32_t)(from - infsim_kv_first_block(x->kv, src)),
                                      .dst_slot = (int32_t)(to - infsim_kv_first_block(x->kv, dst))};
}

void infsim_cexec_attach_kv(infsim_cexec *x, infsim_kv *kv) {
  x->kv = kv;
  infsim_kv_set_rehome_hook(kv, on_rehome, x);
}

infsim_executor infsim_cexec_seam(infsim_cexec *x) {
  return (infsim_executor){.self = x, .wants_entries = true, .max_steps = 1, .submit = submit, .cut = NULL};
}

infsim_status infsim_cexec_error(const infsim_cexec *x, infsim_error *err) {
  if (x->failed != INFSIM_OK && err) *err = x->fail_err;
  return x->failed;
}

static bool in_batch(const icl_instance *in, int64_t req) {
  for (int32_t i = 0; i < in->entry_count; i++)
    if (in->entries[i].req == req) return true;
  return false;
}

/* Lays instance i's batch out as a wire message from the tables now. */
static infsim_status encode(infsim_cexec *x, int32_t i, char **out, int64_t *bytes, infsim_error *err) {
  const icl_instance *in = &x->inst[i];
  const infsim_kv *kv = x->kv;
  const int64_t bt = infsim_cmodel_params_of(x->local.side.m)->block_tokens;
  char *buf = malloc((size_t)x->wire_cap);
  if (!buf) return infsim_fail(err, INFSIM_ENOMEM, "cluster: out of memory");
  icl_wire_head h = {.seq = in->seq, .instance = i, .count = in->entry_count};
  char *parts = buf + sizeof h;
  int32_t *ints = (int32_t *)(void *)(parts + in->entry_count * sizeof(icl_wire_part));
  int64_t cap_ints = (x->wire_cap - (int64_t)sizeof h - in->entry_count * (int64_t)sizeof(icl_wire_part)) / 4;
  int64_t at = 0;
  infsim_status st = INFSIM_OK;
  for (int32_t e = 0; e < in->entry_count && st == INFSIM_OK; e++) {
    const infsim_batch_entry *en = &in->entries[e];
    int64_t n = 0;
    const int64_t *table = infsim_kv_table(kv, en->req, &n);
    assert((size_t)en->req < x->request_count);
    icl_wire_part w = {.req = en->req, .prompt = (int32_t)x->requests[en->req].prompt_tokens,
                       .query = (int32_t)en->query_tokens, .context = (int32_t)en->context_tokens};
    /* Blocks the part touches: every token before it and its own. */
    int64_t total = en->context_tokens + en->query_tokens, used = (total + bt - 1) / bt;
    if (used > n) {
      st = infsim_fail(err, INFSIM_ERUN, "cluster: request %lld: %lld tokens in %lld blocks", (long long)en->req,
                       (long long)total, (long long)n);
      break;
    }
    int64_t last = (total - 1) / bt; /* the block the last new token goes to */
    int32_t first = (int32_t)infsim_kv_first_block(kv, i);
    int64_t local_before = 0; /* tokens before the part, in local blocks */
    bool append_remote = false;
    int64_t start = at;
    for (int64_t j = 0; j < used && at < cap_ints; j++) {
      if (infsim_kv_holder_of(kv, table[j]) != i) {
        if (j == last) append_remote = true;
        continue;
      }
      ints[at++] = (int32_t)(table[j] - first);
      int64_t in_block = en->context_tokens - j * bt;
      local_before += in_block < 0 ? 0 : in_block > bt ? bt : in_block;
    }
    w.slot_count = (int32_t)(at - start);
    w.remote = (int32_t)(en->context_tokens - local_before);
    w.append_remote = append_remote;
    if (w.remote > 0 && en->query_tokens != 1) {
      st = infsim_fail(err, INFSIM_ERUN,
                       "cluster: request %lld: a prompt chunk after KV on another instance (chunked prefill of a "
                       "split request) is not run by cluster mode; give it max_batched_tokens >= its prompt",
                       (long long)en->req);
      break;
    }
    /* Remote groups, one per holder, blocks in table order. */
    int32_t holders[64], nh = 0;
    for (int64_t j = 0; j < used; j++) {
      int32_t hd = infsim_kv_holder_of(kv, table[j]);
      if (hd == i) continue;
      int32_t k = 0;
      while (k < nh && holders[k] != hd) k++;
      if (k == nh && nh < 64) holders[nh++] = hd;
    }
    w.groups = nh;
    for (int32_t k = 0; k < nh && at + 4 <= cap_ints; k++) {
      int64_t head = at;
      at += 4;
      int32_t cnt = 0, tokens = 0, app = 0;
      int64_t base = infsim_kv_first_block(kv, holders[k]);
      for (int64_t j = 0; j < used && at < cap_ints; j++) {
        if (infsim_kv_holder_of(kv, table[j]) != holders[k]) continue;
        ints[at++] = (int32_t)(table[j] - base);
        cnt++;
        int64_t in_block = total - j * bt;
        tokens += (int32_t)(in_block > bt ? bt : in_block);
        if (j == last) app = 1;
      }
      ints[head] = holders[k];
      ints[head + 1] = cnt;
      ints[head + 2] = tokens;
      ints[head + 3] = app;
    }
    if (at >= cap_ints) st = infsim_fail(err, INFSIM_ERUN, "cluster: a batch larger than its message");
    memcpy(parts + e * sizeof w, &w, sizeof w);
  }
  if (st != INFSIM_OK) {
    free(buf);
    return st;
  }
  h.ints = at;
  memcpy(buf, &h, sizeof h);
  *out = buf;
  *bytes = (int64_t)sizeof h + in->entry_count * (int64_t)sizeof(icl_wire_part) + at * 4;
  return INFSIM_OK;
}

/* Whether instance i's batch must wait for a pending move. */
static bool held_by_moves(const infsim_cexec *x, int32_t i) {
  for (size_t k = 0; k < x->n_moves; k++) {
    const icl_move *mv = &x->moves[k];
    if (mv->src == i || mv->dst == i || in_batch(&x->inst[i], mv->req)) return true;
  }
  return false;
}

static infsim_status try_send(infsim_cexec *x, int32_t i, infsim_error *err) {
  icl_instance *in = &x->inst[i];
  if (!in->busy || in->sent || held_by_moves(x, i)) return INFSIM_OK;
  char *buf = NULL;
  int64_t bytes = 0;
  infsim_status st = encode(x, i, &buf, &bytes, err);
  if (st != INFSIM_OK) return st;
  in->sent = true;
  return deliver(x, i, ICL_TAG_BATCH, buf, bytes, err);
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
      b->entry_count < 1 || (x->kv && x->kv != b->kv))
    st = infsim_fail(err, INFSIM_ERUN, "cluster: batch for instance %d: bad instance, busy, or no entries",
                     b->instance);
  icl_instance *in = &x->inst[b->instance];
  if (st == INFSIM_OK && in->entry_cap < b->entry_count) {
    infsim_batch_entry *e = realloc(in->entries, (size_t)b->entry_count * sizeof *e);
    if (!e) st = infsim_fail(err, INFSIM_ENOMEM, "cluster: out of memory");
    else in->entries = e, in->entry_cap = b->entry_count;
  }
  if (st == INFSIM_OK) {
    if (!x->kv) x->kv = b->kv;
    memcpy(in->entries, b->entries, (size_t)b->entry_count * sizeof *in->entries);
    in->entry_count = b->entry_count;
    in->seq = ++x->seq;
  }
  int64_t start = now_ns(x);
  if (st == INFSIM_OK) st = push_iteration(x, b, start, err);
  if (st == INFSIM_OK) {
    in->busy = true;
    in->sent = false;
    in->start_ns = start;
    st = try_send(x, b->instance, err);
  }
  if (st != INFSIM_OK) {
    fail_once(x, st, err);
    return st;
  }
  return INFSIM_OK;
}

/* Starts the next move when nothing in flight holds its request. */
static infsim_status next_move(infsim_cexec *x, infsim_error *err) {
  if (x->moving || x->n_moves == 0) return INFSIM_OK;
  const icl_move *mv = &x->moves[0];
  for (int32_t i = 0; i < x->instances; i++)
    if (x->inst[i].busy && x->inst[i].sent && in_batch(&x->inst[i], mv->req)) return INFSIM_OK;
  icl_wire_move w = {.move = x->moves_done, .req = mv->req, .slot = mv->src_slot, .index = (int32_t)mv->index};
  void *buf = malloc(sizeof w);
  if (!buf) return infsim_fail(err, INFSIM_ENOMEM, "cluster: out of memory");
  memcpy(buf, &w, sizeof w);
  x->moving = true;
  return deliver(x, mv->src, ICL_TAG_BLOCK_OUT, buf, sizeof w, err);
}

static void finish(infsim_cexec *x, int32_t instance, int64_t end) {
  icl_instance *in = &x->inst[instance];
  in->busy = false;
  in->sent = false;
  in->entry_count = 0;
  x->iters[in->iteration].end_ns = end;
  x->ended[x->n_ended] = instance;
  x->ended_ns[x->n_ended++] = end;
}

/* One message for the hub, from instance `from`. */
static infsim_status route(infsim_cexec *x, int32_t from, int32_t tag, char *data, int64_t bytes, infsim_error *err) {
  switch (tag) {
  case ICL_TAG_DONE: {
    icl_wire_done d;
    if (bytes != (int64_t)sizeof d) return infsim_fail(err, INFSIM_ERUN, "cluster: a short answer from rank %d", from);
    memcpy(&d, data, sizeof d);
    if (d.status != INFSIM_OK)
      return infsim_fail(err, (infsim_status)d.status, "cluster: rank %d: %s", from, d.msg);
    if (!x->inst[from].busy || !x->inst[from].sent || d.seq != x->inst[from].seq)
      return infsim_fail(err, INFSIM_ERUN, "cluster: an answer from rank %d, which runs no such batch", from);
    finish(x, from, now_ns(x));
    return INFSIM_OK;
  }
  case ICL_TAG_QUERY:
  case ICL_TAG_PARTIAL: {
    icl_wire_q q;
    if (bytes < (int64_t)sizeof q) return infsim_fail(err, INFSIM_ERUN, "cluster: a short query from rank %d", from);
    memcpy(&q, data, sizeof q);
    int32_t to = tag == ICL_TAG_QUERY ? q.holder : q.origin;
    if (to < 0 || to >= x->instances || to == from)
      return infsim_fail(err, INFSIM_ERUN, "cluster: rank %d sent a %s for instance %d", from,
                         tag == ICL_TAG_QUERY ? "query" : "partial", to);
    if (tag == ICL_TAG_QUERY) x->queries_routed++;
    void *buf = malloc((size_t)bytes);
    if (!buf) return infsim_fail(err, INFSIM_ENOMEM, "cluster: out of memory");
    memcpy(buf, data, (size_t)bytes);
    return deliver(x, to, tag, buf, bytes, err);
  }
  case ICL_TAG_MOVE_DATA: {
    icl_wire_move w;
    if (!x->moving || bytes < (int64_t)sizeof w || from != x->moves[0].src)
      return infsim_fail(err, INFSIM_ERUN, "cluster: KV block from rank %d, which was not asked for one", from);
    const icl_move *mv = &x->moves[0];
    w = (icl_wire_move){.move = x->moves_done, .req = mv->req, .slot = mv->dst_slot, .index = (int32_t)mv->index};
    char *buf = malloc((size_t)bytes);
    if (!buf) return infsim_fail(err, INFSIM_ENOMEM, "cluster: out of memory");
    memcpy(buf, &w, sizeof w);
    memcpy(buf + sizeof w, data + sizeof w, (size_t)(bytes - (int64_t)sizeof w));
    x->move_bytes += bytes - (int64_t)sizeof w;
    return deliver(x, mv->dst, ICL_TAG_BLOCK_IN, buf, bytes, err);
  }
  case ICL_TAG_MOVE_DONE:
    if (!x->moving || from != x->moves[0].dst)
      return infsim_fail(err, INFSIM_ERUN, "cluster: a KV move ended at rank %d, which was not receiving one", from);
    memmove(x->moves, x->moves + 1, (x->n_moves - 1) * sizeof *x->moves);
    x->n_moves--;
    x->moving = false;
    x->moves_done++;
    return INFSIM_OK;
  default:
    return infsim_fail(err, INFSIM_ERUN, "cluster: unexpected message tag %d from rank %d", tag, from);
  }
}

/* Everything that has arrived, then what can start now. */
static infsim_status pump(infsim_cexec *x, infsim_error *err) {
  infsim_status st = infsim_ctransport_progress(x->t, err);
  icl_msg *m;
  while (st == INFSIM_OK && (m = queue_pop(&x->local.out, 0)) != NULL) {
    st = route(x, 0, m->tag, m->data, m->bytes, err);
    free(m);
  }
  int32_t from = -1, tag = -1;
  int64_t bytes = 0;
  while (st == INFSIM_OK && infsim_ctransport_probe_msg(x->t, -1, -1, &from, &tag, &bytes)) {
    char *buf = malloc((size_t)(bytes > 0 ? bytes : 1));
    if (!buf) return infsim_fail(err, INFSIM_ENOMEM, "cluster: out of memory");
    st = infsim_ctransport_recv(x->t, from, tag, buf, bytes, 0, NULL, NULL, NULL, err);
    if (st == INFSIM_OK) st = route(x, from, tag, buf, bytes, err);
    free(buf);
  }
  if (st == INFSIM_OK) st = next_move(x, err);
  for (int32_t i = 0; i < x->instances && st == INFSIM_OK; i++) st = try_send(x, i, err);
  return st;
}

infsim_status infsim_cexec_poll(infsim_cexec *x, bool *got, int32_t *instance, int64_t *end_ns, infsim_error *err) {
  *got = false;
  if (x->failed != INFSIM_OK) return infsim_cexec_error(x, err);
  if (x->n_ended == 0) {
    infsim_status st = pump(x, err);
    if (st != INFSIM_OK) {
      fail_once(x, st, err);
      return st;
    }
  }
  if (x->n_ended > 0) {
    *got = true;
    *instance = x->ended[0];
    *end_ns = x->ended_ns[0];
    memmove(x->ended, x->ended + 1, (size_t)(x->n_ended - 1) * sizeof *x->ended);
    memmove(x->ended_ns, x->ended_ns + 1, (size_t)(x->n_ended - 1) * sizeof *x->ended_ns);
    x->n_ended--;
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
  for (int32_t r = 1; r < x->instances; r++)
    if (!x->inst[r].busy) {
      char *b = calloc(1, 1);
      if (!b) return infsim_fail(err, INFSIM_ENOMEM, "cluster: out of memory");
      infsim_status st = infsim_ctransport_isend(x->t, r, ICL_TAG_ALIVE, b, 1, err);
      if (st != INFSIM_OK) return st;
    }
  return INFSIM_OK;
}

infsim_status infsim_cexec_stop(infsim_cexec *x, infsim_error *err) {
  if (x->stopped) return INFSIM_OK;
  x->stopped = true;
  infsim_status st = INFSIM_OK;
  /* A worker still running a batch reads the stop after answering it. */
  for (int32_t r = 1; r < x->instances; r++) {
    char *b = calloc(1, 1);
    infsim_status s = b ? infsim_ctransport_isend(x->t, r, ICL_TAG_STOP, b, 1, err)
                        : infsim_fail(err, INFSIM_ENOMEM, "cluster: out of memory");
    if (st == INFSIM_OK) st = s;
  }
  if (x->local.started) {
    icl_msg *m = msg_new(ICL_TAG_STOP, NULL, 0, NULL, 0);
    if (m) queue_push(&x->local.in, m);
    pthread_join(x->local.thread, NULL);
  }
  return st; /* the transport sends what is pending before it closes */
}

const infsim_iteration_row *infsim_cexec_iterations(const infsim_cexec *x, size_t *count) {
  *count = x->iter_count;
  return x->iters;
}

void infsim_cexec_stats(const infsim_cexec *x, int64_t *moves, int64_t *move_bytes, int64_t *queries) {
  *moves = x->moves_done;
  *move_bytes = x->move_bytes;
  *queries = x->queries_routed;
}

infsim_status infsim_cexec_serve(infsim_ctransport *t, infsim_cmodel *m, infsim_cmodel *shadow, FILE *outputs,
                                 const infsim_cexec_fault *fault, infsim_error *err) {
  icl_side s = {.instance = infsim_ctransport_rank(t), .m = m, .shadow = shadow, .outputs = outputs,
                .timeout_s = infsim_ctransport_timeout_s(t), .t = t};
  return side_loop(&s, fault, err);
}
