/*
** timeline.c: Chrome/Perfetto trace events of a run (timeline.h).
**
** Times are microseconds with three decimals (the ns clock, exactly).
** Tracks: pid 1 holds one thread per instance (batches, preemptions);
** pid 2 holds one thread per sending endpoint (messages). Thread names are
** written the first time a track is used.
*/
#include "infsim/timeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infsim/atomic_file.h"

struct infsim_timeline {
  /* The run's outputs join this set (infsim_timeline_finish), so that the
   * trace and the run's files appear together or not at all. */
  infsim_atomic_set *set;
  FILE *fp;
  int64_t from_ns;
  int64_t to_ns;
  int64_t events;
  bool io_error;
  /* tracks already named: instances (pid 1) and endpoints (pid 2, index + 2 for the gManager's -2) */
  unsigned char *named;
  int64_t named_bytes;
};

infsim_status infsim_timeline_open(const char *path, int64_t from_ns, int64_t to_ns, infsim_timeline **out,
                                   infsim_error *err) {
  *out = NULL;
  infsim_timeline *tl = calloc(1, sizeof *tl);
  if (tl != NULL) tl->set = infsim_atomic_set_new();
  if (tl == NULL || tl->set == NULL) {
    free(tl);
    return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  }
  /* Its directory may be the run's output directory, not made yet; the
   * set removes it again if the run fails. */
  char dir[INFSIM_PATH_BYTES];
  if ((size_t)snprintf(dir, sizeof dir, "%s", path) >= sizeof dir) {
    infsim_timeline_abort(tl);
    return infsim_fail(err, INFSIM_EINPUT, "%s: path too long", path);
  }
  char *slash = strrchr(dir, '/');
  infsim_status st = INFSIM_OK;
  if (slash != NULL && slash != dir) {
    *slash = '\0';
    st = infsim_atomic_set_make_dirs(tl->set, dir, err);
  }
  if (st == INFSIM_OK) st = infsim_atomic_set_add(tl->set, path, &tl->fp, err);
  if (st != INFSIM_OK) {
    infsim_timeline_abort(tl);
    return st;
  }
  tl->from_ns = from_ns;
  tl->to_ns = to_ns;
  fputs("{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n"
        "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"args\":{\"name\":\"instances\"}},\n"
        "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":2,\"args\":{\"name\":\"network\"}}",
        tl->fp);
  *out = tl;
  return INFSIM_OK;
}

static bool in_window(const infsim_timeline *tl, int64_t start_ns, int64_t end_ns) {
  return end_ns >= tl->from_ns && (tl->to_ns < 0 || start_ns <= tl->to_ns);
}

static void put_us(FILE *fp, int64_t ns) {
  if (ns < 0) {
    fputc('-', fp);
    ns = -ns;
  }
  fprintf(fp, "%lld.%03lld", (long long)(ns / 1000), (long long)(ns % 1000));
}

/* Names track (pid, tid) once. */
static void name_track(infsim_timeline *tl, int pid, int64_t tid, const char *what) {
  int64_t key = 2 * (tid + 2) + (pid - 1);
  if (key < 0) return;
  if (key >= tl->named_bytes) {
    int64_t n = tl->named_bytes ? tl->named_bytes : 64;
    while (n <= key) n *= 2;
    unsigned char *p = realloc(tl->named, (size_t)n);
    if (p == NULL) return; /* names are cosmetic */
    memset(p + tl->named_bytes, 0, (size_t)(n - tl->named_bytes));
    tl->named = p;
    tl->named_bytes = n;
  }
  if (tl->named[key]) return;
  tl->named[key] = 1;
  if (tid == INFSIM_ENDPOINT_GMANAGER)
    fprintf(tl->fp, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%lld,\"args\":{\"name\":\"gManager\"}}",
            pid, (long long)tid);
  else
    fprintf(tl->fp, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%lld,\"args\":{\"name\":\"%s %lld\"}}",
            pid, (long long)tid, what, (long long)tid);
}

void infsim_timeline_batch(infsim_timeline *tl, int32_t instance, int64_t start_ns, int64_t end_ns, int64_t steps,
                           const infsim_batch_agg *agg) {
  if (tl == NULL || !in_window(tl, start_ns, end_ns)) return;
  name_track(tl, 1, instance, "instance");
  FILE *fp = tl->fp;
  const char *kind = agg->prefill_tokens > 0 ? (agg->decode_requests > 0 ? "mixed" : "prefill") : "decode";
  fprintf(fp, ",\n{\"name\":\"%s\",\"cat\":\"batch\",\"ph\":\"X\",\"pid\":1,\"tid\":%d,\"ts\":", kind, (int)instance);
  put_us(fp, start_ns);
  fputs(",\"dur\":", fp);
  put_us(fp, end_ns - start_ns);
  fprintf(fp,
          ",\"args\":{\"steps\":%lld,\"prefill_tokens\":%lld,\"prefill_attention_pairs\":%lld,"
          "\"decode_requests\":%lld,\"decode_context_tokens\":%lld,\"remote_holders\":%lld,"
          "\"remote_context_tokens\":%lld}}",
          (long long)steps, (long long)agg->prefill_tokens, (long long)agg->prefill_attn_pairs,
          (long long)agg->decode_requests, (long long)agg->decode_context_tokens, (long long)agg->remote_partials,
          (long long)agg->remote_context_tokens);
  tl->events++;
}

void infsim_timeline_preemption(infsim_timeline *tl, int32_t instance, int64_t req, int64_t t_ns, bool swapped) {
  if (tl == NULL || !in_window(tl, t_ns, t_ns)) return;
  name_track(tl, 1, instance, "instance");
  fprintf(tl->fp, ",\n{\"name\":\"preempt %s\",\"cat\":\"preemption\",\"ph\":\"i\",\"s\":\"t\",\"pid\":1,\"tid\":%d,\"ts\":",
          swapped ? "(swap)" : "(recompute)", (int)instance);
  put_us(tl->fp, t_ns);
  fprintf(tl->fp, ",\"args\":{\"request\":%lld}}", (long long)req);
  tl->events++;
}

void infsim_timeline_message(infsim_timeline *tl, const infsim_msg *msg, int64_t sent_ns, int64_t delivered_ns) {
  if (tl == NULL || !in_window(tl, sent_ns, delivered_ns)) return;
  name_track(tl, 2, msg->src, "endpoint");
  fprintf(tl->fp, ",\n{\"name\":\"%s\",\"cat\":\"message\",\"ph\":\"X\",\"pid\":2,\"tid\":%d,\"ts\":",
          infsim_msg_kind_name((infsim_msg_kind)msg->kind), (int)msg->src);
  put_us(tl->fp, sent_ns);
  fputs(",\"dur\":", tl->fp);
  put_us(tl->fp, delivered_ns - sent_ns);
  fprintf(tl->fp, ",\"args\":{\"dst\":%d,\"request\":%lld,\"blocks\":%lld,\"bytes\":%lld}}", (int)msg->dst,
          (long long)msg->req, (long long)msg->blocks, (long long)msg->bytes);
  tl->events++;
}

int64_t infsim_timeline_events(const infsim_timeline *tl) { return tl->events; }

infsim_atomic_set *infsim_timeline_finish(infsim_timeline *tl) {
  fputs("\n]}\n", tl->fp);
  infsim_atomic_set *set = tl->set;
  free(tl->named);
  free(tl);
  return set;
}

void infsim_timeline_abort(infsim_timeline *tl) {
  if (tl == NULL) return;
  infsim_atomic_set_free(tl->set);
  free(tl->named);
  free(tl);
}
