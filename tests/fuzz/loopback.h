/* The fuzz targets that run a server in their own process (fuzz_http_request,
 * fuzz_proxy_request) start it on a thread of its own, wait for the port it
 * listens on, and send each input on a fresh loopback connection. */
#ifndef VEIL_FUZZ_LOOPBACK_H
#define VEIL_FUZZ_LOOPBACK_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Sends data[0..n) on a new connection to 127.0.0.1:port, closes its sending
 * side, reads what comes back (until wait_ms of silence) into out; returns
 * the bytes read, -1 if it could not connect. This side closes first (its FIN
 * says the input is whole), so each connection leaves a TIME_WAIT here. With
 * rotate, the source address turns over 127.0.0.0/8, which keeps a target
 * that makes several connections an input (fuzz_proxy_request) from running
 * out of ports; IP_BIND_ADDRESS_NO_PORT has the port picked at connect,
 * against the whole address pair (as without bind). */
static inline long loopback_exchange(int port, int rotate, const void *data, size_t n, char *out, size_t cap,
                                     int wait_ms) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    static unsigned turn;
    int fd = -1;
    /* a connection that could not be made for a reason that says nothing of the server (a signal,
     * this machine short of ports or descriptors for a moment) is tried again, four times, on a
     * new socket; the last reason is printed when none succeeds */
    for (int attempt = 0; attempt < 5 && fd < 0; attempt++) {
        if (attempt)
            usleep(50000u << attempt);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000001u + (turn++ % 4000u) * 256u); /* 127.0.0.1, 127.0.1.1, … */
        int one = 1;
        if (fd >= 0 && rotate && setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) == 0)
            (void)bind(fd, (struct sockaddr *)&src, sizeof src);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
            int e = errno;
            close(fd);
            fd = -1;
            errno = e;
        }
        if (fd < 0 && errno != EINTR && errno != EAGAIN && errno != EADDRNOTAVAIL && errno != EMFILE &&
            errno != ENFILE && errno != ENOBUFS && errno != ETIMEDOUT)
            break;
    }
    if (fd < 0) {
        fprintf(stderr, "loopback: no connection to 127.0.0.1:%d: %s\n", port, strerror(errno));
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

static pthread_mutex_t loopback_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t loopback_ready = PTHREAD_COND_INITIALIZER;

/* A server thread says the port it listens on (into *slot). */
static inline void loopback_publish(int *slot, int port) {
    pthread_mutex_lock(&loopback_mu);
    *slot = port;
    pthread_cond_signal(&loopback_ready);
    pthread_mutex_unlock(&loopback_mu);
}

/* Runs fn on a detached thread and waits until it has published its port into *slot. */
static inline void loopback_start(void *(*fn)(void *), int *slot) {
    pthread_t t;
    if (pthread_create(&t, NULL, fn, NULL) != 0)
        abort();
    pthread_detach(t);
    pthread_mutex_lock(&loopback_mu);
    while (!*slot)
        pthread_cond_wait(&loopback_ready, &loopback_mu);
    pthread_mutex_unlock(&loopback_mu);
}

#endif
