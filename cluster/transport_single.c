/*
** transport_single.c: cluster_transport.h in a build without MPI: a world
** of one rank. `infsim cluster` then runs one instance in one process
** (rank 0's scheduler and instance 0's model in its thread), which is all
** a one-instance fidelity run needs, on a machine that has a GPU but no
** MPI. Collectives are trivially true; a message to or from another rank
** has no peer and fails naming it, as a bad peer does with MPI. The NCCL
** transport needs MPI to share its id, so it is refused.
*/
#include <stdlib.h>

#include "infsim/cluster_transport.h"

struct infsim_ctransport {
  infsim_ctransport_kind kind;
  double timeout_s;
};

infsim_status infsim_cluster_mpi_init(int *argc, char ***argv, infsim_error *err) {
  (void)argc, (void)argv, (void)err;
  return INFSIM_OK;
}

void infsim_cluster_mpi_finalize(void) {}

void infsim_cluster_mpi_abort(int code) { exit(code); }

int32_t infsim_cluster_rank(void) { return 0; }
int32_t infsim_cluster_size(void) { return 1; }
void infsim_cluster_barrier(void) {}
bool infsim_cluster_all(bool ok) { return ok; }
bool infsim_cluster_has_mpi(void) { return false; }

infsim_status infsim_ctransport_open(infsim_ctransport_kind kind, infsim_kernels *k, double timeout_s,
                                     infsim_ctransport **out, infsim_error *err) {
  (void)k;
  *out = NULL;
  if (!(timeout_s > 0)) return infsim_fail(err, INFSIM_EINPUT, "cluster: transport timeout must be > 0 s");
  if (kind == INFSIM_CTRANSPORT_NCCL)
    return infsim_fail(err, INFSIM_ENODEV, "cluster: this build has no MPI, which NCCL needs (use --transport mpi)");
  infsim_ctransport *t = calloc(1, sizeof *t);
  if (!t) return infsim_fail(err, INFSIM_ENOMEM, "cluster: out of memory");
  t->kind = kind;
  t->timeout_s = timeout_s;
  *out = t;
  return INFSIM_OK;
}

void infsim_ctransport_close(infsim_ctransport *t) { free(t); }
int32_t infsim_ctransport_rank(const infsim_ctransport *t) { return (void)t, 0; }
int32_t infsim_ctransport_size(const infsim_ctransport *t) { return (void)t, 1; }
infsim_ctransport_kind infsim_ctransport_kind_of(const infsim_ctransport *t) { return t->kind; }
double infsim_ctransport_timeout_s(const infsim_ctransport *t) { return t->timeout_s; }
int64_t infsim_ctransport_bytes_sent(const infsim_ctransport *t) { return (void)t, 0; }

static infsim_status no_peer(int32_t peer, infsim_error *err) {
  return infsim_fail(err, INFSIM_EINPUT, "cluster: rank 0: no peer rank %d (of 1: this build has no MPI)", peer);
}

infsim_status infsim_ctransport_send(infsim_ctransport *t, int32_t dst, int32_t tag, const void *buf, int64_t bytes,
                                     infsim_error *err) {
  (void)t, (void)tag, (void)buf, (void)bytes;
  return no_peer(dst, err);
}

infsim_status infsim_ctransport_recv(infsim_ctransport *t, int32_t src, int32_t tag, void *buf, int64_t cap,
                                     double timeout_s, int32_t *from, int32_t *tag_out, int64_t *bytes,
                                     infsim_error *err) {
  (void)t, (void)tag, (void)buf, (void)cap, (void)timeout_s, (void)from, (void)tag_out, (void)bytes;
  return no_peer(src, err);
}

bool infsim_ctransport_probe(infsim_ctransport *t, int32_t src, int32_t tag) {
  (void)t, (void)src, (void)tag;
  return false;
}

bool infsim_ctransport_probe_msg(infsim_ctransport *t, int32_t src, int32_t tag, int32_t *from, int32_t *tag_out,
                                 int64_t *bytes) {
  (void)t, (void)src, (void)tag, (void)from, (void)tag_out, (void)bytes;
  return false;
}

infsim_status infsim_ctransport_isend(infsim_ctransport *t, int32_t dst, int32_t tag, void *buf, int64_t bytes,
                                      infsim_error *err) {
  (void)t, (void)tag, (void)bytes;
  free(buf);
  return no_peer(dst, err);
}

infsim_status infsim_ctransport_progress(infsim_ctransport *t, infsim_error *err) {
  (void)t, (void)err;
  return INFSIM_OK;
}

infsim_status infsim_ctransport_send_buf(infsim_ctransport *t, int32_t dst, const void *buf, int64_t bytes,
                                         infsim_error *err) {
  (void)t, (void)buf, (void)bytes;
  return no_peer(dst, err);
}

infsim_status infsim_ctransport_recv_buf(infsim_ctransport *t, int32_t src, void *buf, int64_t bytes,
                                         infsim_error *err) {
  (void)t, (void)buf, (void)bytes;
  return no_peer(src, err);
}
