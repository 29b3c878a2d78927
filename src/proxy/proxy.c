/* veil proxy's HTTP side: the loop, the routes, and the hand-over between
 * the loop and each request's worker thread. The loop never waits on the
 * upstream: a worker (forward.c) queues the reply's bytes and wakes the
 * loop, which writes them; a tool that leaves cancels its upstream request. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>

#include "base/base.h"
#include "client/client_internal.h"
#include "proxy_internal.h"
#include "server/http_common.h"
#include "veil/secure.h"

#define MAX_BODY (8u << 20)
#define MAX_HEADERS (64u << 10)
#define GRACE_S 10

static FILE *logf_(proxy *p) { return p->cfg->log ? p->cfg->log : stderr; }

/* ---- the worker's side ---- */

static void wake(proxy_job *j) { event_active(j->wake, EV_READ, 0); }

void proxy_job_open(proxy_job *j) {
    pthread_mutex_lock(&j->mu);
    j->open = 1; /* the head goes out with the first events, at the next flush */
    pthread_mutex_unlock(&j->mu);
}

void proxy_job_event(proxy_job *j, const char *data, size_t n) {
    pthread_mutex_lock(&j->mu);
    evbuffer_add(j->out, "data: ", 6);
    evbuffer_add(j->out, data, n);
    evbuffer_add(j->out, "\n\n", 2);
    pthread_mutex_unlock(&j->mu);
}

void proxy_job_bytes(proxy_job *j, const char *data, size_t n) {
    pthread_mutex_lock(&j->mu);
    evbuffer_add(j->out, data, n);
    pthread_mutex_unlock(&j->mu);
}

void proxy_job_flush(proxy_job *j) {
    pthread_mutex_lock(&j->mu);
    if ((evbuffer_get_length(j->out) || j->open) && !j->quiet)
        wake(j); /* while the loop paces this stream, its timer takes what came */
    pthread_mutex_unlock(&j->mu);
}

void proxy_job_reply(proxy_job *j, int status, json_t *body) {
    pthread_mutex_lock(&j->mu);
    j->status = status;
    json_decref(j->reply);
    j->reply = body;
    wake(j);
    pthread_mutex_unlock(&j->mu);
}

void proxy_job_error(proxy_job *j, int status, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    proxy_job_reply(j, status, http_error_json(msg, http_error_type(status), NULL, NULL));
}

void proxy_job_finish(proxy_job *j) {
    pthread_mutex_lock(&j->mu);
    j->finished = 1;
    wake(j); /* the loop frees the job once it has taken the lock after this */
    pthread_mutex_unlock(&j->mu);
}

/* ---- the loop's side ---- */

static void job_free(proxy_job *j) {
    json_decref(j->body);
    json_decref(j->reply);
    if (j->authorization)
        veil_free_secret(j->authorization, strlen(j->authorization));
    if (j->out)
        evbuffer_free(j->out);
    if (j->wake)
        event_free(j->wake);
    if (j->pace)
        event_free(j->pace);
    pthread_mutex_destroy(&j->mu);
    atomic_fetch_sub(&j->p->active, 1);
    free(j);
}

static void job_closed(struct evhttp_connection *conn, void *arg) {
    (void)conn;
    proxy_job *j = arg;
    j->gone = 1;
    atomic_store(&j->cancel, 1);
}

static void add_header(proxy_job *j, const char *name, const char *value) {
    evhttp_add_header(evhttp_request_get_output_headers(j->req), name, value);
}

static void veil_headers(proxy_job *j) {
    if (j->mode[0])
        add_header(j, "X-Veil-Mode", j->mode);
    if (j->signer[0])
        add_header(j, "X-Veil-Signing-Address", j->signer);
}

static void log_line(proxy_job *j, int status) {
    char ttft[48] = "";
    if (j->t_first > 0)
        snprintf(ttft, sizeof ttft, " ttft=%.2fms", (j->t_first - j->t0) * 1000.0);
    fprintf(logf_(j->p), "veil proxy: %s %s %d %zu bytes %.1fms%s%s%s\n", j->chat ? "POST" : "GET", j->path, status,
            j->bytes, (veil_now_s() - j->t0) * 1000.0, j->mode[0] ? " " : "", j->mode, ttft);
    fflush(logf_(j->p));
}

/* Replies with v (borrowed) as JSON; the text is wiped after (an answer is plaintext). Returns
 * the body's bytes. */
static size_t send_json(struct evhttp_request *req, int status, json_t *v) {
    char *text = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    size_t n = text ? strlen(text) : 0;
    struct evbuffer *b = evbuffer_new();
    if (text && b)
        evbuffer_add(b, text, n);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, status, http_reason(status), b);
    if (b)
        evbuffer_free(b);
    if (text)
        veil_free_secret(text, n);
    return n;
}

/* A stream's events go out at once, and then at most once per PACE_US: what
 * arrives meanwhile waits for the pacing timer, so that a fast stream costs
 * one write (and one wake of the tool) per PACE_US rather than per token. */
#define PACE_US 1000

static void on_pace(evutil_socket_t fd, short what, void *arg);

static void on_wake(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    proxy_job *j = arg;
    struct evbuffer *chunk = evbuffer_new();
    pthread_mutex_lock(&j->mu);
    int open = j->open, finished = j->finished, status = j->status;
    json_t *reply = j->reply;
    j->reply = NULL;
    if (chunk)
        evbuffer_add_buffer(chunk, j->out);
    /* pacing starts once the first piece of content is out: time to first token is never paced */
    int pace = !finished && chunk && evbuffer_get_length(chunk) && j->pace && j->t_first > 0;
    if (pace)
        j->quiet = 1;
    pthread_mutex_unlock(&j->mu);
    if (pace) {
        struct timeval tv = {0, PACE_US};
        evtimer_add(j->pace, &tv);
    }
    int live = j->req && !j->gone;
    if (live && reply && !j->started) { /* a whole reply */
        veil_headers(j);
        j->bytes = send_json(j->req, status, reply);
        evhttp_connection_set_closecb(j->conn, NULL, NULL);
        log_line(j, status);
        j->req = NULL;
    } else if (live && (open || evbuffer_get_length(chunk))) {
        if (!j->started) {
            add_header(j, "Content-Type", "text/event-stream");
            add_header(j, "Cache-Control", "no-cache");
            veil_headers(j);
            evhttp_send_reply_start(j->req, 200, "OK");
            j->started = 1;
        }
        j->bytes += evbuffer_get_length(chunk);
        if (evbuffer_get_length(chunk))
            evhttp_send_reply_chunk(j->req, chunk);
    }
    json_decref(reply);
    if (chunk)
        evbuffer_free(chunk);
    if (!finished)
        return;
    if (j->req && j->gone) {
        evhttp_request_free(j->req); /* detached by libevent when the tool left */
        j->req = NULL;
        log_line(j, 499);
    } else if (j->req) {
        if (j->started) {
            evhttp_send_reply_end(j->req);
            log_line(j, 200);
        } else {
            evhttp_send_error(j->req, 500, "no reply");
            log_line(j, 500);
        }
        evhttp_connection_set_closecb(j->conn, NULL, NULL);
        j->req = NULL;
    }
    job_free(j);
}

static void on_pace(evutil_socket_t fd, short what, void *arg) {
    proxy_job *j = arg;
    pthread_mutex_lock(&j->mu);
    j->quiet = 0;
    int more = evbuffer_get_length(j->out) || j->finished;
    pthread_mutex_unlock(&j->mu);
    if (more)
        on_wake(fd, what, arg);
}

static void *worker(void *arg) {
    proxy_job *j = arg;
    if (j->chat)
        proxy_forward_chat(j);
    else
        proxy_forward_models(j);
    proxy_job_finish(j);
    return NULL;
}

static void reply_now(struct evhttp_request *req, int status, json_t *v) {
    send_json(req, status, v);
    json_decref(v);
}

static void error_now(proxy *p, struct evhttp_request *req, const char *path, int status, const char *msg) {
    reply_now(req, status, http_error_json(msg, http_error_type(status), NULL, NULL));
    fprintf(logf_(p), "veil proxy: %s %s %d\n", evhttp_request_get_command(req) == EVHTTP_REQ_GET ? "GET" : "POST",
            path, status);
    fflush(logf_(p));
}

/* The route: chat completions or models under /v1 or /api/v1; NULL otherwise. */
static const char *route(const char *path, int *chat) {
    static const char *const prefixes[] = {"/api/v1", "/v1"};
    for (size_t i = 0; i < 2; i++) {
        size_t n = strlen(prefixes[i]);
        if (strncmp(path, prefixes[i], n) != 0)
            continue;
        if (!strcmp(path + n, "/chat/completions")) {
            *chat = 1;
            return path;
        }
        if (!strcmp(path + n, "/models")) {
            *chat = 0;
            return path;
        }
    }
    return NULL;
}

static void on_request(struct evhttp_request *req, void *arg) {
    proxy *p = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (!path)
        return error_now(p, req, "?", 400, "veil proxy: the request target cannot be read");
    if (p->stopping)
        return error_now(p, req, path, 503, "veil proxy: shutting down");
    if (!strcmp(path, "/veil/status")) {
        if (cmd != EVHTTP_REQ_GET)
            return error_now(p, req, path, 405, "veil proxy: /veil/status takes GET");
        reply_now(req, 200, proxy_status_json(p));
        return;
    }
    int chat = 0;
    if (!route(path, &chat))
        return error_now(p, req, path, 404,
                         "veil proxy: not found (routes: /v1/models, /v1/chat/completions, the same under /api/v1, "
                         "and /veil/status)");
    if ((chat && cmd != EVHTTP_REQ_POST) || (!chat && cmd != EVHTTP_REQ_GET))
        return error_now(p, req, path, 405,
                         chat ? "veil proxy: chat completions take POST" : "veil proxy: models take GET");
    json_t *body = NULL;
    if (chat) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t n = evbuffer_get_length(in);
        const char *data = (const char *)evbuffer_pullup(in, -1);
        body = data ? json_loadb(data, n, 0, NULL) : NULL;
        evbuffer_drain(in, n); /* the plaintext prompt: no copy left behind in libevent's buffer */
        if (!json_is_object(body)) {
            json_decref(body);
            return error_now(p, req, path, 400, "Invalid JSON body");
        }
    }
    /* each SSE event goes out as it is written: without this, Nagle's algorithm holds an event
     * back until the tool's delayed ACK (40 ms) */
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evhttp_request_get_connection(req));
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    proxy_job *j = calloc(1, sizeof *j);
    if (!j) {
        json_decref(body);
        return error_now(p, req, path, 500, "veil proxy: out of memory");
    }
    j->p = p;
    j->req = req;
    j->conn = evhttp_request_get_connection(req);
    j->t0 = veil_now_s();
    j->chat = chat;
    j->body = body;
    snprintf(j->path, sizeof j->path, "%s", path);
    const char *q = evhttp_uri_get_query(uri);
    snprintf(j->query, sizeof j->query, "%s", q && strlen(q) < sizeof j->query ? q : "");
    const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (auth && !p->cfg->api_key && strlen(auth) < 4096) {
        j->authorization = malloc(strlen(auth) + 16);
        if (j->authorization)
            sprintf(j->authorization, "Authorization: %s", auth);
    }
    pthread_mutex_init(&j->mu, NULL);
    j->out = evbuffer_new();
    j->wake = event_new(p->base, -1, 0, on_wake, j);
    j->pace = evtimer_new(p->base, on_pace, j);
    atomic_fetch_add(&p->active, 1);
    if (!j->out || !j->wake || !j->pace) {
        job_free(j);
        return error_now(p, req, path, 500, "veil proxy: out of memory");
    }
    evhttp_connection_set_closecb(j->conn, job_closed, j);
    if (!veil_thread_detached(worker, j, 0)) {
        proxy_job_error(j, 503, "veil proxy: overloaded, retry shortly");
        proxy_job_finish(j);
    }
}

/* ---- life ---- */

static void on_signal(evutil_socket_t sig, short what, void *arg) {
    (void)sig, (void)what;
    proxy *p = arg;
    if (p->stopping)
        return;
    p->stopping = 1;
    fprintf(logf_(p), "veil proxy: stopping (requests in flight get %d s)\n", GRACE_S);
    fflush(logf_(p));
    evhttp_del_accept_socket(p->http, p->sock);
    p->sock = NULL;
}

static void on_tick(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    proxy *p = arg;
    static double stop_at;
    if (!p->stopping)
        return;
    if (!stop_at)
        stop_at = veil_now_s() + GRACE_S;
    if (atomic_load(&p->active) == 0 || veil_now_s() > stop_at)
        event_base_loopexit(p->base, NULL);
}

veil_rc veil_proxy_run(const veil_proxy_config *cfg, veil_err *err) {
    proxy p;
    memset(&p, 0, sizeof p);
    p.cfg = cfg;
    p.started = time(NULL);
    pthread_mutex_init(&p.mu, NULL);
    evthread_use_pthreads();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    veil_rc rc = veil_client_new(&p.client, cfg->base_url, cfg->api_key, cfg->timeout_s, err);
    if (rc != VEIL_OK)
        return rc;
    if (cfg->tls_attested)
        veil_client_set_tls_trust(p.client, VEIL_TLS_ATTESTED);
    p.base = event_base_new();
    p.http = p.base ? evhttp_new(p.base) : NULL;
    const char *host = cfg->host ? cfg->host : "127.0.0.1";
    if (p.http) {
        evhttp_set_max_body_size(p.http, MAX_BODY);
        evhttp_set_max_headers_size(p.http, MAX_HEADERS);
        evhttp_set_timeout(p.http, (int)(cfg->timeout_s > 0 ? cfg->timeout_s : 120));
        evhttp_set_allowed_methods(p.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
        evhttp_set_gencb(p.http, on_request, &p);
        p.sock = evhttp_bind_socket_with_handle(p.http, host, (ev_uint16_t)cfg->port);
    }
    struct event *sigint = NULL, *sigterm = NULL, *tick = NULL;
    if (!p.sock) {
        rc = veil_err_set(err, VEIL_ERR_IO, "cannot listen on %s:%d", host, cfg->port);
    } else {
        signal(SIGPIPE, SIG_IGN);
        sigint = evsignal_new(p.base, SIGINT, on_signal, &p);
        sigterm = evsignal_new(p.base, SIGTERM, on_signal, &p);
        tick = event_new(p.base, -1, EV_PERSIST, on_tick, &p);
        struct timeval period = {0, 100000};
        event_add(sigint, NULL);
        event_add(sigterm, NULL);
        event_add(tick, &period);
        evutil_socket_t fd = evhttp_bound_socket_get_fd(p.sock);
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int port = cfg->port;
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
            port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                  : ((struct sockaddr_in *)&ss)->sin_port);
        if (cfg->banner)
            proxy_preattest(&p, cfg->banner);
        if (cfg->on_ready)
            cfg->on_ready(cfg->ready_ctx, host, port);
        event_base_dispatch(p.base);
        if (atomic_load(&p.active))
            fprintf(logf_(&p), "veil proxy: %d request(s) cut off at shutdown\n", atomic_load(&p.active));
    }
    if (sigint)
        event_free(sigint);
    if (sigterm)
        event_free(sigterm);
    if (tick)
        event_free(tick);
    /* workers still running hold the client: it stays (the process ends) */
    int idle = atomic_load(&p.active) == 0;
    if (p.http && idle)
        evhttp_free(p.http);
    if (p.base && idle)
        event_base_free(p.base);
    if (idle) {
        proxy_models_free(&p);
        veil_client_free(p.client);
        pthread_mutex_destroy(&p.mu);
    }
    return rc;
}
