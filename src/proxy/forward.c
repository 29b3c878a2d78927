/* veil proxy's worker side: one chat completion forwarded upstream with
 * the protection its model allows (E2EE, else TEE-only or plain when the
 * proxy was told to allow them), and the tool's reply shaped from what was
 * verified: a stream whose [DONE] comes only after the response signature
 * checked out, or one chat.completion built from the verified stream. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "base/base.h"
#include "client/client_internal.h"
#include "proxy_internal.h"
#include "server/http_common.h"
#include "server/server.h"
#include "veil/buf.h"
#include "veil/secure.h"

/* The server's refusal when the key a request was sealed to is no longer its key. */
#define KEY_CHANGED "Model public key does not match this TEE"

typedef struct forward {
    proxy_job *j;
    int stream; /* the tool asked for a stream */
    int sent;   /* a chunk went to the tool */
    int hold;   /* --hold-until-verified: a stream's events wait in held until the signature checks out */
    veil_buf held;
    /* non-stream: the answer gathered from the verified chunks */
    veil_buf content, reasoning;
    json_t *first; /* the first chunk (id, created, model) */
    json_t *usage;
    char finish[32];
} forward;

/* What E2EE cannot carry in this request (the message the server would
 * refuse it with), or NULL. */
static const char *e2ee_blocker(json_t *body) {
    const char *unsupported = veil_e2ee_unsupported(body);
    if (unsupported)
        return unsupported;
    if (json_is_false(json_object_get(json_object_get(body, "venice_parameters"), "enable_e2ee")))
        return "The request turns E2EE off (venice_parameters.enable_e2ee is false)";
    return NULL;
}

static int on_chunk(void *ctx, json_t *chunk, const char *text, size_t n) {
    forward *f = ctx;
    proxy_job *j = f->j;
    if (atomic_load(&j->cancel))
        return 1; /* the tool left */
    json_t *choice = json_array_get(json_object_get(chunk, "choices"), 0);
    json_t *delta = json_object_get(choice, "delta");
    if (!j->t_first && json_string_length(json_object_get(delta, "content")))
        j->t_first = veil_now_s();
    if (f->stream && f->hold) { /* framed now, sent once verified */
        int ok = veil_buf_append(&f->held, "data: ", 6) && veil_buf_append(&f->held, text, n) &&
                 veil_buf_append(&f->held, "\n\n", 2);
        return ok ? 0 : 1;
    }
    if (f->stream) {
        if (!f->sent)
            proxy_job_open(j);
        proxy_job_event(j, text, n);
        f->sent = 1;
        return 0;
    }
    if (!f->first)
        f->first = json_incref(chunk);
    json_t *c = json_object_get(delta, "content"), *r = json_object_get(delta, "reasoning_content");
    if (json_string_length(c))
        veil_buf_append(&f->content, json_string_value(c), json_string_length(c));
    if (json_string_length(r))
        veil_buf_append(&f->reasoning, json_string_value(r), json_string_length(r));
    const char *fin = json_string_value(json_object_get(choice, "finish_reason"));
    if (fin)
        snprintf(f->finish, sizeof f->finish, "%s", fin);
    json_t *usage = json_object_get(chunk, "usage");
    if (json_is_object(usage)) {
        json_decref(f->usage);
        f->usage = json_incref(usage);
    }
    return 0;
}

static void on_flush(void *ctx) {
    forward *f = ctx;
    if (f->sent)
        proxy_job_flush(f->j);
}

/* The non-streamed reply: one chat.completion from the verified chunks. */
static json_t *completion(forward *f, const char *model) {
    json_t *message = json_pack("{s:s, s:s#}", "role", "assistant", "content", f->content.data ? f->content.data : "",
                                f->content.len);
    if (message && f->reasoning.len)
        json_object_set_new(message, "reasoning_content", json_stringn(f->reasoning.data, f->reasoning.len));
    json_t *id = json_object_get(f->first, "id"), *created = json_object_get(f->first, "created");
    json_t *m = json_object_get(f->first, "model");
    return json_pack("{s:o, s:s, s:o, s:o, s:[{s:i, s:o, s:s, s:n}], s:o}", "id",
                     id ? json_incref(id) : json_string(""), "object", "chat.completion", "created",
                     created ? json_incref(created) : json_integer(0), "model", m ? json_incref(m) : json_string(model),
                     "choices", "index", 0, "message", message, "finish_reason", f->finish[0] ? f->finish : "stop",
                     "logprobs", "usage", f->usage ? json_incref(f->usage) : json_null());
}

/* Ends a stream that already reached the tool with an error event and no [DONE]. */
static void stream_error(proxy_job *j, const char *message) {
    json_t *e = http_error_json(message, "server_error", NULL, "veil_verification_failed");
    char *text = json_dumps(e, JSON_COMPACT);
    json_decref(e);
    if (text)
        proxy_job_event(j, text, strlen(text));
    free(text);
}

void proxy_forward_chat(proxy_job *j) {
    proxy *p = j->p;
    const veil_proxy_config *c = p->cfg;
    const char *model = json_string_value(json_object_get(j->body, "model"));
    if (!model)
        return proxy_job_error(j, 400, "veil proxy: the request names no model");
    if (!json_is_array(json_object_get(j->body, "messages")))
        return proxy_job_error(j, 400, "veil proxy: the request has no messages array");
    char why[1200];
    proxy_caps caps = proxy_model_caps(p, model, why, sizeof why);
    if (caps == CAPS_ERROR)
        return proxy_job_error(j, 502, "veil proxy: %s", why);
    if (caps == CAPS_UNKNOWN)
        return proxy_job_error(j, 404, "veil proxy: %s", why);
    const char *blocker = caps == CAPS_E2EE ? e2ee_blocker(j->body) : NULL;
    int e2ee = caps == CAPS_E2EE && !blocker;
    if (caps == CAPS_E2EE && blocker && !c->allow_tee_only)
        return proxy_job_error(j, 400,
                               "veil proxy: %s. The proxy keeps every request to a TEE model end-to-end encrypted; "
                               "start it with --allow-tee-only to send such requests to the attested TEE unencrypted",
                               blocker);
    if (caps == CAPS_TEE && !c->allow_tee_only)
        return proxy_job_error(j, 400,
                               "veil proxy: %s is a TEE-only model: it cannot take end-to-end encrypted requests. "
                               "Start the proxy with --allow-tee-only to send them to its attested TEE unencrypted",
                               model);
    if (caps == CAPS_PLAIN && !c->allow_plain)
        return proxy_job_error(j, 400,
                               "veil proxy: %s is not a TEE model: nothing would protect or verify this request. "
                               "Start the proxy with --allow-plain to pass such requests through",
                               model);
    int attested = caps != CAPS_PLAIN;
    snprintf(j->mode, sizeof j->mode, "%s", e2ee ? "e2ee" : attested ? "tee" : "plain");

    forward f;
    memset(&f, 0, sizeof f);
    f.j = j;
    f.stream = json_is_true(json_object_get(j->body, "stream"));
    f.hold = c->hold_until_verified;
    f.content.secret = f.reasoning.secret = f.held.secret = 1;
    json_t *req = json_copy(j->body);
    if (req && !f.stream) /* the usage comes in the stream's last chunk */
        json_object_set_new(req, "stream_options", json_pack("{s:b}", "include_usage", 1));
    veil_chat_result res;
    veil_err err;
    veil_rc rc = VEIL_ERR_NOMEM;
    veil_chat_stream so;
    memset(&so, 0, sizeof so);
    for (int attempt = 0; req && attempt < 2; attempt++) {
        veil_attestation att;
        if (attested && !proxy_attestation(p, model, attempt > 0, &att, why, sizeof why)) {
            json_decref(req);
            return proxy_job_error(j, 503, "veil proxy: cannot verify the attestation of %s: %s", model, why);
        }
        snprintf(j->signer, sizeof j->signer, "%s", attested ? att.signing_address : "");
        unsigned gen;
        memset(&so, 0, sizeof so);
        so.att = attested ? &att : NULL;
        so.e2ee = e2ee;
        so.verify_signature = attested;
        so.on_chunk = on_chunk;
        so.on_flush = on_flush;
        so.ctx = &f;
        so.curl = proxy_handle_get(p, &gen);
        so.authorization = c->api_key ? NULL : j->authorization;
        rc = veil_client_chat_stream(p->client, req, &so, &res, &err);
        if (rc == VEIL_OK)
            proxy_handle_put(p, so.curl, gen);
        else
            curl_easy_cleanup(so.curl); /* a failed request's connection is not reused */
        /* the server's key changed since the attestation: attest again and resend, once */
        if (rc != VEIL_OK && !f.sent && so.status == 400 && !strcmp(so.error_message, KEY_CHANGED) && attempt == 0) {
            proxy_mark_stale(p, model);
            continue;
        }
        break;
    }
    json_decref(req);
    if (rc == VEIL_OK) {
        if (f.stream) {
            if (!f.sent)
                proxy_job_open(j);
            if (f.held.len)
                proxy_job_bytes(j, f.held.data, f.held.len);
            proxy_job_event(j, "[DONE]", 6);
        } else {
            proxy_job_reply(j, 200, completion(&f, model));
        }
        veil_chat_result_clear(&res);
    } else {
        if (rc == VEIL_ERR_BAD_SIGNATURE || rc == VEIL_ERR_AUTH_FAILED)
            proxy_mark_stale(p, model); /* another key answered: nothing more goes out on this attestation */
        if (atomic_load(&j->cancel)) {
            /* the tool left: nothing to tell it */
        } else if (f.sent) {
            char msg[600];
            snprintf(msg, sizeof msg, "veil proxy: the answer could not be verified and was cut off: %s", err.message);
            stream_error(j, msg);
        } else if (so.status >= 400 && so.status < 600) { /* the upstream's own refusal, as it said it */
            proxy_job_error(j, (int)so.status, "%s", so.error_message[0] ? so.error_message : err.message);
        } else {
            proxy_job_error(j, 502, "veil proxy: %s", err.message);
        }
    }
    veil_buf_free(&f.content);
    veil_buf_free(&f.reasoning);
    veil_buf_free(&f.held);
    json_decref(f.first);
    json_decref(f.usage);
}

void proxy_forward_models(proxy_job *j) {
    char path[600];
    snprintf(path, sizeof path, "/models%s%s", j->query[0] ? "?" : "", j->query);
    long status = 0;
    veil_err err;
    json_t *v = veil_client_get_json(j->p->client, path, &status, &err);
    if (!v)
        return proxy_job_error(j, 502, "veil proxy: %s", err.message);
    proxy_job_reply(j, status >= 200 && status < 600 ? (int)status : 502, v);
}
