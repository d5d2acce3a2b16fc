/*
** raw.c: the raw measurement CSV (calib_internal.h) and profile names.
**
** Columns are found by name from the header, so their order is free and
** extra columns are ignored; a missing one, or one named twice, is an
** error naming it. Every value is checked: integers are decimal digits,
** reals are plain decimals (no hexadecimal, inf or nan: a NaN median is a
** broken timer, not a measurement) that are zero or normal doubles (a
** subnormal time would make an infinite fit weight), and the schema column
** matches INFSIM_CALIB_RAW_VERSION.
*/
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <stdbool.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "calib_internal.h"
#include "infsim/text.h"

typedef enum { COL_INT, COL_REAL, COL_TEXT } col_type;

typedef struct {
  const char *name;
  col_type type;
  size_t offset;
} col_spec;

#define COL(name, type, field) {name, type, offsetof(calib_raw_row, field)}
static const col_spec k_cols[] = {
    COL("schema", COL_INT, schema),
    COL("gpu", COL_TEXT, gpu),
    COL("driver", COL_TEXT, driver),
    COL("sm_clock_mhz", COL_INT, sm_clock_mhz),
    COL("mem_clock_mhz", COL_INT, mem_clock_mhz),
    COL("backend", COL_TEXT, backend),
    COL("model", COL_TEXT, model),
    COL("layers", COL_INT, layers),
    COL("hidden", COL_INT, hidden),
    COL("heads", COL_INT, heads),
    COL("kv_heads", COL_INT, kv_heads),
    COL("head_dim", COL_INT, head_dim),
    COL("intermediate", COL_INT, intermediate),
    COL("dtype_bytes", COL_INT, dtype_bytes),
    COL("tp", COL_INT, tp),
    COL("kernel", COL_TEXT, kernel),
    COL("tokens", COL_INT, agg[INFSIM_CALIB_TOKENS]),
    COL("pairs", COL_INT, agg[INFSIM_CALIB_PAIRS]),
    COL("requests", COL_INT, agg[INFSIM_CALIB_REQUESTS]),
    COL("context_tokens", COL_INT, agg[INFSIM_CALIB_CONTEXT_TOKENS]),
    COL("partials", COL_INT, agg[INFSIM_CALIB_PARTIALS]),
    COL("bytes", COL_INT, agg[INFSIM_CALIB_BYTES]),
    COL("local_fraction", COL_REAL, local_fraction),
    COL("repeats", COL_INT, repeats),
    COL("median_ns", COL_REAL, median_ns),
    COL("spread_ns", COL_REAL, spread_ns),
};
#undef COL
enum { N_COLS = sizeof k_cols / sizeof k_cols[0], MAX_FIELDS = 64 };

void calib_raw_write_header(FILE *fp) {
  for (size_t i = 0; i < N_COLS; i++) fprintf(fp, "%s%s", i ? "," : "", k_cols[i].name);
  fputc('\n', fp);
}

static void write_text(FILE *fp, const char *s) {
  if (strpbrk(s, ",\"\n") == NULL) {
    fputs(s, fp);
    return;
  }
  fputc('"', fp);
  for (; *s; s++) {
    if (*s == '"') fputc('"', fp);
    fputc(*s == '\n' ? ' ' : *s, fp);
  }
  fputc('"', fp);
}

void calib_raw_write_row(FILE *fp, const calib_raw_row *row) {
  const char *base = (const char *)row;
  for (size_t i = 0; i < N_COLS; i++) {
    if (i) fputc(',', fp);
    const void *field = base + k_cols[i].offset;
    switch (k_cols[i].type) {
    case COL_INT: fprintf(fp, "%lld", (long long)*(const int64_t *)field); break;
    case COL_REAL: fprintf(fp, "%.6g", *(const double *)field); break;
    case COL_TEXT: write_text(fp, (const char *)field); break;
    }
  }
  fputc('\n', fp);
}

/* A decimal real as a measurement writes it: [digits][.digits][e[+-]digits]
 * with at least one digit. strtod alone would also take hexadecimal
 * ("0x1p-3"), "inf", "nan" and leading blanks. */
static bool is_decimal_real(const char *s) {
  size_t i = 0, digits = 0;
  while (s[i] >= '0' && s[i] <= '9') i++, digits++;
  if (s[i] == '.') {
    i++;
    while (s[i] >= '0' && s[i] <= '9') i++, digits++;
  }
  if (digits == 0) return false;
  if (s[i] == 'e' || s[i] == 'E') {
    i++;
    if (s[i] == '+' || s[i] == '-') i++;
    if (s[i] < '0' || s[i] > '9') return false;
    while (s[i] >= '0' && s[i] <= '9') i++;
  }
  return s[i] == '\0';
}

static infsim_status parse_field(const char *path, long line, const col_spec *col, const char *text,
                                 calib_raw_row *row, infsim_error *err) {
  void *field = (char *)row + col->offset;
  switch (col->type) {
  case COL_INT: {
    int64_t v = 0;
    const char *why = NULL;
    if (text[0] == '-' && text[1] != '\0' && infsim_parse_count(text + 1, strlen(text + 1), INT64_MAX, &v, &why))
      return infsim_fail(err, INFSIM_EINPUT, "%s:%ld: %s: negative: %s", path, line, col->name, text);
    if (!infsim_parse_count(text, strlen(text), INT64_MAX, &v, &why))
      return infsim_fail(err, INFSIM_EINPUT, "%s:%ld: %s: not an integer: '%s'", path, line, col->name, text);
    *(int64_t *)field = v;
    return INFSIM_OK;
  }
  case COL_REAL: {
    if (text[0] == '-' && is_decimal_real(text + 1))
      return infsim_fail(err, INFSIM_EINPUT, "%s:%ld: %s: negative: '%s'", path, line, col->name, text);
    if (!is_decimal_real(text))
      return infsim_fail(err, INFSIM_EINPUT, "%s:%ld: %s: not a decimal number: '%s'", path, line, col->name, text);
    errno = 0;
    double v = strtod(text, NULL);
    if (!isfinite(v))
      return infsim_fail(err, INFSIM_EINPUT, "%s:%ld: %s: too large: '%s'", path, line, col->name, text);
    /* A subnormal (or underflow to 0 of a non-zero text) is no timer's
     * reading, and its reciprocal, a fit weight, is infinite. */
    if (v != 0 ? v < DBL_MIN : errno == ERANGE)
      return infsim_fail(err, INFSIM_EINPUT, "%s:%ld: %s: below the smallest normal double: '%s'", path, line,
                         col->name, text);
    *(double *)field = v;
    return INFSIM_OK;
  }
  case COL_TEXT:
    if (strlen(text) >= CALIB_TEXT_BYTES)
      return infsim_fail(err, INFSIM_EINPUT, "%s:%ld: %s: longer than %d characters", path, line, col->name,
                         CALIB_TEXT_BYTES - 1);
    strcpy((char *)field, text);
    return INFSIM_OK;
  }
  return INFSIM_OK;
}

static infsim_status check_row(const char *path, const calib_raw_row *r, infsim_error *err) {
  if (r->schema != INFSIM_CALIB_RAW_VERSION)
    return infsim_fail(err, INFSIM_EINPUT, "%s:%ld: schema: raw format version %lld, expected %d", path, r->line,
                       (long long)r->schema, INFSIM_CALIB_RAW_VERSION);
  if (infsim_calib_kernel_from_name(r->kernel) < 0)
    return infsim_fail(err, INFSIM_EINPUT, "%s:%ld: kernel: unknown kernel '%s'", path, r->line, r->kernel);
  if (r->tp < 1) return infsim_fail(err, INFSIM_EINPUT, "%s:%ld: tp: must be >= 1", path, r->line);
  if (!(r->median_ns > 0))
    return infsim_fail(err, INFSIM_EINPUT, "%s:%ld: median_ns: must be > 0", path, r->line);
  if (r->repeats < 1) return infsim_fail(err, INFSIM_EINPUT, "%s:%ld: repeats: must be >= 1", path, r->line);
  if (r->model[0] == '\0' || r->gpu[0] == '\0')
    return infsim_fail(err, INFSIM_EINPUT, "%s:%ld: %s: empty", path, r->line, r->model[0] ? "gpu" : "model");
  return INFSIM_OK;
}

infsim_status calib_raw_read(const char *path, calib_raw_row **rows_out, size_t *n_out, infsim_error *err) {
  *rows_out = NULL;
  *n_out = 0;
  infsim_line_reader lr;
  infsim_status st = infsim_lines_open(&lr, path, err);
  if (st != INFSIM_OK) return st;
  long lineno = 0;
  int col_index[N_COLS];
  size_t header_fields = 0;
  calib_raw_row *rows = NULL;
  size_t n = 0, rows_cap = 0;
  infsim_fields fs = {0};
  int got;
  while ((got = infsim_lines_next(&lr)) == 1) {
    lineno = (long)lr.line_no;
    if (lr.len == 0) continue;
    const char *why = NULL;
    if (!infsim_csv_split(lr.buf, lr.len, &fs, &why)) {
      st = infsim_fail(err, INFSIM_EINPUT, "%s:%ld: %s", path, lineno, why);
      break;
    }
    if (header_fields == 0) {
      if (fs.count > MAX_FIELDS) {
        st = infsim_fail(err, INFSIM_EINPUT, "%s:%ld: more than %d columns", path, lineno, MAX_FIELDS);
        break;
      }
      header_fields = fs.count;
      for (size_t c = 0; c < N_COLS && st == INFSIM_OK; c++) {
        int again = -1;
        if (!infsim_fields_find_unique(&fs, k_cols[c].name, &col_index[c], &again))
          st = infsim_fail(err, INFSIM_EINPUT, "%s:%ld: %s: column appears twice (columns %d and %d)", path, lineno,
                           k_cols[c].name, col_index[c] + 1, again + 1);
        else if (col_index[c] < 0)
          st = infsim_fail(err, INFSIM_EINPUT, "%s:%ld: %s: missing column", path, lineno, k_cols[c].name);
      }
      if (st != INFSIM_OK) break;
      continue;
    }
    if (fs.count != header_fields) {
      st = infsim_fail(err, INFSIM_EINPUT, "%s:%ld: %zu fields, the header has %zu", path, lineno, fs.count,
                       header_fields);
      break;
    }
    if (n == rows_cap) {
      rows_cap = rows_cap ? 2 * rows_cap : 256;
      calib_raw_row *grown = realloc(rows, rows_cap * sizeof *rows);
      if (grown == NULL) {
        st = infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", path);
        break;
      }
      rows = grown;
    }
    calib_raw_row *r = &rows[n];
    memset(r, 0, sizeof *r);
    r->line = lineno;
    for (size_t c = 0; c < N_COLS && st == INFSIM_OK; c++)
      st = parse_field(path, lineno, &k_cols[c], fs.fields[col_index[c]].text, r, err);
    if (st == INFSIM_OK) st = check_row(path, r, err);
    if (st != INFSIM_OK) break;
    n++;
  }
  if (st == INFSIM_OK && got < 0) st = infsim_lines_fail(&lr, err);
  if (st == INFSIM_OK && header_fields == 0) st = infsim_fail(err, INFSIM_EINPUT, "%s:1: empty file, no header", path);
  if (st == INFSIM_OK && n == 0)
    st = infsim_fail(err, INFSIM_EINPUT, "%s:%ld: no measurements after the header", path, lineno);
  infsim_fields_free(&fs);
  infsim_lines_close(&lr);
  if (st != INFSIM_OK) {
    free(rows);
    return st;
  }
  *rows_out = rows;
  *n_out = n;
  return INFSIM_OK;
}

/* Known data-center parts first; the SXM/PCIe and memory variants differ
 * in clocks and bandwidth enough to be separate profiles. */
void infsim_calib_profile_from_gpu(const char *gpu_name, char *out, size_t out_bytes) {
  char low[CALIB_TEXT_BYTES];
  size_t i = 0;
  for (; gpu_name[i] && i + 1 < sizeof low; i++) low[i] = (char)tolower((unsigned char)gpu_name[i]);
  low[i] = '\0';
  const char *known = NULL;
  if (strstr(low, "h200")) known = "h200";
  else if (strstr(low, "h100") && strstr(low, "pcie")) known = "h100-pcie";
  else if (strstr(low, "h100")) known = "h100-sxm";
  else if (strstr(low, "a100") && (strstr(low, "80g") || strstr(low, "80 g"))) known = "a100-80gb";
  else if (strstr(low, "a100")) known = "a100-40gb";
  if (known) {
    snprintf(out, out_bytes, "%s", known);
    return;
  }
  const char *p = low;
  if (strncmp(p, "nvidia ", 7) == 0) p += 7;
  size_t o = 0;
  int dash = 0;
  for (; *p && o + 1 < out_bytes; p++) {
    if (isalnum((unsigned char)*p)) {
      if (dash && o > 0 && o + 2 < out_bytes) out[o++] = '-';
      out[o++] = *p;
      dash = 0;
    } else {
      dash = 1;
    }
  }
  if (o == 0 && out_bytes > 7) o = (size_t)snprintf(out, out_bytes, "unknown");
  out[o < out_bytes ? o : out_bytes - 1] = '\0';
}
