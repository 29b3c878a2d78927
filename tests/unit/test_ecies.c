/* Unit tests for the E2EE envelope: round trips, and every kind of malformed
 * or tampered envelope refused with its own error. Cross-implementation
 * checks live in tests/interop/. */
#include <unistd.h>

#include "testutil.h"

#include "veil/ecies.h"
#include "veil/secure.h"

typedef struct keys {
    veil_seckey sec;
    veil_pubkey pub;
} keys;

static void make_keys(keys *k) {
    assert_int_equal(veil_seckey_generate(&k->sec, NULL), VEIL_OK);
    assert_int_equal(veil_pubkey_from_seckey(&k->pub, &k->sec, NULL), VEIL_OK);
}

static void roundtrip_sizes(void **state) {
    (void)state;
    keys k;
    make_keys(&k);
    const size_t sizes[] = {0, 1, 15, 16, 17, 1000, 70000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        uint8_t *pt = malloc(n + 1), *env = malloc(n + VEIL_ECIES_OVERHEAD), *back = malloc(n + 1);
        for (size_t j = 0; j < n; j++)
            pt[j] = (uint8_t)(j * 7 + 3);
        assert_int_equal(veil_ecies_seal(env, n + VEIL_ECIES_OVERHEAD, &k.pub, pt, n, NULL), VEIL_OK);
        assert_int_equal(env[0], 0x04);
        size_t got = 999;
        assert_int_equal(veil_ecies_open(back, n + 1, &got, &k.sec, env, n + VEIL_ECIES_OVERHEAD, NULL), VEIL_OK);
        assert_int_equal(got, n);
        if (n)
            assert_memory_equal(back, pt, n);
        free(pt);
        free(env);
        free(back);
    }
}

static void fresh_ephemeral_and_iv(void **state) {
    (void)state;
    keys k;
    make_keys(&k);
    uint8_t a[VEIL_ECIES_OVERHEAD + 2], b[VEIL_ECIES_OVERHEAD + 2];
    assert_int_equal(veil_ecies_seal(a, sizeof a, &k.pub, (const uint8_t *)"hi", 2, NULL), VEIL_OK);
    assert_int_equal(veil_ecies_seal(b, sizeof b, &k.pub, (const uint8_t *)"hi", 2, NULL), VEIL_OK);
    assert_memory_not_equal(a, b, 65);           /* ephemeral key */
    assert_memory_not_equal(a + 65, b + 65, 12); /* IV */
}

static void seal_with_is_deterministic(void **state) {
    (void)state;
    keys k, eph;
    make_keys(&k);
    make_keys(&eph);
    uint8_t iv[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    uint8_t a[VEIL_ECIES_OVERHEAD + 5], b[VEIL_ECIES_OVERHEAD + 5];
    assert_int_equal(veil_ecies_seal_with(a, sizeof a, &k.pub, &eph.sec, iv, (const uint8_t *)"hello", 5, NULL), VEIL_OK);
    assert_int_equal(veil_ecies_seal_with(b, sizeof b, &k.pub, &eph.sec, iv, (const uint8_t *)"hello", 5, NULL), VEIL_OK);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_equal(a, eph.pub.bytes, 65);
    assert_memory_equal(a + 65, iv, 12);
    uint8_t small[VEIL_ECIES_OVERHEAD + 4];
    assert_int_equal(veil_ecies_seal_with(small, sizeof small, &k.pub, &eph.sec, iv, (const uint8_t *)"hello", 5, NULL),
                     VEIL_ERR_BAD_LENGTH);
}

static void every_byte_is_authenticated(void **state) {
    (void)state;
    keys k;
    make_keys(&k);
    const char msg[] = "attack at dawn";
    enum { N = sizeof msg - 1, ENV = N + VEIL_ECIES_OVERHEAD };
    uint8_t env[ENV], out[N];
    assert_int_equal(veil_ecies_seal(env, ENV, &k.pub, (const uint8_t *)msg, N, NULL), VEIL_OK);
    for (size_t i = 0; i < ENV; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            env[i] ^= (uint8_t)(1u << bit);
            veil_err err;
            memset(out, 0xaa, sizeof out);
            veil_rc rc = veil_ecies_open(out, sizeof out, NULL, &k.sec, env, ENV, &err);
            if (i < 65) {
                /* a flipped ephemeral key is either off the curve or another point */
                assert_true(rc == VEIL_ERR_BAD_POINT || rc == VEIL_ERR_AUTH_FAILED);
            } else {
                assert_int_equal(rc, VEIL_ERR_AUTH_FAILED);
                /* no unauthenticated plaintext is left behind */
                for (size_t j = 0; j < sizeof out; j++)
                    assert_int_equal(out[j], 0);
            }
            env[i] ^= (uint8_t)(1u << bit);
        }
    }
    size_t n;
    assert_int_equal(veil_ecies_open(out, sizeof out, &n, &k.sec, env, ENV, NULL), VEIL_OK);
}

static void wrong_key_fails_auth(void **state) {
    (void)state;
    keys k, other;
    make_keys(&k);
    make_keys(&other);
    uint8_t env[VEIL_ECIES_OVERHEAD + 3], out[3];
    assert_int_equal(veil_ecies_seal(env, sizeof env, &k.pub, (const uint8_t *)"abc", 3, NULL), VEIL_OK);
    veil_err err;
    assert_int_equal(veil_ecies_open(out, sizeof out, NULL, &other.sec, env, sizeof env, &err), VEIL_ERR_AUTH_FAILED);
    assert_int_equal(err.code, VEIL_ERR_AUTH_FAILED);
}

static void malformed_envelopes(void **state) {
    (void)state;
    keys k;
    make_keys(&k);
    uint8_t env[VEIL_ECIES_OVERHEAD], out[8];
    assert_int_equal(veil_ecies_seal(env, sizeof env, &k.pub, NULL, 0, NULL), VEIL_OK);
    size_t n = 7;
    assert_int_equal(veil_ecies_open(out, sizeof out, &n, &k.sec, env, sizeof env, NULL), VEIL_OK);
    assert_int_equal(n, 0);
    veil_err err;
    assert_int_equal(veil_ecies_open(out, sizeof out, NULL, &k.sec, env, sizeof env - 1, &err), VEIL_ERR_TOO_SHORT);
    assert_int_equal(veil_ecies_open(out, sizeof out, NULL, &k.sec, env, 0, &err), VEIL_ERR_TOO_SHORT);
    /* compressed-prefix byte in front of a valid x: not an uncompressed point */
    env[0] = 0x02;
    assert_int_equal(veil_ecies_open(out, sizeof out, NULL, &k.sec, env, sizeof env, &err), VEIL_ERR_BAD_POINT);
    env[0] = 0x04;
    env[64] ^= 1; /* y no longer matches x */
    assert_int_equal(veil_ecies_open(out, sizeof out, NULL, &k.sec, env, sizeof env, &err), VEIL_ERR_BAD_POINT);
    /* room for the plaintext is checked before anything is written */
    uint8_t env2[VEIL_ECIES_OVERHEAD + 4];
    assert_int_equal(veil_ecies_seal(env2, sizeof env2, &k.pub, (const uint8_t *)"four", 4, NULL), VEIL_OK);
    assert_int_equal(veil_ecies_open(out, 3, NULL, &k.sec, env2, sizeof env2, &err), VEIL_ERR_BAD_LENGTH);
}

static void hex_wire_form(void **state) {
    (void)state;
    keys k;
    make_keys(&k);
    char *hex = NULL;
    const char *msg = "héllo, wörld";
    assert_int_equal(veil_ecies_seal_hex(&hex, &k.pub, (const uint8_t *)msg, strlen(msg), NULL), VEIL_OK);
    assert_int_equal(strlen(hex), 2 * (strlen(msg) + VEIL_ECIES_OVERHEAD));
    assert_true(veil_hex_is_valid(hex, strlen(hex)));
    for (const char *c = hex; *c; c++)
        assert_false(*c >= 'A' && *c <= 'F'); /* lowercase on output */
    uint8_t *pt;
    size_t n;
    assert_int_equal(veil_ecies_open_hex(&pt, &n, &k.sec, hex, strlen(hex), NULL), VEIL_OK);
    assert_int_equal(n, strlen(msg));
    assert_memory_equal(pt, msg, n);
    assert_int_equal(pt[n], 0);
    veil_free_secret(pt, n + 1);
    /* upper case is accepted on input */
    for (char *c = hex; *c; c++)
        if (*c >= 'a' && *c <= 'f')
            *c = (char)(*c - 32);
    assert_int_equal(veil_ecies_open_hex(&pt, &n, &k.sec, hex, strlen(hex), NULL), VEIL_OK);
    veil_free_secret(pt, n + 1);
    free(hex);
}

static void hex_errors_are_distinct(void **state) {
    (void)state;
    keys k;
    make_keys(&k);
    char *hex = NULL;
    assert_int_equal(veil_ecies_seal_hex(&hex, &k.pub, (const uint8_t *)"x", 1, NULL), VEIL_OK);
    size_t len = strlen(hex);
    uint8_t *pt = (uint8_t *)"sentinel";
    size_t n = 5;
    veil_err err;
    /* odd length */
    assert_int_equal(veil_ecies_open_hex(&pt, &n, &k.sec, hex, len - 1, &err), VEIL_ERR_NOT_HEX);
    assert_null(pt);
    assert_int_equal(n, 0);
    /* a non-hex character inside the IV (hex offsets 130..153) */
    char orig = hex[140];
    hex[140] = 'g';
    assert_int_equal(veil_ecies_open_hex(&pt, &n, &k.sec, hex, len, &err), VEIL_ERR_NOT_HEX);
    hex[140] = orig == '0' ? '1' : '0';
    /* plaintext where ciphertext belongs */
    assert_int_equal(veil_ecies_open_hex(&pt, &n, &k.sec, "What is 2+2?", 12, &err), VEIL_ERR_NOT_HEX);
    assert_int_equal(veil_ecies_open_hex(&pt, &n, &k.sec, "", 0, &err), VEIL_ERR_NOT_HEX);
    /* 184 hex characters: valid hex, one byte short */
    assert_int_equal(veil_ecies_open_hex(&pt, &n, &k.sec, hex, 184, &err), VEIL_ERR_TOO_SHORT);
    /* the IV changed, so authentication fails */
    assert_int_equal(veil_ecies_open_hex(&pt, &n, &k.sec, hex, len, &err), VEIL_ERR_AUTH_FAILED);
    /* a bad ephemeral point */
    hex[0] = '0';
    hex[1] = '3';
    assert_int_equal(veil_ecies_open_hex(&pt, &n, &k.sec, hex, len, &err), VEIL_ERR_BAD_POINT);
    free(hex);
}

/* Envelopes sealed with pooled ephemeral keys open, and no two share an
 * ephemeral key, whether the pool has keys or has run dry. */
static void pooled_keys(void **state) {
    (void)state;
    keys k;
    make_keys(&k);
    veil_ephemeral_pool *p = veil_ephemeral_pool_new(8);
    assert_non_null(p);
    usleep(20000);
    assert_int_equal(veil_ephemeral_pool_count(p), 0); /* nothing made before the first use */
    char *first;
    assert_int_equal(veil_ecies_seal_hex_pooled(&first, p, &k.pub, (const uint8_t *)"x", 1, NULL), VEIL_OK);
    free(first);
    for (int i = 0; i < 200 && veil_ephemeral_pool_count(p) < 8; i++)
        usleep(10000); /* the filler runs at idle priority */
    assert_int_equal(veil_ephemeral_pool_count(p), 8);
    char *hex[20];
    for (int i = 0; i < 20; i++) {
        const char *msg = "pooled";
        assert_int_equal(veil_ecies_seal_hex_pooled(&hex[i], i % 2 ? p : NULL, &k.pub, (const uint8_t *)msg, 6, NULL),
                         VEIL_OK);
        uint8_t *pt;
        size_t n;
        assert_int_equal(veil_ecies_open_hex(&pt, &n, &k.sec, hex[i], strlen(hex[i]), NULL), VEIL_OK);
        assert_int_equal(n, 6);
        assert_memory_equal(pt, msg, 6);
        veil_free_secret(pt, n + 1);
        for (int j = 0; j < i; j++)
            assert_false(memcmp(hex[i], hex[j], 130) == 0); /* the ephemeral public keys differ */
    }
    for (int i = 0; i < 20; i++)
        free(hex[i]);
    veil_ephemeral_pool_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(roundtrip_sizes),        cmocka_unit_test(fresh_ephemeral_and_iv),
        cmocka_unit_test(seal_with_is_deterministic), cmocka_unit_test(every_byte_is_authenticated),
        cmocka_unit_test(wrong_key_fails_auth),   cmocka_unit_test(malformed_envelopes),
        cmocka_unit_test(hex_wire_form),          cmocka_unit_test(hex_errors_are_distinct),
        cmocka_unit_test(pooled_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
