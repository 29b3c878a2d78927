/* Replies of veil serve: JSON bodies with their status line, the OpenAI
 * error shape, CORS and TEE headers, and the one log line per request. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "base/base.h"
#include "http_internal.h"
#include "tee.h"

FILE *http_log(server *s) { return s->cfg->log ? s->cfg->log : stderr; }

void http_log_request(server *s, const char *method, const char *path, int status, double t0, size_t bytes,
                      const char *id) {
    time_t t = time(NULL);
    struct tm tm;
    char when[32];
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(http_log(s), "%s %s %s %d %.1fms %zuB%s%s\n", when, method, path, status, (veil_now_s() - t0) * 1000.0,
            bytes, id ? " " : "", id ? id : "");
    fflush(http_log(s));
}

const char *http_method_name(struct evhttp_request *req) {
    switch (evhttp_request_get_command(req)) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PATCH: return "PATCH";
    default: return "OTHER";
    }
}

void http_cors(server *s, struct evhttp_request *req) {
    if (!s->cfg->cors_origin)
        return;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Access-Control-Allow-Origin", s->cfg->cors_origin);
    evhttp_add_header(h, "Access-Control-Allow-Headers",
                      "Authorization, Content-Type, X-Venice-TEE-Client-Pub-Key, X-Venice-TEE-Model-Pub-Key, "
                      "X-Venice-TEE-Signing-Algo, X-Signing-Algo, X-Client-Pub-Key, X-Model-Pub-Key");
    evhttp_add_header(h, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    evhttp_add_header(h, "Access-Control-Expose-Headers", "X-Venice-TEE, X-Venice-TEE-Provider");
}

void http_tee_headers(server *s, struct evhttp_request *req, const veil_model *m) {
    if (!s->cfg->tee || !(m->tee || m->e2ee))
        return;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "X-Venice-TEE", "true");
    evhttp_add_header(h, "X-Venice-TEE-Provider", veil_tee_provider_name(s->cfg->tee));
}

const char *http_reason(int status) {
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

size_t http_send_text(server *s, struct evhttp_request *req, int status, const char *text, size_t n) {
    struct evbuffer *b = evbuffer_new();
    if (b && text)
        evbuffer_add(b, text, n);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json");
    http_cors(s, req);
    evhttp_send_reply(req, status, http_reason(status), b);
    evbuffer_free(b);
    return n;
}

size_t http_send_json(server *s, struct evhttp_request *req, int status, json_t *v) {
    char *text = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    size_t n = http_send_text(s, req, status, text, text ? strlen(text) : 0);
    free(text);
    return n;
}

json_t *http_error_json(const char *message, const char *type, const char *param, const char *code) {
    return json_pack("{s:{s:s, s:s, s:o, s:o}}", "error", "message", message, "type", type, "param",
                     param && *param ? json_string(param) : json_null(), "code",
                     code && *code ? json_string(code) : json_null());
}

const char *http_error_type(int status) {
    switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

size_t http_send_error(server *s, struct evhttp_request *req, int status, const char *message, const char *param) {
    return http_send_json(s, req, status, http_error_json(message, http_error_type(status), param, NULL));
}
