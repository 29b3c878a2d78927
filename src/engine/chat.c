/* Chat templates (ChatML for qwen, llama-3, llama-2/mistral), rendered
 * straight to tokens: special tokens go in by id and the text between them
 * is tokenized as plain text, so message contents cannot forge a turn. */
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"

typedef struct render {
    const veil_tokenizer *tok;
    veil_tokens *out;
    veil_buf text; /* plain text waiting to be tokenized */
    int ok;
} render;

static void text(render *r, const char *s) {
    if (r->ok && !veil_buf_append(&r->text, s, strlen(s))) r->ok = 0;
}

static void flush(render *r) {
    if (r->ok && r->text.len && !veil_tokenize(r->tok, r->text.data, r->text.len, r->out)) r->ok = 0;
    veil_buf_consume(&r->text, r->text.len);
}

/* A special token by its text; when the vocabulary lacks it, its text. */
static void special(render *r, const char *s) {
    int32_t id = veil_token_find(r->tok, s);
    if (id < 0 || (veil_token_type(r->tok, id) != VEIL_TT_CONTROL && veil_token_type(r->tok, id) != VEIL_TT_USER)) {
        text(r, s);
        return;
    }
    flush(r);
    if (r->ok && !veil_tokens_push(r->out, id)) r->ok = 0;
}

static const char *role_of(const char *role) { return strcmp(role, "developer") == 0 ? "system" : role; }

/* Drops a <think>…</think> part from an earlier assistant answer, as the
 * qwen3 template does. */
static void text_no_think(render *r, const char *s) {
    const char *e = strstr(s, "</think>");
    if (e) {
        s = e + 8;
        while (*s == '\n') s++;
    }
    text(r, s);
}

/* Opens a llama-2 turn: <s>[INST] and the system prompt, if one waits. */
static void inst_open(render *r, int32_t bos, const char *sys) {
    flush(r);
    if (bos >= 0 && r->ok) r->ok = veil_tokens_push(r->out, bos);
    text(r, "[INST] ");
    if (sys) {
        text(r, "<<SYS>>\n");
        text(r, sys);
        text(r, "\n<</SYS>>\n\n");
    }
}

int veil_chat_tokens(const veil_llm *m, const veil_chat_msg *msgs, size_t n, int disable_thinking, veil_tokens *out) {
    render r = {m->tok, out, {.secret = 1}, 1}; /* the prompt: no stale copies */
    const veil_llm_info *in = &m->info;
    int32_t bos = veil_tokenizer_bos(m->tok);
    veil_gguf_str tmpl = {"", 0};
    veil_gguf_get_str(m->g, "tokenizer.chat_template", &tmpl);
    switch (in->tmpl) {
    case VEIL_TMPL_CHATML: {
        static const char qwen25[] = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";
        if ((n == 0 || strcmp(role_of(msgs[0].role), "system") != 0) &&
            memmem(tmpl.p, tmpl.len, qwen25, sizeof qwen25 - 1)) {
            special(&r, "<|im_start|>");
            text(&r, "system\n");
            text(&r, qwen25);
            special(&r, "<|im_end|>");
            text(&r, "\n");
        }
        for (size_t i = 0; i < n; i++) {
            const char *role = role_of(msgs[i].role);
            special(&r, "<|im_start|>");
            if (strcmp(role, "tool") == 0) {
                text(&r, "user\n<tool_response>\n");
                text(&r, msgs[i].content);
                text(&r, "\n</tool_response>");
            } else {
                text(&r, role);
                text(&r, "\n");
                if (strcmp(role, "assistant") == 0 && in->arch == VEIL_ARCH_QWEN3)
                    text_no_think(&r, msgs[i].content);
                else
                    text(&r, msgs[i].content);
            }
            special(&r, "<|im_end|>");
            text(&r, "\n");
        }
        special(&r, "<|im_start|>");
        text(&r, "assistant\n");
        if (disable_thinking && in->arch == VEIL_ARCH_QWEN3) {
            special(&r, "<think>");
            text(&r, "\n\n");
            special(&r, "</think>");
            text(&r, "\n\n");
        }
        break;
    }
    case VEIL_TMPL_LLAMA3:
        special(&r, "<|begin_of_text|>");
        for (size_t i = 0; i < n; i++) {
            const char *role = role_of(msgs[i].role);
            special(&r, "<|start_header_id|>");
            text(&r, strcmp(role, "tool") == 0 ? "ipython" : role);
            special(&r, "<|end_header_id|>");
            text(&r, "\n\n");
            text(&r, msgs[i].content);
            special(&r, "<|eot_id|>");
        }
        special(&r, "<|start_header_id|>");
        text(&r, "assistant");
        special(&r, "<|end_header_id|>");
        text(&r, "\n\n");
        break;
    case VEIL_TMPL_LLAMA2: {
        /* [INST] <<SYS>>\nsystem\n<</SYS>>\n\nuser [/INST] answer </s> */
        const char *sys = NULL;
        int open = 0;
        for (size_t i = 0; i < n; i++) {
            const char *role = role_of(msgs[i].role);
            if (strcmp(role, "system") == 0) {
                sys = msgs[i].content;
                continue;
            }
            if (strcmp(role, "assistant") == 0) {
                if (!open) continue; /* an answer without a question: nothing to attach it to */
                text(&r, " ");
                text(&r, msgs[i].content);
                text(&r, " ");
                flush(&r);
                if (veil_tokenizer_eos(m->tok) >= 0 && r.ok) r.ok = veil_tokens_push(out, veil_tokenizer_eos(m->tok));
                open = 0;
                continue;
            }
            inst_open(&r, bos, sys);
            sys = NULL;
            text(&r, msgs[i].content);
            text(&r, " [/INST]");
            open = 1;
        }
        if (!open) { /* the conversation must end with a question for the model to answer */
            inst_open(&r, bos, sys);
            text(&r, " [/INST]");
        }
        break;
    }
    }
    flush(&r);
    veil_buf_free(&r.text);
    return r.ok;
}
