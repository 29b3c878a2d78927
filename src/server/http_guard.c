/* Guards of veil serve's HTTP side against hostile clients and a host out of
 * descriptors: requests whose framing is ambiguous (conflicting
 * Content-Length headers, Content-Length with Transfer-Encoding) are refused
 * and their connection closed, so that no request hidden in a body is ever
 * run (request smuggling); clients are timed (a request head must arrive
 * whole within --header-timeout of its first byte, a body may pause at most
 * --body-timeout between bytes: slowloris); a client that does not read its
 * stream has what waits for it bounded; and when descriptors run out the
 * accept loop pauses instead of spinning, saying so once in a while rather
 * than per attempt. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <openssl/ssl.h>

#include "base/base.h"
#include "http_internal.h"
#include "veil/buf.h"

/* The server whose connections these are: libevent hands its callbacks
 * evhttp's pointer or the bufferevent, and a process runs one server. */
static server *accepting;
static server *accepting_server(void) { return accepting; }

/* ---- framing ---- */

const char *http_framing_error(struct evhttp_request *req) {
    const struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    const char *cl = NULL;
    int te = 0;
    for (const struct evkeyval *kv = TAILQ_FIRST(h); kv; kv = TAILQ_NEXT(kv, next)) {
        if (!strcasecmp(kv->key, "Content-Length")) {
            if (cl && strcmp(cl, kv->value) != 0)
                return "Conflicting Content-Length headers";
            cl = kv->value;
        } else if (!strcasecmp(kv->key, "Transfer-Encoding")) {
            te = 1;
        }
    }
    if (cl && te)
        return "Content-Length and Transfer-Encoding together";
    return NULL;
}

/* ---- the head check: a pure function of the bytes ---- */

static int tchar(unsigned char c) { /* RFC 9110 token characters */
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int refuse(veil_http_head *out, int status, const char *message) {
    out->status = status;
    out->message = message;
    return 0;
}

int veil_http_head_check(const char *head, size_t n, const veil_http_limits *lim, veil_http_head *out) {
    memset(out, 0, sizeof *out);
    if (n < 4 || memcmp(head + n - 4, "\r\n\r\n", 4) != 0 || memchr(head, '\0', n))
        return refuse(out, 400, "Malformed request");
    const char *end = head + n - 2; /* the empty line's CRLF ends the head */
    const char *eol = memchr(head, '\r', (size_t)(end - head));
    if (!eol || eol[1] != '\n')
        return refuse(out, 400, "Malformed request line");
    const char *sp1 = memchr(head, ' ', (size_t)(eol - head));
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (!sp1 || !sp2 || sp1 == head || sp2 == sp1 + 1)
        return refuse(out, 400, "Malformed request line");
    for (const char *c = head; c < sp1; c++)
        if (!tchar((unsigned char)*c))
            return refuse(out, 400, "Malformed request line");
    if ((size_t)(sp2 - sp1 - 1) > lim->max_target)
        return refuse(out, 414, "Request target is too long");
    for (const char *c = sp1 + 1; c < sp2; c++)
        if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f)
            return refuse(out, 400, "Malformed request line");
    if ((size_t)(eol - sp2 - 1) != 8 || (memcmp(sp2 + 1, "HTTP/1.1", 8) != 0 && memcmp(sp2 + 1, "HTTP/1.0", 8) != 0))
        return refuse(out, 505, "HTTP version not supported");
    int have_cl = 0, have_te = 0;
    unsigned long long cl = 0;
    for (const char *p = eol + 2; p < end;) {
        eol = memchr(p, '\r', (size_t)(end - p));
        if (!eol || eol[1] != '\n' || eol == p)
            return refuse(out, 400, "Malformed header");
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (!colon || colon == p)
            return refuse(out, 400, "Malformed header"); /* a folded line (leading space) lands here too */
        for (const char *c = p; c < colon; c++)
            if (!tchar((unsigned char)*c))
                return refuse(out, 400, "Malformed header");
        for (const char *c = colon + 1; c < eol; c++)
            if (((unsigned char)*c < ' ' && *c != '\t') || *c == 0x7f)
                return refuse(out, 400, "Malformed header");
        const char *v = colon + 1, *ve = eol;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        size_t nl = (size_t)(colon - p);
        if (nl == 14 && !strncasecmp(p, "Content-Length", 14)) {
            unsigned long long x = 0;
            if (v == ve || ve - v > 18)
                return refuse(out, 400, "Invalid Content-Length");
            for (const char *c = v; c < ve; c++) {
                if (*c < '0' || *c > '9')
                    return refuse(out, 400, "Invalid Content-Length");
                x = x * 10 + (unsigned)(*c - '0');
            }
            if (have_cl && x != cl)
                return refuse(out, 400, "Conflicting Content-Length headers");
            have_cl = 1;
            cl = x;
        } else if (nl == 17 && !strncasecmp(p, "Transfer-Encoding", 17)) {
            have_te = 1;
        }
        p = eol + 2;
    }
    if (have_te && have_cl)
        return refuse(out, 400, "Content-Length and Transfer-Encoding together");
    if (have_te)
        return refuse(out, 411, "Send the body with a Content-Length: chunked request bodies are not accepted");
    if (cl > lim->max_body)
        return refuse(out, 413, "Request body is too large");
    out->content_length = (size_t)cl;
    return 1;
}

/* ---- client timeouts ----
 * Each connection's socket bufferevent is made here (evhttp's bevcb); its
 * input buffer reports every read to on_read before libevent parses it. A
 * connection that has sent something is watched in an fd-indexed table,
 * holding a reference on its bufferevent so that its memory and descriptor
 * stay valid until the sweep (every 250 ms) sees that libevent let go of it
 * (its callbacks cleared) and drops the reference. The sweep ends the
 * connections that are late: still without a whole head header_timeout_s
 * after its first byte, or silent body_timeout_s in the middle of a body. */

enum { W_HEAD, W_BODY, W_BUSY, W_CLOSING };

struct watched {
    struct bufferevent *bev; /* NULL: the slot is free */
    int state;               /* W_HEAD: a head coming in; W_BODY: its body; W_BUSY: handed to the server */
    double since;            /* W_HEAD: its first byte; W_BODY: the last byte */
    veil_buf head;           /* W_HEAD: the head so far (libevent parses it away line by line) */
};

static struct watched *watch_slot(server *s, struct bufferevent *bev) {
    evutil_socket_t fd = bufferevent_getfd(bev);
    if (fd < 0 || (size_t)fd >= s->n_watch)
        return NULL;
    struct watched *w = &s->watch[fd];
    if (w->bev == bev)
        return w;
    if (w->bev) /* cannot be: the descriptor is another's only once its holder is dropped */
        return NULL;
    bufferevent_incref(bev);
    *w = (struct watched){bev, W_HEAD, veil_now_s(), {.limit = s->cfg->max_headers}};
    s->wlist[s->n_watched++] = (int)fd;
    return w;
}

/* Refuses the request whose head is coming in, in the OpenAI error shape,
 * before libevent parses the rest of it: the answer goes straight to the
 * socket, what the client sent is dropped, and the connection ends (libevent
 * reads its end and closes it). */
static void reject(server *s, struct watched *w, struct evbuffer *buf, int status, const char *message) {
    evutil_socket_t fd = bufferevent_getfd(w->bev);
    int tls = s->cfg->tls != NULL;
    json_t *e = http_error_json(message, http_error_type(status), NULL, NULL);
    char *body = json_dumps(e, JSON_COMPACT);
    json_decref(e);
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\n",
                      status, http_reason(status), body ? strlen(body) : 0);
    if (tls) { /* through the TLS layer; the sweep ends the connection once it is out */
        /* evhttp's write callback goes: when this drains it would run whatever evhttp last
         * waited for on this connection (the end of an earlier reply on a kept connection) */
        bufferevent_data_cb readcb;
        bufferevent_event_cb eventcb;
        void *cbarg;
        bufferevent_getcb(w->bev, &readcb, NULL, &eventcb, &cbarg);
        bufferevent_setcb(w->bev, readcb, NULL, eventcb, cbarg);
        evbuffer_drain(buf, evbuffer_get_length(buf));
        bufferevent_write(w->bev, head, (size_t)hl);
        if (body)
            bufferevent_write(w->bev, body, strlen(body));
        bufferevent_enable(w->bev, EV_WRITE); /* evhttp keeps writing off while it reads a head */
        free(body);
        veil_buf_free(&w->head);
        w->state = W_CLOSING;
        w->since = veil_now_s();
        fprintf(http_log(s), "veil: refused a request head: %d %s\n", status, message);
        fflush(http_log(s));
        return;
    }
    /* small: an empty socket buffer takes it at once */
    if (send(fd, head, (size_t)hl, MSG_NOSIGNAL | MSG_DONTWAIT) == hl && body)
        (void)send(fd, body, strlen(body), MSG_NOSIGNAL | MSG_DONTWAIT);
    free(body);
    shutdown(fd, SHUT_WR);
    char sink[4096]; /* read what waits, so that closing sends the answer, not a reset */
    while (recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0)
        ;
    shutdown(fd, SHUT_RD);
    evbuffer_drain(buf, evbuffer_get_length(buf)); /* libevent never parses it */
    veil_buf_free(&w->head);
    w->state = W_BUSY;
    fprintf(http_log(s), "veil: refused a request head: %d %s\n", status, message);
    fflush(http_log(s));
}

static void on_read(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg) {
    if (!info->n_added)
        return; /* a drain, libevent's or reject's */
    struct bufferevent *bev = arg;
    bufferevent_event_cb eventcb = NULL;
    bufferevent_getcb(bev, NULL, NULL, &eventcb, NULL);
    if (!eventcb) /* libevent let go of it: nothing more is read */
        return;
    server *s = accepting_server();
    struct watched *w = watch_slot(s, bev);
    if (!w)
        return;
    double now = veil_now_s();
    if (w->state == W_CLOSING) { /* refused: nothing more is parsed */
        evbuffer_drain(buf, evbuffer_get_length(buf));
        return;
    }
    if (w->state == W_BUSY) { /* the next request on a kept connection */
        w->state = W_HEAD;
        w->since = now;
    }
    if (w->state == W_HEAD) {
        /* the head so far, with what just came (at orig_size on); it ends at an empty line */
        size_t n = info->n_added;
        struct evbuffer_ptr from;
        evbuffer_ptr_set(buf, &from, info->orig_size, EVBUFFER_PTR_SET);
        size_t had = w->head.len;
        if (n > w->head.limit - w->head.len) {
            reject(s, w, buf, 431, "Request headers are too large");
            return;
        }
        char chunk[4096]; /* copied through the stack: no allocation per read but the head's own */
        for (size_t done = 0, k; done < n; done += k) {
            k = n - done < sizeof chunk ? n - done : sizeof chunk;
            evbuffer_copyout_from(buf, &from, chunk, k);
            evbuffer_ptr_set(buf, &from, k, EVBUFFER_PTR_ADD);
            if (!veil_buf_append(&w->head, chunk, k)) { /* out of memory: never a head half checked */
                reject(s, w, buf, 500, "Internal server error");
                return;
            }
        }
        size_t start = had > 3 ? had - 3 : 0;
        const char *end = memmem(w->head.data + start, w->head.len - start, "\r\n\r\n", 4);
        if (end) {
            size_t hn = (size_t)(end - w->head.data) + 4;
            veil_http_limits lim = {s->cfg->max_body + 65536, 8192};
            veil_http_head h;
            if (!veil_http_head_check(w->head.data, hn, &lim, &h)) {
                reject(s, w, buf, h.status, h.message);
                return;
            }
            veil_buf_free(&w->head);
            w->state = W_BODY;
        }
    }
    if (w->state == W_BODY)
        w->since = now; /* a body's bytes keep it alive */
}

static void sweep(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    server *s = arg;
    double now = veil_now_s();
    for (size_t i = 0; i < s->n_watched;) {
        struct watched *w = &s->watch[s->wlist[i]];
        bufferevent_event_cb eventcb = NULL;
        bufferevent_getcb(w->bev, NULL, NULL, &eventcb, NULL);
        if (!eventcb) { /* closed by libevent: the last reference goes, and with it the descriptor */
            bufferevent_disable(w->bev, EV_READ | EV_WRITE);
            bufferevent_decref(w->bev);
            veil_buf_free(&w->head);
            w->bev = NULL;
            s->wlist[i] = s->wlist[--s->n_watched];
            continue;
        }
        if (w->state == W_CLOSING) {
            /* a refusal under TLS: once it is out, our end closes (what the client still sends is
             * read and dropped, so that the answer is not lost to a reset); a client that does
             * not close its end in header_timeout_s is cut off */
            evutil_socket_t cfd = bufferevent_getfd(w->bev);
            if (now - w->since > s->cfg->header_timeout_s) {
                shutdown(cfd, SHUT_RDWR);
                w->state = W_BUSY;
            } else if (!evbuffer_get_length(bufferevent_get_output(w->bev))) {
                shutdown(cfd, SHUT_WR);
            }
        }
        int late = (w->state == W_HEAD && now - w->since > s->cfg->header_timeout_s) ||
                   (w->state == W_BODY && now - w->since > s->cfg->body_timeout_s);
        if (late) {
            shutdown(bufferevent_getfd(w->bev), SHUT_RDWR); /* libevent reads the end and closes */
            w->state = W_BUSY;
            s->timed_out++;
        }
        i++;
    }
}

void http_guard_request_started(server *s, struct evhttp_request *req) {
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    if (fd >= 0 && (size_t)fd < s->n_watch && s->watch[fd].bev == bev) {
        s->watch[fd].state = W_BUSY;
        veil_buf_free(&s->watch[fd].head);
    }
}

static struct bufferevent *make_bev(struct event_base *base, void *arg) {
    server *s = arg;
    struct bufferevent *bev = NULL;
    if (s->cfg->tls) { /* TLS ends here, in the enclave: evhttp reads the plaintext of the input buffer */
        SSL *ssl = SSL_new(s->cfg->tls->ctx);
        bev = ssl ? bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE)
                  : NULL;
        if (!bev)
            SSL_free(ssl);
        else
            bufferevent_openssl_set_allow_dirty_shutdown(bev, 1); /* clients that close without close_notify */
    } else {
        bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (bev && !evbuffer_add_cb(bufferevent_get_input(bev), on_read, bev)) {
        bufferevent_free(bev);
        return NULL;
    }
    return bev;
}

/* ---- connections ---- */

size_t http_conn_pending_out(struct evhttp_connection *conn) {
    struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
    return bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

void http_conn_abort(struct evhttp_connection *conn) {
    struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    if (fd >= 0)
        shutdown(fd, SHUT_RDWR); /* libevent sees the connection end, as when a client leaves */
}

/* ---- the accept loop ---- */

static void resume_accepting(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    server *s = arg;
    if (s->sock)
        evconnlistener_enable(evhttp_bound_socket_get_listener(s->sock));
}

static void on_accept_error(struct evconnlistener *l, void *arg) {
    (void)arg;
    server *s = accepting;
    int err = EVUTIL_SOCKET_ERROR();
    double now = veil_now_s();
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        /* out of descriptors: pause (100 ms, doubling to 1 s while it lasts) instead of spinning */
        s->accept_pause = now - s->accept_failed_at < 2.0 ? s->accept_pause * 2 : 0.1;
        if (s->accept_pause > 1.0)
            s->accept_pause = 1.0;
        s->accept_failed_at = now;
        evconnlistener_disable(l);
        struct timeval tv = {0, (long)(s->accept_pause * 1e6)};
        if (s->accept_pause >= 1.0)
            tv = (struct timeval){1, 0};
        evtimer_add(s->accept_timer, &tv);
    }
    s->accept_errors++;
    if (now - s->accept_logged_at >= 10.0) { /* one line in ten seconds at most */
        fprintf(http_log(s), "veil: cannot accept connections: %s (%lu time(s) since the last report)\n",
                evutil_socket_error_to_string(err), s->accept_errors);
        fflush(http_log(s));
        s->accept_logged_at = now;
        s->accept_errors = 0;
    }
}

int http_guard_start(server *s) {
    struct rlimit rl;
    s->n_watch = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? (size_t)rl.rlim_cur : 65536;
    if (s->n_watch > (1u << 20))
        s->n_watch = 1u << 20;
    s->watch = calloc(s->n_watch, sizeof *s->watch);
    s->wlist = calloc(s->n_watch, sizeof *s->wlist);
    s->accept_timer = evtimer_new(s->base, resume_accepting, s);
    s->sweep_timer = event_new(s->base, -1, EV_PERSIST, sweep, s);
    struct timeval period = {0, 250000}; /* a closed connection's descriptor goes within 250 ms */
    if (!s->watch || !s->wlist || !s->accept_timer || !s->sweep_timer || event_add(s->sweep_timer, &period) != 0)
        return 0;
    accepting = s;
    evhttp_set_bevcb(s->http, make_bev, s);
    evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(s->sock), on_accept_error);
    return 1;
}

void http_guard_stop(server *s) {
    if (s->accept_timer)
        event_free(s->accept_timer);
    if (s->sweep_timer)
        event_free(s->sweep_timer);
    s->accept_timer = s->sweep_timer = NULL;
    /* the connections still watched are evhttp's to free (evhttp_free): only the references go */
    for (size_t i = 0; s->watch && i < s->n_watched; i++) {
        struct watched *w = &s->watch[s->wlist[i]];
        bufferevent_decref(w->bev);
        veil_buf_free(&w->head);
    }
    s->n_watched = 0;
    free(s->wlist);
    s->wlist = NULL;
    free(s->watch);
    s->watch = NULL;
}
