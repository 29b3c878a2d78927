/* libFuzzer target over raw HTTP request bytes to veil proxy, which runs in
 * this process in front of a small upstream of its own (an E2EE, a TEE-only
 * and a plain model; attestations refused), so that libevent's parser, the
 * proxy's routes, its reading of the tool's JSON, the capability and E2EE
 * rules and the attestation failure path all meet the input. After each
 * input the proxy must still answer GET /veil/status. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "loopback.h"
#include "proxy/proxy.h"

static int up_port, proxy_port;

static const char MODELS[] =
    "{\"object\":\"list\",\"data\":["
    "{\"id\":\"e2ee-m\",\"model_spec\":{\"capabilities\":{\"supportsE2EE\":true,\"supportsTeeAttestation\":true}}},"
    "{\"id\":\"tee-m\",\"model_spec\":{\"capabilities\":{\"supportsTeeAttestation\":true}}},"
    "{\"id\":\"plain-m\",\"model_spec\":{\"capabilities\":{}}}]}";

/* the upstream: the model list, and 404 for everything else (an attestation that cannot be had) */
static void upstream_cb(struct evhttp_request *req, void *arg) {
    (void)arg;
    struct evbuffer *b = evbuffer_new();
    const char *uri = evhttp_request_get_uri(req);
    int models = uri && strstr(uri, "/models") != NULL;
    evbuffer_add_printf(b, "%s", models ? MODELS : "{\"error\":{\"message\":\"no\"}}");
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    /* the upstream closes first, so that the connections' TIME_WAIT is on its side, not on the proxy's
     * ephemeral ports (thousands of inputs a second would run them out) */
    evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    evhttp_send_reply(req, models ? 200 : 404, models ? "OK" : "Not Found", b);
    evbuffer_free(b);
}

static void *upstream(void *arg) {
    (void)arg;
    struct event_base *base = event_base_new();
    struct evhttp *http = evhttp_new(base);
    evhttp_set_gencb(http, upstream_cb, NULL);
    struct evhttp_bound_socket *s = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0);
    if (!s)
        abort();
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *)&a, &al);
    loopback_publish(&up_port, ntohs(a.sin_port));
    event_base_dispatch(base);
    return NULL;
}

static void on_ready(void *ctx, const char *host, int p) {
    (void)ctx, (void)host;
    loopback_publish(&proxy_port, p);
}

static void *proxy(void *arg) {
    (void)arg;
    static char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d/api/v1", up_port);
    static veil_proxy_config c;
    c.host = "127.0.0.1";
    c.base_url = base;
    c.api_key = "k";
    c.reattest_s = 300;
    c.timeout_s = 5;
    c.log = fopen("/dev/null", "w");
    c.on_ready = on_ready;
    veil_err err;
    if (veil_proxy_run(&c, &err) != VEIL_OK) {
        fprintf(stderr, "veil proxy did not start: %s\n", err.message);
        abort();
    }
    return NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    loopback_start(upstream, &up_port);
    loopback_start(proxy, &proxy_port);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char buf[1 << 16];
    if (loopback_exchange(proxy_port, 1, data, size, buf, sizeof buf, 200) < 0)
        abort();
    static const char status[] = "GET /veil/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    /* up to three tries a second apart: a loopback connection that a hundred thousand before it
     * left in TIME_WAIT can fail on its own; a wedged proxy fails them all */
    long n = 0;
    for (int attempt = 0; attempt < 3; attempt++) {
        if (attempt)
            sleep(1);
        n = loopback_exchange(proxy_port, 1, status, sizeof status - 1, buf, sizeof buf - 1, 5000);
        if (n >= 12 && !memcmp(buf, "HTTP/1.1 200", 12))
            break;
    }
    if (n < 12 || memcmp(buf, "HTTP/1.1 200", 12) != 0) {
        fprintf(stderr, "/veil/status answered %ld bytes three times: %.200s\n", n, n > 0 ? buf : "");
        abort(); /* the input left the proxy unable to answer */
    }
    return 0;
}
