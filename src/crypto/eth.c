/* Ethereum addresses, EIP-55 checksums and EIP-191 personal_sign signatures,
 * the signature scheme of TEE responses (docs/protocol.md §1, §3.5). */
#include "veil/eth.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <secp256k1_recovery.h>

#include "secp.h"
#include "veil/hex.h"
#include "veil/keccak.h"
#include "veil/secure.h"

void veil_eth_address(uint8_t out[VEIL_ADDRESS_LEN], const veil_pubkey *pub) {
    uint8_t h[32];
    veil_keccak256(h, pub->bytes + 1, 64);
    memcpy(out, h + 12, VEIL_ADDRESS_LEN);
}

/* EIP-55: a hex letter is upper case when the matching nibble of
 * keccak256(lowercase hex address) is 8 or more. */
static void checksum_case(char hex40[40]) {
    uint8_t h[32];
    veil_keccak256(h, hex40, 40);
    for (int i = 0; i < 40; i++) {
        unsigned nib = (h[i / 2] >> (i % 2 ? 0 : 4)) & 0x0f;
        if (hex40[i] >= 'a' && hex40[i] <= 'f' && nib >= 8)
            hex40[i] = (char)(hex40[i] - 'a' + 'A');
    }
}

void veil_eth_address_to_string(char out[VEIL_ADDRESS_STR_LEN + 1], const uint8_t addr[VEIL_ADDRESS_LEN]) {
    out[0] = '0';
    out[1] = 'x';
    veil_hex_encode(out + 2, addr, VEIL_ADDRESS_LEN);
    checksum_case(out + 2);
}

veil_rc veil_eth_address_parse(uint8_t out[VEIL_ADDRESS_LEN], const char *s, size_t len, veil_err *err) {
    if (len != VEIL_ADDRESS_STR_LEN || s[0] != '0' || (s[1] != 'x' && s[1] != 'X') ||
        veil_hex_decode(out, VEIL_ADDRESS_LEN, NULL, s + 2, 40, NULL) != VEIL_OK)
        return veil_err_set(err, VEIL_ERR_BAD_ADDRESS, "address must be 0x followed by 40 hex characters");
    return VEIL_OK;
}

veil_rc veil_eth_address_check_eip55(const char *s, size_t len, veil_err *err) {
    uint8_t addr[VEIL_ADDRESS_LEN];
    veil_rc rc = veil_eth_address_parse(addr, s, len, err);
    if (rc != VEIL_OK)
        return rc;
    int upper = 0, lower = 0;
    for (size_t i = 2; i < len; i++) {
        upper |= isupper((unsigned char)s[i]) != 0;
        lower |= islower((unsigned char)s[i]) != 0;
    }
    if (!(upper && lower))
        return VEIL_OK;
    char want[VEIL_ADDRESS_STR_LEN + 1];
    veil_eth_address_to_string(want, addr);
    if (memcmp(want + 2, s + 2, 40) != 0)
        return veil_err_set(err, VEIL_ERR_BAD_ADDRESS, "address fails its EIP-55 checksum (expected %s)", want);
    return VEIL_OK;
}

void veil_eip191_hash(uint8_t out[32], const void *msg, size_t n) {
    static const char prefix[] = "\x19" "Ethereum Signed Message:\n";
    char len_text[24];
    int len_len = snprintf(len_text, sizeof len_text, "%zu", n);
    veil_keccak256_ctx ctx;
    veil_keccak256_init(&ctx);
    veil_keccak256_update(&ctx, prefix, sizeof prefix - 1);
    veil_keccak256_update(&ctx, len_text, (size_t)len_len);
    veil_keccak256_update(&ctx, msg, n);
    veil_keccak256_final(&ctx, out);
}

veil_rc veil_eip191_sign(uint8_t out[VEIL_SIGNATURE_LEN], const veil_seckey *key, const void *msg,
                         size_t n, veil_err *err) {
    const secp256k1_context *ctx = veil_secp_ctx();
    if (!ctx)
        return veil_err_set(err, VEIL_ERR_CRYPTO, "could not create a secp256k1 context");
    uint8_t digest[32];
    veil_eip191_hash(digest, msg, n);
    secp256k1_ecdsa_recoverable_signature sig;
    /* NULL nonce function = RFC 6979; libsecp256k1 always emits low-s. */
    if (!secp256k1_ecdsa_sign_recoverable(ctx, &sig, digest, key->bytes, NULL, NULL))
        return veil_err_set(err, VEIL_ERR_BAD_KEY, "private key is zero or not below the curve order");
    int recid = 0;
    secp256k1_ecdsa_recoverable_signature_serialize_compact(secp256k1_context_static, out, &recid, &sig);
    out[64] = (uint8_t)(27 + recid);
    return VEIL_OK;
}

void veil_signature_to_string(char out[VEIL_SIGNATURE_STR_LEN + 1], const uint8_t sig[VEIL_SIGNATURE_LEN]) {
    out[0] = '0';
    out[1] = 'x';
    veil_hex_encode(out + 2, sig, VEIL_SIGNATURE_LEN);
}

veil_rc veil_eip191_recover(veil_pubkey *out, const void *msg, size_t n, const uint8_t sig[VEIL_SIGNATURE_LEN],
                            veil_err *err) {
    int v = sig[64];
    if (v >= 27)
        v -= 27;
    if (v != 0 && v != 1)
        return veil_err_set(err, VEIL_ERR_BAD_SIGNATURE, "signature v must be 0, 1, 27 or 28, got %d", sig[64]);
    const secp256k1_context *ctx = secp256k1_context_static;
    secp256k1_ecdsa_signature plain;
    if (!secp256k1_ecdsa_signature_parse_compact(ctx, &plain, sig))
        return veil_err_set(err, VEIL_ERR_BAD_SIGNATURE, "signature r or s is not below the curve order");
    if (secp256k1_ecdsa_signature_normalize(ctx, NULL, &plain))
        return veil_err_set(err, VEIL_ERR_BAD_SIGNATURE, "signature s is not canonical (high-s)");
    secp256k1_ecdsa_recoverable_signature rsig;
    if (!secp256k1_ecdsa_recoverable_signature_parse_compact(ctx, &rsig, sig, v))
        return veil_err_set(err, VEIL_ERR_BAD_SIGNATURE, "signature r or s is not below the curve order");
    uint8_t digest[32];
    veil_eip191_hash(digest, msg, n);
    secp256k1_pubkey pk;
    if (!secp256k1_ecdsa_recover(ctx, &pk, &rsig, digest))
        return veil_err_set(err, VEIL_ERR_BAD_SIGNATURE, "no public key recovers from this signature");
    size_t len = VEIL_PUBKEY_LEN;
    secp256k1_ec_pubkey_serialize(ctx, out->bytes, &len, &pk, SECP256K1_EC_UNCOMPRESSED);
    return VEIL_OK;
}

veil_rc veil_eip191_recover_address(uint8_t addr[VEIL_ADDRESS_LEN], const void *msg, size_t n,
                                    const char *sig_hex, size_t sig_len, veil_err *err) {
    uint8_t sig[VEIL_SIGNATURE_LEN];
    if (veil_hex_decode_exact(sig, sizeof sig, sig_hex, sig_len, 1, NULL) != VEIL_OK)
        return veil_err_set(err, VEIL_ERR_BAD_SIGNATURE, "signature must be 130 hex characters (r || s || v)");
    veil_pubkey pub;
    veil_rc rc = veil_eip191_recover(&pub, msg, n, sig, err);
    if (rc == VEIL_OK)
        veil_eth_address(addr, &pub);
    return rc;
}
