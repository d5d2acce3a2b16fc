/*
** cmd_cluster.c: `infsim cluster CONFIG.yaml --trace FILE --out DIR
** [--executor cuda|cpu] [--transport nccl|mpi] ...` under mpirun, one rank
** per instance: the scheduler of `run` on real kernels (cluster.h).
**
** Every rank reads the config and the trace (one host or a shared file
** system); rank 0 writes the same outputs as `run`, with wall-clock times.
** When the run fails part way (a rank died or hung), rank 0 still writes
** what it has, reports the fault, and ends every rank (MPI_Abort), so no
** rank is left hanging.
**
** SIGTERM / SIGINT (mpirun forwards them when a rank dies) set a flag the
** driver polls: the one file-scope variable of the CLI, because a signal
** handler can reach nothing else.
*/
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli_opts.h"
#include "commands.h"
#include "infsim/atomic_file.h"
#include "infsim/run.h"

#include "infsim/cluster.h"

static volatile sig_atomic_t g_interrupted;

static void on_signal(int sig) {
  (void)sig;
  g_interrupted = 1;
}

static const char k_usage[] =
    "usage: mpirun -np N infsim cluster CONFIG.yaml --trace FILE --out DIR [--executor cuda|cpu]\n"
    "                      [--transport nccl|mpi] [--set key=value]... [--seed N] [--timeout S]\n"
    "                      [--kv-blocks N] [--no-graphs] [--[no-]warm-up] [--verify] [--outputs DIR]\n"
    "                      [--quiet]\n"
    "\n"
    "Runs the scheduler of `infsim run` on real kernels, one MPI rank per instance (N =\n"
    "cluster.instances), replaying the trace's arrivals on the wall clock, and writes the same\n"
    "outputs as `run` (summary.json, requests.csv, timeseries.csv, results.db; iterations.csv\n"
    "with metrics.iterations) with measured times. Models have synthetic weights. One instance\n"
    "needs no mpirun (and a build without MPI runs only that).\n"
    "\n"
    "  --executor E     cuda (default; one GPU per rank: set CUDA_VISIBLE_DEVICES per rank) or\n"
    "                   cpu (the reference kernels; the `tiny` model)\n"
    "  --transport T    mpi (default; host-staged) or nccl (GPU to GPU)\n"
    "  --timeout S      a batch or a rank silent longer than S seconds is a fault (default 120)\n"
    "  --kv-blocks N    KV blocks per instance (default: the run's sizing; at most 4096 on cpu)\n"
    "  --no-graphs      cuda: launch decode steps kernel by kernel instead of as CUDA graphs\n"
    "  --warm-up, --no-warm-up\n"
    "                   run (or not) a few prefills and a mixed forward before the clock starts,\n"
    "                   so that first-use costs (kernel loads, GEMM plans) stay out of the run's\n"
    "                   first batches (default: on for cuda, off for cpu)\n"
    "  --verify         also run every batch request by request on a twin model and fail when a\n"
    "                   request's numbers differ (checks numbers, not speed: times include it)\n"
    "  --outputs DIR    rank r writes DIR/outputs-r.txt (DIR must exist): each batch part's last\n"
    "                   hidden row, `req position values...`, to compare against another run\n"
    "\n"
    "Exit codes: 0 ok, 1 run failed (results so far written), 2 bad input, 77 no GPU for cuda.\n";

/* The options that take a value, given as "--name VALUE" or "--name=VALUE". */
static const char *const k_value_options[] = {
    "--trace", "--out", "--seed", "--set", "--executor", "--transport", "--timeout", "--kv-blocks",
    "--outputs", "--inject-fault", NULL};

int infsim_cmd_cluster(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(k_usage, stdout);
      return 0;
    }
  infsim_run_args args = {0};
  const char *out_dir = NULL;
  int quiet = 0, rc = 2, warm_up = -1; /* -1: the executor's default */
  infsim_cluster_opts o = {.executor = INFSIM_KBACKEND_CUDA, .transport = INFSIM_CTRANSPORT_MPI,
                           .timeout_s = 120.0, .decode_graphs = true, .interrupted = &g_interrupted,
                           .fault_rank = -1, .fault_after = -1};
  infsim_error err = {0};
  const char **sets = calloc((size_t)argc, sizeof *sets);
  if (sets == NULL) return 1;
  args.sets = sets;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = NULL;
    if (cli_option_among(argc, argv, &i, k_value_options, &a, &v) < 0) {
      fprintf(stderr, "infsim cluster: %s needs a value\n", a);
      goto done;
    }
    char *end = NULL;
    if (strcmp(a, "--quiet") == 0) {
      quiet = 1;
    } else if (strcmp(a, "--no-graphs") == 0) {
      o.decode_graphs = false;
    } else if (strcmp(a, "--warm-up") == 0 || strcmp(a, "--no-warm-up") == 0) {
      warm_up = strcmp(a, "--warm-up") == 0;
    } else if (strcmp(a, "--verify") == 0) {
      o.verify = true;
    } else if (strcmp(a, "--outputs") == 0) {
      o.outputs_dir = v;
    } else if (strcmp(a, "--trace") == 0) {
      args.trace_path = v;
    } else if (strcmp(a, "--out") == 0) {
      out_dir = v;
    } else if (strcmp(a, "--seed") == 0) {
      args.seed_text = v;
    } else if (strcmp(a, "--set") == 0) {
      sets[args.set_count++] = v;
    } else if (strcmp(a, "--executor") == 0) {
      if (!infsim_kernel_backend_parse(v, &o.executor)) {
        fprintf(stderr, "infsim cluster: --executor: '%s' is not cuda or cpu\n", v);
        goto done;
      }
    } else if (strcmp(a, "--transport") == 0) {
      if (!infsim_ctransport_kind_parse(v, &o.transport)) {
        fprintf(stderr, "infsim cluster: --transport: '%s' is not nccl or mpi\n", v);
        goto done;
      }
    } else if (strcmp(a, "--timeout") == 0) {
      o.timeout_s = strtod(v, &end);
      if (*end || !(o.timeout_s > 0)) {
        fprintf(stderr, "infsim cluster: --timeout: '%s' is not a positive number of seconds\n", v);
        goto done;
      }
    } else if (strcmp(a, "--kv-blocks") == 0) {
      o.kv_blocks = strtoll(v, &end, 10);
      if (*end || o.kv_blocks < 1) {
        fprintf(stderr, "infsim cluster: --kv-blocks: '%s' is not a positive integer\n", v);
        goto done;
      }
    } else if (strcmp(a, "--inject-fault") == 0) {
      /* tests: KIND:RANK:AFTER_BATCHES, KIND hang or die */
      char kind[8];
      int rank = 0, after = 0;
      if (sscanf(v, "%7[a-z]:%d:%d", kind, &rank, &after) != 3 ||
          (strcmp(kind, "hang") != 0 && strcmp(kind, "die") != 0) || rank < 1 || after < 0) {
        fprintf(stderr, "infsim cluster: --inject-fault: '%s' is not hang|die:RANK:AFTER (RANK >= 1)\n", v);
        goto done;
      }
      o.fault = strcmp(kind, "hang") == 0 ? INFSIM_CLUSTER_FAULT_HANG : INFSIM_CLUSTER_FAULT_DIE;
      o.fault_rank = rank;
      o.fault_after = after;
    } else if (a[0] == '-') {
      fprintf(stderr, "infsim cluster: unknown option '%s' (see infsim cluster --help)\n", a);
      goto done;
    } else if (args.config_path == NULL) {
      args.config_path = a;
    } else {
      fprintf(stderr, "infsim cluster: unexpected argument '%s'\n", a);
      goto done;
    }
  }
  if (args.config_path == NULL || out_dir == NULL) {
    fputs(args.config_path == NULL ? "infsim cluster: no config given (try infsim cluster --help)\n"
                                   : "infsim cluster: --out DIR is required (try infsim cluster --help)\n",
          stderr);
    goto done;
  }
  /* A --out that can never be a directory is known now, not after the
   * cluster has run (infsim_run_write would refuse it then). */
  struct stat out_sb;
  int out_errno = stat(out_dir, &out_sb) != 0 ? errno : S_ISDIR(out_sb.st_mode) ? 0 : ENOTDIR;
  if (out_errno != 0 && out_errno != ENOENT) { /* a missing directory is made when the outputs are written */
    fprintf(stderr, "infsim cluster: %s: cannot be the output directory: %s\n", out_dir, strerror(out_errno));
    rc = infsim_status_exit_code(infsim_output_errno_status(out_errno));
    goto done;
  }
  /* First-use costs are a GPU's; on the CPU a warm-up would only cost time. */
  o.warm_up = warm_up < 0 ? o.executor == INFSIM_KBACKEND_CUDA : warm_up == 1;
  if (infsim_cluster_mpi_init(&argc, &argv, &err) != INFSIM_OK) {
    fprintf(stderr, "infsim cluster: %s\n", err.msg);
    rc = 1;
    goto done;
  }
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  int rank = 0;
  infsim_run_setup *setup = NULL;
  infsim_run_result *res = NULL;
  infsim_status st = infsim_run_setup_load(&args, &setup, &err);
  if (st == INFSIM_OK) st = infsim_cluster_run(setup, &o, &res, &err);
  rank = infsim_cluster_rank();
  rc = infsim_status_exit_code(st);
  if (st != INFSIM_OK) fprintf(stderr, "infsim cluster: rank %d: %s\n", rank, err.msg);
  if (res != NULL) {
    infsim_error werr;
    if (infsim_run_write(res, out_dir, INFSIM_OUTPUT_ALL, &werr) != INFSIM_OK) {
      fprintf(stderr, "infsim cluster: %s\n", werr.msg);
      if (rc == 0) rc = infsim_status_exit_code(werr.status);
    } else if (st != INFSIM_OK) {
      fprintf(stderr, "infsim cluster: results so far written to %s/\n", out_dir);
    } else if (!quiet) {
      const infsim_summary *sum = infsim_run_result_summary(res);
      printf("cluster: %lld ranks, %s executor: %lld completed, %lld rejected of %lld; %.1f output tok/s over %.2f s\n",
             (long long)infsim_run_result_params(res)->instances, infsim_kernel_backend_name(o.executor), (long long)sum->completed, (long long)sum->rejected,
             (long long)sum->arrived, sum->throughput_tok_s, sum->span_s);
      printf("latency (s): TTFT p50 %.4f p99 %.4f, TPOT p50 %.4f p99 %.4f, E2E p50 %.4f p99 %.4f\n",
             sum->ttft_s.p50, sum->ttft_s.p99, sum->tpot_s.p50, sum->tpot_s.p99, sum->e2e_s.p50, sum->e2e_s.p99);
      printf("outputs: %s/\n", out_dir);
    }
  }
  infsim_run_result_free(res);
  infsim_run_setup_free(setup);
  free(sets);
  /* A fault in the run (not in its setup, which every rank fails alike)
   * leaves ranks that cannot finish on their own: end them all. */
  if (st == INFSIM_ERUN) infsim_cluster_mpi_abort(rc);
  infsim_cluster_mpi_finalize();
  return rc;
done:
  free(sets);
  return rc;
}
