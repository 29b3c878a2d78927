/* Internal helpers every part of veil shares (not part of libveil's API):
 * the monotonic clock, UTF-8 decoding, and detached worker threads. The
 * growable buffer is public: include/veil/buf.h. */
#ifndef VEIL_BASE_BASE_H
#define VEIL_BASE_BASE_H

#include <stddef.h>
#include <stdint.h>

/* Seconds on the monotonic clock (for durations; never a wall time). */
double veil_now_s(void);

/* The length (1-4) of the well-formed UTF-8 sequence at s[0..n), with its
 * code point in *cp; 0 when s starts with an ill-formed or truncated one
 * (overlong forms, surrogates and code points past U+10FFFF included). */
size_t veil_utf8_next(const uint8_t *s, size_t n, uint32_t *cp);

/* 1 when s[0..n) is well-formed UTF-8 throughout. */
int veil_utf8_valid(const uint8_t *s, size_t n);

/* Runs fn(arg) on a new detached thread (stack_size 0: the default).
 * Returns 1, or 0 when no thread could be made (fn does not run then). */
int veil_thread_detached(void *(*fn)(void *), void *arg, size_t stack_size);

#endif
