/*
** numfmt.h: fast decimal formatting of integers and fixed-point values
** (times on the ns clock printed as seconds), and a buffered row writer
** for CSV outputs.
**
** Why: a run writes a row per request (requests.csv) and per sample
** (timeseries.csv), a million rows for a million requests; printf parses
** its format string and takes the stream's lock for every call, which
** costs more than simulating the request. These functions write digits
** two at a time from a table, into a caller's buffer, with no locale, no
** format string and no allocation.
**
** Output is exactly what printf gives: "%" PRIu64, "%" PRId64, and for
** infsim_fmt_fixed(v, d) the digits of |v| / 10^d, '.', then exactly d
** digits of |v| mod 10^d, with '-' in front when v < 0 (so
** infsim_fmt_fixed(1500000000, 9) is "1.500000000": a time in ns shown
** in seconds, exactly). Nothing is NUL-terminated: each function returns
** the end of what it wrote, at most the stated bytes.
*/
#ifndef INFSIM_NUMFMT_H
#define INFSIM_NUMFMT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "infsim/status.h"

enum {
  INFSIM_FMT_U64_MAX_BYTES = 20,   /* 18446744073709551615 */
  INFSIM_FMT_I64_MAX_BYTES = 20,   /* -9223372036854775808 */
  INFSIM_FMT_FIXED_MAX_BYTES = 21, /* sign, 19 digits, the point */
  INFSIM_FMT_MAX_DECIMALS = 18,
};

/* v in decimal. */
char *infsim_fmt_u64(char *out, uint64_t v);
/* v in decimal, '-' first when negative (INT64_MIN included). */
char *infsim_fmt_i64(char *out, int64_t v);
/* v / 10^decimals with exactly `decimals` digits after the point,
 * 1 <= decimals <= INFSIM_FMT_MAX_DECIMALS. */
char *infsim_fmt_fixed(char *out, int64_t v, int decimals);

/* A buffered writer onto a stream: rows are formatted into its buffer,
 * which goes to the stream in one fwrite when full and at the end. The
 * first failed write is remembered; later writes are skipped. 256 KiB:
 * the kernel takes 10 MB in writes of that size 20% faster than in
 * 64 KiB ones (page-cache folios; measured on the dev VM, ext4); too
 * large for a stack, so allocate it. */
enum { INFSIM_OUTBUF_BYTES = 1 << 18 };
typedef struct {
  FILE *fp;
  size_t len;
  int failed; /* 1 once an fwrite came back short */
  char buf[INFSIM_OUTBUF_BYTES];
} infsim_outbuf;

void infsim_outbuf_init(infsim_outbuf *w, FILE *fp);
/* Room for `bytes` more (<= INFSIM_OUTBUF_BYTES): writes the buffer out
 * first if they would not fit; returns where to write them. */
static inline char *infsim_outbuf_reserve(infsim_outbuf *w, size_t bytes);
/* Marks the bytes up to end (inside the room reserved) as written. */
static inline void infsim_outbuf_commit(infsim_outbuf *w, char *end) { w->len = (size_t)(end - w->buf); }
void infsim_outbuf_flush(infsim_outbuf *w);
void infsim_outbuf_str(infsim_outbuf *w, const char *text, size_t len);
/* Flushes; INFSIM_EIO naming `path` if any write failed. */
infsim_status infsim_outbuf_finish(infsim_outbuf *w, const char *path, infsim_error *err);

static inline char *infsim_outbuf_reserve(infsim_outbuf *w, size_t bytes) {
  if (w->len + bytes > sizeof w->buf) infsim_outbuf_flush(w);
  return w->buf + w->len;
}

#endif
