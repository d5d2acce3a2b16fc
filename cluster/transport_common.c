/*
** transport_common.c: the parts of cluster_transport.h that need no MPI
** (shared by transport_mpi.c and transport_single.c).
*/
#include <string.h>
#include <time.h>

#include "infsim/cluster_transport.h"

const char *infsim_ctransport_kind_name(infsim_ctransport_kind kind) {
  return kind == INFSIM_CTRANSPORT_NCCL ? "nccl" : "mpi";
}

bool infsim_ctransport_kind_parse(const char *name, infsim_ctransport_kind *out) {
  if (strcmp(name, "mpi") == 0) *out = INFSIM_CTRANSPORT_MPI;
  else if (strcmp(name, "nccl") == 0) *out = INFSIM_CTRANSPORT_NCCL;
  else return false;
  return true;
}

double infsim_cluster_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
