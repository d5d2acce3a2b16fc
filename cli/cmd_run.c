/*
** cmd_run.c: `infsim run CONFIG.yaml [--trace FILE] [--out DIR] [--seed N]
** [--set key=value]...`: one simulated experiment.
**
** Every input is read and checked before anything is written: a bad
** config, trace or key exits 2 with a file:line message and leaves DIR
** untouched. The trace comes from --trace, else workload.trace (relative
** to the config file), else the workload generator.
*/
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"
#include "infsim/metrics.h"
#include "infsim/report.h"
#include "infsim/sim.h"
#include "infsim/trace.h"

static const char k_usage[] =
    "usage: infsim run CONFIG.yaml [--trace FILE] [--out DIR] [--seed N] [--set key=value]... [--quiet]\n"
    "\n"
    "Simulates the cluster that CONFIG.yaml describes serving a trace, prints a result table and\n"
    "writes DIR/summary.json, requests.csv, timeseries.csv and results.db (default DIR: infsim-out).\n"
    "\n"
    "  --trace FILE     trace CSV (arrival_time_s,prompt_tokens,output_tokens); overrides workload.*\n"
    "  --out DIR        output directory (created if missing)\n"
    "  --seed N         the run's seed (overrides the config's `seed`)\n"
    "  --set key=value  override a config key, e.g. --set scheduler.max_batch_size=1\n"
    "  --quiet          print nothing on success\n"
    "\n"
    "Config keys and defaults: README.md, section Configuration. Exit codes: 0 ok, 1 run failed,\n"
    "2 bad input.\n";

static double wall_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void print_table(const infsim_sim *s, const infsim_summary *sum, const infsim_sim_params *p, double wall_s,
                        const char *out_dir) {
  const infsim_run_counters *c = infsim_sim_counters(s);
  printf("%-16s %s on %lld x %s (%s, policy %s)\n", "cluster", p->model.name, (long long)p->instances, p->gpu_profile,
         infsim_sim_cost_model_name(s), p->policy->name);
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
  printf("%-16s %lld events, %.3f s wall, %.0f simulated requests/s\n", "simulator", (long long)c->events, wall_s,
         wall_s > 0 ? (double)sum->arrived / wall_s : 0.0);
  printf("%-16s %s/\n", "outputs", out_dir);
}

/* Resolves a path in the config relative to the config file's directory. */
static void resolve_relative(const char *config_path, const char *path, char *out, size_t out_bytes) {
  if (path[0] == '/') {
    snprintf(out, out_bytes, "%s", path);
    return;
  }
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", config_path);
  snprintf(out, out_bytes, "%s/%s", dirname(buf), path);
}

static int fail_with(const infsim_error *err) {
  fprintf(stderr, "infsim run: %s\n", err->msg);
  return infsim_status_exit_code(err->status);
}

int infsim_cmd_run(int argc, char **argv) {
  const char *config_path = NULL, *trace_path = NULL, *out_dir = "infsim-out", *seed_text = NULL;
  int quiet = 0;
  infsim_error err = {0};
  infsim_config *cfg = infsim_config_new();
  if (cfg == NULL) return 1;
  int rc = 2;
  infsim_trace trace = {0};
  infsim_sim *sim = NULL;
  json_t *summary = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int has_value = i + 1 < argc;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(k_usage, stdout);
      rc = 0;
      goto done;
    } else if (strcmp(a, "--quiet") == 0) {
      quiet = 1;
    } else if ((strcmp(a, "--trace") == 0 || strcmp(a, "--out") == 0 || strcmp(a, "--seed") == 0 ||
                strcmp(a, "--set") == 0) && !has_value) {
      fprintf(stderr, "infsim run: %s needs a value\n", a);
      goto done;
    } else if (strcmp(a, "--trace") == 0) {
      trace_path = argv[++i];
    } else if (strcmp(a, "--out") == 0) {
      out_dir = argv[++i];
    } else if (strcmp(a, "--seed") == 0) {
      seed_text = argv[++i];
    } else if (strcmp(a, "--set") == 0) {
      i++; /* applied after the config file, below */
    } else if (a[0] == '-') {
      fprintf(stderr, "infsim run: unknown option '%s' (see infsim run --help)\n", a);
      goto done;
    } else if (config_path == NULL) {
      config_path = a;
    } else {
      fprintf(stderr, "infsim run: unexpected argument '%s'\n", a);
      goto done;
    }
  }
  if (config_path == NULL) {
    fputs(k_usage, stderr);
    goto done;
  }
  if (infsim_config_load_yaml(cfg, config_path, &err) != INFSIM_OK) goto fail;
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--set") == 0 && infsim_config_set(cfg, argv[++i], &err) != INFSIM_OK) goto fail;
  if (seed_text != NULL && infsim_config_put(cfg, "seed", seed_text, "--seed", &err) != INFSIM_OK) goto fail;

  infsim_sim_params params;
  if (infsim_sim_params_from_config(cfg, &params, &err) != INFSIM_OK) goto fail;
  const char *cfg_trace = NULL;
  if (infsim_config_has(cfg, "workload.trace") &&
      infsim_config_string(cfg, "workload.trace", "", &cfg_trace, &err) != INFSIM_OK)
    goto fail;
  if (trace_path != NULL) {
    infsim_config_mark_used(cfg, "workload");
    if (infsim_trace_read_csv(trace_path, &trace, &err) != INFSIM_OK) goto fail;
  } else if (cfg_trace != NULL) {
    char path[4096];
    resolve_relative(config_path, cfg_trace, path, sizeof path);
    infsim_config_mark_used(cfg, "workload");
    if (infsim_trace_read_csv(path, &trace, &err) != INFSIM_OK) goto fail;
  } else if (infsim_workload_generate(cfg, "workload", params.seed, &trace, &err) != INFSIM_OK) {
    goto fail;
  }
  if (infsim_config_check_unused(cfg, &err) != INFSIM_OK) goto fail;
  if (infsim_sim_new(&params, &trace, &sim, &err) != INFSIM_OK) goto fail;

  double t0 = wall_now_s();
  if (infsim_sim_run(sim, &err) != INFSIM_OK) goto fail;
  double wall_s = wall_now_s() - t0;

  size_t n = 0;
  const infsim_request_record *rec = infsim_sim_requests(sim, &n);
  infsim_summary sum;
  if (infsim_summary_compute(&params, rec, n, infsim_sim_counters(sim), &sum, &err) != INFSIM_OK) goto fail;
  json_t *resolved = infsim_config_resolved_json(cfg);
  summary = infsim_summary_json(sim, &sum, resolved, wall_s);
  json_decref(resolved);
  if (infsim_report_write(out_dir, sim, summary, &err) != INFSIM_OK) goto fail;
  if (!quiet) print_table(sim, &sum, &params, wall_s, out_dir);
  rc = 0;
  goto done;
fail:
  rc = fail_with(&err);
done:
  json_decref(summary);
  infsim_sim_free(sim);
  infsim_trace_free(&trace);
  infsim_config_free(cfg);
  return rc;
}
