/* Placeholder: replaced by the real `infsim run`. */
#include <stdio.h>

#include "commands.h"

int infsim_cmd_run(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "infsim run: not built yet\n");
  return 1;
}
