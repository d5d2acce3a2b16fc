/*
** cuda_backend.cu: the CUDA backend's context and memory: device 0, one
** stream per context, event timing, a cache-flush buffer, the staged
** (device -> pinned host -> device) copy, and the backend table that points
** at the kernels in the other .cu files.
**
** Provenance: the driver version and current SM clock come from NVML,
** loaded with dlopen at describe time (no link dependency: the library must
** link on machines with the toolkit but no driver).
*/
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda_common.cuh"

extern "C" bool ik_cuda_usable(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n < 1) {
    cudaGetLastError(); /* clear the sticky "no device" status */
    return false;
  }
  return true;
}

infsim_status ik_cuda_workspace(ik_cuda *c, int64_t counter_bytes, int64_t data_bytes, infsim_error *err) {
  if (counter_bytes <= c->ws_counter_bytes && c->ws_counter_bytes + data_bytes <= c->ws_bytes) return INFSIM_OK;
  if (c->ws && c->num_ws_retired == IK_WS_RETIRED)
    return infsim_fail(err, INFSIM_ERUN, "cuda: decode workspace grown %d times", IK_WS_RETIRED);
  const int64_t cb = counter_bytes > c->ws_counter_bytes ? counter_bytes : c->ws_counter_bytes;
  int64_t bytes = cb + (data_bytes > c->ws_bytes - c->ws_counter_bytes ? data_bytes : c->ws_bytes - c->ws_counter_bytes);
  if (bytes < 2 * c->ws_bytes) bytes = 2 * c->ws_bytes;
  IK_CUDA(cudaStreamSynchronize(c->stream));
  void *ws = NULL;
  IK_CUDA(cudaMalloc(&ws, (size_t)bytes));
  if (cudaMemset(ws, 0, (size_t)bytes) != cudaSuccess) {
    cudaFree(ws);
    return infsim_fail(err, INFSIM_ERUN, "cuda: decode workspace of %lld bytes: memset failed", (long long)bytes);
  }
  if (c->ws) c->ws_retired[c->num_ws_retired++] = c->ws;
  c->ws = ws;
  c->ws_bytes = bytes;
  c->ws_counter_bytes = cb;
  return INFSIM_OK;
}

static void cu_close(void *self);

static infsim_status cu_open_into(ik_cuda *c, infsim_error *err) {
  c->device = 0;
  IK_CUDA(cudaSetDevice(c->device));
  IK_CUDA(cudaDeviceGetAttribute(&c->sm_count, cudaDevAttrMultiProcessorCount, c->device));
  IK_CUDA(cudaDeviceGetAttribute(&c->l2_bytes, cudaDevAttrL2CacheSize, c->device));
  IK_CUDA(cudaDeviceGetAttribute(&c->cc_major, cudaDevAttrComputeCapabilityMajor, c->device));
  IK_CUDA(cudaDeviceGetAttribute(&c->cc_minor, cudaDevAttrComputeCapabilityMinor, c->device));
  IK_CUDA(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
  IK_CUDA(cudaStreamCreateWithFlags(&c->stream2, cudaStreamNonBlocking));
  IK_CUDA(cudaEventCreate(&c->t0));
  IK_CUDA(cudaEventCreate(&c->t1));
  for (int i = 0; i < 2; i++) {
    IK_CUDA(cudaEventCreateWithFlags(&c->staged_d2h[i], cudaEventDisableTiming));
    IK_CUDA(cudaEventCreateWithFlags(&c->staged_h2d[i], cudaEventDisableTiming));
  }
  infsim_status st = ik_lt_open(c, err);
  if (st != INFSIM_OK) return st;
  c->lt_ws_bytes = 32 << 20; /* cuBLAS's own recommendation for Hopper */
  IK_CUDA(cudaMalloc(&c->lt_ws, (size_t)c->lt_ws_bytes));
  return INFSIM_OK;
}

static infsim_status cu_open(void **self, infsim_error *err) {
  *self = NULL;
  ik_cuda *c = (ik_cuda *)calloc(1, sizeof *c);
  if (!c) return infsim_fail(err, INFSIM_ENOMEM, "kernels: cuda: out of memory");
  infsim_status st = cu_open_into(c, err);
  if (st != INFSIM_OK) {
    cu_close(c);
    return st;
  }
  *self = c;
  return INFSIM_OK;
}

static void cu_close(void *self) {
  ik_cuda *c = (ik_cuda *)self;
  if (!c) return;
  cudaStreamSynchronize(c->stream);
  ik_cuda_gemm_release(c);
  ik_lt_close(c);
  cudaFree(c->lt_ws);
  cudaFree(c->ws);
  for (int i = 0; i < c->num_ws_retired; i++) cudaFree(c->ws_retired[i]);
  cudaFree(c->flush_buf);
  for (int i = 0; i < 2; i++) {
    if (c->staged_d2h[i]) cudaEventDestroy(c->staged_d2h[i]);
    if (c->staged_h2d[i]) cudaEventDestroy(c->staged_h2d[i]);
  }
  if (c->t0) cudaEventDestroy(c->t0);
  if (c->t1) cudaEventDestroy(c->t1);
  if (c->stream) cudaStreamDestroy(c->stream);
  if (c->stream2) cudaStreamDestroy(c->stream2);
  free(c);
}

/* NVML through dlopen: driver version string and SM clocks. */
typedef int (*nvml_void_fn)(void);
typedef int (*nvml_str_fn)(char *, unsigned);
typedef int (*nvml_handle_fn)(unsigned, void **);
typedef int (*nvml_clock_fn)(void *, int, unsigned *);

static void describe_nvml(infsim_kernel_device *out) {
  void *lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) return;
  nvml_void_fn init = (nvml_void_fn)dlsym(lib, "nvmlInit_v2");
  nvml_void_fn shutdown = (nvml_void_fn)dlsym(lib, "nvmlShutdown");
  nvml_str_fn drv = (nvml_str_fn)dlsym(lib, "nvmlSystemGetDriverVersion");
  nvml_handle_fn handle = (nvml_handle_fn)dlsym(lib, "nvmlDeviceGetHandleByIndex_v2");
  nvml_clock_fn clock = (nvml_clock_fn)dlsym(lib, "nvmlDeviceGetClockInfo");
  nvml_clock_fn max_clock = (nvml_clock_fn)dlsym(lib, "nvmlDeviceGetMaxClockInfo");
  if (init && shutdown && init() == 0) {
    char buf[80];
    if (drv && drv(buf, sizeof buf) == 0) snprintf(out->driver_version, sizeof out->driver_version, "%.31s", buf);
    void *dev = NULL;
    unsigned mhz = 0;
    if (handle && handle(0, &dev) == 0) {
      if (clock && clock(dev, 1 /* NVML_CLOCK_SM */, &mhz) == 0) out->sm_clock_mhz = (int)mhz;
      if (max_clock && max_clock(dev, 1, &mhz) == 0) out->max_sm_clock_mhz = (int)mhz;
      if (max_clock && max_clock(dev, 2 /* NVML_CLOCK_MEM */, &mhz) == 0) out->mem_clock_mhz = (int)mhz;
    }
    shutdown();
  }
  dlclose(lib);
}

static infsim_status cu_describe(void *self, infsim_kernel_device *out, infsim_error *err) {
  ik_cuda *c = (ik_cuda *)self;
  cudaDeviceProp p;
  IK_CUDA(cudaGetDeviceProperties(&p, c->device));
  snprintf(out->name, sizeof out->name, "%.127s", p.name);
  out->cc_major = p.major;
  out->cc_minor = p.minor;
  out->sm_count = p.multiProcessorCount;
  out->memory_bytes = (int64_t)p.totalGlobalMem;
  out->l2_bytes = p.l2CacheSize;
  int khz = 0, drv = 0, rt = 0;
  IK_CUDA(cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, c->device));
  out->max_sm_clock_mhz = khz / 1000;
  IK_CUDA(cudaDeviceGetAttribute(&khz, cudaDevAttrMemoryClockRate, c->device));
  out->mem_clock_mhz = khz / 1000;
  IK_CUDA(cudaDriverGetVersion(&drv));
  IK_CUDA(cudaRuntimeGetVersion(&rt));
  snprintf(out->driver_version, sizeof out->driver_version, "cuda %d.%d", drv / 1000, (drv % 1000) / 10);
  snprintf(out->runtime_version, sizeof out->runtime_version, "%d.%d", rt / 1000, (rt % 1000) / 10);
  describe_nvml(out);
  if (out->sm_clock_mhz == 0) out->sm_clock_mhz = out->max_sm_clock_mhz;
  return INFSIM_OK;
}

static infsim_status cu_alloc(void *self, int64_t bytes, void **out, infsim_error *err) {
  (void)self;
  IK_CUDA(cudaMalloc(out, (size_t)bytes));
  return INFSIM_OK;
}

static void cu_free(void *self, void *buf) {
  ik_cuda *c = (ik_cuda *)self;
  cudaStreamSynchronize(c->stream);
  cudaFree(buf);
}

static infsim_status cu_host_alloc(void *self, int64_t bytes, void **out, infsim_error *err) {
  (void)self;
  IK_CUDA(cudaMallocHost(out, (size_t)bytes));
  return INFSIM_OK;
}

static void cu_host_free(void *self, void *host) {
  ik_cuda *c = (ik_cuda *)self;
  cudaStreamSynchronize(c->stream);
  cudaFreeHost(host);
}

static infsim_status cu_upload(void *self, void *dst, const void *src, int64_t bytes, infsim_error *err) {
  ik_cuda *c = (ik_cuda *)self;
  IK_CUDA(cudaMemcpyAsync(dst, src, (size_t)bytes, cudaMemcpyHostToDevice, c->stream));
  IK_CUDA(cudaStreamSynchronize(c->stream)); /* src may be reused at once */
  return INFSIM_OK;
}

static infsim_status cu_download(void *self, void *dst, const void *src, int64_t bytes, infsim_error *err) {
  ik_cuda *c = (ik_cuda *)self;
  IK_CUDA(cudaMemcpyAsync(dst, src, (size_t)bytes, cudaMemcpyDeviceToHost, c->stream));
  IK_CUDA(cudaStreamSynchronize(c->stream));
  return INFSIM_OK;
}

static infsim_status cu_memset(void *self, void *buf, int byte, int64_t bytes, infsim_error *err) {
  ik_cuda *c = (ik_cuda *)self;
  IK_CUDA(cudaMemsetAsync(buf, byte, (size_t)bytes, c->stream));
  return INFSIM_OK;
}

static infsim_status cu_sync(void *self, infsim_error *err) {
  ik_cuda *c = (ik_cuda *)self;
  IK_CUDA(cudaStreamSynchronize(c->stream));
  return INFSIM_OK;
}

/* Chunk i goes D2H on the context stream into staging half i % 2, then H2D
 * on the second stream; chunk i + 2 reuses the half once chunk i's H2D is
 * done. The two copy directions run concurrently. */
static infsim_status cu_staged(void *self, const infsim_staged_copy_args *a, infsim_error *err) {
  ik_cuda *c = (ik_cuda *)self;
  IK_CUDA(cudaEventRecord(c->staged_h2d[0], c->stream));
  IK_CUDA(cudaEventRecord(c->staged_h2d[1], c->stream));
  int64_t i = 0;
  for (int64_t off = 0; off < a->bytes; off += a->chunk_bytes, i++) {
    int b = (int)(i & 1);
    size_t n = (size_t)(a->bytes - off < a->chunk_bytes ? a->bytes - off : a->chunk_bytes);
    char *stage = (char *)a->staging_host + (int64_t)b * a->chunk_bytes;
    IK_CUDA(cudaStreamWaitEvent(c->stream, c->staged_h2d[b], 0));
    IK_CUDA(cudaMemcpyAsync(stage, (const char *)a->src_buf + off, n, cudaMemcpyDeviceToHost, c->stream));
    IK_CUDA(cudaEventRecord(c->staged_d2h[b], c->stream));
    IK_CUDA(cudaStreamWaitEvent(c->stream2, c->staged_d2h[b], 0));
    IK_CUDA(cudaMemcpyAsync((char *)a->dst_buf + off, stage, n, cudaMemcpyHostToDevice, c->stream2));
    IK_CUDA(cudaEventRecord(c->staged_h2d[b], c->stream2));
  }
  /* Join: the context stream waits for the last H2D of both halves. */
  IK_CUDA(cudaStreamWaitEvent(c->stream, c->staged_h2d[0], 0));
  IK_CUDA(cudaStreamWaitEvent(c->stream, c->staged_h2d[1], 0));
  return INFSIM_OK;
}

static infsim_status cu_timer_begin(void *self, infsim_error *err) {
  ik_cuda *c = (ik_cuda *)self;
  IK_CUDA(cudaEventRecord(c->t0, c->stream));
  return INFSIM_OK;
}

static infsim_status cu_timer_end(void *self, double *ms, infsim_error *err) {
  ik_cuda *c = (ik_cuda *)self;
  float f = 0.0f;
  IK_CUDA(cudaEventRecord(c->t1, c->stream));
  IK_CUDA(cudaEventSynchronize(c->t1));
  IK_CUDA(cudaEventElapsedTime(&f, c->t0, c->t1));
  *ms = f;
  return INFSIM_OK;
}

/* Reads the flush buffer (16-byte loads that bypass L1). The XOR feeds a
 * store that never happens (the buffer holds one repeated byte, whose XOR
 * over a uint4 is 0), so the loads cannot be dropped. */
__global__ void flush_read_kernel(const uint4 *p, int64_t n, unsigned *sink) {
  uint32_t x = 0;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const uint4 v = __ldcg(p + i);
    x ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (x == 0x9e3779b9u) atomicAdd(sink, 1u);
}

/* Evicts the L2 before a timed call: overwrite a 2x-L2 buffer, then read it
 * all. The read matters: after the memset alone about an L2's worth of
 * dirty lines stays resident, and the timed kernel pays their write-back
 * to HBM as it streams in (measured on an H200: ~15 us charged to every
 * flushed call, 6% of a 1 GiB decode; kernels/NOTES.md version 10). After
 * the read the resident lines are clean. */
static infsim_status cu_flush(void *self, infsim_error *err) {
  ik_cuda *c = (ik_cuda *)self;
  int64_t want = 2 * (int64_t)c->l2_bytes;
  if (c->flush_bytes < want) {
    IK_CUDA(cudaStreamSynchronize(c->stream));
    if (c->flush_buf) IK_CUDA(cudaFree(c->flush_buf));
    c->flush_buf = NULL;
    IK_CUDA(cudaMalloc(&c->flush_buf, (size_t)want));
    c->flush_bytes = want;
  }
  IK_CUDA(cudaMemsetAsync(c->flush_buf, c->flush_bytes & 0xff, (size_t)c->flush_bytes, c->stream));
  flush_read_kernel<<<c->sm_count * 4, 512, 0, c->stream>>>((const uint4 *)c->flush_buf, c->flush_bytes / 16,
                                                           (unsigned *)c->flush_buf);
  IK_LAUNCHED();
  return INFSIM_OK;
}

static void *cu_stream(void *self) { return ((ik_cuda *)self)->stream; }

static const ik_backend cuda_backend = {
    "cuda",        cu_open,           cu_close,       cu_describe,      cu_alloc,        cu_free,
    cu_host_alloc, cu_host_free,      cu_upload,      cu_download,      cu_memset,       cu_sync,
    ik_cuda_fill_random, ik_cuda_ma_decode, ik_cuda_merge, ik_cuda_prefill, ik_cuda_gemm, ik_cuda_kv_copy,
    cu_staged,     cu_timer_begin,    cu_timer_end,   cu_flush,       cu_stream,       ik_cuda_norm_rope,
};

extern "C" const ik_backend *ik_cuda_backend(void) { return &cuda_backend; }
