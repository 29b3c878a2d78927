/* Shared by the unit tests: cmocka's prerequisites and small helpers. */
#ifndef VEIL_TESTUTIL_H
#define VEIL_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "veil/hex.h"

/* Decodes a hex literal the test itself wrote; aborts the test if it is not hex. */
static inline size_t unhex(uint8_t *out, size_t cap, const char *hex) {
    size_t n = 0;
    assert_int_equal(veil_hex_decode(out, cap, &n, hex, strlen(hex), NULL), VEIL_OK);
    return n;
}

/* The shared vectors directory: $VEIL_VECTORS or ../shared/vectors (tests
 * run from the repository root). Returns NULL when it is absent. */
static inline const char *vectors_dir(void) {
    static char dir[1024];
    const char *env = getenv("VEIL_VECTORS");
    snprintf(dir, sizeof dir, "%s", env && *env ? env : "../shared/vectors");
    char probe[1100];
    snprintf(probe, sizeof probe, "%s/EXPECTED_PARSE.json", dir);
    FILE *f = fopen(probe, "rb");
    if (!f)
        return NULL;
    fclose(f);
    return dir;
}

/* Skips the current test, saying why, when the shared vectors are absent. */
#define NEED_VECTORS()                                                                              \
    do {                                                                                            \
        if (!vectors_dir()) {                                                                       \
            print_message("shared vectors not found (set VEIL_VECTORS or provide ../shared/vectors)\n"); \
            skip();                                                                                 \
        }                                                                                           \
    } while (0)

/* Reads vectors/<rel> whole into a malloc'd, NUL-terminated buffer. */
static inline uint8_t *read_vector(const char *rel, size_t *len) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", vectors_dir(), rel);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

#endif
