/* AVX2 pieces shared by the row-at-a-time kernels (kernels.c) and the
 * interleaved ones (interleave.c): the target attribute, and moving the high
 * bits of 5- and 6-bit codes next to their nibbles. x86-64 only. */
#ifndef VEIL_KERNELS_AVX2_H
#define VEIL_KERNELS_AVX2_H

#include <immintrin.h>

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

#endif
