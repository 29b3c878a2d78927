/* libFuzzer target for the joiner's side of the key release
 * (docs/cluster.md): a holder's reply, untrusted, to a request a simulated
 * joiner made with a fixed ephemeral key and nonce. Nothing the fuzzer makes
 * can carry a quote of this platform that binds the exchange: an accepted
 * reply (the joiner given a key) is a failure, and so is a refusal that does
 * not say why. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/keyrelease.h"

static veil_tee *joiner;
static veil_seckey eph;
static const uint8_t jn[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                               17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    static char dir[] = "/tmp/veil-fuzz-keyreply-XXXXXX";
    if (!mkdtemp(dir))
        abort();
    veil_provider_config pc = {NULL, NULL, dir, NULL};
    veil_err err;
    uint8_t k[32];
    memset(k, 0x42, sizeof k); /* the ephemeral key the seeds' sealed keys were sealed to */
    if (veil_tee_open(&joiner, VEIL_TEE_SIM, &pc, "0.1.0", 1, &err) != VEIL_OK ||
        veil_seckey_from_bytes(&eph, k, &err) != VEIL_OK) {
        fprintf(stderr, "%s\n", err.message);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const veil_peer_policy pp = {NULL, NULL, NULL, 1};
    json_t *reply = json_loadb((const char *)data, size, 0, NULL);
    if (!reply)
        return 0;
    veil_err err;
    err.message[0] = 0;
    if (veil_key_release_accept(joiner, &pp, reply, &eph, jn, "fuzz", &err) == VEIL_OK || !err.message[0] ||
        veil_tee_has_key(joiner))
        abort();
    json_decref(reply);
    return 0;
}
