/*
** test_sqlite_file.c: a path that cannot hold a SQLite DB is said in the
** file's own terms.
**
** Truth: what the file system holds (a directory, a missing directory, a
** name longer than NAME_MAX) and the C library's strerror for the errno
** that such a path gives, independent of SQLite's own messages; the
** statuses are those DESIGN.md gives a bad output location and an I/O
** error.
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
#include <errno.h>
#include <sys/stat.h>

#include "infsim/sqlite_file.h"

typedef struct {
  char dir[256];
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  snprintf(f->dir, sizeof f->dir, "/tmp/infsim_sqlite_file_XXXXXX");
  if (mkdtemp(f->dir) == NULL) return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  char p[512];
  snprintf(p, sizeof p, "%s/adir", f->dir);
  rmdir(p);
  snprintf(p, sizeof p, "%s/x.db", f->dir);
  unlink(p);
  rmdir(f->dir);
  free(f);
  return 0;
}

static void test_directory_is_unfit(void **state) {
  fixture *f = *state;
  char p[512];
  snprintf(p, sizeof p, "%s/adir", f->dir);
  assert_int_equal(mkdir(p, 0700), 0);
  assert_string_equal(infsim_sqlite_file_unfit(p), "is a directory, not a file");
  snprintf(p, sizeof p, "%s/x.db", f->dir);
  assert_null(infsim_sqlite_file_unfit(p)); /* not there yet: SQLite may create it */
  FILE *fp = fopen(p, "w");
  assert_non_null(fp);
  fclose(fp);
  assert_null(infsim_sqlite_file_unfit(p));
}

/* Opens path for writing (as a sweep does), which must fail; returns the
 * status and leaves the message in err. */
static infsim_status open_fails(const char *path, const char *vfs, infsim_error *err) {
  sqlite3 *db = NULL;
  assert_int_not_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs), SQLITE_OK);
  infsim_status st = infsim_sqlite_open_failed(db, path, err);
  sqlite3_close(db);
  return st;
}

static void expect_message(const infsim_error *err, const char *path, const char *why) {
  char want[2048 + 64];
  int n = snprintf(want, sizeof want, "%s: cannot open: %s", path, why);
  assert_true(n > 0 && (size_t)n < sizeof want);
  assert_string_equal(err->msg, want);
}

static void test_open_failure_says_the_errno(void **state) {
  fixture *f = *state;
  infsim_error err = {0};
  char p[1024];
  snprintf(p, sizeof p, "%s/adir", f->dir);
  assert_int_equal(mkdir(p, 0700), 0);
  assert_int_equal(open_fails(p, NULL, &err), INFSIM_EINPUT);
  expect_message(&err, p, strerror(EISDIR));
  snprintf(p, sizeof p, "%s/missing/x.db", f->dir);
  assert_int_equal(open_fails(p, NULL, &err), INFSIM_EINPUT);
  expect_message(&err, p, strerror(ENOENT));
  char longname[300];
  memset(longname, 'n', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  snprintf(p, sizeof p, "%s/%s", f->dir, longname);
  assert_int_equal(open_fails(p, NULL, &err), INFSIM_EINPUT);
  expect_message(&err, p, strerror(ENAMETOOLONG));
}

/* A failure with no file errno behind it (a VFS that does not exist) is
 * SQLite's own message and an I/O error; no handle at all is no memory. */
static void test_open_failure_without_errno(void **state) {
  fixture *f = *state;
  infsim_error err = {0};
  char p[512];
  snprintf(p, sizeof p, "%s/x.db", f->dir);
  assert_int_equal(open_fails(p, "no-such-vfs", &err), INFSIM_EIO);
  expect_message(&err, p, "no such vfs: no-such-vfs");
  assert_int_equal(infsim_sqlite_open_failed(NULL, p, &err), INFSIM_ENOMEM);
  expect_message(&err, p, "out of memory");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_directory_is_unfit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_open_failure_says_the_errno, setup, teardown),
      cmocka_unit_test_setup_teardown(test_open_failure_without_errno, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
