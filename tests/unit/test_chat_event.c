/* Unit tests for the client's reading of one stream event
 * (veil_chat_event_open): [DONE], sealed fields opened with the request's
 * key and spliced into the server's text, and every malformed or hostile
 * event refused: not JSON, an error event, plaintext where a sealed field
 * belongs, an envelope for another key, a truncated envelope, text that is
 * not UTF-8. */
#include "testutil.h"

#include <jansson.h>

#include "client/client_internal.h"
#include "veil/ecies.h"

static veil_seckey key, other;
static veil_pubkey pub, other_pub;

static int setup(void **state) {
    (void)state;
    if (veil_seckey_generate(&key, NULL) != VEIL_OK || veil_pubkey_from_seckey(&pub, &key, NULL) != VEIL_OK ||
        veil_seckey_generate(&other, NULL) != VEIL_OK || veil_pubkey_from_seckey(&other_pub, &other, NULL) != VEIL_OK)
        return -1;
    return 0;
}

/* A chunk event whose delta holds `field` sealed to `to` (the seal's hex in *hex). */
static char *sealed_event(const char *field, const veil_pubkey *to, const void *text, size_t n, char **hex) {
    assert_int_equal(veil_ecies_seal_hex(hex, to, text, n, NULL), VEIL_OK);
    char *ev = malloc(strlen(*hex) + 256);
    sprintf(ev,
            "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"%s\":"
            "\"%s\"},\"finish_reason\":null}]}",
            field, *hex);
    return ev;
}

static veil_rc open_ev(veil_chat_event *ev, const veil_seckey *k, const char *data, veil_err *err) {
    return veil_chat_event_open(ev, k, data, strlen(data), 1, err);
}

static void done_event(void **state) {
    (void)state;
    veil_chat_event ev;
    assert_int_equal(open_ev(&ev, &key, "[DONE]", NULL), VEIL_OK);
    assert_true(ev.done);
    assert_null(ev.chunk);
    veil_chat_event_clear(&ev);
}

static void opens_and_splices(void **state) {
    (void)state;
    const char *fields[] = {"content", "reasoning_content"};
    const char *texts[] = {"hello \"world\"\n", "caf\xc3\xa9 \xf0\x9f\x98\x80 <tag> \\ end"};
    for (size_t f = 0; f < 2; f++)
        for (size_t t = 0; t < 2; t++) {
            char *hex;
            char *data = sealed_event(fields[f], &pub, texts[t], strlen(texts[t]), &hex);
            veil_chat_event ev;
            veil_err err;
            assert_int_equal(open_ev(&ev, &key, data, &err), VEIL_OK);
            json_t *delta = json_object_get(json_array_get(json_object_get(ev.chunk, "choices"), 0), "delta");
            assert_string_equal(json_string_value(json_object_get(delta, fields[f])), texts[t]);
            /* the text: the server's bytes around the field, the plaintext JSON-escaped in place */
            json_t *reparsed = json_loadb(ev.text.data, ev.text.len, 0, NULL);
            assert_non_null(reparsed);
            assert_true(json_equal(reparsed, ev.chunk));
            const char *at = strstr(data, hex);
            assert_memory_equal(ev.text.data, data, (size_t)(at - 1 - data));
            assert_null(memmem(ev.text.data, ev.text.len, hex, strlen(hex)));
            json_decref(reparsed);
            veil_chat_event_clear(&ev);
            free(hex);
            free(data);
        }
}

static void escaped_envelope_reserialized(void **state) {
    (void)state;
    char *hex;
    char *data = sealed_event("content", &pub, "x", 1, &hex);
    /* the envelope's first hex digit spelled as a JSON escape: the same string, other bytes */
    char *at = strstr(data, hex);
    char *esc = malloc(strlen(data) + 8);
    size_t head = (size_t)(at - data);
    memcpy(esc, data, head);
    sprintf(esc + head, "\\u00%02x%s", (unsigned char)at[0], at + 1);
    veil_chat_event ev;
    assert_int_equal(open_ev(&ev, &key, esc, NULL), VEIL_OK);
    json_t *reparsed = json_loadb(ev.text.data, ev.text.len, 0, NULL);
    assert_non_null(reparsed);
    assert_true(json_equal(reparsed, ev.chunk));
    assert_non_null(strstr(ev.text.data, "\"content\":\"x\""));
    json_decref(reparsed);
    veil_chat_event_clear(&ev);
    free(esc);
    free(hex);
    free(data);
}

static void duplicate_keys_and_decoys(void **state) {
    (void)state;
    veil_chat_event ev;
    veil_err err;
    /* a parser keeping the first "choices" would show the plaintext: duplicate keys are refused */
    char *hex;
    char *data = sealed_event("content", &pub, "real", 4, &hex);
    char *dup = malloc(strlen(data) + 128);
    sprintf(dup, "{\"choices\":[{\"delta\":{\"content\":\"EVIL\"}}],%s", data + 1);
    assert_int_equal(open_ev(&ev, &key, dup, &err), VEIL_ERR_MALFORMED);
    /* the envelope's hex also in another field, before it: the text still says what was verified */
    char *decoy = malloc(strlen(data) + strlen(hex) + 64);
    sprintf(decoy, "{\"x\":\"%s\",%s", hex, data + 1);
    assert_int_equal(open_ev(&ev, &key, decoy, &err), VEIL_OK);
    json_t *back = json_loadb(ev.text.data, ev.text.len, 0, NULL);
    assert_true(json_equal(back, ev.chunk));
    assert_string_equal(json_string_value(json_object_get(back, "x")), hex); /* the decoy kept as sent */
    json_decref(back);
    veil_chat_event_clear(&ev);
    free(decoy);
    free(dup);
    free(hex);
    free(data);
}

static void refusals(void **state) {
    (void)state;
    veil_chat_event ev;
    veil_err err;
    /* not a JSON object */
    const char *not_chunks[] = {"", "not json", "[1,2]", "\"s\"", "{\"a\":", "{\"a\":1}x"};
    for (size_t i = 0; i < sizeof not_chunks / sizeof *not_chunks; i++)
        assert_int_equal(open_ev(&ev, &key, not_chunks[i], &err), VEIL_ERR_MALFORMED);
    /* an error event: its message, bounded */
    assert_int_equal(open_ev(&ev, &key, "{\"error\":{\"message\":\"boom\"}}", &err), VEIL_ERR_IO);
    assert_non_null(strstr(err.message, "boom"));
    /* plaintext where a sealed field belongs */
    assert_int_equal(open_ev(&ev, &key, "{\"choices\":[{\"delta\":{\"content\":\"PWNED plaintext\"}}]}", &err),
                     VEIL_ERR_AUTH_FAILED);
    assert_non_null(strstr(err.message, "plaintext chunk"));
    assert_int_equal(open_ev(&ev, &key, "{\"choices\":[{\"delta\":{\"reasoning_content\":\"abcd\"}}]}", &err),
                     VEIL_ERR_AUTH_FAILED);
    /* sealed to another key */
    char *hex;
    char *data = sealed_event("content", &other_pub, "secret", 6, &hex);
    assert_int_equal(open_ev(&ev, &key, data, &err), VEIL_ERR_AUTH_FAILED);
    assert_non_null(strstr(err.message, "did not decrypt"));
    /* the same envelope, truncated or with a flipped tag byte */
    char *cut = strstr(data, hex) + strlen(hex) - 40;
    memmove(cut, cut + 40, strlen(cut + 40) + 1);
    assert_int_not_equal(open_ev(&ev, &other, data, &err), VEIL_OK);
    free(hex);
    free(data);
    data = sealed_event("content", &pub, "ok", 2, &hex);
    char *last = strstr(data, hex) + strlen(hex) - 1;
    *last = *last == '0' ? '1' : '0';
    assert_int_equal(open_ev(&ev, &key, data, &err), VEIL_ERR_AUTH_FAILED);
    free(hex);
    free(data);
    /* a plaintext that is not UTF-8 */
    data = sealed_event("content", &pub, "\xff\xfe bad", 6, &hex);
    assert_int_equal(open_ev(&ev, &key, data, &err), VEIL_ERR_AUTH_FAILED);
    assert_non_null(strstr(err.message, "UTF-8"));
    free(hex);
    free(data);
}

static void plain_mode_passes_text(void **state) {
    (void)state;
    const char *data = "{\"choices\":[{\"delta\":{\"content\":\"plain text\"}}]}";
    veil_chat_event ev;
    assert_int_equal(open_ev(&ev, NULL, data, NULL), VEIL_OK); /* no key: nothing to open */
    assert_int_equal(ev.text.len, strlen(data));
    assert_memory_equal(ev.text.data, data, ev.text.len);
    veil_chat_event_clear(&ev);
    /* without want_text no text is kept */
    assert_int_equal(veil_chat_event_open(&ev, NULL, data, strlen(data), 0, NULL), VEIL_OK);
    assert_int_equal(ev.text.len, 0);
    veil_chat_event_clear(&ev);
    /* fields that are not strings, or absent choices, are left alone */
    const char *odd[] = {"{\"choices\":[{\"delta\":{\"content\":null}}]}", "{\"choices\":[]}", "{}",
                         "{\"choices\":[{\"delta\":{\"content\":7}}]}",
                         "{\"choices\":[{\"delta\":{\"content\":\"\"}}]}"};
    for (size_t i = 0; i < sizeof odd / sizeof *odd; i++) {
        assert_int_equal(open_ev(&ev, &key, odd[i], NULL), VEIL_OK);
        veil_chat_event_clear(&ev);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(done_event),
        cmocka_unit_test(opens_and_splices),
        cmocka_unit_test(escaped_envelope_reserialized),
        cmocka_unit_test(duplicate_keys_and_decoys),
        cmocka_unit_test(refusals),
        cmocka_unit_test(plain_mode_passes_text),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
