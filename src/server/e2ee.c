/* E2EE requests: decrypting message contents with the instance key, by the
 * rules of protocol.md §3.3 (Venice) and §4 (NEAR). Plaintext stays in memory. */
#include <stdio.h>
#include <string.h>

#include "server.h"
#include "veil/ecies.h"
#include "veil/hex.h"
#include "veil/secure.h"

int veil_e2ee_must_encrypt(const char *role, int near) {
    return near || (role && (!strcmp(role, "user") || !strcmp(role, "system") || !strcmp(role, "developer")));
}

static int valid_utf8(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        if (!len || i + len > n || (len == 2 && c < 0xc2))
            return 0;
        uint32_t cp = len == 1 ? c : c & (0x7f >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

/* Decrypts one string value in place. must: it has to be an envelope. */
static int open_field(const veil_seckey *key, json_t *holder, const char *field, int must, int near, veil_http_error *e) {
    json_t *v = json_object_get(holder, field);
    const char *hex = json_string_value(v);
    size_t n = json_string_length(v);
    if (!hex)
        return 1;
    if (near && n == 0)
        return 1; /* NEAR: only non-empty contents must be ciphertext */
    int looks = n >= VEIL_ECIES_MIN_HEX_LEN && veil_hex_is_valid(hex, n);
    if (!looks)
        return must ? veil_http_bad_request(e, "Encrypted field is not valid hex") : 1;
    uint8_t *pt;
    size_t len;
    veil_err err;
    if (veil_ecies_open_hex(&pt, &len, key, hex, n, &err) != VEIL_OK) {
        if (!must)
            return 1; /* an assistant or tool turn that merely looks like hex */
        return veil_http_bad_request(e, near ? "Decryption failed" : "Failed to decrypt field");
    }
    if (!valid_utf8(pt, len) || memchr(pt, 0, len)) {
        veil_free_secret(pt, len + 1);
        return veil_http_bad_request(e, near ? "Decryption failed" : "Decrypted content is not valid UTF-8");
    }
    json_object_set_new(holder, field, json_stringn((const char *)pt, len));
    veil_free_secret(pt, len + 1);
    return 1;
}

int veil_e2ee_decrypt_messages(const veil_seckey *key, json_t *messages, int near, veil_http_error *e) {
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        int must = veil_e2ee_must_encrypt(role, near);
        json_t *content = json_object_get(m, "content");
        if (json_is_array(content)) {
            size_t k;
            json_t *part;
            json_array_foreach(content, k, part) {
                if (!open_field(key, part, "text", must, near, e))
                    return 0;
            }
        } else if (!open_field(key, m, "content", must, near, e)) {
            return 0;
        }
    }
    return 1;
}
