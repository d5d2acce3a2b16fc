/*
** text.c: lines, CSV fields and exact decimal parsing (see text.h and trace.h).
**
** Seconds are parsed from their digits, not through strtod: a double holds
** about 16 significant digits, so "86399.123456789" read as a double and
** multiplied by 1e9 can land a nanosecond off, and sums of such errors make
** arrival order ties depend on the platform's rounding.
*/
#include "infsim/text.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "infsim/trace.h"

enum { READ_AHEAD_BYTES = 64 * 1024 };

infsim_status infsim_lines_open(infsim_line_reader *lr, const char *path, infsim_error *err) {
  memset(lr, 0, sizeof *lr);
  lr->path = path;
  lr->fp = fopen(path, "r");
  if (lr->fp == NULL) return infsim_fail(err, INFSIM_EINPUT, "%s: cannot open: %s", path, strerror(errno));
  lr->in = malloc(READ_AHEAD_BYTES);
  if (lr->in == NULL) {
    fclose(lr->fp);
    lr->fp = NULL;
    return infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", path);
  }
  return INFSIM_OK;
}

/* Appends n bytes to the line buffer (which keeps room for a NUL). */
static bool line_append(infsim_line_reader *lr, const char *p, size_t n) {
  if (lr->len + n + 1 > lr->cap) {
    size_t cap = lr->cap == 0 ? 256 : lr->cap;
    while (cap < lr->len + n + 1) cap *= 2;
    char *grown = realloc(lr->buf, cap);
    if (grown == NULL) return false;
    lr->buf = grown;
    lr->cap = cap;
  }
  memcpy(lr->buf + lr->len, p, n);
  lr->len += n;
  return true;
}

int infsim_lines_next(infsim_line_reader *lr) {
  lr->len = 0;
  lr->why = NULL;
  lr->why_column = 0;
  lr->why_errno = 0;
  bool any = false;
  for (;;) {
    if (lr->in_pos == lr->in_len) {
      lr->in_pos = 0;
      lr->in_len = fread(lr->in, 1, READ_AHEAD_BYTES, lr->fp);
      if (lr->in_len == 0) {
        if (ferror(lr->fp)) {
          lr->why_errno = errno != 0 ? errno : EIO;
          lr->why = strerror(lr->why_errno);
          return -1;
        }
        if (!any) return 0;
        break; /* a last line without a newline */
      }
    }
    any = true;
    const char *start = lr->in + lr->in_pos;
    size_t avail = lr->in_len - lr->in_pos;
    const char *nl = memchr(start, '\n', avail);
    size_t take = nl != NULL ? (size_t)(nl - start) : avail;
    const char *nul = memchr(start, '\0', take);
    if (nul != NULL) {
      lr->line_no++;
      lr->why = "NUL byte";
      lr->why_column = (int64_t)(lr->len + (size_t)(nul - start)) + 1;
      errno = EILSEQ; /* for callers that print strerror(errno) */
      return -1;
    }
    if (lr->len + take > INFSIM_LINE_MAX_BYTES) {
      lr->line_no++;
      lr->why = "line too long";
      errno = EOVERFLOW;
      return -1;
    }
    if (!line_append(lr, start, take)) {
      lr->line_no++;
      lr->why_errno = ENOMEM;
      lr->why = strerror(ENOMEM);
      return -1;
    }
    lr->in_pos += take;
    if (nl != NULL) {
      lr->in_pos++;
      break;
    }
  }
  size_t len = lr->len;
  if (len > 0 && lr->buf[len - 1] == '\r') len--;
  if (lr->cap == 0 && !line_append(lr, "", 0)) { /* an empty last line still gets a buffer */
    lr->why_errno = ENOMEM;
    lr->why = strerror(ENOMEM);
    return -1;
  }
  lr->buf[len] = '\0';
  lr->line_no++;
  /* A UTF-8 byte order mark (spreadsheet exports) is not part of the header. */
  if (lr->line_no == 1 && len >= 3 && memcmp(lr->buf, "\xEF\xBB\xBF", 3) == 0) {
    memmove(lr->buf, lr->buf + 3, len - 2);
    len -= 3;
  }
  lr->len = len;
  return 1;
}

void infsim_lines_consume(infsim_line_reader *lr, size_t n) {
  lr->in_pos += n;
  lr->len = 0;
  lr->line_no++;
}

infsim_status infsim_lines_fail(const infsim_line_reader *lr, infsim_error *err) {
  if (lr->why_column > 0)
    return infsim_fail(err, INFSIM_EINPUT, "%s:%lld: NUL byte at column %lld (not a text file?)", lr->path,
                       (long long)lr->line_no, (long long)lr->why_column);
  if (lr->why_errno == 0)
    return infsim_fail(err, INFSIM_EINPUT, "%s:%lld: line longer than %zu bytes (not a text file?)", lr->path,
                       (long long)lr->line_no, INFSIM_LINE_MAX_BYTES);
  if (lr->why_errno == ENOMEM) return infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", lr->path);
  return infsim_fail(err, lr->why_errno == EISDIR ? INFSIM_EINPUT : INFSIM_EIO, "%s: cannot read: %s", lr->path,
                     strerror(lr->why_errno));
}

void infsim_lines_close(infsim_line_reader *lr) {
  if (lr->fp != NULL) fclose(lr->fp);
  free(lr->buf);
  free(lr->in);
  memset(lr, 0, sizeof *lr);
}

bool infsim_line_blank(const infsim_line_reader *lr) {
  for (size_t i = 0; i < lr->len; i++)
    if (lr->buf[i] != ' ' && lr->buf[i] != '\t') return false;
  return true;
}

static bool is_blank(char c) { return c == ' ' || c == '\t'; }

static bool fields_push(infsim_fields *f, const char *text, size_t len) {
  if (f->count == f->cap) {
    size_t cap = f->cap == 0 ? 16 : 2 * f->cap;
    infsim_field *p = realloc(f->fields, cap * sizeof *p);
    if (p == NULL) return false;
    f->fields = p;
    f->cap = cap;
  }
  f->fields[f->count].text = text;
  f->fields[f->count].len = len;
  f->count++;
  return true;
}

bool infsim_csv_split(char *line, size_t len, infsim_fields *out, const char **why) {
  out->count = 0;
  size_t i = 0;
  for (;;) {
    while (i < len && is_blank(line[i])) i++;
    char *start;
    size_t flen;
    if (i < len && line[i] == '"') {
      /* Quoted: copy down over the opening quote, undoing "" pairs. */
      size_t r = i + 1, w = i;
      start = line + i;
      for (;;) {
        if (r >= len) {
          *why = "unterminated quoted field";
          return false;
        }
        if (line[r] == '"') {
          if (r + 1 < len && line[r + 1] == '"') {
            line[w++] = '"';
            r += 2;
            continue;
          }
          r++;
          break;
        }
        line[w++] = line[r++];
      }
      flen = w - i;
      while (r < len && is_blank(line[r])) r++;
      if (r < len && line[r] != ',') {
        *why = "text after a closing quote";
        return false;
      }
      i = r;
    } else {
      size_t e = i;
      while (e < len && line[e] != ',') e++;
      if (memchr(line + i, '"', e - i) != NULL) {
        *why = "quote inside an unquoted field";
        return false;
      }
      start = line + i;
      size_t t = e;
      while (t > i && is_blank(line[t - 1])) t--;
      flen = t - i;
      i = e;
    }
    bool more = i < len; /* line[i] == ',' */
    start[flen] = '\0';  /* overwrites the comma, a blank or the closing quote */
    if (!fields_push(out, start, flen)) {
      *why = "out of memory";
      return false;
    }
    if (!more) return true;
    i++;
  }
}

void infsim_fields_free(infsim_fields *f) {
  free(f->fields);
  memset(f, 0, sizeof *f);
}

int infsim_fields_find(const infsim_fields *f, const char *name) {
  for (size_t i = 0; i < f->count; i++)
    if (strcmp(f->fields[i].text, name) == 0) return (int)i;
  return -1;
}

bool infsim_fields_find_unique(const infsim_fields *f, const char *name, int *index, int *again) {
  *index = -1;
  for (size_t i = 0; i < f->count; i++) {
    if (strcmp(f->fields[i].text, name) != 0) continue;
    if (*index >= 0) {
      *again = (int)i;
      return false;
    }
    *index = (int)i;
  }
  return true;
}

bool infsim_parse_count(const char *text, size_t len, int64_t max, int64_t *out, const char **why) {
  if (len > 0 && len <= 18) {
    /* Up to 18 digits cannot overflow: no range check per digit. */
    int64_t v = 0;
    size_t i = 0;
    while (i < len && (unsigned)(text[i] - '0') <= 9) v = 10 * v + (text[i++] - '0');
    if (i == len && v <= max) {
      *out = v;
      return true;
    }
  }
  if (len == 0) {
    *why = "empty";
    return false;
  }
  size_t i = 0;
  bool negative = false;
  if (text[0] == '-' && len > 1) {
    negative = true;
    i = 1;
  }
  int64_t v = 0;
  for (; i < len; i++) {
    char c = text[i];
    if (c < '0' || c > '9') {
      *why = "not an integer";
      return false;
    }
    if (v > (max - (c - '0')) / 10) {
      /* keep scanning so that "12x...9999" reports junk, not range */
      for (size_t j = i; j < len; j++)
        if (text[j] < '0' || text[j] > '9') {
          *why = "not an integer";
          return false;
        }
      *why = negative ? "negative" : "out of range";
      return false;
    }
    v = 10 * v + (c - '0');
  }
  if (negative) {
    *why = "negative";
    return false;
  }
  *out = v;
  return true;
}

char *infsim_put_count(char *p, int64_t v) {
  char tmp[20];
  int n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v > 0);
  while (n > 0) *p++ = tmp[--n];
  return p;
}

const char *infsim_quote_excerpt(const char *text, size_t len, char buf[64]) {
  size_t n = len > 40 ? 40 : len;
  memcpy(buf, text, n);
  if (n < len) memcpy(buf + n, "...", 4);
  else buf[n] = '\0';
  return buf;
}

/* Seconds: digits [. digits] [e|E [+|-] digits]. The value is
 * mantissa x 10^exp10 with the mantissa's significant digits kept in a
 * buffer; nanoseconds are its digits shifted by exp10 + 9 places. */
/* The common form, digits '.' up to 9 digits, below the largest arrival:
 * integer seconds and nanoseconds read directly. False for anything else
 * (the general parser decides). */
static bool parse_plain_seconds(const char *text, size_t len, int64_t max_ns, int64_t *out_ns) {
  size_t i = 0;
  int64_t whole = 0;
  while (i < len && i < 10 && (unsigned)(text[i] - '0') <= 9) whole = 10 * whole + (text[i++] - '0');
  /* whole < max_ns / 1e9 keeps whole seconds plus any fraction <= max_ns */
  if (i == 0 || whole >= max_ns / INT64_C(1000000000)) return false;
  int64_t frac = 0;
  if (i < len) {
    if (text[i] != '.' || len - i - 1 > 9 || len - i - 1 == 0) return false;
    size_t digits = 0;
    for (i++; i < len; i++, digits++) {
      if ((unsigned)(text[i] - '0') > 9) return false;
      frac = 10 * frac + (text[i] - '0');
    }
    for (; digits < 9; digits++) frac *= 10;
  }
  *out_ns = whole * INT64_C(1000000000) + frac;
  return true;
}

bool infsim_parse_seconds_ns(const char *text, size_t len, int64_t *out_ns, const char **why) {
  return infsim_parse_seconds_upto_ns(text, len, INFSIM_TRACE_MAX_ARRIVAL_S * INT64_C(1000000000), out_ns, why);
}

bool infsim_parse_seconds_upto_ns(const char *text, size_t len, int64_t max_ns, int64_t *out_ns, const char **why) {
  if (parse_plain_seconds(text, len, max_ns, out_ns)) return true;
  enum { MAX_DIGITS = 64 };
  char digits[MAX_DIGITS];
  int ndig = 0;         /* significant digits kept (leading zeros dropped) */
  int point_shift = 0;  /* fractional digits among them, minus integer digits dropped */
  bool any_digit = false;
  size_t i = 0;
  if (len == 0) {
    *why = "empty";
    return false;
  }
  if (text[0] == '-' || text[0] == '+') {
    *why = text[0] == '-' ? "negative" : "not a number";
    return false;
  }
  bool in_frac = false;
  for (; i < len; i++) {
    char c = text[i];
    if (c == '.' && !in_frac) {
      in_frac = true;
      continue;
    }
    if (c < '0' || c > '9') break;
    any_digit = true;
    if (ndig == 0 && c == '0') {
      if (in_frac) point_shift++;
      continue;
    }
    if (ndig < MAX_DIGITS) {
      digits[ndig++] = c;
      if (in_frac) point_shift++;
    } else {
      /* Beyond 64 significant digits the value is either out of range
       * (integer digits) or below the rounding digit (fraction). */
      if (!in_frac) point_shift--;
    }
  }
  if (!any_digit) {
    *why = "not a number";
    return false;
  }
  int exp10 = 0;
  if (i < len && (text[i] == 'e' || text[i] == 'E')) {
    i++;
    bool eneg = false;
    if (i < len && (text[i] == '+' || text[i] == '-')) eneg = text[i++] == '-';
    if (i >= len) {
      *why = "not a number";
      return false;
    }
    for (; i < len; i++) {
      if (text[i] < '0' || text[i] > '9') break;
      if (exp10 < 10000) exp10 = 10 * exp10 + (text[i] - '0');
    }
    if (eneg) exp10 = -exp10;
  }
  if (i != len) {
    *why = "not a number";
    return false;
  }
  /* value = 0.digits... : ns = int(digits) * 10^(9 + exp10 - point_shift) */
  int shift = 9 + exp10 - point_shift;
  int64_t ns = 0;
  int keep = ndig + shift; /* digits that land left of the nanosecond point */
  if (keep > 19) {
    *why = "out of range";
    return false;
  }
  for (int d = 0; d < keep; d++) {
    int digit = d < ndig ? digits[d] - '0' : 0;
    if (ns > (max_ns - digit) / 10) {
      *why = "out of range";
      return false;
    }
    ns = 10 * ns + digit;
  }
  /* Round half up on the first digit past the nanosecond. */
  int first_dropped = keep >= 0 ? keep : -1;
  if (first_dropped >= 0 && first_dropped < ndig && digits[first_dropped] >= '5') {
    if (ns == max_ns) { /* max_ns may be INT64_MAX: ns + 1 would overflow */
      *why = "out of range";
      return false;
    }
    ns++;
  }
  if (ns > max_ns) {
    *why = "out of range";
    return false;
  }
  *out_ns = ns;
  return true;
}

char *infsim_format_seconds(int64_t ns, char buf[32]) {
  int64_t s = ns / 1000000000, frac = ns % 1000000000;
  if (frac == 0) {
    snprintf(buf, 32, "%lld", (long long)s);
    return buf;
  }
  int n = snprintf(buf, 32, "%lld.%09lld", (long long)s, (long long)frac);
  while (n > 0 && buf[n - 1] == '0') buf[--n] = '\0';
  return buf;
}
