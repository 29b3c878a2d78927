/* bench/sampler: picking a token from a whole vocabulary's logits (Qwen2.5's 151 936 by
 * default), milliseconds a token, for greedy, temperature alone, min-p, top-k and top-p:
 * veil_sampler_pick against the plain way measured in the same run (a scalar argmax, libm's
 * expf over every token, and the whole vocabulary sorted for top-k and top-p), and the ratio.
 * The logits are a sum of uniforms (roughly normal, spread 3) with a few leading tokens, as a
 * language model's are. Usage: build/bench/sampler [--vocab N] [--seconds S] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "veil/engine.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const float *sort_logits;
static int by_logit_desc(const void *a, const void *b) {
    float x = sort_logits[*(const int32_t *)a], y = sort_logits[*(const int32_t *)b];
    if (x != y) return x < y ? 1 : -1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

/* The plain way (what veil's sampler did before it was made fast): one uniform u in [0, 1). */
static int32_t plain_pick(const veil_sampling *p, const float *l, int32_t V, double u, float *prob, int32_t *idx) {
    int32_t best = 0;
    for (int32_t i = 1; i < V; i++)
        if (l[i] > l[best]) best = i;
    if (p->temperature <= 0) return best;
    for (int32_t i = 0; i < V; i++) idx[i] = i;
    int32_t n = V;
    if (p->top_k > 0 || p->top_p < 1.0f) {
        sort_logits = l;
        qsort(idx, (size_t)V, sizeof *idx, by_logit_desc);
        if (p->top_k > 0 && p->top_k < V) n = p->top_k;
    }
    double sum = 0;
    for (int32_t i = 0; i < n; i++) sum += prob[i] = expf((l[idx[i]] - l[best]) / p->temperature);
    int32_t k = 0;
    if (p->min_p > 0) {
        sum = 0;
        for (int32_t i = 0; i < n; i++)
            if (prob[i] >= p->min_p) idx[k] = idx[i], sum += prob[k++] = prob[i];
        n = k;
    }
    if (p->top_p < 1.0f) {
        double c = 0;
        for (int32_t i = 0; i < n; i++)
            if ((c += prob[i]) >= p->top_p * sum) {
                n = i + 1, sum = c;
                break;
            }
    }
    double r = u * sum, c = 0;
    for (int32_t i = 0; i < n; i++)
        if (r < (c += prob[i])) return idx[i];
    return idx[n - 1];
}

int main(int argc, char **argv) {
    int32_t V = 151936;
    double seconds = 0.5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--vocab") && i + 1 < argc)
            V = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--vocab N] [--seconds S]\n", argv[0]);
            return 2;
        }
    }
    if (V < 16) V = 16;
    float *logits = malloc((size_t)V * sizeof *logits), *work = malloc((size_t)V * sizeof *work);
    float *prob = malloc((size_t)V * sizeof *prob);
    int32_t *idx = malloc((size_t)V * sizeof *idx);
    if (!logits || !work || !prob || !idx) return 1;
    uint32_t x = 1;
    for (int32_t i = 0; i < V; i++) {
        float g = 0;
        for (int k = 0; k < 4; k++) x = x * 1664525u + 1013904223u, g += (float)(x >> 8) / 16777216.0f - 0.5f;
        logits[i] = 3 * g;
    }
    logits[V / 3] = 12, logits[V / 2] = 11.5f, logits[V / 5] = 10; /* the likely few */
    static const struct {
        const char *name;
        float temperature, top_p, min_p;
        int top_k;
    } cases[] = {{"greedy", 0, 1, 0, 0},           {"temperature 1", 1, 1, 0, 0}, {"min_p 0.05", 1, 1, 0.05f, 0},
                 {"top_k 40", 1, 1, 0, 40},         {"top_p 0.9", 1, 0.9f, 0, 0},  {"top_p 0.95, t 1.5", 1.5f, 0.95f, 0, 0},
                 {"top_k 40, top_p 0.95", 0.8f, 0.95f, 0, 40}};
    printf("sampler: %d logits, one thread, mean of %.1f s each\n", V, seconds);
    printf("%-22s %12s %12s %8s\n", "case", "veil ms", "plain ms", "plain/veil");
    volatile int32_t sink = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        veil_sampling p;
        veil_sampling_default(&p);
        p.temperature = cases[c].temperature, p.top_p = cases[c].top_p, p.min_p = cases[c].min_p;
        p.top_k = cases[c].top_k, p.seed = 7;
        veil_sampler *s = veil_sampler_new(&p, V);
        if (!s) return 1;
        double ms[2];
        for (int way = 0; way < 2; way++) {
            long n = 0;
            double t0 = now(), t;
            do {
                memcpy(work, logits, (size_t)V * sizeof *work); /* the sampler may change them */
                sink += way ? plain_pick(&p, work, V, (double)(n % 97) / 97, prob, idx)
                            : veil_sampler_pick(s, work, NULL, 0);
                n++;
            } while ((t = now() - t0) < seconds);
            ms[way] = t / (double)n * 1e3;
        }
        printf("%-22s %12.3f %12.3f %7.1fx\n", cases[c].name, ms[0], ms[1], ms[1] / ms[0]);
        veil_sampler_free(s);
    }
    free(logits), free(work), free(prob), free(idx);
    return sink == 42 ? 3 : 0;
}
