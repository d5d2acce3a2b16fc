/*
** gemm.cu: layer GEMMs through cuBLASLt. C[m][n] = A[m][k] W[n][k]^T in
** row-major terms is, in cuBLAS's column-major terms, C^T (n x m) =
** op_T(W) (n x k) * A^T (k x m), so no data is transposed.
**
** A plan (descriptors + the heuristic's first algorithm) is cached per
** (m, n, k, dtype) in the context, so a timed call costs one
** cublasLtMatmul and no host-side heuristic query: the wrapper should cost
** nothing over calling cuBLAS directly (bench/kernels measures that).
** cuBLASLt itself is opened with the backend (ik_lt_open), not linked.
*/
#include "cuda_common.cuh"

#include <dlfcn.h>

#define IK_LT(call)                                                                                    \
  do {                                                                                                 \
    cublasStatus_t ik_s_ = (call);                                                                     \
    if (ik_s_ != CUBLAS_STATUS_SUCCESS)                                                                \
      return infsim_fail(err, INFSIM_ERUN, "%s:%d: %s: cublas status %d", __FILE__, __LINE__, #call, (int)ik_s_); \
  } while (0)

#define IK_STR_(x) #x
#define IK_STR(x) IK_STR_(x)
/* The library's name for the headers built against; the soname first (the
 * loader's search: LD_LIBRARY_PATH, the system's paths), then the
 * toolkit's directory found at configure time. */
static const char *const lt_names[] = {"libcublasLt.so." IK_STR(CUBLAS_VER_MAJOR),
                                       IK_CUBLASLT_DIR "/libcublasLt.so." IK_STR(CUBLAS_VER_MAJOR)};

extern "C" infsim_status ik_lt_open(ik_cuda *c, infsim_error *err) {
  ik_lt_api *api = &c->lt_api;
  for (size_t i = 0; i < sizeof lt_names / sizeof lt_names[0] && !api->lib; i++)
    api->lib = dlopen(lt_names[i], RTLD_NOW | RTLD_LOCAL);
  if (!api->lib)
    return infsim_fail(err, INFSIM_ERUN, "kernels: cuda: cannot load %s (nor %s): %s", lt_names[0], lt_names[1],
                       dlerror());
  struct {
    void **fn;
    const char *name;
  } const syms[] = {
#define IK_LT_SYM_(field, fn) {(void **)&api->field, #fn},
      IK_LT_FUNCTIONS(IK_LT_SYM_)
#undef IK_LT_SYM_
  };
  for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++)
    if ((*syms[i].fn = dlsym(api->lib, syms[i].name)) == NULL)
      return infsim_fail(err, INFSIM_ERUN, "kernels: cuda: %s has no %s", lt_names[0], syms[i].name);
  if (api->create(&c->lt) != CUBLAS_STATUS_SUCCESS) {
    c->lt = NULL;
    return infsim_fail(err, INFSIM_ERUN, "kernels: cuda: cublasLtCreate failed");
  }
  return INFSIM_OK;
}

extern "C" void ik_lt_close(ik_cuda *c) {
  if (c->lt) c->lt_api.destroy(c->lt);
  c->lt = NULL;
  if (c->lt_api.lib) dlclose(c->lt_api.lib);
  memset(&c->lt_api, 0, sizeof c->lt_api);
}

static void plan_destroy(const ik_lt_api *lt, ik_gemm_plan *pl) {
  if (pl->op) lt->desc_destroy(pl->op);
  if (pl->la) lt->layout_destroy(pl->la);
  if (pl->lb) lt->layout_destroy(pl->lb);
  if (pl->lc) lt->layout_destroy(pl->lc);
  memset(pl, 0, sizeof *pl);
}

extern "C" void ik_cuda_gemm_release(ik_cuda *c) {
  for (int i = 0; i < c->num_plans; i++) plan_destroy(&c->lt_api, &c->plans[i]);
  c->num_plans = 0;
}

static infsim_status plan_make(ik_cuda *c, const infsim_gemm_args *a, ik_gemm_plan *pl, infsim_error *err) {
  cudaDataType_t t = a->dtype == INFSIM_KDTYPE_BF16 ? CUDA_R_16BF : CUDA_R_16F;
  pl->m = a->m;
  pl->n = a->n;
  pl->k = a->k;
  pl->dtype = (int)a->dtype;
  const ik_lt_api *lt = &c->lt_api;
  IK_LT(lt->desc_create(&pl->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  IK_LT(lt->desc_set(pl->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  IK_LT(lt->desc_set(pl->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  /* W: stored col-major k x n (ld k), used transposed; A: col-major k x m (ld k); C: n x m (ld n). */
  IK_LT(lt->layout_create(&pl->la, t, (uint64_t)a->k, (uint64_t)a->n, a->k));
  IK_LT(lt->layout_create(&pl->lb, t, (uint64_t)a->k, (uint64_t)a->m, a->k));
  IK_LT(lt->layout_create(&pl->lc, t, (uint64_t)a->n, (uint64_t)a->m, a->n));
  cublasLtMatmulPreference_t pref;
  IK_LT(lt->pref_create(&pref));
  uint64_t ws = (uint64_t)c->lt_ws_bytes;
  cublasStatus_t s =
      lt->pref_set(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
  cublasLtMatmulHeuristicResult_t res;
  int found = 0;
  if (s == CUBLAS_STATUS_SUCCESS)
    s = lt->heuristic(c->lt, pl->op, pl->la, pl->lb, pl->lc, pl->lc, pref, 1, &res, &found);
  lt->pref_destroy(pref);
  IK_LT(s);
  if (found < 1)
    return infsim_fail(err, INFSIM_ERUN, "kernels: gemm: no cuBLASLt algorithm for m=%lld n=%lld k=%lld",
                   (long long)a->m, (long long)a->n, (long long)a->k);
  pl->algo = res.algo;
  return INFSIM_OK;
}

extern "C" infsim_status ik_cuda_gemm(void *self, const infsim_gemm_args *a, infsim_error *err) {
  ik_cuda *c = (ik_cuda *)self;
  ik_gemm_plan *pl = NULL;
  for (int i = 0; i < c->num_plans && !pl; i++) {
    ik_gemm_plan *q = &c->plans[i];
    if (q->m == a->m && q->n == a->n && q->k == a->k && q->dtype == (int)a->dtype) pl = q;
  }
  if (!pl) {
    /* Full cache: evict the oldest entry (calibration sweeps many shapes). */
    if (c->num_plans == IK_GEMM_PLANS) {
      plan_destroy(&c->lt_api, &c->plans[0]);
      memmove(&c->plans[0], &c->plans[1], sizeof c->plans[0] * (IK_GEMM_PLANS - 1));
      memset(&c->plans[IK_GEMM_PLANS - 1], 0, sizeof c->plans[0]);
      c->num_plans--;
    }
    pl = &c->plans[c->num_plans];
    infsim_status st = plan_make(c, a, pl, err);
    if (st != INFSIM_OK) {
      plan_destroy(&c->lt_api, pl);
      return st;
    }
    c->num_plans++;
  }
  const float alpha = 1.0f, beta = 0.0f;
  IK_LT(c->lt_api.matmul(c->lt, pl->op, &alpha, a->w, pl->la, a->a, pl->lb, &beta, a->c, pl->lc, a->c, pl->lc,
                       &pl->algo, c->lt_ws, (size_t)c->lt_ws_bytes, c->stream));
  return INFSIM_OK;
}
