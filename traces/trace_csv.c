/*
** trace_csv.c: the in-memory trace and the trace CSV (see trace.h).
**
** The reader is strict because every later number depends on it: the three
** contract columns must be in the header (found by name, so extra columns
** may sit anywhere), each row must have them, arrivals must not go back in
** time, and token counts are integers >= 1. Each failure names
** FILE:LINE: FIELD, the line being the file's physical line (header = 1).
*/
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "infsim/atomic_file.h"
#include "infsim/bigmem.h"
#include "infsim/trace.h"
#include "infsim/text.h"

void infsim_trace_free(infsim_trace *trace) {
  if (trace->big)
    infsim_big_free(trace->requests);
  else
    free(trace->requests);
  memset(trace, 0, sizeof *trace);
}

infsim_status infsim_trace_append(infsim_trace *trace, infsim_trace_request req, infsim_error *err) {
  if (trace->count == trace->capacity) {
    size_t cap = trace->capacity == 0 ? 1024 : 2 * trace->capacity;
    infsim_trace_request *p;
    if (trace->big) {
      p = infsim_big_calloc(cap, sizeof *p);
      if (p != NULL) {
        if (trace->count > 0) memcpy(p, trace->requests, trace->count * sizeof *p);
        infsim_big_free(trace->requests);
      }
    } else {
      p = realloc(trace->requests, cap * sizeof *p);
    }
    if (p == NULL) return infsim_fail(err, INFSIM_ENOMEM, "trace: out of memory at %zu requests", trace->count);
    trace->requests = p;
    trace->capacity = cap;
  }
  trace->requests[trace->count++] = req;
  return INFSIM_OK;
}

static const char *const k_columns[3] = {"arrival_time_s", "prompt_tokens", "output_tokens"};

static infsim_status parse_row(const infsim_line_reader *lr, const infsim_fields *f, const int col[3],
                               int64_t prev_ns, int64_t prev_line, infsim_trace_request *req, infsim_error *err) {
  char ex[64];
  for (int c = 0; c < 3; c++) {
    if ((size_t)col[c] >= f->count)
      return infsim_fail(err, INFSIM_EINPUT, "%s:%lld: %s: missing (the row has %zu fields)", lr->path,
                         (long long)lr->line_no, k_columns[c], f->count);
  }
  const infsim_field *a = &f->fields[col[0]];
  const char *why = NULL;
  if (!infsim_parse_seconds_ns(a->text, a->len, &req->arrival_ns, &why))
    return infsim_fail(err, INFSIM_EINPUT, "%s:%lld: arrival_time_s: %s: '%s'", lr->path, (long long)lr->line_no,
                       why, infsim_quote_excerpt(a->text, a->len, ex));
  if (req->arrival_ns < prev_ns) {
    char t0[32], t1[32];
    return infsim_fail(err, INFSIM_EINPUT, "%s:%lld: arrival_time_s: goes back in time (%s s after %s s on line %lld)",
                       lr->path, (long long)lr->line_no, infsim_format_seconds(req->arrival_ns, t1),
                       infsim_format_seconds(prev_ns, t0), (long long)prev_line);
  }
  int64_t *dst[2] = {&req->prompt_tokens, &req->output_tokens};
  for (int c = 1; c < 3; c++) {
    const infsim_field *t = &f->fields[col[c]];
    if (!infsim_parse_count(t->text, t->len, INFSIM_TRACE_MAX_TOKENS, dst[c - 1], &why))
      return infsim_fail(err, INFSIM_EINPUT, "%s:%lld: %s: %s: '%s'", lr->path, (long long)lr->line_no, k_columns[c],
                         why, infsim_quote_excerpt(t->text, t->len, ex));
    if (*dst[c - 1] < 1)
      return infsim_fail(err, INFSIM_EINPUT, "%s:%lld: %s: must be >= 1, got '%s'", lr->path, (long long)lr->line_no,
                         k_columns[c], infsim_quote_excerpt(t->text, t->len, ex));
  }
  return INFSIM_OK;
}

/* Up to n digits at *p (before end) into *v; how many there were. */
static int take_digits(const char **p, const char *end, int n, int64_t *v) {
  const char *q = *p, *stop = end - *p > n ? *p + n : end;
  int64_t x = 0;
  while (q < stop && (unsigned)(*q - '0') <= 9) x = 10 * x + (*q++ - '0');
  int got = (int)(q - *p);
  *p = q;
  *v = x;
  return got;
}

/* A row of the usual shape, "seconds,count,count" with the columns in
 * that order and nothing else on the line, parsed in one pass where it
 * lies. It takes what the general parsers' own fast forms take, to the
 * same values: seconds of 1-10 integer digits below
 * INFSIM_TRACE_MAX_ARRIVAL_S, optionally '.' and 1-9 decimals (as
 * infsim_parse_seconds_ns's plain form); counts of 1-18 digits up to
 * INFSIM_TRACE_MAX_TOKENS (as infsim_parse_count's). False for anything
 * else (blanks, quotes, signs, more fields, a bad value): the general
 * path then decides, with its messages. */
static bool parse_plain_row(const char *line, size_t len, int64_t prev_ns, infsim_trace_request *req) {
  static const int64_t k_scale[10] = {1000000000, 100000000, 10000000, 1000000, 100000,
                                      10000,      1000,      100,      10,      1};
  const char *p = line, *end = line + len;
  int64_t whole = 0, frac = 0;
  if (take_digits(&p, end, 10, &whole) == 0 || whole >= INFSIM_TRACE_MAX_ARRIVAL_S) return false;
  if (p < end && *p == '.') {
    p++;
    int decimals = take_digits(&p, end, 9, &frac);
    if (decimals == 0) return false;
    frac *= k_scale[decimals];
  }
  if (p == end || *p++ != ',') return false;
  req->arrival_ns = whole * INT64_C(1000000000) + frac;
  if (req->arrival_ns < prev_ns) return false;
  if (take_digits(&p, end, 18, &req->prompt_tokens) == 0 || p == end || *p++ != ',' ||
      req->prompt_tokens > INFSIM_TRACE_MAX_TOKENS || req->prompt_tokens < 1)
    return false;
  return take_digits(&p, end, 18, &req->output_tokens) > 0 && p == end &&
         req->output_tokens <= INFSIM_TRACE_MAX_TOKENS && req->output_tokens >= 1;
}

/* parse_plain_row on the line at p where it lies in the reader's buffer
 * (which ends at end): the bytes it takes with its '\n', or 0 when they
 * are not such a row followed by '\n' (a "\r\n" ending, a line that
 * runs past end), and the caller reads the line the general way. The
 * same rows to the same values: a line holds no '\n', so each field
 * stops where the line's would. */
static size_t parse_plain_line(const char *p0, const char *end, int64_t prev_ns, infsim_trace_request *req) {
  static const int64_t k_scale[10] = {1000000000, 100000000, 10000000, 1000000, 100000,
                                      10000,      1000,      100,      10,      1};
  const char *p = p0;
  int64_t whole = 0, frac = 0;
  if (take_digits(&p, end, 10, &whole) == 0 || whole >= INFSIM_TRACE_MAX_ARRIVAL_S) return 0;
  if (p < end && *p == '.') {
    p++;
    int decimals = take_digits(&p, end, 9, &frac);
    if (decimals == 0) return 0;
    frac *= k_scale[decimals];
  }
  if (p == end || *p++ != ',') return 0;
  req->arrival_ns = whole * INT64_C(1000000000) + frac;
  if (req->arrival_ns < prev_ns) return 0;
  if (take_digits(&p, end, 18, &req->prompt_tokens) == 0 || p == end || *p++ != ',' ||
      req->prompt_tokens > INFSIM_TRACE_MAX_TOKENS || req->prompt_tokens < 1)
    return 0;
  if (take_digits(&p, end, 18, &req->output_tokens) == 0 || p == end || *p != '\n' ||
      req->output_tokens > INFSIM_TRACE_MAX_TOKENS || req->output_tokens < 1)
    return 0;
  return (size_t)(p + 1 - p0);
}

infsim_status infsim_trace_read_csv(const char *path, infsim_trace *trace, infsim_error *err) {
  memset(trace, 0, sizeof *trace);
  infsim_line_reader lr;
  infsim_status st = infsim_lines_open(&lr, path, err);
  if (st != INFSIM_OK) return st;
  /* A row takes at least 6 bytes ("0,1,1\n"): room for every row of the
   * file at once, on huge pages (bigmem.h), so that the array is neither
   * copied as it grows nor faulted in 4 KiB at a time. Only the part
   * written is touched; without the room, append grows it. */
  struct stat sb;
  if (fstat(fileno(lr.fp), &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0) {
    size_t rows = (size_t)sb.st_size / 6 + 1;
    trace->requests = infsim_big_calloc(rows, sizeof *trace->requests);
    if (trace->requests != NULL) {
      trace->capacity = rows;
      trace->big = true;
    }
  }
  infsim_fields f = {0};
  const char *why = NULL;
  int col[3] = {-1, -1, -1};
  bool have_header = false;
  int64_t prev_ns = 0, prev_line = 0;
  int rc = 0;
  for (;;) {
    infsim_trace_request req;
    /* Rows of the usual shape straight from the read-ahead buffer. */
    if (have_header && col[0] == 0 && col[1] == 1 && col[2] == 2) {
      size_t avail, took;
      const char *at = infsim_lines_unread(&lr, &avail);
      while ((took = parse_plain_line(at, at + avail, prev_ns, &req)) > 0) {
        if ((st = infsim_trace_append(trace, req, err)) != INFSIM_OK) break;
        infsim_lines_consume(&lr, took);
        at += took;
        avail -= took;
        prev_ns = req.arrival_ns;
        prev_line = lr.line_no;
      }
      if (st != INFSIM_OK) break;
    }
    if ((rc = infsim_lines_next(&lr)) != 1) break;
    if (infsim_line_blank(&lr)) continue;
    if (have_header && col[0] == 0 && col[1] == 1 && col[2] == 2 && parse_plain_row(lr.buf, lr.len, prev_ns, &req)) {
      if ((st = infsim_trace_append(trace, req, err)) != INFSIM_OK) break;
      prev_ns = req.arrival_ns;
      prev_line = lr.line_no;
      continue;
    }
    if (!infsim_csv_split(lr.buf, lr.len, &f, &why)) {
      st = infsim_fail(err, INFSIM_EINPUT, "%s:%lld: %s", path, (long long)lr.line_no, why);
      break;
    }
    if (!have_header) {
      have_header = true;
      for (int c = 0; c < 3; c++) {
        int again = -1;
        if (!infsim_fields_find_unique(&f, k_columns[c], &col[c], &again)) {
          st = infsim_fail(err, INFSIM_EINPUT, "%s:%lld: header: column '%s' appears twice (columns %d and %d)", path,
                           (long long)lr.line_no, k_columns[c], col[c] + 1, again + 1);
          break;
        }
        if (col[c] < 0) {
          st = infsim_fail(err, INFSIM_EINPUT,
                           "%s:%lld: header: missing column '%s' (want arrival_time_s,prompt_tokens,output_tokens)",
                           path, (long long)lr.line_no, k_columns[c]);
          break;
        }
      }
      if (st != INFSIM_OK) break;
      continue;
    }
    st = parse_row(&lr, &f, col, prev_ns, prev_line, &req, err);
    if (st != INFSIM_OK) break;
    st = infsim_trace_append(trace, req, err);
    if (st != INFSIM_OK) break;
    prev_ns = req.arrival_ns;
    prev_line = lr.line_no;
  }
  if (st == INFSIM_OK && rc < 0) st = infsim_lines_fail(&lr, err);
  if (st == INFSIM_OK && !have_header) st = infsim_fail(err, INFSIM_EINPUT, "%s:1: header: the file is empty", path);
  if (st == INFSIM_OK && trace->count == 0)
    st = infsim_fail(err, INFSIM_EINPUT, "%s:%lld: no requests after the header", path, (long long)lr.line_no);
  infsim_fields_free(&f);
  infsim_lines_close(&lr);
  if (st != INFSIM_OK) infsim_trace_free(trace);
  return st;
}

infsim_status infsim_trace_write_csv(const char *path, const infsim_trace *trace, infsim_error *err) {
  infsim_atomic_file af;
  infsim_status st = infsim_atomic_open(&af, path, err);
  if (st != INFSIM_OK) return st;
  fputs("arrival_time_s,prompt_tokens,output_tokens\n", af.fp);
  char line[96];
  for (size_t i = 0; i < trace->count; i++) {
    const infsim_trace_request *r = &trace->requests[i];
    char *p = line + strlen(infsim_format_seconds(r->arrival_ns, line));
    *p++ = ',';
    p = infsim_put_count(p, r->prompt_tokens);
    *p++ = ',';
    p = infsim_put_count(p, r->output_tokens);
    *p++ = '\n';
    fwrite(line, 1, (size_t)(p - line), af.fp);
  }
  return infsim_atomic_commit(&af, err);
}

/* ---- statistics ---- */

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* Nearest rank: the smallest value with at least q of the sample at or below it. */
static int64_t nearest_rank(const int64_t *sorted, size_t n, int percent) {
  size_t rank = ((size_t)percent * n + 99) / 100; /* ceil(p/100 * n) */
  if (rank < 1) rank = 1;
  return sorted[rank - 1];
}

static void length_stats(int64_t *v, size_t n, infsim_length_stats *out) {
  qsort(v, n, sizeof *v, cmp_i64);
  int64_t sum = 0;
  for (size_t i = 0; i < n; i++) sum += v[i];
  out->min = v[0];
  out->max = v[n - 1];
  out->p50 = nearest_rank(v, n, 50);
  out->p90 = nearest_rank(v, n, 90);
  out->p99 = nearest_rank(v, n, 99);
  out->sum = sum;
  out->mean = (double)sum / (double)n;
}

/* Most arrivals in one bin [first + k*bin, first + (k+1)*bin): arrivals are sorted. */
static int64_t peak_in_bins(const infsim_trace *t, int64_t bin_ns) {
  int64_t first = t->requests[0].arrival_ns, cur_bin = 0, cur = 0, peak = 0;
  for (size_t i = 0; i < t->count; i++) {
    int64_t b = (t->requests[i].arrival_ns - first) / bin_ns;
    if (b != cur_bin) {
      cur_bin = b;
      cur = 0;
    }
    if (++cur > peak) peak = cur;
  }
  return peak;
}

infsim_status infsim_trace_compute_stats(const infsim_trace *trace, infsim_trace_stats *s, infsim_error *err) {
  memset(s, 0, sizeof *s);
  if (trace->count == 0) return infsim_fail(err, INFSIM_EINPUT, "trace stats: no requests");
  size_t n = trace->count;
  int64_t *v = malloc(n * sizeof *v);
  if (v == NULL) return infsim_fail(err, INFSIM_ENOMEM, "trace stats: out of memory");
  for (size_t i = 0; i < n; i++) v[i] = trace->requests[i].prompt_tokens;
  length_stats(v, n, &s->prompt);
  for (size_t i = 0; i < n; i++) v[i] = trace->requests[i].output_tokens;
  length_stats(v, n, &s->output);
  free(v);
  s->requests = n;
  s->duration_s = (double)(trace->requests[n - 1].arrival_ns - trace->requests[0].arrival_ns) / 1e9;
  if (s->duration_s > 0) {
    s->mean_rps = (double)n / s->duration_s;
    s->mean_per_min = s->mean_rps * 60.0;
  }
  s->peak_per_s = peak_in_bins(trace, INT64_C(1000000000));
  s->peak_per_min = peak_in_bins(trace, INT64_C(60000000000));
  return INFSIM_OK;
}
