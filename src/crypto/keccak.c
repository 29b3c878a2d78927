/* Keccak-256 (Keccak-f[1600], rate 136 bytes, original 0x01 padding).
 * OpenSSL 3.0 has SHA3-256 but not pre-standard Keccak, which Ethereum
 * addresses and EIP-191 need, so this one primitive lives here. */
#include "veil/keccak.h"

#include <string.h>

#include "veil/secure.h"

#define KECCAK_RATE 136
#define KECCAK_ROUNDS 24

static const uint64_t round_constants[KECCAK_ROUNDS] = {
    0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808aULL, 0x8000000080008000ULL,
    0x000000000000808bULL, 0x0000000080000001ULL, 0x8000000080008081ULL, 0x8000000000008009ULL,
    0x000000000000008aULL, 0x0000000000000088ULL, 0x0000000080008009ULL, 0x000000008000000aULL,
    0x000000008000808bULL, 0x800000000000008bULL, 0x8000000000008089ULL, 0x8000000000008003ULL,
    0x8000000000008002ULL, 0x8000000000000080ULL, 0x000000000000800aULL, 0x800000008000000aULL,
    0x8000000080008081ULL, 0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL,
};

/* Rotation offsets and lane order of the combined rho and pi steps, walking
 * the pi permutation from lane 1. */
static const unsigned rho_offsets[24] = {1,  3,  6,  10, 15, 21, 28, 36, 45, 55, 2,  14,
                                         27, 41, 56, 8,  25, 43, 62, 18, 39, 61, 20, 44};
static const unsigned pi_lanes[24] = {10, 7,  11, 17, 18, 3, 5,  16, 8,  21, 24, 4,
                                      15, 23, 19, 13, 12, 2, 20, 14, 22, 9,  6,  1};

static inline uint64_t rotl64(uint64_t x, unsigned n) { return (x << n) | (x >> (64 - n)); }

static void keccak_f1600(uint64_t a[25]) {
    uint64_t c[5], t;
    for (int round = 0; round < KECCAK_ROUNDS; round++) {
        /* theta */
        for (int x = 0; x < 5; x++)
            c[x] = a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20];
        for (int x = 0; x < 5; x++) {
            t = c[(x + 4) % 5] ^ rotl64(c[(x + 1) % 5], 1);
            for (int y = 0; y < 25; y += 5)
                a[y + x] ^= t;
        }
        /* rho and pi */
        t = a[1];
        for (int i = 0; i < 24; i++) {
            unsigned j = pi_lanes[i];
            uint64_t next = a[j];
            a[j] = rotl64(t, rho_offsets[i]);
            t = next;
        }
        /* chi */
        for (int y = 0; y < 25; y += 5) {
            for (int x = 0; x < 5; x++)
                c[x] = a[y + x];
            for (int x = 0; x < 5; x++)
                a[y + x] = c[x] ^ (~c[(x + 1) % 5] & c[(x + 2) % 5]);
        }
        /* iota */
        a[0] ^= round_constants[round];
    }
}

/* XORs one byte into the state at byte offset i of the little-endian lanes. */
static inline void xor_byte(uint64_t s[25], size_t i, uint8_t b) {
    s[i / 8] ^= (uint64_t)b << (8 * (i % 8));
}

void veil_keccak256_init(veil_keccak256_ctx *ctx) { memset(ctx, 0, sizeof *ctx); }

void veil_keccak256_update(veil_keccak256_ctx *ctx, const void *data, size_t n) {
    const uint8_t *p = data;
    while (n > 0) {
        if (ctx->pos == 0 && n >= KECCAK_RATE) {
            for (size_t i = 0; i < KECCAK_RATE / 8; i++) {
                uint64_t lane = 0;
                for (int k = 7; k >= 0; k--)
                    lane = lane << 8 | p[8 * i + (size_t)k];
                ctx->state[i] ^= lane;
            }
            keccak_f1600(ctx->state);
            p += KECCAK_RATE;
            n -= KECCAK_RATE;
            continue;
        }
        xor_byte(ctx->state, ctx->pos++, *p++);
        n--;
        if (ctx->pos == KECCAK_RATE) {
            keccak_f1600(ctx->state);
            ctx->pos = 0;
        }
    }
}

void veil_keccak256_final(veil_keccak256_ctx *ctx, uint8_t out[VEIL_KECCAK256_LEN]) {
    xor_byte(ctx->state, ctx->pos, 0x01);
    xor_byte(ctx->state, KECCAK_RATE - 1, 0x80);
    keccak_f1600(ctx->state);
    for (size_t i = 0; i < VEIL_KECCAK256_LEN; i++)
        out[i] = (uint8_t)(ctx->state[i / 8] >> (8 * (i % 8)));
    veil_wipe(ctx, sizeof *ctx);
}

void veil_keccak256(uint8_t out[VEIL_KECCAK256_LEN], const void *data, size_t n) {
    veil_keccak256_ctx ctx;
    veil_keccak256_init(&ctx);
    veil_keccak256_update(&ctx, data, n);
    veil_keccak256_final(&ctx, out);
}
