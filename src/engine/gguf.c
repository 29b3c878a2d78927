/* GGUF reader and writer. Every count, length, offset and size read from the
 * file is checked against the bytes that remain before it is used, so a
 * hostile file yields VEIL_ERR_MALFORMED and never an out-of-bounds read. */
#include "veil/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "veil/buf.h"

#define GGUF_MAX_KEY 65535u
#define GGUF_MAX_NESTING 4
#define GGUF_MAX_DIMS 4

static const struct {
    const char *name;
    uint32_t elems, bytes;
} ggml_types[] = {
    [VEIL_GGML_F32] = {"F32", 1, 4},       [VEIL_GGML_F16] = {"F16", 1, 2},       [VEIL_GGML_Q4_0] = {"Q4_0", 32, 18},
    [VEIL_GGML_Q4_1] = {"Q4_1", 32, 20},   [VEIL_GGML_Q5_0] = {"Q5_0", 32, 22},   [VEIL_GGML_Q5_1] = {"Q5_1", 32, 24},
    [VEIL_GGML_Q8_0] = {"Q8_0", 32, 34},   [VEIL_GGML_Q8_1] = {"Q8_1", 32, 36},   [VEIL_GGML_Q2_K] = {"Q2_K", 256, 84},
    [VEIL_GGML_Q3_K] = {"Q3_K", 256, 110}, [VEIL_GGML_Q4_K] = {"Q4_K", 256, 144}, [VEIL_GGML_Q5_K] = {"Q5_K", 256, 176},
    [VEIL_GGML_Q6_K] = {"Q6_K", 256, 210}, [VEIL_GGML_Q8_K] = {"Q8_K", 256, 292}, [VEIL_GGML_I8] = {"I8", 1, 1},
    [VEIL_GGML_I16] = {"I16", 1, 2},       [VEIL_GGML_I32] = {"I32", 1, 4},       [VEIL_GGML_I64] = {"I64", 1, 8},
    [VEIL_GGML_F64] = {"F64", 1, 8},       [VEIL_GGML_BF16] = {"BF16", 1, 2},
};
#define N_GGML_TYPES (sizeof ggml_types / sizeof ggml_types[0])

const char *veil_ggml_type_name(uint32_t t) { return t < N_GGML_TYPES ? ggml_types[t].name : NULL; }
uint32_t veil_ggml_block_elems(uint32_t t) { return t < N_GGML_TYPES ? ggml_types[t].elems : 0; }
uint32_t veil_ggml_block_bytes(uint32_t t) { return t < N_GGML_TYPES ? ggml_types[t].bytes : 0; }

/* Size of a fixed-width value type; 0 for string/array/unknown. */
static size_t scalar_size(uint32_t t) {
    switch (t) {
    case VEIL_GGUF_U8:
    case VEIL_GGUF_I8:
    case VEIL_GGUF_BOOL: return 1;
    case VEIL_GGUF_U16:
    case VEIL_GGUF_I16: return 2;
    case VEIL_GGUF_U32:
    case VEIL_GGUF_I32:
    case VEIL_GGUF_F32: return 4;
    case VEIL_GGUF_U64:
    case VEIL_GGUF_I64:
    case VEIL_GGUF_F64: return 8;
    default: return 0;
    }
}

typedef struct cursor {
    const uint8_t *p, *end;
    veil_err *err;
} cursor;

static int need(cursor *c, size_t n, const char *what) {
    if ((size_t)(c->end - c->p) < n) {
        veil_err_set(c->err, VEIL_ERR_MALFORMED, "GGUF truncated in %s", what);
        return 0;
    }
    return 1;
}

static int rd_u32(cursor *c, uint32_t *v, const char *what) {
    if (!need(c, 4, what)) return 0;
    memcpy(v, c->p, 4);
    c->p += 4;
    return 1;
}

static int rd_u64(cursor *c, uint64_t *v, const char *what) {
    if (!need(c, 8, what)) return 0;
    memcpy(v, c->p, 8);
    c->p += 8;
    return 1;
}

static int rd_str(cursor *c, veil_gguf_str *s, const char *what) {
    uint64_t n;
    if (!rd_u64(c, &n, what) || !need(c, n, what)) return 0;
    s->p = (const char *)c->p;
    s->len = (size_t)n;
    c->p += n;
    return 1;
}

/* Skips one value of type t, recording string offsets for string arrays. */
static int skip_value(cursor *c, uint32_t t, int depth, veil_gguf_kv *kv) {
    size_t sz = scalar_size(t);
    if (sz) return need(c, sz, "a metadata value") ? (c->p += sz, 1) : 0;
    if (t == VEIL_GGUF_STRING) {
        veil_gguf_str s;
        return rd_str(c, &s, "a metadata string");
    }
    if (t != VEIL_GGUF_ARRAY) {
        veil_err_set(c->err, VEIL_ERR_MALFORMED, "GGUF metadata value type %u unknown", t);
        return 0;
    }
    if (depth >= GGUF_MAX_NESTING) {
        veil_err_set(c->err, VEIL_ERR_MALFORMED, "GGUF arrays nested too deeply");
        return 0;
    }
    uint32_t et;
    uint64_t n;
    if (!rd_u32(c, &et, "an array type") || !rd_u64(c, &n, "an array length")) return 0;
    if (kv) {
        kv->arr_type = et;
        kv->arr_count = n;
        kv->data = c->p;
    }
    size_t esz = scalar_size(et);
    if (esz) {
        if (n > (uint64_t)(c->end - c->p) / esz) {
            veil_err_set(c->err, VEIL_ERR_MALFORMED, "GGUF array of %llu elements runs past the end",
                         (unsigned long long)n);
            return 0;
        }
        c->p += n * esz;
        return 1;
    }
    if (et != VEIL_GGUF_STRING && et != VEIL_GGUF_ARRAY) {
        veil_err_set(c->err, VEIL_ERR_MALFORMED, "GGUF array element type %u unknown", et);
        return 0;
    }
    /* every element takes at least 8 bytes: bounds the allocation below */
    if (n > (uint64_t)(c->end - c->p) / 8) {
        veil_err_set(c->err, VEIL_ERR_MALFORMED, "GGUF array of %llu elements runs past the end",
                     (unsigned long long)n);
        return 0;
    }
    if (kv && et == VEIL_GGUF_STRING) {
        kv->str_at = malloc((size_t)(n ? n : 1) * sizeof *kv->str_at);
        if (!kv->str_at) {
            veil_err_set(c->err, VEIL_ERR_NOMEM, "out of memory");
            return 0;
        }
    }
    for (uint64_t i = 0; i < n; i++) {
        if (kv && kv->str_at) kv->str_at[i] = c->p;
        if (!skip_value(c, et, depth + 1, NULL)) return 0;
    }
    return 1;
}

void veil_gguf_close(veil_gguf *g) {
    if (!g) return;
    for (uint64_t i = 0; g->kv && i < g->n_kv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].str_at);
    }
    for (uint64_t i = 0; g->tensors && i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->kv);
    free(g->tensors);
    if (g->mapped) munmap((void *)g->base, g->size);
    free(g);
}

static char *dup_str(veil_gguf_str s) {
    char *r = malloc(s.len + 1);
    if (r) {
        memcpy(r, s.p, s.len);
        r[s.len] = 0;
    }
    return r;
}

veil_rc veil_gguf_parse(veil_gguf **out, const uint8_t *data, size_t len, veil_err *err) {
    *out = NULL;
    cursor c = {data, data + len, err};
    veil_gguf *g = calloc(1, sizeof *g);
    if (!g) return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    g->base = data;
    g->size = len;
    veil_rc rc = VEIL_ERR_MALFORMED;
    uint32_t magic;
    if (!rd_u32(&c, &magic, "the header")) goto fail;
    if (memcmp(data, "GGUF", 4) != 0) {
        veil_err_set(err, VEIL_ERR_MALFORMED, "not a GGUF file (bad magic)");
        goto fail;
    }
    if (!rd_u32(&c, &g->version, "the header")) goto fail;
    if (g->version != 2 && g->version != 3) {
        veil_err_set(err, VEIL_ERR_MALFORMED, "GGUF version %u not supported (2 and 3 are)", g->version);
        goto fail;
    }
    uint64_t nt, nkv;
    if (!rd_u64(&c, &nt, "the header") || !rd_u64(&c, &nkv, "the header")) goto fail;
    /* a key-value pair takes at least 8+1+4+1 bytes, a tensor info 8+1+4+8+4+8 */
    if (nkv > len / 14 || nt > len / 33) {
        veil_err_set(err, VEIL_ERR_MALFORMED, "GGUF counts (%llu tensors, %llu metadata) exceed the file",
                     (unsigned long long)nt, (unsigned long long)nkv);
        goto fail;
    }
    g->kv = calloc(nkv ? nkv : 1, sizeof *g->kv);
    g->tensors = calloc(nt ? nt : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors) {
        rc = veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    g->alignment = 32;
    for (uint64_t i = 0; i < nkv; i++) {
        veil_gguf_kv *kv = &g->kv[i];
        veil_gguf_str key;
        if (!rd_str(&c, &key, "a metadata key")) goto fail;
        g->n_kv = i + 1;
        if (key.len == 0 || key.len > GGUF_MAX_KEY || memchr(key.p, 0, key.len)) {
            veil_err_set(err, VEIL_ERR_MALFORMED, "GGUF metadata key %llu is empty, too long or has a NUL",
                         (unsigned long long)i);
            goto fail;
        }
        if (!(kv->key = dup_str(key))) {
            rc = veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
            goto fail;
        }
        for (uint64_t j = 0; j < i; j++)
            if (strcmp(g->kv[j].key, kv->key) == 0) {
                veil_err_set(err, VEIL_ERR_MALFORMED, "GGUF metadata key '%.80s' appears twice", kv->key);
                goto fail;
            }
        if (!rd_u32(&c, &kv->type, "a metadata type")) goto fail;
        kv->data = c.p;
        if (!skip_value(&c, kv->type, 0, kv)) goto fail;
    }
    uint64_t al;
    if (veil_gguf_find(g, "general.alignment")) {
        if (!veil_gguf_get_u64(g, "general.alignment", &al) || al == 0 || al > 65536 || (al & (al - 1))) {
            veil_err_set(err, VEIL_ERR_MALFORMED, "GGUF general.alignment must be a power of two up to 65536");
            goto fail;
        }
        g->alignment = (uint32_t)al;
    }
    for (uint64_t i = 0; i < nt; i++) {
        veil_gguf_tensor *t = &g->tensors[i];
        veil_gguf_str name;
        if (!rd_str(&c, &name, "a tensor name")) goto fail;
        g->n_tensors = i + 1;
        if (name.len == 0 || name.len > 255 || memchr(name.p, 0, name.len)) {
            veil_err_set(err, VEIL_ERR_MALFORMED, "GGUF tensor %llu has an empty, long or NUL name",
                         (unsigned long long)i);
            goto fail;
        }
        if (!(t->name = dup_str(name))) {
            rc = veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
            goto fail;
        }
        if (!rd_u32(&c, &t->n_dims, "a tensor's dimensions")) goto fail;
        if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS) {
            veil_err_set(err, VEIL_ERR_MALFORMED, "GGUF tensor '%s' has %u dimensions", t->name, t->n_dims);
            goto fail;
        }
        uint64_t nel = 1;
        for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
            t->ne[d] = 1;
            if (d < t->n_dims && !rd_u64(&c, &t->ne[d], "a tensor's dimensions")) goto fail;
            if (t->ne[d] == 0 || t->ne[d] > (UINT64_C(1) << 40) || nel > UINT64_MAX / t->ne[d]) {
                veil_err_set(err, VEIL_ERR_MALFORMED, "GGUF tensor '%s' has a bad dimension", t->name);
                goto fail;
            }
            nel *= t->ne[d];
        }
        if (!rd_u32(&c, &t->type, "a tensor's type") || !rd_u64(&c, &t->offset, "a tensor's offset")) goto fail;
        uint32_t be = veil_ggml_block_elems(t->type), bb = veil_ggml_block_bytes(t->type);
        if (!be) {
            veil_err_set(err, VEIL_ERR_MALFORMED, "GGUF tensor '%s' has unknown type %u", t->name, t->type);
            goto fail;
        }
        if (t->ne[0] % be) {
            veil_err_set(err, VEIL_ERR_MALFORMED, "GGUF tensor '%s': row of %llu is not a multiple of the %s block",
                         t->name, (unsigned long long)t->ne[0], veil_ggml_type_name(t->type));
            goto fail;
        }
        if (nel / be > UINT64_MAX / bb) {
            veil_err_set(err, VEIL_ERR_MALFORMED, "GGUF tensor '%s' is too large", t->name);
            goto fail;
        }
        t->size = nel / be * bb;
        if (t->offset % g->alignment) {
            veil_err_set(err, VEIL_ERR_MALFORMED, "GGUF tensor '%s' offset is not aligned", t->name);
            goto fail;
        }
        for (uint64_t j = 0; j < i; j++)
            if (strcmp(g->tensors[j].name, t->name) == 0) {
                veil_err_set(err, VEIL_ERR_MALFORMED, "GGUF tensor '%s' appears twice", t->name);
                goto fail;
            }
    }
    size_t pos = (size_t)(c.p - data);
    size_t data_start = (pos + g->alignment - 1) / g->alignment * g->alignment;
    if (data_start > len) data_start = len;
    uint64_t avail = len - data_start;
    for (uint64_t i = 0; i < nt; i++) {
        veil_gguf_tensor *t = &g->tensors[i];
        if (t->offset > avail || t->size > avail - t->offset) {
            veil_err_set(err, VEIL_ERR_MALFORMED, "GGUF tensor '%s' data runs past the end of the file", t->name);
            goto fail;
        }
        t->data = data + data_start + t->offset;
    }
    *out = g;
    return VEIL_OK;
fail:
    veil_gguf_close(g);
    return rc;
}

veil_rc veil_gguf_open(veil_gguf **out, const char *path, veil_err *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return veil_err_set(err, VEIL_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 24) {
        close(fd);
        return veil_err_set(err, VEIL_ERR_MALFORMED, "%s is not a GGUF file (too small or not a file)", path);
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return veil_err_set(err, VEIL_ERR_IO, "cannot map %s: %s", path, strerror(errno));
    veil_rc rc = veil_gguf_parse(out, m, (size_t)st.st_size, err);
    if (rc != VEIL_OK) {
        munmap(m, (size_t)st.st_size);
        return rc;
    }
    (*out)->mapped = 1;
    return VEIL_OK;
}

const veil_gguf_kv *veil_gguf_find(const veil_gguf *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key && strcmp(g->kv[i].key, key) == 0) return &g->kv[i];
    return NULL;
}

const veil_gguf_tensor *veil_gguf_tensor_find(const veil_gguf *g, const char *name) {
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].name && strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
    return NULL;
}

/* Reads a numeric value of type t at p as double; ok=0 when not numeric. */
static double num_at(const uint8_t *p, uint32_t t, int *ok) {
    *ok = 1;
    union {
        uint8_t u8;
        int8_t i8;
        uint16_t u16;
        int16_t i16;
        uint32_t u32;
        int32_t i32;
        float f32;
        uint64_t u64;
        int64_t i64;
        double f64;
    } v;
    size_t sz = scalar_size(t);
    if (!sz) {
        *ok = 0;
        return 0;
    }
    memcpy(&v, p, sz);
    switch (t) {
    case VEIL_GGUF_U8:
    case VEIL_GGUF_BOOL: return v.u8;
    case VEIL_GGUF_I8: return v.i8;
    case VEIL_GGUF_U16: return v.u16;
    case VEIL_GGUF_I16: return v.i16;
    case VEIL_GGUF_U32: return v.u32;
    case VEIL_GGUF_I32: return v.i32;
    case VEIL_GGUF_F32: return v.f32;
    case VEIL_GGUF_U64: return (double)v.u64;
    case VEIL_GGUF_I64: return (double)v.i64;
    default: return v.f64;
    }
}

int veil_gguf_get_u64(const veil_gguf *g, const char *key, uint64_t *v) {
    const veil_gguf_kv *kv = veil_gguf_find(g, key);
    if (!kv) return 0;
    uint64_t u;
    int64_t s;
    switch (kv->type) {
    case VEIL_GGUF_U8: *v = kv->data[0]; return 1;
    case VEIL_GGUF_U16: {
        uint16_t x;
        memcpy(&x, kv->data, 2);
        *v = x;
        return 1;
    }
    case VEIL_GGUF_U32: {
        uint32_t x;
        memcpy(&x, kv->data, 4);
        *v = x;
        return 1;
    }
    case VEIL_GGUF_U64:
        memcpy(&u, kv->data, 8);
        *v = u;
        return 1;
    case VEIL_GGUF_I8: s = (int8_t)kv->data[0]; break;
    case VEIL_GGUF_I16: {
        int16_t x;
        memcpy(&x, kv->data, 2);
        s = x;
        break;
    }
    case VEIL_GGUF_I32: {
        int32_t x;
        memcpy(&x, kv->data, 4);
        s = x;
        break;
    }
    case VEIL_GGUF_I64: memcpy(&s, kv->data, 8); break;
    default: return 0;
    }
    if (s < 0) return 0;
    *v = (uint64_t)s;
    return 1;
}

int veil_gguf_get_f32(const veil_gguf *g, const char *key, float *v) {
    const veil_gguf_kv *kv = veil_gguf_find(g, key);
    int ok;
    if (!kv || kv->type == VEIL_GGUF_BOOL) return 0;
    double d = num_at(kv->data, kv->type, &ok);
    if (ok) *v = (float)d;
    return ok;
}

int veil_gguf_get_bool(const veil_gguf *g, const char *key, int *v) {
    const veil_gguf_kv *kv = veil_gguf_find(g, key);
    if (!kv || kv->type != VEIL_GGUF_BOOL) return 0;
    *v = kv->data[0] != 0;
    return 1;
}

int veil_gguf_get_str(const veil_gguf *g, const char *key, veil_gguf_str *v) {
    const veil_gguf_kv *kv = veil_gguf_find(g, key);
    if (!kv || kv->type != VEIL_GGUF_STRING) return 0;
    uint64_t n;
    memcpy(&n, kv->data, 8);
    v->p = (const char *)kv->data + 8;
    v->len = (size_t)n;
    return 1;
}

veil_gguf_str veil_gguf_arr_str(const veil_gguf_kv *kv, uint64_t i) {
    veil_gguf_str s = {"", 0};
    if (kv->type != VEIL_GGUF_ARRAY || kv->arr_type != VEIL_GGUF_STRING || i >= kv->arr_count || !kv->str_at) return s;
    uint64_t n;
    memcpy(&n, kv->str_at[i], 8);
    s.p = (const char *)kv->str_at[i] + 8;
    s.len = (size_t)n;
    return s;
}

double veil_gguf_arr_num(const veil_gguf_kv *kv, uint64_t i) {
    int ok;
    if (kv->type != VEIL_GGUF_ARRAY || i >= kv->arr_count) return 0;
    size_t sz = scalar_size(kv->arr_type);
    if (!sz) return 0;
    double d = num_at(kv->data + i * sz, kv->arr_type, &ok);
    return ok ? d : 0;
}

/* ---- writer ---- */

/* The bytes being written; an append that fails marks the buffer (oom) and
 * the writer reports it once at the end. */
typedef struct wbuf {
    veil_buf b;
    int oom;
} wbuf;

static void wb_put(wbuf *b, const void *d, size_t n) {
    if (!b->oom && !veil_buf_append(&b->b, d, n)) b->oom = 1;
}
static void wb_u32(wbuf *b, uint32_t v) { wb_put(b, &v, 4); }
static void wb_u64(wbuf *b, uint64_t v) { wb_put(b, &v, 8); }
static void wb_str(wbuf *b, const char *s) {
    size_t n = strlen(s);
    wb_u64(b, n);
    wb_put(b, s, n);
}

typedef struct wtensor {
    char *name;
    uint32_t type, n_dims;
    uint64_t ne[4];
    uint8_t *data;
    size_t size;
} wtensor;

struct veil_gguf_writer {
    wbuf kv;
    uint64_t n_kv;
    wtensor *t;
    size_t n_t, cap_t;
    int oom;
};

veil_gguf_writer *veil_gguf_writer_new(void) { return calloc(1, sizeof(veil_gguf_writer)); }

void veil_gguf_writer_free(veil_gguf_writer *w) {
    if (!w) return;
    veil_buf_free(&w->kv.b);
    for (size_t i = 0; i < w->n_t; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    free(w->t);
    free(w);
}

static void w_key(veil_gguf_writer *w, const char *key, uint32_t type) {
    wb_str(&w->kv, key);
    wb_u32(&w->kv, type);
    w->n_kv++;
}
void veil_gguf_w_u32(veil_gguf_writer *w, const char *key, uint32_t v) {
    w_key(w, key, VEIL_GGUF_U32);
    wb_u32(&w->kv, v);
}
void veil_gguf_w_f32(veil_gguf_writer *w, const char *key, float v) {
    w_key(w, key, VEIL_GGUF_F32);
    wb_put(&w->kv, &v, 4);
}
void veil_gguf_w_bool(veil_gguf_writer *w, const char *key, int v) {
    uint8_t b = v != 0;
    w_key(w, key, VEIL_GGUF_BOOL);
    wb_put(&w->kv, &b, 1);
}
void veil_gguf_w_str(veil_gguf_writer *w, const char *key, const char *v) {
    w_key(w, key, VEIL_GGUF_STRING);
    wb_str(&w->kv, v);
}
void veil_gguf_w_arr_str(veil_gguf_writer *w, const char *key, const char *const *v, size_t n) {
    w_key(w, key, VEIL_GGUF_ARRAY);
    wb_u32(&w->kv, VEIL_GGUF_STRING);
    wb_u64(&w->kv, n);
    for (size_t i = 0; i < n; i++) wb_str(&w->kv, v[i]);
}
void veil_gguf_w_arr_f32(veil_gguf_writer *w, const char *key, const float *v, size_t n) {
    w_key(w, key, VEIL_GGUF_ARRAY);
    wb_u32(&w->kv, VEIL_GGUF_F32);
    wb_u64(&w->kv, n);
    wb_put(&w->kv, v, n * 4);
}
void veil_gguf_w_arr_i32(veil_gguf_writer *w, const char *key, const int32_t *v, size_t n) {
    w_key(w, key, VEIL_GGUF_ARRAY);
    wb_u32(&w->kv, VEIL_GGUF_I32);
    wb_u64(&w->kv, n);
    wb_put(&w->kv, v, n * 4);
}

void veil_gguf_w_tensor(veil_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const uint64_t *ne,
                        const void *data, size_t size) {
    if (w->oom) return;
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? w->cap_t * 2 : 64;
        wtensor *nt = realloc(w->t, cap * sizeof *nt);
        if (!nt) {
            w->oom = 1;
            return;
        }
        w->t = nt;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    t->data = malloc(size ? size : 1);
    if (!t->name || !t->data) {
        free(t->name);
        free(t->data);
        w->oom = 1;
        return;
    }
    memcpy(t->data, data, size);
    t->size = size;
    t->type = type;
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < 4; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    w->n_t++;
}

veil_rc veil_gguf_writer_save(veil_gguf_writer *w, const char *path, veil_err *err) {
    if (w->oom || w->kv.oom) return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory building the GGUF file");
    const uint32_t align = 32;
    wbuf h = {0};
    wb_put(&h, "GGUF", 4);
    wb_u32(&h, 3);
    wb_u64(&h, w->n_t);
    wb_u64(&h, w->n_kv);
    wb_put(&h, w->kv.b.data, w->kv.b.len);
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        wtensor *t = &w->t[i];
        wb_str(&h, t->name);
        wb_u32(&h, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) wb_u64(&h, t->ne[d]);
        wb_u32(&h, t->type);
        wb_u64(&h, off);
        off += (t->size + align - 1) / align * align;
    }
    static const uint8_t zeros[32];
    if (h.b.len % align) wb_put(&h, zeros, align - h.b.len % align);
    if (h.oom) {
        veil_buf_free(&h.b);
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory building the GGUF file");
    }
    size_t plen = strlen(path) + 8;
    char *tmp = malloc(plen);
    if (!tmp) {
        veil_buf_free(&h.b);
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    }
    snprintf(tmp, plen, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    veil_rc rc = VEIL_OK;
    if (!f) {
        rc = veil_err_set(err, VEIL_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    } else {
        int ok = fwrite(h.b.data, 1, h.b.len, f) == h.b.len;
        for (size_t i = 0; ok && i < w->n_t; i++) {
            size_t pad = (align - w->t[i].size % align) % align;
            ok = fwrite(w->t[i].data, 1, w->t[i].size, f) == w->t[i].size && fwrite(zeros, 1, pad, f) == pad;
        }
        if (fclose(f) != 0) ok = 0;
        if (!ok || rename(tmp, path) != 0) {
            rc = veil_err_set(err, VEIL_ERR_IO, "cannot write %s: %s", path, strerror(errno));
            unlink(tmp);
        }
    }
    free(tmp);
    veil_buf_free(&h.b);
    return rc;
}
