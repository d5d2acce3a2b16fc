/*
** trace.h: requests to simulate, the trace CSV, importers and workload generators.
**
** The trace CSV (DESIGN.md): header `arrival_time_s,prompt_tokens,output_tokens`,
** one request a row, arrival times non-decreasing, both token counts >= 1;
** extra columns are allowed anywhere and ignored (importers add
** `prefix_hashes`, block hash ids separated by spaces). In memory arrival
** times are int64 nanoseconds; the reader converts the decimal text to
** nanoseconds with integer arithmetic (rounding half up past the ninth
** fractional digit), so "0.1" is exactly 100000000 ns, and the writer prints
** every nanosecond, so write then read gives back the same integers.
**
** Foreign traces (Azure, Mooncake, BurstGPT) are never read by the
** simulator: infsim_trace_import() converts them to the trace CSV, one line
** at a time (constant memory whatever the file size).
**
** docs/traces.md documents the formats, the generator's keys and their
** defaults, and every importer option.
*/
#ifndef INFSIM_TRACE_H
#define INFSIM_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "infsim/config.h"
#include "infsim/status.h"

typedef struct {
  int64_t arrival_ns;
  int64_t prompt_tokens;
  int64_t output_tokens;
} infsim_trace_request;

typedef struct {
  infsim_trace_request *requests;
  size_t count;
  size_t capacity;
  /* requests came from infsim_big_calloc (bigmem.h), not malloc; false
   * in a zeroed struct. infsim_trace_free and _append know which. */
  bool big;
} infsim_trace;

/* Bounds the reader and the generator enforce (named so messages and docs agree). */
#define INFSIM_TRACE_MAX_TOKENS INT64_C(1000000000)       /* per request, prompt or output */
#define INFSIM_TRACE_MAX_ARRIVAL_S INT64_C(1000000000)    /* about 31 years */

void infsim_trace_free(infsim_trace *trace);
infsim_status infsim_trace_append(infsim_trace *trace, infsim_trace_request req, infsim_error *err);

/* Reads a trace CSV; malformed input fails with "FILE:LINE: FIELD: reason"
 * (INFSIM_EINPUT). A trace without requests is an error. */
infsim_status infsim_trace_read_csv(const char *path, infsim_trace *trace, infsim_error *err);

/* Writes a trace CSV atomically (temp name, then rename). */
infsim_status infsim_trace_write_csv(const char *path, const infsim_trace *trace, infsim_error *err);

/* Parses a decimal number of seconds ("12.5", "0.0000001", "1e-3") into
 * nanoseconds exactly, rounding half up beyond the ninth fractional digit.
 * Rejects signs, empty text, junk and values above INFSIM_TRACE_MAX_ARRIVAL_S.
 * On failure returns false and points *why at a static reason. */
bool infsim_parse_seconds_ns(const char *text, size_t len, int64_t *out_ns, const char **why);
/* The same up to max_ns (>= 1 s) instead: the importers read source times
 * (BurstGPT's may be Unix epoch seconds, 1.7e9) that only their difference
 * from the first row has to bring under INFSIM_TRACE_MAX_ARRIVAL_S. */
bool infsim_parse_seconds_upto_ns(const char *text, size_t len, int64_t max_ns, int64_t *out_ns, const char **why);

/* Prints ns as decimal seconds with every significant digit ("1.5", "0.000000001",
 * "3"); buf needs 32 bytes. Returns buf. */
char *infsim_format_seconds(int64_t ns, char buf[32]);

/* Generates a synthetic trace from the keys under `prefix` ("workload" for a
 * run config) of cfg, through config.h's getters (so defaults are recorded
 * and unknown keys caught), drawing from streams derived from seed
 * ("workload.arrivals", "workload.prompt", "workload.output"). Never reads
 * PREFIX.trace: choosing between a trace file and a generator is the
 * caller's business. */
infsim_status infsim_workload_generate(infsim_config *cfg, const char *prefix, uint64_t seed, infsim_trace *out,
                                       infsim_error *err);

/* Reads and checks the generator's keys under prefix as
 * infsim_workload_generate would, generating nothing: a run whose requests
 * come from a trace file still refuses a misspelled or out-of-range
 * generator key (FILE:LINE: KEY). The keys it read are marked used and
 * their resolved values dropped (infsim_config_forget: the file, not the
 * generator, made the requests), so read PREFIX.trace after it. */
infsim_status infsim_workload_check(infsim_config *cfg, const char *prefix, infsim_error *err);

/* ---- importers ---- */

typedef enum { INFSIM_IMPORT_AZURE, INFSIM_IMPORT_MOONCAKE, INFSIM_IMPORT_BURSTGPT } infsim_import_format;

/* Parses "azure", "mooncake", "burstgpt"; false when unknown. */
bool infsim_import_format_parse(const char *name, infsim_import_format *out);

typedef struct {
  double speedup;           /* output arrival = (source time - window start) / speedup; > 0 */
  int64_t window_start_ns;  /* source time since the first row; rows before it are dropped */
  int64_t window_end_ns;    /* rows at or after it are dropped (reading stops); < 0: no end */
  double sample_fraction;   /* keep each row with this probability (1: all) */
  uint64_t seed;            /* stream "import.sample" of this seed draws the sampling */
  int64_t max_prompt_tokens; /* longer prompts are cut to this; 0: no cap */
  int64_t max_output_tokens; /* likewise for outputs */
  bool keep_zero;           /* raise zero token counts to 1 instead of dropping the row */
  bool skip_bad;            /* skip and count malformed rows instead of failing */
  const char *model;        /* burstgpt: keep only this Model (NULL: all) */
} infsim_import_options;

/* The defaults: speedup 1, whole file, no sampling, no caps, strict. */
infsim_import_options infsim_import_options_default(void);

/* What an import did with the rows it read. Every data row read lands in
 * exactly one of written, bad, filtered_model, out_of_window, zero_dropped,
 * sampled_out (capped_* and zero_raised count rows that were also written). */
typedef struct {
  int64_t rows_read;       /* data rows (not the header, not blank lines) */
  int64_t written;
  int64_t bad;             /* malformed rows skipped (--skip-bad) */
  int64_t first_bad_line;  /* line of the first of them, 0 if none */
  int64_t filtered_model;
  int64_t out_of_window;   /* before the window start, or the one row that ended reading */
  bool stopped_at_window_end; /* reading stopped at the first row past the window */
  int64_t zero_dropped;    /* rows with a zero token count */
  int64_t zero_raised;     /* zero counts raised to 1 (keep_zero) */
  int64_t sampled_out;
  int64_t capped_prompt;
  int64_t capped_output;
  int64_t prompt_tokens_written;
  int64_t output_tokens_written;
  int64_t last_arrival_ns; /* of the last row written */
} infsim_import_report;

/* Converts in_path (of format fmt) to a trace CSV at out_path, atomically:
 * on any failure out_path is untouched and no temporary file is left.
 * Malformed rows fail with "FILE:LINE: FIELD: reason" unless skip_bad.
 * Writing no rows at all is an error (an empty trace is not a trace). */
infsim_status infsim_trace_import(infsim_import_format fmt, const char *in_path, const char *out_path,
                                  const infsim_import_options *opt, infsim_import_report *report,
                                  infsim_error *err);

/* ---- statistics (`infsim trace stats`) ---- */

typedef struct {
  int64_t min, p50, p90, p99, max; /* nearest-rank percentiles */
  double mean;
  int64_t sum;
} infsim_length_stats;

typedef struct {
  size_t requests;
  double duration_s;      /* last arrival - first arrival */
  double mean_rps;        /* requests / duration (0 if duration is 0) */
  int64_t peak_per_s;     /* most arrivals in one 1 s bin starting at the first arrival */
  double mean_per_min;
  int64_t peak_per_min;   /* most arrivals in one 60 s bin */
  infsim_length_stats prompt;
  infsim_length_stats output;
} infsim_trace_stats;

/* Fills stats for a non-empty trace. */
infsim_status infsim_trace_compute_stats(const infsim_trace *trace, infsim_trace_stats *stats, infsim_error *err);

#endif
