/*
** sweep_mpi.c: a sweep spread over MPI ranks (sweep.h, sweep_internal.h).
** Built only where CMake finds MPI, into libinfsim_sweep_mpi (not
** libinfsim): only the MPI executable (infsim-mpi) links it and passes
** infsim_sweep_mpi as the sweep's `ranks`; used only when the process was
** started by mpirun (infsim_sweep_mpi_launched), so a plain `infsim sweep`
** never initializes MPI.
**
** Rank 0 hands out jobs one at a time, on request, and alone touches the
** results DB: a worker asks for a job, loads it and sends its key, learns
** whether the DB already has it, runs it if not and sends the summary
** back, then asks again. Rank 0's own threads take jobs from the same
** counter meanwhile; its main thread only serves the workers (polling
** with a short sleep, so it does not spin a core). Messages are JSON
** texts, few and small next to a run. At the end rank 0 sends every rank
** the status and, when kept, the summaries, so a capacity search makes
** the same decisions on every rank.
**
** Invariants: only the main thread calls MPI (MPI_THREAD_FUNNELED); every
** worker gets exactly one STOP; a job is recorded once, by rank 0.
*/
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sweep_internal.h"

enum { TAG_MSG = 1, TAG_STOP = 2 };

static void finalize_mpi(void) {
  int done = 0;
  MPI_Finalized(&done);
  if (!done) MPI_Finalize();
}

/* Initializes MPI once per process (finalized at exit). */
static infsim_status ensure_mpi(infsim_error *err) {
  int up = 0;
  MPI_Initialized(&up);
  if (up) return INFSIM_OK;
  int provided = 0;
  if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
    return infsim_fail(err, INFSIM_ERUN, "MPI_Init_thread failed");
  atexit(finalize_mpi);
  return INFSIM_OK;
}

static void send_json(json_t *msg, int to, int tag) {
  char *text = json_dumps(msg, JSON_COMPACT | JSON_REAL_PRECISION(17));
  json_decref(msg);
  if (text == NULL) text = strdup("{}");
  MPI_Send(text, (int)strlen(text) + 1, MPI_CHAR, to, tag, MPI_COMM_WORLD);
  free(text);
}

/* Receives the probed message as JSON (NULL if malformed). */
static json_t *recv_json(const MPI_Status *probed) {
  int n = 0;
  MPI_Get_count(probed, MPI_CHAR, &n);
  char *buf = malloc((size_t)(n > 0 ? n : 1));
  if (buf == NULL) return NULL;
  MPI_Recv(buf, n, MPI_CHAR, probed->MPI_SOURCE, probed->MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  json_t *j = n > 0 ? json_loadb(buf, (size_t)n - 1, 0, NULL) : NULL;
  free(buf);
  return j;
}

/* ---- rank 0 ---- */

static void hand_out(sweep_ctx *c, int to, int *active) {
  size_t j;
  if (sweep_take_job(c, &j)) {
    send_json(json_pack("{s:s, s:I}", "type", "job", "job", (json_int_t)j), to, TAG_MSG);
  } else {
    send_json(json_pack("{s:s}", "type", "stop"), to, TAG_STOP);
    (*active)--;
  }
}

/* Serves the workers until every one has stopped or, with first_round,
** until every one has asked for its first job: rank 0's threads start only
** then, so that a slow-starting worker still gets a job while there are
** at least as many jobs as workers. */
static void serve(sweep_ctx *c, int ranks, int *active, bool first_round) {
  int readied = 0;
  while (first_round ? readied < ranks - 1 : *active > 0) {
    int ready = 0;
    MPI_Status probed;
    MPI_Iprobe(MPI_ANY_SOURCE, TAG_MSG, MPI_COMM_WORLD, &ready, &probed);
    if (!ready) {
      struct timespec ts = {0, 1000000}; /* 1 ms */
      nanosleep(&ts, NULL);
      continue;
    }
    int from = probed.MPI_SOURCE;
    json_t *m = recv_json(&probed);
    const char *type = json_string_value(json_object_get(m, "type"));
    size_t j = (size_t)json_integer_value(json_object_get(m, "job"));
    const char *key = json_string_value(json_object_get(m, "key"));
    infsim_error err = {0};
    if (type == NULL || (strcmp(type, "ready") != 0 && j >= c->total)) {
      pthread_mutex_lock(&c->lock);
      infsim_fail(&err, INFSIM_ERUN, "rank %d sent a malformed message", from);
      sweep_fail_locked(c, INFSIM_ERUN, &err);
      pthread_mutex_unlock(&c->lock);
      hand_out(c, from, active);
    } else if (strcmp(type, "ready") == 0) {
      readied++;
      hand_out(c, from, active);
    } else if (strcmp(type, "key") == 0) {
      json_t *summary = NULL;
      pthread_mutex_lock(&c->lock);
      bool found = key != NULL && sweep_lookup_locked(c, key, &summary);
      pthread_mutex_unlock(&c->lock);
      json_decref(summary);
      send_json(json_pack("{s:s, s:b}", "type", "decision", "run", !found), from, TAG_MSG);
    } else if (strcmp(type, "result") == 0) {
      pthread_mutex_lock(&c->lock);
      const char *msg = json_string_value(json_object_get(m, "error"));
      infsim_status st = INFSIM_OK;
      if (msg != NULL) {
        st = (infsim_status)json_integer_value(json_object_get(m, "status"));
        if (st == INFSIM_OK) st = INFSIM_ERUN;
        infsim_fail(&err, st, "%s", msg);
        sweep_job_context(c, j, &err);
      } else {
        bool ran = json_is_true(json_object_get(m, "ran"));
        json_t *summary = NULL;
        if (ran)
          summary = json_incref(json_object_get(m, "summary"));
        else
          sweep_lookup_locked(c, key, &summary);
        uint64_t seed = (uint64_t)json_integer_value(json_object_get(m, "seed"));
        double wall = json_number_value(json_object_get(m, "wall_s"));
        int64_t pid = (int64_t)json_integer_value(json_object_get(m, "pid"));
        st = sweep_record_locked(c, j, key != NULL ? key : "", seed, summary, wall, pid, ran, &err);
      }
      if (st != INFSIM_OK) sweep_fail_locked(c, st, &err);
      pthread_mutex_unlock(&c->lock);
      hand_out(c, from, active);
    }
    json_decref(m);
  }
}

/* ---- workers ---- */

static void work(sweep_ctx *c) {
  send_json(json_pack("{s:s}", "type", "ready"), 0, TAG_MSG);
  for (;;) {
    MPI_Status probed;
    MPI_Probe(0, MPI_ANY_TAG, MPI_COMM_WORLD, &probed);
    json_t *m = recv_json(&probed);
    bool stop = probed.MPI_TAG == TAG_STOP || m == NULL;
    size_t j = (size_t)json_integer_value(json_object_get(m, "job"));
    json_decref(m);
    if (stop) return;
    infsim_error err = {0};
    void *handle = NULL;
    char key[INFSIM_SHA256_HEX_BYTES] = "";
    uint64_t seed = 0;
    double t0 = sweep_now_s(), earlier_s;
    infsim_status st = sweep_prepare_job(c, j, &handle, key, &seed, &earlier_s, &err);
    json_t *summary = NULL;
    bool run = false;
    if (st == INFSIM_OK) {
      send_json(json_pack("{s:s, s:I, s:s}", "type", "key", "job", (json_int_t)j, "key", key), 0, TAG_MSG);
      MPI_Probe(0, TAG_MSG, MPI_COMM_WORLD, &probed);
      json_t *d = recv_json(&probed);
      run = json_is_true(json_object_get(d, "run"));
      json_decref(d);
      if (run) st = c->runner->execute(c->runner->self, handle, &summary, &err);
      c->runner->release(c->runner->self, handle);
    }
    json_t *r = json_pack("{s:s, s:I, s:s, s:I, s:f, s:b, s:I}", "type", "result", "job", (json_int_t)j, "key", key,
                          "seed", (json_int_t)seed, "wall_s", earlier_s + (sweep_now_s() - t0), "ran", run, "pid",
                          (json_int_t)getpid());
    if (st != INFSIM_OK) {
      json_object_set_new(r, "error", json_string(err.msg));
      json_object_set_new(r, "status", json_integer(st));
    } else if (summary != NULL) {
      json_object_set_new(r, "summary", summary);
      summary = NULL;
    }
    json_decref(summary);
    send_json(r, 0, TAG_MSG);
  }
}

/* ---- the end: every rank learns the outcome ---- */

static void broadcast_text(char **text, int rank) {
  long long n = rank == 0 && *text != NULL ? (long long)strlen(*text) + 1 : 0;
  MPI_Bcast(&n, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD);
  if (rank != 0) *text = n > 0 ? malloc((size_t)n) : NULL;
  if (n > 0) {
    if (*text == NULL) return; /* out of memory on a worker: it keeps no summaries */
    MPI_Bcast(*text, (int)n, MPI_CHAR, 0, MPI_COMM_WORLD);
  }
}

static void share_outcome(sweep_ctx *c, int rank) {
  char *text = NULL;
  if (rank == 0) {
    json_t *o = json_pack("{s:i, s:s, s:I, s:I}", "status", (int)c->status, "msg", c->err.msg, "ran",
                          (json_int_t)c->out->ran, "skipped", (json_int_t)c->out->skipped);
    if (c->o->keep_summaries && c->out->summaries != NULL) {
      json_t *a = json_array();
      for (size_t i = 0; i < c->total; i++)
        json_array_append(a, c->out->summaries[i] != NULL ? c->out->summaries[i] : json_null());
      json_object_set_new(o, "summaries", a);
    }
    text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(o);
  }
  broadcast_text(&text, rank);
  if (rank != 0 && text != NULL) {
    json_t *o = json_loads(text, 0, NULL);
    c->status = (infsim_status)json_integer_value(json_object_get(o, "status"));
    const char *msg = json_string_value(json_object_get(o, "msg"));
    snprintf(c->err.msg, sizeof c->err.msg, "%s", msg != NULL ? msg : "");
    c->err.status = c->status;
    c->out->ran = (size_t)json_integer_value(json_object_get(o, "ran"));
    c->out->skipped = (size_t)json_integer_value(json_object_get(o, "skipped"));
    json_t *a = json_object_get(o, "summaries");
    for (size_t i = 0; c->out->summaries != NULL && i < c->total && i < json_array_size(a); i++) {
      json_t *s = json_array_get(a, i);
      if (json_is_object(s)) c->out->summaries[i] = json_incref(s);
    }
    json_decref(o);
  }
  free(text);
}

infsim_status infsim_sweep_mpi(sweep_ctx *c, infsim_error *err) {
  infsim_status st = ensure_mpi(err);
  if (st != INFSIM_OK) return st;
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  bool own_db = false;
  if (rank == 0) {
    if (c->db == NULL && c->o->db_path != NULL) {
      st = infsim_sweep_db_open(c->o->db_path, &c->db, err);
      own_db = st == INFSIM_OK;
      if (st != INFSIM_OK) {
        pthread_mutex_lock(&c->lock);
        sweep_fail_locked(c, st, err);
        pthread_mutex_unlock(&c->lock);
      }
    }
    int active = ranks - 1;
    serve(c, ranks, &active, true);
    pthread_t *ids = calloc((size_t)c->o->jobs, sizeof *ids);
    int started = 0;
    while (ids != NULL && started < c->o->jobs && pthread_create(&ids[started], NULL, sweep_worker, c) == 0)
      started++;
    serve(c, ranks, &active, false);
    if (started == 0 && ranks == 1) sweep_worker(c);
    for (int i = 0; i < started; i++) pthread_join(ids[i], NULL);
    free(ids);
  } else {
    c->out->is_root = false;
    work(c);
  }
  share_outcome(c, rank);
  if (own_db) {
    infsim_sweep_db_close(c->db);
    c->db = NULL;
  }
  MPI_Barrier(MPI_COMM_WORLD);
  return INFSIM_OK; /* the sweep's status travels in c->status */
}
