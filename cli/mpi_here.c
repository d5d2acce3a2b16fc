/*
** mpi_here.c: MPI work of `infsim-mpi` (commands.h): this executable
** links MPI, runs cluster mode itself and spreads sweeps over mpirun's
** ranks (run/sweep_mpi.c).
*/
#include "commands.h"

int cli_mpi_handoff(int argc, char **argv) {
  (void)argc;
  (void)argv;
  return -1;
}

infsim_sweep_ranks_fn cli_sweep_ranks(void) { return infsim_sweep_mpi; }
