/* Internal: what veil proxy's modules share. proxy.c is the HTTP side (the
 * loop, routes, one worker thread per request); models.c knows the
 * upstream's models, holds each model's verified attestation and re-attests;
 * forward.c runs one chat completion upstream and shapes the tool's reply. */
#ifndef VEIL_PROXY_INTERNAL_H
#define VEIL_PROXY_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>

#include "proxy.h"

#define PROXY_MAX_MODELS 64
#define PROXY_POOL 16

typedef struct proxy_model {
    char id[256];
    pthread_mutex_t attest_mu; /* one attestation of this model at a time; requests wait on it */
    /* the rest is guarded by proxy.mu */
    int have;             /* an accepted attestation is held */
    veil_attestation att; /* that one */
    double verified_at;   /* monotonic seconds */
    time_t verified_wall;
    int stale;             /* attest again before the next use (key changed, bad signature) */
    int tried;             /* an attestation was tried */
    veil_attestation last; /* the last one evaluated, accepted or not */
    int last_fetched;      /* it could be fetched and read (else last_error says why) */
    char last_error[300];
    time_t last_wall;
    unsigned long n_attest;
} proxy_model;

typedef struct proxy {
    const veil_proxy_config *cfg;
    veil_client *client;
    pthread_mutex_t mu; /* models, catalog, handle pool */
    proxy_model *models[PROXY_MAX_MODELS];
    size_t n_models;
    json_t *catalog; /* the upstream's /models?type=all */
    double catalog_at;
    void *pool[PROXY_POOL]; /* idle CURL handles, each with its kept-alive upstream connection */
    unsigned pool_gen[PROXY_POOL];
    size_t n_pool;
    /* the HTTP side (loop thread) */
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    atomic_int active; /* requests in flight */
    int stopping;
    time_t started;
} proxy;

/* What the upstream says a model is. */
typedef enum proxy_caps { CAPS_ERROR, CAPS_UNKNOWN, CAPS_PLAIN, CAPS_TEE, CAPS_E2EE } proxy_caps;

/* The model's capabilities from the upstream's list (fetched again when it
 * is a minute old or does not name the model). CAPS_UNKNOWN (the list lacks
 * the model) or CAPS_ERROR (no list) with why set. */
proxy_caps proxy_model_caps(proxy *p, const char *model, char *why, size_t why_len);

/* An accepted attestation of `model` into out: the one held while it is
 * younger than --reattest and not stale (force: never), else a fresh one,
 * which the caller waits for. Returns 1, or 0 with why (the failed checks,
 * or why it could not be fetched). */
int proxy_attestation(proxy *p, const char *model, int force, veil_attestation *out, char *why, size_t why_len);

/* At start: attests the upstream's TEE models (the first
 * PROXY_PREATTEST_MAX) and prints a line each to out saying what was verified. */
#define PROXY_PREATTEST_MAX 8
void proxy_preattest(proxy *p, FILE *out);

/* The held attestation of `model` is not to be used again (the server's key
 * changed, or an answer was signed by another key). */
void proxy_mark_stale(proxy *p, const char *model);

/* GET /veil/status: the upstream, and per model the last attestation
 * report (every check with its result and reason). Owned by the caller. */
json_t *proxy_status_json(proxy *p);

/* A CURL handle for one upstream request (an idle one with its connection
 * when there is one of the current TLS pin), and its return. */
void *proxy_handle_get(proxy *p, unsigned *gen);
void proxy_handle_put(proxy *p, void *h, unsigned gen);

void proxy_models_free(proxy *p);

/* One request from a tool: received on the loop (proxy.c), served by a
 * worker thread (forward.c), whose output the loop writes. */
typedef struct proxy_job {
    proxy *p;
    /* the loop's */
    struct evhttp_request *req; /* NULL once the reply is complete */
    struct evhttp_connection *conn;
    struct event *wake;
    struct event *pace; /* a stream's writes are paced (proxy.c, PACE_US) */
    int gone;           /* the tool left before the end */
    int started;        /* a stream's head is out */
    double t0;
    size_t bytes;
    char path[48];
    /* the worker's input */
    int chat;            /* POST chat/completions; else GET models */
    json_t *body;        /* chat: the tool's request (owned) */
    char *authorization; /* the tool's own Authorization header, passed on without --api-key */
    char query[512];     /* models: the query string, "" if none */
    /* worker to loop, under mu */
    pthread_mutex_t mu;
    struct evbuffer *out; /* SSE events to write */
    int open;             /* a stream: its head may go out */
    int finished;         /* the worker is done with the job */
    int quiet;            /* a paced write is pending: the worker's flushes need not wake the loop */
    int status;           /* a whole reply: its status and body */
    json_t *reply;
    char mode[8];      /* "e2ee", "tee" or "plain", for the log and X-Veil-Mode */
    char signer[43];   /* the attested signing address, for X-Veil-Signing-Address */
    atomic_int cancel; /* the tool left: stop the upstream request */
    double t_first;    /* the first content piece was queued (monotonic) */
} proxy_job;

/* Worker side: queue a stream's head (status 200, text/event-stream), one
 * SSE event ("data: " + data + a blank line; written at the next flush, so that the events of one
 * upstream read go out in one write), a whole JSON reply (consumed), or an
 * OpenAI-shaped error reply; proxy_job_finish hands the job back to the
 * loop (the worker must not touch it after). The flush, the reply, the
 * error and the finish wake the loop. */
void proxy_job_open(proxy_job *j);
void proxy_job_event(proxy_job *j, const char *data, size_t n);
void proxy_job_bytes(proxy_job *j, const char *data, size_t n); /* already framed events */
void proxy_job_flush(proxy_job *j);
void proxy_job_reply(proxy_job *j, int status, json_t *body);
void proxy_job_error(proxy_job *j, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void proxy_job_finish(proxy_job *j);

/* forward.c: the worker's part of a chat completion and of GET models. */
void proxy_forward_chat(proxy_job *j);
void proxy_forward_models(proxy_job *j);

#endif
