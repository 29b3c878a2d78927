/* Number formats of model tensors: half and bfloat16 conversions, and the
 * block layouts (Q8_0) that rows of weights are stored in. */
#include <math.h>
#include <string.h>

#include "engine_internal.h"

float veil_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalize */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            u = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | man << 13;
    } else {
        u = sign | (exp + 127 - 15) << 23 | man << 13;
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t veil_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000;
    int32_t exp = (int32_t)((u >> 23) & 0xff);
    uint32_t man = u & 0x7fffff;
    if (exp == 255) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    exp = exp - 127 + 15;
    if (exp >= 31) return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        if (exp < -10) return (uint16_t)sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | (uint32_t)exp << 10 | man >> 13, rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++; /* may carry into the exponent: still right */
    return (uint16_t)half;
}

float veil_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t veil_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 64); /* quiet NaN */
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

/* ---- the 4- to 6-bit block formats of ggml ---- */

static float half_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return veil_f16_to_f32(h);
}

static void put_half(uint8_t *p, float f) {
    uint16_t h = veil_f32_to_f16(f);
    memcpy(p, &h, 2);
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Q4_0: d, then 16 bytes of nibbles: element i low nibble, element i+16 high, value (q - 8)·d. */
static void quant_q4_0(const float *x, uint8_t *o, size_t n) {
    for (size_t b = 0; b < n / 32; b++, x += 32, o += 18) {
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[i]));
        float d = amax / 7.0f, id = d ? 1.0f / d : 0;
        put_half(o, d);
        for (int i = 0; i < 16; i++)
            o[2 + i] = (uint8_t)(clampi((int)lrintf(x[i] * id) + 8, 0, 15) |
                                 clampi((int)lrintf(x[i + 16] * id) + 8, 0, 15) << 4);
    }
}

static void dequant_q4_0(const uint8_t *p, float *y, size_t n) {
    for (size_t b = 0; b < n / 32; b++, p += 18, y += 32) {
        float d = half_at(p);
        for (int i = 0; i < 16; i++) {
            y[i] = (float)((p[2 + i] & 15) - 8) * d;
            y[i + 16] = (float)((p[2 + i] >> 4) - 8) * d;
        }
    }
}

/* Q5_0: d, 32 high bits (u32), 16 bytes of nibbles; value (q - 16)·d. */
static void quant_q5_0(const float *x, uint8_t *o, size_t n) {
    for (size_t b = 0; b < n / 32; b++, x += 32, o += 22) {
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[i]));
        float d = amax / 15.0f, id = d ? 1.0f / d : 0;
        put_half(o, d);
        uint32_t qh = 0;
        for (int i = 0; i < 16; i++) {
            int a = clampi((int)lrintf(x[i] * id) + 16, 0, 31), c = clampi((int)lrintf(x[i + 16] * id) + 16, 0, 31);
            o[6 + i] = (uint8_t)((a & 15) | (c & 15) << 4);
            qh |= (uint32_t)(a >> 4) << i | (uint32_t)(c >> 4) << (i + 16);
        }
        memcpy(o + 2, &qh, 4);
    }
}

static void dequant_q5_0(const uint8_t *p, float *y, size_t n) {
    for (size_t b = 0; b < n / 32; b++, p += 22, y += 32) {
        float d = half_at(p);
        uint32_t qh;
        memcpy(&qh, p + 2, 4);
        for (int j = 0; j < 16; j++) {
            int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
            y[j] = (float)(((p[6 + j] & 15) | h0) - 16) * d;
            y[j + 16] = (float)(((p[6 + j] >> 4) | h1) - 16) * d;
        }
    }
}

/* K formats: 6-bit scale and min per 32 elements, packed in 12 bytes. */
static void pack_scales_k4(const int sc[8], const int m[8], uint8_t *q) {
    for (int j = 0; j < 4; j++) {
        q[j] = (uint8_t)((sc[j] & 63) | (sc[j + 4] >> 4) << 6);
        q[j + 4] = (uint8_t)((m[j] & 63) | (m[j + 4] >> 4) << 6);
        q[j + 8] = (uint8_t)((sc[j + 4] & 15) | (m[j + 4] & 15) << 4);
    }
}

/* Q4_K (bits 4) and Q5_K (bits 5): d, dmin, scales, [qh for Q5_K], qs;
 * value = d·sc·q − dmin·m per 32 elements. */
static void quant_k(const float *x, uint8_t *o, size_t n, int bits) {
    int top = (1 << bits) - 1;
    size_t bytes = bits == 4 ? 144 : 176;
    for (size_t b = 0; b < n / 256; b++, x += 256, o += bytes) {
        float scale[8], mins[8], maxs = 0, maxm = 0;
        for (int j = 0; j < 8; j++) {
            float lo = 0, hi = 0;
            for (int i = 0; i < 32; i++) lo = fminf(lo, x[j * 32 + i]), hi = fmaxf(hi, x[j * 32 + i]);
            scale[j] = (hi - lo) / (float)top;
            mins[j] = -lo;
            maxs = fmaxf(maxs, scale[j]);
            maxm = fmaxf(maxm, mins[j]);
        }
        float d = maxs / 63.0f, dmin = maxm / 63.0f;
        int sc[8], m[8];
        for (int j = 0; j < 8; j++) {
            sc[j] = d ? clampi((int)lrintf(scale[j] / d), 0, 63) : 0;
            m[j] = dmin ? clampi((int)lrintf(mins[j] / dmin), 0, 63) : 0;
        }
        put_half(o, d);
        put_half(o + 2, dmin);
        pack_scales_k4(sc, m, o + 4);
        float dd = veil_f16_to_f32(veil_f32_to_f16(d)), dm = veil_f16_to_f32(veil_f32_to_f16(dmin));
        uint8_t *qh = o + 16, *qs = bits == 4 ? o + 16 : o + 48;
        if (bits == 5) memset(qh, 0, 32);
        for (int j = 0; j < 8; j++) {
            float step = dd * (float)sc[j], off = dm * (float)m[j];
            for (int i = 0; i < 32; i++) {
                int q = step ? clampi((int)lrintf((x[j * 32 + i] + off) / step), 0, top) : 0;
                int byte = (j / 2) * 32 + i; /* pairs of 32 share the bytes: low nibble, then high */
                if (j % 2 == 0) qs[byte] = (uint8_t)(q & 15);
                else qs[byte] |= (uint8_t)((q & 15) << 4);
                if (bits == 5 && (q & 16)) qh[i] |= (uint8_t)(1 << j);
            }
        }
    }
}

static void dequant_k(const uint8_t *p, float *y, size_t n, int bits) {
    size_t bytes = bits == 4 ? 144 : 176;
    for (size_t b = 0; b < n / 256; b++, p += bytes) {
        float d = half_at(p), dmin = half_at(p + 2);
        const uint8_t *scales = p + 4, *qh = p + 16, *ql = bits == 4 ? p + 16 : p + 48;
        int u1 = 1, u2 = 2;
        for (int j = 0, is = 0; j < 256; j += 64, is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
            int sc, m;
            veil_k4_scale_min(is, scales, &sc, &m);
            float d1 = d * (float)sc, m1 = dmin * (float)m;
            veil_k4_scale_min(is + 1, scales, &sc, &m);
            float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * (float)((ql[l] & 15) + (bits == 5 && (qh[l] & u1) ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++)
                *y++ = d2 * (float)((ql[l] >> 4) + (bits == 5 && (qh[l] & u2) ? 16 : 0)) - m2;
        }
    }
}

/* Q6_K: ql (128), qh (64), int8 scales per 16 elements (16), d; value d·sc·(q − 32). */
static void quant_q6_k(const float *x, uint8_t *o, size_t n) {
    for (size_t b = 0; b < n / 256; b++, x += 256, o += 210) {
        float scale[16], maxs = 0;
        for (int j = 0; j < 16; j++) {
            float amax = 0;
            for (int i = 0; i < 16; i++) amax = fmaxf(amax, fabsf(x[j * 16 + i]));
            scale[j] = amax / 31.0f;
            maxs = fmaxf(maxs, scale[j]);
        }
        float d = maxs / 127.0f;
        uint8_t *ql = o, *qh = o + 128;
        int8_t *sc = (int8_t *)(o + 192);
        put_half(o + 208, d);
        float dd = veil_f16_to_f32(veil_f32_to_f16(d));
        memset(o, 0, 192);
        int q[256];
        for (int j = 0; j < 16; j++) {
            sc[j] = (int8_t)(d ? clampi((int)lrintf(scale[j] / d), -127, 127) : 0);
            float step = dd * (float)sc[j];
            for (int i = 0; i < 16; i++) q[j * 16 + i] = step ? clampi((int)lrintf(x[j * 16 + i] / step), -32, 31) + 32 : 32;
        }
        for (int h = 0; h < 2; h++) /* two halves of 128 */
            for (int l = 0; l < 32; l++) {
                const int *qq = q + h * 128;
                uint8_t *L = ql + h * 64, *H = qh + h * 32;
                L[l] = (uint8_t)((qq[l] & 15) | (qq[l + 64] & 15) << 4);
                L[l + 32] = (uint8_t)((qq[l + 32] & 15) | (qq[l + 96] & 15) << 4);
                H[l] = (uint8_t)((qq[l] >> 4) | (qq[l + 32] >> 4) << 2 | (qq[l + 64] >> 4) << 4 | (qq[l + 96] >> 4) << 6);
            }
    }
}

static void dequant_q6_k(const uint8_t *p, float *y, size_t n) {
    for (size_t b = 0; b < n / 256; b++, p += 210) {
        float d = half_at(p + 208);
        const uint8_t *ql = p, *qh = p + 128;
        const int8_t *sc = (const int8_t *)(p + 192);
        for (int h = 0; h < 2; h++, y += 128, ql += 64, qh += 32, sc += 8)
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 15) | ((qh[l] >> 0) & 3) << 4) - 32;
                int q2 = ((ql[l + 32] & 15) | ((qh[l] >> 2) & 3) << 4) - 32;
                int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
                int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
                y[l] = d * (float)sc[is] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
    }
}

void veil_quantize_row(uint32_t type, const float *src, void *dst, size_t n) {
    uint8_t *o = dst;
    switch (type) {
    case VEIL_GGML_F32: memcpy(dst, src, n * 4); break;
    case VEIL_GGML_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = veil_f32_to_f16(src[i]);
            memcpy(o + 2 * i, &h, 2);
        }
        break;
    case VEIL_GGML_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = veil_f32_to_bf16(src[i]);
            memcpy(o + 2 * i, &h, 2);
        }
        break;
    case VEIL_GGML_Q8_0:
        for (size_t b = 0; b < n / 32; b++, o += 34) {
            float amax = 0;
            for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(src[b * 32 + i]));
            float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0;
            put_half(o, d);
            for (int i = 0; i < 32; i++) o[2 + i] = (uint8_t)(int8_t)roundf(src[b * 32 + i] * id);
        }
        break;
    case VEIL_GGML_Q4_0: quant_q4_0(src, dst, n); break;
    case VEIL_GGML_Q5_0: quant_q5_0(src, dst, n); break;
    case VEIL_GGML_Q4_K: quant_k(src, dst, n, 4); break;
    case VEIL_GGML_Q5_K: quant_k(src, dst, n, 5); break;
    case VEIL_GGML_Q6_K: quant_q6_k(src, dst, n); break;
    default: break;
    }
}

void veil_dequantize_row(uint32_t type, const void *src, float *dst, size_t n) {
    const uint8_t *p = src;
    switch (type) {
    case VEIL_GGML_F32: memcpy(dst, src, n * 4); break;
    case VEIL_GGML_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = veil_f16_to_f32(h);
        }
        break;
    case VEIL_GGML_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = veil_bf16_to_f32(h);
        }
        break;
    case VEIL_GGML_Q8_0:
        for (size_t b = 0; b < n / 32; b++, p += 34) {
            float d = half_at(p);
            for (int i = 0; i < 32; i++) dst[b * 32 + i] = d * (float)(int8_t)p[2 + i];
        }
        break;
    case VEIL_GGML_Q4_0: dequant_q4_0(p, dst, n); break;
    case VEIL_GGML_Q5_0: dequant_q5_0(p, dst, n); break;
    case VEIL_GGML_Q4_K: dequant_k(p, dst, n, 4); break;
    case VEIL_GGML_Q5_K: dequant_k(p, dst, n, 5); break;
    case VEIL_GGML_Q6_K: dequant_q6_k(p, dst, n); break;
    default: memset(dst, 0, n * sizeof *dst); break;
    }
}
