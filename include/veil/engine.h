/* veil's built-in inference engine: GGUF llama / qwen2 / qwen3 models on the
 * CPU. A loaded model (veil_llm) is read-only and shared by every request;
 * each generation has its own session (KV cache), sampler and detokenizer. */
#ifndef VEIL_ENGINE_H
#define VEIL_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "veil/err.h"
#include "veil/gguf.h"

#ifdef __cplusplus
extern "C" {
#endif
VEIL_API_BEGIN

typedef enum { VEIL_ARCH_LLAMA, VEIL_ARCH_QWEN2, VEIL_ARCH_QWEN3 } veil_arch;
typedef enum { VEIL_TOK_BPE, VEIL_TOK_SPM } veil_tok_kind;
typedef enum { VEIL_TMPL_CHATML, VEIL_TMPL_LLAMA3, VEIL_TMPL_LLAMA2 } veil_tmpl_kind;

/* Token types as GGUF's tokenizer.ggml.token_type stores them. */
enum {
    VEIL_TT_NORMAL = 1,
    VEIL_TT_UNKNOWN = 2,
    VEIL_TT_CONTROL = 3,
    VEIL_TT_USER = 4,
    VEIL_TT_UNUSED = 5,
    VEIL_TT_BYTE = 6
};

typedef struct veil_llm_info {
    veil_arch arch;
    const char *arch_name;
    char name[128]; /* general.name, or the file's base name */
    int dim, n_layers, n_heads, n_kv_heads, head_dim, ff, vocab, ctx;
    float eps, rope_base, rope_scale; /* rope_scale: positions are divided by it */
    int rope_neox;                    /* 1: pairs (i, i + d/2) as qwen; 0: adjacent pairs as llama */
    veil_tok_kind tok_kind;
    veil_tmpl_kind tmpl;
    uint64_t weight_bytes; /* bytes of the matrices read once per decoded token */
    uint32_t main_type;    /* the most common matrix type */
    int n_matrices;        /* the matrices a pass reads (7 a layer and the output) */
    int n_interleaved;     /* of which this many had their rows interleaved at load for the kernels in use */
} veil_llm_info;

typedef struct veil_llm veil_llm;
typedef struct veil_tokenizer veil_tokenizer;

/* Loads a model: checks the file, the architecture's hyperparameters and
 * every tensor's shape and type. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_llm_load(veil_llm **out, const char *path, veil_err *err);
void veil_llm_free(veil_llm *m);
const veil_llm_info *veil_llm_get_info(const veil_llm *m);
const veil_tokenizer *veil_llm_tokenizer(const veil_llm *m);
const veil_gguf *veil_llm_gguf(const veil_llm *m);

/* ---- tokenizer ---- */

/* A growable token list. */
typedef struct veil_tokens {
    int32_t *ids;
    size_t n, cap;
} veil_tokens;
int veil_tokens_push(veil_tokens *t, int32_t id);
void veil_tokens_free(veil_tokens *t);

/* Loads the tokenizer from GGUF metadata (tokenizer.ggml.*). */
VEIL_WARN_UNUSED_RESULT veil_rc veil_tokenizer_load(veil_tokenizer **out, const veil_gguf *g, veil_err *err);
void veil_tokenizer_free(veil_tokenizer *t);
/* Appends the tokens of `text` (no special-token parsing: text that looks
 * like "<|im_start|>" is plain text). Returns 0 on allocation failure. */
int veil_tokenize(const veil_tokenizer *t, const char *text, size_t len, veil_tokens *out);
/* Token id of a special token's text, or -1. */
int32_t veil_token_find(const veil_tokenizer *t, const char *text);
/* The bytes a token stands for (control tokens: none). Writes up to cap
 * bytes; returns the full length. */
size_t veil_token_bytes(const veil_tokenizer *t, int32_t id, char *out, size_t cap);
int veil_token_type(const veil_tokenizer *t, int32_t id);
int32_t veil_tokenizer_vocab(const veil_tokenizer *t);
int32_t veil_tokenizer_bos(const veil_tokenizer *t); /* -1 when none / not added */
int32_t veil_tokenizer_eos(const veil_tokenizer *t);
/* 1 when generating `id` ends the turn (eos, eot, im_end, end_of_text). */
int veil_token_ends_turn(const veil_tokenizer *t, int32_t id);

/* ---- chat ---- */

typedef struct veil_chat_msg {
    const char *role; /* system, user, assistant, tool */
    const char *content;
} veil_chat_msg;

/* Renders messages with the model's chat template into tokens, ending with
 * the assistant's turn opened. Special tokens are inserted by id and message
 * contents are tokenized as plain text, so a prompt cannot forge them.
 * disable_thinking: qwen3's empty <think></think> block is added. */
int veil_chat_tokens(const veil_llm *m, const veil_chat_msg *msgs, size_t n, int disable_thinking, veil_tokens *out);

/* ---- forward pass ---- */

typedef struct veil_llm_session veil_llm_session;
/* A KV cache for up to n_ctx positions (at most the model's context). */
veil_llm_session *veil_llm_session_new(const veil_llm *m, int n_ctx);
void veil_llm_session_free(veil_llm_session *s);
/* Runs `token` at position `pos` (0 ≤ pos < n_ctx, positions filled in
 * order) and returns the vocabulary's logits, valid until the next call. */
const float *veil_llm_forward(veil_llm_session *s, int32_t token, int pos);
/* Runs n tokens at positions pos0… in batches that read the weights once
 * each, and returns the logits of the last (NULL on a bad token or
 * position). all_logits (n × vocab floats, may be NULL) receives every
 * position's logits. */
const float *veil_llm_prefill(veil_llm_session *s, const int32_t *tokens, size_t n, int pos0, float *all_logits);
/* One decode step (token at pos) of a generation that runs alongside others:
 * the steps of every generation between veil_llm_decode_begin and _end are
 * gathered into one pass over the weights (continuous batching). Returns the
 * logits as veil_llm_forward does; the same tokens come out as alone. */
const float *veil_llm_step(veil_llm_session *s, int32_t token, int pos);
void veil_llm_decode_begin(const veil_llm *m);
void veil_llm_decode_end(const veil_llm *m);
/* Decode passes run and steps they carried, since the model was loaded. */
void veil_llm_batch_stats(const veil_llm *m, uint64_t *passes, uint64_t *steps);

/* Threads for the model's matrix work (default: $VEIL_THREADS, else the
 * online CPUs). Returns the number in use. Not while generations run. */
int veil_llm_set_threads(veil_llm *m, int n);
/* The kernels in use: the best this CPU runs ("avx512vnni", "avx2" or
 * "portable"), or the level $VEIL_KERNELS caps it at. */
const char *veil_engine_kernels(void);

/* ---- sampling ---- */

typedef struct veil_sampling {
    float temperature;                                             /* 0: greedy */
    int top_k;                                                     /* 0: off */
    float top_p;                                                   /* 1: off */
    float min_p;                                                   /* 0: off */
    float repetition_penalty, presence_penalty, frequency_penalty; /* 1, 0, 0: off */
    int penalty_last_n;
    uint64_t seed;
} veil_sampling;
void veil_sampling_default(veil_sampling *p);

typedef struct veil_sampler veil_sampler;
veil_sampler *veil_sampler_new(const veil_sampling *p, int32_t vocab);
void veil_sampler_free(veil_sampler *s);
/* Picks the next token from logits (modified in place) given the tokens so far. */
int32_t veil_sampler_pick(veil_sampler *s, float *logits, const int32_t *history, size_t n_history);
/* The greedy pick: the first token of the highest logit (temperature 0 without penalties). */
int32_t veil_greedy_pick(const float *logits, int32_t vocab);

/* ---- generation ---- */

/* ---- prefix reuse ---- */

/* Finished generations' KV state kept for later prompts that begin with the
 * same tokens (the next turn of a chat re-reads only its new tokens).
 * Entries belong to a partition (veil serve: the SHA-256 of the request's
 * API key) and are only ever reused within it, so that one user cannot time
 * another's prompts. Bounded by max_bytes (least recently used first out),
 * in memory only, wiped when evicted or freed. Shared by threads. */
typedef struct veil_kv_cache veil_kv_cache;
veil_kv_cache *veil_kv_cache_new(size_t max_bytes);
void veil_kv_cache_free(veil_kv_cache *c);

typedef struct veil_kv_cache_stats {
    size_t entries, bytes, max_bytes;
    uint64_t hits, misses, evictions, tokens_reused;
} veil_kv_cache_stats;
void veil_kv_cache_get_stats(veil_kv_cache *c, veil_kv_cache_stats *out) VEIL_NONNULL(1, 2);

typedef struct veil_gen_params {
    veil_sampling sampling;
    veil_kv_cache *cache;    /* NULL: no prefix reuse */
    uint8_t partition[32];   /* with cache: whose entries this generation may reuse, and adds to */
    long max_tokens;         /* 0: until the context is full */
    const char *const *stop; /* stop strings */
    size_t n_stop;
    int reasoning;      /* the model thinks in <think>…</think> (qwen3): route it to reasoning */
    int strip_thinking; /* drop the reasoning */
} veil_gen_params;

typedef struct veil_gen_callbacks {
    void *ctx;
    void (*piece)(void *ctx, const char *content, size_t clen, const char *reasoning, size_t rlen);
    int (*cancelled)(void *ctx);
} veil_gen_callbacks;

typedef struct veil_gen_result {
    const char *finish_reason; /* "stop" or "length"; NULL: cancelled */
    long prompt_tokens, completion_tokens;
    long cached_tokens; /* prompt tokens whose KV state came from the cache (not computed again) */
    double prefill_s, decode_s;
} veil_gen_result;

/* Generates from a prompt: prefill, then decode until an end-of-turn token,
 * a stop string, max_tokens or the context's end. Text goes out in whole
 * UTF-8 characters; a stop string is never emitted. Returns VEIL_ERR_BAD_LENGTH
 * when the prompt does not fit the context. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_generate(const veil_llm *m, const veil_tokens *prompt, const veil_gen_params *p,
                                              const veil_gen_callbacks *cb, veil_gen_result *res, veil_err *err);

/* ---- synthesized models ---- */

typedef struct veil_synth_opts {
    veil_arch arch;
    uint32_t type; /* F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K, or VEIL_SYNTH_Q4_K_M */
    int dim, n_layers, n_heads, n_kv_heads, head_dim, ff, vocab, ctx;
    uint64_t seed;
    int spm;          /* SentencePiece vocabulary + llama-2 template (llama only) */
    float rope_scale; /* > 1: linear RoPE scaling by this factor; 0 or 1: none */
    const char *name;
} veil_synth_opts;

/* The Q4_K_M mix of llama.cpp's quantizer: Q4_K, with Q6_K for the output
 * (or tied embeddings) and for attn_v / ffn_down in the layers that "use
 * more bits"; rows whose width is not a multiple of 256 fall back to Q5_0
 * (for Q4_K/Q5_K) or Q8_0 (for Q6_K). */
#define VEIL_SYNTH_Q4_K_M 1000u

/* Fills dims from a preset: "tiny", "0.5b", "1.5b". Returns 0 when unknown. */
int veil_synth_preset(veil_synth_opts *o, const char *preset);
/* Options for a "tiny" model of this architecture and tensor type (seed 0,
 * no name, every other option unset): callers change what they need. */
veil_synth_opts veil_synth_tiny(veil_arch arch, uint32_t type);
/* Writes a valid GGUF with deterministic random weights, a real vocabulary
 * learned from built-in text, and the architecture's chat template. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_synth_write(const veil_synth_opts *o, const char *path, veil_err *err);

/* ---- numeric formats shared by the engine and the writer ---- */
float veil_f16_to_f32(uint16_t h);
uint16_t veil_f32_to_f16(float f);
float veil_bf16_to_f32(uint16_t h);
uint16_t veil_f32_to_bf16(float f);
/* Converts n floats (n a multiple of the type's block) into `type`'s layout. */
void veil_quantize_row(uint32_t type, const float *src, void *dst, size_t n);
/* Converts a row of `type` back to n floats. */
void veil_dequantize_row(uint32_t type, const void *src, float *dst, size_t n);

VEIL_API_END
#ifdef __cplusplus
}
#endif
#endif
