/*
** report.c: writes summary.json, requests.csv, timeseries.csv, results.db.
**
** Times print in seconds with nine decimals (the ns clock, exactly); a time
** that did not happen (a rejected request's first token) is an empty CSV
** field and NULL in SQLite.
*/
#include "infsim/run.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "infsim/atomic_file.h"
#include "infsim/bigmem.h"
#include "infsim/numfmt.h"
#include "infsim/policy_infinite.h"
#include "infsim/sqlpages.h"
#include "run_internal.h"

enum { INFSIM_RESULTS_DB_VERSION = 1 };

static json_t *stat_json(const infsim_stat *st) {
  return json_pack("{s:I, s:f, s:f, s:f, s:f}", "count", (json_int_t)st->count, "mean", st->mean, "p50", st->p50,
                   "p90", st->p90, "p99", st->p99);
}

/* {"name": {"peak": P, "final": F, "capacity": C}, ...} (high_water.h). */
json_t *infsim_run_result_high_water_json(const infsim_run_result *res) {
  infsim_high_water_set set;
  infsim_run_result_high_water(res, &set);
  json_t *o = json_object();
  for (int i = 0; i < set.count; i++) {
    const infsim_high_water *m = &set.mark[i];
    json_object_set_new(o, m->name,
                        json_pack("{s:I, s:I, s:I}", "peak", (json_int_t)m->peak, "final", (json_int_t)m->final,
                                  "capacity", (json_int_t)m->capacity));
  }
  return o;
}

json_t *infsim_run_result_summary_json(const infsim_run_result *res) {
  const infsim_run_counters *c = infsim_run_result_counters(res);
  const infsim_summary *sum = &res->summary;
  json_t *o = json_object();
  json_object_set_new(o, "version", json_string(INFSIM_VERSION));
  json_object_set_new(o, "arrived", json_integer(sum->arrived));
  json_object_set_new(o, "completed", json_integer(sum->completed));
  json_object_set_new(o, "rejected", json_integer(sum->rejected));
  json_object_set_new(o, "throughput_tok_s", json_real(sum->throughput_tok_s));
  json_object_set_new(o, "requests_per_s", json_real(sum->requests_per_s));
  json_object_set_new(o, "ttft_s", stat_json(&sum->ttft_s));
  json_object_set_new(o, "tpot_s", stat_json(&sum->tpot_s));
  json_object_set_new(o, "e2e_s", stat_json(&sum->e2e_s));
  json_object_set_new(o, "slo_attainment", json_real(sum->slo_attainment));
  json_object_set_new(o, "goodput_req_s", json_real(sum->goodput_req_s));
  json_object_set_new(o, "preemptions", json_integer(c->preemptions));
  json_object_set_new(o, "events", json_integer(c->events));
  json_object_set_new(o, "iterations", json_integer(c->iterations));
  json_object_set_new(o, "sim_time_s", json_real((double)c->end_ns * 1e-9));
  json_object_set_new(o, "span_s", json_real(sum->span_s));
  json_object_set_new(o, "wall_s", json_real(res->wall_s));
  json_object_set_new(o, "max_context_tokens", json_integer(c->max_context_tokens));
  json_object_set_new(o, "kv_blocks_per_instance", json_integer(c->kv_blocks_per_instance));
  json_object_set_new(o, "borrowed_blocks_peak", json_integer(c->borrowed_blocks_peak));
  json_object_set_new(o, "network_bytes", json_integer(c->network_bytes));
  infsim_distkv_stats dk;
  if (res->sim != NULL && infsim_policy_infinite_stats(infsim_sim_sched(res->sim), &dk)) {
    json_t *d = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "borrows",
                                  (json_int_t)dk.borrows, "borrows_failed", (json_int_t)dk.borrows_failed, "kv_moves",
                                  (json_int_t)dk.kv_moves, "kv_moved_bytes", (json_int_t)dk.kv_moved_bytes, "recalls",
                                  (json_int_t)dk.recalls, "swaps", (json_int_t)dk.swaps, "consolidations",
                                  (json_int_t)dk.consolidations, "messages", (json_int_t)dk.messages,
                                  "messages_lost", (json_int_t)dk.messages_lost, "retries", (json_int_t)dk.retries,
                                  "blocks_recomputed", (json_int_t)dk.blocks_recomputed, "heartbeats",
                                  (json_int_t)dk.heartbeats);
    /* The CPU tier and the loss of an instance (docs/distkv.md). */
    /* KV payloads put on the wire (first sends and resends) and status
     * probes (docs/distkv.md, "Contract protocol"). */
    json_object_set_new(d, "kv_sends", json_integer((json_int_t)dk.kv_sends));
    json_object_set_new(d, "kv_resends", json_integer((json_int_t)dk.kv_resends));
    json_object_set_new(d, "kv_sent_bytes", json_integer((json_int_t)dk.kv_sent_bytes));
    json_object_set_new(d, "probes", json_integer((json_int_t)dk.probes));
    /* Moves cancelled as their request ended, the gManager's checks of
     * moves proposed and not confirmed (docs/distkv.md, "Contract protocol"). */
    json_object_set_new(d, "kv_moves_cancelled", json_integer((json_int_t)dk.kv_moves_cancelled));
    json_object_set_new(d, "ledger_probes", json_integer((json_int_t)dk.ledger_probes));
    json_object_set_new(d, "host_moves", json_integer((json_int_t)dk.host_moves));
    json_object_set_new(d, "host_moved_bytes", json_integer((json_int_t)dk.host_moved_bytes));
    json_object_set_new(d, "host_blocks", json_integer((json_int_t)dk.host_blocks));
    json_object_set_new(d, "instances_lost", json_integer((json_int_t)dk.instances_lost));
    json_object_set_new(d, "requests_requeued", json_integer((json_int_t)dk.requests_requeued));
    json_object_set_new(d, "gmanager_rebuilds", json_integer((json_int_t)dk.gmanager_rebuilds));
    json_object_set_new(o, "distkv", d);
  }
  if (res->sim != NULL) json_object_set_new(o, "high_water", infsim_run_result_high_water_json(res));
  json_object_set_new(o, "mean_waiting_requests", json_real(sum->mean_waiting_requests));
  json_object_set_new(o, "mean_running_requests", json_real(sum->mean_running_requests));
  json_object_set_new(o, "sample_interval_s_used", json_real((double)infsim_run_result_sample_interval_ns(res) * 1e-9));
  json_object_set_new(o, "cost_model", json_string(res->cost_model));
  json_object_set_new(o, "seed", json_integer((json_int_t)res->params.seed));
  json_object_set(o, "config", res->config);
  return o;
}

/* Rows are formatted into a buffered writer by numfmt.h: printf costs more
 * than the simulation for hundreds of thousands of rows. Each row reserves
 * its widest possible size first (ROW_MAX_BYTES), then is written with no
 * further checks. */
enum { ROW_MAX_BYTES = 16 * INFSIM_FMT_FIXED_MAX_BYTES + 2 * 64 }; /* 14 fields, 2 names, commas */

/* Seconds with nine decimals, exactly the ns clock; nothing for a time that did not happen. */
static char *put_time(char *p, int64_t ns) { return ns < 0 ? p : infsim_fmt_fixed(p, ns, 9); }

static char *put_duration(char *p, int64_t from_ns, int64_t to_ns) {
  return from_ns >= 0 && to_ns >= 0 ? put_time(p, to_ns - from_ns) : p;
}

static char *put_text(char *p, const char *text) {
  size_t n = strlen(text);
  assert(n < 64); /* status and reject reason names: inside ROW_MAX_BYTES */
  memcpy(p, text, n);
  return p + n;
}

static infsim_outbuf *outbuf_open(FILE *fp, const char *header) {
  infsim_outbuf *w = infsim_big_calloc(1, sizeof *w); /* bigmem.h: one page fault, not 64 */
  if (w == NULL) return NULL;
  infsim_outbuf_init(w, fp);
  infsim_outbuf_str(w, header, strlen(header));
  return w;
}

static infsim_status outbuf_close(infsim_outbuf *w, const char *path, infsim_error *err) {
  infsim_status st = infsim_outbuf_finish(w, path, err);
  infsim_big_free(w);
  return st;
}

/* TPOT to the nearest ns, or -1 where it is undefined. */
static int64_t tpot_ns(const infsim_request_record *r) {
  if (r->state != INFSIM_REQ_FINISHED || r->output_tokens < 2) return -1;
  int64_t span = r->finish_ns - r->first_token_ns, steps = r->output_tokens - 1;
  return (span + steps / 2) / steps;
}

static infsim_status write_requests_csv(FILE *f, const char *path, const infsim_run_result *res,
                                        infsim_error *err) {
  size_t n = 0;
  const infsim_request_record *rec = infsim_run_result_requests(res, &n);
  infsim_outbuf *w = outbuf_open(f, "id,arrival_s,prompt_tokens,output_tokens,status,reason,instance,first_token_s,"
                                    "finish_s,ttft_s,tpot_s,e2e_s,preemptions,instances_touched\n");
  if (w == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) {
    const infsim_request_record *r = &rec[i];
    char *p = infsim_outbuf_reserve(w, ROW_MAX_BYTES);
    p = infsim_fmt_u64(p, i);
    *p++ = ',';
    p = put_time(p, r->arrival_ns);
    *p++ = ',';
    p = infsim_fmt_i64(p, r->prompt_tokens);
    *p++ = ',';
    p = infsim_fmt_i64(p, r->output_tokens);
    p = put_text(p, r->state == INFSIM_REQ_FINISHED ? ",completed," : ",rejected,");
    p = put_text(p, infsim_reject_reason_name((infsim_reject_reason)r->reason));
    *p++ = ',';
    p = infsim_fmt_i64(p, r->instance);
    *p++ = ',';
    p = put_time(p, r->first_token_ns);
    *p++ = ',';
    p = put_time(p, r->finish_ns);
    *p++ = ',';
    p = put_duration(p, r->arrival_ns, r->first_token_ns);
    *p++ = ',';
    p = put_time(p, tpot_ns(r));
    *p++ = ',';
    p = put_duration(p, r->arrival_ns, r->finish_ns);
    *p++ = ',';
    p = infsim_fmt_i64(p, r->preemptions);
    *p++ = ',';
    p = infsim_fmt_i64(p, r->instances_touched);
    *p++ = '\n';
    infsim_outbuf_commit(w, p);
  }
  return outbuf_close(w, path, err);
}

/* ",v1,v2,...": n integer columns. */
static char *put_int_cols(char *p, const int64_t *cols, size_t n) {
  for (size_t c = 0; c < n; c++) {
    *p++ = ',';
    p = infsim_fmt_i64(p, cols[c]);
  }
  return p;
}

static infsim_status write_timeseries_csv(FILE *f, const char *path, const infsim_run_result *res,
                                          infsim_error *err) {
  size_t n = 0;
  const infsim_sample_row *rows = infsim_run_result_samples(res, &n);
  infsim_outbuf *w =
      outbuf_open(f, "time_s,instance,running,waiting,kv_used_blocks,kv_free_blocks,kv_lent_blocks,kv_borrowed_blocks\n");
  if (w == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) {
    const infsim_sample_row *r = &rows[i];
    char *p = infsim_outbuf_reserve(w, ROW_MAX_BYTES);
    p = put_time(p, r->time_ns);
    const int64_t cols[] = {r->instance,       r->running,        r->waiting,        r->kv_used_blocks,
                            r->kv_free_blocks, r->kv_lent_blocks, r->kv_borrowed_blocks};
    p = put_int_cols(p, cols, sizeof cols / sizeof cols[0]);
    *p++ = '\n';
    infsim_outbuf_commit(w, p);
  }
  return outbuf_close(w, path, err);
}

/* The tables' CREATE statements, as sqlite_schema keeps them. */
static const char k_requests_sql[] =
    "CREATE TABLE requests(id INTEGER PRIMARY KEY, arrival_s REAL NOT NULL, prompt_tokens INTEGER NOT NULL,"
    " output_tokens INTEGER NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL, instance INTEGER NOT NULL,"
    " first_token_s REAL, finish_s REAL, ttft_s REAL, tpot_s REAL, e2e_s REAL, preemptions INTEGER NOT NULL,"
    " instances_touched INTEGER NOT NULL) STRICT";
static const char k_timeseries_sql[] =
    "CREATE TABLE timeseries(time_s REAL NOT NULL, instance INTEGER NOT NULL, running INTEGER NOT NULL,"
    " waiting INTEGER NOT NULL, kv_used_blocks INTEGER NOT NULL, kv_free_blocks INTEGER NOT NULL,"
    " kv_lent_blocks INTEGER NOT NULL, kv_borrowed_blocks INTEGER NOT NULL) STRICT";
static const char k_summary_sql[] = "CREATE TABLE summary(key TEXT PRIMARY KEY, value ANY) STRICT";

enum { REQUEST_COLS = 14, SAMPLE_COLS = 8 };

/* A time in seconds, NULL where it did not happen (ns < 0). */
static void row_time(infsim_sqlrow *row, int64_t ns) {
  if (ns < 0) infsim_sqlrow_null(row);
  else infsim_sqlrow_real(row, (double)ns * 1e-9);
}

static void row_text(infsim_sqlrow *row, const char *text) { infsim_sqlrow_text(row, text, (int32_t)strlen(text)); }

/* requests and timeseries, rows in rowid order: written page by page
 * (sqlpages.h), about an eighth of SQLite's work per row. */
static infsim_status write_db_tables(const char *path, const infsim_run_result *res, infsim_error *err) {
  infsim_sqlpages *w = NULL;
  infsim_status st = infsim_sqlpages_open(path, &w, err);
  if (st != INFSIM_OK) return st;
  infsim_sqlrow *row = malloc(sizeof *row);
  if (row == NULL) st = infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  size_t n = 0;
  const infsim_request_record *rec = infsim_run_result_requests(res, &n);
  if (st == INFSIM_OK) st = infsim_sqlpages_table(w, "requests", k_requests_sql, REQUEST_COLS, err);
  for (size_t i = 0; st == INFSIM_OK && i < n; i++) {
    const infsim_request_record *r = &rec[i];
    infsim_sqlrow_begin(row);
    infsim_sqlrow_null(row); /* id: the rowid, 0, 1, 2, ... */
    row_time(row, r->arrival_ns);
    infsim_sqlrow_int(row, r->prompt_tokens);
    infsim_sqlrow_int(row, r->output_tokens);
    row_text(row, r->state == INFSIM_REQ_FINISHED ? "completed" : "rejected");
    row_text(row, infsim_reject_reason_name((infsim_reject_reason)r->reason));
    infsim_sqlrow_int(row, r->instance);
    row_time(row, r->first_token_ns);
    row_time(row, r->finish_ns);
    row_time(row, r->first_token_ns < 0 ? -1 : r->first_token_ns - r->arrival_ns);
    row_time(row, tpot_ns(r));
    row_time(row, r->finish_ns < 0 ? -1 : r->finish_ns - r->arrival_ns);
    infsim_sqlrow_int(row, r->preemptions);
    infsim_sqlrow_int(row, r->instances_touched);
    st = infsim_sqlpages_append(w, (int64_t)i, row, err);
  }
  const infsim_sample_row *samples = infsim_run_result_samples(res, &n);
  if (st == INFSIM_OK) st = infsim_sqlpages_table(w, "timeseries", k_timeseries_sql, SAMPLE_COLS, err);
  for (size_t i = 0; st == INFSIM_OK && i < n; i++) {
    const infsim_sample_row *r = &samples[i];
    infsim_sqlrow_begin(row);
    row_time(row, r->time_ns);
    infsim_sqlrow_int(row, r->instance);
    infsim_sqlrow_int(row, r->running);
    infsim_sqlrow_int(row, r->waiting);
    infsim_sqlrow_int(row, r->kv_used_blocks);
    infsim_sqlrow_int(row, r->kv_free_blocks);
    infsim_sqlrow_int(row, r->kv_lent_blocks);
    infsim_sqlrow_int(row, r->kv_borrowed_blocks);
    st = infsim_sqlpages_append(w, (int64_t)i + 1, row, err); /* SQLite's own rowids: 1, 2, ... */
  }
  free(row);
  infsim_status closed = infsim_sqlpages_close(w, INFSIM_RESULTS_DB_VERSION, err);
  return st != INFSIM_OK ? st : closed;
}

static infsim_status sql_exec(sqlite3 *db, const char *sql, const char *path, infsim_error *err) {
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK) return INFSIM_OK;
  infsim_status st = infsim_fail(err, INFSIM_EIO, "%s: %s", path, msg ? msg : "sqlite error");
  sqlite3_free(msg);
  return st;
}

/* The big tables page by page, then the summary (a few dozen rows and an
 * index) through SQLite, which opens the file as any other database. */
static infsim_status write_db(const char *path, const infsim_run_result *res, json_t *summary, infsim_error *err) {
  infsim_status st = write_db_tables(path, res, err);
  if (st != INFSIM_OK) return st;
  sqlite3 *db = NULL;
  /* One thread uses this connection: no mutex around every call (NOMUTEX). */
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
    sqlite3_close(db);
    return infsim_fail(err, INFSIM_EIO, "%s: cannot open database", path);
  }
  st = sql_exec(db, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA locking_mode=EXCLUSIVE; BEGIN;", path,
                err);
  if (st == INFSIM_OK) st = sql_exec(db, k_summary_sql, path, err);
  sqlite3_stmt *ins = NULL;
  /* summary: scalar fields as typed values, objects as JSON text */
  if (st == INFSIM_OK && sqlite3_prepare_v2(db, "INSERT INTO summary VALUES(?,?)", -1, &ins, NULL) != SQLITE_OK)
    st = infsim_fail(err, INFSIM_EIO, "%s: %s", path, sqlite3_errmsg(db));
  const char *key;
  json_t *value;
  json_object_foreach(summary, key, value) {
    if (st != INFSIM_OK) break;
    sqlite3_bind_text(ins, 1, key, -1, SQLITE_TRANSIENT);
    if (json_is_integer(value)) sqlite3_bind_int64(ins, 2, json_integer_value(value));
    else if (json_is_real(value)) sqlite3_bind_double(ins, 2, json_real_value(value));
    else if (json_is_string(value)) sqlite3_bind_text(ins, 2, json_string_value(value), -1, SQLITE_TRANSIENT);
    else {
      char *text = json_dumps(value, JSON_COMPACT | JSON_SORT_KEYS);
      sqlite3_bind_text(ins, 2, text ? text : "", -1, SQLITE_TRANSIENT);
      free(text);
    }
    if (sqlite3_step(ins) != SQLITE_DONE) st = infsim_fail(err, INFSIM_EIO, "%s: %s", path, sqlite3_errmsg(db));
    sqlite3_reset(ins);
  }
  sqlite3_finalize(ins);
  if (st == INFSIM_OK) st = sql_exec(db, "COMMIT;", path, err);
  if (sqlite3_close(db) != SQLITE_OK && st == INFSIM_OK) st = infsim_fail(err, INFSIM_EIO, "%s: close failed", path);
  return st;
}

typedef struct {
  const char *path;
  const infsim_run_result *res;
  json_t *summary;
  infsim_error err;
  infsim_status status;
} db_job;

static void *db_job_run(void *arg) {
  db_job *job = arg;
  job->status = write_db(job->path, job->res, job->summary, &job->err);
  return NULL;
}

static infsim_status write_iterations_csv(FILE *f, const char *path, const infsim_run_result *res,
                                          infsim_error *err) {
  size_t n = 0;
  const infsim_iteration_row *rows = infsim_run_result_iterations(res, &n);
  infsim_outbuf *w = outbuf_open(f, "instance,start_s,end_s,steps,prefill_tokens,prefill_attention_pairs,"
                                    "decode_requests,decode_context_tokens,remote_holders,remote_context_tokens,"
                                    "decode_max_context_tokens\n");
  if (w == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) {
    const infsim_iteration_row *r = &rows[i];
    char *p = infsim_outbuf_reserve(w, ROW_MAX_BYTES);
    p = infsim_fmt_i64(p, r->instance);
    *p++ = ',';
    p = put_time(p, r->start_ns);
    *p++ = ',';
    p = put_time(p, r->end_ns);
    const int64_t cols[] = {r->steps,
                            r->agg.prefill_tokens,
                            r->agg.prefill_attn_pairs,
                            r->agg.decode_requests,
                            r->agg.decode_context_tokens,
                            r->agg.remote_partials,
                            r->agg.remote_context_tokens,
                            r->agg.decode_max_context_tokens};
    p = put_int_cols(p, cols, sizeof cols / sizeof cols[0]);
    *p++ = '\n';
    infsim_outbuf_commit(w, p);
  }
  return outbuf_close(w, path, err);
}

/* links.csv: every link of the simulated network, what it carried. */
static infsim_status write_links_csv(FILE *f, const char *path, const infsim_run_result *res, infsim_error *err) {
  const infsim_network *net = infsim_sim_network(res->sim);
  infsim_outbuf *w = outbuf_open(f, "link,kind,src,dst,bytes,busy_s\n");
  if (w == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  size_t n = infsim_network_link_count(net);
  for (size_t i = 0; i < n; i++) {
    infsim_link_info l = infsim_network_link(net, (int32_t)i);
    char *p = infsim_outbuf_reserve(w, ROW_MAX_BYTES);
    p = infsim_fmt_i64(p, (int64_t)i);
    p += sprintf(p, ",%s,%s,%s,", infsim_link_kind_name(l.kind), l.src, l.dst);
    p = infsim_fmt_i64(p, (int64_t)llround(l.bytes));
    *p++ = ',';
    p = put_time(p, l.busy_ns);
    *p++ = '\n';
    infsim_outbuf_commit(w, p);
  }
  return outbuf_close(w, path, err);
}

enum { SUMMARY, REQUESTS, TIMESERIES, DB, ITERATIONS, LINKS, N_FILES };
static const char *const k_names[N_FILES] = {"summary.json", "requests.csv", "timeseries.csv", "results.db",
                                             "iterations.csv", "links.csv"};

bool infsim_run_output_name(const char *name) {
  for (int i = 0; i < N_FILES; i++)
    if (strcmp(name, k_names[i]) == 0) return true;
  return false;
}

infsim_status infsim_run_write(const infsim_run_result *res, const char *dir, infsim_output_set which,
                               infsim_error *err) {
  bool wanted[N_FILES] = {true, which == INFSIM_OUTPUT_ALL, which == INFSIM_OUTPUT_ALL, which == INFSIM_OUTPUT_ALL,
                          which == INFSIM_OUTPUT_ALL && res->params.record_iterations,
                          which == INFSIM_OUTPUT_ALL && res->sim != NULL};
  /* All or nothing (atomic_file.h's sets): an old set of outputs stays
   * whole, or the new set is whole. The timeline, streamed during the
   * run, is a member of the same set; so are the removals of an older
   * run's files that this run does not write, which would otherwise be
   * read as this run's (a reused --out directory). */
  FILE *fp[N_FILES] = {0};
  char paths[N_FILES][INFSIM_PATH_BYTES];
  const char *db_temp = NULL;
  json_t *summary_json = infsim_run_result_summary_json(res);
  infsim_atomic_set *set = NULL;
  if (res->timeline != NULL) {
    infsim_run_result *mut = (infsim_run_result *)res; /* the timeline is handed over once */
    set = infsim_timeline_finish(mut->timeline);
    mut->timeline = NULL;
  } else {
    set = infsim_atomic_set_new();
  }
  if (summary_json == NULL || set == NULL) {
    json_decref(summary_json);
    infsim_atomic_set_free(set);
    return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  }
  infsim_status st = infsim_atomic_set_make_dirs(set, dir, err);
  for (int i = 0; st == INFSIM_OK && i < N_FILES; i++) {
    if ((size_t)snprintf(paths[i], sizeof paths[i], "%s/%s", dir, k_names[i]) >= sizeof paths[i]) {
      st = infsim_fail(err, INFSIM_EINPUT, "%s: output directory path too long", dir);
      break;
    }
    if (!wanted[i]) st = infsim_atomic_set_remove(set, paths[i], err);
    else if (i == DB) st = infsim_atomic_set_add_path(set, paths[i], &db_temp, err);
    else st = infsim_atomic_set_add(set, paths[i], &fp[i], err);
  }
  if (st == INFSIM_OK) {
    /* SQLite writes the database itself, on a second thread while this one
     * writes the CSV files: the two take about the same time. */
    db_job job = {db_temp, res, summary_json, {0}, INFSIM_OK};
    pthread_t worker;
    bool threaded = false;
    if (wanted[DB]) {
      threaded = pthread_create(&worker, NULL, db_job_run, &job) == 0;
      if (!threaded) db_job_run(&job);
    }
    if (json_dumpf(summary_json, fp[SUMMARY], JSON_INDENT(2) | JSON_REAL_PRECISION(12)) != 0)
      st = infsim_fail(err, INFSIM_EIO, "%s: cannot write", paths[SUMMARY]);
    fputc('\n', fp[SUMMARY]);
    if (st == INFSIM_OK && wanted[REQUESTS]) st = write_requests_csv(fp[REQUESTS], paths[REQUESTS], res, err);
    if (st == INFSIM_OK && wanted[TIMESERIES]) st = write_timeseries_csv(fp[TIMESERIES], paths[TIMESERIES], res, err);
    if (st == INFSIM_OK && wanted[ITERATIONS]) st = write_iterations_csv(fp[ITERATIONS], paths[ITERATIONS], res, err);
    if (st == INFSIM_OK && wanted[LINKS]) st = write_links_csv(fp[LINKS], paths[LINKS], res, err);
    if (threaded) pthread_join(worker, NULL);
    if (st == INFSIM_OK && job.status != INFSIM_OK) {
      *err = job.err;
      st = job.status;
    }
  }
  if (st == INFSIM_OK) st = infsim_atomic_set_commit(set, err);
  infsim_atomic_set_free(set); /* after a failure: every temporary file and new directory goes */
  json_decref(summary_json);
  return st;
}
