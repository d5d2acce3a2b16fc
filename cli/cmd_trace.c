/*
** cmd_trace.c: `infsim trace gen | import | stats`, thin over trace.h.
**
** gen turns `--KEY VALUE` options into `workload.KEY` config entries (or
** takes the `workload:` section of a run config with --config), so `trace
** gen` and `infsim run` share one generator and one set of keys.
*/
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_opts.h"
#include "commands.h"
#include "infsim/config.h"
#include "infsim/trace.h"

static const char k_gen_help[] =
    "usage: infsim trace gen [--KEY VALUE ...] [--config RUN.yaml] [--seed N] -o OUT.csv\n"
    "\n"
    "Generates a synthetic trace CSV. Each --KEY VALUE (or --KEY=VALUE) sets workload.KEY;\n"
    "--config FILE first loads a run config and uses its workload: section (and its seed).\n"
    "Keys, with defaults:\n"
    "  requests N           number of requests (1000); not with duration_s\n"
    "  duration_s S         if > 0, generate arrivals until S seconds instead (0)\n"
    "  arrival poisson|gamma  inter-arrival law (poisson)\n"
    "  rate_rps R           mean arrival rate, requests per second (1.0)\n"
    "  cv C                 gamma only: coefficient of variation of the gaps (1.0 = Poisson)\n"
    "  prompt.dist D        fixed|uniform|lognormal|zipf|empirical (lognormal)\n"
    "  prompt.tokens N      fixed: the length (600)\n"
    "  prompt.min N         uniform, zipf: lowest length; lognormal: clamp (1)\n"
    "  prompt.max N         uniform, zipf: highest length; lognormal: clamp (32768)\n"
    "  prompt.median M      lognormal: median = exp(mu) (600)\n"
    "  prompt.sigma S       lognormal: sigma of the log (1.0)\n"
    "  prompt.alpha A       zipf: P(n) ~ n^-A over [min, max] (1.0)\n"
    "  prompt.values LIST   empirical: comma list of lengths (required)\n"
    "  prompt.weights LIST  empirical: comma list of weights (all equal)\n"
    "  output.*             the same keys for output lengths; defaults tokens 200,\n"
    "                       median 200, sigma 1.0, min 1, max 4096\n"
    "A key the chosen distribution does not use is an error (unknown key).\n"
    "Random streams workload.arrivals, workload.prompt and workload.output of --seed\n"
    "(default: the config's seed, else 1) are independent. See docs/traces.md.\n";

static const char k_import_help[] =
    "usage: infsim trace import azure|mooncake|burstgpt FILE -o OUT.csv [options]\n"
    "\n"
    "Converts a public trace to the trace CSV, one line at a time (constant memory).\n"
    "  azure     TIMESTAMP,ContextTokens,GeneratedTokens (Azure LLM inference trace 2023)\n"
    "  mooncake  JSON lines {timestamp (ms), input_length, output_length, hash_ids};\n"
    "            hash_ids become the extra column prefix_hashes (ids separated by spaces)\n"
    "  burstgpt  Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
    "Arrival 0 is the first well-formed row. Options:\n"
    "  --speedup X          divide arrival times by X (1)\n"
    "  --start-s A --end-s B  keep rows with A <= source seconds since the first row < B,\n"
    "                       shifted so that A becomes 0 (reading stops at B)\n"
    "  --sample F --seed N  keep each row with probability F (stream import.sample of N)\n"
    "  --max-prompt-tokens N, --max-output-tokens N   cut longer lengths to N\n"
    "  --keep-zero          raise zero token counts to 1 instead of dropping the row\n"
    "  --skip-bad           skip and count malformed rows instead of failing\n"
    "  --model NAME         burstgpt: keep only rows of this Model\n"
    "Timestamps must not go backwards (sort the input first). Malformed rows fail with\n"
    "FILE:LINE: FIELD: reason and exit 2, writing nothing. What was dropped is reported\n"
    "on stderr.\n";

static const char k_stats_help[] =
    "usage: infsim trace stats [--json] FILE\n"
    "\n"
    "Describes a trace CSV: requests, duration (last - first arrival), mean and peak\n"
    "arrival rate per second and per minute (peaks over bins starting at the first\n"
    "arrival), prompt and output length percentiles (nearest rank) and a histogram of\n"
    "lengths in powers of two. --json prints the numbers as one JSON object.\n";

static const char k_trace_help[] =
    "usage: infsim trace gen|import|stats ...\n"
    "\n"
    "  gen     generate a synthetic trace from workload keys\n"
    "  import  convert an Azure, Mooncake or BurstGPT trace to the trace CSV\n"
    "  stats   describe a trace CSV\n"
    "`infsim trace SUBCOMMAND --help` describes one.\n";

static int fail_status(const char *cmd, const infsim_error *err) {
  fprintf(stderr, "infsim trace %s: %s\n", cmd, err->msg);
  return infsim_status_exit_code(err->status);
}

static int usage_error(const char *cmd, const char *what, const char *arg) {
  fprintf(stderr, "infsim trace %s: %s%s%s (try infsim trace %s --help)\n", cmd, what, arg ? ": " : "",
          arg ? arg : "", cmd);
  return 2;
}

static bool parse_u64(const char *s, uint64_t *out) {
  if (s[0] < '0' || s[0] > '9') return false;
  errno = 0;
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0') return false;
  *out = (uint64_t)v;
  return true;
}

static bool parse_double(const char *s, double *out) {
  errno = 0;
  char *end;
  double v = strtod(s, &end);
  if (errno != 0 || end == s || *end != '\0') return false;
  *out = v;
  return true;
}

/* ---- gen ---- */

/* The options that take a value, given as "--name VALUE" or "--name=VALUE"
 * (and -o FILE); any other --KEY VALUE or --KEY=VALUE sets workload.KEY. */
static const char *const k_gen_value_options[] = {"-o", "--out", "--seed", "--config", NULL};

static int cmd_gen(int argc, char **argv) {
  const char *out_path = NULL, *config_path = NULL;
  uint64_t seed = 1;
  bool have_seed = false;
  infsim_error err = {0};
  infsim_config *cfg = infsim_config_new();
  /* --KEY options as argv indexes: they apply, in order, after --config loads. */
  int *kv = calloc((size_t)argc, sizeof *kv);
  if (cfg == NULL || kv == NULL) {
    infsim_config_free(cfg);
    free(kv);
    fprintf(stderr, "infsim trace gen: out of memory\n");
    return 1;
  }
  int rc = 0;
  int nkv = 0;
  for (int i = 1; i < argc && rc == 0; i++) {
    const char *a = argv[i], *v = NULL;
    int got = cli_option_among(argc, argv, &i, k_gen_value_options, &a, &v);
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(k_gen_help, stdout);
      rc = -1;
    } else if (strcmp(a, "-o") == 0 || strcmp(a, "--out") == 0) {
      if (got < 0) rc = usage_error("gen", "-o needs a file", NULL);
      else out_path = v;
    } else if (strcmp(a, "--seed") == 0) {
      if (got < 0 || !parse_u64(v, &seed)) rc = usage_error("gen", "--seed needs an integer >= 0", NULL);
      have_seed = true;
    } else if (strcmp(a, "--config") == 0) {
      if (got < 0) rc = usage_error("gen", "--config needs a file", NULL);
      else config_path = v;
    } else if (strncmp(a, "--", 2) == 0 && a[2] != '\0') {
      if (strchr(a, '=') == NULL && ++i >= argc) rc = usage_error("gen", "option needs a value", a);
      else kv[nkv++] = strchr(a, '=') == NULL ? i - 1 : i;
    } else {
      rc = usage_error("gen", "unexpected argument", a);
    }
  }
  if (rc == 0 && out_path == NULL) rc = usage_error("gen", "missing -o OUT.csv", NULL);
  infsim_status st = INFSIM_OK;
  if (rc == 0 && config_path != NULL) st = infsim_config_load_yaml(cfg, config_path, &err);
  for (int k = 0; rc == 0 && st == INFSIM_OK && k < nkv; k++) {
    const char *a = argv[kv[k]] + 2, *eq = strchr(a, '=');
    char key[512], origin[300];
    size_t klen = eq != NULL ? (size_t)(eq - a) : strlen(a);
    snprintf(key, sizeof key, "workload.%.*s", (int)klen, a);
    snprintf(origin, sizeof origin, "--%.*s", (int)(klen > 200 ? 200 : klen), a);
    st = infsim_config_put(cfg, key, eq != NULL ? eq + 1 : argv[kv[k] + 1], origin, &err);
  }
  if (rc == 0 && st == INFSIM_OK && config_path != NULL && !have_seed) {
    int64_t s;
    st = infsim_config_int(cfg, "seed", 1, 0, INT64_MAX, &s, &err);
    seed = (uint64_t)s;
  }
  /* A config whose requests come from a trace file has nothing to generate:
   * the other workload keys would make a trace its runs never use. */
  if (rc == 0 && st == INFSIM_OK && infsim_config_has(cfg, "workload.trace"))
    st = infsim_config_fail(cfg, "workload.trace", &err,
                            "the config names a trace file, which trace gen does not read (use the file, or drop "
                            "the key to generate from workload.*)");
  infsim_trace trace = {0};
  if (rc == 0 && st == INFSIM_OK) st = infsim_workload_generate(cfg, "workload", seed, &trace, &err);
  /* A run config holds other sections, which `infsim run` checks; its
   * workload keys, and every key on the command line, must be ones the
   * generator read. */
  if (rc == 0 && st == INFSIM_OK)
    st = infsim_config_check_unused_below(cfg, config_path == NULL ? NULL : "workload", &err);
  if (rc == 0 && st == INFSIM_OK) st = infsim_trace_write_csv(out_path, &trace, &err);
  if (rc == 0 && st != INFSIM_OK) rc = fail_status("gen", &err);
  if (rc == 0) {
    char t[32];
    fprintf(stderr, "infsim trace gen: %zu requests over %s s (seed %" PRIu64 ") -> %s\n", trace.count,
            infsim_format_seconds(trace.requests[trace.count - 1].arrival_ns, t), seed, out_path);
  }
  infsim_trace_free(&trace);
  free(kv);
  infsim_config_free(cfg);
  return rc < 0 ? 0 : rc;
}

/* ---- import ---- */

/* The options that take a value, given as "--name VALUE" or "--name=VALUE" (and -o FILE). */
static const char *const k_import_value_options[] = {
    "-o", "--out", "--speedup", "--start-s", "--end-s", "--sample", "--seed", "--model",
    "--max-prompt-tokens", "--max-output-tokens", NULL};

static int cmd_import(int argc, char **argv) {
  infsim_import_options opt = infsim_import_options_default();
  const char *pos[2] = {NULL, NULL}, *out_path = NULL;
  int npos = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = NULL;
    int got = cli_option_among(argc, argv, &i, k_import_value_options, &a, &v);
    const char *why;
    int64_t ns;
    uint64_t u;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(k_import_help, stdout);
      return 0;
    } else if (strcmp(a, "--keep-zero") == 0) {
      opt.keep_zero = true;
    } else if (strcmp(a, "--skip-bad") == 0) {
      opt.skip_bad = true;
    } else if (got < 0) {
      return usage_error("import", "option needs a value", a);
    } else if (strcmp(a, "-o") == 0 || strcmp(a, "--out") == 0) {
      out_path = v;
    } else if (strcmp(a, "--speedup") == 0) {
      if (!parse_double(v, &opt.speedup)) return usage_error("import", "--speedup: not a number", v);
    } else if (strcmp(a, "--start-s") == 0 || strcmp(a, "--end-s") == 0) {
      if (!infsim_parse_seconds_ns(v, strlen(v), &ns, &why)) return usage_error("import", a, why);
      *(a[2] == 's' ? &opt.window_start_ns : &opt.window_end_ns) = ns;
    } else if (strcmp(a, "--sample") == 0) {
      if (!parse_double(v, &opt.sample_fraction)) return usage_error("import", "--sample: not a number", v);
    } else if (strcmp(a, "--seed") == 0) {
      if (!parse_u64(v, &opt.seed)) return usage_error("import", "--seed: not an integer >= 0", v);
    } else if (strcmp(a, "--max-prompt-tokens") == 0 || strcmp(a, "--max-output-tokens") == 0) {
      if (!parse_u64(v, &u) || u < 1 || u > (uint64_t)INFSIM_TRACE_MAX_TOKENS)
        return usage_error("import", a, "needs an integer >= 1");
      *(a[6] == 'p' ? &opt.max_prompt_tokens : &opt.max_output_tokens) = (int64_t)u;
    } else if (strcmp(a, "--model") == 0) {
      opt.model = v;
    } else if (a[0] == '-' && a[1] != '\0') {
      return usage_error("import", "unknown option", a);
    } else if (npos < 2) {
      pos[npos++] = a;
    } else {
      return usage_error("import", "unexpected argument", a);
    }
  }
  infsim_import_format fmt;
  if (npos < 2) return usage_error("import", "need FORMAT and FILE", NULL);
  if (!infsim_import_format_parse(pos[0], &fmt))
    return usage_error("import", "unknown format (azure, mooncake, burstgpt)", pos[0]);
  if (out_path == NULL) return usage_error("import", "missing -o OUT.csv", NULL);
  if (opt.model != NULL && fmt != INFSIM_IMPORT_BURSTGPT)
    return usage_error("import", "--model applies to burstgpt only", NULL);
  infsim_import_report r;
  infsim_error err = {0};
  infsim_status st = infsim_trace_import(fmt, pos[1], out_path, &opt, &r, &err);
  if (st != INFSIM_OK) return fail_status("import", &err);
  char t[32];
  fprintf(stderr,
          "infsim trace import: %s: %lld rows read, %lld written to %s (%lld prompt + %lld output tokens, last "
          "arrival %s s)\n",
          pos[1], (long long)r.rows_read, (long long)r.written, out_path, (long long)r.prompt_tokens_written,
          (long long)r.output_tokens_written, infsim_format_seconds(r.last_arrival_ns, t));
  fprintf(stderr,
          "  dropped: %lld malformed%s, %lld other model, %lld out of window%s, %lld zero-length, %lld sampled out\n",
          (long long)r.bad, r.bad > 0 ? " (skipped, --skip-bad)" : "", (long long)r.filtered_model,
          (long long)r.out_of_window, r.stopped_at_window_end ? " (stopped at the window end)" : "",
          (long long)r.zero_dropped, (long long)r.sampled_out);
  fprintf(stderr, "  changed: %lld zero counts raised to 1, %lld prompts and %lld outputs capped\n",
          (long long)r.zero_raised, (long long)r.capped_prompt, (long long)r.capped_output);
  if (r.bad > 0) fprintf(stderr, "  first malformed row: %s:%lld\n", pos[1], (long long)r.first_bad_line);
  return 0;
}

/* ---- stats ---- */

static void print_histogram(const char *name, const infsim_trace *t, bool prompt) {
  enum { BINS = 64, BAR = 50 };
  int64_t count[BINS] = {0};
  int lo = BINS, hi = 0;
  for (size_t i = 0; i < t->count; i++) {
    int64_t v = prompt ? t->requests[i].prompt_tokens : t->requests[i].output_tokens;
    int b = 0;
    while ((v >> (b + 1)) > 0) b++; /* floor(log2 v) */
    count[b]++;
    if (b < lo) lo = b;
    if (b > hi) hi = b;
  }
  int64_t peak = 0;
  for (int b = lo; b <= hi; b++)
    if (count[b] > peak) peak = count[b];
  printf("\n%s histogram (bins [2^k, 2^(k+1)))\n", name);
  for (int b = lo; b <= hi; b++) {
    char range[48];
    snprintf(range, sizeof range, "[%lld, %lld)", (long long)(INT64_C(1) << b), (long long)(INT64_C(1) << (b + 1)));
    int w = (int)((count[b] * BAR + peak - 1) / peak);
    printf("  %-20s %9lld %5.1f%% ", range, (long long)count[b], 100.0 * (double)count[b] / (double)t->count);
    for (int k = 0; k < w; k++) putchar('#');
    putchar('\n');
  }
}

static void print_lengths_json(const char *name, const infsim_length_stats *l, bool last) {
  printf("  \"%s\": {\"min\": %lld, \"p50\": %lld, \"p90\": %lld, \"p99\": %lld, \"max\": %lld, \"mean\": %.6f, "
         "\"sum\": %lld}%s\n",
         name, (long long)l->min, (long long)l->p50, (long long)l->p90, (long long)l->p99, (long long)l->max, l->mean,
         (long long)l->sum, last ? "" : ",");
}

static int cmd_stats(int argc, char **argv) {
  const char *path = NULL;
  bool json = false;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(k_stats_help, stdout);
      return 0;
    } else if (strcmp(argv[i], "--json") == 0) {
      json = true;
    } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
      return usage_error("stats", "unknown option", argv[i]);
    } else if (path == NULL) {
      path = argv[i];
    } else {
      return usage_error("stats", "unexpected argument", argv[i]);
    }
  }
  if (path == NULL) return usage_error("stats", "missing FILE", NULL);
  infsim_trace t;
  infsim_trace_stats s;
  infsim_error err = {0};
  infsim_status st = infsim_trace_read_csv(path, &t, &err);
  if (st == INFSIM_OK) st = infsim_trace_compute_stats(&t, &s, &err);
  if (st != INFSIM_OK) {
    infsim_trace_free(&t);
    return fail_status("stats", &err);
  }
  char first[32], last[32];
  infsim_format_seconds(t.requests[0].arrival_ns, first);
  infsim_format_seconds(t.requests[t.count - 1].arrival_ns, last);
  if (json) {
    printf("{\n  \"requests\": %zu,\n  \"first_arrival_s\": %s,\n  \"last_arrival_s\": %s,\n  \"duration_s\": %.9f,\n",
           s.requests, first, last, s.duration_s);
    printf("  \"mean_rps\": %.6f,\n  \"peak_per_s\": %lld,\n  \"mean_per_min\": %.6f,\n  \"peak_per_min\": %lld,\n",
           s.mean_rps, (long long)s.peak_per_s, s.mean_per_min, (long long)s.peak_per_min);
    print_lengths_json("prompt_tokens", &s.prompt, false);
    print_lengths_json("output_tokens", &s.output, true);
    printf("}\n");
  } else {
    printf("trace          %s\n", path);
    printf("requests       %zu\n", s.requests);
    printf("arrivals       %s s .. %s s (duration %.3f s)\n", first, last, s.duration_s);
    printf("rate per s     mean %.3f  peak %lld\n", s.mean_rps, (long long)s.peak_per_s);
    printf("rate per min   mean %.2f  peak %lld\n", s.mean_per_min, (long long)s.peak_per_min);
    printf("\n%-14s %9s %9s %9s %9s %9s %11s %14s\n", "tokens", "min", "p50", "p90", "p99", "max", "mean", "sum");
    const infsim_length_stats *ls[2] = {&s.prompt, &s.output};
    const char *names[2] = {"prompt", "output"};
    for (int k = 0; k < 2; k++)
      printf("%-14s %9lld %9lld %9lld %9lld %9lld %11.1f %14lld\n", names[k], (long long)ls[k]->min,
             (long long)ls[k]->p50, (long long)ls[k]->p90, (long long)ls[k]->p99, (long long)ls[k]->max, ls[k]->mean,
             (long long)ls[k]->sum);
    print_histogram("prompt_tokens", &t, true);
    print_histogram("output_tokens", &t, false);
  }
  infsim_trace_free(&t);
  return 0;
}

int infsim_cmd_trace(int argc, char **argv) {
  if (argc < 2) {
    fputs(k_trace_help, stderr);
    return 2;
  }
  const char *sub = argv[1];
  if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
    fputs(k_trace_help, stdout);
    return 0;
  }
  if (strcmp(sub, "gen") == 0) return cmd_gen(argc - 1, argv + 1);
  if (strcmp(sub, "import") == 0) return cmd_import(argc - 1, argv + 1);
  if (strcmp(sub, "stats") == 0) return cmd_stats(argc - 1, argv + 1);
  fprintf(stderr, "infsim trace: unknown subcommand '%s' (gen, import, stats)\n", sub);
  return 2;
}
