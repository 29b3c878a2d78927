/* Internal: what the engine's dot-product kernels share across their
 * instruction sets. One file a level, each filling a veil_kernel_set:
 *   kernels_portable.c  plain C, what every CPU runs and the reference of the others
 *   kernels_avx2.c      AVX2, FMA and F16C
 *   kernels_avx512.c    AVX-512 F/BW/VL with VNNI (the float types keep their AVX2 forms)
 * kernels.c picks the best level this CPU runs; interleave.c has the AVX2 and AVX-512 VNNI
 * kernels for rows interleaved eight at a time (where a level has them for a type, its matrices
 * are interleaved at load and the row-at-a-time kernels serve only what is not). */
#ifndef VEIL_ENGINE_KERNELS_H
#define VEIL_ENGINE_KERNELS_H

#include <stdint.h>
#include <string.h>

#include "engine_internal.h"

enum { K_F32, K_F16, K_BF16, K_Q8_0, K_Q4_0, K_Q5_0, K_Q4_K, K_Q5_K, K_Q6_K, N_KERNELS };

typedef void (*veil_quantize_fn)(const float *x, int n, int8_t *q, float *d, int16_t *sums);

/* One instruction set's kernels: a row against one token and against four
 * (NULL for the float types), and the activations' quantizer. */
typedef struct veil_kernel_set {
    veil_dot_fn dot[N_KERNELS];
    veil_dot4_fn dot4[N_KERNELS];
    veil_quantize_fn quantize_act;
} veil_kernel_set;

extern const veil_kernel_set veil_kernels_portable;
#if defined(__x86_64__)
extern const veil_kernel_set veil_kernels_avx2;
extern const veil_kernel_set veil_kernels_avx512;
#endif

/* f16 to float by table (kernels.c fills it before any kernel runs). */
extern float veil_f16_table[65536];

/* The f16 at p (unaligned). */
static inline float veil_half_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return veil_f16_table[h];
}

/* The one-token and four-token entry points (dot_NAME_LEVEL, dot4_NAME_LEVEL, with the target
 * attribute ATTR) of a T-generic kernel taking (w, xq, xd, xs, n, ld, T, its own arguments…, out);
 * the arguments after the kernel's name are its own, each followed by a comma. */
#define KERNEL_ENTRIES(ATTR, LEVEL, name, kernel, ...)                                                                 \
    ATTR static float dot_##name##_##LEVEL(const void *w, const float *x, const int8_t *xq, const float *xd,           \
                                           const int16_t *xs, int n) {                                                 \
        (void)x;                                                                                                       \
        float o;                                                                                                       \
        kernel(w, xq, xd, xs, n, 0, 1, __VA_ARGS__ &o);                                                                \
        return o;                                                                                                      \
    }                                                                                                                  \
    ATTR static void dot4_##name##_##LEVEL(const void *w, const int8_t *xq, const float *xd, const int16_t *xs, int n, \
                                           size_t ld, float out[4]) {                                                  \
        kernel(w, xq, xd, xs, n, ld, 4, __VA_ARGS__ out);                                                              \
    }

#endif
