/* Tokenizers from GGUF metadata: byte-level BPE (GPT-2 style, with the
 * pre-tokenizers of the GPT-2, llama-3 and qwen2 families) and
 * SentencePiece-style (piece scores, byte fallback). Both merge with a heap
 * so that a long run of one character costs n log n, not n². */
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "engine_internal.h"
#include "unicode_tables.h"

#define MAX_VOCAB (1 << 24)

typedef enum { PRE_GPT2, PRE_LLAMA3, PRE_QWEN2 } pre_kind;

typedef struct hent {
    const char *s;
    uint32_t len;
    int32_t id;
} hent;

typedef struct ment {
    uint64_t key; /* left << 32 | right; 0 = empty slot (token 0 ⊕ token 0 is stored with key+1 below) */
    int32_t rank, merged;
} ment;

struct veil_tokenizer {
    veil_tok_kind kind;
    pre_kind pre;
    int32_t n;
    veil_gguf_str *text;
    uint8_t *type;
    float *score;
    uint8_t *ends_turn;
    hent *h;
    size_t hcap;
    ment *mg;
    size_t mcap;
    int32_t byte_tok[256]; /* id of each byte: BPE its mapped char, SPM <0xXX> */
    int32_t bos, eos, unk;
    int add_bos, add_space_prefix;
    uint16_t byte_cp[256]; /* GPT-2 byte → code point */
    int16_t cp_byte[512];  /* code point → byte, -1 */
};

/* ---- Unicode classes ---- */

static int in_ranges(uint32_t c, const uint32_t (*r)[2], size_t n) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < r[mid][0])
            hi = mid;
        else if (c > r[mid][1])
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}
static int is_L(uint32_t c) {
    if (c < 128) return (c | 32) >= 'a' && (c | 32) <= 'z';
    return in_ranges(c, unicode_letter, sizeof unicode_letter / sizeof unicode_letter[0]);
}
static int is_N(uint32_t c) {
    if (c < 128) return c >= '0' && c <= '9';
    return in_ranges(c, unicode_number, sizeof unicode_number / sizeof unicode_number[0]);
}
/* Unicode White_Space */
static int is_S(uint32_t c) {
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}
static int is_other(uint32_t c) { return !is_S(c) && !is_L(c) && !is_N(c); }
static int is_nl(uint32_t c) { return c == '\r' || c == '\n'; }
static uint32_t lower_ascii(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* Decodes UTF-8 into code points with byte offsets; an invalid byte stands
 * alone as a code point of its own (0x110000 + byte: no class). */
static size_t utf8_decode(const uint8_t *s, size_t len, uint32_t *cp, size_t *off) {
    size_t n = 0, i = 0;
    while (i < len) {
        uint32_t c;
        size_t k = veil_utf8_next(s + i, len - i, &c);
        if (!k) {
            c = 0x110000u + s[i];
            k = 1;
        }
        cp[n] = c;
        off[n++] = i;
        i += k;
    }
    off[n] = len;
    return n;
}

/* End of the pre-token starting at i (the regexes of llama.cpp's
 * pre-tokenizers, alternative by alternative). */
static size_t pretok_end(pre_kind pre, const uint32_t *c, size_t n, size_t i) {
    size_t j;
    if (c[i] == '\'' && i + 1 < n) { /* contractions: case-insensitive (ASCII) except GPT-2's */
        uint32_t a = pre == PRE_GPT2 ? c[i + 1] : lower_ascii(c[i + 1]);
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
        if (i + 2 < n) {
            uint32_t b = pre == PRE_GPT2 ? c[i + 2] : lower_ascii(c[i + 2]);
            if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
        }
    }
    if (pre == PRE_GPT2) {
        j = c[i] == ' ' && i + 1 < n && !is_S(c[i + 1]) ? i + 1 : i;
        if (is_L(c[j])) {
            while (j < n && is_L(c[j])) j++;
            return j;
        }
        if (is_N(c[j])) {
            while (j < n && is_N(c[j])) j++;
            return j;
        }
        if (is_other(c[j])) {
            while (j < n && is_other(c[j])) j++;
            return j;
        }
    } else {
        j = i;
        if (!is_L(c[j]) && !is_N(c[j]) && !is_nl(c[j]) && j + 1 < n && is_L(c[j + 1])) j++;
        if (is_L(c[j])) {
            while (j < n && is_L(c[j])) j++;
            return j;
        }
        if (is_N(c[i])) {
            size_t max = pre == PRE_QWEN2 ? 1 : 3;
            for (j = i; j < n && j - i < max && is_N(c[j]);) j++;
            return j;
        }
        j = c[i] == ' ' && i + 1 < n && is_other(c[i + 1]) ? i + 1 : i;
        if (is_other(c[j])) {
            while (j < n && is_other(c[j])) j++;
            while (j < n && is_nl(c[j])) j++;
            return j;
        }
    }
    if (is_S(c[i])) {
        size_t e = i;
        while (e < n && is_S(c[e])) e++;
        if (pre != PRE_GPT2)
            for (size_t k = e; k > i; k--)
                if (is_nl(c[k - 1])) return k; /* \s*[\r\n]+ */
        if (e == n || e - i < 2) return e;     /* \s+(?!\S) at the end, or \s+ */
        return e - 1;
    }
    return i + 1;
}

/* ---- hash tables ---- */

static uint64_t fnv(const void *p, size_t n) {
    const uint8_t *b = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static int32_t lookup(const veil_tokenizer *t, const char *s, size_t len) {
    for (size_t i = fnv(s, len) & (t->hcap - 1);; i = (i + 1) & (t->hcap - 1)) {
        const hent *e = &t->h[i];
        if (!e->s) return -1;
        if (e->len == len && memcmp(e->s, s, len) == 0) return e->id;
    }
}

static uint64_t mix(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    return k ^ (k >> 33);
}

static const ment *merge_find(const veil_tokenizer *t, int32_t l, int32_t r) {
    if (!t->mcap) return NULL;
    uint64_t key = ((uint64_t)(uint32_t)l << 32 | (uint32_t)r) + 1;
    for (size_t i = mix(key) & (t->mcap - 1);; i = (i + 1) & (t->mcap - 1)) {
        if (!t->mg[i].key) return NULL;
        if (t->mg[i].key == key) return &t->mg[i];
    }
}

/* ---- loading ---- */

void veil_tokenizer_free(veil_tokenizer *t) {
    if (!t) return;
    free(t->text), free(t->type), free(t->score), free(t->ends_turn), free(t->h), free(t->mg);
    free(t);
}

static void gpt2_byte_map(veil_tokenizer *t) {
    memset(t->cp_byte, -1, sizeof t->cp_byte);
    for (int b = 0; b < 256; b++) {
        t->byte_cp[b] = (uint16_t)veil_gpt2_byte_cp((uint8_t)b);
        t->cp_byte[t->byte_cp[b]] = (int16_t)b;
    }
}

static size_t put_utf8(uint32_t c, char *o) {
    if (c < 0x80) return o[0] = (char)c, 1;
    if (c < 0x800) return o[0] = (char)(0xC0 | c >> 6), o[1] = (char)(0x80 | (c & 63)), 2;
    if (c < 0x10000)
        return o[0] = (char)(0xE0 | c >> 12), o[1] = (char)(0x80 | ((c >> 6) & 63)), o[2] = (char)(0x80 | (c & 63)), 3;
    return o[0] = (char)(0xF0 | c >> 18), o[1] = (char)(0x80 | ((c >> 12) & 63)), o[2] = (char)(0x80 | ((c >> 6) & 63)),
           o[3] = (char)(0x80 | (c & 63)), 4;
}

static int32_t get_id(const veil_gguf *g, const char *key, int32_t n) {
    uint64_t v;
    return veil_gguf_get_u64(g, key, &v) && v < (uint64_t)n ? (int32_t)v : -1;
}

veil_rc veil_tokenizer_load(veil_tokenizer **out, const veil_gguf *g, veil_err *err) {
    *out = NULL;
    const veil_gguf_kv *toks = veil_gguf_find(g, "tokenizer.ggml.tokens");
    if (!toks || toks->type != VEIL_GGUF_ARRAY || toks->arr_type != VEIL_GGUF_STRING || toks->arr_count == 0 ||
        toks->arr_count > MAX_VOCAB)
        return veil_err_set(err, VEIL_ERR_MALFORMED, "model lacks a token list (tokenizer.ggml.tokens)");
    veil_gguf_str model;
    if (!veil_gguf_get_str(g, "tokenizer.ggml.model", &model))
        return veil_err_set(err, VEIL_ERR_MALFORMED, "model lacks tokenizer.ggml.model");
    veil_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    if (model.len == 4 && memcmp(model.p, "gpt2", 4) == 0)
        t->kind = VEIL_TOK_BPE;
    else if (model.len == 5 && memcmp(model.p, "llama", 5) == 0)
        t->kind = VEIL_TOK_SPM;
    else {
        veil_tokenizer_free(t);
        return veil_err_set(err, VEIL_ERR_MALFORMED, "tokenizer '%.*s' is not supported (gpt2 and llama are)",
                            (int)(model.len < 32 ? model.len : 32), model.p);
    }
    t->n = (int32_t)toks->arr_count;
    veil_gguf_str pre;
    t->pre = PRE_GPT2;
    if (t->kind == VEIL_TOK_BPE && veil_gguf_get_str(g, "tokenizer.ggml.pre", &pre)) {
#define IS(s) (pre.len == strlen(s) && memcmp(pre.p, s, pre.len) == 0)
        if (IS("llama-bpe") || IS("llama3") || IS("smaug-bpe"))
            t->pre = PRE_LLAMA3;
        else if (IS("qwen2"))
            t->pre = PRE_QWEN2;
        else if (!IS("default") && !IS("gpt-2") && !IS("gpt2")) {
            veil_tokenizer_free(t);
            return veil_err_set(err, VEIL_ERR_MALFORMED,
                                "pre-tokenizer '%.*s' is not supported (default, gpt-2, llama-bpe, qwen2 are)",
                                (int)(pre.len < 32 ? pre.len : 32), pre.p);
        }
#undef IS
    }
    size_t n = (size_t)t->n;
    t->hcap = 1;
    while (t->hcap < n * 2) t->hcap <<= 1;
    t->text = calloc(n, sizeof *t->text);
    t->type = malloc(n);
    t->score = calloc(n, sizeof *t->score);
    t->ends_turn = calloc(n, 1);
    t->h = calloc(t->hcap, sizeof *t->h);
    if (!t->text || !t->type || !t->score || !t->ends_turn || !t->h) {
        veil_tokenizer_free(t);
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    }
    memset(t->type, VEIL_TT_NORMAL, n);
    const veil_gguf_kv *types = veil_gguf_find(g, "tokenizer.ggml.token_type");
    const veil_gguf_kv *scores = veil_gguf_find(g, "tokenizer.ggml.scores");
    if (types && (types->type != VEIL_GGUF_ARRAY || types->arr_count != n)) types = NULL;
    if (scores && (scores->type != VEIL_GGUF_ARRAY || scores->arr_count != n)) scores = NULL;
    for (int b = 0; b < 256; b++) t->byte_tok[b] = -1;
    if (t->kind == VEIL_TOK_BPE) gpt2_byte_map(t);
    for (size_t i = 0; i < n; i++) {
        t->text[i] = veil_gguf_arr_str(toks, i);
        if (t->text[i].len > 1024) t->text[i].len = 0; /* no real token is this long: never matches */
        if (types) {
            double v = veil_gguf_arr_num(types, i);
            t->type[i] = v >= 1 && v <= 6 ? (uint8_t)v : VEIL_TT_NORMAL;
        }
        if (scores) t->score[i] = (float)veil_gguf_arr_num(scores, i);
        /* first occurrence wins on duplicates */
        if (lookup(t, t->text[i].p, t->text[i].len) < 0) {
            size_t j = fnv(t->text[i].p, t->text[i].len) & (t->hcap - 1);
            while (t->h[j].s) j = (j + 1) & (t->hcap - 1);
            t->h[j] = (hent){t->text[i].p, (uint32_t)t->text[i].len, (int32_t)i};
        }
    }
    for (int b = 0; b < 256; b++) {
        char s[8];
        if (t->kind == VEIL_TOK_BPE) {
            t->byte_tok[b] = lookup(t, s, put_utf8(t->byte_cp[b], s));
        } else {
            snprintf(s, sizeof s, "<0x%02X>", b);
            t->byte_tok[b] = lookup(t, s, 6);
        }
    }
    t->bos = get_id(g, "tokenizer.ggml.bos_token_id", t->n);
    t->eos = get_id(g, "tokenizer.ggml.eos_token_id", t->n);
    t->unk = get_id(g, "tokenizer.ggml.unknown_token_id", t->n);
    t->add_bos = t->kind == VEIL_TOK_SPM;
    veil_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos);
    t->add_space_prefix = t->kind == VEIL_TOK_SPM;
    veil_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix);
    if (t->eos >= 0) t->ends_turn[t->eos] = 1;
    int32_t eot = get_id(g, "tokenizer.ggml.eot_token_id", t->n);
    if (eot >= 0) t->ends_turn[eot] = 1;
    static const char *const enders[] = {"<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<|end_of_text|>",
                                         "</s>",       "<|end|>",    "<|eom_id|>"};
    for (size_t i = 0; i < sizeof enders / sizeof enders[0]; i++) {
        int32_t id = lookup(t, enders[i], strlen(enders[i]));
        if (id >= 0 && (t->type[id] == VEIL_TT_CONTROL || t->type[id] == VEIL_TT_USER)) t->ends_turn[id] = 1;
    }
    const veil_gguf_kv *merges = veil_gguf_find(g, "tokenizer.ggml.merges");
    if (t->kind == VEIL_TOK_BPE && merges && merges->type == VEIL_GGUF_ARRAY && merges->arr_type == VEIL_GGUF_STRING &&
        merges->arr_count <= MAX_VOCAB) {
        t->mcap = 1;
        while (t->mcap < merges->arr_count * 2) t->mcap <<= 1;
        if (!(t->mg = calloc(t->mcap, sizeof *t->mg))) {
            veil_tokenizer_free(t);
            return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
        }
        char buf[2100];
        for (uint64_t r = 0; r < merges->arr_count; r++) {
            veil_gguf_str m = veil_gguf_arr_str(merges, r);
            const char *sp = m.len > 2 ? memchr(m.p + 1, ' ', m.len - 2) : NULL;
            if (!sp || m.len > 2048) continue;
            size_t ll = (size_t)(sp - m.p), rl = m.len - ll - 1;
            int32_t a = lookup(t, m.p, ll), b = lookup(t, sp + 1, rl);
            memcpy(buf, m.p, ll);
            memcpy(buf + ll, sp + 1, rl);
            int32_t c = lookup(t, buf, ll + rl);
            if (a < 0 || b < 0 || c < 0 || merge_find(t, a, b)) continue;
            uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
            size_t j = mix(key) & (t->mcap - 1);
            while (t->mg[j].key) j = (j + 1) & (t->mcap - 1);
            t->mg[j] = (ment){key, (int32_t)r, c};
        }
    }
    *out = t;
    return VEIL_OK;
}

/* ---- encoding ---- */

int veil_tokens_push(veil_tokens *t, int32_t id) {
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        int32_t *p = realloc(t->ids, cap * sizeof *p);
        if (!p) return 0;
        t->ids = p;
        t->cap = cap;
    }
    t->ids[t->n++] = id;
    return 1;
}

void veil_tokens_free(veil_tokens *t) {
    free(t->ids);
    memset(t, 0, sizeof *t);
}

typedef struct sym {
    int32_t id;        /* BPE: token id; SPM: -1 until resolved */
    size_t start, len; /* SPM: bytes of the text */
    int prev, next;
} sym;

typedef struct cand {
    double key; /* lower merges first */
    int l, r;
    int32_t idl, idr;
    size_t lenl, lenr;
} cand;

static int cand_less(const cand *a, const cand *b) { return a->key < b->key || (a->key == b->key && a->l < b->l); }

static void heap_push(cand *h, size_t *n, cand c) {
    size_t i = (*n)++;
    h[i] = c;
    while (i && cand_less(&h[i], &h[(i - 1) / 2])) {
        cand tmp = h[i];
        h[i] = h[(i - 1) / 2];
        h[(i - 1) / 2] = tmp;
        i = (i - 1) / 2;
    }
}

static cand heap_pop(cand *h, size_t *n) {
    cand top = h[0];
    h[0] = h[--*n];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && cand_less(&h[l], &h[m])) m = l;
        if (r < *n && cand_less(&h[r], &h[m])) m = r;
        if (m == i) break;
        cand tmp = h[i];
        h[i] = h[m];
        h[m] = tmp;
        i = m;
    }
    return top;
}

/* The candidate merge of symbols l and r, if any. */
static int make_cand(const veil_tokenizer *t, const char *text, const sym *s, int l, int r, cand *c) {
    if (l < 0 || r < 0) return 0;
    if (t->kind == VEIL_TOK_BPE) {
        const ment *m = s[l].id >= 0 && s[r].id >= 0 ? merge_find(t, s[l].id, s[r].id) : NULL;
        if (!m) return 0;
        *c = (cand){(double)m->rank, l, r, s[l].id, s[r].id, 0, 0};
        return 1;
    }
    if (s[l].start + s[l].len != s[r].start) return 0;
    int32_t id = lookup(t, text + s[l].start, s[l].len + s[r].len);
    if (id < 0) return 0;
    *c = (cand){-(double)t->score[id], l, r, 0, 0, s[l].len, s[r].len};
    return 1;
}

/* Merges the symbols of one piece and appends its tokens. */
static int merge_piece(const veil_tokenizer *t, const char *text, sym *s, int ns, cand *heap, veil_tokens *out) {
    size_t nh = 0;
    cand c;
    for (int i = 0; i + 1 < ns; i++)
        if (make_cand(t, text, s, i, i + 1, &c)) heap_push(heap, &nh, c);
    while (nh) {
        c = heap_pop(heap, &nh);
        sym *L = &s[c.l], *R = &s[c.r];
        if (L->len == 0 && t->kind == VEIL_TOK_SPM) continue;
        if (L->next != c.r || R->prev != c.l) continue; /* stale */
        if (t->kind == VEIL_TOK_BPE) {
            if (L->id != c.idl || R->id != c.idr) continue;
            L->id = merge_find(t, L->id, R->id)->merged;
        } else {
            if (L->len != c.lenl || R->len != c.lenr) continue;
            L->len += R->len;
        }
        R->len = 0;
        R->id = -2;
        L->next = R->next;
        if (R->next >= 0) s[R->next].prev = c.l;
        R->prev = R->next = -1;
        if (make_cand(t, text, s, L->prev, c.l, &c)) heap_push(heap, &nh, c);
        if (make_cand(t, text, s, c.l, L->next, &c)) heap_push(heap, &nh, c);
    }
    for (int i = 0; i >= 0 && i < ns; i = s[i].next) {
        if (t->kind == VEIL_TOK_BPE) {
            if (s[i].id >= 0 && !veil_tokens_push(out, s[i].id)) return 0;
            continue;
        }
        int32_t id = lookup(t, text + s[i].start, s[i].len);
        if (id >= 0) {
            if (!veil_tokens_push(out, id)) return 0;
        } else {
            for (size_t b = 0; b < s[i].len; b++) {
                int32_t bt = t->byte_tok[(uint8_t)text[s[i].start + b]];
                if ((bt >= 0 || t->unk >= 0) && !veil_tokens_push(out, bt >= 0 ? bt : t->unk)) return 0;
            }
        }
    }
    return 1;
}

int veil_tokenize(const veil_tokenizer *t, const char *text, size_t len, veil_tokens *out) {
    int ok = 0;
    char *buf = NULL;
    if (t->kind == VEIL_TOK_SPM) { /* spaces become ▁, and one is put in front */
        buf = malloc(len * 3 + 4);
        if (!buf) return 0;
        size_t o = 0;
        if (t->add_space_prefix && len) memcpy(buf, "\xE2\x96\x81", 3), o = 3;
        for (size_t i = 0; i < len; i++) {
            if (text[i] == ' ')
                memcpy(buf + o, "\xE2\x96\x81", 3), o += 3;
            else
                buf[o++] = text[i];
        }
        text = buf;
        len = o;
    }
    uint32_t *cp = malloc((len + 1) * sizeof *cp);
    size_t *off = malloc((len + 1) * sizeof *off);
    sym *s = malloc((len + 1) * sizeof *s);
    cand *heap = malloc((len + 1) * 3 * sizeof *heap);
    if (!cp || !off || !s || !heap) goto done;
    size_t n = utf8_decode((const uint8_t *)text, len, cp, off);
    if (t->kind == VEIL_TOK_SPM) {
        for (size_t i = 0; i < n; i++)
            s[i] = (sym){-1, off[i], off[i + 1] - off[i], (int)i - 1, i + 1 < n ? (int)i + 1 : -1};
        ok = merge_piece(t, text, s, (int)n, heap, out);
        goto done;
    }
    for (size_t i = 0; i < n;) {
        size_t e = pretok_end(t->pre, cp, n, i);
        size_t b0 = off[i], b1 = off[e];
        int ns = 0;
        for (size_t b = b0; b < b1; b++, ns++)
            s[ns] = (sym){t->byte_tok[(uint8_t)text[b]], b, 1, ns - 1, b + 1 < b1 ? ns + 1 : -1};
        if (!merge_piece(t, text, s, ns, heap, out)) goto done;
        i = e;
    }
    ok = 1;
done:
    free(cp), free(off), free(s), free(heap), free(buf);
    return ok;
}

int32_t veil_token_find(const veil_tokenizer *t, const char *text) { return lookup(t, text, strlen(text)); }
int veil_token_type(const veil_tokenizer *t, int32_t id) { return id >= 0 && id < t->n ? t->type[id] : 0; }
int32_t veil_tokenizer_vocab(const veil_tokenizer *t) { return t->n; }
int32_t veil_tokenizer_bos(const veil_tokenizer *t) { return t->add_bos ? t->bos : -1; }
int32_t veil_tokenizer_eos(const veil_tokenizer *t) { return t->eos; }
int veil_token_ends_turn(const veil_tokenizer *t, int32_t id) { return id >= 0 && id < t->n && t->ends_turn[id]; }

size_t veil_token_bytes(const veil_tokenizer *t, int32_t id, char *out, size_t cap) {
    if (id < 0 || id >= t->n) return 0;
    veil_gguf_str s = t->text[id];
    int type = t->type[id];
    size_t n = 0;
#define PUT(ch)                                                                                                        \
    do {                                                                                                               \
        if (n < cap) out[n] = (char)(ch);                                                                              \
        n++;                                                                                                           \
    } while (0)
    if (type == VEIL_TT_CONTROL || type == VEIL_TT_UNKNOWN || type == VEIL_TT_UNUSED) return 0;
    if (type == VEIL_TT_USER) {
        for (size_t i = 0; i < s.len; i++) PUT(s.p[i]);
        return n;
    }
    if (t->kind == VEIL_TOK_SPM) {
        unsigned v;
        if (type == VEIL_TT_BYTE && s.len == 6 && sscanf(s.p, "<0x%2X>", &v) == 1) {
            PUT(v);
            return n;
        }
        for (size_t i = 0; i < s.len; i++) {
            if (i + 2 < s.len && memcmp(s.p + i, "\xE2\x96\x81", 3) == 0) {
                PUT(' ');
                i += 2;
            } else {
                PUT(s.p[i]);
            }
        }
        return n;
    }
    uint32_t cp[1025];
    size_t off[1026];
    size_t nc = utf8_decode((const uint8_t *)s.p, s.len, cp, off);
    for (size_t i = 0; i < nc; i++) {
        if (cp[i] < 512 && t->cp_byte[cp[i]] >= 0) {
            PUT(t->cp_byte[cp[i]]);
        } else {
            for (size_t b = off[i]; b < off[i + 1]; b++) PUT(s.p[b]);
        }
    }
#undef PUT
    return n;
}

uint32_t veil_gpt2_byte_cp(uint8_t b) {
    uint32_t n = 0;
    for (uint32_t x = 0; x < b; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) n++;
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174) ? b : 256 + n;
}

int veil_pretokenize(const char *pre, const char *text, size_t len, void (*fn)(void *, const char *, size_t),
                     void *ctx) {
    pre_kind k = strcmp(pre, "qwen2") == 0 ? PRE_QWEN2 : strcmp(pre, "llama-bpe") == 0 ? PRE_LLAMA3 : PRE_GPT2;
    uint32_t *cp = malloc((len + 1) * sizeof *cp);
    size_t *off = malloc((len + 1) * sizeof *off);
    if (!cp || !off) {
        free(cp), free(off);
        return 0;
    }
    size_t n = utf8_decode((const uint8_t *)text, len, cp, off);
    for (size_t i = 0; i < n;) {
        size_t e = pretok_end(k, cp, n, i);
        fn(ctx, text + off[i], off[e] - off[i]);
        i = e;
    }
    free(cp), free(off);
    return 1;
}
