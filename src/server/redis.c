/* A connection to Redis (hiredis) for the state that replicas share
 * (--store redis://HOST:PORT[/DB]): one synchronous connection per user,
 * behind a mutex, made on first use and made again after a failure. While
 * Redis is away, a new connection is tried at most every RETRY_S seconds,
 * so that callers fail at once in between instead of each waiting for the
 * connect timeout. A command that fails on a connection that had worked is
 * sent once more on a fresh one (Redis restarted in between). */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "base/base.h"
#include "server.h"
#include "veil/secure.h"

#define RETRY_S 0.5

struct veil_redis {
    pthread_mutex_t mu;
    redisContext *c;
    char host[256];
    int port, db, timeout_ms;
    double retry_at; /* after a failed connect: none before this */
    char *password;  /* $VEIL_REDIS_PASSWORD (AUTH), or NULL */
};

int veil_store_is_redis(const char *location) { return location && !strncmp(location, "redis://", 8); }

/* Parses redis://HOST:PORT[/DB] (port 6379 and database 0 by default). */
static veil_rc parse_url(const char *url, char host[256], int *port, int *db, veil_err *err) {
    if (!veil_store_is_redis(url))
        return veil_err_set(err, VEIL_ERR_INVALID_ARG, "not a redis:// URL: %s", url);
    const char *p = url + 8, *end = p + strcspn(p, "/");
    const char *colon = memchr(p, ':', (size_t)(end - p));
    const char *host_end = colon ? colon : end;
    if (host_end == p || host_end - p > 255)
        return veil_err_set(err, VEIL_ERR_INVALID_ARG, "%s: needs redis://HOST:PORT[/DB]", url);
    memcpy(host, p, (size_t)(host_end - p));
    host[host_end - p] = 0;
    *port = 6379;
    *db = 0;
    if (colon) {
        char *stop;
        long v = strtol(colon + 1, &stop, 10);
        if (stop != end || v < 1 || v > 65535)
            return veil_err_set(err, VEIL_ERR_INVALID_ARG, "%s: the port must be 1..65535", url);
        *port = (int)v;
    }
    if (*end == '/' && end[1]) {
        char *stop;
        long v = strtol(end + 1, &stop, 10);
        if (*stop || v < 0 || v > 1000000)
            return veil_err_set(err, VEIL_ERR_INVALID_ARG, "%s: the database must be a number", url);
        *db = (int)v;
    }
    return VEIL_OK;
}

veil_rc veil_redis_open(veil_redis **out, const char *url, int timeout_ms, veil_err *err) {
    *out = NULL;
    veil_redis *r = calloc(1, sizeof *r);
    if (!r)
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    veil_rc rc = parse_url(url, r->host, &r->port, &r->db, err);
    if (rc != VEIL_OK) {
        free(r);
        return rc;
    }
    const char *pw = getenv("VEIL_REDIS_PASSWORD");
    r->password = pw && *pw ? strdup(pw) : NULL;
    r->timeout_ms = timeout_ms > 0 ? timeout_ms : 2000;
    pthread_mutex_init(&r->mu, NULL);
    *out = r;
    return VEIL_OK;
}

void veil_redis_close(veil_redis *r) {
    if (!r)
        return;
    if (r->c)
        redisFree(r->c);
    if (r->password)
        veil_free_secret(r->password, strlen(r->password));
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* Connects (under mu); 0 with err set when Redis cannot be reached. */
static int connect_now(veil_redis *r, veil_err *err) {
    double now = veil_now_s();
    if (now < r->retry_at) {
        veil_err_set(err, VEIL_ERR_IO, "Redis at %s:%d is unavailable (retrying)", r->host, r->port);
        return 0;
    }
    struct timeval tv = {r->timeout_ms / 1000, (r->timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(r->host, r->port, tv);
    redisReply *rep = NULL;
    int ok = c && !c->err && redisSetTimeout(c, tv) == REDIS_OK;
    if (ok && r->password) {
        rep = redisCommand(c, "AUTH %s", r->password);
        ok = rep && rep->type != REDIS_REPLY_ERROR;
        freeReplyObject(rep);
    }
    if (ok && r->db) {
        rep = redisCommand(c, "SELECT %d", r->db);
        ok = rep && rep->type != REDIS_REPLY_ERROR;
        freeReplyObject(rep);
    }
    if (!ok) {
        veil_err_set(err, VEIL_ERR_IO, "Redis at %s:%d: %s", r->host, r->port,
                     c && c->err ? c->errstr : "connection refused or AUTH/SELECT failed");
        if (c)
            redisFree(c);
        r->retry_at = now + RETRY_S;
        return 0;
    }
    r->c = c;
    return 1;
}

void *veil_redis_command(veil_redis *r, veil_err *err, const char *fmt, ...) {
    redisReply *rep = NULL;
    pthread_mutex_lock(&r->mu);
    for (int attempt = 0; attempt < 2 && !rep; attempt++) {
        int reused = r->c != NULL;
        if (!r->c && !connect_now(r, err))
            break;
        va_list ap;
        va_start(ap, fmt);
        rep = redisvCommand(r->c, fmt, ap);
        va_end(ap);
        if (!rep) {
            veil_err_set(err, VEIL_ERR_IO, "Redis at %s:%d: %s", r->host, r->port,
                         r->c->errstr[0] ? r->c->errstr : "connection lost");
            redisFree(r->c);
            r->c = NULL;
            if (!reused)
                break; /* a fresh connection failed: Redis is away */
        }
    }
    pthread_mutex_unlock(&r->mu);
    if (rep && rep->type == REDIS_REPLY_ERROR) {
        veil_err_set(err, VEIL_ERR_IO, "Redis at %s:%d: %s", r->host, r->port, rep->str);
        freeReplyObject(rep);
        return NULL;
    }
    return rep;
}

void veil_redis_reply_free(void *reply) { freeReplyObject(reply); }
