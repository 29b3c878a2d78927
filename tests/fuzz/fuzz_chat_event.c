/* libFuzzer target for the client's reading of a stream event
 * (veil_chat_event_open): arbitrary event data, read with a fixed key (the
 * corpus holds envelopes sealed to it) and without. Whatever it accepts must
 * be a JSON object, and its kept text must parse back to that very chunk. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "client/client_internal.h"

/* the corpus's envelopes are sealed to this key's public key (tests/fuzz/make_chat_event_seeds.py) */
static const char KEY_HEX[] = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static veil_seckey key;
    static int have_key;
    if (!have_key) {
        if (veil_seckey_from_hex(&key, KEY_HEX, 64, NULL) != VEIL_OK)
            abort();
        have_key = 1;
    }
    for (int with_key = 0; with_key < 2; with_key++) {
        veil_chat_event ev;
        if (veil_chat_event_open(&ev, with_key ? &key : NULL, (const char *)data, size, 1, NULL) != VEIL_OK)
            continue;
        if (!ev.done) {
            if (!json_is_object(ev.chunk))
                abort();
            json_t *back = json_loadb(ev.text.data ? ev.text.data : "", ev.text.len, 0, NULL);
            if (!back || !json_equal(back, ev.chunk))
                abort(); /* the text handed on says what was verified, nothing else */
            json_decref(back);
        }
        veil_chat_event_clear(&ev);
    }
    return 0;
}
