/* Attention of the query heads that share one key/value head over a
 * session's cache: scores q·k scaled, a softmax, and the weighted sum of the
 * values. Prompts of hundreds of tokens spend as long here as in the weights'
 * kernels when it is written a float at a time (each score one chain of
 * dependent adds), so the dot products, the exponentials and the sums run
 * eight lanes wide, and the heads of a group walk the cache together a block
 * of positions at a time.
 *
 * Every level computes the same floats: a score is the sum of eight lanes
 * (lane i adding q[i + 8j]·k[i + 8j] for j in order, a product then a sum,
 * never fused), reduced in one fixed order; the softmax's exponential is our
 * own, the same steps in C and in AVX2, and its sum goes by lanes the same
 * way; the values' sum is an element-wise product and sum, position by
 * position. Heads whose width is not a multiple of eight take plain loops at
 * every level. So a generation's tokens depend neither on the CPU's kernels
 * nor on how heads were grouped among threads. */
#include <math.h>
#include <string.h>

#if defined(__x86_64__)
#include "kernels_avx2.h"
#endif

#include "engine_internal.h"
#include "vexp.h"

/* Eight lanes' sum in the order the AVX2 form reduces a vector (hsum8). */
static inline float sum_lanes(const float l[8]) {
    return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

static float dot_lanes(const float *a, const float *b, int n) {
    float l[8] = {0};
    for (int j = 0; j < n; j += 8)
        for (int i = 0; i < 8; i++) l[i] += a[j + i] * b[j + i];
    return sum_lanes(l);
}

static float dot_plain(const float *a, const float *b, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* The softmax of att[0..n): e^(a − max), their sum by eight lanes (position p in lane p % 8),
 * each divided by the sum. */
static void softmax_c(float *att, int n) {
    float mx = -INFINITY, l[8] = {0};
    for (int p = 0; p < n; p++)
        if (att[p] > mx) mx = att[p];
    for (int p = 0; p < n; p++) l[p % 8] += att[p] = veil_exp_c(att[p] - mx);
    float sum = sum_lanes(l);
    for (int p = 0; p < n; p++) att[p] /= sum;
}

static void attend_c(const float *q, int nq, const float *k, const float *v, size_t stride, int last, int hd,
                     float scale, float *att, float *out) {
    float (*dot)(const float *, const float *, int) = hd % 8 ? dot_plain : dot_lanes;
    int n = last + 1;
    for (int i = 0; i < nq; i++, q += hd, att += n, out += hd) {
        for (int p = 0; p < n; p++) att[p] = dot(q, k + (size_t)p * stride, hd) * scale;
        softmax_c(att, n);
        memset(out, 0, (size_t)hd * 4);
        for (int p = 0; p < n; p++) {
            const float *vp = v + (size_t)p * stride;
            for (int i2 = 0; i2 < hd; i2++) out[i2] += att[p] * vp[i2];
        }
    }
}

#if defined(__x86_64__)

AVX2 static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)); /* l0+l4, l1+l5, l2+l6, l3+l7 */
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

/* softmax_c's floats, eight positions at a time. */
AVX2 static void softmax_avx2(float *att, int n) {
    int n8 = n / 8 * 8;
    __m256 m = _mm256_set1_ps(-INFINITY);
    for (int p = 0; p < n8; p += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(att + p));
    float l[8];
    _mm256_storeu_ps(l, m);
    float mx = l[0];
    for (int i = 1; i < 8; i++)
        if (l[i] > mx) mx = l[i];
    for (int p = n8; p < n; p++)
        if (att[p] > mx) mx = att[p];
    __m256 vmx = _mm256_set1_ps(mx), sum = _mm256_setzero_ps();
    for (int p = 0; p < n8; p += 8) {
        __m256 e = veil_exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(att + p), vmx));
        _mm256_storeu_ps(att + p, e);
        sum = _mm256_add_ps(sum, e);
    }
    _mm256_storeu_ps(l, sum);
    for (int p = n8; p < n; p++) l[p % 8] += att[p] = veil_exp_c(att[p] - mx);
    float total = sum_lanes(l);
    __m256 s = _mm256_set1_ps(total);
    int p = 0;
    for (; p < n8; p += 8) _mm256_storeu_ps(att + p, _mm256_div_ps(_mm256_loadu_ps(att + p), s));
    for (; p < n; p++) att[p] /= total;
}

/* Positions [p0, p1) of one head's scores, four at a time (four chains of adds in flight). */
AVX2 static void scores_avx2(const float *q, const float *k, size_t stride, int p0, int p1, int hd, float scale,
                             float *att) {
    int p = p0;
    for (; p + 4 <= p1; p += 4) {
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
    for (; p < p1; p++) {
        const float *kp = k + (size_t)p * stride;
        __m256 a = _mm256_setzero_ps();
        for (int j = 0; j < hd; j += 8) a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_loadu_ps(q + j), _mm256_loadu_ps(kp + j)));
        att[p] = hsum8(a) * scale;
    }
}

/* out += Σ att[p]·v_p over positions [p0, p1), 64 floats of out at a time in registers. */
AVX2 static void values_avx2(const float *att, const float *v, size_t stride, int p0, int p1, int hd, float *out) {
    int c = 0;
    for (; c + 64 <= hd; c += 64) {
        __m256 o[8];
        for (int i = 0; i < 8; i++) o[i] = _mm256_loadu_ps(out + c + 8 * i);
        for (int p = p0; p < p1; p++) {
            const float *vp = v + (size_t)p * stride + c;
            __m256 a = _mm256_set1_ps(att[p]);
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) o[i] = _mm256_add_ps(o[i], _mm256_mul_ps(a, _mm256_loadu_ps(vp + 8 * i)));
        }
        for (int i = 0; i < 8; i++) _mm256_storeu_ps(out + c + 8 * i, o[i]);
    }
    for (; c < hd; c += 8) {
        __m256 o = _mm256_loadu_ps(out + c);
        for (int p = p0; p < p1; p++)
            o = _mm256_add_ps(o, _mm256_mul_ps(_mm256_set1_ps(att[p]), _mm256_loadu_ps(v + (size_t)p * stride + c)));
        _mm256_storeu_ps(out + c, o);
    }
}

/* The heads sharing the keys and values take them a block of positions at a time, each head in
 * turn: a block is read from memory once for all of them and from L1 after (a block of 32
 * positions is 8-16 KiB for heads of 64-128 floats). Each head's sums run in attend_c's order. */
enum { BLOCK = 32 };
AVX2 static void attend_avx2(const float *q, int nq, const float *k, const float *v, size_t stride, int last, int hd,
                             float scale, float *att, float *out) {
    if (hd % 8) {
        attend_c(q, nq, k, v, stride, last, hd, scale, att, out);
        return;
    }
    int n = last + 1;
    for (int p0 = 0; p0 < n; p0 += BLOCK)
        for (int i = 0; i < nq; i++)
            scores_avx2(q + (size_t)i * hd, k, stride, p0, p0 + BLOCK < n ? p0 + BLOCK : n, hd, scale,
                        att + (size_t)i * n);
    for (int i = 0; i < nq; i++) softmax_avx2(att + (size_t)i * n, n);
    memset(out, 0, (size_t)nq * hd * 4);
    for (int p0 = 0; p0 < n; p0 += BLOCK)
        for (int i = 0; i < nq; i++)
            values_avx2(att + (size_t)i * n, v, stride, p0, p0 + BLOCK < n ? p0 + BLOCK : n, hd, out + (size_t)i * hd);
}
#endif

veil_attend_fn veil_attend_variant(int level) {
#if defined(__x86_64__)
    if (veil_level_runs_avx2(level)) return attend_avx2;
#endif
    return level == 0 ? attend_c : NULL;
}

veil_attend_fn veil_attend_for(void) { return veil_attend_variant(veil_kernel_level()); }
