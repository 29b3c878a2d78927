/* Strict hexadecimal encoding and decoding. */
#ifndef VEIL_HEX_H
#define VEIL_HEX_H

#include <stddef.h>
#include <stdint.h>

#include "veil/err.h"

#ifdef __cplusplus
extern "C" {
#endif
VEIL_API_BEGIN

/* Writes the lowercase hex of in[0..n) and a terminating NUL to `out`.
 * out: must hold 2*n + 1 bytes. in and out may not overlap. */
void veil_hex_encode(char *out, const uint8_t *in, size_t n) VEIL_NONNULL(1);

/* Returns a freshly allocated lowercase hex string of in[0..n), or NULL when
 * out of memory. The caller frees it with free(). */
char *veil_hex_encode_alloc(const uint8_t *in, size_t n);

/* Decodes exactly `len` characters of hex (either case, no prefix, no
 * whitespace) into `out`.
 * Returns VEIL_OK, VEIL_ERR_NOT_HEX (odd length or a non-hex character), or
 * VEIL_ERR_BAD_LENGTH (out_cap < len / 2).
 * out_len: (out, may be NULL) receives len / 2 on success. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_hex_decode(uint8_t *out, size_t out_cap, size_t *out_len, const char *hex,
                                                size_t len, veil_err *err) VEIL_NONNULL(1);

/* Decodes hex into a buffer of exactly `want` bytes: the text must be
 * exactly 2*want characters long, optionally after a "0x"/"0X" prefix when
 * allow_0x is non-zero. Returns VEIL_OK, VEIL_ERR_NOT_HEX or VEIL_ERR_BAD_LENGTH. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_hex_decode_exact(uint8_t *out, size_t want, const char *hex, size_t len,
                                                      int allow_0x, veil_err *err) VEIL_NONNULL(1);

/* Returns 1 when hex[0..len) is non-empty, of even length and only hex
 * digits, else 0. */
int veil_hex_is_valid(const char *hex, size_t len);

VEIL_API_END
#ifdef __cplusplus
}
#endif
#endif
