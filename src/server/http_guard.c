/* Guards of veil serve's HTTP side against hostile clients and a host out of
 * descriptors: requests whose framing is ambiguous (conflicting
 * Content-Length headers, Content-Length with Transfer-Encoding) are refused
 * and their connection closed, so that no request hidden in a body is ever
 * run (request smuggling); a client that does not read its stream has what
 * waits for it bounded; and when descriptors run out the accept loop pauses
 * instead of spinning, saying so once in a while rather than per attempt. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "base/base.h"
#include "http_internal.h"

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

/* The server whose listener this is: libevent hands the error callback
 * evhttp's pointer, and a process runs one server. */
static server *accepting;

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
    s->accept_timer = evtimer_new(s->base, resume_accepting, s);
    if (!s->accept_timer)
        return 0;
    accepting = s;
    evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(s->sock), on_accept_error);
    return 1;
}

void http_guard_stop(server *s) {
    if (s->accept_timer)
        event_free(s->accept_timer);
    s->accept_timer = NULL;
}
