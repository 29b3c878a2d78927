/* Unit tests for the reader of an upstream's chat.completion.chunk events:
 * what reaches the sink, the finish reason, counts, error events and [DONE];
 * malformed events are ignored; the learned event shape gives the same sink
 * calls as parsing every event whole, and gives up on upstreams whose events
 * change in more than their content. */
#include "testutil.h"

#include "server/server.h"

typedef struct seen {
    char log[8192]; /* "content|reasoning;" per piece */
    size_t len;
    int pieces;
} seen;

static void on_piece(void *ctx, const char *c, size_t cl, const char *r, size_t rl) {
    seen *s = ctx;
    assert_true(s->len + cl + rl + 2 < sizeof s->log);
    memcpy(s->log + s->len, c, cl);
    s->len += cl;
    s->log[s->len++] = '|';
    memcpy(s->log + s->len, r, rl);
    s->len += rl;
    s->log[s->len++] = ';';
    s->log[s->len] = '\0';
    s->pieces++;
}

typedef struct reader {
    seen seen;
    veil_gen_sink sink;
    veil_upstream_events ev;
} reader;

static void reader_init(reader *r, int no_shape) {
    memset(r, 0, sizeof *r);
    r->sink.ctx = &r->seen;
    r->sink.piece = on_piece;
    r->ev.sink = &r->sink;
    r->ev.no_shape = no_shape;
}

static int feed(reader *r, const char *data) { return veil_upstream_event(&r->ev, data, strlen(data)); }

#define EVENT(content)                                                                                                 \
    "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\",\"choices\":[{\"index\":0,"      \
    "\"delta\":{\"content\":" content "},\"finish_reason\":null}]}"

/* Feeds the same events to a shape-learning reader and to one parsing every
 * event whole; both must see the same; returns the learning one's log. */
static void both(const char *const *events, size_t n, reader *a, reader *b) {
    reader_init(a, 0);
    reader_init(b, 1);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(feed(a, events[i]), feed(b, events[i]));
    assert_string_equal(a->seen.log, b->seen.log);
    assert_string_equal(a->ev.finish, b->ev.finish);
    assert_int_equal(a->ev.prompt_tokens, b->ev.prompt_tokens);
    assert_int_equal(a->ev.completion_tokens, b->ev.completion_tokens);
    assert_int_equal(a->ev.done_seen, b->ev.done_seen);
    assert_string_equal(a->ev.stream_error, b->ev.stream_error);
}

static void openai_stream(void **state) {
    (void)state;
    const char *ev[] = {
        "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}",
        "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"reasoning\":\"hm\"}}]}",
        EVENT("\"Hello\""),
        EVENT("\",\""),
        EVENT("\" w\\u00f6rld\""),
        EVENT("\"\\n\\\"q\\\"\""),
        "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}",
        "{\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":4}}",
        "[DONE]",
    };
    reader a, b;
    both(ev, sizeof ev / sizeof *ev, &a, &b);
    assert_string_equal(a.seen.log, "|hm;Hello|;,|; w\xc3\xb6rld|;\n\"q\"|;");
    assert_string_equal(a.ev.finish, "length");
    assert_int_equal(a.ev.prompt_tokens, 7);
    assert_int_equal(a.ev.completion_tokens, 4);
    assert_true(a.ev.done_seen);
    assert_true(a.ev.hits >= 2); /* the shape was learned and used */
    veil_upstream_events_clear(&a.ev);
    veil_upstream_events_clear(&b.ev);
}

static void malformed_events_are_ignored(void **state) {
    (void)state;
    const char *ev[] = {
        EVENT("\"ok\""), EVENT("\"ok\""), /* a shape is learned */
        "", "{", "[]", "null", "\"str\"", "{\"choices\":5}", "{\"choices\":[{\"delta\":{\"content\":5}}]}",
        "{\"choices\":[{\"delta\":{\"content\":\"a\"}}]} trailing",
        EVENT("\"unterminated"), EVENT("\"bad \xff utf-8\""), EVENT("\"lone \\ud800\""), EVENT("\"bad \\q escape\""),
        EVENT("5"), EVENT("null"), EVENT("\"\""), EVENT("\"two\" \"strings\""), EVENT("\"a\",\"reasoning_content\":\"b\""),
        EVENT("\"c\"}},{\"index\":1,\"delta\":{\"content\":\"d\""), EVENT(" \"spaced\" "),
        "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\",\"choices\":[{\"index\":0,"
        "\"delta\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}]}",
    };
    reader a, b;
    both(ev, sizeof ev / sizeof *ev, &a, &b);
    assert_string_equal(a.seen.log, "ok|;ok|;a|b;c|;spaced|;x|;");
    assert_string_equal(a.ev.finish, "stop");
    assert_false(a.ev.done_seen);
    veil_upstream_events_clear(&a.ev);
    veil_upstream_events_clear(&b.ev);
}

static void error_event(void **state) {
    (void)state;
    reader a;
    reader_init(&a, 0);
    assert_int_equal(feed(&a, EVENT("\"a\"")), 0);
    assert_int_equal(feed(&a, "{\"error\":{\"message\":\"upstream broke\"}}"), 1);
    assert_string_equal(a.ev.stream_error, "upstream broke");
    veil_upstream_events_clear(&a.ev);
    reader_init(&a, 0);
    assert_int_equal(feed(&a, "{\"error\":\"no message\"}"), 1);
    assert_string_equal(a.ev.stream_error, "upstream error");
    veil_upstream_events_clear(&a.ev);
}

/* The content's spelling elsewhere in the event (here the id) is not taken
 * for the content's place. */
static void content_spelled_elsewhere(void **state) {
    (void)state;
    const char *ev[] = {
        "{\"id\":\"same\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"same\"},\"finish_reason\":null}]}",
        "{\"id\":\"other\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"same\"},\"finish_reason\":null}]}",
        "{\"id\":\"same\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"next\"},\"finish_reason\":null}]}",
        "{\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"finish_reason\":null}]}",
        "{\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"y\"},\"finish_reason\":null}]}",
    };
    reader a, b;
    both(ev, sizeof ev / sizeof *ev, &a, &b);
    assert_string_equal(a.seen.log, "same|;same|;next|;x|;y|;");
    assert_true(a.ev.hits >= 1);
    veil_upstream_events_clear(&a.ev);
    veil_upstream_events_clear(&b.ev);
}

/* Events that change in more than their content (a counter here): every one
 * is parsed whole, the same pieces come out, and learning stops. */
static void changing_events_stop_learning(void **state) {
    (void)state;
    reader a, b;
    reader_init(&a, 0);
    reader_init(&b, 1);
    char e[256];
    for (int i = 0; i < 20; i++) {
        snprintf(e, sizeof e, "{\"n\":%d,\"choices\":[{\"index\":0,\"delta\":{\"content\":\"t%d\"}}]}", i, i);
        assert_int_equal(feed(&a, e), feed(&b, e));
    }
    assert_string_equal(a.seen.log, b.seen.log);
    assert_int_equal(a.seen.pieces, 20);
    assert_null(a.ev.before);
    assert_int_equal(a.ev.fruitless, 4);
    veil_upstream_events_clear(&a.ev);
    veil_upstream_events_clear(&b.ev);
}

/* Content spelled unlike jansson (an ASCII letter written as a backslash-u escape): no place is found,
 * learning stops after four tries, and every event still comes out whole. A large event with its
 * content's spelling everywhere is read without a parse per spelling. */
static void unlearnable_and_large_events(void **state) {
    (void)state;
    reader a, b;
    reader_init(&a, 0);
    reader_init(&b, 1);
    for (int i = 0; i < 10; i++) {
        const char *e = EVENT("\"\\u0063af\\u00e9\"");
        assert_int_equal(feed(&a, e), feed(&b, e));
    }
    assert_null(a.ev.before);
    assert_int_equal(a.ev.fruitless, 4);
    assert_string_equal(a.seen.log, b.seen.log);
    assert_int_equal(a.seen.pieces, 10);
    veil_upstream_events_clear(&a.ev);
    veil_upstream_events_clear(&b.ev);
    /* 20,000 copies of "a" in an extra field, then the content "a" */
    enum { COPIES = 20000 };
    char *big = malloc(COPIES * 4 + 200);
    assert_non_null(big);
    size_t n = (size_t)sprintf(big, "{\"x\":[");
    for (int i = 0; i < COPIES; i++) n += (size_t)sprintf(big + n, "%s\"a\"", i ? "," : "");
    n += (size_t)sprintf(big + n, "],\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}");
    reader_init(&a, 0);
    for (int i = 0; i < 3; i++) assert_int_equal(feed(&a, big), 0);
    assert_string_equal(a.seen.log, "a|;a|;a|;");
    assert_null(a.ev.before); /* too large to learn from */
    veil_upstream_events_clear(&a.ev);
    free(big);
}

/* veil_json_plain against jansson: every string it calls plain is written by jansson as its
 * bytes between quotes, and those quoted bytes load back as the string; every byte it refuses
 * is one jansson escapes or one a quoted copy would get wrong. */
static void plain_strings_match_jansson(void **state) {
    (void)state;
    uint64_t r = 5;
    int plain = 0, refused = 0;
    for (int it = 0; it < 20000; it++) {
        char s[24];
        size_t n = (size_t)(it % 24);
        for (size_t i = 0; i < n; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            /* mostly printable ASCII, now and then any byte */
            s[i] = (char)((r >> 60) ? 0x20 + (r >> 33) % 95 : (r >> 40) & 0xff);
        }
        json_t *j = json_stringn_nocheck(s, n);
        char out[256];
        size_t w = json_dumpb(j, out, sizeof out, JSON_ENCODE_ANY);
        json_decref(j);
        int is_plain = veil_json_plain(s, n);
        int verbatim = w == n + 2 && out[0] == '"' && !memcmp(out + 1, s, n) && out[n + 1] == '"';
        if (is_plain) {
            plain++;
            assert_true(verbatim);
            char q[32];
            q[0] = '"';
            memcpy(q + 1, s, n);
            q[n + 1] = '"';
            json_t *back = json_loadb(q, n + 2, JSON_DECODE_ANY, NULL);
            assert_non_null(back);
            assert_int_equal(json_string_length(back), n);
            assert_memory_equal(json_string_value(back), s, n);
            json_decref(back);
        } else {
            refused++;
            for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') goto found;
            }
            fail_msg("a plain string refused");
        found:;
        }
    }
    assert_true(plain > 1000 && refused > 1000); /* both sides were exercised */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(openai_stream),
        cmocka_unit_test(malformed_events_are_ignored),
        cmocka_unit_test(error_event),
        cmocka_unit_test(content_spelled_elsewhere),
        cmocka_unit_test(changing_events_stop_learning),
        cmocka_unit_test(unlearnable_and_large_events),
        cmocka_unit_test(plain_strings_match_jansson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
