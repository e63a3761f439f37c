/*
 * SHA-256, written for the launcher: a portable C version, and one using the x86 SHA extensions
 * (SHA-NI, most x86_64 CPUs since 2017-2019) chosen at run time with CPUID. Hashing the ~5.5 MB
 * that each start unpacks costs ~3 ms with SHA-NI and ~15 ms without.
 */
#include "sha256.h"
#include <cpuid.h>
#include <immintrin.h>
#include <string.h>

static const uint32_t K[64] = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void blocks_generic(uint32_t s[8], const uint8_t *p, size_t n) {
  while (n--) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++) w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
      uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
      uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7];
    for (int i = 0; i < 64; i++) {
      uint32_t t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
      uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    s[0] += a; s[1] += b; s[2] += c; s[3] += d; s[4] += e; s[5] += f; s[6] += g; s[7] += h;
    p += 64;
  }
}

/* Four message registers rotate through the 16 groups of 4 rounds (msg1/msg2 schedule the words). */
__attribute__((target("sha,sse4.1,ssse3")))
static void blocks_shani(uint32_t s[8], const uint8_t *p, size_t n) {
  const __m128i swap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  __m128i tmp = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&s[0]), 0xB1); /* CDAB */
  __m128i st1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&s[4]), 0x1B); /* EFGH */
  __m128i st0 = _mm_alignr_epi8(tmp, st1, 8);                                     /* ABEF */
  st1 = _mm_blend_epi16(st1, tmp, 0xF0);                                          /* CDGH */
  while (n--) {
    __m128i save0 = st0, save1 = st1, m[4];
#pragma GCC unroll 16
    for (int g = 0; g < 16; g++) {
      __m128i cur;
      if (g < 4) m[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * g)), swap);
      cur = m[g & 3];
      __m128i msg = _mm_add_epi32(cur, _mm_loadu_si128((const __m128i *)&K[4 * g]));
      st1 = _mm_sha256rnds2_epu32(st1, st0, msg);
      if (g >= 3 && g <= 14) {
        __m128i t = _mm_alignr_epi8(cur, m[(g - 1) & 3], 4);
        m[(g + 1) & 3] = _mm_sha256msg2_epu32(_mm_add_epi32(m[(g + 1) & 3], t), cur);
      }
      msg = _mm_shuffle_epi32(msg, 0x0E);
      st0 = _mm_sha256rnds2_epu32(st0, st1, msg);
      if (g >= 1 && g <= 12) m[(g - 1) & 3] = _mm_sha256msg1_epu32(m[(g - 1) & 3], cur);
    }
    st0 = _mm_add_epi32(st0, save0);
    st1 = _mm_add_epi32(st1, save1);
    p += 64;
  }
  tmp = _mm_shuffle_epi32(st0, 0x1B);      /* FEBA */
  st1 = _mm_shuffle_epi32(st1, 0xB1);      /* DCHG */
  st0 = _mm_blend_epi16(tmp, st1, 0xF0);   /* DCBA */
  st1 = _mm_alignr_epi8(st1, tmp, 8);      /* HGFE */
  _mm_storeu_si128((__m128i *)&s[0], st0);
  _mm_storeu_si128((__m128i *)&s[4], st1);
}

static void (*blocks)(uint32_t *, const uint8_t *, size_t);

static void choose(void) {
  unsigned a, b, c, d;
  int ni = 0;
  if (__get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSE4_1) && (c & bit_SSSE3) && __get_cpuid_max(0, 0) >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    ni = (b & (1u << 29)) != 0; /* CPUID.(EAX=7,ECX=0):EBX.SHA[bit 29] */
  }
  blocks = ni ? blocks_shani : blocks_generic;
}

const char *sha256_engine(void) {
  if (!blocks) choose();
  return blocks == blocks_shani ? "sha-ni" : "generic";
}

void sha256_init(struct sha256 *h) {
  static const uint32_t iv[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
  if (!blocks) choose();
  memcpy(h->state, iv, sizeof iv);
  h->bytes = 0;
  h->used = 0;
}

void sha256_update(struct sha256 *h, const void *data, size_t len) {
  const uint8_t *p = data;
  h->bytes += len;
  if (h->used) {
    size_t take = 64 - h->used < len ? 64 - h->used : len;
    memcpy(h->block + h->used, p, take);
    h->used += take; p += take; len -= take;
    if (h->used < 64) return;
    blocks(h->state, h->block, 1);
    h->used = 0;
  }
  if (len >= 64) {
    blocks(h->state, p, len / 64);
    p += len & ~(size_t)63;
    len &= 63;
  }
  memcpy(h->block, p, len);
  h->used = len;
}

void sha256_final(struct sha256 *h, uint8_t out[32]) {
  uint64_t bits = h->bytes * 8;
  uint8_t pad = 0x80;
  sha256_update(h, &pad, 1);
  pad = 0;
  while (h->used != 56) sha256_update(h, &pad, 1);
  uint8_t len[8];
  for (int i = 0; i < 8; i++) len[i] = (uint8_t)(bits >> (56 - 8 * i));
  sha256_update(h, len, 8);
  for (int i = 0; i < 8; i++) {
    out[4 * i] = (uint8_t)(h->state[i] >> 24);
    out[4 * i + 1] = (uint8_t)(h->state[i] >> 16);
    out[4 * i + 2] = (uint8_t)(h->state[i] >> 8);
    out[4 * i + 3] = (uint8_t)h->state[i];
  }
}

void sha256(const void *data, size_t len, uint8_t out[32]) {
  struct sha256 h;
  sha256_init(&h);
  sha256_update(&h, data, len);
  sha256_final(&h, out);
}
