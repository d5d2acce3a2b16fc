/*
** trace.h: requests to simulate, the trace CSV, and workload generators.
**
** The trace CSV (DESIGN.md): header `arrival_time_s,prompt_tokens,output_tokens`,
** one request a row, arrival times non-decreasing, both token counts >= 1;
** extra columns are allowed and ignored. In memory arrival times are int64
** nanoseconds, rounded to the nearest nanosecond.
*/
#ifndef INFSIM_TRACE_H
#define INFSIM_TRACE_H

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
} infsim_trace;

void infsim_trace_free(infsim_trace *trace);
infsim_status infsim_trace_append(infsim_trace *trace, infsim_trace_request req, infsim_error *err);

/* Reads a trace CSV; malformed input fails with "FILE:LINE: FIELD: reason". */
infsim_status infsim_trace_read_csv(const char *path, infsim_trace *trace, infsim_error *err);

/* Writes a trace CSV atomically (temp name, then rename). */
infsim_status infsim_trace_write_csv(const char *path, const infsim_trace *trace, infsim_error *err);

/* Generates a synthetic trace from the keys under `prefix` ("workload" for a
 * run config) of cfg, through config.h's getters (so defaults are recorded
 * and unknown keys caught), drawing from a stream derived from seed. */
infsim_status infsim_workload_generate(infsim_config *cfg, const char *prefix, uint64_t seed, infsim_trace *out,
                                       infsim_error *err);

#endif
