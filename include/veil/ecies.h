/* The E2EE envelope (docs/protocol.md §2): ECDH on secp256k1 -> HKDF-SHA256 ->
 * AES-256-GCM, wire form ephemeral pubkey (65) || iv (12) || ciphertext || tag (16). */
#ifndef VEIL_ECIES_H
#define VEIL_ECIES_H

#include <stddef.h>
#include <stdint.h>

#include "veil/err.h"
#include "veil/keys.h"

#ifdef __cplusplus
extern "C" {
#endif
VEIL_API_BEGIN

#define VEIL_ECIES_IV_LEN 12
#define VEIL_ECIES_TAG_LEN 16
/* Bytes an envelope adds to its plaintext; also the smallest valid envelope. */
#define VEIL_ECIES_OVERHEAD (VEIL_PUBKEY_LEN + VEIL_ECIES_IV_LEN + VEIL_ECIES_TAG_LEN)
#define VEIL_ECIES_MIN_HEX_LEN (2 * VEIL_ECIES_OVERHEAD)

/* Seals pt[0..n) to `to` with a fresh ephemeral key and IV from the OS CSPRNG.
 * out: receives n + VEIL_ECIES_OVERHEAD bytes; out_cap must be at least that.
 * Returns VEIL_OK, VEIL_ERR_BAD_LENGTH (out_cap too small), VEIL_ERR_RANDOM
 * or VEIL_ERR_CRYPTO. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_ecies_seal(uint8_t *out, size_t out_cap, const veil_pubkey *to, const uint8_t *pt,
                                                size_t n, veil_err *err) VEIL_NONNULL(1, 3);

/* As veil_ecies_seal, with the ephemeral key and IV given by the caller.
 * Only for known-answer tests and cross-implementation checks: reusing an
 * (ephemeral key, IV) pair for two plaintexts breaks AES-GCM. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_ecies_seal_with(uint8_t *out, size_t out_cap, const veil_pubkey *to,
                                                     const veil_seckey *ephemeral, const uint8_t iv[VEIL_ECIES_IV_LEN],
                                                     const uint8_t *pt, size_t n, veil_err *err) VEIL_NONNULL(1, 3, 4);

/* Opens the envelope env[0..n) with `key`.
 * out: receives n - VEIL_ECIES_OVERHEAD plaintext bytes (out_cap at least
 * that); out_len: (out) their count. On failure nothing of the plaintext is
 * left in `out`.
 * Returns VEIL_OK, VEIL_ERR_TOO_SHORT (n < 93), VEIL_ERR_BAD_POINT (the
 * ephemeral key is not on the curve), VEIL_ERR_AUTH_FAILED (wrong key or
 * tampered bytes), VEIL_ERR_BAD_LENGTH (out_cap too small) or VEIL_ERR_CRYPTO. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_ecies_open(uint8_t *out, size_t out_cap, size_t *out_len, const veil_seckey *key,
                                                const uint8_t *env, size_t n, veil_err *err) VEIL_NONNULL(1, 4);

/* Seals pt[0..n) to `to` and returns the lowercase hex wire form in
 * *out_hex (allocated; the caller frees it with free()). */
VEIL_WARN_UNUSED_RESULT veil_rc veil_ecies_seal_hex(char **out_hex, const veil_pubkey *to, const uint8_t *pt, size_t n,
                                                    veil_err *err) VEIL_NONNULL(1, 2);

/* Ephemeral key pairs made ahead of time by a background thread at idle
 * priority (SCHED_IDLE), so that sealing under load costs one ECDH instead of
 * a key generation and an ECDH. Filling starts with the first seal. Each pair
 * is used once and wiped; the store is locked in memory (best effort) and
 * wiped when freed. Thread-safe. */
typedef struct veil_ephemeral_pool veil_ephemeral_pool;
veil_ephemeral_pool *veil_ephemeral_pool_new(size_t capacity);
void veil_ephemeral_pool_free(veil_ephemeral_pool *p);
size_t veil_ephemeral_pool_count(veil_ephemeral_pool *p);

/* As veil_ecies_seal_hex, taking the ephemeral key from `pool` when it has
 * one (pool may be NULL: a fresh key, as veil_ecies_seal_hex). */
VEIL_WARN_UNUSED_RESULT veil_rc veil_ecies_seal_hex_pooled(char **out_hex, veil_ephemeral_pool *pool,
                                                           const veil_pubkey *to, const uint8_t *pt, size_t n,
                                                           veil_err *err) VEIL_NONNULL(1, 3);

/* Opens the hex wire form hex[0..len) (either case).
 * *out: (out, allocated) the plaintext followed by one NUL byte not counted
 * in *out_len; free it with veil_free_secret(*out, *out_len + 1).
 * Returns VEIL_OK, VEIL_ERR_NOT_HEX (odd length or a non-hex character),
 * VEIL_ERR_TOO_SHORT (fewer than 186 hex characters), VEIL_ERR_BAD_POINT,
 * VEIL_ERR_AUTH_FAILED, VEIL_ERR_NOMEM or VEIL_ERR_CRYPTO. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_ecies_open_hex(uint8_t **out, size_t *out_len, const veil_seckey *key,
                                                    const char *hex, size_t len, veil_err *err) VEIL_NONNULL(1, 2, 3);

VEIL_API_END
#ifdef __cplusplus
}
#endif
#endif
