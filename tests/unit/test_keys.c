/* Unit tests for secp256k1 keys and ECDH. */
#include "testutil.h"

#include "veil/keys.h"
#include "veil/secure.h"

#define ORDER_HEX "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"
#define GX "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
#define GY "483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8"

static void private_key_range(void **state) {
    (void)state;
    uint8_t raw[32];
    veil_seckey k;
    veil_err err;
    memset(raw, 0, 32);
    assert_int_equal(veil_seckey_from_bytes(&k, raw, &err), VEIL_ERR_BAD_KEY);
    unhex(raw, 32, ORDER_HEX);
    assert_int_equal(veil_seckey_from_bytes(&k, raw, NULL), VEIL_ERR_BAD_KEY); /* n */
    raw[31] = 0x42;
    assert_int_equal(veil_seckey_from_bytes(&k, raw, NULL), VEIL_ERR_BAD_KEY); /* n + 1 */
    memset(raw, 0xff, 32);
    assert_int_equal(veil_seckey_from_bytes(&k, raw, NULL), VEIL_ERR_BAD_KEY);
    unhex(raw, 32, ORDER_HEX);
    raw[31] = 0x40; /* n - 1 */
    assert_int_equal(veil_seckey_from_bytes(&k, raw, NULL), VEIL_OK);
    assert_memory_equal(k.bytes, raw, 32);
}

static void private_key_hex(void **state) {
    (void)state;
    veil_seckey k;
    veil_err err;
    const char *one = "0000000000000000000000000000000000000000000000000000000000000001";
    assert_int_equal(veil_seckey_from_hex(&k, one, 64, &err), VEIL_OK);
    assert_int_equal(k.bytes[31], 1);
    assert_int_equal(veil_seckey_from_hex(&k, "0x" "0000000000000000000000000000000000000000000000000000000000000002", 66, NULL), VEIL_OK);
    assert_int_equal(veil_seckey_from_hex(&k, one, 63, &err), VEIL_ERR_BAD_LENGTH);
    assert_int_equal(veil_seckey_from_hex(&k, "zz00000000000000000000000000000000000000000000000000000000000001", 64, &err),
                     VEIL_ERR_NOT_HEX);
    assert_int_equal(veil_seckey_from_hex(&k, ORDER_HEX, 64, &err), VEIL_ERR_BAD_KEY);
}

static void generator_from_key_one(void **state) {
    (void)state;
    uint8_t raw[32] = {0};
    raw[31] = 1;
    veil_seckey k;
    veil_pubkey p;
    assert_int_equal(veil_seckey_from_bytes(&k, raw, NULL), VEIL_OK);
    assert_int_equal(veil_pubkey_from_seckey(&p, &k, NULL), VEIL_OK);
    char hex[131];
    veil_pubkey_to_hex(hex, &p);
    assert_string_equal(hex, "04" GX GY);
}

static void public_key_parse(void **state) {
    (void)state;
    veil_pubkey p;
    veil_err err;
    assert_int_equal(veil_pubkey_parse_hex(&p, "04" GX GY, 130, &err), VEIL_OK);
    assert_int_equal(veil_pubkey_parse_hex(&p, GX GY, 128, &err), VEIL_OK);
    assert_int_equal(p.bytes[0], 0x04);
    char upper[131];
    snprintf(upper, sizeof upper, "04%s%s", GX, GY);
    for (char *c = upper; *c; c++)
        if (*c >= 'a' && *c <= 'f')
            *c = (char)(*c - 32);
    assert_int_equal(veil_pubkey_parse_hex(&p, upper, 130, &err), VEIL_OK);
    /* compressed and hybrid forms are refused */
    assert_int_equal(veil_pubkey_parse_hex(&p, "02" GX, 66, &err), VEIL_ERR_BAD_LENGTH);
    assert_int_equal(veil_pubkey_parse_hex(&p, "06" GX GY, 130, &err), VEIL_ERR_BAD_POINT);
    assert_int_equal(veil_pubkey_parse_hex(&p, "02" GX GY, 130, &err), VEIL_ERR_BAD_POINT);
    /* a point off the curve: y + 1 */
    char off[131];
    snprintf(off, sizeof off, "04%s%s", GX, GY);
    off[129] = '9';
    assert_int_equal(veil_pubkey_parse_hex(&p, off, 130, &err), VEIL_ERR_BAD_POINT);
    assert_non_null(strstr(err.message, "not a point"));
    /* x = 0 has no point; all zeros is the point at infinity's non-encoding */
    char zeros[129];
    memset(zeros, '0', 128);
    zeros[128] = 0;
    assert_int_equal(veil_pubkey_parse_hex(&p, zeros, 128, &err), VEIL_ERR_BAD_POINT);
    assert_int_equal(veil_pubkey_parse_hex(&p, "04" GX GY "00", 132, &err), VEIL_ERR_BAD_LENGTH);
    assert_int_equal(veil_pubkey_parse_hex(&p, "0x" GX GY, 130, &err), VEIL_ERR_NOT_HEX);
    uint8_t raw[65];
    assert_int_equal(veil_pubkey_parse(&p, raw, 33, &err), VEIL_ERR_BAD_LENGTH);
    assert_int_equal(veil_pubkey_parse(&p, raw, 0, &err), VEIL_ERR_BAD_LENGTH);
}

static void ecdh_is_symmetric(void **state) {
    (void)state;
    for (int i = 0; i < 8; i++) {
        veil_seckey a, b;
        veil_pubkey pa, pb;
        uint8_t s1[32], s2[32];
        assert_int_equal(veil_seckey_generate(&a, NULL), VEIL_OK);
        assert_int_equal(veil_seckey_generate(&b, NULL), VEIL_OK);
        assert_int_equal(veil_pubkey_from_seckey(&pa, &a, NULL), VEIL_OK);
        assert_int_equal(veil_pubkey_from_seckey(&pb, &b, NULL), VEIL_OK);
        assert_int_equal(veil_ecdh_x(s1, &a, &pb, NULL), VEIL_OK);
        assert_int_equal(veil_ecdh_x(s2, &b, &pa, NULL), VEIL_OK);
        assert_memory_equal(s1, s2, 32);
        veil_seckey_wipe(&a);
        uint8_t zero[32] = {0};
        assert_memory_equal(a.bytes, zero, 32);
    }
}

static void ecdh_with_generator_is_public_x(void **state) {
    (void)state;
    /* k * G has the x-coordinate of k's public key */
    veil_seckey k;
    veil_pubkey g, pk;
    uint8_t shared[32];
    assert_int_equal(veil_seckey_generate(&k, NULL), VEIL_OK);
    assert_int_equal(veil_pubkey_parse_hex(&g, "04" GX GY, 130, NULL), VEIL_OK);
    assert_int_equal(veil_pubkey_from_seckey(&pk, &k, NULL), VEIL_OK);
    assert_int_equal(veil_ecdh_x(shared, &k, &g, NULL), VEIL_OK);
    assert_memory_equal(shared, pk.bytes + 1, 32);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(private_key_range),  cmocka_unit_test(private_key_hex),
        cmocka_unit_test(generator_from_key_one), cmocka_unit_test(public_key_parse),
        cmocka_unit_test(ecdh_is_symmetric),  cmocka_unit_test(ecdh_with_generator_is_public_x),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
