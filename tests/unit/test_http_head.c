/* The request-head check in front of libevent's parser (src/server/http_guard.c):
 * well-formed heads pass with their body length; every malformed kind is
 * refused with its status and message; no input reads past its length. */
#include "testutil.h"

#include "server/http_internal.h"

static const veil_http_limits lim = {1000, 64};

/* Checks the head in a buffer of exactly its length (ASan sees any read past it). */
static void expect(const char *text, int status, const char *message, size_t body) {
    size_t n = strlen(text);
    char *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, text, n);
    veil_http_head h;
    int ok = veil_http_head_check(copy, n, &lim, &h);
    free(copy);
    if (!status) {
        if (!ok)
            fail_msg("%s: refused: %d %s", text, h.status, h.message);
        assert_int_equal(h.content_length, body);
        return;
    }
    if (ok)
        fail_msg("%s: accepted", text);
    assert_int_equal(h.status, status);
    if (strcmp(h.message, message) != 0)
        fail_msg("%s: message '%s', want '%s'", text, h.message, message);
}

static void test_well_formed(void **state) {
    (void)state;
    expect("GET / HTTP/1.1\r\n\r\n", 0, NULL, 0);
    expect("GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n", 0, NULL, 0);
    expect("POST /api/v1/chat/completions HTTP/1.1\r\nContent-Length: 12\r\ncontent-length:12 \r\n\r\n", 0, NULL, 12);
    expect("POST /x HTTP/1.1\r\nX-Empty:\r\nContent-Length:\t1000\r\n\r\n", 0, NULL, 1000);
}

static void test_framing(void **state) {
    (void)state;
    expect("POST /x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400,
           "Conflicting Content-Length headers", 0);
    expect("POST /x HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
           "Content-Length and Transfer-Encoding together", 0);
    expect("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411,
           "Send the body with a Content-Length: chunked request bodies are not accepted", 0);
    expect("POST /x HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400, "Invalid Content-Length", 0);
    expect("POST /x HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", 400, "Invalid Content-Length", 0);
    expect("POST /x HTTP/1.1\r\nContent-Length: \r\n\r\n", 400, "Invalid Content-Length", 0);
    expect("POST /x HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", 400, "Invalid Content-Length", 0);
    expect("POST /x HTTP/1.1\r\nContent-Length: 1001\r\n\r\n", 413, "Request body is too large", 0);
}

static void test_malformed(void **state) {
    (void)state;
    expect("", 400, "Malformed request", 0);
    expect("\r\n\r\n", 400, "Malformed request line", 0);
    expect("GET / HTTP/1.1\r\n", 400, "Malformed request", 0);
    expect("GET / HTTP/1.1\r\nHost: x\r\n\r", 400, "Malformed request", 0);
    expect("GET  / HTTP/1.1\r\n\r\n", 400, "Malformed request line", 0);
    expect("GET /\r\n\r\n", 400, "Malformed request line", 0);
    expect("G(T / HTTP/1.1\r\n\r\n", 400, "Malformed request line", 0);
    expect("GET /a\x01 HTTP/1.1\r\n\r\n", 400, "Malformed request line", 0);
    expect("GET /\x7f HTTP/1.1\r\n\r\n", 400, "Malformed request line", 0);
    expect("GET / HTTP/9.9\r\n\r\n", 505, "HTTP version not supported", 0);
    expect("GET / HTTP/1.1 \r\n\r\n", 505, "HTTP version not supported", 0);
    expect("GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400, "Malformed header", 0);
    expect("GET / HTTP/1.1\r\n: empty name\r\n\r\n", 400, "Malformed header", 0);
    expect("GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400, "Malformed header", 0);
    expect("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400, "Malformed header", 0);
    expect("GET / HTTP/1.1\r\nHost: x\ny\r\n\r\n", 400, "Malformed header", 0);
    char target[200];
    snprintf(target, sizeof target, "GET /%0100d HTTP/1.1\r\n\r\n", 0);
    expect(target, 414, "Request target is too long", 0);
    char nul[] = "GET / HTTP/1.1\r\nA: \0\r\n\r\n";
    veil_http_head h;
    assert_int_equal(veil_http_head_check(nul, sizeof nul - 1, &lim, &h), 0);
    assert_int_equal(h.status, 400);
}

/* Every prefix and every single-byte change of a good head: refused or
 * accepted, never a crash or a read past the end. */
static void test_mutations(void **state) {
    (void)state;
    const char *good = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n";
    size_t n = strlen(good);
    for (size_t cut = 0; cut <= n; cut++) {
        char *p = malloc(cut ? cut : 1);
        memcpy(p, good, cut);
        veil_http_head h;
        int ok = veil_http_head_check(p, cut, &lim, &h);
        assert_true(ok == (cut == n));
        free(p);
    }
    static const char bytes[] = {'\0', '\r', '\n', ' ', ':', '\t', 'x', '9', '\x80', '\xff'};
    for (size_t i = 0; i < n; i++)
        for (size_t b = 0; b < sizeof bytes; b++) {
            char *p = malloc(n);
            memcpy(p, good, n);
            p[i] = bytes[b];
            veil_http_head h;
            if (!veil_http_head_check(p, n, &lim, &h))
                assert_true(h.status >= 400 && h.status < 600 && h.message && *h.message);
            free(p);
        }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_well_formed),
        cmocka_unit_test(test_framing),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
