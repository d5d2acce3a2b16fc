/*
** test_numfmt.c: fast number formatting (base/numfmt.c) against printf.
**
** Every formatter must write exactly what snprintf writes for the same
** value ("%" PRIu64, "%" PRId64, and for fixed point the integer and
** remainder parts with the remainder zero-padded), at every digit count
** boundary (10^k - 1, 10^k, 10^k + 1), the type limits, and a few hundred
** thousand pseudo-random values spread over every magnitude; never more
** bytes than its stated maximum. The buffered writer must pass through
** every byte in order across many buffer flushes (and a string longer
** than its buffer), and report a failed write (/dev/full) as INFSIM_EIO.
*/
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "infsim/numfmt.h"

/* xorshift64*: a reproducible spread of values for the test only. */
static uint64_t next_rand(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 2685821657736338717ull;
}

static void check_u64(uint64_t v) {
  char got[64], want[64];
  char *end = infsim_fmt_u64(got, v);
  assert_true(end - got <= INFSIM_FMT_U64_MAX_BYTES);
  *end = '\0';
  snprintf(want, sizeof want, "%" PRIu64, v);
  if (strcmp(got, want) != 0) fail_msg("u64 %s: got '%s'", want, got);
}

static void check_i64(int64_t v) {
  char got[64], want[64];
  char *end = infsim_fmt_i64(got, v);
  assert_true(end - got <= INFSIM_FMT_I64_MAX_BYTES);
  *end = '\0';
  snprintf(want, sizeof want, "%" PRId64, v);
  if (strcmp(got, want) != 0) fail_msg("i64 %s: got '%s'", want, got);
}

static void check_fixed(int64_t v, int decimals) {
  char got[64], want[64];
  char *end = infsim_fmt_fixed(got, v, decimals);
  assert_true(end - got <= INFSIM_FMT_FIXED_MAX_BYTES);
  *end = '\0';
  /* Independent truth: printf of the two parts, in unsigned arithmetic. */
  uint64_t mag = v < 0 ? 0 - (uint64_t)v : (uint64_t)v, scale = 1;
  for (int i = 0; i < decimals; i++) scale *= 10;
  int w = snprintf(want, sizeof want, "%s%" PRIu64 ".%0*" PRIu64, v < 0 ? "-" : "", mag / scale, decimals, mag % scale);
  assert_true(w > 0 && (size_t)w < sizeof want);
  if (strcmp(got, want) != 0) fail_msg("fixed(%" PRId64 ", %d): got '%s', want '%s'", v, decimals, got, want);
}

static void check_all(uint64_t u) {
  check_u64(u);
  check_i64((int64_t)u);
  check_i64(-(int64_t)(u >> 1));
  for (int d = 1; d <= INFSIM_FMT_MAX_DECIMALS; d++) check_fixed((int64_t)u, d);
}

static void test_boundaries(void **state) {
  (void)state;
  uint64_t p = 1;
  for (int k = 0; k < 20; k++, p *= 10) {
    check_all(p - 1);
    check_all(p);
    check_all(p + 1);
  }
  check_all(0);
  check_all(UINT64_MAX);
  check_u64(UINT64_MAX - 1);
  check_i64(INT64_MAX);
  check_i64(INT64_MIN);
  check_i64(INT64_MIN + 1);
  check_i64(-1);
  for (int d = 1; d <= INFSIM_FMT_MAX_DECIMALS; d++) {
    check_fixed(INT64_MIN, d);
    check_fixed(INT64_MAX, d);
    check_fixed(-1, d);
    check_fixed(0, d);
  }
  /* What requests.csv shows: a time in ns as seconds. */
  char buf[32];
  *infsim_fmt_fixed(buf, 1500000000, 9) = '\0';
  assert_string_equal(buf, "1.500000000");
  *infsim_fmt_fixed(buf, 42, 9) = '\0';
  assert_string_equal(buf, "0.000000042");
}

static void test_random_values(void **state) {
  (void)state;
  uint64_t s = 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < 200000; i++) {
    uint64_t r = next_rand(&s);
    uint64_t v = r >> (r % 64); /* every magnitude, not only 19-20 digits */
    check_u64(v);
    check_i64((int64_t)v);
    check_fixed((int64_t)v, 9);
    check_fixed(-(int64_t)(v >> 1), 1 + (int)(r % INFSIM_FMT_MAX_DECIMALS));
  }
}

static void test_outbuf_roundtrip(void **state) {
  (void)state;
  FILE *fp = tmpfile();
  assert_non_null(fp);
  infsim_outbuf *w = malloc(sizeof *w);
  assert_non_null(w);
  infsim_outbuf_init(w, fp);
  /* The same rows through printf into memory: the expected file. */
  size_t cap = 8u << 20, used = 0;
  char *want = malloc(cap);
  assert_non_null(want);
  uint64_t s = 7;
  for (int i = 0; i < 100000; i++) {
    int64_t a = (int64_t)(next_rand(&s) >> 20), b = (int64_t)(next_rand(&s) >> 33) - 100000;
    char *p = infsim_outbuf_reserve(w, 64);
    p = infsim_fmt_fixed(p, a, 9);
    *p++ = ',';
    p = infsim_fmt_i64(p, b);
    *p++ = '\n';
    infsim_outbuf_commit(w, p);
    used += (size_t)snprintf(want + used, cap - used, "%" PRId64 ".%09" PRId64 ",%" PRId64 "\n", a / 1000000000,
                             a % 1000000000, b);
  }
  /* A string longer than the buffer goes out whole. */
  size_t long_len = INFSIM_OUTBUF_BYTES * 2 + 17;
  char *long_text = malloc(long_len);
  assert_non_null(long_text);
  for (size_t i = 0; i < long_len; i++) long_text[i] = (char)('a' + i % 26);
  infsim_outbuf_str(w, long_text, long_len);
  assert_true(used + long_len <= cap);
  memcpy(want + used, long_text, long_len);
  used += long_len;
  infsim_error err = {0};
  assert_int_equal(infsim_outbuf_finish(w, "tmp", &err), INFSIM_OK);
  long size = ftell(fp);
  assert_int_equal(size, (long)used);
  rewind(fp);
  char *got = malloc(used);
  assert_non_null(got);
  assert_int_equal(fread(got, 1, used, fp), used);
  assert_memory_equal(got, want, used);
  free(got);
  free(long_text);
  free(want);
  free(w);
  fclose(fp);
}

static void test_outbuf_write_failure(void **state) {
  (void)state;
  FILE *fp = fopen("/dev/full", "w");
  if (fp == NULL) skip();
  infsim_outbuf *w = malloc(sizeof *w);
  assert_non_null(w);
  infsim_outbuf_init(w, fp);
  for (int i = 0; i < 20000; i++) {
    char *p = infsim_outbuf_reserve(w, 32);
    p = infsim_fmt_u64(p, (uint64_t)i * 1234567u);
    *p++ = '\n';
    infsim_outbuf_commit(w, p);
  }
  infsim_error err = {0};
  assert_int_equal(infsim_outbuf_finish(w, "out/requests.csv", &err), INFSIM_EIO);
  assert_non_null(strstr(err.msg, "out/requests.csv"));
  free(w);
  fclose(fp);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_boundaries),
      cmocka_unit_test(test_random_values),
      cmocka_unit_test(test_outbuf_roundtrip),
      cmocka_unit_test(test_outbuf_write_failure),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
