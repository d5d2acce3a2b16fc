/*
** commands.h: the subcommands of the `infsim` CLI, one file each.
**
** Each takes the arguments after its own name (argv[0] is the subcommand)
** and returns the process exit code: 0 ok, 1 run failed, 2 bad input,
** 77 skipped for lack of a GPU.
*/
#ifndef INFSIM_CLI_COMMANDS_H
#define INFSIM_CLI_COMMANDS_H

#include "infsim/sweep.h"

int infsim_cmd_run(int argc, char **argv);
int infsim_cmd_trace(int argc, char **argv);
int infsim_cmd_calibrate(int argc, char **argv);
int infsim_cmd_plot(int argc, char **argv);
int infsim_cmd_cluster(int argc, char **argv);
int infsim_cmd_compare(int argc, char **argv);
int infsim_cmd_sweep(int argc, char **argv);
int infsim_cmd_capacity(int argc, char **argv);

/* Where MPI work runs. An MPI build makes two executables from these
 * files: `infsim`, which links no MPI (so that `run` and every other
 * command start without loading it), and `infsim-mpi` beside it, which
 * does; `infsim cluster`, and `infsim sweep` or `capacity` under mpirun,
 * become infsim-mpi with the same arguments (exec). One of mpi_handoff.c
 * (infsim), mpi_here.c (infsim-mpi) or mpi_none.c (a build without MPI:
 * one executable, cluster mode on one rank) is linked.
 *
 * cli_mpi_handoff: -1 when this process runs the command itself; else
 * the command goes to infsim-mpi (exec: no return) or, when that could
 * not start, the exit code after a one-line message. argv as the
 * command's (argv[0] its name). */
int cli_mpi_handoff(int argc, char **argv);
/* What spreads a sweep's jobs over mpirun's ranks here (NULL: nothing). */
infsim_sweep_ranks_fn cli_sweep_ranks(void);

#endif
