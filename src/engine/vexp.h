/* e^x by Cephes's method, in C and in AVX2, the same float step for step: x = n·ln 2 + r (ln 2 in
 * two parts, so r is exact), e^r by a polynomial, 2^n into the exponent. Relative error ~1e-7; x
 * below −88 (or NaN) gives 0, and above 88.38 +inf (n = 128: the exponent's all-ones, so a
 * SwiGLU's g / (1 + e^−g) is −0 for any very negative g, as with libm). Ours rather than libm's so that the attention's
 * softmax and the SwiGLU give the same floats at every kernel level. */
#ifndef VEIL_VEXP_H
#define VEIL_VEXP_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define VEIL_EXP_LO (-88.0f)
#define VEIL_EXP_HI 89.0f /* n ≤ 128 */
#define VEIL_EXP_LOG2E 1.44269504088896341f
#define VEIL_EXP_C1 0.693359375f
#define VEIL_EXP_C2 (-2.12194440e-4f)
static const float veil_exp_poly[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                                       4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};

static inline float veil_exp_c(float x) {
    if (!(x >= VEIL_EXP_LO)) x = VEIL_EXP_LO; /* NaN as well */
    if (x > VEIL_EXP_HI) x = VEIL_EXP_HI;
    float n = floorf(x * VEIL_EXP_LOG2E + 0.5f), r = x - n * VEIL_EXP_C1;
    r = r - n * VEIL_EXP_C2;
    float y = veil_exp_poly[0];
    for (int i = 1; i < 6; i++) y = y * r + veil_exp_poly[i];
    y = y * (r * r) + r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float p2;
    memcpy(&p2, &bits, 4);
    return y * p2;
}

#if defined(__x86_64__)
#include "kernels_avx2.h"

AVX2 static inline __m256 veil_exp_avx2(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(VEIL_EXP_LO)); /* the second operand where x is NaN */
    x = _mm256_min_ps(x, _mm256_set1_ps(VEIL_EXP_HI));
    __m256 n =
        _mm256_floor_ps(_mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(VEIL_EXP_LOG2E)), _mm256_set1_ps(0.5f)));
    __m256 r = _mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(VEIL_EXP_C1)));
    r = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(VEIL_EXP_C2)));
    __m256 y = _mm256_set1_ps(veil_exp_poly[0]);
    for (int i = 1; i < 6; i++) y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(veil_exp_poly[i]));
    y = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(y, _mm256_mul_ps(r, r)), r), _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}
#endif

#endif
