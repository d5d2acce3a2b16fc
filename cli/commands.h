/*
** commands.h: the subcommands of the `infsim` CLI, one file each.
**
** Each takes the arguments after its own name (argv[0] is the subcommand)
** and returns the process exit code: 0 ok, 1 run failed, 2 bad input,
** 77 skipped for lack of a GPU.
*/
#ifndef INFSIM_CLI_COMMANDS_H
#define INFSIM_CLI_COMMANDS_H

int infsim_cmd_run(int argc, char **argv);
int infsim_cmd_trace(int argc, char **argv);
int infsim_cmd_calibrate(int argc, char **argv);
int infsim_cmd_plot(int argc, char **argv);
int infsim_cmd_cluster(int argc, char **argv);
int infsim_cmd_compare(int argc, char **argv);
int infsim_cmd_sweep(int argc, char **argv);
int infsim_cmd_capacity(int argc, char **argv);

#endif
