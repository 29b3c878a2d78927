/* secp256k1 keys and ECDH through libsecp256k1 (constant-time, Bitcoin Core's). */
#include "veil/keys.h"

#include <pthread.h>
#include <string.h>

#include <secp256k1_ecdh.h>

#include "secp.h"
#include "veil/hex.h"
#include "veil/secure.h"

static secp256k1_context *shared_ctx;
static pthread_once_t shared_ctx_once = PTHREAD_ONCE_INIT;

static void create_ctx(void) {
    secp256k1_context *ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    if (!ctx)
        return;
    /* Blinding against side channels; without randomness we keep the
     * unblinded (still constant-time) context rather than fail. */
    unsigned char seed[32];
    if (veil_random_bytes(seed, sizeof seed, NULL) == VEIL_OK && !secp256k1_context_randomize(ctx, seed)) {
        secp256k1_context_destroy(ctx);
        ctx = NULL;
    }
    veil_wipe(seed, sizeof seed);
    shared_ctx = ctx;
}

const secp256k1_context *veil_secp_ctx(void) {
    pthread_once(&shared_ctx_once, create_ctx);
    return shared_ctx;
}

int veil_secp_load(secp256k1_pubkey *out, const veil_pubkey *key) {
    return secp256k1_ec_pubkey_parse(secp256k1_context_static, out, key->bytes, VEIL_PUBKEY_LEN);
}

veil_rc veil_seckey_from_bytes(veil_seckey *out, const uint8_t in[32], veil_err *err) {
    if (!secp256k1_ec_seckey_verify(secp256k1_context_static, in))
        return veil_err_set(err, VEIL_ERR_BAD_KEY, "private key is zero or not below the curve order");
    memcpy(out->bytes, in, VEIL_SECKEY_LEN);
    return VEIL_OK;
}

veil_rc veil_seckey_generate(veil_seckey *out, veil_err *err) {
    uint8_t candidate[32];
    /* A uniformly random 256-bit value is out of range with probability
     * about 2^-128, so this loop runs once in practice. */
    for (;;) {
        veil_rc rc = veil_random_bytes(candidate, sizeof candidate, err);
        if (rc != VEIL_OK)
            return rc;
        if (veil_seckey_from_bytes(out, candidate, NULL) == VEIL_OK)
            break;
    }
    veil_wipe(candidate, sizeof candidate);
    return VEIL_OK;
}

veil_rc veil_seckey_from_hex(veil_seckey *out, const char *hex, size_t len, veil_err *err) {
    uint8_t raw[32];
    veil_rc rc = veil_hex_decode_exact(raw, sizeof raw, hex, len, 1, err);
    if (rc == VEIL_OK)
        rc = veil_seckey_from_bytes(out, raw, err);
    else
        veil_err_set(err, rc, "private key must be 64 hex characters%s",
                     rc == VEIL_ERR_NOT_HEX ? " (found a non-hex character)" : "");
    veil_wipe(raw, sizeof raw);
    return rc;
}

void veil_seckey_wipe(veil_seckey *key) { veil_wipe(key, sizeof *key); }

static void serialize(veil_pubkey *out, const secp256k1_pubkey *pk) {
    size_t n = VEIL_PUBKEY_LEN;
    secp256k1_ec_pubkey_serialize(secp256k1_context_static, out->bytes, &n, pk, SECP256K1_EC_UNCOMPRESSED);
}

veil_rc veil_pubkey_from_seckey(veil_pubkey *out, const veil_seckey *sec, veil_err *err) {
    const secp256k1_context *ctx = veil_secp_ctx();
    if (!ctx)
        return veil_err_set(err, VEIL_ERR_CRYPTO, "could not create a secp256k1 context");
    secp256k1_pubkey pk;
    if (!secp256k1_ec_pubkey_create(ctx, &pk, sec->bytes))
        return veil_err_set(err, VEIL_ERR_BAD_KEY, "private key is zero or not below the curve order");
    serialize(out, &pk);
    return VEIL_OK;
}

veil_rc veil_pubkey_parse(veil_pubkey *out, const uint8_t *in, size_t len, veil_err *err) {
    uint8_t buf[VEIL_PUBKEY_LEN];
    if (len == 64) {
        buf[0] = 0x04;
        memcpy(buf + 1, in, 64);
    } else if (len == 65) {
        if (in[0] != 0x04)
            return veil_err_set(err, VEIL_ERR_BAD_POINT, "65-byte public key must start with 0x04 (uncompressed)");
        memcpy(buf, in, 65);
    } else {
        return veil_err_set(err, VEIL_ERR_BAD_LENGTH, "public key must be 64 or 65 bytes, got %zu", len);
    }
    secp256k1_pubkey pk;
    if (!secp256k1_ec_pubkey_parse(secp256k1_context_static, &pk, buf, sizeof buf))
        return veil_err_set(err, VEIL_ERR_BAD_POINT, "public key is not a point on secp256k1");
    memcpy(out->bytes, buf, sizeof buf);
    return VEIL_OK;
}

veil_rc veil_pubkey_parse_hex(veil_pubkey *out, const char *hex, size_t len, veil_err *err) {
    if (len != 128 && len != 130)
        return veil_err_set(err, VEIL_ERR_BAD_LENGTH, "public key must be 128 or 130 hex characters, got %zu", len);
    uint8_t raw[65];
    size_t n;
    veil_rc rc = veil_hex_decode(raw, sizeof raw, &n, hex, len, err);
    if (rc != VEIL_OK)
        return rc;
    return veil_pubkey_parse(out, raw, n, err);
}

void veil_pubkey_to_hex(char out[VEIL_PUBKEY_HEX_LEN + 1], const veil_pubkey *key) {
    veil_hex_encode(out, key->bytes, VEIL_PUBKEY_LEN);
}

/* libsecp256k1 hashes the shared point by default; the protocol wants the raw x. */
static int copy_x(unsigned char *output, const unsigned char *x32, const unsigned char *y32, void *data) {
    (void)y32;
    (void)data;
    memcpy(output, x32, 32);
    return 1;
}

veil_rc veil_ecdh_x(uint8_t shared[32], const veil_seckey *sec, const veil_pubkey *pub, veil_err *err) {
    const secp256k1_context *ctx = veil_secp_ctx();
    if (!ctx)
        return veil_err_set(err, VEIL_ERR_CRYPTO, "could not create a secp256k1 context");
    secp256k1_pubkey pk;
    if (!veil_secp_load(&pk, pub))
        return veil_err_set(err, VEIL_ERR_BAD_POINT, "public key is not a point on secp256k1");
    if (!secp256k1_ecdh(ctx, shared, &pk, sec->bytes, copy_x, NULL))
        return veil_err_set(err, VEIL_ERR_BAD_KEY, "private key is zero or not below the curve order");
    return VEIL_OK;
}
