/* Internal structures of the engine shared by its files. */
#ifndef VEIL_ENGINE_INTERNAL_H
#define VEIL_ENGINE_INTERNAL_H

#include "veil/engine.h"

/* A weight matrix (rows × cols, rows stored one after another) or vector. */
typedef struct veil_mat {
    const uint8_t *data;
    uint32_t type;
    int rows, cols;
    size_t row_bytes;
} veil_mat;

typedef struct veil_layer {
    float *attn_norm, *ffn_norm, *q_norm, *k_norm; /* dequantized copies */
    float *bq, *bk, *bv;                           /* NULL when absent */
    veil_mat wq, wk, wv, wo, w_gate, w_up, w_down;
} veil_layer;

struct veil_llm {
    veil_gguf *g;
    veil_llm_info info;
    veil_tokenizer *tok;
    veil_mat tok_embd, output;
    float *out_norm;
    float *inv_freq; /* head_dim / 2 RoPE frequencies */
    veil_layer *layers;
};

/* out[r] = W[r] · x for every row r. */
void veil_matvec(const veil_mat *w, const float *x, float *out);
/* Row r of W as floats. */
void veil_mat_row(const veil_mat *w, int r, float *out);

/* The text side of a generation: detokenized bytes in, whole UTF-8
 * characters out (invalid sequences as U+FFFD), <think>…</think> routed to
 * reasoning when p->reasoning, stop strings cut and never emitted. */
typedef struct veil_textbuf {
    char *p;
    size_t len, cap;
} veil_textbuf;
typedef struct veil_textout {
    const veil_gen_params *p;
    const veil_gen_callbacks *cb;
    veil_textbuf raw;   /* detokenized bytes not yet released */
    veil_textbuf think; /* released text waiting for the <think> splitter */
    int th;
    int stopped;        /* a stop string was found: the generation ends */
} veil_textout;
/* Start with {p, cb}; 0 on allocation failure. */
int veil_textout_feed(veil_textout *t, const char *bytes, size_t n);
int veil_textout_finish(veil_textout *t);
void veil_textout_clear(veil_textout *t);

/* Splits text the way a BPE pre-tokenizer does (pre: "default", "llama-bpe",
 * "qwen2"), calling fn for each piece. Returns 0 on allocation failure. */
int veil_pretokenize(const char *pre, const char *text, size_t len, void (*fn)(void *, const char *, size_t), void *ctx);
/* GPT-2's printable code point for a byte. */
uint32_t veil_gpt2_byte_cp(uint8_t b);

#endif
