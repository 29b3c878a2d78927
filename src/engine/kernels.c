/* Dot products of weight rows with activations, per weight type, in a
 * portable form and in AVX2/FMA/F16C forms chosen at run time from the CPU
 * (VEIL_NO_SIMD=1 forces the portable ones, which the tests also run).
 * Q8_0 rows multiply activations quantized once per step to int8 blocks of
 * 32 with a float scale, as the weights are. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "engine_internal.h"

static float f16_table[65536];
static int use_simd;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static void init(void);

void veil_quantize_act(const float *x, int n, int8_t *q, float *d) {
    for (int b = 0; b < n / 32; b++) {
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[b * 32 + i]));
        float s = amax / 127.0f, is = s != 0 ? 1.0f / s : 0;
        d[b] = s;
        for (int i = 0; i < 32; i++) q[b * 32 + i] = (int8_t)lrintf(x[b * 32 + i] * is);
    }
}

/* ---- portable ---- */

static float dot_f32_c(const void *w, const float *x, const int8_t *xq, const float *xd, int n) {
    (void)xq, (void)xd;
    const float *f = w;
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += f[i + j] * x[i + j];
    float s = 0;
    for (; i < n; i++) s += f[i] * x[i];
    for (int j = 0; j < 8; j++) s += acc[j];
    return s;
}

static float dot_f16_c(const void *w, const float *x, const int8_t *xq, const float *xd, int n) {
    (void)xq, (void)xd;
    const uint16_t *h = w;
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += f16_table[h[i + j]] * x[i + j];
    float s = 0;
    for (; i < n; i++) s += f16_table[h[i]] * x[i];
    for (int j = 0; j < 8; j++) s += acc[j];
    return s;
}

static float dot_bf16_c(const void *w, const float *x, const int8_t *xq, const float *xd, int n) {
    (void)xq, (void)xd;
    const uint16_t *h = w;
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += veil_bf16_to_f32(h[i + j]) * x[i + j];
    float s = 0;
    for (; i < n; i++) s += veil_bf16_to_f32(h[i]) * x[i];
    for (int j = 0; j < 8; j++) s += acc[j];
    return s;
}

static float dot_q8_0_c(const void *w, const float *x, const int8_t *xq, const float *xd, int n) {
    (void)x;
    const uint8_t *p = w;
    float s = 0;
    for (int b = 0; b < n / 32; b++, p += 34) {
        uint16_t dh;
        memcpy(&dh, p, 2);
        const int8_t *q = (const int8_t *)(p + 2), *a = xq + b * 32;
        int32_t sum = 0;
        for (int i = 0; i < 32; i++) sum += (int32_t)q[i] * a[i];
        s += f16_table[dh] * xd[b] * (float)sum;
    }
    return s;
}

/* Four tokens at once against one Q8_0 row (prefill): the row is read and
 * prepared once for all four. */
static void dot4_q8_0_c(const void *w, const int8_t *xq, const float *xd, int n, size_t ld, float out[4]) {
    for (int t = 0; t < 4; t++) out[t] = dot_q8_0_c(w, NULL, xq + (size_t)t * ld, xd + (size_t)t * (ld / 32), n);
}

/* ---- AVX2 / FMA / F16C ---- */
#if defined(__x86_64__)
#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static float hsum(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

AVX2 static float dot_f32_avx2(const void *w, const float *x, const int8_t *xq, const float *xd, int n) {
    (void)xq, (void)xd;
    const float *f = w;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(f + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(f + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(f + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(f + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(f + i), _mm256_loadu_ps(x + i), a0);
    float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += f[i] * x[i];
    return s;
}

AVX2 static float dot_f16_avx2(const void *w, const float *x, const int8_t *xq, const float *xd, int n) {
    (void)xq, (void)xd;
    const uint16_t *h = w;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i + 8))), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i + 16))), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i + 24))), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))), _mm256_loadu_ps(x + i), a0);
    float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += f16_table[h[i]] * x[i];
    return s;
}

AVX2 static float dot_bf16_avx2(const void *w, const float *x, const int8_t *xq, const float *xd, int n) {
    (void)xq, (void)xd;
    const uint16_t *h = w;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i u0 = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(h + i))), 16);
        __m256i u1 = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(h + i + 8))), 16);
        a0 = _mm256_fmadd_ps(_mm256_castsi256_ps(u0), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_castsi256_ps(u1), _mm256_loadu_ps(x + i + 8), a1);
    }
    float s = hsum(_mm256_add_ps(a0, a1));
    for (; i < n; i++) s += veil_bf16_to_f32(h[i]) * x[i];
    return s;
}

AVX2 static inline __m256 q8_block(const uint8_t *p, const int8_t *a) {
    __m256i wq = _mm256_loadu_si256((const __m256i *)(p + 2)), xq = _mm256_loadu_si256((const __m256i *)a);
    __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(xq, wq));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

AVX2 static float dot_q8_0_avx2(const void *w, const float *x, const int8_t *xq, const float *xd, int n) {
    (void)x;
    const uint8_t *p = w;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int nb = n / 32, b = 0;
    for (; b + 2 <= nb; b += 2, p += 68) {
        uint16_t d0, d1;
        memcpy(&d0, p, 2);
        memcpy(&d1, p + 34, 2);
        a0 = _mm256_fmadd_ps(_mm256_set1_ps(f16_table[d0] * xd[b]), q8_block(p, xq + b * 32), a0);
        a1 = _mm256_fmadd_ps(_mm256_set1_ps(f16_table[d1] * xd[b + 1]), q8_block(p + 34, xq + b * 32 + 32), a1);
    }
    for (; b < nb; b++, p += 34) {
        uint16_t d0;
        memcpy(&d0, p, 2);
        a0 = _mm256_fmadd_ps(_mm256_set1_ps(f16_table[d0] * xd[b]), q8_block(p, xq + b * 32), a0);
    }
    return hsum(_mm256_add_ps(a0, a1));
}

AVX2 static void dot4_q8_0_avx2(const void *w, const int8_t *xq, const float *xd, int n, size_t ld, float out[4]) {
    const uint8_t *p = w;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    const __m256i ones = _mm256_set1_epi16(1);
    size_t ldd = ld / 32;
    for (int b = 0; b < n / 32; b++, p += 34) {
        uint16_t dh;
        memcpy(&dh, p, 2);
        float dw = f16_table[dh];
        __m256i wq = _mm256_loadu_si256((const __m256i *)(p + 2));
        __m256i aw = _mm256_sign_epi8(wq, wq);
        for (int t = 0; t < 4; t++) {
            __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + (size_t)t * ld + (size_t)b * 32));
            __m256i p32 = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(xv, wq)), ones);
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * xd[(size_t)t * ldd + b]), _mm256_cvtepi32_ps(p32), acc[t]);
        }
    }
    for (int t = 0; t < 4; t++) out[t] = hsum(acc[t]);
}
#endif

static veil_dot4_fn dot4_q8[2];

veil_dot4_fn veil_dot4_q8_0(void) {
    pthread_once(&once, init);
    return dot4_q8[use_simd];
}

static veil_dot_fn dots[4][2]; /* [F32, F16, BF16, Q8_0][portable, simd] */

static void init(void) {
    for (uint32_t i = 0; i < 65536; i++) f16_table[i] = veil_f16_to_f32((uint16_t)i);
    dots[0][0] = dots[0][1] = dot_f32_c;
    dots[1][0] = dots[1][1] = dot_f16_c;
    dots[2][0] = dots[2][1] = dot_bf16_c;
    dots[3][0] = dots[3][1] = dot_q8_0_c;
    dot4_q8[0] = dot4_q8[1] = dot4_q8_0_c;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        dots[0][1] = dot_f32_avx2;
        dots[1][1] = dot_f16_avx2;
        dots[2][1] = dot_bf16_avx2;
        dots[3][1] = dot_q8_0_avx2;
        dot4_q8[1] = dot4_q8_0_avx2;
        use_simd = 1;
    }
#endif
    const char *e = getenv("VEIL_NO_SIMD");
    if (e && *e && strcmp(e, "0") != 0) use_simd = 0;
}

veil_dot_fn veil_dot_variant(uint32_t type, int simd) {
    pthread_once(&once, init);
    int k = type == VEIL_GGML_F32 ? 0 : type == VEIL_GGML_F16 ? 1 : type == VEIL_GGML_BF16 ? 2 : 3;
    return dots[k][simd ? 1 : 0];
}

veil_dot4_fn veil_dot4_variant(int simd) {
    pthread_once(&once, init);
    return dot4_q8[simd ? 1 : 0];
}

veil_dot_fn veil_dot_for(uint32_t type) {
    pthread_once(&once, init);
    int k = type == VEIL_GGML_F32 ? 0 : type == VEIL_GGML_F16 ? 1 : type == VEIL_GGML_BF16 ? 2 : 3;
    return dots[k][use_simd];
}

const char *veil_engine_kernels(void) { return veil_kernels_name(); }

const char *veil_kernels_name(void) {
    pthread_once(&once, init);
    return use_simd ? "avx2" : "portable";
}
