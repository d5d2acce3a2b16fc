/*
** sqlite_file.h: SQLite database files that the user names (a sweep's
** results DB, the calibration DB), refused or reported in the file's own
** terms.
**
** SQLite's messages name no cause: a directory opened read-only opens and
** then fails with "disk I/O error", and a file that cannot be created or
** opened is "unable to open database file". What the user sees instead is
** "is a directory, not a file" (the wording of every output, atomic_file.h)
** or the errno of the file itself ("Permission denied", "File name too
** long"), with the status any output location gets for that errno.
*/
#ifndef INFSIM_SQLITE_FILE_H
#define INFSIM_SQLITE_FILE_H

#include <sqlite3.h>

#include "infsim/status.h"

/* Why no SQLite database can be at path, as REASON in "PATH: REASON"
 * messages, or NULL when SQLite may try: "is a directory, not a file" for
 * a directory. A path that does not exist or cannot be read is left to
 * the caller (SQLite may create it; infsim_sqlite_open_failed says why
 * it could not). */
const char *infsim_sqlite_file_unfit(const char *path);

/* Fails err for a sqlite3_open_v2(path, &db, ...) that did not return
 * SQLITE_OK (db as that call left it; not closed here): "PATH: cannot
 * open: WHY", WHY the file's errno text where SQLite saw one, else
 * SQLite's message, or "out of memory" when there is no handle. Status:
 * infsim_output_errno_status of that errno (bad input for a place that
 * cannot hold the DB, an I/O error for a failing disk), INFSIM_EIO without
 * one, INFSIM_ENOMEM without a handle. */
infsim_status infsim_sqlite_open_failed(sqlite3 *db, const char *path, infsim_error *err);

#endif
