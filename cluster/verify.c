/*
** verify.c: infsim_cmodel_forward_verified, the end-to-end check of a
** batch: each request's rows of the batched forward against the same
** request run alone on a shadow model (same weights, same slots, its own
** pools, fed the same parts). Batching, the paged layout and the block
** tables the scheduler hands over must not change a request's numbers:
** on the CPU reference (row-independent arithmetic) the rows are equal bit
** for bit; on CUDA, GEMM algorithms change with the row count, so they
** agree to bf16 rounding (a few units in the last place).
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "infsim/cluster_model.h"

static bool is_decode(const infsim_cmodel_part *pt) { return pt->query_tokens == 1 && pt->context_tokens > 0; }

infsim_status infsim_cmodel_forward_verified(infsim_cmodel *m, infsim_cmodel *shadow, const infsim_cmodel_part *parts,
                                             int32_t count, infsim_error *err) {
  infsim_status st = infsim_cmodel_forward(m, parts, count, NULL, err);
  if (st != INFSIM_OK || shadow == NULL) return st;
  const int64_t H = infsim_cmodel_params_of(m)->shape.hidden;
  int64_t rows = 0;
  for (int32_t i = 0; i < count; i++) rows += parts[i].query_tokens;
  uint16_t *batch = malloc((size_t)(rows * H) * 2), *solo = malloc((size_t)(rows * H) * 2);
  if (!batch || !solo) {
    free(batch), free(solo);
    return infsim_fail(err, INFSIM_ENOMEM, "cluster: verify: out of memory");
  }
  st = infsim_cmodel_hidden(m, batch, err);
  bool cpu = infsim_kernels_backend(infsim_cmodel_kernels(m)) == INFSIM_KBACKEND_CPU;
  double tol = cpu ? 0.0 : 0.03;
  /* Rows of the batch: the decodes first, then the prefills, each in order. */
  int64_t row = 0;
  for (int pass = 0; pass < 2 && st == INFSIM_OK; pass++)
    for (int32_t i = 0; i < count && st == INFSIM_OK; i++) {
      const infsim_cmodel_part *pt = &parts[i];
      if (is_decode(pt) != (pass == 0)) continue;
      st = infsim_cmodel_forward(shadow, pt, 1, NULL, err);
      if (st == INFSIM_OK) st = infsim_cmodel_hidden(shadow, solo, err);
      if (st != INFSIM_OK) break;
      double scale = 1.0, diff = 0.0;
      for (int64_t e = 0; e < pt->query_tokens * H; e++) {
        double a = infsim_bf16_to_float(batch[row * H + e]), b = infsim_bf16_to_float(solo[e]);
        if (fabs(b) > scale) scale = fabs(b);
        double d = isnan(a) || isnan(b) ? INFINITY : fabs(a - b);
        if (d > diff) diff = d;
      }
      if (diff / scale > tol)
        st = infsim_fail(err, INFSIM_ERUN,
                         "cluster: verify: request %lld (%d query + %d context tokens) differs in the batch from "
                         "alone by %.3g (relative; at most %g)",
                         (long long)pt->req, pt->query_tokens, pt->context_tokens, diff / scale, tol);
      row += pt->query_tokens;
    }
  free(batch);
  free(solo);
  return st;
}
