/*
** plot_common.c: the gnuplot driver of `infsim plot` (plot_common.h).
**
** Invariants: everything this run creates lives in work_dir until
** plot_finish renames the images; work_dir is removed on every path out;
** the script refers only to names inside work_dir.
*/
#include "plot_common.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "infsim/atomic_file.h"

static const char k_script_name[] = "plot.gp";

infsim_status plot_begin(plot_job *pj, const char *out_dir, bool svg, infsim_error *err) {
  memset(pj, 0, sizeof *pj);
  pj->svg = svg;
  if (snprintf(pj->out_dir, sizeof pj->out_dir, "%s", out_dir) >= (int)sizeof pj->out_dir - 64)
    return infsim_fail(err, INFSIM_EINPUT, "%.200s...: path too long", out_dir);
  /* The directories made here (out_dir and missing parents) are removed
   * again if the plot fails: a failed plot leaves nothing behind. */
  pj->dirs = infsim_atomic_set_new();
  if (pj->dirs == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  infsim_status st = infsim_atomic_set_make_dirs(pj->dirs, out_dir, err);
  snprintf(pj->work_dir, sizeof pj->work_dir, "%s/.infsim-plot-XXXXXX", out_dir);
  if (st == INFSIM_OK && mkdtemp(pj->work_dir) == NULL)
    st = infsim_fail(err, infsim_output_errno_status(errno), "%s: cannot create a working directory: %s", out_dir,
                     strerror(errno));
  if (st == INFSIM_OK && (pj->fp = open_memstream(&pj->script, &pj->script_bytes)) == NULL) {
    rmdir(pj->work_dir);
    st = infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  }
  if (st != INFSIM_OK) {
    infsim_atomic_set_free(pj->dirs);
    pj->dirs = NULL;
    return st;
  }
  fprintf(pj->fp, "svg = %d\n", svg ? 1 : 0);
  fputs(plot_template("terminal"), pj->fp);
  return INFSIM_OK;
}

FILE *plot_data_open(plot_job *pj, const char *name) {
  if (pj->data_count == PLOT_MAX_OUTPUTS) return NULL;
  char path[PLOT_PATH_BYTES + 64];
  snprintf(path, sizeof path, "%s/%s", pj->work_dir, name);
  FILE *fp = fopen(path, "w");
  if (fp != NULL) pj->data[pj->data_count++] = strdup(name);
  return fp;
}

/* Writes s as a gnuplot single-quoted string ('' stands for '); control
 * characters, which such a string cannot hold, show as '?'. */
static void quote(FILE *fp, const char *s) {
  fputc('\'', fp);
  for (; *s != '\0'; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '\'') fputc('\'', fp);
    fputc(ch < 0x20 || ch == 0x7f ? '?' : ch, fp);
  }
  fputc('\'', fp);
}

void plot_assign(plot_job *pj, const char *name, const char *value) {
  fprintf(pj->fp, "%s = ", name);
  quote(pj->fp, value);
  fputc('\n', pj->fp);
}

void plot_number(plot_job *pj, const char *name, double value) { fprintf(pj->fp, "%s = %.17g\n", name, value); }

void plot_start(plot_job *pj, const char *stem, const char *data) {
  if (pj->output_count < PLOT_MAX_OUTPUTS) pj->outputs[pj->output_count++] = strdup(stem);
  fprintf(pj->fp, "reset\nset termoption noenhanced\nset output '%s.%s'\n", stem, pj->svg ? "svg" : "png");
  plot_assign(pj, "datafile", data);
}

infsim_status plot_template_add(plot_job *pj, const char *name, bool has_data, infsim_error *err) {
  const char *t = plot_template(has_data ? name : "no_data");
  if (t == NULL) return infsim_fail(err, INFSIM_ERUN, "plot template %s.gp missing from the build", name);
  fputs(t, pj->fp);
  fputs("\nunset output\n", pj->fp);
  return INFSIM_OK;
}

/* The first executable "gnuplot" on PATH. */
static bool find_gnuplot(char *path, size_t path_bytes) {
  const char *dirs = getenv("PATH");
  if (dirs == NULL) return false;
  while (*dirs != '\0') {
    size_t len = strcspn(dirs, ":");
    int n = snprintf(path, path_bytes, "%.*s/gnuplot", (int)(len == 0 ? 1 : len), len == 0 ? "." : dirs);
    if (n > 0 && (size_t)n < path_bytes && access(path, X_OK) == 0) return true;
    dirs += len;
    if (*dirs == ':') dirs++;
  }
  return false;
}

/* gnuplot in work_dir on the script file; its messages go to our stderr. */
static infsim_status run_gnuplot(plot_job *pj, const char *gnuplot, infsim_error *err) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) return infsim_fail(err, INFSIM_ERUN, "cannot start %s: %s", gnuplot, strerror(errno));
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    if (chdir(pj->work_dir) != 0) _exit(126);
    execl(gnuplot, "gnuplot", k_script_name, (char *)NULL);
    _exit(127);
  }
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return infsim_fail(err, INFSIM_ERUN, "waiting for gnuplot: %s", strerror(errno));
  char words[PLOT_EXIT_WORDS_BYTES];
  if (plot_gnuplot_failed(status, words))
    return infsim_fail(err, INFSIM_ERUN, "%s %s; see its messages above", gnuplot, words);
  return INFSIM_OK;
}

bool plot_gnuplot_failed(int wait_status, char words[PLOT_EXIT_WORDS_BYTES]) {
  if (WIFSIGNALED(wait_status)) {
    snprintf(words, PLOT_EXIT_WORDS_BYTES, "killed by signal %d", WTERMSIG(wait_status));
    return true;
  }
  if (WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0) return false;
  /* A nonzero exit; -1 for a status that is neither exit nor signal (a
   * stop, which only a wait that asks for stops reports). */
  snprintf(words, PLOT_EXIT_WORDS_BYTES, "exited with status %d",
           WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1);
  return true;
}

/* Removes work_dir and what is in it; the directories made for out_dir
 * stay when the plot succeeded, and go (when empty) when it failed. */
static void cleanup(plot_job *pj, bool succeeded) {
  char path[PLOT_PATH_BYTES + 64];
  for (int i = 0; i < pj->data_count; i++) {
    snprintf(path, sizeof path, "%s/%s", pj->work_dir, pj->data[i]);
    unlink(path);
    free(pj->data[i]);
  }
  for (int i = 0; i < pj->output_count; i++) {
    snprintf(path, sizeof path, "%s/%s.%s", pj->work_dir, pj->outputs[i], pj->svg ? "svg" : "png");
    unlink(path); /* fails harmlessly for the renamed */
    free(pj->outputs[i]);
  }
  snprintf(path, sizeof path, "%s/%s", pj->work_dir, k_script_name);
  unlink(path);
  if (pj->work_dir[0] != '\0') rmdir(pj->work_dir);
  if (pj->fp != NULL) fclose(pj->fp);
  free(pj->script);
  infsim_error ignored;
  if (succeeded) infsim_atomic_set_commit(pj->dirs, &ignored); /* no file in it: keeps the directories */
  infsim_atomic_set_free(pj->dirs);
  memset(pj, 0, sizeof *pj);
}

void plot_abort(plot_job *pj) { cleanup(pj, false); }

infsim_status plot_finish(plot_job *pj, infsim_error *err) {
  infsim_status st = INFSIM_OK;
  char gnuplot[PLOT_PATH_BYTES];
  if (!find_gnuplot(gnuplot, sizeof gnuplot))
    st = infsim_fail(err, INFSIM_ERUN, "gnuplot not found on PATH (install gnuplot, e.g. gnuplot-nox)");
  if (st == INFSIM_OK && pj->output_count == PLOT_MAX_OUTPUTS)
    st = infsim_fail(err, INFSIM_EINPUT, "more than %d plots at once", PLOT_MAX_OUTPUTS - 1);
  if (st == INFSIM_OK) {
    fclose(pj->fp);
    pj->fp = NULL;
    char path[PLOT_PATH_BYTES + 64];
    snprintf(path, sizeof path, "%s/%s", pj->work_dir, k_script_name);
    FILE *fp = fopen(path, "w");
    bool ok = fp != NULL && fwrite(pj->script, 1, pj->script_bytes, fp) == pj->script_bytes;
    if (fp != NULL) ok &= fclose(fp) == 0;
    st = ok ? run_gnuplot(pj, gnuplot, err) : infsim_fail(err, INFSIM_EIO, "%s: cannot write: %s", path, strerror(errno));
  }
  const char *ext = pj->svg ? "svg" : "png";
  char from[PLOT_PATH_BYTES + 64], to[PLOT_PATH_BYTES + 64];
  /* gnuplot can exit 0 when a terminal failed to write: an empty image is
   * a failure too. */
  for (int i = 0; st == INFSIM_OK && i < pj->output_count; i++) {
    snprintf(from, sizeof from, "%s/%s.%s", pj->work_dir, pj->outputs[i], ext);
    struct stat sb;
    if (stat(from, &sb) != 0 || sb.st_size == 0)
      st = infsim_fail(err, INFSIM_ERUN, "%s.%s: gnuplot wrote nothing", pj->outputs[i], ext);
  }
  for (int i = 0; st == INFSIM_OK && i < pj->output_count; i++) {
    snprintf(from, sizeof from, "%s/%s.%s", pj->work_dir, pj->outputs[i], ext);
    snprintf(to, sizeof to, "%s/%s.%s", pj->out_dir, pj->outputs[i], ext);
    chmod(from, 0644);
    if (rename(from, to) != 0)
      st = infsim_fail(err, INFSIM_EIO, "%s: cannot write: %s", to, strerror(errno));
    else
      printf("%s\n", to);
  }
  cleanup(pj, st == INFSIM_OK);
  return st;
}
