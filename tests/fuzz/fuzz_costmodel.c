/*
** fuzz_costmodel.c: the cost model's time arithmetic on random models,
** GPUs, layouts and batches, within the bounds the config and scheduler
** allow (run/params.c and cost/hardware.c ranges; a prompt or output is at
** most INFSIM_TRACE_MAX_TOKENS; a batch at most 2^32 tokens and 2^20
** requests).
**
** Checked: no sanitizer report (signed overflow, float-to-int casts); an
** iteration takes at least 1 ns and INT64_MAX stands for "does not fit";
** more work never takes less time (each aggregate raised alone, with the
** others' consistency kept; up to 2^-50 relative, a few ulps of rounding); a decode run of k+1 steps takes no less than
** one of k steps, and at least k ns; transfers are monotone in bytes.
*/
#include "fuzz_util.h"
#include "infsim/costmodel.h"
#include "infsim/hardware.h"

static const char *const k_gpus[] = {"a100-80gb", "a100-40gb", "h100-sxm", "h200"};

/* A random custom model within hardware.c's config ranges. */
static void pick_model(fuzz_bytes *b, infsim_model_shape *m) {
  memset(m, 0, sizeof *m);
  snprintf(m->name, sizeof m->name, "fuzz");
  m->layers = fuzz_range(b, 1, 1000);
  m->heads = fuzz_range(b, 1, 4096);
  m->head_dim = fuzz_range(b, 1, (1 << 20) / m->heads);
  if (m->head_dim * m->heads < 64) m->head_dim = (64 + m->heads - 1) / m->heads;
  m->hidden = m->heads * m->head_dim;
  int64_t groups = fuzz_range(b, 0, 12);
  m->kv_heads = m->heads;
  while (groups-- > 0 && m->kv_heads % 2 == 0) m->kv_heads /= 2; /* divides heads */
  m->intermediate = fuzz_range(b, 1, 1 << 22);
  m->vocab = fuzz_range(b, 1, 1 << 24);
  m->dtype_bytes = fuzz_range(b, 1, 8);
}

/* Aggregates within what the scheduler can produce. */
static void pick_agg(fuzz_bytes *b, infsim_batch_agg *a) {
  a->prefill_tokens = fuzz_range(b, 0, INT64_C(1) << 32);
  a->prefill_attn_pairs = a->prefill_tokens > 0 ? fuzz_range(b, a->prefill_tokens, INT64_C(1) << 62) : 0;
  a->decode_requests = fuzz_range(b, 0, 1 << 20);
  a->decode_context_tokens = a->decode_requests > 0 ? fuzz_range(b, a->decode_requests, INT64_C(1) << 51) : 0;
  a->logits_tokens = fuzz_range(b, 0, a->prefill_tokens + a->decode_requests);
  a->remote_requests = fuzz_range(b, 0, a->decode_requests);
  a->remote_context_tokens = a->remote_requests > 0 ? fuzz_range(b, a->remote_requests, INT64_C(1) << 51) : 0;
  a->remote_partials = a->remote_requests > 0 ? fuzz_range(b, a->remote_requests, a->remote_requests * 64) : 0;
}

/* Raises one aggregate (and what must follow it) by a random amount. */
static int raise_one(fuzz_bytes *b, const infsim_batch_agg *a, infsim_batch_agg *out) {
  *out = *a;
  int which = (int)fuzz_range(b, 0, 7);
  int64_t d = fuzz_range(b, 1, INT64_C(1) << 20);
  switch (which) {
  case 0:
    if (out->prefill_tokens + d <= (INT64_C(1) << 32)) {
      out->prefill_tokens += d;
      if (out->prefill_attn_pairs < out->prefill_tokens) out->prefill_attn_pairs = out->prefill_tokens;
    }
    break;
  case 1:
    if (out->prefill_tokens > 0 && out->prefill_attn_pairs <= (INT64_C(1) << 62) - d) out->prefill_attn_pairs += d;
    break;
  case 2:
    if (out->decode_requests + d <= (1 << 20)) {
      out->decode_requests += d;
      if (out->decode_context_tokens < out->decode_requests) out->decode_context_tokens = out->decode_requests;
    }
    break;
  case 3:
    if (out->decode_requests > 0 && out->decode_context_tokens <= (INT64_C(1) << 51) - d)
      out->decode_context_tokens += d;
    break;
  case 4:
    if (out->logits_tokens + d <= out->prefill_tokens + out->decode_requests) out->logits_tokens += d;
    break;
  case 5:
    if (out->remote_requests + d <= out->decode_requests) {
      out->remote_requests += d;
      if (out->remote_context_tokens < out->remote_requests) out->remote_context_tokens = out->remote_requests;
      if (out->remote_partials < out->remote_requests) out->remote_partials = out->remote_requests;
    }
    break;
  case 6:
    if (out->remote_requests > 0 && out->remote_context_tokens <= (INT64_C(1) << 51) - d)
      out->remote_context_tokens += d;
    break;
  default:
    if (out->remote_requests > 0 && out->remote_partials + d <= out->remote_requests * 64) out->remote_partials += d;
    break;
  }
  return which;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_bytes b = {data, size};
  infsim_model_shape m;
  pick_model(&b, &m);
  infsim_gpu_spec gpu;
  infsim_gpu_builtin(k_gpus[fuzz_range(&b, 0, 3)], &gpu);
  infsim_instance_layout lay = {0};
  lay.tp = fuzz_range(&b, 1, m.heads);
  lay.pp = fuzz_range(&b, 1, 4096 / lay.tp > 0 ? 4096 / lay.tp : 1);
  lay.tp_link_bytes_per_s = (double)fuzz_range(&b, 1000000, INT64_C(1000000000000000));
  lay.pp_link_bytes_per_s = (double)fuzz_range(&b, 1000000, INT64_C(1000000000000000));
  (void)fuzz_range(&b, 1000000, INT64_C(1000000000000000)); /* was a remote link: keeps the corpus' layout */
  lay.link_latency_ns = fuzz_range(&b, 0, INT64_C(1000000000));
  lay.iteration_overhead_ns = fuzz_range(&b, 0, INT64_C(1000000000000));
  (void)fuzz_range(&b, 1, 8); /* were DistAttention's wire and overlap (now distattn.h's) */
  (void)fuzz_range(&b, 0, 1);
  infsim_roofline_eff eff;
  eff.gemm_flops_eff = (double)fuzz_range(&b, 1, 100) / 100.0;
  eff.attn_flops_eff = (double)fuzz_range(&b, 1, 100) / 100.0;
  eff.hbm_eff = (double)fuzz_range(&b, 1, 100) / 100.0;
  eff.layer_overhead_ns = fuzz_range(&b, 0, INT64_C(1000000000));
  infsim_cost_model cm;
  memset(&cm, 0, sizeof cm);
  cm.model = m;
  cm.layout = lay;
  infsim_error err = {0};
  if (infsim_cost_curves_roofline(&m, &gpu, lay.tp, &eff, &cm.curves, &err) != INFSIM_OK) return 0;

  infsim_batch_agg a, more;
  pick_agg(&b, &a);
  int64_t t = infsim_cost_iteration_ns(&cm, &a);
  FUZZ_CHECK(t >= 1, "iteration of %lld ns", (long long)t);
  for (int i = 0; i < 4; i++) {
    int which = raise_one(&b, &a, &more);
    int64_t t2 = infsim_cost_iteration_ns(&cm, &more);
    /* Within a few units in the last place of a double: the overlap of
     * remote attention, local + max(0, remote - local), rounds twice. */
    FUZZ_CHECK(t2 >= t - (t >> 50) - 1, "more work (aggregate %d raised), less time: %lld ns -> %lld ns", which, (long long)t,
               (long long)t2);
  }

  int64_t req = fuzz_range(&b, 1, 1 << 20);
  infsim_decode_run run;
  infsim_cost_decode_run_init(&cm, req, &run);
  int64_t ctx = fuzz_range(&b, req, INT64_C(1) << 40);
  int64_t steps = fuzz_range(&b, 1, 1 << 20);
  int64_t k1 = infsim_cost_decode_run_ns(&cm, &run, ctx, steps);
  int64_t k2 = infsim_cost_decode_run_ns(&cm, &run, ctx, steps + 1);
  FUZZ_CHECK(k1 >= steps && k2 >= k1, "decode run: %lld steps %lld ns, one more %lld ns", (long long)steps,
             (long long)k1, (long long)k2);

  int64_t bytes = fuzz_range(&b, 0, INT64_MAX / 2);
  int64_t x1 = infsim_cost_transfer_ns(bytes, lay.pp_link_bytes_per_s, lay.link_latency_ns);
  int64_t x2 = infsim_cost_transfer_ns(bytes + fuzz_range(&b, 1, INT64_C(1) << 30), lay.pp_link_bytes_per_s,
                                       lay.link_latency_ns);
  FUZZ_CHECK(x1 >= 0 && x2 >= x1, "transfer %lld -> %lld", (long long)x1, (long long)x2);
  infsim_cost_model_destroy(&cm);
  return 0;
}
