/*
** transport_nccl.c: the NCCL data plane (GPU to GPU, ranks on distinct
** GPUs). One communicator over all ranks, made from a unique id that rank
** 0 broadcasts with MPI. Send and receive run on the kernels context's
** stream, so they are ordered with the forward around them; completion is
** polled (cudaStreamQuery, ncclCommGetAsyncError) against the timeout, and
** a timed-out communicator is aborted, so a dead peer never hangs a rank.
*/
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>
#include <stdlib.h>
#include <time.h>

#include "infsim/cluster_transport.h"
#include "nccl.h"

struct icl_nccl {
  ncclComm_t comm;
  cudaStream_t stream;
  int32_t rank;
};

infsim_status icl_nccl_open(infsim_kernels *k, int32_t rank, int32_t size, icl_nccl **out, infsim_error *err) {
  *out = NULL;
  ncclUniqueId id;
  if (rank == 0 && ncclGetUniqueId(&id) != ncclSuccess)
    return infsim_fail(err, INFSIM_ERUN, "cluster: ncclGetUniqueId failed");
  if (MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
    return infsim_fail(err, INFSIM_ERUN, "cluster: rank %d: broadcasting the NCCL id failed", rank);
  icl_nccl *n = calloc(1, sizeof *n);
  if (!n) return infsim_fail(err, INFSIM_ENOMEM, "cluster: out of memory");
  n->stream = (cudaStream_t)infsim_kernels_native_stream(k);
  n->rank = rank;
  ncclResult_t r = ncclCommInitRank(&n->comm, size, id, rank);
  if (r != ncclSuccess) {
    free(n);
    return infsim_fail(err, INFSIM_ERUN, "cluster: rank %d: ncclCommInitRank: %s", rank, ncclGetErrorString(r));
  }
  *out = n;
  return INFSIM_OK;
}

void icl_nccl_close(icl_nccl *n) {
  if (!n) return;
  if (n->comm) ncclCommDestroy(n->comm);
  free(n);
}

static infsim_status finish(icl_nccl *n, int32_t peer, double timeout_s, infsim_error *err) {
  double deadline = infsim_cluster_now_s() + timeout_s;
  for (;;) {
    cudaError_t e = cudaStreamQuery(n->stream);
    if (e == cudaSuccess) return INFSIM_OK;
    if (e != cudaErrorNotReady)
      return infsim_fail(err, INFSIM_ERUN, "cluster: rank %d: NCCL transfer with rank %d: %s", n->rank, peer,
                         cudaGetErrorString(e));
    ncclResult_t async = ncclSuccess;
    ncclCommGetAsyncError(n->comm, &async);
    if (async != ncclSuccess || infsim_cluster_now_s() > deadline) {
      ncclCommAbort(n->comm);
      n->comm = NULL;
      return infsim_fail(err, INFSIM_ERUN, "cluster: rank %d: NCCL transfer with rank %d %s", n->rank, peer,
                         async != ncclSuccess ? ncclGetErrorString(async) : "timed out (dead or hung?)");
    }
    struct timespec ts = {0, 20000};
    nanosleep(&ts, NULL);
  }
}

infsim_status icl_nccl_send(icl_nccl *n, int32_t dst, const void *buf, int64_t bytes, double timeout_s,
                            infsim_error *err) {
  if (!n->comm) return infsim_fail(err, INFSIM_ERUN, "cluster: rank %d: NCCL communicator aborted", n->rank);
  ncclResult_t r = ncclSend(buf, (size_t)bytes, ncclUint8, dst, n->comm, n->stream);
  if (r != ncclSuccess)
    return infsim_fail(err, INFSIM_ERUN, "cluster: rank %d: ncclSend: %s", n->rank, ncclGetErrorString(r));
  return finish(n, dst, timeout_s, err);
}

infsim_status icl_nccl_recv(icl_nccl *n, int32_t src, void *buf, int64_t bytes, double timeout_s,
                            infsim_error *err) {
  if (!n->comm) return infsim_fail(err, INFSIM_ERUN, "cluster: rank %d: NCCL communicator aborted", n->rank);
  ncclResult_t r = ncclRecv(buf, (size_t)bytes, ncclUint8, src, n->comm, n->stream);
  if (r != ncclSuccess)
    return infsim_fail(err, INFSIM_ERUN, "cluster: rank %d: ncclRecv: %s", n->rank, ncclGetErrorString(r));
  return finish(n, src, timeout_s, err);
}
