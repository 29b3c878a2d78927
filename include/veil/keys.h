/* secp256k1 key pairs and ECDH, on top of libsecp256k1. */
#ifndef VEIL_KEYS_H
#define VEIL_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "veil/err.h"

#ifdef __cplusplus
extern "C" {
#endif
VEIL_API_BEGIN

#define VEIL_SECKEY_LEN 32
#define VEIL_PUBKEY_LEN 65 /* 0x04 || X || Y */
#define VEIL_PUBKEY_HEX_LEN 130

/* A private key: 32 big-endian bytes, non-zero and below the group order.
 * Wipe it with veil_seckey_wipe() when done. */
typedef struct veil_seckey {
    uint8_t bytes[VEIL_SECKEY_LEN];
} veil_seckey;

/* A public key known to be a point on the curve, in uncompressed form. Only
 * the functions below produce one, so holding a veil_pubkey means it was
 * validated. */
typedef struct veil_pubkey {
    uint8_t bytes[VEIL_PUBKEY_LEN];
} veil_pubkey;

/* Makes a new private key from the OS CSPRNG.
 * Returns VEIL_OK or VEIL_ERR_RANDOM. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_seckey_generate(veil_seckey *out, veil_err *err) VEIL_NONNULL(1);

/* Checks that in[0..32) is a valid private key and copies it to `out`.
 * Returns VEIL_OK or VEIL_ERR_BAD_KEY. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_seckey_from_bytes(veil_seckey *out, const uint8_t in[32], veil_err *err)
    VEIL_NONNULL(1, 2);

/* Parses 64 hex characters (optionally "0x"-prefixed) as a private key.
 * Returns VEIL_OK, VEIL_ERR_NOT_HEX, VEIL_ERR_BAD_LENGTH or VEIL_ERR_BAD_KEY. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_seckey_from_hex(veil_seckey *out, const char *hex, size_t len, veil_err *err)
    VEIL_NONNULL(1, 2);

/* Overwrites the key with zeros. */
void veil_seckey_wipe(veil_seckey *key);

/* Computes the public key of `sec` into `out`. Returns VEIL_OK or VEIL_ERR_BAD_KEY. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_pubkey_from_seckey(veil_pubkey *out, const veil_seckey *sec, veil_err *err)
    VEIL_NONNULL(1, 2);

/* Parses a public key of 65 bytes (0x04 || X || Y) or 64 bytes (X || Y).
 * Compressed and hybrid encodings are refused.
 * Returns VEIL_OK, VEIL_ERR_BAD_LENGTH or VEIL_ERR_BAD_POINT (not on the curve). */
VEIL_WARN_UNUSED_RESULT veil_rc veil_pubkey_parse(veil_pubkey *out, const uint8_t *in, size_t len, veil_err *err)
    VEIL_NONNULL(1);

/* Parses 130 hex characters ("04" || X || Y) or 128 (X || Y), either case.
 * Returns VEIL_OK, VEIL_ERR_NOT_HEX, VEIL_ERR_BAD_LENGTH or VEIL_ERR_BAD_POINT. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_pubkey_parse_hex(veil_pubkey *out, const char *hex, size_t len, veil_err *err)
    VEIL_NONNULL(1);

/* Writes "04" || hex(X) || hex(Y) and a NUL (131 bytes) to `out`. */
void veil_pubkey_to_hex(char out[VEIL_PUBKEY_HEX_LEN + 1], const veil_pubkey *key) VEIL_NONNULL(1, 2);

/* ECDH on secp256k1: writes the 32-byte big-endian x-coordinate of sec * pub
 * to `shared` (a secret: wipe it when done). No hashing is applied.
 * Returns VEIL_OK or VEIL_ERR_BAD_KEY. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_ecdh_x(uint8_t shared[32], const veil_seckey *sec, const veil_pubkey *pub,
                                            veil_err *err) VEIL_NONNULL(1, 2, 3);

VEIL_API_END
#ifdef __cplusplus
}
#endif
#endif
