/*
** atomic_file.c: temp-name-then-rename writes (see atomic_file.h).
*/
#include "infsim/atomic_file.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

infsim_status infsim_atomic_open(infsim_atomic_file *af, const char *path, infsim_error *err) {
  memset(af, 0, sizeof *af);
  size_t len = strlen(path);
  if (len + 16 >= sizeof af->temp_path) return infsim_fail(err, INFSIM_EINPUT, "%s: path too long", path);
  memcpy(af->final_path, path, len + 1);
  snprintf(af->temp_path, sizeof af->temp_path, "%s.tmpXXXXXX", path);
  int fd = mkstemp(af->temp_path);
  if (fd < 0) return infsim_fail(err, INFSIM_EIO, "%s: cannot create: %s", path, strerror(errno));
  af->fp = fdopen(fd, "w");
  if (af->fp == NULL) {
    close(fd);
    unlink(af->temp_path);
    return infsim_fail(err, INFSIM_EIO, "%s: cannot open: %s", path, strerror(errno));
  }
  return INFSIM_OK;
}

infsim_status infsim_atomic_commit(infsim_atomic_file *af, infsim_error *err) {
  int failed = ferror(af->fp) != 0;
  failed |= fflush(af->fp) != 0;
  failed |= fclose(af->fp) != 0;
  af->fp = NULL;
  if (!failed) {
    /* mkstemp creates 0600; outputs are ordinary files. */
    chmod(af->temp_path, 0644);
    failed = rename(af->temp_path, af->final_path) != 0;
  }
  if (failed) {
    int saved = errno;
    unlink(af->temp_path);
    return infsim_fail(err, INFSIM_EIO, "%s: cannot write: %s", af->final_path, strerror(saved));
  }
  return INFSIM_OK;
}

void infsim_atomic_abort(infsim_atomic_file *af) {
  if (af->fp != NULL) fclose(af->fp);
  af->fp = NULL;
  if (af->temp_path[0] != '\0') unlink(af->temp_path);
}

infsim_status infsim_make_dirs(const char *path, infsim_error *err) {
  char buf[INFSIM_PATH_BYTES];
  size_t len = strlen(path);
  if (len == 0 || len >= sizeof buf) return infsim_fail(err, INFSIM_EINPUT, "bad output directory '%s'", path);
  memcpy(buf, path, len + 1);
  for (char *p = buf + 1; *p != '\0'; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
      return infsim_fail(err, INFSIM_EIO, "%s: cannot create directory: %s", buf, strerror(errno));
    *p = '/';
  }
  if (mkdir(buf, 0755) != 0 && errno != EEXIST)
    return infsim_fail(err, INFSIM_EIO, "%s: cannot create directory: %s", buf, strerror(errno));
  return INFSIM_OK;
}
