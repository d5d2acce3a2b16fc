/*
** rng.c: stream seeds by hashing (run seed, purpose) with FNV-1a and a
** splitmix64 finalizer, so that nearby seeds give unrelated streams.
*/
#include "infsim/rng.h"

static uint64_t splitmix64_mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t infsim_rng_stream_seed(uint64_t run_seed, const char *purpose) {
  uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a offset basis */
  for (const unsigned char *p = (const unsigned char *)purpose; *p != '\0'; p++) {
    h ^= *p;
    h *= 0x100000001b3ULL; /* FNV prime */
  }
  return splitmix64_mix(splitmix64_mix(run_seed) ^ h);
}

gsl_rng *infsim_rng_new(uint64_t run_seed, const char *purpose) {
  gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
  if (r == NULL) return NULL;
  /* mt19937 treats seed 0 as its default seed; any other value is fine. */
  uint64_t s = infsim_rng_stream_seed(run_seed, purpose);
  gsl_rng_set(r, (unsigned long)(s == 0 ? 1 : s));
  return r;
}
