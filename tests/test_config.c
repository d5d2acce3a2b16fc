/*
** test_config.c: the dotted-key configuration (config.h).
**
** Each test writes its YAML fixtures into a fresh temporary directory and
** checks the flattened keys, their origins (file:line counted by hand from
** the fixture text), --set overrides, every error class with the exact
** message, range checks, the resolved JSON (types and nesting, compared with
** a hand-written JSON text) and the detection of unread keys.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "infsim/config.h"

enum { MAX_FIXTURES = 16, PATH_BYTES = 512 };

typedef struct {
  char dir[PATH_BYTES];
  char files[MAX_FIXTURES][PATH_BYTES];
  int n_files;
  infsim_config *cfg;
  infsim_error err;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  if (f == NULL) return -1;
  const char *tmp = getenv("TMPDIR");
  /* Leaves room below PATH_BYTES for the fixture names. */
  snprintf(f->dir, sizeof f->dir, "%.300s/infsim_config_XXXXXX", tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
  if (mkdtemp(f->dir) == NULL) {
    free(f);
    return -1;
  }
  f->cfg = infsim_config_new();
  *state = f;
  return f->cfg != NULL ? 0 : -1;
}

static int teardown(void **state) {
  fixture *f = *state;
  for (int i = 0; i < f->n_files; i++) unlink(f->files[i]);
  rmdir(f->dir);
  infsim_config_free(f->cfg);
  free(f);
  return 0;
}

/* Writes text to DIR/name and returns the path (owned by the fixture). */
static const char *write_yaml(fixture *f, const char *name, const char *text) {
  assert_true(f->n_files < MAX_FIXTURES);
  char built[PATH_BYTES];
  int len = snprintf(built, sizeof built, "%s/%.64s", f->dir, name);
  assert_true(len > 0 && len < PATH_BYTES);
  char *path = f->files[f->n_files++];
  memcpy(path, built, (size_t)len + 1);
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  assert_int_equal(fputs(text, fp) >= 0, 1);
  assert_int_equal(fclose(fp), 0);
  return path;
}

/* Loads text as a YAML file that must fail, and checks the message equals
 * "PATH" followed by suffix. */
static void expect_load_error(fixture *f, const char *text, const char *suffix) {
  const char *path = write_yaml(f, "bad.yaml", text);
  assert_int_equal(infsim_config_load_yaml(f->cfg, path, &f->err), INFSIM_EINPUT);
  char want[1024];
  snprintf(want, sizeof want, "%s%s", path, suffix);
  assert_string_equal(f->err.msg, want);
  f->n_files--; /* the next write reuses the name */
  unlink(path);
}

static void expect_origin(const infsim_config *cfg, const char *key, const char *path, int line) {
  char want[1024];
  snprintf(want, sizeof want, "%s:%d", path, line);
  assert_string_equal(infsim_config_origin(cfg, key), want);
}

static const char *value_of(infsim_config *cfg, const char *key) {
  const char *v = NULL;
  infsim_error err;
  assert_int_equal(infsim_config_string(cfg, key, "<absent>", &v, &err), INFSIM_OK);
  return v;
}

static const char k_sample[] = "# a comment line\n"                      /* 1 */
                               "seed: 42\n"                              /* 2 */
                               "scheduler:\n"                            /* 3 */
                               "  max_batch_size: 64\n"                  /* 4 */
                               "  block_tokens: 16\n"                    /* 5 */
                               "policy:\n"                               /* 6 */
                               "  name: infinite-llm\n"                  /* 7 */
                               "  knobs:\n"                              /* 8 */
                               "    alpha: 0.5   # trailing comment\n"   /* 9 */
                               "list: [1, 2, 3]\n"                       /* 10 */
                               "block_list:\n"                           /* 11 */
                               "  - a\n"                                 /* 12 */
                               "  - 'b c'\n"                             /* 13 */
                               "empty:\n"                                /* 14 */
                               "quoted: \"x: y\"\n";                     /* 15 */

static void test_flatten_keys_lines_and_sequences(void **state) {
  fixture *f = *state;
  const char *path = write_yaml(f, "c.yaml", k_sample);
  assert_int_equal(infsim_config_load_yaml(f->cfg, path, &f->err), INFSIM_OK);
  expect_origin(f->cfg, "seed", path, 2);
  expect_origin(f->cfg, "scheduler.max_batch_size", path, 4);
  expect_origin(f->cfg, "scheduler.block_tokens", path, 5);
  expect_origin(f->cfg, "policy.name", path, 7);
  expect_origin(f->cfg, "policy.knobs.alpha", path, 9);
  expect_origin(f->cfg, "list", path, 10);
  expect_origin(f->cfg, "block_list", path, 11);
  assert_string_equal(infsim_config_origin(f->cfg, "nothing.here"), "default");
  /* A mapping's origin is that of its first key. */
  expect_origin(f->cfg, "policy", path, 7);

  assert_string_equal(value_of(f->cfg, "policy.knobs.alpha"), "0.5");
  assert_string_equal(value_of(f->cfg, "list"), "1,2,3");
  assert_string_equal(value_of(f->cfg, "block_list"), "a,b c");
  assert_string_equal(value_of(f->cfg, "empty"), "");
  assert_string_equal(value_of(f->cfg, "quoted"), "x: y");

  assert_true(infsim_config_has(f->cfg, "scheduler"));
  assert_true(infsim_config_has(f->cfg, "scheduler.block_tokens"));
  assert_true(infsim_config_has(f->cfg, "policy.knobs"));
  assert_false(infsim_config_has(f->cfg, "sched")); /* prefixes count only at dots */
  assert_false(infsim_config_has(f->cfg, "scheduler.block"));
  assert_false(infsim_config_has_value(f->cfg, "scheduler"));
  assert_true(infsim_config_has_value(f->cfg, "seed"));

  /* Iteration visits exactly the keys below the prefix, in file order. */
  const char *want[] = {"policy.name", "policy.knobs.alpha"};
  size_t pos = 0, n = 0;
  for (const char *k; (k = infsim_config_next_key(f->cfg, "policy", &pos)) != NULL; n++) {
    assert_true(n < 2);
    assert_string_equal(k, want[n]);
  }
  assert_int_equal(n, 2);
  pos = 0;
  n = 0;
  while (infsim_config_next_key(f->cfg, NULL, &pos) != NULL) n++;
  assert_int_equal(n, 9);
}

static void test_empty_file_is_empty_config(void **state) {
  fixture *f = *state;
  const char *path = write_yaml(f, "c.yaml", "# only a comment\n");
  assert_int_equal(infsim_config_load_yaml(f->cfg, path, &f->err), INFSIM_OK);
  size_t pos = 0;
  assert_null(infsim_config_next_key(f->cfg, NULL, &pos));
  assert_int_equal(infsim_config_check_unused(f->cfg, &f->err), INFSIM_OK);
}

static void test_set_overrides_file(void **state) {
  fixture *f = *state;
  const char *path = write_yaml(f, "c.yaml", k_sample);
  assert_int_equal(infsim_config_load_yaml(f->cfg, path, &f->err), INFSIM_OK);
  const char *old = value_of(f->cfg, "policy.name");
  assert_int_equal(infsim_config_set(f->cfg, " policy.name = vllm-multi ", &f->err), INFSIM_OK);
  assert_int_equal(infsim_config_set(f->cfg, "scheduler.max_batch_size=8", &f->err), INFSIM_OK);
  assert_int_equal(infsim_config_set(f->cfg, "workload.expr=a=b", &f->err), INFSIM_OK);
  /* A string handed out earlier outlives the override that replaced it. */
  assert_string_equal(old, "infinite-llm");
  assert_string_equal(value_of(f->cfg, "policy.name"), "vllm-multi");
  assert_string_equal(value_of(f->cfg, "workload.expr"), "a=b");
  assert_string_equal(infsim_config_origin(f->cfg, "policy.name"), "--set");
  int64_t v = 0;
  assert_int_equal(infsim_config_int(f->cfg, "scheduler.max_batch_size", 1, 1, 1000, &v, &f->err), INFSIM_OK);
  assert_int_equal(v, 8);
  /* A later file overrides too, with its own origin. */
  const char *second = write_yaml(f, "d.yaml", "\nscheduler: {max_batch_size: 32}\n");
  assert_int_equal(infsim_config_load_yaml(f->cfg, second, &f->err), INFSIM_OK);
  expect_origin(f->cfg, "scheduler.max_batch_size", second, 2);
  assert_int_equal(infsim_config_int(f->cfg, "scheduler.max_batch_size", 1, 1, 1000, &v, &f->err), INFSIM_OK);
  assert_int_equal(v, 32);
}

static void test_override_replaces_whole_subtree(void **state) {
  fixture *f = *state;
  const char *path = write_yaml(f, "c.yaml", "model:\n  layers: 2\n  hidden: 256\ngpu: h100-sxm\n");
  assert_int_equal(infsim_config_load_yaml(f->cfg, path, &f->err), INFSIM_OK);
  assert_true(infsim_config_has(f->cfg, "model"));
  assert_false(infsim_config_has_value(f->cfg, "model"));
  assert_int_equal(infsim_config_set(f->cfg, "model=llama2-7b", &f->err), INFSIM_OK);
  assert_true(infsim_config_has_value(f->cfg, "model"));
  assert_false(infsim_config_has(f->cfg, "model.layers"));
  assert_false(infsim_config_has(f->cfg, "model.hidden"));
  /* Not back: a key below a value would drop the value's meaning (the
   * built-in's shape), so it clashes, naming both origins, and adds nothing. */
  assert_int_equal(infsim_config_set(f->cfg, "model.layers=4", &f->err), INFSIM_EINPUT);
  assert_string_equal(f->err.msg, "--set: key 'model.layers' clashes with 'model' at --set (a key is either a value "
                                  "or a mapping; set 'model' itself to replace it)");
  assert_true(infsim_config_has_value(f->cfg, "model"));
  assert_false(infsim_config_has(f->cfg, "model.layers"));
  size_t pos = 0, n = 0;
  while (infsim_config_next_key(f->cfg, NULL, &pos) != NULL) n++;
  assert_int_equal(n, 2); /* gpu and model */
}

/* The same between files: a later file's key below an earlier file's value
 * names both lines, and none of the later file's keys go in. */
static void test_later_file_key_below_value(void **state) {
  fixture *f = *state;
  const char *first = write_yaml(f, "a.yaml", "model: tiny\n");
  assert_int_equal(infsim_config_load_yaml(f->cfg, first, &f->err), INFSIM_OK);
  const char *second = write_yaml(f, "b.yaml", "seed: 3\nmodel:\n  layers: 4\n");
  assert_int_equal(infsim_config_load_yaml(f->cfg, second, &f->err), INFSIM_EINPUT);
  char want[1024];
  snprintf(want, sizeof want,
           "%s:3: key 'model.layers' clashes with 'model' at %s:1 (a key is either a value or a mapping; set "
           "'model' itself to replace it)",
           second, first);
  assert_string_equal(f->err.msg, want);
  assert_false(infsim_config_has(f->cfg, "seed"));
  assert_true(infsim_config_has_value(f->cfg, "model"));
}

static void test_set_rejects_malformed(void **state) {
  fixture *f = *state;
  const char *bad[] = {"novalue", "=5", "  =5", ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(infsim_config_set(f->cfg, bad[i], &f->err), INFSIM_EINPUT);
    char want[256];
    snprintf(want, sizeof want, "--set: expected key=value, got '%s'", bad[i]);
    assert_string_equal(f->err.msg, want);
  }
  const char *bad_keys[] = {"a..b=1", ".a=1", "a.=1", "a b=1"};
  for (size_t i = 0; i < sizeof bad_keys / sizeof bad_keys[0]; i++) {
    assert_int_equal(infsim_config_set(f->cfg, bad_keys[i], &f->err), INFSIM_EINPUT);
    assert_non_null(strstr(f->err.msg, "--set: bad key '"));
  }
  size_t pos = 0;
  assert_null(infsim_config_next_key(f->cfg, NULL, &pos)); /* nothing was added */
}

static void test_yaml_errors_name_file_and_line(void **state) {
  fixture *f = *state;
  expect_load_error(f, "a: [1, 2\nb: 3\n",
                    ":2: syntax error: did not find expected ',' or ']' (while parsing a flow sequence at line 1)");
  expect_load_error(f, "a:\n  b: 1\n c: 2\n",
                    ":3: syntax error: did not find expected key (while parsing a block mapping at line 1)");
  expect_load_error(f, "\njust a string\n", ":2: the top level must be a mapping of keys to values");
  expect_load_error(f, "- a\n- b\n", ":1: the top level must be a mapping of keys to values");
  expect_load_error(f, "x: 1\nphases:\n  - {rate: 1}\n", ":3: phases: a sequence may hold only scalars, not mappings");
  expect_load_error(f, "x: [[1, 2]]\n", ":1: x: a sequence may hold only scalars, not sequences");
  expect_load_error(f, "x: ['a,b']\n", ":1: x: sequence item 'a,b' may not contain a comma");
  expect_load_error(f, "s:\n  k: 1\n  j: 2\n  k: 3\n", ":4: duplicate key 's.k' (first at line 2)");
  expect_load_error(f, "a.b: 1\na:\n  b: 2\n", ":3: duplicate key 'a.b' (first at line 1)");
  expect_load_error(f, "model: tiny\nmodel.layers: 2\n",
                    ":2: key 'model.layers' clashes with 'model' at line 1 (a key is either a value or a mapping)");
  expect_load_error(f, "a: 1\n---\nb: 2\n", ":3: more than one YAML document");
  expect_load_error(f, "? [a, b]\n: 1\n", ":1: keys must be plain scalars");
  expect_load_error(f, "\"a b\": 1\n",
                    ":1: bad key 'a b' (keys are dot-separated names without blanks or '=')");
  /* An alias that contains itself ends at the depth bound, not in a crash. */
  const char *path = write_yaml(f, "loop.yaml", "a: &x {b: *x}\n");
  assert_int_equal(infsim_config_load_yaml(f->cfg, path, &f->err), INFSIM_EINPUT);
  assert_non_null(strstr(f->err.msg, "nested deeper than 32 levels"));
  /* A missing file names the path. */
  char missing[PATH_BYTES + 16];
  snprintf(missing, sizeof missing, "%s/none.yaml", f->dir);
  assert_int_equal(infsim_config_load_yaml(f->cfg, missing, &f->err), INFSIM_EINPUT);
  assert_memory_equal(f->err.msg, missing, strlen(missing));
  assert_non_null(strstr(f->err.msg, ": cannot open: "));
  /* No failed file left anything behind. */
  size_t pos = 0;
  assert_null(infsim_config_next_key(f->cfg, NULL, &pos));
}

static void test_int_parsing_and_ranges(void **state) {
  fixture *f = *state;
  const char *path = write_yaml(f, "c.yaml",
                                "s:\n"               /* 1 */
                                "  a: 12\n"          /* 2 */
                                "  b: 1e6\n"         /* 3 */
                                "  c: 2.0\n"         /* 4 */
                                "  d: -3\n"          /* 5 */
                                "  e: 1.5\n"         /* 6 */
                                "  f: abc\n"         /* 7 */
                                "  g: 0x10\n"        /* 8 */
                                "  h: 1000001\n"     /* 9 */
                                "  i: 99999999999999999999\n" /* 10 */
                                "  j: +7\n"          /* 11 */
                                "  k: 12abc\n");     /* 12 */
  assert_int_equal(infsim_config_load_yaml(f->cfg, path, &f->err), INFSIM_OK);
  int64_t v = 0;
  assert_int_equal(infsim_config_int(f->cfg, "s.a", 1, 1, 1000000, &v, &f->err), INFSIM_OK);
  assert_int_equal(v, 12);
  assert_int_equal(infsim_config_int(f->cfg, "s.b", 1, 1, 1000000, &v, &f->err), INFSIM_OK);
  assert_int_equal(v, 1000000);
  assert_int_equal(infsim_config_int(f->cfg, "s.c", 1, 1, 1000000, &v, &f->err), INFSIM_OK);
  assert_int_equal(v, 2);
  assert_int_equal(infsim_config_int(f->cfg, "s.d", 0, -10, 10, &v, &f->err), INFSIM_OK);
  assert_int_equal(v, -3);
  assert_int_equal(infsim_config_int(f->cfg, "s.j", 0, -10, 10, &v, &f->err), INFSIM_OK);
  assert_int_equal(v, 7);
  /* Below min: the same message as a parse failure, naming line 5. */
  v = 99;
  assert_int_equal(infsim_config_int(f->cfg, "s.d", 1, 1, 1000000, &v, &f->err), INFSIM_EINPUT);
  assert_int_equal(v, 99); /* untouched on failure */
  char want[1024];
  snprintf(want, sizeof want, "%s:5: s.d: expected an integer in [1, 1000000], got '-3'", path);
  assert_string_equal(f->err.msg, want);
  const struct {
    const char *key, *text;
    int line;
  } bad[] = {{"s.e", "1.5", 6}, {"s.f", "abc", 7}, {"s.g", "0x10", 8},
             {"s.h", "1000001", 9}, {"s.i", "99999999999999999999", 10}, {"s.k", "12abc", 12}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(infsim_config_int(f->cfg, bad[i].key, 1, 1, 1000000, &v, &f->err), INFSIM_EINPUT);
    snprintf(want, sizeof want, "%s:%d: %s: expected an integer in [1, 1000000], got '%s'", path, bad[i].line,
             bad[i].key, bad[i].text);
    assert_string_equal(f->err.msg, want);
  }
  /* The --set origin replaces FILE:LINE. */
  assert_int_equal(infsim_config_set(f->cfg, "scheduler.max_batch_size=abc", &f->err), INFSIM_OK);
  assert_int_equal(infsim_config_int(f->cfg, "scheduler.max_batch_size", 64, 1, 1000000, &v, &f->err),
                   INFSIM_EINPUT);
  assert_string_equal(f->err.msg, "--set: scheduler.max_batch_size: expected an integer in [1, 1000000], got 'abc'");
  /* The full int64 range parses at both ends. */
  assert_int_equal(infsim_config_set(f->cfg, "big=9223372036854775807", &f->err), INFSIM_OK);
  assert_int_equal(infsim_config_int(f->cfg, "big", 0, INT64_MIN, INT64_MAX, &v, &f->err), INFSIM_OK);
  assert_true(v == INT64_MAX);
  assert_int_equal(infsim_config_set(f->cfg, "big=-9223372036854775808", &f->err), INFSIM_OK);
  assert_int_equal(infsim_config_int(f->cfg, "big", 0, INT64_MIN, INT64_MAX, &v, &f->err), INFSIM_OK);
  assert_true(v == INT64_MIN);
  assert_int_equal(infsim_config_set(f->cfg, "big=1e19", &f->err), INFSIM_OK);
  assert_int_equal(infsim_config_int(f->cfg, "big", 0, INT64_MIN, INT64_MAX, &v, &f->err), INFSIM_EINPUT);
}

static void test_double_bool_enum(void **state) {
  fixture *f = *state;
  const char *path = write_yaml(f, "c.yaml",
                                "x:\n"              /* 1 */
                                "  r: 0.25\n"       /* 2 */
                                "  e: 1e-3\n"       /* 3 */
                                "  i: .inf\n"       /* 4 */
                                "  n: nan\n"        /* 5 */
                                "  big: 2.5\n"      /* 6 */
                                "  t: Yes\n"        /* 7 */
                                "  o: OFF\n"        /* 8 */
                                "  z: 0\n"          /* 9 */
                                "  m: maybe\n"      /* 10 */
                                "  p: vllm-single\n" /* 11 */
                                "  q: vllm\n");     /* 12 */
  assert_int_equal(infsim_config_load_yaml(f->cfg, path, &f->err), INFSIM_OK);
  double d = 0;
  assert_int_equal(infsim_config_double(f->cfg, "x.r", 0, 0, 1, &d, &f->err), INFSIM_OK);
  assert_true(d == 0.25);
  assert_int_equal(infsim_config_double(f->cfg, "x.e", 0, 0, 1, &d, &f->err), INFSIM_OK);
  assert_true(d == 1e-3);
  char want[1024];
  const struct {
    const char *key, *text;
    int line;
  } bad[] = {{"x.i", ".inf", 4}, {"x.n", "nan", 5}, {"x.big", "2.5", 6}, {"x.t", "Yes", 7}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(infsim_config_double(f->cfg, bad[i].key, 0, 0, 1, &d, &f->err), INFSIM_EINPUT);
    snprintf(want, sizeof want, "%s:%d: %s: expected a number in [0, 1], got '%s'", path, bad[i].line, bad[i].key,
             bad[i].text);
    assert_string_equal(f->err.msg, want);
  }
  bool b = false;
  assert_int_equal(infsim_config_bool(f->cfg, "x.t", false, &b, &f->err), INFSIM_OK);
  assert_true(b);
  assert_int_equal(infsim_config_bool(f->cfg, "x.o", true, &b, &f->err), INFSIM_OK);
  assert_false(b);
  assert_int_equal(infsim_config_bool(f->cfg, "x.z", true, &b, &f->err), INFSIM_OK);
  assert_false(b);
  assert_int_equal(infsim_config_bool(f->cfg, "x.m", true, &b, &f->err), INFSIM_EINPUT);
  snprintf(want, sizeof want, "%s:10: x.m: expected a boolean (true/false, yes/no, on/off, 1/0), got 'maybe'", path);
  assert_string_equal(f->err.msg, want);

  const char *const policies[] = {"vllm-multi", "vllm-single", "infinite-llm", NULL};
  int idx = -1;
  assert_int_equal(infsim_config_enum(f->cfg, "x.p", "infinite-llm", policies, &idx, &f->err), INFSIM_OK);
  assert_int_equal(idx, 1);
  assert_int_equal(infsim_config_enum(f->cfg, "x.absent", "infinite-llm", policies, &idx, &f->err), INFSIM_OK);
  assert_int_equal(idx, 2);
  assert_int_equal(infsim_config_enum(f->cfg, "x.q", "infinite-llm", policies, &idx, &f->err), INFSIM_EINPUT);
  snprintf(want, sizeof want, "%s:12: x.q: expected one of vllm-multi, vllm-single, infinite-llm, got 'vllm'", path);
  assert_string_equal(f->err.msg, want);

  /* A getter on a mapping names the mapping's first key's line. */
  int64_t v;
  assert_int_equal(infsim_config_int(f->cfg, "x", 1, 1, 9, &v, &f->err), INFSIM_EINPUT);
  snprintf(want, sizeof want, "%s:2: x: expected an integer in [1, 9], got a mapping", path);
  assert_string_equal(f->err.msg, want);
}

static void test_resolved_json_types_and_defaults(void **state) {
  fixture *f = *state;
  const char *path = write_yaml(f, "c.yaml",
                                "seed: 7\n"
                                "scheduler:\n"
                                "  max_batch_size: 1e3\n"
                                "  chunked_prefill: on\n"
                                "slo: {ttft_s: 2}\n"
                                "unread: 1\n");
  assert_int_equal(infsim_config_load_yaml(f->cfg, path, &f->err), INFSIM_OK);
  int64_t i;
  double d;
  bool b;
  const char *s;
  int e;
  const char *const modes[] = {"recompute", "swap", NULL};
  assert_int_equal(infsim_config_int(f->cfg, "seed", 1, 0, 100, &i, &f->err), INFSIM_OK);
  assert_int_equal(infsim_config_int(f->cfg, "scheduler.max_batch_size", 1, 1, 5000, &i, &f->err), INFSIM_OK);
  assert_int_equal(infsim_config_int(f->cfg, "scheduler.block_tokens", 16, 1, 1024, &i, &f->err), INFSIM_OK);
  assert_int_equal(i, 16);
  assert_int_equal(infsim_config_bool(f->cfg, "scheduler.chunked_prefill", false, &b, &f->err), INFSIM_OK);
  assert_int_equal(infsim_config_enum(f->cfg, "scheduler.preemption", "swap", modes, &e, &f->err), INFSIM_OK);
  assert_int_equal(infsim_config_double(f->cfg, "slo.ttft_s", 1.0, 0, 100, &d, &f->err), INFSIM_OK);
  assert_int_equal(infsim_config_double(f->cfg, "slo.tpot_s", 0.5, 0, 100, &d, &f->err), INFSIM_OK);
  assert_int_equal(infsim_config_string(f->cfg, "gpu", "a100-80gb", &s, &f->err), INFSIM_OK);
  assert_string_equal(s, "a100-80gb");
  /* A value read at "model" and then a mapping below it: the last read wins. */
  assert_int_equal(infsim_config_string(f->cfg, "model", "llama2-7b", &s, &f->err), INFSIM_OK);
  assert_int_equal(infsim_config_int(f->cfg, "model.layers", 2, 1, 200, &i, &f->err), INFSIM_OK);

  json_t *got = infsim_config_resolved_json(f->cfg);
  assert_non_null(got);
  char *text = json_dumps(got, JSON_SORT_KEYS | JSON_COMPACT);
  assert_string_equal(text, "{\"gpu\":\"a100-80gb\",\"model\":{\"layers\":2},"
                            "\"scheduler\":{\"block_tokens\":16,\"chunked_prefill\":true,"
                            "\"max_batch_size\":1000,\"preemption\":\"swap\"},"
                            "\"seed\":7,\"slo\":{\"tpot_s\":0.5,\"ttft_s\":2.0}}");
  /* Integers are JSON integers and doubles JSON reals, even when integral. */
  assert_true(json_is_integer(json_object_get(json_object_get(got, "scheduler"), "max_batch_size")));
  assert_true(json_is_real(json_object_get(json_object_get(got, "slo"), "ttft_s")));
  free(text);
  json_decref(got);
  /* mark_used does not resolve. */
  infsim_config_mark_used(f->cfg, "unread");
  got = infsim_config_resolved_json(f->cfg);
  assert_null(json_object_get(got, "unread"));
  json_decref(got);
  /* forget drops a subtree's resolved values, and only that subtree. */
  infsim_config_forget(f->cfg, "scheduler");
  got = infsim_config_resolved_json(f->cfg);
  text = json_dumps(got, JSON_SORT_KEYS | JSON_COMPACT);
  assert_string_equal(text, "{\"gpu\":\"a100-80gb\",\"model\":{\"layers\":2},\"seed\":7,"
                            "\"slo\":{\"tpot_s\":0.5,\"ttft_s\":2.0}}");
  free(text);
  json_decref(got);
}

static void test_unused_keys_are_reported_in_file_order(void **state) {
  fixture *f = *state;
  const char *path = write_yaml(f, "c.yaml",
                                "seed: 1\n"           /* 1 */
                                "scheduler:\n"        /* 2 */
                                "  max_batch_size: 4\n" /* 3 */
                                "  foo: 1\n"          /* 4 */
                                "policy:\n"           /* 5 */
                                "  name: x\n"         /* 6 */
                                "  knob: 3\n"         /* 7 */
                                "zeta: 1\n");         /* 8 */
  assert_int_equal(infsim_config_load_yaml(f->cfg, path, &f->err), INFSIM_OK);
  assert_int_equal(infsim_config_set(f->cfg, "extra.key=1", &f->err), INFSIM_OK);
  int64_t v;
  /* Read the last file key first: order of reads must not matter. */
  assert_int_equal(infsim_config_int(f->cfg, "zeta", 0, 0, 9, &v, &f->err), INFSIM_OK);
  assert_int_equal(infsim_config_int(f->cfg, "seed", 0, 0, 9, &v, &f->err), INFSIM_OK);
  assert_int_equal(infsim_config_int(f->cfg, "scheduler.max_batch_size", 1, 1, 9, &v, &f->err), INFSIM_OK);
  char want[1024];
  /* Below a prefix, only that subtree counts. */
  assert_int_equal(infsim_config_check_unused_below(f->cfg, "policy", &f->err), INFSIM_EINPUT);
  snprintf(want, sizeof want, "%s:6: unknown key 'policy.name'", path);
  assert_string_equal(f->err.msg, want);
  assert_int_equal(infsim_config_check_unused_below(f->cfg, "seed", &f->err), INFSIM_OK);
  assert_int_equal(infsim_config_check_unused(f->cfg, &f->err), INFSIM_EINPUT);
  snprintf(want, sizeof want, "%s:4: unknown key 'scheduler.foo'", path);
  assert_string_equal(f->err.msg, want);
  /* A failed read does not count as a use. */
  assert_int_equal(infsim_config_int(f->cfg, "scheduler.foo", 5, 5, 9, &v, &f->err), INFSIM_EINPUT);
  assert_int_equal(infsim_config_check_unused(f->cfg, &f->err), INFSIM_EINPUT);
  assert_string_equal(f->err.msg, want);
  assert_int_equal(infsim_config_int(f->cfg, "scheduler.foo", 1, 1, 9, &v, &f->err), INFSIM_OK);
  infsim_config_mark_used(f->cfg, "policy");
  assert_int_equal(infsim_config_check_unused(f->cfg, &f->err), INFSIM_EINPUT);
  assert_string_equal(f->err.msg, "--set: unknown key 'extra.key'");
  infsim_config_mark_used(f->cfg, "extra");
  assert_int_equal(infsim_config_check_unused(f->cfg, &f->err), INFSIM_OK);
  /* An override keeps the key's place in file order. */
  assert_int_equal(infsim_config_set(f->cfg, "seed=2", &f->err), INFSIM_OK);
  assert_int_equal(infsim_config_set(f->cfg, "zeta=2", &f->err), INFSIM_OK);
  assert_int_equal(infsim_config_check_unused(f->cfg, &f->err), INFSIM_EINPUT);
  assert_string_equal(f->err.msg, "--set: unknown key 'seed'");
}

static void test_config_fail_names_origin(void **state) {
  fixture *f = *state;
  const char *path = write_yaml(f, "c.yaml", "\n\ncluster:\n  instances: 3\n");
  assert_int_equal(infsim_config_load_yaml(f->cfg, path, &f->err), INFSIM_OK);
  assert_int_equal(infsim_config_fail(f->cfg, "cluster.instances", &f->err, "must divide %d", 8), INFSIM_EINPUT);
  char want[1024];
  snprintf(want, sizeof want, "%s:4: cluster.instances: must divide 8", path);
  assert_string_equal(f->err.msg, want);
  assert_int_equal(infsim_config_fail(f->cfg, "slo.ttft_s", &f->err, "too small"), INFSIM_EINPUT);
  assert_string_equal(f->err.msg, "default: slo.ttft_s: too small");
}

/* Issue 14, point 8: what used to be merged or ignored silently. */
static void test_repeats_tags_and_alias_bombs_are_refused(void **state) {
  fixture *f = *state;
  /* A key given twice with mappings below is a repeat, not a merge. */
  expect_load_error(f, "model:\n  layers: 2\nseed: 1\nmodel:\n  heads: 4\n", ":4: duplicate key 'model' (first at line 1)");
  expect_load_error(f, "a: {b: {c: 1}}\na:\n  b:\n    d: 2\n", ":2: duplicate key 'a' (first at line 1)");
  /* A value and a mapping under one name, in either order. */
  expect_load_error(f, "model:\n  layers: 2\nmodel: tiny\n", ":3: duplicate key 'model' (first at line 1)");
  /* Of several problems the one met first in the file is reported. */
  expect_load_error(f, "z: 1\ny: 1\ny: 2\nz: 2\n", ":3: duplicate key 'y' (first at line 2)");
  /* Every explicit tag, even one that means what no tag means. */
  expect_load_error(f, "seed: !!int 5\n", ":1: YAML tags are not supported ('tag:yaml.org,2002:int'): write the plain value");
  expect_load_error(f, "a:\n  b: !!str x\n", ":2: YAML tags are not supported ('tag:yaml.org,2002:str'): write the plain value");
  expect_load_error(f, "a: !custom {b: 1}\n", ":1: YAML tags are not supported ('!custom'): write the plain value");
  expect_load_error(f, "a: [1, !!float 2]\n", ":1: YAML tags are not supported ('tag:yaml.org,2002:float'): write the plain value");
  /* A NUL written as an escape cannot reach a C string. */
  expect_load_error(f, "a: \"x\\0y\"\n", ":1: a: NUL byte in value");
  /* Doubling through aliases of empty mappings: bounded, fast. */
  char bomb[4096] = "a0: &a0 {}\n";
  for (int i = 1; i < 40; i++) {
    size_t at = strlen(bomb);
    snprintf(bomb + at, sizeof bomb - at, "a%d: &a%d {x: *a%d, y: *a%d}\n", i, i, i - 1, i - 1);
  }
  const char *path = write_yaml(f, "bomb.yaml", bomb);
  assert_int_equal(infsim_config_load_yaml(f->cfg, path, &f->err), INFSIM_EINPUT);
  assert_non_null(strstr(f->err.msg, "more than 4096 keys (aliases expanded)"));
  /* The in-memory loader says the same, under the given name. */
  const char *text = "k: 1\nk: 2\n";
  assert_int_equal(infsim_config_load_yaml_text(f->cfg, "mem", text, strlen(text), &f->err), INFSIM_EINPUT);
  assert_string_equal(f->err.msg, "mem:2: duplicate key 'k' (first at line 1)");
  /* Nothing of the failed files reached the config. */
  size_t pos = 0;
  assert_null(infsim_config_next_key(f->cfg, NULL, &pos));
}

/* 4000 keys load in well under a second: the repeat check is
 * O(n log n) and the first file goes in without pairwise replacement. */
static void test_many_keys_load_fast(void **state) {
  fixture *f = *state;
  size_t cap = 4000 * 24;
  char *text = malloc(cap);
  size_t at = 0;
  for (int i = 0; i < 2000; i++) at += (size_t)snprintf(text + at, cap - at, "g%d:\n  k%d: %d\n", i / 2, i, i);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  /* Each "gN:" twice: find the first repeat among 4000 items. */
  assert_int_equal(infsim_config_load_yaml_text(f->cfg, "big", text, at, &f->err), INFSIM_EINPUT);
  assert_string_equal(f->err.msg, "big:3: duplicate key 'g0' (first at line 1)");
  at = 0;
  for (int i = 0; i < 2000; i++) at += (size_t)snprintf(text + at, cap - at, "g%d:\n  k: %d\n", i, i);
  assert_int_equal(infsim_config_load_yaml_text(f->cfg, "big", text, at, &f->err), INFSIM_OK);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
  assert_true(s < 1.0);
  size_t pos = 0, n = 0;
  while (infsim_config_next_key(f->cfg, NULL, &pos) != NULL) n++;
  assert_int_equal(n, 2000);
  free(text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_flatten_keys_lines_and_sequences, setup, teardown),
      cmocka_unit_test_setup_teardown(test_empty_file_is_empty_config, setup, teardown),
      cmocka_unit_test_setup_teardown(test_set_overrides_file, setup, teardown),
      cmocka_unit_test_setup_teardown(test_override_replaces_whole_subtree, setup, teardown),
      cmocka_unit_test_setup_teardown(test_later_file_key_below_value, setup, teardown),
      cmocka_unit_test_setup_teardown(test_set_rejects_malformed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_yaml_errors_name_file_and_line, setup, teardown),
      cmocka_unit_test_setup_teardown(test_int_parsing_and_ranges, setup, teardown),
      cmocka_unit_test_setup_teardown(test_double_bool_enum, setup, teardown),
      cmocka_unit_test_setup_teardown(test_resolved_json_types_and_defaults, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unused_keys_are_reported_in_file_order, setup, teardown),
      cmocka_unit_test_setup_teardown(test_config_fail_names_origin, setup, teardown),
      cmocka_unit_test_setup_teardown(test_repeats_tags_and_alias_bombs_are_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_many_keys_load_fast, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
