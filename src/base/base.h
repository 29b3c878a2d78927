/* Internal helpers every part of veil shares (not part of libveil's API):
 * the monotonic clock, UTF-8 decoding, detached worker threads, and one
 * HTTP exchange. The growable buffer is public: include/veil/buf.h. */
#ifndef VEIL_BASE_BASE_H
#define VEIL_BASE_BASE_H

#include <stddef.h>
#include <stdint.h>

#include "veil/buf.h"
#include "veil/err.h"

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

/* One HTTP exchange (http.c): a GET, or a POST of json_body, to url (over unix_socket when not
 * NULL), the reply's bytes appended to resp (its limit the caller's) and its status in *status.
 * verify_tls 0: the peer's certificate is not checked, for exchanges that prove themselves
 * otherwise. Returns VEIL_OK whatever the status, or VEIL_ERR_IO with libcurl's reason alone. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_http_exchange(const char *url, const char *unix_socket, const char *json_body,
                                                   long timeout_s, int verify_tls, veil_buf *resp, long *status,
                                                   veil_err *err);

#endif
