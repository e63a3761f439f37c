/* SHA-256 (FIPS 180-4): the launcher checks every piece it unpacks against the build's digest. */
#ifndef ATTUNE_SHA256_H
#define ATTUNE_SHA256_H
#include <stddef.h>
#include <stdint.h>

struct sha256 {
  uint32_t state[8];
  uint64_t bytes;
  uint8_t block[64];
  size_t used;
};

void sha256_init(struct sha256 *h);
void sha256_update(struct sha256 *h, const void *data, size_t len);
void sha256_final(struct sha256 *h, uint8_t out[32]);
void sha256(const void *data, size_t len, uint8_t out[32]);
/* "sha-ni" when the CPU's SHA extensions are used, else "generic" (for --launcher-info). */
const char *sha256_engine(void);

#endif
