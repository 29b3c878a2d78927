/* `veil model synth`: writes a valid GGUF model with deterministic random
 * weights, a vocabulary learned by byte-level BPE (or SentencePiece-style)
 * training on built-in text, and the architecture's chat template. Used for
 * tests, benchmarks and `veil serve`'s built-in veil-tiny model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "synth_corpus.h"

int veil_synth_preset(veil_synth_opts *o, const char *preset) {
    int dim, layers, heads, kv, ff, vocab, ctx;
    if (strcmp(preset, "tiny") == 0) dim = 64, layers = 2, heads = 4, kv = 2, ff = 192, vocab = 1024, ctx = 4096;
    else if (strcmp(preset, "0.5b") == 0) dim = 896, layers = 24, heads = 14, kv = 2, ff = 4864, vocab = 151936, ctx = 32768;
    else if (strcmp(preset, "1.5b") == 0) dim = 1536, layers = 28, heads = 12, kv = 2, ff = 8960, vocab = 151936, ctx = 32768;
    else return 0;
    o->dim = dim, o->n_layers = layers, o->n_heads = heads, o->n_kv_heads = kv, o->ff = ff, o->vocab = vocab;
    o->ctx = ctx, o->head_dim = dim / heads;
    return 1;
}

veil_synth_opts veil_synth_tiny(veil_arch arch, uint32_t type) {
    veil_synth_opts o;
    memset(&o, 0, sizeof o);
    veil_synth_preset(&o, "tiny");
    o.arch = arch;
    o.type = type;
    return o;
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float unit(uint64_t *s) { return (float)((double)(splitmix(s) >> 11) * 0x1.0p-53) * 2.0f - 1.0f; }

/* ---- vocabulary ---- */

typedef struct vocab {
    char **tok;
    int32_t *type;
    float *score;
    size_t n, cap;
    char **merge;
    size_t nm, cmerge;
    int32_t *h; /* open addressing over tok: index + 1, 0 = empty */
    size_t hcap;
    int oom;
} vocab;

static uint64_t str_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    while (*s) h = (h ^ (uint8_t)*s++) * 1099511628211ull;
    return h;
}

static int v_find(const vocab *v, const char *s) {
    if (!v->hcap) return -1;
    for (size_t i = str_hash(s) & (v->hcap - 1); v->h[i]; i = (i + 1) & (v->hcap - 1))
        if (strcmp(v->tok[v->h[i] - 1], s) == 0) return v->h[i] - 1;
    return -1;
}

static void v_index(vocab *v, size_t id) {
    size_t i = str_hash(v->tok[id]) & (v->hcap - 1);
    while (v->h[i]) i = (i + 1) & (v->hcap - 1);
    v->h[i] = (int32_t)id + 1;
}

static int v_add(vocab *v, const char *s, int type, float score) {
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 512;
        char **t = realloc(v->tok, v->cap * sizeof *t);
        int32_t *ty = realloc(v->type, v->cap * sizeof *ty);
        float *sc = realloc(v->score, v->cap * sizeof *sc);
        if (t) v->tok = t;
        if (ty) v->type = ty;
        if (sc) v->score = sc;
        if (!t || !ty || !sc) return v->oom = 1, -1;
    }
    if (!(v->tok[v->n] = strdup(s))) return v->oom = 1, -1;
    v->type[v->n] = type;
    v->score[v->n] = score;
    if ((v->n + 1) * 2 > v->hcap) {
        free(v->h);
        v->hcap = v->hcap ? v->hcap * 2 : 1024;
        if (!(v->h = calloc(v->hcap, sizeof *v->h))) return v->hcap = 0, v->oom = 1, -1;
        for (size_t i = 0; i < v->n; i++) v_index(v, i);
    }
    v_index(v, v->n);
    return (int)v->n++;
}

static void v_merge(vocab *v, const char *a, const char *b) {
    if (v->nm == v->cmerge) {
        v->cmerge = v->cmerge ? v->cmerge * 2 : 512;
        char **m = realloc(v->merge, v->cmerge * sizeof *m);
        if (!m) {
            v->oom = 1;
            return;
        }
        v->merge = m;
    }
    size_t la = strlen(a), lb = strlen(b);
    char *m = malloc(la + lb + 2);
    if (!m) {
        v->oom = 1;
        return;
    }
    memcpy(m, a, la);
    m[la] = ' ';
    memcpy(m + la + 1, b, lb + 1);
    v->merge[v->nm++] = m;
}

static void v_free(vocab *v) {
    for (size_t i = 0; i < v->n; i++) free(v->tok[i]);
    for (size_t i = 0; i < v->nm; i++) free(v->merge[i]);
    free(v->tok), free(v->type), free(v->score), free(v->merge), free(v->h);
}

/* Training words: each a list of symbol (token) ids and a count. */
typedef struct word {
    int *sym;
    int n, count;
} word;

typedef struct words {
    word *w;
    size_t n, cap;
    vocab *v;
    int spm;
} words;

static size_t put_utf8_cp(uint32_t c, char *o) {
    if (c < 0x80) return o[0] = (char)c, 1;
    return o[0] = (char)(0xC0 | c >> 6), o[1] = (char)(0x80 | (c & 63)), 2; /* GPT-2 code points are < 0x800 */
}

/* Adds one pre-token (BPE: byte-mapped; SPM: split into characters). */
static void add_word(void *ctx, const char *s, size_t len) {
    words *W = ctx;
    if (W->n == W->cap) {
        W->cap = W->cap ? W->cap * 2 : 256;
        word *nw = realloc(W->w, W->cap * sizeof *nw);
        if (!nw) {
            W->v->oom = 1;
            return;
        }
        W->w = nw;
    }
    word *w = &W->w[W->n];
    w->sym = malloc((len + 1) * sizeof *w->sym);
    w->n = 0;
    w->count = 1;
    if (!w->sym) {
        W->v->oom = 1;
        return;
    }
    for (size_t i = 0; i < len;) {
        char buf[8];
        size_t k = 1;
        if (W->spm) {
            unsigned char b = (unsigned char)s[i];
            k = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
            if (i + k > len) k = len - i;
            memcpy(buf, s + i, k);
            buf[k] = 0;
        } else {
            buf[put_utf8_cp(veil_gpt2_byte_cp((uint8_t)s[i]), buf)] = 0;
        }
        int id = v_find(W->v, buf);
        if (id < 0) id = v_add(W->v, buf, VEIL_TT_NORMAL, -1e9f);
        if (id < 0) return;
        w->sym[w->n++] = id;
        i += k;
    }
    W->n++;
}

typedef struct pairc {
    int a, b, count;
} pairc;

static int pair_cmp(const void *x, const void *y) {
    const pairc *p = x, *q = y;
    return p->a != q->a ? (p->a > q->a) - (p->a < q->a) : (p->b > q->b) - (p->b < q->b);
}

/* Learns merges until `target` tokens or no pair occurs twice. */
static void train(words *W, size_t target) {
    vocab *v = W->v;
    size_t total = 0;
    for (size_t i = 0; i < W->n; i++) total += (size_t)W->w[i].n;
    pairc *pc = malloc((total + 1) * sizeof *pc);
    if (!pc) {
        v->oom = 1;
        return;
    }
    while (v->n < target && !v->oom) {
        size_t np = 0;
        for (size_t i = 0; i < W->n; i++)
            for (int k = 0; k + 1 < W->w[i].n; k++) pc[np++] = (pairc){W->w[i].sym[k], W->w[i].sym[k + 1], W->w[i].count};
        if (!np) break;
        qsort(pc, np, sizeof *pc, pair_cmp);
        pairc best = {0, 0, 0};
        for (size_t i = 0; i < np;) {
            pairc c = pc[i];
            size_t j = i + 1;
            while (j < np && pc[j].a == c.a && pc[j].b == c.b) c.count += pc[j++].count;
            if (c.count > best.count) best = c;
            i = j;
        }
        if (best.count < 2) break;
        size_t la = strlen(v->tok[best.a]), lb = strlen(v->tok[best.b]);
        char *m = malloc(la + lb + 1);
        if (!m) {
            v->oom = 1;
            break;
        }
        memcpy(m, v->tok[best.a], la);
        memcpy(m + la, v->tok[best.b], lb + 1);
        int id = v_find(v, m);
        if (id < 0) id = v_add(v, m, VEIL_TT_NORMAL, -(float)v->nm);
        free(m);
        if (id < 0) break;
        v_merge(v, v->tok[best.a], v->tok[best.b]);
        for (size_t i = 0; i < W->n; i++) {
            word *w = &W->w[i];
            int o = 0;
            for (int k = 0; k < w->n; k++) {
                if (k + 1 < w->n && w->sym[k] == best.a && w->sym[k + 1] == best.b) {
                    w->sym[o++] = id;
                    k++;
                } else {
                    w->sym[o++] = w->sym[k];
                }
            }
            w->n = o;
        }
    }
    free(pc);
}

/* Fills the vocabulary up to `target` with merges of random pairs of
 * existing tokens: still a consistent BPE (each new token is its merge). */
static void pad(vocab *v, size_t target, uint64_t *rng, size_t first_normal, int spm) {
    size_t base = v->n;
    int tries = 0;
    while (v->n < target && !v->oom && tries < 100000000) {
        tries++;
        size_t span = v->n - first_normal;
        int a = (int)(first_normal + splitmix(rng) % (base > first_normal ? base - first_normal : span));
        int b = (int)(first_normal + splitmix(rng) % span);
        if (v->type[a] != VEIL_TT_NORMAL || v->type[b] != VEIL_TT_NORMAL) continue;
        size_t la = strlen(v->tok[a]), lb = strlen(v->tok[b]);
        if (la + lb > 24) continue;
        char m[64];
        memcpy(m, v->tok[a], la);
        memcpy(m + la, v->tok[b], lb + 1);
        if (v_find(v, m) >= 0) continue;
        if (v_add(v, m, VEIL_TT_NORMAL, -(float)v->n) < 0) break;
        if (!spm) v_merge(v, v->tok[a], v->tok[b]);
        if (v->n % 1024 == 0) base = v->n;
    }
}

static const char *const tmpl_chatml =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
static const char *const tmpl_llama3 =
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' "
    "+ message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
static const char *const tmpl_llama2 =
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + message['content'] + "
    "' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + ' ' + eos_token }}{% endif "
    "%}{% endfor %}";

static int build_vocab(const veil_synth_opts *o, vocab *v, veil_gguf_writer *w, uint64_t *rng) {
    int spm = o->spm;
    const char *pre = o->arch == VEIL_ARCH_LLAMA ? "llama-bpe" : "qwen2";
    static const char *const sp_chatml[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    static const char *const sp_think[] = {"<think>", "</think>"};
    static const char *const sp_llama3[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                                            "<|end_header_id|>", "<|eot_id|>"};
    size_t n_special = 0;
    words W = {NULL, 0, 0, v, spm};
    if (spm) {
        v_add(v, "<unk>", VEIL_TT_UNKNOWN, 0);
        v_add(v, "<s>", VEIL_TT_CONTROL, 0);
        v_add(v, "</s>", VEIL_TT_CONTROL, 0);
        for (int b = 0; b < 256; b++) {
            char s[8];
            snprintf(s, sizeof s, "<0x%02X>", b);
            v_add(v, s, VEIL_TT_BYTE, 0);
        }
        n_special = v->n;
        /* words: "▁word" pieces of the text with spaces made ▁ */
        const char *c = synth_corpus;
        while (*c) {
            while (*c == ' ') c++;
            const char *e = c;
            while (*e && *e != ' ') e++;
            if (e > c) {
                char buf[512];
                size_t l = (size_t)(e - c) < 500 ? (size_t)(e - c) : 500;
                memcpy(buf, "\xE2\x96\x81", 3);
                memcpy(buf + 3, c, l);
                add_word(&W, buf, l + 3);
            }
            c = e;
        }
    } else {
        for (int b = 0; b < 256; b++) {
            char s[4];
            s[put_utf8_cp(veil_gpt2_byte_cp((uint8_t)b), s)] = 0;
            v_add(v, s, VEIL_TT_NORMAL, 0);
        }
        if (!veil_pretokenize(pre, synth_corpus, sizeof synth_corpus - 1, add_word, &W)) v->oom = 1;
    }
    size_t specials = spm ? 0 : o->arch == VEIL_ARCH_LLAMA ? 5 : o->arch == VEIL_ARCH_QWEN3 ? 5 : 3;
    size_t target = (size_t)o->vocab > specials + v->n ? (size_t)o->vocab - specials : v->n;
    train(&W, target);
    pad(v, target, rng, spm ? n_special : 0, spm);
    for (size_t i = 0; i < W.n; i++) free(W.w[i].sym);
    free(W.w);
    int32_t eos = -1, bos = -1, eot = -1, pad_id = -1;
    if (spm) {
        bos = 1, eos = 2;
    } else if (o->arch == VEIL_ARCH_LLAMA) {
        for (size_t i = 0; i < 5; i++) v_add(v, sp_llama3[i], VEIL_TT_CONTROL, 0);
        bos = v_find(v, "<|begin_of_text|>"), eos = v_find(v, "<|eot_id|>"), eot = eos;
    } else {
        for (size_t i = 0; i < 3; i++) v_add(v, sp_chatml[i], VEIL_TT_CONTROL, 0);
        if (o->arch == VEIL_ARCH_QWEN3)
            for (size_t i = 0; i < 2; i++) v_add(v, sp_think[i], VEIL_TT_USER, 0);
        pad_id = bos = v_find(v, "<|endoftext|>"), eos = v_find(v, "<|im_end|>");
    }
    if (v->oom) return 0;
    veil_gguf_w_str(w, "tokenizer.ggml.model", spm ? "llama" : "gpt2");
    if (!spm) veil_gguf_w_str(w, "tokenizer.ggml.pre", pre);
    veil_gguf_w_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v->tok, v->n);
    veil_gguf_w_arr_i32(w, "tokenizer.ggml.token_type", v->type, v->n);
    if (spm) veil_gguf_w_arr_f32(w, "tokenizer.ggml.scores", v->score, v->n);
    else veil_gguf_w_arr_str(w, "tokenizer.ggml.merges", (const char *const *)v->merge, v->nm);
    veil_gguf_w_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
    veil_gguf_w_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos);
    if (eot >= 0) veil_gguf_w_u32(w, "tokenizer.ggml.eot_token_id", (uint32_t)eot);
    if (pad_id >= 0) veil_gguf_w_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)pad_id);
    if (spm) veil_gguf_w_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    veil_gguf_w_bool(w, "tokenizer.ggml.add_bos_token", spm || o->arch == VEIL_ARCH_LLAMA);
    veil_gguf_w_str(w, "tokenizer.chat_template",
                    spm ? tmpl_llama2 : o->arch == VEIL_ARCH_LLAMA ? tmpl_llama3 : tmpl_chatml);
    return 1;
}

/* A random tensor: matrices scaled by 1/sqrt(cols), norms near 1. */
static int add_tensor(veil_gguf_writer *w, const char *name, uint32_t type, int rows, int cols, float scale,
                      float center, uint64_t seed) {
    size_t n = (size_t)rows * cols;
    float *f = malloc(n * sizeof *f);
    uint32_t be = veil_ggml_block_elems(type), bb = veil_ggml_block_bytes(type);
    size_t bytes = n / be * bb;
    void *q = malloc(bytes ? bytes : 1);
    if (!f || !q) {
        free(f), free(q);
        return 0;
    }
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) f[i] = center + scale * unit(&s);
    size_t row_bytes = (size_t)cols / be * bb;
    for (int r = 0; r < rows; r++) veil_quantize_row(type, f + (size_t)r * cols, (uint8_t *)q + r * row_bytes, (size_t)cols);
    uint64_t ne[2] = {(uint64_t)cols, (uint64_t)rows};
    veil_gguf_w_tensor(w, name, type, rows == 1 ? 1 : 2, ne, q, bytes);
    free(f), free(q);
    return 1;
}

/* llama.cpp's rule for the layers that get more bits in the _M mixes. */
static int more_bits(int layer, int n_layers) {
    return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

/* The type of one matrix: the requested one, or the Q4_K_M mix; K types
 * fall back where rows are not whole 256-blocks. role: "output", "v",
 * "down" or "" (every other matrix). */
static uint32_t mat_type(const veil_synth_opts *o, const char *role, int layer, int cols) {
    uint32_t t = o->type;
    if (t == VEIL_SYNTH_Q4_K_M) {
        if (!strcmp(role, "output")) t = VEIL_GGML_Q6_K;
        else if ((!strcmp(role, "v") || !strcmp(role, "down")) && more_bits(layer, o->n_layers)) t = VEIL_GGML_Q6_K;
        else t = VEIL_GGML_Q4_K;
    }
    if (cols % 256 && (t == VEIL_GGML_Q4_K || t == VEIL_GGML_Q5_K)) t = VEIL_GGML_Q5_0;
    if (cols % 256 && t == VEIL_GGML_Q6_K) t = VEIL_GGML_Q8_0;
    return t;
}

veil_rc veil_synth_write(const veil_synth_opts *o, const char *path, veil_err *err) {
    static const uint32_t types[] = {VEIL_GGML_F32,  VEIL_GGML_F16,  VEIL_GGML_BF16, VEIL_GGML_Q8_0, VEIL_GGML_Q4_0,
                                     VEIL_GGML_Q5_0, VEIL_GGML_Q4_K, VEIL_GGML_Q5_K, VEIL_GGML_Q6_K, VEIL_SYNTH_Q4_K_M};
    int known = 0;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) known |= o->type == types[i];
    if (!known)
        return veil_err_set(err, VEIL_ERR_INVALID_ARG,
                            "synth: type must be f32, f16, bf16, q8_0, q4_0, q5_0, q4_k, q5_k, q6_k or q4_k_m");
    int hd = o->head_dim ? o->head_dim : (o->n_heads ? o->dim / o->n_heads : 0);
    if (o->dim <= 0 || o->n_layers <= 0 || o->n_heads <= 0 || o->n_kv_heads <= 0 || o->n_heads % o->n_kv_heads ||
        hd <= 0 || hd % 2 || o->ff <= 0 || o->vocab < 300 || o->ctx <= 0 || o->dim % 32 || o->ff % 32 || (o->n_heads * hd) % 32 ||
        (o->spm && o->arch != VEIL_ARCH_LLAMA))
        return veil_err_set(err, VEIL_ERR_INVALID_ARG,
                            "synth: dims must be positive, heads divisible by kv heads, dim, ff and heads × head dim multiples "
                            "of 32, vocab at least 300 (spm: llama only)");
    static const char *const arch_names[] = {"llama", "qwen2", "qwen3"};
    const char *arch = arch_names[o->arch];
    veil_gguf_writer *w = veil_gguf_writer_new();
    if (!w) return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    uint64_t rng = o->seed ^ 0x5eed5eed5eedull;
    vocab v = {0};
    char key[96], name[96];
    veil_gguf_w_str(w, "general.architecture", arch);
    veil_gguf_w_str(w, "general.name", o->name ? o->name : "veil-synth");
    veil_gguf_w_u32(w, "general.alignment", 32);
#define KEY(s) (snprintf(key, sizeof key, "%s.%s", arch, s), key)
    veil_gguf_w_u32(w, KEY("embedding_length"), (uint32_t)o->dim);
    veil_gguf_w_u32(w, KEY("block_count"), (uint32_t)o->n_layers);
    veil_gguf_w_u32(w, KEY("feed_forward_length"), (uint32_t)o->ff);
    veil_gguf_w_u32(w, KEY("attention.head_count"), (uint32_t)o->n_heads);
    veil_gguf_w_u32(w, KEY("attention.head_count_kv"), (uint32_t)o->n_kv_heads);
    veil_gguf_w_u32(w, KEY("context_length"), (uint32_t)o->ctx);
    if (hd != o->dim / o->n_heads || o->arch == VEIL_ARCH_QWEN3) {
        veil_gguf_w_u32(w, KEY("attention.key_length"), (uint32_t)hd);
        veil_gguf_w_u32(w, KEY("attention.value_length"), (uint32_t)hd);
    }
    veil_gguf_w_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-6f);
    veil_gguf_w_f32(w, KEY("rope.freq_base"), o->arch == VEIL_ARCH_LLAMA ? 500000.0f : 1000000.0f);
    if (o->rope_scale > 1.0f) {
        veil_gguf_w_str(w, KEY("rope.scaling.type"), "linear");
        veil_gguf_w_f32(w, KEY("rope.scaling.factor"), o->rope_scale);
    }
#undef KEY
    veil_rc rc = VEIL_OK;
    if (!build_vocab(o, &v, w, &rng)) {
        rc = veil_err_set(err, VEIL_ERR_NOMEM, "out of memory building the vocabulary");
        goto done;
    }
    int V = (int)v.n, qd = o->n_heads * hd, kvd = o->n_kv_heads * hd;
    uint64_t seed = o->seed * 1000003ull + 17;
    int tied = o->arch != VEIL_ARCH_LLAMA;
    int ok = add_tensor(w, "token_embd.weight", mat_type(o, tied ? "output" : "", 0, o->dim), V, o->dim, 0.05f, 0,
                        seed++) &&
             add_tensor(w, "output_norm.weight", VEIL_GGML_F32, 1, o->dim, 0.1f, 1.0f, seed++);
    if (o->arch == VEIL_ARCH_LLAMA) /* qwen ties the output to the embeddings; llama has its own */
        ok = ok && add_tensor(w, "output.weight", mat_type(o, "output", 0, o->dim), V, o->dim, 1.0f / sqrtf((float)o->dim),
                              0, seed++);
    for (int l = 0; ok && l < o->n_layers; l++) {
#define T(s) (snprintf(name, sizeof name, "blk.%d.%s", l, s), name)
        float sd = 1.0f / sqrtf((float)o->dim), sf = 1.0f / sqrtf((float)o->ff), sq = 1.0f / sqrtf((float)qd);
        ok = add_tensor(w, T("attn_norm.weight"), VEIL_GGML_F32, 1, o->dim, 0.1f, 1.0f, seed++) &&
             add_tensor(w, T("ffn_norm.weight"), VEIL_GGML_F32, 1, o->dim, 0.1f, 1.0f, seed++) &&
             add_tensor(w, T("attn_q.weight"), mat_type(o, "", l, o->dim), qd, o->dim, 2 * sd, 0, seed++) &&
             add_tensor(w, T("attn_k.weight"), mat_type(o, "", l, o->dim), kvd, o->dim, 2 * sd, 0, seed++) &&
             add_tensor(w, T("attn_v.weight"), mat_type(o, "v", l, o->dim), kvd, o->dim, sd, 0, seed++) &&
             add_tensor(w, T("attn_output.weight"), mat_type(o, "", l, qd), o->dim, qd, sq, 0, seed++) &&
             add_tensor(w, T("ffn_gate.weight"), mat_type(o, "", l, o->dim), o->ff, o->dim, sd, 0, seed++) &&
             add_tensor(w, T("ffn_up.weight"), mat_type(o, "", l, o->dim), o->ff, o->dim, sd, 0, seed++) &&
             add_tensor(w, T("ffn_down.weight"), mat_type(o, "down", l, o->ff), o->dim, o->ff, sf, 0, seed++);
        if (ok && o->arch == VEIL_ARCH_QWEN2)
            ok = add_tensor(w, T("attn_q.bias"), VEIL_GGML_F32, 1, qd, 0.1f, 0, seed++) &&
                 add_tensor(w, T("attn_k.bias"), VEIL_GGML_F32, 1, kvd, 0.1f, 0, seed++) &&
                 add_tensor(w, T("attn_v.bias"), VEIL_GGML_F32, 1, kvd, 0.1f, 0, seed++);
        if (ok && o->arch == VEIL_ARCH_QWEN3)
            ok = add_tensor(w, T("attn_q_norm.weight"), VEIL_GGML_F32, 1, hd, 0.1f, 1.0f, seed++) &&
                 add_tensor(w, T("attn_k_norm.weight"), VEIL_GGML_F32, 1, hd, 0.1f, 1.0f, seed++);
#undef T
    }
    if (!ok) {
        rc = veil_err_set(err, VEIL_ERR_NOMEM, "out of memory building the tensors");
        goto done;
    }
    rc = veil_gguf_writer_save(w, path, err);
done:
    v_free(&v);
    veil_gguf_writer_free(w);
    return rc;
}
