/* The built-in engine as a veil serve backend: turns a validated chat
 * request into template tokens and sampling parameters, runs the generation
 * on the calling worker thread and hands its text to the sink. */
#include <stdlib.h>
#include <string.h>

#include "server.h"
#include "veil/engine.h"
#include "veil/secure.h"

typedef struct relay {
    const veil_gen_sink *sink;
} relay;

static void on_piece(void *ctx, const char *c, size_t cl, const char *r, size_t rl) {
    relay *x = ctx;
    x->sink->piece(x->sink->ctx, c ? c : "", cl, r ? r : "", rl);
    x->sink->flush(x->sink->ctx); /* the next token is a whole decode step away */
}

static int on_cancelled(void *ctx) {
    relay *x = ctx;
    return x->sink->cancelled(x->sink->ctx);
}

static double num(json_t *body, const char *key, double dflt) {
    json_t *v = json_object_get(body, key);
    return json_is_number(v) ? json_number_value(v) : dflt;
}

/* A message's text: its string, or its text parts joined by newlines. */
static char *message_text(json_t *content) {
    if (json_is_string(content))
        return strdup(json_string_value(content));
    size_t len = 0, i;
    json_t *part;
    json_array_foreach(content, i, part)
        len += json_string_length(json_object_get(part, "text")) + 1;
    char *s = malloc(len + 1), *o = s;
    if (!s)
        return NULL;
    json_array_foreach(content, i, part) {
        json_t *t = json_object_get(part, "text");
        if (!json_is_string(t))
            continue;
        if (o != s)
            *o++ = '\n';
        memcpy(o, json_string_value(t), json_string_length(t));
        o += json_string_length(t);
    }
    *o = 0;
    return s;
}

typedef struct engine {
    const veil_llm *llm;
    veil_kv_cache *cache; /* borrowed; NULL: no prefix reuse */
} engine;

static void generate(veil_backend *b, const veil_chat_request *req, const veil_gen_sink *sink) {
    const engine *eng = b->impl;
    const veil_llm *llm = eng->llm;
    json_t *body = req->body, *vp = json_object_get(body, "venice_parameters");
    size_t n = json_array_size(req->messages);
    veil_chat_msg *msgs = calloc(n ? n : 1, sizeof *msgs);
    char **texts = calloc(n ? n : 1, sizeof *texts);
    veil_tokens prompt = {0};
    const char *stops[4];
    size_t n_stop = 0;
    int ok = msgs && texts;
    for (size_t i = 0; ok && i < n; i++) {
        json_t *m = json_array_get(req->messages, i);
        msgs[i].role = json_string_value(json_object_get(m, "role"));
        ok = msgs[i].role && (texts[i] = message_text(json_object_get(m, "content")));
        if (ok)
            msgs[i].content = texts[i];
    }
    const veil_llm_info *info = veil_llm_get_info(llm);
    int disable_thinking = json_is_true(json_object_get(vp, "disable_thinking"));
    ok = ok && veil_chat_tokens(llm, msgs, n, disable_thinking, &prompt);
    if (!ok) {
        sink->fail(sink->ctx, NULL, 500, "Out of memory");
        goto done;
    }
    veil_gen_params p;
    memset(&p, 0, sizeof p);
    veil_sampling_default(&p.sampling);
    p.sampling.temperature = (float)num(body, "temperature", 1.0);
    p.sampling.top_p = (float)num(body, "top_p", 1.0);
    p.sampling.top_k = (int)num(body, "top_k", 0);
    p.sampling.min_p = (float)num(body, "min_p", 0);
    p.sampling.repetition_penalty = (float)num(body, "repetition_penalty", 1.0);
    p.sampling.presence_penalty = (float)num(body, "presence_penalty", 0);
    p.sampling.frequency_penalty = (float)num(body, "frequency_penalty", 0);
    json_t *seed = json_object_get(body, "seed");
    if (json_is_integer(seed))
        p.sampling.seed = (uint64_t)json_integer_value(seed) * 2 + 1; /* never 0: 0 = random */
    json_t *stop = json_object_get(body, "stop");
    if (json_is_string(stop))
        stops[n_stop++] = json_string_value(stop);
    size_t k;
    json_t *s;
    json_array_foreach(stop, k, s)
        if (n_stop < 4 && json_is_string(s))
            stops[n_stop++] = json_string_value(s);
    p.stop = stops;
    p.n_stop = n_stop;
    p.max_tokens = req->max_tokens ? req->max_tokens : req->model->max_completion_tokens;
    p.reasoning = info->arch == VEIL_ARCH_QWEN3;
    p.strip_thinking = json_is_true(json_object_get(vp, "strip_thinking_response"));
    p.cache = eng->cache; /* reused only under the same API key */
    memcpy(p.partition, req->key_hash, sizeof p.partition);
    relay x = {sink};
    veil_gen_callbacks cb = {&x, on_piece, on_cancelled};
    veil_gen_result res;
    veil_err err;
    veil_rc rc = veil_generate(llm, &prompt, &p, &cb, &res, &err);
    if (rc == VEIL_ERR_BAD_LENGTH)
        sink->fail(sink->ctx, "context_length_exceeded", 400, err.message);
    else if (rc != VEIL_OK)
        sink->fail(sink->ctx, NULL, 500, "The model failed to generate");
    else {
        if (sink->cached)
            sink->cached(sink->ctx, res.cached_tokens);
        sink->done(sink->ctx, res.finish_reason ? res.finish_reason : "stop", res.prompt_tokens, res.completion_tokens);
    }
done:
    for (size_t i = 0; texts && i < n; i++)
        if (texts[i]) {
            veil_wipe(texts[i], strlen(texts[i])); /* may be decrypted E2EE plaintext */
            free(texts[i]);
        }
    free(texts);
    free(msgs);
    if (prompt.ids)
        veil_wipe(prompt.ids, prompt.n * sizeof *prompt.ids);
    veil_wipe(p.partition, sizeof p.partition);
    veil_tokens_free(&prompt);
}

static void backend_free(veil_backend *b) {
    free(b->impl);
    free(b);
}

veil_backend *veil_engine_backend_new(const veil_llm *llm, veil_kv_cache *cache) {
    veil_backend *b = calloc(1, sizeof *b);
    engine *e = calloc(1, sizeof *e);
    if (!b || !e) {
        free(b);
        free(e);
        return NULL;
    }
    e->llm = llm;
    e->cache = cache;
    b->name = "engine";
    b->generate = generate;
    b->free = backend_free;
    b->impl = e;
    return b;
}
