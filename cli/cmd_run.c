/*
** cmd_run.c: `infsim run CONFIG.yaml [--trace FILE] [--out DIR] [--seed N]
** [--set key=value]...`: one simulated experiment.
**
** Every input is read and checked before anything is written: a bad
** config, trace or key exits 2 with a file:line message and leaves DIR
** untouched. The trace comes from --trace, else workload.trace (relative
** to the config file), else the workload generator.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_opts.h"
#include "commands.h"
#include "infsim/atomic_file.h"
#include "infsim/run.h"

static const char k_usage[] =
    "usage: infsim run CONFIG.yaml [--trace FILE] [--out DIR] [--seed N] [--set key=value]... [--quiet]\n"
    "                  [--summary-only] [--timeline FILE.json [--timeline-window A,B]]\n"
    "\n"
    "Simulates the cluster that CONFIG.yaml describes serving a trace, prints a result table and\n"
    "writes DIR/summary.json, requests.csv, timeseries.csv, links.csv and results.db (default DIR:\n"
    "infsim-out; iterations.csv too with metrics.iterations: true).\n"
    "\n"
    "  --trace FILE     trace CSV (arrival_time_s,prompt_tokens,output_tokens); overrides workload.*\n"
    "  --out DIR        output directory (created if missing)\n"
    "  --seed N         the run's seed (overrides the config's `seed`)\n"
    "  --set key=value  override a config key, e.g. --set scheduler.max_batch_size=1\n"
    "  --quiet          print nothing on success\n"
    "  --summary-only   write DIR/summary.json only (an older run's other files in DIR go)\n"
    "  --timeline FILE  also write a Chrome/Perfetto trace of batches, preemptions and messages\n"
    "  --timeline-window A,B  only events overlapping A..B seconds of simulated time\n"
    "\n"
    "Config keys and defaults: README.md, section Configuration. Exit codes: 0 ok, 1 run failed,\n"
    "2 bad input.\n";

/* The options that take a value, given as "--name VALUE" or "--name=VALUE". */
static const char *const k_value_options[] = {"--trace",    "--out",             "--seed", "--set",
                                              "--timeline", "--timeline-window", NULL};

static void print_table(const infsim_run_result *res, const char *out_dir) {
  const infsim_run_params *p = infsim_run_result_params(res);
  const infsim_summary *sum = infsim_run_result_summary(res);
  const infsim_run_counters *c = infsim_run_result_counters(res);
  double wall_s = infsim_run_result_wall_s(res);
  printf("%-16s %s on %lld x %s (%s, policy %s)\n", "cluster", p->model.name, (long long)p->instances, p->gpu_profile,
         infsim_run_result_cost_model(res), p->sched.policy_name);
  printf("%-16s %lld arrived, %lld completed, %lld rejected, %lld preemptions\n", "requests", (long long)sum->arrived,
         (long long)sum->completed, (long long)sum->rejected, (long long)c->preemptions);
  printf("%-16s %.1f output tok/s, %.3f req/s over %.1f s\n", "throughput", sum->throughput_tok_s,
         sum->requests_per_s, sum->span_s);
  printf("%-16s %10s %10s %10s %10s %8s\n", "latency (s)", "mean", "p50", "p90", "p99", "count");
  const struct {
    const char *name;
    const infsim_stat *st;
  } rows[] = {{"  TTFT", &sum->ttft_s}, {"  TPOT", &sum->tpot_s}, {"  E2E", &sum->e2e_s}};
  for (size_t i = 0; i < 3; i++)
    printf("%-16s %10.4f %10.4f %10.4f %10.4f %8lld\n", rows[i].name, rows[i].st->mean, rows[i].st->p50,
           rows[i].st->p90, rows[i].st->p99, (long long)rows[i].st->count);
  printf("%-16s %.1f%% (TTFT <= %g s, TPOT <= %g s), goodput %.3f req/s\n", "SLO attainment",
         100.0 * sum->slo_attainment, p->slo_ttft_s, p->slo_tpot_s, sum->goodput_req_s);
  if (c->borrowed_blocks_peak > 0 || c->network_bytes > 0)
    printf("%-16s %lld blocks borrowed at peak, %.3f GB over the network\n", "KV borrowing",
           (long long)c->borrowed_blocks_peak, (double)c->network_bytes * 1e-9);
  printf("%-16s %lld events, %.3f s wall, %.0f simulated requests/s\n", "simulator", (long long)c->events, wall_s,
         wall_s > 0 ? (double)sum->arrived / wall_s : 0.0);
  printf("%-16s %s/\n", "outputs", out_dir);
}

static int fail_with(const infsim_error *err) {
  fprintf(stderr, "infsim run: %s\n", err->msg);
  return infsim_status_exit_code(err->status);
}

/* Whether the timeline would be one of the run's own outputs in out_dir
 * (--timeline OUT/summary.json): refused before the run rather than after
 * it, when the output set finds the same file twice. */
static bool timeline_is_run_output(const char *timeline, const char *out_dir) {
  const char *slash = strrchr(timeline, '/');
  const char *name = slash != NULL ? slash + 1 : timeline;
  if (!infsim_run_output_name(name)) return false;
  char output[INFSIM_PATH_BYTES];
  if ((size_t)snprintf(output, sizeof output, "%s/%s", out_dir, name) >= sizeof output) return false;
  return infsim_same_file_path(timeline, output);
}

/* --timeline FILE [--timeline-window A,B] (seconds) into the params. */
static infsim_status set_timeline(infsim_run_params *p, const char *path, const char *window, infsim_error *err) {
  if (path == NULL) return infsim_fail(err, INFSIM_EINPUT, "--timeline-window: needs --timeline FILE");
  if ((size_t)snprintf(p->timeline_path, sizeof p->timeline_path, "%s", path) >= sizeof p->timeline_path)
    return infsim_fail(err, INFSIM_EINPUT, "--timeline: path too long");
  p->timeline_from_ns = 0;
  p->timeline_to_ns = -1;
  if (window == NULL) return INFSIM_OK;
  const char *comma = strchr(window, ',');
  const char *why = NULL;
  int64_t a = 0, b = 0;
  if (comma == NULL || !infsim_parse_seconds_ns(window, (size_t)(comma - window), &a, &why) ||
      !infsim_parse_seconds_ns(comma + 1, strlen(comma + 1), &b, &why) || b < a)
    return infsim_fail(err, INFSIM_EINPUT, "--timeline-window: expected A,B in seconds with A <= B, got '%s'%s%s",
                       window, why ? ": " : "", why ? why : "");
  p->timeline_from_ns = a;
  p->timeline_to_ns = b;
  return INFSIM_OK;
}

int infsim_cmd_run(int argc, char **argv) {
  infsim_run_args args = {0};
  const char *out_dir = "infsim-out";
  int quiet = 0, summary_only = 0, rc = 2;
  const char *timeline = NULL, *window = NULL;
  infsim_error err = {0};
  const char **sets = calloc((size_t)argc, sizeof *sets);
  infsim_run_setup *setup = NULL;
  infsim_run_result *res = NULL;
  if (sets == NULL) return 1;
  args.sets = sets;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = NULL;
    int got = cli_option_among(argc, argv, &i, k_value_options, &a, &v);
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(k_usage, stdout);
      rc = 0;
      goto done;
    } else if (strcmp(a, "--quiet") == 0) {
      quiet = 1;
    } else if (strcmp(a, "--summary-only") == 0) {
      summary_only = 1;
    } else if (got < 0) {
      fprintf(stderr, "infsim run: %s needs a value\n", a);
      goto done;
    } else if (strcmp(a, "--timeline") == 0) {
      timeline = v;
    } else if (strcmp(a, "--timeline-window") == 0) {
      window = v;
    } else if (strcmp(a, "--trace") == 0) {
      args.trace_path = v;
    } else if (strcmp(a, "--out") == 0) {
      out_dir = v;
    } else if (strcmp(a, "--seed") == 0) {
      args.seed_text = v;
    } else if (strcmp(a, "--set") == 0) {
      sets[args.set_count++] = v;
    } else if (a[0] == '-') {
      fprintf(stderr, "infsim run: unknown option '%s' (see infsim run --help)\n", a);
      goto done;
    } else if (args.config_path == NULL) {
      args.config_path = a;
    } else {
      fprintf(stderr, "infsim run: unexpected argument '%s'\n", a);
      goto done;
    }
  }
  if (args.config_path == NULL) {
    fputs("infsim run: no config given (try infsim run --help)\n", stderr);
    goto done;
  }
  if (timeline != NULL && strcmp(timeline, out_dir) == 0) {
    fprintf(stderr, "infsim run: --timeline %s: the output directory, not a file\n", timeline);
    goto done;
  }
  if (timeline != NULL && timeline_is_run_output(timeline, out_dir)) {
    fprintf(stderr, "infsim run: --timeline %s: one of the run's own outputs in %s\n", timeline, out_dir);
    goto done;
  }
  if (infsim_run_setup_load(&args, &setup, &err) != INFSIM_OK) goto fail;
  if ((timeline != NULL || window != NULL) &&
      set_timeline(infsim_run_setup_params_mut(setup), timeline, window, &err) != INFSIM_OK)
    goto fail;
  if (infsim_run_execute_consume(setup, &res, &err) != INFSIM_OK) goto fail; /* one run: the trace can go */
  if (infsim_run_write(res, out_dir, summary_only ? INFSIM_OUTPUT_SUMMARY : INFSIM_OUTPUT_ALL, &err) != INFSIM_OK)
    goto fail;
  if (!quiet) print_table(res, out_dir);
  rc = 0;
  goto done;
fail:
  rc = fail_with(&err);
done:
  infsim_run_result_free(res);
  infsim_run_setup_free(setup);
  free(sets);
  return rc;
}
