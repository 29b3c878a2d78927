/* Keccak-256 as Ethereum uses it: the original Keccak padding (0x01), not SHA3-256 (0x06). */
#ifndef VEIL_KECCAK_H
#define VEIL_KECCAK_H

#include <stddef.h>
#include <stdint.h>

#include "veil/err.h"

#ifdef __cplusplus
extern "C" {
#endif
VEIL_API_BEGIN

#define VEIL_KECCAK256_LEN 32

/* Incremental hashing state. Plain data: copy it to fork a hash. */
typedef struct veil_keccak256_ctx {
    uint64_t state[25];
    size_t pos; /* bytes absorbed into the current 136-byte block */
} veil_keccak256_ctx;

/* Starts a new hash in `ctx` (out). */
void veil_keccak256_init(veil_keccak256_ctx *ctx) VEIL_NONNULL(1);

/* Absorbs data[0..n) (borrowed) into `ctx` (in/out). */
void veil_keccak256_update(veil_keccak256_ctx *ctx, const void *data, size_t n) VEIL_NONNULL(1);

/* Finishes the hash, writes 32 bytes to `out`, and wipes `ctx`. */
void veil_keccak256_final(veil_keccak256_ctx *ctx, uint8_t out[VEIL_KECCAK256_LEN]) VEIL_NONNULL(1, 2);

/* One-shot Keccak-256 of data[0..n) into `out`. */
void veil_keccak256(uint8_t out[VEIL_KECCAK256_LEN], const void *data, size_t n) VEIL_NONNULL(1);

VEIL_API_END
#ifdef __cplusplus
}
#endif
#endif
