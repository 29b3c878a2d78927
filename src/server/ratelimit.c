/* Rate limiting of the attestation and signature routes: fixed one-minute
 * windows per client address, each route its own limit. Clients are kept
 * by their exact address in an open-addressed table (no two addresses share
 * a count); a slot whose window has passed is free again. When every slot a
 * client could take holds another client of this minute, the request is
 * refused rather than any count reset. The client address is the peer's, or
 * with --trust-proxy the X-Forwarded-For entry the trusted proxies added:
 * the Nth from the right for N trusted hops (the entries left of it are the
 * client's own words). With --store redis:// the windows are counted in
 * Redis (veil:rate:<route>:<minute>:<client>, expiring after two minutes),
 * shared by every replica; while Redis is away each replica counts alone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/keyvalq_struct.h>
#include <hiredis/hiredis.h>

#include "http_internal.h"

#define PROBES 64 /* slots a client may take, from its hash on */

static uint64_t hash(const char *s) { /* FNV-1a, then mixed */
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h ^ (h >> 29);
}

int veil_ratelimit_init(veil_ratelimit *rl, int per_min, size_t slots) {
    memset(rl, 0, sizeof *rl);
    rl->per_min = per_min > 0 ? per_min : 10;
    rl->n = slots;
    rl->slot = calloc(slots, sizeof *rl->slot);
    return rl->slot != NULL;
}

void veil_ratelimit_free(veil_ratelimit *rl) {
    free(rl->slot);
    rl->slot = NULL;
}

/* The shared count of this client's window, or -1 when Redis cannot say. */
static long long shared_hit(veil_ratelimit *rl, const char *client, long window) {
    redisReply *rep = veil_redis_command(rl->redis, NULL, "INCR veil:rate:%s:%ld:%s", rl->name, window, client);
    if (!rep)
        return -1;
    long long n = rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
    veil_redis_reply_free(rep);
    if (n == 1 &&
        (rep = veil_redis_command(rl->redis, NULL, "EXPIRE veil:rate:%s:%ld:%s 120", rl->name, window, client)))
        veil_redis_reply_free(rep);
    return n;
}

int veil_ratelimit_hit(veil_ratelimit *rl, const char *client, long now) {
    long window = now / 60;
    int wait = (int)(60 - now % 60);
    long long shared = rl->redis ? shared_hit(rl, client, window) : -1;
    if (shared >= 0)
        return shared > rl->per_min ? wait : 0;
    if (!rl->n)
        return wait;
    size_t at = (size_t)(hash(client) % rl->n), free_slot = (size_t)-1;
    for (size_t i = 0; i < PROBES && i < rl->n; i++) {
        struct rate_slot *s = &rl->slot[(at + i) % rl->n];
        int current = s->ip[0] && s->window == window;
        if (current && !strcmp(s->ip, client))
            return ++s->count > rl->per_min ? wait : 0;
        if (!current && free_slot == (size_t)-1)
            free_slot = (at + i) % rl->n;
    }
    if (free_slot == (size_t)-1)
        return wait; /* every slot this client could take is another's this minute */
    struct rate_slot *s = &rl->slot[free_slot];
    snprintf(s->ip, sizeof s->ip, "%s", client);
    s->window = window;
    s->count = 1;
    return s->count > rl->per_min ? wait : 0;
}

/* Entry `from_right` (1: the rightmost) of a comma-separated list, trimmed,
 * into out; 0 when the list has fewer entries or the entry is empty. */
static int xff_entry(const char *list, int from_right, char out[64]) {
    const char *end = list + strlen(list);
    for (int k = 1; end > list || k == 1; k++) {
        const char *start = end;
        while (start > list && start[-1] != ',')
            start--;
        const char *a = start, *b = end;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        if (k == from_right) {
            if (a == b || b - a > 63)
                return 0;
            snprintf(out, 64, "%.*s", (int)(b - a), a);
            return 1;
        }
        if (start == list)
            return 0;
        end = start - 1;
    }
    return 0;
}

void http_client_ip(server *s, struct evhttp_request *req, char out[64]) {
    const char *xff =
        s->cfg->trust_proxy ? evhttp_find_header(evhttp_request_get_input_headers(req), "X-Forwarded-For") : NULL;
    if (xff && xff_entry(xff, s->cfg->trust_proxy, out))
        return;
    char *addr = NULL;
    ev_uint16_t port;
    evhttp_connection_get_peer(evhttp_request_get_connection(req), &addr, &port);
    snprintf(out, 64, "%s", addr ? addr : "?");
}

int http_refused_by_rate_limit(server *s, veil_ratelimit *rl, struct evhttp_request *req, int *status, size_t *bytes) {
    char ip[64];
    http_client_ip(s, req, ip);
    int wait = veil_ratelimit_hit(rl, ip, (long)time(NULL));
    if (!wait)
        return 0;
    char secs[16];
    snprintf(secs, sizeof secs, "%d", wait);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", secs);
    *status = 429;
    *bytes = http_send_error(s, req, 429, "Rate limit exceeded", NULL);
    return 1;
}
