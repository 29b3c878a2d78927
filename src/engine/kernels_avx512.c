#if defined(__x86_64__)
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "kernels_avx2.h"

/* The AVX-512 (F, BW, VL) kernels with VNNI.
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
__attribute__((always_inline)) AVX512 static inline __m512i codes512(const uint8_t *p, size_t bytes, int kind, int two,
                                                                     __mmask64 *neg) {
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
__attribute__((always_inline)) AVX512 static inline __m512 blocks_step(__m512i q, __mmask64 neg, int kind, __m512i x,
                                                                       __m512i idx, __m512 dd, __m512 acc) {
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
    const __m512i step2 = _mm512_set1_epi32(2),
                  first = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    size_t ldd = ld / 32, lds = ld / 16;
    int nb = n / 32;
    for (int c0 = 0; c0 < nb; c0 += 16) {
        int m = nb - c0 < 16 ? nb - c0 : 16;
        float dl[16];
        for (int i = 0; i < 16; i++) dl[i] = i < m ? veil_half_at(p + (size_t)i * bytes) : 0.0f;
        __mmask16 km = (__mmask16)((1u << m) - 1);
        __m512 dv = _mm512_loadu_ps(dl), dd[4];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            dd[t] = _mm512_mul_ps(dv, _mm512_maskz_loadu_ps(km, xd + (size_t)t * ldd + c0));
            if (offset) {
                __mmask32 k2 = (__mmask32)(m == 16 ? 0xffffffffu : (1u << 2 * m) - 1);
                __m512i s = _mm512_maskz_loadu_epi16(k2, xs + (size_t)t * lds + 2 * c0);
                corr[t] =
                    _mm512_fmadd_ps(dd[t], _mm512_cvtepi32_ps(_mm512_madd_epi16(s, _mm512_set1_epi16(1))), corr[t]);
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
                acc0[t] = blocks_step(q0, n0, kind, _mm512_loadu_si512(xq + (size_t)t * ld + (size_t)(c0 + j) * 32),
                                      idx, dd[t], acc0[t]);
            j += 2, p += 2 * bytes;
            idx = _mm512_add_epi32(idx, step2);
        }
        if (j < m) { /* an odd last block: the high half empty (zero codes, zero scale) */
            __mmask64 n0 = 0;
            __m512i q0 = codes512(p, bytes, kind, 0, &n0);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++)
                acc1[t] = blocks_step(
                    q0, n0, kind, _mm512_maskz_loadu_epi8(0xffffffffull, xq + (size_t)t * ld + (size_t)(c0 + j) * 32),
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
        __m512i qh =
            bits == 5 ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(p + 16))) : _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(qs + c * 32)));
            __m512i q = _mm512_and_si512(_mm512_srlv_epi64(v, halves), m15);
            if (bits == 5) { /* bit 2c (low half) or 2c + 1 (high half) of qh[i] */
                const __m512i sel =
                    join256(_mm256_set1_epi8((char)(1 << 2 * c)), _mm256_set1_epi8((char)(1 << (2 * c + 1))));
                q = _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(qh, sel), q, _mm512_set1_epi8(16));
            }
            const __m512i idx =
                _mm512_setr_epi32(2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c + 1, 2 * c + 1,
                                  2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                __m512i a = _mm512_loadu_si512(xq + (size_t)t * ld + b * 256 + c * 64);
                acc[c & 1][t] = _mm512_fmadd_ps(_mm512_permutexvar_ps(idx, scv[t]), udot512(q, a), acc[c & 1][t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++)
        out[t] = _mm512_reduce_add_ps(_mm512_add_ps(acc[0][t], acc[1][t])) - veil_hsum256(macc[t]);
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
        __m512 dsc = _mm512_mul_ps(_mm512_set1_ps(veil_half_at(p + 208)), scf);
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
                __m512i hi =
                    _mm512_and_si512(_mm512_srlv_epi64(hb, _mm512_setr_epi64(4 * kk, 4 * kk, 4 * kk, 4 * kk, 4 * kk + 2,
                                                                             4 * kk + 2, 4 * kk + 2, 4 * kk + 2)),
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

/* the float types keep their AVX2 forms, and the activations quantize as under AVX2 */
const veil_kernel_set veil_kernels_avx512 = {
    {NULL, NULL, NULL, dot_q8_0_avx512, dot_q4_0_avx512, dot_q5_0_avx512, dot_q4_k_avx512, dot_q5_k_avx512,
     dot_q6_k_avx512},
    {NULL, NULL, NULL, dot4_q8_0_avx512, dot4_q4_0_avx512, dot4_q5_0_avx512, dot4_q4_k_avx512, dot4_q5_k_avx512,
     dot4_q6_k_avx512},
    NULL,
};
#endif
