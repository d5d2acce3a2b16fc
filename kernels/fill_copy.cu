/*
** fill_copy.cu: random fill (bit-identical to the host version: same hash,
** same two float roundings, forced here with __fmul_rn/__fadd_rn so that
** nvcc cannot contract them into one FMA) and the KV block copy (one launch
** for any number of blocks, 16-byte loads and stores).
*/
#include "cuda_common.cuh"

__global__ void fill_kernel(void *buf, infsim_kdtype t, int64_t n, uint64_t seed, float lo, float span) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float v = __fadd_rn(lo, __fmul_rn(span, ik_uniform_u(seed, i)));
    ik_store(buf, t, i, v);
  }
}

extern "C" infsim_status ik_cuda_fill_random(void *self, void *buf, infsim_kdtype t, int64_t n, uint64_t seed,
                                             float lo, float hi, infsim_error *err) {
  ik_cuda *c = (ik_cuda *)self;
  int64_t blocks = (n + 255) / 256;
  if (blocks > (int64_t)c->sm_count * 32) blocks = (int64_t)c->sm_count * 32;
  fill_kernel<<<(unsigned)blocks, 256, 0, c->stream>>>(buf, t, n, seed, lo, hi - lo);
  IK_LAUNCHED();
  return INFSIM_OK;
}

/* grid.y = block pair; grid.x threads stride over the block's 16-byte words. */
__global__ void kv_copy_kernel(char *dst, const char *src, int64_t words, const int32_t *src_ids,
                               const int32_t *dst_ids) {
  int64_t s = (int64_t)src_ids[blockIdx.y] * words;
  int64_t d = (int64_t)dst_ids[blockIdx.y] * words;
  const uint4 *in = (const uint4 *)src + s;
  uint4 *out = (uint4 *)dst + d;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < words; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = in[i];
}

extern "C" infsim_status ik_cuda_kv_copy(void *self, const infsim_kv_copy_args *a, infsim_error *err) {
  ik_cuda *c = (ik_cuda *)self;
  int64_t words = a->block_bytes / 16;
  int64_t x = (words + 255) / 256;
  if (x > 64) x = 64;
  if ((uint32_t)a->num_blocks > 65535u) {
    /* grid.y limit: split into launches of at most 65535 blocks. */
    for (int32_t off = 0; off < a->num_blocks; off += 65535) {
      int32_t n = a->num_blocks - off < 65535 ? a->num_blocks - off : 65535;
      kv_copy_kernel<<<dim3((unsigned)x, (unsigned)n), 256, 0, c->stream>>>(
          (char *)a->dst_pool, (const char *)a->src_pool, words, a->src_ids + off, a->dst_ids + off);
      IK_LAUNCHED();
    }
    return INFSIM_OK;
  }
  kv_copy_kernel<<<dim3((unsigned)x, (unsigned)a->num_blocks), 256, 0, c->stream>>>(
      (char *)a->dst_pool, (const char *)a->src_pool, words, a->src_ids, a->dst_ids);
  IK_LAUNCHED();
  return INFSIM_OK;
}
