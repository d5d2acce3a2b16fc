/*
** mpi_none.c: MPI work in a build without MPI (commands.h): one
** executable; cluster mode runs one rank, sweeps use this process's
** threads.
*/
#include "commands.h"

int cli_mpi_handoff(int argc, char **argv) {
  (void)argc;
  (void)argv;
  return -1;
}

infsim_sweep_ranks_fn cli_sweep_ranks(void) { return NULL; }
