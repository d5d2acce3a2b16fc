/*
** fuzz_import.c: one foreign-trace importer (FUZZ_FORMAT: azure, mooncake
** or burstgpt), built once per format.
**
** Input: 6 option bytes, then the file. Checked: the report accounts for
** every row read exactly once; a failure is bad input with a one-line
** message and leaves no output; a success writes a trace that the trace
** reader accepts, with as many rows, tokens and the last arrival that the
** report gives.
*/
#include <math.h>

#include "fuzz_util.h"
#include "infsim/trace.h"

#ifndef FUZZ_FORMAT
#error "build with -DFUZZ_FORMAT=INFSIM_IMPORT_AZURE (or _MOONCAKE, _BURSTGPT)"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_bytes b = {data, size < 6 ? size : 6};
  uint64_t flags = fuzz_u64(&b, 1);
  infsim_import_options o = infsim_import_options_default();
  o.skip_bad = flags & 1;
  o.keep_zero = (flags >> 1) & 1;
  if ((flags >> 2) & 1) o.sample_fraction = (double)(fuzz_u64(&b, 1) + 1) / 256.0;
  if ((flags >> 3) & 1) o.window_start_ns = (int64_t)fuzz_u64(&b, 1) * INT64_C(1000000000);
  if ((flags >> 4) & 1) o.window_end_ns = o.window_start_ns + ((int64_t)fuzz_u64(&b, 1) + 1) * INT64_C(1000000000);
  if ((flags >> 5) & 1) o.max_prompt_tokens = (int64_t)fuzz_u64(&b, 1) + 1;
  if ((flags >> 6) & 1) o.speedup = ldexp(1.0, (int)fuzz_u64(&b, 1) % 64 - 32);
  if ((flags >> 7) & 1) o.model = "ChatGPT";
  o.seed = 7;
  size_t skip = size < 6 ? size : 6;
  char in[512], out[512];
  fuzz_write("import.in", data + skip, size - skip, in);
  fuzz_path("import.csv", out);
  unlink(out);
  infsim_import_report r;
  infsim_error err = {0};
  infsim_status st = infsim_trace_import(FUZZ_FORMAT, in, out, &o, &r, &err);
  int64_t accounted = r.written + r.bad + r.filtered_model + r.out_of_window + r.zero_dropped + r.sampled_out;
  if (st != INFSIM_OK) {
    FUZZ_CHECK(st == INFSIM_EINPUT, "status %d: %s", (int)st, err.msg);
    FUZZ_CHECK(err.msg[0] != '\0' && strchr(err.msg, '\n') == NULL, "message: %s", err.msg);
    FUZZ_CHECK(access(out, F_OK) != 0, "a failed import left %s", out);
    return 0;
  }
  FUZZ_CHECK(accounted == r.rows_read, "%lld rows read, %lld accounted for", (long long)r.rows_read,
             (long long)accounted);
  FUZZ_CHECK(r.written >= 1, "success without rows");
  infsim_trace t;
  FUZZ_CHECK(infsim_trace_read_csv(out, &t, &err) == INFSIM_OK, "imported trace unreadable: %s", err.msg);
  FUZZ_CHECK((int64_t)t.count == r.written, "%zu rows in the file, %lld reported", t.count, (long long)r.written);
  int64_t prompt = 0, output = 0;
  for (size_t i = 0; i < t.count; i++) prompt += t.requests[i].prompt_tokens, output += t.requests[i].output_tokens;
  FUZZ_CHECK(prompt == r.prompt_tokens_written && output == r.output_tokens_written, "token sums differ");
  FUZZ_CHECK(t.requests[t.count - 1].arrival_ns == r.last_arrival_ns, "last arrival differs");
  if (o.max_prompt_tokens > 0)
    for (size_t i = 0; i < t.count; i++) FUZZ_CHECK(t.requests[i].prompt_tokens <= o.max_prompt_tokens, "cap");
  infsim_trace_free(&t);
  unlink(out);
  return 0;
}
