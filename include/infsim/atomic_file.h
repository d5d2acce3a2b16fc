/*
** atomic_file.h: outputs that readers never see half-written, alone or as a set.
**
** Every output the CLI writes goes through here. A regular file is written
** under a temporary name in the same directory and renamed onto its final
** name, so the destination holds either the old content or the new, never
** a mix. Two kinds of destination are not replaced:
**   - a symbolic link: the write goes through it, and the link's target is
**     replaced (the link stays a link, as `cp` and editors do);
**   - a character or block device, a FIFO or a socket (`-o /dev/null`,
**     `-o /dev/stdout`, a named pipe): it is opened and written directly,
**     since renaming a regular file over /dev/null would destroy it.
** A directory where a file should go is bad input (INFSIM_EINPUT, exit 2),
** found before anything is written. So is any output location that cannot
** be created or replaced (a missing directory, a file where a directory
** should be, a name too long, no permission, a read-only file system): the
** user named a place that cannot hold the output. A write that fails
** midway (a full disk, a file size limit) is an I/O error (INFSIM_EIO).
**
** Temporary names are FINAL.tmp.HOST.PID.XXXXXX (HOST with every character
** outside [A-Za-z0-9-] turned into '-', PID decimal, X random). Opening an
** output first removes such debris in its directory when HOST is this host
** and no process PID lives, so a run killed with SIGKILL leaves nothing
** that the next write into that directory does not clean up. Files of
** another host (a shared file system) or of a live process are left alone.
**
** Single file:
**     infsim_atomic_file af;
**     if (infsim_atomic_open(&af, path, err) != INFSIM_OK) return err->status;
**     fprintf(af.fp, ...);
**     return infsim_atomic_commit(&af, err);   // or infsim_atomic_abort(&af)
**
** Set of files, all or nothing (a run's summary.json, requests.csv,
** timeseries.csv and results.db):
**     infsim_atomic_set *set = infsim_atomic_set_new();
**     FILE *summary, *requests;
**     const char *db_temp;
**     st = infsim_atomic_set_add(set, "out/summary.json", &summary, err);
**     if (st == INFSIM_OK) st = infsim_atomic_set_add(set, "out/requests.csv", &requests, err);
**     if (st == INFSIM_OK) st = infsim_atomic_set_add_path(set, "out/results.db", &db_temp, err);
**     ... write the streams; open db_temp with SQLite, fill it, close it ...
**     if (st == INFSIM_OK) st = infsim_atomic_set_commit(set, err);
**     infsim_atomic_set_free(set);   // after a failure: removes every temp file
** Commit renames the files one by one; before replacing an existing file it
** keeps the old one under a temporary name (a hard link, so the final name
** never disappears), and when any rename fails it puts every old file back
** and removes the new ones it had put in place: afterwards the old set is
** whole (failure) or the new set is whole (success), and no temporary file
** remains. Writing through to a device or FIFO cannot be undone: such
** members are flushed first when the set commits, so that a device that
** fails leaves every regular file of the set as it was.
** A set may also remove files (infsim_atomic_set_remove: the outputs of an
** older run that this one does not write) and create directories
** (infsim_atomic_set_make_dirs); both are undone when it does not commit,
** so a failed set leaves no new file or directory behind.
** What no POSIX program can promise: a machine crash or SIGKILL in the
** middle of the renames leaves a mix (there is no rename of several files
** at once); the temporary files it leaves are debris as above.
*/
#ifndef INFSIM_ATOMIC_FILE_H
#define INFSIM_ATOMIC_FILE_H

#include <stdbool.h>
#include <stdio.h>

#include "infsim/status.h"

enum { INFSIM_PATH_BYTES = 4096 };

typedef struct {
  FILE *fp; /* write here */
  char final_path[INFSIM_PATH_BYTES]; /* the file replaced: a symlink's target, resolved */
  char temp_path[INFSIM_PATH_BYTES];  /* "" when direct */
  bool direct;                        /* a device, FIFO or socket, written in place */
} infsim_atomic_file;

/* Opens an output: a temporary file beside path (beside a symlink's
 * target), or path itself when it is a device, FIFO or socket. Removes
 * debris of dead processes in that directory first. Fails with
 * INFSIM_EINPUT when path is a directory, too long or in a place that
 * cannot hold it (infsim_output_errno_status). */
infsim_status infsim_atomic_open(infsim_atomic_file *af, const char *path, infsim_error *err);

/* Flushes, closes and renames the temporary file onto the final path. On
 * failure the temporary file is removed and the destination is untouched
 * (a direct output holds what was written). */
infsim_status infsim_atomic_commit(infsim_atomic_file *af, infsim_error *err);

/* Closes and removes the temporary file; the destination is untouched. */
void infsim_atomic_abort(infsim_atomic_file *af);

/* ---- sets of files, committed all or nothing ---- */

typedef struct infsim_atomic_set infsim_atomic_set;

/* A new empty set, or NULL when out of memory. */
infsim_atomic_set *infsim_atomic_set_new(void);

/* Adds an output and opens it for writing at *fp (owned by the set: do not
 * close it). The same final file twice in one set is an error. */
infsim_status infsim_atomic_set_add(infsim_atomic_set *set, const char *path, FILE **fp, infsim_error *err);

/* Adds an output that another library writes by name (SQLite): *temp_path
 * names an empty file to fill and close before commit; it lives as long as
 * the set. A device or FIFO is refused here (INFSIM_EINPUT): a library
 * that writes by name may need to seek or reopen. */
infsim_status infsim_atomic_set_add_path(infsim_atomic_set *set, const char *path, const char **temp_path,
                                         infsim_error *err);

/* Adds a removal: path (the name itself, a regular file or a symbolic
 * link; anything else, or nothing, is left alone) is removed when the set
 * commits and stays when it does not. */
infsim_status infsim_atomic_set_remove(infsim_atomic_set *set, const char *path, infsim_error *err);

/* Creates directory path and its missing parents (as infsim_make_dirs);
 * those it created are removed again (when empty) unless the set commits. */
infsim_status infsim_atomic_set_make_dirs(infsim_atomic_set *set, const char *path, infsim_error *err);

/* Puts every file of the set in place, all or nothing (see above). A set
 * commits once; after a failure the set is aborted. */
infsim_status infsim_atomic_set_commit(infsim_atomic_set *set, infsim_error *err);

/* Frees the set; when it was not committed, removes its temporary files
 * and leaves every destination as it was. NULL is fine. */
void infsim_atomic_set_free(infsim_atomic_set *set);

/* ---- helpers ---- */

/* The status of an output location that failed with errno errnum: bad
 * input (INFSIM_EINPUT) where the location cannot exist as named (ENOENT,
 * ENOTDIR, EISDIR, ENAMETOOLONG, ELOOP, EACCES, EPERM, EROFS, EEXIST),
 * else INFSIM_EIO. The one place that draws this line for every output. */
infsim_status infsim_output_errno_status(int errnum);

/* Whether paths a and b name one file: the same text, or the same last
 * component in one directory (the directory's device and inode), so that
 * out/x and out/./x are one file whether or not x exists yet. A directory
 * that does not exist (yet) is compared by its spelling only. Both the
 * output set (the same file twice) and callers that must refuse an input
 * that a set would overwrite ask this one question. */
bool infsim_same_file_path(const char *a, const char *b);

/* Removes temporary files of dead processes of this host from directory
 * dir (see above); *removed (may be NULL) counts them. A directory that
 * cannot be read removes nothing and is not an error. */
void infsim_atomic_remove_debris(const char *dir, int *removed);

/* Creates directory path (and its parents) if missing. A path, or a parent
 * of it, that exists and is not a directory is bad input (INFSIM_EINPUT). */
infsim_status infsim_make_dirs(const char *path, infsim_error *err);

#endif
