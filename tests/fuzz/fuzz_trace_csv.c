/*
** fuzz_trace_csv.c: the trace CSV reader, statistics, and write -> read.
**
** Checked on every trace the reader accepts: arrivals non-decreasing and
** within INFSIM_TRACE_MAX_ARRIVAL_S, token counts in [1, MAX_TOKENS];
** statistics ordered (min <= p50 <= p90 <= p99 <= max, sum = the sum); and
** writing the trace then reading it back gives the same integers.
*/
#include "fuzz_util.h"
#include "infsim/trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char in[512], out[512];
  fuzz_write("trace.csv", data, size, in);
  infsim_trace t;
  infsim_error err = {0};
  if (infsim_trace_read_csv(in, &t, &err) != INFSIM_OK) {
    FUZZ_CHECK(err.status == INFSIM_EINPUT, "status %d: %s", (int)err.status, err.msg);
    FUZZ_CHECK(strncmp(err.msg, in, strlen(in)) == 0 && strchr(err.msg, '\n') == NULL, "message: %s", err.msg);
    return 0;
  }
  int64_t prompt_sum = 0;
  for (size_t i = 0; i < t.count; i++) {
    const infsim_trace_request *r = &t.requests[i];
    FUZZ_CHECK(r->arrival_ns >= 0 && r->arrival_ns <= INFSIM_TRACE_MAX_ARRIVAL_S * INT64_C(1000000000), "arrival");
    FUZZ_CHECK(i == 0 || r->arrival_ns >= t.requests[i - 1].arrival_ns, "arrivals out of order at %zu", i);
    FUZZ_CHECK(r->prompt_tokens >= 1 && r->prompt_tokens <= INFSIM_TRACE_MAX_TOKENS, "prompt");
    FUZZ_CHECK(r->output_tokens >= 1 && r->output_tokens <= INFSIM_TRACE_MAX_TOKENS, "output");
    prompt_sum += r->prompt_tokens;
  }
  infsim_trace_stats s;
  FUZZ_CHECK(infsim_trace_compute_stats(&t, &s, &err) == INFSIM_OK, "%s", err.msg);
  FUZZ_CHECK(s.prompt.min <= s.prompt.p50 && s.prompt.p50 <= s.prompt.p90 && s.prompt.p90 <= s.prompt.p99 &&
                 s.prompt.p99 <= s.prompt.max,
             "percentiles out of order");
  FUZZ_CHECK(s.prompt.sum == prompt_sum && s.requests == t.count, "sums");
  FUZZ_CHECK(s.peak_per_s >= 1 && s.peak_per_s <= s.peak_per_min && s.peak_per_min <= (int64_t)t.count, "peaks");
  fuzz_path("trace-out.csv", out);
  FUZZ_CHECK(infsim_trace_write_csv(out, &t, &err) == INFSIM_OK, "%s", err.msg);
  infsim_trace back;
  FUZZ_CHECK(infsim_trace_read_csv(out, &back, &err) == INFSIM_OK, "written trace unreadable: %s", err.msg);
  FUZZ_CHECK(back.count == t.count, "count changed");
  for (size_t i = 0; i < t.count; i++)
    FUZZ_CHECK(memcmp(&back.requests[i], &t.requests[i], sizeof t.requests[i]) == 0, "row %zu changed", i);
  infsim_trace_free(&back);
  infsim_trace_free(&t);
  return 0;
}
