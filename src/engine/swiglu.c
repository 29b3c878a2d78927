/* The feed-forward's SwiGLU, element by element: g ← g·σ(g)·u = g / (1 + e^−g) · u, with
 * vexp.h's exponential, so that every kernel level gives the same floats. A prompt's chunk of 32
 * tokens takes 32 × ff of these per layer, on the pass's calling thread while the others wait:
 * with libm's expf that was about a twentieth of a 0.5b prefill. */
#include "engine_internal.h"
#include "vexp.h"

static void swiglu_c(float *g, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + veil_exp_c(-g[i])) * u[i];
}

#if defined(__x86_64__)
AVX2 static void swiglu_avx2(float *g, const float *u, size_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i), e = veil_exp_avx2(_mm256_xor_ps(x, sign));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + i)));
    }
    swiglu_c(g + i, u + i, n - i);
}
#endif

veil_swiglu_fn veil_swiglu_variant(int level) {
#if defined(__x86_64__)
    if (veil_level_runs_avx2(level)) return swiglu_avx2;
#endif
    return level == 0 ? swiglu_c : NULL;
}

veil_swiglu_fn veil_swiglu_for(void) { return veil_swiglu_variant(veil_kernel_level()); }
