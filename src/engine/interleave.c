/* Weight rows interleaved eight at a time, made at load time for the AVX2
 * kernels of every block type (Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K). One kernel call computes eight
 * rows, each 32-bit lane of a vector one row: four weights of each of the
 * eight rows lie side by side, so a token's four activation bytes are
 * broadcast once for all eight rows, and a block's scales, its conversion to
 * float and its accumulation are one vector for eight rows instead of a vector
 * per row reduced at the end. Without VNNI that is where the time of a
 * row-at-a-time kernel went (bench/kernels shows both).
 *
 * Eight rows take the bytes of the eight rows they replace; block b of all
 * eight is one group of 8 × the block's bytes (x8_runs says where each
 * byte goes), "lane" below meaning byte 4r + i of a 32-byte vector, row r's
 * weight i of four:
 *   Q8_0: the 8 f16 scales; 8 vectors of codes, vector k weights 4k..4k+3.
 *   Q4_0, Q5_0: the 8 f16 scales; Q5_0's fifth bits, 32 bytes, bit k of a lane
 *     weight 4k + i's; 4 vectors of nibble pairs, vector m weights 4m.. (low
 *     nibbles) and 16 + 4m.. (high), the block's own pairing.
 *   Q4_K, Q5_K: the 8 d, the 8 dmin; the scales' three 32-bit words as three
 *     vectors (a lane row r's word); Q5_K's fifth bits, 8 vectors, bit j of a
 *     lane sub-block j's; per sub-block pair, 8 vectors of nibble pairs.
 *   Q6_K: the 8 d; the 16 scales as 16 runs of 8 (row order); per half, for
 *     each four weights, the two low-nibble quarters' vectors and the high
 *     bits' vector side by side, so that the kernel reads a half in order.
 * Each kernel sums every row and token in the portable kernel's order (a
 * block's or sub-block's integer dot, exact, then the portable kernel's float
 * products and sums, with no fused multiply-add), so its results equal the
 * portable row kernels' bit for bit, whatever the number of tokens.
 *
 * On CPUs with AVX-512 VNNI the same layout has kernels of its own (Q8_0, Q4_0, Q5_0, Q4_K; end
 * of this file): vpdpbusd on 256-bit vectors makes each block's integer dot in one instruction per
 * four weights of the eight rows (AVX2 needs three), the tokens' four activation bytes its
 * broadcast operand, up to eight tokens at once. They made the engine's prefill 2.3 times as fast
 * as the row-at-a-time AVX-512 kernels they replace for these types (docs/benchmarks.md, tenth
 * session). */
#include <string.h>

#if defined(__x86_64__)
#include "kernels_avx2.h"
#endif

#include "engine_internal.h"
#include "veil/gguf.h"

/* Where row r's block bytes go in the group of eight: runs of bytes (a scale, four codes) from
 * offset src of the row's block to offset dst of the group's. Q5_0's fifth bits, spread bit by
 * bit, are not among them. */
typedef struct run {
    uint16_t src, dst, len;
} run;

static int x8_runs(uint32_t type, int r, run *out) {
    int n = 0;
#define RUN(s, d, l) (out[n++] = (run){(uint16_t)(s), (uint16_t)(d), (uint16_t)(l)})
    switch (type) {
    case VEIL_GGML_Q8_0:
        RUN(0, 2 * r, 2);
        for (int k = 0; k < 8; k++) RUN(2 + 4 * k, 16 + 32 * k + 4 * r, 4);
        break;
    case VEIL_GGML_Q4_0:
    case VEIL_GGML_Q5_0: {
        int qs = type == VEIL_GGML_Q5_0 ? 6 : 2, codes = type == VEIL_GGML_Q5_0 ? 48 : 16;
        RUN(0, 2 * r, 2);
        for (int m = 0; m < 4; m++) RUN(qs + 4 * m, codes + 32 * m + 4 * r, 4);
        break;
    }
    case VEIL_GGML_Q4_K: /* d, dmin, the scales' three words, Q5_K's fifth bits, then the codes */
    case VEIL_GGML_Q5_K: {
        int q5 = type == VEIL_GGML_Q5_K;
        RUN(0, 2 * r, 2);
        RUN(2, 16 + 2 * r, 2);
        for (int u = 0; u < 3; u++) RUN(4 + 4 * u, 32 + 32 * u + 4 * r, 4);
        for (int v = 0; q5 && v < 8; v++) RUN(16 + 4 * v, 128 + 32 * v + 4 * r, 4);
        for (int i = 0; i < 4; i++)
            for (int v = 0; v < 8; v++)
                RUN((q5 ? 48 : 16) + 32 * i + 4 * v, (q5 ? 384 : 128) + 256 * i + 32 * v + 4 * r, 4);
        break;
    }
    case VEIL_GGML_Q6_K: /* d, the 16 scales, the low nibbles, the high bits */
        RUN(208, 2 * r, 2);
        for (int g = 0; g < 16; g++) RUN(192 + g, 16 + 8 * g + r, 1);
        for (int h = 0; h < 2; h++) /* each half, four weights v at a time: ql's two quarters' (k & 1 = 0, 1), qh's */
            for (int v = 0; v < 8; v++) {
                RUN(64 * h + 4 * v, 144 + 768 * h + 96 * v + 4 * r, 4);
                RUN(64 * h + 32 + 4 * v, 144 + 768 * h + 96 * v + 32 + 4 * r, 4);
                RUN(128 + 32 * h + 4 * v, 144 + 768 * h + 96 * v + 64 + 4 * r, 4);
            }
        break;
    }
#undef RUN
    return n;
}

/* n bytes (1, 2 or 4) copied inline: the packing of a whole model is these copies. */
static inline void copy_run(uint8_t *dst, const uint8_t *src, int n) {
    if (n == 4)
        memcpy(dst, src, 4);
    else if (n == 2)
        memcpy(dst, src, 2);
    else
        *dst = *src;
}

void veil_x8_pack(uint32_t type, const uint8_t *src, int cols, uint8_t *dst) {
    size_t bytes = veil_ggml_block_bytes(type), nb = (size_t)cols / veil_ggml_block_elems(type), rb = nb * bytes;
    run runs[8][72];
    int n = 0;
    for (int r = 0; r < 8; r++) n = x8_runs(type, r, runs[r]);
    for (size_t b = 0; b < nb; b++, dst += 8 * bytes) {
        if (type == VEIL_GGML_Q5_0) memset(dst + 16, 0, 32);
        for (int r = 0; r < 8; r++) {
            const uint8_t *blk = src + (size_t)r * rb + b * bytes;
            for (int i = 0; i < n; i++) copy_run(dst + runs[r][i].dst, blk + runs[r][i].src, runs[r][i].len);
            if (type == VEIL_GGML_Q5_0) {
                uint32_t qh;
                memcpy(&qh, blk + 2, 4);
                for (int i = 0; i < 32; i++) dst[16 + 4 * r + i % 4] |= (uint8_t)(((qh >> i) & 1) << (i / 4));
            }
        }
    }
}

void veil_x8_unpack_row(uint32_t type, const uint8_t *group, int r, int cols, uint8_t *dst) {
    size_t bytes = veil_ggml_block_bytes(type), nb = (size_t)cols / veil_ggml_block_elems(type);
    run runs[72];
    int n = x8_runs(type, r, runs);
    for (size_t b = 0; b < nb; b++, group += 8 * bytes, dst += bytes) {
        for (int i = 0; i < n; i++) copy_run(dst + runs[i].src, group + runs[i].dst, runs[i].len);
        if (type == VEIL_GGML_Q5_0) {
            uint32_t qh = 0;
            for (int i = 0; i < 32; i++) qh |= (uint32_t)((group[16 + 4 * r + i % 4] >> (i / 4)) & 1) << i;
            memcpy(dst + 2, &qh, 4);
        }
    }
}

#if defined(__x86_64__)

/* Token t's four activation bytes 4k..4k+3 of block b, in every lane. */
AVX2 static inline __m256i act4(const int8_t *x, int b, int k) {
    int32_t v;
    memcpy(&v, x + 32 * b + 4 * k, 4);
    return _mm256_set1_epi32(v);
}

/* The T tokens' sums: zero, or where a run of blocks before left them (resume). */
AVX2 static inline void acc_start(__m256 *acc, const float *out, size_t ldo, int T, int resume) {
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) acc[t] = resume ? _mm256_loadu_ps(out + (size_t)t * ldo) : _mm256_setzero_ps();
}

/* s += (dw · xd) · dot, the portable kernels' order, for the eight rows. */
AVX2 static inline __m256 accumulate(__m256 s, __m256 dw, float xd, __m256i dot) {
    return _mm256_add_ps(s, _mm256_mul_ps(_mm256_mul_ps(dw, _mm256_set1_ps(xd)), _mm256_cvtepi32_ps(dot)));
}

/* Q8_0, eight rows, T tokens (1 or 4; token t at xq + t·ld, xd + t·ld/32); out[t·ldo + row].
 * Signed weights times signed activations by maddubs: the weights' magnitudes (−128 → 128)
 * against the activations with the weights' signs (|a| ≤ 127: no int16 overflow). */
__attribute__((always_inline)) AVX2 static inline void x8_q8_0(const uint8_t *p, const int8_t *xq, const float *xd,
                                                               const int16_t *xs, int nb, size_t ld, int T, float *out,
                                                               size_t ldo, const uint8_t *dec, int resume) {
    (void)xs, (void)dec;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[4];
    acc_start(acc, out, ldo, T, resume);
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
 * and, for Q5_0 (fifth non-NULL), bit k of each byte of the fifth bits. */
AVX2 static inline __m256i x8_codes(const uint8_t *codes, const __m256i *fifth, int k) {
    const __m256i low4 = _mm256_set1_epi8(15);
    __m256i nib = _mm256_loadu_si256((const __m256i *)(codes + 32 * (k & 3)));
    __m256i c = _mm256_and_si256(k < 4 ? nib : _mm256_srli_epi16(nib, 4), low4);
    return fifth ? _mm256_or_si256(c, veil_bit_to_4(*fifth, k)) : c;
}

/* Q4_0/Q5_0, eight rows, T tokens: Σ code·a by maddubs (codes < 32, |a| ≤ 127: four products'
 * pairs fit int16 before they are widened), minus offset·Σa from the activations' sums: the
 * exact integer dot of the portable kernel's code − offset. */
__attribute__((always_inline)) AVX2 static inline void x8_offset(const uint8_t *p, const int8_t *xq, const float *xd,
                                                                 const int16_t *xs, int nb, size_t ld, int T,
                                                                 float *out, size_t ldo, int resume, int q5) {
    const __m256i ones = _mm256_set1_epi16(1);
    const int offset = q5 ? 16 : 8;
    const size_t bytes = q5 ? 22 : 18;
    __m256 acc[4];
    acc_start(acc, out, ldo, T, resume);
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
                    pairs[t] =
                        _mm256_add_epi16(pairs[t], _mm256_maddubs_epi16(c, act4(xq + (size_t)t * ld, b, 4 * h + m)));
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

__attribute__((always_inline)) AVX2 static inline void x8_q4_0(const uint8_t *p, const int8_t *xq, const float *xd,
                                                               const int16_t *xs, int nb, size_t ld, int T, float *out,
                                                               size_t ldo, const uint8_t *dec, int resume) {
    (void)dec;
    x8_offset(p, xq, xd, xs, nb, ld, T, out, ldo, resume, 0);
}

__attribute__((always_inline)) AVX2 static inline void x8_q5_0(const uint8_t *p, const int8_t *xq, const float *xd,
                                                               const int16_t *xs, int nb, size_t ld, int T, float *out,
                                                               size_t ldo, const uint8_t *dec, int resume) {
    (void)dec;
    x8_offset(p, xq, xd, xs, nb, ld, T, out, ldo, resume, 1);
}

/* Codes of weights 4v..4v+3 of sub-block j of a super-block p of eight Q4_K (bits 4) or Q5_K
 * (bits 5) rows. */
AVX2 static inline __m256i k45_codes(const uint8_t *p, int bits, int j, int v) {
    const uint8_t *codes = p + (bits == 5 ? 384 : 128) + 256 * (j >> 1), *fifth = p + 128;
    __m256i c = _mm256_loadu_si256((const __m256i *)(codes + 32 * v));
    c = _mm256_and_si256(_mm256_srli_epi16(c, 4 * (j & 1)), _mm256_set1_epi8(15));
    return bits == 5 ? _mm256_or_si256(c, veil_bit_to_4(_mm256_loadu_si256((const __m256i *)(fifth + 32 * v)), j)) : c;
}

/* A sub-block's integer dot (dot) into the eight rows' sum s, in dot_k45_c's order:
 * s += xd·((d·sc)·dot − (dmin·m)·Σa). */
AVX2 static inline __m256 k45_tail(__m256 s, __m256 dsc, __m256 dm, float sum, float xd, __m256i dot) {
    __m256 q = _mm256_mul_ps(dsc, _mm256_cvtepi32_ps(dot));
    __m256 m = _mm256_mul_ps(dm, _mm256_set1_ps(sum));
    return _mm256_add_ps(s, _mm256_mul_ps(_mm256_set1_ps(xd), _mm256_sub_ps(q, m)));
}

/* Sub-block j of super-block b of eight Q4_K (bits 4) or Q5_K (bits 5) rows, for T tokens,
 * added to acc; its codes decoded already at dec (8 vectors) where dec is not NULL; sums[t][j]
 * token t's Σa over the sub-block. */
__attribute__((always_inline)) AVX2 static inline void k45_sub(const uint8_t *p, const int8_t *xq, const float *xd,
                                                               int b, int j, size_t ld, int T, int bits, __m256 dsc,
                                                               __m256 dm, __m256 *acc, const uint8_t *dec,
                                                               const float (*sums)[8]) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i pairs[4], dot[4];
#pragma GCC unroll 8
    for (int v = 0; v < 8; v++) {
        __m256i c = dec ? _mm256_load_si256((const __m256i *)(dec + 32 * v)) : k45_codes(p, bits, j, v);
        /* codes < 16: eight products' pairs fit int16; < 32: four */
        int last = bits == 5 ? (v & 3) == 3 : v == 7;
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            __m256i pr = _mm256_maddubs_epi16(c, act4(xq + (size_t)t * ld, 8 * b + j, v));
            pairs[t] = v % (bits == 5 ? 4 : 8) ? _mm256_add_epi16(pairs[t], pr) : pr;
            if (last) {
                __m256i w = _mm256_madd_epi16(pairs[t], ones);
                dot[t] = bits == 5 && v == 7 ? _mm256_add_epi32(dot[t], w) : w;
            }
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++)
        acc[t] = k45_tail(acc[t], dsc, dm, sums[t][j], xd[(size_t)t * (ld / 32) + 8 * b + j], dot[t]);
}

/* Q4_K/Q5_K, eight rows, T tokens (nb super-blocks of 256). The scales' three words of the
 * eight rows lie as three vectors (lane r row r's), so veil_k4_scales_mins's word rule decodes all
 * eight rows' scales and mins at once; sub-block j's then are byte j % 4 of a lane. The sums
 * follow dot_k45_c: s += xd·((d·sc)·Σq·a − (dmin·m)·Σa) per sub-block. */
/* A super-block of eight Q4_K/Q5_K rows (at p, block b of the tokens'): the scales' three words
 * of the eight rows lie as three vectors (lane r row r's), so veil_k4_scales_mins's word rule
 * decodes all eight rows' scales and mins at once: d·sc and dmin·m of each sub-block into dsc and
 * dm; each of T tokens' activation sums of the eight sub-blocks, as floats (exact: |Σa| ≤ 32·127),
 * into sums. */
__attribute__((always_inline)) AVX2 static inline void x8_k45_head(const uint8_t *p, const int16_t *xs, int b,
                                                                   size_t ld, int T, __m256 dsc[8], __m256 dm[8],
                                                                   float (*sums)[8]) {
    const __m256i low4 = _mm256_set1_epi8(15), byte = _mm256_set1_epi32(0xff);
    const __m256i low6 = _mm256_set1_epi8(0x3f), low2 = _mm256_set1_epi8(3);
    __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)),
           dmin = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 16)));
    __m256i u0 = _mm256_loadu_si256((const __m256i *)(p + 32)), u1 = _mm256_loadu_si256((const __m256i *)(p + 64)),
            u2 = _mm256_loadu_si256((const __m256i *)(p + 96));
    __m256i sc[2], mn[2]; /* scales and mins of sub-blocks 0–3 and 4–7, a byte each */
    sc[0] = _mm256_and_si256(u0, low6);
    sc[1] = _mm256_or_si256(_mm256_and_si256(u2, low4),
                            _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(u0, 6), low2), 4));
    mn[0] = _mm256_and_si256(u1, low6);
    mn[1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(u2, 4), low4),
                            _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(u1, 6), low2), 4));
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) {
        __m256i s16 = _mm256_loadu_si256((const __m256i *)(xs + (size_t)t * (ld / 16) + 16 * b));
        _mm256_store_ps(sums[t], _mm256_cvtepi32_ps(_mm256_madd_epi16(s16, _mm256_set1_epi16(1))));
    }
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
        int sh = 8 * (j & 3);
        dsc[j] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(sc[j >> 2], sh), byte)));
        dm[j] = _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(mn[j >> 2], sh), byte)));
    }
}

/* Q4_K/Q5_K, eight rows, T tokens (nb super-blocks of 256). The sums follow dot_k45_c: s +=
 * xd·((d·sc)·Σq·a − (dmin·m)·Σa) per sub-block. */
__attribute__((always_inline)) AVX2 static inline void x8_k45(const uint8_t *p, const int8_t *xq, const float *xd,
                                                              const int16_t *xs, int nb, size_t ld, int T, int bits,
                                                              float *out, size_t ldo, const uint8_t *dec, int resume) {
    __m256 acc[4];
    acc_start(acc, out, ldo, T, resume);
    for (int b = 0; b < nb; b++, p += 8 * (bits == 5 ? 176 : 144)) {
        _Alignas(32) float sums[4][8];
        __m256 dsc[8], dm[8]; /* d·sc and dmin·m of each sub-block */
        x8_k45_head(p, xs, b, ld, T, dsc, dm, sums);
        /* one token: the whole super-block unrolled; four: by pairs of sub-blocks, which keeps
         * the four tokens' sums in registers (figures: docs/benchmarks.md, bench/kernels) */
        if (T == 1) {
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++)
                k45_sub(p, xq, xd, b, j, ld, T, bits, dsc[j], dm[j], acc, dec ? dec + 2048 * b + 256 * j : NULL, sums);
        } else {
#pragma GCC unroll 2
            for (int j = 0; j < 8; j++)
                k45_sub(p, xq, xd, b, j, ld, T, bits, dsc[j], dm[j], acc, dec ? dec + 2048 * b + 256 * j : NULL, sums);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) _mm256_storeu_ps(out + (size_t)t * ldo, acc[t]);
}

__attribute__((always_inline)) AVX2 static inline void x8_q4_k(const uint8_t *p, const int8_t *xq, const float *xd,
                                                               const int16_t *xs, int nb, size_t ld, int T, float *out,
                                                               size_t ldo, const uint8_t *dec, int resume) {
    x8_k45(p, xq, xd, xs, nb, ld, T, 4, out, ldo, dec, resume);
}

__attribute__((always_inline)) AVX2 static inline void x8_q5_k(const uint8_t *p, const int8_t *xq, const float *xd,
                                                               const int16_t *xs, int nb, size_t ld, int T, float *out,
                                                               size_t ldo, const uint8_t *dec, int resume) {
    x8_k45(p, xq, xd, xs, nb, ld, T, 5, out, ldo, dec, resume);
}

/* Codes of weights 4v..4v+3 of the 32 weights G (half G / 4, quarter G % 4) of a super-block p
 * of eight Q6_K rows. */
AVX2 static inline __m256i q6_codes(const uint8_t *p, int G, int v) {
    int h = G >> 2, k = G & 3;
    const uint8_t *ql = p + 144 + 768 * h + 32 * (k & 1), *qh = p + 144 + 768 * h + 64; /* 96 bytes apart */
    __m256i lo = _mm256_loadu_si256((const __m256i *)(ql + 96 * v)),
            hi = _mm256_loadu_si256((const __m256i *)(qh + 96 * v));
    lo = _mm256_and_si256(k >= 2 ? _mm256_srli_epi16(lo, 4) : lo, _mm256_set1_epi8(15));
    return _mm256_or_si256(lo, veil_bits_to_45(hi, k));
}

/* Scale g (0–15) of the eight rows of a Q6_K super-block p, as floats. */
AVX2 static inline __m256 q6_scales(const uint8_t *p, int g) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p + 16 + 8 * g))));
}

/* 16 weights' integer dot (isum, the offset taken off) into the eight rows' sum s, in
 * dot_q6_k_c's order: s += ((xd·d)·sc)·isum. */
AVX2 static inline __m256 q6_tail(__m256 s, __m256 d, __m256 sc, float xd, __m256i isum) {
    __m256 f = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(xd), d), sc);
    return _mm256_add_ps(s, _mm256_mul_ps(f, _mm256_cvtepi32_ps(isum)));
}

/* Each of T tokens' 32·Σa of the sixteen groups of 16 weights of super-block b, at once. */
AVX2 static inline void q6_offsets(const int16_t *xs, int b, size_t ld, int T, int32_t (*offsets)[16]) {
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) {
        __m256i s16 = _mm256_loadu_si256((const __m256i *)(xs + (size_t)t * (ld / 16) + 16 * b));
        _mm256_store_si256((__m256i *)offsets[t],
                           _mm256_slli_epi32(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(s16)), 5));
        _mm256_store_si256((__m256i *)(offsets[t] + 8),
                           _mm256_slli_epi32(_mm256_cvtepi16_epi32(_mm256_extracti128_si256(s16, 1)), 5));
    }
}

/* The 32 weights G of super-block b (scale d) of eight Q6_K rows, for T tokens, added to acc;
 * their codes decoded already at dec (8 vectors) where dec is not NULL. offsets[t][g], where
 * not NULL, is token t's 32·Σa over the 16 weights g, else that is read from xs. */
__attribute__((always_inline)) AVX2 static inline void q6_group(const uint8_t *p, const int8_t *xq, const float *xd,
                                                                const int16_t *xs, const int32_t (*offsets)[16], int b,
                                                                int G, size_t ld, int T, __m256 d, __m256 *acc,
                                                                const uint8_t *dec) {
    const __m256i ones = _mm256_set1_epi16(1);
#pragma GCC unroll 2
    for (int s = 0; s < 2; s++) { /* 16 weights each: scale 2G + s */
        __m256i dot[4], pair[4];
#pragma GCC unroll 4
        for (int v = 4 * s; v < 4 * s + 4; v++) {
            __m256i c = dec ? _mm256_load_si256((const __m256i *)(dec + 32 * v)) : q6_codes(p, G, v);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) { /* codes < 64: two products' pairs fit int16 */
                __m256i pr = _mm256_maddubs_epi16(c, act4(xq + (size_t)t * ld, 8 * b + G, v));
                if (!(v & 1)) {
                    pair[t] = pr;
                    continue;
                }
                __m256i w = _mm256_madd_epi16(_mm256_add_epi16(pair[t], pr), ones);
                dot[t] = (v & 3) == 1 ? w : _mm256_add_epi32(dot[t], w);
            }
        }
        int g = 2 * G + s;
        __m256 sc = q6_scales(p, g);
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            int32_t offset = offsets ? offsets[t][g] : 32 * xs[(size_t)t * (ld / 16) + 16 * b + g];
            __m256i isum = _mm256_sub_epi32(dot[t], _mm256_set1_epi32(offset));
            acc[t] = q6_tail(acc[t], d, sc, xd[(size_t)t * (ld / 32) + 8 * b + G], isum);
        }
    }
}

/* Q6_K, eight rows, T tokens: codes of 6 bits (four nibble quarters and two quarters of high
 * bits, each vector four weights of the eight rows), minus 32·Σa per 16 from the activations'
 * sums; the sums follow dot_q6_k_c: s += ((xd·d)·sc)·Σ(q − 32)·a per 16 weights. */
__attribute__((always_inline)) AVX2 static inline void x8_q6_k(const uint8_t *p, const int8_t *xq, const float *xd,
                                                               const int16_t *xs, int nb, size_t ld, int T, float *out,
                                                               size_t ldo, const uint8_t *dec, int resume) {
    __m256 acc[4];
    acc_start(acc, out, ldo, T, resume);
    for (int b = 0; b < nb; b++, p += 8 * 210) {
        __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
        /* four tokens: each one's 32·Σa of the sixteen groups, at once (one token reads them from
         * xs); the groups are unrolled by two, not eight, which had the sums spill to the stack
         * (docs/benchmarks.md, the seventh session) */
        _Alignas(32) int32_t offsets[4][16];
        if (T > 1) q6_offsets(xs, b, ld, T, offsets);
        if (T == 1) {
#pragma GCC unroll 8
            for (int G = 0; G < 8; G++)
                q6_group(p, xq, xd, xs, NULL, b, G, ld, T, d, acc, dec ? dec + 2048 * b + 256 * G : NULL);
        } else {
#pragma GCC unroll 2
            for (int G = 0; G < 8; G++)
                q6_group(p, xq, xd, xs, offsets, b, G, ld, T, d, acc, dec ? dec + 2048 * b + 256 * G : NULL);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) _mm256_storeu_ps(out + (size_t)t * ldo, acc[t]);
}

/* Eight rows' codes of nb super-blocks of a K type unpacked into dec as the kernels read them:
 * a vector per four weights of the eight rows, 2 KiB a super-block. */
AVX2 static void x8_decode(uint32_t type, const uint8_t *p, int nb, uint8_t *dec) {
    for (int b = 0; b < nb; b++)
        if (type == VEIL_GGML_Q6_K) {
            for (int G = 0; G < 8; G++)
                for (int v = 0; v < 8; v++)
                    _mm256_store_si256((__m256i *)(dec + 2048 * b + 256 * G + 32 * v),
                                       q6_codes(p + (size_t)b * 8 * 210, G, v));
        } else {
            int bits = type == VEIL_GGML_Q5_K ? 5 : 4;
            for (int j = 0; j < 8; j++)
                for (int v = 0; v < 8; v++)
                    _mm256_store_si256((__m256i *)(dec + 2048 * b + 256 * j + 32 * v),
                                       k45_codes(p + (size_t)b * 8 * (bits == 5 ? 176 : 144), bits, j, v));
        }
}

/* The tokens through kernel KERNEL##NAME (x8_ or x8v_) over nb blocks from p (the tokens'
 * activations from q, d, s), codes unpacked at dec or not (NULL), sums resumed or not: eight at a
 * time where the kernel takes eight (WIDE 8), then four, then one by one. */
#define X8_TOKENS(KERNEL, WIDE, name, p, q, d, s, nb, dec, resume)                                                     \
    do {                                                                                                               \
        int t = 0;                                                                                                     \
        for (; WIDE >= 8 && t + 8 <= T; t += 8)                                                                        \
            KERNEL##name(p, q + (size_t)t * ld, d + (size_t)t * (ld / 32), s + (size_t)t * (ld / 16), nb, ld,          \
                         WIDE >= 8 ? 8 : 4, out + (size_t)t * ldo, ldo, dec, resume);                                  \
        for (; t + 4 <= T; t += 4)                                                                                     \
            KERNEL##name(p, q + (size_t)t * ld, d + (size_t)t * (ld / 32), s + (size_t)t * (ld / 16), nb, ld, 4,       \
                         out + (size_t)t * ldo, ldo, dec, resume);                                                     \
        for (; t < T; t++)                                                                                             \
            KERNEL##name(p, q + (size_t)t * ld, d + (size_t)t * (ld / 32), s + (size_t)t * (ld / 16), nb, ld, 1,       \
                         out + (size_t)t * ldo, ldo, dec, resume);                                                     \
    } while (0)

/* dot8_NAME_LEVEL: any number of tokens, each token's sums the same either way. From eight
 * tokens on (a prompt's chunk), the K types unpack their codes 8 KiB (four super-blocks) at a time
 * once for all the tokens, the tokens' sums carried from one such run to the next in out (Q4_0 and
 * Q5_0, whose unpacking is cheaper, gain nothing this way; figures in docs/benchmarks.md, the sixth
 * session). */
#define X8_ENTRY_OF(ATTR, LEVEL, KERNEL, WIDE, name, block, type)                                                      \
    ATTR static void dot8_##name##_##LEVEL(const void *w, const int8_t *xq, const float *xd, const int16_t *xs, int n, \
                                           size_t ld, int T, float *out, size_t ldo) {                                 \
        int nb = n / block;                                                                                            \
        if (T >= 8 && block == 256) {                                                                                  \
            enum { RUN = 8192 / (8 * block) }; /* blocks a run */                                                      \
            _Alignas(32) uint8_t dec[8192];                                                                            \
            size_t bytes = veil_ggml_block_bytes(type) * 8;                                                            \
            for (int b0 = 0; b0 < nb; b0 += RUN) {                                                                     \
                int m = nb - b0 < RUN ? nb - b0 : RUN;                                                                 \
                const uint8_t *p = (const uint8_t *)w + (size_t)b0 * bytes;                                            \
                x8_decode(type, p, m, dec);                                                                            \
                X8_TOKENS(KERNEL, WIDE, name, p, xq + (size_t)b0 * block, xd + (size_t)b0 * (block / 32),              \
                          xs + (size_t)b0 * (block / 16), m, dec, b0 > 0);                                             \
            }                                                                                                          \
            return;                                                                                                    \
        }                                                                                                              \
        X8_TOKENS(KERNEL, WIDE, name, w, xq, xd, xs, nb, NULL, 0);                                                     \
    }
#define X8_ENTRY(name, block, type) X8_ENTRY_OF(AVX2, avx2, x8_, 4, name, block, type)

X8_ENTRY(q8_0, 32, VEIL_GGML_Q8_0)
X8_ENTRY(q4_0, 32, VEIL_GGML_Q4_0)
X8_ENTRY(q5_0, 32, VEIL_GGML_Q5_0)
X8_ENTRY(q4_k, 256, VEIL_GGML_Q4_K)
X8_ENTRY(q5_k, 256, VEIL_GGML_Q5_K)
X8_ENTRY(q6_k, 256, VEIL_GGML_Q6_K)

/* ---- AVX-512 VNNI (on 256-bit vectors, AVX512VL): the same layout and the same sums ----
 * vpdpbusd multiplies unsigned bytes by signed ones and adds each four products to a 32-bit lane
 * exactly, one instruction where AVX2 needs maddubs, madd and an add; the activations' four bytes
 * are its broadcast operand. A prompt's tokens go eight at a time (32 vector registers hold eight
 * tokens' sums and dots), then four, then one by one; each token's sums are made in the portable
 * kernel's order whatever their number, so the results equal it bit for bit. */
#define VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

/* Q8_0, Q4_0 and Q5_0 (type), eight rows, T tokens (up to 8): unsigned codes against the signed
 * activations by vpdpbusd, offset·Σa (from the activations' sums) taken off first, gives the
 * portable kernel's exact integer dot. Q4_0's and Q5_0's codes are unsigned already (offset 8 and
 * 16, as x8_offset); Q8_0's signed ones are made so by flipping their top bit (w + 128, offset
 * 128). */
__attribute__((always_inline)) VNNI static inline void x8v_blocks(const uint8_t *p, const int8_t *xq, const float *xd,
                                                                  const int16_t *xs, int nb, size_t ld, int T,
                                                                  float *out, size_t ldo, int resume, uint32_t type) {
    const int q8 = type == VEIL_GGML_Q8_0, q5 = type == VEIL_GGML_Q5_0;
    const int offset = q8 ? 128 : q5 ? 16 : 8;
    const size_t bytes = q8 ? 34 : q5 ? 22 : 18;
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    __m256 acc[8];
    acc_start(acc, out, ldo, T, resume);
    for (int b = 0; b < nb; b++, p += 8 * bytes) {
        __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
        __m256i fifth = q5 ? _mm256_loadu_si256((const __m256i *)(p + 16)) : _mm256_setzero_si256();
        const uint8_t *codes = p + (q5 ? 48 : 16);
        __m256i dot[8];
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            const int16_t *s = xs + (size_t)t * (ld / 16) + 2 * b;
            dot[t] = _mm256_set1_epi32(-offset * (s[0] + s[1]));
        }
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            __m256i c = q8 ? _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(codes + 32 * k)), flip)
                           : x8_codes(codes, q5 ? &fifth : NULL, k);
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) dot[t] = _mm256_dpbusd_epi32(dot[t], c, act4(xq + (size_t)t * ld, b, k));
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) acc[t] = accumulate(acc[t], dw, xd[(size_t)t * (ld / 32) + b], dot[t]);
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) _mm256_storeu_ps(out + (size_t)t * ldo, acc[t]);
}

__attribute__((always_inline)) VNNI static inline void x8v_q8_0(const uint8_t *p, const int8_t *xq, const float *xd,
                                                                const int16_t *xs, int nb, size_t ld, int T, float *out,
                                                                size_t ldo, const uint8_t *dec, int resume) {
    (void)dec;
    x8v_blocks(p, xq, xd, xs, nb, ld, T, out, ldo, resume, VEIL_GGML_Q8_0);
}

__attribute__((always_inline)) VNNI static inline void x8v_q4_0(const uint8_t *p, const int8_t *xq, const float *xd,
                                                                const int16_t *xs, int nb, size_t ld, int T, float *out,
                                                                size_t ldo, const uint8_t *dec, int resume) {
    (void)dec;
    x8v_blocks(p, xq, xd, xs, nb, ld, T, out, ldo, resume, VEIL_GGML_Q4_0);
}

__attribute__((always_inline)) VNNI static inline void x8v_q5_0(const uint8_t *p, const int8_t *xq, const float *xd,
                                                                const int16_t *xs, int nb, size_t ld, int T, float *out,
                                                                size_t ldo, const uint8_t *dec, int resume) {
    (void)dec;
    x8v_blocks(p, xq, xd, xs, nb, ld, T, out, ldo, resume, VEIL_GGML_Q5_0);
}

/* Sub-block j of super-block b of eight Q4_K/Q5_K rows, for T tokens (up to 8), added to acc:
 * the codes (decoded at dec, or here) against the activations by vpdpbusd, then k45_sub's sums. */
__attribute__((always_inline)) VNNI static inline void k45v_sub(const uint8_t *p, const int8_t *xq, const float *xd,
                                                                int b, int j, size_t ld, int T, int bits, __m256 dsc,
                                                                __m256 dm, __m256 *acc, const uint8_t *dec,
                                                                const float (*sums)[8]) {
    __m256i dot[8];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) dot[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int v = 0; v < 8; v++) {
        __m256i c = dec ? _mm256_load_si256((const __m256i *)(dec + 32 * v)) : k45_codes(p, bits, j, v);
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) dot[t] = _mm256_dpbusd_epi32(dot[t], c, act4(xq + (size_t)t * ld, 8 * b + j, v));
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; t++)
        acc[t] = k45_tail(acc[t], dsc, dm, sums[t][j], xd[(size_t)t * (ld / 32) + 8 * b + j], dot[t]);
}

/* Q4_K (bits 4; Q5_K's five bits would go the same way), eight rows, T tokens (up to 8), as
 * x8_k45. */
__attribute__((always_inline)) VNNI static inline void x8v_k45(const uint8_t *p, const int8_t *xq, const float *xd,
                                                               const int16_t *xs, int nb, size_t ld, int T, int bits,
                                                               float *out, size_t ldo, const uint8_t *dec, int resume) {
    __m256 acc[8];
    acc_start(acc, out, ldo, T, resume);
    for (int b = 0; b < nb; b++, p += 8 * (bits == 5 ? 176 : 144)) {
        _Alignas(32) float sums[8][8];
        __m256 dsc[8], dm[8];
        x8_k45_head(p, xs, b, ld, T, dsc, dm, sums);
#pragma GCC unroll 2
        for (int j = 0; j < 8; j++)
            k45v_sub(p, xq, xd, b, j, ld, T, bits, dsc[j], dm[j], acc, dec ? dec + 2048 * b + 256 * j : NULL, sums);
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) _mm256_storeu_ps(out + (size_t)t * ldo, acc[t]);
}

__attribute__((always_inline)) VNNI static inline void x8v_q4_k(const uint8_t *p, const int8_t *xq, const float *xd,
                                                                const int16_t *xs, int nb, size_t ld, int T, float *out,
                                                                size_t ldo, const uint8_t *dec, int resume) {
    x8v_k45(p, xq, xd, xs, nb, ld, T, 4, out, ldo, dec, resume);
}

#define X8V_ENTRY(name, block, type) X8_ENTRY_OF(VNNI, vnni, x8v_, 8, name, block, type)

X8V_ENTRY(q8_0, 32, VEIL_GGML_Q8_0)
X8V_ENTRY(q4_0, 32, VEIL_GGML_Q4_0)
X8V_ENTRY(q5_0, 32, VEIL_GGML_Q5_0)
X8V_ENTRY(q4_k, 256, VEIL_GGML_Q4_K)
#endif

veil_dot8_fn veil_dot8_variant(uint32_t type, int level) {
#if defined(__x86_64__)
    if (level == 2 && veil_dot_variant(type, level)) { /* this CPU runs AVX-512 VNNI */
        if (type == VEIL_GGML_Q8_0) return dot8_q8_0_vnni;
        if (type == VEIL_GGML_Q4_0) return dot8_q4_0_vnni;
        if (type == VEIL_GGML_Q5_0) return dot8_q5_0_vnni;
        if (type == VEIL_GGML_Q4_K) return dot8_q4_k_vnni;
        /* not Q5_K and Q6_K: their five- and six-bit codes cost more to unpack for eight rows
         * than for one row 512 bits at a time, which decoding (one token) pays in full; they stay
         * on the row kernels (docs/benchmarks.md, tenth session) */
    }
    if (level == 1 && veil_dot_variant(type, level)) { /* the level is there: this CPU runs AVX2 */
        if (type == VEIL_GGML_Q8_0) return dot8_q8_0_avx2;
        if (type == VEIL_GGML_Q4_0) return dot8_q4_0_avx2;
        if (type == VEIL_GGML_Q5_0) return dot8_q5_0_avx2;
        if (type == VEIL_GGML_Q4_K) return dot8_q4_k_avx2;
        if (type == VEIL_GGML_Q5_K) return dot8_q5_k_avx2;
        if (type == VEIL_GGML_Q6_K) return dot8_q6_k_avx2;
    }
#endif
    (void)type, (void)level;
    return NULL;
}

veil_dot8_fn veil_dot8_for(uint32_t type) { return veil_dot8_variant(type, veil_kernel_level()); }
