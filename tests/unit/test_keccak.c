/* Unit tests for Keccak-256: published vectors and streaming consistency.
 * Lengths around the 136-byte rate are cross-checked against @noble/hashes in
 * tests/interop/crypto_node.mjs. */
#include "testutil.h"

#include "veil/keccak.h"

static void published_vectors(void **state) {
    (void)state;
    uint8_t h[32], want[32];
    /* keccak256("") from protocol.md §1 (also Ethereum's empty code hash) */
    veil_keccak256(h, "", 0);
    unhex(want, 32, "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
    assert_memory_equal(h, want, 32);
    /* keccak256("abc"), from the Keccak team's known-answer tests */
    veil_keccak256(h, "abc", 3);
    unhex(want, 32, "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45");
    assert_memory_equal(h, want, 32);
}

static void not_sha3(void **state) {
    (void)state;
    /* SHA3-256("") differs from Keccak-256(""): the padding byte matters. */
    uint8_t h[32], sha3_empty[32];
    unhex(sha3_empty, 32, "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a");
    veil_keccak256(h, "", 0);
    assert_memory_not_equal(h, sha3_empty, 32);
}

/* Splitting the input anywhere must not change the digest, in particular
 * across the rate boundary where the permutation runs. */
static void streaming_matches_one_shot(void **state) {
    (void)state;
    uint8_t data[300];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 131 + 7);
    const size_t lengths[] = {0, 1, 135, 136, 137, 271, 272, 273, 300};
    for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++) {
        size_t n = lengths[li];
        uint8_t one[32];
        veil_keccak256(one, data, n);
        for (size_t cut = 0; cut <= n; cut += (n > 40 ? 7 : 1)) {
            veil_keccak256_ctx ctx;
            uint8_t two[32];
            veil_keccak256_init(&ctx);
            veil_keccak256_update(&ctx, data, cut);
            veil_keccak256_update(&ctx, data + cut, n - cut);
            veil_keccak256_final(&ctx, two);
            assert_memory_equal(one, two, 32);
        }
        /* byte by byte */
        veil_keccak256_ctx ctx;
        uint8_t three[32];
        veil_keccak256_init(&ctx);
        for (size_t i = 0; i < n; i++)
            veil_keccak256_update(&ctx, data + i, 1);
        veil_keccak256_final(&ctx, three);
        assert_memory_equal(one, three, 32);
    }
}

static void distinct_lengths_distinct_digests(void **state) {
    (void)state;
    uint8_t zeros[273] = {0}, prev[32], h[32];
    veil_keccak256(prev, zeros, 0);
    for (size_t n = 1; n <= sizeof zeros; n++) {
        veil_keccak256(h, zeros, n);
        assert_memory_not_equal(h, prev, 32);
        memcpy(prev, h, 32);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(published_vectors),
        cmocka_unit_test(not_sha3),
        cmocka_unit_test(streaming_matches_one_shot),
        cmocka_unit_test(distinct_lengths_distinct_digests),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
