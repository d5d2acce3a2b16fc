/*
** transport_nccl_none.c: the NCCL data plane in a build without NCCL: the
** NCCL transport reports itself unavailable (exit code 77).
*/
#include "nccl.h"

infsim_status icl_nccl_open(infsim_kernels *k, int32_t rank, int32_t size, icl_nccl **out, infsim_error *err) {
  (void)k, (void)rank, (void)size;
  *out = NULL;
  return infsim_fail(err, INFSIM_ENODEV, "cluster: this build has no NCCL (use --transport mpi)");
}

void icl_nccl_close(icl_nccl *n) { (void)n; }

infsim_status icl_nccl_send(icl_nccl *n, int32_t dst, const void *buf, int64_t bytes, double timeout_s,
                            infsim_error *err) {
  (void)n, (void)dst, (void)buf, (void)bytes, (void)timeout_s;
  return infsim_fail(err, INFSIM_ENODEV, "cluster: this build has no NCCL");
}

infsim_status icl_nccl_recv(icl_nccl *n, int32_t src, void *buf, int64_t bytes, double timeout_s,
                            infsim_error *err) {
  (void)n, (void)src, (void)buf, (void)bytes, (void)timeout_s;
  return infsim_fail(err, INFSIM_ENODEV, "cluster: this build has no NCCL");
}
