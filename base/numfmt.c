/*
** numfmt.c: decimal formatting two digits at a time (numfmt.h).
**
** The digits of a number are produced from the lowest pair up, by
** dividing by 100 and looking the remainder's two characters up in a
** table; the compiler turns the division by a constant into a multiply.
** The length is found first (compares against powers of ten), so the
** digits go straight to their place, with no reversal and no copy.
**
** Invariants: every function writes exactly the characters printf would
** for the same value (tests/test_numfmt.c checks against snprintf) and
** never more than its *_MAX_BYTES.
*/
#include "infsim/numfmt.h"

#include <assert.h>
#include <string.h>

static const char k_pairs[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

static const uint64_t k_pow10[20] = {1ull,
                                     10ull,
                                     100ull,
                                     1000ull,
                                     10000ull,
                                     100000ull,
                                     1000000ull,
                                     10000000ull,
                                     100000000ull,
                                     1000000000ull,
                                     10000000000ull,
                                     100000000000ull,
                                     1000000000000ull,
                                     10000000000000ull,
                                     100000000000000ull,
                                     1000000000000000ull,
                                     10000000000000000ull,
                                     100000000000000000ull,
                                     1000000000000000000ull,
                                     10000000000000000000ull};

/* Decimal digits of v (1 for 0): from its bit length b, t = floor(b
 * log10 2) (1233 / 4096 = 0.30103), and v has t or t + 1 digits. */
static int digits_u64(uint64_t v) {
  if (v < 10) return 1;
  int bits = 64 - __builtin_clzll(v);
  int t = (bits * 1233) >> 12;
  return t + (v >= k_pow10[t]);
}

/* Writes exactly n digits of v (v < 10^n) ending at end. Once v fits in
 * 32 bits (always, for the nine decimals of a time) the divisions by 100
 * are 32-bit multiplies, shorter than 64-bit ones. */
static void put_digits(char *end, uint64_t v, int n) {
  while (n >= 2 && v > UINT32_MAX) {
    const char *p = &k_pairs[2 * (v % 100)];
    v /= 100;
    end -= 2;
    end[0] = p[0];
    end[1] = p[1];
    n -= 2;
  }
  uint32_t w = (uint32_t)v;
  while (n >= 2) {
    const char *p = &k_pairs[2 * (w % 100)];
    w /= 100;
    end -= 2;
    end[0] = p[0];
    end[1] = p[1];
    n -= 2;
  }
  if (n == 1) *--end = (char)('0' + w);
}

char *infsim_fmt_u64(char *out, uint64_t v) {
  if (v < 10) { /* counts of a few: most columns of a row */
    *out = (char)('0' + v);
    return out + 1;
  }
  if (v < 100) {
    memcpy(out, &k_pairs[2 * v], 2);
    return out + 2;
  }
  if (v < 10000) { /* token counts, seconds of an hour-long run */
    uint32_t w = (uint32_t)v;
    if (w < 1000) {
      out[0] = (char)('0' + w / 100);
      memcpy(out + 1, &k_pairs[2 * (w % 100)], 2);
      return out + 3;
    }
    memcpy(out, &k_pairs[2 * (w / 100)], 2);
    memcpy(out + 2, &k_pairs[2 * (w % 100)], 2);
    return out + 4;
  }
  int n = digits_u64(v);
  put_digits(out + n, v, n);
  return out + n;
}

char *infsim_fmt_i64(char *out, int64_t v) {
  if (v >= 0) return infsim_fmt_u64(out, (uint64_t)v);
  *out++ = '-';
  return infsim_fmt_u64(out, (uint64_t)(-(v + 1)) + 1); /* INT64_MIN has no positive twin */
}

/* Exactly nine digits of v < 10^9: one digit, then four pairs from two
 * halves of four, without a loop (the decimals of a time in seconds). */
static char *put_nine_digits(char *out, uint32_t v) {
  uint32_t top = v / 100000000u, rest = v % 100000000u;
  uint32_t hi = rest / 10000u, lo = rest % 10000u;
  out[0] = (char)('0' + top);
  memcpy(out + 1, &k_pairs[2 * (hi / 100u)], 2);
  memcpy(out + 3, &k_pairs[2 * (hi % 100u)], 2);
  memcpy(out + 5, &k_pairs[2 * (lo / 100u)], 2);
  memcpy(out + 7, &k_pairs[2 * (lo % 100u)], 2);
  return out + 9;
}

char *infsim_fmt_fixed(char *out, int64_t v, int decimals) {
  assert(decimals >= 1 && decimals <= INFSIM_FMT_MAX_DECIMALS);
  uint64_t mag = v >= 0 ? (uint64_t)v : (uint64_t)(-(v + 1)) + 1;
  if (v < 0) *out++ = '-';
  uint64_t whole, frac;
  if (decimals == 9) { /* ns as seconds, the common case: a constant divisor is a multiply */
    whole = mag / 1000000000u;
    frac = mag % 1000000000u;
    if (whole < 10) { /* most durations */
      *out++ = (char)('0' + whole);
    } else if (whole < 100) {
      memcpy(out, &k_pairs[2 * whole], 2);
      out += 2;
    } else {
      out = infsim_fmt_u64(out, whole);
    }
    *out++ = '.';
    return put_nine_digits(out, (uint32_t)frac);
  } else {
    whole = mag / k_pow10[decimals];
    frac = mag % k_pow10[decimals];
  }
  out = infsim_fmt_u64(out, whole);
  *out++ = '.';
  put_digits(out + decimals, frac, decimals);
  return out + decimals;
}

void infsim_outbuf_init(infsim_outbuf *w, FILE *fp) {
  w->fp = fp;
  w->len = 0;
  w->failed = 0;
}

void infsim_outbuf_flush(infsim_outbuf *w) {
  if (w->len > 0 && !w->failed && fwrite(w->buf, 1, w->len, w->fp) != w->len) w->failed = 1;
  w->len = 0;
}

void infsim_outbuf_str(infsim_outbuf *w, const char *text, size_t len) {
  while (len > 0) { /* longer than the buffer: in pieces */
    size_t room = sizeof w->buf - w->len;
    if (room == 0) {
      infsim_outbuf_flush(w);
      room = sizeof w->buf;
    }
    size_t n = len < room ? len : room;
    memcpy(w->buf + w->len, text, n);
    w->len += n;
    text += n;
    len -= n;
  }
}

infsim_status infsim_outbuf_finish(infsim_outbuf *w, const char *path, infsim_error *err) {
  infsim_outbuf_flush(w);
  if (w->failed || fflush(w->fp) != 0 || ferror(w->fp))
    return infsim_fail(err, INFSIM_EIO, "%s: cannot write", path);
  return INFSIM_OK;
}
