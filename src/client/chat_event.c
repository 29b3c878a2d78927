/* One event of a chat completion stream as the client reads it: [DONE], or
 * a chunk whose sealed fields (under E2EE) are opened with this request's
 * key. The chunk's text is kept as the server sent it with each envelope
 * replaced by its plaintext in place, so that veil proxy can hand the tool
 * the server's own bytes. Every failure is a refusal of the whole answer:
 * the caller never passes on a chunk that did not open. */
#include <stdio.h>
#include <string.h>

#include "client_internal.h"
#include "veil/ecies.h"
#include "veil/secure.h"

/* Opens delta[field] (a sealed envelope): its plaintext as a JSON string
 * (new reference) in *plain, NULL when the field is absent or empty. */
static veil_rc open_field(json_t *delta, const char *field, const veil_seckey *key, json_t **plain, veil_err *err) {
    json_t *v = json_object_get(delta, field);
    size_t len = json_string_length(v);
    *plain = NULL;
    if (!json_is_string(v) || !len)
        return VEIL_OK;
    uint8_t *pt;
    size_t ptlen;
    veil_err e;
    if (veil_ecies_open_hex(&pt, &ptlen, key, json_string_value(v), len, &e) != VEIL_OK)
        return veil_err_set(err, VEIL_ERR_AUTH_FAILED, "%s",
                            e.code == VEIL_ERR_NOT_HEX || e.code == VEIL_ERR_TOO_SHORT
                                ? "a plaintext chunk arrived in an E2EE stream; refusing to show it"
                                : "a chunk did not decrypt with this session's key; refusing the answer");
    *plain = json_stringn((const char *)pt, ptlen);
    veil_free_secret(pt, ptlen + 1);
    if (!*plain)
        return veil_err_set(err, VEIL_ERR_AUTH_FAILED,
                            "a chunk decrypted to text that is not UTF-8; refusing the answer");
    return VEIL_OK;
}

/* Where the JSON string "hex" (its quotes included) is in data[0..n), or
 * NULL unless it is there exactly once. */
static const char *only_place(const char *data, size_t n, const char *hex) {
    size_t hl = strlen(hex);
    const char *at = hl && n > hl + 1 ? memmem(data, n, hex, hl) : NULL;
    if (!at || at == data || at[-1] != '"' || at + hl >= data + n || at[hl] != '"')
        return NULL;
    const char *again = memmem(at + 1, (size_t)(data + n - at - 1), hex, hl);
    return again ? NULL : at - 1;
}

/* out = data with each sealed string (n_fields of them, hex[i] at their
 * only places) replaced by plain[i], JSON-escaped. Returns 0 when that
 * cannot be shown to be the chunk that was verified: then the caller
 * serializes the opened chunk instead. The argument: the event has no
 * backslash, so every string in it is spelled as its value, and the envelope,
 * a value of the chunk, appears there once, so that place is the value's. */
static int splice(veil_buf *out, const char *data, size_t n, const char *const *hex, json_t *const *plain,
                  size_t n_fields) {
    const char *at[2];
    if (!n_fields) /* nothing opened: the server's text is the chunk */
        return veil_buf_append(out, data, n);
    if (memchr(data, '\\', n))
        return 0;
    for (size_t i = 0; i < n_fields; i++)
        if (!(at[i] = only_place(data, n, hex[i])))
            return 0;
    size_t order[2] = {0, 1};
    if (n_fields == 2 && at[1] < at[0])
        order[0] = 1, order[1] = 0;
    const char *from = data;
    for (size_t k = 0; k < n_fields; k++) {
        size_t i = order[k];
        char *esc = json_dumps(plain[i], JSON_ENCODE_ANY);
        int ok = esc && veil_buf_append(out, from, (size_t)(at[i] - from)) && veil_buf_append(out, esc, strlen(esc));
        if (esc)
            veil_free_secret(esc, strlen(esc) + 1);
        if (!ok)
            return 0;
        from = at[i] + strlen(hex[i]) + 2;
    }
    return veil_buf_append(out, from, (size_t)(data + n - from));
}

veil_rc veil_chat_event_open(veil_chat_event *out, const veil_seckey *key, const char *data, size_t n, int want_text,
                             veil_err *err) {
    memset(out, 0, sizeof *out);
    out->text.secret = 1;
    if (n == 6 && !memcmp(data, "[DONE]", 6)) {
        out->done = 1;
        return VEIL_OK;
    }
    /* duplicate keys are refused: parsers that keep the first would read another event than this one */
    json_t *chunk = json_loadb(data, n, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(chunk)) {
        json_decref(chunk);
        return veil_err_set(err, VEIL_ERR_MALFORMED, "the stream carried an event that is not a JSON chunk");
    }
    json_t *e = json_object_get(chunk, "error");
    if (e) {
        const char *m = json_string_value(json_object_get(e, "message"));
        veil_err_set(err, VEIL_ERR_IO, "the server reported an error mid-stream: %.200s", m ? m : "no message");
        json_decref(chunk);
        return VEIL_ERR_IO;
    }
    json_t *delta = json_object_get(json_array_get(json_object_get(chunk, "choices"), 0), "delta");
    static const char *const fields[] = {"content", "reasoning_content"};
    const char *hex[2];
    json_t *plain[2];
    size_t field[2], n_open = 0;
    for (size_t i = 0; key && i < 2; i++) {
        json_t *p;
        veil_rc rc = open_field(delta, fields[i], key, &p, err);
        if (rc != VEIL_OK) {
            for (size_t k = 0; k < n_open; k++)
                json_decref(plain[k]);
            json_decref(chunk);
            return rc;
        }
        if (!p)
            continue;
        hex[n_open] = json_string_value(json_object_get(delta, fields[i]));
        field[n_open] = i;
        plain[n_open++] = p;
    }
    int ok = !want_text || splice(&out->text, data, n, hex, plain, n_open);
    if (!ok)
        veil_buf_free(&out->text);
    for (size_t k = 0; k < n_open; k++) /* the chunk now holds the plaintext (hex[k] goes with it) */
        json_object_set_new(delta, fields[field[k]], plain[k]);
    if (!ok) { /* the text could not be spliced: the opened chunk, serialized again */
        char *dumped = json_dumps(chunk, JSON_COMPACT | JSON_PRESERVE_ORDER);
        out->text.secret = 1;
        ok = dumped && veil_buf_append(&out->text, dumped, strlen(dumped));
        if (dumped)
            veil_free_secret(dumped, strlen(dumped) + 1);
        if (!ok) {
            json_decref(chunk);
            veil_buf_free(&out->text);
            return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
        }
    }
    out->chunk = chunk;
    return VEIL_OK;
}

void veil_chat_event_clear(veil_chat_event *ev) {
    json_decref(ev->chunk);
    veil_buf_free(&ev->text);
    memset(ev, 0, sizeof *ev);
}
