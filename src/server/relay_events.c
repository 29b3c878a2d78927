/* Reads an OpenAI-compatible upstream's chat.completion.chunk events for the
 * upstream backend (veil_upstream_events in server.h). An event is parsed
 * whole by jansson unless it has the learned shape of this stream's content
 * events, when only its content string is decoded (by jansson, or copied when it
 * is plain printable ASCII, see veil_json_plain): relaying
 * a fast upstream, parsing every ~150-byte event into a tree cost more than
 * everything else veil does per token. */
#include <stdlib.h>
#include <string.h>

#include "server.h"

static void shape_clear(veil_upstream_events *ev) {
    free(ev->before);
    ev->before = ev->after = NULL;
    ev->before_len = ev->after_len = 0;
}

void veil_upstream_events_clear(veil_upstream_events *ev) { shape_clear(ev); }

/* Learns the shape of a content-only event `data` whose parse is `chunk` and
 * whose content is `content`: finds where the content's string lies by
 * looking for its JSON spellings (jansson's, plain and ASCII-only), and keeps
 * a split only if the event with another string there parses to the same
 * chunk with that string as its content. */
static void shape_learn(veil_upstream_events *ev, const char *data, size_t len, json_t *chunk, json_t *content) {
    if (ev->before)
        ev->fruitless = ev->hits ? 0 : ev->fruitless + 1;
    shape_clear(ev);
    ev->hits = 0;
    if (ev->fruitless >= 4)
        return; /* this upstream's events differ in more than their content, or are spelled unlike jansson's */
    /* each place tried costs a parse of the event: only small events, a few places each (an
     * event with its content's spelling everywhere must not cost a parse per spelling) */
    if (len > 4096)
        return;
    int tries = 0;
    int is_x = json_string_length(content) == 1 && json_string_value(content)[0] == 'x';
    const char *probe = is_x ? "\"y\"" : "\"x\"";
    json_t *probe_str = json_string(is_x ? "y" : "x"), *expect = json_deep_copy(chunk);
    json_t *delta = json_object_get(json_array_get(json_object_get(expect, "choices"), 0), "delta");
    int ok = probe_str && delta && json_object_set(delta, "content", probe_str) == 0;
    const size_t flags[2] = {JSON_ENCODE_ANY, JSON_ENCODE_ANY | JSON_ENSURE_ASCII};
    for (int f = 0; ok && f < 2 && !ev->before; f++) {
        char *lit = json_dumps(content, flags[f]);
        size_t ll = lit ? strlen(lit) : 0;
        const char *at = data;
        while (lit && tries < 8 && (size_t)(data + len - at) >= ll &&
               (at = memmem(at, (size_t)(data + len - at), lit, ll))) {
            tries++;
            size_t b = (size_t)(at - data), a = len - b - ll;
            char *doc = malloc(b + 3 + a);
            if (!doc)
                break;
            memcpy(doc, data, b);
            memcpy(doc + b, probe, 3);
            memcpy(doc + b + 3, at + ll, a);
            json_t *parsed = json_loadb(doc, b + 3 + a, 0, NULL);
            int same = parsed && json_equal(parsed, expect);
            json_decref(parsed);
            if (same) { /* one allocation holds both sides */
                memmove(doc + b, doc + b + 3, a);
                ev->before = doc;
                ev->before_len = b;
                ev->after = doc + b;
                ev->after_len = a;
                break;
            }
            free(doc);
            at++;
        }
        free(lit);
    }
    json_decref(probe_str);
    json_decref(expect);
    if (!ev->before)
        ev->fruitless++; /* no place found: a try that failed counts as one that did not pay */
}

/* An event of the learned shape: hands its content on and returns 1; 0 when
 * the event is not of that shape (or its middle is not one non-empty string). */
static int shape_match(veil_upstream_events *ev, const char *data, size_t len) {
    if (!ev->before || len < ev->before_len + ev->after_len + 2 || memcmp(data, ev->before, ev->before_len) ||
        memcmp(data + len - ev->after_len, ev->after, ev->after_len))
        return 0;
    const char *mid = data + ev->before_len, *text = mid + 1;
    size_t mid_len = len - ev->before_len - ev->after_len, n = mid_len - 2;
    json_t *s = NULL;
    /* a plain string's bytes are its text; any other is decoded by jansson */
    if (!(mid_len > 2 && mid[0] == '"' && mid[mid_len - 1] == '"' && veil_json_plain(text, n))) {
        s = json_loadb(mid, mid_len, JSON_DECODE_ANY, NULL);
        text = json_string_value(s);
        n = json_string_length(s);
    }
    int ok = text && n;
    if (ok) {
        ev->hits++;
        ev->sink->piece(ev->sink->ctx, text, n, "", 0);
    }
    json_decref(s);
    return ok;
}

int veil_upstream_event(veil_upstream_events *ev, const char *data, size_t len) {
    if (len == 6 && !memcmp(data, "[DONE]", 6)) {
        ev->done_seen = 1;
        return 0;
    }
    if (!ev->no_shape && shape_match(ev, data, len))
        return 0;
    json_t *chunk = json_loadb(data, len, 0, NULL);
    if (!json_is_object(chunk)) {
        json_decref(chunk);
        return 0; /* tolerate what is not a chunk, as OpenAI clients do */
    }
    json_t *err = json_object_get(chunk, "error");
    if (err) {
        const char *m = json_string_value(json_object_get(err, "message"));
        snprintf(ev->stream_error, sizeof ev->stream_error, "%s", m ? m : "upstream error");
        json_decref(chunk);
        return 1;
    }
    json_t *choices = json_object_get(chunk, "choices"), *choice = json_array_get(choices, 0);
    json_t *delta = json_object_get(choice, "delta");
    json_t *content = json_object_get(delta, "content"), *reasoning = json_object_get(delta, "reasoning_content");
    if (!reasoning)
        reasoning = json_object_get(delta, "reasoning");
    size_t cl = json_string_length(content), rl = json_string_length(reasoning);
    if (cl || rl)
        ev->sink->piece(ev->sink->ctx, cl ? json_string_value(content) : "", cl, rl ? json_string_value(reasoning) : "",
                        rl);
    const char *fr = json_string_value(json_object_get(choice, "finish_reason"));
    if (fr)
        snprintf(ev->finish, sizeof ev->finish, "%s", fr);
    json_t *usage = json_object_get(chunk, "usage");
    if (json_is_object(usage)) {
        ev->prompt_tokens = (long)json_integer_value(json_object_get(usage, "prompt_tokens"));
        ev->completion_tokens = (long)json_integer_value(json_object_get(usage, "completion_tokens"));
    }
    /* a plain content event: what the next ones probably look like */
    if (!ev->no_shape && cl && !rl && !fr && !json_is_object(usage) && json_array_size(choices) == 1)
        shape_learn(ev, data, len, chunk, content);
    json_decref(chunk);
    return 0;
}
