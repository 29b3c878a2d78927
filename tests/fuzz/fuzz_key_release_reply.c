/* libFuzzer target for the joiner's side of the key release
 * (docs/cluster.md): a holder's reply, untrusted, to a request a simulated
 * joiner made with a fixed ephemeral key and nonce. Nothing the fuzzer makes
 * can carry a quote of this platform that binds the exchange: an accepted
 * reply (the joiner given a key) is a failure, and so is a refusal that does
 * not say why. The request it answers carries the joiner's own quote. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/keyrelease.h"
#include "veil/hex.h"

static veil_tee *joiner;
static veil_seckey eph;
static json_t *request; /* the request the replies answer: its nonce and the joiner's own quote */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    static char dir[] = "/tmp/veil-fuzz-keyreply-XXXXXX";
    if (!mkdtemp(dir))
        abort();
    veil_provider_config pc = {NULL, NULL, dir, NULL};
    veil_err err;
    uint8_t k[32];
    memset(k, 0x42, sizeof k); /* the ephemeral key the seeds' sealed keys were sealed to */
    uint8_t rd[64] = {0}, *q = NULL;
    size_t qlen = 0;
    char *log = NULL;
    if (veil_tee_open(&joiner, VEIL_TEE_SIM, &pc, "0.1.0", 1, &err) != VEIL_OK ||
        veil_seckey_from_bytes(&eph, k, &err) != VEIL_OK ||
        veil_tee_quote(joiner, rd, &q, &qlen, &log, &err) != VEIL_OK) {
        fprintf(stderr, "%s\n", err.message);
        abort();
    }
    char *qhex = veil_hex_encode_alloc(q, qlen);
    request =
        json_pack("{s:s, s:s, s:o}", "joiner_nonce", "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20",
                  "quote", qhex, "event_log", log ? json_loads(log, 0, NULL) : json_array());
    free(qhex);
    free(q);
    free(log);
    if (!request)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const veil_peer_policy pp = {NULL, NULL, NULL, 1};
    json_t *reply = json_loadb((const char *)data, size, 0, NULL);
    if (!reply)
        return 0;
    veil_err err;
    err.message[0] = 0;
    if (veil_key_release_accept(joiner, &pp, request, reply, &eph, "fuzz", &err) == VEIL_OK || !err.message[0] ||
        veil_tee_has_key(joiner))
        abort();
    json_decref(reply);
    return 0;
}
