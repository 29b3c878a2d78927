/* E2EE requests (the public page's E2EE section; docs/serve.md): the
 * request rules, Venice's headers and NEAR's, each refusal with its exact
 * message, and the decryption of message contents with the instance key, on
 * the worker. Plaintext stays in memory. */
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "server.h"
#include "veil/ecies.h"
#include "veil/hex.h"
#include "veil/secure.h"

int veil_e2ee_must_encrypt(const char *role, int near) {
    return near || (role && (!strcmp(role, "user") || !strcmp(role, "system") || !strcmp(role, "developer")));
}

int veil_e2ee_looks_sealed(const char *hex, size_t n) {
    return n >= VEIL_ECIES_MIN_HEX_LEN && veil_hex_is_valid(hex, n);
}

/* Decrypts one string value in place. must: it has to be an envelope. */
static int open_field(const veil_seckey *key, json_t *holder, const char *field, int must, int near,
                      veil_http_error *e) {
    json_t *v = json_object_get(holder, field);
    const char *hex = json_string_value(v);
    size_t n = json_string_length(v);
    if (!hex)
        return 1;
    if (near && n == 0)
        return 1; /* NEAR: only non-empty contents must be ciphertext */
    int looks = veil_e2ee_looks_sealed(hex, n);
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
    if (!veil_utf8_valid(pt, len) || memchr(pt, 0, len)) {
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

/* A content part that is not text (image, file, audio) anywhere in the messages. */
static int has_non_text_part(json_t *msgs) {
    size_t i, k;
    json_t *m, *part;
    json_array_foreach(msgs, i, m) {
        json_t *c = json_object_get(m, "content");
        json_array_foreach(c, k, part) {
            const char *type = json_string_value(json_object_get(part, "type"));
            if (!type || strcmp(type, "text") != 0)
                return 1;
        }
    }
    return 0;
}

const char *veil_e2ee_unsupported(json_t *body) {
    static const char *const tool_keys[] = {"tools", "tool_choice", "functions", "function_call"};
    for (size_t i = 0; i < 4; i++)
        if (json_object_get(body, tool_keys[i]))
            return "Function calling is not supported with E2EE";
    const char *web =
        json_string_value(json_object_get(json_object_get(body, "venice_parameters"), "enable_web_search"));
    if (web && !strcmp(web, "on"))
        return "Web search is not supported with E2EE";
    if (has_non_text_part(json_object_get(body, "messages")))
        return "File uploads are not supported with E2EE";
    return NULL;
}

/* A field that must be ciphertext and has not its shape (NEAR lets an empty one be). */
static int not_sealed(json_t *v, int near) {
    size_t n = json_string_length(v);
    return (n || !near) && !veil_e2ee_looks_sealed(json_string_value(v), n);
}

int veil_e2ee_request_rules(const veil_e2ee_headers *h, const veil_pubkey *instance, json_t *body,
                            veil_chat_request *out, veil_http_error *e) {
    const veil_model *m = out->model;
    json_t *vp = json_object_get(body, "venice_parameters");
    if (json_is_false(json_object_get(vp, "enable_e2ee")))
        return 1; /* TEE-only, even with the headers */
    const char *cpk = h->client_pub_key, *mpk = h->model_pub_key, *algo = h->signing_algo;
    const char *n_algo = h->near_signing_algo, *n_key = h->near_client_pub_key, *n_model = h->near_model_pub_key;
    veil_pubkey mine_check;
    int near = 0;
    if (cpk || mpk || algo) {
        if (!cpk || !mpk || !algo)
            return veil_http_bad_request(e, "E2EE requires X-Venice-TEE-Client-Pub-Key, X-Venice-TEE-Model-Pub-Key and "
                                            "X-Venice-TEE-Signing-Algo together");
        if (strcmp(algo, "ecdsa") != 0)
            return veil_http_bad_request(e, "Unsupported signing algorithm");
        if (veil_pubkey_parse_hex(&out->client_key, cpk, strlen(cpk), NULL) != VEIL_OK)
            return veil_http_bad_request(e, "Invalid public key");
        if (!m->e2ee || !instance)
            return veil_http_bad_request(e, "Model does not support E2EE");
        if (veil_pubkey_parse_hex(&mine_check, mpk, strlen(mpk), NULL) != VEIL_OK ||
            memcmp(mine_check.bytes, instance->bytes, VEIL_PUBKEY_LEN) != 0)
            return veil_http_bad_request(e, "Model public key does not match this TEE");
    } else if (n_algo || n_key) {
        char msg[160];
        if (!n_algo || !n_key)
            return veil_http_bad_request(e,
                                         "Both X-Signing-Algo and X-Client-Pub-Key headers must be present together");
        if (strcmp(n_algo, "ecdsa") != 0 && strcmp(n_algo, "ed25519") != 0) {
            snprintf(msg, sizeof msg, "Invalid X-Signing-Algo: %.40s. Must be 'ecdsa' or 'ed25519'", n_algo);
            return veil_http_bad_request(e, msg);
        }
        size_t n = strlen(n_key);
        if (!veil_hex_is_valid(n_key, n))
            return veil_http_bad_request(e, "X-Client-Pub-Key must be valid hex");
        if (strcmp(n_algo, "ecdsa") != 0 || (n / 2 != 64 && n / 2 != 65)) {
            snprintf(msg, sizeof msg, "ECDSA client public key must be 64 or 65 bytes, got %zu", n / 2);
            return veil_http_bad_request(e, strcmp(n_algo, "ecdsa") != 0 ? "Unsupported signing algorithm" : msg);
        }
        if (veil_pubkey_parse_hex(&out->client_key, n_key, n, NULL) != VEIL_OK)
            return veil_http_bad_request(e, "Invalid public key");
        if (!m->e2ee || !instance)
            return veil_http_bad_request(e, "Model does not support E2EE");
        if (n_model && (veil_pubkey_parse_hex(&mine_check, n_model, strlen(n_model), NULL) != VEIL_OK ||
                        memcmp(mine_check.bytes, instance->bytes, VEIL_PUBKEY_LEN) != 0))
            return veil_http_bad_request(e, "Model public key does not match this TEE");
        near = 1;
    } else {
        return 1;
    }
    if (!near && !json_is_true(json_object_get(body, "stream")))
        return veil_http_bad_request(e, "E2EE requires streaming");
    const char *unsupported = veil_e2ee_unsupported(body);
    if (unsupported)
        return veil_http_bad_request(e, unsupported);
    json_t *msgs = json_object_get(body, "messages");
    /* the cheap shape check now; decryption itself runs on the worker */
    size_t i;
    json_t *msg;
    json_array_foreach(msgs, i, msg) {
        const char *role = json_string_value(json_object_get(msg, "role"));
        int must = veil_e2ee_must_encrypt(role, near);
        json_t *c = json_object_get(msg, "content");
        size_t k;
        json_t *part;
        if (!must)
            continue;
        if (json_is_string(c) && not_sealed(c, near))
            return veil_http_bad_request(e, "Encrypted field is not valid hex");
        json_array_foreach(c, k, part) {
            if (not_sealed(json_object_get(part, "text"), near))
                return veil_http_bad_request(e, "Encrypted field is not valid hex");
        }
    }
    out->e2ee = 1;
    out->e2ee_near = near;
    return 1;
}
