/* The portable kernels: plain C, what every CPU runs, and the reference the
 * other levels are tested against (tests/unit/test_engine.c). Q8_0 rows
 * multiply activations quantized once per step to int8 blocks of 32 with a
 * float scale, as the weights are. */
#include <math.h>
#include <string.h>

#include "kernels.h"

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
        for (int j = 0; j < 8; j++) acc[j] += veil_f16_table[h[i + j]] * x[i + j];
    float s = 0;
    for (; i < n; i++) s += veil_f16_table[h[i]] * x[i];
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
        s += veil_f16_table[dh] * xd[b] * (float)sum;
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

static float dot_k45_c(const uint8_t *p, const int8_t *xq, const float *xd, int n, int bits) {
    size_t bytes = bits == 4 ? 144 : 176;
    float s = 0;
    for (int b = 0; b < n / 256; b++, p += bytes, xq += 256, xd += 8) {
        float d = veil_half_at(p), dmin = veil_half_at(p + 2);
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
        float d = veil_half_at(p + 208);
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

const veil_kernel_set veil_kernels_portable = {
    {dot_f32_c, dot_f16_c, dot_bf16_c, dot_q8_0_c, dot_q4_0_c, dot_q5_0_c, dot_q4_k_c, dot_q5_k_c, dot_q6_k_c},
    {NULL, NULL, NULL, dot4_q8_0_c, dot4_q4_0_c, dot4_q5_0_c, dot4_q4_k_c, dot4_q5_k_c, dot4_q6_k_c},
    quantize_act_c,
};
