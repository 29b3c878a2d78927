/* Internal: what the files of veil serve's HTTP side share. One concern a
 * file:
 *   http_server.c   the server's life (start, signals, drain) and the route table
 *   http_guard.c    ambiguous framing refused, client timeouts, connection helpers, the accept loop
 *   http_reply.c    replies: JSON bodies, the OpenAI error shape, CORS, TEE headers, the log line
 *   http_auth.c     bearer keys: flags and the key store, reloaded off the loop
 *   ratelimit.c     per-client windows for the attestation and signature routes
 *   tee_routes.c    GET attestation (Venice and NEAR), signature lookups and the key release, on
 *                   worker threads
 *   chat_route.c    POST chat/completions: validation, E2EE rules, the hand-off to a worker
 *   stream_loop.c   a generation's loop side: moving its output to the client
 *   stream_worker.c a generation's worker side: the sink the backend writes into
 *   signing.c       the response signature, made and stored before the final bytes go out
 * Below this layer nothing knows HTTP exists (server.h). */
#ifndef VEIL_SERVER_HTTP_INTERNAL_H
#define VEIL_SERVER_HTTP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include <event2/event.h>
#include <event2/http.h>
#include <openssl/evp.h>

#include "http_common.h"
#include "server.h"
#include "veil/buf.h"
#include "veil/ecies.h"

typedef struct stream stream;

/* What a connection may have waiting to go out to a client that does not
 * read before its stream is cancelled. */
#define VEIL_MAX_PENDING_OUT ((size_t)4 << 20)

/* Per-client one-minute windows, by exact address (loop thread only):
 * counted in Redis when the replicas share one (so that N replicas allow a
 * client what one does), else, and while Redis is away, in this table. */
typedef struct veil_ratelimit {
    int per_min;
    veil_redis *redis; /* borrowed; NULL: this process counts alone */
    const char *name;  /* the route's name in the shared counters' keys */
    struct rate_slot {
        char ip[64];
        long window;
        int count;
    } * slot;
    size_t n;
} veil_ratelimit;

typedef struct server {
    const veil_server_config *cfg;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    uint8_t (*key_hashes)[32];
    long started;
    int shutting_down;
    struct event *grace_timer;
    pthread_mutex_t mu; /* guards streams, active and workers */
    pthread_cond_t workers_done;
    stream *streams; /* in flight */
    int active, workers;
    /* Active key-store hashes, reloaded off the loop by the key thread, so
     * that the loop never reads the disk and revocations apply within a second. */
    pthread_rwlock_t keys_lock;
    uint8_t (*store_hashes)[32];
    size_t n_store_hashes;
    pthread_t key_thread;
    atomic_int key_thread_stop;
    int key_thread_started;
    int keys_failing;         /* the last reload failed (key thread only) */
    int attest_jobs;          /* attestations in progress (loop thread only) */
    atomic_int store_failing; /* the last signature store write failed */
    veil_ratelimit rate;      /* the attestation routes */
    veil_ratelimit sig_rate;  /* the signature routes */
    veil_ephemeral_pool *eph; /* E2EE: ephemeral keys made ahead on idle CPU time */
    /* the accept loop when descriptors run out, and the clients' timeouts (http_guard.c; loop only) */
    struct event *accept_timer, *sweep_timer;
    struct watched *watch; /* by descriptor */
    int *wlist;            /* the descriptors watched, n_watched of them */
    size_t n_watch, n_watched;
    unsigned long timed_out;
    double accept_pause, accept_failed_at, accept_logged_at;
    unsigned long accept_errors;
} server;

/* One piece of a non-streamed answer waiting for the loop. */
typedef struct piece {
    struct piece *next;
    char *content, *reasoning;
    size_t content_len, reasoning_len;
} piece;

/* One generation in flight: made by chat_route.c, written by its worker
 * (stream_worker.c), moved to the client by the loop (stream_loop.c), signed
 * by signing.c. */
struct stream {
    server *srv;
    stream *next, *prev;
    struct evhttp_request *req; /* detached from its connection once the client is gone */
    int client_gone;
    struct evhttp_connection *conn;
    struct event *wake;
    veil_chat_request creq;
    char id[48];
    long created;
    double t0;
    size_t bytes;
    int started; /* response headers and the role chunk are out */
    /* response signature: SHA-256 of the request body, a running SHA-256 of
     * every response byte written, and the final bytes held back until the
     * signature is stored */
    int signing;
    uint8_t req_hash[32];
    EVP_MD_CTX *resp_hash;
    int finalizing, finalized;
    int sign_failed; /* the signature could not be made or stored (guarded by mu) */
    uint8_t *final_bytes;
    size_t final_len;
    struct evbuffer *out; /* events gathered during one wake-up, written together */
    /* a streamed answer's chunks are formatted on the worker: every delta chunk is chunk_head,
     * the delta's members, chunk_tail (the bytes chunk_json gives, made once per stream) */
    char *chunk_head, *chunk_tail;
    size_t chunk_head_len, chunk_tail_len;
    char *wfmt; /* the worker's formatting space */
    size_t wfmt_cap;
    struct evbuffer *wacc; /* the worker's: formatted events not yet handed to the loop */
    double t_publish;      /* the worker's last hand-over */
    int unclocked;         /* pieces since the worker last read the clock */
    struct evbuffer *rx;   /* the loop's: formatted events taken from wout */
    int finished;          /* done or fail arrived */
    int lost;              /* the loop could not keep a piece of a non-streamed answer */
    int aborted;           /* its client did not read: the connection was ended (loop only) */
    int ended;             /* the reply is complete; waiting for the worker to let go */
    int ending;            /* TLS: the reply's end waits for its bytes to be written (stream_end_reply) */
    int end_status, end_checks;
    struct event *end_timer;
    int threads; /* threads (generation, signing) still using the stream; guarded by mu */
    atomic_int cancelled;
    pthread_mutex_t mu;       /* guards the fields the worker writes: */
    piece *head, *tail;       /* non-streamed answers' pieces */
    struct evbuffer *wout;    /* streamed answers: whole formatted events */
    pthread_cond_t first_out; /* the loop handed the first piece to libevent (t_first_out) */
    int first_out_done;
    int failed, fail_status;
    char fail_msg[300], fail_code[48], finish[32];
    long prompt_tokens, completion_tokens, cached_tokens;
    /* non-streaming answers are gathered here (secret buffers) */
    veil_buf content, reasoning;
    /* where a streamed answer's time to first byte goes: the worker started, the backend's first
     * piece arrived (worker side, under mu), the first piece went out (loop side) */
    double t_worker, t_first_piece, t_first_out;
    /* NEAR's non-streaming E2EE answer, gathered on the worker and sealed there once */
    veil_buf w_content, w_reasoning;
};

/* ---- http_reply.c ---- */
FILE *http_log(server *s);
/* One log line per request: never a body, never a header value. */
void http_log_request(server *s, const char *method, const char *path, int status, double t0, size_t bytes,
                      const char *id);
const char *http_method_name(struct evhttp_request *req);
void http_cors(server *s, struct evhttp_request *req);
void http_tee_headers(server *s, struct evhttp_request *req, const veil_model *m);
/* Each sender returns the bytes of the body it sent. */
size_t http_send_text(server *s, struct evhttp_request *req, int status, const char *text, size_t n);
size_t http_send_json(server *s, struct evhttp_request *req, int status, json_t *v); /* v consumed */
size_t http_send_error(server *s, struct evhttp_request *req, int status, const char *message, const char *param);

/* ---- http_guard.c ---- */
typedef struct veil_http_limits {
    size_t max_body;   /* a Content-Length above this is refused (413) */
    size_t max_target; /* request-target bytes (414) */
} veil_http_limits;

/* A request head's verdict: the body's length, or the status and message it
 * is refused with. */
typedef struct veil_http_head {
    int status;
    const char *message;
    size_t content_length;
} veil_http_head;

/* Checks a whole request head from untrusted bytes (head[0..n), ending in an
 * empty line): the request line (a token method, a target within limits,
 * HTTP/1.0 or 1.1), each header line (a token name, no control bytes), one
 * Content-Length value (digits), no Transfer-Encoding. Returns 1, or 0 with
 * out->status and out->message. */
int veil_http_head_check(const char *head, size_t n, const veil_http_limits *lim, veil_http_head *out);

/* Why a request's framing is ambiguous (two different Content-Length
 * values, or Content-Length with Transfer-Encoding), or NULL when it is not. */
const char *http_framing_error(struct evhttp_request *req);
/* Times the clients and pauses the accept loop when descriptors run out;
 * after the socket is bound. */
int http_guard_start(server *s);
void http_guard_stop(server *s);
/* A request's head and body are in: its connection is no longer timed. */
void http_guard_request_started(server *s, struct evhttp_request *req);
/* Bytes a connection still has to write to its client. */
size_t http_conn_pending_out(struct evhttp_connection *conn);
/* Ends a connection now, as a client that left would. */
void http_conn_abort(struct evhttp_connection *conn);

/* ---- http_auth.c ---- */
/* 1 when the request's bearer key is accepted (its SHA-256 in key_hash, which may be NULL), else 0 with why. */
int http_authorized(server *s, struct evhttp_request *req, const char **why, uint8_t key_hash[32]);
int http_auth_start(server *s);
void http_auth_stop(server *s);

/* ---- ratelimit.c ---- */
/* A table of `slots` clients allowing per_min requests a minute each; 0 out of memory. */
int veil_ratelimit_init(veil_ratelimit *rl, int per_min, size_t slots);
void veil_ratelimit_free(veil_ratelimit *rl);
/* Counts a request of `client` at `now`: 0 when allowed, else the seconds
 * until its window ends (for Retry-After). */
int veil_ratelimit_hit(veil_ratelimit *rl, const char *client, long now);
void http_client_ip(server *s, struct evhttp_request *req, char out[64]);
/* Answers 429 with Retry-After when the client is over its limit: returns 1
 * then, with *status and *bytes set for the request's log line. */
int http_refused_by_rate_limit(server *s, veil_ratelimit *rl, struct evhttp_request *req, int *status, size_t *bytes);

/* ---- tee_routes.c ---- */
size_t http_attestation(server *s, struct evhttp_request *req, const struct evhttp_uri *uri, int near, const char *path,
                        double t0, int *status);
size_t http_signature(server *s, struct evhttp_request *req, const struct evhttp_uri *uri, const char *path, double t0,
                      int *status);
/* GET (the challenge) and POST (the release) of /veil/v1/key-release, with --key-release */
size_t http_key_release(server *s, struct evhttp_request *req, const struct evhttp_uri *uri, const char *path,
                        double t0, int *status);

/* ---- chat_route.c ---- */
const veil_model *http_find_model(void *server_ctx, const char *id);
size_t http_chat(server *s, struct evhttp_request *req, double t0, int *status);

/* ---- stream_loop.c ---- */
json_t *stream_chunk_json(stream *st, json_t *delta, const char *finish);
int stream_make_frame(stream *st);
void stream_on_close(struct evhttp_connection *conn, void *arg);
void stream_on_wake(evutil_socket_t fd, short what, void *arg);
/* Unlinks a stream no thread uses any more and frees it. */
void stream_unlink_and_free(stream *st);
/* A thread (generation or signing) starts using the stream ... */
void stream_acquire(stream *st);
/* ... and lets go of it: the loop is woken (it may free the stream as soon
 * as no thread uses it, so this is the thread's last touch of it) and the
 * server's worker count drops, waking a shutdown that waits for it. */
void stream_release(stream *st);

/* ---- stream_worker.c ---- */
void *stream_worker(void *arg);
void stream_sink_fail(void *ctx, const char *code, int status, const char *message);

/* ---- signing.c ---- */
/* Adds every byte of b to the response hash. */
void signing_hash(EVP_MD_CTX *h, struct evbuffer *b);
/* Holds back the final bytes and signs on a thread; returns 0 when the
 * bytes should go out now instead (not signing, or no thread). */
int signing_begin(stream *st, const void *bytes, size_t n);

#endif
