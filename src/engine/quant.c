/* Number formats of model tensors: half and bfloat16 conversions, and the
 * block layouts (Q8_0) that rows of weights are stored in. */
#include <math.h>
#include <string.h>

#include "veil/engine.h"

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
            uint16_t dh = veil_f32_to_f16(d);
            memcpy(o, &dh, 2);
            for (int i = 0; i < 32; i++) o[2 + i] = (uint8_t)(int8_t)roundf(src[b * 32 + i] * id);
        }
        break;
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
            uint16_t dh;
            memcpy(&dh, p, 2);
            float d = veil_f16_to_f32(dh);
            for (int i = 0; i < 32; i++) dst[b * 32 + i] = d * (float)(int8_t)p[2 + i];
        }
        break;
    default: memset(dst, 0, n * sizeof *dst); break;
    }
}
