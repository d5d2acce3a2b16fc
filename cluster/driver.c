/*
** driver.c: cluster.h. Rank 0's wall-clock loop around the scheduler, the
** workers' serve loop, and the scheduler's transport seam in cluster mode.
**
** Rank 0 runs every instance's scheduler, so a scheduler message (between
** instances, or to the gManager) starts and ends on rank 0: the seam here
** queues it and the loop delivers it on the next pass (a timer at its
** time). What really crosses ranks is the batches and their answers, and
** (with DistKV-LLM) KV blocks, queries and partials over the data plane.
**
** The loop: arrivals whose trace time has come, finished batches, due
** messages and samples, each handed to the scheduler with the current
** wall-clock time (never earlier than the last call: the scheduler's clock
** only moves forward); when nothing is due it naps 20 us. Times are
** nanoseconds since every rank passed the start barrier.
*/
#include "infsim/cluster.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "infsim/atomic_file.h"
#include "infsim/cluster_executor.h"
#include "infsim/cluster_model.h"
#include "infsim/kv.h"

typedef struct {
  infsim_msg msg;
  int64_t at_ns;
} icl_pending;

/* The scheduler's transport seam on rank 0: messages queued for delivery. */
typedef struct {
  icl_pending *q;
  size_t n, cap;
  int64_t bytes;
} icl_loop;

static infsim_status loop_put(icl_loop *l, const infsim_msg *m, int64_t at_ns, infsim_error *err) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 64;
    icl_pending *q = realloc(l->q, cap * sizeof *q);
    if (!q) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
    l->q = q;
    l->cap = cap;
  }
  l->q[l->n++] = (icl_pending){*m, at_ns};
  return INFSIM_OK;
}

static infsim_status loop_send(void *self, const infsim_msg *m, int64_t now_ns, infsim_error *err) {
  icl_loop *l = self;
  l->bytes += m->bytes;
  return loop_put(l, m, now_ns, err);
}

static infsim_status loop_timer(void *self, const infsim_msg *m, int64_t at_ns, infsim_error *err) {
  infsim_msg t = *m;
  t.dst = t.src;
  return loop_put(self, &t, at_ns, err);
}

static int64_t loop_bytes(const void *self) { return ((const icl_loop *)self)->bytes; }

/* Takes the earliest message due by now_ns, if any. */
static bool loop_take(icl_loop *l, int64_t now_ns, infsim_msg *out) {
  size_t best = l->n;
  for (size_t i = 0; i < l->n; i++)
    if (l->q[i].at_ns <= now_ns && (best == l->n || l->q[i].at_ns < l->q[best].at_ns)) best = i;
  if (best == l->n) return false;
  *out = l->q[best].msg;
  memmove(&l->q[best], &l->q[best + 1], (l->n - best - 1) * sizeof *l->q);
  l->n--;
  return true;
}

static void nap_us(long us) {
  struct timespec ts = {0, us * 1000};
  nanosleep(&ts, NULL);
}

/* The model every rank builds: the run's shape, sized for its batches. */
static infsim_status model_params(const infsim_run_params *p, const infsim_sched_params *sp,
                                  const infsim_trace *trace, bool graphs, bool cuda, infsim_cmodel_params *out,
                                  infsim_error *err) {
  int64_t longest = 1;
  for (size_t i = 0; i < trace->count; i++) {
    int64_t n = trace->requests[i].prompt_tokens + trace->requests[i].output_tokens;
    if (n > longest) longest = n;
  }
  int64_t blocks = (longest + sp->block_tokens - 1) / sp->block_tokens + 1;
  if (blocks > sp->gpu_blocks_per_instance) blocks = sp->gpu_blocks_per_instance;
  int64_t tokens = sp->max_batched_tokens + sp->max_batch_size;
  infsim_status st = infsim_cmodel_params_from_shape(&p->model, (int32_t)sp->block_tokens,
                                                     sp->gpu_blocks_per_instance, tokens, 2 * sp->max_batch_size,
                                                     blocks, out, err);
  out->seed = p->seed;
  out->decode_graphs = graphs;
  out->pad_decodes = graphs && cuda; /* padding only pays where graphs replay */
  return st;
}

typedef struct {
  infsim_sample_row *rows;
  size_t n, cap;
} icl_samples;

static infsim_status take_sample(infsim_sched *s, icl_samples *smp, int64_t now_ns, infsim_error *err) {
  size_t k = (size_t)infsim_sched_instances(s);
  if (smp->n + k > smp->cap) {
    size_t cap = smp->cap ? 2 * smp->cap : 1024;
    while (cap < smp->n + k) cap *= 2;
    infsim_sample_row *r = realloc(smp->rows, cap * sizeof *r);
    if (!r) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
    smp->rows = r;
    smp->cap = cap;
  }
  infsim_sched_sample(s, now_ns, &smp->rows[smp->n]);
  smp->n += k;
  return INFSIM_OK;
}

static int64_t clock_ns(double t0_s) { return (int64_t)((infsim_cluster_now_s() - t0_s) * 1e9); }

/* Rank 0's loop; fills the records whatever happens. */
static infsim_status drive(const infsim_run_setup *setup, const infsim_cluster_opts *o, infsim_sched *s,
                           infsim_cexec *x, icl_loop *loop, double t0_s, icl_samples *smp, int64_t *events,
                           infsim_error *err) {
  const infsim_trace *trace = infsim_run_setup_trace(setup);
  const infsim_run_params *p = infsim_run_setup_params(setup);
  int64_t interval = p->sample_interval_ns > 0 ? p->sample_interval_ns : 1000000000;
  int64_t next_sample = 0, last = 0, alive_every = (int64_t)(o->timeout_s * 0.25e9), last_alive = 0;
  size_t next = 0;
  infsim_status st = INFSIM_OK;
  for (;;) {
    bool progressed = false;
    int64_t now = clock_ns(t0_s);
    if (now < last) now = last;
    while (st == INFSIM_OK && next < trace->count && trace->requests[next].arrival_ns <= now) {
      st = infsim_sched_arrive(s, (int64_t)next++, now, err);
      progressed = true;
      ++*events;
    }
    bool got = true;
    while (st == INFSIM_OK && got) {
      int32_t inst = -1;
      int64_t end = 0;
      st = infsim_cexec_poll(x, &got, &inst, &end, err);
      if (st == INFSIM_OK && got) {
        if (end < now) end = now; /* the scheduler's clock only moves forward */
        if (end > now) now = end; /* an answer stamped after this pass began: later calls use its time */
        st = infsim_sched_iteration_done(s, inst, end, err);
        progressed = true;
        ++*events;
      }
    }
    infsim_msg m;
    while (st == INFSIM_OK && loop_take(loop, now, &m)) {
      st = infsim_sched_deliver(s, &m, now, err);
      progressed = true;
      ++*events;
    }
    if (st == INFSIM_OK) st = infsim_cexec_error(x, err);
    if (st == INFSIM_OK && next_sample <= now) {
      st = take_sample(s, smp, now, err);
      next_sample = (now / interval + 1) * interval;
    }
    last = now;
    if (st != INFSIM_OK) return st;
#ifdef INFSIM_CHECK_INVARIANTS
    if (progressed) infsim_sched_check(s);
#endif
    if (infsim_sched_all_done(s) && next >= trace->count) return INFSIM_OK;
    if (o->interrupted && *o->interrupted)
      return infsim_fail(err, INFSIM_ERUN, "cluster: interrupted (a signal: another rank died?); stopping");
    if (now - last_alive > alive_every) {
      if ((st = infsim_cexec_keepalive(x, err)) != INFSIM_OK) return st;
      last_alive = now;
    }
    if (!progressed) nap_us(20);
  }
}

static infsim_status run_rank0(const infsim_run_setup *setup, const infsim_cluster_opts *o,
                               const infsim_sched_params *sp, infsim_ctransport *t, infsim_cmodel *model,
                               infsim_cmodel *shadow, FILE *outputs, infsim_run_result **out, infsim_error *err) {
  const infsim_trace *trace = infsim_run_setup_trace(setup);
  const infsim_run_params *p = infsim_run_setup_params(setup);
  icl_loop loop = {0};
  icl_samples smp = {0};
  infsim_cexec *x = NULL;
  infsim_sched *s = NULL;
  int64_t events = 0;
  infsim_cluster_barrier();
  double t0 = infsim_cluster_now_s();
  infsim_status st = infsim_cexec_new(t, model, shadow, outputs, trace->requests, trace->count, t0, &x, err);
  infsim_transport net = {.self = &loop, .send = loop_send, .timer = loop_timer, .bytes_sent = loop_bytes};
  if (st == INFSIM_OK)
    st = infsim_sched_new(sp, trace->requests, trace->count, infsim_cexec_seam(x), net, &s, err);
  if (st == INFSIM_OK) infsim_cexec_attach_kv(x, infsim_sched_kv(s));
  if (st == INFSIM_OK) st = drive(setup, o, s, x, &loop, t0, &smp, &events, err);
  if (st == INFSIM_OK) {
    /* Every request done: the KV ledger must be empty everywhere (no block
     * left on an owner or a creditor, none still lent). */
    const infsim_kv *kv = infsim_sched_kv(s);
    infsim_kv_check(kv);
    for (int32_t i = 0; i < sp->instances && st == INFSIM_OK; i++) {
      int64_t in_use = 0, peak = 0, cap = 0;
      infsim_kv_pool_usage(kv, i, &in_use, &peak, &cap);
      if (in_use != 0)
        st = infsim_fail(err, INFSIM_ERUN, "cluster: KV ledger: instance %d still holds %lld blocks after every "
                         "request finished", i, (long long)in_use);
    }
  }
  double wall = infsim_cluster_now_s() - t0;
  if (x) {
    int64_t moves = 0, move_bytes = 0, queries = 0;
    infsim_cexec_stats(x, &moves, &move_bytes, &queries);
    if (moves > 0 || queries > 0)
      printf("cluster: %lld KV blocks moved between instances (%lld bytes), %lld DistAttention queries routed\n",
             (long long)moves, (long long)move_bytes, (long long)queries);
  }
  infsim_error stop_err;
  infsim_status stopped = x ? infsim_cexec_stop(x, &stop_err) : INFSIM_OK;
  if (st == INFSIM_OK && stopped != INFSIM_OK) {
    st = stopped;
    if (err) *err = stop_err;
  }
  if (s) {
    infsim_run_counters c = *infsim_sched_counters(s, 0);
    c.events = events;
    size_t n_req = 0, n_it = 0;
    const infsim_request_record *rec = infsim_sched_requests(s, &n_req);
    const infsim_iteration_row *it = infsim_cexec_iterations(x, &n_it);
    /* A batch cut short by a fault has no end: leave it out. */
    while (n_it > 0 && it[n_it - 1].end_ns < 0) n_it--;
    char cost[64];
    snprintf(cost, sizeof cost, "measured:%s", infsim_kernel_backend_name(o->executor));
    infsim_run_records r = {.requests = rec, .request_count = n_req, .samples = smp.rows, .sample_count = smp.n,
                            .iterations = p->record_iterations ? it : NULL,
                            .iteration_count = p->record_iterations ? n_it : 0, .counters = c,
                            .sample_interval_ns = p->sample_interval_ns, .cost_model = cost, .wall_s = wall};
    infsim_error rerr;
    infsim_status rs =
        infsim_run_result_from_records(p, trace, infsim_run_setup_config(setup), &r, out, &rerr);
    if (st == INFSIM_OK && rs != INFSIM_OK) {
      st = rs;
      if (err) *err = rerr;
    }
  }
  infsim_sched_free(s);
  infsim_cexec_free(x);
  free(loop.q);
  free(smp.rows);
  return st;
}

infsim_status infsim_cluster_run(const infsim_run_setup *setup, const infsim_cluster_opts *o,
                                 infsim_run_result **out, infsim_error *err) {
  *out = NULL;
  const infsim_run_params *p = infsim_run_setup_params(setup);
  infsim_sched_params sp;
  infsim_status st = infsim_run_sched_params(p, &sp, err);
  sp.longest_context = true; /* iterations.csv, re-priced against the simulator */
  if (st != INFSIM_OK) return st;
  /* What the executors do not do yet: refuse it rather than run something else. */
  if (sp.preemption == INFSIM_PREEMPT_SWAP)
    return infsim_fail(err, INFSIM_EINPUT,
                       "scheduler.preemption: swap is not supported by cluster mode yet (the executors do not copy "
                       "KV to host memory); use recompute");
  if (p->gpus_per_instance != 1)
    return infsim_fail(err, INFSIM_EINPUT,
                       "cluster.gpus_per_instance: %lld: cluster mode runs one GPU (or CPU) per instance; set 1",
                       (long long)p->gpus_per_instance);
  int32_t size = infsim_cluster_size(), rank = infsim_cluster_rank();
  if (size != sp.instances && !infsim_cluster_has_mpi())
    return infsim_fail(err, INFSIM_EINPUT, "cluster: %d instances, and this build has no MPI: it runs one "
                       "instance (cluster.instances: 1), or build with MPI and run under mpirun -np %d",
                       sp.instances, sp.instances);
  if (size != sp.instances)
    return infsim_fail(err, INFSIM_EINPUT, "cluster: %d ranks for %d instances: run one rank per instance "
                       "(mpirun -np %d)", size, sp.instances, sp.instances);
  if (o->kv_blocks > 0)
    sp.gpu_blocks_per_instance = o->kv_blocks;
  else if (o->executor == INFSIM_KBACKEND_CPU && sp.gpu_blocks_per_instance > INFSIM_CLUSTER_CPU_BLOCKS)
    sp.gpu_blocks_per_instance = INFSIM_CLUSTER_CPU_BLOCKS;
  sp.max_steps_per_event = 1;
  infsim_cmodel_params mp;
  if ((st = model_params(p, &sp, infsim_run_setup_trace(setup), o->decode_graphs,
                         o->executor == INFSIM_KBACKEND_CUDA, &mp, err)) != INFSIM_OK)
    return st;
  infsim_kernels *k = NULL;
  infsim_ctransport *t = NULL;
  infsim_cmodel *model = NULL, *shadow = NULL;
  st = infsim_kernels_open(o->executor, &k, err);
  if (st == INFSIM_OK) st = infsim_cmodel_new(k, &mp, &model, err);
  if (st == INFSIM_OK && o->verify) st = infsim_cmodel_new(k, &mp, &shadow, err);
  /* First-use costs are paid before the clock starts, as a serving engine
   * pays them at start-up: otherwise the run's first prefill carries them
   * (35-55 ms over a 0.1 s prefill on an H200) and the simulator, which
   * knows nothing of them, is compared against a slow first batch. Before
   * the graphs are recorded, so that a workspace the warm-up grows is the
   * one they capture. The twin shares the kernels and needs none. */
  if (st == INFSIM_OK && o->warm_up) {
    double w0 = infsim_cluster_now_s();
    int32_t forwards = 0;
    st = infsim_cmodel_warm_up(model, &forwards, err);
    if (st == INFSIM_OK && rank == 0)
      printf("cluster: warm-up: %d forwards in %.3f s\n", forwards, infsim_cluster_now_s() - w0);
  }
  /* Decode graphs are recorded before the clock starts, as a serving engine
   * does at start-up: a step that first meets its shape mid-run would pay
   * a capture the simulator knows nothing of. */
  if (st == INFSIM_OK) st = infsim_cmodel_capture_graphs(model, sp.max_batch_size, NULL, err);
  FILE *outputs = NULL;
  if (st == INFSIM_OK && o->outputs_dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/outputs-%d.txt", o->outputs_dir, rank);
    outputs = fopen(path, "w");
    if (!outputs)
      st = infsim_fail(err, infsim_output_errno_status(errno), "%s: cannot write: %s", path, strerror(errno));
  }
  /* Every rank must be ready (or know that one failed) before the clock starts. */
  bool all_ok = infsim_cluster_all(st == INFSIM_OK);
  if (st == INFSIM_OK && !all_ok) st = infsim_fail(err, INFSIM_ERUN, "cluster: another rank failed to start");
  if (st == INFSIM_OK) st = infsim_ctransport_open(o->transport, k, o->timeout_s, &t, err);
  if (st == INFSIM_OK) {
    if (rank == 0) {
      st = run_rank0(setup, o, &sp, t, model, shadow, outputs, out, err);
    } else {
      infsim_cluster_barrier();
      infsim_cexec_fault hook = {.kind = (int)o->fault, .after = rank == o->fault_rank ? o->fault_after : -1};
      st = infsim_cexec_serve(t, model, shadow, outputs, &hook, err);
    }
  }
  if (outputs && fclose(outputs) != 0 && st == INFSIM_OK)
    st = infsim_fail(err, INFSIM_EIO, "%s: outputs: write failed", o->outputs_dir);
  infsim_ctransport_close(t);
  infsim_cmodel_free(shadow);
  infsim_cmodel_free(model);
  infsim_kernels_close(k);
  return st;
}
