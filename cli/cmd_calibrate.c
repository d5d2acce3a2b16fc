/* Placeholder: replaced by the real `infsim calibrate`. */
#include <stdio.h>

#include "commands.h"

int infsim_cmd_calibrate(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "infsim calibrate: not built yet\n");
  return 1;
}
