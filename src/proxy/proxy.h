/* veil proxy: a local OpenAI-compatible endpoint that makes every request
 * to a TEE model end-to-end encrypted and verified (docs/proxy.md). The
 * tool talks plain OpenAI to the proxy on loopback; the proxy attests each
 * model with a fresh nonce, seals the messages to the attested key, decrypts
 * every chunk, and checks the response signature before the tool sees the
 * end of the answer. */
#ifndef VEIL_PROXY_PROXY_H
#define VEIL_PROXY_PROXY_H

#include <stdio.h>

#include "veil/client.h"
#include "veil/err.h"

typedef struct veil_proxy_config {
    const char *host;           /* listen address; default 127.0.0.1 */
    int port;                   /* default 8787; 0: any free port (see on_ready) */
    const char *base_url;       /* the upstream API base, e.g. VEIL_DEFAULT_BASE_URL */
    const char *api_key;        /* bearer key for the upstream; NULL: the tool's own Authorization is passed on */
    int tls_attested;           /* trust the TLS key the attestation binds instead of certificate authorities */
    veil_attest_options attest; /* policy, collateral, pcs_url, allow_simulated (model is set per model) */
    int allow_tee_only;      /* send what E2EE cannot carry (tools, web search, files) to the attested TEE unsealed */
    int allow_plain;         /* pass requests for non-TEE models through, unverified */
    int hold_until_verified; /* a stream's events reach the tool only once its signature checked out */
    long reattest_s;         /* attest each model again after this long; default 300 */
    long timeout_s;          /* upstream silence limit; default 120 */
    FILE *log;               /* one line per request, never content; NULL: stderr */
    FILE *banner;            /* at start, attest the TEE models and say here what was verified; NULL: not */
    void (*on_ready)(void *ctx, const char *host, int port);
    void *ready_ctx;
} veil_proxy_config;

/* Serves until SIGINT or SIGTERM (in-flight requests get 10 s to finish),
 * then returns VEIL_OK; or an error when it cannot start. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_proxy_run(const veil_proxy_config *cfg, veil_err *err);

#endif
