/*
** test_atomic_file.c: outputs are all or nothing, alone and as a set.
**
** Truth: the directory listing and the bytes of each destination after
** each scenario, compared with what the header promises: after a failed
** set commit every old file holds its old bytes and no temporary name is
** left; after a success every file holds its new bytes. Symlinks keep
** being links with the new content at their target; a FIFO receives the
** bytes written; debris of a dead process of this host goes, debris of a
** live process or of another host stays.
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
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "infsim/atomic_file.h"

typedef struct {
  char dir[256];
} fixture;

static void remove_tree(const char *path) {
  struct stat sb;
  if (lstat(path, &sb) != 0) return;
  if (S_ISDIR(sb.st_mode)) {
    DIR *d = opendir(path);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
      char sub[1024];
      snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
      remove_tree(sub);
    }
    if (d != NULL) closedir(d);
    rmdir(path);
  } else {
    unlink(path);
  }
}

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  snprintf(f->dir, sizeof f->dir, "/tmp/infsim_atomic_XXXXXX");
  if (mkdtemp(f->dir) == NULL) return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  remove_tree(f->dir);
  free(f);
  return 0;
}

static void put(const char *dir, const char *name, const char *text) {
  char p[1024];
  assert_true((size_t)snprintf(p, sizeof p, "%s/%s", dir, name) < sizeof p);
  FILE *fp = fopen(p, "w");
  assert_non_null(fp);
  fputs(text, fp);
  fclose(fp);
}

/* The content of dir/name, or "<missing>" / "<dir>". */
static const char *get(const char *dir, const char *name, char buf[256]) {
  char p[1024];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  struct stat sb;
  if (stat(p, &sb) != 0) return "<missing>";
  if (S_ISDIR(sb.st_mode)) return "<dir>";
  FILE *fp = fopen(p, "r");
  size_t n = fread(buf, 1, 255, fp);
  fclose(fp);
  buf[n] = '\0';
  return buf;
}

/* Names in dir that contain ".tmp." */
static int temp_names(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strstr(e->d_name, ".tmp.") != NULL) n++;
  closedir(d);
  return n;
}

static void path_of(const fixture *f, const char *name, char out[1024]) { snprintf(out, 1024, "%s/%s", f->dir, name); }

/* Writes a, b, c as one set with the given contents. */
static infsim_status write_set(const fixture *f, const char *text, infsim_atomic_set **keep, infsim_error *err) {
  static const char *const names[3] = {"a.txt", "b.txt", "c.txt"};
  infsim_atomic_set *set = infsim_atomic_set_new();
  assert_non_null(set);
  infsim_status st = INFSIM_OK;
  for (int i = 0; i < 3 && st == INFSIM_OK; i++) {
    char p[1024];
    path_of(f, names[i], p);
    FILE *fp = NULL;
    st = infsim_atomic_set_add(set, p, &fp, err);
    if (st == INFSIM_OK) fprintf(fp, "%s-%s", text, names[i]);
  }
  if (keep != NULL && st == INFSIM_OK) {
    *keep = set;
    return st;
  }
  if (st == INFSIM_OK) st = infsim_atomic_set_commit(set, err);
  infsim_atomic_set_free(set);
  return st;
}

static void expect_set(const fixture *f, const char *text) {
  static const char *const names[3] = {"a.txt", "b.txt", "c.txt"};
  for (int i = 0; i < 3; i++) {
    char want[64], buf[256];
    snprintf(want, sizeof want, "%s-%s", text, names[i]);
    assert_string_equal(get(f->dir, names[i], buf), want);
  }
}

static void test_set_commits_whole(void **state) {
  fixture *f = *state;
  infsim_error err = {0};
  assert_int_equal(write_set(f, "old", NULL, &err), INFSIM_OK);
  expect_set(f, "old");
  assert_int_equal(write_set(f, "new", NULL, &err), INFSIM_OK);
  expect_set(f, "new");
  assert_int_equal(temp_names(f->dir), 0);
}

/* A directory appears at the last name between staging and commit: the
 * first two renames have happened when the third fails, and must be undone. */
static void test_set_rolls_back_when_a_rename_fails(void **state) {
  fixture *f = *state;
  infsim_error err = {0};
  assert_int_equal(write_set(f, "old", NULL, &err), INFSIM_OK);
  infsim_atomic_set *set = NULL;
  assert_int_equal(write_set(f, "new", &set, &err), INFSIM_OK);
  char c[1024];
  path_of(f, "c.txt", c);
  assert_int_equal(unlink(c), 0);
  assert_int_equal(mkdir(c, 0755), 0);
  put(c, "inside", "x"); /* a non-empty directory cannot be renamed over */
  assert_int_not_equal(infsim_atomic_set_commit(set, &err), INFSIM_OK);
  infsim_atomic_set_free(set);
  char buf[256];
  assert_string_equal(get(f->dir, "a.txt", buf), "old-a.txt");
  assert_string_equal(get(f->dir, "b.txt", buf), "old-b.txt");
  assert_string_equal(get(f->dir, "c.txt", buf), "<dir>");
  assert_int_equal(temp_names(f->dir), 0);
  assert_non_null(strstr(err.msg, "c.txt"));
}

/* Same, when the set's names did not exist before: the new files that were
 * put in place are removed again. */
static void test_set_rollback_removes_new_names(void **state) {
  fixture *f = *state;
  infsim_error err = {0};
  infsim_atomic_set *set = NULL;
  assert_int_equal(write_set(f, "new", &set, &err), INFSIM_OK);
  char c[1024];
  path_of(f, "c.txt", c);
  assert_int_equal(mkdir(c, 0755), 0);
  put(c, "inside", "x");
  assert_int_not_equal(infsim_atomic_set_commit(set, &err), INFSIM_OK);
  infsim_atomic_set_free(set);
  char buf[256];
  assert_string_equal(get(f->dir, "a.txt", buf), "<missing>");
  assert_string_equal(get(f->dir, "b.txt", buf), "<missing>");
  assert_int_equal(temp_names(f->dir), 0);
}

/* A directory already in place of a member: refused when staging, bad
 * input, nothing written. */
static void test_set_refuses_directory_up_front(void **state) {
  fixture *f = *state;
  infsim_error err = {0};
  assert_int_equal(write_set(f, "old", NULL, &err), INFSIM_OK);
  char b[1024];
  path_of(f, "b.txt", b);
  unlink(b);
  mkdir(b, 0755);
  assert_int_equal(write_set(f, "new", NULL, &err), INFSIM_EINPUT);
  assert_non_null(strstr(err.msg, "is a directory"));
  char buf[256];
  assert_string_equal(get(f->dir, "a.txt", buf), "old-a.txt");
  assert_string_equal(get(f->dir, "c.txt", buf), "old-c.txt");
  assert_int_equal(temp_names(f->dir), 0);
}

static void test_set_free_without_commit_leaves_old(void **state) {
  fixture *f = *state;
  infsim_error err = {0};
  assert_int_equal(write_set(f, "old", NULL, &err), INFSIM_OK);
  infsim_atomic_set *set = NULL;
  assert_int_equal(write_set(f, "new", &set, &err), INFSIM_OK);
  infsim_atomic_set_free(set);
  expect_set(f, "old");
  assert_int_equal(temp_names(f->dir), 0);
}

static void test_set_path_member(void **state) {
  fixture *f = *state;
  infsim_error err = {0};
  infsim_atomic_set *set = infsim_atomic_set_new();
  char p[1024];
  path_of(f, "db", p);
  const char *temp = NULL;
  assert_int_equal(infsim_atomic_set_add_path(set, p, &temp, &err), INFSIM_OK);
  FILE *fp = fopen(temp, "w");
  fputs("by name", fp);
  fclose(fp);
  path_of(f, "same", p);
  FILE *s1 = NULL, *s2 = NULL;
  assert_int_equal(infsim_atomic_set_add(set, p, &s1, &err), INFSIM_OK);
  assert_int_equal(infsim_atomic_set_add(set, p, &s2, &err), INFSIM_EINPUT); /* twice in one set */
  assert_int_equal(infsim_atomic_set_add_path(set, "/dev/null", &temp, &err), INFSIM_EINPUT);
  assert_int_equal(infsim_atomic_set_commit(set, &err), INFSIM_OK);
  infsim_atomic_set_free(set);
  char buf[256];
  assert_string_equal(get(f->dir, "db", buf), "by name");
  assert_int_equal(temp_names(f->dir), 0);
}

/* Writing onto a symlink replaces its target and keeps the link. */
static void test_symlink_is_written_through(void **state) {
  fixture *f = *state;
  infsim_error err = {0};
  char sub[1024];
  path_of(f, "sub", sub);
  assert_int_equal(mkdir(sub, 0755), 0);
  put(f->dir, "sub/target.csv", "old");
  char link_path[1024];
  path_of(f, "link.csv", link_path);
  assert_int_equal(symlink("sub/target.csv", link_path), 0);
  infsim_atomic_file af;
  assert_int_equal(infsim_atomic_open(&af, link_path, &err), INFSIM_OK);
  fputs("new", af.fp);
  assert_int_equal(infsim_atomic_commit(&af, &err), INFSIM_OK);
  struct stat sb;
  assert_int_equal(lstat(link_path, &sb), 0);
  assert_true(S_ISLNK(sb.st_mode));
  char buf[256];
  assert_string_equal(get(f->dir, "sub/target.csv", buf), "new");
  /* A dangling link gets its target created. */
  char dangling[1024];
  path_of(f, "dangling", dangling);
  assert_int_equal(symlink("made-by-write", dangling), 0);
  assert_int_equal(infsim_atomic_open(&af, dangling, &err), INFSIM_OK);
  fputs("fresh", af.fp);
  assert_int_equal(infsim_atomic_commit(&af, &err), INFSIM_OK);
  assert_string_equal(get(f->dir, "made-by-write", buf), "fresh");
  assert_int_equal(lstat(dangling, &sb), 0);
  assert_true(S_ISLNK(sb.st_mode));
  assert_int_equal(temp_names(f->dir), 0);
}

/* A FIFO is written directly: a reader gets the bytes, and the FIFO stays a FIFO. */
static void test_fifo_is_written_directly(void **state) {
  fixture *f = *state;
  char fifo[1024];
  path_of(f, "pipe", fifo);
  assert_int_equal(mkfifo(fifo, 0600), 0);
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  pid_t child = fork();
  assert_true(child >= 0);
  if (child == 0) {
    int in = open(fifo, O_RDONLY);
    char buf[64];
    ssize_t n = read(in, buf, sizeof buf);
    if (n > 0) (void)!write(fds[1], buf, (size_t)n);
    _exit(0);
  }
  close(fds[1]);
  infsim_error err = {0};
  infsim_atomic_file af;
  assert_int_equal(infsim_atomic_open(&af, fifo, &err), INFSIM_OK);
  assert_true(af.direct);
  fputs("through", af.fp);
  assert_int_equal(infsim_atomic_commit(&af, &err), INFSIM_OK);
  char got[64] = {0};
  ssize_t n = read(fds[0], got, sizeof got - 1);
  assert_int_equal(n, 7);
  assert_string_equal(got, "through");
  waitpid(child, NULL, 0);
  close(fds[0]);
  struct stat sb;
  assert_int_equal(lstat(fifo, &sb), 0);
  assert_true(S_ISFIFO(sb.st_mode));
  /* /dev/null stays a character device. */
  assert_int_equal(infsim_atomic_open(&af, "/dev/null", &err), INFSIM_OK);
  fputs("gone", af.fp);
  assert_int_equal(infsim_atomic_commit(&af, &err), INFSIM_OK);
  assert_int_equal(stat("/dev/null", &sb), 0);
  assert_true(S_ISCHR(sb.st_mode));
}

static void test_temp_name_and_debris(void **state) {
  fixture *f = *state;
  char host[256];
  gethostname(host, sizeof host);
  host[sizeof host - 1] = '\0';
  for (char *p = host; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-')) *p = '-';
  /* A pid that surely does not live: a child that has been reaped. */
  pid_t dead = fork();
  if (dead == 0) _exit(0);
  waitpid(dead, NULL, 0);
  char name[512];
  snprintf(name, sizeof name, "run.csv.tmp.%s.%ld.Ab3dEf", host, (long)dead);
  put(f->dir, name, "debris of a dead run");
  snprintf(name, sizeof name, "live.csv.tmp.%s.%ld.Ab3dEf", host, (long)getppid());
  put(f->dir, name, "a live process writes this");
  snprintf(name, sizeof name, "other.csv.tmp.some-other-host.%ld.Ab3dEf", (long)dead);
  put(f->dir, name, "another host's");
  put(f->dir, "keep.tmp", "not ours");
  assert_int_equal(temp_names(f->dir), 3);

  infsim_error err = {0};
  infsim_atomic_file af;
  char out[1024];
  path_of(f, "out.csv", out);
  assert_int_equal(infsim_atomic_open(&af, out, &err), INFSIM_OK);
  /* The temp file is OUT.tmp.HOST.PID.XXXXXX. */
  char want[2048];
  snprintf(want, sizeof want, "%s.tmp.%s.%ld.", out, host, (long)getpid());
  assert_int_equal(strncmp(af.temp_path, want, strlen(want)), 0);
  assert_int_equal(strlen(af.temp_path), strlen(want) + 6);
  fputs("x", af.fp);
  assert_int_equal(infsim_atomic_commit(&af, &err), INFSIM_OK);
  /* The dead run's file went; the live one's and the other host's stay. */
  assert_int_equal(temp_names(f->dir), 2);
  snprintf(name, sizeof name, "run.csv.tmp.%s.%ld.Ab3dEf", host, (long)dead);
  char buf[256];
  assert_string_equal(get(f->dir, name, buf), "<missing>");
  assert_string_equal(get(f->dir, "keep.tmp", buf), "not ours");
}

static void test_make_dirs(void **state) {
  fixture *f = *state;
  infsim_error err = {0};
  char p[1024];
  snprintf(p, sizeof p, "%s/x//y/z", f->dir);
  assert_int_equal(infsim_make_dirs(p, &err), INFSIM_OK);
  assert_int_equal(infsim_make_dirs(p, &err), INFSIM_OK);
  put(f->dir, "file", "x");
  snprintf(p, sizeof p, "%s/file", f->dir);
  assert_int_equal(infsim_make_dirs(p, &err), INFSIM_EINPUT);
  assert_non_null(strstr(err.msg, "exists and is not a directory"));
  snprintf(p, sizeof p, "%s/file/below", f->dir);
  assert_int_equal(infsim_make_dirs(p, &err), INFSIM_EINPUT);
}

static void test_single_file_directory_is_bad_input(void **state) {
  fixture *f = *state;
  infsim_error err = {0};
  infsim_atomic_file af;
  assert_int_equal(infsim_atomic_open(&af, f->dir, &err), INFSIM_EINPUT);
  assert_int_equal(infsim_status_exit_code(err.status), 2);
}

/* A removal goes with a successful commit, and comes back (same bytes)
 * when a later rename of the same set fails. A name that is absent or a
 * directory is left alone. */
static void test_set_removal(void **state) {
  fixture *f = *state;
  infsim_error err = {0};
  assert_int_equal(write_set(f, "old", NULL, &err), INFSIM_OK);
  put(f->dir, "stale.csv", "older run");
  char stale[1024], absent[1024], dir[1024], c[1024];
  path_of(f, "stale.csv", stale);
  path_of(f, "absent.csv", absent);
  path_of(f, "sub", dir);
  assert_int_equal(mkdir(dir, 0755), 0);
  /* Fails: c.txt becomes a non-empty directory after staging. */
  infsim_atomic_set *set = NULL;
  assert_int_equal(write_set(f, "new", &set, &err), INFSIM_OK);
  assert_int_equal(infsim_atomic_set_remove(set, stale, &err), INFSIM_OK);
  assert_int_equal(infsim_atomic_set_remove(set, absent, &err), INFSIM_OK);
  assert_int_equal(infsim_atomic_set_remove(set, dir, &err), INFSIM_OK);
  path_of(f, "c.txt", c);
  assert_int_equal(unlink(c), 0);
  assert_int_equal(mkdir(c, 0755), 0);
  put(c, "inside", "x");
  assert_int_not_equal(infsim_atomic_set_commit(set, &err), INFSIM_OK);
  infsim_atomic_set_free(set);
  char buf[256];
  assert_string_equal(get(f->dir, "stale.csv", buf), "older run");
  assert_string_equal(get(f->dir, "a.txt", buf), "old-a.txt");
  assert_int_equal(temp_names(f->dir), 0);
  /* Succeeds: the stale file goes, the directory and the new files stay. */
  remove_tree(c);
  assert_int_equal(write_set(f, "new", &set, &err), INFSIM_OK);
  assert_int_equal(infsim_atomic_set_remove(set, stale, &err), INFSIM_OK);
  assert_int_equal(infsim_atomic_set_remove(set, absent, &err), INFSIM_OK);
  assert_int_equal(infsim_atomic_set_remove(set, dir, &err), INFSIM_OK);
  assert_int_equal(infsim_atomic_set_commit(set, &err), INFSIM_OK);
  infsim_atomic_set_free(set);
  expect_set(f, "new");
  assert_string_equal(get(f->dir, "stale.csv", buf), "<missing>");
  assert_string_equal(get(f->dir, "absent.csv", buf), "<missing>");
  assert_string_equal(get(f->dir, "sub", buf), "<dir>");
  assert_int_equal(temp_names(f->dir), 0);
  /* Writing and removing one file in one set is a contradiction. */
  set = infsim_atomic_set_new();
  FILE *fp = NULL;
  char a[1024];
  path_of(f, "a.txt", a);
  assert_int_equal(infsim_atomic_set_add(set, a, &fp, &err), INFSIM_OK);
  assert_int_equal(infsim_atomic_set_remove(set, a, &err), INFSIM_EINPUT);
  infsim_atomic_set_free(set);
}

/* Two spellings of one file are one file. */
static void test_set_same_file_spelled_twice(void **state) {
  fixture *f = *state;
  infsim_error err = {0};
  infsim_atomic_set *set = infsim_atomic_set_new();
  char p[1024], q[1024];
  snprintf(p, sizeof p, "%s/x.json", f->dir);
  snprintf(q, sizeof q, "%s/./x.json", f->dir);
  FILE *fp = NULL;
  assert_int_equal(infsim_atomic_set_add(set, p, &fp, &err), INFSIM_OK);
  assert_int_equal(infsim_atomic_set_add(set, q, &fp, &err), INFSIM_EINPUT);
  assert_non_null(strstr(err.msg, "the same file twice"));
  infsim_atomic_set_free(set);
  assert_int_equal(temp_names(f->dir), 0);
}

/* One file, however spelled: the answer compared with what the directories
 * on disk are (a symlink to a directory is that directory). */
static void test_same_file_path(void **state) {
  fixture *f = *state;
  char d[512], e[512], link[512], a[1024], b[1024];
  snprintf(d, sizeof d, "%s/d", f->dir);
  snprintf(e, sizeof e, "%s/e", f->dir);
  snprintf(link, sizeof link, "%s/l", f->dir);
  assert_int_equal(mkdir(d, 0700), 0);
  assert_int_equal(mkdir(e, 0700), 0);
  assert_int_equal(symlink(d, link), 0);
  snprintf(a, sizeof a, "%s/x", d);
  assert_true(infsim_same_file_path(a, a)); /* x need not exist */
  snprintf(b, sizeof b, "%s/./x", d);
  assert_true(infsim_same_file_path(a, b));
  snprintf(b, sizeof b, "%s/x", link);
  assert_true(infsim_same_file_path(a, b));
  snprintf(b, sizeof b, "%s/../d/x", e);
  assert_true(infsim_same_file_path(a, b));
  snprintf(b, sizeof b, "%s/y", d);
  assert_false(infsim_same_file_path(a, b));
  snprintf(b, sizeof b, "%s/x", e);
  assert_false(infsim_same_file_path(a, b));
  /* A directory not made yet: only the same spelling is the same file. */
  snprintf(a, sizeof a, "%s/new/x", f->dir);
  assert_true(infsim_same_file_path(a, a));
  snprintf(b, sizeof b, "%s/new/./x", f->dir);
  assert_false(infsim_same_file_path(a, b));
}

/* Directories a set made go again unless it commits; ones that were there
 * stay. */
static void test_set_dirs(void **state) {
  fixture *f = *state;
  infsim_error err = {0};
  char p[1024], file[1024], buf[256];
  snprintf(p, sizeof p, "%s/new/deeper", f->dir);
  snprintf(file, sizeof file, "%s/new/deeper/x.txt", f->dir);
  infsim_atomic_set *set = infsim_atomic_set_new();
  assert_int_equal(infsim_atomic_set_make_dirs(set, f->dir, &err), INFSIM_OK);
  assert_int_equal(infsim_atomic_set_make_dirs(set, p, &err), INFSIM_OK);
  FILE *fp = NULL;
  assert_int_equal(infsim_atomic_set_add(set, file, &fp, &err), INFSIM_OK);
  infsim_atomic_set_free(set); /* not committed */
  assert_string_equal(get(f->dir, "new", buf), "<missing>");
  set = infsim_atomic_set_new();
  assert_int_equal(infsim_atomic_set_make_dirs(set, p, &err), INFSIM_OK);
  assert_int_equal(infsim_atomic_set_add(set, file, &fp, &err), INFSIM_OK);
  fputs("kept", fp);
  assert_int_equal(infsim_atomic_set_commit(set, &err), INFSIM_OK);
  infsim_atomic_set_free(set);
  assert_string_equal(get(f->dir, "new/deeper/x.txt", buf), "kept");
}

/* Output locations that cannot exist as named are bad input (exit 2),
 * each naming the path and the reason; a failed write is not. */
static void test_bad_locations_are_bad_input(void **state) {
  fixture *f = *state;
  infsim_error err = {0};
  put(f->dir, "file", "x");
  char p[1024], longname[400];
  memset(longname, 'n', 300);
  longname[300] = '\0';
  const char *const under[] = {"file/o", "missing/o", longname};
  for (size_t i = 0; i < sizeof under / sizeof under[0]; i++) {
    snprintf(p, sizeof p, "%s/%s", f->dir, under[i]);
    infsim_atomic_file af;
    assert_int_equal(infsim_atomic_open(&af, p, &err), INFSIM_EINPUT);
    assert_non_null(strstr(err.msg, p));
    assert_int_equal(infsim_make_dirs(p, &err), i == 1 ? INFSIM_OK : INFSIM_EINPUT);
  }
  assert_int_equal(infsim_output_errno_status(EACCES), INFSIM_EINPUT);
  assert_int_equal(infsim_output_errno_status(EROFS), INFSIM_EINPUT);
  assert_int_equal(infsim_output_errno_status(ENAMETOOLONG), INFSIM_EINPUT);
  assert_int_equal(infsim_output_errno_status(ENOSPC), INFSIM_EIO);
  assert_int_equal(infsim_output_errno_status(EFBIG), INFSIM_EIO);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_set_commits_whole, setup, teardown),
      cmocka_unit_test_setup_teardown(test_set_rolls_back_when_a_rename_fails, setup, teardown),
      cmocka_unit_test_setup_teardown(test_set_rollback_removes_new_names, setup, teardown),
      cmocka_unit_test_setup_teardown(test_set_refuses_directory_up_front, setup, teardown),
      cmocka_unit_test_setup_teardown(test_set_free_without_commit_leaves_old, setup, teardown),
      cmocka_unit_test_setup_teardown(test_set_path_member, setup, teardown),
      cmocka_unit_test_setup_teardown(test_symlink_is_written_through, setup, teardown),
      cmocka_unit_test_setup_teardown(test_fifo_is_written_directly, setup, teardown),
      cmocka_unit_test_setup_teardown(test_temp_name_and_debris, setup, teardown),
      cmocka_unit_test_setup_teardown(test_make_dirs, setup, teardown),
      cmocka_unit_test_setup_teardown(test_single_file_directory_is_bad_input, setup, teardown),
      cmocka_unit_test_setup_teardown(test_set_removal, setup, teardown),
      cmocka_unit_test_setup_teardown(test_set_same_file_spelled_twice, setup, teardown),
      cmocka_unit_test_setup_teardown(test_same_file_path, setup, teardown),
      cmocka_unit_test_setup_teardown(test_set_dirs, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_locations_are_bad_input, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
