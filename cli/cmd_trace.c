/* Placeholder: replaced by the real `infsim trace`. */
#include <stdio.h>

#include "commands.h"

int infsim_cmd_trace(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "infsim trace: not built yet\n");
  return 1;
}
