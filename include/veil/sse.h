/* An incremental parser for Server-Sent Events (text/event-stream), as the
 * WHATWG specification defines them: bytes arrive in any split, lines end in
 * LF, CRLF or CR, comments and unknown fields are ignored, multi-line data is
 * joined with LF, and an event is dispatched at a blank line. Used for the
 * upstream backend's streams and by the client. */
#ifndef VEIL_SSE_H
#define VEIL_SSE_H

#include <stddef.h>

#include "veil/err.h"

#ifdef __cplusplus
extern "C" {
#endif
VEIL_API_BEGIN

/* Called for each complete event. event: the event type ("message" when the
 * stream gave none); data: the data, NUL-terminated, data_len bytes (may hold
 * NULs). Both are borrowed for the call only. Return 0 to go on, non-zero to
 * stop: veil_sse_feed then returns VEIL_ERR_INVALID_ARG without reading more. */
typedef int (*veil_sse_cb)(void *ctx, const char *event, const char *data, size_t data_len);

typedef struct veil_sse veil_sse;

/* A parser that refuses any line or event larger than max_event bytes.
 * Returns NULL when out of memory. */
veil_sse *veil_sse_new(size_t max_event, veil_sse_cb cb, void *ctx);

void veil_sse_free(veil_sse *p);

/* Feeds buf[0..n). Returns VEIL_OK, VEIL_ERR_MALFORMED (a line or event over
 * the limit), VEIL_ERR_INVALID_ARG (the callback stopped) or VEIL_ERR_NOMEM. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_sse_feed(veil_sse *p, const char *buf, size_t n, veil_err *err) VEIL_NONNULL(1);

/* Number of events dispatched so far. */
size_t veil_sse_events(const veil_sse *p);

VEIL_API_END
#ifdef __cplusplus
}
#endif
#endif
