/*
** fuzz_workload.c: the synthetic workload generator driven by a YAML
** config (the `workload:` section of a run config, `infsim trace gen`).
**
** Work per input is bounded by lowering requests to 2,000 and
** duration_s x rate_rps to 2,000 expected arrivals before generating
** (the generator's own bounds allow 100 M requests, seconds per input).
** Checked: a generated trace is sorted, within the arrival bound and the
** token bounds, holds exactly `requests` requests (count mode) or only
** arrivals before duration_s (time mode), and is the same twice for one
** seed; a failure is bad input with a one-line message.
*/
#include <math.h>

#include "fuzz_util.h"
#include "infsim/config.h"
#include "infsim/trace.h"

enum { MAX_REQUESTS = 2000 };

static double value_of(infsim_config *cfg, const char *key, double def) {
  if (!infsim_config_has_value(cfg, key)) return def;
  const char *v = NULL;
  infsim_error err;
  if (infsim_config_string(cfg, key, "", &v, &err) != INFSIM_OK) return def;
  char *end;
  double d = strtod(v, &end);
  return *end == '\0' && isfinite(d) ? d : def;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  infsim_config *cfg = infsim_config_new();
  infsim_error err = {0};
  if (infsim_config_load_yaml_text(cfg, "w.yaml", (const char *)data, size, &err) != INFSIM_OK) {
    infsim_config_free(cfg);
    return 0;
  }
  char text[64];
  if (value_of(cfg, "workload.requests", 0) > MAX_REQUESTS) {
    snprintf(text, sizeof text, "%d", MAX_REQUESTS);
    infsim_config_put(cfg, "workload.requests", text, "fuzz", &err);
  }
  double duration_s = value_of(cfg, "workload.duration_s", 0), rate = value_of(cfg, "workload.rate_rps", 1);
  if (duration_s > 0 && rate > 0 && duration_s * rate > MAX_REQUESTS) {
    snprintf(text, sizeof text, "%.17g", MAX_REQUESTS / rate);
    infsim_config_put(cfg, "workload.duration_s", text, "fuzz", &err);
    duration_s = value_of(cfg, "workload.duration_s", 0);
  }
  infsim_trace t, again;
  infsim_status st = infsim_workload_generate(cfg, "workload", 11, &t, &err);
  if (st != INFSIM_OK) {
    FUZZ_CHECK(st == INFSIM_EINPUT, "status %d: %s", (int)st, err.msg);
    FUZZ_CHECK(err.msg[0] != '\0' && strchr(err.msg, '\n') == NULL, "message: %s", err.msg);
    infsim_config_free(cfg);
    return 0;
  }
  FUZZ_CHECK(t.count >= 1, "an empty trace");
  double requests = value_of(cfg, "workload.requests", 1000);
  if (!(duration_s > 0)) FUZZ_CHECK((double)t.count == requests, "%zu requests, %g asked", t.count, requests);
  for (size_t i = 0; i < t.count; i++) {
    const infsim_trace_request *r = &t.requests[i];
    FUZZ_CHECK(i == 0 || r->arrival_ns >= t.requests[i - 1].arrival_ns, "unsorted at %zu", i);
    FUZZ_CHECK(r->arrival_ns >= 0 && r->arrival_ns <= INFSIM_TRACE_MAX_ARRIVAL_S * INT64_C(1000000000), "arrival");
    if (duration_s > 0) FUZZ_CHECK((double)r->arrival_ns < duration_s * 1e9 + 1, "arrival past duration_s");
    FUZZ_CHECK(r->prompt_tokens >= 1 && r->prompt_tokens <= INFSIM_TRACE_MAX_TOKENS, "prompt %lld",
               (long long)r->prompt_tokens);
    FUZZ_CHECK(r->output_tokens >= 1 && r->output_tokens <= INFSIM_TRACE_MAX_TOKENS, "output %lld",
               (long long)r->output_tokens);
  }
  FUZZ_CHECK(infsim_workload_generate(cfg, "workload", 11, &again, &err) == INFSIM_OK, "second run: %s", err.msg);
  FUZZ_CHECK(again.count == t.count && memcmp(again.requests, t.requests, t.count * sizeof *t.requests) == 0,
             "one seed, two traces");
  infsim_trace_free(&again);
  infsim_trace_free(&t);
  infsim_config_free(cfg);
  return 0;
}
