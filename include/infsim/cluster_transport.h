/*
** cluster_transport.h: what carries bytes between cluster mode's MPI ranks.
**
** Two planes. The control plane carries small host messages (batches to
** run, their answers, DistAttention query headers) over MPI, always. The
** data plane carries tensors that live in kernels buffers (queries,
** partials, KV blocks): with the MPI transport they are staged through
** page-locked host memory (device -> host -> MPI -> host -> device; ranks on
** CPUs or sharing a GPU), with the NCCL transport they go GPU to GPU
** (ncclSend / ncclRecv on the kernels context's stream; ranks on distinct
** GPUs). Either way a receive waits at most the transport's timeout and
** then fails naming the silent rank, so a dead or hung peer never hangs
** the caller (faults: DESIGN.md).
**
** MPI must be initialized first (infsim_cluster_mpi_init) and finalized
** after every transport is closed. A build without MPI (INFSIM_MPI=OFF, or
** no MPI found) has the same functions over a world of one rank
** (transport_single.c): cluster mode then runs one instance, in one
** process, and any message to another rank is an error.
*/
#ifndef INFSIM_CLUSTER_TRANSPORT_H
#define INFSIM_CLUSTER_TRANSPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "infsim/kernels.h"
#include "infsim/status.h"

typedef enum { INFSIM_CTRANSPORT_MPI = 0, INFSIM_CTRANSPORT_NCCL = 1 } infsim_ctransport_kind;

/* "mpi" / "nccl"; parse returns false on an unknown name. */
const char *infsim_ctransport_kind_name(infsim_ctransport_kind kind);
bool infsim_ctransport_kind_parse(const char *name, infsim_ctransport_kind *out);

/* MPI_Init (once per process; a process started without mpirun is one
 * rank of one) and MPI_Finalize. abort ends every rank (a fault). */
infsim_status infsim_cluster_mpi_init(int *argc, char ***argv, infsim_error *err);
void infsim_cluster_mpi_finalize(void);
void infsim_cluster_mpi_abort(int code);
/* This process's rank in MPI_COMM_WORLD (0 before MPI_Init), and the
 * number of ranks (1 before MPI_Init). */
int32_t infsim_cluster_rank(void);
int32_t infsim_cluster_size(void);
/* Collectives over every rank: a barrier, and whether ok holds on all. */
void infsim_cluster_barrier(void);
bool infsim_cluster_all(bool ok);
/* Whether this build carries messages between processes (MPI). */
bool infsim_cluster_has_mpi(void);
/* Seconds of a monotonic wall clock (the same on every rank of a host). */
double infsim_cluster_now_s(void);

typedef struct infsim_ctransport infsim_ctransport;

/* Opens a transport over all ranks (collective). k is the rank's kernels
 * context (borrowed); NCCL needs a CUDA one (INFSIM_ENODEV otherwise, or
 * when this build has no NCCL). timeout_s > 0 bounds every wait. */
infsim_status infsim_ctransport_open(infsim_ctransport_kind kind, infsim_kernels *k, double timeout_s,
                                     infsim_ctransport **out, infsim_error *err);
void infsim_ctransport_close(infsim_ctransport *t);
int32_t infsim_ctransport_rank(const infsim_ctransport *t);
int32_t infsim_ctransport_size(const infsim_ctransport *t);
infsim_ctransport_kind infsim_ctransport_kind_of(const infsim_ctransport *t);
double infsim_ctransport_timeout_s(const infsim_ctransport *t);
/* Bytes this rank sent on both planes. */
int64_t infsim_ctransport_bytes_sent(const infsim_ctransport *t);

/* ---- control plane (host memory, tag >= 0) ---------------------------- */

infsim_status infsim_ctransport_send(infsim_ctransport *t, int32_t dst, int32_t tag, const void *buf, int64_t bytes,
                                     infsim_error *err);
/* Waits up to timeout_s (<= 0: the transport's) for a message from src
 * (-1: any) with tag (-1: any) into buf (cap bytes); fills the sender, tag
 * and size. INFSIM_ERUN on timeout ("rank R: nothing from rank S within
 * T s") or when the message is larger than cap. */
infsim_status infsim_ctransport_recv(infsim_ctransport *t, int32_t src, int32_t tag, void *buf, int64_t cap,
                                     double timeout_s, int32_t *from, int32_t *tag_out, int64_t *bytes,
                                     infsim_error *err);
/* Whether a message from src (-1: any) with tag (-1: any) is waiting. */
bool infsim_ctransport_probe(infsim_ctransport *t, int32_t src, int32_t tag);
/* The same, filling the waiting message's sender, tag and size. */
bool infsim_ctransport_probe_msg(infsim_ctransport *t, int32_t src, int32_t tag, int32_t *from, int32_t *tag_out,
                                 int64_t *bytes);
/* Sends without waiting: takes buf (malloc'ed; freed once sent, or on
 * failure). A rank that must never block on a busy peer (cluster mode's
 * rank 0, which routes everything) sends this way; messages to one peer
 * keep their order. infsim_ctransport_progress completes what it can and
 * fails naming the peer of a send older than the timeout. */
infsim_status infsim_ctransport_isend(infsim_ctransport *t, int32_t dst, int32_t tag, void *buf, int64_t bytes,
                                      infsim_error *err);
infsim_status infsim_ctransport_progress(infsim_ctransport *t, infsim_error *err);

/* ---- data plane (kernels buffers) -------------------------------------- */

/* Sends / receives `bytes` of a kernels buffer; the pair must match in
 * size. Blocking, bounded by the timeout. */
infsim_status infsim_ctransport_send_buf(infsim_ctransport *t, int32_t dst, const void *buf, int64_t bytes,
                                         infsim_error *err);
infsim_status infsim_ctransport_recv_buf(infsim_ctransport *t, int32_t src, void *buf, int64_t bytes,
                                         infsim_error *err);

#endif
