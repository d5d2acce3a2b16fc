/*
** cpu.c: the CPU reference backend: host memory, the GEMM reference, block
** copies and the staged copy, a monotonic-clock timer, and its backend
** table. Single-threaded and deterministic, so that it serves as the truth
** the CUDA kernels are compared with and lets calibration run end to end on
** a machine without a GPU (tiny model sizes).
*/
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cpu_backend.h"

typedef struct {
  struct timespec t0;
} cpu_self;

static infsim_status cpu_open(void **self, infsim_error *err) {
  cpu_self *c = calloc(1, sizeof *c);
  if (!c) return infsim_fail(err, INFSIM_ENOMEM, "kernels: cpu: out of memory");
  *self = c;
  return INFSIM_OK;
}

static void cpu_close(void *self) { free(self); }

static infsim_status cpu_describe(void *self, infsim_kernel_device *out, infsim_error *err) {
  (void)self;
  (void)err;
  snprintf(out->name, sizeof out->name, "cpu reference");
  out->sm_count = 1;
  return INFSIM_OK;
}

static infsim_status cpu_alloc(void *self, int64_t bytes, void **out, infsim_error *err) {
  (void)self;
  size_t rounded = ((size_t)bytes + 255u) & ~(size_t)255u;
  *out = aligned_alloc(256, rounded);
  if (!*out) return infsim_fail(err, INFSIM_ENOMEM, "kernels: cpu: cannot allocate %lld bytes", (long long)bytes);
  return INFSIM_OK;
}

static void cpu_free(void *self, void *buf) {
  (void)self;
  free(buf);
}

static infsim_status cpu_copy(void *self, void *dst, const void *src, int64_t bytes, infsim_error *err) {
  (void)self;
  (void)err;
  memmove(dst, src, (size_t)bytes);
  return INFSIM_OK;
}

static infsim_status cpu_memset(void *self, void *buf, int byte, int64_t bytes, infsim_error *err) {
  (void)self;
  (void)err;
  memset(buf, byte, (size_t)bytes);
  return INFSIM_OK;
}

static infsim_status cpu_sync(void *self, infsim_error *err) {
  (void)self;
  (void)err;
  return INFSIM_OK;
}

static infsim_status cpu_fill(void *self, void *buf, infsim_kdtype t, int64_t n, uint64_t seed, float lo, float hi,
                              infsim_error *err) {
  (void)self;
  (void)err;
  ik_fill_random_host(buf, t, n, seed, lo, hi);
  return INFSIM_OK;
}

/* C = A W^T with fp32 accumulation; W is converted once per call. */
static infsim_status cpu_gemm(void *self, const infsim_gemm_args *a, infsim_error *err) {
  (void)self;
  float *w = malloc(sizeof *w * (size_t)(a->n * a->k));
  float *row = malloc(sizeof *row * (size_t)a->k);
  if (!w || !row) {
    free(w);
    free(row);
    return infsim_fail(err, INFSIM_ENOMEM, "kernels: cpu gemm: out of memory");
  }
  for (int64_t i = 0; i < a->n * a->k; i++) w[i] = ik_load(a->w, a->dtype, i);
  for (int64_t i = 0; i < a->m; i++) {
    for (int64_t x = 0; x < a->k; x++) row[x] = ik_load(a->a, a->dtype, i * a->k + x);
    for (int64_t j = 0; j < a->n; j++) {
      const float *wj = w + j * a->k;
      float s = 0.0f;
      for (int64_t x = 0; x < a->k; x++) s += row[x] * wj[x];
      ik_store(a->c, a->dtype, i * a->n + j, s);
    }
  }
  free(w);
  free(row);
  return INFSIM_OK;
}

static infsim_status cpu_kv_copy(void *self, const infsim_kv_copy_args *a, infsim_error *err) {
  (void)self;
  (void)err;
  for (int32_t i = 0; i < a->num_blocks; i++)
    memmove((char *)a->dst_pool + (int64_t)a->dst_ids[i] * a->block_bytes,
            (const char *)a->src_pool + (int64_t)a->src_ids[i] * a->block_bytes, (size_t)a->block_bytes);
  return INFSIM_OK;
}

static infsim_status cpu_staged(void *self, const infsim_staged_copy_args *a, infsim_error *err) {
  (void)self;
  (void)err;
  for (int64_t off = 0; off < a->bytes; off += a->chunk_bytes) {
    size_t n = (size_t)(a->bytes - off < a->chunk_bytes ? a->bytes - off : a->chunk_bytes);
    memcpy(a->staging_host, (const char *)a->src_buf + off, n);
    memcpy((char *)a->dst_buf + off, a->staging_host, n);
  }
  return INFSIM_OK;
}

static infsim_status cpu_timer_begin(void *self, infsim_error *err) {
  (void)err;
  clock_gettime(CLOCK_MONOTONIC, &((cpu_self *)self)->t0);
  return INFSIM_OK;
}

static infsim_status cpu_timer_end(void *self, double *ms, infsim_error *err) {
  (void)err;
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  const struct timespec *t0 = &((cpu_self *)self)->t0;
  *ms = (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) * 1e-6;
  return INFSIM_OK;
}

static infsim_status cpu_flush(void *self, infsim_error *err) {
  /* CPU calibration runs at tiny sizes that live in cache in practice too. */
  (void)self;
  (void)err;
  return INFSIM_OK;
}

static void *cpu_stream(void *self) {
  (void)self;
  return NULL;
}

static const ik_backend cpu_backend = {
    .name = "cpu",
    .open = cpu_open,
    .close = cpu_close,
    .describe = cpu_describe,
    .alloc = cpu_alloc,
    .free_buf = cpu_free,
    .host_alloc = cpu_alloc,
    .host_free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .memset_buf = cpu_memset,
    .sync = cpu_sync,
    .fill_random = cpu_fill,
    .ma_decode = ik_cpu_ma_decode,
    .merge = ik_cpu_merge,
    .prefill = ik_cpu_prefill,
    .gemm = cpu_gemm,
    .kv_copy = cpu_kv_copy,
    .staged_copy = cpu_staged,
    .timer_begin = cpu_timer_begin,
    .timer_end = cpu_timer_end,
    .flush_cache = cpu_flush,
    .native_stream = cpu_stream,
    .norm_rope = ik_cpu_norm_rope,
};

const ik_backend *ik_cpu_backend(void) { return &cpu_backend; }
