/*
** cpu_backend.h: the CPU reference backend's operations, shared between
** cpu.c (memory, GEMM, copies, the backend table) and cpu_attention.c.
** Buffers are host memory; every operation is synchronous.
*/
#ifndef INFSIM_KERNELS_CPU_BACKEND_H
#define INFSIM_KERNELS_CPU_BACKEND_H

#include "internal.h"

infsim_status ik_cpu_ma_decode(void *self, const infsim_ma_decode_args *a, infsim_error *err);
infsim_status ik_cpu_merge(void *self, const infsim_merge_args *a, infsim_error *err);
infsim_status ik_cpu_prefill(void *self, const infsim_prefill_args *a, infsim_error *err);
infsim_status ik_cpu_norm_rope(void *self, const infsim_norm_rope_args *a, infsim_error *err);

#endif
