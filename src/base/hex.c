/* Strict hex: no prefixes, no whitespace, odd lengths refused. */
#include "veil/hex.h"

#include <stdlib.h>

static int nibble(unsigned char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void veil_hex_encode(char *out, const uint8_t *in, size_t n) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

char *veil_hex_encode_alloc(const uint8_t *in, size_t n) {
    if (n > (SIZE_MAX - 1) / 2)
        return NULL;
    char *out = malloc(2 * n + 1);
    if (out)
        veil_hex_encode(out, in, n);
    return out;
}

int veil_hex_is_valid(const char *hex, size_t len) {
    if (len == 0 || len % 2 != 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (nibble((unsigned char)hex[i]) < 0)
            return 0;
    return 1;
}

veil_rc veil_hex_decode(uint8_t *out, size_t out_cap, size_t *out_len, const char *hex, size_t len,
                        veil_err *err) {
    if (len % 2 != 0)
        return veil_err_set(err, VEIL_ERR_NOT_HEX, "hex has an odd number of characters (%zu)", len);
    if (out_cap < len / 2)
        return veil_err_set(err, VEIL_ERR_BAD_LENGTH, "hex decodes to %zu bytes, room for %zu",
                            len / 2, out_cap);
    for (size_t i = 0; i < len; i += 2) {
        int hi = nibble((unsigned char)hex[i]), lo = nibble((unsigned char)hex[i + 1]);
        if (hi < 0 || lo < 0)
            return veil_err_set(err, VEIL_ERR_NOT_HEX, "non-hex character at offset %zu",
                                hi < 0 ? i : i + 1);
        out[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    if (out_len)
        *out_len = len / 2;
    return VEIL_OK;
}

veil_rc veil_hex_decode_exact(uint8_t *out, size_t want, const char *hex, size_t len, int allow_0x,
                              veil_err *err) {
    if (allow_0x && len >= 2 && hex[0] == '0' && (hex[1] == 'x' || hex[1] == 'X')) {
        hex += 2;
        len -= 2;
    }
    if (len != 2 * want)
        return veil_err_set(err, VEIL_ERR_BAD_LENGTH, "expected %zu hex characters, got %zu",
                            2 * want, len);
    return veil_hex_decode(out, want, NULL, hex, len, err);
}
