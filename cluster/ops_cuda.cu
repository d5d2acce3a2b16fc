/*
** ops_cuda.cu: the element-wise layer steps (ops.h) as CUDA kernels on the
** kernels context's stream, and the CUDA-graph helpers the cuda executor
** uses to replay a decode step as one launch.
**
** The kernels are bandwidth-bound and simple: one CTA per row where a row
** needs a reduction (RMSNorm), a grid-stride loop elsewhere, 8 bf16 (16
** bytes) per thread access where alignment allows (every row here is a
** multiple of 8 elements: hidden, d = 128 and the intermediate size of the
** shapes we run). Arithmetic in fp32, one rounding per output, the same as
** ops_cpu.c.
*/
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "ops.h"

#define ICL_CUDA(call)                                                                                   \
  do {                                                                                                   \
    cudaError_t icl_e_ = (call);                                                                         \
    if (icl_e_ != cudaSuccess)                                                                           \
      return infsim_fail(err, INFSIM_ERUN, "%s:%d: %s: %s", __FILE__, __LINE__, #call,                   \
                         cudaGetErrorString(icl_e_));                                                    \
  } while (0)

static cudaStream_t stream_of(infsim_kernels *k) { return (cudaStream_t)infsim_kernels_native_stream(k); }

static int blocks_for(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  return (int)(b < 1 ? 1 : (b > 65535 * 4 ? 65535 * 4 : b));
}

__global__ void k_embed(const int32_t *tokens, int64_t n, const __nv_bfloat16 *table, int64_t hidden,
                        __nv_bfloat16 *out) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n * hidden; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t t = i / hidden, c = i % hidden;
    out[i] = table[(int64_t)tokens[t] * hidden + c];
  }
}

__global__ void k_rmsnorm(const __nv_bfloat16 *x, const __nv_bfloat16 *w, int64_t hidden, float eps,
                          __nv_bfloat16 *out) {
  const __nv_bfloat16 *row = x + blockIdx.x * hidden;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    float v = __bfloat162float(row[i]);
    ss += v * v;
  }
  __shared__ float part[32];
  for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < (blockDim.x >> 5) ? part[threadIdx.x] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (threadIdx.x == 0) part[0] = v;
  }
  __syncthreads();
  float inv = rsqrtf(part[0] / (float)hidden + eps);
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x)
    out[blockIdx.x * hidden + i] = __float2bfloat16(__bfloat162float(row[i]) * inv * __bfloat162float(w[i]));
}

__global__ void k_add(__nv_bfloat16 *x, const __nv_bfloat16 *y, int64_t count) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
    x[i] = __float2bfloat16(__bfloat162float(x[i]) + __bfloat162float(y[i]));
}

__global__ void k_silu_mul(const __nv_bfloat16 *gu, int64_t rows, int64_t inter, __nv_bfloat16 *out) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < rows * inter; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t r = i / inter, c = i % inter;
    float g = __bfloat162float(gu[r * 2 * inter + c]), u = __bfloat162float(gu[r * 2 * inter + inter + c]);
    out[i] = __float2bfloat16(g / (1.0f + __expf(-g)) * u);
  }
}

/* 16-byte units: every head is 128 bf16 = 16 units. */
__global__ void k_split_qkv(const uint4 *qkv, int64_t rows, int64_t h, int64_t g, int64_t d8, uint4 *q, uint4 *kk,
                            uint4 *v) {
  int64_t width = (h + 2 * g) * d8;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < rows * width; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t t = i / width, c = i % width;
    uint4 val = qkv[i];
    if (c < h * d8)
      q[t * h * d8 + c] = val;
    else if (c < (h + g) * d8)
      kk[t * g * d8 + c - h * d8] = val;
    else
      v[t * g * d8 + c - (h + g) * d8] = val;
  }
}

__global__ void k_kv_append(const uint4 *kr, const uint4 *vr, const int32_t *table, int32_t stride, const int32_t *pos,
                            int64_t requests, int64_t g, int64_t d8, int64_t bt, uint4 *k_pool, uint4 *v_pool) {
  int64_t per = g * d8;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < requests * per; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t r = i / per, c = i % per, head = c / d8, e = c % d8;
    int64_t p = pos[r];
    int64_t block = table[r * stride + p / bt], slot = p % bt;
    int64_t at = ((block * g + head) * bt + slot) * d8 + e;
    k_pool[at] = kr[i];
    v_pool[at] = vr[i];
  }
}

__global__ void k_cast(const float *in, int64_t count, __nv_bfloat16 *out) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = __float2bfloat16(in[i]);
}

__global__ void k_gather(const uint4 *in, const int32_t *rows, int64_t n, int64_t row8, uint4 *out) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n * row8; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = in[(int64_t)rows[i / row8] * row8 + i % row8];
}

static infsim_status cu_embed(infsim_kernels *k, const int32_t *tokens, int64_t n, const void *table,
                              int64_t hidden, void *out, infsim_error *err) {
  k_embed<<<blocks_for(n * hidden, 256), 256, 0, stream_of(k)>>>(tokens, n, (const __nv_bfloat16 *)table, hidden,
                                                                (__nv_bfloat16 *)out);
  ICL_CUDA(cudaGetLastError());
  return INFSIM_OK;
}

static infsim_status cu_rmsnorm(infsim_kernels *k, const void *x, const void *w, int64_t rows, int64_t hidden,
                                float eps, void *out, infsim_error *err) {
  if (rows < 1) return INFSIM_OK;
  k_rmsnorm<<<(unsigned)rows, 256, 0, stream_of(k)>>>((const __nv_bfloat16 *)x, (const __nv_bfloat16 *)w, hidden,
                                                     eps, (__nv_bfloat16 *)out);
  ICL_CUDA(cudaGetLastError());
  return INFSIM_OK;
}

static infsim_status cu_add(infsim_kernels *k, void *x, const void *y, int64_t count, infsim_error *err) {
  k_add<<<blocks_for(count, 256), 256, 0, stream_of(k)>>>((__nv_bfloat16 *)x, (const __nv_bfloat16 *)y, count);
  ICL_CUDA(cudaGetLastError());
  return INFSIM_OK;
}

static infsim_status cu_silu_mul(infsim_kernels *k, const void *gu, int64_t rows, int64_t inter, void *out,
                                 infsim_error *err) {
  k_silu_mul<<<blocks_for(rows * inter, 256), 256, 0, stream_of(k)>>>((const __nv_bfloat16 *)gu, rows, inter,
                                                                     (__nv_bfloat16 *)out);
  ICL_CUDA(cudaGetLastError());
  return INFSIM_OK;
}

static infsim_status cu_split_qkv(infsim_kernels *k, const void *qkv, int64_t rows, int64_t h, int64_t g,
                                  int64_t d, void *q, void *kk, void *v, infsim_error *err) {
  int64_t d8 = d / 8;
  k_split_qkv<<<blocks_for(rows * (h + 2 * g) * d8, 256), 256, 0, stream_of(k)>>>(
      (const uint4 *)qkv, rows, h, g, d8, (uint4 *)q, (uint4 *)kk, (uint4 *)v);
  ICL_CUDA(cudaGetLastError());
  return INFSIM_OK;
}

static infsim_status cu_kv_append(infsim_kernels *k, const void *kr, const void *vr, const int32_t *block_table,
                                  int32_t stride, const int32_t *pos, int64_t requests, int64_t g, int64_t d,
                                  int64_t block_tokens, void *k_pool, void *v_pool, infsim_error *err) {
  int64_t d8 = d / 8;
  k_kv_append<<<blocks_for(requests * g * d8, 256), 256, 0, stream_of(k)>>>(
      (const uint4 *)kr, (const uint4 *)vr, block_table, stride, pos, requests, g, d8, block_tokens, (uint4 *)k_pool,
      (uint4 *)v_pool);
  ICL_CUDA(cudaGetLastError());
  return INFSIM_OK;
}

static infsim_status cu_cast_f32(infsim_kernels *k, const float *in, int64_t count, void *out, infsim_error *err) {
  k_cast<<<blocks_for(count, 256), 256, 0, stream_of(k)>>>(in, count, (__nv_bfloat16 *)out);
  ICL_CUDA(cudaGetLastError());
  return INFSIM_OK;
}

static infsim_status cu_gather_rows(infsim_kernels *k, const void *in, const int32_t *rows, int64_t n,
                                    int64_t row_elems, void *out, infsim_error *err) {
  int64_t row8 = row_elems / 8;
  k_gather<<<blocks_for(n * row8, 256), 256, 0, stream_of(k)>>>((const uint4 *)in, rows, n, row8, (uint4 *)out);
  ICL_CUDA(cudaGetLastError());
  return INFSIM_OK;
}

static const icl_ops k_cuda_ops = {cu_embed,     cu_rmsnorm,   cu_add,      cu_silu_mul,
                                   cu_split_qkv, cu_kv_append, cu_cast_f32, cu_gather_rows};

extern "C" const icl_ops *icl_ops_cuda(void) { return &k_cuda_ops; }

extern "C" infsim_status icl_graph_begin(infsim_kernels *k, infsim_error *err) {
  ICL_CUDA(cudaStreamBeginCapture(stream_of(k), cudaStreamCaptureModeThreadLocal));
  return INFSIM_OK;
}

extern "C" infsim_status icl_graph_end(infsim_kernels *k, void **graph_exec, infsim_error *err) {
  cudaGraph_t g = NULL;
  *graph_exec = NULL;
  ICL_CUDA(cudaStreamEndCapture(stream_of(k), &g));
  cudaGraphExec_t exec = NULL;
  cudaError_t e = cudaGraphInstantiate(&exec, g, 0);
  cudaGraphDestroy(g);
  ICL_CUDA(e);
  *graph_exec = (void *)exec;
  return INFSIM_OK;
}

extern "C" infsim_status icl_graph_launch(infsim_kernels *k, void *graph_exec, infsim_error *err) {
  ICL_CUDA(cudaGraphLaunch((cudaGraphExec_t)graph_exec, stream_of(k)));
  return INFSIM_OK;
}

extern "C" void icl_graph_free(void *graph_exec) {
  if (graph_exec) cudaGraphExecDestroy((cudaGraphExec_t)graph_exec);
}
