/* libFuzzer target for the Server-Sent Events parser: arbitrary bytes, fed
 * whole and split at an input-chosen point, must give the same events. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "veil/sse.h"

typedef struct digest {
    size_t events, bytes;
} digest;

static int count(void *ctx, const char *event, const char *data, size_t n) {
    digest *d = ctx;
    d->events++;
    d->bytes += n + strlen(event);
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
    digest whole = {0, 0}, split = {0, 0};
    veil_sse *a = veil_sse_new(256, count, &whole), *b = veil_sse_new(256, count, &split);
    if (!a || !b)
        abort();
    veil_rc ra = veil_sse_feed(a, text, len, NULL);
    veil_rc rb = veil_sse_feed(b, text, cut < len ? cut : len, NULL);
    if (rb == VEIL_OK && cut < len)
        rb = veil_sse_feed(b, text + cut, len - cut, NULL);
    if (ra != rb || (ra == VEIL_OK && (whole.events != split.events || whole.bytes != split.bytes)))
        abort();
    veil_sse_free(a);
    veil_sse_free(b);
    return 0;
}
