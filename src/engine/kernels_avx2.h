/* AVX2 pieces shared by the row-at-a-time kernels (kernels_avx2.c, kernels_avx512.c) and the
 * interleaved ones (interleave.c): the target attribute, and moving the high
 * bits of 5- and 6-bit codes next to their nibbles. x86-64 only. */
#ifndef VEIL_KERNELS_AVX2_H
#define VEIL_KERNELS_AVX2_H

#include <immintrin.h>
#include <stdint.h>

#include "kernels.h"

#define AVX2 __attribute__((target("avx2,fma,f16c")))

/* Bit k (0–7) of each byte of v at its bit 4, the other bits clear (Q5_0's and Q5_K's fifth
 * bits): one 16-bit shift moves each byte's bit k there, the other byte's bits landing elsewhere. */
AVX2 static inline __m256i veil_bit_to_4(__m256i v, int k) {
    __m256i h = k < 4 ? _mm256_slli_epi16(v, 4 - k) : k > 4 ? _mm256_srli_epi16(v, k - 4) : v;
    return _mm256_and_si256(h, _mm256_set1_epi8(0x10));
}

/* Bits 2k and 2k + 1 (k 0–3) of each byte of v at its bits 4 and 5, the other bits clear (Q6_K's
 * high bits): one shift, none for k = 2. */
AVX2 static inline __m256i veil_bits_to_45(__m256i v, int k) {
    __m256i h = k < 2 ? _mm256_slli_epi16(v, 4 - 2 * k) : k == 2 ? v : _mm256_srli_epi16(v, 2);
    return _mm256_and_si256(h, _mm256_set1_epi8(0x30));
}

/* The sum of a vector's eight floats. */
AVX2 static inline float veil_hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* Q4_0/Q5_0: 16 bytes of nibbles to 32 unsigned codes (low nibbles first). */
AVX2 static inline __m256i nibbles(const uint8_t *qs) {
    /* the 16 bytes in both halves, the upper half shifted down by 4: no cross-lane shuffle */
    __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    return _mm256_and_si256(_mm256_srlv_epi64(v, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(15));
}

/* A Q4_K/Q5_K super-block's header (block b of the row, at p) for T tokens: the 8 sub-block
 * scales times d and token t's activation scales into scv[t], the mins' share dmin·m·Σa added to
 * macc[t] from the activations' sums. */
__attribute__((always_inline)) AVX2 static inline void
k45_head(const uint8_t *p, int b, const float *xd, const int16_t *xs, size_t ld, int T, __m256 *scv, __m256 *macc) {
    uint8_t scb[8], mb[8];
    veil_k4_scales_mins(p + 4, scb, mb);
    __m256 scf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)scb)));
    __m256 mf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)mb)));
    __m256 d = _mm256_set1_ps(veil_half_at(p)), dmin = _mm256_set1_ps(veil_half_at(p + 2));
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

#endif
