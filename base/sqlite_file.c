/*
** sqlite_file.c: SQLite database files named by the user (sqlite_file.h).
*/
#include "infsim/sqlite_file.h"

#include <string.h>
#include <sys/stat.h>

#include "infsim/atomic_file.h"

const char *infsim_sqlite_file_unfit(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode) ? "is a directory, not a file" : NULL;
}

infsim_status infsim_sqlite_open_failed(sqlite3 *db, const char *path, infsim_error *err) {
  if (db == NULL) return infsim_fail(err, INFSIM_ENOMEM, "%s: cannot open: out of memory", path);
  int errnum = sqlite3_system_errno(db);
  if (errnum != 0)
    return infsim_fail(err, infsim_output_errno_status(errnum), "%s: cannot open: %s", path, strerror(errnum));
  return infsim_fail(err, INFSIM_EIO, "%s: cannot open: %s", path, sqlite3_errmsg(db));
}
