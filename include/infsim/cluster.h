/*
** cluster.h: cluster mode: the scheduler of `infsim run` driving real
** executors on MPI ranks, on the wall clock.
**
** Every rank calls infsim_cluster_run with the same setup (run.h). Rank r
** hosts instance r's model (cluster_model.h) on the chosen executor
** (cpu: the reference kernels; cuda: the CUDA kernels, decode steps as
** CUDA graphs). Rank 0 also runs the scheduler for every instance
** (sched.h, the same code as the simulator) and a driver loop that replays
** the trace's arrivals at their times, hands batch ends from the ranks
** (cluster_executor.h) to the scheduler as they arrive, delivers its
** messages, and samples the instances like the simulator does. The result
** is a run result (run.h) with wall-clock times, written like `run`'s.
**
** Faults: a rank that dies or hangs is noticed within opts.timeout_s (a
** batch unanswered, or rank 0 silent) and the run stops with an error that
** names it; rank 0 still returns the results so far.
*/
#ifndef INFSIM_CLUSTER_H
#define INFSIM_CLUSTER_H

#include <signal.h>
#include <stdint.h>

#include "infsim/cluster_transport.h"
#include "infsim/kernels.h"
#include "infsim/run.h"
#include "infsim/status.h"

/* Fault injection for tests: rank `rank` hangs or exits after `after` batches. */
typedef enum { INFSIM_CLUSTER_FAULT_NONE = 0, INFSIM_CLUSTER_FAULT_HANG, INFSIM_CLUSTER_FAULT_DIE } infsim_cluster_fault;

typedef struct {
  infsim_kernel_backend executor;
  infsim_ctransport_kind transport;
  double timeout_s;   /* > 0: a batch or a message later than this is a fault */
  int64_t kv_blocks;  /* KV blocks per instance; 0: the run's sizing, at most INFSIM_CLUSTER_CPU_BLOCKS on cpu */
  bool decode_graphs; /* cuda: replay decode steps as CUDA graphs */
  bool verify;        /* every batch also runs request by request on a twin model and must agree (slow) */
  bool warm_up;       /* warm-up forwards before the clock starts (infsim_cmodel_warm_up) */
  /* NULL, or a directory where rank r writes outputs-r.txt: each batch
   * part's last hidden row ("req position values..."), to compare a run
   * with borrowing against a one-instance run. */
  const char *outputs_dir;
  /* Set asynchronously (SIGTERM, SIGINT) to stop the run, keeping results. */
  const volatile sig_atomic_t *interrupted;
  infsim_cluster_fault fault;
  int32_t fault_rank;
  int32_t fault_after;
} infsim_cluster_opts;

enum { INFSIM_CLUSTER_CPU_BLOCKS = 4096 };

/* Collective over the ranks (MPI initialized, one rank per instance). On
 * rank 0 *out is the run's result, also when the run failed part way (the
 * results so far; NULL only when nothing ran); other ranks get NULL. */
infsim_status infsim_cluster_run(const infsim_run_setup *setup, const infsim_cluster_opts *opts,
                                 infsim_run_result **out, infsim_error *err);

#endif
