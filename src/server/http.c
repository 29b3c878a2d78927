/* The HTTP side of veil serve, on libevent: routing, auth, the OpenAI error
 * shape, JSON and SSE replies, and the hand-off of generations to worker
 * threads, whose output comes back to the event loop through a per-stream
 * event. The loop never waits on a generation. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <openssl/evp.h>

#include "server.h"
#include "tee.h"
#include "veil/ecies.h"
#include "veil/eth.h"
#include "veil/hex.h"
#include "veil/keys.h"
#include "veil/secure.h"

typedef struct stream stream;

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
    stream *streams;    /* in flight */
    int active, workers;
    /* Active key-store hashes, reloaded off the loop by the key thread, so
     * that the loop never reads the disk and revocations apply within a second. */
    pthread_rwlock_t keys_lock;
    uint8_t (*store_hashes)[32];
    size_t n_store_hashes;
    pthread_t key_thread;
    atomic_int key_thread_stop;
    int key_thread_started;
    int attest_jobs; /* attestations in progress (loop thread only) */
    struct rate_slot {
        char ip[64];
        long window;
        int count;
    } rate[1024]; /* per-IP one-minute windows for the attestation routes (loop thread only) */
    veil_ephemeral_pool *eph; /* E2EE: ephemeral keys made ahead on idle CPU time */
} server;

/* An answer being gathered: grows by doubling; its bytes are wiped when it
 * moves or is freed (answers may be private: no stale copies). */
typedef struct answer_text {
    char *p;
    size_t len, cap;
} answer_text;

static void text_append(answer_text *t, const char *s, size_t n) {
    if (!n)
        return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + n + 1)
            cap *= 2;
        char *b = malloc(cap);
        if (!b)
            return;
        if (t->p)
            memcpy(b, t->p, t->len);
        veil_free_secret(t->p, t->cap);
        t->p = b;
        t->cap = cap;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}

static void text_free(answer_text *t) {
    veil_free_secret(t->p, t->cap);
    memset(t, 0, sizeof *t);
}

/* One piece of output waiting for the loop. */
typedef struct piece {
    struct piece *next;
    char *content, *reasoning;
    size_t content_len, reasoning_len;
} piece;

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
    int started;  /* response headers and the role chunk are out */
    /* response signature: SHA-256 of the request body, a running SHA-256 of
     * every response byte written, and the final bytes held back until the
     * signature is stored */
    int signing;
    uint8_t req_hash[32];
    EVP_MD_CTX *resp_hash;
    int finalizing, finalized;
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
    struct evbuffer *rx; /* the loop's: formatted events taken from wout */
    int finished; /* done or fail arrived */
    int ended;    /* the reply is complete; waiting for the worker to let go */
    int threads; /* threads (generation, signing) still using the stream; guarded by mu */
    atomic_int cancelled;
    pthread_mutex_t mu; /* guards the fields the worker writes: */
    piece *head, *tail; /* non-streamed answers' pieces */
    struct evbuffer *wout; /* streamed answers: whole formatted events */
    pthread_cond_t first_out; /* the loop handed the first piece to libevent (t_first_out) */
    int first_out_done;
    int failed, fail_status;
    char fail_msg[300], fail_code[48], finish[32];
    long prompt_tokens, completion_tokens;
    /* non-streaming answers are gathered here */
    answer_text content, reasoning;
    /* where a streamed answer's time to first byte goes: the worker started, the backend's first
     * piece arrived (worker side, under mu), the first piece went out (loop side) */
    double t_worker, t_first_piece, t_first_out;
    /* NEAR's non-streaming E2EE answer, gathered on the worker and sealed there once */
    answer_text w_content, w_reasoning;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static FILE *logf_(server *s) { return s->cfg->log ? s->cfg->log : stderr; }

/* One log line per request: never a body, never a header value. */
static void log_request(server *s, struct evhttp_request *req, const char *method, const char *path, int status,
                        double t0, size_t bytes, const char *id) {
    (void)req;
    time_t t = time(NULL);
    struct tm tm;
    char when[32];
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(logf_(s), "%s %s %s %d %.1fms %zuB%s%s\n", when, method, path, status, (now_s() - t0) * 1000.0, bytes,
            id ? " " : "", id ? id : "");
    fflush(logf_(s));
}

static const char *method_name(struct evhttp_request *req) {
    switch (evhttp_request_get_command(req)) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PATCH: return "PATCH";
    default: return "OTHER";
    }
}

static void cors(server *s, struct evhttp_request *req) {
    if (!s->cfg->cors_origin)
        return;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Access-Control-Allow-Origin", s->cfg->cors_origin);
    evhttp_add_header(h, "Access-Control-Allow-Headers",
                      "Authorization, Content-Type, X-Venice-TEE-Client-Pub-Key, X-Venice-TEE-Model-Pub-Key, "
                      "X-Venice-TEE-Signing-Algo, X-Signing-Algo, X-Client-Pub-Key, X-Model-Pub-Key");
    evhttp_add_header(h, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    evhttp_add_header(h, "Access-Control-Expose-Headers", "X-Venice-TEE, X-Venice-TEE-Provider");
}

/* Sends text[0..n) as a JSON body with `status`; returns the bytes sent. */
static size_t send_text(server *s, struct evhttp_request *req, int status, const char *text, size_t n) {
    struct evbuffer *b = evbuffer_new();
    if (b && text)
        evbuffer_add(b, text, n);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json");
    cors(s, req);
    static const char *const reasons[] = {[200] = "OK", [400] = "Bad Request", [401] = "Unauthorized",
                                          [404] = "Not Found", [405] = "Method Not Allowed", [413] = "Payload Too Large",
                                          [415] = "Unsupported Media Type", [429] = "Too Many Requests",
                                          [500] = "Internal Server Error", [502] = "Bad Gateway",
                                          [503] = "Service Unavailable", [504] = "Gateway Timeout"};
    const char *reason = status > 0 && status < 505 && reasons[status] ? reasons[status] : "Error";
    evhttp_send_reply(req, status, reason, b);
    evbuffer_free(b);
    return n;
}

/* Sends a JSON value (consumed) with `status`; returns the bytes sent. */
static size_t send_json(server *s, struct evhttp_request *req, int status, json_t *v) {
    char *text = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    size_t n = send_text(s, req, status, text, text ? strlen(text) : 0);
    free(text);
    return n;
}

static json_t *error_json_code(const char *message, const char *type, const char *param, const char *code) {
    return json_pack("{s:{s:s, s:s, s:o, s:o}}", "error", "message", message, "type", type, "param",
                     param && *param ? json_string(param) : json_null(), "code",
                     code && *code ? json_string(code) : json_null());
}

static json_t *error_json(const char *message, const char *type, const char *param) {
    return error_json_code(message, type, param, NULL);
}

static const char *error_type(int status) {
    switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

static size_t send_error(server *s, struct evhttp_request *req, int status, const char *message, const char *param) {
    return send_json(s, req, status, error_json(message, error_type(status), param));
}

/* ---- auth ---- */

static int authorized(server *s, struct evhttp_request *req, const char **why) {
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0 || !h[7]) {
        *why = "Missing API key: send Authorization: Bearer <key>";
        return 0;
    }
    const char *key = h + 7;
    uint8_t hash[32];
    EVP_Digest(key, strlen(key), hash, NULL, EVP_sha256(), NULL);
    int ok = 0;
    for (size_t i = 0; i < s->cfg->n_api_keys; i++)
        ok |= veil_ct_equal(hash, s->key_hashes[i], 32);
    pthread_rwlock_rdlock(&s->keys_lock);
    for (size_t i = 0; i < s->n_store_hashes; i++)
        ok |= veil_ct_equal(hash, s->store_hashes[i], 32);
    pthread_rwlock_unlock(&s->keys_lock);
    *why = "Invalid API key";
    return ok;
}

/* ---- models ---- */

static const veil_model *find_model(void *ctx, const char *id) {
    server *s = ctx;
    for (size_t i = 0; i < s->cfg->n_models; i++)
        if (!strcmp(s->cfg->models[i].id, id))
            return &s->cfg->models[i];
    return NULL;
}

static size_t handle_models(server *s, struct evhttp_request *req, const struct evhttp_uri *uri) {
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    const char *query = evhttp_uri_get_query(uri);
    const char *type = NULL;
    if (query && evhttp_parse_query_str(query, &q) == 0)
        type = evhttp_find_header(&q, "type");
    int list = !type || !strcmp(type, "text") || !strcmp(type, "all");
    json_t *data = json_array();
    for (size_t i = 0; list && i < s->cfg->n_models; i++)
        json_array_append_new(data, veil_model_json(&s->cfg->models[i], s->started));
    evhttp_clear_headers(&q);
    return send_json(s, req, 200, json_pack("{s:s, s:s, s:o}", "object", "list", "type", "text", "data", data));
}

/* ---- TEE ---- */

static void tee_headers(server *s, struct evhttp_request *req, const veil_model *m) {
    if (!s->cfg->tee || !(m->tee || m->e2ee))
        return;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "X-Venice-TEE", "true");
    evhttp_add_header(h, "X-Venice-TEE-Provider", veil_tee_provider_name(s->cfg->tee));
}

static void client_ip(server *s, struct evhttp_request *req, char out[64]) {
    const char *xff = s->cfg->trust_proxy ? evhttp_find_header(evhttp_request_get_input_headers(req), "X-Forwarded-For")
                                          : NULL;
    if (xff) {
        size_t n = strcspn(xff, ", ");
        snprintf(out, 64, "%.*s", (int)(n < 63 ? n : 63), xff);
        return;
    }
    char *addr = NULL;
    ev_uint16_t port;
    evhttp_connection_get_peer(evhttp_request_get_connection(req), &addr, &port);
    snprintf(out, 64, "%s", addr ? addr : "?");
}

/* Fixed one-minute windows per client IP. Returns 0 when allowed, else the
 * seconds until the window ends (for Retry-After). */
static int rate_limited(server *s, struct evhttp_request *req) {
    char ip[64];
    client_ip(s, req, ip);
    long now = (long)time(NULL), window = now / 60;
    size_t h = 5381;
    for (const char *c = ip; *c; c++)
        h = h * 33 + (unsigned char)*c;
    struct rate_slot *slot = &s->rate[h % (sizeof s->rate / sizeof s->rate[0])];
    if (strcmp(slot->ip, ip) != 0 || slot->window != window) {
        snprintf(slot->ip, sizeof slot->ip, "%s", ip);
        slot->window = window;
        slot->count = 0;
    }
    int limit = s->cfg->tee_rate_per_min > 0 ? s->cfg->tee_rate_per_min : 10;
    return ++slot->count > limit ? (int)(60 - now % 60) : 0;
}

/* Answers 429 with Retry-After when the client is over its limit: returns 1
 * then, with *status and *bytes set for the request's log line. */
static int refused_by_rate_limit(server *s, struct evhttp_request *req, int *status, size_t *bytes) {
    int wait = rate_limited(s, req);
    if (!wait)
        return 0;
    char secs[16];
    snprintf(secs, sizeof secs, "%d", wait);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", secs);
    *status = 429;
    *bytes = send_error(s, req, 429, "Rate limit exceeded", NULL);
    return 1;
}

typedef struct attest_job {
    server *s;
    struct evhttp_request *req;
    struct evhttp_connection *conn;
    int client_gone;
    struct event *wake;
    double t0;
    const char *path;
    int near;
    char model[128];
    uint8_t nonce[32];
    char nonce_text[65];
    int client_nonce;
    int signature;      /* a signature lookup rather than an attestation */
    char request_id[96];
    int not_found;
    json_t *result;
    char error[300];
} attest_job;

static void job_closed(struct evhttp_connection *conn, void *arg) {
    (void)conn;
    attest_job *j = arg;
    j->client_gone = 1;
    j->conn = NULL;
}

/* NEAR AI Cloud's report shape (§4) from the Venice document. */
static json_t *near_report(json_t *doc, const char *model) {
    const char *key = json_string_value(json_object_get(doc, "signing_key"));
    json_t *r = json_pack("{s:s, s:O, s:s, s:s, s:O, s:O, s:O, s:O, s:O}", "model_name", model, "signing_address",
                          json_object_get(doc, "signing_address"), "signing_algo", "ecdsa", "signing_public_key",
                          key ? key + 2 : "", "request_nonce", json_object_get(doc, "request_nonce"), "intel_quote",
                          json_object_get(doc, "intel_quote"), "nvidia_payload", json_object_get(doc, "nvidia_payload"),
                          "event_log", json_object_get(doc, "event_log"), "info", json_object_get(doc, "info"));
    json_object_set_new(r, "all_attestations", json_pack("[o]", json_deep_copy(r)));
    return r;
}

/* Looks a response signature up (§3.5 Venice, §4 NEAR), off the loop. */
static void signature_lookup(attest_job *j) {
    veil_tee *t = j->s->cfg->tee;
    veil_signature_record r;
    if (!veil_sigstore_get(j->s->cfg->sigstore, j->request_id, &r) || (j->model[0] && strcmp(j->model, r.model) != 0)) {
        if (r.request_id)
            veil_signature_record_clear(&r);
        j->not_found = 1;
        return;
    }
    if (j->near)
        j->result = json_pack("{s:s, s:s, s:s, s:s}", "text", r.near_text, "signature", r.near_signature,
                              "signing_address", veil_tee_address(t), "signing_algo", "ecdsa");
    else
        j->result = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "model", r.model, "request_id", r.request_id,
                              "tee_hardware", veil_tee_simulated(t) ? "simulated" : "intel-tdx", "text", r.text,
                              "signature", r.signature, "signing_address", veil_tee_address(t), "signing_algo",
                              "ecdsa", "tee_provider", veil_tee_provider_name(t));
    veil_signature_record_clear(&r);
}

static void *attest_worker(void *arg) {
    attest_job *j = arg;
    if (j->signature) {
        signature_lookup(j);
        event_active(j->wake, EV_READ, 0);
        return NULL;
    }
    veil_err err;
    json_t *doc = veil_tee_attest(j->s->cfg->tee, j->model, j->nonce, j->nonce_text, j->client_nonce, &err);
    if (doc && j->near) {
        json_t *r = near_report(doc, j->model);
        json_decref(doc);
        doc = r;
    }
    if (!doc)
        snprintf(j->error, sizeof j->error, "TEE attestation failed: %s", err.message);
    j->result = doc;
    event_active(j->wake, EV_READ, 0);
    return NULL;
}

static void attest_done(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    attest_job *j = arg;
    server *s = j->s;
    if (j->client_gone) {
        evhttp_request_free(j->req); /* detached by libevent when the client left */
        json_decref(j->result);
    } else {
        evhttp_connection_set_closecb(j->conn, NULL, NULL);
        int status = j->result ? 200 : j->not_found ? 404 : 502;
        const char *missing = j->near ? "Chat id not found or expired" : "Signature not found or expired";
        size_t bytes = j->result ? send_json(s, j->req, 200, j->result)
                                 : send_error(s, j->req, status, j->not_found ? missing : j->error, NULL);
        log_request(s, j->req, "GET", j->path, status, j->t0, bytes, NULL);
    }
    s->attest_jobs--;
    event_free(j->wake);
    free(j);
}

/* Starts a job on a detached thread; the reply comes back through j->wake. */
static void start_job(attest_job *j, struct evhttp_request *req, double t0, const char *path) {
    server *s = j->s;
    j->req = req;
    j->conn = evhttp_request_get_connection(req);
    j->t0 = t0;
    j->path = path;
    j->wake = event_new(s->base, -1, 0, attest_done, j);
    evhttp_connection_set_closecb(j->conn, job_closed, j);
    s->attest_jobs++;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t th;
    if (pthread_create(&th, &attr, attest_worker, j) != 0) {
        snprintf(j->error, sizeof j->error, "Server is overloaded, retry shortly");
        event_active(j->wake, EV_READ, 0);
    }
    pthread_attr_destroy(&attr);
}

/* GET /api/v1/tee/attestation (Venice) and /v1/attestation/report (NEAR). */
static size_t handle_attestation(server *s, struct evhttp_request *req, const struct evhttp_uri *uri, int near,
                                 const char *path, double t0, int *status) {
    size_t refused;
    if (refused_by_rate_limit(s, req, status, &refused))
        return refused;
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    const char *query = evhttp_uri_get_query(uri);
    if (query)
        evhttp_parse_query_str(query, &q);
    const char *model = evhttp_find_header(&q, "model"), *nonce = evhttp_find_header(&q, "nonce");
    const char *algo = evhttp_find_header(&q, "signing_algo"), *addr = evhttp_find_header(&q, "signing_address");
    size_t bytes = 0;
    attest_job *j = NULL;
    const veil_model *m = model ? find_model(s, model) : NULL;
    uint8_t n[32];
    size_t nlen = nonce ? strlen(nonce) : 0;
    int nonce_hex = nonce && veil_hex_is_valid(nonce, nlen);
    *status = 400;
    if (!s->cfg->tee) {
        bytes = send_error(s, req, *status = 404, "Not found", NULL);
    } else if (nonce && near && !nonce_hex && !(nlen == 0)) {
        bytes = send_error(s, req, 400, "Nonce must be hex-encoded", "nonce");
    } else if (nonce && (!nonce_hex || nlen != 64)) {
        bytes = send_error(s, req, 400, near ? "Nonce must be 32 bytes" : "Nonce must be exactly 32 bytes (64 hex characters)",
                           "nonce");
    } else if (!m) {
        bytes = send_error(s, req, *status = 404, "Model not found", "model");
    } else if (!m->tee && !m->e2ee) {
        bytes = send_error(s, req, 400, "Model does not support TEE attestation", "model");
    } else if (near && algo && strcmp(algo, "ecdsa") != 0) {
        bytes = send_error(s, req, 400, "Unsupported signing algorithm", "signing_algo");
    } else if (near && addr && strcasecmp(addr, veil_tee_address(s->cfg->tee)) != 0) {
        bytes = send_error(s, req, *status = 404, "Signing address not found on this server", "signing_address");
    } else if (s->attest_jobs >= 4) {
        bytes = send_error(s, req, *status = 503, "Attestation is busy, retry shortly", NULL);
    } else if (!(j = calloc(1, sizeof *j))) {
        bytes = send_error(s, req, *status = 500, "Internal server error", NULL);
    } else {
        if (nonce) {
            if (veil_hex_decode(n, 32, NULL, nonce, 64, NULL) != VEIL_OK)
                memset(n, 0, 32);
            snprintf(j->nonce_text, sizeof j->nonce_text, "%s", nonce);
        } else if (veil_random_bytes(n, 32, NULL) != VEIL_OK) {
            memset(n, 0, 32);
        }
        memcpy(j->nonce, n, 32);
        j->client_nonce = nonce != NULL;
        snprintf(j->model, sizeof j->model, "%s", model);
        j->s = s;
        j->near = near;
        start_job(j, req, t0, path);
        *status = -1;
    }
    evhttp_clear_headers(&q);
    return bytes;
}

/* GET /api/v1/tee/signature?model=&request_id= and /v1/signature/<chat_id>. */
static size_t handle_signature(server *s, struct evhttp_request *req, const struct evhttp_uri *uri, const char *path,
                               double t0, int *status) {
    int near = !strncmp(path, "/v1/signature/", 14);
    size_t refused;
    if (refused_by_rate_limit(s, req, status, &refused))
        return refused;
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    const char *query = evhttp_uri_get_query(uri);
    if (query)
        evhttp_parse_query_str(query, &q);
    const char *id = near ? path + 14 : evhttp_find_header(&q, "request_id");
    const char *model = near ? NULL : evhttp_find_header(&q, "model");
    const char *algo = evhttp_find_header(&q, "signing_algo");
    size_t bytes = 0;
    attest_job *j = NULL;
    const char *missing = near ? "Chat id not found or expired" : "Signature not found or expired";
    if (!s->cfg->tee || !s->cfg->sigstore) {
        bytes = send_error(s, req, *status = 404, "Not found", NULL);
    } else if (algo && strcmp(algo, "ecdsa") != 0) {
        bytes = send_error(s, req, *status = 400, "Unsupported signing algorithm", "signing_algo");
    } else if (!id || !*id || strlen(id) >= sizeof j->request_id || (model && strlen(model) >= sizeof j->model)) {
        bytes = send_error(s, req, *status = 404, missing, NULL);
    } else if (s->attest_jobs >= 64) {
        bytes = send_error(s, req, *status = 503, "Server is overloaded, retry shortly", NULL);
    } else if (!(j = calloc(1, sizeof *j))) {
        bytes = send_error(s, req, *status = 500, "Internal server error", NULL);
    } else {
        j->s = s;
        j->signature = 1;
        j->near = near;
        snprintf(j->request_id, sizeof j->request_id, "%s", id);
        snprintf(j->model, sizeof j->model, "%s", model ? model : "");
        start_job(j, req, t0, near ? "/v1/signature" : "/api/v1/tee/signature");
        *status = -1;
    }
    evhttp_clear_headers(&q);
    return bytes;
}

/* ---- streams ---- */

static void drop_request(stream *st);
static char *seal(stream *st, const char *text, size_t n);

static void free_buffers(stream *st) {
    struct evbuffer **b[4] = {&st->out, &st->wout, &st->wacc, &st->rx};
    for (int i = 0; i < 4; i++) {
        if (*b[i])
            evbuffer_free(*b[i]);
        *b[i] = NULL;
    }
}

static void stream_unlink_and_free(stream *st) {
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
    text_free(&st->content);
    text_free(&st->reasoning);
    text_free(&st->w_content);
    text_free(&st->w_reasoning);
    veil_chat_request_clear(&st->creq);
    drop_request(st);
    free_buffers(st);
    free(st->chunk_head);
    veil_free_secret(st->wfmt, st->wfmt_cap);
    EVP_MD_CTX_free(st->resp_hash);
    free(st->final_bytes);
    event_free(st->wake);
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
static void on_close(struct evhttp_connection *conn, void *arg) {
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

static json_t *chunk_json(stream *st, json_t *delta, const char *finish) {
    return json_pack("{s:s, s:s, s:i, s:s, s:[{s:i, s:o, s:o, s:n}]}", "id", st->id, "object",
                     "chat.completion.chunk", "created", (json_int_t)st->created, "model", st->creq.model->id,
                     "choices", "index", 0, "delta", delta, "finish_reason", finish ? json_string(finish) : json_null(),
                     "logprobs");
}

/* The bytes around a delta chunk's members: chunk_json's own serialization
 * of this stream's chunk, split at its empty delta. */
static int make_chunk_frame(stream *st) {
    json_t *chunk = chunk_json(st, json_object(), NULL);
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
static void hash_buffer(EVP_MD_CTX *h, struct evbuffer *b) {
    struct evbuffer_iovec v[16];
    struct evbuffer_ptr at;
    evbuffer_ptr_set(b, &at, 0, EVBUFFER_PTR_SET);
    size_t left = evbuffer_get_length(b);
    while (left) {
        int n = evbuffer_peek(b, -1, &at, v, 16);
        if (n <= 0)
            break;
        for (int i = 0; i < n && i < 16 && left; i++) {
            size_t k = v[i].iov_len < left ? v[i].iov_len : left;
            EVP_DigestUpdate(h, v[i].iov_base, k);
            left -= k;
            evbuffer_ptr_set(b, &at, k, EVBUFFER_PTR_ADD);
        }
    }
}

/* Writes what st->out gathered (hashed for the signature first) and, with
 * `written`, has libevent call it once those bytes are on the socket. Returns
 * 1 when something was written. */
static int flush_events_then(stream *st, void (*written)(struct evhttp_connection *, void *)) {
    int wrote = st->out && evbuffer_get_length(st->out) && st->req && !st->client_gone;
    if (wrote) {
        if (st->resp_hash && !st->finalized) /* the final bytes were hashed by the signing thread */
            hash_buffer(st->resp_hash, st->out);
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
    tee_headers(st->srv, st->req, st->creq.model);
    cors(st->srv, st->req);
    evhttp_send_reply_start(st->req, 200, "OK");
    send_event(st, chunk_json(st, json_pack("{s:s, s:s}", "role", "assistant", "content", ""), NULL));
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
        snprintf(id, sizeof id, "%s ttfb=%.2fms veil=%.2fms backend=%.2fms", st->id, (st->t_first_out - st->t0) * 1000.0,
                 ((tw - st->t0) + (st->t_first_out - tp)) * 1000.0, (tp - tw) * 1000.0);
    else
        snprintf(id, sizeof id, "%s", st->id);
    log_request(st->srv, st->req, "POST", "/api/v1/chat/completions", status, st->t0, st->bytes, id);
    st->req = NULL; /* the reply is complete: libevent owns and frees the request */
    st->ended = 1;
}

/* Signs the completed response and stores the signature, off the loop:
 * text = sha256hex(request) ":" sha256hex(every response byte, the held-back
 * final bytes included), EIP-191 signed by the instance key; the NEAR
 * dialect's text carries the model in front. */
static void *finalize_worker(void *arg) {
    stream *st = arg;
    server *s = st->srv;
    uint8_t resp[32];
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c && EVP_MD_CTX_copy_ex(c, st->resp_hash) == 1 &&
             EVP_DigestUpdate(c, st->final_bytes, st->final_len) == 1 && EVP_DigestFinal_ex(c, resp, NULL) == 1;
    EVP_MD_CTX_free(c);
    char text[130], near_text[300], sig[VEIL_SIGNATURE_STR_LEN + 1], near_sig[VEIL_SIGNATURE_STR_LEN + 1];
    veil_hex_encode(text, st->req_hash, 32);
    text[64] = ':';
    veil_hex_encode(text + 65, resp, 32);
    snprintf(near_text, sizeof near_text, "%s:%s", st->creq.model->id, text);
    uint8_t raw[VEIL_SIGNATURE_LEN];
    const veil_seckey *key = veil_tee_key(s->cfg->tee);
    ok = ok && veil_eip191_sign(raw, key, text, strlen(text), NULL) == VEIL_OK;
    if (ok)
        veil_signature_to_string(sig, raw);
    ok = ok && veil_eip191_sign(raw, key, near_text, strlen(near_text), NULL) == VEIL_OK;
    if (ok) {
        veil_signature_to_string(near_sig, raw);
        veil_signature_record r = {st->id, st->creq.model->id, text, sig, near_text, near_sig};
        veil_err err;
        if (veil_sigstore_put(s->cfg->sigstore, &r, &err) != VEIL_OK)
            fprintf(logf_(s), "veil: %s: %s\n", st->id, err.message);
    }
    pthread_mutex_lock(&st->mu);
    st->finalized = 1;
    st->threads--;
    event_active(st->wake, EV_READ, 0);
    pthread_mutex_unlock(&st->mu);
    pthread_mutex_lock(&s->mu);
    s->workers--;
    pthread_cond_broadcast(&s->workers_done);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Holds back the final bytes and signs on a thread; returns 0 when the
 * bytes should go out now instead (not signing, or no thread). */
static int begin_finalize(stream *st, const void *bytes, size_t n) {
    if (!st->signing)
        return 0;
    st->final_bytes = malloc(n ? n : 1);
    if (!st->final_bytes)
        return 0;
    memcpy(st->final_bytes, bytes, n);
    st->final_len = n;
    pthread_mutex_lock(&st->mu);
    st->threads++;
    pthread_mutex_unlock(&st->mu);
    server *s = st->srv;
    pthread_mutex_lock(&s->mu);
    s->workers++;
    pthread_mutex_unlock(&s->mu);
    st->finalizing = 1;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t th;
    int ok = pthread_create(&th, &attr, finalize_worker, st) == 0;
    pthread_attr_destroy(&attr);
    if (!ok) {
        st->finalizing = 0;
        pthread_mutex_lock(&st->mu);
        st->threads--;
        pthread_mutex_unlock(&st->mu);
        pthread_mutex_lock(&s->mu);
        s->workers--;
        pthread_mutex_unlock(&s->mu);
        free(st->final_bytes);
        st->final_bytes = NULL;
    }
    return ok;
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

/* Runs on the loop: moves what the worker produced to the client. */
static void on_wake(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    stream *st = arg;
    pthread_mutex_lock(&st->mu);
    piece *list = st->head;
    st->head = st->tail = NULL;
    size_t formatted = st->wout ? evbuffer_get_length(st->wout) : 0;
    if (formatted)
        evbuffer_add_buffer(st->rx, st->wout); /* moves the chains, copies nothing */
    int finished = st->finished, running = st->threads > 0;
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
        if (!st->ended) {
            text_append(&st->content, p->content, p->content_len);
            text_append(&st->reasoning, p->reasoning, p->reasoning_len);
        }
        veil_free_secret(p->content, p->content_len);
        veil_free_secret(p->reasoning, p->reasoning_len);
        free(p);
    }
    if (!st->finalizing) {
        /* the first piece: its worker waits until libevent has written it to the socket */
        int first = formatted && !st->t_first_out;
        if (flush_events_then(st, first ? first_written : NULL) && first)
            st->t_first_out = now_s();
    }
    if (st->finalized && !st->ended) {
        /* the signature is stored: the held-back final bytes go out */
        if (!st->req || st->client_gone) {
            drop_request(st);
            st->ended = 1;
        } else if (st->creq.stream) {
            flush_events(st);
            evhttp_send_reply_end(st->req);
            finish_request(st, 200);
        } else {
            tee_headers(st->srv, st->req, st->creq.model);
            st->bytes += send_text(st->srv, st->req, 200, (const char *)st->final_bytes, st->final_len);
            finish_request(st, 200);
        }
    }
    if (finished && !st->ended && !st->finalizing) {
        long pt = st->prompt_tokens, ct = st->completion_tokens;
        json_t *usage = json_pack("{s:i, s:i, s:i}", "prompt_tokens", (json_int_t)pt, "completion_tokens",
                                  (json_int_t)ct, "total_tokens", (json_int_t)(pt + ct));
        if (!st->req || st->client_gone) {
            json_decref(usage);
            log_request(st->srv, NULL, "POST", "/api/v1/chat/completions", 499, st->t0, st->bytes, st->id);
            drop_request(st);
            st->ended = 1;
        } else if (st->failed && !st->started) {
            json_decref(usage);
            int status = st->fail_status >= 400 && st->fail_status < 600 ? st->fail_status : 502;
            st->bytes += send_json(st->srv, st->req, status,
                                   error_json_code(st->fail_msg, error_type(status), NULL, st->fail_code));
            finish_request(st, status);
        } else if (st->failed) {
            json_decref(usage);
            send_event(st, error_json_code(st->fail_msg, error_type(st->fail_status), NULL, st->fail_code));
            flush_events(st);
            evhttp_send_reply_end(st->req);
            finish_request(st, 200);
        } else if (st->creq.stream) {
            start_stream(st);
            send_event(st, chunk_json(st, json_object(), st->finish));
            if (st->creq.include_usage)
                send_event(st, json_pack("{s:s, s:s, s:i, s:s, s:[], s:o}", "id", st->id, "object",
                                         "chat.completion.chunk", "created", (json_int_t)st->created, "model",
                                         st->creq.model->id, "choices", "usage", usage));
            else
                json_decref(usage);
            send_event(st, NULL);
            if (!begin_finalize(st, evbuffer_pullup(st->out, -1), evbuffer_get_length(st->out))) {
                flush_events(st);
                evhttp_send_reply_end(st->req);
                finish_request(st, 200);
            }
        } else {
            /* under E2EE (NEAR) content and reasoning arrive sealed by the worker */
            json_t *msg = json_pack("{s:s, s:s#}", "role", "assistant", "content", st->content.p ? st->content.p : "",
                                    st->content.len);
            if (st->reasoning.len)
                json_object_set_new(msg, "reasoning_content", json_stringn(st->reasoning.p, st->reasoning.len));
            json_t *resp = json_pack("{s:s, s:s, s:i, s:s, s:[{s:i, s:o, s:s, s:n}], s:o}", "id", st->id, "object",
                                     "chat.completion", "created", (json_int_t)st->created, "model", st->creq.model->id,
                                     "choices", "index", 0, "message", msg, "finish_reason", st->finish, "logprobs",
                                     "usage", usage);
            char *text = json_dumps(resp, JSON_COMPACT);
            json_decref(resp);
            size_t n = text ? strlen(text) : 0;
            if (!begin_finalize(st, text, n)) {
                tee_headers(st->srv, st->req, st->creq.model);
                st->bytes += send_text(st->srv, st->req, 200, text, n);
                finish_request(st, 200);
            }
            free(text);
        }
    }
    if (st->ended) {
        pthread_mutex_lock(&st->mu);
        running = st->threads > 0;
        pthread_mutex_unlock(&st->mu);
        if (!running)
            stream_unlink_and_free(st);
    }
}

/* ---- the sink, called on the worker thread ---- */

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
    st->t_publish = now_s();
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
        (++st->unclocked >= 8 && (st->unclocked = 0, now_s() - st->t_publish > 1e-3)))
        sink_flush(st);
}

static void sink_piece(void *ctx, const char *c, size_t cl, const char *r, size_t rl) {
    stream *st = ctx;
    if (st->creq.stream) {
        stream_piece(st, c, cl, r, rl);
        return;
    }
    piece *p = calloc(1, sizeof *p);
    if (!p)
        return;
    p->content = malloc(cl + 1);
    p->reasoning = malloc(rl + 1);
    if (!p->content || !p->reasoning) {
        free(p->content);
        free(p->reasoning);
        free(p);
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

static void sink_fail(void *ctx, const char *code, int status, const char *message) {
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
    if (n && veil_ecies_seal_hex_pooled(&hex, st->srv->eph, &st->creq.client_key, (const uint8_t *)text, n, NULL) !=
                 VEIL_OK)
        hex = NULL;
    return hex;
}

static void sink_piece_e2ee(void *ctx, const char *c, size_t cl, const char *r, size_t rl) {
    stream *st = ctx;
    if (st->creq.e2ee_near && !st->creq.stream) { /* NEAR non-streaming: one sealed answer, at the end */
        text_append(&st->w_content, c, cl);
        text_append(&st->w_reasoning, r, rl);
        return;
    }
    char *hc = seal(st, c, cl), *hr = seal(st, r, rl);
    if ((cl && !hc) || (rl && !hr)) {
        atomic_store(&st->cancelled, 1); /* never fall back to plaintext */
        sink_fail(ctx, NULL, 500, "Internal server error");
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
        char *hc = seal(st, st->w_content.p, st->w_content.len), *hr = seal(st, st->w_reasoning.p, st->w_reasoning.len);
        int ok = (hc || !st->w_content.len) && (hr || !st->w_reasoning.len);
        text_free(&st->w_content);
        text_free(&st->w_reasoning);
        if (ok)
            sink_piece(ctx, hc ? hc : "", hc ? strlen(hc) : 0, hr ? hr : "", hr ? strlen(hr) : 0);
        free(hc);
        free(hr);
        if (!ok) {
            sink_fail(ctx, NULL, 500, "Internal server error");
            return;
        }
    }
    sink_done(ctx, finish, pt, ct);
}

static void *worker(void *arg) {
    stream *st = arg;
    double started = now_s();
    pthread_mutex_lock(&st->mu);
    st->t_worker = started;
    pthread_mutex_unlock(&st->mu);
    veil_gen_sink sink = {st, st->creq.e2ee ? sink_piece_e2ee : sink_piece, st->creq.e2ee ? sink_done_e2ee : sink_done,
                          sink_fail, sink_cancelled, sink_flush};
    veil_backend *b = st->creq.model->backend;
    veil_http_error e;
    if (st->creq.e2ee &&
        !veil_e2ee_decrypt_messages(veil_tee_key(st->srv->cfg->tee), st->creq.messages, st->creq.e2ee_near, &e))
        sink_fail(st, NULL, e.status, e.message);
    else if (b)
        b->generate(b, &st->creq, &sink);
    else
        sink_fail(st, NULL, 503, "Model has no backend");
    server *s = st->srv;
    /* The loop may free the stream as soon as no thread uses it, so this is
     * the worker's last touch of it. */
    pthread_mutex_lock(&st->mu);
    st->threads--;
    event_active(st->wake, EV_READ, 0);
    pthread_mutex_unlock(&st->mu);
    pthread_mutex_lock(&s->mu);
    s->workers--;
    pthread_cond_broadcast(&s->workers_done);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

typedef struct rules_ctx {
    server *s;
    struct evhttp_request *req;
} rules_ctx;

/* A content part that is not text (image, file, audio) anywhere in the messages. */
static int has_non_text_part(json_t *msgs) {
    size_t i, k;
    json_t *m, *part;
    json_array_foreach(msgs, i, m) {
        json_t *c = json_object_get(m, "content");
        json_array_foreach(c, k, part) {
            const char *type = json_string_value(json_object_get(part, "type"));
            if (!type || strcmp(type, "text") != 0)
                return 1;
        }
    }
    return 0;
}

/* The E2EE rules of protocol.md §3.3 (Venice headers) and §4 (NEAR headers),
 * in their order, each with its exact message. Marks the request E2EE. */
static int e2ee_rules(void *arg, json_t *body, veil_chat_request *out, veil_http_error *e) {
    rules_ctx *rc = arg;
    server *s = rc->s;
    struct evkeyvalq *h = evhttp_request_get_input_headers(rc->req);
    const veil_model *m = out->model;
    json_t *vp = json_object_get(body, "venice_parameters");
    if (json_is_false(json_object_get(vp, "enable_e2ee")))
        return 1; /* TEE-only, even with the headers */
    const char *cpk = evhttp_find_header(h, "X-Venice-TEE-Client-Pub-Key");
    const char *mpk = evhttp_find_header(h, "X-Venice-TEE-Model-Pub-Key");
    const char *algo = evhttp_find_header(h, "X-Venice-TEE-Signing-Algo");
    const char *n_algo = evhttp_find_header(h, "X-Signing-Algo"), *n_key = evhttp_find_header(h, "X-Client-Pub-Key");
    const char *n_model = evhttp_find_header(h, "X-Model-Pub-Key");
    veil_pubkey mine_check;
    int near = 0;
    if (cpk || mpk || algo) {
        if (!cpk || !mpk || !algo)
            return veil_http_bad_request(e, "E2EE requires X-Venice-TEE-Client-Pub-Key, X-Venice-TEE-Model-Pub-Key and "
                                "X-Venice-TEE-Signing-Algo together");
        if (strcmp(algo, "ecdsa") != 0)
            return veil_http_bad_request(e, "Unsupported signing algorithm");
        if (veil_pubkey_parse_hex(&out->client_key, cpk, strlen(cpk), NULL) != VEIL_OK)
            return veil_http_bad_request(e, "Invalid public key");
        if (!m->e2ee || !s->cfg->tee)
            return veil_http_bad_request(e, "Model does not support E2EE");
        if (veil_pubkey_parse_hex(&mine_check, mpk, strlen(mpk), NULL) != VEIL_OK ||
            memcmp(mine_check.bytes, veil_tee_pubkey(s->cfg->tee)->bytes, VEIL_PUBKEY_LEN) != 0)
            return veil_http_bad_request(e, "Model public key does not match this TEE");
    } else if (n_algo || n_key) {
        static char msg[160];
        if (!n_algo || !n_key)
            return veil_http_bad_request(e, "Both X-Signing-Algo and X-Client-Pub-Key headers must be present together");
        if (strcmp(n_algo, "ecdsa") != 0 && strcmp(n_algo, "ed25519") != 0) {
            snprintf(msg, sizeof msg, "Invalid X-Signing-Algo: %.40s. Must be 'ecdsa' or 'ed25519'", n_algo);
            return veil_http_bad_request(e, msg);
        }
        size_t n = strlen(n_key);
        if (!veil_hex_is_valid(n_key, n))
            return veil_http_bad_request(e, "X-Client-Pub-Key must be valid hex");
        if (strcmp(n_algo, "ecdsa") != 0 || (n / 2 != 64 && n / 2 != 65)) {
            snprintf(msg, sizeof msg, "ECDSA client public key must be 64 or 65 bytes, got %zu", n / 2);
            return veil_http_bad_request(e, strcmp(n_algo, "ecdsa") != 0 ? "Unsupported signing algorithm" : msg);
        }
        if (veil_pubkey_parse_hex(&out->client_key, n_key, n, NULL) != VEIL_OK)
            return veil_http_bad_request(e, "Invalid public key");
        if (!m->e2ee || !s->cfg->tee)
            return veil_http_bad_request(e, "Model does not support E2EE");
        if (n_model && (veil_pubkey_parse_hex(&mine_check, n_model, strlen(n_model), NULL) != VEIL_OK ||
                        memcmp(mine_check.bytes, veil_tee_pubkey(s->cfg->tee)->bytes, VEIL_PUBKEY_LEN) != 0))
            return veil_http_bad_request(e, "Model public key does not match this TEE");
        near = 1;
    } else {
        return 1;
    }
    if (!near && !json_is_true(json_object_get(body, "stream")))
        return veil_http_bad_request(e, "E2EE requires streaming");
    static const char *const tool_keys[] = {"tools", "tool_choice", "functions", "function_call"};
    for (size_t i = 0; i < 4; i++)
        if (json_object_get(body, tool_keys[i]))
            return veil_http_bad_request(e, "Function calling is not supported with E2EE");
    const char *web = json_string_value(json_object_get(vp, "enable_web_search"));
    if (web && !strcmp(web, "on"))
        return veil_http_bad_request(e, "Web search is not supported with E2EE");
    json_t *msgs = json_object_get(body, "messages");
    if (has_non_text_part(msgs))
        return veil_http_bad_request(e, "File uploads are not supported with E2EE");
    /* the cheap shape check now; decryption itself runs on the worker */
    size_t i;
    json_t *msg;
    json_array_foreach(msgs, i, msg) {
        const char *role = json_string_value(json_object_get(msg, "role"));
        int must = veil_e2ee_must_encrypt(role, near);
        json_t *c = json_object_get(msg, "content");
        size_t k;
        json_t *part;
        if (!must)
            continue;
        if (json_is_string(c)) {
            size_t n = json_string_length(c);
            if ((n || !near) && (n < 186 || !veil_hex_is_valid(json_string_value(c), n)))
                return veil_http_bad_request(e, "Encrypted field is not valid hex");
        }
        json_array_foreach(c, k, part) {
            json_t *t = json_object_get(part, "text");
            size_t n = json_string_length(t);
            if ((n || !near) && (n < 186 || !veil_hex_is_valid(json_string_value(t), n)))
                return veil_http_bad_request(e, "Encrypted field is not valid hex");
        }
    }
    out->e2ee = 1;
    out->e2ee_near = near;
    return 1;
}

static size_t handle_chat(server *s, struct evhttp_request *req, double t0, int *status) {
    const char *why;
    if (!authorized(s, req, &why)) {
        *status = 401;
        return send_error(s, req, 401, why, NULL);
    }
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    if (ct && strncasecmp(ct, "application/json", 16) != 0) {
        *status = 415;
        return send_error(s, req, 415, "Content-Type must be application/json", NULL);
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    if (len > s->cfg->max_body) {
        *status = 413;
        return send_error(s, req, 413, "Request body is too large", NULL);
    }
    const char *body = (const char *)evbuffer_pullup(in, -1);
    stream *st = calloc(1, sizeof *st);
    if (!st) {
        *status = 500;
        return send_error(s, req, 500, "Internal server error", NULL);
    }
    veil_http_error e;
    rules_ctx rctx = {s, req};
    if (!veil_chat_validate(body ? body : "", len, find_model, s, e2ee_rules, &rctx, &st->creq, &e)) {
        free(st);
        *status = e.status;
        return send_error(s, req, e.status, e.message, e.param);
    }
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
        return send_error(s, req, 503, "Server is overloaded, retry shortly", NULL);
    }
    uint8_t rnd[16];
    if (veil_random_bytes(rnd, sizeof rnd, NULL) != VEIL_OK)
        memset(rnd, 0, sizeof rnd);
    memcpy(st->id, "chatcmpl-", 9);
    veil_hex_encode(st->id + 9, rnd, sizeof rnd);
    st->srv = s;
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
    if (!make_chunk_frame(st)) {
        pthread_mutex_lock(&s->mu);
        s->active--;
        s->workers--;
        pthread_mutex_unlock(&s->mu);
        EVP_MD_CTX_free(st->resp_hash);
        veil_chat_request_clear(&st->creq);
        free(st);
        *status = 500;
        return send_error(s, req, 500, "Internal server error", NULL);
    }
    pthread_mutex_init(&st->mu, NULL);
    pthread_condattr_t ca; /* its wait is timed on the monotonic clock: a clock change cannot stretch it */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&st->first_out, &ca);
    pthread_condattr_destroy(&ca);
    st->wake = event_new(s->base, -1, 0, on_wake, st);
    evhttp_connection_set_closecb(st->conn, on_close, st);
    pthread_mutex_lock(&s->mu);
    st->next = s->streams;
    if (s->streams)
        s->streams->prev = st;
    s->streams = st;
    pthread_mutex_unlock(&s->mu);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 512 * 1024);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t th;
    if (pthread_create(&th, &attr, worker, st) != 0) {
        sink_fail(st, NULL, 503, "Server is overloaded, retry shortly");
        pthread_mutex_lock(&st->mu);
        st->threads--;
        pthread_mutex_unlock(&st->mu);
        pthread_mutex_lock(&s->mu);
        s->workers--;
        pthread_mutex_unlock(&s->mu);
        event_active(st->wake, EV_READ, 0);
    }
    pthread_attr_destroy(&attr);
    *status = -1; /* logged when the stream ends */
    return 0;
}

/* ---- routing ---- */

/* Every connection's writes go out at once (TCP_NODELAY): a stream's events
 * are written whole, and Nagle's algorithm would hold a small one back until
 * the client acknowledges the last, which a client delays by up to 40 ms. */
static void no_delay(struct evhttp_request *req) {
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void on_request(struct evhttp_request *req, void *arg) {
    server *s = arg;
    double t0 = now_s();
    no_delay(req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!path || !*path)
        path = "/";
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    int status = 200;
    size_t bytes = 0;
    int get = cmd == EVHTTP_REQ_GET, post = cmd == EVHTTP_REQ_POST;
    if (cmd == EVHTTP_REQ_OPTIONS && s->cfg->cors_origin) {
        cors(s, req);
        evhttp_send_reply(req, 204, "No Content", NULL);
        status = 204;
    } else if (!strcmp(path, "/healthz")) {
        bytes = get ? send_json(s, req, 200, json_pack("{s:s}", "status", "ok"))
                    : send_error(s, req, status = 405, "Method not allowed", NULL);
    } else if (!strcmp(path, "/readyz")) {
        status = !get ? 405 : s->shutting_down ? 503 : 200;
        bytes = status == 405   ? send_error(s, req, 405, "Method not allowed", NULL)
                : status == 503 ? send_error(s, req, 503, "Shutting down", NULL)
                                : send_json(s, req, 200, json_pack("{s:s}", "status", "ready"));
    } else if (!strcmp(path, "/api/v1/models") || !strcmp(path, "/v1/models")) {
        bytes = get ? handle_models(s, req, uri) : send_error(s, req, status = 405, "Method not allowed", NULL);
    } else if (!strcmp(path, "/api/v1/tee/attestation") || !strcmp(path, "/v1/attestation/report")) {
        int near = !strcmp(path, "/v1/attestation/report");
        if (get)
            bytes = handle_attestation(s, req, uri, near, near ? "/v1/attestation/report" : "/api/v1/tee/attestation",
                                       t0, &status);
        else
            bytes = send_error(s, req, status = 405, "Method not allowed", NULL);
    } else if (!strcmp(path, "/api/v1/tee/signature") || !strncmp(path, "/v1/signature/", 14)) {
        if (get)
            bytes = handle_signature(s, req, uri, path, t0, &status);
        else
            bytes = send_error(s, req, status = 405, "Method not allowed", NULL);
    } else if (!strcmp(path, "/api/v1/chat/completions") || !strcmp(path, "/v1/chat/completions")) {
        if (post)
            bytes = handle_chat(s, req, t0, &status);
        else
            bytes = send_error(s, req, status = 405, "Method not allowed", NULL);
    } else {
        bytes = send_error(s, req, status = 404, "Not found", NULL);
    }
    if (status >= 0)
        log_request(s, req, method_name(req), path, status, t0, bytes, NULL);
}

/* ---- lifecycle ---- */

static void reload_keys(server *s) {
    uint8_t(*hashes)[32];
    size_t n;
    veil_err err;
    if (veil_keystore_hashes(s->cfg->keystore, &hashes, &n, &err) != VEIL_OK) {
        fprintf(logf_(s), "veil: %s (keeping the keys loaded before)\n", err.message);
        return;
    }
    pthread_rwlock_wrlock(&s->keys_lock);
    uint8_t(*old)[32] = s->store_hashes;
    s->store_hashes = hashes;
    s->n_store_hashes = n;
    pthread_rwlock_unlock(&s->keys_lock);
    free(old);
}

static void *key_thread(void *arg) {
    server *s = arg;
    while (!atomic_load(&s->key_thread_stop)) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        for (int i = 0; i < 10 && !atomic_load(&s->key_thread_stop); i++)
            nanosleep(&ts, NULL);
        reload_keys(s);
    }
    return NULL;
}

static void on_grace_over(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    server *s = arg;
    pthread_mutex_lock(&s->mu);
    for (stream *st = s->streams; st; st = st->next)
        atomic_store(&st->cancelled, 1);
    pthread_mutex_unlock(&s->mu);
    event_base_loopexit(s->base, NULL);
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
    (void)what;
    server *s = arg;
    if (s->shutting_down)
        return;
    fprintf(logf_(s), "veil: %s: no new requests; waiting up to %ds for %d in-flight stream(s)\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM", s->cfg->shutdown_grace_s, s->active);
    fflush(logf_(s));
    s->shutting_down = 1;
    if (s->sock) {
        evhttp_del_accept_socket(s->http, s->sock);
        s->sock = NULL;
    }
    pthread_mutex_lock(&s->mu);
    int idle = s->active == 0;
    pthread_mutex_unlock(&s->mu);
    if (idle) {
        event_base_loopexit(s->base, NULL);
        return;
    }
    struct timeval tv = {s->cfg->shutdown_grace_s, 0};
    s->grace_timer = evtimer_new(s->base, on_grace_over, s);
    evtimer_add(s->grace_timer, &tv);
}

veil_rc veil_server_run(const veil_server_config *cfg, veil_err *err) {
    veil_server_config c = *cfg;
    if (!c.host)
        c.host = "127.0.0.1";
    if (!c.max_body)
        c.max_body = 4u << 20;
    if (!c.max_headers)
        c.max_headers = 64u << 10;
    if (!c.idle_timeout_s)
        c.idle_timeout_s = 60;
    if (!c.shutdown_grace_s)
        c.shutdown_grace_s = 10;
    if (!c.max_streams)
        c.max_streams = 256;
    server s;
    memset(&s, 0, sizeof s);
    s.cfg = &c;
    s.started = (long)time(NULL);
    /* $VEIL_EPHEMERAL_POOL: how many keys to keep ready (default 32768, about 3 MiB; 0: none) */
    const char *ep = getenv("VEIL_EPHEMERAL_POOL");
    long eph_n = ep && *ep ? strtol(ep, NULL, 10) : 32768;
    if (c.tee && eph_n > 0)
        s.eph = veil_ephemeral_pool_new((size_t)eph_n);
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.workers_done, NULL);
    s.key_hashes = calloc(c.n_api_keys + 1, 32);
    for (size_t i = 0; s.key_hashes && i < c.n_api_keys; i++)
        EVP_Digest(c.api_keys[i], strlen(c.api_keys[i]), s.key_hashes[i], NULL, EVP_sha256(), NULL);
    pthread_rwlock_init(&s.keys_lock, NULL);
    if (c.keystore) {
        reload_keys(&s);
        s.key_thread_started = pthread_create(&s.key_thread, NULL, key_thread, &s) == 0;
    }
    signal(SIGPIPE, SIG_IGN);
    evthread_use_pthreads();
    s.base = event_base_new();
    s.http = s.base ? evhttp_new(s.base) : NULL;
    veil_rc rc = VEIL_OK;
    if (!s.key_hashes || !s.http) {
        rc = veil_err_set(err, VEIL_ERR_NOMEM, "cannot set up the event loop");
        goto out;
    }
    /* Bodies up to 64 KiB over the limit reach the handler, which answers 413
     * in the OpenAI error shape; larger ones libevent refuses itself (413,
     * with its own body) without reading them. */
    evhttp_set_max_body_size(s.http, (ev_ssize_t)c.max_body + 65536);
    evhttp_set_max_headers_size(s.http, (ev_ssize_t)c.max_headers);
    evhttp_set_timeout(s.http, c.idle_timeout_s);
    evhttp_set_allowed_methods(s.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PUT |
                                           EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH | EVHTTP_REQ_HEAD);
    evhttp_set_gencb(s.http, on_request, &s);
    s.sock = evhttp_bind_socket_with_handle(s.http, c.host, (ev_uint16_t)c.port);
    if (!s.sock) {
        rc = veil_err_set(err, VEIL_ERR_IO, "cannot listen on %s:%d: %s", c.host, c.port, strerror(errno));
        goto out;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int port = c.port;
    if (getsockname(evhttp_bound_socket_get_fd(s.sock), (struct sockaddr *)&ss, &sl) == 0)
        port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                              : ((struct sockaddr_in *)&ss)->sin_port);
    struct event *sigint = evsignal_new(s.base, SIGINT, on_signal, &s);
    struct event *sigterm = evsignal_new(s.base, SIGTERM, on_signal, &s);
    event_add(sigint, NULL);
    event_add(sigterm, NULL);
    if (c.on_ready)
        c.on_ready(c.ready_ctx, c.host, port);
    event_base_dispatch(s.base);
    /* Workers still running were cancelled; they touch the loop's events, so
     * wait for them (briefly) before the loop goes away. */
    pthread_mutex_lock(&s.mu);
    for (stream *st = s.streams; st; st = st->next)
        atomic_store(&st->cancelled, 1);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 5;
    while (s.workers > 0 && pthread_cond_timedwait(&s.workers_done, &s.mu, &deadline) == 0)
        ;
    int stuck = s.workers;
    pthread_mutex_unlock(&s.mu);
    event_free(sigint);
    event_free(sigterm);
    if (s.grace_timer)
        event_free(s.grace_timer);
    if (stuck) {
        fprintf(logf_(&s), "veil: %d generation(s) did not stop; exiting without freeing them\n", stuck);
        if (s.key_thread_started) {
            atomic_store(&s.key_thread_stop, 1);
            pthread_join(s.key_thread, NULL);
        }
        return VEIL_OK;
    }
    while (s.streams) {
        stream *st = s.streams;
        st->ended = 1;
        st->threads = 0;
        stream_unlink_and_free(st);
    }
out:
    if (s.key_thread_started) {
        atomic_store(&s.key_thread_stop, 1);
        pthread_join(s.key_thread, NULL);
    }
    free(s.store_hashes);
    pthread_rwlock_destroy(&s.keys_lock);
    if (s.http)
        evhttp_free(s.http);
    if (s.base)
        event_base_free(s.base);
    free(s.key_hashes);
    veil_ephemeral_pool_free(s.eph);
    pthread_mutex_destroy(&s.mu);
    pthread_cond_destroy(&s.workers_done);
    return rc;
}
