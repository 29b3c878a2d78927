/* Dot products of weight rows with activations, per weight type, in a
 * portable form, AVX2/FMA/F16C forms and AVX-512 VNNI forms, the best this
 * CPU runs chosen at run time (VEIL_KERNELS=portable|avx2 caps it,
 * VEIL_NO_SIMD=1 forces the portable ones; the tests run every form the
 * CPU has).
 * Q8_0 rows multiply activations quantized once per step to int8 blocks of
 * 32 with a float scale, as the weights are. Under AVX2 the rows of the block
 * types are interleaved eight at a time at load and computed by interleave.c's
 * kernels instead of these row-at-a-time ones. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include "kernels_avx2.h"
#endif

#include "engine_internal.h"

static float f16_table[65536];
static pthread_once_t once = PTHREAD_ONCE_INIT;
static void init(void);

static void quantize_act_c(const float *x, int n, int8_t *q, float *d, int16_t *sums) {
    for (int b = 0; b < n / 32; b++) {
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[b * 32 + i]));
        float s = amax / 127.0f, is = s != 0 ? 1.0f / s : 0;
        d[b] = s;
        for (int i = 0; i < 32; i++) q[b * 32 + i] = (int8_t)lrintf(x[b * 32 + i] * is);
        for (int h = 0; h < 2; h++) {
            int sum = 0;
            for (int i = 0; i < 16; i++) sum += q[b * 32 + h * 16 + i];
            sums[b * 2 + h] = (int16_t)sum;
        }
    }
}

/* ---- portable ---- */

static float dot_f32_c(const void *w, const float *x, const int8_t *xq, const float *xd, const int16_t *xs, int n) {
    (void)xq, (void)xd, (void)xs;
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

static float dot_f16_c(const void *w, const float *x, const int8_t *xq, const float *xd, const int16_t *xs, int n) {
    (void)xq, (void)xd, (void)xs;
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

static float dot_bf16_c(const void *w, const float *x, const int8_t *xq, const float *xd, const int16_t *xs, int n) {
    (void)xq, (void)xd, (void)xs;
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

/* Q8_0 / Q4_0 / Q5_0 rows against int8 activations: each block (an f16
 * scale first) unpacked to 32 signed values, then one integer dot. */
static void unpack_q8_0(const uint8_t *p, int8_t q[32]) { memcpy(q, p + 2, 32); }

static void unpack_q4_0(const uint8_t *p, int8_t q[32]) {
    for (int i = 0; i < 16; i++) {
        q[i] = (int8_t)((p[2 + i] & 15) - 8);
        q[i + 16] = (int8_t)((p[2 + i] >> 4) - 8);
    }
}

static void unpack_q5_0(const uint8_t *p, int8_t q[32]) {
    uint32_t qh;
    memcpy(&qh, p + 2, 4);
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)(((p[6 + j] & 15) | (((qh >> j) << 4) & 0x10)) - 16);
        q[j + 16] = (int8_t)(((p[6 + j] >> 4) | ((qh >> (j + 12)) & 0x10)) - 16);
    }
}

static float dot_small_c(const uint8_t *p, size_t bytes, void (*unpack)(const uint8_t *, int8_t *), const int8_t *xq,
                         const float *xd, int n) {
    float s = 0;
    int8_t q[32];
    for (int b = 0; b < n / 32; b++, p += bytes) {
        uint16_t dh;
        memcpy(&dh, p, 2);
        unpack(p, q);
        int32_t sum = 0;
        for (int i = 0; i < 32; i++) sum += (int32_t)q[i] * xq[b * 32 + i];
        s += f16_table[dh] * xd[b] * (float)sum;
    }
    return s;
}

static float dot_q8_0_c(const void *w, const float *x, const int8_t *xq, const float *xd, const int16_t *xs, int n) {
    (void)x, (void)xs;
    return dot_small_c(w, 34, unpack_q8_0, xq, xd, n);
}

static float dot_q4_0_c(const void *w, const float *x, const int8_t *xq, const float *xd, const int16_t *xs, int n) {
    (void)x, (void)xs;
    return dot_small_c(w, 18, unpack_q4_0, xq, xd, n);
}

static float dot_q5_0_c(const void *w, const float *x, const int8_t *xq, const float *xd, const int16_t *xs, int n) {
    (void)x, (void)xs;
    return dot_small_c(w, 22, unpack_q5_0, xq, xd, n);
}

/* K formats against int8 activations. Q4_K/Q5_K: value = d·sc·q − dmin·m
 * per 32 elements, so a sub-block's dot is d·sc·Σq·a − dmin·m·Σa, with a the
 * int8 activations (scale xd per 32). Q6_K: d·sc·(q − 32) per 16. */
static float half_of(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return f16_table[h];
}


static float dot_k45_c(const uint8_t *p, const int8_t *xq, const float *xd, int n, int bits) {
    size_t bytes = bits == 4 ? 144 : 176;
    float s = 0;
    for (int b = 0; b < n / 256; b++, p += bytes, xq += 256, xd += 8) {
        float d = half_of(p), dmin = half_of(p + 2);
        const uint8_t *qh = p + 16, *qs = bits == 4 ? p + 16 : p + 48;
        for (int j = 0; j < 8; j++) {
            int sc, m;
            veil_k4_scale_min(j, p + 4, &sc, &m);
            const uint8_t *ql = qs + (j / 2) * 32;
            int shift = (j % 2) * 4;
            int32_t isum = 0, asum = 0;
            for (int i = 0; i < 32; i++) {
                int q = (ql[i] >> shift) & 15;
                if (bits == 5 && (qh[i] >> j & 1)) q += 16;
                isum += q * xq[j * 32 + i];
                asum += xq[j * 32 + i];
            }
            s += xd[j] * (d * (float)sc * (float)isum - dmin * (float)m * (float)asum);
        }
    }
    return s;
}

static float dot_q4_k_c(const void *w, const float *x, const int8_t *xq, const float *xd, const int16_t *xs, int n) {
    (void)x, (void)xs;
    return dot_k45_c(w, xq, xd, n, 4);
}
static float dot_q5_k_c(const void *w, const float *x, const int8_t *xq, const float *xd, const int16_t *xs, int n) {
    (void)x, (void)xs;
    return dot_k45_c(w, xq, xd, n, 5);
}

static float dot_q6_k_c(const void *w, const float *x, const int8_t *xq, const float *xd, const int16_t *xs, int n) {
    (void)x, (void)xs;
    const uint8_t *p = w;
    float s = 0;
    for (int b = 0; b < n / 256; b++, p += 210, xq += 256, xd += 8) {
        float d = half_of(p + 208);
        const int8_t *sc = (const int8_t *)(p + 192);
        for (int g = 0; g < 16; g++) { /* 16 elements each */
            int32_t isum = 0;
            for (int i = 0; i < 16; i++) {
                int e = g * 16 + i, h = e / 128, k = (e % 128) / 32, l = e % 32;
                int lo = (p[h * 64 + (k & 1) * 32 + l] >> (k >= 2 ? 4 : 0)) & 15;
                int hi = (p[128 + h * 32 + l] >> (2 * k)) & 3;
                isum += ((lo | hi << 4) - 32) * xq[e];
            }
            s += xd[g / 2] * d * (float)sc[g] * (float)isum;
        }
    }
    return s;
}

/* Four tokens against one row: the portable forms are the single-token
 * ones, token by token. */
#define DOT4_C(name, single)                                                                                           \
    static void name(const void *w, const int8_t *xq, const float *xd, const int16_t *xs, int n, size_t ld,            \
                     float out[4]) {                                                                                   \
        for (int t = 0; t < 4; t++)                                                                                    \
            out[t] = single(w, NULL, xq + (size_t)t * ld, xd + (size_t)t * (ld / 32), xs + (size_t)t * (ld / 16), n);  \
    }
DOT4_C(dot4_q8_0_c, dot_q8_0_c)
DOT4_C(dot4_q4_0_c, dot_q4_0_c)
DOT4_C(dot4_q5_0_c, dot_q5_0_c)
DOT4_C(dot4_q4_k_c, dot_q4_k_c)
DOT4_C(dot4_q5_k_c, dot_q5_k_c)
DOT4_C(dot4_q6_k_c, dot_q6_k_c)

/* ---- AVX2 / FMA / F16C ---- */
#if defined(__x86_64__)

/* The one-token and four-token entry points (dot_NAME_LEVEL, dot4_NAME_LEVEL, with the target
 * attribute ATTR) of a T-generic kernel taking (w, xq, xd, xs, n, ld, T, its own arguments…, out);
 * the arguments after the kernel's name are its own, each followed by a comma. */
#define KERNEL_ENTRIES(ATTR, LEVEL, name, kernel, ...)                                                                 \
    ATTR static float dot_##name##_##LEVEL(const void *w, const float *x, const int8_t *xq, const float *xd,          \
                                           const int16_t *xs, int n) {                                                 \
        (void)x;                                                                                                       \
        float o;                                                                                                       \
        kernel(w, xq, xd, xs, n, 0, 1, __VA_ARGS__ & o);                                                               \
        return o;                                                                                                      \
    }                                                                                                                  \
    ATTR static void dot4_##name##_##LEVEL(const void *w, const int8_t *xq, const float *xd, const int16_t *xs, int n, \
                                           size_t ld, float out[4]) {                                                  \
        kernel(w, xq, xd, xs, n, ld, 4, __VA_ARGS__ out);                                                              \
    }

AVX2 static float hsum(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* quantize_act_c's arithmetic, 32 values at a time: the same maximum, the same scale, the
 * same product rounded to nearest even (cvtps2dq as lrintf), so the same bytes for finite x. */
AVX2 static void quantize_act_avx2(const float *x, int n, int8_t *q, float *d, int16_t *sums) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int b = 0; b < n / 32; b++) {
        const float *xb = x + b * 32;
        __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8), v2 = _mm256_loadu_ps(xb + 16),
               v3 = _mm256_loadu_ps(xb + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        float amax = _mm_cvtss_f32(h);
        float sc = amax / 127.0f, is = sc != 0 ? 1.0f / sc : 0;
        d[b] = sc;
        __m256 vis = _mm256_set1_ps(is);
        __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, vis)), i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, vis)),
                i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, vis)), i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, vis));
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
        _mm256_storeu_si256((__m256i *)(q + b * 32), _mm256_permutevar8x32_epi32(p, order));
        /* the sums of values 0–15 and 16–31, from the int32s */
        __m256i s01 = _mm256_add_epi32(i0, i1), s23 = _mm256_add_epi32(i2, i3);
        __m256i hs = _mm256_hadd_epi32(s01, s23); /* per lane: s01 pairs, s23 pairs */
        hs = _mm256_hadd_epi32(hs, hs);
        __m128i t = _mm_add_epi32(_mm256_castsi256_si128(hs), _mm256_extracti128_si256(hs, 1));
        sums[b * 2] = (int16_t)_mm_extract_epi32(t, 0);
        sums[b * 2 + 1] = (int16_t)_mm_extract_epi32(t, 1);
    }
}

AVX2 static float dot_f32_avx2(const void *w, const float *x, const int8_t *xq, const float *xd, const int16_t *xs, int n) {
    (void)xq, (void)xd, (void)xs;
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

AVX2 static float dot_f16_avx2(const void *w, const float *x, const int8_t *xq, const float *xd, const int16_t *xs, int n) {
    (void)xq, (void)xd, (void)xs;
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

AVX2 static float dot_bf16_avx2(const void *w, const float *x, const int8_t *xq, const float *xd, const int16_t *xs, int n) {
    (void)xq, (void)xd, (void)xs;
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

/* 32 signed weights times 32 int8 activations, summed in 8 lanes of 4. */
AVX2 static inline __m256 int_block(__m256i wq, const int8_t *a) {
    __m256i xq = _mm256_loadu_si256((const __m256i *)a);
    __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(xq, wq));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

AVX2 static inline __m256 q8_block(const uint8_t *p, const int8_t *a) {
    return int_block(_mm256_loadu_si256((const __m256i *)(p + 2)), a);
}

/* Q8_0: two blocks per step into two accumulators, so that the loads of one
 * overlap the multiplies of the other; even blocks in a0, odd in a1. For T
 * tokens (1 or 4; token t at xq + t·ld, xd + t·ld/32) each token's sums are
 * made in the same order whatever T is, so a token's result does not depend
 * on the tokens computed with it. */
__attribute__((always_inline)) AVX2 static inline void dot_q8_0_t(const uint8_t *p, const int8_t *xq, const float *xd,
                                                                  const int16_t *xs, int n, size_t ld, int T,
                                                                  float *out) {
    (void)xs; /* signed weights: no offset to take from the sums */
    __m256 a0[4], a1[4];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) a0[t] = a1[t] = _mm256_setzero_ps();
    size_t ldd = ld / 32;
    int nb = n / 32, b = 0;
    for (; b + 2 <= nb; b += 2, p += 68) {
        float d0 = half_of(p), d1 = half_of(p + 34);
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const int8_t *x = xq + (size_t)t * ld + (size_t)b * 32;
            const float *dd = xd + (size_t)t * ldd + b;
            a0[t] = _mm256_fmadd_ps(_mm256_set1_ps(d0 * dd[0]), q8_block(p, x), a0[t]);
            a1[t] = _mm256_fmadd_ps(_mm256_set1_ps(d1 * dd[1]), q8_block(p + 34, x + 32), a1[t]);
        }
    }
    for (; b < nb; b++, p += 34) {
        float d0 = half_of(p);
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            a0[t] = _mm256_fmadd_ps(_mm256_set1_ps(d0 * xd[(size_t)t * ldd + b]),
                                    q8_block(p, xq + (size_t)t * ld + (size_t)b * 32), a0[t]);
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) out[t] = hsum(_mm256_add_ps(a0[t], a1[t]));
}

KERNEL_ENTRIES(AVX2, avx2, q8_0, dot_q8_0_t, )

/* Q4_0/Q5_0: 16 bytes of nibbles to 32 unsigned codes (low nibbles first). */
AVX2 static inline __m256i nibbles(const uint8_t *qs) {
    /* the 16 bytes in both halves, the upper half shifted down by 4: no cross-lane shuffle */
    __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    return _mm256_and_si256(_mm256_srlv_epi64(v, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(15));
}

/* Q5_0's fifth bits, bit i of qh to byte i as 0x10. */
AVX2 static inline __m256i q5_high(const uint8_t *qh) {
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3,
                                          3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    /* broadcast straight from memory (a load, not a shuffle) */
    __m256i hb = _mm256_shuffle_epi8(_mm256_castps_si256(_mm256_broadcast_ss((const float *)(const void *)qh)), shuf);
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hb, bit), bit), _mm256_set1_epi8(0x10));
}

AVX2 static inline __m256i q4_codes(const uint8_t *p) { return nibbles(p + 2); }

AVX2 static inline __m256i q5_codes(const uint8_t *p) { return _mm256_or_si256(nibbles(p + 6), q5_high(p + 2)); }

/* Σ over 4-element groups of unsigned q times signed a, as 8 int32 lanes. */
AVX2 static inline __m256i udot(__m256i q, __m256i a) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(q, a), _mm256_set1_epi16(1));
}

/* Blocks of 32 unsigned codes with an f16 scale first, value = d·(code − offset) (Q4_0, Q5_0):
 * Σ code·a by maddubs (codes < 32: no int16 overflow, no sign juggling), two blocks per step as
 * in dot_q8_0_t; the offset's share, offset·Σ d·xd·Σa, is one vector dot per 64 blocks of
 * the block scales (kept as they are read) with the activations' scales and sums. For T tokens
 * (1 or 4; token t at xq + t·ld, xd + t·ld/32, xs + t·ld/16) each block is unpacked once, and
 * every token's sums are made in the same order whatever T is, so a token's result does not
 * depend on the tokens computed with it. */
__attribute__((always_inline)) AVX2 static inline void dot_offset_avx2(const uint8_t *p, const int8_t *xq,
                                                                       const float *xd, const int16_t *xs, int n,
                                                                       size_t ld, int T, size_t bytes,
                                                                       __m256i (*codes)(const uint8_t *), int offset,
                                                                       float *out) {
    enum { CHUNK = 64 };
    __m256 a0[4], a1[4], corr[4];
    float corr_tail[4], dloc[CHUNK];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        a0[t] = a1[t] = corr[t] = _mm256_setzero_ps();
        corr_tail[t] = 0;
    }
    int nb = n / 32;
    for (int c0 = 0; c0 < nb; c0 += CHUNK) {
        int c1 = c0 + CHUNK < nb ? c0 + CHUNK : nb, b = c0;
        for (; b + 2 <= c1; b += 2, p += 2 * bytes) {
            float d0 = half_of(p), d1 = half_of(p + bytes);
            dloc[b - c0] = d0;
            dloc[b - c0 + 1] = d1;
            __m256i k0 = codes(p), k1 = codes(p + bytes);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                const int8_t *x = xq + (size_t)t * ld + b * 32;
                const float *dd = xd + (size_t)t * (ld / 32);
                a0[t] = _mm256_fmadd_ps(_mm256_set1_ps(d0 * dd[b]),
                                        _mm256_cvtepi32_ps(udot(k0, _mm256_loadu_si256((const __m256i *)x))), a0[t]);
                a1[t] = _mm256_fmadd_ps(_mm256_set1_ps(d1 * dd[b + 1]),
                                        _mm256_cvtepi32_ps(udot(k1, _mm256_loadu_si256((const __m256i *)(x + 32)))), a1[t]);
            }
        }
        for (; b < c1; b++, p += bytes) { /* an odd last block */
            float d0 = half_of(p);
            dloc[b - c0] = d0;
            __m256i k0 = codes(p);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                __m256i x0 = _mm256_loadu_si256((const __m256i *)(xq + (size_t)t * ld + b * 32));
                a0[t] = _mm256_fmadd_ps(_mm256_set1_ps(d0 * xd[(size_t)t * (ld / 32) + b]),
                                        _mm256_cvtepi32_ps(udot(k0, x0)), a0[t]);
            }
        }
        /* the offset's share of this chunk: 8 blocks per step, the rest one by one */
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const float *dd = xd + (size_t)t * (ld / 32);
            const int16_t *ss = xs + (size_t)t * (ld / 16);
            int e = c0;
            for (; e + 8 <= c1; e += 8) {
                __m256 sums = _mm256_cvtepi32_ps(
                    _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(ss + 2 * e)), _mm256_set1_epi16(1)));
                corr[t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(dloc + (e - c0)), _mm256_loadu_ps(dd + e)), sums,
                                          corr[t]);
            }
            for (; e < c1; e++) corr_tail[t] = fmaf(dloc[e - c0] * dd[e], (float)(ss[2 * e] + ss[2 * e + 1]), corr_tail[t]);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++)
        out[t] = hsum(_mm256_add_ps(a0[t], a1[t])) - (float)offset * (hsum(corr[t]) + corr_tail[t]);
}

KERNEL_ENTRIES(AVX2, avx2, q4_0, dot_offset_avx2, 18, q4_codes, 8, )
KERNEL_ENTRIES(AVX2, avx2, q5_0, dot_offset_avx2, 22, q5_codes, 16, )

/* A Q4_K/Q5_K super-block's header (block b of the row, at p) for T tokens: the 8 sub-block
 * scales times d and token t's activation scales into scv[t], the mins' share dmin·m·Σa added to
 * macc[t] from the activations' sums. */
__attribute__((always_inline)) AVX2 static inline void k45_head(const uint8_t *p, int b, const float *xd,
                                                                const int16_t *xs, size_t ld, int T, __m256 *scv,
                                                                __m256 *macc) {
    uint8_t scb[8], mb[8];
    veil_k4_scales_mins(p + 4, scb, mb);
    __m256 scf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)scb)));
    __m256 mf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)mb)));
    __m256 d = _mm256_set1_ps(half_of(p)), dmin = _mm256_set1_ps(half_of(p + 2));
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        __m256 xdv = _mm256_loadu_ps(xd + (size_t)t * (ld / 32) + b * 8);
        scv[t] = _mm256_mul_ps(_mm256_mul_ps(xdv, d), scf);
        __m256 mv = _mm256_mul_ps(_mm256_mul_ps(xdv, dmin), mf);
        __m256i sums = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(xs + (size_t)t * (ld / 16) + b * 16)),
                                         _mm256_set1_epi16(1));
        macc[t] = _mm256_fmadd_ps(mv, _mm256_cvtepi32_ps(sums), macc[t]);
    }
}

/* Q4_K / Q5_K: per super-block, the 8 sub-block scales times their activation scales as one
 * vector (a lane picked per sub-block) and the mins' share dmin·m·Σa as another, from the
 * activations' sums; per sub-block, one integer dot in 8 lanes. T tokens as dot_offset_avx2. */
__attribute__((always_inline)) AVX2 static inline void dot_k45_avx2(const uint8_t *p, const int8_t *xq, const float *xd,
                                                                    const int16_t *xs, int n, size_t ld, int T,
                                                                    int bits, float *out) {
    size_t bytes = bits == 4 ? 144 : 176;
    __m256 acc[4], acc1[4], macc[4]; /* even sub-blocks into acc, odd into acc1: two chains */
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) acc[t] = acc1[t] = macc[t] = _mm256_setzero_ps();
    const __m256i m15 = _mm256_set1_epi8(15);
    for (int b = 0; b < n / 256; b++, p += bytes) {
        __m256 scv[4];
        k45_head(p, b, xd, xs, ld, T, scv, macc);
        const uint8_t *qs = bits == 4 ? p + 16 : p + 48;
        __m256i qh = bits == 5 ? _mm256_loadu_si256((const __m256i *)(p + 16)) : _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(qs + c * 32));
            __m256i q0 = _mm256_and_si256(v, m15), q1 = _mm256_and_si256(_mm256_srli_epi16(v, 4), m15);
            if (bits == 5) { /* bit 2c (2c + 1) of qh[i] is the fifth bit of sub-block 2c's (2c + 1's) element i */
                q0 = _mm256_or_si256(q0, veil_bit_to_4(qh, 2 * c));
                q1 = _mm256_or_si256(q1, veil_bit_to_4(qh, 2 * c + 1));
            }
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                const int8_t *a = xq + (size_t)t * ld + b * 256 + c * 64;
                acc[t] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(scv[t], _mm256_set1_epi32(2 * c)),
                                         _mm256_cvtepi32_ps(udot(q0, _mm256_loadu_si256((const __m256i *)a))), acc[t]);
                acc1[t] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(scv[t], _mm256_set1_epi32(2 * c + 1)),
                                          _mm256_cvtepi32_ps(udot(q1, _mm256_loadu_si256((const __m256i *)(a + 32)))),
                                          acc1[t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) out[t] = hsum(_mm256_add_ps(acc[t], acc1[t])) - hsum(macc[t]);
}

KERNEL_ENTRIES(AVX2, avx2, q4_k, dot_k45_avx2, 4, )
KERNEL_ENTRIES(AVX2, avx2, q5_k, dot_k45_avx2, 5, )

/* Q6_K: per super-block, its 16 scales times d and their activation scales as two vectors
 * (scales 0–7 and 8–15), and the offset's share 32·Σ scale·Σa from the activations' sums; per 32
 * elements one integer dot in 8 lanes, lanes 0–3 and 4–7 under their own scale. T tokens as
 * dot_offset_avx2. */
__attribute__((always_inline)) AVX2 static inline void dot_q6_k_t(const uint8_t *p, const int8_t *xq, const float *xd,
                                                                  const int16_t *xs, int n, size_t ld, int T,
                                                                  float *out) {
    __m256 acc[2][4], cacc[4]; /* even groups in acc[0], odd in acc[1]: two chains */
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) acc[0][t] = acc[1][t] = cacc[t] = _mm256_setzero_ps();
    const __m256i m15 = _mm256_set1_epi8(15);
    const __m256i lo_half = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3), hi_half = _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7);
    for (int b = 0; b < n / 256; b++, p += 210) {
        __m128i sc8 = _mm_loadu_si128((const __m128i *)(p + 192));
        __m256 d = _mm256_set1_ps(half_of(p + 208));
        __m256 sc_lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc8)),
               sc_hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc8, 8)));
        __m256 sv[4][2];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            __m256 xdv = _mm256_loadu_ps(xd + (size_t)t * (ld / 32) + b * 8);
            sv[t][0] = _mm256_mul_ps(_mm256_mul_ps(d, _mm256_permutevar8x32_ps(xdv, lo_half)), sc_lo);
            sv[t][1] = _mm256_mul_ps(_mm256_mul_ps(d, _mm256_permutevar8x32_ps(xdv, hi_half)), sc_hi);
            __m256i s16 = _mm256_loadu_si256((const __m256i *)(xs + (size_t)t * (ld / 16) + b * 16));
            cacc[t] = _mm256_fmadd_ps(sv[t][0], _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(s16))),
                                      cacc[t]);
            cacc[t] = _mm256_fmadd_ps(sv[t][1],
                                      _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_extracti128_si256(s16, 1))), cacc[t]);
        }
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256i l0 = _mm256_loadu_si256((const __m256i *)(p + h * 64)),
                    l1 = _mm256_loadu_si256((const __m256i *)(p + h * 64 + 32)),
                    hb = _mm256_loadu_si256((const __m256i *)(p + 128 + h * 32));
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) { /* 32-element group 4h + k: scales 8h + 2k, 8h + 2k + 1 */
                __m256i lo = _mm256_and_si256(k >= 2 ? _mm256_srli_epi16(k & 1 ? l1 : l0, 4) : (k & 1 ? l1 : l0), m15);
                __m256i q = _mm256_or_si256(lo, veil_bits_to_45(hb, k));
                __m256i pick = _mm256_setr_epi32(2 * k, 2 * k, 2 * k, 2 * k, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1);
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                    __m256i a = _mm256_loadu_si256((const __m256i *)(xq + (size_t)t * ld + b * 256 + h * 128 + k * 32));
                    acc[k & 1][t] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(sv[t][h], pick),
                                                    _mm256_cvtepi32_ps(udot(q, a)), acc[k & 1][t]);
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) out[t] = hsum(_mm256_add_ps(acc[0][t], acc[1][t])) - 32.0f * hsum(cacc[t]);
}

KERNEL_ENTRIES(AVX2, avx2, q6_k, dot_q6_k_t, )


/* ---- AVX-512 (F, BW, VL, VNNI) ----
 * The same block math as the AVX2 forms, 64 weights per vector: vpdpbusd multiplies unsigned
 * codes by int8 activations and sums each 4 into an int32 lane in one instruction (exact, no
 * int16 stage), and the two halves of a vector carry two blocks (Q8_0, Q4_0, Q5_0) or two
 * sub-blocks (the K types), each lane then scaled by its block's scale picked with one permute.
 * T tokens (1 or 4) as in the AVX2 forms: every token's sums are made in the same order whatever
 * T is. The float types keep their AVX2 forms. */
#define AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

AVX512 static inline __m512i join256(__m256i lo, __m256i hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

/* Σ over 4-element groups of unsigned q times signed a, as 16 int32 lanes. */
AVX512 static inline __m512 udot512(__m512i q, __m512i a) {
    return _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), q, a));
}

enum { BLK_Q8_0, BLK_Q4_0, BLK_Q5_0 };

/* The unsigned codes of the block at p (low half) and, when two, of the one after it (high
 * half); for Q8_0 the weights' magnitudes, with their signs in *neg for the activations. */
__attribute__((always_inline)) AVX512 static inline __m512i codes512(const uint8_t *p, size_t bytes, int kind,
                                                                     int two, __mmask64 *neg) {
    if (kind == BLK_Q8_0) {
        __m256i lo = _mm256_loadu_si256((const __m256i *)(p + 2));
        __m256i hi = two ? _mm256_loadu_si256((const __m256i *)(p + bytes + 2)) : _mm256_setzero_si256();
        __m512i w = join256(lo, hi);
        *neg = _mm512_movepi8_mask(w);
        return _mm512_abs_epi8(w); /* −128 becomes 128 as an unsigned byte: still exact */
    }
    size_t qs = kind == BLK_Q4_0 ? 2 : 6;
    __m512i c = join256(nibbles(p + qs), two ? nibbles(p + bytes + qs) : _mm256_setzero_si256());
    if (kind == BLK_Q5_0) { /* bit i of qh is the fifth bit of element i: a byte mask */
        uint32_t h0, h1 = 0;
        memcpy(&h0, p + 2, 4);
        if (two) memcpy(&h1, p + bytes + 2, 4);
        c = _mm512_mask_add_epi8(c, _cvtu64_mask64((uint64_t)h0 | (uint64_t)h1 << 32), c, _mm512_set1_epi8(16));
    }
    return c;
}

/* One step of dot_blocks512: the (one or two) blocks of q against token t's activations at x,
 * their scales picked from dd (block j of the chunk in lane j) by idx. */
__attribute__((always_inline)) AVX512 static inline __m512 blocks_step(__m512i q, __mmask64 neg, int kind,
                                                                       __m512i x, __m512i idx, __m512 dd, __m512 acc) {
    if (kind == BLK_Q8_0) x = _mm512_mask_sub_epi8(x, neg, _mm512_setzero_si512(), x);
    return _mm512_fmadd_ps(_mm512_permutexvar_ps(idx, dd), udot512(q, x), acc);
}

/* Blocks of 32 with an f16 scale first (Q8_0, Q4_0, Q5_0), in chunks of 16 blocks: the chunk's
 * scales times each token's activation scales as one vector, then two blocks per step (four per
 * loop turn, into two accumulators); value = d·(code − offset), the offset's share taken per
 * chunk from the activations' sums as in dot_offset_avx2. */
__attribute__((always_inline)) AVX512 static inline void dot_blocks512(const uint8_t *p, const int8_t *xq,
                                                                       const float *xd, const int16_t *xs, int n,
                                                                       size_t ld, int T, size_t bytes, int kind,
                                                                       int offset, float *out) {
    __m512 acc0[4], acc1[4], corr[4];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) acc0[t] = acc1[t] = corr[t] = _mm512_setzero_ps();
    const __m512i step2 = _mm512_set1_epi32(2), first = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    size_t ldd = ld / 32, lds = ld / 16;
    int nb = n / 32;
    for (int c0 = 0; c0 < nb; c0 += 16) {
        int m = nb - c0 < 16 ? nb - c0 : 16;
        float dl[16];
        for (int i = 0; i < 16; i++) dl[i] = i < m ? half_of(p + (size_t)i * bytes) : 0.0f;
        __mmask16 km = (__mmask16)((1u << m) - 1);
        __m512 dv = _mm512_loadu_ps(dl), dd[4];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            dd[t] = _mm512_mul_ps(dv, _mm512_maskz_loadu_ps(km, xd + (size_t)t * ldd + c0));
            if (offset) {
                __mmask32 k2 = (__mmask32)(m == 16 ? 0xffffffffu : (1u << 2 * m) - 1);
                __m512i s = _mm512_maskz_loadu_epi16(k2, xs + (size_t)t * lds + 2 * c0);
                corr[t] = _mm512_fmadd_ps(dd[t], _mm512_cvtepi32_ps(_mm512_madd_epi16(s, _mm512_set1_epi16(1))), corr[t]);
            }
        }
        __m512i idx = first;
        int j = 0;
        for (; j + 4 <= m; j += 4, p += 4 * bytes) {
            __mmask64 n0 = 0, n1 = 0;
            __m512i q0 = codes512(p, bytes, kind, 1, &n0), q1 = codes512(p + 2 * bytes, bytes, kind, 1, &n1);
            __m512i idx1 = _mm512_add_epi32(idx, step2);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                const int8_t *x = xq + (size_t)t * ld + (size_t)(c0 + j) * 32;
                acc0[t] = blocks_step(q0, n0, kind, _mm512_loadu_si512(x), idx, dd[t], acc0[t]);
                acc1[t] = blocks_step(q1, n1, kind, _mm512_loadu_si512(x + 64), idx1, dd[t], acc1[t]);
            }
            idx = _mm512_add_epi32(idx1, step2);
        }
        if (j + 2 <= m) {
            __mmask64 n0 = 0;
            __m512i q0 = codes512(p, bytes, kind, 1, &n0);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++)
                acc0[t] = blocks_step(q0, n0, kind, _mm512_loadu_si512(xq + (size_t)t * ld + (size_t)(c0 + j) * 32), idx,
                                      dd[t], acc0[t]);
            j += 2, p += 2 * bytes;
            idx = _mm512_add_epi32(idx, step2);
        }
        if (j < m) { /* an odd last block: the high half empty (zero codes, zero scale) */
            __mmask64 n0 = 0;
            __m512i q0 = codes512(p, bytes, kind, 0, &n0);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++)
                acc1[t] = blocks_step(q0, n0, kind,
                                      _mm512_maskz_loadu_epi8(0xffffffffull, xq + (size_t)t * ld + (size_t)(c0 + j) * 32),
                                      idx, dd[t], acc1[t]);
            p += bytes;
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++)
        out[t] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[t], acc1[t])) -
                 (offset ? (float)offset * _mm512_reduce_add_ps(corr[t]) : 0.0f);
}


/* Q4_K / Q5_K: per super-block the scales and the mins' share as in dot_k45_avx2; per 32 bytes of
 * nibbles, one vector of 64 codes: the low nibbles (sub-block 2c) in the low half, the high ones
 * (sub-block 2c + 1) in the high half, against 64 contiguous activations. */
__attribute__((always_inline)) AVX512 static inline void dot_k45_512(const uint8_t *p, const int8_t *xq,
                                                                     const float *xd, const int16_t *xs, int n,
                                                                     size_t ld, int T, int bits, float *out) {
    size_t bytes = bits == 4 ? 144 : 176;
    __m512 acc[2][4]; /* even chunks in acc[0], odd in acc[1]: two chains */
    __m256 macc[4];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        acc[0][t] = acc[1][t] = _mm512_setzero_ps();
        macc[t] = _mm256_setzero_ps();
    }
    const __m512i m15 = _mm512_set1_epi8(15), halves = _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4);
    for (int b = 0; b < n / 256; b++, p += bytes) {
        __m256 sc8[4];
        __m512 scv[4];
        k45_head(p, b, xd, xs, ld, T, sc8, macc);
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) scv[t] = _mm512_castps256_ps512(sc8[t]); /* lanes 0–7 used */
        const uint8_t *qs = bits == 4 ? p + 16 : p + 48;
        __m512i qh = bits == 5 ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(p + 16)))
                               : _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(qs + c * 32)));
            __m512i q = _mm512_and_si512(_mm512_srlv_epi64(v, halves), m15);
            if (bits == 5) { /* bit 2c (low half) or 2c + 1 (high half) of qh[i] */
                const __m512i sel = join256(_mm256_set1_epi8((char)(1 << 2 * c)), _mm256_set1_epi8((char)(1 << (2 * c + 1))));
                q = _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(qh, sel), q, _mm512_set1_epi8(16));
            }
            const __m512i idx = _mm512_setr_epi32(2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c + 1,
                                                  2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                __m512i a = _mm512_loadu_si512(xq + (size_t)t * ld + b * 256 + c * 64);
                acc[c & 1][t] = _mm512_fmadd_ps(_mm512_permutexvar_ps(idx, scv[t]), udot512(q, a), acc[c & 1][t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) out[t] = _mm512_reduce_add_ps(_mm512_add_ps(acc[0][t], acc[1][t])) - hsum(macc[t]);
}

/* Q6_K: per super-block its 16 scales times d and their activation scales as one vector, the
 * offset's share 32·Σ scale·Σa from the activations' sums; per 64 bytes of low bits (two 32-element
 * groups), one vector of codes, lanes 0–3, 4–7, 8–11, 12–15 under four consecutive scales. */
__attribute__((always_inline)) AVX512 static inline void dot_q6_k_512(const uint8_t *p, const int8_t *xq,
                                                                      const float *xd, const int16_t *xs, int n,
                                                                      size_t ld, int T, float *out) {
    __m512 acc[2][4], cacc[4]; /* groups 4h + 2kk in acc[kk]: two chains */
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) acc[0][t] = acc[1][t] = cacc[t] = _mm512_setzero_ps();
    const __m512i m15 = _mm512_set1_epi8(15), m3 = _mm512_set1_epi8(3);
    const __m512i pairs = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    for (int b = 0; b < n / 256; b++, p += 210) {
        __m512 scf = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + 192))));
        __m512 dsc = _mm512_mul_ps(_mm512_set1_ps(half_of(p + 208)), scf);
        __m512 sv[4];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            __m256 xdv = _mm256_loadu_ps(xd + (size_t)t * (ld / 32) + b * 8);
            sv[t] = _mm512_mul_ps(_mm512_permutexvar_ps(pairs, _mm512_castps256_ps512(xdv)), dsc);
            __m256i s16 = _mm256_loadu_si256((const __m256i *)(xs + (size_t)t * (ld / 16) + b * 16));
            cacc[t] = _mm512_fmadd_ps(sv[t], _mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(s16)), cacc[t]);
        }
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m512i l = _mm512_loadu_si512(p + h * 64);
            __m512i hb = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(p + 128 + h * 32)));
#pragma GCC unroll 2
            for (int kk = 0; kk < 2; kk++) { /* groups 4h + 2kk (low half) and 4h + 2kk + 1 (high half) */
                __m512i lo = _mm512_and_si512(kk ? _mm512_srli_epi16(l, 4) : l, m15);
                __m512i hi = _mm512_and_si512(
                    _mm512_srlv_epi64(hb, _mm512_setr_epi64(4 * kk, 4 * kk, 4 * kk, 4 * kk, 4 * kk + 2, 4 * kk + 2,
                                                            4 * kk + 2, 4 * kk + 2)),
                    m3);
                __m512i q = _mm512_or_si512(lo, _mm512_slli_epi16(hi, 4));
                int s0 = 8 * h + 4 * kk;
                const __m512i idx = _mm512_setr_epi32(s0, s0, s0, s0, s0 + 1, s0 + 1, s0 + 1, s0 + 1, s0 + 2, s0 + 2,
                                                      s0 + 2, s0 + 2, s0 + 3, s0 + 3, s0 + 3, s0 + 3);
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                    __m512i a = _mm512_loadu_si512(xq + (size_t)t * ld + b * 256 + h * 128 + kk * 64);
                    acc[kk][t] = _mm512_fmadd_ps(_mm512_permutexvar_ps(idx, sv[t]), udot512(q, a), acc[kk][t]);
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++)
        out[t] = _mm512_reduce_add_ps(_mm512_add_ps(acc[0][t], acc[1][t])) - 32.0f * _mm512_reduce_add_ps(cacc[t]);
}

KERNEL_ENTRIES(AVX512, avx512, q8_0, dot_blocks512, 34, BLK_Q8_0, 0, )
KERNEL_ENTRIES(AVX512, avx512, q4_0, dot_blocks512, 18, BLK_Q4_0, 8, )
KERNEL_ENTRIES(AVX512, avx512, q5_0, dot_blocks512, 22, BLK_Q5_0, 16, )
KERNEL_ENTRIES(AVX512, avx512, q4_k, dot_k45_512, 4, )
KERNEL_ENTRIES(AVX512, avx512, q5_k, dot_k45_512, 5, )
KERNEL_ENTRIES(AVX512, avx512, q6_k, dot_q6_k_512, )

#endif

enum { K_F32, K_F16, K_BF16, K_Q8_0, K_Q4_0, K_Q5_0, K_Q4_K, K_Q5_K, K_Q6_K, N_KERNELS };
static const char *const level_names[VEIL_KERNEL_LEVELS] = {"portable", "avx2", "avx512vnni"};
static veil_dot_fn dots[N_KERNELS][VEIL_KERNEL_LEVELS];   /* NULL where this CPU lacks the level */
static veil_dot4_fn dots4[N_KERNELS][VEIL_KERNEL_LEVELS]; /* NULL for the float types too */
static int levels = 1;                          /* how many of them this CPU runs */
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

/* This CPU runs the kernels of `level` (and those below it). */
static void set_level(int level, const veil_dot_fn *d, const veil_dot4_fn *d4) {
    for (int k = 0; k < N_KERNELS; k++) {
        dots[k][level] = d[k];
        dots4[k][level] = d4[k];
    }
    levels = level + 1;
}

static void init(void) {
    for (uint32_t i = 0; i < 65536; i++) f16_table[i] = veil_f16_to_f32((uint16_t)i);
    static const veil_dot_fn portable[N_KERNELS] = {dot_f32_c,  dot_f16_c,  dot_bf16_c, dot_q8_0_c, dot_q4_0_c,
                                                    dot_q5_0_c, dot_q4_k_c, dot_q5_k_c, dot_q6_k_c};
    static const veil_dot4_fn portable4[N_KERNELS] = {NULL,        NULL,        NULL,        dot4_q8_0_c, dot4_q4_0_c,
                                                      dot4_q5_0_c, dot4_q4_k_c, dot4_q5_k_c, dot4_q6_k_c};
    set_level(0, portable, portable4);
    quantize_act[0] = quantize_act_c;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        static const veil_dot_fn simd[N_KERNELS] = {dot_f32_avx2,  dot_f16_avx2,  dot_bf16_avx2,
                                                    dot_q8_0_avx2, dot_q4_0_avx2, dot_q5_0_avx2,
                                                    dot_q4_k_avx2, dot_q5_k_avx2, dot_q6_k_avx2};
        static const veil_dot4_fn simd4[N_KERNELS] = {NULL,           NULL,           NULL,
                                                      dot4_q8_0_avx2, dot4_q4_0_avx2, dot4_q5_0_avx2,
                                                      dot4_q4_k_avx2, dot4_q5_k_avx2, dot4_q6_k_avx2};
        set_level(1, simd, simd4);
        quantize_act[1] = quantize_act_avx2;
        /* libgcc's checks include the OS saving the 512-bit state */
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni")) {
            static const veil_dot_fn v512[N_KERNELS] = {dot_f32_avx2,    dot_f16_avx2,    dot_bf16_avx2,
                                                        dot_q8_0_avx512, dot_q4_0_avx512, dot_q5_0_avx512,
                                                        dot_q4_k_avx512, dot_q5_k_avx512, dot_q6_k_avx512};
            static const veil_dot4_fn v512_4[N_KERNELS] = {NULL,             NULL,             NULL,
                                                           dot4_q8_0_avx512, dot4_q4_0_avx512, dot4_q5_0_avx512,
                                                           dot4_q4_k_avx512, dot4_q5_k_avx512, dot4_q6_k_avx512};
            set_level(2, v512, v512_4);
            quantize_act[2] = quantize_act_avx2;
        }
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

const char *veil_kernel_level_name(int level) { return level >= 0 && level < VEIL_KERNEL_LEVELS ? level_names[level] : NULL; }

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
