/*
** cmd_calibrate.c: `infsim calibrate run|load|fit|show` (calib.h).
**
** Thin over libinfsim_calibrate: parses arguments, calls one function,
** prints its one-line error and maps its status to the exit code (2 bad
** input, 77 no GPU for --backend cuda, 1 run failed).
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_opts.h"
#include "commands.h"
#include "infsim/calib.h"

static const char k_usage[] =
    "usage: infsim calibrate run [--backend cuda|cpu] [--model NAME] [--tp N,..] [--quick] --out RAW.csv\n"
    "       infsim calibrate load RAW.csv --db DB [--profile NAME] [--model NAME]\n"
    "       infsim calibrate fit --db DB\n"
    "       infsim calibrate show --db DB [--plot DIR]\n"
    "\n"
    "Measures the kernels' cost curves, stores them in a SQLite DB, fits them, and shows\n"
    "measured against fitted. `infsim calibrate SUB --help` describes one step; see\n"
    "docs/calibration.md for the whole job.\n";

static const char k_run_help[] =
    "usage: infsim calibrate run [--backend cuda|cpu] [--model NAME] [--tp N,..] [--quick] --out RAW.csv\n"
    "\n"
    "Times one layer of one tensor-parallel shard of the model's kernels (GEMMs, prefill\n"
    "attention, decode micro-attention over batch x context x local share, merge of\n"
    "partials, KV block copies, host-staged copies) and writes the raw measurements as CSV\n"
    "(no SQLite or GSL needed, so it runs on a bare GPU machine).\n"
    "\n"
    "  --backend cuda|cpu  kernels to time (default cuda; exit 77 when there is no GPU)\n"
    "  --model NAME        llama2-7b (default), llama2-13b, llama2-70b or tiny\n"
    "  --tp N,..           TP degrees (default: those of 1,2,4,8 that divide the model)\n"
    "  --quick             smaller grid, fewer repeats\n"
    "  --out RAW.csv       output file (written atomically)\n";

static const char k_load_help[] =
    "usage: infsim calibrate load RAW.csv --db DB [--profile NAME] [--model NAME]\n"
    "\n"
    "Loads raw measurements into the calibration DB (created if missing), replacing the\n"
    "profile's earlier measurements of the same model and TP degrees. Bad files (missing\n"
    "columns, NaNs, another schema version, another model than --model) exit 2 naming\n"
    "file:line: field, and leave the DB untouched.\n"
    "\n"
    "  --db DB         SQLite calibration DB\n"
    "  --profile NAME  profile name (default: from the GPU name, e.g. h100-sxm)\n"
    "  --model NAME    refuse a file measured for another model\n";

static const char k_fit_help[] =
    "usage: infsim calibrate fit --db DB\n"
    "\n"
    "Fits every kernel's curve (piecewise linear in the cost model's aggregates, GSL\n"
    "weighted least squares) per profile, model and TP degree, stores the coefficients and\n"
    "errors, and prints the held-out error (fit on half the grid, tested on the rest;\n"
    "goal: median <= 3%, p95 <= 8%).\n";

static const char k_show_help[] =
    "usage: infsim calibrate show --db DB [--plot DIR]\n"
    "\n"
    "Prints every measurement with the fitted value and the error; with --plot, draws one\n"
    "PNG per profile, model, TP degree and kernel in DIR with gnuplot.\n";

static int is_help(const char *a) { return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0; }

static int usage_error(const char *sub, const char *msg, const char *arg) {
  fprintf(stderr, "infsim calibrate %s: %s%s%s (try --help)\n", sub, msg, arg ? " " : "", arg ? arg : "");
  return 2;
}

static int report(const char *sub, infsim_status st, const infsim_error *err) {
  if (st != INFSIM_OK) fprintf(stderr, "infsim calibrate %s: %s\n", sub, err->msg);
  return infsim_status_exit_code(st);
}

static int parse_tp_list(const char *s, infsim_calib_run_opts *o) {
  o->n_tp = 0;
  const char *p = s;
  while (*p) {
    char *end = NULL;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (end == p || errno || v < 1 || v > 64 || o->n_tp == 8) return 0;
    o->tp[o->n_tp++] = v;
    if (*end == ',') end++;
    else if (*end != '\0') return 0;
    p = end;
  }
  return o->n_tp > 0;
}

/* The options that take a value, given as "--name VALUE" or "--name=VALUE". */
static const char *const k_run_value_options[] = {"--backend", "--model", "--out", "--tp", NULL};
static const char *const k_load_value_options[] = {"--db", "--profile", "--model", NULL};

static int cmd_run(int argc, char **argv) {
  infsim_calib_run_opts o = {.backend = "cuda", .model = "llama2-7b", .log = stderr};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = NULL;
    int got = cli_option_among(argc, argv, &i, k_run_value_options, &a, &v);
    if (is_help(a)) {
      fputs(k_run_help, stdout);
      return 0;
    }
    if (strcmp(a, "--quick") == 0) {
      o.quick = 1;
      continue;
    }
    if (got < 0) return usage_error("run", "missing value or unknown option", a);
    if (strcmp(a, "--backend") == 0) o.backend = v;
    else if (strcmp(a, "--model") == 0) o.model = v;
    else if (strcmp(a, "--out") == 0) o.out_path = v;
    else if (strcmp(a, "--tp") == 0) {
      if (!parse_tp_list(v, &o)) return usage_error("run", "--tp: expected a list like 1,2,4,8, got", v);
    } else return usage_error("run", "unknown option", a);
  }
  if (o.out_path == NULL) return usage_error("run", "--out RAW.csv is required", NULL);
  infsim_error err = {0};
  return report("run", infsim_calib_run(&o, &err), &err);
}

static int cmd_load(int argc, char **argv) {
  const char *raw = NULL, *db = NULL;
  infsim_calib_load_opts o = {0};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = NULL;
    int got = cli_option_among(argc, argv, &i, k_load_value_options, &a, &v);
    if (is_help(a)) {
      fputs(k_load_help, stdout);
      return 0;
    }
    if (a[0] != '-' || a[1] == '\0') {
      if (raw) return usage_error("load", "more than one raw file:", a);
      raw = a;
      continue;
    }
    if (got < 0) return usage_error("load", "missing value or unknown option", a);
    if (strcmp(a, "--db") == 0) db = v;
    else if (strcmp(a, "--profile") == 0) o.profile = v;
    else if (strcmp(a, "--model") == 0) o.model = v;
    else return usage_error("load", "unknown option", a);
  }
  if (raw == NULL || db == NULL) return usage_error("load", "a raw file and --db DB are required", NULL);
  infsim_error err = {0};
  return report("load", infsim_calib_load(raw, db, &o, stdout, &err), &err);
}

static int cmd_fit(int argc, char **argv) {
  const char *db = NULL;
  for (int i = 1; i < argc; i++) {
    if (is_help(argv[i])) {
      fputs(k_fit_help, stdout);
      return 0;
    }
    if (cli_option_value(argc, argv, &i, "--db", &db) <= 0) return usage_error("fit", "unknown option", argv[i]);
  }
  if (db == NULL) return usage_error("fit", "--db DB is required", NULL);
  infsim_error err = {0};
  int goal_met = 0;
  return report("fit", infsim_calib_fit_db(db, stdout, &goal_met, &err), &err);
}

static int cmd_show(int argc, char **argv) {
  const char *db = NULL, *plot = NULL;
  for (int i = 1; i < argc; i++) {
    if (is_help(argv[i])) {
      fputs(k_show_help, stdout);
      return 0;
    }
    if (cli_option_value(argc, argv, &i, "--db", &db) <= 0 && cli_option_value(argc, argv, &i, "--plot", &plot) <= 0)
      return usage_error("show", "unknown option", argv[i]);
  }
  if (db == NULL) return usage_error("show", "--db DB is required", NULL);
  infsim_error err = {0};
  return report("show", infsim_calib_show(db, plot, stdout, &err), &err);
}

int infsim_cmd_calibrate(int argc, char **argv) {
  if (argc < 2) {
    fputs(k_usage, stderr);
    return 2;
  }
  const char *sub = argv[1];
  if (is_help(sub) || strcmp(sub, "help") == 0) {
    fputs(k_usage, stdout);
    return 0;
  }
  if (strcmp(sub, "run") == 0) return cmd_run(argc - 1, argv + 1);
  if (strcmp(sub, "load") == 0) return cmd_load(argc - 1, argv + 1);
  if (strcmp(sub, "fit") == 0) return cmd_fit(argc - 1, argv + 1);
  if (strcmp(sub, "show") == 0) return cmd_show(argc - 1, argv + 1);
  fprintf(stderr, "infsim calibrate: unknown step '%s' (run, load, fit, show; try --help)\n", sub);
  return 2;
}
