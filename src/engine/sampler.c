/* Token sampling: penalties, temperature, top-k, top-p, min-p and a seeded
 * generator, so that the same seed gives the same output. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "veil/secure.h"

struct veil_sampler {
    veil_sampling p;
    int32_t vocab;
    uint64_t rng;
    int32_t *idx;
    float *prob;
    uint16_t *count;
};

void veil_sampling_default(veil_sampling *p) {
    memset(p, 0, sizeof *p);
    p->temperature = 1.0f;
    p->top_p = 1.0f;
    p->repetition_penalty = 1.0f;
    p->penalty_last_n = 64;
}

veil_sampler *veil_sampler_new(const veil_sampling *p, int32_t vocab) {
    veil_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = *p;
    s->vocab = vocab;
    s->rng = p->seed;
    if (!s->rng && veil_random_bytes(&s->rng, sizeof s->rng, NULL) != VEIL_OK) s->rng = 0x9e3779b97f4a7c15ull;
    s->idx = malloc((size_t)vocab * sizeof *s->idx);
    s->prob = malloc((size_t)vocab * sizeof *s->prob);
    s->count = calloc((size_t)vocab, sizeof *s->count);
    if (!s->idx || !s->prob || !s->count) {
        veil_sampler_free(s);
        return NULL;
    }
    return s;
}

void veil_sampler_free(veil_sampler *s) {
    if (!s) return;
    free(s->idx), free(s->prob), free(s->count);
    free(s);
}

/* splitmix64: a uniform double in [0, 1) */
static double next_unit(veil_sampler *s) {
    uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

static __thread const float *tl_logits;
static int by_logit_desc(const void *a, const void *b) {
    float x = tl_logits[*(const int32_t *)a], y = tl_logits[*(const int32_t *)b];
    if (x != y) return x < y ? 1 : -1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

int32_t veil_sampler_pick(veil_sampler *s, float *logits, const int32_t *history, size_t n_history) {
    const veil_sampling *p = &s->p;
    int32_t V = s->vocab;
    if (p->repetition_penalty != 1.0f || p->presence_penalty != 0 || p->frequency_penalty != 0) {
        size_t from = p->penalty_last_n > 0 && n_history > (size_t)p->penalty_last_n ? n_history - (size_t)p->penalty_last_n : 0;
        for (size_t i = from; i < n_history; i++)
            if (history[i] >= 0 && history[i] < V && s->count[history[i]] < UINT16_MAX) s->count[history[i]]++;
        for (size_t i = from; i < n_history; i++) {
            int32_t t = history[i];
            if (t < 0 || t >= V || !s->count[t]) continue;
            float l = logits[t];
            if (p->repetition_penalty != 1.0f) l = l > 0 ? l / p->repetition_penalty : l * p->repetition_penalty;
            l -= (float)s->count[t] * p->frequency_penalty + p->presence_penalty;
            logits[t] = l;
            s->count[t] = 0; /* once per distinct token */
        }
    }
    int32_t best = 0;
    for (int32_t i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    if (p->temperature <= 0) return best;
    /* candidates: all, or the top k by logit */
    int32_t n = V;
    for (int32_t i = 0; i < V; i++) s->idx[i] = i;
    int sorted = 0;
    if ((p->top_k > 0 && p->top_k < V) || p->top_p < 1.0f) {
        tl_logits = logits;
        qsort(s->idx, (size_t)V, sizeof *s->idx, by_logit_desc);
        sorted = 1;
        if (p->top_k > 0 && p->top_k < V) n = p->top_k;
    }
    float mx = logits[best];
    double sum = 0;
    for (int32_t i = 0; i < n; i++) {
        s->prob[i] = expf((logits[s->idx[i]] - mx) / p->temperature);
        sum += s->prob[i];
    }
    if (p->min_p > 0) { /* keep tokens whose probability is at least min_p × the best's (which is exp(0) = 1) */
        int32_t k = 0;
        sum = 0;
        for (int32_t i = 0; i < n; i++)
            if (s->prob[i] >= p->min_p) {
                s->idx[k] = s->idx[i];
                s->prob[k] = s->prob[i];
                sum += s->prob[k++];
            }
        n = k;
    }
    if (sorted && p->top_p < 1.0f) {
        double c = 0;
        for (int32_t i = 0; i < n; i++) {
            c += s->prob[i];
            if (c >= p->top_p * sum) {
                n = i + 1;
                sum = c;
                break;
            }
        }
    }
    double r = next_unit(s) * sum, c = 0;
    for (int32_t i = 0; i < n; i++) {
        c += s->prob[i];
        if (r < c) return s->idx[i];
    }
    return n > 0 ? s->idx[n - 1] : best;
}
