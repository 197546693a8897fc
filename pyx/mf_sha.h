/* SHA-256 and SHA-1 block functions and single-block HMACs for pyx/_crypto.pyx.
 *
 * Written from FIPS 180-4 (Secure Hash Standard) sections 4.1-4.2 and 6.1-6.2, and
 * RFC 2104 (HMAC). MPTCP only ever hashes short inputs: an 8-byte key (token and
 * IDSN, RFC 8684 §3.1), or an HMAC message of at most 19 bytes (RFC 8684 §3.2, §3.4.1)
 * under a key of at most 16 bytes, so every message here fits in one 64-byte block
 * after padding. The HMAC key pads (ipad/opad) are hashed once per key pair and the
 * resulting states reused: each later HMAC costs exactly two compressions.
 *
 * On x86 CPUs with the SHA extensions (detected at run time with CPUID), SHA-256
 * compression uses the SHA-NI instructions; elsewhere the portable C version runs.
 * Both are checked against hashlib bit for bit by the tests.
 */
#ifndef MF_SHA_H
#define MF_SHA_H

#include <stdint.h>
#include <string.h>

/* ---------------------------------------------------------------- SHA-256 (FIPS 180-4 §6.2) */

static const uint32_t MF_K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static const uint32_t MF_SHA256_IV[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

static inline uint32_t mf_rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
static inline uint32_t mf_rotl(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static inline uint32_t mf_load_be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void mf_store_be32(uint8_t *p, uint32_t v) {
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap32(v);       /* one instruction instead of four shifts */
    memcpy(p, &v, 4);
#else
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
#endif
}

static void mf_sha256_block_portable(uint32_t st[8], const uint8_t block[64]) {
    uint32_t w[64], a, b, c, d, e, f, g, h;
    int t;
    for (t = 0; t < 16; t++) w[t] = mf_load_be32(block + 4 * t);
    for (t = 16; t < 64; t++) {
        uint32_t s0 = mf_rotr(w[t - 15], 7) ^ mf_rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
        uint32_t s1 = mf_rotr(w[t - 2], 17) ^ mf_rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    a = st[0]; b = st[1]; c = st[2]; d = st[3]; e = st[4]; f = st[5]; g = st[6]; h = st[7];
    for (t = 0; t < 64; t++) {
        uint32_t S1 = mf_rotr(e, 6) ^ mf_rotr(e, 11) ^ mf_rotr(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = h + S1 + ch + MF_K256[t] + w[t];
        uint32_t S0 = mf_rotr(a, 2) ^ mf_rotr(a, 13) ^ mf_rotr(a, 22);
        uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = S0 + maj;
        h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    st[0] += a; st[1] += b; st[2] += c; st[3] += d; st[4] += e; st[5] += f; st[6] += g; st[7] += h;
}

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define MF_HAVE_SHANI_CODE 1

/* The SHA-NI unit keeps the state as two vectors, ABEF and CDGH; each
   sha256rnds2 performs two rounds, and msg1/msg2 extend the message schedule.
   The rounds are latency-bound, so two independent blocks are interleaved: while
   one waits for its previous round, the other's round runs. */
#define MF_SHANI __attribute__((target("sha,sse4.1,ssse3")))

MF_SHANI static inline void mf_shani_load(const uint32_t st[8], __m128i *abef, __m128i *cdgh) {
    __m128i cdab = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&st[0]), 0xB1);
    __m128i efgh = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&st[4]), 0x1B);
    *abef = _mm_alignr_epi8(cdab, efgh, 8);
    *cdgh = _mm_blend_epi16(efgh, cdab, 0xF0);
}

MF_SHANI static inline void mf_shani_store(uint32_t st[8], __m128i abef, __m128i cdgh) {
    __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
    __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
    _mm_storeu_si128((__m128i *)&st[0], _mm_blend_epi16(feba, dchg, 0xF0));  /* DCBA */
    _mm_storeu_si128((__m128i *)&st[4], _mm_alignr_epi8(dchg, feba, 8));     /* HGFE */
}

MF_SHANI static inline void mf_shani_message(const uint8_t block[64], __m128i w[4]) {
    const __m128i byteswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    int i;
    for (i = 0; i < 4; i++)
        w[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(block + 16 * i)), byteswap);
}

/* Words 4(i+4)..4(i+4)+3 of the schedule replace words 4i..4i+3 (FIPS 180-4 §6.2.2 step 1). */
MF_SHANI static inline void mf_shani_schedule(__m128i w[4], int i) {
    __m128i w7 = _mm_alignr_epi8(w[(i + 3) & 3], w[(i + 2) & 3], 4);
    __m128i x = _mm_add_epi32(_mm_sha256msg1_epu32(w[i & 3], w[(i + 1) & 3]), w7);
    w[i & 3] = _mm_sha256msg2_epu32(x, w[(i + 3) & 3]);
}

MF_SHANI static void mf_sha256_block_shani(uint32_t st[8], const uint8_t block[64]) {
    __m128i abef, cdgh, abef0, cdgh0, w[4];
    int i;
    mf_shani_load(st, &abef, &cdgh);
    abef0 = abef; cdgh0 = cdgh;
    mf_shani_message(block, w);
#pragma GCC unroll 16
    for (i = 0; i < 16; i++) {   /* four rounds per step */
        __m128i wk = _mm_add_epi32(w[i & 3], _mm_loadu_si128((const __m128i *)&MF_K256[4 * i]));
        cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);
        abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(wk, 0x0E));
        if (i < 12) mf_shani_schedule(w, i);
    }
    mf_shani_store(st, _mm_add_epi32(abef, abef0), _mm_add_epi32(cdgh, cdgh0));
}

MF_SHANI static void mf_sha256_block2_shani(uint32_t st1[8], const uint8_t b1[64],
                                            uint32_t st2[8], const uint8_t b2[64]) {
    __m128i abef1, cdgh1, abef2, cdgh2, s1a, s1c, s2a, s2c, w1[4], w2[4];
    int i;
    mf_shani_load(st1, &abef1, &cdgh1);
    mf_shani_load(st2, &abef2, &cdgh2);
    s1a = abef1; s1c = cdgh1; s2a = abef2; s2c = cdgh2;
    mf_shani_message(b1, w1);
    mf_shani_message(b2, w2);
#pragma GCC unroll 16
    for (i = 0; i < 16; i++) {
        __m128i k = _mm_loadu_si128((const __m128i *)&MF_K256[4 * i]);
        __m128i wk1 = _mm_add_epi32(w1[i & 3], k), wk2 = _mm_add_epi32(w2[i & 3], k);
        cdgh1 = _mm_sha256rnds2_epu32(cdgh1, abef1, wk1);
        cdgh2 = _mm_sha256rnds2_epu32(cdgh2, abef2, wk2);
        abef1 = _mm_sha256rnds2_epu32(abef1, cdgh1, _mm_shuffle_epi32(wk1, 0x0E));
        abef2 = _mm_sha256rnds2_epu32(abef2, cdgh2, _mm_shuffle_epi32(wk2, 0x0E));
        if (i < 12) {
            mf_shani_schedule(w1, i);
            mf_shani_schedule(w2, i);
        }
    }
    mf_shani_store(st1, _mm_add_epi32(abef1, s1a), _mm_add_epi32(cdgh1, s1c));
    mf_shani_store(st2, _mm_add_epi32(abef2, s2a), _mm_add_epi32(cdgh2, s2c));
}

static int mf_cpu_has_shani(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (!(c & (1u << 19)) || !(c & (1u << 9))) return 0;          /* SSE4.1, SSSE3 */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b & (1u << 29)) != 0;                                  /* SHA */
}
#else
#define MF_HAVE_SHANI_CODE 0
static void mf_sha256_block_shani(uint32_t st[8], const uint8_t block[64]) {
    mf_sha256_block_portable(st, block);
}
static void mf_sha256_block2_shani(uint32_t st1[8], const uint8_t b1[64],
                                   uint32_t st2[8], const uint8_t b2[64]) {
    mf_sha256_block_portable(st1, b1);
    mf_sha256_block_portable(st2, b2);
}
static int mf_cpu_has_shani(void) { return 0; }
#endif

/* Which compression runs: set once at import, switchable for tests. */
static int mf_use_shani = 0;

static inline void mf_sha256_block(uint32_t st[8], const uint8_t block[64]) {
    if (mf_use_shani) mf_sha256_block_shani(st, block);
    else mf_sha256_block_portable(st, block);
}

/* ------------------------------------------------------------------ SHA-1 (FIPS 180-4 §6.1) */

static const uint32_t MF_SHA1_IV[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};

static void mf_sha1_block(uint32_t st[5], const uint8_t block[64]) {
    uint32_t w[80], a = st[0], b = st[1], c = st[2], d = st[3], e = st[4], f, k, tmp;
    int t;
    for (t = 0; t < 16; t++) w[t] = mf_load_be32(block + 4 * t);
    for (t = 16; t < 80; t++) w[t] = mf_rotl(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
    for (t = 0; t < 80; t++) {
        if (t < 20) { f = (b & c) | (~b & d); k = 0x5a827999; }
        else if (t < 40) { f = b ^ c ^ d; k = 0x6ed9eba1; }
        else if (t < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8f1bbcdc; }
        else { f = b ^ c ^ d; k = 0xca62c1d6; }
        tmp = mf_rotl(a, 5) + f + e + k + w[t];
        e = d; d = c; c = mf_rotl(b, 30); b = a; a = tmp;
    }
    st[0] += a; st[1] += b; st[2] += c; st[3] += d; st[4] += e;
}

/* ------------------------------------------------------------- single-block hashing and HMAC */

/* Hash algorithms by digest size: 32 = SHA-256, 20 = SHA-1. */
typedef struct {
    int digest_size;          /* 32 or 20 */
    uint32_t inner[8];        /* state after the (key XOR ipad) block */
    uint32_t outer[8];        /* state after the (key XOR opad) block */
} mf_hmac_key;

static inline void mf_block(int digest_size, uint32_t *st, const uint8_t block[64]) {
    if (digest_size == 32) mf_sha256_block(st, block);
    else mf_sha1_block(st, block);
}

/* Two independent blocks (interleaved on SHA-NI). */
static inline void mf_block2(int digest_size, uint32_t *st1, const uint8_t b1[64],
                             uint32_t *st2, const uint8_t b2[64]) {
    if (digest_size == 32 && mf_use_shani) {
        mf_sha256_block2_shani(st1, b1, st2, b2);
    } else {
        mf_block(digest_size, st1, b1);
        mf_block(digest_size, st2, b2);
    }
}

/* Pad ``len`` bytes already at block[0..len) (len <= 55) as the last block of a message
   whose total length is ``prefix + len`` bytes (FIPS 180-4 §5.1.1). */
static inline void mf_pad_block(uint8_t block[64], size_t len, size_t prefix) {
    uint64_t bits = (uint64_t)(prefix + len) * 8;
    block[len] = 0x80;
    memset(block + len + 1, 0, 55 - len);
    mf_store_be32(block + 56, (uint32_t)(bits >> 32));
    mf_store_be32(block + 60, (uint32_t)bits);
}

static inline void mf_digest_out(int digest_size, const uint32_t *st, uint8_t *out) {
    int i, words = digest_size == 32 ? 8 : 5;
    for (i = 0; i < words; i++) mf_store_be32(out + 4 * i, st[i]);
}

/* Hash a message of at most 55 bytes. */
static void mf_hash_short(int digest_size, const uint8_t *msg, size_t len, uint8_t *out) {
    uint32_t st[8];
    uint8_t block[64];
    memcpy(st, digest_size == 32 ? MF_SHA256_IV : MF_SHA1_IV, (size_t)digest_size);
    memcpy(block, msg, len);
    mf_pad_block(block, len, 0);
    mf_block(digest_size, st, block);
    mf_digest_out(digest_size, st, out);
}

/* RFC 2104 with a key of at most 64 bytes (MPTCP keys are 8 or 16): hash the
   (key XOR ipad) and (key XOR opad) blocks once; they are independent, so together. */
static void mf_hmac_init(mf_hmac_key *k, int digest_size, const uint8_t *key, size_t keylen) {
    uint8_t ipad[64], opad[64];
    size_t i;
    k->digest_size = digest_size;
    memset(ipad, 0x36, 64);
    memset(opad, 0x5c, 64);
    for (i = 0; i < keylen; i++) {
        ipad[i] ^= key[i];
        opad[i] ^= key[i];
    }
    memcpy(k->inner, digest_size == 32 ? MF_SHA256_IV : MF_SHA1_IV, (size_t)digest_size);
    memcpy(k->outer, k->inner, (size_t)digest_size);
    mf_block2(digest_size, k->inner, ipad, k->outer, opad);
}

/* The inner block of an HMAC: message (<= 55 bytes) after the 64-byte key block. */
static inline void mf_hmac_inner_block(uint8_t block[64], const uint8_t *msg, size_t len) {
    memcpy(block, msg, len);
    mf_pad_block(block, len, 64);
}

/* HMAC of a message of at most 55 bytes under a prepared key: two compressions. */
static void mf_hmac(const mf_hmac_key *k, const uint8_t *msg, size_t len, uint8_t *out) {
    uint32_t st[8];
    uint8_t block[64];
    int n = k->digest_size;
    memcpy(st, k->inner, (size_t)n);
    mf_hmac_inner_block(block, msg, len);
    mf_block(n, st, block);
    mf_digest_out(n, st, block);          /* the inner digest starts the outer block */
    mf_pad_block(block, (size_t)n, 64);
    memcpy(st, k->outer, (size_t)n);
    mf_block(n, st, block);
    mf_digest_out(n, st, out);
}

/* Two HMACs under two prepared keys of the same hash, interleaved (batches). */
static void mf_hmac2(const mf_hmac_key *k1, const uint8_t *msg1, size_t len1, uint8_t *out1,
                     const mf_hmac_key *k2, const uint8_t *msg2, size_t len2, uint8_t *out2) {
    uint32_t st1[8], st2[8];
    uint8_t b1[64], b2[64];
    int n = k1->digest_size;
    memcpy(st1, k1->inner, (size_t)n);
    memcpy(st2, k2->inner, (size_t)n);
    mf_hmac_inner_block(b1, msg1, len1);
    mf_hmac_inner_block(b2, msg2, len2);
    mf_block2(n, st1, b1, st2, b2);
    mf_digest_out(n, st1, b1);
    mf_digest_out(n, st2, b2);
    mf_pad_block(b1, (size_t)n, 64);
    mf_pad_block(b2, (size_t)n, 64);
    memcpy(st1, k1->outer, (size_t)n);
    memcpy(st2, k2->outer, (size_t)n);
    mf_block2(n, st1, b1, st2, b2);
    mf_digest_out(n, st1, out1);
    mf_digest_out(n, st2, out2);
}

/* Constant-time comparison (no early exit on the first differing byte). */
static inline int mf_equal_ct(const uint8_t *a, const uint8_t *b, size_t n) {
    uint8_t diff = 0;
    size_t i;
    for (i = 0; i < n; i++) diff |= a[i] ^ b[i];
    return diff == 0;
}

#endif /* MF_SHA_H */
