/* The physical limit for issue #2's benchmark: a plain C loop that decodes the
   same 28-byte DSS option (checks included) into a struct, with no Python objects.
   Built and run by bench/compare_options.py; prints nanoseconds per parse. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct dss { uint64_t ack, dsn; uint32_t ssn; uint16_t len, csum; uint8_t flags; };

static inline uint32_t be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t be64(const uint8_t *p) { return ((uint64_t)be32(p) << 32) | be32(p + 4); }

__attribute__((noinline)) static int parse(const uint8_t *p, int n, struct dss *out) {
    if (n < 4 || p[0] != 30 || p[1] != n || (p[2] >> 4) != 2) return -1;
    uint8_t f = p[3] & 0x1f;
    int expected = 4 + ((f & 1) ? ((f & 2) ? 8 : 4) : 0) + ((f & 4) ? ((f & 8) ? 14 : 10) : 0);
    int csum = (n == expected + 2) && (f & 4);
    if (n != expected && !csum) return -1;
    int o = 4;
    out->flags = f;
    if (f & 1) { out->ack = (f & 2) ? be64(p + o) : be32(p + o); o += (f & 2) ? 8 : 4; }
    if (f & 4) {
        out->dsn = (f & 8) ? be64(p + o) : be32(p + o); o += (f & 8) ? 8 : 4;
        out->ssn = be32(p + o);
        out->len = (uint16_t)((p[o + 4] << 8) | p[o + 5]);
        out->csum = csum ? (uint16_t)((p[o + 6] << 8) | p[o + 7]) : 0;
    }
    return 0;
}

int main(int argc, char **argv) {
    static const uint8_t opt[28] = {0x1e, 0x1c, 0x20, 0x0f, 0x43, 0x14, 0x3b, 0x25, 0xbc, 0xe2,
        0x16, 0xb2, 0x9a, 0x91, 0x56, 0x67, 0x70, 0x4f, 0x82, 0x01, 0, 0, 0, 1, 0x07, 0xd0, 0xc3, 0xc8};
    long iterations = argc > 1 ? atol(argv[1]) : 50000000L;
    volatile uint64_t sink = 0;
    struct dss d;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < iterations; i++) {
        parse(opt, 28, &d);
        sink += d.dsn ^ d.len;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = (t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec);
    printf("%.3f\n", ns / iterations);
    return sink == 42;
}
