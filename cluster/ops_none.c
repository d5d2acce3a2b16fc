/*
** ops_none.c: the CUDA half of ops.h in a build without nvcc: no CUDA ops,
** and graphs report INFSIM_ENODEV (the cuda executor is then unavailable,
** exit code 77).
*/
#include "ops.h"

const icl_ops *icl_ops_cuda(void) { return NULL; }

infsim_status icl_graph_begin(infsim_kernels *k, infsim_error *err) {
  (void)k;
  return infsim_fail(err, INFSIM_ENODEV, "cluster: built without CUDA: no CUDA graphs");
}

infsim_status icl_graph_end(infsim_kernels *k, void **graph_exec, infsim_error *err) {
  (void)k;
  *graph_exec = NULL;
  return infsim_fail(err, INFSIM_ENODEV, "cluster: built without CUDA: no CUDA graphs");
}

infsim_status icl_graph_launch(infsim_kernels *k, void *graph_exec, infsim_error *err) {
  (void)k;
  (void)graph_exec;
  return infsim_fail(err, INFSIM_ENODEV, "cluster: built without CUDA: no CUDA graphs");
}

void icl_graph_free(void *graph_exec) { (void)graph_exec; }
