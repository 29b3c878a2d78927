/* libFuzzer target for the Server-Sent Events parser: arbitrary bytes, fed
 * whole, split at an input-chosen point and one byte at a time, must give
 * the same events (the whole feed reads lines in place, the byte-wise one
 * through the kept partial line). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "veil/sse.h"

typedef struct digest {
    size_t events, bytes;
    uint64_t hash; /* FNV-1a over every event's type and data */
} digest;

static void mix(digest *d, const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) d->hash = (d->hash ^ (unsigned char)p[i]) * 1099511628211ull;
    d->hash = (d->hash ^ 0xff) * 1099511628211ull;
}

static int count(void *ctx, const char *event, const char *data, size_t n) {
    digest *d = ctx;
    d->events++;
    d->bytes += n + strlen(event);
    mix(d, event, strlen(event));
    mix(d, data, n);
    if (data[n] != '\0')
        abort(); /* data is always NUL-terminated */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0)
        return 0;
    size_t cut = data[0] % size;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    digest whole = {0, 0, 0}, split = {0, 0, 0}, bytes = {0, 0, 0};
    veil_sse *a = veil_sse_new(256, count, &whole), *b = veil_sse_new(256, count, &split),
             *c = veil_sse_new(256, count, &bytes);
    if (!a || !b || !c)
        abort();
    veil_rc ra = veil_sse_feed(a, text, len, NULL);
    veil_rc rb = veil_sse_feed(b, text, cut < len ? cut : len, NULL);
    if (rb == VEIL_OK && cut < len)
        rb = veil_sse_feed(b, text + cut, len - cut, NULL);
    veil_rc rc = VEIL_OK;
    for (size_t i = 0; rc == VEIL_OK && i < len; i++) rc = veil_sse_feed(c, text + i, 1, NULL);
    if (ra != rb || ra != rc)
        abort();
    if (ra == VEIL_OK && (whole.events != split.events || whole.bytes != split.bytes || whole.hash != split.hash ||
                          whole.events != bytes.events || whole.hash != bytes.hash))
        abort();
    veil_sse_free(a);
    veil_sse_free(b);
    veil_sse_free(c);
    return 0;
}
