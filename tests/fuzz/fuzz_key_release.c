/* libFuzzer target for the holder's side of the key release
 * (docs/cluster.md): a joiner's request body, untrusted, against a
 * simulated holder. A request whose holder_nonce is "fresh" gets a valid
 * challenge in its place, so that inputs reach the quote and event log
 * checks behind it. Nothing the fuzzer makes can carry a quote of this
 * platform that binds the exchange: a release is a failure. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/keyrelease.h"

static veil_tee *holder;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    static char dir[] = "/tmp/veil-fuzz-keyrelease-XXXXXX";
    if (!mkdtemp(dir))
        abort();
    veil_provider_config pc = {NULL, NULL, dir, NULL};
    veil_err err;
    if (veil_tee_open(&holder, VEIL_TEE_SIM, &pc, "0.1.0", 0, &err) != VEIL_OK) {
        fprintf(stderr, "%s\n", err.message);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const veil_peer_policy pp = {NULL, NULL, NULL, 1};
    const char *body = (const char *)data;
    size_t len = size;
    char *fresh = NULL;
    json_t *doc = json_loadb(body, len, 0, NULL);
    if (json_is_object(doc) && json_is_string(json_object_get(doc, "holder_nonce")) &&
        !strcmp(json_string_value(json_object_get(doc, "holder_nonce")), "fresh")) {
        char nonce[65];
        veil_key_release_nonce(holder, nonce);
        json_object_set_new(doc, "holder_nonce", json_string(nonce));
        fresh = json_dumps(doc, JSON_COMPACT);
        if (fresh) {
            body = fresh;
            len = strlen(fresh);
        }
    }
    json_decref(doc);
    int status = 0;
    char why[300] = "";
    json_t *reply = veil_key_release_answer(holder, &pp, body, len, &status, why, sizeof why);
    if (reply || (status != 400 && status != 403) || !why[0])
        abort();
    free(fresh);
    return 0;
}
