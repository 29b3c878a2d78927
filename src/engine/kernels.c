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

void veil_quantize_act(const float *x, int n, int8_t *q, float *d, int16_t *sums) {
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
#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static float hsum(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
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
                                                                  int n, size_t ld, int T, float *out) {
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

AVX2 static float dot_q8_0_avx2(const void *w, const float *x, const int8_t *xq, const float *xd, const int16_t *xs, int n) {
    (void)x, (void)xs;
    float o;
    dot_q8_0_t(w, xq, xd, n, 0, 1, &o);
    return o;
}

AVX2 static void dot4_q8_0_avx2(const void *w, const int8_t *xq, const float *xd, const int16_t *xs, int n, size_t ld,
                                float out[4]) {
    (void)xs;
    dot_q8_0_t(w, xq, xd, n, ld, 4, out);
}

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
__attribute__((always_inline)) AVX2 static inline void dot_offset_avx2(const uint8_t *p, size_t bytes,
                                                                       __m256i (*codes)(const uint8_t *), int offset,
                                                                       const int8_t *xq, const float *xd,
                                                                       const int16_t *xs, int n, size_t ld, int T,
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

AVX2 static float dot_q4_0_avx2(const void *w, const float *x, const int8_t *xq, const float *xd, const int16_t *xs,
                                int n) {
    (void)x;
    float o;
    dot_offset_avx2(w, 18, q4_codes, 8, xq, xd, xs, n, 0, 1, &o);
    return o;
}

AVX2 static float dot_q5_0_avx2(const void *w, const float *x, const int8_t *xq, const float *xd, const int16_t *xs,
                                int n) {
    (void)x;
    float o;
    dot_offset_avx2(w, 22, q5_codes, 16, xq, xd, xs, n, 0, 1, &o);
    return o;
}

AVX2 static void dot4_q4_0_avx2(const void *w, const int8_t *xq, const float *xd, const int16_t *xs, int n, size_t ld,
                                float out[4]) {
    dot_offset_avx2(w, 18, q4_codes, 8, xq, xd, xs, n, ld, 4, out);
}

AVX2 static void dot4_q5_0_avx2(const void *w, const int8_t *xq, const float *xd, const int16_t *xs, int n, size_t ld,
                                float out[4]) {
    dot_offset_avx2(w, 22, q5_codes, 16, xq, xd, xs, n, ld, 4, out);
}

/* Q4_K / Q5_K: per super-block, the 8 sub-block scales times their activation scales as one
 * vector (a lane picked per sub-block) and the mins' share dmin·m·Σa as another, from the
 * activations' sums; per sub-block, one integer dot in 8 lanes. T tokens as dot_offset_avx2. */
__attribute__((always_inline)) AVX2 static inline void dot_k45_avx2(const uint8_t *p, const int8_t *xq, const float *xd,
                                                                    const int16_t *xs, int n, size_t ld, int T,
                                                                    int bits, float *out) {
    size_t bytes = bits == 4 ? 144 : 176;
    __m256 acc[4], macc[4];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) acc[t] = macc[t] = _mm256_setzero_ps();
    const __m256i m15 = _mm256_set1_epi8(15), ones = _mm256_set1_epi8(1);
    for (int b = 0; b < n / 256; b++, p += bytes) {
        uint8_t scb[8], mb[8];
        veil_k4_scales_mins(p + 4, scb, mb);
        __m256 scf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)scb)));
        __m256 mf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)mb)));
        __m256 d = _mm256_set1_ps(half_of(p)), dmin = _mm256_set1_ps(half_of(p + 2));
        __m256 scv[4];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            __m256 xdv = _mm256_loadu_ps(xd + (size_t)t * (ld / 32) + b * 8);
            scv[t] = _mm256_mul_ps(_mm256_mul_ps(xdv, d), scf);
            __m256 mv = _mm256_mul_ps(_mm256_mul_ps(xdv, dmin), mf);
            __m256i sums = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(xs + (size_t)t * (ld / 16) + b * 16)),
                                             _mm256_set1_epi16(1));
            macc[t] = _mm256_fmadd_ps(mv, _mm256_cvtepi32_ps(sums), macc[t]);
        }
        const uint8_t *qs = bits == 4 ? p + 16 : p + 48;
        __m256i qh = bits == 5 ? _mm256_loadu_si256((const __m256i *)(p + 16)) : _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(qs + c * 32));
            __m256i q0 = _mm256_and_si256(v, m15), q1 = _mm256_and_si256(_mm256_srli_epi16(v, 4), m15);
            if (bits == 5) { /* bit 2c of qh[i] is the fifth bit of sub-block 2c's element i */
                __m256i b0 = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), ones);
                __m256i b1 = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), ones);
                q0 = _mm256_or_si256(q0, _mm256_slli_epi16(b0, 4));
                q1 = _mm256_or_si256(q1, _mm256_slli_epi16(b1, 4));
            }
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                const int8_t *a = xq + (size_t)t * ld + b * 256 + c * 64;
                acc[t] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(scv[t], _mm256_set1_epi32(2 * c)),
                                         _mm256_cvtepi32_ps(udot(q0, _mm256_loadu_si256((const __m256i *)a))), acc[t]);
                acc[t] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(scv[t], _mm256_set1_epi32(2 * c + 1)),
                                         _mm256_cvtepi32_ps(udot(q1, _mm256_loadu_si256((const __m256i *)(a + 32)))),
                                         acc[t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) out[t] = hsum(acc[t]) - hsum(macc[t]);
}

AVX2 static float dot_q4_k_avx2(const void *w, const float *x, const int8_t *xq, const float *xd, const int16_t *xs,
                                int n) {
    (void)x;
    float o;
    dot_k45_avx2(w, xq, xd, xs, n, 0, 1, 4, &o);
    return o;
}
AVX2 static float dot_q5_k_avx2(const void *w, const float *x, const int8_t *xq, const float *xd, const int16_t *xs,
                                int n) {
    (void)x;
    float o;
    dot_k45_avx2(w, xq, xd, xs, n, 0, 1, 5, &o);
    return o;
}
AVX2 static void dot4_q4_k_avx2(const void *w, const int8_t *xq, const float *xd, const int16_t *xs, int n, size_t ld,
                                float out[4]) {
    dot_k45_avx2(w, xq, xd, xs, n, ld, 4, 4, out);
}
AVX2 static void dot4_q5_k_avx2(const void *w, const int8_t *xq, const float *xd, const int16_t *xs, int n, size_t ld,
                                float out[4]) {
    dot_k45_avx2(w, xq, xd, xs, n, ld, 4, 5, out);
}

/* Q6_K: per super-block, its 16 scales times d and their activation scales as two vectors
 * (scales 0–7 and 8–15), and the offset's share 32·Σ scale·Σa from the activations' sums; per 32
 * elements one integer dot in 8 lanes, lanes 0–3 and 4–7 under their own scale. T tokens as
 * dot_offset_avx2. */
__attribute__((always_inline)) AVX2 static inline void dot_q6_k_t(const uint8_t *p, const int8_t *xq, const float *xd,
                                                                  const int16_t *xs, int n, size_t ld, int T,
                                                                  float *out) {
    __m256 acc[4], cacc[4];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) acc[t] = cacc[t] = _mm256_setzero_ps();
    const __m256i m15 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3);
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
        for (int h = 0; h < 2; h++) {
            __m256i l0 = _mm256_loadu_si256((const __m256i *)(p + h * 64)),
                    l1 = _mm256_loadu_si256((const __m256i *)(p + h * 64 + 32)),
                    hb = _mm256_loadu_si256((const __m256i *)(p + 128 + h * 32));
            for (int k = 0; k < 4; k++) { /* 32-element group 4h + k: scales 8h + 2k, 8h + 2k + 1 */
                __m256i lo = _mm256_and_si256(k >= 2 ? _mm256_srli_epi16(k & 1 ? l1 : l0, 4) : (k & 1 ? l1 : l0), m15);
                __m256i hi = _mm256_and_si256(_mm256_srli_epi16(hb, 2 * k), m3);
                __m256i q = _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
                __m256i pick = _mm256_setr_epi32(2 * k, 2 * k, 2 * k, 2 * k, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1);
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                    __m256i a = _mm256_loadu_si256((const __m256i *)(xq + (size_t)t * ld + b * 256 + h * 128 + k * 32));
                    acc[t] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(sv[t][h], pick), _mm256_cvtepi32_ps(udot(q, a)),
                                             acc[t]);
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) out[t] = hsum(acc[t]) - 32.0f * hsum(cacc[t]);
}

AVX2 static float dot_q6_k_avx2(const void *w, const float *x, const int8_t *xq, const float *xd, const int16_t *xs,
                                int n) {
    (void)x;
    float o;
    dot_q6_k_t(w, xq, xd, xs, n, 0, 1, &o);
    return o;
}

AVX2 static void dot4_q6_k_avx2(const void *w, const int8_t *xq, const float *xd, const int16_t *xs, int n, size_t ld,
                                float out[4]) {
    dot_q6_k_t(w, xq, xd, xs, n, ld, 4, out);
}

#endif

enum { K_F32, K_F16, K_BF16, K_Q8_0, K_Q4_0, K_Q5_0, K_Q4_K, K_Q5_K, K_Q6_K, N_KERNELS };
static veil_dot_fn dots[N_KERNELS][2];   /* [type][portable, simd] */
static veil_dot4_fn dots4[N_KERNELS][2]; /* NULL for the float types */

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

static void init(void) {
    for (uint32_t i = 0; i < 65536; i++) f16_table[i] = veil_f16_to_f32((uint16_t)i);
    static const veil_dot_fn portable[N_KERNELS] = {dot_f32_c,  dot_f16_c,  dot_bf16_c, dot_q8_0_c, dot_q4_0_c,
                                                    dot_q5_0_c, dot_q4_k_c, dot_q5_k_c, dot_q6_k_c};
    static const veil_dot4_fn portable4[N_KERNELS] = {NULL,        NULL,        NULL,        dot4_q8_0_c, dot4_q4_0_c,
                                                      dot4_q5_0_c, dot4_q4_k_c, dot4_q5_k_c, dot4_q6_k_c};
    for (int k = 0; k < N_KERNELS; k++) {
        dots[k][0] = dots[k][1] = portable[k];
        dots4[k][0] = dots4[k][1] = portable4[k];
    }
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        static const veil_dot_fn simd[N_KERNELS] = {dot_f32_avx2,  dot_f16_avx2,  dot_bf16_avx2,
                                                    dot_q8_0_avx2, dot_q4_0_avx2, dot_q5_0_avx2,
                                                    dot_q4_k_avx2, dot_q5_k_avx2, dot_q6_k_avx2};
        static const veil_dot4_fn simd4[N_KERNELS] = {NULL,           NULL,           NULL,
                                                      dot4_q8_0_avx2, dot4_q4_0_avx2, dot4_q5_0_avx2,
                                                      dot4_q4_k_avx2, dot4_q5_k_avx2, dot4_q6_k_avx2};
        for (int k = 0; k < N_KERNELS; k++) {
            dots[k][1] = simd[k];
            dots4[k][1] = simd4[k];
        }
        use_simd = 1;
    }
#endif
    const char *e = getenv("VEIL_NO_SIMD");
    if (e && *e && strcmp(e, "0") != 0) use_simd = 0;
}

veil_dot_fn veil_dot_variant(uint32_t type, int simd) {
    pthread_once(&once, init);
    return dots[kernel_of(type)][simd ? 1 : 0];
}

veil_dot4_fn veil_dot4_variant(uint32_t type, int simd) {
    pthread_once(&once, init);
    return dots4[kernel_of(type)][simd ? 1 : 0];
}

veil_dot4_fn veil_dot4_for(uint32_t type) {
    pthread_once(&once, init);
    return dots4[kernel_of(type)][use_simd];
}

veil_dot_fn veil_dot_for(uint32_t type) {
    pthread_once(&once, init);
    return dots[kernel_of(type)][use_simd];
}

const char *veil_engine_kernels(void) { return veil_kernels_name(); }

const char *veil_kernels_name(void) {
    pthread_once(&once, init);
    return use_simd ? "avx2" : "portable";
}
