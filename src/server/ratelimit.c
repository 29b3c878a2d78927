/* Rate limiting of the attestation and signature routes: fixed one-minute
 * windows per client address. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <event2/keyvalq_struct.h>

#include "http_internal.h"

int veil_ratelimit_hit(veil_ratelimit *rl, const char *client, long now) {
    long window = now / 60;
    size_t h = 5381;
    for (const char *c = client; *c; c++)
        h = h * 33 + (unsigned char)*c;
    struct rate_slot *slot = &rl->slot[h % (sizeof rl->slot / sizeof rl->slot[0])];
    if (strcmp(slot->ip, client) != 0 || slot->window != window) {
        snprintf(slot->ip, sizeof slot->ip, "%s", client);
        slot->window = window;
        slot->count = 0;
    }
    int limit = rl->per_min > 0 ? rl->per_min : 10;
    return ++slot->count > limit ? (int)(60 - now % 60) : 0;
}

void http_client_ip(server *s, struct evhttp_request *req, char out[64]) {
    const char *xff =
        s->cfg->trust_proxy ? evhttp_find_header(evhttp_request_get_input_headers(req), "X-Forwarded-For") : NULL;
    if (xff) {
        size_t n = strcspn(xff, ", ");
        snprintf(out, 64, "%.*s", (int)(n < 63 ? n : 63), xff);
        return;
    }
    char *addr = NULL;
    ev_uint16_t port;
    evhttp_connection_get_peer(evhttp_request_get_connection(req), &addr, &port);
    snprintf(out, 64, "%s", addr ? addr : "?");
}

int http_refused_by_rate_limit(server *s, struct evhttp_request *req, int *status, size_t *bytes) {
    char ip[64];
    http_client_ip(s, req, ip);
    int wait = veil_ratelimit_hit(&s->rate, ip, (long)time(NULL));
    if (!wait)
        return 0;
    char secs[16];
    snprintf(secs, sizeof secs, "%d", wait);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", secs);
    *status = 429;
    *bytes = http_send_error(s, req, 429, "Rate limit exceeded", NULL);
    return 1;
}
