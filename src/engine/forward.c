/* The transformer forward pass for one token (llama2.c's shape): RMSNorm,
 * grouped-query attention with RoPE and a KV cache, SwiGLU feed-forward, and
 * the matrix-vector kernels for each weight type. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"

static float f16_table[65536];
static pthread_once_t f16_once = PTHREAD_ONCE_INIT;
static void f16_init(void) {
    for (uint32_t i = 0; i < 65536; i++) f16_table[i] = veil_f16_to_f32((uint16_t)i);
}

static float dot_f32(const float *w, const float *x, int n) {
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += w[i + j] * x[i + j];
    float s = 0;
    for (; i < n; i++) s += w[i] * x[i];
    for (int j = 0; j < 8; j++) s += acc[j];
    return s;
}

static float dot_f16(const uint16_t *w, const float *x, int n) {
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += f16_table[w[i + j]] * x[i + j];
    float s = 0;
    for (; i < n; i++) s += f16_table[w[i]] * x[i];
    for (int j = 0; j < 8; j++) s += acc[j];
    return s;
}

static float dot_bf16(const uint16_t *w, const float *x, int n) {
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += veil_bf16_to_f32(w[i + j]) * x[i + j];
    float s = 0;
    for (; i < n; i++) s += veil_bf16_to_f32(w[i]) * x[i];
    for (int j = 0; j < 8; j++) s += acc[j];
    return s;
}

static float dot_q8_0(const uint8_t *w, const float *x, int n) {
    float s = 0;
    for (int b = 0; b < n / 32; b++, w += 34, x += 32) {
        uint16_t dh;
        memcpy(&dh, w, 2);
        const int8_t *q = (const int8_t *)(w + 2);
        float acc[8] = {0};
        for (int i = 0; i < 32; i += 8)
            for (int j = 0; j < 8; j++) acc[j] += (float)q[i + j] * x[i + j];
        float bs = 0;
        for (int j = 0; j < 8; j++) bs += acc[j];
        s += f16_table[dh] * bs;
    }
    return s;
}

static float row_dot(const veil_mat *w, int r, const float *x) {
    const uint8_t *row = w->data + (size_t)r * w->row_bytes;
    switch (w->type) {
    case VEIL_GGML_F32: { /* the mapping is 32-byte aligned and rows are whole floats */
        const float *f = (const float *)(const void *)row;
        return dot_f32(f, x, w->cols);
    }
    case VEIL_GGML_F16: return dot_f16((const uint16_t *)(const void *)row, x, w->cols);
    case VEIL_GGML_BF16: return dot_bf16((const uint16_t *)(const void *)row, x, w->cols);
    default: return dot_q8_0(row, x, w->cols);
    }
}

void veil_matvec(const veil_mat *w, const float *x, float *out) {
    pthread_once(&f16_once, f16_init);
    for (int r = 0; r < w->rows; r++) out[r] = row_dot(w, r, x);
}

void veil_mat_row(const veil_mat *w, int r, float *out) {
    veil_dequantize_row(w->type, w->data + (size_t)r * w->row_bytes, out, (size_t)w->cols);
}

struct veil_llm_session {
    const veil_llm *m;
    int n_ctx, cap; /* cap: positions the KV cache holds now; it grows up to n_ctx */
    float *x, *xb, *xb2, *hb, *hb2, *q, *k, *v, *att, *logits;
    float *kc, *vc; /* [pos][layer][kv_dim] */
};

void veil_llm_session_free(veil_llm_session *s) {
    if (!s) return;
    free(s->x), free(s->xb), free(s->xb2), free(s->hb), free(s->hb2);
    free(s->q), free(s->k), free(s->v), free(s->att), free(s->logits);
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
    s->x = calloc(wide, 4), s->xb = calloc(wide, 4), s->xb2 = calloc(wide, 4);
    s->hb = calloc((size_t)in->ff, 4), s->hb2 = calloc((size_t)in->ff, 4);
    s->q = calloc(qd, 4), s->k = calloc(kvd, 4), s->v = calloc(kvd, 4);
    s->att = calloc((size_t)n_ctx, 4), s->logits = calloc((size_t)in->vocab, 4);
    if (!s->x || !s->xb || !s->xb2 || !s->hb || !s->hb2 || !s->q || !s->k || !s->v || !s->att || !s->logits) {
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
    for (int h = 0; h < n_heads; h++) {
        float *p = v + (size_t)h * hd;
        for (int i = 0; i < hd / 2; i++) {
            float a = pos * inv_freq[i], c = cosf(a), s = sinf(a);
            int i0 = neox ? i : 2 * i, i1 = neox ? i + hd / 2 : 2 * i + 1;
            float x0 = p[i0], x1 = p[i1];
            p[i0] = x0 * c - x1 * s;
            p[i1] = x0 * s + x1 * c;
        }
    }
}

const float *veil_llm_forward(veil_llm_session *s, int32_t token, int pos) {
    const veil_llm *m = s->m;
    const veil_llm_info *in = &m->info;
    if (pos < 0 || pos >= s->n_ctx || token < 0 || token >= in->vocab) return NULL;
    pthread_once(&f16_once, f16_init);
    int dim = in->dim, hd = in->head_dim, kvd = in->n_kv_heads * hd, grp = in->n_heads / in->n_kv_heads;
    size_t stride = (size_t)in->n_layers * kvd; /* floats per position in the cache */
    if (pos >= s->cap) {
        int cap = s->cap ? s->cap : 64;
        while (cap <= pos) cap *= 2;
        if (cap > s->n_ctx) cap = s->n_ctx;
        float *kc = realloc(s->kc, (size_t)cap * stride * 4);
        if (!kc) return NULL;
        s->kc = kc;
        float *vc = realloc(s->vc, (size_t)cap * stride * 4);
        if (!vc) return NULL;
        s->vc = vc;
        s->cap = cap;
    }
    float *x = s->x;
    veil_mat_row(&m->tok_embd, token, x);
    float scale = 1.0f / sqrtf((float)hd), fpos = (float)pos / in->rope_scale;
    for (int l = 0; l < in->n_layers; l++) {
        const veil_layer *L = &m->layers[l];
        rmsnorm(s->xb, x, L->attn_norm, dim, in->eps);
        veil_matvec(&L->wq, s->xb, s->q);
        veil_matvec(&L->wk, s->xb, s->k);
        veil_matvec(&L->wv, s->xb, s->v);
        if (L->bq) for (int i = 0; i < in->n_heads * hd; i++) s->q[i] += L->bq[i];
        if (L->bk) for (int i = 0; i < kvd; i++) s->k[i] += L->bk[i];
        if (L->bv) for (int i = 0; i < kvd; i++) s->v[i] += L->bv[i];
        if (L->q_norm) {
            for (int h = 0; h < in->n_heads; h++) rmsnorm(s->q + h * hd, s->q + h * hd, L->q_norm, hd, in->eps);
            for (int h = 0; h < in->n_kv_heads; h++) rmsnorm(s->k + h * hd, s->k + h * hd, L->k_norm, hd, in->eps);
        }
        rope(s->q, in->n_heads, hd, m->inv_freq, fpos, in->rope_neox);
        rope(s->k, in->n_kv_heads, hd, m->inv_freq, fpos, in->rope_neox);
        float *kc = s->kc + (size_t)l * kvd, *vc = s->vc + (size_t)l * kvd;
        memcpy(kc + (size_t)pos * stride, s->k, (size_t)kvd * 4);
        memcpy(vc + (size_t)pos * stride, s->v, (size_t)kvd * 4);
        for (int h = 0; h < in->n_heads; h++) {
            const float *q = s->q + h * hd;
            int kh = h / grp;
            float mx = -INFINITY;
            for (int t = 0; t <= pos; t++) {
                const float *k = kc + (size_t)t * stride + kh * hd;
                float a = 0;
                for (int i = 0; i < hd; i++) a += q[i] * k[i];
                s->att[t] = a * scale;
                if (s->att[t] > mx) mx = s->att[t];
            }
            float sum = 0;
            for (int t = 0; t <= pos; t++) {
                s->att[t] = expf(s->att[t] - mx);
                sum += s->att[t];
            }
            float *o = s->xb2 + h * hd;
            memset(o, 0, (size_t)hd * 4);
            for (int t = 0; t <= pos; t++) {
                const float *v = vc + (size_t)t * stride + kh * hd;
                float a = s->att[t] / sum;
                for (int i = 0; i < hd; i++) o[i] += a * v[i];
            }
        }
        veil_matvec(&L->wo, s->xb2, s->xb);
        for (int i = 0; i < dim; i++) x[i] += s->xb[i];
        rmsnorm(s->xb, x, L->ffn_norm, dim, in->eps);
        veil_matvec(&L->w_gate, s->xb, s->hb);
        veil_matvec(&L->w_up, s->xb, s->hb2);
        for (int i = 0; i < in->ff; i++) {
            float g = s->hb[i];
            s->hb[i] = g / (1.0f + expf(-g)) * s->hb2[i];
        }
        veil_matvec(&L->w_down, s->hb, s->xb);
        for (int i = 0; i < dim; i++) x[i] += s->xb[i];
    }
    rmsnorm(x, x, m->out_norm, dim, in->eps);
    veil_matvec(&m->output, x, s->logits);
    return s->logits;
}
