/*
** nccl.h: the NCCL data plane behind cluster_transport.h (transport_nccl.c
** with NCCL, transport_nccl_none.c without). Not installed.
*/
#ifndef INFSIM_CLUSTER_NCCL_H
#define INFSIM_CLUSTER_NCCL_H

#include <stdint.h>

#include "infsim/kernels.h"
#include "infsim/status.h"

typedef struct icl_nccl icl_nccl;

/* Collective over every rank: rank 0 makes the unique id and broadcasts it
 * with MPI. */
infsim_status icl_nccl_open(infsim_kernels *k, int32_t rank, int32_t size, icl_nccl **out, infsim_error *err);
void icl_nccl_close(icl_nccl *n);
/* Device buffers; returns once the transfer completed, or fails after
 * timeout_s (the communicator is then aborted). */
infsim_status icl_nccl_send(icl_nccl *n, int32_t dst, const void *buf, int64_t bytes, double timeout_s,
                            infsim_error *err);
infsim_status icl_nccl_recv(icl_nccl *n, int32_t src, void *buf, int64_t bytes, double timeout_s,
                            infsim_error *err);

#endif
