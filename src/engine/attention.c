/* One query head's attention over a session's cached keys and values:
 * scores q·k scaled, a softmax, and the weighted sum of the values. Prompts
 * of hundreds of tokens spend as long here as in the weights' kernels when
 * it is written a float at a time (each score one chain of dependent adds),
 * so the dot products run eight lanes wide.
 *
 * Every level computes the same floats: a score is the sum of eight lanes
 * (lane i adding q[i + 8j]·k[i + 8j] for j in order, a product then a sum,
 * never fused), reduced in one fixed order; the softmax is shared; the
 * values' sum is an element-wise product and sum, position by position.
 * Heads whose width is not a multiple of eight take one plain loop at every
 * level. So a generation's tokens do not depend on the CPU's kernels. */
#include <math.h>
#include <string.h>

#if defined(__x86_64__)
#include "kernels_avx2.h"
#endif

#include "engine_internal.h"
#include "veil/gguf.h"

/* ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)): the AVX2 form's reduction of its lanes. */
static float dot_lanes(const float *a, const float *b, int n) {
    float l[8] = {0};
    for (int j = 0; j < n; j += 8)
        for (int i = 0; i < 8; i++) l[i] += a[j + i] * b[j + i];
    return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

static float dot_plain(const float *a, const float *b, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* att[0..n) to its softmax. */
static void softmax(float *att, int n) {
    float mx = -INFINITY, sum = 0;
    for (int p = 0; p < n; p++)
        if (att[p] > mx) mx = att[p];
    for (int p = 0; p < n; p++) {
        att[p] = expf(att[p] - mx);
        sum += att[p];
    }
    for (int p = 0; p < n; p++) att[p] /= sum;
}

static void attend_c(const float *q, const float *k, const float *v, size_t stride, int last, int hd, float scale,
                     float *att, float *out) {
    float (*dot)(const float *, const float *, int) = hd % 8 ? dot_plain : dot_lanes;
    for (int p = 0; p <= last; p++) att[p] = dot(q, k + (size_t)p * stride, hd) * scale;
    softmax(att, last + 1);
    memset(out, 0, (size_t)hd * 4);
    for (int p = 0; p <= last; p++) {
        const float *vp = v + (size_t)p * stride;
        for (int i = 0; i < hd; i++) out[i] += att[p] * vp[i];
    }
}

#if defined(__x86_64__)

AVX2 static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)); /* l0+l4, l1+l5, l2+l6, l3+l7 */
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

/* Four positions' scores at a time (four chains of adds in flight); the values' sum 64 floats of
 * the output at a time, kept in registers over all positions. */
AVX2 static void attend_avx2(const float *q, const float *k, const float *v, size_t stride, int last, int hd,
                             float scale, float *att, float *out) {
    if (hd % 8) {
        attend_c(q, k, v, stride, last, hd, scale, att, out);
        return;
    }
    int p = 0;
    for (; p + 4 <= last + 1; p += 4) {
        const float *k0 = k + (size_t)p * stride, *k1 = k0 + stride, *k2 = k1 + stride, *k3 = k2 + stride;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int j = 0; j < hd; j += 8) {
            __m256 qv = _mm256_loadu_ps(q + j);
            a0 = _mm256_add_ps(a0, _mm256_mul_ps(qv, _mm256_loadu_ps(k0 + j)));
            a1 = _mm256_add_ps(a1, _mm256_mul_ps(qv, _mm256_loadu_ps(k1 + j)));
            a2 = _mm256_add_ps(a2, _mm256_mul_ps(qv, _mm256_loadu_ps(k2 + j)));
            a3 = _mm256_add_ps(a3, _mm256_mul_ps(qv, _mm256_loadu_ps(k3 + j)));
        }
        att[p] = hsum8(a0) * scale, att[p + 1] = hsum8(a1) * scale;
        att[p + 2] = hsum8(a2) * scale, att[p + 3] = hsum8(a3) * scale;
    }
    for (; p <= last; p++) {
        const float *kp = k + (size_t)p * stride;
        __m256 a = _mm256_setzero_ps();
        for (int j = 0; j < hd; j += 8) a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_loadu_ps(q + j), _mm256_loadu_ps(kp + j)));
        att[p] = hsum8(a) * scale;
    }
    softmax(att, last + 1);
    int c = 0;
    for (; c + 64 <= hd; c += 64) {
        __m256 o[8];
        for (int i = 0; i < 8; i++) o[i] = _mm256_setzero_ps();
        for (p = 0; p <= last; p++) {
            const float *vp = v + (size_t)p * stride + c;
            __m256 a = _mm256_set1_ps(att[p]);
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) o[i] = _mm256_add_ps(o[i], _mm256_mul_ps(a, _mm256_loadu_ps(vp + 8 * i)));
        }
        for (int i = 0; i < 8; i++) _mm256_storeu_ps(out + c + 8 * i, o[i]);
    }
    for (; c < hd; c += 8) {
        __m256 o = _mm256_setzero_ps();
        for (p = 0; p <= last; p++)
            o = _mm256_add_ps(o, _mm256_mul_ps(_mm256_set1_ps(att[p]), _mm256_loadu_ps(v + (size_t)p * stride + c)));
        _mm256_storeu_ps(out + c, o);
    }
}
#endif

veil_attend_fn veil_attend_variant(int level) {
    if (level == 0) return attend_c;
#if defined(__x86_64__)
    /* the AVX2 form at levels 1 and 2, where this CPU has them (the dot kernels' table says) */
    if (level >= 1 && veil_dot_variant(VEIL_GGML_Q8_0, level)) return attend_avx2;
#endif
    return NULL;
}

veil_attend_fn veil_attend_for(void) { return veil_attend_variant(veil_kernel_level()); }
