/* The TEE routes of veil serve: GET /api/v1/tee/attestation (Venice) and
 * /v1/attestation/report (NEAR), the signature lookups
 * /api/v1/tee/signature and /v1/signature/<chat_id>, and the key release
 * between replicas /veil/v1/key-release (docs/cluster.md). Each is checked on the
 * loop and answered by a job on a detached thread (a quote or a store read
 * may take a while), whose reply comes back through an event. */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "base/base.h"
#include "http_internal.h"
#include "keyrelease.h"
#include "tee.h"
#include "veil/hex.h"
#include "veil/secure.h"

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
    int signature; /* a signature lookup rather than an attestation */
    char request_id[96];
    int not_found;
    char *body; /* a key release request */
    size_t body_len;
    int status; /* the key release's refusal status */
    json_t *result;
    char error[300];
} attest_job;

static void job_closed(struct evhttp_connection *conn, void *arg) {
    (void)conn;
    attest_job *j = arg;
    j->client_gone = 1;
    j->conn = NULL;
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
                              "signing_address", r.signing_address, "signing_algo", "ecdsa");
    else
        j->result = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "model", r.model, "request_id", r.request_id,
                              "tee_hardware", veil_tee_simulated(t) ? "simulated" : "intel-tdx", "text", r.text,
                              "signature", r.signature, "signing_address", r.signing_address, "signing_algo", "ecdsa",
                              "tee_provider", veil_tee_provider_name(t));
    veil_signature_record_clear(&r);
}

static void *attest_worker(void *arg) {
    attest_job *j = arg;
    if (j->body) {
        j->result = veil_key_release_answer(j->s->cfg->tee, j->s->cfg->key_release, j->body, j->body_len, &j->status,
                                            j->error, sizeof j->error);
        event_active(j->wake, EV_READ, 0);
        return NULL;
    }
    if (j->signature) {
        signature_lookup(j);
        event_active(j->wake, EV_READ, 0);
        return NULL;
    }
    veil_err err;
    json_t *doc = veil_tee_attest(j->s->cfg->tee, j->model, j->nonce, j->nonce_text, j->client_nonce, &err);
    if (doc && j->near) {
        json_t *r = veil_tee_near_report(doc, j->model);
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
        int status = j->result ? 200 : j->not_found ? 404 : j->status ? j->status : 502;
        if (j->body && !j->result) /* a refused release says why in the log: never a key, only the checks */
            fprintf(http_log(s), "veil: %s\n", j->error);
        const char *missing = j->near ? "Chat id not found or expired" : "Signature not found or expired";
        size_t bytes = j->result ? http_send_json(s, j->req, 200, j->result)
                                 : http_send_error(s, j->req, status, j->not_found ? missing : j->error, NULL);
        http_log_request(s, j->body ? "POST" : "GET", j->path, status, j->t0, bytes, NULL);
    }
    s->attest_jobs--;
    event_free(j->wake);
    free(j->body);
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
    if (!veil_thread_detached(attest_worker, j, 0)) {
        snprintf(j->error, sizeof j->error, "Server is overloaded, retry shortly");
        event_active(j->wake, EV_READ, 0);
    }
}

/* 503 with Retry-After: 1, for a route whose jobs are at their bound. */
static size_t busy(server *s, struct evhttp_request *req, const char *message, int *status) {
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
    return http_send_error(s, req, *status = 503, message, NULL);
}

/* The rate limit, then the query's parameters into q (freed with
 * evhttp_clear_headers). Returns 0 when the request was refused. */
static int admit(server *s, veil_ratelimit *rl, struct evhttp_request *req, const struct evhttp_uri *uri,
                 struct evkeyvalq *q, int *status, size_t *refused) {
    if (http_refused_by_rate_limit(s, rl, req, status, refused))
        return 0;
    TAILQ_INIT(q);
    const char *query = evhttp_uri_get_query(uri);
    if (query)
        evhttp_parse_query_str(query, q);
    return 1;
}

/* GET /api/v1/tee/attestation (Venice) and /v1/attestation/report (NEAR). */
size_t http_attestation(server *s, struct evhttp_request *req, const struct evhttp_uri *uri, int near, const char *path,
                        double t0, int *status) {
    size_t refused;
    struct evkeyvalq q;
    if (!admit(s, &s->rate, req, uri, &q, status, &refused))
        return refused;
    const char *model = evhttp_find_header(&q, "model"), *nonce = evhttp_find_header(&q, "nonce");
    const char *algo = evhttp_find_header(&q, "signing_algo"), *addr = evhttp_find_header(&q, "signing_address");
    size_t bytes = 0;
    attest_job *j = NULL;
    const veil_model *m = model ? http_find_model(s, model) : NULL;
    uint8_t n[32];
    size_t nlen = nonce ? strlen(nonce) : 0;
    int nonce_hex = nonce && veil_hex_is_valid(nonce, nlen);
    *status = 400;
    if (!s->cfg->tee) {
        bytes = http_send_error(s, req, *status = 404, "Not found", NULL);
    } else if (nonce && near && !nonce_hex && !(nlen == 0)) {
        bytes = http_send_error(s, req, 400, "Nonce must be hex-encoded", "nonce");
    } else if (nonce && (!nonce_hex || nlen != 64)) {
        bytes = http_send_error(s, req, 400,
                                near ? "Nonce must be 32 bytes" : "Nonce must be exactly 32 bytes (64 hex characters)",
                                "nonce");
    } else if (!m) {
        bytes = http_send_error(s, req, *status = 404, "Model not found", "model");
    } else if (!m->tee && !m->e2ee) {
        bytes = http_send_error(s, req, 400, "Model does not support TEE attestation", "model");
    } else if (near && algo && strcmp(algo, "ecdsa") != 0) {
        bytes = http_send_error(s, req, 400, "Unsupported signing algorithm", "signing_algo");
    } else if (near && addr && strcasecmp(addr, veil_tee_address(s->cfg->tee)) != 0) {
        bytes = http_send_error(s, req, *status = 404, "Signing address not found on this server", "signing_address");
    } else if (s->attest_jobs >= 4) {
        bytes = busy(s, req, "Attestation is busy, retry shortly", status);
    } else if (!(j = calloc(1, sizeof *j))) {
        bytes = http_send_error(s, req, *status = 500, "Internal server error", NULL);
    } else {
        if (nonce) {
            if (veil_hex_decode(n, 32, NULL, nonce, 64, NULL) != VEIL_OK)
                memset(n, 0, 32);
            snprintf(j->nonce_text, sizeof j->nonce_text, "%s", nonce);
        } else if (veil_random_bytes(n, 32, NULL) != VEIL_OK) {
            /* never an all-zero (predictable) server nonce */
            free(j);
            evhttp_clear_headers(&q);
            *status = 500;
            return http_send_error(s, req, 500, "Internal server error", NULL);
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
size_t http_signature(server *s, struct evhttp_request *req, const struct evhttp_uri *uri, const char *path, double t0,
                      int *status) {
    int near = !strncmp(path, "/v1/signature/", 14);
    size_t refused;
    struct evkeyvalq q;
    if (!admit(s, &s->sig_rate, req, uri, &q, status, &refused))
        return refused;
    const char *id = near ? path + 14 : evhttp_find_header(&q, "request_id");
    const char *model = near ? NULL : evhttp_find_header(&q, "model");
    const char *algo = evhttp_find_header(&q, "signing_algo");
    size_t bytes = 0;
    attest_job *j = NULL;
    const char *missing = near ? "Chat id not found or expired" : "Signature not found or expired";
    if (!s->cfg->tee || !s->cfg->sigstore) {
        bytes = http_send_error(s, req, *status = 404, "Not found", NULL);
    } else if (algo && strcmp(algo, "ecdsa") != 0) {
        bytes = http_send_error(s, req, *status = 400, "Unsupported signing algorithm", "signing_algo");
    } else if (!id || !*id || strlen(id) >= sizeof j->request_id || (model && strlen(model) >= sizeof j->model)) {
        bytes = http_send_error(s, req, *status = 404, missing, NULL);
    } else if (s->attest_jobs >= 64) {
        bytes = busy(s, req, "Server is overloaded, retry shortly", status);
    } else if (!(j = calloc(1, sizeof *j))) {
        bytes = http_send_error(s, req, *status = 500, "Internal server error", NULL);
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

/* GET /veil/v1/key-release: the challenge; POST: a joiner's release request. */
size_t http_key_release(server *s, struct evhttp_request *req, const struct evhttp_uri *uri, const char *path,
                        double t0, int *status) {
    size_t refused;
    struct evkeyvalq q;
    if (!s->cfg->tee || !s->cfg->key_release || !veil_tee_has_key(s->cfg->tee)) {
        *status = 404;
        return http_send_error(s, req, 404, "Not found", NULL);
    }
    if (!admit(s, &s->rate, req, uri, &q, status, &refused))
        return refused;
    evhttp_clear_headers(&q);
    if (evhttp_request_get_command(req) == EVHTTP_REQ_GET) {
        char nonce[65];
        veil_key_release_nonce(s->cfg->tee, nonce);
        return http_send_json(s, req, 200, json_pack("{s:s, s:i}", "nonce", nonce, "expires_in", 120));
    }
    attest_job *j = NULL;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    if (s->attest_jobs >= 4)
        return busy(s, req, "Attestation is busy, retry shortly", status);
    if (!(j = calloc(1, sizeof *j)) || !(j->body = malloc(len + 1))) {
        free(j);
        *status = 500;
        return http_send_error(s, req, 500, "Internal server error", NULL);
    }
    evbuffer_copyout(in, j->body, len);
    j->body[len] = 0;
    j->body_len = len;
    j->s = s;
    start_job(j, req, t0, path);
    *status = -1;
    return 0;
}
