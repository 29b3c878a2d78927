/* bench/mock_upstream.c: an OpenAI-compatible upstream for benchmarks that
 * streams "FAST <n>" answers as fast as libevent can write them, so that the
 * gateway benchmark measures veil rather than a Python mock. Each token is
 * its own SSE event and its own chunk, as a real server's are.
 * It writes with TCP_NODELAY, as the servers veil fronts do (asyncio's, under
 * vLLM and SGLang, and Go's, under Ollama, set it on every connection);
 * MOCK_NAGLE=1 leaves Nagle's algorithm on, see docs/benchmarks.md.
 * Usage: build/bench/mock_upstream PORTFILE   (binds a free port, writes it there) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#define BATCH 64 /* events handed to libevent per write callback */

typedef struct answer {
    struct evhttp_request *req;
    long i, n;
} answer;

static void more(struct evhttp_connection *conn, void *arg);

/* One event as one chunk; with `then`, `more` runs once it is written. */
static void event_chunk(struct evhttp_request *req, const char *data, answer *then) {
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "data: %s\n\n", data);
    if (then)
        evhttp_send_reply_chunk_with_cb(req, b, more, then);
    else
        evhttp_send_reply_chunk(req, b);
    evbuffer_free(b);
}

static void more(struct evhttp_connection *conn, void *arg) {
    (void)conn;
    answer *a = arg;
    char ev[256];
    for (int k = 0; k < BATCH && a->i < a->n; k++, a->i++) {
        snprintf(ev, sizeof ev,
                 "{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"mock\","
                 "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"%stok\"},\"finish_reason\":null}]}",
                 a->i ? " " : "");
        /* the batch's last event brings the next batch once it is written */
        event_chunk(a->req, ev, k == BATCH - 1 && a->i + 1 < a->n ? a : NULL);
    }
    if (a->i < a->n)
        return;
    event_chunk(a->req, "{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"mock\","
                        "\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}", NULL);
    snprintf(ev, sizeof ev,
             "{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"mock\","
             "\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":%ld,\"total_tokens\":%ld}}",
             a->n, a->n + 2);
    event_chunk(a->req, ev, NULL);
    event_chunk(a->req, "[DONE]", NULL);
    evhttp_send_reply_end(a->req);
    free(a);
}

static void on_request(struct evhttp_request *req, void *arg) {
    (void)arg;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    char *body = malloc(len + 1);
    if (!body) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evbuffer_copyout(in, body, len);
    body[len] = 0;
    const char *f = strstr(body, "FAST ");
    answer *a = calloc(1, sizeof *a);
    a->req = req;
    a->n = f ? strtol(f + 5, NULL, 10) : 10;
    free(body);
    if (!getenv("MOCK_NAGLE")) {
        int one = 1;
        evutil_socket_t fd = bufferevent_getfd(evhttp_connection_get_bufferevent(evhttp_request_get_connection(req)));
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/event-stream");
    evhttp_send_reply_start(req, 200, "OK");
    event_chunk(req, "{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"mock\","
                     "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}",
                NULL);
    more(NULL, a);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: mock_upstream PORTFILE\n");
        return 2;
    }
    struct event_base *base = event_base_new();
    struct evhttp *http = evhttp_new(base);
    evhttp_set_gencb(http, on_request, NULL);
    struct evhttp_bound_socket *s = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0);
    if (!s) return 1;
    struct sockaddr_storage ss;
    ev_socklen_t sl = sizeof ss;
    getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *)&ss, &sl);
    FILE *pf = fopen(argv[1], "w");
    if (!pf) return 1;
    fprintf(pf, "%d", ntohs(((struct sockaddr_in *)&ss)->sin_port));
    fclose(pf);
    event_base_dispatch(base);
    return 0;
}
