/*
** cmd_sweep.c: `infsim sweep CONFIG --out RESULTS.db --grid key=v1,v2...
** [--grid ...] [--seeds N] [--trace FILE] [--set key=value]... [--jobs N]
** [--progress MODE]`: the cross product of the grid, times N seeds, into
** one SQLite DB (sweep.h). A rerun skips what the DB holds; under mpirun
** the ranks share the jobs and rank 0 alone writes the DB and prints.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_opts.h"
#include "commands.h"
#include "infsim/sweep.h"

static const char k_usage[] =
    "usage: infsim sweep CONFIG.yaml --out RESULTS.db [--grid key=v1,v2,...]... [--seeds N]\n"
    "                    [--trace FILE] [--set key=value]... [--jobs N] [--progress MODE] [--label TEXT]\n"
    "\n"
    "Runs CONFIG for every combination of the grid's values (and N seeds each: the config's\n"
    "seed, seed+1, ...) and stores one row per run in RESULTS.db (table `runs`: the grid values,\n"
    "every summary.json field, the run's wall time and host). A run whose key (resolved config,\n"
    "trace content, seed, infsim version; on calibrated curves the calibration DB's bytes) is\n"
    "already in RESULTS.db is skipped: rerun to resume.\n"
    "\n"
    "  --grid key=v1,v2,...  one axis: a config key (as for --set) and its values; also\n"
    "                        key=LO:HI:STEP, and the key rate_scale (multiplies the arrival rate)\n"
    "  --seeds N             runs per grid point (default 1)\n"
    "  --trace FILE          trace CSV for every run (else the config's workload)\n"
    "  --set key=value       override a config key in every run (a grid axis wins)\n"
    "  --jobs N              runs at once in this process (default: the CPU cores; 1 per rank\n"
    "                        under mpirun)\n"
    "  --progress MODE       auto (bar on a terminal, else lines), bar, lines or none\n"
    "  --label TEXT          stored in each row's `label` column: names this sweep's variant\n"
    "                        when several sweeps share one DB (plots use it as the series)\n"
    "\n"
    "Under `mpirun -np K infsim sweep ...` rank 0 hands out runs to all ranks and writes the DB.\n"
    "Exit codes: 0 ok, 1 run failed, 2 bad input.\n";

int infsim_cmd_sweep(int argc, char **argv) {
  /* Under mpirun the ranks share the jobs: that runs in the MPI executable. */
  if (infsim_sweep_mpi_launched()) {
    int handed = cli_mpi_handoff(argc, argv);
    if (handed >= 0) return handed;
  }
  const char *config_path = NULL, *out_path = NULL, *trace_path = NULL, *progress_text = "auto", *label = NULL;
  long seeds = 1, jobs = 0;
  infsim_grid *grid = infsim_grid_new();
  const char **sets = calloc((size_t)argc, sizeof *sets);
  size_t set_count = 0;
  infsim_error err = {0};
  int rc = 2;
  if (grid == NULL || sets == NULL) {
    rc = 1;
    goto done;
  }
  for (int i = 1; i < argc; i++) {
    const char *opt = argv[i], *v = NULL;
    int got;
    if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
      fputs(k_usage, stdout);
      rc = 0;
      goto done;
    }
    if ((got = cli_option_value(argc, argv, &i, "--grid", &v)) > 0) {
      if (infsim_grid_add(grid, v, &err) != INFSIM_OK) goto fail;
    } else if (got == 0 && (got = cli_option_value(argc, argv, &i, "--out", &v)) > 0) {
      out_path = v;
    } else if (got == 0 && (got = cli_option_value(argc, argv, &i, "--trace", &v)) > 0) {
      trace_path = v;
    } else if (got == 0 && (got = cli_option_value(argc, argv, &i, "--set", &v)) > 0) {
      sets[set_count++] = v;
    } else if (got == 0 && (got = cli_option_value(argc, argv, &i, "--progress", &v)) > 0) {
      progress_text = v;
    } else if (got == 0 && (got = cli_option_value(argc, argv, &i, "--label", &v)) > 0) {
      label = v;
    } else if (got == 0 && (got = cli_option_value(argc, argv, &i, "--seeds", &v)) > 0) {
      if (!cli_parse_int(v, 1, INFSIM_SWEEP_MAX_SEEDS, &seeds)) {
        fprintf(stderr, "infsim sweep: --seeds: expected an integer in [1, %d], got '%s'\n", INFSIM_SWEEP_MAX_SEEDS, v);
        goto done;
      }
    } else if (got == 0 && (got = cli_option_value(argc, argv, &i, "--jobs", &v)) > 0) {
      if (!cli_parse_int(v, 1, 4096, &jobs)) {
        fprintf(stderr, "infsim sweep: --jobs: expected an integer in [1, 4096], got '%s'\n", v);
        goto done;
      }
    }
    if (got < 0) {
      fprintf(stderr, "infsim sweep: %s needs a value (try infsim sweep --help)\n", opt);
      goto done;
    }
    if (got > 0) continue;
    if (opt[0] == '-' && opt[1] != '\0') {
      fprintf(stderr, "infsim sweep: unknown option '%s' (try infsim sweep --help)\n", opt);
      goto done;
    }
    if (config_path != NULL) {
      fprintf(stderr, "infsim sweep: one config expected, got '%s' and '%s'\n", config_path, opt);
      goto done;
    }
    config_path = opt;
  }
  if (config_path == NULL || out_path == NULL) {
    fputs(config_path == NULL ? "infsim sweep: no config given (try infsim sweep --help)\n"
                              : "infsim sweep: --out RESULTS.db is required (try infsim sweep --help)\n",
          stderr);
    goto done;
  }
  infsim_sweep_opts o = {.config_path = config_path,
                         .trace_path = trace_path,
                         .sets = sets,
                         .set_count = set_count,
                         .grid = grid,
                         .seeds = (int)seeds,
                         .ranks = cli_sweep_ranks(),
                         .progress_label = "sweep",
                         .label = label};
  bool mpi = infsim_sweep_mpi_launched();
  o.jobs = jobs > 0 ? (int)jobs : mpi ? 1 : cli_cores();
  if (!cli_parse_progress(progress_text, &o.progress)) {
    fprintf(stderr, "infsim sweep: --progress: expected auto, bar, lines or none, got '%s'\n", progress_text);
    goto done;
  }
  /* Under mpirun only rank 0 opens the DB (sweep_mpi.c): the path is
   * checked here by every rank, so a bad one fails everywhere alike. */
  if (!cli_parent_dir_exists(out_path, &err)) goto fail;
  o.db_path = out_path;
  infsim_sweep_outcome out;
  infsim_status st = infsim_sweep_run(&o, &out, &err);
  if (out.is_root && (st == INFSIM_OK || out.ran + out.skipped > 0))
    printf("sweep: %zu runs (%zu run now, %zu already in %s)%s\n", out.total, out.ran, out.skipped, out_path,
           st == INFSIM_OK ? "" : ", stopped by an error");
  infsim_sweep_outcome_free(&out);
  if (st != INFSIM_OK) goto fail;
  rc = 0;
  goto done;
fail:
  fprintf(stderr, "infsim sweep: %s\n", err.msg);
  rc = infsim_status_exit_code(err.status);
done:
  infsim_grid_free(grid);
  free(sets);
  return rc;
}
