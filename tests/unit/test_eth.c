/* Unit tests for Ethereum addresses, EIP-55 and EIP-191 signatures. */
#include "testutil.h"

#include "veil/eth.h"
#include "veil/keccak.h"

/* The web3.js / eth-account documentation vector (also in the issue). */
#define DOC_KEY "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
#define DOC_ADDR "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
#define DOC_SIG                                                                                     \
    "0xb91467e570a6466aa9e9876cbcd013baba02900b8979d43fe208a4a4f339f5fd6007e74cd82e037b800186422fc2da167c747ef045e5d18a5f5d4300f8e1a0291c"
#define ORDER_HEX "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"

static void doc_key(veil_seckey *k, veil_pubkey *p) {
    assert_int_equal(veil_seckey_from_hex(k, DOC_KEY, 64, NULL), VEIL_OK);
    assert_int_equal(veil_pubkey_from_seckey(p, k, NULL), VEIL_OK);
}

static void address_of_known_key(void **state) {
    (void)state;
    veil_seckey k;
    veil_pubkey p;
    doc_key(&k, &p);
    uint8_t addr[20];
    char s[43];
    veil_eth_address(addr, &p);
    veil_eth_address_to_string(s, addr);
    assert_string_equal(s, DOC_ADDR);
}

static void known_signature(void **state) {
    (void)state;
    veil_seckey k;
    veil_pubkey p;
    doc_key(&k, &p);
    uint8_t sig[65];
    char s[133];
    assert_int_equal(veil_eip191_sign(sig, &k, "Some data", 9, NULL), VEIL_OK);
    veil_signature_to_string(s, sig);
    assert_string_equal(s, DOC_SIG);
    uint8_t addr[20];
    char a[43];
    assert_int_equal(veil_eip191_recover_address(addr, "Some data", 9, DOC_SIG, strlen(DOC_SIG), NULL), VEIL_OK);
    veil_eth_address_to_string(a, addr);
    assert_string_equal(a, DOC_ADDR);
}

static void eip191_digest_layout(void **state) {
    (void)state;
    /* The digest is keccak256 of the prefix, the decimal length and the text. */
    uint8_t want[32], got[32];
    const char *framed = "\x19" "Ethereum Signed Message:\n" "11" "hello world";
    veil_keccak256(want, framed, strlen(framed));
    veil_eip191_hash(got, "hello world", 11);
    assert_memory_equal(got, want, 32);
    veil_eip191_hash(got, "", 0);
    veil_keccak256(want, "\x19" "Ethereum Signed Message:\n" "0", 27);
    assert_memory_equal(got, want, 32);
}

static void recovery_accepts_v_forms(void **state) {
    (void)state;
    veil_seckey k;
    veil_pubkey p, r;
    doc_key(&k, &p);
    uint8_t sig[65];
    const char *text = "abc:def";
    assert_int_equal(veil_eip191_sign(sig, &k, text, 7, NULL), VEIL_OK);
    assert_true(sig[64] == 27 || sig[64] == 28);
    assert_int_equal(veil_eip191_recover(&r, text, 7, sig, NULL), VEIL_OK);
    assert_memory_equal(r.bytes, p.bytes, 65);
    sig[64] -= 27; /* 0/1 form */
    assert_int_equal(veil_eip191_recover(&r, text, 7, sig, NULL), VEIL_OK);
    assert_memory_equal(r.bytes, p.bytes, 65);
    sig[64] ^= 1; /* the other parity recovers someone else */
    assert_int_equal(veil_eip191_recover(&r, text, 7, sig, NULL), VEIL_OK);
    assert_memory_not_equal(r.bytes, p.bytes, 65);
    veil_err err;
    sig[64] = 29;
    assert_int_equal(veil_eip191_recover(&r, text, 7, sig, &err), VEIL_ERR_BAD_SIGNATURE);
    sig[64] = 2;
    assert_int_equal(veil_eip191_recover(&r, text, 7, sig, &err), VEIL_ERR_BAD_SIGNATURE);
}

static void other_text_other_signer(void **state) {
    (void)state;
    veil_seckey k;
    veil_pubkey p, r;
    doc_key(&k, &p);
    uint8_t sig[65];
    assert_int_equal(veil_eip191_sign(sig, &k, "text one", 8, NULL), VEIL_OK);
    veil_rc rc = veil_eip191_recover(&r, "text two", 8, sig, NULL);
    assert_true(rc == VEIL_ERR_BAD_SIGNATURE || (rc == VEIL_OK && memcmp(r.bytes, p.bytes, 65) != 0));
}

/* s' = n - s: the malleated twin of a valid signature. */
static void negate_s(uint8_t s[32]) {
    uint8_t n[32];
    unhex(n, 32, ORDER_HEX);
    int borrow = 0;
    for (int i = 31; i >= 0; i--) {
        int d = n[i] - s[i] - borrow;
        borrow = d < 0;
        s[i] = (uint8_t)(d + (borrow ? 256 : 0));
    }
}

static void malformed_signatures(void **state) {
    (void)state;
    veil_seckey k;
    veil_pubkey p, r;
    doc_key(&k, &p);
    uint8_t sig[65], bad[65];
    assert_int_equal(veil_eip191_sign(sig, &k, "m", 1, NULL), VEIL_OK);
    veil_err err;
    memcpy(bad, sig, 65);
    negate_s(bad + 32);
    bad[64] = bad[64] == 27 ? 28 : 27; /* the twin has the other parity */
    assert_int_equal(veil_eip191_recover(&r, "m", 1, bad, &err), VEIL_ERR_BAD_SIGNATURE);
    assert_non_null(strstr(err.message, "high-s"));
    memcpy(bad, sig, 65);
    memset(bad, 0, 32); /* r = 0 */
    assert_int_equal(veil_eip191_recover(&r, "m", 1, bad, &err), VEIL_ERR_BAD_SIGNATURE);
    memcpy(bad, sig, 65);
    memset(bad, 0xff, 32); /* r >= n */
    assert_int_equal(veil_eip191_recover(&r, "m", 1, bad, &err), VEIL_ERR_BAD_SIGNATURE);
    uint8_t addr[20];
    assert_int_equal(veil_eip191_recover_address(addr, "m", 1, "0x1234", 6, &err), VEIL_ERR_BAD_SIGNATURE);
    assert_int_equal(veil_eip191_recover_address(addr, "m", 1, DOC_SIG, strlen(DOC_SIG) - 2, &err),
                     VEIL_ERR_BAD_SIGNATURE);
    char nonhex[133];
    memcpy(nonhex, DOC_SIG, 133);
    nonhex[50] = 'x';
    assert_int_equal(veil_eip191_recover_address(addr, "Some data", 9, nonhex, 132, &err), VEIL_ERR_BAD_SIGNATURE);
    /* without the 0x prefix it is still accepted */
    assert_int_equal(veil_eip191_recover_address(addr, "Some data", 9, DOC_SIG + 2, 130, &err), VEIL_OK);
}

static void eip55_vectors(void **state) {
    (void)state;
    /* From the EIP-55 specification. */
    const char *vectors[] = {
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB", "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
        "0x52908400098527886E0F7030069857D2E4169EE7", "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
        "0xde709f2102306220921060314715629080e2fb77", "0x27b1fdb04752bbc536007a920d24acb045561c26",
    };
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        uint8_t addr[20];
        char s[43];
        assert_int_equal(veil_eth_address_parse(addr, vectors[i], 42, NULL), VEIL_OK);
        veil_eth_address_to_string(s, addr);
        assert_string_equal(s, vectors[i]);
        assert_int_equal(veil_eth_address_check_eip55(vectors[i], 42, NULL), VEIL_OK);
    }
    /* one letter's case flipped breaks the checksum */
    char flipped[43];
    memcpy(flipped, vectors[0], 43);
    flipped[3] = 'A';
    veil_err err;
    assert_int_equal(veil_eth_address_check_eip55(flipped, 42, &err), VEIL_ERR_BAD_ADDRESS);
    assert_non_null(strstr(err.message, "checksum"));
    /* but parsing compares case-insensitively */
    uint8_t a1[20], a2[20];
    assert_int_equal(veil_eth_address_parse(a1, flipped, 42, NULL), VEIL_OK);
    assert_int_equal(veil_eth_address_parse(a2, vectors[0], 42, NULL), VEIL_OK);
    assert_memory_equal(a1, a2, 20);
}

static void malformed_addresses(void **state) {
    (void)state;
    uint8_t a[20];
    const char *bad[] = {"5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed00", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe",
                         "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAedd", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeg",
                         "1x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(veil_eth_address_parse(a, bad[i], strlen(bad[i]), NULL), VEIL_ERR_BAD_ADDRESS);
        assert_int_equal(veil_eth_address_check_eip55(bad[i], strlen(bad[i]), NULL), VEIL_ERR_BAD_ADDRESS);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(address_of_known_key),  cmocka_unit_test(known_signature),
        cmocka_unit_test(eip191_digest_layout),  cmocka_unit_test(recovery_accepts_v_forms),
        cmocka_unit_test(other_text_other_signer), cmocka_unit_test(malformed_signatures),
        cmocka_unit_test(eip55_vectors),         cmocka_unit_test(malformed_addresses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
