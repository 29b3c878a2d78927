/* veil serve's HTTP server on libevent: its life (start, signals, the
 * drain of in-flight streams) and the route table. Each route's handler
 * lives in the file of its concern (http_internal.h lists them). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>

#include "base/base.h"
#include "http_internal.h"
#include "keyrelease.h"

/* ---- the small routes ---- */

static size_t route_health(server *s, struct evhttp_request *req, const struct evhttp_uri *uri, const char *path,
                           double t0, int *status) {
    (void)uri, (void)path, (void)t0, (void)status;
    return http_send_json(s, req, 200, json_pack("{s:s}", "status", "ok"));
}

static size_t route_ready(server *s, struct evhttp_request *req, const struct evhttp_uri *uri, const char *path,
                          double t0, int *status) {
    (void)uri, (void)path, (void)t0;
    if (s->shutting_down) {
        *status = 503;
        return http_send_error(s, req, 503, "Shutting down", NULL);
    }
    /* a store that failed a write is tried again (one small write of the local disk) before
     * ready is said; a shared one (Redis) the key thread probes every second, off the loop */
    if (s->cfg->sigstore && atomic_load(&s->store_failing)) {
        if (veil_sigstore_shared(s->cfg->sigstore) || !veil_sigstore_probe(s->cfg->sigstore)) {
            *status = 503;
            return http_send_error(s, req, 503, "Signature store unavailable", NULL);
        }
        atomic_store(&s->store_failing, 0);
    }
    return http_send_json(s, req, 200, json_pack("{s:s}", "status", "ready"));
}

static size_t route_models(server *s, struct evhttp_request *req, const struct evhttp_uri *uri, const char *path,
                           double t0, int *status) {
    (void)path, (void)t0, (void)status;
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
    return http_send_json(s, req, 200, json_pack("{s:s, s:s, s:o}", "object", "list", "type", "text", "data", data));
}

static size_t route_attestation(server *s, struct evhttp_request *req, const struct evhttp_uri *uri, const char *path,
                                double t0, int *status) {
    return http_attestation(s, req, uri, !strcmp(path, "/v1/attestation/report"), path, t0, status);
}

static size_t route_chat(server *s, struct evhttp_request *req, const struct evhttp_uri *uri, const char *path,
                         double t0, int *status) {
    (void)uri, (void)path;
    return http_chat(s, req, t0, status);
}

/* ---- the route table ---- */

/* A handler answers (or hands the request to a job) and returns the body's
 * bytes; it sets *status when it is not 200, or to -1 when the request is
 * logged later, by the job that answers it. */
typedef size_t (*route_fn)(server *s, struct evhttp_request *req, const struct evhttp_uri *uri, const char *path,
                           double t0, int *status);

static const struct route {
    const char *path;
    int prefix;  /* path is a prefix: the rest names a resource */
    int methods; /* EVHTTP_REQ_* bits */
    route_fn handler;
} routes[] = {
    {"/healthz", 0, EVHTTP_REQ_GET, route_health},
    {"/readyz", 0, EVHTTP_REQ_GET, route_ready},
    {"/api/v1/models", 0, EVHTTP_REQ_GET, route_models},
    {"/v1/models", 0, EVHTTP_REQ_GET, route_models},
    {"/api/v1/tee/attestation", 0, EVHTTP_REQ_GET, route_attestation},
    {"/v1/attestation/report", 0, EVHTTP_REQ_GET, route_attestation},
    {"/api/v1/tee/signature", 0, EVHTTP_REQ_GET, http_signature},
    {"/v1/signature/", 1, EVHTTP_REQ_GET, http_signature},
    {"/api/v1/chat/completions", 0, EVHTTP_REQ_POST, route_chat},
    {"/v1/chat/completions", 0, EVHTTP_REQ_POST, route_chat},
    {VEIL_KEY_RELEASE_PATH, 0, EVHTTP_REQ_GET | EVHTTP_REQ_POST, http_key_release},
};

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
    double t0 = veil_now_s();
    http_guard_request_started(s, req);
    no_delay(req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!path || !*path)
        path = "/";
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    int status = 200;
    size_t bytes = 0;
    const char *framing = http_framing_error(req);
    if (framing) {
        /* the body's end is ambiguous, so whatever follows on this connection is too: refused and
         * closed, never parsed as another request */
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        bytes = http_send_error(s, req, status = 400, framing, NULL);
    } else if (cmd == EVHTTP_REQ_OPTIONS && s->cfg->cors_origin) {
        http_cors(s, req);
        evhttp_send_reply(req, 204, "No Content", NULL);
        status = 204;
    } else {
        const struct route *r = NULL;
        for (size_t i = 0; !r && i < sizeof routes / sizeof routes[0]; i++)
            if (routes[i].prefix ? !strncmp(path, routes[i].path, strlen(routes[i].path))
                                 : !strcmp(path, routes[i].path))
                r = &routes[i];
        if (!r)
            bytes = http_send_error(s, req, status = 404, "Not found", NULL);
        else if (!(cmd & r->methods))
            bytes = http_send_error(s, req, status = 405, "Method not allowed", NULL);
        else
            bytes = r->handler(s, req, uri, path, t0, &status);
    }
    if (status >= 0)
        http_log_request(s, http_method_name(req), path, status, t0, bytes, NULL);
}

/* ---- lifecycle ---- */

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
    fprintf(http_log(s), "veil: %s: no new requests; waiting up to %ds for %d in-flight stream(s)\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM", s->cfg->shutdown_grace_s, s->active);
    fflush(http_log(s));
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
    if (!c.header_timeout_s)
        c.header_timeout_s = 10;
    if (!c.body_timeout_s)
        c.body_timeout_s = 30;
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
    if (!c.sig_rate_per_min)
        c.sig_rate_per_min = 120;
    int auth_ok = http_auth_start(&s) && veil_ratelimit_init(&s.rate, c.tee_rate_per_min, 16384) &&
                  veil_ratelimit_init(&s.sig_rate, c.sig_rate_per_min, 16384);
    s.rate.redis = s.sig_rate.redis = c.rate_store;
    s.rate.name = "attestation";
    s.sig_rate.name = "signature";
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN); /* a file past its size limit is a failed write (a full disk's), not death */
    evthread_use_pthreads();
    s.base = event_base_new();
    s.http = s.base ? evhttp_new(s.base) : NULL;
    veil_rc rc = VEIL_OK;
    if (!auth_ok || !s.http) {
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
    if (!http_guard_start(&s)) {
        rc = veil_err_set(err, VEIL_ERR_NOMEM, "cannot set up the request guard");
        goto out;
    }
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
        fprintf(http_log(&s), "veil: %d generation(s) did not stop; exiting without freeing them\n", stuck);
        http_auth_stop(&s);
        return VEIL_OK;
    }
    while (s.streams) {
        stream *st = s.streams;
        st->ended = 1;
        st->threads = 0;
        stream_unlink_and_free(st);
    }
out:
    http_auth_stop(&s);
    http_guard_stop(&s);
    veil_ratelimit_free(&s.rate);
    veil_ratelimit_free(&s.sig_rate);
    pthread_rwlock_destroy(&s.keys_lock);
    if (s.http)
        evhttp_free(s.http);
    if (s.base)
        event_base_free(s.base);
    veil_ephemeral_pool_free(s.eph);
    pthread_mutex_destroy(&s.mu);
    pthread_cond_destroy(&s.workers_done);
    return rc;
}
