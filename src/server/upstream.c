/* The upstream backend: relays a generation to an OpenAI-compatible server
 * (vLLM, llama.cpp's server, SGLang, Ollama) over libcurl, always streaming,
 * and hands each delta to the sink as it arrives. */
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "server.h"
#include "veil/buf.h"
#include "veil/sse.h"

#define MAX_EVENT (1024 * 1024)
#define MAX_ERROR_BODY (64 * 1024)

typedef struct upstream {
    char *url; /* .../chat/completions */
    char *auth;
    long timeout_s;
} upstream;

typedef struct call {
    const veil_gen_sink *sink;
    veil_sse *sse;
    long status;
    int streaming;   /* the answer is an event stream */
    veil_buf error;  /* a non-stream body (an error), bounded */
    char finish[32];
    long prompt_tokens, completion_tokens;
    int done_seen;
    char stream_error[300]; /* an error event inside the stream */
    CURL *curl;
} call;

static int on_event(void *ctx, const char *event, const char *data, size_t len) {
    (void)event;
    call *c = ctx;
    if (len == 6 && !memcmp(data, "[DONE]", 6)) {
        c->done_seen = 1;
        return 0;
    }
    json_t *chunk = json_loadb(data, len, 0, NULL);
    if (!json_is_object(chunk)) {
        json_decref(chunk);
        return 0; /* tolerate what is not a chunk, as OpenAI clients do */
    }
    json_t *err = json_object_get(chunk, "error");
    if (err) {
        const char *m = json_string_value(json_object_get(err, "message"));
        snprintf(c->stream_error, sizeof c->stream_error, "%s", m ? m : "upstream error");
        json_decref(chunk);
        return 1;
    }
    json_t *choice = json_array_get(json_object_get(chunk, "choices"), 0);
    json_t *delta = json_object_get(choice, "delta");
    json_t *content = json_object_get(delta, "content"), *reasoning = json_object_get(delta, "reasoning_content");
    if (!reasoning)
        reasoning = json_object_get(delta, "reasoning");
    size_t cl = json_string_length(content), rl = json_string_length(reasoning);
    if (cl || rl)
        c->sink->piece(c->sink->ctx, cl ? json_string_value(content) : "", cl, rl ? json_string_value(reasoning) : "", rl);
    const char *fr = json_string_value(json_object_get(choice, "finish_reason"));
    if (fr)
        snprintf(c->finish, sizeof c->finish, "%s", fr);
    json_t *usage = json_object_get(chunk, "usage");
    if (json_is_object(usage)) {
        c->prompt_tokens = (long)json_integer_value(json_object_get(usage, "prompt_tokens"));
        c->completion_tokens = (long)json_integer_value(json_object_get(usage, "completion_tokens"));
    }
    json_decref(chunk);
    return 0;
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ctx) {
    call *c = ctx;
    size_t n = size * nmemb;
    if (c->status == 0) {
        curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &c->status);
        char *type = NULL;
        curl_easy_getinfo(c->curl, CURLINFO_CONTENT_TYPE, &type);
        c->streaming = c->status == 200 && type && strstr(type, "text/event-stream");
    }
    if (c->streaming)
        return veil_sse_feed(c->sse, ptr, n, NULL) == VEIL_OK ? n : 0;
    return veil_buf_append(&c->error, ptr, n) ? n : 0;
}

static int on_progress(void *ctx, curl_off_t a, curl_off_t b, curl_off_t x, curl_off_t y) {
    (void)a, (void)b, (void)x, (void)y;
    call *c = ctx;
    return c->sink->cancelled(c->sink->ctx);
}

/* The body sent upstream: the client's request with the upstream model name,
 * the messages as prepared, always streamed, Venice-only keys removed. */
static char *upstream_body(const veil_chat_request *req) {
    json_t *b = json_deep_copy(req->body);
    const veil_model *m = req->model;
    json_object_set_new(b, "model", json_string(m->upstream_model ? m->upstream_model : m->id));
    json_object_set(b, "messages", req->messages);
    json_object_set_new(b, "stream", json_true());
    json_object_set_new(b, "stream_options", json_pack("{s:b}", "include_usage", 1));
    json_object_del(b, "venice_parameters");
    char *s = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    return s;
}

static void generate(veil_backend *b, const veil_chat_request *req, const veil_gen_sink *sink) {
    upstream *u = b->impl;
    call c;
    memset(&c, 0, sizeof c);
    c.error.limit = MAX_ERROR_BODY;
    c.sink = sink;
    c.sse = veil_sse_new(MAX_EVENT, on_event, &c);
    char *body = upstream_body(req);
    c.curl = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "Accept: text/event-stream");
    if (u->auth)
        h = curl_slist_append(h, u->auth);
    if (!c.sse || !body || !c.curl || !h) {
        sink->fail(sink->ctx, NULL, 500, "out of memory");
        goto out;
    }
    curl_easy_setopt(c.curl, CURLOPT_URL, u->url);
    curl_easy_setopt(c.curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c.curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c.curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c.curl, CURLOPT_WRITEDATA, &c);
    curl_easy_setopt(c.curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c.curl, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c.curl, CURLOPT_XFERINFODATA, &c);
    curl_easy_setopt(c.curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c.curl, CURLOPT_CONNECTTIMEOUT, u->timeout_s);
    /* a stream may run long; what times out is silence */
    curl_easy_setopt(c.curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c.curl, CURLOPT_LOW_SPEED_TIME, u->timeout_s);
    CURLcode rc = curl_easy_perform(c.curl);
    if (sink->cancelled(sink->ctx)) {
        sink->fail(sink->ctx, NULL, 499, "client closed the request");
    } else if (c.stream_error[0]) {
        sink->fail(sink->ctx, NULL, 502, c.stream_error);
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
        sink->fail(sink->ctx, NULL, 504, "Upstream timed out");
    } else if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST) {
        sink->fail(sink->ctx, NULL, 502, "Upstream unavailable");
    } else if (c.status >= 400 && c.status < 500) {
        json_t *e = c.error.data ? json_loads(c.error.data, 0, NULL) : NULL;
        const char *m = json_string_value(json_object_get(json_object_get(e, "error"), "message"));
        if (!m)
            m = json_string_value(json_object_get(e, "error"));
        if (!m)
            m = json_string_value(json_object_get(e, "message"));
        sink->fail(sink->ctx, NULL, (int)c.status, m ? m : "Upstream refused the request");
        json_decref(e);
    } else if (rc != CURLE_OK || !c.streaming) {
        sink->fail(sink->ctx, NULL, 502, "Upstream failed");
    } else {
        sink->done(sink->ctx, c.finish[0] ? c.finish : "stop", c.prompt_tokens, c.completion_tokens);
    }
out:
    curl_slist_free_all(h);
    curl_easy_cleanup(c.curl);
    veil_sse_free(c.sse);
    free(body);
    veil_buf_free(&c.error);
}

static void upstream_free(veil_backend *b) {
    if (!b)
        return;
    upstream *u = b->impl;
    if (u) {
        free(u->url);
        free(u->auth);
        free(u);
    }
    free(b);
}

veil_backend *veil_upstream_backend_new(const char *base_url, const char *key, long timeout_s) {
    veil_backend *b = calloc(1, sizeof *b);
    upstream *u = calloc(1, sizeof *u);
    if (!b || !u) {
        free(b);
        free(u);
        return NULL;
    }
    size_t n = strlen(base_url);
    while (n > 0 && base_url[n - 1] == '/')
        n--;
    u->url = malloc(n + 32);
    if (u->url)
        snprintf(u->url, n + 32, "%.*s/chat/completions", (int)n, base_url);
    if (key) {
        u->auth = malloc(strlen(key) + 32);
        if (u->auth)
            sprintf(u->auth, "Authorization: Bearer %s", key);
    }
    u->timeout_s = timeout_s > 0 ? timeout_s : 60;
    b->name = "upstream";
    b->generate = generate;
    b->free = upstream_free;
    b->impl = u;
    if (!u->url || (key && !u->auth)) {
        upstream_free(b);
        return NULL;
    }
    return b;
}
