/* Handling of secrets: wiping, constant-time comparison, OS randomness. */
#ifndef VEIL_SECURE_H
#define VEIL_SECURE_H

#include <stddef.h>
#include <stdint.h>

#include "veil/err.h"

#ifdef __cplusplus
extern "C" {
#endif
VEIL_API_BEGIN

/* Overwrites p[0..n) with zeros in a way the compiler may not elide. NULL is a no-op. */
void veil_wipe(void *p, size_t n);

/* Wipes p[0..n) and then free()s p. NULL is a no-op. */
void veil_free_secret(void *p, size_t n);

/* Wipes a malloc'd block whole (its usable size) and frees it: a free()
 * for allocators, such as jansson's, that may hold plaintext and do not
 * say how much (install with json_set_alloc_funcs(malloc, veil_free_wiped)). */
void veil_free_wiped(void *p);

/* Returns 1 when a[0..n) equals b[0..n), else 0, in time that depends only on n. */
int veil_ct_equal(const void *a, const void *b, size_t n);

/* Fills out[0..n) from the kernel CSPRNG (getrandom(2)), blocking until it is
 * seeded. Returns VEIL_OK or VEIL_ERR_RANDOM. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_random_bytes(void *out, size_t n, veil_err *err) VEIL_NONNULL(1);

VEIL_API_END
#ifdef __cplusplus
}
#endif
#endif
