/*
** bench_kernels.h: what the two files of bench_kernels share: the run's
** context, one CSV row's fields, and the helpers that allocate, fill, time
** and emit (each exits with a message on failure: a benchmark has no
** partial results worth keeping). bench_kernels.c holds main and the
** original kinds; bench_decode_more.c the kinds added for issue 16.
*/
#ifndef INFSIM_BENCH_KERNELS_H
#define INFSIM_BENCH_KERNELS_H

#include <cuda_runtime.h>
#include <stdbool.h>
#include <stdint.h>

#include "infsim/kernels.h"

/* Head dim; LLaMA2-70B's query and KV heads (one layer, no TP). */
enum { D = INFSIM_KERNEL_HEAD_DIM, H70 = 64, G70 = 8 };

typedef struct {
  infsim_kernels *k;
  FILE *csv;
  infsim_kernel_device dev;
  bool quick;
  double copy_gbps; /* device copy ceiling measured in this run (read + write), 0 = not yet */
  int split_merge;  /* decode's split merge in the decode and fused kinds ($INFSIM_BENCH_SPLIT_MERGE, 0 = auto) */
  double warm_ms;   /* --warm-ms: warm-up before each timing (0 = 30 ms, at most 200 calls) */
} bench;

typedef struct {
  const char *kernel, *variant, *dtype;
  int64_t batch, context, q_heads, kv_heads, block_tokens, splits, parts, m, n, k;
  double bytes, flops;
} row_info;

/* A device-to-device copy as a timed op (the bandwidth ceiling). */
typedef struct {
  void *dst, *src;
  int64_t bytes;
  cudaStream_t s;
} d2d;

void die(const char *what, const infsim_error *err);
/* $name as a comma list of at most cap whole numbers in lo..hi, each a
 * multiple of step, into out; the count, 0 when unset. Anything else
 * exits 2 with one line naming the variable. */
size_t env_counts(const char *name, int64_t lo, int64_t hi, int64_t step, int64_t *out, size_t cap);
/* $INFSIM_BENCH_ROUND (0-1000000, 0 when unset): the round a script that
 * runs one round a process names, so that the benches rotating their
 * variants' order go on rotating across processes. */
int bench_round(void);
void *balloc(bench *b, int64_t bytes);
void bfill(bench *b, void *p, infsim_kdtype t, int64_t n, uint64_t seed);
void bupload(bench *b, void *dst, const void *src, int64_t bytes);
infsim_kernel_timing btime(bench *b, infsim_kernel_op op, void *arg, int repeats, bool flush);
void emit(bench *b, const row_info *r, const infsim_kernel_timing *t);
void shuffle_ids(int32_t *ids, int64_t n, uint64_t seed);
infsim_status d2d_op(infsim_kernels *k, void *arg, infsim_error *err);
/* The device copy ceiling: c->bytes copied src -> dst (read + write) after a
 * fill, one CSV row, and b->copy_gbps. */
void measure_copy(bench *b, d2d *c);

/* bench_decode_more.c */
void bench_splits_big(bench *b);
void bench_fused(bench *b);
void bench_fused_warm(bench *b);
void bench_fused_paths(bench *b);
void bench_decode_grid(bench *b);
void bench_mixed(bench *b);
void bench_flush(bench *b);

#endif
