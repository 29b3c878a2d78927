/* A generation's loop side: what the event loop does with a stream. Its
 * worker (stream_worker.c) hands over whole formatted SSE events or answer
 * pieces and wakes the loop; on_wake moves them to the client, ends the
 * reply (after the signature is stored, signing.c), and frees the stream
 * once no thread uses it. The loop never waits on a generation. */
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "base/base.h"
#include "http_internal.h"
#include "veil/secure.h"

static void drop_request(stream *st);

static void free_buffers(stream *st) {
    struct evbuffer **b[4] = {&st->out, &st->wout, &st->wacc, &st->rx};
    for (int i = 0; i < 4; i++) {
        if (*b[i])
            evbuffer_free(*b[i]);
        *b[i] = NULL;
    }
}

void stream_unlink_and_free(stream *st) {
    server *s = st->srv;
    pthread_mutex_lock(&s->mu);
    if (st->prev)
        st->prev->next = st->next;
    else
        s->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    s->active--;
    int done = s->shutting_down && s->active == 0;
    pthread_mutex_unlock(&s->mu);
    for (piece *p = st->head, *n; p; p = n) {
        n = p->next;
        veil_free_secret(p->content, p->content_len);
        veil_free_secret(p->reasoning, p->reasoning_len);
        free(p);
    }
    veil_buf_free(&st->content);
    veil_buf_free(&st->reasoning);
    veil_buf_free(&st->w_content);
    veil_buf_free(&st->w_reasoning);
    veil_chat_request_clear(&st->creq);
    drop_request(st);
    free_buffers(st);
    free(st->chunk_head);
    veil_free_secret(st->wfmt, st->wfmt_cap);
    EVP_MD_CTX_free(st->resp_hash);
    free(st->final_bytes);
    event_free(st->wake);
    if (st->end_timer)
        event_free(st->end_timer);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->first_out);
    free(st);
    if (done) {
        /* the last bytes of the reply are still in libevent's buffers: give
         * the loop a moment to write them before it stops */
        struct timeval flush = {0, 200000};
        event_base_loopexit(s->base, &flush);
    }
}

/* The client went away before the reply ended. libevent then detaches the
 * unfinished request from its connection and leaves it to us to free. */
void stream_on_close(struct evhttp_connection *conn, void *arg) {
    (void)conn;
    stream *st = arg;
    atomic_store(&st->cancelled, 1);
    st->client_gone = 1;
    st->conn = NULL;
}

static void drop_request(stream *st) {
    if (st->req && st->client_gone)
        evhttp_request_free(st->req);
    st->req = NULL;
}

json_t *stream_chunk_json(stream *st, json_t *delta, const char *finish) {
    return json_pack("{s:s, s:s, s:i, s:s, s:[{s:i, s:o, s:o, s:n}]}", "id", st->id, "object", "chat.completion.chunk",
                     "created", (json_int_t)st->created, "model", st->creq.model->id, "choices", "index", 0, "delta",
                     delta, "finish_reason", finish ? json_string(finish) : json_null(), "logprobs");
}

/* The bytes around a delta chunk's members: chunk_json's own serialization
 * of this stream's chunk, split at its empty delta. */
int stream_make_frame(stream *st) {
    json_t *chunk = stream_chunk_json(st, json_object(), NULL);
    char *text = chunk ? json_dumps(chunk, JSON_COMPACT) : NULL;
    json_decref(chunk);
    /* inside JSON strings every quote is escaped, so this is the delta member */
    char *d = text ? strstr(text, "\"delta\":{}") : NULL;
    st->out = evbuffer_new();
    st->wout = evbuffer_new();
    st->rx = evbuffer_new();
    st->wacc = evbuffer_new();
    if (!d || !st->out || !st->wout || !st->rx || !st->wacc) {
        free(text);
        free_buffers(st);
        return 0;
    }
    st->chunk_head = text;
    st->chunk_head_len = (size_t)(d - text) + 9;
    st->chunk_tail = d + 9;
    st->chunk_tail_len = strlen(st->chunk_tail);
    return 1;
}

/* Queues one whole SSE event; flush_events writes what a wake-up gathered
 * in one write, so that an event is never split across writes and clients
 * splitting reads on newlines always see whole lines. `v` is consumed; NULL
 * queues [DONE]. */
static void send_event(stream *st, json_t *v) {
    if (!st->req || st->client_gone) {
        json_decref(v);
        return;
    }
    char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (!st->out)
        st->out = evbuffer_new();
    size_t before = evbuffer_get_length(st->out);
    evbuffer_add_printf(st->out, "data: %s\n\n", text ? text : "[DONE]");
    st->bytes += evbuffer_get_length(st->out) - before;
    free(text);
}

/* Adds every byte of b to the response hash, chain by chain (no copy). */

/* Writes what st->out gathered (hashed for the signature first) and, with
 * `written`, has libevent call it once those bytes are on the socket. Returns
 * 1 when something was written. */
static int flush_events_then(stream *st, void (*written)(struct evhttp_connection *, void *)) {
    int wrote = st->out && evbuffer_get_length(st->out) && st->req && !st->client_gone && !st->aborted;
    if (wrote && http_conn_pending_out(st->conn) > VEIL_MAX_PENDING_OUT) {
        /* a client that does not read: what it has not taken stays bounded; the stream is cancelled
         * and its connection ended, as if the client had left */
        st->aborted = 1;
        atomic_store(&st->cancelled, 1);
        http_conn_abort(st->conn);
        wrote = 0;
    }
    if (wrote) {
        if (st->resp_hash && !st->finalized) /* the final bytes were hashed by the signing thread */
            signing_hash(st->resp_hash, st->out);
        evhttp_send_reply_chunk_with_cb(st->req, st->out, written, written ? st : NULL);
    }
    if (st->out)
        evbuffer_drain(st->out, evbuffer_get_length(st->out));
    return wrote;
}

static void flush_events(stream *st) { flush_events_then(st, NULL); }

static void start_stream(stream *st) {
    if (st->started || !st->req || st->client_gone)
        return;
    st->started = 1;
    struct evkeyvalq *h = evhttp_request_get_output_headers(st->req);
    evhttp_add_header(h, "Content-Type", "text/event-stream");
    evhttp_add_header(h, "Cache-Control", "no-cache");
    http_tee_headers(st->srv, st->req, st->creq.model);
    http_cors(st->srv, st->req);
    evhttp_send_reply_start(st->req, 200, "OK");
    send_event(st, stream_chunk_json(st, json_pack("{s:s, s:s}", "role", "assistant", "content", ""), NULL));
    flush_events(st); /* the headers and the role go out at once */
}

static void finish_request(stream *st, int status) {
    if (st->conn)
        evhttp_connection_set_closecb(st->conn, NULL, NULL);
    char id[200];
    pthread_mutex_lock(&st->mu);
    double tw = st->t_worker, tp = st->t_first_piece;
    pthread_mutex_unlock(&st->mu);
    /* a streamed answer's time to first piece, and veil's own share of it: from the request to
     * the worker's start, plus from the backend's first piece to its write (the backend's own
     * wait, upstream or engine, is the rest) */
    if (st->t_first_out && tw && tp)
        snprintf(id, sizeof id, "%s ttfb=%.2fms veil=%.2fms backend=%.2fms", st->id,
                 (st->t_first_out - st->t0) * 1000.0, ((tw - st->t0) + (st->t_first_out - tp)) * 1000.0,
                 (tp - tw) * 1000.0);
    else
        snprintf(id, sizeof id, "%s", st->id);
    http_log_request(st->srv, "POST", "/api/v1/chat/completions", status, st->t0, st->bytes, id);
    st->req = NULL; /* the reply is complete: libevent owns and frees the request */
    st->ended = 1;
}

/* The first piece is on the socket: its worker, waiting since it handed it
 * over, goes on. (Only the first chunk has this callback; the worker waits
 * for it, so the stream outlives it, and every later write replaces it.) */
static void first_written(struct evhttp_connection *conn, void *arg) {
    (void)conn;
    stream *st = arg;
    pthread_mutex_lock(&st->mu);
    st->first_out_done = 1;
    pthread_cond_signal(&st->first_out);
    pthread_mutex_unlock(&st->mu);
}

static void free_if_done(stream *st) {
    if (!st->ended)
        return;
    pthread_mutex_lock(&st->mu);
    int running = st->threads > 0;
    pthread_mutex_unlock(&st->mu);
    if (!running)
        stream_unlink_and_free(st);
}

/* Under TLS the end of a streamed reply waits: libevent's OpenSSL
 * bufferevent runs its write callback deferred, and one scheduled when an
 * earlier write emptied the buffer can run after evhttp_send_reply_end, take
 * the reply as sent while its last bytes still wait, and stop writing them
 * (the client then waits for the end until the idle timeout). So the end
 * comes once the buffer has been seen empty on two ticks in a row: any such
 * callback has run by then. */
static void end_tick(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    stream *st = arg;
    if (!st->req || st->client_gone) {
        drop_request(st);
        st->ended = 1;
    } else if (http_conn_pending_out(st->conn) == 0 && ++st->end_checks >= 2) {
        evhttp_send_reply_end(st->req);
        finish_request(st, st->end_status);
    } else {
        if (http_conn_pending_out(st->conn))
            st->end_checks = 0;
        struct timeval tick = {0, 1000};
        evtimer_add(st->end_timer, &tick);
        return;
    }
    free_if_done(st);
}

/* Ends a streamed reply (its last bytes already queued) and logs it with `status`. */
static void stream_end_reply(stream *st, int status) {
    if (!st->srv->cfg->tls) {
        evhttp_send_reply_end(st->req);
        finish_request(st, status);
        return;
    }
    st->ending = 1;
    st->end_status = status;
    st->end_checks = 0;
    if (!st->end_timer)
        st->end_timer = evtimer_new(st->srv->base, end_tick, st);
    struct timeval tick = {0, 1000};
    if (!st->end_timer || evtimer_add(st->end_timer, &tick) != 0) { /* cannot wait: end it now */
        evhttp_send_reply_end(st->req);
        finish_request(st, status);
    }
}

/* Runs on the loop: moves what the worker produced to the client. */
void stream_on_wake(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    stream *st = arg;
    pthread_mutex_lock(&st->mu);
    piece *list = st->head;
    st->head = st->tail = NULL;
    size_t formatted = st->wout ? evbuffer_get_length(st->wout) : 0;
    if (formatted)
        evbuffer_add_buffer(st->rx, st->wout); /* moves the chains, copies nothing */
    int finished = st->finished;
    pthread_mutex_unlock(&st->mu);
    if (formatted) {
        if (!st->ended && st->req && !st->client_gone) {
            start_stream(st);
            st->bytes += formatted;
            evbuffer_add_buffer(st->out, st->rx);
        } else {
            evbuffer_drain(st->rx, formatted);
        }
    }
    for (piece *p = list, *n; p; p = n) {
        n = p->next;
        if (!st->ended && (!veil_buf_append(&st->content, p->content, p->content_len) ||
                           !veil_buf_append(&st->reasoning, p->reasoning, p->reasoning_len)))
            st->lost = 1; /* the answer is not whole: it ends in an error, unsigned */
        veil_free_secret(p->content, p->content_len);
        veil_free_secret(p->reasoning, p->reasoning_len);
        free(p);
    }
    if (!st->finalizing) {
        /* the first piece: its worker waits until libevent has written it to the socket */
        int first = formatted && !st->t_first_out;
        if (flush_events_then(st, first ? first_written : NULL) && first)
            st->t_first_out = veil_now_s();
    }
    if (st->finalized && !st->ended && !st->ending) {
        /* the signature is stored: the held-back final bytes go out; if it could not be, an
         * error does instead, and the answer is never complete and unsigned */
        pthread_mutex_lock(&st->mu);
        int unsigned_ = st->sign_failed;
        pthread_mutex_unlock(&st->mu);
        if (!st->req || st->client_gone) {
            drop_request(st);
            st->ended = 1;
        } else if (unsigned_ && st->creq.stream) {
            /* the held-back end (finish chunk, usage, [DONE]) is dropped: an error ends the stream instead */
            evbuffer_drain(st->out, evbuffer_get_length(st->out));
            send_event(st, http_error_json("Response signature could not be stored", "server_error", NULL, NULL));
            flush_events(st);
            stream_end_reply(st, 200);
        } else if (unsigned_) {
            st->bytes += http_send_error(st->srv, st->req, 500, "Response signature could not be stored", NULL);
            finish_request(st, 500);
        } else if (st->creq.stream) {
            flush_events(st);
            stream_end_reply(st, 200);
        } else {
            http_tee_headers(st->srv, st->req, st->creq.model);
            st->bytes += http_send_text(st->srv, st->req, 200, (const char *)st->final_bytes, st->final_len);
            finish_request(st, 200);
        }
    }
    if (finished && !st->ended && !st->finalizing && !st->ending) {
        long pt = st->prompt_tokens, ct = st->completion_tokens;
        json_t *usage = json_pack("{s:i, s:i, s:i}", "prompt_tokens", (json_int_t)pt, "completion_tokens",
                                  (json_int_t)ct, "total_tokens", (json_int_t)(pt + ct));
        pthread_mutex_lock(&st->mu);
        long cached = st->cached_tokens;
        pthread_mutex_unlock(&st->mu);
        if (cached > 0) /* OpenAI's field: the prompt tokens the prefix cache spared */
            json_object_set_new(usage, "prompt_tokens_details",
                                json_pack("{s:I}", "cached_tokens", (json_int_t)cached));
        if (!st->req || st->client_gone) {
            json_decref(usage);
            http_log_request(st->srv, "POST", "/api/v1/chat/completions", 499, st->t0, st->bytes, st->id);
            drop_request(st);
            st->ended = 1;
        } else if ((st->failed || st->lost) && !st->started) {
            json_decref(usage);
            int status = st->lost ? 500 : st->fail_status >= 400 && st->fail_status < 600 ? st->fail_status : 502;
            const char *msg = st->lost ? "Internal server error" : st->fail_msg;
            st->bytes +=
                http_send_json(st->srv, st->req, status,
                               http_error_json(msg, http_error_type(status), NULL, st->lost ? NULL : st->fail_code));
            finish_request(st, status);
        } else if (st->failed) {
            json_decref(usage);
            send_event(st, http_error_json(st->fail_msg, http_error_type(st->fail_status), NULL, st->fail_code));
            flush_events(st);
            stream_end_reply(st, 200);
        } else if (st->creq.stream) {
            start_stream(st);
            send_event(st, stream_chunk_json(st, json_object(), st->finish));
            if (st->creq.include_usage)
                send_event(st, json_pack("{s:s, s:s, s:i, s:s, s:[], s:o}", "id", st->id, "object",
                                         "chat.completion.chunk", "created", (json_int_t)st->created, "model",
                                         st->creq.model->id, "choices", "usage", usage));
            else
                json_decref(usage);
            send_event(st, NULL);
            if (!signing_begin(st, evbuffer_pullup(st->out, -1), evbuffer_get_length(st->out))) {
                flush_events(st);
                stream_end_reply(st, 200);
            }
        } else {
            /* under E2EE (NEAR) content and reasoning arrive sealed by the worker */
            json_t *msg = json_pack("{s:s, s:s#}", "role", "assistant", "content",
                                    st->content.data ? st->content.data : "", st->content.len);
            if (st->reasoning.len)
                json_object_set_new(msg, "reasoning_content", json_stringn(st->reasoning.data, st->reasoning.len));
            json_t *resp =
                json_pack("{s:s, s:s, s:i, s:s, s:[{s:i, s:o, s:s, s:n}], s:o}", "id", st->id, "object",
                          "chat.completion", "created", (json_int_t)st->created, "model", st->creq.model->id, "choices",
                          "index", 0, "message", msg, "finish_reason", st->finish, "logprobs", "usage", usage);
            char *text = json_dumps(resp, JSON_COMPACT);
            json_decref(resp);
            size_t n = text ? strlen(text) : 0;
            if (!signing_begin(st, text, n)) {
                http_tee_headers(st->srv, st->req, st->creq.model);
                st->bytes += http_send_text(st->srv, st->req, 200, text, n);
                finish_request(st, 200);
            }
            free(text);
        }
    }
    free_if_done(st);
}

void stream_acquire(stream *st) {
    pthread_mutex_lock(&st->mu);
    st->threads++;
    pthread_mutex_unlock(&st->mu);
    server *s = st->srv;
    pthread_mutex_lock(&s->mu);
    s->workers++;
    pthread_mutex_unlock(&s->mu);
}

void stream_release(stream *st) {
    server *s = st->srv;
    pthread_mutex_lock(&st->mu);
    st->threads--;
    event_active(st->wake, EV_READ, 0);
    pthread_mutex_unlock(&st->mu);
    pthread_mutex_lock(&s->mu);
    s->workers--;
    pthread_cond_broadcast(&s->workers_done);
    pthread_mutex_unlock(&s->mu);
}
