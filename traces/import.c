/*
** import.c: foreign traces (Azure 2023, Mooncake, BurstGPT) to the trace CSV.
**
** One pass, one line at a time: each row is parsed into a source record
** (absolute source time in ns, token counts, extras), checked, passed
** through the filters in a fixed order, and written at once to the
** temporary output file, so memory does not grow with the file and a
** failure leaves nothing behind (atomic_file.h).
**
** Filter order, so that each dropped row is counted once and the sampled
** subset depends only on rows that survive the deterministic filters:
**   malformed -> time order -> window -> model -> zero length -> sample -> cap.
** Source time 0 is the first well-formed row's timestamp (the trace's first
** request); the window is in source seconds since then; output arrivals are
** (source time - window start) / speedup.
**
** Out-of-order timestamps are malformed rows: the shipped Azure and Mooncake
** files are sorted, and re-sorting would need the whole file in memory.
*/
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "infsim/atomic_file.h"
#include "infsim/rng.h"
#include "infsim/trace.h"
#include "infsim/text.h"

bool infsim_import_format_parse(const char *name, infsim_import_format *out) {
  static const char *const names[] = {"azure", "mooncake", "burstgpt"};
  static const infsim_import_format fmts[] = {INFSIM_IMPORT_AZURE, INFSIM_IMPORT_MOONCAKE, INFSIM_IMPORT_BURSTGPT};
  for (size_t i = 0; i < 3; i++)
    if (strcmp(name, names[i]) == 0) {
      *out = fmts[i];
      return true;
    }
  return false;
}

infsim_import_options infsim_import_options_default(void) {
  infsim_import_options o;
  memset(&o, 0, sizeof o);
  o.speedup = 1.0;
  o.window_end_ns = -1;
  o.sample_fraction = 1.0;
  return o;
}

/* One parsed source row. */
typedef struct {
  int64_t ts_ns; /* absolute source time */
  int64_t prompt_tokens;
  int64_t output_tokens;
  const char *model;      /* burstgpt */
  json_t *hash_ids;       /* mooncake: borrowed from the parsed line */
} source_row;

/* Column positions found in a CSV header. */
typedef struct {
  int ts, prompt, output, model;
} source_columns;

typedef struct {
  infsim_import_format fmt;
  infsim_line_reader lr;
  infsim_fields fields;
  source_columns col;
  json_t *json; /* mooncake: the current line */
} importer;

static infsim_status row_fail(const importer *im, infsim_error *err, const char *field, const char *fmt_why,
                              const char *text) {
  char ex[64];
  if (text != NULL)
    return infsim_fail(err, INFSIM_EINPUT, "%s:%lld: %s: %s: '%s'", im->lr.path, (long long)im->lr.line_no, field,
                       fmt_why, infsim_quote_excerpt(text, strlen(text), ex));
  return infsim_fail(err, INFSIM_EINPUT, "%s:%lld: %s: %s", im->lr.path, (long long)im->lr.line_no, field, fmt_why);
}

/* ---- Azure: TIMESTAMP,ContextTokens,GeneratedTokens ---- */

/* Days since 1970-01-01 of a proleptic Gregorian date: H. Hinnant's
 * days_from_civil ("chrono-Compatible Low-Level Date Algorithms"). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

static bool take_digits(const char *s, size_t *i, int n, int64_t *out) {
  int64_t v = 0;
  for (int k = 0; k < n; k++) {
    char c = s[*i + (size_t)k];
    if (c < '0' || c > '9') return false;
    v = 10 * v + (c - '0');
  }
  *i += (size_t)n;
  *out = v;
  return true;
}

/* "YYYY-MM-DD HH:MM:SS[.f{1,9}][Z|+HH:MM|-HH:MM]" (or a 'T' between date and
 * time; no zone means UTC) to ns since the epoch. */
static bool parse_azure_time(const char *s, int64_t *out_ns, const char **why) {
  size_t i = 0;
  int64_t y, mo, d, h, mi, sec;
  *why = "not a timestamp YYYY-MM-DD HH:MM:SS.fffffff";
  if (!take_digits(s, &i, 4, &y) || s[i++] != '-' || !take_digits(s, &i, 2, &mo) || s[i++] != '-' ||
      !take_digits(s, &i, 2, &d) || (s[i] != ' ' && s[i] != 'T'))
    return false;
  i++;
  if (!take_digits(s, &i, 2, &h) || s[i++] != ':' || !take_digits(s, &i, 2, &mi) || s[i++] != ':' ||
      !take_digits(s, &i, 2, &sec))
    return false;
  int64_t frac_ns = 0;
  if (s[i] == '.') {
    i++;
    int n = 0;
    while (s[i] >= '0' && s[i] <= '9') {
      if (++n > 9) return false;
      frac_ns = 10 * frac_ns + (s[i++] - '0');
    }
    if (n == 0) return false;
    for (; n < 9; n++) frac_ns *= 10;
  }
  /* Optional zone suffix (the 2024 Azure traces write "+00:00"): Z or +-HH:MM. */
  int64_t offset_s = 0;
  if (s[i] == 'Z') {
    i++;
  } else if (s[i] == '+' || s[i] == '-') {
    int64_t oh, om;
    int sign = s[i++] == '-' ? -1 : 1;
    if (!take_digits(s, &i, 2, &oh)) return false;
    if (s[i] == ':') i++;
    if (!take_digits(s, &i, 2, &om) || oh > 23 || om > 59) return false;
    offset_s = sign * (oh * 3600 + om * 60);
  }
  if (s[i] != '\0') return false;
  static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  /* Years 1900..2200 keep nanoseconds since 1970 well inside int64 (+-292 years). */
  if (y < 1900 || y > 2200 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap) || h > 23 || mi > 59 ||
      sec > 59) {
    *why = "date or time out of range";
    return false;
  }
  int64_t s_total = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset_s;
  *out_ns = s_total * INT64_C(1000000000) + frac_ns;
  return true;
}

static infsim_status find_columns(importer *im, infsim_error *err) {
  const char *names[4];
  int *dst[4] = {&im->col.ts, &im->col.prompt, &im->col.output, &im->col.model};
  int need = 3;
  if (im->fmt == INFSIM_IMPORT_AZURE) {
    names[0] = "TIMESTAMP", names[1] = "ContextTokens", names[2] = "GeneratedTokens";
  } else {
    names[0] = "Timestamp", names[1] = "Request tokens", names[2] = "Response tokens", names[3] = "Model";
    need = 4;
  }
  for (int c = 0; c < need; c++) {
    int again = -1;
    if (!infsim_fields_find_unique(&im->fields, names[c], dst[c], &again))
      return infsim_fail(err, INFSIM_EINPUT, "%s:%lld: header: column '%s' appears twice (columns %d and %d)",
                         im->lr.path, (long long)im->lr.line_no, names[c], *dst[c] + 1, again + 1);
    if (*dst[c] < 0)
      return infsim_fail(err, INFSIM_EINPUT, "%s:%lld: header: missing column '%s'", im->lr.path,
                         (long long)im->lr.line_no, names[c]);
  }
  return INFSIM_OK;
}

static infsim_status parse_count_field(const importer *im, int col, const char *name, int64_t *out,
                                       infsim_error *err) {
  if ((size_t)col >= im->fields.count) {
    char why[64];
    snprintf(why, sizeof why, "missing (the row has %zu fields)", im->fields.count);
    return row_fail(im, err, name, why, NULL);
  }
  const infsim_field *f = &im->fields.fields[col];
  const char *why;
  if (!infsim_parse_count(f->text, f->len, INFSIM_TRACE_MAX_TOKENS, out, &why))
    return row_fail(im, err, name, why, f->text);
  return INFSIM_OK;
}

static infsim_status parse_csv_row(importer *im, source_row *row, infsim_error *err) {
  const char *why;
  if (!infsim_csv_split(im->lr.buf, im->lr.len, &im->fields, &why)) return row_fail(im, err, "row", why, NULL);
  bool azure = im->fmt == INFSIM_IMPORT_AZURE;
  const char *ts_name = azure ? "TIMESTAMP" : "Timestamp";
  if ((size_t)im->col.ts >= im->fields.count) return row_fail(im, err, ts_name, "missing", NULL);
  const infsim_field *ts = &im->fields.fields[im->col.ts];
  /* BurstGPT's Timestamp is seconds, since the trace start in the released
   * file but possibly since the Unix epoch (1.7e9) in others: any time
   * int64 ns hold (until 2262) is read exactly, and only the arrival, the
   * time since the first row, is held to INFSIM_TRACE_MAX_ARRIVAL_S. */
  bool ok = azure ? parse_azure_time(ts->text, &row->ts_ns, &why)
                  : infsim_parse_seconds_upto_ns(ts->text, ts->len, INT64_MAX, &row->ts_ns, &why);
  if (!ok && !azure && strcmp(why, "out of range") == 0)
    return row_fail(im, err, ts_name, "out of range (0 to 9223372036.854775807 s, the span of int64 ns)", ts->text);
  if (!ok) return row_fail(im, err, ts_name, why, ts->text);
  infsim_status st =
      parse_count_field(im, im->col.prompt, azure ? "ContextTokens" : "Request tokens", &row->prompt_tokens, err);
  if (st == INFSIM_OK)
    st = parse_count_field(im, im->col.output, azure ? "GeneratedTokens" : "Response tokens", &row->output_tokens,
                           err);
  if (st != INFSIM_OK) return st;
  if (!azure) {
    if ((size_t)im->col.model >= im->fields.count) return row_fail(im, err, "Model", "missing", NULL);
    row->model = im->fields.fields[im->col.model].text;
  }
  return INFSIM_OK;
}

/* ---- Mooncake: {"timestamp": ms, "input_length", "output_length", "hash_ids": [...]} ---- */

/* A JSON integer in [0, max]; unit ("ms", "tokens") names the range in the message. */
static infsim_status json_count(const importer *im, json_t *obj, const char *name, int64_t max, const char *unit,
                                int64_t *out, infsim_error *err) {
  json_t *v = json_object_get(obj, name);
  if (v == NULL) return row_fail(im, err, name, "missing", NULL);
  if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max) {
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    char range[80];
    snprintf(range, sizeof range, "out of range (0 to %lld %s)", (long long)max, unit);
    infsim_status st = row_fail(im, err, name,
                                json_is_integer(v) ? (json_integer_value(v) < 0 ? "negative" : range)
                                                   : "not an integer",
                                text != NULL ? text : "?");
    free(text);
    return st;
  }
  *out = (int64_t)json_integer_value(v);
  return INFSIM_OK;
}

static infsim_status parse_mooncake_row(importer *im, source_row *row, infsim_error *err) {
  json_error_t jerr;
  json_decref(im->json);
  im->json = json_loadb(im->lr.buf, im->lr.len, JSON_REJECT_DUPLICATES, &jerr);
  if (im->json == NULL) {
    char why[200];
    snprintf(why, sizeof why, "%s (column %d)", jerr.text, jerr.column);
    return row_fail(im, err, "json", why, NULL);
  }
  if (!json_is_object(im->json)) return row_fail(im, err, "json", "not an object", NULL);
  /* Timestamps are integer milliseconds: since the trace start in the
   * released traces, since the Unix epoch (1.7e12) in others. Any that int64
   * ns hold (until 2262) is taken; only the arrival, the time since the
   * first row, is held to INFSIM_TRACE_MAX_ARRIVAL_S. */
  int64_t ms;
  infsim_status st = json_count(im, im->json, "timestamp", INT64_MAX / INT64_C(1000000), "ms", &ms, err);
  if (st != INFSIM_OK) return st;
  row->ts_ns = ms * INT64_C(1000000);
  st = json_count(im, im->json, "input_length", INFSIM_TRACE_MAX_TOKENS, "tokens", &row->prompt_tokens, err);
  if (st == INFSIM_OK)
    st = json_count(im, im->json, "output_length", INFSIM_TRACE_MAX_TOKENS, "tokens", &row->output_tokens, err);
  if (st != INFSIM_OK) return st;
  row->hash_ids = json_object_get(im->json, "hash_ids");
  if (row->hash_ids == NULL) return row_fail(im, err, "hash_ids", "missing", NULL);
  if (!json_is_array(row->hash_ids)) return row_fail(im, err, "hash_ids", "not an array", NULL);
  size_t k;
  json_t *id;
  json_array_foreach(row->hash_ids, k, id) {
    if (!json_is_integer(id) || json_integer_value(id) < 0) {
      char why[64];
      snprintf(why, sizeof why, "element %zu is not a non-negative integer", k);
      return row_fail(im, err, "hash_ids", why, NULL);
    }
  }
  return INFSIM_OK;
}

/* ---- the driver ---- */

/* The span int64 nanoseconds hold, in whole years (2^63 ns = 292.3 years). */
static const int k_span_years = 292;

/* *out = a - b; false when that overflows int64. */
static bool sub_ns(int64_t a, int64_t b, int64_t *out) { return !__builtin_sub_overflow(a, b, out); }

static void write_row(FILE *out, int64_t arrival_ns, const source_row *row, bool hashes) {
  char buf[256];
  char *p = buf + strlen(infsim_format_seconds(arrival_ns, buf)); /* fprintf per hash id was slow */
  *p++ = ',';
  p = infsim_put_count(p, row->prompt_tokens);
  *p++ = ',';
  p = infsim_put_count(p, row->output_tokens);
  if (hashes) {
    *p++ = ',';
    size_t k;
    json_t *id;
    json_array_foreach(row->hash_ids, k, id) {
      if (p - buf > (ptrdiff_t)sizeof buf - 32) { /* room for " " + 20 digits + ",\n" */
        fwrite(buf, 1, (size_t)(p - buf), out);
        p = buf;
      }
      if (k > 0) *p++ = ' ';
      p = infsim_put_count(p, (int64_t)json_integer_value(id));
    }
  }
  *p++ = '\n';
  fwrite(buf, 1, (size_t)(p - buf), out);
}

static infsim_status check_options(const infsim_import_options *o, infsim_error *err) {
  if (!(o->speedup > 0) || !isfinite(o->speedup))
    return infsim_fail(err, INFSIM_EINPUT, "--speedup: must be a positive number, got %g", o->speedup);
  if (o->window_start_ns < 0) return infsim_fail(err, INFSIM_EINPUT, "--start-s: must be >= 0");
  if (o->window_end_ns >= 0 && o->window_end_ns <= o->window_start_ns)
    return infsim_fail(err, INFSIM_EINPUT, "--end-s: must be after --start-s");
  if (!(o->sample_fraction > 0 && o->sample_fraction <= 1))
    return infsim_fail(err, INFSIM_EINPUT, "--sample: must be in (0, 1], got %g", o->sample_fraction);
  if (o->max_prompt_tokens < 0 || o->max_output_tokens < 0)
    return infsim_fail(err, INFSIM_EINPUT, "--max-prompt-tokens/--max-output-tokens: must be >= 1");
  return INFSIM_OK;
}

/* Reads the header line of a CSV format (skipping blank lines). */
static infsim_status read_header(importer *im, infsim_error *err) {
  int rc;
  while ((rc = infsim_lines_next(&im->lr)) == 1 && infsim_line_blank(&im->lr)) {
  }
  if (rc < 0) return infsim_lines_fail(&im->lr, err);
  if (rc == 0) return infsim_fail(err, INFSIM_EINPUT, "%s:1: header: the file is empty", im->lr.path);
  const char *why;
  if (!infsim_csv_split(im->lr.buf, im->lr.len, &im->fields, &why)) return row_fail(im, err, "header", why, NULL);
  return find_columns(im, err);
}

static infsim_status import_rows(importer *im, const infsim_import_options *o, FILE *out, infsim_import_report *rep,
                                 infsim_error *err) {
  gsl_rng *rng = NULL;
  if (o->sample_fraction < 1) {
    rng = infsim_rng_new(o->seed, "import.sample");
    if (rng == NULL) return infsim_fail(err, INFSIM_ENOMEM, "import: out of memory");
  }
  bool have_origin = false;
  int64_t origin_ns = 0, origin_line = 0, prev_ns = 0, prev_line = 0;
  infsim_status st = INFSIM_OK;
  int rc;
  while ((rc = infsim_lines_next(&im->lr)) == 1) {
    if (infsim_line_blank(&im->lr)) continue;
    rep->rows_read++;
    source_row row = {0};
    infsim_error row_err = {0};
    st = im->fmt == INFSIM_IMPORT_MOONCAKE ? parse_mooncake_row(im, &row, &row_err) : parse_csv_row(im, &row, &row_err);
    const char *ts_field = im->fmt == INFSIM_IMPORT_MOONCAKE ? "timestamp"
                           : im->fmt == INFSIM_IMPORT_AZURE  ? "TIMESTAMP"
                                                             : "Timestamp";
    int64_t rel_ns = 0;
    if (st == INFSIM_OK && have_origin && row.ts_ns < prev_ns) {
      char why[128];
      int64_t back_ns;
      if (sub_ns(prev_ns, row.ts_ns, &back_ns))
        snprintf(why, sizeof why, "goes back in time (%lld ns before line %lld; sort the file first)",
                 (long long)back_ns, (long long)prev_line);
      else
        snprintf(why, sizeof why, "goes back in time (more than %d years before line %lld; sort the file first)",
                 k_span_years, (long long)prev_line);
      st = row_fail(im, &row_err, ts_field, why, NULL);
    }
    /* Source times span years 1900..2200 (Azure), more than int64
     * nanoseconds hold: a row that far from the first one is refused by
     * name, never wrapped around into "out of window". */
    if (st == INFSIM_OK && have_origin && !sub_ns(row.ts_ns, origin_ns, &rel_ns)) {
      char why[128];
      snprintf(why, sizeof why, "more than %d years after the first row (line %lld)", k_span_years,
               (long long)origin_line);
      st = row_fail(im, &row_err, ts_field, why, NULL);
    }
    if (st != INFSIM_OK) {
      if (!o->skip_bad || st != INFSIM_EINPUT) {
        if (err != NULL) *err = row_err;
        break;
      }
      if (rep->bad++ == 0) rep->first_bad_line = im->lr.line_no;
      st = INFSIM_OK;
      continue;
    }
    if (!have_origin) origin_ns = row.ts_ns, origin_line = im->lr.line_no, have_origin = true;
    prev_ns = row.ts_ns;
    prev_line = im->lr.line_no;
    if (rel_ns < o->window_start_ns) {
      rep->out_of_window++;
      continue;
    }
    if (o->window_end_ns >= 0 && rel_ns >= o->window_end_ns) {
      /* Sorted input: nothing later can be inside the window. */
      rep->out_of_window++;
      rep->stopped_at_window_end = true;
      break;
    }
    if (o->model != NULL && im->fmt == INFSIM_IMPORT_BURSTGPT && strcmp(row.model, o->model) != 0) {
      rep->filtered_model++;
      continue;
    }
    if (row.prompt_tokens == 0 || row.output_tokens == 0) {
      if (!o->keep_zero) {
        rep->zero_dropped++;
        continue;
      }
      if (row.prompt_tokens == 0) row.prompt_tokens = 1;
      if (row.output_tokens == 0) row.output_tokens = 1;
      rep->zero_raised++;
    }
    if (rng != NULL && gsl_rng_uniform(rng) >= o->sample_fraction) {
      rep->sampled_out++;
      continue;
    }
    if (o->max_prompt_tokens > 0 && row.prompt_tokens > o->max_prompt_tokens) {
      row.prompt_tokens = o->max_prompt_tokens;
      rep->capped_prompt++;
    }
    if (o->max_output_tokens > 0 && row.output_tokens > o->max_output_tokens) {
      row.output_tokens = o->max_output_tokens;
      rep->capped_output++;
    }
    int64_t d_ns = rel_ns - o->window_start_ns;
    const int64_t max_ns = INFSIM_TRACE_MAX_ARRIVAL_S * INT64_C(1000000000);
    /* Dividing by exactly 1 keeps every nanosecond of the source, even past
     * 2^53, and so must the cap: as a double, 1e18 + 1 ns is 1e18. */
    double scaled_ns = (double)d_ns / o->speedup;
    bool too_late = o->speedup == 1.0 ? d_ns > max_ns : !(scaled_ns <= (double)max_ns);
    if (too_late) {
      st = infsim_fail(err, INFSIM_EINPUT, "%s:%lld: arrival passes %lld s after --speedup %g", im->lr.path,
                       (long long)im->lr.line_no, (long long)INFSIM_TRACE_MAX_ARRIVAL_S, o->speedup);
      break;
    }
    int64_t arrival_ns = o->speedup == 1.0 ? d_ns : llround(scaled_ns);
    write_row(out, arrival_ns, &row, im->fmt == INFSIM_IMPORT_MOONCAKE);
    rep->written++;
    rep->prompt_tokens_written += row.prompt_tokens;
    rep->output_tokens_written += row.output_tokens;
    rep->last_arrival_ns = arrival_ns;
  }
  if (st == INFSIM_OK && rc < 0) st = infsim_lines_fail(&im->lr, err);
  gsl_rng_free(rng);
  return st;
}

infsim_status infsim_trace_import(infsim_import_format fmt, const char *in_path, const char *out_path,
                                  const infsim_import_options *opt, infsim_import_report *report,
                                  infsim_error *err) {
  memset(report, 0, sizeof *report);
  infsim_status st = check_options(opt, err);
  if (st != INFSIM_OK) return st;
  importer im;
  memset(&im, 0, sizeof im);
  im.fmt = fmt;
  st = infsim_lines_open(&im.lr, in_path, err);
  if (st != INFSIM_OK) return st;
  if (fmt != INFSIM_IMPORT_MOONCAKE) st = read_header(&im, err);
  infsim_atomic_file af = {0};
  bool opened = false;
  if (st == INFSIM_OK) {
    st = infsim_atomic_open(&af, out_path, err);
    opened = st == INFSIM_OK;
  }
  if (st == INFSIM_OK) {
    fputs(fmt == INFSIM_IMPORT_MOONCAKE ? "arrival_time_s,prompt_tokens,output_tokens,prefix_hashes\n"
                                        : "arrival_time_s,prompt_tokens,output_tokens\n",
          af.fp);
    st = import_rows(&im, opt, af.fp, report, err);
  }
  if (st == INFSIM_OK && report->written == 0)
    st = infsim_fail(err, INFSIM_EINPUT,
                     "%s: no requests left to write (%lld rows read: %lld malformed, %lld other model, %lld out of "
                     "window, %lld zero-length, %lld sampled out)",
                     in_path, (long long)report->rows_read, (long long)report->bad, (long long)report->filtered_model,
                     (long long)report->out_of_window, (long long)report->zero_dropped,
                     (long long)report->sampled_out);
  if (st == INFSIM_OK) {
    st = infsim_atomic_commit(&af, err);
  } else if (opened) {
    infsim_atomic_abort(&af);
  }
  json_decref(im.json);
  infsim_fields_free(&im.fields);
  infsim_lines_close(&im.lr);
  return st;
}
