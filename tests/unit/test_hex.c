/* Unit tests for strict hex, secret hygiene helpers and error codes. */
#include "testutil.h"

#include "veil/err.h"
#include "veil/secure.h"

static void encode_lowercase(void **state) {
    (void)state;
    const uint8_t in[] = {0x00, 0x01, 0xab, 0xff, 0x7e};
    char out[11];
    veil_hex_encode(out, in, sizeof in);
    assert_string_equal(out, "0001abff7e");
    veil_hex_encode(out, in, 0);
    assert_string_equal(out, "");
}

static void decode_either_case(void **state) {
    (void)state;
    uint8_t out[4];
    size_t n = 0;
    assert_int_equal(veil_hex_decode(out, sizeof out, &n, "DeadBEef", 8, NULL), VEIL_OK);
    assert_int_equal(n, 4);
    const uint8_t want[] = {0xde, 0xad, 0xbe, 0xef};
    assert_memory_equal(out, want, 4);
}

static void decode_refuses_malformed(void **state) {
    (void)state;
    uint8_t out[8];
    veil_err err;
    assert_int_equal(veil_hex_decode(out, sizeof out, NULL, "abc", 3, &err), VEIL_ERR_NOT_HEX);
    assert_int_equal(err.code, VEIL_ERR_NOT_HEX);
    assert_non_null(strstr(err.message, "odd"));
    /* a bad character in each position of a pair, and characters next to the hex ranges */
    const char *bad[] = {"0g", "g0", "0x12", " 012", "01 2", "0/", "0:", "0@", "0G", "0`", "0\xff"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t len = strlen(bad[i]);
        if (len % 2)
            len--;
        assert_int_equal(veil_hex_decode(out, sizeof out, NULL, bad[i], len, NULL), VEIL_ERR_NOT_HEX);
    }
    char with_nul[4] = {'a', '\0', 'b', 'c'};
    assert_int_equal(veil_hex_decode(out, sizeof out, NULL, with_nul, 4, NULL), VEIL_ERR_NOT_HEX);
    assert_int_equal(veil_hex_decode(out, 1, NULL, "0102", 4, NULL), VEIL_ERR_BAD_LENGTH);
}

static void decode_exact(void **state) {
    (void)state;
    uint8_t out[2];
    assert_int_equal(veil_hex_decode_exact(out, 2, "0x0102", 6, 1, NULL), VEIL_OK);
    assert_int_equal(out[1], 0x02);
    assert_int_equal(veil_hex_decode_exact(out, 2, "0X0102", 6, 1, NULL), VEIL_OK);
    assert_int_equal(veil_hex_decode_exact(out, 2, "0x0102", 6, 0, NULL), VEIL_ERR_BAD_LENGTH);
    assert_int_equal(veil_hex_decode_exact(out, 2, "010203", 6, 1, NULL), VEIL_ERR_BAD_LENGTH);
    assert_int_equal(veil_hex_decode_exact(out, 2, "01", 2, 1, NULL), VEIL_ERR_BAD_LENGTH);
    assert_int_equal(veil_hex_decode_exact(out, 2, "01zz", 4, 1, NULL), VEIL_ERR_NOT_HEX);
}

static void is_valid(void **state) {
    (void)state;
    assert_true(veil_hex_is_valid("00aAfF", 6));
    assert_false(veil_hex_is_valid("", 0));
    assert_false(veil_hex_is_valid("abc", 3));
    assert_false(veil_hex_is_valid("abcx", 4));
}

static void roundtrip_all_bytes(void **state) {
    (void)state;
    uint8_t in[256], back[256];
    for (int i = 0; i < 256; i++)
        in[i] = (uint8_t)i;
    char *hex = veil_hex_encode_alloc(in, sizeof in);
    assert_non_null(hex);
    assert_int_equal(strlen(hex), 512);
    assert_int_equal(veil_hex_decode(back, sizeof back, NULL, hex, 512, NULL), VEIL_OK);
    assert_memory_equal(in, back, sizeof in);
    free(hex);
}

static void ct_equal_and_wipe(void **state) {
    (void)state;
    uint8_t a[33], b[33];
    memset(a, 0x5a, sizeof a);
    memcpy(b, a, sizeof a);
    assert_true(veil_ct_equal(a, b, sizeof a));
    for (size_t i = 0; i < sizeof a; i++) {
        b[i] ^= 0x01;
        assert_false(veil_ct_equal(a, b, sizeof a));
        b[i] ^= 0x01;
    }
    assert_true(veil_ct_equal(a, b, 0));
    veil_wipe(a, sizeof a);
    for (size_t i = 0; i < sizeof a; i++)
        assert_int_equal(a[i], 0);
    veil_wipe(NULL, 10); /* no-op */
}

static void random_bytes_differ(void **state) {
    (void)state;
    uint8_t a[32], b[32];
    assert_int_equal(veil_random_bytes(a, sizeof a, NULL), VEIL_OK);
    assert_int_equal(veil_random_bytes(b, sizeof b, NULL), VEIL_OK);
    assert_false(veil_ct_equal(a, b, sizeof a)); /* equal with probability 2^-256 */
}

static void error_codes(void **state) {
    (void)state;
    assert_string_equal(veil_rc_code(VEIL_OK), "OK");
    assert_string_equal(veil_rc_code(VEIL_ERR_AUTH_FAILED), "AUTH_FAILED");
    assert_string_equal(veil_rc_code((veil_rc)999), "UNKNOWN");
    veil_err err;
    assert_int_equal(veil_err_set(&err, VEIL_ERR_NOT_HEX, "bad %d", 7), VEIL_ERR_NOT_HEX);
    assert_string_equal(err.message, "bad 7");
    veil_err_clear(&err);
    assert_int_equal(err.code, VEIL_OK);
    assert_int_equal(veil_err_set(NULL, VEIL_ERR_IO, "ignored"), VEIL_ERR_IO);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(encode_lowercase),    cmocka_unit_test(decode_either_case),
        cmocka_unit_test(decode_refuses_malformed), cmocka_unit_test(decode_exact),
        cmocka_unit_test(is_valid),            cmocka_unit_test(roundtrip_all_bytes),
        cmocka_unit_test(ct_equal_and_wipe),   cmocka_unit_test(random_bytes_differ),
        cmocka_unit_test(error_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
