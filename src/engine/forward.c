/* The transformer forward pass (llama2.c's shape, batched): RMSNorm,
 * grouped-query attention with RoPE and a KV cache, SwiGLU feed-forward.
 * A batch of tokens (a prompt's chunk, or one decode step) goes through
 * each weight matrix once; the matrix work and the attention heads are
 * shared among the model's thread pool. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine_internal.h"

#define BATCH 32 /* tokens per pass over the weights in prefill */

/* ---- matrix work ---- */

/* W·x for up to three matrices sharing one input, for T tokens. */
typedef struct mm_job {
    const veil_mat *w[3];
    float *out[3]; /* out[k][t * rows_k + r] */
    int n_w, T, cols, total;
    const float *x;                 /* x[t * cols + c] */
    const int8_t *xq; const float *xd; /* quantized x (Q8_0): xq[t * cols], xd[t * cols / 32] */
} mm_job;

static void mm_worker(void *ctx, int ith, int nth) {
    mm_job *j = ctx;
    /* contiguous shares of the rows, in multiples of 8 so threads do not share cache lines of out */
    int per = (j->total + nth - 1) / nth;
    per = (per + 7) & ~7;
    int from = ith * per, to = from + per < j->total ? from + per : j->total;
    int base = 0;
    for (int k = 0; k < j->n_w && from < to; k++) {
        const veil_mat *w = j->w[k];
        int lo = from > base ? from - base : 0, hi = to - base < w->rows ? to - base : w->rows;
        veil_dot_fn dot = veil_dot_for(w->type);
        veil_dot4_fn dot4 = w->type == VEIL_GGML_Q8_0 ? veil_dot4_q8_0() : NULL;
        for (int r = lo; r < hi; r++) {
            const uint8_t *row = w->data + (size_t)r * w->row_bytes;
            int t = 0;
            for (; dot4 && t + 4 <= j->T; t += 4) {
                float o[4];
                dot4(row, j->xq + (size_t)t * j->cols, j->xd + (size_t)t * (j->cols / 32), j->cols, (size_t)j->cols, o);
                for (int u = 0; u < 4; u++) j->out[k][(size_t)(t + u) * w->rows + r] = o[u];
            }
            for (; t < j->T; t++)
                j->out[k][(size_t)t * w->rows + r] =
                    dot(row, j->x + (size_t)t * j->cols, j->xq + (size_t)t * j->cols, j->xd + (size_t)t * (j->cols / 32), j->cols);
        }
        base += w->rows;
    }
}

struct veil_llm_session {
    const veil_llm *m;
    int n_ctx, cap; /* cap: positions the KV cache holds now; it grows up to n_ctx */
    int wide;       /* the widest activation row */
    float *x, *xb, *xb2, *hb, *hb2, *q, *k, *v, *logits; /* [BATCH][…] */
    int8_t *xq;
    float *xd;
    float *att; /* [threads][n_ctx] */
    float *kc, *vc; /* [pos][layer][kv_dim] */
};

/* W·x (x: T rows of cols), for 1–3 matrices of the same input. */
static void matmul(veil_llm_session *s, int T, const float *x, int cols, int n_w, const veil_mat *w0, float *o0,
                   const veil_mat *w1, float *o1, const veil_mat *w2, float *o2) {
    mm_job j = {{w0, w1, w2}, {o0, o1, o2}, n_w, T, cols, 0, x, s->xq, s->xd};
    int need_q = 0;
    for (int k = 0; k < n_w; k++) {
        j.total += j.w[k]->rows;
        need_q |= veil_type_quantizes_activations(j.w[k]->type);
    }
    if (need_q)
        for (int t = 0; t < T; t++)
            veil_quantize_act(x + (size_t)t * cols, cols, s->xq + (size_t)t * cols, s->xd + (size_t)t * (cols / 32));
    veil_pool_run(s->m->pool, mm_worker, &j);
}

void veil_mat_row(const veil_mat *w, int r, float *out) {
    veil_dequantize_row(w->type, w->data + (size_t)r * w->row_bytes, out, (size_t)w->cols);
}

void veil_llm_session_free(veil_llm_session *s) {
    if (!s) return;
    free(s->x), free(s->xb), free(s->xb2), free(s->hb), free(s->hb2);
    free(s->q), free(s->k), free(s->v), free(s->att), free(s->logits), free(s->xq), free(s->xd);
    free(s->kc), free(s->vc);
    free(s);
}

veil_llm_session *veil_llm_session_new(const veil_llm *m, int n_ctx) {
    const veil_llm_info *in = &m->info;
    if (n_ctx <= 0 || n_ctx > in->ctx) n_ctx = in->ctx;
    veil_llm_session *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->m = m;
    s->n_ctx = n_ctx;
    size_t qd = (size_t)in->n_heads * in->head_dim, kvd = (size_t)in->n_kv_heads * in->head_dim;
    size_t wide = qd > (size_t)in->dim ? qd : (size_t)in->dim;
    if ((size_t)in->ff > wide) wide = (size_t)in->ff;
    s->wide = (int)wide;
    size_t B = BATCH;
    s->x = calloc(B * in->dim, 4), s->xb = calloc(B * wide, 4), s->xb2 = calloc(B * wide, 4);
    s->hb = calloc(B * in->ff, 4), s->hb2 = calloc(B * in->ff, 4);
    s->q = calloc(B * qd, 4), s->k = calloc(B * kvd, 4), s->v = calloc(B * kvd, 4);
    s->xq = calloc(B * wide, 1), s->xd = calloc(B * wide / 32 + 1, 4);
    s->att = calloc((size_t)veil_pool_threads(m->pool) * n_ctx, 4);
    s->logits = calloc((size_t)in->vocab, 4);
    if (!s->x || !s->xb || !s->xb2 || !s->hb || !s->hb2 || !s->q || !s->k || !s->v || !s->xq || !s->xd || !s->att ||
        !s->logits) {
        veil_llm_session_free(s);
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

/* Attention for T tokens at pos0…, every (token, head) pair a task. */
typedef struct att_job {
    veil_llm_session *s;
    int layer, T, pos0;
} att_job;

static void att_worker(void *ctx, int ith, int nth) {
    att_job *j = ctx;
    veil_llm_session *s = j->s;
    const veil_llm_info *in = &s->m->info;
    int hd = in->head_dim, H = in->n_heads, kvd = in->n_kv_heads * hd, grp = H / in->n_kv_heads;
    size_t stride = (size_t)in->n_layers * kvd;
    const float *kc = s->kc + (size_t)j->layer * kvd, *vc = s->vc + (size_t)j->layer * kvd;
    float scale = 1.0f / sqrtf((float)hd), *att = s->att + (size_t)ith * s->n_ctx;
    for (int task = ith; task < j->T * H; task += nth) {
        int t = task / H, h = task % H, kh = h / grp, last = j->pos0 + t;
        const float *q = s->q + (size_t)t * H * hd + (size_t)h * hd;
        float mx = -INFINITY;
        for (int p = 0; p <= last; p++) {
            const float *k = kc + (size_t)p * stride + (size_t)kh * hd;
            float a = 0;
            for (int i = 0; i < hd; i++) a += q[i] * k[i];
            att[p] = a * scale;
            if (att[p] > mx) mx = att[p];
        }
        float sum = 0;
        for (int p = 0; p <= last; p++) {
            att[p] = expf(att[p] - mx);
            sum += att[p];
        }
        float *o = s->xb2 + (size_t)t * H * hd + (size_t)h * hd;
        memset(o, 0, (size_t)hd * 4);
        for (int p = 0; p <= last; p++) {
            const float *v = vc + (size_t)p * stride + (size_t)kh * hd;
            float a = att[p] / sum;
            for (int i = 0; i < hd; i++) o[i] += a * v[i];
        }
    }
}

static int grow_cache(veil_llm_session *s, int need) {
    const veil_llm_info *in = &s->m->info;
    if (need <= s->cap) return 1;
    size_t stride = (size_t)in->n_layers * in->n_kv_heads * in->head_dim;
    int cap = s->cap ? s->cap : 64;
    while (cap < need) cap *= 2;
    if (cap > s->n_ctx) cap = s->n_ctx;
    float *kc = realloc(s->kc, (size_t)cap * stride * 4);
    if (!kc) return 0;
    s->kc = kc;
    float *vc = realloc(s->vc, (size_t)cap * stride * 4);
    if (!vc) return 0;
    s->vc = vc;
    s->cap = cap;
    return 1;
}

/* One batch of T ≤ BATCH tokens; logits of each into out (T × vocab) when
 * all, else of the last into s->logits. */
static int forward_batch(veil_llm_session *s, const int32_t *tok, int T, int pos0, float *out, int all) {
    const veil_llm *m = s->m;
    const veil_llm_info *in = &m->info;
    int dim = in->dim, hd = in->head_dim, qd = in->n_heads * hd, kvd = in->n_kv_heads * hd, ff = in->ff;
    size_t stride = (size_t)in->n_layers * kvd;
    if (!grow_cache(s, pos0 + T)) return 0;
    for (int t = 0; t < T; t++) veil_mat_row(&m->tok_embd, tok[t], s->x + (size_t)t * dim);
    for (int l = 0; l < in->n_layers; l++) {
        const veil_layer *L = &m->layers[l];
        for (int t = 0; t < T; t++) rmsnorm(s->xb + (size_t)t * dim, s->x + (size_t)t * dim, L->attn_norm, dim, in->eps);
        matmul(s, T, s->xb, dim, 3, &L->wq, s->q, &L->wk, s->k, &L->wv, s->v);
        for (int t = 0; t < T; t++) {
            float *q = s->q + (size_t)t * qd, *k = s->k + (size_t)t * kvd, *v = s->v + (size_t)t * kvd;
            if (L->bq) for (int i = 0; i < qd; i++) q[i] += L->bq[i];
            if (L->bk) for (int i = 0; i < kvd; i++) k[i] += L->bk[i];
            if (L->bv) for (int i = 0; i < kvd; i++) v[i] += L->bv[i];
            if (L->q_norm) {
                for (int h = 0; h < in->n_heads; h++) rmsnorm(q + h * hd, q + h * hd, L->q_norm, hd, in->eps);
                for (int h = 0; h < in->n_kv_heads; h++) rmsnorm(k + h * hd, k + h * hd, L->k_norm, hd, in->eps);
            }
            float fpos = (float)(pos0 + t) / in->rope_scale;
            rope(q, in->n_heads, hd, m->inv_freq, fpos, in->rope_neox);
            rope(k, in->n_kv_heads, hd, m->inv_freq, fpos, in->rope_neox);
            memcpy(s->kc + (size_t)(pos0 + t) * stride + (size_t)l * kvd, k, (size_t)kvd * 4);
            memcpy(s->vc + (size_t)(pos0 + t) * stride + (size_t)l * kvd, v, (size_t)kvd * 4);
        }
        att_job aj = {s, l, T, pos0};
        veil_pool_run(m->pool, att_worker, &aj);
        matmul(s, T, s->xb2, qd, 1, &L->wo, s->xb, NULL, NULL, NULL, NULL);
        for (size_t i = 0; i < (size_t)T * dim; i++) s->x[i] += s->xb[i];
        for (int t = 0; t < T; t++) rmsnorm(s->xb + (size_t)t * dim, s->x + (size_t)t * dim, L->ffn_norm, dim, in->eps);
        matmul(s, T, s->xb, dim, 2, &L->w_gate, s->hb, &L->w_up, s->hb2, NULL, NULL);
        for (size_t i = 0; i < (size_t)T * ff; i++) {
            float g = s->hb[i];
            s->hb[i] = g / (1.0f + expf(-g)) * s->hb2[i];
        }
        matmul(s, T, s->hb, ff, 1, &L->w_down, s->xb, NULL, NULL, NULL, NULL);
        for (size_t i = 0; i < (size_t)T * dim; i++) s->x[i] += s->xb[i];
    }
    int first = all ? 0 : T - 1;
    for (int t = first; t < T; t++) rmsnorm(s->xb + (size_t)(t - first) * dim, s->x + (size_t)t * dim, m->out_norm, dim, in->eps);
    matmul(s, T - first, s->xb, dim, 1, &m->output, all ? out : s->logits, NULL, NULL, NULL, NULL);
    return 1;
}

const float *veil_llm_prefill(veil_llm_session *s, const int32_t *tokens, size_t n, int pos0, float *all_logits) {
    const veil_llm_info *in = &s->m->info;
    if (n == 0 || pos0 < 0 || (size_t)pos0 + n > (size_t)s->n_ctx) return NULL;
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= in->vocab) return NULL;
    for (size_t done = 0; done < n;) {
        int T = n - done < BATCH ? (int)(n - done) : BATCH;
        float *out = all_logits ? all_logits + done * (size_t)in->vocab : NULL;
        if (!forward_batch(s, tokens + done, T, pos0 + (int)done, out, all_logits != NULL)) return NULL;
        done += (size_t)T;
    }
    if (all_logits) memcpy(s->logits, all_logits + (n - 1) * (size_t)in->vocab, (size_t)in->vocab * 4);
    return s->logits;
}

const float *veil_llm_forward(veil_llm_session *s, int32_t token, int pos) {
    return veil_llm_prefill(s, &token, 1, pos, NULL);
}

int veil_llm_set_threads(veil_llm *m, int n) {
    if (n < 1) n = 1;
    veil_pool *p = veil_pool_new(n);
    if (!p) return veil_pool_threads(m->pool);
    veil_pool_free(m->pool);
    m->pool = p;
    return veil_pool_threads(p);
}
