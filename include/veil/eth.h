/* Ethereum conventions used by TEE signatures: addresses, EIP-55, EIP-191 personal_sign. */
#ifndef VEIL_ETH_H
#define VEIL_ETH_H

#include <stddef.h>
#include <stdint.h>

#include "veil/err.h"
#include "veil/keys.h"

#ifdef __cplusplus
extern "C" {
#endif
VEIL_API_BEGIN

#define VEIL_ADDRESS_LEN 20
#define VEIL_ADDRESS_STR_LEN 42    /* "0x" + 40 hex */
#define VEIL_SIGNATURE_LEN 65      /* r (32) || s (32) || v (1) */
#define VEIL_SIGNATURE_STR_LEN 132 /* "0x" + 130 hex */

/* The address of `pub`: the last 20 bytes of keccak256(X || Y). */
void veil_eth_address(uint8_t out[VEIL_ADDRESS_LEN], const veil_pubkey *pub) VEIL_NONNULL(1, 2);

/* Writes "0x" + the EIP-55 mixed-case checksummed hex of `addr` and a NUL
 * (43 bytes) to `out`. */
void veil_eth_address_to_string(char out[VEIL_ADDRESS_STR_LEN + 1], const uint8_t addr[VEIL_ADDRESS_LEN])
    VEIL_NONNULL(1, 2);

/* Parses "0x" + 40 hex characters, comparing case-insensitively: any case is
 * accepted, as docs/protocol.md §1 asks of inputs. Returns VEIL_OK or VEIL_ERR_BAD_ADDRESS. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_eth_address_parse(uint8_t out[VEIL_ADDRESS_LEN], const char *s, size_t len,
                                                       veil_err *err) VEIL_NONNULL(1);

/* Strict EIP-55 validation of "0x" + 40 hex: all-lowercase and all-uppercase
 * carry no checksum and pass; mixed case must match the checksum exactly.
 * Returns VEIL_OK or VEIL_ERR_BAD_ADDRESS. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_eth_address_check_eip55(const char *s, size_t len, veil_err *err);

/* The EIP-191 personal_sign digest of msg[0..n):
 * keccak256("\x19Ethereum Signed Message:\n" || decimal(n) || msg). */
void veil_eip191_hash(uint8_t out[32], const void *msg, size_t n) VEIL_NONNULL(1);

/* Signs the EIP-191 digest of msg[0..n) with `key`: deterministic nonce
 * (RFC 6979), low-s, and out = r || s || v with v = 27 or 28.
 * Returns VEIL_OK, VEIL_ERR_BAD_KEY or VEIL_ERR_CRYPTO. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_eip191_sign(uint8_t out[VEIL_SIGNATURE_LEN], const veil_seckey *key,
                                                 const void *msg, size_t n, veil_err *err) VEIL_NONNULL(1, 2);

/* Writes "0x" + hex(sig) and a NUL (133 bytes) to `out`. */
void veil_signature_to_string(char out[VEIL_SIGNATURE_STR_LEN + 1], const uint8_t sig[VEIL_SIGNATURE_LEN])
    VEIL_NONNULL(1, 2);

/* Recovers the public key that produced `sig` (r || s || v, v one of 0, 1,
 * 27, 28) over the EIP-191 digest of msg[0..n). A high-s signature is
 * refused: every signer this protocol knows produces low-s.
 * Returns VEIL_OK or VEIL_ERR_BAD_SIGNATURE. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_eip191_recover(veil_pubkey *out, const void *msg, size_t n,
                                                    const uint8_t sig[VEIL_SIGNATURE_LEN], veil_err *err)
    VEIL_NONNULL(1);

/* As veil_eip191_recover for a signature given as 130 hex characters
 * (optionally "0x"-prefixed), returning the signer's address.
 * Returns VEIL_OK or VEIL_ERR_BAD_SIGNATURE. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_eip191_recover_address(uint8_t addr[VEIL_ADDRESS_LEN], const void *msg, size_t n,
                                                            const char *sig_hex, size_t sig_len, veil_err *err)
    VEIL_NONNULL(1);

VEIL_API_END
#ifdef __cplusplus
}
#endif
#endif
