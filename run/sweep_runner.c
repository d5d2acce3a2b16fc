/*
** sweep_runner.c: the sweep's runner over the run library (sweep.h, run.h):
** a job's inputs are loaded and checked as `infsim run` loads them
** (infsim_run_setup_load: config, --set, seed, then the trace from the job,
** else workload.trace, else the generator) and simulated in this process;
** only the summary is kept. No subprocess, no files.
**
** rate_scale divides a copy of the trace's arrival times (rounded to the
** nanosecond, which keeps them non-decreasing), so the arrival rate is
** multiplied while the requests stay the same; the copy is simulated with
** infsim_run_execute_trace (the setup's params and the cost model its load
** built) and its digest goes into the job's key.
**
** A calibrated run's curves come from the calibration DB, which the
** config names by path only, so the DB's bytes join the key too (after
** the version): a DB measured or fitted again runs the job again instead
** of handing back the results of the curves before it. The runner reads
** a DB once while its file stays the same (runner_state).
*/
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "infsim/hash.h"
#include "infsim/run.h"
#include "infsim/sweep.h"

typedef struct {
  infsim_run_setup *setup;
  infsim_trace scaled; /* count 0: the setup's own trace */
} job_handle;

static void handle_free(job_handle *h) {
  if (h == NULL) return;
  infsim_run_setup_free(h->setup);
  infsim_trace_free(&h->scaled);
  free(h);
}

static const infsim_trace *job_trace(const job_handle *h) {
  return h->scaled.count > 0 ? &h->scaled : infsim_run_setup_trace(h->setup);
}

static infsim_status scale_trace(const infsim_trace *from, double rate_scale, infsim_trace *to, infsim_error *err) {
  /* A small scale stretches the trace: its last arrival (arrivals never
   * decrease) must stay within what a trace may hold, or the times would
   * wrap past int64 and the engine's clock would go back. */
  const double limit_ns = (double)INFSIM_TRACE_MAX_ARRIVAL_S * 1e9;
  if (from->count > 0) {
    const double last_ns = (double)from->requests[from->count - 1].arrival_ns / rate_scale;
    if (!(last_ns <= limit_ns))
      return infsim_fail(err, INFSIM_EINPUT,
                         "rate_scale %g: the trace's last arrival (%.9g s) would move to %.4g s, past the %lld s a "
                         "trace may span",
                         rate_scale, (double)from->requests[from->count - 1].arrival_ns / 1e9, last_ns / 1e9,
                         (long long)INFSIM_TRACE_MAX_ARRIVAL_S);
  }
  to->requests = malloc(from->count * sizeof *to->requests);
  if (to->requests == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  to->count = to->capacity = from->count;
  for (size_t i = 0; i < from->count; i++) {
    to->requests[i] = from->requests[i];
    to->requests[i].arrival_ns = llround((double)from->requests[i].arrival_ns / rate_scale);
  }
  return INFSIM_OK;
}

/* The runner's state: the last calibration DB hashed, by the file's
 * identity (path, device, inode, size, modification time), so that the
 * jobs of a sweep on one DB read it once (each read took ~5 ms a job for
 * the shipped 1 MB DB: 1.1 s of a 1.2 s resume of 200 jobs) while a DB
 * rewritten in between is read again. Jobs are prepared by several
 * threads: `lock` guards it. */
typedef struct {
  pthread_mutex_t lock;
  bool valid;
  char path[INFSIM_CONFIG_PATH_BYTES];
  dev_t dev;
  ino_t ino;
  off_t size;
  struct timespec mtime;
  char hex[INFSIM_SHA256_HEX_BYTES];
} runner_state;

static bool same_file(const runner_state *r, const char *path, const struct stat *st) {
  return r->valid && strcmp(r->path, path) == 0 && r->dev == st->st_dev && r->ino == st->st_ino &&
         r->size == st->st_size && r->mtime.tv_sec == st->st_mtim.tv_sec && r->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

static infsim_status file_sha256_hex(const char *path, char hex[INFSIM_SHA256_HEX_BYTES], infsim_error *err) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return infsim_fail(err, INFSIM_EIO, "%s: calibration.db: cannot read: %s", path, strerror(errno));
  infsim_sha256 s;
  infsim_sha256_init(&s);
  uint8_t buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) infsim_sha256_update(&s, buf, n);
  const bool failed = ferror(f) != 0;
  fclose(f);
  if (failed) return infsim_fail(err, INFSIM_EIO, "%s: calibration.db: read error", path);
  uint8_t digest[INFSIM_SHA256_BYTES];
  infsim_sha256_final(&s, digest);
  infsim_sha256_hex(digest, hex);
  return INFSIM_OK;
}

/* version, "+sources:" and the simulator's source identity (a build of
 * other sources reruns its jobs; infsim and infsim-mpi share it), plus, for
 * a calibrated run, "+calibration:" and the SHA-256 of the DB file's
 * bytes. */
static infsim_status key_version(runner_state *r, const infsim_run_setup *setup, char *out, size_t bytes,
                                 infsim_error *err) {
  const char *model = infsim_run_setup_cost_model(setup);
  if (model == NULL || strncmp(model, "calibrated:", 11) != 0) {
    snprintf(out, bytes, "%s+sources:%s", INFSIM_VERSION, infsim_source_id());
    return INFSIM_OK;
  }
  const char *path = infsim_run_setup_params(setup)->calibration_db;
  struct stat st;
  if (stat(path, &st) != 0)
    return infsim_fail(err, INFSIM_EIO, "%s: calibration.db: cannot read: %s", path, strerror(errno));
  char hex[INFSIM_SHA256_HEX_BYTES];
  pthread_mutex_lock(&r->lock);
  const bool known = same_file(r, path, &st);
  if (known) memcpy(hex, r->hex, sizeof hex);
  pthread_mutex_unlock(&r->lock);
  if (!known) {
    infsim_status hs = file_sha256_hex(path, hex, err);
    if (hs != INFSIM_OK) return hs;
    pthread_mutex_lock(&r->lock);
    r->valid = true;
    snprintf(r->path, sizeof r->path, "%s", path);
    r->dev = st.st_dev, r->ino = st.st_ino, r->size = st.st_size, r->mtime = st.st_mtim;
    memcpy(r->hex, hex, sizeof hex);
    pthread_mutex_unlock(&r->lock);
  }
  snprintf(out, bytes, "%s+sources:%s+calibration:%s", INFSIM_VERSION, infsim_source_id(), hex);
  return INFSIM_OK;
}

static infsim_status runner_prepare(void *self, const infsim_job_args *a, void **handle,
                                    char key[INFSIM_SHA256_HEX_BYTES], uint64_t *seed, infsim_error *err) {
  job_handle *h = calloc(1, sizeof *h);
  if (h == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  infsim_run_args ra = {.config_path = a->config_path,
                        .trace_path = a->trace_path,
                        .sets = a->sets,
                        .set_count = (int)a->set_count,
                        .seed_text = a->seed_text};
  infsim_status st = infsim_run_setup_load(&ra, &h->setup, err);
  if (st == INFSIM_OK && a->rate_scale != 1)
    st = scale_trace(infsim_run_setup_trace(h->setup), a->rate_scale, &h->scaled, err);
  if (st == INFSIM_OK) {
    uint8_t digest[INFSIM_SHA256_BYTES];
    infsim_trace_digest(job_trace(h), digest);
    *seed = infsim_run_setup_params(h->setup)->seed;
    char version[224];
    st = key_version(self, h->setup, version, sizeof version, err);
    if (st == INFSIM_OK && !infsim_point_key(infsim_run_setup_config(h->setup), digest, *seed, version, key))
      st = infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  }
  if (st != INFSIM_OK) {
    handle_free(h);
    return st;
  }
  *handle = h;
  return INFSIM_OK;
}

static infsim_status runner_execute(void *self, void *handle, json_t **summary, infsim_error *err) {
  (void)self;
  job_handle *h = handle;
  infsim_run_result *res = NULL;
  infsim_status st = infsim_run_execute_trace(h->setup, job_trace(h), &res, err);
  if (st == INFSIM_OK && (*summary = infsim_run_result_summary_json(res)) == NULL)
    st = infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  infsim_run_result_free(res);
  return st;
}

static void runner_release(void *self, void *handle) {
  (void)self;
  handle_free(handle);
}

/* The parameters and the resolved config (jansson's objects) of a setup
 * hold about this much beside its trace: 14 to 17 KiB measured with the
 * shipped configs. The config's keys are the schema's (unknown keys fail
 * the load), so it is about the same for every config. */
enum { SETUP_BESIDE_TRACE_BYTES = 16 * 1024 };

static size_t runner_bytes(void *self, const void *handle) {
  (void)self;
  const job_handle *h = handle;
  return sizeof *h + SETUP_BESIDE_TRACE_BYTES +
         (infsim_run_setup_trace(h->setup)->capacity + h->scaled.capacity) * sizeof(infsim_trace_request);
}

infsim_status infsim_sweep_runner_new(infsim_sweep_runner *out, infsim_error *err) {
  runner_state *r = calloc(1, sizeof *r);
  if (r == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  pthread_mutex_init(&r->lock, NULL);
  *out = (infsim_sweep_runner){r, runner_prepare, runner_execute, runner_release, runner_bytes};
  return INFSIM_OK;
}

void infsim_sweep_runner_free(infsim_sweep_runner *r) {
  runner_state *s = r->self;
  if (s != NULL) {
    pthread_mutex_destroy(&s->lock);
    free(s);
  }
  memset(r, 0, sizeof *r);
}
