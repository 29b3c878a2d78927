/* Internal interfaces of veil serve: models, request validation, E2EE,
 * backends, the API key and signature stores, and the HTTP server that ties
 * them together. Nothing below the HTTP layer (the http_*.c files and their
 * http_internal.h) knows HTTP exists. Formats and messages: docs/serve.md. */
#ifndef VEIL_SERVER_SERVER_H
#define VEIL_SERVER_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "veil/err.h"
#include "veil/keys.h"

/* ---- models ---- */

typedef struct veil_model {
    char *id; /* e.g. "e2ee-qwen3-tiny" */
    char *description;
    char *system_prompt;  /* added when include_venice_system_prompt is true; may be NULL */
    char *upstream_model; /* name sent to the upstream backend; NULL: the id */
    int tee, e2ee;        /* supportsTeeAttestation, supportsE2EE (e2ee implies tee) */
    int function_calling, response_schema, logprobs, reasoning, vision;
    long context_length, max_completion_tokens;
    double price_in_usd, price_out_usd; /* per million tokens */
    struct veil_backend *backend;       /* borrowed */
} veil_model;

/* The /models list entry of a model (Venice's shape, docs/serve.md). */
json_t *veil_model_json(const veil_model *m, long created);

/* ---- requests ---- */

/* A validated chat completion request. */
typedef struct veil_chat_request {
    const veil_model *model;
    int e2ee;               /* E2EE request: messages are decrypted and answers encrypted */
    int e2ee_near;          /* with the NEAR dialect's rules (every role encrypted, non-streaming allowed) */
    veil_pubkey client_key; /* where E2EE answers are encrypted to */
    json_t *body;           /* the whole request (owned reference) */
    json_t *messages;       /* the messages as the backend sees them (owned), server prompt prepended if any */
    int stream, include_usage;
    long max_tokens;      /* 0: model default */
    uint8_t key_hash[32]; /* SHA-256 of the API key the request came with: whose prefix cache it may use */
} veil_chat_request;

/* An HTTP-level refusal: status, the exact message and the parameter it
 * names ("" for none); the OpenAI error type follows from the status. */
typedef struct veil_http_error {
    int status;
    char message[300];
    char param[64];
} veil_http_error;

/* Validates a chat completion body (docs/serve.md) in its order:
 * JSON, known keys, model, types and ranges, capabilities. On success fills
 * `out` (free with veil_chat_request_clear) and returns 1; else fills `e`
 * and returns 0. find_model looks a model up by id. */
int veil_chat_validate(const char *body, size_t len, const veil_model *(*find_model)(void *, const char *), void *ctx,
                       int (*e2ee_rules)(void *, json_t *body, veil_chat_request *out, veil_http_error *e),
                       void *rules_ctx, veil_chat_request *out, veil_http_error *e);

/* ---- E2EE (the public page's E2EE section, Venice's and NEAR's headers) ---- */

/* The request headers the E2EE rules read (NULL: absent). */
typedef struct veil_e2ee_headers {
    const char *client_pub_key, *model_pub_key, *signing_algo; /* X-Venice-TEE-* */
    const char *near_signing_algo, *near_client_pub_key,
        *near_model_pub_key; /* X-Signing-Algo, X-{Client,Model}-Pub-Key */
} veil_e2ee_headers;

/* The E2EE rules in their order, each refusal with its exact message: the
 * headers, the client key, the model's capability, the instance key
 * (`instance`: NULL when the server has no TEE), streaming, tools, web
 * search, files, and the shape of every field that must be ciphertext.
 * Marks out as E2EE (and NEAR) when the headers ask for it. Returns 1, or 0
 * with the 400 in e. Runs on the loop: no decryption here. */
int veil_e2ee_request_rules(const veil_e2ee_headers *h, const veil_pubkey *instance, json_t *body,
                            veil_chat_request *out, veil_http_error *e);

/* What an E2EE request cannot carry, as the exact 400 message the rules
 * refuse it with (function calling, web search "on", a content part that is
 * not text), or NULL. veil proxy asks it before sealing a request. */
const char *veil_e2ee_unsupported(json_t *body);

/* 1 when hex[0..n) has the shape of a sealed envelope: strict hex of at
 * least VEIL_ECIES_MIN_HEX_LEN characters. */
int veil_e2ee_looks_sealed(const char *hex, size_t n);

/* Decrypts the messages of an E2EE request in place with the instance key:
 * user/system/developer contents (every role under NEAR) must be envelopes;
 * assistant and tool contents are decrypted when they are envelopes. Returns
 * 1, or 0 with the exact 400 message in e. Runs on a worker thread. */
int veil_e2ee_decrypt_messages(const veil_seckey *key, json_t *messages, int near, veil_http_error *e);

/* 1 when a message of `role` must carry ciphertext: user, system and
 * developer under the Venice rules, every role under NEAR's. */
int veil_e2ee_must_encrypt(const char *role, int near);

void veil_chat_request_clear(veil_chat_request *r);

/* Fills `e` as a 400 invalid_request_error with `msg` and returns 0, so that
 * a refusing check can `return veil_http_bad_request(e, …)`. */
int veil_http_bad_request(veil_http_error *e, const char *msg);

/* ---- backends ---- */

/* Where a generation delivers its output; called on the backend's thread. */
typedef struct veil_gen_sink {
    void *ctx;
    /* a piece of the answer (content and/or reasoning; either may be empty) */
    void (*piece)(void *ctx, const char *content, size_t content_len, const char *reasoning, size_t reasoning_len);
    /* the end: finish_reason "stop" or "length", and token counts */
    void (*done)(void *ctx, const char *finish_reason, long prompt_tokens, long completion_tokens);
    /* a failure: OpenAI error code (e.g. "context_length_exceeded") or NULL,
     * HTTP status (502, 504, or an upstream 4xx) and message */
    void (*fail)(void *ctx, const char *code, int status, const char *message);
    /* non-zero once the client went away: stop as soon as possible */
    int (*cancelled)(void *ctx);
    /* pieces may be held back (so that a burst goes out in one write) until flush, done or
     * fail: a backend calls flush whenever it is about to wait for more output */
    void (*flush)(void *ctx);
    /* before done: how many prompt tokens came from the prefix cache (may be NULL; not called
     * by backends without one) */
    void (*cached)(void *ctx, long cached_tokens);
} veil_gen_sink;

/* ---- the upstream's event stream (relay_events.c) ---- */

/* 1 when s[0..n) is printable ASCII other than '"' and '\\': then a JSON
 * string of these bytes is exactly them between quotes, whether decoded or
 * encoded (jansson writes them as they are), so the relay copies them and
 * leaves other strings to jansson. Checked without an early exit so that
 * the compiler vectorizes it. */
static inline int veil_json_plain(const char *s, size_t n) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bad |= (c < 0x20) | (c > 0x7e) | (c == '"') | (c == '\\');
    }
    return !bad;
}

/* What an OpenAI-compatible upstream's stream of chat.completion.chunk
 * events says, read one event's data at a time: content and reasoning go to
 * the sink as they come; the finish reason, token counts, an error event and
 * [DONE] are kept. Upstreams send every content event of a stream with the
 * same bytes around a different string, so the reader learns that shape from
 * an event jansson parsed and, for a later event with the same bytes around,
 * decodes only the string; anything else is parsed whole. Either way the
 * sink sees the same calls. Zero-initialize, set sink (and no_shape to parse
 * every event whole), free with veil_upstream_events_clear. */
typedef struct veil_upstream_events {
    const veil_gen_sink *sink; /* borrowed */
    int no_shape;
    char finish[32]; /* "" until an event gives one */
    long prompt_tokens, completion_tokens;
    int done_seen;          /* [DONE] arrived */
    char stream_error[300]; /* an error event's message, "" if none */
    /* the learned shape: the bytes before and after the content's string */
    char *before, *after;
    size_t before_len, after_len;
    int hits;      /* events matched since it was learned */
    int fruitless; /* learns in a row that no event paid for: after four, learning stops */
} veil_upstream_events;

/* Reads one event's data (len bytes, untrusted). Returns 1 when it was an
 * error event (stream_error holds its message), else 0. What is not a JSON
 * object is ignored, as OpenAI's clients do. */
int veil_upstream_event(veil_upstream_events *ev, const char *data, size_t len);

void veil_upstream_events_clear(veil_upstream_events *ev);

typedef struct veil_backend {
    const char *name;
    /* Runs one generation to its end on the calling (worker) thread,
     * delivering through `sink`; exactly one of done or fail is called. */
    void (*generate)(struct veil_backend *b, const veil_chat_request *req, const veil_gen_sink *sink);
    void (*free)(struct veil_backend *b);
    void *impl;
} veil_backend;

/* The built-in engine serving one loaded model (borrowed; outlives the backend). */
struct veil_llm;
struct veil_kv_cache;
veil_backend *veil_engine_backend_new(const struct veil_llm *llm, struct veil_kv_cache *cache);

/* An OpenAI-compatible upstream server (vLLM, llama.cpp, SGLang, Ollama).
 * base_url like "http://127.0.0.1:8000/v1"; key may be NULL. */
veil_backend *veil_upstream_backend_new(const char *base_url, const char *key, long timeout_s);

/* ---- Redis: the state replicas share (redis.c) ---- */

/* 1 when a store location is a redis:// URL (else it is a SQLite file). */
int veil_store_is_redis(const char *location);

/* A Redis connection to redis://HOST:PORT[/DB] (port 6379 and database 0 by
 * default), made on first use and again after a failure (at most every half
 * second while Redis is away); commands time out after timeout_ms. AUTH with
 * $VEIL_REDIS_PASSWORD when set. Thread-safe. */
typedef struct veil_redis veil_redis;
VEIL_WARN_UNUSED_RESULT veil_rc veil_redis_open(veil_redis **out, const char *url, int timeout_ms, veil_err *err);
void veil_redis_close(veil_redis *r);

/* Runs a command (hiredis's format): its redisReply (free with
 * veil_redis_reply_free), or NULL with err set when Redis cannot be
 * reached or answered an error. */
void *veil_redis_command(veil_redis *r, veil_err *err, const char *fmt, ...);
void veil_redis_reply_free(void *reply);

/* ---- API keys ---- */

typedef struct veil_keystore veil_keystore;

/* Opens (creating) the key store at `path`: a SQLite file (WAL), or a
 * redis:// URL, where the keys of every replica live in one hash
 * (docs/cluster.md). */
VEIL_WARN_UNUSED_RESULT veil_rc veil_keystore_open(veil_keystore **out, const char *path, veil_err *err);
void veil_keystore_close(veil_keystore *ks);

/* Creates a key: *secret (malloc'd) is "vk-" + 48 hex, shown once; only its
 * SHA-256 is stored. id: a short public handle for list/revoke. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_keystore_create(veil_keystore *ks, char **secret, char id[17], veil_err *err);

/* Revokes by id. VEIL_ERR_INVALID_ARG when no such active key. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_keystore_revoke(veil_keystore *ks, const char *id, veil_err *err);

/* Calls fn for each key (revoked too); returns the number of active keys or -1. */
int veil_keystore_list(veil_keystore *ks, void (*fn)(void *, const char *id, long created, int revoked), void *ctx);

/* The SHA-256 hashes of the active keys: *hashes (malloc'd, n × 32 bytes;
 * free()) and *n. Returns VEIL_OK or VEIL_ERR_IO. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_keystore_hashes(veil_keystore *ks, uint8_t (**hashes)[32], size_t *n,
                                                     veil_err *err);

/* ---- response signatures ---- */

typedef struct veil_signature_record {
    const char *request_id, *model;
    const char *text, *signature;           /* Venice: "<sha256 req>:<sha256 resp>" */
    const char *near_text, *near_signature; /* NEAR: "<model>:<sha256 req>:<sha256 resp>" */
    const char *signing_address;            /* 0x + EIP-55 of the key that signed both */
} veil_signature_record;

typedef struct veil_sigstore veil_sigstore;

/* Opens (creating) the store at `path`: a SQLite file, or a redis:// URL
 * (records shared by every replica, docs/cluster.md); records expire after
 * retention_s (default 3600). */
VEIL_WARN_UNUSED_RESULT veil_rc veil_sigstore_open(veil_sigstore **out, const char *path, long retention_s,
                                                   veil_err *err);
void veil_sigstore_close(veil_sigstore *s);

/* Stores a record (strings borrowed); fails (VEIL_ERR_IO) when it cannot be
 * written or its request id is stored already. Thread-safe. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_sigstore_put(veil_sigstore *s, const veil_signature_record *r, veil_err *err);

/* Finds an unexpired record: 1 and *out filled (strings malloc'd; free with
 * veil_signature_record_clear), or 0. Thread-safe. */
int veil_sigstore_get(veil_sigstore *s, const char *request_id, veil_signature_record *out);
void veil_signature_record_clear(veil_signature_record *r);

/* 1 when the store can write now (a small committed write), else 0. Thread-safe. */
int veil_sigstore_probe(veil_sigstore *s);

/* 1 when the store lives outside this process's disk (Redis): /readyz asks it every time. */
int veil_sigstore_shared(const veil_sigstore *s);

/* ---- the HTTP server ---- */

/* ---- TLS (tls.c) ---- */

/* The server's TLS identity: its context and the SHA-256 of its
 * certificate's SubjectPublicKeyInfo, which the attestation binds. */
typedef struct veil_tls_identity {
    struct ssl_ctx_st *ctx;
    uint8_t spki_sha256[32];
    int enclave; /* the key was made in memory here (--tls), not given by the operator */
} veil_tls_identity;

/* Opens the TLS identity: the operator's PEM certificate chain and key
 * (cert_file and key_file), or with both NULL a fresh P-256 key held only
 * in memory and a self-signed certificate naming localhost and `host`.
 * Returns VEIL_OK, or VEIL_ERR_INVALID_ARG / VEIL_ERR_CRYPTO. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_tls_open(veil_tls_identity *out, const char *cert_file, const char *key_file,
                                              const char *host, veil_err *err);
void veil_tls_close(veil_tls_identity *t);

typedef struct veil_server_config {
    const char *host;     /* default 127.0.0.1 */
    int port;             /* 0: any free port (see on_ready) */
    size_t max_body;      /* default 4 MiB */
    size_t max_headers;   /* default 64 KiB */
    int idle_timeout_s;   /* default 60 */
    int header_timeout_s; /* a request head must arrive whole within this of its first byte; default 10 */
    int body_timeout_s;   /* a request body may pause this long between bytes; default 30 */
    int shutdown_grace_s; /* in-flight streams get this long to finish; default 10 */
    int max_streams;      /* concurrent generations; default 256 */
    veil_model *models;   /* borrowed */
    size_t n_models;
    const char *const *api_keys; /* accepted bearer keys given by flag (borrowed) */
    size_t n_api_keys;
    veil_keystore *keystore;                    /* may be NULL */
    const char *cors_origin;                    /* NULL: no CORS headers */
    struct veil_tee *tee;                       /* NULL: no TEE (no attestation routes) */
    const veil_tls_identity *tls;               /* NULL: plain HTTP */
    veil_sigstore *sigstore;                    /* with a TEE: where response signatures go */
    const struct veil_peer_policy *key_release; /* with a TEE: serve /veil/v1/key-release to such peers
                                                 * (docs/cluster.md); NULL: not served */
    int tee_rate_per_min;                       /* attestation requests per client IP a minute; default 10 */
    int sig_rate_per_min;                       /* signature lookups per client IP a minute; default 120 */
    veil_redis *rate_store;                     /* rate-limit counters shared by the replicas (NULL: in this process) */
    int trust_proxy;                            /* trusted proxy hops: the client IP is X-Forwarded-For's entry this
                              * far from the right (0: the peer's address) */
    FILE *log;                                  /* one line per request; NULL: stderr */
    /* called once the socket is bound, with the actual port */
    void (*on_ready)(void *ctx, const char *host, int port);
    void *ready_ctx;
} veil_server_config;

/* Serves until SIGINT or SIGTERM, then stops accepting, lets in-flight
 * streams finish within the grace period, cancels the rest, and returns
 * VEIL_OK; or returns an error when it cannot start (VEIL_ERR_IO). */
VEIL_WARN_UNUSED_RESULT veil_rc veil_server_run(const veil_server_config *cfg, veil_err *err);
#endif
