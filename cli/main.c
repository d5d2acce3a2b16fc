/*
** main.c: `infsim SUBCOMMAND ...` dispatch.
*/
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "infsim/run.h"

typedef struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} infsim_command;

static const infsim_command k_commands[] = {
    {"run", infsim_cmd_run, "simulate a serving cluster on a trace"},
    {"trace", infsim_cmd_trace, "generate, import and describe request traces"},
    {"calibrate", infsim_cmd_calibrate, "measure kernel cost curves, load and fit them"},
    {"cluster", infsim_cmd_cluster, "run the scheduler on real kernels over MPI ranks"},
    {"compare", infsim_cmd_compare, "relative errors of a simulated run against a cluster run"},
    {"plot", infsim_cmd_plot, "plot a run's outputs, a sweep DB or a calibration DB with gnuplot"},
    {"sweep", infsim_cmd_sweep, "run a grid of settings x seeds into one results DB (resumable)"},
    {"capacity", infsim_cmd_capacity, "find the highest rate or fewest instances meeting an SLO"},
};

static void print_usage(FILE *out) {
  fprintf(out, "usage: infsim COMMAND [ARGS...]\n\ncommands:\n");
  for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
    fprintf(out, "  %-10s %s\n", k_commands[i].name, k_commands[i].summary);
  fprintf(out, "\n`infsim COMMAND --help` describes one. Exit codes: 0 ok, 1 run failed, 2 bad input,\n"
               "77 skipped (no GPU where one is needed).\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    print_usage(stderr);
    return 2;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
    print_usage(stdout);
    return 0;
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf("infsim %s\nsources %s\n", INFSIM_VERSION, infsim_source_id());
    return 0;
  }
  for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
    if (strcmp(argv[1], k_commands[i].name) == 0) return k_commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "infsim: unknown command '%s' (try infsim --help)\n", argv[1]);
  return 2;
}
