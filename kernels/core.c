/*
** core.c: the public kernel API. Opens a backend, validates every argument
** struct once (so backends may assume valid shapes), dispatches through the
** backend table, and times operations.
**
** Invariant: a call that returns INFSIM_EINPUT has queued no work and
** written no buffer.
*/
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "internal.h"

struct infsim_kernels {
  infsim_kernel_backend backend;
  const ik_backend *ops;
  void *self;
};

const char *infsim_kernel_backend_name(infsim_kernel_backend b) {
  return b == INFSIM_KBACKEND_CUDA ? "cuda" : "cpu";
}

bool infsim_kernel_backend_parse(const char *name, infsim_kernel_backend *out) {
  if (!name) return false;
  if (strcmp(name, "cpu") == 0) {
    *out = INFSIM_KBACKEND_CPU;
    return true;
  }
  if (strcmp(name, "cuda") == 0) {
    *out = INFSIM_KBACKEND_CUDA;
    return true;
  }
  return false;
}

size_t infsim_kdtype_bytes(infsim_kdtype t) { return ik_dtype_bytes(t); }

const char *infsim_gemm_kind_name(infsim_gemm_kind kind) {
  static const char *const names[INFSIM_GEMM_KINDS] = {"qkv", "o", "gate_up", "down"};
  return (unsigned)kind < INFSIM_GEMM_KINDS ? names[kind] : "?";
}

float infsim_f16_to_float(uint16_t h) { return ik_f16_to_f32(h); }
uint16_t infsim_float_to_f16(float f) { return ik_f32_to_f16(f); }
float infsim_bf16_to_float(uint16_t b) { return ik_bf16_to_f32(b); }
uint16_t infsim_float_to_bf16(float f) { return ik_f32_to_bf16(f); }

void infsim_kernels_fill_random_host(void *host, infsim_kdtype dtype, int64_t count, uint64_t seed, float lo,
                                     float hi) {
  ik_fill_random_host(host, dtype, count, seed, lo, hi);
}

bool infsim_kernels_cuda_available(void) { return ik_cuda_usable(); }

infsim_status infsim_kernels_open(infsim_kernel_backend backend, infsim_kernels **out, infsim_error *err) {
  *out = NULL;
  const ik_backend *ops = NULL;
  if (backend == INFSIM_KBACKEND_CPU) {
    ops = ik_cpu_backend();
  } else if (backend == INFSIM_KBACKEND_CUDA) {
    if (!ik_cuda_usable())
      return infsim_fail(err, INFSIM_ENODEV, "kernels: CUDA backend not available (%s)",
                     ik_cuda_backend() ? "no usable GPU" : "built without CUDA");
    ops = ik_cuda_backend();
  } else {
    return infsim_fail(err, INFSIM_EINPUT, "kernels: unknown backend %d", (int)backend);
  }
  infsim_kernels *k = calloc(1, sizeof *k);
  if (!k) return infsim_fail(err, INFSIM_ENOMEM, "kernels: out of memory");
  k->backend = backend;
  k->ops = ops;
  infsim_status st = ops->open(&k->self, err);
  if (st != INFSIM_OK) {
    free(k);
    return st;
  }
  *out = k;
  return INFSIM_OK;
}

void infsim_kernels_close(infsim_kernels *k) {
  if (!k) return;
  k->ops->close(k->self);
  free(k);
}

infsim_kernel_backend infsim_kernels_backend(const infsim_kernels *k) { return k->backend; }

void *infsim_kernels_native_stream(infsim_kernels *k) { return k->ops->native_stream(k->self); }

infsim_status infsim_kernels_describe(infsim_kernels *k, infsim_kernel_device *out, infsim_error *err) {
  memset(out, 0, sizeof *out);
  return k->ops->describe(k->self, out, err);
}

/* ---- buffers ---------------------------------------------------------- */

infsim_status infsim_kernels_alloc(infsim_kernels *k, int64_t bytes, void **out, infsim_error *err) {
  *out = NULL;
  if (bytes <= 0) return infsim_fail(err, INFSIM_EINPUT, "kernels: alloc: bytes %lld must be > 0", (long long)bytes);
  return k->ops->alloc(k->self, bytes, out, err);
}

void infsim_kernels_free(infsim_kernels *k, void *buf) {
  if (buf) k->ops->free_buf(k->self, buf);
}

infsim_status infsim_kernels_host_alloc(infsim_kernels *k, int64_t bytes, void **out, infsim_error *err) {
  *out = NULL;
  if (bytes <= 0)
    return infsim_fail(err, INFSIM_EINPUT, "kernels: host_alloc: bytes %lld must be > 0", (long long)bytes);
  return k->ops->host_alloc(k->self, bytes, out, err);
}

void infsim_kernels_host_free(infsim_kernels *k, void *host) {
  if (host) k->ops->host_free(k->self, host);
}

infsim_status infsim_kernels_upload(infsim_kernels *k, void *dst_buf, const void *src_host, int64_t bytes,
                                    infsim_error *err) {
  if (bytes < 0 || (bytes > 0 && (!dst_buf || !src_host)))
    return infsim_fail(err, INFSIM_EINPUT, "kernels: upload: bad pointer or size");
  return bytes ? k->ops->upload(k->self, dst_buf, src_host, bytes, err) : INFSIM_OK;
}

infsim_status infsim_kernels_download(infsim_kernels *k, void *dst_host, const void *src_buf, int64_t bytes,
                                      infsim_error *err) {
  if (bytes < 0 || (bytes > 0 && (!dst_host || !src_buf)))
    return infsim_fail(err, INFSIM_EINPUT, "kernels: download: bad pointer or size");
  return bytes ? k->ops->download(k->self, dst_host, src_buf, bytes, err) : INFSIM_OK;
}

infsim_status infsim_kernels_memset(infsim_kernels *k, void *buf, int byte, int64_t bytes, infsim_error *err) {
  if (bytes < 0 || (bytes > 0 && !buf)) return infsim_fail(err, INFSIM_EINPUT, "kernels: memset: bad pointer or size");
  return bytes ? k->ops->memset_buf(k->self, buf, byte, bytes, err) : INFSIM_OK;
}

infsim_status infsim_kernels_sync(infsim_kernels *k, infsim_error *err) { return k->ops->sync(k->self, err); }

infsim_status infsim_kernels_fill_random(infsim_kernels *k, void *buf, infsim_kdtype dtype, int64_t count,
                                         uint64_t seed, float lo, float hi, infsim_error *err) {
  if (count < 0 || (count > 0 && !buf) || (unsigned)dtype > INFSIM_KDTYPE_F32 || !(lo <= hi))
    return infsim_fail(err, INFSIM_EINPUT, "kernels: fill_random: bad arguments");
  return count ? k->ops->fill_random(k->self, buf, dtype, count, seed, lo, hi, err) : INFSIM_OK;
}

/* ---- validation ------------------------------------------------------- */

static bool half_dtype(infsim_kdtype t) { return t == INFSIM_KDTYPE_F16 || t == INFSIM_KDTYPE_BF16; }

static infsim_status check_heads(const char *op, int32_t h, int32_t g, int32_t d, int32_t bt, infsim_error *err) {
  if (h < 1 || g < 1 || h % g != 0)
    return infsim_fail(err, INFSIM_EINPUT, "kernels: %s: num_q_heads %d must be a positive multiple of num_kv_heads %d",
                   op, h, g);
  if (d != INFSIM_KERNEL_HEAD_DIM)
    return infsim_fail(err, INFSIM_EINPUT, "kernels: %s: head_dim %d: only %d is supported", op, d,
                   INFSIM_KERNEL_HEAD_DIM);
  if (bt < INFSIM_KERNEL_BLOCK_ALIGN_TOKENS || bt % INFSIM_KERNEL_BLOCK_ALIGN_TOKENS != 0)
    return infsim_fail(err, INFSIM_EINPUT, "kernels: %s: block_tokens %d must be a positive multiple of %d", op, bt,
                   INFSIM_KERNEL_BLOCK_ALIGN_TOKENS);
  return INFSIM_OK;
}

infsim_status infsim_kernels_ma_decode(infsim_kernels *k, const infsim_ma_decode_args *a, infsim_error *err) {
  infsim_status st = check_heads("ma_decode", a->num_q_heads, a->num_kv_heads, a->head_dim, a->block_tokens, err);
  if (st != INFSIM_OK) return st;
  if (a->num_requests < 1) return infsim_fail(err, INFSIM_EINPUT, "kernels: ma_decode: num_requests must be >= 1");
  if (!half_dtype(a->dtype)) return infsim_fail(err, INFSIM_EINPUT, "kernels: ma_decode: dtype must be f16 or bf16");
  if (a->max_context_tokens < 0 || a->num_splits < 0 || a->block_table_stride < 0)
    return infsim_fail(err, INFSIM_EINPUT, "kernels: ma_decode: negative max_context_tokens, num_splits or stride");
  if (a->block_table_stride * (int64_t)a->block_tokens < a->max_context_tokens)
    return infsim_fail(err, INFSIM_EINPUT, "kernels: ma_decode: block_table_stride %d x block_tokens %d < %d tokens",
                   a->block_table_stride, a->block_tokens, a->max_context_tokens);
  if (!a->q || !a->context_tokens || !a->out || !a->lse ||
      (a->max_context_tokens > 0 && (!a->k_pool || !a->v_pool || !a->block_table)))
    return infsim_fail(err, INFSIM_EINPUT, "kernels: ma_decode: NULL buffer");
  if (a->split_merge < 0 || a->split_merge > 6)
    return infsim_fail(err, INFSIM_EINPUT, "kernels: ma_decode: split_merge %d must be 0 to 6", a->split_merge);
  if (a->decode_grid < 0 || a->decode_grid > 2)
    return infsim_fail(err, INFSIM_EINPUT, "kernels: ma_decode: decode_grid %d must be 0 to 2", a->decode_grid);
  if (a->num_remote < 0 || a->num_remote > INFSIM_KERNEL_MAX_REMOTE)
    return infsim_fail(err, INFSIM_EINPUT, "kernels: ma_decode: num_remote %d must be in 0..%d", a->num_remote,
                       INFSIM_KERNEL_MAX_REMOTE);
  if (a->num_remote > 0) {
    if (a->remote_dtype != INFSIM_KDTYPE_F32 && a->remote_dtype != INFSIM_KDTYPE_F16)
      return infsim_fail(err, INFSIM_EINPUT, "kernels: ma_decode: remote_dtype must be f32 or f16");
    if (!a->remote_out || !a->remote_lse)
      return infsim_fail(err, INFSIM_EINPUT, "kernels: ma_decode: num_remote %d with NULL remote_out or remote_lse",
                         a->num_remote);
  }
  return k->ops->ma_decode(k->self, a, err);
}

infsim_status infsim_kernels_merge(infsim_kernels *k, const infsim_merge_args *a, infsim_error *err) {
  if (a->num_partials < 1 || a->rows < 0 || a->head_dim < 1)
    return infsim_fail(err, INFSIM_EINPUT, "kernels: merge: need num_partials >= 1, rows >= 0, head_dim >= 1");
  if (k->backend == INFSIM_KBACKEND_CUDA && a->head_dim % 4 != 0)
    return infsim_fail(err, INFSIM_EINPUT, "kernels: merge: head_dim %d must be a multiple of 4 on CUDA", a->head_dim);
  if (a->rows == 0) return INFSIM_OK;
  if (!a->part_out || !a->part_lse || !a->out) return infsim_fail(err, INFSIM_EINPUT, "kernels: merge: NULL buffer");
  return k->ops->merge(k->self, a, err);
}

infsim_status infsim_kernels_prefill(infsim_kernels *k, const infsim_prefill_args *a, infsim_error *err) {
  infsim_status st = check_heads("prefill", a->num_q_heads, a->num_kv_heads, a->head_dim, a->block_tokens, err);
  if (st != INFSIM_OK) return st;
  if (a->num_requests < 1 || a->new_tokens < 1 || a->past_tokens < 0)
    return infsim_fail(err, INFSIM_EINPUT, "kernels: prefill: need num_requests >= 1, new_tokens >= 1, past_tokens >= 0");
  if (!half_dtype(a->dtype)) return infsim_fail(err, INFSIM_EINPUT, "kernels: prefill: dtype must be f16 or bf16");
  if (a->out_dtype != INFSIM_KDTYPE_F32 && a->out_dtype != a->dtype)
    return infsim_fail(err, INFSIM_EINPUT, "kernels: prefill: out_dtype must be f32 or the input dtype");
  int64_t total = (int64_t)a->past_tokens + a->new_tokens;
  if (a->block_table_stride < 0 || (int64_t)a->block_table_stride * a->block_tokens < total)
    return infsim_fail(err, INFSIM_EINPUT, "kernels: prefill: block_table_stride %d x block_tokens %d < %lld tokens",
                   a->block_table_stride, a->block_tokens, (long long)total);
  if (!a->q || !a->k_new || !a->v_new || !a->k_pool || !a->v_pool || !a->block_table || !a->out)
    return infsim_fail(err, INFSIM_EINPUT, "kernels: prefill: NULL buffer");
  if (a->q_tile_rows != 0 && a->q_tile_rows != 64 && a->q_tile_rows != 128)
    return infsim_fail(err, INFSIM_EINPUT, "kernels: prefill: q_tile_rows %d must be 0, 64 or 128", a->q_tile_rows);
  if (a->k_tile_tokens != 0 && a->k_tile_tokens != 32 && a->k_tile_tokens != 64 && a->k_tile_tokens != 128)
    return infsim_fail(err, INFSIM_EINPUT, "kernels: prefill: k_tile_tokens %d must be 0, 32, 64 or 128",
                   a->k_tile_tokens);
  if (a->k_tile_tokens == 128 && a->q_tile_rows != 128)
    return infsim_fail(err, INFSIM_EINPUT, "kernels: prefill: k_tile_tokens 128 needs q_tile_rows 128");
  if (a->sm90_pipeline < 0 || a->sm90_pipeline > 15)
    return infsim_fail(err, INFSIM_EINPUT, "kernels: prefill: sm90_pipeline %d must be 0 to 15", a->sm90_pipeline);
  return k->ops->prefill(k->self, a, err);
}

infsim_status infsim_kernels_gemm(infsim_kernels *k, const infsim_gemm_args *a, infsim_error *err) {
  if (a->m < 1 || a->n < 1 || a->k < 1)
    return infsim_fail(err, INFSIM_EINPUT, "kernels: gemm: m, n, k must be >= 1");
  if (!half_dtype(a->dtype) && !(a->dtype == INFSIM_KDTYPE_F32 && k->backend == INFSIM_KBACKEND_CPU))
    return infsim_fail(err, INFSIM_EINPUT, "kernels: gemm: dtype must be f16 or bf16");
  if (!a->a || !a->w || !a->c) return infsim_fail(err, INFSIM_EINPUT, "kernels: gemm: NULL buffer");
  return k->ops->gemm(k->self, a, err);
}

infsim_status infsim_kernels_gemm_shape(const infsim_kernel_model *model, int64_t tp, infsim_gemm_kind kind,
                                        int64_t tokens, int64_t *m, int64_t *n, int64_t *k, infsim_error *err) {
  const infsim_kernel_model *md = model;
  if (tp < 1 || tokens < 1 || md->hidden < 1 || md->heads < 1 || md->kv_heads < 1 || md->head_dim < 1 ||
      md->intermediate < 1)
    return infsim_fail(err, INFSIM_EINPUT, "kernels: gemm_shape: tp, tokens and model dimensions must be >= 1");
  if (md->heads % tp != 0 || md->intermediate % tp != 0 || (md->kv_heads >= tp && md->kv_heads % tp != 0))
    return infsim_fail(err, INFSIM_EINPUT,
                   "kernels: gemm_shape: tp %lld must divide heads %lld, intermediate %lld and kv_heads %lld",
                   (long long)tp, (long long)md->heads, (long long)md->intermediate, (long long)md->kv_heads);
  int64_t h = md->heads / tp;
  int64_t g = md->kv_heads >= tp ? md->kv_heads / tp : 1;
  *m = tokens;
  switch (kind) {
    case INFSIM_GEMM_QKV:
      *n = (h + 2 * g) * md->head_dim;
      *k = md->hidden;
      break;
    case INFSIM_GEMM_O:
      *n = md->hidden;
      *k = h * md->head_dim;
      break;
    case INFSIM_GEMM_GATE_UP:
      *n = 2 * md->intermediate / tp;
      *k = md->hidden;
      break;
    case INFSIM_GEMM_DOWN:
      *n = md->hidden;
      *k = md->intermediate / tp;
      break;
    default:
      return infsim_fail(err, INFSIM_EINPUT, "kernels: gemm_shape: unknown kind %d", (int)kind);
  }
  return INFSIM_OK;
}

infsim_status infsim_kernels_kv_copy(infsim_kernels *k, const infsim_kv_copy_args *a, infsim_error *err) {
  if (a->num_blocks < 0 || a->block_bytes < 16 || a->block_bytes % 16 != 0)
    return infsim_fail(err, INFSIM_EINPUT, "kernels: kv_copy: block_bytes %lld must be a positive multiple of 16",
                   (long long)a->block_bytes);
  if (a->num_blocks == 0) return INFSIM_OK;
  if (!a->dst_pool || !a->src_pool || !a->src_ids || !a->dst_ids)
    return infsim_fail(err, INFSIM_EINPUT, "kernels: kv_copy: NULL buffer");
  return k->ops->kv_copy(k->self, a, err);
}

infsim_status infsim_kernels_staged_copy(infsim_kernels *k, const infsim_staged_copy_args *a, infsim_error *err) {
  if (a->bytes < 0 || a->chunk_bytes < 0)
    return infsim_fail(err, INFSIM_EINPUT, "kernels: staged_copy: negative size");
  if (a->bytes == 0) return INFSIM_OK;
  if (!a->dst_buf || !a->src_buf || !a->staging_host)
    return infsim_fail(err, INFSIM_EINPUT, "kernels: staged_copy: NULL buffer");
  infsim_staged_copy_args b = *a;
  if (b.chunk_bytes == 0) b.chunk_bytes = b.bytes < (4 << 20) ? b.bytes : (4 << 20);
  return k->ops->staged_copy(k->self, &b, err);
}

infsim_status infsim_kernels_norm_rope(infsim_kernels *k, const infsim_norm_rope_args *a, infsim_error *err) {
  if (a->tokens < 1 || a->num_q_heads < 1 || a->num_kv_heads < 1)
    return infsim_fail(err, INFSIM_EINPUT, "kernels: norm_rope: tokens %d, heads %d/%d must be >= 1", a->tokens,
                       a->num_q_heads, a->num_kv_heads);
  if (a->head_dim != INFSIM_KERNEL_HEAD_DIM)
    return infsim_fail(err, INFSIM_EINPUT, "kernels: norm_rope: head_dim %d must be %d", a->head_dim,
                       INFSIM_KERNEL_HEAD_DIM);
  if (a->dtype != INFSIM_KDTYPE_F16 && a->dtype != INFSIM_KDTYPE_BF16)
    return infsim_fail(err, INFSIM_EINPUT, "kernels: norm_rope: dtype must be f16 or bf16");
  if (a->stages < 1 || a->stages > (INFSIM_NR_NORM | INFSIM_NR_ROPE))
    return infsim_fail(err, INFSIM_EINPUT, "kernels: norm_rope: stages %d must be NORM, ROPE or both", a->stages);
  if (!a->qkv) return infsim_fail(err, INFSIM_EINPUT, "kernels: norm_rope: NULL qkv");
  if ((a->stages & INFSIM_NR_NORM) && (!a->q_weight || !a->k_weight || !(a->eps > 0.0f)))
    return infsim_fail(err, INFSIM_EINPUT, "kernels: norm_rope: NORM needs q_weight, k_weight and eps > 0");
  if ((a->stages & INFSIM_NR_ROPE) && (!a->positions || !(a->rope_theta > 1.0f)))
    return infsim_fail(err, INFSIM_EINPUT, "kernels: norm_rope: ROPE needs positions and rope_theta > 1");
  if ((int64_t)a->tokens * (a->num_q_heads + 2 * (int64_t)a->num_kv_heads) > INT32_MAX)
    return infsim_fail(err, INFSIM_EINPUT, "kernels: norm_rope: more than 2^31 heads in all");
  return k->ops->norm_rope(k->self, a, err);
}

/* ---- timing ----------------------------------------------------------- */

infsim_status infsim_kernel_op_ma_decode(infsim_kernels *k, void *args, infsim_error *err) {
  return infsim_kernels_ma_decode(k, args, err);
}
infsim_status infsim_kernel_op_merge(infsim_kernels *k, void *args, infsim_error *err) {
  return infsim_kernels_merge(k, args, err);
}
int32_t infsim_kernels_prefill_sm90_auto(const infsim_prefill_args *a) {
  return ik_sm90_auto_pipeline(a->past_tokens, a->new_tokens, a->num_q_heads, a->num_kv_heads);
}
int32_t infsim_kernels_decode_auto_merge(int32_t splits, int32_t num_remote, bool one_wave) {
  return ik_decode_auto_merge(splits, num_remote, one_wave);
}

int32_t infsim_kernels_decode_auto_grid(int64_t max_context_tokens, bool one_wave, int32_t num_remote) {
  return ik_decode_auto_grid(max_context_tokens, one_wave, num_remote);
}

infsim_status infsim_kernel_op_prefill(infsim_kernels *k, void *args, infsim_error *err) {
  return infsim_kernels_prefill(k, args, err);
}
infsim_status infsim_kernel_op_gemm(infsim_kernels *k, void *args, infsim_error *err) {
  return infsim_kernels_gemm(k, args, err);
}
infsim_status infsim_kernel_op_kv_copy(infsim_kernels *k, void *args, infsim_error *err) {
  return infsim_kernels_kv_copy(k, args, err);
}
infsim_status infsim_kernel_op_staged_copy(infsim_kernels *k, void *args, infsim_error *err) {
  return infsim_kernels_staged_copy(k, args, err);
}
infsim_status infsim_kernel_op_norm_rope(infsim_kernels *k, void *args, infsim_error *err) {
  return infsim_kernels_norm_rope(k, args, err);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Percentile by linear interpolation between order statistics. */
static double percentile(const double *sorted, int n, double q) {
  double pos = q * (n - 1);
  int lo = (int)pos;
  int hi = lo + 1 < n ? lo + 1 : lo;
  return sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]);
}

infsim_status infsim_kernels_time_ms(infsim_kernels *k, infsim_kernel_op op, void *op_arg,
                                     const infsim_time_opts *opts, infsim_kernel_timing *out, infsim_error *err) {
  infsim_time_opts o = opts ? *opts : (infsim_time_opts){0};
  if (o.warmup < 0 || o.repeats < 0) return infsim_fail(err, INFSIM_EINPUT, "kernels: time: negative warmup/repeats");
  if (o.warmup == 0) o.warmup = 3;
  if (o.repeats == 0) o.repeats = 20;
  memset(out, 0, sizeof *out);
  double *ms = malloc(sizeof *ms * (size_t)o.repeats);
  if (!ms) return infsim_fail(err, INFSIM_ENOMEM, "kernels: time: out of memory");
  infsim_status st = INFSIM_OK;
  for (int i = 0; i < o.warmup && st == INFSIM_OK; i++) st = op(k, op_arg, err);
  if (st == INFSIM_OK) st = k->ops->sync(k->self, err);
  for (int i = 0; i < o.repeats && st == INFSIM_OK; i++) {
    if (o.flush_l2) st = k->ops->flush_cache(k->self, err);
    if (st == INFSIM_OK) st = k->ops->timer_begin(k->self, err);
    if (st == INFSIM_OK) st = op(k, op_arg, err);
    if (st == INFSIM_OK) st = k->ops->timer_end(k->self, &ms[i], err);
  }
  if (st == INFSIM_OK) {
    qsort(ms, (size_t)o.repeats, sizeof *ms, cmp_double);
    out->repeats = o.repeats;
    out->min_ms = ms[0];
    out->max_ms = ms[o.repeats - 1];
    out->median_ms = percentile(ms, o.repeats, 0.5);
    out->p10_ms = percentile(ms, o.repeats, 0.1);
    out->p90_ms = percentile(ms, o.repeats, 0.9);
  }
  free(ms);
  return st;
}
