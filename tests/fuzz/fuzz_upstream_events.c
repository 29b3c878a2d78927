/* libFuzzer target for the reader of an upstream's chat.completion.chunk
 * events: the input is a sequence of events, one per line; a reader that
 * learns event shapes must make exactly the sink calls (and keep the same
 * finish reason, counts, error and [DONE]) as one that parses every event
 * whole, and neither may crash. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

typedef struct record {
    char *log;
    size_t len;
} record;

static void add(record *r, const char *p, size_t n) {
    char *b = realloc(r->log, r->len + n + 1);
    if (!b)
        abort();
    memcpy(b + r->len, p, n);
    r->log = b;
    r->len += n;
}

static void on_piece(void *ctx, const char *c, size_t cl, const char *rs, size_t rl) {
    record *r = ctx;
    char sep[1] = {0};
    add(r, c, cl);
    add(r, sep, 1);
    add(r, rs, rl);
    add(r, sep, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    record ra = {NULL, 0}, rb = {NULL, 0};
    veil_gen_sink sa = {&ra, on_piece, NULL, NULL, NULL, NULL, NULL},
                  sb = {&rb, on_piece, NULL, NULL, NULL, NULL, NULL};
    veil_upstream_events a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    a.sink = &sa;
    b.sink = &sb;
    b.no_shape = 1;
    const char *p = (const char *)data, *end = p + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl ? nl : end) - p);
        if (veil_upstream_event(&a, p, n) != veil_upstream_event(&b, p, n))
            abort();
        p += n + 1;
    }
    if (ra.len != rb.len || (ra.len && memcmp(ra.log, rb.log, ra.len)) || strcmp(a.finish, b.finish) ||
        a.prompt_tokens != b.prompt_tokens || a.completion_tokens != b.completion_tokens ||
        a.done_seen != b.done_seen || strcmp(a.stream_error, b.stream_error))
        abort();
    veil_upstream_events_clear(&a);
    veil_upstream_events_clear(&b);
    free(ra.log);
    free(rb.log);
    return 0;
}
