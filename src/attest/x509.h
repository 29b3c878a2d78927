/* Internal: X.509 and ECDSA P-256 helpers shared by the attestation verifiers. */
#ifndef VEIL_ATTEST_X509_H
#define VEIL_ATTEST_X509_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

/* Parses certificates given as PEM blocks (whitespace and NUL padding
 * between them allowed, anything else refused) or as concatenated DER.
 * Returns NULL with *why set when the data is malformed or empty. */
STACK_OF(X509) * veil_x509_parse_certs(const uint8_t *data, size_t len, const char **why);

/* Base64 (newlines allowed) to bytes: malloc'd, *len set; NULL when it is
 * not base64 or decodes to nothing. */
uint8_t *veil_base64_decode(const char *s, size_t n, size_t *len);

/* SHA-256 of the certificate's DER; returns 1 on success. */
int veil_x509_sha256(X509 *cert, uint8_t out[32]);

/* SHA-256 of the certificate's DER SubjectPublicKeyInfo (what TLS key
 * pinning and veil's attested TLS name); returns 1 on success. */
int veil_x509_spki_sha256(X509 *cert, uint8_t out[32]);

/* The certificate of `certs` that issued none of the others (the leaf). */
X509 *veil_x509_find_leaf(STACK_OF(X509) * certs);

/* The first self-issued certificate of `certs` (a chain's root), or NULL. */
X509 *veil_x509_find_self_issued(STACK_OF(X509) * certs);

/* The certificate of `certs` whose DER hashes to `pin`, or NULL. */
X509 *veil_x509_find_pinned(STACK_OF(X509) * certs, const uint8_t pin[32]);

/* Verifies `leaf` up to the trusted `root` through the certificates of
 * `others` (any order; root and leaf among them are ignored) at Unix time
 * `at`. With check_time 0, validity windows are not checked. Returns 1 when
 * it verifies, else 0 with *x509_error set (an X509_V_ERR_* code). */
int veil_x509_verify_path(X509 *leaf, STACK_OF(X509) * others, X509 *root, int64_t at, int check_time, int *x509_error);

/* An EVP_PKEY for the raw P-256 point x || y, or NULL when it is not on the curve. */
EVP_PKEY *veil_p256_key(const uint8_t xy[64]);

/* Verifies an ECDSA/SHA-256 signature r || s (32 bytes each) over data[0..n). */
int veil_p256_verify(EVP_PKEY *key, const uint8_t sig[64], const uint8_t *data, size_t n);

/* Verifies a raw ECDSA signature r || s (half bytes each) over data[0..n)
 * hashed with md (P-384: half 48, SHA-384). */
int veil_ecdsa_verify_raw(EVP_PKEY *key, const uint8_t *sig, size_t half, const EVP_MD *md, const uint8_t *data,
                          size_t n);

/* Signs data[0..n) hashed with md; writes r || s (half bytes each) to sig. */
int veil_ecdsa_sign_raw(EVP_PKEY *key, size_t half, const EVP_MD *md, const uint8_t *data, size_t n, uint8_t *sig);

#endif
