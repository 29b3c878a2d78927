/* Validation of chat completion requests (docs/serve.md): strict keys,
 * types and ranges, capability gates, each refusal with its exact message. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "server.h"

static int refuse(veil_http_error *e, int status, const char *param, const char *fmt, ...) VEIL_PRINTF(4, 5);

static int refuse(veil_http_error *e, int status, const char *param, const char *fmt, ...) {
    e->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    return 0;
}

#define BAD(e, param, ...) refuse(e, 400, param, __VA_ARGS__)

static const char *const known_keys[] = {"model",
                                         "messages",
                                         "stream",
                                         "stream_options",
                                         "max_tokens",
                                         "max_completion_tokens",
                                         "temperature",
                                         "top_p",
                                         "top_k",
                                         "min_p",
                                         "repetition_penalty",
                                         "presence_penalty",
                                         "frequency_penalty",
                                         "seed",
                                         "stop",
                                         "n",
                                         "user",
                                         "metadata",
                                         "store",
                                         "venice_parameters",
                                         "tools",
                                         "tool_choice",
                                         "functions",
                                         "function_call",
                                         "parallel_tool_calls",
                                         "response_format",
                                         "logprobs",
                                         "top_logprobs"};

static int number_in(json_t *v, double lo, double hi) {
    if (!json_is_number(v))
        return 0;
    double x = json_number_value(v);
    return isfinite(x) && x >= lo && x <= hi;
}

static int check_messages(json_t *msgs, veil_http_error *e) {
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return BAD(e, "messages", "messages must be a non-empty array");
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        char param[48];
        snprintf(param, sizeof param, "messages[%zu]", i);
        if (!json_is_object(m))
            return BAD(e, param, "%s must be an object", param);
        const char *role = json_string_value(json_object_get(m, "role"));
        static const char *const roles[] = {"system", "developer", "user", "assistant", "tool"};
        size_t r = 0;
        while (role && r < 5 && strcmp(role, roles[r]) != 0)
            r++;
        if (!role || r == 5)
            return BAD(e, param, "%s.role must be one of system, developer, user, assistant, tool", param);
        json_t *content = json_object_get(m, "content");
        if (json_is_string(content))
            continue;
        if (json_is_null(content) || !content) {
            if (!strcmp(role, "assistant"))
                continue; /* an assistant turn that only called tools */
            return BAD(e, param, "%s.content must be a string or an array of content parts", param);
        }
        if (!json_is_array(content))
            return BAD(e, param, "%s.content must be a string or an array of content parts", param);
        size_t k;
        json_t *part;
        json_array_foreach(content, k, part) {
            const char *type = json_string_value(json_object_get(part, "type"));
            if (!json_is_object(part) || !type)
                return BAD(e, param, "%s.content[%zu] must be an object with a type", param, k);
            if (!strcmp(type, "text") && !json_is_string(json_object_get(part, "text")))
                return BAD(e, param, "%s.content[%zu].text must be a string", param, k);
        }
    }
    return 1;
}

int veil_chat_validate(const char *body, size_t len, const veil_model *(*find_model)(void *, const char *), void *ctx,
                       int (*e2ee_rules)(void *, json_t *, veil_chat_request *, veil_http_error *), void *rules_ctx,
                       veil_chat_request *out, veil_http_error *e) {
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(root)) {
        json_decref(root);
        return BAD(e, NULL, "Invalid JSON body");
    }
    int ok = 0;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        size_t i = 0;
        while (i < sizeof known_keys / sizeof known_keys[0] && strcmp(known_keys[i], key) != 0)
            i++;
        if (i == sizeof known_keys / sizeof known_keys[0]) {
            BAD(e, key, "Unrecognized request parameter: %s", key);
            goto out;
        }
    }
    const char *model_id = json_string_value(json_object_get(root, "model"));
    if (!model_id) {
        BAD(e, "model", "model must be a string");
        goto out;
    }
    const veil_model *model = find_model(ctx, model_id);
    if (!model) {
        refuse(e, 404, "model", "Model not found");
        goto out;
    }
    /* §3.3: the E2EE rules come right after the model, before everything else */
    out->model = model;
    if (e2ee_rules && !e2ee_rules(rules_ctx, root, out, e))
        goto out;
    if (!check_messages(json_object_get(root, "messages"), e))
        goto out;
    /* types and ranges */
    struct {
        const char *key;
        double lo, hi;
        int integer;
    } ranges[] = {
        {"max_tokens", 1, 1e9, 1},
        {"max_completion_tokens", 1, 1e9, 1},
        {"temperature", 0, 2, 0},
        {"top_p", 0, 1, 0},
        {"top_k", 0, 1e9, 1},
        {"min_p", 0, 1, 0},
        {"repetition_penalty", 0.01, 10, 0},
        {"presence_penalty", -2, 2, 0},
        {"frequency_penalty", -2, 2, 0},
        {"seed", -9.2e18, 9.2e18, 1},
        {"top_logprobs", 0, 20, 1},
    };
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
        json_t *x = json_object_get(root, ranges[i].key);
        if (!x || json_is_null(x))
            continue;
        if ((ranges[i].integer && !json_is_integer(x)) || !number_in(x, ranges[i].lo, ranges[i].hi)) {
            BAD(e, ranges[i].key, "%s must be %s between %g and %g", ranges[i].key,
                ranges[i].integer ? "an integer" : "a number", ranges[i].lo, ranges[i].hi);
            goto out;
        }
    }
    static const char *const bools[] = {"stream", "store", "logprobs", "parallel_tool_calls"};
    for (size_t i = 0; i < 4; i++) {
        json_t *x = json_object_get(root, bools[i]);
        if (x && !json_is_null(x) && !json_is_boolean(x)) {
            BAD(e, bools[i], "%s must be a boolean", bools[i]);
            goto out;
        }
    }
    json_t *n = json_object_get(root, "n");
    if (n && !json_is_null(n) && !(json_is_integer(n) && json_integer_value(n) == 1)) {
        BAD(e, "n", "n must be 1");
        goto out;
    }
    json_t *stop = json_object_get(root, "stop");
    if (stop && !json_is_null(stop) && !json_is_string(stop)) {
        size_t k;
        json_t *s;
        int good = json_is_array(stop) && json_array_size(stop) <= 4;
        json_array_foreach(stop, k, s)
            good &= json_is_string(s);
        if (!good) {
            BAD(e, "stop", "stop must be a string or an array of at most 4 strings");
            goto out;
        }
    }
    json_t *so = json_object_get(root, "stream_options");
    if (so && !json_is_null(so) &&
        (!json_is_object(so) ||
         (json_object_get(so, "include_usage") && !json_is_boolean(json_object_get(so, "include_usage"))))) {
        BAD(e, "stream_options", "stream_options must be an object with a boolean include_usage");
        goto out;
    }
    static const char *const objects[] = {"metadata", "venice_parameters"};
    for (size_t i = 0; i < 2; i++) {
        json_t *x = json_object_get(root, objects[i]);
        if (x && !json_is_null(x) && !json_is_object(x)) {
            BAD(e, objects[i], "%s must be an object", objects[i]);
            goto out;
        }
    }
    json_t *user = json_object_get(root, "user");
    if (user && !json_is_null(user) && !json_is_string(user)) {
        BAD(e, "user", "user must be a string");
        goto out;
    }
    /* capability gates */
    static const char *const tool_keys[] = {"tools", "tool_choice", "functions", "function_call",
                                            "parallel_tool_calls"};
    for (size_t i = 0; i < 5; i++)
        if (json_object_get(root, tool_keys[i]) && !model->function_calling) {
            BAD(e, tool_keys[i], "%s is not supported by this model", tool_keys[i]);
            goto out;
        }
    if (json_object_get(root, "response_format") && !model->response_schema) {
        BAD(e, "response_format", "response_format is not supported by this model");
        goto out;
    }
    static const char *const lp_keys[] = {"logprobs", "top_logprobs"};
    for (size_t i = 0; i < 2; i++)
        if (json_object_get(root, lp_keys[i]) && !model->logprobs) {
            BAD(e, lp_keys[i], "%s is not supported by this model", lp_keys[i]);
            goto out;
        }
    json_t *vp = json_object_get(root, "venice_parameters");
    const char *web = json_string_value(json_object_get(vp, "enable_web_search"));
    if (web && !strcmp(web, "on")) {
        BAD(e, "venice_parameters.enable_web_search", "Web search is not supported");
        goto out;
    }
    /* the request as the backend sees it */
    out->body = json_incref(root);
    out->stream = json_is_true(json_object_get(root, "stream"));
    out->include_usage = json_is_true(json_object_get(so, "include_usage"));
    json_t *mt = json_object_get(root, "max_completion_tokens");
    if (!json_is_integer(mt))
        mt = json_object_get(root, "max_tokens");
    out->max_tokens = json_is_integer(mt) ? (long)json_integer_value(mt) : 0;
    out->messages = json_deep_copy(json_object_get(root, "messages"));
    json_t *inc = json_object_get(vp, "include_venice_system_prompt");
    if (model->system_prompt && !json_is_false(inc) && !out->e2ee) /* never under E2EE */
        json_array_insert_new(out->messages, 0,
                              json_pack("{s:s, s:s}", "role", "system", "content", model->system_prompt));
    ok = 1;
out:
    json_decref(root);
    if (!ok)
        out->model = NULL;
    return ok;
}

int veil_http_bad_request(veil_http_error *e, const char *msg) { return BAD(e, NULL, "%s", msg); }

void veil_chat_request_clear(veil_chat_request *r) {
    json_decref(r->body);
    json_decref(r->messages);
    memset(r, 0, sizeof *r);
}
