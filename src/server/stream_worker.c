/* A generation's worker side: the sink a backend (the engine or an
 * upstream) writes its answer into, on the worker thread. Streamed answers
 * are formatted here into whole SSE events, so that the loop only moves and
 * hashes bytes; E2EE answers are sealed here, piece by piece, to the
 * client's key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "base/base.h"
#include "http_internal.h"
#include "tee.h"
#include "veil/ecies.h"
#include "veil/secure.h"

/* Appends text as a JSON string (jansson's escaping) at st->wfmt + *at. */
static int format_string(stream *st, size_t *at, const char *text, size_t n) {
    if (veil_json_plain(text, n)) { /* what jansson would write, without its string object */
        st->wfmt[*at] = '"';
        memcpy(st->wfmt + *at + 1, text, n);
        st->wfmt[*at + 1 + n] = '"';
        *at += n + 2;
        return 1;
    }
    json_t *j = json_stringn_nocheck(text, n); /* pieces are whole UTF-8 characters */
    size_t w = j ? json_dumpb(j, st->wfmt + *at, st->wfmt_cap - *at, JSON_ENCODE_ANY) : 0;
    json_decref(j);
    if (!w || w > st->wfmt_cap - *at)
        return 0;
    *at += w;
    return 1;
}

static int format_raw(stream *st, size_t *at, const char *bytes, size_t n) {
    memcpy(st->wfmt + *at, bytes, n);
    *at += n;
    return 1;
}

/* Hands the formatted events gathered on the worker to the loop. */
static void sink_flush(void *ctx) {
    stream *st = ctx;
    size_t n = st->wacc ? evbuffer_get_length(st->wacc) : 0;
    if (!n)
        return;
    st->t_publish = veil_now_s();
    pthread_mutex_lock(&st->mu);
    int first = !st->t_first_piece;
    if (first)
        st->t_first_piece = st->t_publish;
    int was_empty = evbuffer_get_length(st->wout) == 0;
    int ok = evbuffer_add_buffer(st->wout, st->wacc) == 0; /* moves the chains */
    pthread_mutex_unlock(&st->mu);
    if (!ok)
        atomic_store(&st->cancelled, 1);
    /* a non-empty queue already has a wake-up coming, which drains it all */
    else if (was_empty)
        event_active(st->wake, EV_READ, 0);
    if (ok && first) {
        /* Time to first token: a backend with a burst ready would keep this core busy while the
         * loop waits for one to send the first piece; so the worker waits (at most 5 ms) for the
         * loop to take it. */
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += 5000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_mutex_lock(&st->mu);
        while (!st->first_out_done && !atomic_load(&st->cancelled))
            if (pthread_cond_timedwait(&st->first_out, &st->mu, &until))
                break;
        pthread_mutex_unlock(&st->mu);
    }
}

/* A streamed piece: its whole SSE event formatted here, on the worker, and
 * queued for the loop, which only moves and hashes bytes. */
static void stream_piece(stream *st, const char *c, size_t cl, const char *r, size_t rl) {
    /* a JSON string is at most 6 bytes per byte (\u00XX) and its quotes */
    size_t need = 64 + st->chunk_head_len + st->chunk_tail_len + 6 * (cl + rl) + 4;
    if (need > st->wfmt_cap) {
        char *b = malloc(need);
        if (!b) {
            atomic_store(&st->cancelled, 1); /* a lost piece would corrupt the answer */
            return;
        }
        veil_free_secret(st->wfmt, st->wfmt_cap);
        st->wfmt = b;
        st->wfmt_cap = need;
    }
    size_t at = 0;
    int ok = format_raw(st, &at, "data: ", 6) && format_raw(st, &at, st->chunk_head, st->chunk_head_len);
    if (ok && cl)
        ok = format_raw(st, &at, "\"content\":", 10) && format_string(st, &at, c, cl);
    if (ok && rl)
        ok = (!cl || format_raw(st, &at, ",", 1)) && format_raw(st, &at, "\"reasoning_content\":", 20) &&
             format_string(st, &at, r, rl);
    ok = ok && format_raw(st, &at, st->chunk_tail, st->chunk_tail_len) && format_raw(st, &at, "\n\n", 2) &&
         evbuffer_add(st->wacc, st->wfmt, at) == 0;
    if (!ok) {
        atomic_store(&st->cancelled, 1);
        return;
    }
    /* the first piece goes at once (time to first token); then a burst is held until the
     * backend waits (flush), 1 ms has passed (the clock read every 8th piece) or 64 KiB are
     * gathered */
    if (!st->t_publish || evbuffer_get_length(st->wacc) >= 65536 ||
        (++st->unclocked >= 8 && (st->unclocked = 0, veil_now_s() - st->t_publish > 1e-3)))
        sink_flush(st);
}

static void sink_piece(void *ctx, const char *c, size_t cl, const char *r, size_t rl) {
    stream *st = ctx;
    if (st->creq.stream) {
        stream_piece(st, c, cl, r, rl);
        return;
    }
    piece *p = calloc(1, sizeof *p);
    if (p) {
        p->content = malloc(cl + 1);
        p->reasoning = malloc(rl + 1);
    }
    if (!p || !p->content || !p->reasoning) {
        if (p) {
            free(p->content);
            free(p->reasoning);
        }
        free(p);
        /* a lost piece would leave an answer that is not whole: it fails, unsigned */
        atomic_store(&st->cancelled, 1);
        stream_sink_fail(ctx, NULL, 500, "Internal server error");
        return;
    }
    memcpy(p->content, c, cl);
    memcpy(p->reasoning, r, rl);
    p->content_len = cl;
    p->reasoning_len = rl;
    pthread_mutex_lock(&st->mu);
    int was_empty = st->head == NULL;
    if (st->tail)
        st->tail->next = p;
    else
        st->head = p;
    st->tail = p;
    pthread_mutex_unlock(&st->mu);
    if (was_empty)
        event_active(st->wake, EV_READ, 0);
}

static void sink_cached(void *ctx, long cached) {
    stream *st = ctx;
    pthread_mutex_lock(&st->mu);
    st->cached_tokens = cached;
    pthread_mutex_unlock(&st->mu);
}

static void sink_done(void *ctx, const char *finish, long pt, long ct) {
    stream *st = ctx;
    sink_flush(st);
    pthread_mutex_lock(&st->mu);
    snprintf(st->finish, sizeof st->finish, "%s", finish);
    st->prompt_tokens = pt;
    st->completion_tokens = ct;
    st->finished = 1;
    pthread_mutex_unlock(&st->mu);
}

void stream_sink_fail(void *ctx, const char *code, int status, const char *message) {
    stream *st = ctx;
    sink_flush(st);
    pthread_mutex_lock(&st->mu);
    st->failed = 1;
    st->fail_status = status;
    snprintf(st->fail_code, sizeof st->fail_code, "%s", code ? code : "");
    snprintf(st->fail_msg, sizeof st->fail_msg, "%s", message);
    st->finished = 1;
    pthread_mutex_unlock(&st->mu);
}

static int sink_cancelled(void *ctx) {
    stream *st = ctx;
    return atomic_load(&st->cancelled);
}

/* E2EE answers: each non-empty piece sealed to the client key with a fresh
 * ephemeral key, here on the worker, so the loop only moves ciphertext. */
static char *seal(stream *st, const char *text, size_t n) {
    char *hex = NULL;
    if (n &&
        veil_ecies_seal_hex_pooled(&hex, st->srv->eph, &st->creq.client_key, (const uint8_t *)text, n, NULL) != VEIL_OK)
        hex = NULL;
    return hex;
}

static void sink_piece_e2ee(void *ctx, const char *c, size_t cl, const char *r, size_t rl) {
    stream *st = ctx;
    if (st->creq.e2ee_near && !st->creq.stream) { /* NEAR non-streaming: one sealed answer, at the end */
        veil_buf_append(&st->w_content, c, cl);
        veil_buf_append(&st->w_reasoning, r, rl);
        return;
    }
    char *hc = seal(st, c, cl), *hr = seal(st, r, rl);
    if ((cl && !hc) || (rl && !hr)) {
        atomic_store(&st->cancelled, 1); /* never fall back to plaintext */
        stream_sink_fail(ctx, NULL, 500, "Internal server error");
    } else {
        sink_piece(ctx, hc ? hc : "", hc ? strlen(hc) : 0, hr ? hr : "", hr ? strlen(hr) : 0);
    }
    free(hc);
    free(hr);
}

/* The end of an E2EE generation: NEAR's non-streaming answer is sealed here,
 * on the worker, and handed to the loop as ciphertext. */
static void sink_done_e2ee(void *ctx, const char *finish, long pt, long ct) {
    stream *st = ctx;
    if (st->creq.e2ee_near && !st->creq.stream && (st->w_content.len || st->w_reasoning.len)) {
        char *hc = seal(st, st->w_content.data, st->w_content.len),
             *hr = seal(st, st->w_reasoning.data, st->w_reasoning.len);
        int ok = (hc || !st->w_content.len) && (hr || !st->w_reasoning.len);
        veil_buf_free(&st->w_content);
        veil_buf_free(&st->w_reasoning);
        if (ok)
            sink_piece(ctx, hc ? hc : "", hc ? strlen(hc) : 0, hr ? hr : "", hr ? strlen(hr) : 0);
        free(hc);
        free(hr);
        if (!ok) {
            stream_sink_fail(ctx, NULL, 500, "Internal server error");
            return;
        }
    }
    sink_done(ctx, finish, pt, ct);
}

void *stream_worker(void *arg) {
    stream *st = arg;
    double started = veil_now_s();
    pthread_mutex_lock(&st->mu);
    st->t_worker = started;
    pthread_mutex_unlock(&st->mu);
    veil_gen_sink sink = {st,
                          st->creq.e2ee ? sink_piece_e2ee : sink_piece,
                          st->creq.e2ee ? sink_done_e2ee : sink_done,
                          stream_sink_fail,
                          sink_cancelled,
                          sink_flush,
                          sink_cached};
    veil_backend *b = st->creq.model->backend;
    veil_http_error e;
    if (st->creq.e2ee &&
        !veil_e2ee_decrypt_messages(veil_tee_key(st->srv->cfg->tee), st->creq.messages, st->creq.e2ee_near, &e))
        stream_sink_fail(st, NULL, e.status, e.message);
    else if (b)
        b->generate(b, &st->creq, &sink);
    else
        stream_sink_fail(st, NULL, 503, "Model has no backend");
    stream_release(st); /* the worker's last touch of the stream */
    return NULL;
}
