/*
** test_trace_csv.c: the trace CSV reader and writer, exact second parsing,
** and trace statistics.
**
** Truth: arrival nanoseconds worked out by hand from the decimal text;
** every malformed-input class with the exact FILE:LINE: FIELD it must name;
** write -> read identity on random traces; nearest-rank percentiles and
** peak rates computed by hand for a small trace.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <dirent.h>

#include "infsim/text.h"
#include "infsim/trace.h"

typedef struct {
  char dir[256];
  char path[512];
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  snprintf(f->dir, sizeof f->dir, "/tmp/infsim_trace_csv_XXXXXX");
  if (mkdtemp(f->dir) == NULL) return -1;
  snprintf(f->path, sizeof f->path, "%s/t.csv", f->dir);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  DIR *d = opendir(f->dir);
  struct dirent *e;
  char p[800];
  while (d != NULL && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    snprintf(p, sizeof p, "%s/%s", f->dir, e->d_name);
    unlink(p);
  }
  if (d != NULL) closedir(d);
  rmdir(f->dir);
  free(f);
  return 0;
}

static void write_text(const char *path, const char *text) {
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  fputs(text, fp);
  fclose(fp);
}

static int count_files(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

static void test_seconds_exact(void **state) {
  (void)state;
  static const struct {
    const char *text;
    int64_t ns;
  } ok[] = {
      {"0", 0},
      {"0.1", 100000000},
      {"0.052", 52000000},
      {"3435.948056", INT64_C(3435948056000)},
      {"86399.123456789", INT64_C(86399123456789)},
      {"1.9999999994", INT64_C(1999999999)}, /* tenth digit 4: rounds down */
      {"1.9999999995", INT64_C(2000000000)}, /* tenth digit 5: half up */
      {"0.0000000005", 1},
      {"0.00000000049", 0},
      {"007.25", INT64_C(7250000000)},
      {"5.", INT64_C(5000000000)},
      {".5", 500000000},
      {"1e-3", 1000000},
      {"1.5E+3", INT64_C(1500000000000)},
      {"2.5e1", INT64_C(25000000000)},
      {"1000000000", INT64_C(1000000000000000000)}, /* the bound itself */
      {"0.30000000000000004", 300000000},           /* what %.17g prints for 0.1+0.2 */
      {"999999999.999999999", INT64_C(999999999999999999)}, /* the plain form's largest */
      {"0", 0},
      {"12", INT64_C(12000000000)},
      {"1.000000001", INT64_C(1000000001)},
      {"1.0000000015", INT64_C(1000000002)}, /* ten fractional digits: rounded */
      {"0000000000012.5", INT64_C(12500000000)},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    int64_t ns = -1;
    const char *why = NULL;
    bool good = infsim_parse_seconds_ns(ok[i].text, strlen(ok[i].text), &ns, &why);
    if (!good || ns != ok[i].ns) fail_msg("'%s': got %lld (%s), want %lld", ok[i].text, (long long)ns, why ? why : "", (long long)ok[i].ns);
  }
  static const char *const bad[] = {"", "-1", "+1", "abc", "1e", "1e+", "1.2.3", "1,5", "nan", "inf",
                                    "1000000000.000000001", "1e10", " 1", "0x10", "1 2"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int64_t ns;
    const char *why = NULL;
    if (infsim_parse_seconds_ns(bad[i], strlen(bad[i]), &ns, &why)) fail_msg("'%s' accepted as %lld", bad[i], (long long)ns);
    assert_non_null(why);
  }
}

/* format then parse is the identity on nanoseconds (xorshift-drawn values). */
static void test_seconds_round_trip(void **state) {
  (void)state;
  uint64_t x = 88172645463325252ULL;
  char buf[32];
  for (int i = 0; i < 200000; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    int64_t ns = (int64_t)(x % (uint64_t)(INFSIM_TRACE_MAX_ARRIVAL_S * INT64_C(1000000000)));
    if (i % 3 == 0) ns -= ns % 1000000; /* also whole milliseconds: trailing zeros trimmed */
    int64_t back = -1;
    const char *why;
    infsim_format_seconds(ns, buf);
    assert_true(infsim_parse_seconds_ns(buf, strlen(buf), &back, &why));
    assert_int_equal(back, ns);
  }
  assert_string_equal(infsim_format_seconds(1, buf), "0.000000001");
  assert_string_equal(infsim_format_seconds(INT64_C(1500000000), buf), "1.5");
  assert_string_equal(infsim_format_seconds(INT64_C(3000000000), buf), "3");
}

static void test_read_extra_columns_and_quotes(void **state) {
  fixture *f = *state;
  /* byte order mark, extra columns before and after, blanks, quotes, CRLF, blank lines */
  write_text(f->path, "\xEF\xBB\xBF" "id, output_tokens ,\"arrival_time_s\",prefix_hashes,prompt_tokens\r\n"
                      "a,10,0.5,\"1 2 3\",100\r\n"
                      "\r\n"
                      "b,20,0.5,\"say \"\"hi\"\", 4\",200\r\n"
                      "c,1,1.25,,1\n"
                      "\n");
  infsim_trace t;
  infsim_error err = {0};
  assert_int_equal(infsim_trace_read_csv(f->path, &t, &err), INFSIM_OK);
  assert_int_equal(t.count, 3);
  assert_int_equal(t.requests[0].arrival_ns, 500000000);
  assert_int_equal(t.requests[0].prompt_tokens, 100);
  assert_int_equal(t.requests[0].output_tokens, 10);
  assert_int_equal(t.requests[1].arrival_ns, 500000000); /* ties allowed */
  assert_int_equal(t.requests[1].prompt_tokens, 200);
  assert_int_equal(t.requests[2].arrival_ns, 1250000000);
  assert_int_equal(t.requests[2].output_tokens, 1);
  infsim_trace_free(&t);
  /* a byte order mark is dropped only where it opens the file */
  write_text(f->path, "arrival_time_s,prompt_tokens,output_tokens\n\xEF\xBB\xBF" "0.5,100,10\n");
  assert_int_equal(infsim_trace_read_csv(f->path, &t, &err), INFSIM_EINPUT);
  assert_non_null(strstr(err.msg, ":2: arrival_time_s: not a number"));
}

/* Each malformed class: exit status bad input, the exact FILE:LINE: FIELD prefix. */
static void test_read_malformed(void **state) {
  fixture *f = *state;
  static const struct {
    const char *text;
    const char *want; /* after "PATH:" */
  } cases[] = {
      {"arrival_time_s,prompt_tokens,output_tokens\n0.5,100,10\n0.7,x,10\n", "3: prompt_tokens: not an integer: 'x'"},
      {"arrival_time_s,prompt_tokens,output_tokens\n0.5,100,0\n", "2: output_tokens: must be >= 1, got '0'"},
      {"arrival_time_s,prompt_tokens,output_tokens\n0.5,-4,1\n", "2: prompt_tokens: negative: '-4'"},
      {"arrival_time_s,prompt_tokens,output_tokens\n0.5,1.5,1\n", "2: prompt_tokens: not an integer: '1.5'"},
      {"arrival_time_s,prompt_tokens,output_tokens\n0.5,,1\n", "2: prompt_tokens: empty: ''"},
      {"arrival_time_s,prompt_tokens,output_tokens\n0.5,99999999999,1\n", "2: prompt_tokens: out of range"},
      {"arrival_time_s,prompt_tokens,output_tokens\n0.5,100\n", "2: output_tokens: missing (the row has 2 fields)"},
      {"arrival_time_s,prompt_tokens,output_tokens\nsoon,1,1\n", "2: arrival_time_s: not a number: 'soon'"},
      {"arrival_time_s,prompt_tokens,output_tokens\n-0.5,1,1\n", "2: arrival_time_s: negative: '-0.5'"},
      {"arrival_time_s,prompt_tokens,output_tokens\n2,1,1\n\n1.999999999,1,1\n",
       "4: arrival_time_s: goes back in time (1.999999999 s after 2 s on line 2)"},
      {"arrival_time_s,prompt_tokens,output_tokens\n1,\"1,1\n", "2: unterminated quoted field"},
      {"arrival_time_s,prompt_tokens\n1,1\n", "1: header: missing column 'output_tokens'"},
      {"time,prompt_tokens,output_tokens\n1,1,1\n", "1: header: missing column 'arrival_time_s'"},
      {"arrival_time_s,prompt_tokens,output_tokens\n", "1: no requests after the header"},
      {"", "1: header: the file is empty"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    write_text(f->path, cases[i].text);
    infsim_trace t;
    infsim_error err = {0};
    char want[700];
    snprintf(want, sizeof want, "%s:%s", f->path, cases[i].want);
    infsim_status st = infsim_trace_read_csv(f->path, &t, &err);
    if (st != INFSIM_EINPUT || strncmp(err.msg, want, strlen(want)) != 0)
      fail_msg("case %zu: status %d, message '%s', want prefix '%s'", i, st, err.msg, want);
    assert_null(t.requests);
    assert_int_equal(t.count, 0);
  }
  infsim_trace t;
  infsim_error err = {0};
  char missing[600];
  snprintf(missing, sizeof missing, "%s/none.csv", f->dir);
  assert_int_equal(infsim_trace_read_csv(missing, &t, &err), INFSIM_EINPUT);
  assert_non_null(strstr(err.msg, "none.csv: cannot open"));
}

static void test_write_read_round_trip(void **state) {
  fixture *f = *state;
  infsim_trace t = {0};
  infsim_error err = {0};
  uint64_t x = 12345;
  int64_t at = 0;
  for (int i = 0; i < 5000; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    at += (int64_t)(x % 3000000000ULL) * (i % 7 != 0); /* some ties */
    infsim_trace_request r = {at, 1 + (int64_t)(x % 100000), 1 + (int64_t)((x >> 20) % 5000)};
    assert_int_equal(infsim_trace_append(&t, r, &err), INFSIM_OK);
  }
  assert_int_equal(infsim_trace_write_csv(f->path, &t, &err), INFSIM_OK);
  assert_int_equal(count_files(f->dir), 1); /* no temporary file left */
  infsim_trace back;
  assert_int_equal(infsim_trace_read_csv(f->path, &back, &err), INFSIM_OK);
  assert_int_equal(back.count, t.count);
  assert_memory_equal(back.requests, t.requests, t.count * sizeof t.requests[0]);
  infsim_trace_free(&back);
  /* The same rows dressed so that the plain-row path declines them (blanks,
   * quotes, CRLF, an extra column, exponents) read back the same. */
  FILE *fp = fopen(f->path, "w");
  assert_non_null(fp);
  fputs("arrival_time_s,prompt_tokens,output_tokens\n", fp);
  for (size_t i = 0; i < t.count; i++) {
    const infsim_trace_request *r = &t.requests[i];
    char sec[32];
    infsim_format_seconds(r->arrival_ns, sec);
    long long p = (long long)r->prompt_tokens, o = (long long)r->output_tokens;
    switch (i % 6) {
    case 0: fprintf(fp, "%s,%lld,%lld\n", sec, p, o); break;
    case 1: fprintf(fp, " %s , %lld,%lld \n", sec, p, o); break;
    case 2: fprintf(fp, "\"%s\",\"%lld\",%lld\r\n", sec, p, o); break;
    case 3: fprintf(fp, "%s,%lld,%lld,extra\n", sec, p, o); break;
    case 4: fprintf(fp, "%se0,%lld,%lld\n", sec, p, o); break;
    default: fprintf(fp, "%s,%lld,%lld\t\n", sec, p, o); break;
    }
  }
  assert_int_equal(fclose(fp), 0);
  assert_int_equal(infsim_trace_read_csv(f->path, &back, &err), INFSIM_OK);
  assert_int_equal(back.count, t.count);
  assert_memory_equal(back.requests, t.requests, t.count * sizeof t.requests[0]);
  infsim_trace_free(&back);

  /* A failed write leaves nothing: the destination directory does not exist. */
  char bad[600];
  snprintf(bad, sizeof bad, "%s/no/such/dir/t.csv", f->dir);
  assert_int_not_equal(infsim_trace_write_csv(bad, &t, &err), INFSIM_OK);
  assert_int_equal(count_files(f->dir), 1);
  infsim_trace_free(&t);
}

/* Hand-computed: 10 requests, arrivals 0, 0.2, 0.9 | 1.0 ... ; lengths 1..10 shuffled. */
static void test_stats(void **state) {
  (void)state;
  static const int64_t at_ms[10] = {0, 200, 900, 1000, 1100, 1200, 1300, 2500, 61000, 61500};
  static const int64_t prompt[10] = {7, 3, 10, 1, 5, 9, 2, 8, 4, 6};
  infsim_trace t = {0};
  infsim_error err = {0};
  for (int i = 0; i < 10; i++) {
    infsim_trace_request r = {at_ms[i] * 1000000, prompt[i], 100 - i};
    assert_int_equal(infsim_trace_append(&t, r, &err), INFSIM_OK);
  }
  infsim_trace_stats s;
  assert_int_equal(infsim_trace_compute_stats(&t, &s, &err), INFSIM_OK);
  assert_int_equal(s.requests, 10);
  assert_true(s.duration_s == 61.5);
  assert_true(s.mean_rps == 10 / 61.5);
  assert_int_equal(s.peak_per_s, 4);   /* [1 s, 2 s): 1.0, 1.1, 1.2, 1.3 */
  assert_int_equal(s.peak_per_min, 8); /* [0, 60 s) */
  /* nearest rank on 1..10: p50 = 5th = 5, p90 = 9th = 9, p99 = 10th = 10 */
  assert_int_equal(s.prompt.p50, 5);
  assert_int_equal(s.prompt.p90, 9);
  assert_int_equal(s.prompt.p99, 10);
  assert_int_equal(s.prompt.min, 1);
  assert_int_equal(s.prompt.max, 10);
  assert_int_equal(s.prompt.sum, 55);
  assert_true(s.prompt.mean == 5.5);
  assert_int_equal(s.output.p50, 95); /* 91..100: 5th smallest */
  infsim_trace_free(&t);
  infsim_trace empty = {0};
  assert_int_equal(infsim_trace_compute_stats(&empty, &s, &err), INFSIM_EINPUT);
}

/* The line reader (text.h): lines split exactly where the newlines are,
 * whatever the read-ahead block boundaries; the cap is exact; a NUL byte is
 * refused with its line and column. Truth: lines built here with known
 * lengths and contents. */
static void write_bytes(const char *path, const char *bytes, size_t n) {
  FILE *fp = fopen(path, "wb");
  assert_non_null(fp);
  assert_int_equal(fwrite(bytes, 1, n, fp), n);
  fclose(fp);
}

static void test_line_reader_bounds(void **state) {
  fixture *f = *state;
  /* Lines of lengths 0..300 and one of 200,000 bytes (across several
   * 64 KiB blocks), CRLF on odd lines, no newline after the last. */
  size_t cap = 300 * 302 + 200000 + 16, n = 0;
  char *buf = malloc(cap);
  for (int len = 0; len <= 300; len++) {
    for (int i = 0; i < len; i++) buf[n++] = (char)('a' + (len + i) % 26);
    if (len % 2 == 1) buf[n++] = '\r';
    buf[n++] = '\n';
  }
  for (int i = 0; i < 200000; i++) buf[n++] = (char)('0' + i % 10);
  write_bytes(f->path, buf, n);
  infsim_line_reader lr;
  infsim_error err = {0};
  assert_int_equal(infsim_lines_open(&lr, f->path, &err), INFSIM_OK);
  for (int len = 0; len <= 300; len++) {
    assert_int_equal(infsim_lines_next(&lr), 1);
    assert_int_equal(lr.line_no, len + 1);
    assert_int_equal(lr.len, (size_t)len);
    for (int i = 0; i < len; i++) assert_int_equal(lr.buf[i], 'a' + (len + i) % 26);
    assert_int_equal(lr.buf[len], '\0');
  }
  assert_int_equal(infsim_lines_next(&lr), 1);
  assert_int_equal(lr.len, 200000);
  assert_int_equal(lr.buf[199999], '9');
  assert_int_equal(infsim_lines_next(&lr), 0);
  infsim_lines_close(&lr);

  /* Exactly the cap is a line; one byte more is refused, naming the line. */
  size_t big = INFSIM_LINE_MAX_BYTES + 1;
  char *line = malloc(2 * big + 8);
  memset(line, 'x', INFSIM_LINE_MAX_BYTES);
  line[INFSIM_LINE_MAX_BYTES] = '\n';
  memset(line + big, 'y', big);
  line[2 * big] = '\n';
  write_bytes(f->path, line, 2 * big + 1);
  assert_int_equal(infsim_lines_open(&lr, f->path, &err), INFSIM_OK);
  assert_int_equal(infsim_lines_next(&lr), 1);
  assert_int_equal(lr.len, INFSIM_LINE_MAX_BYTES);
  assert_int_equal(infsim_lines_next(&lr), -1);
  assert_int_equal(infsim_lines_fail(&lr, &err), INFSIM_EINPUT);
  char want[600];
  snprintf(want, sizeof want, "%s:2: line longer than 1048576 bytes (not a text file?)", f->path);
  assert_string_equal(err.msg, want);
  infsim_lines_close(&lr);

  /* A NUL on line 3, column 4, past a block boundary. */
  n = 0;
  memcpy(buf, "h\n", 2), n = 2;
  memset(buf + n, 'z', 70000), n += 70000;
  buf[n++] = '\n';
  memcpy(buf + n, "abc\0def\n", 8), n += 8;
  write_bytes(f->path, buf, n);
  assert_int_equal(infsim_lines_open(&lr, f->path, &err), INFSIM_OK);
  assert_int_equal(infsim_lines_next(&lr), 1);
  assert_int_equal(infsim_lines_next(&lr), 1);
  assert_int_equal(infsim_lines_next(&lr), -1);
  assert_int_equal(infsim_lines_fail(&lr, &err), INFSIM_EINPUT);
  snprintf(want, sizeof want, "%s:3: NUL byte at column 4 (not a text file?)", f->path);
  assert_string_equal(err.msg, want);
  infsim_lines_close(&lr);
  free(line);
  free(buf);
}

/* A contract column named twice is ambiguous: refused, naming both. */
static void test_repeated_column(void **state) {
  fixture *f = *state;
  write_text(f->path, "output_tokens,arrival_time_s,prompt_tokens,output_tokens\n1,0,1,1\n");
  infsim_trace t;
  infsim_error err = {0};
  assert_int_equal(infsim_trace_read_csv(f->path, &t, &err), INFSIM_EINPUT);
  char want[600];
  snprintf(want, sizeof want, "%s:1: header: column 'output_tokens' appears twice (columns 1 and 4)", f->path);
  assert_string_equal(err.msg, want);
  /* Extra columns may repeat: only the three the reader uses must be unique. */
  write_text(f->path, "note,arrival_time_s,prompt_tokens,output_tokens,note\n,0,1,1,\n");
  assert_int_equal(infsim_trace_read_csv(f->path, &t, &err), INFSIM_OK);
  assert_int_equal(t.count, 1);
  infsim_trace_free(&t);
}

/* Rows of the plain shape with fields of every length the fast row
 * parser meets (1-10 integer digits, leading zeros, 1-9 decimals, counts
 * of 1-18 digits), so fields start and end at every offset of its 8-byte
 * reads: every value read equals the one worked out from the digits. */
static void test_plain_rows_every_length(void **state) {
  fixture *f = *state;
  enum { ROWS = 3000 };
  FILE *fp = fopen(f->path, "w");
  assert_non_null(fp);
  fputs("arrival_time_s,prompt_tokens,output_tokens\n", fp);
  int64_t *want = malloc(3 * ROWS * sizeof *want);
  assert_non_null(want);
  srand(15);
  for (int i = 0; i < ROWS; i++) {
    /* seconds: i, zero-padded to 1-10 digits; then 1-9 random decimals */
    int width = 1 + rand() % 10, decimals = 1 + rand() % 9;
    char frac[10];
    int64_t frac_ns = 0, scale = 100000000;
    for (int d = 0; d < decimals; d++, scale /= 10) {
      frac[d] = (char)('0' + rand() % 10);
      frac_ns += (frac[d] - '0') * scale;
    }
    frac[decimals] = '\0';
    if (width < 4 && i >= 10) width = 4;
    fprintf(fp, "%0*d.%s", width, i, frac);
    want[3 * i] = (int64_t)i * 1000000000 + frac_ns;
    for (int c = 1; c < 3; c++) {
      /* a count of 1-9 significant digits, zero-padded to at most 18 */
      int digits = 1 + rand() % 9, pad = rand() % 4 == 0 ? rand() % (19 - digits) : 0;
      int64_t v = 1 + rand() % 9;
      for (int d = 1; d < digits; d++) v = 10 * v + rand() % 10;
      if (v > INFSIM_TRACE_MAX_TOKENS) v = INFSIM_TRACE_MAX_TOKENS;
      fprintf(fp, ",%0*lld", digits + pad, (long long)v);
      want[3 * i + c] = v;
    }
    fputc('\n', fp);
  }
  fclose(fp);
  infsim_trace t;
  infsim_error err = {0};
  assert_int_equal(infsim_trace_read_csv(f->path, &t, &err), INFSIM_OK);
  assert_int_equal(t.count, ROWS);
  for (int i = 0; i < ROWS; i++) {
    assert_int_equal(t.requests[i].arrival_ns, want[3 * i]);
    assert_int_equal(t.requests[i].prompt_tokens, want[3 * i + 1]);
    assert_int_equal(t.requests[i].output_tokens, want[3 * i + 2]);
  }
  infsim_trace_free(&t);
  free(want);
  /* A non-digit where a digit was, at every place of the row: the bytes
   * just above '9' (whose nibbles look like a digit's) and just below '0'
   * included, and bytes of 0xFA and up (adding 6 carries out of them):
   * the row is refused, as the general parsers refuse it. */
  const char row[] = "1234567.123456789,123456789,98765";
  const char bad[] = {':', ';', '?', '/', 'a', (char)0xFA, (char)0xFF};
  write_text(f->path, "arrival_time_s,prompt_tokens,output_tokens\n1234567.123456789,123456789,98765\n");
  assert_int_equal(infsim_trace_read_csv(f->path, &t, &err), INFSIM_OK); /* as it is, the row is good */
  assert_int_equal(t.requests[0].arrival_ns, INT64_C(1234567123456789));
  assert_int_equal(t.requests[0].prompt_tokens, 123456789);
  infsim_trace_free(&t);
  for (size_t pos = 0; pos + 1 < sizeof row; pos++) {
    if (row[pos] < '0' || row[pos] > '9') continue;
    for (size_t b = 0; b < sizeof bad; b++) {
      char text[128];
      snprintf(text, sizeof text, "arrival_time_s,prompt_tokens,output_tokens\n%s\n", row);
      text[strlen("arrival_time_s,prompt_tokens,output_tokens\n") + pos] = bad[b];
      write_text(f->path, text);
      assert_int_equal(infsim_trace_read_csv(f->path, &t, &err), INFSIM_EINPUT);
    }
  }
}

/* Rows read where they lie in the reader's buffer, among lines that need
 * the general path (CRLF endings, blanks around fields, blank lines, a
 * last line without a newline), across many 64 KiB read-ahead blocks:
 * every value as written, and the line numbers in a later error message
 * counted over both paths. */
static void test_in_place_rows_and_line_numbers(void **state) {
  fixture *f = *state;
  enum { ROWS = 20000 };
  FILE *fp = fopen(f->path, "w");
  assert_non_null(fp);
  fputs("arrival_time_s,prompt_tokens,output_tokens\n", fp);
  int64_t line = 1, last_good_line = 0;
  for (int i = 0; i < ROWS; i++) {
    int64_t p = 1 + (i * 7919) % 4000, o = 1 + (i * 104729) % 2000;
    switch (i % 97) {
      case 3: fprintf(fp, "%d.%03d,%lld,%lld\r\n", i, i % 1000, (long long)p, (long long)o); break;
      case 5: fprintf(fp, " %d.%03d , %lld,%lld\n", i, i % 1000, (long long)p, (long long)o); break;
      case 7: fprintf(fp, "\n%d.%03d,%lld,%lld\n", i, i % 1000, (long long)p, (long long)o); line++; break;
      default: fprintf(fp, "%d.%03d,%lld,%lld\n", i, i % 1000, (long long)p, (long long)o);
    }
    line++;
  }
  last_good_line = line;
  fprintf(fp, "%d.5,1,1", ROWS + 1); /* no final newline */
  fclose(fp);
  infsim_trace t;
  infsim_error err = {0};
  assert_int_equal(infsim_trace_read_csv(f->path, &t, &err), INFSIM_OK);
  assert_int_equal(t.count, ROWS + 1);
  for (int i = 0; i < ROWS; i++) {
    if (t.requests[i].arrival_ns != (int64_t)i * 1000000000 + (int64_t)(i % 1000) * 1000000 ||
        t.requests[i].prompt_tokens != 1 + (i * 7919) % 4000 || t.requests[i].output_tokens != 1 + (i * 104729) % 2000)
      fail_msg("row %d read wrong", i);
  }
  assert_int_equal(t.requests[ROWS].arrival_ns, (int64_t)(ROWS + 1) * 1000000000 + 500000000);
  infsim_trace_free(&t);
  /* The same file with a row going back in time after the last one. */
  fp = fopen(f->path, "a");
  assert_non_null(fp);
  fputs("\n1.0,1,1\n", fp);
  fclose(fp);
  assert_int_equal(infsim_trace_read_csv(f->path, &t, &err), INFSIM_EINPUT);
  char want[256];
  snprintf(want, sizeof want, "t.csv:%lld: arrival_time_s: goes back in time (1 s after %d.5 s on line %lld)",
           (long long)last_good_line + 2, ROWS + 1, (long long)last_good_line + 1);
  if (strstr(err.msg, want) == NULL) fail_msg("got '%s', want '...%s'", err.msg, want);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_seconds_exact),
      cmocka_unit_test_setup_teardown(test_line_reader_bounds, setup, teardown),
      cmocka_unit_test_setup_teardown(test_repeated_column, setup, teardown),
      cmocka_unit_test(test_seconds_round_trip),
      cmocka_unit_test_setup_teardown(test_read_extra_columns_and_quotes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_read_malformed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_write_read_round_trip, setup, teardown),
      cmocka_unit_test(test_stats),
      cmocka_unit_test_setup_teardown(test_plain_rows_every_length, setup, teardown),
      cmocka_unit_test_setup_teardown(test_in_place_rows_and_line_numbers, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
