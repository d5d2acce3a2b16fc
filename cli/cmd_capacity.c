/*
** cmd_capacity.c: `infsim capacity CONFIG --slo ttft_p99=2s,...
** [--target rate|instances] ...`: the highest arrival rate (the trace's
** times scaled) or the fewest instances that meet the SLO on every seed
** (capacity.h). Prints each step and the answer; --json prints the answer
** as one JSON object instead, for scripts.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli_opts.h"
#include "commands.h"
#include "infsim/capacity.h"
#include "infsim/run.h"

static const char k_usage[] =
    "usage: infsim capacity CONFIG.yaml --slo BOUNDS [--target rate|instances] [--seeds N]\n"
    "                       [--tolerance X] [--start X] [--max X] [--trace FILE] [--set key=value]...\n"
    "                       [--probes K] [--out RESULTS.db] [--jobs N] [--progress MODE] [--json]\n"
    "\n"
    "Finds the highest arrival rate (--target rate: the trace's arrival times divided by a scale\n"
    "factor) or the fewest instances (--target instances: cluster.instances) at which every\n"
    "seed's run meets every bound of the SLO, by bracketing (doubling or halving from --start)\n"
    "and bisection.\n"
    "\n"
    "  --slo BOUNDS        upper bounds, e.g. ttft_p99=2s,tpot_p99=100ms: METRIC_STAT=TIME with\n"
    "                      METRIC ttft, tpot or e2e, STAT mean, p50, p90 or p99, TIME in s or ms\n"
    "  --target T          rate (default) or instances\n"
    "  --seeds N           seeds per value tried (default 1): the worst seed decides\n"
    "  --tolerance X       rate: stop when the failing scale is within X (relative) of the\n"
    "                      passing one (default 0.02); instances are found exactly\n"
    "  --start X           first value tried (default 1: scale 1, or 1 instance)\n"
    "  --max X             largest value tried (default 1024 for a scale, 4096 instances)\n"
    "  --probes K          values tried at once per round, run in parallel (1 to 8, default 1):\n"
    "                      fewer rounds; where the SLO is not monotone near the threshold the\n"
    "                      answer can differ from K = 1\n"
    "  --out RESULTS.db    keep every run in a sweep DB: a repeated search reruns nothing\n"
    "  --progress MODE     as for infsim sweep, per value tried (default none)\n"
    "  --trace, --set, --jobs   as for infsim sweep\n"
    "  --json              print the answer as JSON (value, failed_at, steps, and for rate\n"
    "                      rate_rps: the scale times the trace's mean arrival rate)\n"
    "\n"
    "Exit codes: 0 ok (also when no value meets the SLO: see the output), 1 run failed,\n"
    "2 bad input.\n";

/* The trace's own mean arrival rate (requests over the span of arrivals, as
 * `infsim trace stats` gives it),
 * which a rate scale multiplies; 0 when it cannot be told. */
static double base_rate_rps(const infsim_capacity_opts *o) {
  infsim_run_args a = {.config_path = o->sweep.config_path,
                       .trace_path = o->sweep.trace_path,
                       .sets = o->sweep.sets,
                       .set_count = (int)o->sweep.set_count};
  infsim_run_setup *setup = NULL;
  infsim_error err = {0};
  double rate = 0;
  if (infsim_run_setup_load(&a, &setup, &err) == INFSIM_OK) {
    const infsim_trace *t = infsim_run_setup_trace(setup);
    if (t->count >= 2 && t->requests[t->count - 1].arrival_ns > t->requests[0].arrival_ns)
      rate = (double)t->count * 1e9 / (double)(t->requests[t->count - 1].arrival_ns - t->requests[0].arrival_ns);
  }
  infsim_run_setup_free(setup);
  return rate;
}

static json_t *result_json(const infsim_capacity_opts *o, const infsim_capacity_result *r, const char *slo_text,
                           double base_rps) {
  json_t *steps = json_array();
  for (size_t i = 0; i < r->step_count; i++)
    json_array_append_new(steps, json_pack("{s:f, s:b, s:s}", "value", r->steps[i].value, "met", r->steps[i].met,
                                           "why", r->steps[i].why));
  json_t *j = json_pack("{s:s, s:s, s:b, s:b, s:f, s:f, s:f, s:i, s:i, s:i, s:o}", "target",
                   o->target == INFSIM_TARGET_RATE ? "rate_scale" : "instances", "slo", slo_text, "found", r->found,
                   "capped", r->capped, "value", r->value, "failed_at", r->failed_at, "tolerance",
                   o->target == INFSIM_TARGET_RATE ? o->tolerance : 0.0, "seeds", (json_int_t)o->sweep.seeds, "runs",
                   (json_int_t)r->runs, "runs_skipped", (json_int_t)r->runs_skipped, "steps", steps);
  if (j != NULL && o->target == INFSIM_TARGET_RATE && base_rps > 0) {
    /* The scales as arrival rates: the trace's mean rate times the scale. */
    json_object_set_new(j, "base_rate_rps", json_real(base_rps));
    json_object_set_new(j, "rate_rps", json_real(r->value * base_rps));
    json_object_set_new(j, "failed_at_rps", json_real(r->failed_at * base_rps));
  }
  return j;
}

static void print_result(const infsim_capacity_opts *o, const infsim_capacity_result *r, double base_rps) {
  bool rate = o->target == INFSIM_TARGET_RATE;
  printf("%-10s %-8s %s\n", rate ? "rate scale" : "instances", "SLO", "first bound missed");
  for (size_t i = 0; i < r->step_count; i++)
    printf("%-10.6g %-8s %s\n", r->steps[i].value, r->steps[i].met ? "met" : "missed", r->steps[i].why);
  if (!r->found)
    printf("capacity: no %s in [%g, %g] meets the SLO\n", rate ? "rate scale" : "instance count", o->min_value,
           o->max_value);
  else if (r->capped)
    printf("capacity: the SLO is met even at rate scale %g (the largest tried): raise --max\n", r->value);
  else if (rate && base_rps > 0)
    printf("capacity: rate scale %.6g (%.4g requests/s) meets the SLO, %.6g (%.4g requests/s) misses it "
           "(tolerance %g%%), %d seed(s)\n",
           r->value, r->value * base_rps, r->failed_at, r->failed_at * base_rps, 100 * o->tolerance, o->sweep.seeds);
  else if (rate)
    printf("capacity: rate scale %.6g meets the SLO, %.6g misses it (tolerance %g%%), %d seed(s)\n", r->value,
           r->failed_at, 100 * o->tolerance, o->sweep.seeds);
  else if (r->failed_at > 0)
    printf("capacity: %.0f instances meet the SLO, %.0f miss it, %d seed(s)\n", r->value, r->failed_at,
           o->sweep.seeds);
  else
    printf("capacity: %.0f instance(s) meet the SLO (the fewest tried), %d seed(s)\n", r->value, o->sweep.seeds);
}

static bool parse_positive(const char *text, double *out) {
  char *end;
  double v = strtod(text, &end);
  if (text[0] == '\0' || *end != '\0' || !isfinite(v) || !(v > 0)) return false;
  *out = v;
  return true;
}

int infsim_cmd_capacity(int argc, char **argv) {
  /* Under mpirun the ranks share the jobs: that runs in the MPI executable. */
  if (infsim_sweep_mpi_launched()) {
    int handed = cli_mpi_handoff(argc, argv);
    if (handed >= 0) return handed;
  }
  const char *config_path = NULL, *out_path = NULL, *trace_path = NULL, *slo_text = NULL, *progress_text = "none";
  const char *target = "rate";
  double tolerance = 0.02, start = 1, max = 0;
  long seeds = 1, jobs = 0, probes = 1;
  bool json = false;
  const char **sets = calloc((size_t)argc, sizeof *sets);
  size_t set_count = 0;
  infsim_error err = {0};
  if (sets == NULL) return 1;
  int rc = 2;
  for (int i = 1; i < argc; i++) {
    const char *opt = argv[i], *v = NULL;
    int got = 0;
    if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
      fputs(k_usage, stdout);
      rc = 0;
      goto done;
    }
    if (strcmp(opt, "--json") == 0) {
      json = true;
      continue;
    }
    bool bad = false;
    if ((got = cli_option_value(argc, argv, &i, "--slo", &v)) > 0) slo_text = v;
    else if (got == 0 && (got = cli_option_value(argc, argv, &i, "--out", &v)) > 0) out_path = v;
    else if (got == 0 && (got = cli_option_value(argc, argv, &i, "--trace", &v)) > 0) trace_path = v;
    else if (got == 0 && (got = cli_option_value(argc, argv, &i, "--set", &v)) > 0) sets[set_count++] = v;
    else if (got == 0 && (got = cli_option_value(argc, argv, &i, "--progress", &v)) > 0) progress_text = v;
    else if (got == 0 && (got = cli_option_value(argc, argv, &i, "--target", &v)) > 0) target = v;
    else if (got == 0 && (got = cli_option_value(argc, argv, &i, "--seeds", &v)) > 0)
      bad = !cli_parse_int(v, 1, INFSIM_SWEEP_MAX_SEEDS, &seeds);
    else if (got == 0 && (got = cli_option_value(argc, argv, &i, "--jobs", &v)) > 0)
      bad = !cli_parse_int(v, 1, 4096, &jobs);
    else if (got == 0 && (got = cli_option_value(argc, argv, &i, "--probes", &v)) > 0)
      bad = !cli_parse_int(v, 1, 8, &probes);
    else if (got == 0 && (got = cli_option_value(argc, argv, &i, "--tolerance", &v)) > 0)
      bad = !parse_positive(v, &tolerance) || tolerance >= 1;
    else if (got == 0 && (got = cli_option_value(argc, argv, &i, "--start", &v)) > 0)
      bad = !parse_positive(v, &start);
    else if (got == 0 && (got = cli_option_value(argc, argv, &i, "--max", &v)) > 0)
      bad = !parse_positive(v, &max);
    if (got < 0) {
      fprintf(stderr, "infsim capacity: %s needs a value (try infsim capacity --help)\n", opt);
      goto done;
    }
    if (bad) {
      fprintf(stderr, "infsim capacity: %s: bad value '%s' (try infsim capacity --help)\n", opt, v);
      goto done;
    }
    if (got > 0) continue;
    if (opt[0] == '-' && opt[1] != '\0') {
      fprintf(stderr, "infsim capacity: unknown option '%s' (try infsim capacity --help)\n", opt);
      goto done;
    }
    if (config_path != NULL) {
      fprintf(stderr, "infsim capacity: one config expected, got '%s' and '%s'\n", config_path, opt);
      goto done;
    }
    config_path = opt;
  }
  if (config_path == NULL || slo_text == NULL) {
    fputs(config_path == NULL ? "infsim capacity: no config given (try infsim capacity --help)\n"
                              : "infsim capacity: --slo is required (try infsim capacity --help)\n",
          stderr);
    goto done;
  }
  infsim_capacity_opts o = {.tolerance = tolerance, .start = start, .probes = (int)probes};
  if (strcmp(target, "rate") == 0) {
    o.target = INFSIM_TARGET_RATE;
    o.min_value = 1.0 / 1024;
    o.max_value = max > 0 ? max : 1024;
  } else if (strcmp(target, "instances") == 0) {
    o.target = INFSIM_TARGET_INSTANCES;
    o.min_value = 1;
    o.max_value = max > 0 ? max : 4096;
  } else {
    fprintf(stderr, "infsim capacity: --target: expected rate or instances, got '%s'\n", target);
    goto done;
  }
  if (o.target == INFSIM_TARGET_INSTANCES && (start != floor(start) || o.max_value != floor(o.max_value))) {
    fprintf(stderr, "infsim capacity: --start and --max: expected whole instance counts\n");
    goto done;
  }
  /* The search doubles from --start to its bracket, then bisects: past these
   * bounds it would not end within INFSIM_CAPACITY_MAX_STEPS (the instance
   * bound is cluster.instances' own). */
  const double max_allowed = 1e6;
  if (o.max_value > max_allowed) {
    fprintf(stderr, "infsim capacity: --max: at most %g %s, got '%g'\n", max_allowed,
            o.target == INFSIM_TARGET_RATE ? "(rate scale)" : "instances", o.max_value);
    goto done;
  }
  for (size_t i = 0; o.target == INFSIM_TARGET_INSTANCES && i < set_count; i++)
    if (strncmp(sets[i], "cluster.instances=", strlen("cluster.instances=")) == 0) {
      fprintf(stderr, "infsim capacity: --set %s: --target instances searches cluster.instances itself\n", sets[i]);
      goto done;
    }
  if (infsim_slo_parse(slo_text, &o.slo, &err) != INFSIM_OK) goto fail;
  bool mpi = infsim_sweep_mpi_launched();
  o.sweep = (infsim_sweep_opts){.config_path = config_path,
                                .trace_path = trace_path,
                                .sets = sets,
                                .set_count = set_count,
                                .seeds = (int)seeds,
                                .jobs = jobs > 0 ? (int)jobs : mpi ? 1 : cli_cores(),
                                .progress_label = "capacity",
                                .ranks = cli_sweep_ranks()};
  if (!cli_parse_progress(progress_text, &o.sweep.progress)) {
    fprintf(stderr, "infsim capacity: --progress: expected auto, bar, lines or none, got '%s'\n", progress_text);
    goto done;
  }
  if (out_path != NULL && !cli_parent_dir_exists(out_path, &err)) goto fail;
  o.sweep.db_path = out_path;
  infsim_capacity_result r;
  if (infsim_capacity_search(&o, &r, &err) != INFSIM_OK) goto fail;
  double base_rps = r.is_root && o.target == INFSIM_TARGET_RATE && r.found ? base_rate_rps(&o) : 0;
  if (!r.is_root) {
    /* an MPI worker rank: rank 0 prints */
  } else if (json) {
    json_t *j = result_json(&o, &r, slo_text, base_rps);
    char *text = j != NULL ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    if (text != NULL) puts(text);
    free(text);
    json_decref(j);
  } else {
    print_result(&o, &r, base_rps);
  }
  rc = 0;
  goto done;
fail:
  fprintf(stderr, "infsim capacity: %s\n", err.msg);
  rc = infsim_status_exit_code(err.status);
done:
  free(sets);
  return rc;
}
