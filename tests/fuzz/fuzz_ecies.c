/* libFuzzer target for E2EE envelope decoding: the input is tried as a hex
 * envelope, a raw envelope, a public key (hex and raw) and a signature, the
 * untrusted forms the server and client parse. A fixed key lets inputs from
 * the corpus (envelopes sealed to it) reach AES-GCM and beyond. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "veil/ecies.h"
#include "veil/eth.h"
#include "veil/keys.h"
#include "veil/secure.h"

/* The fuzz key: 0x11 repeated. tests/fuzz/corpus/ecies holds envelopes sealed to it. */
static veil_seckey fuzz_key(void) {
    uint8_t raw[32];
    memset(raw, 0x11, sizeof raw);
    veil_seckey k;
    if (veil_seckey_from_bytes(&k, raw, NULL) != VEIL_OK)
        abort();
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    veil_seckey key = fuzz_key();
    veil_err err;

    uint8_t *pt = NULL;
    size_t n = 0;
    if (veil_ecies_open_hex(&pt, &n, &key, (const char *)data, size, &err) == VEIL_OK) {
        if (pt[n] != '\0')
            abort();
        veil_free_secret(pt, n + 1);
    } else if (pt != NULL || n != 0) {
        abort(); /* failure must leave no output */
    }

    uint8_t *out = malloc(size ? size : 1);
    if (!out)
        return 0;
    size_t got = 0;
    if (veil_ecies_open(out, size, &got, &key, data, size, &err) == VEIL_OK && got + VEIL_ECIES_OVERHEAD != size)
        abort();
    free(out);

    veil_pubkey pub;
    if (veil_pubkey_parse_hex(&pub, (const char *)data, size, &err) == VEIL_OK && pub.bytes[0] != 0x04)
        abort();
    if (veil_pubkey_parse(&pub, data, size, &err) == VEIL_OK) {
        uint8_t shared[32];
        if (veil_ecdh_x(shared, &key, &pub, &err) != VEIL_OK)
            abort(); /* a parsed key is always usable */
    }

    if (size >= VEIL_SIGNATURE_LEN) {
        veil_pubkey signer;
        (void)veil_eip191_recover(&signer, data + VEIL_SIGNATURE_LEN, size - VEIL_SIGNATURE_LEN, data, &err);
    }
    uint8_t addr[VEIL_ADDRESS_LEN];
    (void)veil_eip191_recover_address(addr, "m", 1, (const char *)data, size, &err);
    (void)veil_eth_address_check_eip55((const char *)data, size, &err);
    return 0;
}
