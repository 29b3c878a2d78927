/* Internal structures of the engine shared by its files. */
#ifndef VEIL_ENGINE_INTERNAL_H
#define VEIL_ENGINE_INTERNAL_H

#include <string.h>

#include "veil/buf.h"
#include "veil/engine.h"

/* A weight matrix (rows × cols, rows stored one after another) or vector. */
typedef struct veil_mat {
    const uint8_t *data;
    uint32_t type;
    int rows, cols;
    size_t row_bytes;
    int x8; /* rows interleaved eight at a time (interleave.c) */
} veil_mat;

typedef struct veil_layer {
    float *attn_norm, *ffn_norm, *q_norm, *k_norm; /* dequantized copies */
    float *bq, *bk, *bv;                           /* NULL when absent */
    veil_mat wq, wk, wv, wo, w_gate, w_up, w_down;
} veil_layer;

/* ---- kernels (kernels.c) ---- */
typedef float (*veil_dot_fn)(const void *w, const float *x, const int8_t *xq, const float *xd, const int16_t *xs,
                             int n);
/* The dot product of a weight row of `type` with activations: x (floats)
 * or, for the block-quantized types, xq/xd/xs (x quantized by veil_quantize_act). */
veil_dot_fn veil_dot_for(uint32_t type);
/* 1 for the types whose kernels take int8-quantized activations (all block-quantized ones). */
int veil_type_quantizes_activations(uint32_t type);
/* Four tokens' quantized activations (token t at xq + t·ld, xd + t·ld/32,
 * xs + t·ld/16) against one row, the row unpacked once: each token's result
 * is bit-identical to the single-token kernel's, so a generation's tokens do
 * not depend on what it was batched with. */
typedef void (*veil_dot4_fn)(const void *w, const int8_t *xq, const float *xd, const int16_t *xs, int n, size_t ld,
                             float out[4]);
/* NULL for the types without one (the float types). */
veil_dot4_fn veil_dot4_for(uint32_t type);
/* A given level of kernels (0 portable, 1 AVX2, 2 AVX-512 VNNI; named by
 * veil_kernel_level_name), for tests: NULL where this CPU lacks it (and for
 * dot4, for the float types). */
enum { VEIL_KERNEL_LEVELS = 3 };
veil_dot_fn veil_dot_variant(uint32_t type, int level);
veil_dot4_fn veil_dot4_variant(uint32_t type, int level);
const char *veil_kernel_level_name(int level);
/* The level in use. */
int veil_kernel_level(void);
/* 1 where level is 1 or 2 and this CPU runs it: the AVX2 forms of attention and the SwiGLU serve
 * both. */
int veil_level_runs_avx2(int level);
/* x[0..n) to int8 blocks of 32 with one float scale each (n a multiple of 32),
 * and the sum of each 16 int8 values (sums[n/16]): the kernels of the types
 * whose values are an unsigned code minus an offset (Q4_0, Q5_0, the K types)
 * take the offset's share from these sums once instead of per block. */
void veil_quantize_act(const float *x, int n, int8_t *q, float *d, int16_t *sums);
/* The same at a given level (as veil_dot_variant's), for tests: the same bytes at every level;
 * does nothing where this CPU lacks the level. */
void veil_quantize_act_level(int level, const float *x, int n, int8_t *q, float *d, int16_t *sums);

/* ---- rows interleaved eight at a time (interleave.c) ---- */
/* Eight rows of cols of a block type (Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K), one after another at
 * src, to the interleaved layout at dst (the same bytes). */
void veil_x8_pack(uint32_t type, const uint8_t *src, int cols, uint8_t *dst);
/* Row r (0–7) of eight interleaved rows back to its own blocks. */
void veil_x8_unpack_row(uint32_t type, const uint8_t *group, int r, int cols, uint8_t *dst);
/* Eight interleaved rows against T tokens' quantized activations (token t at
 * xq + t·ld, xd + t·ld/32, xs + t·ld/16): out[t·ldo + row], equal bit for bit
 * to the portable row kernel's results. */
typedef void (*veil_dot8_fn)(const void *w, const int8_t *xq, const float *xd, const int16_t *xs, int n, size_t ld,
                             int T, float *out, size_t ldo);
/* The kernel of a level (NULL where that level has none or this CPU lacks it), and of the level in use:
 * a matrix is interleaved at load time where this is not NULL. */
veil_dot8_fn veil_dot8_variant(uint32_t type, int level);
veil_dot8_fn veil_dot8_for(uint32_t type);

/* Scale and min j (0–7) of a Q4_K/Q5_K block's 12 packed bytes: 6 bits
 * each, j < 4 in the low bits of bytes j and j + 4, j ≥ 4 split between a
 * nibble of byte j + 4 and the top two bits of bytes j − 4 and j. */
static inline void veil_k4_scale_min(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 15) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* All 8 scales and mins of those 12 bytes at once, a byte each, the same
 * rule on little-endian 32-bit words (kernels decode them once per 256
 * elements). */
static inline void veil_k4_scales_mins(const uint8_t *q, uint8_t sc[8], uint8_t m[8]) {
    uint32_t u[3], s[2], n[2];
    memcpy(u, q, 12);
    const uint32_t low6 = 0x3f3f3f3fu, low4 = 0x0f0f0f0fu, low2 = 0x03030303u;
    s[0] = u[0] & low6;
    s[1] = (u[2] & low4) | (((u[0] >> 6) & low2) << 4);
    n[0] = u[1] & low6;
    n[1] = ((u[2] >> 4) & low4) | (((u[1] >> 6) & low2) << 4);
    memcpy(sc, s, 8);
    memcpy(m, n, 8);
}

/* ---- attention (attention.c) ---- */
/* nq query heads sharing one key/value head (q: nq × hd floats, head after head) against
 * positions 0..last of its cache: key p at k + p·stride, value p at v + p·stride. Head i's
 * out (out + i·hd) = Σ_p softmax_p(scale · q_i·k_p) · v_p; att: scratch of nq × (last + 1) floats.
 * Every level gives the same floats, whatever nq. */
typedef void (*veil_attend_fn)(const float *q, int nq, const float *k, const float *v, size_t stride, int last, int hd,
                               float scale, float *att, float *out);
/* A level's (as veil_dot_variant's; NULL where this CPU lacks it), and the level in use. */
veil_attend_fn veil_attend_variant(int level);
veil_attend_fn veil_attend_for(void);

/* ---- SwiGLU (swiglu.c) ---- */
/* g[i] ← g[i] / (1 + e^−g[i]) · u[i] for i < n, the same floats at every level. */
typedef void (*veil_swiglu_fn)(float *g, const float *u, size_t n);
veil_swiglu_fn veil_swiglu_variant(int level); /* NULL where this CPU lacks the level */
veil_swiglu_fn veil_swiglu_for(void);

/* veil_llm_prefill without the last token's logits: only the KV cache filled (a prompt's
 * part before its last); 1, or 0 on a bad token or position. */
int veil_llm_prefill_kv(veil_llm_session *s, const int32_t *tokens, size_t n, int pos0);

/* The bytes a session's keys and values take now (each of the two arrays): its written positions'. */
size_t veil_llm_session_kv_bytes(const veil_llm_session *s);

/* Prefix reuse (kvcache.c): the entry of model m in partition part whose
 * tokens share the longest prefix with prompt[0..n) (at most n - 1 tokens,
 * so that the last is always computed; and at least half the entry's, or
 * 256, so that an entry is not given up for a few shared template tokens),
 * taken out of the cache, with that length in *reuse; NULL when none. */
veil_llm_session *veil_kv_cache_take(veil_kv_cache *c, const veil_llm *m, const uint8_t part[32], const int32_t *prompt,
                                     size_t n, size_t *reuse);
/* Keeps session s (owned from now on) whose KV holds tokens[0..n), evicting
 * the least recently used entries beyond the bound; too big: wiped and freed. */
void veil_kv_cache_put(veil_kv_cache *c, const veil_llm *m, const uint8_t part[32], veil_llm_session *s,
                       const int32_t *tokens, size_t n);

/* Tokens a pass over the weights takes at most: a prompt's chunk, or concurrent decode steps. */
#define VEIL_BATCH 32

/* One generation's state: its KV cache and its last logits. */
struct veil_llm_session {
    const veil_llm *m;
    int n_ctx, cap; /* cap: positions the KV cache has room for now; it grows up to n_ctx */
    int used;       /* positions written (the highest + 1): the part that holds anything, and is wiped */
    float *logits;
    float *kc, *vc; /* [layer][kv head][pos < cap][head_dim]: each head's keys (values) in one run */
};

/* One pass for decode steps the batcher gathered (batcher.c): token tok[i]
 * of ss[i] at pos[i], n <= VEIL_BATCH, each session's logits filled.
 * Returns 1, or 0 when memory ran out. */
int veil_llm_run_steps(const veil_llm *m, veil_llm_session *const *ss, const int32_t *tok, const int *pos, int n);

/* ---- sampling's passes over a vocabulary (sampler.c) ---- */
typedef struct veil_sample_kernels {
    /* the first index of the largest of x[0..n) (NaN is never larger) */
    int32_t (*argmax)(const float *x, int32_t n);
    /* out[i] = e^((x[i] − mx) / temp) for i < n, and the sum of those ≥ floor_ (double, four
     * partial sums by i mod 4, added as (s0 + s1) + (s2 + s3)) */
    double (*probs)(const float *x, int32_t n, float mx, float temp, float floor_, float *out);
    /* the sum of prob[i] ≥ floor_ over the i no later than token ci of logit cl in the order by
     * logit (x[i] > cl, or x[i] == cl and i ≤ ci), in the same four partial sums */
    double (*mass)(const float *x, const float *prob, int32_t n, float cl, int32_t ci, float floor_);
} veil_sample_kernels;
/* Every level gives the same results; NULL where this CPU lacks the level. */
const veil_sample_kernels *veil_sample_kernels_variant(int level);
const veil_sample_kernels *veil_sample_kernels_for(void);

/* ---- thread pool (pool.c) ---- */
typedef struct veil_pool veil_pool;
veil_pool *veil_pool_new(int n_threads);
void veil_pool_free(veil_pool *p);
int veil_pool_threads(const veil_pool *p);
/* Runs fn(ctx, ith, nth) on every thread (ith in [0, nth)); returns when all are done. */
void veil_pool_run(veil_pool *p, void (*fn)(void *ctx, int ith, int nth), void *ctx);

/* Scratch of one pass through the model (forward.c): one pass at a time. */
typedef struct veil_workspace veil_workspace;
veil_workspace *veil_workspace_new(const struct veil_llm *m);
void veil_workspace_free(veil_workspace *w);

/* Decode steps of concurrent generations gathered into one pass (forward.c). */
typedef struct veil_batcher veil_batcher;
veil_batcher *veil_batcher_new(void);
void veil_batcher_free(veil_batcher *b);

struct veil_llm {
    veil_gguf *g;
    veil_pool *pool;
    veil_workspace *ws;
    veil_batcher *batcher;
    veil_llm_info info;
    veil_tokenizer *tok;
    veil_mat tok_embd, output;
    float *out_norm;
    float *inv_freq; /* head_dim / 2 RoPE frequencies */
    veil_layer *layers;
    void **owned; /* matrices' interleaved copies */
    int n_owned;
};

/* The text side of a generation: detokenized bytes in, whole UTF-8
 * characters out (invalid sequences as U+FFFD), <think>…</think> routed to
 * reasoning when p->reasoning, stop strings cut and never emitted. */
typedef struct veil_textout {
    const veil_gen_params *p;
    const veil_gen_callbacks *cb;
    veil_buf raw;   /* detokenized bytes not yet released */
    veil_buf think; /* released text waiting for the <think> splitter */
    int th;
    int stopped; /* a stop string was found: the generation ends */
} veil_textout;
/* Start with {p, cb}; 0 on allocation failure. */
int veil_textout_feed(veil_textout *t, const char *bytes, size_t n);
int veil_textout_finish(veil_textout *t);
void veil_textout_clear(veil_textout *t);

/* Splits text the way a BPE pre-tokenizer does (pre: "default", "llama-bpe",
 * "qwen2"), calling fn for each piece. Returns 0 on allocation failure. */
int veil_pretokenize(const char *pre, const char *text, size_t len, void (*fn)(void *, const char *, size_t),
                     void *ctx);
/* GPT-2's printable code point for a byte. */
uint32_t veil_gpt2_byte_cp(uint8_t b);

#endif
