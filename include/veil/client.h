/* libveil's client side: talks to veil or to Venice's service and trusts
 * nothing the server merely claims. This part verifies a TEE attestation
 * locally: the quote, its chain to the pinned Intel root, the bindings of
 * the signing key and a fresh nonce in REPORTDATA, and the policy. */
#ifndef VEIL_CLIENT_H
#define VEIL_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "veil/collateral.h"
#include "veil/err.h"
#include "veil/keys.h"
#include "veil/policy.h"
#include "veil/quote.h"

#ifdef __cplusplus
extern "C" {
#endif
VEIL_API_BEGIN

#define VEIL_DEFAULT_BASE_URL "https://api.venice.ai/api/v1"

typedef struct veil_client veil_client;

/* A client for base_url (e.g. VEIL_DEFAULT_BASE_URL) with an API key (may be
 * NULL). TLS certificates are always verified for https. timeout_s: per
 * request (0: 60). */
VEIL_WARN_UNUSED_RESULT veil_rc veil_client_new(veil_client **out, const char *base_url, const char *api_key,
                                                long timeout_s, veil_err *err) VEIL_NONNULL(1, 2);
void veil_client_free(veil_client *c);

/* How an https server's certificate is trusted. VEIL_TLS_CA (the default):
 * by the system's certificate authorities, and once an attestation binds
 * the server's TLS key (tls_spki_sha256) that key is pinned as well.
 * VEIL_TLS_ATTESTED: by the attestation alone (veil serve --tls, whose
 * certificate is self-signed inside the enclave): the API key is withheld
 * until an accepted attestation has bound the connection's key, and every
 * later request must present that key. See docs/protocol.md, "Attested TLS". */
typedef enum veil_tls_trust { VEIL_TLS_CA, VEIL_TLS_ATTESTED } veil_tls_trust;
void veil_client_set_tls_trust(veil_client *c, veil_tls_trust trust) VEIL_NONNULL(1);

/* The TLS key pinned on this client by an accepted attestation: copies its
 * SPKI SHA-256 to out and returns 1, or returns 0 when none is pinned. */
int veil_client_tls_pin(veil_client *c, uint8_t out[32]) VEIL_NONNULL(1, 2);

typedef enum veil_check_result { VEIL_CHECK_PASS, VEIL_CHECK_FAIL, VEIL_CHECK_SKIP } veil_check_result;

typedef struct veil_check {
    const char *name;
    veil_check_result result;
    char reason[240];
} veil_check;

#define VEIL_MAX_CHECKS 16

typedef struct veil_attest_options {
    const char *model;
    const veil_quote_policy *policy;   /* NULL: defaults */
    const veil_collateral *collateral; /* NULL: chain and signatures only (or fetched, below) */
    const char *pcs_url;               /* fetch collateral from this PCS/PCCS (API v4) when none is given */
    int allow_simulated;               /* accept a simulated TEE (its own root) */
    int64_t at;                        /* 0: now */
} veil_attest_options;

typedef struct veil_attestation {
    int accepted; /* every check passed (or was skipped) */
    veil_check checks[VEIL_MAX_CHECKS];
    size_t n_checks;
    char signing_address[43];
    veil_pubkey signing_key;
    char tee_provider[32];
    int simulated;
    veil_quote_verdict verdict;
    int tls_bound;               /* the server's TLS key is bound by the attested key and is this connection's */
    uint8_t tls_spki_sha256[32]; /* when tls_bound */
    char tls_key_origin[16];     /* "enclave" or "operator", as the server says */
} veil_attestation;

/* Fetches the attestation of opts->model with a fresh 32-byte nonce and
 * verifies it: nonce and model echo, quote verification (Intel's pinned
 * root; a simulated TEE only when allowed), TEE type, REPORTDATA binding
 * the signing address and the nonce (raw, or its SHA-256), signing key to
 * address, event log replay, the policy, and the TLS binding (the attested
 * key's signature over the server's TLS key, which must be the key of the
 * connection the attestation came over; skipped where the server offers
 * none). An accepted attestation with a TLS binding pins that key on c. Returns VEIL_OK when the
 * attestation was evaluated (see out->accepted) or an error when it could
 * not be fetched or read (VEIL_ERR_IO, VEIL_ERR_MALFORMED). */
VEIL_WARN_UNUSED_RESULT veil_rc veil_client_attest(veil_client *c, veil_attestation *out,
                                                   const veil_attest_options *opts, veil_err *err)
    VEIL_NONNULL(1, 2, 3);

/* The server's models (GET /models?type=all): *json_out is the list object's
 * JSON text (malloc'd; free()). Returns VEIL_OK, or VEIL_ERR_IO (HTTP
 * failure or a non-200 answer), VEIL_ERR_MALFORMED (not a JSON object). */
VEIL_WARN_UNUSED_RESULT veil_rc veil_client_models(veil_client *c, char **json_out, veil_err *err) VEIL_NONNULL(1, 2);

typedef enum veil_chat_mode {
    VEIL_CHAT_AUTO, /* E2EE when the model supports it, else TEE-only when it is a TEE model, else plain */
    VEIL_CHAT_E2EE, /* attest, encrypt the prompt to the attested key, decrypt every chunk */
    VEIL_CHAT_TEE,  /* attest, send plaintext */
    VEIL_CHAT_PLAIN /* no attestation */
} veil_chat_mode;

typedef struct veil_chat_options {
    const char *model;
    veil_chat_mode mode;
    int verify_signature;       /* fetch the response signature and check it against the attested address */
    veil_attest_options attest; /* model is taken from above */
    /* called with each piece of the answer as it arrives (plaintext) */
    void (*on_text)(void *ctx, const char *text, size_t n);
    void *ctx;
} veil_chat_options;

typedef struct veil_chat_result {
    char *answer; /* the whole answer, malloc'd; wipe and free with veil_chat_result_clear */
    size_t answer_len;
    char request_id[64];
    veil_chat_mode mode;          /* the mode used */
    veil_attestation attestation; /* when attested */
    int signature_checked;        /* the signature verified and its signer is the attested address */
} veil_chat_result;

/* One chat message in plaintext: role ("system", "user", "assistant", ...)
 * and content (UTF-8, content_len bytes). */
typedef struct veil_message {
    const char *role;
    const char *content;
    size_t content_len;
} veil_message;

/* Sends messages[0..n_messages) (borrowed) as a streaming chat completion. Under E2EE the attestation must
 * be accepted first; user, system and developer contents (and prior
 * assistant turns) are sealed to the attested key; every chunk must decrypt
 * with this call's ephemeral key (wiped after), else the call fails and no
 * unverified text is handed on. Returns VEIL_OK, or VEIL_ERR_IO (HTTP or
 * stream failure), VEIL_ERR_AUTH_FAILED (attestation refused, a plaintext or
 * undecryptable chunk in an E2EE stream), VEIL_ERR_BAD_SIGNATURE (the
 * signature check failed), VEIL_ERR_INVALID_ARG (a message that is not
 * UTF-8). */
VEIL_WARN_UNUSED_RESULT veil_rc veil_client_chat(veil_client *c, veil_chat_result *out, const veil_chat_options *opts,
                                                 const veil_message *messages, size_t n_messages, veil_err *err)
    VEIL_NONNULL(1, 2, 3);

void veil_chat_result_clear(veil_chat_result *r);

VEIL_API_END
#ifdef __cplusplus
}
#endif
#endif
