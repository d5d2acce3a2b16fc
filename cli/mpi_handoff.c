/*
** mpi_handoff.c: MPI work of `infsim` in a build with MPI (commands.h).
** This executable links no MPI: cluster mode, and sweeps under mpirun,
** run in infsim-mpi, the executable built beside it from the same
** sources with MPI, which this one becomes (exec) with the same
** arguments. The process stays the one mpirun started (same pid and
** environment), so it joins its MPI world as before.
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"

/* The name CMake gives the MPI executable (cli/CMakeLists.txt). */
static const char k_mpi_exe[] = "infsim-mpi";

int cli_mpi_handoff(int argc, char **argv) {
  char path[4096];
  ssize_t n = readlink("/proc/self/exe", path, sizeof path - sizeof k_mpi_exe - 1);
  if (n <= 0) {
    fprintf(stderr, "infsim %s: cannot find this executable's directory (/proc/self/exe): %s\n", argv[0],
            strerror(errno));
    return 1;
  }
  path[n] = '\0';
  char *slash = strrchr(path, '/');
  size_t dir_len = slash != NULL ? (size_t)(slash - path) + 1 : 0;
  memcpy(path + dir_len, k_mpi_exe, sizeof k_mpi_exe);
  char **args = calloc((size_t)argc + 2, sizeof *args);
  if (args == NULL) return 1;
  args[0] = path;
  for (int i = 0; i < argc; i++) args[i + 1] = argv[i];
  fflush(NULL);
  execv(path, args);
  fprintf(stderr, "infsim %s: this runs in %s (the MPI build's second executable), which could not start: %s\n",
          argv[0], path, strerror(errno));
  free(args);
  return 1;
}

infsim_sweep_ranks_fn cli_sweep_ranks(void) { return NULL; }

int infsim_cmd_cluster(int argc, char **argv) { return cli_mpi_handoff(argc, argv); }
