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

#endif
