/* Loading a model: hyperparameters from the architecture's metadata keys,
 * and every tensor checked for its name, shape and type before any use. */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine_internal.h"

static int get_int(const veil_gguf *g, const char *arch, const char *suffix, int *v, int required, veil_err *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    uint64_t u;
    if (!veil_gguf_get_u64(g, key, &u)) {
        if (!required) return 1;
        veil_err_set(err, VEIL_ERR_MALFORMED, "model lacks %s", key);
        return 0;
    }
    if (u == 0 || u > (1u << 24)) {
        veil_err_set(err, VEIL_ERR_MALFORMED, "model's %s = %llu is out of range", key, (unsigned long long)u);
        return 0;
    }
    *v = (int)u;
    return 1;
}

static int get_float(const veil_gguf *g, const char *arch, const char *suffix, float *v) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return veil_gguf_get_f32(g, key, v);
}

static int is_matrix_type(uint32_t t) {
    return t == VEIL_GGML_F32 || t == VEIL_GGML_F16 || t == VEIL_GGML_BF16 || t == VEIL_GGML_Q8_0 ||
           t == VEIL_GGML_Q4_0 || t == VEIL_GGML_Q5_0 || t == VEIL_GGML_Q4_K || t == VEIL_GGML_Q5_K ||
           t == VEIL_GGML_Q6_K;
}

static int is_vector_type(uint32_t t) {
    return t == VEIL_GGML_F32 || t == VEIL_GGML_F16 || t == VEIL_GGML_BF16 || t == VEIL_GGML_Q8_0;
}

/* Binds a rows × cols matrix; optional ones may be absent (data NULL). */
static int bind_mat(veil_llm *m, const char *name, int rows, int cols, int required, veil_mat *out, veil_err *err) {
    const veil_gguf_tensor *t = veil_gguf_tensor_find(m->g, name);
    memset(out, 0, sizeof *out);
    if (!t) {
        if (required) veil_err_set(err, VEIL_ERR_MALFORMED, "model lacks tensor %s", name);
        return !required;
    }
    if (t->n_dims != 2 || t->ne[0] != (uint64_t)cols || t->ne[1] != (uint64_t)rows) {
        veil_err_set(err, VEIL_ERR_MALFORMED, "tensor %s has shape [%llu, %llu], expected [%d, %d]", name,
                     (unsigned long long)t->ne[0], (unsigned long long)t->ne[1], cols, rows);
        return 0;
    }
    if (!is_matrix_type(t->type)) {
        veil_err_set(err, VEIL_ERR_MALFORMED, "tensor %s has type %s, which this engine does not compute", name,
                     veil_ggml_type_name(t->type));
        return 0;
    }
    out->data = t->data;
    out->type = t->type;
    out->rows = rows;
    out->cols = cols;
    out->row_bytes = (size_t)cols / veil_ggml_block_elems(t->type) * veil_ggml_block_bytes(t->type);
    m->info.weight_bytes += t->size;
    return 1;
}

/* A vector of n, copied to floats; NULL with err set when wrong. */
static int bind_vec(veil_llm *m, const char *name, int n, int required, float **out, veil_err *err) {
    const veil_gguf_tensor *t = veil_gguf_tensor_find(m->g, name);
    *out = NULL;
    if (!t) {
        if (required) veil_err_set(err, VEIL_ERR_MALFORMED, "model lacks tensor %s", name);
        return !required;
    }
    if (t->n_dims != 1 || t->ne[0] != (uint64_t)n || !is_vector_type(t->type)) {
        veil_err_set(err, VEIL_ERR_MALFORMED, "tensor %s must be a vector of %d (F32/F16/BF16/Q8_0)", name, n);
        return 0;
    }
    if (!(*out = malloc((size_t)n * sizeof **out))) {
        veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
        return 0;
    }
    veil_dequantize_row(t->type, t->data, *out, (size_t)n);
    return 1;
}

/* The matrices interleaved at load, packed by the model's threads a run of groups at a time. */
typedef struct pack_job {
    const veil_gguf *g;
    veil_mat **w;
    uint8_t **dst;
    int n;
    atomic_int next; /* the first run no thread has taken, counted across the matrices */
} pack_job;
enum { PACK_RUN = 64 }; /* groups of eight rows */

static void pack_worker(void *ctx, int ith, int nth) {
    (void)ith, (void)nth;
    pack_job *j = ctx;
    for (;;) {
        int run = atomic_fetch_add(&j->next, 1), k = 0;
        while (k < j->n && run >= (j->w[k]->rows / 8 + PACK_RUN - 1) / PACK_RUN)
            run -= (j->w[k]->rows / 8 + PACK_RUN - 1) / PACK_RUN, k++;
        if (k == j->n) return;
        const veil_mat *w = j->w[k];
        int g0 = run * PACK_RUN, g1 = g0 + PACK_RUN < w->rows / 8 ? g0 + PACK_RUN : w->rows / 8;
        size_t gb = 8 * w->row_bytes;
        for (int g = g0; g < g1; g++) veil_x8_pack(w->type, w->data + g * gb, w->cols, j->dst[k] + g * gb);
        /* the file's pages read (those wholly inside the run) go back as the packing goes, so that
         * the model is not in memory twice at any time; the mapping reads them again if anything looks */
        const uint8_t *src = w->data + g0 * gb, *end = w->data + g1 * gb;
        uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), lo = ((uintptr_t)src + page - 1) & ~(page - 1),
                  hi = (uintptr_t)end & ~(page - 1);
        if (j->g->mapped && src >= j->g->base && end <= j->g->base + j->g->size && lo < hi)
            madvise((void *)lo, hi - lo, MADV_DONTNEED);
    }
}

/* Interleaves the rows of the matrices in j eight at a time (interleave.c) where the kernels
 * in use have a kernel for that layout and the matrix's type, into copies. 0 when out of memory. */
static int interleave(veil_llm *m, pack_job *j) {
    int n = 0;
    for (int k = 0; k < j->n; k++) {
        veil_mat *w = j->w[k];
        void *p;
        if (w->rows % 8 || !veil_dot8_for(w->type)) continue;
        if (posix_memalign(&p, 64, (size_t)w->rows * w->row_bytes)) return 0;
        m->owned[m->n_owned++] = p;
        j->w[n] = w, j->dst[n++] = p;
    }
    j->n = n;
    j->g = m->g;
    m->info.n_interleaved = n;
    veil_pool_run(m->pool, pack_worker, j);
    for (int k = 0; k < n; k++) {
        j->w[k]->data = j->dst[k];
        j->w[k]->x8 = 1;
    }
    return 1;
}

void veil_llm_free(veil_llm *m) {
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    for (int l = 0; m->layers && l < m->info.n_layers; l++) {
        veil_layer *L = &m->layers[l];
        free(L->attn_norm), free(L->ffn_norm), free(L->q_norm), free(L->k_norm);
        free(L->bq), free(L->bk), free(L->bv);
    }
    free(m->layers);
    free(m->out_norm);
    free(m->inv_freq);
    veil_tokenizer_free(m->tok);
    veil_batcher_free(m->batcher);
    veil_workspace_free(m->ws);
    veil_pool_free(m->pool);
    veil_gguf_close(m->g);
    free(m);
}

static veil_rc load_hparams(veil_llm *m, const char *path, veil_err *err) {
    veil_llm_info *in = &m->info;
    veil_gguf_str a;
    if (!veil_gguf_get_str(m->g, "general.architecture", &a))
        return veil_err_set(err, VEIL_ERR_MALFORMED, "model lacks general.architecture");
    char arch[32];
    snprintf(arch, sizeof arch, "%.*s", (int)(a.len < 31 ? a.len : 31), a.p);
    if (strcmp(arch, "llama") == 0 || strcmp(arch, "mistral") == 0) in->arch = VEIL_ARCH_LLAMA;
    else if (strcmp(arch, "qwen2") == 0) in->arch = VEIL_ARCH_QWEN2;
    else if (strcmp(arch, "qwen3") == 0) in->arch = VEIL_ARCH_QWEN3;
    else return veil_err_set(err, VEIL_ERR_MALFORMED, "architecture '%s' is not supported (llama, mistral, qwen2, qwen3 are)", arch);
    static const char *const names[] = {"llama", "qwen2", "qwen3"};
    in->arch_name = names[in->arch];
    in->rope_neox = in->arch != VEIL_ARCH_LLAMA;
    veil_gguf_str nm;
    if (veil_gguf_get_str(m->g, "general.name", &nm) && nm.len) {
        snprintf(in->name, sizeof in->name, "%.*s", (int)(nm.len < 127 ? nm.len : 127), nm.p);
    } else {
        const char *b = strrchr(path, '/');
        snprintf(in->name, sizeof in->name, "%s", b ? b + 1 : path);
        char *dot = strstr(in->name, ".gguf");
        if (dot) *dot = 0;
    }
    if (!get_int(m->g, arch, "embedding_length", &in->dim, 1, err) ||
        !get_int(m->g, arch, "block_count", &in->n_layers, 1, err) ||
        !get_int(m->g, arch, "feed_forward_length", &in->ff, 1, err) ||
        !get_int(m->g, arch, "attention.head_count", &in->n_heads, 1, err))
        return err ? err->code : VEIL_ERR_MALFORMED;
    in->n_kv_heads = in->n_heads;
    in->ctx = 2048;
    in->head_dim = in->dim / in->n_heads;
    if (!get_int(m->g, arch, "attention.head_count_kv", &in->n_kv_heads, 0, err) ||
        !get_int(m->g, arch, "context_length", &in->ctx, 0, err) ||
        !get_int(m->g, arch, "attention.key_length", &in->head_dim, 0, err))
        return err ? err->code : VEIL_ERR_MALFORMED;
    int vlen = in->head_dim;
    if (!get_int(m->g, arch, "attention.value_length", &vlen, 0, err)) return err ? err->code : VEIL_ERR_MALFORMED;
    if (in->n_heads % in->n_kv_heads || in->head_dim % 2 || vlen != in->head_dim || in->n_layers > 4096 ||
        (uint64_t)in->n_heads * in->head_dim > (1u << 20))
        return veil_err_set(err, VEIL_ERR_MALFORMED, "model's attention shape is inconsistent (heads %d, kv heads %d, head dim %d)",
                            in->n_heads, in->n_kv_heads, in->head_dim);
    in->eps = 1e-5f;
    get_float(m->g, arch, "attention.layer_norm_rms_epsilon", &in->eps);
    in->rope_base = 10000.0f;
    get_float(m->g, arch, "rope.freq_base", &in->rope_base);
    in->rope_scale = 1.0f;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    veil_gguf_str st;
    float f;
    if (veil_gguf_get_str(m->g, key, &st) && !(st.len == 4 && memcmp(st.p, "none", 4) == 0)) {
        if (!(st.len == 6 && memcmp(st.p, "linear", 6) == 0))
            return veil_err_set(err, VEIL_ERR_MALFORMED, "RoPE scaling '%.*s' is not supported (linear is)",
                                (int)(st.len < 32 ? st.len : 32), st.p);
        if (get_float(m->g, arch, "rope.scaling.factor", &f)) in->rope_scale = f;
    } else if (get_float(m->g, arch, "rope.scale_linear", &f)) {
        in->rope_scale = f;
    }
    if (!(in->rope_scale >= 1e-3f && in->rope_scale <= 1e3f) || !(in->rope_base > 0 && isfinite(in->rope_base)) ||
        !(in->eps > 0 && in->eps < 1))
        return veil_err_set(err, VEIL_ERR_MALFORMED, "model's RoPE or norm parameters are out of range");
    return VEIL_OK;
}

veil_rc veil_llm_load(veil_llm **out, const char *path, veil_err *err) {
    *out = NULL;
    veil_llm *m = calloc(1, sizeof *m);
    if (!m) return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    veil_rc rc = veil_gguf_open(&m->g, path, err);
    if (rc == VEIL_OK) rc = load_hparams(m, path, err);
    if (rc == VEIL_OK) rc = veil_tokenizer_load(&m->tok, m->g, err);
    if (rc != VEIL_OK) {
        veil_llm_free(m);
        return rc;
    }
    veil_llm_info *in = &m->info;
    in->vocab = veil_tokenizer_vocab(m->tok);
    const veil_gguf_tensor *emb = veil_gguf_tensor_find(m->g, "token_embd.weight");
    if (emb && emb->n_dims == 2 && emb->ne[1] >= (uint64_t)in->vocab && emb->ne[1] <= (1u << 24))
        in->vocab = (int)emb->ne[1]; /* some models pad the table past the tokenizer's list */
    in->tok_kind = VEIL_TOK_BPE;
    veil_gguf_str tm;
    if (veil_gguf_get_str(m->g, "tokenizer.ggml.model", &tm) && tm.len == 5 && memcmp(tm.p, "llama", 5) == 0)
        in->tok_kind = VEIL_TOK_SPM;
    veil_gguf_str tmpl;
    in->tmpl = in->arch == VEIL_ARCH_LLAMA ? (in->tok_kind == VEIL_TOK_SPM ? VEIL_TMPL_LLAMA2 : VEIL_TMPL_LLAMA3)
                                          : VEIL_TMPL_CHATML;
    if (veil_gguf_get_str(m->g, "tokenizer.chat_template", &tmpl)) {
        if (memmem(tmpl.p, tmpl.len, "<|im_start|>", 12)) in->tmpl = VEIL_TMPL_CHATML;
        else if (memmem(tmpl.p, tmpl.len, "<|start_header_id|>", 19)) in->tmpl = VEIL_TMPL_LLAMA3;
        else if (memmem(tmpl.p, tmpl.len, "[INST]", 6)) in->tmpl = VEIL_TMPL_LLAMA2;
    }
    int dim = in->dim, hd = in->head_dim, qd = in->n_heads * hd, kvd = in->n_kv_heads * hd;
    rc = VEIL_ERR_MALFORMED;
    if (!(m->layers = calloc((size_t)in->n_layers, sizeof *m->layers)) ||
        !(m->inv_freq = malloc((size_t)hd / 2 * sizeof *m->inv_freq))) {
        rc = veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < hd / 2; i++) m->inv_freq[i] = powf(in->rope_base, -2.0f * (float)i / (float)hd);
    if (!bind_mat(m, "token_embd.weight", in->vocab, dim, 1, &m->tok_embd, err) ||
        !bind_mat(m, "output.weight", in->vocab, dim, 0, &m->output, err) ||
        !bind_vec(m, "output_norm.weight", dim, 1, &m->out_norm, err))
        goto fail;
    if (!m->output.data) m->output = m->tok_embd; /* tied embeddings */
    /* the embedding table is only read a row per token: not part of the per-token read */
    in->weight_bytes -= m->output.data == m->tok_embd.data ? 0 : (uint64_t)m->tok_embd.row_bytes * in->vocab;
    for (int l = 0; l < in->n_layers; l++) {
        veil_layer *L = &m->layers[l];
        char n[96];
#define NM(s) (snprintf(n, sizeof n, "blk.%d.%s", l, s), n)
        if (!bind_vec(m, NM("attn_norm.weight"), dim, 1, &L->attn_norm, err) ||
            !bind_vec(m, NM("ffn_norm.weight"), dim, 1, &L->ffn_norm, err) ||
            !bind_mat(m, NM("attn_q.weight"), qd, dim, 1, &L->wq, err) ||
            !bind_mat(m, NM("attn_k.weight"), kvd, dim, 1, &L->wk, err) ||
            !bind_mat(m, NM("attn_v.weight"), kvd, dim, 1, &L->wv, err) ||
            !bind_mat(m, NM("attn_output.weight"), dim, qd, 1, &L->wo, err) ||
            !bind_mat(m, NM("ffn_gate.weight"), in->ff, dim, 1, &L->w_gate, err) ||
            !bind_mat(m, NM("ffn_up.weight"), in->ff, dim, 1, &L->w_up, err) ||
            !bind_mat(m, NM("ffn_down.weight"), dim, in->ff, 1, &L->w_down, err) ||
            !bind_vec(m, NM("attn_q.bias"), qd, 0, &L->bq, err) ||
            !bind_vec(m, NM("attn_k.bias"), kvd, 0, &L->bk, err) ||
            !bind_vec(m, NM("attn_v.bias"), kvd, 0, &L->bv, err) ||
            !bind_vec(m, NM("attn_q_norm.weight"), hd, in->arch == VEIL_ARCH_QWEN3, &L->q_norm, err) ||
            !bind_vec(m, NM("attn_k_norm.weight"), hd, in->arch == VEIL_ARCH_QWEN3, &L->k_norm, err))
            goto fail;
#undef NM
    }
    const char *th = getenv("VEIL_THREADS");
    long nt = th && *th ? strtol(th, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
    if (!(m->pool = veil_pool_new(nt > 0 && nt <= 64 ? (int)nt : 1)) || !(m->ws = veil_workspace_new(m)) ||
        !(m->batcher = veil_batcher_new())) {
        rc = veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    int tied = m->output.data == m->tok_embd.data;
    size_t n_mats = (size_t)in->n_layers * 7 + 1; /* 7 matrices a layer and the output */
    pack_job pj = {NULL, calloc(n_mats, sizeof *pj.w), calloc(n_mats, sizeof *pj.dst), 0, 0};
    int ok = pj.w && pj.dst && (m->owned = calloc(n_mats, sizeof *m->owned));
    if (ok) {
        pj.w[pj.n++] = &m->output;
        for (int l = 0; l < in->n_layers; l++) {
            veil_layer *L = &m->layers[l];
            veil_mat *all[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
            for (int i = 0; i < 7; i++) pj.w[pj.n++] = all[i];
        }
        m->info.n_matrices = pj.n;
        ok = interleave(m, &pj);
    }
    free(pj.w), free(pj.dst);
    if (!ok) {
        rc = veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (tied) m->tok_embd = m->output; /* the row lookups read the output's interleaved rows */
    /* main type: the type holding the most matrix bytes */
    uint64_t by_type[32] = {0};
    for (uint64_t i = 0; i < m->g->n_tensors; i++)
        if (m->g->tensors[i].n_dims == 2 && m->g->tensors[i].type < 32) by_type[m->g->tensors[i].type] += m->g->tensors[i].size;
    for (uint32_t t = 0; t < 32; t++)
        if (by_type[t] > by_type[in->main_type]) in->main_type = t;
    *out = m;
    return VEIL_OK;
fail:
    veil_llm_free(m);
    return err ? err->code : rc;
}

const veil_llm_info *veil_llm_get_info(const veil_llm *m) { return &m->info; }
const veil_tokenizer *veil_llm_tokenizer(const veil_llm *m) { return m->tok; }
const veil_gguf *veil_llm_gguf(const veil_llm *m) { return m->g; }
