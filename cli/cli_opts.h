/*
** cli_opts.h: option parsing shared by the commands: "--name VALUE" and
** "--name=VALUE", integer values, and the progress mode.
*/
#ifndef INFSIM_CLI_OPTS_H
#define INFSIM_CLI_OPTS_H

#include <stdbool.h>

#include "infsim/sweep.h"

/* 1 when argv[*i] is option `name` (its value in *value, *i advanced past
 * it), 0 when it is not, -1 when the value is missing. */
int cli_option_value(int argc, char **argv, int *i, const char *name, const char **value);

/* cli_option_value for whichever of the NULL-terminated names argv[*i] is:
 * when it is one (1, or -1 for a missing value), *name becomes that bare
 * name, so a parsing loop compares names whichever form was given. */
int cli_option_among(int argc, char **argv, int *i, const char *const *names, const char **name, const char **value);

/* Parses a whole decimal integer in [min, max]. */
bool cli_parse_int(const char *text, long min, long max, long *out);

/* "auto" (a bar on a terminal, lines otherwise), "bar", "lines", "none". */
bool cli_parse_progress(const char *text, infsim_progress_mode *out);

/* Online CPU cores, at least 1. */
int cli_cores(void);

/* False (with a message in err, INFSIM_EINPUT) when the directory that
 * would hold path does not exist. */
bool cli_parent_dir_exists(const char *path, infsim_error *err);

#endif
