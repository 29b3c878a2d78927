/* Dot products of weight rows with activations, per weight type: the
 * dispatch. Each instruction set's kernels are in a file of their own
 * (kernels.h lists them); the best level this CPU runs is chosen at run time
 * (VEIL_KERNELS=portable|avx2|avx512vnni caps it, VEIL_NO_SIMD=1 forces the
 * portable ones; the tests run every level the CPU has). Under AVX2 the rows
 * of the block types are interleaved eight at a time at load and computed by
 * interleave.c's kernels instead of these row-at-a-time ones. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

float veil_f16_table[65536];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static const char *const level_names[VEIL_KERNEL_LEVELS] = {"portable", "avx2", "avx512vnni"};
static veil_dot_fn dots[N_KERNELS][VEIL_KERNEL_LEVELS];   /* NULL where this CPU lacks the level */
static veil_dot4_fn dots4[N_KERNELS][VEIL_KERNEL_LEVELS]; /* NULL for the float types too */
static int levels = 1;                                    /* how many of them this CPU runs */
static void (*quantize_act[VEIL_KERNEL_LEVELS])(const float *, int, int8_t *, float *, int16_t *);

static int kernel_of(uint32_t type) {
    switch (type) {
    case VEIL_GGML_F32: return K_F32;
    case VEIL_GGML_F16: return K_F16;
    case VEIL_GGML_BF16: return K_BF16;
    case VEIL_GGML_Q4_0: return K_Q4_0;
    case VEIL_GGML_Q5_0: return K_Q5_0;
    case VEIL_GGML_Q4_K: return K_Q4_K;
    case VEIL_GGML_Q5_K: return K_Q5_K;
    case VEIL_GGML_Q6_K: return K_Q6_K;
    default: return K_Q8_0;
    }
}

int veil_type_quantizes_activations(uint32_t type) {
    return type == VEIL_GGML_Q8_0 || type == VEIL_GGML_Q4_0 || type == VEIL_GGML_Q5_0 || type == VEIL_GGML_Q4_K ||
           type == VEIL_GGML_Q5_K || type == VEIL_GGML_Q6_K;
}

/* This CPU runs the kernels of `level` (and those below it); where `set`
 * has none for a type, the level below serves it. */
static void set_level(int level, const veil_kernel_set *set) {
    for (int k = 0; k < N_KERNELS; k++) {
        dots[k][level] = set->dot[k] ? set->dot[k] : dots[k][level - 1];
        dots4[k][level] = set->dot[k] ? set->dot4[k] : dots4[k][level - 1];
    }
    quantize_act[level] = set->quantize_act ? set->quantize_act : quantize_act[level - 1];
    levels = level + 1;
}

static void init(void) {
    for (uint32_t i = 0; i < 65536; i++) veil_f16_table[i] = veil_f16_to_f32((uint16_t)i);
    for (int k = 0; k < N_KERNELS; k++) {
        dots[k][0] = veil_kernels_portable.dot[k];
        dots4[k][0] = veil_kernels_portable.dot4[k];
    }
    quantize_act[0] = veil_kernels_portable.quantize_act;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        set_level(1, &veil_kernels_avx2);
        /* libgcc's checks include the OS saving the 512-bit state */
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"))
            set_level(2, &veil_kernels_avx512);
    }
#endif
    /* VEIL_KERNELS=portable|avx2|avx512vnni caps the level (to compare them on one machine);
     * VEIL_NO_SIMD=1 is VEIL_KERNELS=portable. */
    const char *e = getenv("VEIL_NO_SIMD"), *k = getenv("VEIL_KERNELS");
    if (e && *e && strcmp(e, "0") != 0) levels = 1;
    for (int l = 0; k && l < levels; l++)
        if (strcmp(k, level_names[l]) == 0) levels = l + 1;
}

veil_dot_fn veil_dot_variant(uint32_t type, int level) {
    pthread_once(&once, init);
    return level >= 0 && level < VEIL_KERNEL_LEVELS ? dots[kernel_of(type)][level] : NULL;
}

veil_dot4_fn veil_dot4_variant(uint32_t type, int level) {
    pthread_once(&once, init);
    return level >= 0 && level < VEIL_KERNEL_LEVELS ? dots4[kernel_of(type)][level] : NULL;
}

void veil_quantize_act(const float *x, int n, int8_t *q, float *d, int16_t *sums) {
    pthread_once(&once, init);
    quantize_act[levels - 1](x, n, q, d, sums);
}

void veil_quantize_act_level(int level, const float *x, int n, int8_t *q, float *d, int16_t *sums) {
    pthread_once(&once, init);
    if (level >= 0 && level < VEIL_KERNEL_LEVELS && quantize_act[level]) quantize_act[level](x, n, q, d, sums);
}

const char *veil_kernel_level_name(int level) {
    return level >= 0 && level < VEIL_KERNEL_LEVELS ? level_names[level] : NULL;
}

int veil_kernel_level(void) {
    pthread_once(&once, init);
    return levels - 1;
}

int veil_level_runs_avx2(int level) { return level >= 1 && veil_dot_variant(VEIL_GGML_Q8_0, level) != NULL; }

veil_dot4_fn veil_dot4_for(uint32_t type) {
    pthread_once(&once, init);
    return dots4[kernel_of(type)][levels - 1];
}

veil_dot_fn veil_dot_for(uint32_t type) {
    pthread_once(&once, init);
    return dots[kernel_of(type)][levels - 1];
}

const char *veil_engine_kernels(void) {
    pthread_once(&once, init);
    return level_names[levels - 1];
}
