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

/* text with the JSON string "hex" (quotes included, its first occurrence)
 * replaced by plain, JSON-escaped. Returns 0 when the envelope is not
 * spelled plainly there (escapes), and text is then left as it was. The
 * caller reads the result back to make sure the right string was replaced. */
static int splice(veil_buf *text, const char *hex, json_t *plain) {
    size_t hl = strlen(hex);
    const char *at = text->len > hl + 1 ? memmem(text->data, text->len, hex, hl) : NULL;
    if (!at || at == text->data || at[-1] != '"' || at + hl >= text->data + text->len || at[hl] != '"')
        return 0;
    char *esc = json_dumps(plain, JSON_ENCODE_ANY);
    if (!esc)
        return 0;
    size_t el = strlen(esc), head = (size_t)(at - 1 - text->data), tail = text->len - head - hl - 2;
    veil_buf next = {.secret = 1};
    int ok = veil_buf_append(&next, text->data, head) && veil_buf_append(&next, esc, el) &&
             veil_buf_append(&next, at + hl + 1, tail);
    veil_free_secret(esc, el + 1);
    if (!ok) {
        veil_buf_free(&next);
        return 0;
    }
    veil_buf_free(text);
    *text = next;
    return 1;
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
    int spliced = want_text && veil_buf_append(&out->text, data, n);
    if (want_text && !spliced) {
        json_decref(chunk);
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    }
    json_t *delta = json_object_get(json_array_get(json_object_get(chunk, "choices"), 0), "delta");
    static const char *const fields[] = {"content", "reasoning_content"};
    for (size_t i = 0; key && i < 2; i++) {
        json_t *plain;
        veil_rc rc = open_field(delta, fields[i], key, &plain, err);
        if (rc != VEIL_OK) {
            json_decref(chunk);
            veil_buf_free(&out->text);
            return rc;
        }
        if (!plain)
            continue;
        if (spliced)
            spliced = splice(&out->text, json_string_value(json_object_get(delta, fields[i])), plain);
        json_object_set_new(delta, fields[i], plain);
    }
    if (spliced) { /* the text handed on must say exactly what was verified: read it back */
        json_t *back = json_loadb(out->text.data, out->text.len, JSON_REJECT_DUPLICATES, NULL);
        spliced = back && json_equal(back, chunk);
        json_decref(back);
    }
    if (want_text &&
        !spliced) { /* an envelope spelled otherwise (escapes, or its hex elsewhere too): serialized again */
        char *dumped = json_dumps(chunk, JSON_COMPACT | JSON_PRESERVE_ORDER);
        veil_buf_free(&out->text);
        out->text.secret = 1;
        int ok = dumped && veil_buf_append(&out->text, dumped, strlen(dumped));
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
