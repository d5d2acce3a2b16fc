/*
** kernels.h: the DistAttention kernels and layer GEMMs, behind one C API that
** runs on two backends: a plain-C CPU reference and CUDA.
**
** Callers (calibration, cluster mode, tests, benchmarks) open a context for a
** backend, allocate buffers through it, and call the operations; the same
** call sequence runs on either backend, so calibration can time a kernel grid
** on a CUDA GPU or, at tiny sizes, on the CPU of a machine without one.
** The header is plain C11 and needs no CUDA headers; libinfsim_kernels is
** always built and reports the CUDA backend as unavailable when it was built
** without nvcc or when no GPU is present.
**
** Memory: a "buffer" is a pointer returned by infsim_kernels_alloc on a
** context. On the CPU backend it is host memory; on CUDA it is device memory
** (never dereference it on the host: use upload/download). All operations
** take such buffers, except `*_host` arguments, which are host memory.
** A buffer argument may point inside an allocation at an offset that is a
** multiple of 16 bytes (the CUDA kernels use 16-byte loads and stores).
** Operations are asynchronous on CUDA (one stream per context); download and
** infsim_kernels_sync wait for them.
**
** Layouts (row-major, innermost last). h = query heads, g = KV heads (GQA:
** h % g == 0, query head i reads KV head i / (h / g)), d = head_dim (128).
**  - rBlock pool of one layer, K and V in separate pools:
**      k_pool[num_blocks][g][block_tokens][d]   (v_pool the same)
**    Head-major inside a block so that one KV head of one block is one
**    contiguous run of block_tokens * d elements: decode streams it with
**    16-byte loads and no gather. block_tokens is a multiple of 16.
**  - block table: int32 block_table[r * block_table_stride + i] is the pool
**    index of request r's i-th block; its token t lives in block t / bt at
**    slot t % bt. A "contiguous" KV cache is the special case of one block
**    per request (block_tokens >= context).
**  - decode query q[r][h][d] (fp16/bf16, like the KV); outputs out[r][h][d]
**    fp32 and lse[r][h] fp32.
**  - partials for the merge: part_out[p][rows][d] fp32, part_lse[p][rows]
**    where rows = requests * h (one row per (request, head)); the remote
**    partials MA decode merges in the same launch have the same layout
**    (remote_out fp32 or fp16).
**
** Numerics: every backend accumulates in fp32. MA decode output is the
** attention of the query over the request's KV normalized by its own softmax
** sum, and lse = max + log(sum exp(s - max)) in natural log over scores
** s = scale * q.k; a request with no KV tokens gives lse = -inf and zeros.
** The merge weights partial j by exp(lse_j - max lse): an empty partial is
** neutral and all-empty gives zeros and -inf, never NaN. This is exactly
** what DistAttention holders ship and owners merge (DESIGN.md).
*/
#ifndef INFSIM_KERNELS_H
#define INFSIM_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "infsim/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  INFSIM_KBACKEND_CPU = 0,  /* plain-C reference, fp32 arithmetic */
  INFSIM_KBACKEND_CUDA = 1, /* CUDA kernels + cuBLASLt on device 0 */
} infsim_kernel_backend;

typedef enum {
  INFSIM_KDTYPE_F16 = 0,
  INFSIM_KDTYPE_BF16 = 1,
  INFSIM_KDTYPE_F32 = 2,
} infsim_kdtype;

/* Only head dimension the attention kernels take (LLaMA2 family). */
enum { INFSIM_KERNEL_HEAD_DIM = 128, INFSIM_KERNEL_BLOCK_ALIGN_TOKENS = 16 };
/* Most remote partials one MA decode call merges (holders of one request's
 * KV besides the owner; the CUDA kernel stages their LSEs in shared memory). */
enum { INFSIM_KERNEL_MAX_REMOTE = 64 };

typedef struct infsim_kernels infsim_kernels; /* opaque context */

/* "cpu" / "cuda"; parse returns false on an unknown name. */
const char *infsim_kernel_backend_name(infsim_kernel_backend b);
bool infsim_kernel_backend_parse(const char *name, infsim_kernel_backend *out);
size_t infsim_kdtype_bytes(infsim_kdtype t);

/* True when this build has the CUDA backend and a CUDA GPU is usable. */
bool infsim_kernels_cuda_available(void);

/* Opens a context; INFSIM_ENODEV when backend is CUDA and it is unavailable. */
infsim_status infsim_kernels_open(infsim_kernel_backend backend, infsim_kernels **out, infsim_error *err);
void infsim_kernels_close(infsim_kernels *k); /* NULL is fine; frees its workspace, not user buffers */
infsim_kernel_backend infsim_kernels_backend(const infsim_kernels *k);
/* The context's cudaStream_t (as void *) for interop (NCCL, direct cuBLAS
 * in benchmarks); NULL on the CPU backend. Work queued on it by the caller
 * is ordered with the context's own operations and timers. */
void *infsim_kernels_native_stream(infsim_kernels *k);

/* What ran the measurements, for provenance in calibration records. */
typedef struct {
  char name[128];          /* "NVIDIA H100 80GB HBM3", or "cpu reference" */
  char driver_version[32]; /* "580.159.04" (from NVML when present, else the CUDA driver API version) */
  char runtime_version[32];/* CUDA runtime "13.0"; "" on CPU */
  int cc_major, cc_minor;  /* compute capability; 0 on CPU */
  int sm_count;            /* multiprocessors; CPU: 1 (the reference is single-threaded) */
  int sm_clock_mhz;        /* current SM clock when readable, else max; 0 if unknown */
  int max_sm_clock_mhz;
  int mem_clock_mhz;       /* max memory clock; 0 if unknown */
  int64_t memory_bytes;    /* device memory (CPU: 0 = not reported) */
  int64_t l2_bytes;
} infsim_kernel_device;

infsim_status infsim_kernels_describe(infsim_kernels *k, infsim_kernel_device *out, infsim_error *err);

/* ---- buffers ---------------------------------------------------------- */

/* Allocates `bytes` (> 0) of backend memory, 256-byte aligned. */
infsim_status infsim_kernels_alloc(infsim_kernels *k, int64_t bytes, void **out, infsim_error *err);
void infsim_kernels_free(infsim_kernels *k, void *buf); /* NULL is fine */
/* Page-locked host memory for host-staged transfers (plain malloc on CPU). */
infsim_status infsim_kernels_host_alloc(infsim_kernels *k, int64_t bytes, void **out, infsim_error *err);
void infsim_kernels_host_free(infsim_kernels *k, void *host);

infsim_status infsim_kernels_upload(infsim_kernels *k, void *dst_buf, const void *src_host, int64_t bytes,
                                    infsim_error *err);
/* Waits for queued work, then copies. */
infsim_status infsim_kernels_download(infsim_kernels *k, void *dst_host, const void *src_buf, int64_t bytes,
                                      infsim_error *err);
/* Sets every byte of a buffer (e.g. 0xFF to poison outputs before a check). */
infsim_status infsim_kernels_memset(infsim_kernels *k, void *buf, int byte, int64_t bytes, infsim_error *err);
infsim_status infsim_kernels_sync(infsim_kernels *k, infsim_error *err);

/* Fills `count` elements of dtype with uniform values in [lo, hi) from a
 * counter-based hash of (seed, index): both backends produce bit-identical
 * contents, so a test can fill on CUDA and recompute the same input on CPU,
 * and calibration can fill GiBs without a host copy. */
infsim_status infsim_kernels_fill_random(infsim_kernels *k, void *buf, infsim_kdtype dtype, int64_t count,
                                         uint64_t seed, float lo, float hi, infsim_error *err);
/* Host version of the same function (same values for the same arguments). */
void infsim_kernels_fill_random_host(void *host, infsim_kdtype dtype, int64_t count, uint64_t seed, float lo,
                                     float hi);

/* Scalar conversions used by every backend (round to nearest even). */
float infsim_f16_to_float(uint16_t h);
uint16_t infsim_float_to_f16(float f);
float infsim_bf16_to_float(uint16_t b);
uint16_t infsim_float_to_bf16(float f);

/* ---- micro-attention (MA), decode -------------------------------------- */

typedef struct {
  int32_t num_requests;   /* >= 1 */
  int32_t num_q_heads;    /* h */
  int32_t num_kv_heads;   /* g, h % g == 0 */
  int32_t head_dim;       /* must be INFSIM_KERNEL_HEAD_DIM */
  int32_t block_tokens;   /* multiple of 16 */
  infsim_kdtype dtype;    /* F16 or BF16: q and the pools */
  const void *q;          /* buffer [r][h][d] */
  const void *k_pool;     /* buffer [num_blocks][g][block_tokens][d] */
  const void *v_pool;
  const int32_t *block_table;    /* buffer [r][block_table_stride] */
  int32_t block_table_stride;
  const int32_t *context_tokens; /* buffer [r]: tokens held for each request, 0 allowed */
  int32_t max_context_tokens;    /* host-side max of context_tokens (sizes the grid) */
  float softmax_scale;           /* usually 1/sqrt(d) */
  int32_t num_splits;     /* KV chunks per (request, kv head) merged in-kernel; 0 = auto (fill the GPU) */
  float *out;             /* buffer [r][h][d] fp32 */
  float *lse;             /* buffer [r][h] fp32 */
  /* Remote partials merged in the same launch (DistAttention's owner: it
   * holds part of each request's KV, and the holders of the rest have sent
   * their normalized output and LSE per (request, head)). out and lse are
   * then the merge of the local result with these, exactly as
   * infsim_kernels_merge over [local, remote 0, ..] would give, without a
   * launch or a round trip through memory of its own. 0 = none. */
  int32_t num_remote;           /* 0 .. INFSIM_KERNEL_MAX_REMOTE */
  infsim_kdtype remote_dtype;   /* F32 or F16: precision of remote_out */
  const void *remote_out;       /* buffer [num_remote][r][h][d] */
  const float *remote_lse;      /* buffer [num_remote][r][h], natural log; -inf = empty partial */
  /* CUDA tuning knob (the CPU ignores it): how the last CTA of a split
   * decode merges the splits and remote partials. 1 = weights
   * through shared memory, then the weighted sums (the earlier kernel), 2 =
   * weights in registers, LSEs and outputs loaded in one round trip, 3 = as
   * 2 with one thread fencing around the split counter instead of every
   * thread, 4 = as 3, but with remote partials each CTA takes its share
   * into its own partial (one split: all of them; split s of S: partials
   * s, s + S, ..) as its warps' starting softmax states, loaded with the
   * Q tile (1-3 with one split: folded in after the CTA's merge), 5 = as
   * 4, but folded into the CTA's merge after the stream (prefetched into
   * L2 near its end), 6 = as 3, but with remote partials and splits a
   * CTA of their own merges the remote partials into one more split
   * entry while the splits stream (one split, or a head group's last 16
   * holding 1-2 query heads: as 3). 0 = auto (1, 3, 4, 5 or 6:
   * infsim_kernels_decode_auto_merge). Kept selectable so that
   * benchmarks time them side by side. */
  int32_t split_merge;
  /* CUDA tuning knob (the CPU ignores it): the grid of a decode with one
   * split. 1 = one CTA per (request, KV head, group of <= 16 query
   * heads), in as many waves as they take; 2 = a persistent grid of one
   * wave whose CTAs take those row groups in turn, each fetching its next
   * one's Q and first K/V tiles before its merge, its warps starting from
   * the remote partials as their softmax states (split_merge is then not
   * read). With splits 1 runs whatever this says. 0 = auto
   * (infsim_kernels_decode_auto_grid). */
  int32_t decode_grid;
} infsim_ma_decode_args;

infsim_status infsim_kernels_ma_decode(infsim_kernels *k, const infsim_ma_decode_args *a, infsim_error *err);
/* The split merge that split_merge 0 (auto) runs on CUDA for a launch of
 * `splits` splits (>= 1) with num_remote remote partials, whose grid of
 * CTAs (with splits, one more a row group: split_merge 6's) fits one wave
 * or not: 3 without partials (kernel 1 with one split); with splits, 6 in
 * one wave, else 4 up to 4 partials a split, else 3; with one split, 4 up
 * to 8 partials, else 5; one_wave is read for 6 only (kernels/NOTES.md). */
int32_t infsim_kernels_decode_auto_merge(int32_t splits, int32_t num_remote, bool one_wave);
/* The grid that decode_grid 0 (auto) runs on CUDA for a decode of one
 * split whose longest context is max_context_tokens, whose row groups fit
 * one wave of CTAs or not, with num_remote remote partials: 2 up to 2048
 * tokens or in one wave, else 1, with up to 8 partials as without them;
 * past 8 partials 1 (kernels/NOTES.md). */
int32_t infsim_kernels_decode_auto_grid(int64_t max_context_tokens, bool one_wave, int32_t num_remote);

/* ---- aggregation: merge partials by LSE -------------------------------- */

typedef struct {
  int32_t num_partials;   /* >= 1 holders */
  int64_t rows;           /* requests * heads */
  int32_t head_dim;       /* any >= 1 (CUDA: multiple of 4) */
  const float *part_out;  /* buffer [p][rows][d] */
  const float *part_lse;  /* buffer [p][rows] */
  float *out;             /* buffer [rows][d] */
  float *lse;             /* buffer [rows] or NULL: merged LSE (so merges compose) */
} infsim_merge_args;

infsim_status infsim_kernels_merge(infsim_kernels *k, const infsim_merge_args *a, infsim_error *err);

/* ---- prefill: causal attention, writing K/V into rBlocks --------------- */

/* For each request, appends `new_tokens` tokens of K/V after `past_tokens`
 * already in its blocks, then computes causal attention of the new queries
 * over all past + new keys (query i sits at position past_tokens + i). */
typedef struct {
  int32_t num_requests;
  int32_t num_q_heads, num_kv_heads, head_dim; /* head_dim must be 128 */
  int32_t new_tokens;     /* >= 1, same for every request */
  int32_t past_tokens;    /* >= 0, same for every request */
  int32_t block_tokens;   /* multiple of 16 */
  infsim_kdtype dtype;    /* F16 or BF16 */
  const void *q;          /* buffer [r][new][h][d] */
  const void *k_new;      /* buffer [r][new][g][d] */
  const void *v_new;
  void *k_pool, *v_pool;  /* as for decode; written at slots past .. past+new-1 */
  const int32_t *block_table; /* buffer [r][block_table_stride] */
  int32_t block_table_stride;
  float softmax_scale;
  infsim_kdtype out_dtype; /* F32, or the input dtype */
  void *out;               /* buffer [r][new][h][d] */
  float *lse;              /* buffer [r][new][h] or NULL */
  /* CUDA tuning knobs (the CPU ignores them): queries per CTA, 0 = auto,
   * 64 or 128; keys per shared-memory tile with 128 queries, 0 = auto, 32,
   * 64 or 128 (128 x 128: the wgmma kernel on compute capability 9.0, which
   * auto picks there; 128 x 64 on other devices). */
  int32_t q_tile_rows;
  int32_t k_tile_tokens;
  /* The wgmma kernel's pipeline (128 x 128 on compute capability 9.0 only;
   * ignored elsewhere): 0 = auto, 1 = two K/V stages with S, softmax and
   * P V in turn, 2 = three stages with the softmax of one key tile under
   * the P V of the one before, 3 = as 2 with Q held in registers, 4 = as 2
   * with the copies issued by a producer warpgroup and per-buffer
   * mbarriers instead of the per-tile CTA barrier, 5 = as 4 with one CTA
   * per SM over all work tiles, 6 and 7 = as 4 and 5 with K/V loaded by
   * bulk tensor copies (TMA), 8 and 9 = as 6 and 7 with version 17's
   * consumers (O rescaled under S = Q K^T, the softmax kept under P V),
   * 10 and 11 = as 8 and 9 with version 18's consumers (no row max while
   * the exponents' sums stay bounded), 12 = as 10 with the CTAs taken in
   * groups of heads, 13 = as 10 with the K/V append folded into the
   * attention kernel (new K/V read from k_new / v_new, each key tile
   * written to the pool by one CTA), 14 and 15 = the same on 11's and
   * 12's grids; after a cached prefix whose length is not a multiple of
   * 16 they run as 10, 11 and 12. Auto: infsim_kernels_prefill_sm90_auto. */
  int32_t sm90_pipeline;
} infsim_prefill_args;

infsim_status infsim_kernels_prefill(infsim_kernels *k, const infsim_prefill_args *a, infsim_error *err);
/* The wgmma pipeline that sm90_pipeline 0 (auto) runs for these arguments
 * on compute capability 9.0: 14 up to 4K tokens, prefix included, except
 * fresh prompts of 2K-4K tokens with at least 32 query heads (11 with
 * grouped KV heads, 13 otherwise); past 4K 13 for a fresh prompt and 15
 * for a chunk after a cached prefix; 11 and 12 instead of 14 and 15 after
 * a prefix whose length is not a multiple of 16 (kernels/NOTES.md 18-21,
 * "Prefill at 4K: auto's pipeline"). */
int32_t infsim_kernels_prefill_sm90_auto(const infsim_prefill_args *a);

/* ---- fused per-head RMSNorm + rotary embedding (QK-norm + RoPE) -------- */

/* Applied to the QKV GEMM's output in place, before attention: for each
 * token and each q and k head (v heads are untouched), with x the head's
 * 128 values in fp32:
 *   NORM: x_i <- x_i * (1 / sqrt(mean_j x_j^2 + eps)) * w_i, w = q_weight
 *         for q heads, k_weight for k heads (QK-norm: Qwen3, OLMo-2, Gemma-3);
 *   ROPE: for i < 64, with a = fl32(fl32(pos) * inv_freq_i) and inv_freq_i =
 *         fl32(rope_theta^(-2i/128)) (as LLaMA's fp32 rotary tables):
 *         (x_i, x_{i+64}) <- (x_i cos a - x_{i+64} sin a, x_{i+64} cos a + x_i sin a)
 *         (the rotate-half pairing of the Hugging Face LLaMA code);
 * then one rounding to dtype. Both stages in one call read and write each q
 * and k head once: the unfused sequence (NORM, then ROPE) does it twice and
 * rounds in between. LLaMA2 has no QK-norm: it runs ROPE alone. */
enum { INFSIM_NR_NORM = 1, INFSIM_NR_ROPE = 2 };

typedef struct {
  int32_t tokens;                /* >= 1 */
  int32_t num_q_heads, num_kv_heads, head_dim; /* head_dim must be 128 */
  infsim_kdtype dtype;           /* F16 or BF16 */
  void *qkv;                     /* buffer [tokens][h + 2 g][d]: q heads, k heads, v heads */
  const int32_t *positions;      /* buffer [tokens], each >= 0 (needed with ROPE) */
  const void *q_weight, *k_weight; /* buffers [d] of dtype (needed with NORM) */
  float eps;                     /* > 0 */
  float rope_theta;              /* > 1 */
  int32_t stages;                /* INFSIM_NR_NORM and/or INFSIM_NR_ROPE, not 0 */
} infsim_norm_rope_args;

infsim_status infsim_kernels_norm_rope(infsim_kernels *k, const infsim_norm_rope_args *a, infsim_error *err);

/* ---- layer GEMMs ------------------------------------------------------- */

typedef enum {
  INFSIM_GEMM_QKV = 0,   /* [tokens, hidden] x [hidden, (h + 2g) d / tp] */
  INFSIM_GEMM_O = 1,     /* [tokens, h d / tp] x [h d / tp, hidden] */
  INFSIM_GEMM_GATE_UP = 2, /* [tokens, hidden] x [hidden, 2 intermediate / tp] (fused gate and up) */
  INFSIM_GEMM_DOWN = 3,  /* [tokens, intermediate / tp] x [intermediate / tp, hidden] */
  INFSIM_GEMM_KINDS = 4,
} infsim_gemm_kind;

const char *infsim_gemm_kind_name(infsim_gemm_kind kind);

/* C[m][n] = A[m][k] x W[n][k]^T (torch Linear convention: weights stored
 * [out_features][in_features]); fp32 accumulation, output in dtype. */
typedef struct {
  int64_t m, n, k;
  infsim_kdtype dtype;   /* F16 or BF16 (CPU also takes F32) */
  const void *a;         /* buffer [m][k] */
  const void *w;         /* buffer [n][k] */
  void *c;               /* buffer [m][n] */
} infsim_gemm_args;

/* The model dimensions the GEMM shapes depend on (the fields of the same
 * name in hardware.h's infsim_model_shape; kept separate so that this
 * header needs nothing but status.h). */
typedef struct {
  int64_t hidden, heads, kv_heads, head_dim, intermediate;
} infsim_kernel_model;

/* m, n, k of one layer GEMM for `tokens` tokens on one TP shard of `model`
 * (heads and columns divided by tp; KV heads replicated when kv_heads < tp,
 * as Megatron does). INFSIM_EINPUT if tp does not divide heads or
 * intermediate, or kv_heads when kv_heads >= tp. */
infsim_status infsim_kernels_gemm_shape(const infsim_kernel_model *model, int64_t tp, infsim_gemm_kind kind,
                                        int64_t tokens, int64_t *m, int64_t *n, int64_t *k, infsim_error *err);

infsim_status infsim_kernels_gemm(infsim_kernels *k, const infsim_gemm_args *a, infsim_error *err);

/* ---- KV movement ------------------------------------------------------- */

/* Copies n whole blocks of block_bytes: dst_pool block dst_ids[i] <-
 * src_pool block src_ids[i]. ids are buffers of int32 (device on CUDA);
 * the pools may be the same buffer (blocks must not overlap). One launch
 * on CUDA, whatever n. */
typedef struct {
  void *dst_pool;
  const void *src_pool;
  int64_t block_bytes;     /* multiple of 16 */
  const int32_t *src_ids;
  const int32_t *dst_ids;
  int32_t num_blocks;
} infsim_kv_copy_args;

infsim_status infsim_kernels_kv_copy(infsim_kernels *k, const infsim_kv_copy_args *a, infsim_error *err);

/* Device -> pinned host -> device in chunks, as a transfer without peer
 * access stages KV (DistKV-LLM moving rBlocks between instances over a NIC
 * without GPUDirect). Overlaps the two directions chunk by chunk on CUDA. */
typedef struct {
  void *dst_buf;
  const void *src_buf;
  int64_t bytes;
  void *staging_host;      /* from infsim_kernels_host_alloc, >= chunk_bytes * 2 */
  int64_t chunk_bytes;     /* > 0; 0 means min(bytes, 4 MiB) */
} infsim_staged_copy_args;

infsim_status infsim_kernels_staged_copy(infsim_kernels *k, const infsim_staged_copy_args *a, infsim_error *err);

/* ---- timing ------------------------------------------------------------ */

/* One timed operation: typically a closure over an args struct above. */
typedef infsim_status (*infsim_kernel_op)(infsim_kernels *k, void *op_arg, infsim_error *err);

typedef struct {
  int32_t warmup;        /* untimed calls first (>= 0; 0 means 3) */
  int32_t repeats;       /* timed calls (>= 1; 0 means 20) */
  bool flush_l2;         /* overwrite a 2x-L2 scratch buffer before each timed call (untimed) */
} infsim_time_opts;

typedef struct {
  double median_ms;
  double min_ms, max_ms;
  double p10_ms, p90_ms; /* spread: 10th and 90th percentile of the repeats */
  int32_t repeats;
} infsim_kernel_timing;

/* Runs op warmup times, then `repeats` times each bracketed by CUDA events
 * on the context's stream (CPU: a monotonic clock), and reports median and
 * spread. Stops at the first failing call and returns its status. */
infsim_status infsim_kernels_time_ms(infsim_kernels *k, infsim_kernel_op op, void *op_arg,
                                     const infsim_time_opts *opts, infsim_kernel_timing *out, infsim_error *err);

/* Ready-made ops for infsim_kernels_time_ms; op_arg points at the args struct. */
infsim_status infsim_kernel_op_ma_decode(infsim_kernels *k, void *args, infsim_error *err);
infsim_status infsim_kernel_op_merge(infsim_kernels *k, void *args, infsim_error *err);
infsim_status infsim_kernel_op_prefill(infsim_kernels *k, void *args, infsim_error *err);
infsim_status infsim_kernel_op_gemm(infsim_kernels *k, void *args, infsim_error *err);
infsim_status infsim_kernel_op_kv_copy(infsim_kernels *k, void *args, infsim_error *err);
infsim_status infsim_kernel_op_staged_copy(infsim_kernels *k, void *args, infsim_error *err);
infsim_status infsim_kernel_op_norm_rope(infsim_kernels *k, void *args, infsim_error *err);

#ifdef __cplusplus
}
#endif

#endif
