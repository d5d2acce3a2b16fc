/* Placeholder: replaced by the real `infsim plot`. */
#include <stdio.h>

#include "commands.h"

int infsim_cmd_plot(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "infsim plot: not built yet\n");
  return 1;
}
