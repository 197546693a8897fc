# The internet checksum (RFC 1071): ones'-complement sums of big-endian 16-bit words, shared
# by the DSS checksum (_dss.pyx, RFC 8684 §3.3.1) and the TCP and IPv4 header checksums
# (_packet.pyx, _pcap.pyx; RFC 9293 §3.1, RFC 791).
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy


cdef extern from *:
    """
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    #define MF_LITTLE_ENDIAN 0
    #else
    #define MF_LITTLE_ENDIAN 1
    #endif
    #if defined(__GNUC__) && defined(__x86_64__)
    #include <immintrin.h>
    /* The same sum, 64 bytes a step in 256-bit registers, where the CPU has AVX2 (asked
       once, at the first long sum: the compiler checks that the OS saves the registers
       too). The same words into the same kind of 64-bit sum: the same checksum, in about
       a third of the instructions of the SSE2 loop below. */
    __attribute__((target("avx2")))
    static uint64_t mf_sum_blocks_avx2(const uint8_t* p, Py_ssize_t n, Py_ssize_t* done) {
        __m256i zero = _mm256_setzero_si256(), low = zero, high = zero;
        uint64_t lanes[4];
        Py_ssize_t i = 0;
        for (; i + 64 <= n; i += 64) {
            __m256i a = _mm256_loadu_si256((const __m256i*)(p + i));
            __m256i b = _mm256_loadu_si256((const __m256i*)(p + i + 32));
            low = _mm256_add_epi64(low, _mm256_unpacklo_epi32(a, zero));
            high = _mm256_add_epi64(high, _mm256_unpackhi_epi32(a, zero));
            low = _mm256_add_epi64(low, _mm256_unpacklo_epi32(b, zero));
            high = _mm256_add_epi64(high, _mm256_unpackhi_epi32(b, zero));
        }
        _mm256_storeu_si256((__m256i*)lanes, _mm256_add_epi64(low, high));
        /* the SSE2 code that follows must not pay for the upper halves left in use (the
           compiler adds this only from -O2; the build is -O1) */
        _mm256_zeroupper();
        *done = i;
        return lanes[0] + lanes[1] + lanes[2] + lanes[3];
    }
    static int mf_avx2 = -1;              /* not asked yet */
    static inline int mf_has_avx2(void) {
        if (mf_avx2 < 0) {
            __builtin_cpu_init();
            mf_avx2 = __builtin_cpu_supports("avx2") != 0;
        }
        return mf_avx2;
    }
    #define MF_WIDE_SUMS 1
    #else
    #define MF_WIDE_SUMS 0
    #endif
    #if defined(__SSE2__)
    #include <emmintrin.h>
    /* 32 bytes a step as eight 32-bit words, each widened to 64 bits (unpacked against
       zero) and added into two 64-bit lanes per register: no carries to fold (as
       sum_words), eight words in a dozen instructions. Returns the sum of the first
       *done bytes (a multiple of 32). Runs of 64 bytes and more go to the AVX2 loop
       first, where there is one. */
    static inline uint64_t mf_sum_blocks(const uint8_t* p, Py_ssize_t n, Py_ssize_t* done) {
        __m128i zero = _mm_setzero_si128(), low = zero, high = zero;
        uint64_t lanes[2];
        uint64_t wide = 0;
        Py_ssize_t i = 0;
    #if MF_WIDE_SUMS
        if (n >= 64 && mf_has_avx2())
            wide = mf_sum_blocks_avx2(p, n, &i);
    #endif
        for (; i + 32 <= n; i += 32) {
            __m128i a = _mm_loadu_si128((const __m128i*)(p + i));
            __m128i b = _mm_loadu_si128((const __m128i*)(p + i + 16));
            low = _mm_add_epi64(low, _mm_unpacklo_epi32(a, zero));
            high = _mm_add_epi64(high, _mm_unpackhi_epi32(a, zero));
            low = _mm_add_epi64(low, _mm_unpacklo_epi32(b, zero));
            high = _mm_add_epi64(high, _mm_unpackhi_epi32(b, zero));
        }
        _mm_storeu_si128((__m128i*)lanes, _mm_add_epi64(low, high));
        *done = i;
        return wide + lanes[0] + lanes[1];
    }
    #else
    static inline uint64_t mf_sum_blocks(const uint8_t* p, Py_ssize_t n, Py_ssize_t* done) {
        (void)p; (void)n;
        *done = 0;
        return 0;
    }
    #endif
    """
    int MF_LITTLE_ENDIAN
    uint64_t mf_sum_blocks(const uint8_t* p, Py_ssize_t n, Py_ssize_t* done) nogil


cdef inline uint64_t sum_words(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    """Sum of big-endian 16-bit words (n even) into a 64-bit accumulator, 16 bytes a step.

    The 32-bit little-endian words are added into four 64-bit accumulators: no carry to fold
    back on each add (2**32 words of 32 bits cannot overflow 64), and four independent sums
    the compiler can keep in flight or vectorise, about twice the speed of one sum of 64-bit
    words with an end-around carry per add (3.2 against 6.7 us for 64 KiB). Folded, it is
    the ones'-complement sum of the byte-swapped words, since 2**16 = 1 modulo 0xFFFF; the
    caller swaps the folded result back (RFC 1071 §2: the sum is byte-order independent and
    may be taken in wider words). Where SSE2 is there (every x86-64), mf_sum_blocks adds
    the 32-byte blocks first, the same words into the same kind of sum."""
    cdef uint64_t a = 0, b = 0, c = 0, d = 0
    cdef uint32_t w0, w1, w2, w3
    cdef Py_ssize_t i = 0
    a = mf_sum_blocks(p, n, &i)           # SSE2 (every x86-64): most of it, 32 bytes a step
    while i + 16 <= n:
        memcpy(&w0, p + i, 4)
        memcpy(&w1, p + i + 4, 4)
        memcpy(&w2, p + i + 8, 4)
        memcpy(&w3, p + i + 12, 4)
        a += w0
        b += w1
        c += w2
        d += w3
        i += 16
    while i + 4 <= n:
        memcpy(&w0, p + i, 4)
        a += w0
        i += 4
    while i + 2 <= n:
        if MF_LITTLE_ENDIAN:
            a += <uint64_t>p[i] | (<uint64_t>p[i + 1] << 8)
        else:
            a += (<uint64_t>p[i] << 8) | p[i + 1]
        i += 2
    return a + b + c + d


cdef inline uint32_t fold64(uint64_t total) noexcept nogil:
    total = (total & 0xFFFFFFFFULL) + (total >> 32)
    total = (total & 0xFFFFFFFFULL) + (total >> 32)
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return <uint32_t>total


cdef inline uint32_t swap16(uint32_t v) noexcept nogil:
    """Native-order sums are byte-swapped sums on little-endian machines (RFC 1071 §2(B))."""
    if not MF_LITTLE_ENDIAN:
        return v
    return ((v & 0xFF) << 8) | (v >> 8)


cdef inline uint32_t sum16(const uint8_t* p, Py_ssize_t n, bint odd_start) noexcept nogil:
    """Folded ones'-complement sum of ``p`` as big-endian words; ``odd_start`` when it
    continues a stream at an odd offset (its first byte is then a low byte)."""
    cdef uint32_t s = 0
    cdef uint64_t total = 0
    if n == 0:
        return 0
    if odd_start:
        total = p[0]                      # completes the previous word as its low byte
        p += 1
        n -= 1
    total += swap16(fold64(sum_words(p, n & ~1)))
    if n & 1:
        total += <uint32_t>p[n - 1] << 8  # a last odd byte is a high byte padded with zero
    s = fold64(total)
    return s


cdef inline uint32_t add16(uint32_t a, uint32_t b) noexcept nogil:
    cdef uint32_t total = a + b
    return (total & 0xFFFF) + (total >> 16)
