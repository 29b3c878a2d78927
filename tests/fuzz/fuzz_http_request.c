/* libFuzzer target over raw HTTP request bytes: veil serve runs in this
 * process (no TEE, one model without a backend, one API key) and each input
 * is written as it is to a fresh loopback connection, so that libevent's
 * parser, veil's framing checks, routing, auth, validation and replies all
 * meet it. After each input the server must still answer /healthz: an
 * input that wedges or kills it is a failure. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loopback.h"
#include "server/server.h"

static int port;

static void on_ready(void *ctx, const char *host, int p) {
    (void)ctx, (void)host;
    loopback_publish(&port, p);
}

static void *serve(void *arg) {
    (void)arg;
    static veil_model models[1] = {{.id = "m", .context_length = 4096, .max_completion_tokens = 64}};
    static const char *const keys[1] = {"k"};
    veil_server_config c = {.port = 0,
                            .models = models,
                            .n_models = 1,
                            .api_keys = keys,
                            .n_api_keys = 1,
                            .max_body = 65536,
                            .on_ready = on_ready};
    c.log = fopen("/dev/null", "w");
    veil_err err;
    if (veil_server_run(&c, &err) != VEIL_OK) {
        fprintf(stderr, "veil serve did not start: %s\n", err.message);
        abort();
    }
    return NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    loopback_start(serve, &port);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char buf[1 << 16];
    if (loopback_exchange(port, 0, data, size, buf, sizeof buf, 200) < 0)
        abort();
    static const char health[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    /* a healthy server answers at once; 5 s leaves room for a loaded machine, not for a wedged one */
    long n = loopback_exchange(port, 0, health, sizeof health - 1, buf, sizeof buf - 1, 5000);
    if (n < 12 || memcmp(buf, "HTTP/1.1 200", 12) != 0) {
        fprintf(stderr, "fuzz_http_request: /healthz answered %ld bytes: %.40s\n", n, n > 0 ? buf : "");
        abort(); /* the input left the server unable to answer */
    }
    return 0;
}
