/*
** atomic_file.c: temp-name-then-rename writes, alone or as a set (see
** atomic_file.h for the promises and the naming of temporary files).
**
** Invariants: an infsim_atomic_file is either direct (temp_path empty, fp
** on the destination itself) or staged (temp_path names a file this
** process created, which exists until it is renamed or removed). In a set,
** a member's backup name is non-empty exactly while a hard link (or the
** renamed original) to the old destination exists under it, so rollback
** knows what to put back and success knows what to remove.
*/
#include "infsim/atomic_file.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

enum {
  HOST_BYTES = 64,          /* sanitized host name kept in temp names */
  MAX_SYMLINK_HOPS = 40,    /* as Linux's own limit (ELOOP) */
  TEMP_SUFFIX_BYTES = 6,    /* mkstemp's XXXXXX */
};

/* ---- errors ------------------------------------------------------------- */

infsim_status infsim_output_errno_status(int errnum) {
  switch (errnum) {
  case ENOENT:       /* a directory on the way is missing */
  case ENOTDIR:      /* a file where a directory should be */
  case EISDIR:       /* a directory where a file should be */
  case ENAMETOOLONG: /* a component or the whole path */
  case ELOOP:        /* a symlink loop on the way */
  case EACCES:       /* no permission to create or replace there */
  case EPERM:
  case EROFS:        /* a read-only file system */
  case EEXIST:       /* something else holds the name */
    return INFSIM_EINPUT;
  default:           /* ENOSPC, EFBIG, EIO, EDQUOT...: the write itself failed */
    return INFSIM_EIO;
  }
}

/* ---- names -------------------------------------------------------------- */

/* This host's name with every character outside [A-Za-z0-9-] as '-', so
 * that the dots separating the fields of a temp name stay unambiguous. */
static void host_tag(char out[HOST_BYTES]) {
  char raw[256];
  if (gethostname(raw, sizeof raw) != 0) snprintf(raw, sizeof raw, "localhost");
  raw[sizeof raw - 1] = '\0';
  size_t n = 0;
  for (const char *p = raw; *p != '\0' && n + 1 < HOST_BYTES; p++) {
    char c = *p;
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
    out[n++] = ok ? c : '-';
  }
  if (n == 0) out[n++] = '-';
  out[n] = '\0';
}

/* Creates FINAL.tmp.HOST.PID.XXXXXX; returns its descriptor or -1. */
static int make_temp(const char *final_path, char temp[INFSIM_PATH_BYTES]) {
  char host[HOST_BYTES];
  host_tag(host);
  int n = snprintf(temp, INFSIM_PATH_BYTES, "%s.tmp.%s.%ld.XXXXXX", final_path, host, (long)getpid());
  if (n < 0 || n >= INFSIM_PATH_BYTES) {
    errno = ENAMETOOLONG;
    return -1;
  }
  return mkstemp(temp);
}

/* The directory part of path ("." when there is none). */
static void dir_of(const char *path, char out[INFSIM_PATH_BYTES]) {
  const char *slash = strrchr(path, '/');
  if (slash == NULL) {
    snprintf(out, INFSIM_PATH_BYTES, ".");
  } else if (slash == path) {
    snprintf(out, INFSIM_PATH_BYTES, "/");
  } else {
    snprintf(out, INFSIM_PATH_BYTES, "%.*s", (int)(slash - path), path);
  }
}

/* If name is NAME.tmp.HOST.PID.XXXXXX with HOST == host, the PID; else 0. */
static long debris_pid(const char *name, const char *host) {
  size_t len = strlen(name), hlen = strlen(host);
  if (len < TEMP_SUFFIX_BYTES + 1) return 0;
  size_t i = len - TEMP_SUFFIX_BYTES - 1; /* the '.' before XXXXXX */
  if (name[i] != '.') return 0;
  size_t end = i;
  while (i > 0 && name[i - 1] >= '0' && name[i - 1] <= '9') i--;
  if (i == end || end - i > 9 || i == 0 || name[i - 1] != '.') return 0;
  long pid = strtol(name + i, NULL, 10);
  i--; /* the '.' before PID */
  if (i < hlen + 5 || strncmp(name + i - hlen, host, hlen) != 0) return 0;
  i -= hlen;
  if (strncmp(name + i - 5, ".tmp.", 5) != 0) return 0;
  return pid;
}

void infsim_atomic_remove_debris(const char *dir, int *removed) {
  if (removed != NULL) *removed = 0;
  DIR *d = opendir(dir);
  if (d == NULL) return;
  char host[HOST_BYTES];
  host_tag(host);
  long self = (long)getpid();
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    long pid = debris_pid(e->d_name, host);
    if (pid <= 0 || pid == self) continue;
    /* ESRCH: no such process on this host. EPERM means it lives (another user's). */
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
    char path[INFSIM_PATH_BYTES];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= sizeof path) continue;
    struct stat sb;
    if (lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
    if (unlink(path) == 0 && removed != NULL) (*removed)++;
  }
  closedir(d);
}

/* ---- the destination ---------------------------------------------------- */

typedef enum { DEST_NEW, DEST_REGULAR, DEST_SPECIAL } dest_kind;

/* Follows symlinks from path to the file a write replaces or writes into.
 * A dangling link's target is a new file, as `echo > link` makes it. */
static infsim_status resolve_dest(const char *path, char out[INFSIM_PATH_BYTES], dest_kind *kind,
                                  infsim_error *err) {
  size_t len = strlen(path);
  if (len == 0) return infsim_fail(err, INFSIM_EINPUT, "empty output path");
  if (len >= INFSIM_PATH_BYTES - 64) return infsim_fail(err, INFSIM_EINPUT, "%s: path too long", path);
  memcpy(out, path, len + 1);
  for (int hop = 0;; hop++) {
    struct stat sb;
    if (lstat(out, &sb) != 0) {
      if (errno == ENOENT) {
        *kind = DEST_NEW;
        return INFSIM_OK;
      }
      return infsim_fail(err, infsim_output_errno_status(errno), "%s: cannot write: %s", path, strerror(errno));
    }
    if (S_ISDIR(sb.st_mode)) return infsim_fail(err, INFSIM_EINPUT, "%s: is a directory, not a file", path);
    if (S_ISREG(sb.st_mode)) {
      *kind = DEST_REGULAR;
      return INFSIM_OK;
    }
    if (!S_ISLNK(sb.st_mode)) {
      *kind = DEST_SPECIAL;
      return INFSIM_OK;
    }
    if (hop == MAX_SYMLINK_HOPS)
      return infsim_fail(err, INFSIM_EINPUT, "%s: too many levels of symbolic links", path);
    char target[INFSIM_PATH_BYTES];
    ssize_t n = readlink(out, target, sizeof target - 1);
    if (n < 0) return infsim_fail(err, INFSIM_EIO, "%s: cannot read link: %s", path, strerror(errno));
    target[n] = '\0';
    char next[INFSIM_PATH_BYTES];
    int m;
    if (target[0] == '/') {
      m = snprintf(next, sizeof next, "%s", target);
    } else {
      char dir[INFSIM_PATH_BYTES];
      dir_of(out, dir);
      m = snprintf(next, sizeof next, "%s/%s", dir, target);
    }
    if (m < 0 || m >= INFSIM_PATH_BYTES - 64)
      return infsim_fail(err, INFSIM_EINPUT, "%s: link target path too long", path);
    memcpy(out, next, (size_t)m + 1);
  }
}

static infsim_status open_dest(infsim_atomic_file *af, const char *path, bool want_stream, bool allow_direct,
                               infsim_error *err) {
  memset(af, 0, sizeof *af);
  dest_kind kind = DEST_NEW;
  infsim_status st = resolve_dest(path, af->final_path, &kind, err);
  if (st != INFSIM_OK) return st;
  if (kind == DEST_SPECIAL) {
    if (!allow_direct)
      return infsim_fail(err, INFSIM_EINPUT, "%s: not a regular file (this output cannot go to a device or pipe)",
                         path);
    int fd = open(af->final_path, O_WRONLY | O_NOCTTY);
    if (fd < 0)
      return infsim_fail(err, infsim_output_errno_status(errno), "%s: cannot open: %s", path, strerror(errno));
    af->fp = fdopen(fd, "w");
    if (af->fp == NULL) {
      close(fd);
      return infsim_fail(err, INFSIM_ENOMEM, "%s: cannot open: %s", path, strerror(errno));
    }
    af->direct = true;
    return INFSIM_OK;
  }
  char dir[INFSIM_PATH_BYTES];
  dir_of(af->final_path, dir);
  infsim_atomic_remove_debris(dir, NULL);
  int fd = make_temp(af->final_path, af->temp_path);
  if (fd < 0) {
    int saved = errno;
    af->temp_path[0] = '\0';
    return infsim_fail(err, infsim_output_errno_status(saved), "%s: cannot create: %s", path, strerror(saved));
  }
  if (!want_stream) {
    close(fd);
    return INFSIM_OK;
  }
  af->fp = fdopen(fd, "w");
  if (af->fp == NULL) {
    close(fd);
    unlink(af->temp_path);
    af->temp_path[0] = '\0';
    return infsim_fail(err, INFSIM_ENOMEM, "%s: cannot open: %s", path, strerror(errno));
  }
  return INFSIM_OK;
}

/* Flushes and closes af->fp (if open); false on any write error. */
static bool close_stream(infsim_atomic_file *af) {
  if (af->fp == NULL) return true;
  bool failed = ferror(af->fp) != 0;
  failed |= fflush(af->fp) != 0;
  failed |= fclose(af->fp) != 0;
  af->fp = NULL;
  return !failed;
}

/* ---- one file ------------------------------------------------------------ */

infsim_status infsim_atomic_open(infsim_atomic_file *af, const char *path, infsim_error *err) {
  return open_dest(af, path, true, true, err);
}

infsim_status infsim_atomic_commit(infsim_atomic_file *af, infsim_error *err) {
  errno = 0;
  bool ok = close_stream(af);
  if (af->direct) {
    if (!ok) return infsim_fail(err, INFSIM_EIO, "%s: cannot write: %s", af->final_path, strerror(errno));
    return INFSIM_OK;
  }
  if (ok) {
    /* mkstemp creates 0600; outputs are ordinary files. */
    chmod(af->temp_path, 0644);
    ok = rename(af->temp_path, af->final_path) == 0;
  }
  if (!ok) {
    int saved = errno;
    unlink(af->temp_path);
    af->temp_path[0] = '\0';
    return infsim_fail(err, infsim_output_errno_status(saved), "%s: cannot write: %s", af->final_path,
                       strerror(saved));
  }
  af->temp_path[0] = '\0';
  return INFSIM_OK;
}

void infsim_atomic_abort(infsim_atomic_file *af) {
  if (af->fp != NULL) fclose(af->fp);
  af->fp = NULL;
  if (!af->direct && af->temp_path[0] != '\0') unlink(af->temp_path);
  af->temp_path[0] = '\0';
}

/* ---- sets ---------------------------------------------------------------- */

typedef struct {
  infsim_atomic_file af;
  char backup[INFSIM_PATH_BYTES]; /* "" or the old destination's second name */
  bool backup_by_rename;          /* the old file left its name (no hard links here) */
  bool renamed;                   /* the new file is in place (a removal: the old one is gone) */
  bool removal;                   /* af names a file the commit removes; no temporary file */
} set_member;

struct infsim_atomic_set {
  set_member **m; /* each member allocated apart: temp_path pointers handed out stay valid */
  size_t n, cap;
  char **dirs; /* directories this set created, parents first: removed again unless it commits */
  size_t n_dirs;
  bool done; /* committed or aborted */
};

infsim_atomic_set *infsim_atomic_set_new(void) { return calloc(1, sizeof(infsim_atomic_set)); }

static const char *base_of(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash != NULL ? slash + 1 : path;
}

bool infsim_same_file_path(const char *a, const char *b) {
  if (strcmp(a, b) == 0) return true;
  if (strcmp(base_of(a), base_of(b)) != 0) return false;
  char dir_a[INFSIM_PATH_BYTES], dir_b[INFSIM_PATH_BYTES];
  dir_of(a, dir_a);
  dir_of(b, dir_b);
  struct stat sa, sb;
  return stat(dir_a, &sa) == 0 && stat(dir_b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* Takes mem (allocated) into the set, or frees it when it names a file
 * already there. */
static infsim_status set_take(infsim_atomic_set *set, set_member *mem, const char *path, infsim_error *err) {
  infsim_status st = INFSIM_OK;
  for (size_t i = 0; i < set->n && st == INFSIM_OK; i++)
    if (infsim_same_file_path(set->m[i]->af.final_path, mem->af.final_path))
      st = infsim_fail(err, INFSIM_EINPUT, "%s: the same file twice in one output set", path);
  if (st == INFSIM_OK && set->n == set->cap) {
    size_t cap = set->cap == 0 ? 4 : 2 * set->cap;
    set_member **p = realloc(set->m, cap * sizeof *p);
    if (p == NULL) st = infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", path);
    else {
      set->m = p;
      set->cap = cap;
    }
  }
  if (st != INFSIM_OK) {
    if (!mem->removal) infsim_atomic_abort(&mem->af);
    free(mem);
    return st;
  }
  set->m[set->n++] = mem;
  return INFSIM_OK;
}

static infsim_status set_add(infsim_atomic_set *set, const char *path, bool want_stream, infsim_error *err) {
  assert(set != NULL && !set->done);
  set_member *mem = calloc(1, sizeof *mem);
  if (mem == NULL) return infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", path);
  infsim_status st = open_dest(&mem->af, path, want_stream, want_stream, err);
  if (st != INFSIM_OK) {
    free(mem);
    return st;
  }
  return set_take(set, mem, path, err);
}

infsim_status infsim_atomic_set_remove(infsim_atomic_set *set, const char *path, infsim_error *err) {
  assert(set != NULL && !set->done);
  size_t len = strlen(path);
  if (len == 0 || len >= INFSIM_PATH_BYTES - 64) return infsim_fail(err, INFSIM_EINPUT, "%s: path too long", path);
  set_member *mem = calloc(1, sizeof *mem);
  if (mem == NULL) return infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", path);
  /* The name itself, not a link's target: what goes is this entry. */
  memcpy(mem->af.final_path, path, len + 1);
  mem->removal = true;
  return set_take(set, mem, path, err);
}

infsim_status infsim_atomic_set_add(infsim_atomic_set *set, const char *path, FILE **fp, infsim_error *err) {
  infsim_status st = set_add(set, path, true, err);
  *fp = st == INFSIM_OK ? set->m[set->n - 1]->af.fp : NULL;
  return st;
}

infsim_status infsim_atomic_set_add_path(infsim_atomic_set *set, const char *path, const char **temp_path,
                                         infsim_error *err) {
  infsim_status st = set_add(set, path, false, err);
  *temp_path = st == INFSIM_OK ? set->m[set->n - 1]->af.temp_path : NULL;
  return st;
}

/* Gives the existing destination of mem a second name, so that it can be
 * put back. A hard link keeps the final name in place throughout. */
static infsim_status keep_old(set_member *mem, infsim_error *err) {
  struct stat sb;
  if (lstat(mem->af.final_path, &sb) != 0) {
    if (errno == ENOENT) return INFSIM_OK;
    return infsim_fail(err, infsim_output_errno_status(errno), "%s: cannot replace: %s", mem->af.final_path,
                       strerror(errno));
  }
  if (mem->removal && !S_ISREG(sb.st_mode) && !S_ISLNK(sb.st_mode)) return INFSIM_OK; /* not ours to remove */
  if (S_ISDIR(sb.st_mode))
    return infsim_fail(err, INFSIM_EINPUT, "%s: is a directory, not a file", mem->af.final_path);
  int fd = make_temp(mem->af.final_path, mem->backup);
  if (fd < 0) {
    int saved = errno;
    mem->backup[0] = '\0';
    return infsim_fail(err, infsim_output_errno_status(saved), "%s: cannot keep the old file: %s",
                       mem->af.final_path, strerror(saved));
  }
  close(fd);
  unlink(mem->backup); /* the name is ours (host, pid, random); link() wants it free */
  if (link(mem->af.final_path, mem->backup) == 0) return INFSIM_OK;
  if (rename(mem->af.final_path, mem->backup) == 0) {
    mem->backup_by_rename = true;
    return INFSIM_OK;
  }
  int saved = errno;
  mem->backup[0] = '\0';
  return infsim_fail(err, infsim_output_errno_status(saved), "%s: cannot keep the old file: %s",
                     mem->af.final_path, strerror(saved));
}

/* Removes the directories the set created, deepest first; one that is not
 * empty (someone else wrote there meanwhile) stays. */
static void remove_created_dirs(infsim_atomic_set *set) {
  for (size_t k = set->n_dirs; k-- > 0;) rmdir(set->dirs[k]);
}

/* Undoes a failed commit: new files out, old files back, temps removed. */
static void set_rollback(infsim_atomic_set *set) {
  for (size_t k = set->n; k-- > 0;) {
    set_member *mem = set->m[k];
    if (mem->af.direct) continue;
    if (mem->removal) {
      /* A removed file comes back from its spare name. */
      if (mem->backup[0] != '\0') {
        if (mem->renamed || mem->backup_by_rename) rename(mem->backup, mem->af.final_path);
        else unlink(mem->backup);
        mem->backup[0] = '\0';
      }
      continue;
    }
    if (mem->renamed) {
      /* The old file goes back over the new one; with no old file, the new
       * one goes. A backup that cannot be put back stays, under its
       * temporary name: losing the old data would be worse than debris. */
      if (mem->backup[0] == '\0') unlink(mem->af.final_path);
      else if (rename(mem->backup, mem->af.final_path) == 0) mem->backup[0] = '\0';
    } else {
      infsim_atomic_abort(&mem->af);
      if (mem->backup[0] != '\0') {
        /* A hard link is a spare name of a file still in place; a renamed
         * original goes back to its name. */
        if (!mem->backup_by_rename) unlink(mem->backup);
        else rename(mem->backup, mem->af.final_path);
        mem->backup[0] = '\0';
      }
    }
  }
  remove_created_dirs(set);
}

infsim_status infsim_atomic_set_commit(infsim_atomic_set *set, infsim_error *err) {
  assert(set != NULL && !set->done);
  set->done = true;
  infsim_status st = INFSIM_OK;
  /* Streams first, devices before files: a device that fails leaves every
   * regular destination as it was. */
  for (int pass = 0; pass < 2 && st == INFSIM_OK; pass++)
    for (size_t i = 0; i < set->n && st == INFSIM_OK; i++) {
      infsim_atomic_file *af = &set->m[i]->af;
      if (af->direct != (pass == 0)) continue;
      errno = 0;
      if (!close_stream(af))
        st = infsim_fail(err, INFSIM_EIO, "%s: cannot write: %s", af->final_path, strerror(errno));
    }
  for (size_t i = 0; i < set->n && st == INFSIM_OK; i++) {
    set_member *mem = set->m[i];
    if (mem->af.direct) continue;
    st = keep_old(mem, err);
    if (st != INFSIM_OK) break;
    if (mem->removal) {
      /* The spare name keeps the file until the whole set is in place. */
      if (mem->backup[0] != '\0' && !mem->backup_by_rename && unlink(mem->af.final_path) != 0) {
        int saved = errno;
        st = infsim_fail(err, infsim_output_errno_status(saved), "%s: cannot remove: %s", mem->af.final_path,
                         strerror(saved));
        break;
      }
      mem->renamed = true;
      continue;
    }
    chmod(mem->af.temp_path, 0644);
    if (rename(mem->af.temp_path, mem->af.final_path) != 0) {
      int saved = errno;
      st = infsim_fail(err, infsim_output_errno_status(saved), "%s: cannot replace: %s", mem->af.final_path,
                       strerror(saved));
      break;
    }
    mem->renamed = true;
    mem->af.temp_path[0] = '\0';
  }
  if (st != INFSIM_OK) {
    set_rollback(set);
    return st;
  }
  for (size_t i = 0; i < set->n; i++)
    if (set->m[i]->backup[0] != '\0') {
      unlink(set->m[i]->backup);
      set->m[i]->backup[0] = '\0';
    }
  return INFSIM_OK;
}

void infsim_atomic_set_free(infsim_atomic_set *set) {
  if (set == NULL) return;
  if (!set->done) {
    for (size_t i = 0; i < set->n; i++)
      if (!set->m[i]->removal) infsim_atomic_abort(&set->m[i]->af);
    remove_created_dirs(set);
  }
  for (size_t i = 0; i < set->n; i++) free(set->m[i]);
  free(set->m);
  for (size_t i = 0; i < set->n_dirs; i++) free(set->dirs[i]);
  free(set->dirs);
  free(set);
}

/* ---- directories ----------------------------------------------------------- */

/* Makes dir unless it is a directory already; *created says which. */
static infsim_status make_one_dir(const char *dir, bool *created, infsim_error *err) {
  *created = false;
  if (mkdir(dir, 0755) == 0) {
    *created = true;
    return INFSIM_OK;
  }
  int saved = errno;
  struct stat sb;
  if (saved == EEXIST || saved == EROFS || saved == EACCES) {
    if (stat(dir, &sb) == 0) {
      if (S_ISDIR(sb.st_mode)) return INFSIM_OK;
      return infsim_fail(err, INFSIM_EINPUT, "%s: exists and is not a directory", dir);
    }
  }
  return infsim_fail(err, infsim_output_errno_status(saved), "%s: cannot create directory: %s", dir,
                     strerror(saved));
}

/* Creates path and its missing parents; each one created is recorded in
 * set (when not NULL) so that a set that does not commit removes it. */
static infsim_status make_dirs(const char *path, infsim_atomic_set *set, infsim_error *err) {
  char buf[INFSIM_PATH_BYTES];
  size_t len = strlen(path);
  if (len == 0 || len >= sizeof buf) return infsim_fail(err, INFSIM_EINPUT, "bad output directory '%s'", path);
  memcpy(buf, path, len + 1);
  for (char *p = buf + 1;; p++) {
    bool last = *p == '\0';
    if (!last && (*p != '/' || p[-1] == '/')) continue;
    *p = '\0';
    bool created = false;
    infsim_status st = make_one_dir(buf, &created, err);
    if (st == INFSIM_OK && created && set != NULL) {
      char **d = realloc(set->dirs, (set->n_dirs + 1) * sizeof *d);
      char *copy = d != NULL ? strdup(buf) : NULL;
      if (d != NULL) set->dirs = d;
      if (copy == NULL) {
        rmdir(buf);
        st = infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", path);
      } else {
        set->dirs[set->n_dirs++] = copy;
      }
    }
    if (st != INFSIM_OK || last) return st;
    *p = '/';
  }
}

infsim_status infsim_make_dirs(const char *path, infsim_error *err) { return make_dirs(path, NULL, err); }

infsim_status infsim_atomic_set_make_dirs(infsim_atomic_set *set, const char *path, infsim_error *err) {
  assert(set != NULL && !set->done);
  return make_dirs(path, set, err);
}
