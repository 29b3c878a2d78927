/* The upstream backend: relays a generation to an OpenAI-compatible server
 * (vLLM, llama.cpp's server, SGLang, Ollama) over libcurl, always streaming,
 * and hands each delta to the sink as it arrives. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "base/base.h"
#include "server.h"
#include "veil/buf.h"
#include "veil/sse.h"

#define MAX_EVENT (1024 * 1024)
#define MAX_ERROR_BODY (64 * 1024)

typedef struct upstream {
    char *url; /* .../chat/completions */
    char *auth;
    long timeout_s;
    /* Connections (and DNS answers) kept and reused across requests and worker threads: a new
     * connection costs a handshake (a TLS one for https upstreams) and the upstream an accept
     * before the first token; a kept one answers at once. */
    CURLSH *share;
    pthread_mutex_t locks[CURL_LOCK_DATA_LAST];
} upstream;

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *ctx) {
    (void)h, (void)access;
    pthread_mutex_lock(&((upstream *)ctx)->locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *ctx) {
    (void)h;
    pthread_mutex_unlock(&((upstream *)ctx)->locks[data]);
}

typedef struct call {
    veil_upstream_events ev; /* what the event stream says */
    veil_sse *sse;
    long status;
    int streaming;  /* the answer is an event stream */
    veil_buf error; /* a non-stream body (an error), bounded */
    CURL *curl;
    double last_data; /* when the upstream last sent anything (veil_now_s) */
    long timeout_s;   /* of silence */
    /* what the request allows: an upstream that sends more is cut off there */
    const veil_gen_sink *client; /* the sink the pieces go on to */
    veil_gen_sink capped;        /* ev.sink: counts, then hands on to client */
    size_t bytes, max_bytes;
    long pieces, max_pieces;
    int over; /* the upstream passed the request's allowance */
} call;

/* The request's allowance of answer text: max_tokens (or the model's cap)
 * tokens, as events with content (an honest upstream sends at most one per
 * token) and as bytes (a token's text is far shorter than 256 bytes). */
#define BYTES_PER_TOKEN 256

static void capped_piece(void *ctx, const char *content, size_t cl, const char *reasoning, size_t rl) {
    call *c = ctx;
    if (c->over)
        return;
    if (c->pieces + 1 > c->max_pieces || c->bytes + cl + rl > c->max_bytes) {
        c->over = 1; /* perform() stops the transfer; the answer ends there, cut at its length */
        return;
    }
    c->pieces++;
    c->bytes += cl + rl;
    c->client->piece(c->client->ctx, content, cl, reasoning, rl);
}

static int on_event(void *ctx, const char *event, const char *data, size_t len) {
    (void)event;
    call *c = ctx;
    return veil_upstream_event(&c->ev, data, len);
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ctx) {
    call *c = ctx;
    size_t n = size * nmemb;
    c->last_data = veil_now_s();
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

/* Runs the transfer: what each read from the upstream brings is handed on
 * (sink flush) before waiting for more, so that a burst of events leaves as
 * one write and a slow stream's pieces leave at once. Checks at least every
 * 100 ms for a client that went away, an upstream silent for timeout_s
 * (CURLE_OPERATION_TIMEDOUT), and one past the request's allowance. */
static CURLcode perform(call *c) {
    CURLM *m = curl_multi_init();
    if (!m || curl_multi_add_handle(m, c->curl) != CURLM_OK) {
        curl_multi_cleanup(m);
        return CURLE_OUT_OF_MEMORY;
    }
    CURLcode rc = CURLE_OK;
    int running = 1;
    while (running) {
        if (curl_multi_perform(m, &running) != CURLM_OK) {
            rc = CURLE_RECV_ERROR;
            break;
        }
        c->client->flush(c->client->ctx);
        if (c->client->cancelled(c->client->ctx) || c->over) {
            rc = CURLE_ABORTED_BY_CALLBACK;
            break;
        }
        if (running && veil_now_s() - c->last_data > (double)c->timeout_s) {
            rc = CURLE_OPERATION_TIMEDOUT;
            break;
        }
        if (running && curl_multi_poll(m, NULL, 0, 100, NULL) != CURLM_OK) {
            rc = CURLE_RECV_ERROR;
            break;
        }
    }
    int left;
    for (CURLMsg *msg; (msg = curl_multi_info_read(m, &left));)
        if (msg->msg == CURLMSG_DONE)
            rc = msg->data.result;
    curl_multi_remove_handle(m, c->curl);
    curl_multi_cleanup(m);
    return rc;
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
    c.client = sink;
    c.capped = *sink;
    c.capped.ctx = &c;
    c.capped.piece = capped_piece;
    c.capped.cached = NULL; /* an upstream has no prefix cache to report */
    c.ev.sink = &c.capped;
    c.timeout_s = u->timeout_s;
    c.max_pieces = req->max_tokens > 0 ? req->max_tokens : req->model->max_completion_tokens;
    if (c.max_pieces <= 0)
        c.max_pieces = 4096;
    c.max_bytes = (size_t)c.max_pieces * BYTES_PER_TOKEN;
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
    if (u->share)
        curl_easy_setopt(c.curl, CURLOPT_SHARE, u->share);
    curl_easy_setopt(c.curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c.curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c.curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c.curl, CURLOPT_WRITEDATA, &c);
    curl_easy_setopt(c.curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c.curl, CURLOPT_CONNECTTIMEOUT, u->timeout_s);
    /* a stream may run long; what times out is silence, which perform() watches */
    c.last_data = veil_now_s();
    CURLcode rc = perform(&c);
    if (sink->cancelled(sink->ctx)) {
        sink->fail(sink->ctx, NULL, 499, "client closed the request");
    } else if (c.ev.stream_error[0]) {
        sink->fail(sink->ctx, NULL, 502, c.ev.stream_error);
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
    } else if (c.over) {
        /* more than the request allows: what was relayed is the answer, cut at its length */
        sink->done(sink->ctx, "length", c.ev.prompt_tokens, c.pieces);
    } else if (rc != CURLE_OK || !c.streaming || !c.ev.done_seen) {
        /* a stream that ended without [DONE] (closed early, or garbage) is no whole answer:
         * it fails, so it is never signed as complete */
        sink->fail(sink->ctx, NULL, 502, "Upstream failed");
    } else {
        sink->done(sink->ctx, c.ev.finish[0] ? c.ev.finish : "stop", c.ev.prompt_tokens, c.ev.completion_tokens);
    }
out:
    curl_slist_free_all(h);
    curl_easy_cleanup(c.curl);
    veil_sse_free(c.sse);
    veil_upstream_events_clear(&c.ev);
    free(body);
    veil_buf_free(&c.error);
}

static void share_free(upstream *u) {
    if (!u->share)
        return;
    curl_share_cleanup(u->share);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&u->locks[i]);
    u->share = NULL;
}

static void upstream_free(veil_backend *b) {
    if (!b)
        return;
    upstream *u = b->impl;
    if (u) {
        share_free(u);
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
    if ((u->share = curl_share_init())) {
        for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
            pthread_mutex_init(&u->locks[i], NULL);
        /* without a shared cache each request simply connects anew */
        if (curl_share_setopt(u->share, CURLSHOPT_LOCKFUNC, share_lock) != CURLSHE_OK ||
            curl_share_setopt(u->share, CURLSHOPT_UNLOCKFUNC, share_unlock) != CURLSHE_OK ||
            curl_share_setopt(u->share, CURLSHOPT_USERDATA, u) != CURLSHE_OK ||
            curl_share_setopt(u->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) != CURLSHE_OK ||
            curl_share_setopt(u->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK)
            share_free(u);
    }
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
