/* Secret hygiene: wiping memory, constant-time compares, kernel randomness. */
#include "veil/secure.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

void veil_wipe(void *p, size_t n) {
    if (p && n)
        explicit_bzero(p, n);
}

void veil_free_secret(void *p, size_t n) {
    if (!p)
        return;
    veil_wipe(p, n);
    free(p);
}

void veil_free_wiped(void *p) {
    if (!p)
        return;
    explicit_bzero(p, malloc_usable_size(p));
    free(p);
}

int veil_ct_equal(const void *a, const void *b, size_t n) {
    const volatile unsigned char *x = a, *y = b;
    unsigned char acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= (unsigned char)(x[i] ^ y[i]);
    return acc == 0;
}

veil_rc veil_random_bytes(void *out, size_t n, veil_err *err) {
    unsigned char *p = out;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return veil_err_set(err, VEIL_ERR_RANDOM, "getrandom failed: %s", strerror(errno));
        }
        p += got;
        n -= (size_t)got;
    }
    return VEIL_OK;
}
