/* Client-side chat: plain, TEE-only and E2EE completions over a streamed
 * response, with the optional check of the response signature against the
 * attested signing address. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "client_internal.h"
#include "veil/buf.h"
#include "veil/client.h"
#include "veil/ecies.h"
#include "veil/eth.h"
#include "veil/hex.h"
#include "veil/secure.h"
#include "veil/sse.h"

typedef struct stream_state {
    veil_chat_stream *o;
    veil_chat_result *out;
    veil_seckey *key; /* E2EE: this request's ephemeral key; NULL otherwise */
    veil_sse *sse;
    veil_buf raw; /* every response byte, for the signature check */
    veil_buf answer;
    int done, failed;
    char error[300];
    long status;
    CURL *curl;
} stream_state;

static int fail(stream_state *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(stream_state *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->error, sizeof s->error, fmt, ap);
    va_end(ap);
    s->failed = 1;
    return 1; /* stop the parser */
}

static int on_event(void *ctx, const char *event, const char *data, size_t n) {
    (void)event;
    stream_state *s = ctx;
    if (s->done)
        return fail(s, "the stream went on after [DONE]");
    veil_chat_event ev;
    veil_err e;
    if (veil_chat_event_open(&ev, s->key, data, n, s->o->on_chunk != NULL, &e) != VEIL_OK)
        return fail(s, "%s", e.message);
    if (ev.done) {
        s->done = 1;
        return 0;
    }
    const char *id = json_string_value(json_object_get(ev.chunk, "id"));
    if (id && !s->out->request_id[0])
        snprintf(s->out->request_id, sizeof s->out->request_id, "%s", id);
    json_t *content =
        json_object_get(json_object_get(json_array_get(json_object_get(ev.chunk, "choices"), 0), "delta"), "content");
    if (json_string_length(content)) {
        veil_buf_append(&s->answer, json_string_value(content), json_string_length(content));
        if (s->o->on_text)
            s->o->on_text(s->o->ctx, json_string_value(content), json_string_length(content));
    }
    int rc = 0;
    if (s->o->on_chunk && s->o->on_chunk(s->o->ctx, ev.chunk, ev.text.data, ev.text.len) != 0) {
        s->o->stopped = 1;
        rc = 1;
    }
    veil_chat_event_clear(&ev);
    return rc;
}

static size_t on_data(char *p, size_t size, size_t nmemb, void *ctx) {
    stream_state *s = ctx;
    size_t n = size * nmemb;
    if (!s->status)
        curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &s->status);
    if (!veil_buf_append(&s->raw, p, n))
        return 0;
    if (s->status != 200)
        return n; /* an error body, read whole below */
    int ok = veil_sse_feed(s->sse, p, n, NULL) == VEIL_OK && !s->failed && !s->o->stopped;
    if (ok && s->o->on_flush)
        s->o->on_flush(s->o->ctx);
    return ok ? n : 0;
}

/* Seals one message's content in place: a string, or each text part of an
 * array. Returns VEIL_OK, or VEIL_ERR_INVALID_ARG for a part that is not
 * text (E2EE cannot carry it). */
static veil_rc seal_content(json_t *m, const veil_pubkey *to, veil_err *err) {
    json_t *content = json_object_get(m, "content");
    json_t *parts = json_is_array(content) ? content : NULL;
    size_t n = parts ? json_array_size(parts) : 1;
    for (size_t i = 0; i < n; i++) {
        json_t *holder = parts ? json_array_get(parts, i) : m;
        const char *field = parts ? "text" : "content";
        if (parts) {
            const char *type = json_string_value(json_object_get(holder, "type"));
            if (!type || strcmp(type, "text") != 0)
                return veil_err_set(err, VEIL_ERR_INVALID_ARG, "File uploads are not supported with E2EE");
        }
        json_t *text = json_object_get(holder, field);
        if (!json_is_string(text))
            continue;
        char *hex = NULL;
        veil_rc rc =
            veil_ecies_seal_hex(&hex, to, (const uint8_t *)json_string_value(text), json_string_length(text), err);
        if (rc != VEIL_OK)
            return rc;
        json_object_set_new(holder, field, json_string(hex));
        free(hex);
    }
    return VEIL_OK;
}

/* Every message but tool results sealed to `to` (a deep copy; owned), or NULL with err set. */
static json_t *seal_messages(json_t *messages, const veil_pubkey *to, veil_err *err) {
    json_t *out = json_deep_copy(messages);
    size_t i;
    json_t *m;
    json_array_foreach(out, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!role || !strcmp(role, "tool"))
            continue;
        if (seal_content(m, to, err) != VEIL_OK) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

/* Fetches and checks the signature of the response just read, over h (the
 * connection the answer came on) when given. */
static veil_rc check_signature(veil_client *c, stream_state *s, const char *model, const char *body, veil_err *err) {
    const veil_chat_result *r = s->out;
    char path[256];
    char *m = curl_escape(model, 0), *id = curl_escape(r->request_id, 0);
    snprintf(path, sizeof path, "/tee/signature?model=%s&request_id=%s", m ? m : "", id ? id : "");
    curl_free(m);
    curl_free(id);
    long status = 0;
    json_t *sig = veil_client_get_json_on(c, s->o->curl, path, &status, NULL);
    if (sig && status != 200) {
        json_decref(sig);
        sig = NULL;
    }
    if (!sig)
        return veil_err_set(err, VEIL_ERR_BAD_SIGNATURE, "no signature for %s (HTTP %ld)", r->request_id, status);
    uint8_t hq[32], hr[32];
    char want[130];
    EVP_Digest(body, strlen(body), hq, NULL, EVP_sha256(), NULL);
    EVP_Digest(s->raw.data ? s->raw.data : "", s->raw.len, hr, NULL, EVP_sha256(), NULL);
    veil_hex_encode(want, hq, 32);
    want[64] = ':';
    veil_hex_encode(want + 65, hr, 32);
    const char *text = json_string_value(json_object_get(sig, "text"));
    const char *signature = json_string_value(json_object_get(sig, "signature"));
    veil_rc rc = VEIL_OK;
    uint8_t signer[20];
    if (!text || strcmp(text, want) != 0)
        rc = veil_err_set(err, VEIL_ERR_BAD_SIGNATURE, "the signed text does not match the bytes sent and received");
    else if (!signature ||
             veil_eip191_recover_address(signer, text, strlen(text), signature, strlen(signature), err) != VEIL_OK)
        rc = veil_err_set(err, VEIL_ERR_BAD_SIGNATURE, "the response signature does not recover");
    else {
        uint8_t attested[20];
        const char *a = s->o->att->signing_address;
        if (veil_eth_address_parse(attested, a, strlen(a), NULL) != VEIL_OK || memcmp(attested, signer, 20) != 0)
            rc = veil_err_set(err, VEIL_ERR_BAD_SIGNATURE,
                              "the response was signed by another key than the attested one");
    }
    json_decref(sig);
    return rc;
}

/* The messages as the request's JSON array (owned), or NULL when one is not
 * UTF-8 or memory ran out. */
static json_t *messages_json(const veil_message *messages, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) {
        json_t *content = json_stringn(messages[i].content ? messages[i].content : "", messages[i].content_len);
        if (!content || !messages[i].role ||
            json_array_append_new(a, json_pack("{s:s, s:o}", "role", messages[i].role, "content", content)) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

/* The request body to send: `request` with stream on and, under E2EE, the
 * messages sealed to the attested key (malloc'd JSON text), or NULL with err set. */
static char *request_body(json_t *request, const veil_chat_stream *o, veil_err *err) {
    json_t *req = json_copy(request);
    if (!req) {
        veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    json_object_set_new(req, "stream", json_true());
    if (o->e2ee) {
        json_t *sealed = seal_messages(json_object_get(request, "messages"), &o->att->signing_key, err);
        if (!sealed) {
            json_decref(req);
            return NULL;
        }
        json_object_set_new(req, "messages", sealed);
    }
    char *body = json_dumps(req, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(req);
    if (!body)
        veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    return body;
}

veil_rc veil_client_chat_stream(veil_client *c, json_t *request, veil_chat_stream *o, veil_chat_result *out,
                                veil_err *err) {
    memset(out, 0, sizeof *out);
    o->status = 0;
    o->stopped = 0;
    o->error_message[0] = 0;
    if ((o->e2ee || o->verify_signature) && !o->att)
        return veil_err_set(err, VEIL_ERR_INVALID_ARG, "E2EE and signature checks need an attestation");
    if (o->att)
        out->attestation = *o->att;
    const char *model = json_string_value(json_object_get(request, "model"));
    if (!model || !json_is_array(json_object_get(request, "messages")))
        return veil_err_set(err, VEIL_ERR_INVALID_ARG, "a chat request needs a model and messages");
    veil_seckey key;
    veil_pubkey pub;
    char pub_hex[VEIL_PUBKEY_HEX_LEN + 1], model_hex[VEIL_PUBKEY_HEX_LEN + 1];
    veil_rc rc;
    if (o->e2ee) {
        if ((rc = veil_seckey_generate(&key, err)) != VEIL_OK ||
            (rc = veil_pubkey_from_seckey(&pub, &key, err)) != VEIL_OK)
            return rc;
        veil_pubkey_to_hex(pub_hex, &pub);
        veil_pubkey_to_hex(model_hex, &o->att->signing_key);
    }
    char *body = request_body(request, o, err);
    if (!body) {
        if (o->e2ee)
            veil_seckey_wipe(&key);
        return err ? err->code : VEIL_ERR_NOMEM;
    }
    stream_state s;
    memset(&s, 0, sizeof s);
    s.answer.secret = 1; /* plaintext: no stale copies as it grows */
    s.o = o;
    s.out = out;
    s.key = o->e2ee ? &key : NULL;
    s.sse = veil_sse_new(1 << 20, on_event, &s);
    s.raw.limit = 256u << 20;
    char url[2048];
    snprintf(url, sizeof url, "%s/chat/completions", veil_client_base(c));
    s.curl = o->curl ? o->curl : curl_easy_init();
    const char *auth = NULL;
    int withheld = s.curl ? veil_client_curl_tls(c, s.curl, &auth) : 0;
    if (o->authorization && !withheld)
        auth = o->authorization;
    withheld = withheld && (o->authorization || veil_client_has_key(c));
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (auth)
        h = curl_slist_append(h, auth);
    char hdr[3][200];
    if (o->e2ee) {
        snprintf(hdr[0], sizeof hdr[0], "X-Venice-TEE-Client-Pub-Key: %s", pub_hex);
        snprintf(hdr[1], sizeof hdr[1], "X-Venice-TEE-Model-Pub-Key: %s", model_hex);
        snprintf(hdr[2], sizeof hdr[2], "X-Venice-TEE-Signing-Algo: ecdsa");
        for (int i = 0; i < 3; i++)
            h = curl_slist_append(h, hdr[i]);
    }
    CURLcode cc = CURLE_FAILED_INIT;
    if (withheld) {
        fail(&s, "attested TLS: no attested TLS key is pinned yet, so the API key is not sent");
    } else if (s.curl && s.sse) {
        curl_easy_setopt(s.curl, CURLOPT_URL, url);
        curl_easy_setopt(s.curl, CURLOPT_HTTPGET, 0L);
        curl_easy_setopt(s.curl, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(s.curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(s.curl, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(s.curl, CURLOPT_WRITEDATA, &s);
        curl_easy_setopt(s.curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(s.curl, CURLOPT_TIMEOUT, 0L);
        curl_easy_setopt(s.curl, CURLOPT_CONNECTTIMEOUT, veil_client_timeout(c));
        curl_easy_setopt(s.curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(s.curl, CURLOPT_LOW_SPEED_TIME, veil_client_timeout(c));
        cc = curl_easy_perform(s.curl);
        curl_easy_getinfo(s.curl, CURLINFO_RESPONSE_CODE, &s.status);
        curl_easy_setopt(s.curl, CURLOPT_HTTPHEADER, NULL); /* h is freed below; the handle lives on */
        curl_easy_setopt(s.curl, CURLOPT_POSTFIELDS, NULL);
    }
    if (!o->curl)
        curl_easy_cleanup(s.curl);
    curl_slist_free_all(h);
    veil_sse_free(s.sse);
    if (o->e2ee)
        veil_seckey_wipe(&key);
    o->status = s.status;
    rc = VEIL_OK;
    if (s.failed) {
        rc = veil_err_set(err, o->e2ee ? VEIL_ERR_AUTH_FAILED : VEIL_ERR_IO, "%s", s.error);
    } else if (o->stopped) {
        rc = veil_err_set(err, VEIL_ERR_IO, "stopped by the caller");
    } else if (s.status != 200) {
        json_t *e = s.raw.data ? json_loads(s.raw.data, 0, NULL) : NULL;
        const char *m = json_string_value(json_object_get(json_object_get(e, "error"), "message"));
        snprintf(o->error_message, sizeof o->error_message, "%s", m ? m : "");
        rc = veil_err_set(err, VEIL_ERR_IO, "HTTP %ld: %s", s.status, m ? m : "no message");
        json_decref(e);
    } else if (cc != CURLE_OK) {
        rc = veil_err_set(err, VEIL_ERR_IO, "%s", curl_easy_strerror(cc));
    } else if (!s.done) {
        rc = veil_err_set(err, VEIL_ERR_IO, "the stream ended without [DONE]");
    } else if (o->verify_signature) {
        rc = check_signature(c, &s, model, body, err);
        out->signature_checked = rc == VEIL_OK;
    }
    free(body);
    veil_buf_free(&s.raw);
    if (rc == VEIL_OK) {
        out->answer = s.answer.data;
        out->answer_len = s.answer.len;
    } else if (s.answer.data) {
        veil_free_secret(s.answer.data, s.answer.len + 1);
    }
    return rc;
}

veil_rc veil_client_chat(veil_client *c, veil_chat_result *out, const veil_chat_options *o,
                         const veil_message *message_list, size_t n_messages, veil_err *err) {
    memset(out, 0, sizeof *out);
    veil_chat_mode mode = o->mode;
    if (mode == VEIL_CHAT_AUTO) {
        /* E2EE where the model supports it, else TEE-only for TEE models, else plain */
        json_t *list = veil_client_models_json(c, err), *m, *found = NULL;
        size_t i;
        if (!list)
            return err ? err->code : VEIL_ERR_IO;
        json_array_foreach(json_object_get(list, "data"), i, m) {
            const char *id = json_string_value(json_object_get(m, "id"));
            if (id && !strcmp(id, o->model))
                found = json_object_get(json_object_get(m, "model_spec"), "capabilities");
        }
        mode = json_is_true(json_object_get(found, "supportsE2EE"))             ? VEIL_CHAT_E2EE
               : json_is_true(json_object_get(found, "supportsTeeAttestation")) ? VEIL_CHAT_TEE
                                                                                : VEIL_CHAT_PLAIN;
        json_decref(list);
    }
    veil_attestation att;
    veil_rc rc = VEIL_OK;
    if (mode != VEIL_CHAT_PLAIN) {
        veil_attest_options ao = o->attest;
        ao.model = o->model;
        rc = veil_client_attest(c, &att, &ao, err);
        if (rc != VEIL_OK)
            return rc;
        if (!att.accepted) {
            out->attestation = att;
            out->mode = mode;
            return veil_err_set(err, VEIL_ERR_AUTH_FAILED, "the attestation was refused (run veil attest for details)");
        }
    }
    json_t *messages = messages_json(message_list, n_messages);
    if (!messages)
        return veil_err_set(err, VEIL_ERR_INVALID_ARG, "a message has no role, or content that is not UTF-8");
    json_t *req = json_pack("{s:s, s:o}", "model", o->model, "messages", messages);
    veil_chat_stream so;
    memset(&so, 0, sizeof so);
    so.att = mode != VEIL_CHAT_PLAIN ? &att : NULL;
    so.e2ee = mode == VEIL_CHAT_E2EE;
    so.verify_signature = o->verify_signature && mode != VEIL_CHAT_PLAIN;
    so.on_text = o->on_text;
    so.ctx = o->ctx;
    rc = req ? veil_client_chat_stream(c, req, &so, out, err) : veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    json_decref(req);
    out->mode = mode;
    return rc;
}

void veil_chat_result_clear(veil_chat_result *r) {
    if (r->answer)
        veil_free_secret(r->answer, r->answer_len + 1);
    memset(r, 0, sizeof *r);
}
