/*
** internal.h: what the kernel backends share and the public API dispatches
** through. Not installed; included by the .c and .cu files of kernels/.
**
** A backend is a table of function pointers plus a `self` (ggml style):
** core.c validates every argument struct once, then calls the table, so a
** backend may assume valid arguments (head_dim 128, block_tokens % 16 == 0,
** h % g == 0, non-NULL buffers).
**
** Dependencies run one way: core.c (the public API) -> a backend's table
** -> this header. A backend (cpu*.c, cuda*.cu) never calls an infsim_kernels_*
** function: what both sides need (conversions, the random fill, dtype
** sizes) lives here as inline helpers, and core.c reaches the backends only
** through ik_cpu_backend() / ik_cuda_backend(). The scalar helpers below are `static
** inline` and marked host+device under nvcc so that the CPU reference and
** the CUDA kernels round fp16/bf16 and draw random inputs bit-identically.
*/
#ifndef INFSIM_KERNELS_INTERNAL_H
#define INFSIM_KERNELS_INTERNAL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "infsim/kernels.h"

#ifdef __CUDACC__
#define IK_HD __host__ __device__ __forceinline__
#else
#define IK_HD static inline
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- fp16 / bf16 <-> float, round to nearest even --------------------- */

IK_HD uint32_t ik_f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

IK_HD float ik_bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

IK_HD float ik_bf16_to_f32(uint16_t b) { return ik_bits_f32((uint32_t)b << 16); }

IK_HD uint16_t ik_f32_to_bf16(float f) {
  uint32_t u = ik_f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

IK_HD float ik_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  if (exp == 0x1fu) return ik_bits_f32(sign | 0x7f800000u | (man << 13));
  if (exp == 0) {
    /* Subnormal: value = man * 2^-24, exact in float. */
    float v = (float)man * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  return ik_bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

IK_HD uint16_t ik_f32_to_f16(float f) {
  uint32_t u = ik_f32_bits(f);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65536: inf */
  if (a < 0x38800000u) {
    /* Result is subnormal (or zero): units of 2^-24, rounded half to even. */
    if (a < 0x33000000u) return sign; /* below half the smallest subnormal */
    uint32_t exp = a >> 23;
    uint32_t man = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - exp; /* 14..24 */
    uint32_t q = man >> shift;
    uint32_t rem = man & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return (uint16_t)(sign | q);
  }
  /* Normal: rebias exponent, round the 13 dropped mantissa bits. */
  uint32_t r = a - 0x38000000u; /* exponent 127 -> 15 */
  r += 0xfffu + ((r >> 13) & 1u);
  return (uint16_t)(sign | (r >> 13));
}

IK_HD float ik_load(const void *base, infsim_kdtype t, int64_t i) {
  if (t == INFSIM_KDTYPE_F32) return ((const float *)base)[i];
  uint16_t v = ((const uint16_t *)base)[i];
  return t == INFSIM_KDTYPE_BF16 ? ik_bf16_to_f32(v) : ik_f16_to_f32(v);
}

IK_HD void ik_store(void *base, infsim_kdtype t, int64_t i, float v) {
  if (t == INFSIM_KDTYPE_F32)
    ((float *)base)[i] = v;
  else
    ((uint16_t *)base)[i] = t == INFSIM_KDTYPE_BF16 ? ik_f32_to_bf16(v) : ik_f32_to_f16(v);
}

/* ---- counter-based random inputs (splitmix64 finalizer) --------------- */

IK_HD uint64_t ik_mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/* Uniform in [lo, hi): 24 random bits make u exact in float; the product
 * and sum are two separately rounded float operations on both backends
 * (nvcc is told not to contract them: see __fmul_rn in fill_copy.cu). */
IK_HD float ik_uniform_u(uint64_t seed, int64_t i) {
  uint64_t x = ik_mix64(seed ^ ik_mix64((uint64_t)i));
  return (float)(x >> 40) * 5.9604644775390625e-8f;
}

/* Element size of a dtype (public: infsim_kdtype_bytes). */
IK_HD size_t ik_dtype_bytes(infsim_kdtype t) { return t == INFSIM_KDTYPE_F32 ? 4 : 2; }

/* The host fill that infsim_kernels_fill_random_host exposes and the CPU
 * backend runs: the same per-element function as the CUDA fill kernel. */
static inline void ik_fill_random_host(void *host, infsim_kdtype t, int64_t count, uint64_t seed, float lo,
                                       float hi) {
  float span = hi - lo;
  for (int64_t i = 0; i < count; i++) {
    float prod = span * ik_uniform_u(seed, i);
    ik_store(host, t, i, lo + prod);
  }
}

/* The wgmma pipeline `auto` runs on compute capability 9.0 (public:
 * infsim_kernels_prefill_sm90_auto; the CUDA backend's prefill takes it
 * from here, so the CPU tests check the very rule it runs). Version 18's
 * consumers (kernels/NOTES.md 18): one CTA per SM over the work tiles for
 * prompts up to 4K tokens, prefix included (the static dealing evens out
 * the causal imbalance and the next tile's loads overlap the last one's
 * end); past that one CTA per work tile, head by head on a fresh prompt
 * (the hardware deals a head's query tiles side by side, so their K/V
 * stays in L2), in groups of heads after a cached prefix (1.04-1.05x on
 * chunks after 12-14K tokens, 0.97x on fresh prompts). Each takes the
 * grid's twin with the K/V append folded in (13, 14 and 15 for 10, 11 and
 * 12), which reads the new keys from k_new / v_new and the cached prefix's
 * from the pool: on the H200, medians of five rotated rounds, 14 over 11
 * 1.07-1.32x at 1K and 4K and 13 over 10 1.04-1.06x at 16K on fresh
 * prompts, on 64/8, 32/32 and 8/1 heads alike (kernels/NOTES.md 20), and
 * the chunks of kernels/NOTES.md 21. A prefix whose length is not a
 * multiple of 16 would put keys of both kinds in one 16-key run (one load
 * box), so such a chunk runs the separate append and the unfused grid
 * (ik_sm90_can_fold: the launch asks it of a pipeline named outright
 * too). Fresh prompts of 2K-4K tokens with at least 32 query heads on the
 * GPU take 11 (the append kernel, then the unfused persistent grid) with
 * grouped KV heads and 13 with one KV head a query head: at 4K, 11 over
 * 14 read 1.043x (H200, six rotated rounds of 2026-12-06) and 1.067x
 * (H100, three) on 64/8 heads, and 13 over 14 1.064x and 1.022x on
 * 32/32; at 1K and 2K 14 won on every layout. With fewer heads the
 * persistent grid keeps its lead (8/1: 11 over 14 0.95-0.96x at 3K and
 * 4K on an H100; 13 on 8/8 and 10/10 heads took 1.17-1.38x 14's time in
 * the calibration); kernels/NOTES.md, "Prefill at 4K: auto's pipeline". */
static inline bool ik_sm90_can_fold(int64_t past_tokens) { return past_tokens % 16 == 0; }

static inline int32_t ik_sm90_auto_pipeline(int64_t past_tokens, int64_t new_tokens, int32_t q_heads,
                                            int32_t kv_heads) {
  const bool fresh = past_tokens == 0, fold = ik_sm90_can_fold(past_tokens);
  if (fresh && new_tokens > 2048 && new_tokens <= 4096 && q_heads >= 32) return q_heads > kv_heads ? 11 : 13;
  if (past_tokens + new_tokens <= 4096) return fold ? 14 : 11;
  return fresh ? 13 : fold ? 15 : 12;
}

/* The split merge that MA decode's split_merge 0 (auto) runs (public:
 * infsim_kernels_decode_auto_merge; the CUDA launch takes it from here).
 * one_wave: the launch's CTAs fit one wave, counting with splits one more
 * a row group (split_merge 6's). Without remote partials 3 (one split:
 * kernel 1, which never reaches the split merge). With splits, 6 (a CTA
 * of their own merges the partials into one more split entry while the
 * splits stream) where that grid fits one wave: on an H200 with 64/8
 * heads, ten rotated rounds (2026-12-06), b=1/8K (21 splits), fp32 and
 * fp16, R = 1-8, 6 added -0.05..0.10 us (<= 0.5% of the decode) against
 * 3's 0.32-0.79 and 5's 0.70-0.85, and b=1/1K (8 splits) 0.22-0.28 against
 * 0.22-0.70; with a second wave (b=8/1K, 4 splits: 320 CTAs on 264 slots)
 * it lost (0.54-4.56 us). Otherwise 4 (split s's warps start from
 * partials s, s + S, .. as their softmax states, the first loaded with
 * the Q tile; the last CTA merges local splits only) where each warp
 * takes at most one partial (R <= 4 splits), else 3 (the last CTA merges
 * the partials with the local splits). With one split (kernel 1, auto's
 * grid 1), 4 up to 8 partials, else 5 (the fold loaded after the stream,
 * four partials a round trip). On an H100 (64/8 heads, ten rotated
 * rounds, 2026-12-07, time over the decode alone), 4 against what auto
 * ran before (3, or 5 for one partial at up to 8 splits; 1 or 5 with
 * one split): b=8/1K (4 splits) R = 1-2 -0.01..0.03 us against 0.25-0.51
 * (fp16 R = 2: 2.36 % of the decode, over the 2 % goal), b=8/8K R = 1-8
 * -0.06..0.69 against 0.14-1.05, b=128/8K (one split, grid 1) R = 1-8
 * -1.46..12.66 against 3.38-20.20; at batch 1 (one wave) 6 stays ahead
 * (b=1/8K: -0.14..-0.04 against 4's 0.42-0.62). At batch 2-4 (8K tokens,
 * 8-16 splits outside one wave with 6's CTAs) 4 is also the fastest
 * (H100, 2026-12-07, five rounds: R = 1-8 -0.24..0.42 us against 3's
 * 0.21-1.12 and 6's 0.66-3.90). kernels/NOTES.md has the rounds. */
static inline int32_t ik_decode_auto_merge(int32_t splits, int32_t num_remote, bool one_wave) {
  if (num_remote <= 0) return 3;
  if (splits > 1) return one_wave ? 6 : num_remote <= 4 * splits ? 4 : 3;
  return num_remote <= 8 ? 4 : 5;
}

/* The decode grid that decode_grid 0 (auto) runs for one split
 * (public: infsim_kernels_decode_auto_grid): the persistent grid (2) up
 * to 2048 tokens of context or where one CTA a row group fits one wave,
 * else one CTA a row group (1), with up to 8 remote partials as without
 * them; past 8 partials 1. With partials each
 * warp of the persistent grid starts from partials warp, warp + 4, .. as
 * its softmax state (seed_remote, ma_decode.cuh), loaded with the Q tile,
 * and nothing follows the stream. On an H100 (64/8 heads, 2026-12-06,
 * three calls of 9-12 rounds, time over the persistent grid's decode
 * alone, fp32 / fp16 partials): one partial added 0.90-0.99 / 0.83-0.98
 * us at b=32/1K where kernel 1's fold after its merge added 1.77-2.02,
 * 0.94-1.18 / 0.74-1.32 at b=32/8K against 1.31-1.84, and 2.68-2.91 /
 * 2.10-2.43 at b=128/1K (four waves) against 3.03-4.64 / 2.51-4.19; 8
 * partials 3.32-3.39 / 2.40-2.61 at b=32/1K against split merge 5's 4.86
 * / 3.50, but at b=128/1K 15.10-15.52 / 9.06-9.30 against 13.60-16.22 /
 * 8.51-10.98, slower in two calls of three: with several waves each
 * warp's second seed is one more round trip a row group, where kernel
 * 1's fold (split merge 5) loads four partials at a time; so 5-8
 * partials took the persistent grid in one wave only. Since that seed
 * comes through the warp's last pipeline stage in the first one's round
 * trip (seed_stage), the persistent grid is ahead there too: twelve
 * rotated rounds on an H100 (2026-12-07), b=128/1K R = 8, the whole
 * decode with partials on the persistent grid less grid 1 with split
 * merge 4, median of the rounds' differences -0.25 us fp32 [-0.59..0.40]
 * and -0.73 fp16 [-1.01..-0.29] (added over the decode alone 13.86 /
 * 7.01 us against 14.11 / 7.74); at R = 4 and at b=32 the two were level
 * (within 0.2 us). Auto with this rule against the former one, nine
 * rounds in a second call: -0.70 us fp16 [-1.06..-0.46], -0.02 fp32
 * [-0.54..0.32]. Without partials, on an H200 (64/8
 * heads, batch 32-256, medians of five rounds, 2026-12-06) the persistent
 * grid took 0.941-0.980x the time at 1K tokens, 0.973-1.004x at 2K, and in
 * one wave (batch 32) 0.956-0.989x at 1K-8K: it issues a CTA's Q and first
 * tiles together, where one CTA a row group waits for Q before its first
 * tiles. With several waves at 4K-8K it took 0.994-1.007x: a row group's
 * stream dwarfs what it hides. */
static inline int32_t ik_decode_auto_grid(int64_t max_context_tokens, bool one_wave, int32_t num_remote) {
  if (num_remote > 8) return 1;
  return max_context_tokens <= 2048 || one_wave ? 2 : 1;
}

/* ---- backend table ---------------------------------------------------- */

typedef struct {
  const char *name;
  infsim_status (*open)(void **self, infsim_error *err);
  void (*close)(void *self);
  infsim_status (*describe)(void *self, infsim_kernel_device *out, infsim_error *err);
  infsim_status (*alloc)(void *self, int64_t bytes, void **out, infsim_error *err);
  void (*free_buf)(void *self, void *buf);
  infsim_status (*host_alloc)(void *self, int64_t bytes, void **out, infsim_error *err);
  void (*host_free)(void *self, void *host);
  infsim_status (*upload)(void *self, void *dst, const void *src, int64_t bytes, infsim_error *err);
  infsim_status (*download)(void *self, void *dst, const void *src, int64_t bytes, infsim_error *err);
  infsim_status (*memset_buf)(void *self, void *buf, int byte, int64_t bytes, infsim_error *err);
  infsim_status (*sync)(void *self, infsim_error *err);
  infsim_status (*fill_random)(void *self, void *buf, infsim_kdtype t, int64_t n, uint64_t seed, float lo,
                               float hi, infsim_error *err);
  infsim_status (*ma_decode)(void *self, const infsim_ma_decode_args *a, infsim_error *err);
  infsim_status (*merge)(void *self, const infsim_merge_args *a, infsim_error *err);
  infsim_status (*prefill)(void *self, const infsim_prefill_args *a, infsim_error *err);
  infsim_status (*gemm)(void *self, const infsim_gemm_args *a, infsim_error *err);
  infsim_status (*kv_copy)(void *self, const infsim_kv_copy_args *a, infsim_error *err);
  infsim_status (*staged_copy)(void *self, const infsim_staged_copy_args *a, infsim_error *err);
  /* Timing: begin marks the start; end waits and returns elapsed ms. */
  infsim_status (*timer_begin)(void *self, infsim_error *err);
  infsim_status (*timer_end)(void *self, double *ms, infsim_error *err);
  /* Evicts caches (untimed) so that a timed call starts cold. */
  infsim_status (*flush_cache)(void *self, infsim_error *err);
  void *(*native_stream)(void *self);
  infsim_status (*norm_rope)(void *self, const infsim_norm_rope_args *a, infsim_error *err);
} ik_backend;

/* The RoPE frequencies both backends use: fl32(theta^(-2i/d)), i < d/2,
 * computed in double (so they match bit for bit across backends). */
static inline void ik_rope_inv_freq(double theta, int d, float *out) {
  for (int i = 0; i < d / 2; i++) out[i] = (float)pow(theta, -2.0 * i / d);
}

const ik_backend *ik_cpu_backend(void);
/* NULL when this build has no CUDA backend (cuda_none.c). */
const ik_backend *ik_cuda_backend(void);
bool ik_cuda_usable(void);

#ifdef __cplusplus
}
#endif

#endif
