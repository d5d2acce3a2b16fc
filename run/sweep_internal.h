/*
** sweep_internal.h: what the sweep's local driver (sweep.c) shares with
** its MPI distribution (sweep_mpi.c): the jobs of a sweep and the one
** function that prepares and runs a job.
*/
#ifndef INFSIM_SWEEP_INTERNAL_H
#define INFSIM_SWEEP_INTERNAL_H

#include <pthread.h>

#include "infsim/sweep.h"

/* A job prepared before the sweep started (sweep.c's first pass), kept
 * for its run. */
typedef struct {
  void *handle; /* NULL once taken */
  char key[INFSIM_SHA256_HEX_BYTES];
  uint64_t seed;
  double prepare_s; /* wall seconds its preparation took: part of its run_wall_s */
} sweep_kept;

typedef struct infsim_sweep_ctx {
  const infsim_sweep_opts *o;
  const infsim_sweep_runner *runner;
  uint64_t base_seed; /* of seed index 0 */
  char host[256];
  size_t total;
  infsim_sweep_db *db; /* opts->db, or the one opened from opts->db_path */
  /* kept[p]: grid point p's first job (job p * seeds), for p < kept_count.
   * Each entry is taken by the one thread that runs its job. */
  sweep_kept *kept;
  size_t kept_count;

  /* Guarded by lock: */
  pthread_mutex_t lock;
  size_t next; /* next job to hand out */
  size_t done; /* finished here or remotely, run or skipped */
  size_t ran_here; /* run by this process's threads and remote ranks */
  bool stop;
  infsim_status status;
  infsim_error err;
  infsim_sweep_outcome *out;
  double start_s, last_print_s;
  bool bar_drawn;
} sweep_ctx;

double sweep_now_s(void);

/* Takes the next job index under the lock; false when none is left or
 * the sweep stops. */
bool sweep_take_job(sweep_ctx *c, size_t *job);

/* Prepares job j and computes its key and seed, or hands over the one the
 * first pass kept; *earlier_s: the wall seconds that one took (else 0). */
infsim_status sweep_prepare_job(sweep_ctx *c, size_t j, void **handle, char key[INFSIM_SHA256_HEX_BYTES],
                                uint64_t *seed, double *earlier_s, infsim_error *err);

/* Under the lock: is key done? (summary from the DB into *summary when
 * keep_summaries). */
bool sweep_lookup_locked(sweep_ctx *c, const char *key, json_t **summary);

/* Under the lock: records a finished job (inserting a new run's row when
 * ran), keeps the summary (takes the reference), updates progress. */
infsim_status sweep_record_locked(sweep_ctx *c, size_t j, const char *key, uint64_t seed, json_t *summary,
                                  double run_wall_s, int64_t pid, bool ran, infsim_error *err);

/* Prefixes a job's error message with its grid point ("grid point
 * scheduler.max_batch_size=0: ..."): the config's messages name the key
 * but not which point of the grid set it. */
void sweep_job_context(const sweep_ctx *c, size_t j, infsim_error *err);

/* Under the lock: the first failure stops the sweep. */
void sweep_fail_locked(sweep_ctx *c, infsim_status st, const infsim_error *err);

/* The whole job in this process: prepare, look up, run, record. */
void sweep_do_job(sweep_ctx *c, size_t j);

/* The local worker thread. */
void *sweep_worker(void *arg);

#endif
