/* The transformer forward pass, in the shape of llama2.c's run.c but
 * batched: RMSNorm, grouped-query attention with RoPE and a KV cache,
 * SwiGLU feed-forward; forward_tokens labels each step (1-6). A batch of
 * tokens (a prompt's chunk, or one decode step of several generations, which
 * batcher.c gathers) goes through each weight matrix once; the matrix work
 * and the attention heads are shared among the model's thread pool. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine_internal.h"
#include "veil/secure.h"

#define BATCH VEIL_BATCH

/* ---- matrix work ---- */

/* W·x for up to three matrices sharing one input, for T tokens. */
typedef struct mm_job {
    const veil_mat *w[3];
    float *out[3];      /* out[k][t * rows_k + r] */
    veil_dot_fn dot[3]; /* each matrix's kernels, chosen once per job */
    veil_dot4_fn dot4[3];
    veil_dot8_fn dot8[3]; /* for a matrix whose rows are interleaved eight at a time */
    int T, cols;
    int chunk, chunks; /* rows a thread takes at a time (a multiple of 16), chunks in all */
    atomic_int next;   /* the first chunk no thread has taken */
    const float *x;    /* x[t * cols + c] */
    const int8_t *xq;
    const float *xd;
    const int16_t *xs; /* quantized x: xq[t * cols], xd[t * cols / 32], xs[t * cols / 16] */
} mm_job;

/* Rows [lo, hi) of matrix k. */
static void mm_rows(const mm_job *j, int k, int lo, int hi) {
    const veil_mat *w = j->w[k];
    size_t ld = (size_t)j->cols;
    if (j->dot8[k]) { /* eight rows a call; lo and hi are multiples of 8 */
        for (int r = lo; r < hi; r += 8)
            j->dot8[k](w->data + (size_t)r * w->row_bytes, j->xq, j->xd, j->xs, j->cols, ld, j->T, j->out[k] + r,
                       (size_t)w->rows);
        return;
    }
    veil_dot_fn dot = j->dot[k];
    veil_dot4_fn dot4 = j->dot4[k];
    for (int r = lo; r < hi; r++) {
        const uint8_t *row = w->data + (size_t)r * w->row_bytes;
        int t = 0;
        for (; dot4 && t + 4 <= j->T; t += 4) {
            float o[4];
            dot4(row, j->xq + t * ld, j->xd + t * (ld / 32), j->xs + t * (ld / 16), j->cols, ld, o);
            for (int u = 0; u < 4; u++) j->out[k][(size_t)(t + u) * w->rows + r] = o[u];
        }
        for (; t < j->T; t++)
            j->out[k][(size_t)t * w->rows + r] =
                dot(row, j->x + t * ld, j->xq + t * ld, j->xd + t * (ld / 32), j->xs + t * (ld / 16), j->cols);
    }
}

/* Threads take the rows a chunk at a time, so that one slowed down (a busier core, a
 * later wake-up) leaves its share to the others instead of holding up the pass
 * (docs/benchmarks.md); chunks are multiples of 16 rows within one matrix, 64 bytes of
 * each token's out. */
static void mm_worker(void *ctx, int ith, int nth) {
    (void)ith, (void)nth;
    mm_job *j = ctx;
    for (;;) {
        int c = atomic_fetch_add(&j->next, 1);
        if (c >= j->chunks) break;
        int k = 0, from = c * j->chunk;
        while (from >= j->w[k]->rows) /* the chunks of each matrix follow those of the one before */
            from -= (j->w[k]->rows + j->chunk - 1) / j->chunk * j->chunk, k++;
        mm_rows(j, k, from, from + j->chunk < j->w[k]->rows ? from + j->chunk : j->w[k]->rows);
    }
}

/* One pass's scratch, for up to BATCH tokens; the model has one, used under mu. */
struct veil_workspace {
    pthread_mutex_t mu;
    float *x, *xb, *xb2, *hb, *hb2, *q, *k, *v; /* [BATCH][…] */
    int8_t *xq;
    uint8_t *row; /* an embedding row's bytes */
    float *xd;
    int16_t *xs;
    float *att; /* [threads][model context], made for the pool it was sized for */
    int att_threads;
    float *logits; /* [BATCH][vocab], made on first use */
};

void veil_workspace_free(veil_workspace *w) {
    if (!w) return;
    free(w->x), free(w->xb), free(w->xb2), free(w->hb), free(w->hb2);
    free(w->q), free(w->k), free(w->v), free(w->att), free(w->logits);
    free(w->xq), free(w->xd), free(w->xs), free(w->row);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

veil_workspace *veil_workspace_new(const veil_llm *m) {
    const veil_llm_info *in = &m->info;
    veil_workspace *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    pthread_mutex_init(&w->mu, NULL);
    size_t qd = (size_t)in->n_heads * in->head_dim, kvd = (size_t)in->n_kv_heads * in->head_dim;
    size_t wide = qd > (size_t)in->dim ? qd : (size_t)in->dim;
    if ((size_t)in->ff > wide) wide = (size_t)in->ff;
    size_t B = BATCH;
    w->x = calloc(B * in->dim, 4), w->xb = calloc(B * wide, 4), w->xb2 = calloc(B * wide, 4);
    w->hb = calloc(B * in->ff, 4), w->hb2 = calloc(B * in->ff, 4);
    w->q = calloc(B * qd, 4), w->k = calloc(B * kvd, 4), w->v = calloc(B * kvd, 4);
    w->xq = calloc(B * wide, 1), w->xd = calloc(B * wide / 32 + 1, 4), w->xs = calloc(B * wide / 16 + 1, 2);
    w->row = malloc(m->tok_embd.row_bytes);
    if (!w->x || !w->xb || !w->xb2 || !w->hb || !w->hb2 || !w->q || !w->k || !w->v || !w->xq || !w->xd || !w->xs ||
        !w->row) {
        veil_workspace_free(w);
        return NULL;
    }
    return w;
}

/* W·x (x: T rows of cols), for 1–3 matrices of the same input. */
static void matmul(const veil_llm *m, int T, const float *x, int cols, int n_w, const veil_mat *w0, float *o0,
                   const veil_mat *w1, float *o1, const veil_mat *w2, float *o2) {
    veil_workspace *ws = m->ws;
    mm_job j = {{w0, w1, w2}, {o0, o1, o2}, {NULL}, {NULL}, {NULL}, T, cols, 0, 0, 0, x, ws->xq, ws->xd, ws->xs};
    int need_q = 0, total = 0, nth = veil_pool_threads(m->pool);
    for (int k = 0; k < n_w; k++) {
        total += j.w[k]->rows;
        j.dot[k] = veil_dot_for(j.w[k]->type);
        j.dot4[k] = veil_dot4_for(j.w[k]->type);
        j.dot8[k] = j.w[k]->x8 ? veil_dot8_for(j.w[k]->type) : NULL;
        need_q |= veil_type_quantizes_activations(j.w[k]->type);
    }
    j.chunk = total / (nth * 8);
    j.chunk = j.chunk < 16 ? 16 : (j.chunk + 15) & ~15;
    for (int k = 0; k < n_w; k++) j.chunks += (j.w[k]->rows + j.chunk - 1) / j.chunk;
    if (need_q)
        for (int t = 0; t < T; t++)
            veil_quantize_act(x + (size_t)t * cols, cols, ws->xq + (size_t)t * cols, ws->xd + (size_t)t * (cols / 32),
                              ws->xs + (size_t)t * (cols / 16));
    veil_pool_run(m->pool, mm_worker, &j);
}

/* Row r of W as floats (scratch: row_bytes, for a row of interleaved ones). */
static void mat_row(const veil_mat *w, int r, float *out, uint8_t *scratch) {
    if (!w->x8) {
        veil_dequantize_row(w->type, w->data + (size_t)r * w->row_bytes, out, (size_t)w->cols);
        return;
    }
    veil_x8_unpack_row(w->type, w->data + (size_t)(r & ~7) * w->row_bytes, r & 7, w->cols, scratch);
    veil_dequantize_row(w->type, scratch, out, (size_t)w->cols);
}

size_t veil_llm_session_kv_bytes(const veil_llm_session *s) {
    const veil_llm_info *in = &s->m->info;
    return (size_t)in->n_layers * in->n_kv_heads * (size_t)s->used * in->head_dim * 4;
}

/* Keys and values are a function of the prompt: wiped, as the prompt would be, before they are
 * freed; only the positions written, so that the room never used (pages the kernel never gave)
 * is not touched. */
static void free_kv(const veil_llm_session *s) {
    const veil_llm_info *in = &s->m->info;
    size_t runs = (size_t)in->n_layers * in->n_kv_heads, hd = (size_t)in->head_dim;
    for (size_t r = 0; s->kc && s->vc && r < runs; r++) {
        veil_wipe(s->kc + r * s->cap * hd, (size_t)s->used * hd * 4);
        veil_wipe(s->vc + r * s->cap * hd, (size_t)s->used * hd * 4);
    }
    free(s->kc), free(s->vc);
}

void veil_llm_session_free(veil_llm_session *s) {
    if (!s) return;
    free_kv(s);
    veil_free_secret(s->logits, (size_t)s->m->info.vocab * 4);
    free(s);
}

veil_llm_session *veil_llm_session_new(const veil_llm *m, int n_ctx) {
    const veil_llm_info *in = &m->info;
    if (n_ctx <= 0 || n_ctx > in->ctx) n_ctx = in->ctx;
    veil_llm_session *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->m = m;
    s->n_ctx = n_ctx;
    if (!(s->logits = calloc((size_t)in->vocab, 4))) {
        free(s);
        return NULL;
    }
    return s;
}

static void rmsnorm(float *o, const float *x, const float *w, int n, float eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float r = 1.0f / sqrtf((float)(ss / n) + eps);
    for (int i = 0; i < n; i++) o[i] = x[i] * r * w[i];
}

static void rope(float *v, int n_heads, int hd, const float *inv_freq, float pos, int neox) {
    for (int i = 0; i < hd / 2; i++) {
        float a = pos * inv_freq[i], c = cosf(a), sn = sinf(a);
        for (int h = 0; h < n_heads; h++) {
            float *p = v + (size_t)h * hd;
            int i0 = neox ? i : 2 * i, i1 = neox ? i + hd / 2 : 2 * i + 1;
            float x0 = p[i0], x1 = p[i1];
            p[i0] = x0 * c - x1 * sn;
            p[i1] = x0 * sn + x1 * c;
        }
    }
}

/* Attention for T tokens, token t of session ss[t] at position pos[t]. The query heads that share
 * a key/value head go together, so that its cache is read once for them (attention.c), in as
 * many parts as the threads need to have a task each: a task is a token, a key/value head and a
 * run of `per` of its query heads. */
typedef struct att_job {
    const veil_llm *m;
    veil_llm_session *const *ss;
    const int *pos;
    int layer, T, parts, per; /* a key/value head's query heads: `parts` runs of up to `per` */
} att_job;

static void att_worker(void *ctx, int ith, int nth) {
    att_job *j = ctx;
    const veil_llm_info *in = &j->m->info;
    veil_workspace *ws = j->m->ws;
    int hd = in->head_dim, H = in->n_heads, KV = in->n_kv_heads, grp = H / KV;
    float scale = 1.0f / sqrtf((float)hd), *att = ws->att + (size_t)ith * j->per * in->ctx;
    veil_attend_fn attend = veil_attend_for();
    for (int task = ith; task < j->T * KV * j->parts; task += nth) {
        int t = task / (KV * j->parts), g = task / j->parts % KV, h = g * grp + task % j->parts * j->per;
        int nq = h + j->per <= (g + 1) * grp ? j->per : (g + 1) * grp - h;
        const veil_llm_session *s = j->ss[t];
        size_t at = ((size_t)j->layer * KV + (size_t)g) * s->cap * hd, qo = ((size_t)t * H + (size_t)h) * hd;
        attend(ws->q + qo, nq, s->kc + at, s->vc + at, (size_t)hd, j->pos[t], hd, scale, att, ws->xb2 + qo);
    }
}

/* Room for `need` positions (at most n_ctx): the cache doubles, each head's written run moved to
 * its place in the larger one. Room costs nothing until written (pages the kernel gives on first
 * use): only written positions are copied, counted and wiped. */
static int grow_cache(veil_llm_session *s, int need) {
    const veil_llm_info *in = &s->m->info;
    if (need > s->n_ctx) need = s->n_ctx;
    if (need <= s->cap) return 1;
    size_t runs = (size_t)in->n_layers * in->n_kv_heads, hd = (size_t)in->head_dim;
    int cap = s->cap ? s->cap : 64;
    while (cap < need) cap *= 2;
    if (cap > s->n_ctx) cap = s->n_ctx;
    float *kc = malloc(runs * cap * hd * 4), *vc = malloc(runs * cap * hd * 4);
    if (!kc || !vc) {
        free(kc), free(vc);
        return 0;
    }
    for (size_t r = 0; s->used && r < runs; r++) {
        memcpy(kc + r * cap * hd, s->kc + r * s->cap * hd, (size_t)s->used * hd * 4);
        memcpy(vc + r * cap * hd, s->vc + r * s->cap * hd, (size_t)s->used * hd * 4);
    }
    free_kv(s);
    s->kc = kc, s->vc = vc;
    s->cap = cap;
    return 1;
}

/* The attention's tasks for T tokens (att_job): each key/value head's query heads in `parts`
 * runs of up to `per`, as many as give each of the threads a task. */
static void att_split(const veil_llm_info *in, int threads, int T, int *parts, int *per) {
    int grp = in->n_heads / in->n_kv_heads, n = (threads + T * in->n_kv_heads - 1) / (T * in->n_kv_heads);
    if (n > grp) n = grp;
    *per = (grp + n - 1) / n;
    *parts = (grp + *per - 1) / *per;
}

/* One pass of T ≤ BATCH tokens: token t belongs to ss[t] at position
 * pos[t] (a prompt's chunk: one session, consecutive positions; a decode
 * step: one token of each of T sessions). Each token's logits go to
 * out + t·vocab when `out`; else, when `last`, the last token's to its
 * session, and when neither, none: the pass only fills the KV cache (a
 * prompt's chunk before its last). Without `out`, the last layer goes on
 * past its keys and values with the last token alone, or stops there: the
 * other tokens' outputs from it feed nothing. Called with the workspace
 * held. */
static int forward_tokens(const veil_llm *m, veil_llm_session *const *ss, const int32_t *tok, const int *pos, int T,
                          float *out, int last) {
    veil_workspace *ws = m->ws;
    const veil_llm_info *in = &m->info;
    int dim = in->dim, hd = in->head_dim, qd = in->n_heads * hd, kvd = in->n_kv_heads * hd, ff = in->ff;
    int threads = veil_pool_threads(m->pool), grp = in->n_heads / in->n_kv_heads, parts, per;
    att_split(in, threads, T, &parts, &per);
    if (ws->att_threads < threads) { /* room for a group's scores on each thread */
        float *a = realloc(ws->att, (size_t)threads * grp * in->ctx * 4);
        if (!a) return 0;
        ws->att = a;
        ws->att_threads = threads;
    }
    /* 1. each token's embedding row into the residual stream x */
    for (int t = 0; t < T; t++) {
        if (!grow_cache(ss[t], pos[t] + 1)) return 0;
        if (pos[t] + 1 > ss[t]->used) ss[t]->used = pos[t] + 1;
        mat_row(&m->tok_embd, tok[t], ws->x + (size_t)t * dim, ws->row);
    }
    for (int l = 0; l < in->n_layers; l++) {
        const veil_layer *L = &m->layers[l];
        /* 2. attention's input: RMSNorm of x, then q, k and v in one pass over the three matrices */
        for (int t = 0; t < T; t++)
            rmsnorm(ws->xb + (size_t)t * dim, ws->x + (size_t)t * dim, L->attn_norm, dim, in->eps);
        matmul(m, T, ws->xb, dim, 3, &L->wq, ws->q, &L->wk, ws->k, &L->wv, ws->v);
        /* 3. per token: the biases (qwen2), per-head RMSNorm of q and k (qwen3), RoPE at the
         *    token's position, and k and v into its session's KV cache */
        for (int t = 0; t < T; t++) {
            float *q = ws->q + (size_t)t * qd, *k = ws->k + (size_t)t * kvd, *v = ws->v + (size_t)t * kvd;
            if (L->bq)
                for (int i = 0; i < qd; i++) q[i] += L->bq[i];
            if (L->bk)
                for (int i = 0; i < kvd; i++) k[i] += L->bk[i];
            if (L->bv)
                for (int i = 0; i < kvd; i++) v[i] += L->bv[i];
            if (L->q_norm) {
                for (int h = 0; h < in->n_heads; h++) rmsnorm(q + h * hd, q + h * hd, L->q_norm, hd, in->eps);
                for (int h = 0; h < in->n_kv_heads; h++) rmsnorm(k + h * hd, k + h * hd, L->k_norm, hd, in->eps);
            }
            float fpos = (float)pos[t] / in->rope_scale;
            rope(q, in->n_heads, hd, m->inv_freq, fpos, in->rope_neox);
            rope(k, in->n_kv_heads, hd, m->inv_freq, fpos, in->rope_neox);
            for (int h = 0; h < in->n_kv_heads; h++) {
                size_t at = (((size_t)l * in->n_kv_heads + h) * ss[t]->cap + pos[t]) * hd;
                memcpy(ss[t]->kc + at, k + h * hd, (size_t)hd * 4);
                memcpy(ss[t]->vc + at, v + h * hd, (size_t)hd * 4);
            }
        }
        /* the last layer of a prompt's chunk: only the last token's output is read on, if any */
        if (!out && l == in->n_layers - 1) {
            if (!last) return 1;
            if (T > 1) { /* the last token's output alone is read */
                memcpy(ws->q, ws->q + (size_t)(T - 1) * qd, (size_t)qd * 4);
                memcpy(ws->x, ws->x + (size_t)(T - 1) * dim, (size_t)dim * 4);
                ss += T - 1, pos += T - 1, T = 1;
                att_split(in, threads, T, &parts, &per);
            }
        }
        /* 4. attention over each token's cache (attention.c), heads shared among the threads,
         *    then the output projection, added to x (the residual connection) */
        att_job aj = {m, ss, pos, l, T, parts, per};
        veil_pool_run(m->pool, att_worker, &aj);
        matmul(m, T, ws->xb2, qd, 1, &L->wo, ws->xb, NULL, NULL, NULL, NULL);
        for (size_t i = 0; i < (size_t)T * dim; i++) ws->x[i] += ws->xb[i];
        /* 5. the feed-forward: RMSNorm of x, gate and up in one pass, SwiGLU (swiglu.c),
         *    down, added to x */
        for (int t = 0; t < T; t++)
            rmsnorm(ws->xb + (size_t)t * dim, ws->x + (size_t)t * dim, L->ffn_norm, dim, in->eps);
        matmul(m, T, ws->xb, dim, 2, &L->w_gate, ws->hb, &L->w_up, ws->hb2, NULL, NULL);
        veil_swiglu_for()(ws->hb, ws->hb2, (size_t)T * ff);
        matmul(m, T, ws->hb, ff, 1, &L->w_down, ws->xb, NULL, NULL, NULL, NULL);
        for (size_t i = 0; i < (size_t)T * dim; i++) ws->x[i] += ws->xb[i];
    }
    /* 6. the final RMSNorm and the classifier into logits: every token's, or the last one's */
    int first = out ? 0 : T - 1;
    for (int t = first; t < T; t++)
        rmsnorm(ws->xb + (size_t)(t - first) * dim, ws->x + (size_t)t * dim, m->out_norm, dim, in->eps);
    matmul(m, T - first, ws->xb, dim, 1, &m->output, out ? out : ss[T - 1]->logits, NULL, NULL, NULL, NULL);
    return 1;
}

/* veil_llm_prefill, and with `last` 0 the same without the last token's logits (1 or 0). */
static int prefill(veil_llm_session *s, const int32_t *tokens, size_t n, int pos0, float *all_logits, int last) {
    const veil_llm *m = s->m;
    const veil_llm_info *in = &m->info;
    if (n == 0 || pos0 < 0 || (size_t)pos0 + n > (size_t)s->n_ctx) return 0;
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= in->vocab) return 0;
    veil_llm_session *ss[BATCH];
    int pos[BATCH];
    /* a prompt (more than one token) makes room for up to RESERVE tokens after it too, so that
     * the decoding that follows does not stop to grow and copy the cache (on a 4,096-token
     * prompt that stalled the first decode step for half a second: docs/benchmarks.md); only a
     * hint: without that room the cache grows as the positions come */
    enum { RESERVE = 1024 };
    if (n > 1) (void)grow_cache(s, pos0 + (int)n + RESERVE);
    int ok = 1;
    pthread_mutex_lock(&m->ws->mu);
    for (size_t done = 0; ok && done < n;) {
        int T = n - done < BATCH ? (int)(n - done) : BATCH;
        for (int t = 0; t < T; t++) ss[t] = s, pos[t] = pos0 + (int)done + t;
        ok = forward_tokens(m, ss, tokens + done, pos, T, all_logits ? all_logits + done * (size_t)in->vocab : NULL,
                            last && done + (size_t)T == n);
        done += (size_t)T;
    }
    pthread_mutex_unlock(&m->ws->mu);
    if (ok && all_logits) memcpy(s->logits, all_logits + (n - 1) * (size_t)in->vocab, (size_t)in->vocab * 4);
    return ok;
}

const float *veil_llm_prefill(veil_llm_session *s, const int32_t *tokens, size_t n, int pos0, float *all_logits) {
    return prefill(s, tokens, n, pos0, all_logits, 1) ? s->logits : NULL;
}

int veil_llm_prefill_kv(veil_llm_session *s, const int32_t *tokens, size_t n, int pos0) {
    return prefill(s, tokens, n, pos0, NULL, 0);
}

const float *veil_llm_forward(veil_llm_session *s, int32_t token, int pos) {
    return veil_llm_prefill(s, &token, 1, pos, NULL);
}

/* Runs one pass for decode steps gathered by the batcher (batcher.c): token
 * tok[i] of session ss[i] at pos[i], each session's logits filled. 1, or 0
 * when memory ran out. */
int veil_llm_run_steps(const veil_llm *m, veil_llm_session *const *ss, const int32_t *tok, const int *pos, int n) {
    const veil_llm_info *in = &m->info;
    veil_workspace *ws = m->ws;
    pthread_mutex_lock(&ws->mu);
    int ok = 1;
    if (!ws->logits) ok = (ws->logits = malloc((size_t)VEIL_BATCH * in->vocab * 4)) != NULL;
    ok = ok && forward_tokens(m, ss, tok, pos, n, ws->logits, 1);
    for (int i = 0; ok && i < n; i++) memcpy(ss[i]->logits, ws->logits + (size_t)i * in->vocab, (size_t)in->vocab * 4);
    pthread_mutex_unlock(&ws->mu);
    return ok;
}

int veil_llm_set_threads(veil_llm *m, int n) {
    if (n < 1) n = 1;
    veil_pool *p = veil_pool_new(n);
    if (!p) return veil_pool_threads(m->pool);
    veil_pool_free(m->pool);
    m->pool = p;
    return veil_pool_threads(p);
}
