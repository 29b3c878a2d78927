/* POST /api/v1/chat/completions (and /v1/chat/completions): auth, the
 * body's checks and the E2EE rules on the loop, then the stream is made and
 * its generation handed to a worker thread (stream_worker.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "base/base.h"
#include "http_internal.h"
#include "tee.h"
#include "veil/hex.h"
#include "veil/secure.h"

const veil_model *http_find_model(void *server_ctx, const char *id) {
    server *s = server_ctx;
    for (size_t i = 0; i < s->cfg->n_models; i++)
        if (!strcmp(s->cfg->models[i].id, id))
            return &s->cfg->models[i];
    return NULL;
}

typedef struct rules_ctx {
    server *s;
    struct evhttp_request *req;
} rules_ctx;

/* veil_e2ee_request_rules with this request's headers and the instance key. */
static int e2ee_rules(void *arg, json_t *body, veil_chat_request *out, veil_http_error *e) {
    rules_ctx *rc = arg;
    struct evkeyvalq *h = evhttp_request_get_input_headers(rc->req);
    veil_e2ee_headers eh = {evhttp_find_header(h, "X-Venice-TEE-Client-Pub-Key"),
                            evhttp_find_header(h, "X-Venice-TEE-Model-Pub-Key"),
                            evhttp_find_header(h, "X-Venice-TEE-Signing-Algo"),
                            evhttp_find_header(h, "X-Signing-Algo"),
                            evhttp_find_header(h, "X-Client-Pub-Key"),
                            evhttp_find_header(h, "X-Model-Pub-Key")};
    veil_tee *tee = rc->s->cfg->tee;
    return veil_e2ee_request_rules(&eh, tee ? veil_tee_pubkey(tee) : NULL, body, out, e);
}

size_t http_chat(server *s, struct evhttp_request *req, double t0, int *status) {
    const char *why;
    uint8_t key_hash[32];
    if (!http_authorized(s, req, &why, key_hash)) {
        *status = 401;
        return http_send_error(s, req, 401, why, NULL);
    }
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    if (ct && strncasecmp(ct, "application/json", 16) != 0) {
        *status = 415;
        return http_send_error(s, req, 415, "Content-Type must be application/json", NULL);
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    if (len > s->cfg->max_body) {
        *status = 413;
        return http_send_error(s, req, 413, "Request body is too large", NULL);
    }
    /* the chat id: 16 random bytes, or no answer at all (never a predictable id, which would
     * let one response's signature record be confused with another's) */
    uint8_t rnd[16];
    if (veil_random_bytes(rnd, sizeof rnd, NULL) != VEIL_OK) {
        *status = 500;
        return http_send_error(s, req, 500, "Internal server error", NULL);
    }
    const char *body = (const char *)evbuffer_pullup(in, -1);
    stream *st = calloc(1, sizeof *st);
    if (!st) {
        *status = 500;
        return http_send_error(s, req, 500, "Internal server error", NULL);
    }
    veil_http_error e;
    rules_ctx rctx = {s, req};
    if (!veil_chat_validate(body ? body : "", len, http_find_model, s, e2ee_rules, &rctx, &st->creq, &e)) {
        free(st);
        *status = e.status;
        return http_send_error(s, req, e.status, e.message, e.param);
    }
    memcpy(st->creq.key_hash, key_hash, sizeof key_hash);
    veil_wipe(key_hash, sizeof key_hash);
    pthread_mutex_lock(&s->mu);
    int full = s->active >= s->cfg->max_streams || s->shutting_down;
    if (!full) {
        s->active++;
        s->workers++;
    }
    pthread_mutex_unlock(&s->mu);
    if (full) {
        veil_chat_request_clear(&st->creq);
        free(st);
        *status = 503;
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
        return http_send_error(s, req, 503, "Server is overloaded, retry shortly", NULL);
    }
    memcpy(st->id, "chatcmpl-", 9);
    veil_hex_encode(st->id + 9, rnd, sizeof rnd);
    st->srv = s;
    st->content.secret = st->reasoning.secret = st->w_content.secret = st->w_reasoning.secret = 1;
    st->req = req;
    st->conn = evhttp_request_get_connection(req);
    if (s->cfg->tee && s->cfg->sigstore && (st->resp_hash = EVP_MD_CTX_new()) &&
        EVP_DigestInit_ex(st->resp_hash, EVP_sha256(), NULL) == 1) {
        st->signing = 1; /* the request hash covers the body exactly as received */
        EVP_Digest(body ? body : "", len, st->req_hash, NULL, EVP_sha256(), NULL);
    }
    st->created = (long)time(NULL);
    st->t0 = t0;
    st->threads = 1;
    if (!stream_make_frame(st)) {
        pthread_mutex_lock(&s->mu);
        s->active--;
        s->workers--;
        pthread_mutex_unlock(&s->mu);
        EVP_MD_CTX_free(st->resp_hash);
        veil_chat_request_clear(&st->creq);
        free(st);
        *status = 500;
        return http_send_error(s, req, 500, "Internal server error", NULL);
    }
    pthread_mutex_init(&st->mu, NULL);
    pthread_condattr_t ca; /* its wait is timed on the monotonic clock: a clock change cannot stretch it */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&st->first_out, &ca);
    pthread_condattr_destroy(&ca);
    st->wake = event_new(s->base, -1, 0, stream_on_wake, st);
    evhttp_connection_set_closecb(st->conn, stream_on_close, st);
    pthread_mutex_lock(&s->mu);
    st->next = s->streams;
    if (s->streams)
        s->streams->prev = st;
    s->streams = st;
    pthread_mutex_unlock(&s->mu);
    if (!veil_thread_detached(stream_worker, st, 512 * 1024)) {
        stream_sink_fail(st, NULL, 503, "Server is overloaded, retry shortly");
        stream_release(st); /* the worker's share, which no worker took */
    }
    *status = -1; /* logged when the stream ends */
    return 0;
}
