/*
** cuda_common.cuh: what the CUDA backend's .cu files share: the context
** (one stream, timing events, cuBLASLt handle, growable workspaces), the
** error-check macro, and the launchers each .cu file exports.
**
** Invariant: every CUDA call's status is checked and every launch is
** followed by cudaGetLastError(), turned into INFSIM_ERUN with file:line.
*/
#ifndef INFSIM_KERNELS_CUDA_COMMON_CUH
#define INFSIM_KERNELS_CUDA_COMMON_CUH

#include <cublasLt.h>
#include <cuda_runtime.h>

#include "internal.h"

#define IK_CUDA(call)                                                                                   \
  do {                                                                                                  \
    cudaError_t ik_e_ = (call);                                                                         \
    if (ik_e_ != cudaSuccess)                                                                           \
      return infsim_fail(err, INFSIM_ERUN, "%s:%d: %s: %s", __FILE__, __LINE__, #call, cudaGetErrorString(ik_e_)); \
  } while (0)

#define IK_LAUNCHED() IK_CUDA(cudaGetLastError())

/* The cuBLASLt entry points the GEMMs use, from the library the backend
 * opens (ik_lt_open, dlopen): linked in, cuBLASLt's initializers ran at
 * the start of every program with the kernels, the simulator's CLI among
 * them, whatever it did (about 55 ms of CPU a start on the dev VM, most
 * of it the kernel clearing pages), for the GEMMs alone. Each is listed
 * once, as (field, function): the field's type and the name looked up
 * both come from the function's one token, so neither can drift. */
#define IK_LT_FUNCTIONS(X)                                  \
  X(create, cublasLtCreate)                                 \
  X(destroy, cublasLtDestroy)                               \
  X(matmul, cublasLtMatmul)                                 \
  X(heuristic, cublasLtMatmulAlgoGetHeuristic)              \
  X(desc_create, cublasLtMatmulDescCreate)                  \
  X(desc_destroy, cublasLtMatmulDescDestroy)                \
  X(desc_set, cublasLtMatmulDescSetAttribute)               \
  X(pref_create, cublasLtMatmulPreferenceCreate)            \
  X(pref_destroy, cublasLtMatmulPreferenceDestroy)          \
  X(pref_set, cublasLtMatmulPreferenceSetAttribute)         \
  X(layout_create, cublasLtMatrixLayoutCreate)              \
  X(layout_destroy, cublasLtMatrixLayoutDestroy)

typedef struct {
  void *lib;
#define IK_LT_FIELD_(field, fn) decltype(&fn) field;
  IK_LT_FUNCTIONS(IK_LT_FIELD_)
#undef IK_LT_FIELD_
} ik_lt_api;

/* One cached cuBLASLt plan per GEMM shape (heuristic queried once). */
typedef struct {
  int64_t m, n, k;
  int dtype;
  cublasLtMatmulDesc_t op;
  cublasLtMatrixLayout_t la, lb, lc;
  cublasLtMatmulAlgo_t algo;
} ik_gemm_plan;

enum { IK_GEMM_PLANS = 64, IK_WS_RETIRED = 48 };

typedef struct {
  int device;
  int sm_count;
  int cc_major, cc_minor; /* compute capability: 9.0 selects the sm_90a prefill */
  int l2_bytes;
  cudaStream_t stream;
  cudaStream_t stream2; /* second copy engine direction for staged copies */
  cudaEvent_t t0, t1;
  cudaEvent_t staged_d2h[2], staged_h2d[2];
  /* Decode split workspace: per-(request, kv head, head group) arrival
   * counters, which the last split CTA resets, in its first
   * ws_counter_bytes, then partial outputs and LSEs. The counter region
   * keeps its size for the buffer's life: were it sized per launch, a
   * launch of more row groups would count in what a smaller one had left
   * as partials (test_decode_matches_cpu: 90 requests with 2 splits
   * after 3 requests with 300, whose partials stood where the 90's
   * counters were; no merge ran). */
  void *ws;
  int64_t ws_bytes, ws_counter_bytes;
  /* Workspaces outgrown, kept until close: a CUDA graph recorded earlier
   * (cluster mode's decode steps) still launches with their address, and
   * freeing them would leave it writing to freed memory. Growth at least
   * doubles, so a few suffice. */
  void *ws_retired[IK_WS_RETIRED];
  int num_ws_retired;
  void *flush_buf;
  int64_t flush_bytes;
  ik_lt_api lt_api;
  cublasLtHandle_t lt;
  void *lt_ws;
  int64_t lt_ws_bytes;
  /* Per dtype (f16, bf16): CTAs of the decode kernel per SM (0 = not yet
   * queried; the first launch also raises its shared-memory limit), and
   * whether the prefill kernel's limit was raised. */
  int decode_ctas_per_sm[2];
  int decode_rows_ctas_per_sm[2]; /* the persistent decode's (decode_grid 2), set with the above */
  uint64_t prefill_ready[2];
  void *tmap_encode; /* the driver's cuTensorMapEncodeTiled (prefill pipelines 6-7), fetched on first use */
  ik_gemm_plan plans[IK_GEMM_PLANS];
  int num_plans;
} ik_cuda;

/* Makes ctx->ws hold at least counter_bytes of counters and data_bytes
 * after them (see ws): when either is short, a new buffer, zeroed, after
 * synchronizing; the old one is kept until close (see ws_retired). */
infsim_status ik_cuda_workspace(ik_cuda *c, int64_t counter_bytes, int64_t data_bytes, infsim_error *err);

#ifdef __cplusplus
extern "C" {
#endif
infsim_status ik_cuda_fill_random(void *self, void *buf, infsim_kdtype t, int64_t n, uint64_t seed, float lo,
                                  float hi, infsim_error *err);
infsim_status ik_cuda_kv_copy(void *self, const infsim_kv_copy_args *a, infsim_error *err);
infsim_status ik_cuda_ma_decode(void *self, const infsim_ma_decode_args *a, infsim_error *err);
infsim_status ik_cuda_merge(void *self, const infsim_merge_args *a, infsim_error *err);
infsim_status ik_cuda_prefill(void *self, const infsim_prefill_args *a, infsim_error *err);
infsim_status ik_cuda_gemm(void *self, const infsim_gemm_args *a, infsim_error *err);
infsim_status ik_cuda_norm_rope(void *self, const infsim_norm_rope_args *a, infsim_error *err);
void ik_cuda_gemm_release(ik_cuda *c);
/* Opens cuBLASLt into c->lt_api and creates c->lt; INFSIM_ERUN naming
 * the library when it cannot be loaded. ik_lt_close undoes it (either
 * part may be missing). */
infsim_status ik_lt_open(ik_cuda *c, infsim_error *err);
void ik_lt_close(ik_cuda *c);
#ifdef __cplusplus
}
#endif

#endif
