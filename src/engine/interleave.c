/* Weight rows interleaved eight at a time, made at load time for the AVX2
 * kernels of the 32-weight block types (Q8_0, Q4_0, Q5_0). One kernel call
 * computes eight rows, each 32-bit lane of a vector one row: four weights of
 * each of the eight rows lie side by side, so a token's four activation bytes
 * are broadcast once for all eight rows, and a block's scales, its conversion
 * to float and its accumulation are one vector for eight rows instead of a
 * vector per row reduced at the end. Without VNNI that is where the time of a
 * row-at-a-time kernel went (bench/kernels shows both).
 *
 * Eight rows take the bytes of the eight rows they replace; block b of all
 * eight is one group of 8 × the block's bytes:
 *   16 bytes   the eight rows' f16 scales, in row order;
 *   Q5_0 only, 32 bytes: byte j holds in bit k the fifth bit of weight 4k + j % 4 of row j / 4;
 *   the codes: Q8_0, 256 bytes: byte 32k + j is weight 4k + j % 4 of row j / 4 (k = 0..7);
 *              Q4_0/Q5_0, 128 bytes: byte 32m + j holds weight 4m + j % 4 of row j / 4 in its
 *              low nibble and weight 16 + 4m + j % 4 in its high nibble (m = 0..3).
 * Each kernel sums every row and token in the portable kernel's order (the block's integer dot,
 * exact, then s += (weight scale · activation scale) · dot), so its results equal the portable
 * row kernels' bit for bit, whatever the number of tokens. */
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "engine_internal.h"
#include "veil/gguf.h"

int veil_x8_type(uint32_t type) {
    return type == VEIL_GGML_Q8_0 || type == VEIL_GGML_Q4_0 || type == VEIL_GGML_Q5_0;
}

/* Where the parts of a group lie: codes after the scales (and Q5_0's fifth bits). */
static size_t codes_at(uint32_t type) { return type == VEIL_GGML_Q5_0 ? 48 : 16; }

void veil_x8_pack(uint32_t type, const uint8_t *src, int cols, uint8_t *dst) {
    size_t bytes = veil_ggml_block_bytes(type), rb = (size_t)cols / 32 * bytes;
    for (int b = 0; b < cols / 32; b++, dst += 8 * bytes) {
        uint8_t *codes = dst + codes_at(type);
        if (type == VEIL_GGML_Q5_0) memset(dst + 16, 0, 32);
        for (int r = 0; r < 8; r++) {
            const uint8_t *blk = src + (size_t)r * rb + (size_t)b * bytes;
            memcpy(dst + 2 * r, blk, 2);
            if (type == VEIL_GGML_Q8_0) { /* weights 4k..4k+3 to lanes 4r..4r+3 of vector k */
                for (int k = 0; k < 8; k++) memcpy(codes + 32 * k + 4 * r, blk + 2 + 4 * k, 4);
                continue;
            }
            const uint8_t *qs = blk + (type == VEIL_GGML_Q5_0 ? 6 : 2); /* qs[i]: weight i low, i + 16 high */
            for (int m = 0; m < 4; m++) memcpy(codes + 32 * m + 4 * r, qs + 4 * m, 4);
            if (type == VEIL_GGML_Q5_0) {
                uint32_t qh;
                memcpy(&qh, blk + 2, 4);
                for (int i = 0; i < 32; i++) dst[16 + 4 * r + i % 4] |= (uint8_t)(((qh >> i) & 1) << (i / 4));
            }
        }
    }
}

void veil_x8_unpack_row(uint32_t type, const uint8_t *group, int r, int cols, uint8_t *dst) {
    size_t bytes = veil_ggml_block_bytes(type);
    for (int b = 0; b < cols / 32; b++, group += 8 * bytes, dst += bytes) {
        const uint8_t *codes = group + codes_at(type);
        memcpy(dst, group + 2 * r, 2);
        if (type == VEIL_GGML_Q8_0) {
            for (int k = 0; k < 8; k++) memcpy(dst + 2 + 4 * k, codes + 32 * k + 4 * r, 4);
            continue;
        }
        uint8_t *qs = dst + (type == VEIL_GGML_Q5_0 ? 6 : 2);
        for (int m = 0; m < 4; m++) memcpy(qs + 4 * m, codes + 32 * m + 4 * r, 4);
        if (type == VEIL_GGML_Q5_0) {
            uint32_t qh = 0;
            for (int i = 0; i < 32; i++) qh |= (uint32_t)((group[16 + 4 * r + i % 4] >> (i / 4)) & 1) << i;
            memcpy(dst + 2, &qh, 4);
        }
    }
}

#if defined(__x86_64__)
#define AVX2 __attribute__((target("avx2,fma,f16c")))

/* Token t's four activation bytes 4k..4k+3 of block b, in every lane. */
AVX2 static inline __m256i act4(const int8_t *x, int b, int k) {
    int32_t v;
    memcpy(&v, x + 32 * b + 4 * k, 4);
    return _mm256_set1_epi32(v);
}

/* s += (dw · xd) · dot, the portable kernels' order, for the eight rows. */
AVX2 static inline __m256 accumulate(__m256 s, __m256 dw, float xd, __m256i dot) {
    return _mm256_add_ps(s, _mm256_mul_ps(_mm256_mul_ps(dw, _mm256_set1_ps(xd)), _mm256_cvtepi32_ps(dot)));
}

/* Q8_0, eight rows, T tokens (1 or 4; token t at xq + t·ld, xd + t·ld/32); out[t·ldo + row].
 * Signed weights times signed activations by maddubs: the weights' magnitudes (−128 → 128)
 * against the activations with the weights' signs (|a| ≤ 127: no int16 overflow). */
__attribute__((always_inline)) AVX2 static inline void x8_q8_0(const uint8_t *p, const int8_t *xq, const float *xd,
                                                               const int16_t *xs, int nb, size_t ld, int T,
                                                               float *out, size_t ldo) {
    (void)xs;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int b = 0; b < nb; b++, p += 8 * 34) {
        __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
        __m256i dot[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                          _mm256_setzero_si256()};
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            __m256i w = _mm256_loadu_si256((const __m256i *)(p + 16 + 32 * k)), mag = _mm256_sign_epi8(w, w);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                __m256i a = _mm256_sign_epi8(act4(xq + (size_t)t * ld, b, k), w);
                dot[t] = _mm256_add_epi32(dot[t], _mm256_madd_epi16(_mm256_maddubs_epi16(mag, a), ones));
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[t] = accumulate(acc[t], dw, xd[(size_t)t * (ld / 32) + b], dot[t]);
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) _mm256_storeu_ps(out + (size_t)t * ldo, acc[t]);
}

/* The unsigned codes of weights 4k..4k+3 of the eight rows: a nibble (k < 4 low, else high)
 * and, for Q5_0 (fifth non-NULL), bit k of each byte of the fifth bits moved to bit 4. */
AVX2 static inline __m256i x8_codes(const uint8_t *codes, const __m256i *fifth, int k) {
    const __m256i low4 = _mm256_set1_epi8(15);
    __m256i nib = _mm256_loadu_si256((const __m256i *)(codes + 32 * (k & 3)));
    __m256i c = _mm256_and_si256(k < 4 ? nib : _mm256_srli_epi16(nib, 4), low4);
    if (!fifth) return c;
    /* 16-bit shifts move each byte's bit k to its bit 4 (the other byte's bits land elsewhere) */
    __m256i h = k < 4 ? _mm256_slli_epi16(*fifth, 4 - k) : k > 4 ? _mm256_srli_epi16(*fifth, k - 4) : *fifth;
    return _mm256_or_si256(c, _mm256_and_si256(h, _mm256_set1_epi8(0x10)));
}

/* Q4_0/Q5_0, eight rows, T tokens: Σ code·a by maddubs (codes < 32, |a| ≤ 127: four products'
 * pairs fit int16 before they are widened), minus offset·Σa from the activations' sums: the
 * exact integer dot of the portable kernel's code − offset. */
__attribute__((always_inline)) AVX2 static inline void x8_offset(const uint8_t *p, const int8_t *xq, const float *xd,
                                                                 const int16_t *xs, int nb, size_t ld, int T,
                                                                 float *out, size_t ldo, int q5) {
    const __m256i ones = _mm256_set1_epi16(1);
    const int offset = q5 ? 16 : 8;
    const size_t bytes = q5 ? 22 : 18;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int b = 0; b < nb; b++, p += 8 * bytes) {
        __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
        __m256i fifth = q5 ? _mm256_loadu_si256((const __m256i *)(p + 16)) : _mm256_setzero_si256();
        const uint8_t *codes = p + (q5 ? 48 : 16);
        __m256i dot[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                          _mm256_setzero_si256()};
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const int16_t *s = xs + (size_t)t * (ld / 16) + 2 * b;
            dot[t] = _mm256_set1_epi32(-offset * (s[0] + s[1]));
        }
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256i pairs[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                                _mm256_setzero_si256()};
#pragma GCC unroll 4
            for (int m = 0; m < 4; m++) {
                __m256i c = x8_codes(codes, q5 ? &fifth : NULL, 4 * h + m);
#pragma GCC unroll 4
                for (int t = 0; t < T; t++)
                    pairs[t] = _mm256_add_epi16(pairs[t],
                                                _mm256_maddubs_epi16(c, act4(xq + (size_t)t * ld, b, 4 * h + m)));
            }
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) dot[t] = _mm256_add_epi32(dot[t], _mm256_madd_epi16(pairs[t], ones));
        }
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[t] = accumulate(acc[t], dw, xd[(size_t)t * (ld / 32) + b], dot[t]);
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) _mm256_storeu_ps(out + (size_t)t * ldo, acc[t]);
}

AVX2 static inline void x8_q4_0(const uint8_t *p, const int8_t *xq, const float *xd, const int16_t *xs, int nb,
                                size_t ld, int T, float *out, size_t ldo) {
    x8_offset(p, xq, xd, xs, nb, ld, T, out, ldo, 0);
}

AVX2 static inline void x8_q5_0(const uint8_t *p, const int8_t *xq, const float *xd, const int16_t *xs, int nb,
                                size_t ld, int T, float *out, size_t ldo) {
    x8_offset(p, xq, xd, xs, nb, ld, T, out, ldo, 1);
}

/* Any number of tokens: four at a time, then one by one, each token's sums the same either way. */
#define X8_ENTRY(name)                                                                                                 \
    AVX2 static void dot8_##name##_avx2(const void *w, const int8_t *xq, const float *xd, const int16_t *xs, int n,     \
                                        size_t ld, int T, float *out, size_t ldo) {                                    \
        int t = 0;                                                                                                     \
        for (; t + 4 <= T; t += 4)                                                                                     \
            x8_##name(w, xq + (size_t)t * ld, xd + (size_t)t * (ld / 32), xs + (size_t)t * (ld / 16), n / 32, ld, 4,   \
                      out + (size_t)t * ldo, ldo);                                                                     \
        for (; t < T; t++)                                                                                             \
            x8_##name(w, xq + (size_t)t * ld, xd + (size_t)t * (ld / 32), xs + (size_t)t * (ld / 16), n / 32, ld, 1,   \
                      out + (size_t)t * ldo, ldo);                                                                     \
    }

X8_ENTRY(q8_0)
X8_ENTRY(q4_0)
X8_ENTRY(q5_0)
#endif

veil_dot8_fn veil_dot8_variant(uint32_t type, int level) {
#if defined(__x86_64__)
    if (level == 1 && veil_dot_variant(type, level)) { /* the level is there: this CPU runs AVX2 */
        if (type == VEIL_GGML_Q8_0) return dot8_q8_0_avx2;
        if (type == VEIL_GGML_Q4_0) return dot8_q4_0_avx2;
        if (type == VEIL_GGML_Q5_0) return dot8_q5_0_avx2;
    }
#endif
    (void)type, (void)level;
    return NULL;
}

veil_dot8_fn veil_dot8_for(uint32_t type) { return veil_dot8_variant(type, veil_kernel_level()); }
