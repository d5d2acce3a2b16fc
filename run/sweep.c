/*
** sweep.c: the sweep driver (sweep.h): jobs handed out one at a time to
** local worker threads (and, under mpirun, to other ranks: sweep_mpi.c),
** resumed by key against the results DB, with progress on stderr.
**
** Job j is grid point j / seeds with seed index j % seeds; its settings
** are the sweep's --set assignments, then the point's grid values (so a
** grid axis wins over a --set of the same key). Seed index s runs the
** config's seed + s. Each grid point's first job is prepared before the
** DB is opened (prepare_points) and, within INFSIM_SWEEP_KEEP_BYTES, kept
** and run as prepared then, so that it is not prepared twice.
**
** Invariants: every shared field of sweep_ctx changes under its lock; the
** DB is touched only under it; a job's row is written before the job
** counts as done; after the first failure no job starts (those running
** finish and are kept).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sweep_internal.h"

double sweep_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

bool sweep_take_job(sweep_ctx *c, size_t *job) {
  pthread_mutex_lock(&c->lock);
  bool ok = !c->stop && c->next < c->total;
  if (ok) *job = c->next++;
  pthread_mutex_unlock(&c->lock);
  return ok;
}

/* ---- progress ---- */

static void format_duration(double s, char out[32]) {
  if (!(s >= 0) || s > 1e8) {
    snprintf(out, 32, "--");
    return;
  }
  long t = (long)(s + 0.5);
  if (t >= 3600)
    snprintf(out, 32, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else
    snprintf(out, 32, "%ld:%02ld", t / 60, t % 60);
}

static void progress_locked(sweep_ctx *c, bool final) {
  const infsim_sweep_opts *o = c->o;
  if (o->progress == INFSIM_PROGRESS_NONE) return;
  double now = sweep_now_s(), elapsed = now - c->start_s;
  if (!final && now - c->last_print_s < (o->progress == INFSIM_PROGRESS_BAR ? 0.1 : 1.0)) return;
  c->last_print_s = now;
  /* ETA from the jobs run here: skipped ones cost nothing. */
  size_t left = c->total - c->done;
  double eta = c->ran_here > 0 ? elapsed / (double)c->ran_here * (double)left : -1;
  if (left == 0) eta = 0;
  char eta_text[32], elapsed_text[32];
  format_duration(eta, eta_text);
  format_duration(elapsed, elapsed_text);
  const char *label = o->progress_label != NULL ? o->progress_label : "sweep";
  size_t skipped = c->out->skipped;
  if (o->progress == INFSIM_PROGRESS_BAR) {
    enum { WIDTH = 30 };
    char bar[WIDTH + 1];
    size_t filled = c->total > 0 ? c->done * WIDTH / c->total : WIDTH;
    for (size_t i = 0; i < WIDTH; i++) bar[i] = i < filled ? '#' : '.';
    bar[WIDTH] = '\0';
    fprintf(stderr, "\r%s [%s] %zu/%zu (%zu skipped) %s elapsed, ETA %s \033[K", label, bar, c->done, c->total,
            skipped, elapsed_text, eta_text);
    c->bar_drawn = true;
    if (final) {
      fputc('\n', stderr);
      c->bar_drawn = false;
    }
  } else {
    fprintf(stderr, "%s: %zu/%zu done (%zu run, %zu skipped), %s elapsed, ETA %s\n", label, c->done, c->total,
            c->ran_here, skipped, elapsed_text, eta_text);
  }
  fflush(stderr);
}

/* ---- one job ---- */

/* "key=value" settings of job j: the sweep's, then its point's grid values
 * (rate_scale aside, which is no config key). */
static char **job_sets(const sweep_ctx *c, size_t j, size_t *count, double *rate_scale) {
  const infsim_sweep_opts *o = c->o;
  size_t axes = o->grid != NULL ? infsim_grid_axis_count(o->grid) : 0, point = j / (size_t)o->seeds;
  char **sets = calloc(o->set_count + axes + 1, sizeof *sets);
  if (sets == NULL) return NULL;
  size_t n = 0;
  *rate_scale = 1;
  for (size_t i = 0; i < o->set_count; i++) sets[n++] = strdup(o->sets[i]);
  for (size_t a = 0; a < axes; a++) {
    const char *k = infsim_grid_axis_key(o->grid, a), *v = infsim_grid_value(o->grid, point, a);
    if (strcmp(k, INFSIM_RATE_SCALE_KEY) == 0) {
      *rate_scale = strtod(v, NULL); /* checked positive by infsim_grid_add */
      continue;
    }
    size_t bytes = strlen(k) + strlen(v) + 2;
    sets[n] = malloc(bytes);
    if (sets[n] != NULL) snprintf(sets[n], bytes, "%s=%s", k, v);
    n++;
  }
  bool ok = true;
  for (size_t i = 0; i < n; i++) ok &= sets[i] != NULL;
  if (!ok) {
    for (size_t i = 0; i < n; i++) free(sets[i]);
    free(sets);
    return NULL;
  }
  *count = n;
  return sets;
}

static infsim_status prepare_job(sweep_ctx *c, size_t j, void **handle, char key[INFSIM_SHA256_HEX_BYTES],
                                 uint64_t *seed, infsim_error *err) {
  size_t n = 0;
  double rate_scale = 1;
  char **sets = job_sets(c, j, &n, &rate_scale);
  if (sets == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  size_t s = j % (size_t)c->o->seeds;
  char seed_text[32];
  snprintf(seed_text, sizeof seed_text, "%llu", (unsigned long long)(c->base_seed + s));
  infsim_job_args a = {.config_path = c->o->config_path,
                       .trace_path = c->o->trace_path,
                       .sets = (const char *const *)sets,
                       .set_count = n,
                       /* seed index 0 is the config's own seed (base_seed is known only then) */
                       .seed_text = s == 0 ? NULL : seed_text,
                       .rate_scale = rate_scale};
  infsim_status st = c->runner->prepare(c->runner->self, &a, handle, key, seed, err);
  for (size_t i = 0; i < n; i++) free(sets[i]);
  free(sets);
  return st;
}

infsim_status sweep_prepare_job(sweep_ctx *c, size_t j, void **handle, char key[INFSIM_SHA256_HEX_BYTES],
                                uint64_t *seed, double *earlier_s, infsim_error *err) {
  const size_t point = j / (size_t)c->o->seeds;
  *earlier_s = 0;
  if (j % (size_t)c->o->seeds == 0 && point < c->kept_count && c->kept[point].handle != NULL) {
    sweep_kept *k = &c->kept[point];
    *handle = k->handle;
    k->handle = NULL;
    memcpy(key, k->key, INFSIM_SHA256_HEX_BYTES);
    *seed = k->seed;
    *earlier_s = k->prepare_s;
    return INFSIM_OK;
  }
  return prepare_job(c, j, handle, key, seed, err);
}

bool sweep_lookup_locked(sweep_ctx *c, const char *key, json_t **summary) {
  *summary = NULL;
  if (c->db == NULL) return false;
  json_t *s = infsim_sweep_db_summary(c->db, key);
  if (s == NULL) return false;
  if (c->o->keep_summaries)
    *summary = s;
  else
    json_decref(s);
  return true;
}

void sweep_fail_locked(sweep_ctx *c, infsim_status st, const infsim_error *err) {
  if (c->status == INFSIM_OK) {
    c->status = st;
    c->err = *err;
    c->err.status = st;
  }
  c->stop = true;
}

void sweep_job_context(const sweep_ctx *c, size_t j, infsim_error *err) {
  const infsim_grid *g = c->o->grid;
  size_t axes = g != NULL ? infsim_grid_axis_count(g) : 0;
  if (axes == 0) return; /* one point: the message says it all */
  char ctx[256];
  int at = snprintf(ctx, sizeof ctx, "grid point ");
  for (size_t a = 0; a < axes && at > 0 && (size_t)at < sizeof ctx; a++)
    at += snprintf(ctx + at, sizeof ctx - (size_t)at, "%s%s=%s", a > 0 ? ", " : "", infsim_grid_axis_key(g, a),
                   infsim_grid_value(g, j / (size_t)c->o->seeds, a));
  char msg[INFSIM_ERROR_MSG_BYTES];
  snprintf(msg, sizeof msg, "%s", err->msg);
  infsim_fail(err, err->status, "%.200s: %s", ctx, msg);
}

infsim_status sweep_record_locked(sweep_ctx *c, size_t j, const char *key, uint64_t seed, json_t *summary,
                                  double run_wall_s, int64_t pid, bool ran, infsim_error *err) {
  infsim_status st = INFSIM_OK;
  if (ran && c->db != NULL) {
    infsim_sweep_row row = {.key = key,
                            .point = j / (size_t)c->o->seeds,
                            .seed = seed,
                            .grid = c->o->grid,
                            .summary = summary,
                            .run_wall_s = run_wall_s,
                            .host = c->host,
                            .pid = pid,
                            .label = c->o->label};
    st = infsim_sweep_db_insert(c->db, &row, err);
  }
  if (st == INFSIM_OK) {
    c->done++;
    if (ran) {
      c->out->ran++;
      c->ran_here++;
    } else {
      c->out->skipped++;
    }
    if (c->o->keep_summaries && summary != NULL) {
      c->out->summaries[j] = summary;
      summary = NULL;
    }
    progress_locked(c, c->done == c->total);
  }
  json_decref(summary);
  return st;
}

void sweep_do_job(sweep_ctx *c, size_t j) {
  infsim_error err = {0};
  void *handle = NULL;
  char key[INFSIM_SHA256_HEX_BYTES];
  uint64_t seed = 0;
  double t0 = sweep_now_s(), earlier_s;
  infsim_status st = sweep_prepare_job(c, j, &handle, key, &seed, &earlier_s, &err);
  json_t *summary = NULL;
  bool found = false;
  if (st == INFSIM_OK) {
    pthread_mutex_lock(&c->lock);
    found = sweep_lookup_locked(c, key, &summary);
    pthread_mutex_unlock(&c->lock);
    if (!found) st = c->runner->execute(c->runner->self, handle, &summary, &err);
    c->runner->release(c->runner->self, handle);
  }
  double wall_s = earlier_s + (sweep_now_s() - t0);
  pthread_mutex_lock(&c->lock);
  if (st == INFSIM_OK) st = sweep_record_locked(c, j, key, seed, summary, wall_s, (int64_t)getpid(), !found, &err);
  else json_decref(summary);
  if (st != INFSIM_OK) {
    err.status = st;
    sweep_job_context(c, j, &err);
    sweep_fail_locked(c, st, &err);
  }
  pthread_mutex_unlock(&c->lock);
}

void *sweep_worker(void *arg) {
  sweep_ctx *c = arg;
  size_t j;
  while (sweep_take_job(c, &j)) sweep_do_job(c, j);
  return NULL;
}

/* ---- the sweep ---- */

void infsim_sweep_outcome_free(infsim_sweep_outcome *out) {
  if (out->summaries != NULL)
    for (size_t i = 0; i < out->total; i++) json_decref(out->summaries[i]);
  free(out->summaries);
  memset(out, 0, sizeof *out);
}

bool infsim_sweep_mpi_launched(void) {
  /* Open MPI, MPICH/Hydra and Slurm each say how many ranks they started. */
  static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_NTASKS"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
    const char *v = getenv(vars[i]);
    if (v != NULL && atoi(v) > 1) return true;
  }
  return false;
}

/* Room in c->kept for `count` entries, doubling it as it fills. */
static bool kept_room(sweep_ctx *c, size_t count, size_t *capacity) {
  if (count <= *capacity) return true;
  size_t grown_capacity = *capacity > 0 ? 2 * *capacity : 64;
  sweep_kept *grown = realloc(c->kept, grown_capacity * sizeof *grown);
  if (grown == NULL) return false;
  c->kept = grown;
  *capacity = grown_capacity;
  return true;
}

/* The first pass: every grid point's first job prepared (job 0's seed is
 * the base seed), before the DB exists, so that a bad value at any point
 * leaves no DB behind. The prepared jobs of the first points are kept for
 * their runs while their bytes stay within INFSIM_SWEEP_KEEP_BYTES; past
 * that, a point is checked, released, and prepared again when it runs.
 * Kept points are a prefix (point == kept_count): the workers take jobs in
 * order, so the kept ones run, and are released, first. */
static infsim_status prepare_points(sweep_ctx *c, size_t points, infsim_error *err) {
  const infsim_sweep_runner *r = c->runner;
  size_t kept_bytes = 0, capacity = 0;
  bool keeping = r->bytes != NULL;
  for (size_t point = 0; point < points; point++) {
    const size_t j = point * (size_t)c->o->seeds;
    void *handle = NULL;
    char key[INFSIM_SHA256_HEX_BYTES];
    uint64_t seed;
    double t0 = sweep_now_s();
    infsim_status st = prepare_job(c, j, &handle, key, &seed, err);
    if (st != INFSIM_OK) {
      sweep_job_context(c, j, err);
      return st;
    }
    if (point == 0) c->base_seed = seed;
    size_t bytes = keeping ? r->bytes(r->self, handle) : 0;
    /* Out of memory for the list: the rest are prepared again when they run. */
    keeping = keeping && bytes <= INFSIM_SWEEP_KEEP_BYTES - kept_bytes && kept_room(c, point + 1, &capacity);
    if (!keeping) {
      r->release(r->self, handle);
      continue;
    }
    sweep_kept *k = &c->kept[point];
    k->handle = handle;
    memcpy(k->key, key, sizeof key);
    k->seed = seed;
    k->prepare_s = sweep_now_s() - t0;
    c->kept_count = point + 1;
    kept_bytes += bytes;
  }
  return INFSIM_OK;
}

/* Releases the kept jobs that did not run (the sweep stopped, or, under
 * MPI, another rank ran them). */
static void release_kept(sweep_ctx *c) {
  for (size_t p = 0; p < c->kept_count; p++)
    if (c->kept[p].handle != NULL) c->runner->release(c->runner->self, c->kept[p].handle);
  free(c->kept);
  c->kept = NULL;
  c->kept_count = 0;
}

/* Runs the threads of this process over the jobs not handed out yet. */
static infsim_status run_local(sweep_ctx *c, infsim_error *err) {
  int threads = c->o->jobs;
  if ((size_t)threads > c->total) threads = (int)c->total;
  pthread_t *ids = calloc((size_t)(threads > 0 ? threads : 1), sizeof *ids);
  if (ids == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  int started = 0;
  for (; started < threads; started++)
    if (pthread_create(&ids[started], NULL, sweep_worker, c) != 0) break;
  if (started == 0) sweep_worker(c); /* no thread at all: run here */
  for (int i = 0; i < started; i++) pthread_join(ids[i], NULL);
  free(ids);
  return INFSIM_OK;
}

infsim_status infsim_sweep_run(const infsim_sweep_opts *opts, infsim_sweep_outcome *out, infsim_error *err) {
  memset(out, 0, sizeof *out);
  out->is_root = true;
  if (opts->seeds < 1 || opts->seeds > INFSIM_SWEEP_MAX_SEEDS)
    return infsim_fail(err, INFSIM_EINPUT, "--seeds: expected an integer in [1, %d], got %d", INFSIM_SWEEP_MAX_SEEDS,
                       opts->seeds);
  if (opts->jobs < 1) return infsim_fail(err, INFSIM_EINPUT, "--jobs: expected at least 1, got %d", opts->jobs);
  size_t points = opts->grid != NULL ? infsim_grid_point_count(opts->grid) : 1;
  if (points > INFSIM_GRID_MAX_POINTS / (size_t)opts->seeds)
    return infsim_fail(err, INFSIM_EINPUT, "grid x seeds exceeds %d runs", INFSIM_GRID_MAX_POINTS);

  sweep_ctx c = {.o = opts, .total = points * (size_t)opts->seeds, .out = out, .db = opts->db};
  bool mpi = opts->ranks != NULL && infsim_sweep_mpi_launched();
  /* Under MPI rank 0 opens it (sweep_mpi.c); workers never touch it. It
   * is opened (created) only once every grid point has loaded
   * (prepare_points): a bad config leaves no DB behind. */
  bool own_db = false;
  out->total = c.total;
  infsim_sweep_runner default_runner;
  bool own_runner = opts->runner == NULL;
  if (own_runner) {
    infsim_status st = infsim_sweep_runner_new(&default_runner, err);
    if (st != INFSIM_OK) return st;
  }
  c.runner = own_runner ? &default_runner : opts->runner;
  if (gethostname(c.host, sizeof c.host) != 0) snprintf(c.host, sizeof c.host, "unknown");
  c.host[sizeof c.host - 1] = '\0';
  if (opts->keep_summaries && (out->summaries = calloc(c.total, sizeof *out->summaries)) == NULL) {
    if (own_runner) infsim_sweep_runner_free(&default_runner);
    return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  }
  pthread_mutex_init(&c.lock, NULL);
  c.start_s = c.last_print_s = sweep_now_s();
  c.last_print_s -= 10; /* the first line comes at once */

  infsim_status st = prepare_points(&c, points, err);
  if (st == INFSIM_OK && c.db == NULL && opts->db_path != NULL && !mpi) {
    st = infsim_sweep_db_open(opts->db_path, &c.db, err);
    own_db = st == INFSIM_OK;
  }
  if (st == INFSIM_OK) {
    if (mpi)
      st = opts->ranks(&c, err);
    else
      st = run_local(&c, err);
  }
  if (st == INFSIM_OK && c.status != INFSIM_OK) {
    *err = c.err;
    st = c.status;
  }
  if (out->is_root) {
    pthread_mutex_lock(&c.lock);
    if (c.bar_drawn || (opts->progress == INFSIM_PROGRESS_LINES && c.done != c.total)) progress_locked(&c, true);
    pthread_mutex_unlock(&c.lock);
  }
  release_kept(&c);
  pthread_mutex_destroy(&c.lock);
  if (own_db) infsim_sweep_db_close(c.db);
  if (own_runner) infsim_sweep_runner_free(&default_runner);
  return st;
}
