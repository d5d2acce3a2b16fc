/*
** cli_opts.c: option parsing shared by the study commands (cli_opts.h).
*/
#include "cli_opts.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cli_option_value(int argc, char **argv, int *i, const char *name, const char **value) {
  size_t len = strlen(name);
  if (strncmp(argv[*i], name, len) != 0) return 0;
  if (argv[*i][len] == '=') {
    *value = argv[*i] + len + 1;
    return 1;
  }
  if (argv[*i][len] != '\0') return 0;
  if (*i + 1 >= argc) return -1;
  *value = argv[++*i];
  return 1;
}

int cli_option_among(int argc, char **argv, int *i, const char *const *names, const char **name, const char **value) {
  for (size_t k = 0; names[k] != NULL; k++) {
    int got = cli_option_value(argc, argv, i, names[k], value);
    if (got != 0) {
      *name = names[k];
      return got;
    }
  }
  return 0;
}

bool cli_parse_int(const char *text, long min, long max, long *out) {
  char *end;
  errno = 0;
  long v = strtol(text, &end, 10);
  if (text[0] == '\0' || *end != '\0' || errno != 0 || v < min || v > max) return false;
  *out = v;
  return true;
}

bool cli_parse_progress(const char *text, infsim_progress_mode *out) {
  if (strcmp(text, "auto") == 0)
    *out = isatty(STDERR_FILENO) ? INFSIM_PROGRESS_BAR : INFSIM_PROGRESS_LINES;
  else if (strcmp(text, "bar") == 0)
    *out = INFSIM_PROGRESS_BAR;
  else if (strcmp(text, "lines") == 0)
    *out = INFSIM_PROGRESS_LINES;
  else if (strcmp(text, "none") == 0)
    *out = INFSIM_PROGRESS_NONE;
  else
    return false;
  return true;
}

int cli_cores(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n >= 1 ? (int)n : 1;
}

bool cli_parent_dir_exists(const char *path, infsim_error *err) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", path);
  const char *dir = dirname(buf);
  struct stat sb;
  if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
    infsim_fail(err, INFSIM_EINPUT, "%s: directory '%s' does not exist", path, dir);
    return false;
  }
  return true;
}
