/*
** bench_cluster_model: the cluster model (cluster_model.h) on CUDA.
**
**   bench_cluster_model --check   CUDA against the CPU reference on the tiny
**                                 model (prefills, then decode steps replayed
**                                 as CUDA graphs): exit 0 when every hidden
**                                 state agrees to bf16 rounding, 77 without GPU
**   bench_cluster_model --time [--layers N] [--eager]
**                                 LLaMA2-7B shape (N layers, default 32): one
**                                 forward's wall time (upload, launches, sync:
**                                 what the cuda executor pays per batch) for
**                                 decode batch x context and prefill tokens;
**                                 CSV on stdout: kind,batch,context,tokens,ms,
**                                 graphs (decode as CUDA graphs; with --eager
**                                 also launched kernel by kernel)
**   bench_cluster_model --smoke   the same code on the CPU, tiny model, small
**                                 shapes (CI: the bench's paths still run)
** The PyTorch side of the comparison is torch_forward.py beside this file.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "infsim/cluster_model.h"
#include "infsim/hardware.h"

/* The shapes of cost/hardware.c (LLaMA2-7B: Touvron et al. 2023), spelled
 * out so that this program needs nothing of libinfsim. */
static const infsim_model_shape k_tiny = {"tiny", 2, 256, 2, 2, 128, 688, 1024, 2, 0};
static const infsim_model_shape k_llama2_7b = {"llama2-7b", 32, 4096, 32, 32, 128, 11008, 32000, 2, 0};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int die(const char *what, const infsim_error *err) {
  fprintf(stderr, "bench_cluster_model: %s: %s\n", what, err->msg);
  return err->status == INFSIM_ENODEV ? 77 : 1;
}

static double max_rel_diff(const uint16_t *a, const uint16_t *b, int64_t n) {
  double scale = 1.0, diff = 0.0;
  for (int64_t i = 0; i < n; i++) {
    double x = infsim_bf16_to_float(a[i]), y = infsim_bf16_to_float(b[i]);
    if (fabs(y) > scale) scale = fabs(y);
    if (fabs(x - y) > diff || isnan(x)) diff = isnan(x) ? INFINITY : fabs(x - y);
  }
  return diff / scale;
}

static int check(void) {
  infsim_error err;
  infsim_kernels *kc = NULL, *kg = NULL;
  if (infsim_kernels_open(INFSIM_KBACKEND_CUDA, &kg, &err) != INFSIM_OK) return die("cuda", &err);
  if (infsim_kernels_open(INFSIM_KBACKEND_CPU, &kc, &err) != INFSIM_OK) return die("cpu", &err);
  infsim_model_shape tiny = k_tiny;
  infsim_cmodel_params p;
  infsim_cmodel_params_from_shape(&tiny, 16, 32, 256, 8, 8, &p, &err);
  infsim_cmodel *mc, *mg, *twin;
  if (infsim_cmodel_new(kc, &p, &mc, &err) != INFSIM_OK || infsim_cmodel_new(kg, &p, &mg, &err) != INFSIM_OK ||
      infsim_cmodel_new(kg, &p, &twin, &err) != INFSIM_OK)
    return die("model", &err);
  /* Decode graphs recorded up front (as the cuda executor does): then every
   * decode step below is a replay. */
  int64_t captured = 0;
  if (infsim_cmodel_capture_graphs(mg, 3, &captured, &err) != INFSIM_OK) return die("capture", &err);
  int32_t sa[] = {5, 0, 17, 9}, sb[] = {2, 11, 30}, sc[] = {23, 1, 14, 6};
  infsim_cmodel_part pre[] = {{.req = 0, .prompt_tokens = 37, .query_tokens = 37, .slots = sa, .slot_count = 4},
                              {.req = 1, .prompt_tokens = 20, .query_tokens = 20, .slots = sb, .slot_count = 3},
                              {.req = 2, .prompt_tokens = 50, .query_tokens = 50, .slots = sc, .slot_count = 4}};
  uint16_t hc[107 * 256], hg[107 * 256];
  double worst = 0.0;
  for (int step = -1; step < 6; step++) {
    infsim_cmodel_part parts[3];
    memcpy(parts, pre, sizeof parts);
    int64_t rows = 107;
    if (step >= 0) {
      for (int i = 0; i < 3; i++) {
        parts[i].context_tokens = pre[i].query_tokens + step;
        parts[i].query_tokens = 1;
      }
      rows = 3;
    }
    /* On CUDA each batch is also checked request by request on a twin. */
    if (infsim_cmodel_forward(mc, parts, 3, NULL, &err) != INFSIM_OK ||
        infsim_cmodel_forward_verified(mg, twin, parts, 3, &err) != INFSIM_OK)
      return die("forward", &err);
    if (infsim_cmodel_hidden(mc, hc, &err) != INFSIM_OK || infsim_cmodel_hidden(mg, hg, &err) != INFSIM_OK)
      return die("hidden", &err);
    double d = max_rel_diff(hg, hc, rows * 256);
    printf("check: %s: max relative difference cuda vs cpu %.3g\n", step < 0 ? "prefill" : "decode step", d);
    if (d > worst) worst = d;
  }
  long long replays = (long long)infsim_cmodel_graph_replays(mg);
  printf("check: %lld graphs recorded up front, %lld decode steps replayed as CUDA graphs\n", (long long)captured,
         replays);
  infsim_cmodel_free(mc);
  infsim_cmodel_free(mg);
  infsim_cmodel_free(twin);
  infsim_kernels_close(kc);
  infsim_kernels_close(kg);
  /* Two layers of bf16 GEMMs with different summation orders: a few bf16 ulps. */
  bool ok = worst < 0.03 && captured >= 1 && replays == 6;
  printf("check: %s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}

static double time_forward(infsim_cmodel *m, infsim_kernels *k, infsim_cmodel_part *parts, int32_t n, int reps,
                           infsim_error *err) {
  for (int i = 0; i < 3; i++)
    if (infsim_cmodel_forward(m, parts, n, NULL, err) != INFSIM_OK || infsim_kernels_sync(k, err) != INFSIM_OK)
      return -1;
  double t0 = now_s();
  for (int i = 0; i < reps; i++)
    if (infsim_cmodel_forward(m, parts, n, NULL, err) != INFSIM_OK || infsim_kernels_sync(k, err) != INFSIM_OK)
      return -1;
  return (now_s() - t0) / reps * 1e3;
}

/* smoke: the tiny model on the CPU at small shapes (CI runs the bench's
 * code paths this way; the numbers mean nothing). */
static int timing(int layers, bool smoke, bool eager) {
  infsim_error err;
  infsim_kernels *k;
  if (infsim_kernels_open(smoke ? INFSIM_KBACKEND_CPU : INFSIM_KBACKEND_CUDA, &k, &err) != INFSIM_OK)
    return die(smoke ? "cpu" : "cuda", &err);
  infsim_kernel_device dev;
  infsim_kernels_describe(k, &dev, &err);
  infsim_model_shape s = smoke ? k_tiny : k_llama2_7b;
  if (!smoke) s.layers = layers;
  const int bt = 16;
  /* The grid is batch 1-256 x context 512-32K; the shapes whose KV
   * fits 96 GiB (at 32 layers) are timed, the same ones torch_forward.py
   * times. */
  const int64_t max_tokens_kv = smoke ? 2048 : 196608;
  infsim_cmodel_params p;
  const int max_ctx = smoke ? 128 : 32768, max_prefill = smoke ? 64 : 16384;
  infsim_cmodel_params_from_shape(&s, bt, max_tokens_kv / bt + 256, max_prefill, 256, max_ctx / bt + 2, &p, &err);
  /* One model at a time (two would hold the weights twice): with graphs, then without. */
  printf("# %s, %s shape with %lld layers, bf16, block %d\n", dev.name, s.name, (long long)s.layers, bt);
  printf("kind,batch,context,tokens,ms,graphs\n");
  int32_t *slots = malloc(sizeof(int32_t) * (size_t)(max_tokens_kv / bt + 256));
  for (int64_t i = 0; i < max_tokens_kv / bt + 256; i++) slots[i] = (int32_t)i;
  infsim_cmodel_part parts[256];
  for (int g = 1; g >= (eager ? 0 : 1); g--) {
    p.decode_graphs = g == 1;
    infsim_cmodel *mm;
    if (infsim_cmodel_new(k, &p, &mm, &err) != INFSIM_OK) return die("model", &err);
    const int batches[] = {1, 8, 32, 64, 128, 256}, contexts[] = {512, 2048, 8192, 32768};
    const int smoke_batches[] = {1, 2}, smoke_contexts[] = {32, 64};
    int nb = smoke ? 2 : 6, nc = smoke ? 2 : 4;
    for (int bi = 0; bi < nb; bi++)
      for (int ci = 0; ci < nc; ci++) {
        int b = smoke ? smoke_batches[bi] : batches[bi], c = smoke ? smoke_contexts[ci] : contexts[ci];
        int per = c / bt + 1;
        if ((int64_t)b * per * bt > max_tokens_kv) continue;
        /* The KV is not computed (zeros: the time does not depend on its
         * values); each request's blocks are declared its own. */
        for (int r = 0; r < b; r++) {
          parts[r] = (infsim_cmodel_part){.req = r, .prompt_tokens = c, .query_tokens = 1, .context_tokens = c,
                                          .slots = slots + r * per, .slot_count = per};
          for (int i = 0; i < per; i++) infsim_cmodel_claim(mm, slots[r * per + i], r, i);
        }
        double ms = time_forward(mm, k, parts, b, 20, &err);
        if (ms < 0) return die("decode", &err);
        printf("decode,%d,%d,%d,%.4f,%d\n", b, c, b, ms, g);
        fflush(stdout);
      }
    if (g == 1) {
      const int prefills[] = {128, 512, 2048, 8192, 16384}, smoke_prefills[] = {16, 64};
      for (int i = 0; i < (smoke ? 2 : 5); i++) {
        int n = smoke ? smoke_prefills[i] : prefills[i];
        parts[0] = (infsim_cmodel_part){.req = 0, .prompt_tokens = n, .query_tokens = n, .slots = slots,
                                        .slot_count = n / bt + 1};
        double ms = time_forward(mm, k, parts, 1, 10, &err);
        if (ms < 0) return die("prefill", &err);
        printf("prefill,1,0,%d,%.4f,0\n", n, ms);
        fflush(stdout);
      }
    }
    infsim_cmodel_free(mm);
  }
  free(slots);
  infsim_kernels_close(k);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "--check") == 0) return check();
  if (argc >= 2 && strcmp(argv[1], "--time") == 0) {
    int layers = 32;
    bool eager = false;
    for (int i = 2; i < argc; i++) {
      if (strcmp(argv[i], "--eager") == 0) eager = true;
      else if (strcmp(argv[i], "--layers") == 0 && i + 1 < argc) layers = atoi(argv[++i]);
      else return fprintf(stderr, "bench_cluster_model: unknown option '%s'\n", argv[i]), 2;
    }
    return timing(layers > 0 ? layers : 32, false, eager);
  }
  if (argc >= 2 && strcmp(argv[1], "--smoke") == 0) return timing(0, true, true);
  fprintf(stderr, "usage: bench_cluster_model --check | --time [--layers N] [--eager] | --smoke\n");
  return 2;
}
