/*
** fuzz_util.h: what the libFuzzer targets share (tests/fuzz/README.md).
**
** The readers under test take paths, so each input is written to one file
** per process and target, rewritten for every input, in a directory of its
** own (infsim-fuzz-PID) in $INFSIM_FUZZ_DIR, else /dev/shm, else $TMPDIR or
** /tmp, removed when the process exits. Memory-backed matters: on ext4 a
** rename over an existing file (every atomic output) waits for the data to
** reach the disk, which made the importer targets 25x slower (350 against
** 9,000 inputs a second). A directory of its own matters too: every atomic
** output lists its directory for the debris of dead processes: in a
** /dev/shm holding 191 files of other fuzz processes, that listing took a
** quarter of the Mooncake importer target's CPU time (perf).
** A small byte reader turns the front of an input into options.
** Invariants a target checks end in abort() with a message, which
** libFuzzer reports as a crash with the input that caused it.
*/
#ifndef INFSIM_FUZZ_UTIL_H
#define INFSIM_FUZZ_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The process's directory: "" until made, then DIR/infsim-fuzz-PID. */
static inline char *fuzz_dir_name(void) {
  static char name[512];
  return name;
}

/* Removes the process's directory and what the target left in it (inputs,
 * outputs, SQLite's side files). A crash skips this: its files stay. */
static inline void fuzz_dir_remove(void) {
  const char *dir = fuzz_dir_name();
  DIR *d = opendir(dir);
  if (d == NULL) return;
  struct dirent *e;
  char path[1024];
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    unlink(path);
  }
  closedir(d);
  rmdir(dir);
}

/* DIR/infsim-fuzz-PID (DIR as above), made on first use. */
static inline const char *fuzz_dir(void) {
  static long made_for;
  char *name = fuzz_dir_name();
  if (made_for == (long)getpid()) return name;
  const char *dir = getenv("INFSIM_FUZZ_DIR");
  if (dir == NULL || dir[0] == '\0') dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
  if (dir == NULL || dir[0] == '\0') dir = "/tmp";
  snprintf(name, 512, "%s/infsim-fuzz-%ld", dir, (long)getpid());
  if (mkdir(name, 0700) != 0 && errno != EEXIST) {
    fprintf(stderr, "fuzz: cannot make %s: %s\n", name, strerror(errno));
    abort();
  }
  if (made_for == 0) atexit(fuzz_dir_remove);
  made_for = (long)getpid();
  return name;
}

/* fuzz_dir()/NAME. */
static inline const char *fuzz_path(const char *name, char out[512]) {
  snprintf(out, 512, "%s/%s", fuzz_dir(), name);
  return out;
}

/* Writes data to fuzz_path(name) and returns that path. */
static inline const char *fuzz_write(const char *name, const uint8_t *data, size_t size, char out[512]) {
  fuzz_path(name, out);
  FILE *fp = fopen(out, "wb");
  if (fp == NULL || fwrite(data, 1, size, fp) != size || fclose(fp) != 0) {
    fprintf(stderr, "fuzz: cannot write %s\n", out);
    abort();
  }
  return out;
}

/* Fails the input: a broken invariant. */
#define FUZZ_CHECK(cond, ...)                                   \
  do {                                                          \
    if (!(cond)) {                                              \
      fprintf(stderr, "fuzz invariant broken: %s: ", #cond);    \
      fprintf(stderr, __VA_ARGS__);                             \
      fputc('\n', stderr);                                      \
      abort();                                                  \
    }                                                           \
  } while (0)

/* Takes bytes from the front of an input; zeros once it runs out. */
typedef struct {
  const uint8_t *p;
  size_t n;
} fuzz_bytes;

static inline uint64_t fuzz_u64(fuzz_bytes *b, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; i++) {
    v <<= 8;
    if (b->n > 0) {
      v |= *b->p++;
      b->n--;
    }
  }
  return v;
}

/* A value in [lo, hi] (hi - lo < 2^64 - 1). */
static inline int64_t fuzz_range(fuzz_bytes *b, int64_t lo, int64_t hi) {
  uint64_t span = (uint64_t)hi - (uint64_t)lo + 1;
  uint64_t v = fuzz_u64(b, 8);
  return span == 0 ? (int64_t)v : (int64_t)((uint64_t)lo + v % span);
}

#endif
