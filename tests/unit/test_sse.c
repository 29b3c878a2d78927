/* Unit tests for the Server-Sent Events parser: every way a stream can be
 * split or terminated gives the same events; limits are enforced. */
#include "testutil.h"

#include "veil/sse.h"

typedef struct seen {
    char log[4096];
    size_t len;
    int stop_after;
    int count;
} seen;

static int record(void *ctx, const char *event, const char *data, size_t n) {
    seen *s = ctx;
    s->len += (size_t)snprintf(s->log + s->len, sizeof s->log - s->len, "[%s|", event);
    memcpy(s->log + s->len, data, n);
    s->len += n;
    s->log[s->len++] = ']';
    s->log[s->len] = '\0';
    s->count++;
    return s->stop_after && s->count >= s->stop_after;
}

static const char *parse_in_pieces(const char *stream, size_t len, size_t piece, seen *s) {
    memset(s, 0, sizeof *s);
    veil_sse *p = veil_sse_new(1024, record, s);
    assert_non_null(p);
    for (size_t i = 0; i < len; i += piece)
        assert_int_equal(veil_sse_feed(p, stream + i, i + piece > len ? len - i : piece, NULL), VEIL_OK);
    veil_sse_free(p);
    return s->log;
}

static void openai_stream_any_split(void **state) {
    (void)state;
    const char stream[] = "data: {\"a\":1}\n\n"
                          ": keep-alive\n\n"
                          "data: {\"b\":2}\r\n\r\n"
                          "event: error\rdata: x\r\rdata: [DONE]\n\n";
    const char *want = "[message|{\"a\":1}][message|{\"b\":2}][error|x][message|[DONE]]";
    seen s;
    for (size_t piece = 1; piece <= sizeof stream; piece++)
        assert_string_equal(parse_in_pieces(stream, sizeof stream - 1, piece, &s), want);
}

static void fields(void **state) {
    (void)state;
    seen s;
    /* multi-line data joined with LF; one optional space stripped; id/retry/unknown ignored */
    const char a[] = "id: 7\nretry: 10\nfoo: bar\ndata:one\ndata:  two\ndata\n\n";
    assert_string_equal(parse_in_pieces(a, sizeof a - 1, 3, &s), "[message|one\n two\n]");
    /* a blank line without data dispatches nothing; the event type resets */
    const char b[] = "event: x\n\ndata: y\n\n";
    assert_string_equal(parse_in_pieces(b, sizeof b - 1, 5, &s), "[message|y]");
    /* a leading BOM is skipped, an event not ended by a blank line is not dispatched */
    const char c[] = "\xef\xbb\xbf" "data: z\n\ndata: unfinished\n";
    assert_string_equal(parse_in_pieces(c, sizeof c - 1, 1, &s), "[message|z]");
    /* NUL bytes in data are data */
    const char d[] = "data: a\0b\n\n";
    parse_in_pieces(d, sizeof d - 1, 2, &s);
    assert_int_equal(s.count, 1);
    assert_memory_equal(s.log, "[message|a\0b]", 13);
}

static void limits_and_stop(void **state) {
    (void)state;
    seen s;
    memset(&s, 0, sizeof s);
    veil_sse *p = veil_sse_new(16, record, &s);
    veil_err err;
    assert_int_equal(veil_sse_feed(p, "data: 0123456789abcdef\n", 23, &err), VEIL_ERR_MALFORMED);
    assert_non_null(strstr(err.message, "longer than 16"));
    veil_sse_free(p);
    memset(&s, 0, sizeof s);
    p = veil_sse_new(16, record, &s);
    assert_int_equal(veil_sse_feed(p, "data: 0123456789\ndata: 0123456789\n", 34, &err), VEIL_ERR_MALFORMED);
    assert_non_null(strstr(err.message, "event"));
    veil_sse_free(p);
    memset(&s, 0, sizeof s);
    s.stop_after = 1;
    p = veil_sse_new(64, record, &s);
    assert_int_equal(veil_sse_feed(p, "data: 1\n\ndata: 2\n\n", 18, &err), VEIL_ERR_INVALID_ARG);
    assert_int_equal(s.count, 1);
    assert_int_equal(veil_sse_events(p), 1);
    veil_sse_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(openai_stream_any_split),
        cmocka_unit_test(fields),
        cmocka_unit_test(limits_and_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
