/*
** prefill.cuh: what the two prefill attention kernels share: the launch
** parameters (prefill.cu fills them and runs the K/V append) and the entry
** of the Hopper kernel (prefill_sm90.cu, built for sm_90a), which
** prefill.cu calls only on a compute-capability 9.0 device.
*/
#ifndef INFSIM_KERNELS_PREFILL_CUH
#define INFSIM_KERNELS_PREFILL_CUH

#include "cuda_common.cuh"

struct ik_prefill_params {
  const uint16_t *q, *k_new, *v_new;
  uint16_t *k_pool, *v_pool;
  const int32_t *block_table;
  void *out;
  float *lse;
  int64_t bt_stride;
  int h, g, group, bt, new_tokens, past, out_f32;
  int bt_shift; /* log2(bt) when bt is a power of two, else -1 */
  float scale_log2;
};

/* Queries per CTA of the Hopper kernel (so callers can count its CTAs). */
enum { IK_PREFILL_SM90_ROWS = 128 };

/* Launches a wgmma kernel (128 queries x 128 keys per tile) on c->stream:
 * pipeline 1 = version 6, 2 = version 14, 3 = version 14 with Q in
 * registers, 4 and 5 = version 15 (a producer warpgroup loads K/V; 5 with
 * one CTA per SM), 6 and 7 = version 16 (as 4 and 5 with K/V by bulk
 * tensor copies; infsim_prefill_args.sm90_pipeline; kernels/NOTES.md). */
infsim_status ik_prefill_sm90(ik_cuda *c, const ik_prefill_params &p, bool bf16, int reqs, int pipeline,
                              infsim_error *err);

#endif
