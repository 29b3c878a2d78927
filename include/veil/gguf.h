/* GGUF v2/v3 model files: a bounds-checked reader over a memory mapping (a
 * model file is untrusted input) and a small writer for `veil model synth`. */
#ifndef VEIL_GGUF_H
#define VEIL_GGUF_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "veil/err.h"

#ifdef __cplusplus
extern "C" {
#endif
VEIL_API_BEGIN

/* Metadata value types, numbered as in the GGUF specification. */
enum {
    VEIL_GGUF_U8 = 0,
    VEIL_GGUF_I8,
    VEIL_GGUF_U16,
    VEIL_GGUF_I16,
    VEIL_GGUF_U32,
    VEIL_GGUF_I32,
    VEIL_GGUF_F32,
    VEIL_GGUF_BOOL,
    VEIL_GGUF_STRING,
    VEIL_GGUF_ARRAY,
    VEIL_GGUF_U64,
    VEIL_GGUF_I64,
    VEIL_GGUF_F64
};

/* Tensor types, numbered as in ggml. Only those with a known block layout
 * are accepted by the reader; the engine computes with a subset. */
enum {
    VEIL_GGML_F32 = 0,
    VEIL_GGML_F16 = 1,
    VEIL_GGML_Q4_0 = 2,
    VEIL_GGML_Q4_1 = 3,
    VEIL_GGML_Q5_0 = 6,
    VEIL_GGML_Q5_1 = 7,
    VEIL_GGML_Q8_0 = 8,
    VEIL_GGML_Q8_1 = 9,
    VEIL_GGML_Q2_K = 10,
    VEIL_GGML_Q3_K = 11,
    VEIL_GGML_Q4_K = 12,
    VEIL_GGML_Q5_K = 13,
    VEIL_GGML_Q6_K = 14,
    VEIL_GGML_Q8_K = 15,
    VEIL_GGML_I8 = 24,
    VEIL_GGML_I16 = 25,
    VEIL_GGML_I32 = 26,
    VEIL_GGML_I64 = 27,
    VEIL_GGML_F64 = 28,
    VEIL_GGML_BF16 = 30
};

/* A string inside the file: not NUL-terminated. */
typedef struct veil_gguf_str {
    const char *p;
    size_t len;
} veil_gguf_str;

typedef struct veil_gguf_kv {
    char *key;              /* NUL-terminated copy */
    uint32_t type;          /* VEIL_GGUF_* */
    const uint8_t *data;    /* the value (for ARRAY: its first element) */
    uint32_t arr_type;      /* ARRAY: element type */
    uint64_t arr_count;     /* ARRAY: element count */
    const uint8_t **str_at; /* ARRAY of STRING: where each element starts */
} veil_gguf_kv;

typedef struct veil_gguf_tensor {
    char *name;
    uint32_t n_dims;
    uint64_t ne[4];      /* ne[0]: elements per row (innermost); unused dims are 1 */
    uint32_t type;       /* VEIL_GGML_* */
    uint64_t offset;     /* from the start of the data section */
    uint64_t size;       /* bytes */
    const uint8_t *data; /* inside the mapping */
} veil_gguf_tensor;

typedef struct veil_gguf {
    uint32_t version;
    uint64_t n_kv, n_tensors;
    veil_gguf_kv *kv;
    veil_gguf_tensor *tensors;
    uint32_t alignment;
    const uint8_t *base; /* the whole file */
    size_t size;
    int mapped; /* base is an mmap of the file that veil_gguf_close unmaps */
} veil_gguf;

/* Opens and checks a GGUF file (mmap'd read-only). */
VEIL_WARN_UNUSED_RESULT veil_rc veil_gguf_open(veil_gguf **out, const char *path, veil_err *err);
/* Parses a GGUF image in memory; `data` must outlive the result. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_gguf_parse(veil_gguf **out, const uint8_t *data, size_t len, veil_err *err);
void veil_gguf_close(veil_gguf *g);

const veil_gguf_kv *veil_gguf_find(const veil_gguf *g, const char *key);
const veil_gguf_tensor *veil_gguf_tensor_find(const veil_gguf *g, const char *name);

/* Typed lookups: 1 when the key exists with a compatible type. Integers of
 * any width convert when the value fits. */
int veil_gguf_get_u64(const veil_gguf *g, const char *key, uint64_t *v);
int veil_gguf_get_f32(const veil_gguf *g, const char *key, float *v);
int veil_gguf_get_bool(const veil_gguf *g, const char *key, int *v);
int veil_gguf_get_str(const veil_gguf *g, const char *key, veil_gguf_str *v);
/* Array element i of a STRING array. */
veil_gguf_str veil_gguf_arr_str(const veil_gguf_kv *kv, uint64_t i);
/* Array element i of a numeric array as double (0 when out of range). */
double veil_gguf_arr_num(const veil_gguf_kv *kv, uint64_t i);

/* Name of a ggml type ("Q8_0"), or NULL when unknown. */
const char *veil_ggml_type_name(uint32_t type);
/* Elements per block and bytes per block; 0 when the type is unknown. */
uint32_t veil_ggml_block_elems(uint32_t type);
uint32_t veil_ggml_block_bytes(uint32_t type);

/* ---- writer ---- */
typedef struct veil_gguf_writer veil_gguf_writer;
veil_gguf_writer *veil_gguf_writer_new(void);
void veil_gguf_writer_free(veil_gguf_writer *w);
void veil_gguf_w_u32(veil_gguf_writer *w, const char *key, uint32_t v);
void veil_gguf_w_f32(veil_gguf_writer *w, const char *key, float v);
void veil_gguf_w_bool(veil_gguf_writer *w, const char *key, int v);
void veil_gguf_w_str(veil_gguf_writer *w, const char *key, const char *v);
void veil_gguf_w_arr_str(veil_gguf_writer *w, const char *key, const char *const *v, size_t n);
void veil_gguf_w_arr_f32(veil_gguf_writer *w, const char *key, const float *v, size_t n);
void veil_gguf_w_arr_i32(veil_gguf_writer *w, const char *key, const int32_t *v, size_t n);
/* Adds a tensor; `data` (size bytes, already in `type`'s layout) is copied. */
void veil_gguf_w_tensor(veil_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const uint64_t *ne,
                        const void *data, size_t size);
/* Writes the file (atomically: a temporary beside it, then rename). */
VEIL_WARN_UNUSED_RESULT veil_rc veil_gguf_writer_save(veil_gguf_writer *w, const char *path, veil_err *err);

VEIL_API_END
#ifdef __cplusplus
}
#endif
#endif
