/*
** cluster_executor.h: cluster mode's executor seam (executor.h) over MPI
** ranks: rank 0 runs the scheduler for every instance; instance i's batches
** run on rank i's model (cluster_model.h).
**
** Rank 0 holds an infsim_cexec. Its seam (wants_entries, max_steps = 1)
** turns each batch into parts: the entries' query and context tokens and
** the KV manager's block tables, block ids made slots of the instance's
** pool (id - infsim_kv_first_block(instance)), blocks held by other
** instances counted as remote tokens. It sends them to rank i (instance 0
** runs in a thread on rank 0 itself, so the driver loop never blocks on
** it) and returns end = -1: the end is the wall-clock time the answer
** arrives, which the driver reads with infsim_cexec_poll and hands to the
** scheduler as infsim_sched_iteration_done.
** Ranks 1..N-1 call infsim_cexec_serve, which runs what arrives until told
** to stop. Rank 0 routes everything between instances: DistAttention
** queries and partials, and the KV blocks of every move the KV manager
** makes (executor.c says in what order, so that the KV is where the block
** tables say whenever a batch reads it).
**
** Faults: a batch unanswered after the transport's timeout, or a rank 0
** silent that long (it sends keep-alives when idle), is an INFSIM_ERUN
** that names the rank: the caller keeps what it has and stops.
*/
#ifndef INFSIM_CLUSTER_EXECUTOR_H
#define INFSIM_CLUSTER_EXECUTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "infsim/batch.h"
#include "infsim/cluster_model.h"
#include "infsim/cluster_transport.h"
#include "infsim/executor.h"
#include "infsim/kv.h"
#include "infsim/sim.h"
#include "infsim/status.h"
#include "infsim/trace.h"

typedef struct infsim_cexec infsim_cexec;

/* instances == the transport's ranks; local is rank 0's model (instance
 * 0), shadow NULL or its verification twin (infsim_cmodel_forward_verified);
 * outputs NULL or where instance 0 writes each part's last hidden row
 * ("req position values...", for comparing runs); requests give each
 * request's prompt length (borrowed). t0_s is the run's start on
 * infsim_cluster_now_s's clock. */
infsim_status infsim_cexec_new(infsim_ctransport *t, infsim_cmodel *local, infsim_cmodel *shadow, FILE *outputs,
                               const infsim_trace_request *requests, size_t count, double t0_s, infsim_cexec **out,
                               infsim_error *err);
/* The scheduler's KV manager: every block a move rehomes is copied between
 * the instances' pools (before any batch reads it there). Call before the
 * first batch. */
void infsim_cexec_attach_kv(infsim_cexec *x, infsim_kv *kv);
/* KV blocks moved between instances (and their bytes), and DistAttention
 * queries routed (one per owner, holder and layer). */
void infsim_cexec_stats(const infsim_cexec *x, int64_t *moves, int64_t *move_bytes, int64_t *queries);
/* Stops the workers (infsim_cexec_stop) if not done yet, and frees. */
void infsim_cexec_free(infsim_cexec *x);

/* The executor seam the scheduler takes. */
infsim_executor infsim_cexec_seam(infsim_cexec *x);
/* A failure inside the seam's submit (which can only return a status):
 * the driver checks it after each scheduler call. */
infsim_status infsim_cexec_error(const infsim_cexec *x, infsim_error *err);

/* Nonblocking: *got = true with the instance and end time of a finished
 * batch; fails when one is past the timeout or a rank reported an error. */
infsim_status infsim_cexec_poll(infsim_cexec *x, bool *got, int32_t *instance, int64_t *end_ns, infsim_error *err);
/* Batches in flight. */
int32_t infsim_cexec_in_flight(const infsim_cexec *x);
/* Tells idle workers that rank 0 is alive (call at least every timeout / 4). */
infsim_status infsim_cexec_keepalive(infsim_cexec *x, infsim_error *err);
/* Tells every worker to stop and waits for the local thread. */
infsim_status infsim_cexec_stop(infsim_cexec *x, infsim_error *err);

/* One row per batch run (iterations.csv), times on the run's wall clock;
 * a batch still running has end_ns -1. */
const infsim_iteration_row *infsim_cexec_iterations(const infsim_cexec *x, size_t *count);

/* Fault injection (tests): after `after` batches (-1: never) the rank
 * hangs (kind 1: silent, alive) or exits at once (kind 2). */
typedef struct {
  int kind;
  int32_t after;
} infsim_cexec_fault;

/* Ranks 1..N-1: runs batches from rank 0 on m (each verified on shadow
 * unless NULL) until told to stop. fault may be NULL. */
infsim_status infsim_cexec_serve(infsim_ctransport *t, infsim_cmodel *m, infsim_cmodel *shadow, FILE *outputs,
                                 const infsim_cexec_fault *fault, infsim_error *err);

#endif
