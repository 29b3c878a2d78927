/* libFuzzer target over raw HTTP request bytes: veil serve runs in this
 * process (no TEE, one model without a backend, one API key) and each input
 * is written as it is to a fresh loopback connection, so that libevent's
 * parser, veil's framing checks, routing, auth, validation and replies all
 * meet it. After each input the server must still answer /healthz: an
 * input that wedges or kills it is a failure. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/server.h"

static int port;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ready = PTHREAD_COND_INITIALIZER;

static void on_ready(void *ctx, const char *host, int p) {
    (void)ctx, (void)host;
    pthread_mutex_lock(&mu);
    port = p;
    pthread_cond_signal(&ready);
    pthread_mutex_unlock(&mu);
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

/* Sends bytes on a new connection, closes its sending side, reads what comes
 * back (until wait_ms of silence); returns the bytes read, -1 if it could not
 * connect. */
static long exchange(const void *data, size_t n, char *out, size_t cap, int wait_ms) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (n)
        (void)send(fd, data, n, MSG_NOSIGNAL);
    shutdown(fd, SHUT_WR);
    long got = 0;
    struct pollfd p = {fd, POLLIN, 0};
    while ((size_t)got < cap && poll(&p, 1, wait_ms) > 0) {
        ssize_t r = recv(fd, out + got, cap - (size_t)got, 0);
        if (r <= 0)
            break;
        got += r;
    }
    close(fd);
    return got;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    pthread_t t;
    if (pthread_create(&t, NULL, serve, NULL) != 0)
        abort();
    pthread_detach(t);
    pthread_mutex_lock(&mu);
    while (!port)
        pthread_cond_wait(&ready, &mu);
    pthread_mutex_unlock(&mu);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char buf[1 << 16];
    if (exchange(data, size, buf, sizeof buf, 200) < 0)
        abort();
    static const char health[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    /* a healthy server answers at once; 5 s leaves room for a loaded machine, not for a wedged one */
    long n = exchange(health, sizeof health - 1, buf, sizeof buf - 1, 5000);
    if (n < 12 || memcmp(buf, "HTTP/1.1 200", 12) != 0)
        abort(); /* the input left the server unable to answer */
    return 0;
}
