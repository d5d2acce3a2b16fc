/*
** transport_mpi.c: cluster_transport.h over MPI (control plane, and the
** host-staged data plane), with the NCCL data plane plugged in when asked.
**
** Every wait is a nonblocking operation polled against a deadline
** (MPI_Test, then a 20 us sleep), never a blocking MPI call: a peer that
** died or hangs turns into an error that names it within the timeout. A
** timed-out receive is cancelled, so its buffer is free again.
**
** Data-plane messages use tags at and above ICL_DATA_TAG, apart from the
** control tags, and MPI keeps them in order per (sender, tag): transfers
** between two ranks pair up in the order they were issued.
*/
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "infsim/cluster_transport.h"
#include "nccl.h"

enum { ICL_DATA_TAG = 1 << 20 };
enum { ICL_STAGE_BYTES = 8 << 20 }; /* host staging chunk */

/* A send in flight (infsim_ctransport_isend): its buffer is ours until done. */
typedef struct {
  MPI_Request req;
  void *buf;
  int32_t dst;
  double since_s;
} icl_isend;

struct infsim_ctransport {
  icl_isend *pending;
  size_t n_pending, cap_pending;
  infsim_ctransport_kind kind;
  infsim_kernels *k;
  double timeout_s;
  int32_t rank, size;
  int64_t bytes_sent;
  void *stage; /* page-locked (CUDA) staging buffer, NULL on the CPU backend */
  icl_nccl *nccl;
};

infsim_status infsim_cluster_mpi_init(int *argc, char ***argv, infsim_error *err) {
  int done = 0;
  MPI_Initialized(&done);
  if (done) return INFSIM_OK;
  if (MPI_Init(argc, argv) != MPI_SUCCESS) return infsim_fail(err, INFSIM_ERUN, "cluster: MPI_Init failed");
  /* Errors come back as codes (turned into statuses), not as aborts. */
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  return INFSIM_OK;
}

void infsim_cluster_mpi_finalize(void) {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (init && !fin) MPI_Finalize();
}

void infsim_cluster_mpi_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

int32_t infsim_cluster_rank(void) {
  int init = 0, rank = 0;
  MPI_Initialized(&init);
  if (init) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

int32_t infsim_cluster_size(void) {
  int init = 0, size = 1;
  MPI_Initialized(&init);
  if (init) MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

void infsim_cluster_barrier(void) { MPI_Barrier(MPI_COMM_WORLD); }

bool infsim_cluster_all(bool ok) {
  int mine = ok, all = 0;
  MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return all != 0;
}

bool infsim_cluster_has_mpi(void) { return true; }

static void nap(void) {
  struct timespec ts = {0, 20000};
  nanosleep(&ts, NULL);
}

/* Waits for req until the deadline; on timeout cancels it. */
static infsim_status wait_for(infsim_ctransport *t, MPI_Request *req, MPI_Status *status, double timeout_s,
                              int32_t peer, const char *what, infsim_error *err) {
  double deadline = infsim_cluster_now_s() + (timeout_s > 0 ? timeout_s : t->timeout_s);
  for (;;) {
    int flag = 0;
    if (MPI_Test(req, &flag, status) != MPI_SUCCESS)
      return infsim_fail(err, INFSIM_ERUN, "cluster: rank %d: MPI error while %s rank %d (a message larger than "
                         "the buffer?)", t->rank, what, peer);
    if (flag) return INFSIM_OK;
    if (infsim_cluster_now_s() > deadline) {
      MPI_Cancel(req);
      MPI_Request_free(req);
      if (peer >= 0)
        return infsim_fail(err, INFSIM_ERUN, "cluster: rank %d: timed out after %g s %s rank %d (dead or hung?)",
                           t->rank, timeout_s > 0 ? timeout_s : t->timeout_s, what, peer);
      return infsim_fail(err, INFSIM_ERUN, "cluster: rank %d: timed out after %g s %s any rank (dead or hung?)",
                         t->rank, timeout_s > 0 ? timeout_s : t->timeout_s, what);
    }
    nap();
  }
}

infsim_status infsim_ctransport_open(infsim_ctransport_kind kind, infsim_kernels *k, double timeout_s,
                                     infsim_ctransport **out, infsim_error *err) {
  *out = NULL;
  if (!(timeout_s > 0)) return infsim_fail(err, INFSIM_EINPUT, "cluster: transport timeout must be > 0 s");
  infsim_ctransport *t = calloc(1, sizeof *t);
  if (!t) return infsim_fail(err, INFSIM_ENOMEM, "cluster: out of memory");
  t->kind = kind;
  t->k = k;
  t->timeout_s = timeout_s;
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  t->rank = rank;
  t->size = size;
  infsim_status st = INFSIM_OK;
  if (infsim_kernels_backend(k) == INFSIM_KBACKEND_CUDA)
    st = infsim_kernels_host_alloc(k, ICL_STAGE_BYTES, &t->stage, err);
  if (st == INFSIM_OK && kind == INFSIM_CTRANSPORT_NCCL) {
    if (infsim_kernels_backend(k) != INFSIM_KBACKEND_CUDA)
      st = infsim_fail(err, INFSIM_EINPUT, "cluster: the NCCL transport needs the cuda executor");
    else
      st = icl_nccl_open(k, t->rank, t->size, &t->nccl, err);
  }
  if (st != INFSIM_OK) {
    infsim_ctransport_close(t);
    return st;
  }
  *out = t;
  return INFSIM_OK;
}

void infsim_ctransport_close(infsim_ctransport *t) {
  if (!t) return;
  /* Sends still pending: a last chance to complete, then given up. */
  double deadline = infsim_cluster_now_s() + 1.0;
  while (t->n_pending > 0 && infsim_cluster_now_s() < deadline) {
    infsim_ctransport_progress(t, NULL);
    if (t->n_pending > 0) nap();
  }
  for (size_t i = 0; i < t->n_pending; i++) {
    MPI_Cancel(&t->pending[i].req);
    MPI_Request_free(&t->pending[i].req);
    free(t->pending[i].buf);
  }
  free(t->pending);
  icl_nccl_close(t->nccl);
  if (t->stage) infsim_kernels_host_free(t->k, t->stage);
  free(t);
}

int32_t infsim_ctransport_rank(const infsim_ctransport *t) { return t->rank; }
int32_t infsim_ctransport_size(const infsim_ctransport *t) { return t->size; }
infsim_ctransport_kind infsim_ctransport_kind_of(const infsim_ctransport *t) { return t->kind; }
double infsim_ctransport_timeout_s(const infsim_ctransport *t) { return t->timeout_s; }
int64_t infsim_ctransport_bytes_sent(const infsim_ctransport *t) { return t->bytes_sent; }

static infsim_status check_peer(const infsim_ctransport *t, int32_t peer, bool any_ok, infsim_error *err) {
  if ((any_ok && peer == -1) || (peer >= 0 && peer < t->size && peer != t->rank)) return INFSIM_OK;
  return infsim_fail(err, INFSIM_EINPUT, "cluster: rank %d: no peer rank %d (of %d)", t->rank, peer, t->size);
}

static infsim_status send_raw(infsim_ctransport *t, int32_t dst, int tag, const void *buf, int64_t bytes,
                              infsim_error *err) {
  if (bytes > INT32_MAX) return infsim_fail(err, INFSIM_EINPUT, "cluster: message of %lld bytes", (long long)bytes);
  MPI_Request req;
  if (MPI_Isend(buf, (int)bytes, MPI_BYTE, dst, tag, MPI_COMM_WORLD, &req) != MPI_SUCCESS)
    return infsim_fail(err, INFSIM_ERUN, "cluster: rank %d: MPI_Isend to rank %d failed", t->rank, dst);
  MPI_Status status;
  infsim_status st = wait_for(t, &req, &status, 0, dst, "sending to", err);
  if (st == INFSIM_OK) t->bytes_sent += bytes;
  return st;
}

infsim_status infsim_ctransport_send(infsim_ctransport *t, int32_t dst, int32_t tag, const void *buf, int64_t bytes,
                                     infsim_error *err) {
  infsim_status st = check_peer(t, dst, false, err);
  if (st != INFSIM_OK) return st;
  if (tag < 0 || tag >= ICL_DATA_TAG) return infsim_fail(err, INFSIM_EINPUT, "cluster: control tag %d", tag);
  return send_raw(t, dst, tag, buf, bytes, err);
}

infsim_status infsim_ctransport_recv(infsim_ctransport *t, int32_t src, int32_t tag, void *buf, int64_t cap,
                                     double timeout_s, int32_t *from, int32_t *tag_out, int64_t *bytes,
                                     infsim_error *err) {
  infsim_status st = check_peer(t, src, true, err);
  if (st != INFSIM_OK) return st;
  if (cap > INT32_MAX) cap = INT32_MAX;
  MPI_Request req;
  if (MPI_Irecv(buf, (int)cap, MPI_BYTE, src < 0 ? MPI_ANY_SOURCE : src, tag < 0 ? MPI_ANY_TAG : tag,
                MPI_COMM_WORLD, &req) != MPI_SUCCESS)
    return infsim_fail(err, INFSIM_ERUN, "cluster: rank %d: MPI_Irecv failed", t->rank);
  MPI_Status status;
  if ((st = wait_for(t, &req, &status, timeout_s, src, "waiting for", err)) != INFSIM_OK) return st;
  int count = 0;
  MPI_Get_count(&status, MPI_BYTE, &count);
  if (from) *from = status.MPI_SOURCE;
  if (tag_out) *tag_out = status.MPI_TAG;
  if (bytes) *bytes = count;
  return INFSIM_OK;
}

bool infsim_ctransport_probe(infsim_ctransport *t, int32_t src, int32_t tag) {
  int flag = 0;
  MPI_Status status;
  MPI_Iprobe(src < 0 ? MPI_ANY_SOURCE : src, tag < 0 ? MPI_ANY_TAG : tag, MPI_COMM_WORLD, &flag, &status);
  (void)t;
  return flag != 0;
}

bool infsim_ctransport_probe_msg(infsim_ctransport *t, int32_t src, int32_t tag, int32_t *from, int32_t *tag_out,
                                 int64_t *bytes) {
  int flag = 0;
  MPI_Status status;
  MPI_Iprobe(src < 0 ? MPI_ANY_SOURCE : src, tag < 0 ? MPI_ANY_TAG : tag, MPI_COMM_WORLD, &flag, &status);
  (void)t;
  if (!flag) return false;
  int count = 0;
  MPI_Get_count(&status, MPI_BYTE, &count);
  if (from) *from = status.MPI_SOURCE;
  if (tag_out) *tag_out = status.MPI_TAG;
  if (bytes) *bytes = count;
  return true;
}

infsim_status infsim_ctransport_isend(infsim_ctransport *t, int32_t dst, int32_t tag, void *buf, int64_t bytes,
                                      infsim_error *err) {
  infsim_status st = check_peer(t, dst, false, err);
  if (st == INFSIM_OK && (tag < 0 || tag >= ICL_DATA_TAG))
    st = infsim_fail(err, INFSIM_EINPUT, "cluster: control tag %d", tag);
  if (st == INFSIM_OK && bytes > INT32_MAX)
    st = infsim_fail(err, INFSIM_EINPUT, "cluster: message of %lld bytes", (long long)bytes);
  if (st == INFSIM_OK && t->n_pending == t->cap_pending) {
    size_t cap = t->cap_pending ? 2 * t->cap_pending : 16;
    icl_isend *p = realloc(t->pending, cap * sizeof *p);
    if (!p) st = infsim_fail(err, INFSIM_ENOMEM, "cluster: out of memory");
    else t->pending = p, t->cap_pending = cap;
  }
  if (st != INFSIM_OK) {
    free(buf);
    return st;
  }
  icl_isend *s = &t->pending[t->n_pending];
  if (MPI_Isend(buf, (int)bytes, MPI_BYTE, dst, tag, MPI_COMM_WORLD, &s->req) != MPI_SUCCESS) {
    free(buf);
    return infsim_fail(err, INFSIM_ERUN, "cluster: rank %d: MPI_Isend to rank %d failed", t->rank, dst);
  }
  s->buf = buf;
  s->dst = dst;
  s->since_s = infsim_cluster_now_s();
  t->n_pending++;
  t->bytes_sent += bytes;
  return INFSIM_OK;
}

infsim_status infsim_ctransport_progress(infsim_ctransport *t, infsim_error *err) {
  double now = infsim_cluster_now_s();
  size_t kept = 0;
  infsim_status st = INFSIM_OK;
  for (size_t i = 0; i < t->n_pending; i++) {
    int flag = 0;
    MPI_Status status;
    if (MPI_Test(&t->pending[i].req, &flag, &status) != MPI_SUCCESS && st == INFSIM_OK)
      st = infsim_fail(err, INFSIM_ERUN, "cluster: rank %d: MPI error sending to rank %d", t->rank,
                       t->pending[i].dst);
    if (flag) {
      free(t->pending[i].buf);
      continue;
    }
    if (now - t->pending[i].since_s > t->timeout_s && st == INFSIM_OK)
      st = infsim_fail(err, INFSIM_ERUN, "cluster: rank %d: timed out after %g s sending to rank %d (dead or hung?)",
                       t->rank, t->timeout_s, t->pending[i].dst);
    t->pending[kept++] = t->pending[i];
  }
  t->n_pending = kept;
  return st;
}

static infsim_status recv_raw(infsim_ctransport *t, int32_t src, void *buf, int64_t bytes, infsim_error *err) {
  MPI_Request req;
  if (MPI_Irecv(buf, (int)bytes, MPI_BYTE, src, ICL_DATA_TAG, MPI_COMM_WORLD, &req) != MPI_SUCCESS)
    return infsim_fail(err, INFSIM_ERUN, "cluster: rank %d: MPI_Irecv failed", t->rank);
  MPI_Status status;
  infsim_status st = wait_for(t, &req, &status, 0, src, "receiving data from", err);
  if (st != INFSIM_OK) return st;
  int count = 0;
  MPI_Get_count(&status, MPI_BYTE, &count);
  if (count != bytes)
    return infsim_fail(err, INFSIM_ERUN, "cluster: rank %d: expected %lld bytes from rank %d, got %d", t->rank,
                       (long long)bytes, src, count);
  return INFSIM_OK;
}

infsim_status infsim_ctransport_send_buf(infsim_ctransport *t, int32_t dst, const void *buf, int64_t bytes,
                                         infsim_error *err) {
  infsim_status st = check_peer(t, dst, false, err);
  if (st != INFSIM_OK || bytes <= 0) return st;
  if (t->nccl) {
    st = icl_nccl_send(t->nccl, dst, buf, bytes, t->timeout_s, err);
    if (st == INFSIM_OK) t->bytes_sent += bytes;
    return st;
  }
  if (!t->stage) { /* CPU backend: the buffer is host memory */
    for (int64_t off = 0; off < bytes && st == INFSIM_OK; off += ICL_STAGE_BYTES) {
      int64_t n = bytes - off < ICL_STAGE_BYTES ? bytes - off : ICL_STAGE_BYTES;
      st = send_raw(t, dst, ICL_DATA_TAG, (const char *)buf + off, n, err);
    }
    return st;
  }
  for (int64_t off = 0; off < bytes && st == INFSIM_OK; off += ICL_STAGE_BYTES) {
    int64_t n = bytes - off < ICL_STAGE_BYTES ? bytes - off : ICL_STAGE_BYTES;
    st = infsim_kernels_download(t->k, t->stage, (const char *)buf + off, n, err);
    if (st == INFSIM_OK) st = send_raw(t, dst, ICL_DATA_TAG, t->stage, n, err);
  }
  return st;
}

infsim_status infsim_ctransport_recv_buf(infsim_ctransport *t, int32_t src, void *buf, int64_t bytes,
                                         infsim_error *err) {
  infsim_status st = check_peer(t, src, false, err);
  if (st != INFSIM_OK || bytes <= 0) return st;
  if (t->nccl) return icl_nccl_recv(t->nccl, src, buf, bytes, t->timeout_s, err);
  for (int64_t off = 0; off < bytes && st == INFSIM_OK; off += ICL_STAGE_BYTES) {
    int64_t n = bytes - off < ICL_STAGE_BYTES ? bytes - off : ICL_STAGE_BYTES;
    if (!t->stage) {
      st = recv_raw(t, src, (char *)buf + off, n, err);
    } else {
      st = recv_raw(t, src, t->stage, n, err);
      if (st == INFSIM_OK) st = infsim_kernels_upload(t->k, (char *)buf + off, t->stage, n, err);
    }
  }
  return st;
}
