/* Internal: what the client's modules share about a veil_client. */
#ifndef VEIL_CLIENT_INTERNAL_H
#define VEIL_CLIENT_INTERNAL_H

#include <jansson.h>

#include "veil/buf.h"
#include "veil/client.h"

const char *veil_client_base(const veil_client *c);
long veil_client_timeout(const veil_client *c);
int veil_client_has_key(const veil_client *c); /* an API key was given */

/* Sets up a request handle's TLS for c: certificate checks by the trust
 * mode, and the pinned key when one is. *auth: the Authorization header to
 * send (NULL: none). Returns 0, or -1 when no key may be sent (*auth NULL)
 * because under VEIL_TLS_ATTESTED no attested key is pinned yet. */
int veil_client_curl_tls(veil_client *c, void *curl_handle, const char **auth);

/* A number that changes whenever the pinned TLS key does (connection pools
 * drop their connections when it moves). */
unsigned veil_client_pin_generation(veil_client *c);

/* The server's models as parsed JSON (owned), or NULL with err set. */
json_t *veil_client_models_json(veil_client *c, veil_err *err);

/* GET base + path (path starts with '/'): the JSON body (NULL with err set
 * when the request failed or the body is not JSON) and the HTTP status. */
json_t *veil_client_get_json(veil_client *c, const char *path, long *status, veil_err *err);

/* As veil_client_get_json, over curl_handle (a CURL * kept by the caller,
 * so that its connection is reused) when it is not NULL. */
json_t *veil_client_get_json_on(veil_client *c, void *curl_handle, const char *path, long *status, veil_err *err);

/* One event of a chat completion stream, read (chat_event.c). */
typedef struct veil_chat_event {
    int done;      /* the event was [DONE] (nothing else is set) */
    json_t *chunk; /* the chunk, its sealed fields opened (owned) */
    veil_buf text; /* with want_text: the server's text, each envelope replaced by its JSON-escaped
                    * plaintext (re-serialized when an envelope was spelled with escapes); secret */
} veil_chat_event;

/* Reads one event's data (data[0..n), from the server, untrusted): [DONE],
 * or a JSON chunk whose delta.content and delta.reasoning_content are, when
 * key is given (E2EE), envelopes sealed to key and opened here. Returns
 * VEIL_OK, or VEIL_ERR_MALFORMED (not a JSON object), VEIL_ERR_IO (an error
 * event; its message in err), VEIL_ERR_AUTH_FAILED (a plaintext, foreign or
 * non-UTF-8 sealed field), VEIL_ERR_NOMEM. Clear out with veil_chat_event_clear. */
veil_rc veil_chat_event_open(veil_chat_event *out, const veil_seckey *key, const char *data, size_t n, int want_text,
                             veil_err *err);
void veil_chat_event_clear(veil_chat_event *ev);

/* One streamed chat completion, the core of veil_client_chat and of veil
 * proxy. */
typedef struct veil_chat_stream {
    /* in */
    const veil_attestation *att; /* an accepted attestation of the model; NULL: none (plain) */
    int e2ee;                    /* seal the messages to att's key; every chunk must decrypt with this call's key */
    int verify_signature;        /* check the response signature against att's address before returning */
    /* each chunk, its content and reasoning_content as plaintext (borrowed),
     * and the event's text so (the server's bytes with each envelope replaced
     * by its JSON-escaped plaintext); non-zero stops the stream (the call then fails) */
    int (*on_chunk)(void *ctx, json_t *chunk, const char *text, size_t text_len);
    void (*on_text)(void *ctx, const char *text, size_t n); /* each piece of content */
    void (*on_flush)(void *ctx); /* the chunks of one network read were handed on: a moment to write them out */
    void *ctx;
    void *curl; /* a CURL * to send it on (its connection kept for the next call); NULL: one of its own */
    const char
        *authorization; /* an "Authorization: …" header to send instead of the client's key; NULL: the client's */
    /* out */
    long status;             /* the HTTP status (0: none) */
    char error_message[300]; /* a non-200 answer's error.message ("" if none) */
    int stopped;             /* on_chunk stopped it */
} veil_chat_stream;

/* Sends `request` (an OpenAI chat completion body with plaintext messages;
 * borrowed) streamed: "stream" forced on, under E2EE every message but tool
 * results sealed to the attested key (strings and the text parts of content
 * arrays; any other part is VEIL_ERR_INVALID_ARG, "File uploads are not
 * supported with E2EE") with the three headers, every content and
 * reasoning_content chunk decrypted (a plaintext, foreign or non-UTF-8 chunk
 * fails the call: VEIL_ERR_AUTH_FAILED), [DONE] required, then the signature
 * checked (VEIL_ERR_BAD_SIGNATURE). out as veil_client_chat's. */
veil_rc veil_client_chat_stream(veil_client *c, json_t *request, veil_chat_stream *o, veil_chat_result *out,
                                veil_err *err);

/* Fetches collateral for quote `q` (whose PCK certificate says `pck`) from
 * a PCS or PCCS at pcs_url (API v4) and returns it in the JSON that
 * veil_collateral_parse reads (*json_out malloc'd). processor_ca: the PCK
 * was issued by the Processor CA, else the Platform CA. */
veil_rc veil_pcs_collateral(const char *pcs_url, const veil_quote *q, const veil_pck_info *pck, int processor_ca,
                            char **json_out, veil_err *err);

#endif
