/* The AVX2, FMA and F16C kernels: the portable forms' arithmetic eight lanes
 * wide, with the same results (the activations quantize to the same bytes).
 * x86-64 only. */
#if defined(__x86_64__)
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "kernels_avx2.h"

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

AVX2 static float dot_f32_avx2(const void *w, const float *x, const int8_t *xq, const float *xd, const int16_t *xs,
                               int n) {
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
    float s = veil_hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += f[i] * x[i];
    return s;
}

AVX2 static float dot_f16_avx2(const void *w, const float *x, const int8_t *xq, const float *xd, const int16_t *xs,
                               int n) {
    (void)xq, (void)xd, (void)xs;
    const uint16_t *h = w;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i + 8))), _mm256_loadu_ps(x + i + 8),
                             a1);
        a2 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i + 16))),
                             _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i + 24))),
                             _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))), _mm256_loadu_ps(x + i), a0);
    float s = veil_hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += veil_f16_table[h[i]] * x[i];
    return s;
}

AVX2 static float dot_bf16_avx2(const void *w, const float *x, const int8_t *xq, const float *xd, const int16_t *xs,
                                int n) {
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
    float s = veil_hsum256(_mm256_add_ps(a0, a1));
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
        float d0 = veil_half_at(p), d1 = veil_half_at(p + 34);
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const int8_t *x = xq + (size_t)t * ld + (size_t)b * 32;
            const float *dd = xd + (size_t)t * ldd + b;
            a0[t] = _mm256_fmadd_ps(_mm256_set1_ps(d0 * dd[0]), q8_block(p, x), a0[t]);
            a1[t] = _mm256_fmadd_ps(_mm256_set1_ps(d1 * dd[1]), q8_block(p + 34, x + 32), a1[t]);
        }
    }
    for (; b < nb; b++, p += 34) {
        float d0 = veil_half_at(p);
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            a0[t] = _mm256_fmadd_ps(_mm256_set1_ps(d0 * xd[(size_t)t * ldd + b]),
                                    q8_block(p, xq + (size_t)t * ld + (size_t)b * 32), a0[t]);
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) out[t] = veil_hsum256(_mm256_add_ps(a0[t], a1[t]));
}

KERNEL_ENTRIES(AVX2, avx2, q8_0, dot_q8_0_t, )

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
__attribute__((always_inline)) AVX2 static inline void
dot_offset_avx2(const uint8_t *p, const int8_t *xq, const float *xd, const int16_t *xs, int n, size_t ld, int T,
                size_t bytes, __m256i (*codes)(const uint8_t *), int offset, float *out) {
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
            float d0 = veil_half_at(p), d1 = veil_half_at(p + bytes);
            dloc[b - c0] = d0;
            dloc[b - c0 + 1] = d1;
            __m256i k0 = codes(p), k1 = codes(p + bytes);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                const int8_t *x = xq + (size_t)t * ld + b * 32;
                const float *dd = xd + (size_t)t * (ld / 32);
                a0[t] = _mm256_fmadd_ps(_mm256_set1_ps(d0 * dd[b]),
                                        _mm256_cvtepi32_ps(udot(k0, _mm256_loadu_si256((const __m256i *)x))), a0[t]);
                a1[t] =
                    _mm256_fmadd_ps(_mm256_set1_ps(d1 * dd[b + 1]),
                                    _mm256_cvtepi32_ps(udot(k1, _mm256_loadu_si256((const __m256i *)(x + 32)))), a1[t]);
            }
        }
        for (; b < c1; b++, p += bytes) { /* an odd last block */
            float d0 = veil_half_at(p);
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
                corr[t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(dloc + (e - c0)), _mm256_loadu_ps(dd + e)),
                                          sums, corr[t]);
            }
            for (; e < c1; e++)
                corr_tail[t] = fmaf(dloc[e - c0] * dd[e], (float)(ss[2 * e] + ss[2 * e + 1]), corr_tail[t]);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++)
        out[t] = veil_hsum256(_mm256_add_ps(a0[t], a1[t])) - (float)offset * (veil_hsum256(corr[t]) + corr_tail[t]);
}

KERNEL_ENTRIES(AVX2, avx2, q4_0, dot_offset_avx2, 18, q4_codes, 8, )
KERNEL_ENTRIES(AVX2, avx2, q5_0, dot_offset_avx2, 22, q5_codes, 16, )

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
    for (int t = 0; t < T; t++) out[t] = veil_hsum256(_mm256_add_ps(acc[t], acc1[t])) - veil_hsum256(macc[t]);
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
    const __m256i lo_half = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3),
                  hi_half = _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7);
    for (int b = 0; b < n / 256; b++, p += 210) {
        __m128i sc8 = _mm_loadu_si128((const __m128i *)(p + 192));
        __m256 d = _mm256_set1_ps(veil_half_at(p + 208));
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
            cacc[t] = _mm256_fmadd_ps(
                sv[t][1], _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_extracti128_si256(s16, 1))), cacc[t]);
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
                __m256i pick =
                    _mm256_setr_epi32(2 * k, 2 * k, 2 * k, 2 * k, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1);
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
    for (int t = 0; t < T; t++)
        out[t] = veil_hsum256(_mm256_add_ps(acc[0][t], acc[1][t])) - 32.0f * veil_hsum256(cacc[t]);
}

KERNEL_ENTRIES(AVX2, avx2, q6_k, dot_q6_k_t, )

const veil_kernel_set veil_kernels_avx2 = {
    {dot_f32_avx2, dot_f16_avx2, dot_bf16_avx2, dot_q8_0_avx2, dot_q4_0_avx2, dot_q5_0_avx2, dot_q4_k_avx2,
     dot_q5_k_avx2, dot_q6_k_avx2},
    {NULL, NULL, NULL, dot4_q8_0_avx2, dot4_q4_0_avx2, dot4_q5_0_avx2, dot4_q4_k_avx2, dot4_q5_k_avx2, dot4_q6_k_avx2},
    quantize_act_avx2,
};
#endif
