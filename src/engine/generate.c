/* The generation loop: prefill, sample, detokenize in whole UTF-8
 * characters, route qwen3's <think> part to reasoning, hold back what may be
 * the start of a stop string, and stop at the end of the turn. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "engine_internal.h"
#include "veil/buf.h"
#include "veil/secure.h"

/* Length of the longest suffix of s[0..n) that is a proper prefix of tag. */
static size_t partial_suffix(const char *s, size_t n, const char *tag) {
    size_t tl = strlen(tag);
    for (size_t k = tl - 1 < n ? tl - 1 : n; k > 0; k--)
        if (memcmp(s + n - k, tag, k) == 0) return k;
    return 0;
}

/* Bytes of a complete UTF-8 prefix of s[0..n): a trailing incomplete
 * sequence waits for its next bytes. */
static size_t utf8_complete(const char *s, size_t n) {
    size_t i = n, k = 0;
    while (i > 0 && k < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) i--, k++;
    if (i == 0) return n;
    unsigned char b = (unsigned char)s[i - 1];
    size_t need = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
    return need > k + 1 ? i - 1 : n;
}

/* Appends s[0..n) to out with every invalid UTF-8 sequence replaced by
 * U+FFFD: a random or confused model can emit any bytes, and JSON needs text. */
static int sanitize(const char *s, size_t n, veil_buf *out) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, start = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = veil_utf8_next(u + i, n - i, &cp);
        int ok = k > 0;
        if (ok) {
            i += k;
            continue;
        }
        if (!veil_buf_append(out, s + start, i - start) || !veil_buf_append(out, "\xEF\xBF\xBD", 3)) return 0;
        start = ++i;
    }
    return veil_buf_append(out, s + start, n - start);
}

enum { TH_START, TH_IN, TH_AFTER, TH_CONTENT };

typedef veil_textout gen;

static void emit(gen *g, const char *c, size_t cl, const char *r, size_t rl) {
    if (g->p->strip_thinking) rl = 0;
    if (cl || rl) g->cb->piece(g->cb->ctx, c ? c : "", cl, r ? r : "", rl);
}

/* Routes released text to content or reasoning; final: flush everything. */
static int route(gen *g, const char *s, size_t n, int final) {
    if (!g->p->reasoning) {
        emit(g, s, n, NULL, 0);
        return 1;
    }
    if (!veil_buf_append(&g->think, s, n)) return 0;
    veil_buf *b = &g->think;
    for (;;) {
        if (g->th == TH_START) {
            size_t ws = 0;
            while (ws < b->len && (b->data[ws] == ' ' || b->data[ws] == '\n')) ws++;
            size_t rest = b->len - ws;
            if (rest >= 7 && memcmp(b->data + ws, "<think>", 7) == 0) {
                veil_buf_consume(b, ws + 7);
                g->th = TH_IN;
                continue;
            }
            if (!final && (rest == 0 || (rest < 7 && memcmp(b->data + ws, "<think>", rest) == 0))) return 1;
            g->th = TH_CONTENT;
            continue;
        }
        if (g->th == TH_IN) {
            char *e = memmem(b->data, b->len, "</think>", 8);
            if (e) {
                emit(g, NULL, 0, b->data, (size_t)(e - b->data));
                veil_buf_consume(b, (size_t)(e - b->data) + 8);
                g->th = TH_AFTER;
                continue;
            }
            size_t keep = final ? 0 : partial_suffix(b->data, b->len, "</think>");
            emit(g, NULL, 0, b->data, b->len - keep);
            veil_buf_consume(b, b->len - keep);
            return 1;
        }
        if (g->th == TH_AFTER) { /* the blank lines after </think> */
            size_t ws = 0;
            while (ws < b->len && (b->data[ws] == '\n' || b->data[ws] == ' ')) ws++;
            veil_buf_consume(b, ws);
            if (!b->len && !final) return 1;
            g->th = TH_CONTENT;
            continue;
        }
        emit(g, b->data, b->len, NULL, 0);
        veil_buf_consume(b, b->len);
        return 1;
    }
}

/* Releases what is safe from raw: whole characters, not a possible stop
 * string's start; a complete stop string ends the generation. */
static int release(gen *g, int final);

int veil_textout_feed(veil_textout *g, const char *bytes, size_t n) {
    g->raw.secret = g->think.secret = 1; /* the answer: no stale copies */
    return veil_buf_append(&g->raw, bytes, n) && release(g, 0);
}

int veil_textout_finish(veil_textout *g) {
    int ok = g->stopped || release(g, 1);
    if (ok && !g->stopped) route(g, "", 0, 1);
    return ok;
}

void veil_textout_clear(veil_textout *g) {
    veil_buf_free(&g->raw), veil_buf_free(&g->think);
    memset(g, 0, sizeof *g);
}

static int release(gen *g, int final) {
    veil_buf *b = &g->raw;
    size_t upto = final ? b->len : utf8_complete(b->data, b->len);
    size_t cut = upto, hold = 0;
    for (size_t i = 0; i < g->p->n_stop; i++) {
        const char *st = g->p->stop[i];
        size_t sl = strlen(st);
        if (!sl) continue;
        char *f = memmem(b->data, b->len, st, sl);
        if (f && (size_t)(f - b->data) < cut) {
            cut = (size_t)(f - b->data);
            g->stopped = 1;
        }
        size_t ps = partial_suffix(b->data, upto, st);
        if (ps > hold) hold = ps;
    }
    if (!g->stopped && !final) cut = upto - hold;
    veil_buf clean = {.secret = 1};
    int ok = sanitize(b->data, cut, &clean) && route(g, clean.data ? clean.data : "", clean.len, final || g->stopped);
    veil_buf_free(&clean);
    veil_buf_consume(b, g->stopped ? b->len : cut);
    return ok;
}

veil_rc veil_generate(const veil_llm *m, const veil_tokens *prompt, const veil_gen_params *p,
                      const veil_gen_callbacks *cb, veil_gen_result *res, veil_err *err) {
    memset(res, 0, sizeof *res);
    const veil_llm_info *in = &m->info;
    res->prompt_tokens = (long)prompt->n;
    if (prompt->n == 0) return veil_err_set(err, VEIL_ERR_INVALID_ARG, "empty prompt");
    if (prompt->n >= (size_t)in->ctx)
        return veil_err_set(err, VEIL_ERR_BAD_LENGTH,
                            "This model's maximum context length is %d tokens, but the prompt has %zu tokens", in->ctx,
                            prompt->n);
    long room = in->ctx - (long)prompt->n;
    long max = p->max_tokens > 0 && p->max_tokens < room ? p->max_tokens : room;
    /* with a cache, the session may grow to the whole context: a later turn continues it */
    size_t reuse = 0;
    veil_llm_session *s =
        p->cache ? veil_kv_cache_take(p->cache, m, p->partition, prompt->ids, prompt->n, &reuse) : NULL;
    if (!s) s = veil_llm_session_new(m, p->cache ? in->ctx : (int)(prompt->n + (size_t)max));
    res->cached_tokens = (long)reuse;
    size_t fed = 0; /* positions whose keys and values the session holds, in order */
    veil_sampler *sp = veil_sampler_new(&p->sampling, in->vocab);
    int32_t *hist = malloc((prompt->n + (size_t)max + 1) * sizeof *hist);
    float *logits = malloc((size_t)in->vocab * sizeof *logits);
    gen g = {p, cb, {0}, {0}, TH_START, 0};
    int decoding = 0;
    veil_rc rc = VEIL_OK;
    if (!s || !sp || !hist || !logits) {
        rc = veil_err_set(err, VEIL_ERR_NOMEM, "out of memory for a generation");
        goto done;
    }
    memcpy(hist, prompt->ids, prompt->n * sizeof *hist);
    size_t nh = prompt->n;
    double t0 = veil_now_s();
    const float *out = NULL;
    /* prefill in chunks, so that a client that leaves stops a long prompt early; the last
     * token's logits from the last chunk only */
    for (size_t i = reuse; i < prompt->n; i += 128) {
        if (i > reuse && cb->cancelled && cb->cancelled(cb->ctx)) goto done;
        size_t n = prompt->n - i < 128 ? prompt->n - i : 128;
        int last = i + n == prompt->n;
        if (last ? !(out = veil_llm_prefill(s, prompt->ids + i, n, (int)i, NULL))
                 : !veil_llm_prefill_kv(s, prompt->ids + i, n, (int)i)) {
            rc = veil_err_set(err, VEIL_ERR_MALFORMED, "a prompt token is outside the vocabulary");
            goto done;
        }
    }
    fed = prompt->n;
    double t1 = veil_now_s();
    res->prefill_s = t1 - t0;
    veil_llm_decode_begin(m);
    decoding = 1;
    const char *finish = "length";
    char piece[1100];
    for (long n = 0; n < max; n++) {
        if (cb->cancelled && cb->cancelled(cb->ctx)) goto done;
        memcpy(logits, out, (size_t)in->vocab * sizeof *logits);
        int32_t t = veil_sampler_pick(sp, logits, hist, nh);
        if (veil_token_ends_turn(m->tok, t)) {
            finish = "stop";
            break;
        }
        hist[nh++] = t;
        res->completion_tokens++;
        size_t pl = veil_token_bytes(m->tok, t, piece, sizeof piece);
        if (pl > sizeof piece) pl = sizeof piece;
        if (in->tok_kind == VEIL_TOK_SPM && res->completion_tokens == 1 && pl && piece[0] == ' ')
            memmove(piece, piece + 1, --pl); /* the space SentencePiece puts before a first word */
        if (!veil_textout_feed(&g, piece, pl)) {
            rc = veil_err_set(err, VEIL_ERR_NOMEM, "out of memory for a generation");
            goto done;
        }
        if (g.stopped) {
            finish = "stop";
            break;
        }
        if (n + 1 < max) {
            if (!(out = veil_llm_step(s, t, (int)(nh - 1)))) {
                rc = veil_err_set(err, VEIL_ERR_NOMEM, "out of memory for the KV cache");
                goto done;
            }
            fed = nh;
        }
    }
    if (!veil_textout_finish(&g)) {
        rc = veil_err_set(err, VEIL_ERR_NOMEM, "out of memory for a generation");
        goto done;
    }
    res->decode_s = veil_now_s() - t1;
    res->finish_reason = finish;
done:
    if (decoding) veil_llm_decode_end(m);
    if (s && p->cache && rc == VEIL_OK && res->finish_reason && fed) {
        veil_kv_cache_put(p->cache, m, p->partition, s, hist, fed); /* the next turn starts here */
        s = NULL;
    }
    veil_textout_clear(&g);
    veil_free_secret(hist, (prompt->n + (size_t)max + 1) * sizeof *hist);
    free(logits);
    veil_sampler_free(sp);
    veil_llm_session_free(s);
    return rc;
}
