/* bench/kernels: the engine's dot-product kernels in cache, one thread: for
 * every block type and every kernel level this CPU runs (portable, AVX2,
 * AVX-512 VNNI), nanoseconds per 32 weights and token with one token
 * (decode) and with four tokens per row (prefill, batched decode), and each
 * level's speed against the portable level measured in the same run; the
 * interleaved kernels also with 32 tokens, a prompt's chunk.
 * The rows (128 × 1792 weights) stay in L2, so this measures the arithmetic,
 * not the memory a decode step is bound by; --rows N (a multiple of 128: the
 * 128 rows repeated) makes them as many as a model's, read from memory.
 * Usage: build/bench/kernels [--seconds S] [--rows N] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine_internal.h"
#include "veil/engine.h"
#include "veil/gguf.h"

enum { BASE_ROWS = 128, COLS = 1792 };
static int ROWS = BASE_ROWS;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static volatile float sink;

/* Seconds per pass over the rows, the best of passes within `budget` seconds. */
static double time_dot(veil_dot_fn f, const uint8_t *w, size_t rb, const float *x, const int8_t *xq, const float *xd,
                       const int16_t *xs, double budget) {
    double best = 1e9, end = now() + budget;
    do {
        double t0 = now();
        float s = 0;
        for (int r = 0; r < ROWS; r++) s += f(w + (size_t)r * rb, x, xq, xd, xs, COLS);
        sink = s;
        double dt = now() - t0;
        if (dt < best) best = dt;
    } while (now() < end);
    return best;
}

static double time_dot4(veil_dot4_fn f, const uint8_t *w, size_t rb, const int8_t *xq, const float *xd,
                        const int16_t *xs, double budget) {
    double best = 1e9, end = now() + budget;
    do {
        double t0 = now();
        float s = 0, o[4];
        for (int r = 0; r < ROWS; r++) {
            f(w + (size_t)r * rb, xq, xd, xs, COLS, COLS, o);
            s += o[0] + o[3];
        }
        sink = s;
        double dt = now() - t0;
        if (dt < best) best = dt;
    } while (now() < end);
    return best;
}

/* Eight interleaved rows per call, T tokens. */
static double time_dot8(veil_dot8_fn f, const uint8_t *w, size_t rb, const int8_t *xq, const float *xd,
                        const int16_t *xs, int T, double budget) {
    double best = 1e9, end = now() + budget;
    float *o = calloc((size_t)T * ROWS, sizeof *o);
    if (!o) exit(1);
    do {
        double t0 = now();
        for (int r = 0; r < ROWS; r += 8) f(w + (size_t)r * rb, xq, xd, xs, COLS, COLS, T, o + r, ROWS);
        sink = o[0] + o[ROWS - 1];
        double dt = now() - t0;
        if (dt < best) best = dt;
    } while (now() < end);
    free(o);
    return best;
}

int main(int argc, char **argv) {
    double seconds = 0.3;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--rows") == 0 && i + 1 < argc && atoi(argv[i + 1]) >= BASE_ROWS &&
                 atoi(argv[i + 1]) % BASE_ROWS == 0)
            ROWS = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--seconds S] [--rows N (a multiple of %d)]\n", argv[0], BASE_ROWS);
            return 2;
        }
    }
    enum { TMAX = 32 };
    static float wf[BASE_ROWS * COLS], x[TMAX * COLS], xd[TMAX * COLS / 32];
    static int8_t xq[TMAX * COLS];
    static int16_t xs[TMAX * COLS / 16];
    uint64_t r = 1;
    for (size_t i = 0; i < sizeof wf / sizeof wf[0]; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        wf[i] = (float)((int64_t)(r >> 11) % 2000 - 1000) / 1000.0f;
    }
    for (int i = 0; i < TMAX * COLS; i++) x[i] = sinf((float)i * 0.37f) * 3.0f;
    for (int t = 0; t < TMAX; t++)
        veil_quantize_act(x + t * COLS, COLS, xq + t * COLS, xd + t * (COLS / 32), xs + t * (COLS / 16));
    static const uint32_t types[] = {VEIL_GGML_Q8_0, VEIL_GGML_Q4_0, VEIL_GGML_Q5_0,
                                     VEIL_GGML_Q4_K, VEIL_GGML_Q5_K, VEIL_GGML_Q6_K};
    printf("kernels: %d rows x %d weights %s, one thread, best of %.1f s each; kernels in use: %s\n", ROWS, COLS,
           ROWS == BASE_ROWS ? "in cache" : "from memory", seconds, veil_engine_kernels());
    printf("%-6s %-11s %14s %14s %10s %12s %12s %15s\n", "type", "level", "1 token ns/32", "4 tokens ns/32", "4 vs 1",
           "1 token x", "4 tokens x", "32 tokens ns/32");
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        size_t rb = COLS / veil_ggml_block_elems(types[k]) * veil_ggml_block_bytes(types[k]);
        uint8_t *w = malloc(rb * (size_t)ROWS);
        if (!w) return 1;
        for (int row = 0; row < BASE_ROWS; row++)
            veil_quantize_row(types[k], wf + (size_t)row * COLS, w + row * rb, COLS);
        for (int row = BASE_ROWS; row < ROWS; row += BASE_ROWS) memcpy(w + row * rb, w, rb * BASE_ROWS);
        double base1 = 0, base4 = 0;
        for (int level = 0; level < VEIL_KERNEL_LEVELS; level++) {
            veil_dot_fn f = veil_dot_variant(types[k], level);
            veil_dot4_fn f4 = veil_dot4_variant(types[k], level);
            if (!f || !f4) continue;
            double t1 = time_dot(f, w, rb, x, xq, xd, xs, seconds) * 1e9 / ((double)ROWS * COLS / 32);
            double t4 = time_dot4(f4, w, rb, xq, xd, xs, seconds) * 1e9 / ((double)ROWS * COLS / 32) / 4;
            if (level == 0) base1 = t1, base4 = t4;
            printf("%-6s %-11s %14.3f %14.3f %9.2fx %11.2fx %11.2fx\n", veil_ggml_type_name(types[k]),
                   veil_kernel_level_name(level), t1, t4, 4 * t4 / t1, base1 / t1, base4 / t4);
            veil_dot8_fn f8 = veil_dot8_variant(types[k], level);
            if (!f8) continue;
            uint8_t *w8 = malloc(rb * (size_t)ROWS);
            if (!w8) return 1;
            for (int row = 0; row < ROWS; row += 8)
                veil_x8_pack(types[k], w + (size_t)row * rb, COLS, w8 + (size_t)row * rb);
            t1 = time_dot8(f8, w8, rb, xq, xd, xs, 1, seconds) * 1e9 / ((double)ROWS * COLS / 32);
            t4 = time_dot8(f8, w8, rb, xq, xd, xs, 4, seconds) * 1e9 / ((double)ROWS * COLS / 32) / 4;
            double t32 = time_dot8(f8, w8, rb, xq, xd, xs, TMAX, seconds) * 1e9 / ((double)ROWS * COLS / 32) / TMAX;
            char name[32];
            snprintf(name, sizeof name, "%s x8", veil_kernel_level_name(level));
            printf("%-6s %-11s %14.3f %14.3f %9.2fx %11.2fx %11.2fx %15.3f\n", veil_ggml_type_name(types[k]), name, t1,
                   t4, 4 * t4 / t1, base1 / t1, base4 / t4, t32);
            free(w8);
        }
        free(w);
    }
    return 0;
}
