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
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "base/base.h"
#include "http_internal.h"

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

/* ---- client timeouts ----
 * Each connection's socket bufferevent is made here (evhttp's bevcb); its
 * input buffer reports every read to on_read before libevent parses it. A
 * connection that has sent something is watched in an fd-indexed table,
 * holding a reference on its bufferevent so that its memory and descriptor
 * stay valid until the sweep (every second) sees that libevent let go of it
 * (its callbacks cleared) and drops the reference. The sweep ends the
 * connections that are late: still without a whole head header_timeout_s
 * after its first byte, or silent body_timeout_s in the middle of a body. */

enum { W_HEAD, W_BODY, W_BUSY };

struct watched {
    struct bufferevent *bev; /* NULL: the slot is free */
    int state;               /* W_HEAD: a head coming in; W_BODY: its body; W_BUSY: handed to the server */
    double since;            /* W_HEAD: its first byte; W_BODY: the last byte */
    char tail[3];            /* the last bytes seen, for a "\r\n\r\n" split across reads */
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
    *w = (struct watched){bev, W_HEAD, veil_now_s(), {0}};
    s->n_watched++;
    return w;
}

static void on_read(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg) {
    if (!info->n_added)
        return;
    struct bufferevent *bev = arg;
    bufferevent_event_cb eventcb = NULL;
    bufferevent_getcb(bev, NULL, NULL, &eventcb, NULL);
    if (!eventcb) /* libevent let go of it: nothing more is read */
        return;
    struct watched *w = watch_slot(accepting_server(), bev);
    if (!w)
        return;
    double now = veil_now_s();
    if (w->state == W_BUSY) { /* the next request on a kept connection */
        w->state = W_HEAD;
        w->since = now;
        memset(w->tail, 0, sizeof w->tail);
    }
    if (w->state == W_HEAD) {
        /* the head ends at an empty line: look in what just came (at orig_size on), and across the
         * edge with the last bytes of the reads before, which libevent may have parsed away */
        size_t n = info->n_added, at = info->orig_size;
        struct evbuffer_ptr from, last;
        evbuffer_ptr_set(buf, &from, at, EVBUFFER_PTR_SET);
        int whole = evbuffer_search(buf, "\r\n\r\n", 4, &from).pos >= 0;
        char edge[6];
        size_t k = n < 3 ? n : 3;
        memcpy(edge, w->tail, 3);
        evbuffer_ptr_set(buf, &from, at, EVBUFFER_PTR_SET);
        evbuffer_copyout_from(buf, &from, edge + 3, k);
        for (size_t i = 0; !whole && i + 4 <= 3 + k; i++)
            whole = !memcmp(edge + i, "\r\n\r\n", 4);
        if (n >= 3) {
            evbuffer_ptr_set(buf, &last, at + n - 3, EVBUFFER_PTR_SET);
            evbuffer_copyout_from(buf, &last, w->tail, 3);
        } else {
            memcpy(w->tail, edge + k, 3); /* the old tail's last 3 - k bytes, then the k new ones */
        }
        if (whole)
            w->state = W_BODY;
    }
    if (w->state == W_BODY)
        w->since = now; /* a body's bytes keep it alive */
}

static void sweep(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    server *s = arg;
    double now = veil_now_s();
    for (size_t i = 0; i < s->n_watch && s->n_watched; i++) {
        struct watched *w = &s->watch[i];
        if (!w->bev)
            continue;
        bufferevent_event_cb eventcb = NULL;
        bufferevent_getcb(w->bev, NULL, NULL, &eventcb, NULL);
        if (!eventcb) { /* closed by libevent: the last reference goes, and with it the descriptor */
            bufferevent_disable(w->bev, EV_READ | EV_WRITE);
            bufferevent_decref(w->bev);
            w->bev = NULL;
            s->n_watched--;
            continue;
        }
        int late = (w->state == W_HEAD && now - w->since > s->cfg->header_timeout_s) ||
                   (w->state == W_BODY && now - w->since > s->cfg->body_timeout_s);
        if (late) {
            shutdown(bufferevent_getfd(w->bev), SHUT_RDWR); /* libevent reads the end and closes */
            w->state = W_BUSY;
            s->timed_out++;
        }
    }
}

void http_guard_request_started(server *s, struct evhttp_request *req) {
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    if (fd >= 0 && (size_t)fd < s->n_watch && s->watch[fd].bev == bev)
        s->watch[fd].state = W_BUSY;
}

static struct bufferevent *make_bev(struct event_base *base, void *arg) {
    (void)arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
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
    s->accept_timer = evtimer_new(s->base, resume_accepting, s);
    s->sweep_timer = event_new(s->base, -1, EV_PERSIST, sweep, s);
    struct timeval second = {1, 0};
    if (!s->watch || !s->accept_timer || !s->sweep_timer || event_add(s->sweep_timer, &second) != 0)
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
    for (size_t i = 0; s->watch && i < s->n_watch; i++)
        if (s->watch[i].bev)
            bufferevent_decref(s->watch[i].bev);
    free(s->watch);
    s->watch = NULL;
}
