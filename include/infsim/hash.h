/*
** hash.h: SHA-256 (FIPS 180-4), for content keys that must not collide by
** accident: a sweep point's key (resolved config, trace, seed, version) is
** compared across runs, hosts and days to decide what is already done.
**
** Streaming: init, any number of updates, final. The state is a plain
** struct on the caller's stack; nothing is allocated.
*/
#ifndef INFSIM_HASH_H
#define INFSIM_HASH_H

#include <stddef.h>
#include <stdint.h>

enum { INFSIM_SHA256_BYTES = 32, INFSIM_SHA256_HEX_BYTES = 65 /* 64 digits and NUL */ };

typedef struct {
  uint32_t h[8];
  uint64_t total_bytes;
  uint8_t block[64];
  size_t block_used;
} infsim_sha256;

void infsim_sha256_init(infsim_sha256 *s);
void infsim_sha256_update(infsim_sha256 *s, const void *data, size_t bytes);
void infsim_sha256_final(infsim_sha256 *s, uint8_t out[INFSIM_SHA256_BYTES]);

/* Lower-case hex of a digest into out (INFSIM_SHA256_HEX_BYTES). */
void infsim_sha256_hex(const uint8_t digest[INFSIM_SHA256_BYTES], char out[INFSIM_SHA256_HEX_BYTES]);

#endif
