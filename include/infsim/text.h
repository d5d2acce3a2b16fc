/*
** text.h: line reading, CSV field splitting and exact number parsing, one
** copy for every CSV the project reads: traces, importers, raw calibration
** files and a run's outputs (infsim plot).
**
** Invariants: a line reader owns one buffer that grows to the longest line
** (at most INFSIM_LINE_MAX_BYTES) and is reused, so memory is constant per line whatever the file size; a
** field splitter likewise reuses one array of fields. Fields point into the
** line buffer and live until the next line is read.
*/
#ifndef INFSIM_TEXT_H
#define INFSIM_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "infsim/status.h"

/* The longest line any reader accepts, newline excluded: far above any
 * real row (a Mooncake row with 2,000 block hashes is about 16 KiB), and
 * low enough that `--trace /dev/zero` or a binary file fails at once
 * instead of growing one line until memory runs out. */
#define INFSIM_LINE_MAX_BYTES ((size_t)1 << 20)

typedef struct {
  FILE *fp;
  const char *path;
  char *buf;       /* current line, without its "\n" or "\r\n" */
  size_t cap;
  size_t len;
  int64_t line_no; /* 1-based number of the current line (of the failing one after -1) */
  char *in;        /* read-ahead block */
  size_t in_pos, in_len;
  const char *why; /* after -1: what was wrong ("NUL byte", "line too long", or strerror) */
  int64_t why_column; /* 1-based byte column of a NUL byte, else 0 */
  int why_errno;      /* errno of a read error, else 0 */
} infsim_line_reader;

/* Opens path for reading; a missing file is bad input (exit 2). */
infsim_status infsim_lines_open(infsim_line_reader *lr, const char *path, infsim_error *err);
/* Reads the next line: 1 when one was read, 0 at end of file, -1 when the
 * line holds a NUL byte, is longer than INFSIM_LINE_MAX_BYTES, or cannot
 * be read (then infsim_lines_fail() says which). Text files hold no NUL
 * bytes: one means a binary file, and C strings could not carry it. */
int infsim_lines_next(infsim_line_reader *lr);
/* The error after infsim_lines_next() returned -1, as "PATH:LINE: NUL byte
 * at column C (not a text file?)", "PATH:LINE: line longer than 1048576
 * bytes" (INFSIM_EINPUT) or "PATH: cannot read: REASON" (INFSIM_EINPUT
 * for a directory, else INFSIM_EIO). */
infsim_status infsim_lines_fail(const infsim_line_reader *lr, infsim_error *err);
void infsim_lines_close(infsim_line_reader *lr);
/* True when the current line holds only spaces and tabs. */
bool infsim_line_blank(const infsim_line_reader *lr);
/* For a parser that reads lines of one known shape where they lie (no
 * copy into buf): the bytes read ahead and not yet consumed, a complete
 * line only if a '\n' is among them. infsim_lines_consume(lr, n) then
 * takes n of them, the last a '\n', as the next line (line_no advances;
 * buf does not hold it). Anything else goes through infsim_lines_next. */
static inline const char *infsim_lines_unread(const infsim_line_reader *lr, size_t *n) {
  *n = lr->in_len - lr->in_pos;
  return lr->in + lr->in_pos;
}
void infsim_lines_consume(infsim_line_reader *lr, size_t n);

typedef struct {
  const char *text; /* NUL-terminated, surrounding blanks removed, quotes undone */
  size_t len;
} infsim_field;

typedef struct {
  infsim_field *fields;
  size_t count;
  size_t cap;
} infsim_fields;

/* Splits line (modified in place) at commas. A field may be quoted
 * ("a b", with "" for a quote inside); blanks around unquoted fields are
 * dropped. Returns false on an unterminated quote or text after a closing
 * quote, setting *why. A quoted field cannot span lines. */
bool infsim_csv_split(char *line, size_t len, infsim_fields *out, const char **why);
void infsim_fields_free(infsim_fields *f);

/* Index of the header field equal to name, or -1. */
int infsim_fields_find(const infsim_fields *f, const char *name);

/* Like infsim_fields_find, for a column a reader uses: *index is the field
 * equal to name (-1 when missing). Returns false when name appears more
 * than once (a header that names a column twice is ambiguous), setting
 * *index and *again to the 0-based positions of the first two. */
bool infsim_fields_find_unique(const infsim_fields *f, const char *name, int *index, int *again);

/* Parses a non-negative decimal integer (digits only) no larger than max.
 * False with *why = "not an integer" or "out of range". */
bool infsim_parse_count(const char *text, size_t len, int64_t max, int64_t *out, const char **why);

/* Writes the decimal digits of v >= 0 at p (at most 19 bytes, no NUL);
 * returns the new end. Faster than fprintf on million-row outputs. */
char *infsim_put_count(char *p, int64_t v);

/* Quotes text for an error message: at most about 40 bytes, in buf. */
const char *infsim_quote_excerpt(const char *text, size_t len, char buf[64]);

#endif
