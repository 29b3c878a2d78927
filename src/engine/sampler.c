/* Token sampling: penalties, temperature, top-k, top-p, min-p and a seeded
 * generator, so that the same seed gives the same output. A step's logits
 * are a whole vocabulary (151 936 for Qwen2.5), so the passes over all of
 * them run eight lanes wide (the same result at every kernel level), and
 * top-k and top-p sort only a prefix of the tokens by logit that is sure to
 * hold what they keep, not the whole vocabulary (which took longer than the
 * decode step itself: 24-27 ms a token on the 2-core development VM). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "veil/secure.h"
#include "vexp.h"

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

/* ---- the passes over the whole vocabulary ---- */

/* The first index of the largest value: x[i] > best only (NaN never, and x[0] NaN stays). */
static int32_t argmax_c(const float *x, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* out[i] = e^((x[i] − mx) / temp), and the sum of those ≥ floor in double, four partial sums
 * (i mod 4) added as (s0 + s1) + (s2 + s3). */
static double probs_c(const float *x, int32_t n, float mx, float temp, float floor_, float *out) {
    double s[4] = {0, 0, 0, 0};
    for (int32_t i = 0; i < n; i++) {
        out[i] = veil_exp_c((x[i] - mx) / temp);
        if (out[i] >= floor_) s[i & 3] += out[i];
    }
    return (s[0] + s[1]) + (s[2] + s[3]);
}

#if defined(__x86_64__)
AVX2 static int32_t argmax_avx2(const float *x, int32_t n) {
    if (n < 16 || x[0] != x[0]) return argmax_c(x, n);
    /* lane j keeps the first largest of x[j], x[j + 8], ...; all lanes start at x[0] */
    __m256 bv = _mm256_set1_ps(x[0]);
    __m256i bi = _mm256_setzero_si256(), idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i eight = _mm256_set1_epi32(8);
    int32_t i = 0;
    for (; i + 8 <= n; i += 8, idx = _mm256_add_epi32(idx, eight)) {
        __m256 v = _mm256_loadu_ps(x + i), gt = _mm256_cmp_ps(v, bv, _CMP_GT_OQ);
        bv = _mm256_blendv_ps(bv, v, gt);
        bi = _mm256_blendv_epi8(bi, idx, _mm256_castps_si256(gt));
    }
    float lv[8];
    int32_t li[8];
    _mm256_storeu_ps(lv, bv);
    _mm256_storeu_si256((__m256i *)li, bi);
    int32_t best = li[0];
    for (int j = 1; j < 8; j++)
        if (lv[j] > x[best] || (lv[j] == x[best] && li[j] < best)) best = li[j];
    for (; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

AVX2 static double probs_avx2(const float *x, int32_t n, float mx, float temp, float floor_, float *out) {
    const __m256 m = _mm256_set1_ps(mx), t = _mm256_set1_ps(temp), f = _mm256_set1_ps(floor_);
    __m256d acc = _mm256_setzero_pd(); /* lane j: the partial sum of i mod 4 = j */
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 p = veil_exp_avx2(_mm256_div_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), m), t));
        _mm256_storeu_ps(out + i, p);
        p = _mm256_and_ps(p, _mm256_cmp_ps(p, f, _CMP_GE_OQ)); /* + 0.0 changes no partial sum */
        acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_castps256_ps128(p)));
        acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_extractf128_ps(p, 1)));
    }
    double s[4];
    _mm256_storeu_pd(s, acc);
    for (; i < n; i++) {
        out[i] = veil_exp_c((x[i] - mx) / temp);
        if (out[i] >= floor_) s[i & 3] += out[i];
    }
    return (s[0] + s[1]) + (s[2] + s[3]);
}
#endif

static const veil_sample_kernels sample_c = {argmax_c, probs_c};
#if defined(__x86_64__)
static const veil_sample_kernels sample_avx2 = {argmax_avx2, probs_avx2};
#endif

const veil_sample_kernels *veil_sample_kernels_variant(int level) {
#if defined(__x86_64__)
    if (veil_level_runs_avx2(level)) return &sample_avx2;
#endif
    return level == 0 ? &sample_c : NULL;
}

const veil_sample_kernels *veil_sample_kernels_for(void) { return veil_sample_kernels_variant(veil_kernel_level()); }

int32_t veil_greedy_pick(const float *logits, int32_t vocab) { return veil_sample_kernels_for()->argmax(logits, vocab); }

/* ---- picking a token ---- */

static __thread const float *tl_logits;
static int by_logit_desc(const void *a, const void *b) {
    float x = tl_logits[*(const int32_t *)a], y = tl_logits[*(const int32_t *)b];
    if (x != y) return x < y ? 1 : -1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

/* The tokens whose logit is at least lo into idx, sorted by logit (highest first, then by
 * index): a prefix of the whole vocabulary's order, whatever lo. Returns how many. */
static int32_t gather_sorted(const float *logits, int32_t V, float lo, int32_t *idx) {
    int32_t n = 0;
    for (int32_t i = 0; i < V; i++)
        if (logits[i] >= lo) idx[n++] = i;
    tl_logits = logits;
    qsort(idx, (size_t)n, sizeof *idx, by_logit_desc);
    return n;
}

/* How many logits are at least lo. */
static int32_t count_at_least(const float *logits, int32_t V, float lo) {
    int32_t n = 0;
    for (int32_t i = 0; i < V; i++) n += logits[i] >= lo;
    return n;
}

int32_t veil_sampler_pick(veil_sampler *s, float *logits, const int32_t *history, size_t n_history) {
    const veil_sampling *p = &s->p;
    const veil_sample_kernels *k = veil_sample_kernels_for();
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
    int32_t best = k->argmax(logits, V);
    if (p->temperature <= 0) return best;
    float mx = logits[best], temp = p->temperature, *prob = s->prob; /* prob[token] */
    /* min_p keeps the tokens whose probability is at least min_p × the best's (which is e^0 = 1) */
    float floor_ = p->min_p > 0 ? p->min_p : 0;
    int top_k = p->top_k > 0 && p->top_k < V ? p->top_k : 0;
    if (!top_k && !(p->top_p < 1.0f)) { /* every token, in index order */
        double sum = k->probs(logits, V, mx, temp, floor_, prob), r = next_unit(s) * sum, c = 0;
        int32_t last = best;
        for (int32_t i = 0; i < V; i++)
            if (prob[i] >= floor_) {
                c += prob[i];
                last = i;
                if (r < c) return i;
            }
        return last;
    }
    int32_t n;
    double sum = 0;
    if (top_k) { /* the k highest logits: a prefix at least k long, widened until it is, sorted */
        float d = 1.0f, lo = mx - d;
        for (int j = 0; isfinite(lo) && count_at_least(logits, V, lo) < top_k; j++)
            lo = j < 8 ? mx - (d *= 2) : -INFINITY; /* logits 256 apart: then every token */
        int32_t m = gather_sorted(logits, V, isfinite(lo) ? lo : -INFINITY, s->idx);
        n = m < top_k ? m : top_k;
        int32_t kept = 0;
        for (int32_t i = 0; i < n; i++) { /* probabilities in that order, min_p's filter */
            int32_t t = s->idx[i];
            prob[t] = veil_exp_c((logits[t] - mx) / temp);
            if (prob[t] >= floor_) s->idx[kept++] = t, sum += prob[t];
        }
        n = kept;
        if (p->top_p < 1.0f) {
            double c = 0;
            for (int32_t i = 0; i < n; i++) {
                c += prob[s->idx[i]];
                if (c >= p->top_p * sum) {
                    n = i + 1;
                    sum = c;
                    break;
                }
            }
        }
    } else { /* top-p over the whole vocabulary: a prefix by logit whose probabilities reach top_p
              * of the total, the prefix widened (e^−4.6 ≈ 1/100 of the best, then 1/10⁴, 1/10⁸, all)
              * until its sorted walk gets there */
        double total = k->probs(logits, V, mx, temp, floor_, prob), goal = p->top_p * total;
        static const float widths[] = {4.6f, 9.2f, 18.4f, INFINITY};
        n = 0;
        for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++) {
            float lo = isfinite(widths[w]) ? mx - widths[w] * temp : -INFINITY;
            if (!(lo > -INFINITY)) lo = -INFINITY;
            if (isfinite(widths[w])) { /* is this prefix's mass enough? (before sorting it) */
                double mass = 0;
                for (int32_t i = 0; i < V; i++)
                    if (logits[i] >= lo && prob[i] >= floor_) mass += prob[i];
                if (mass < goal) continue;
            }
            int32_t m = gather_sorted(logits, V, lo, s->idx), kept = 0;
            double c = 0;
            int reached = 0;
            for (int32_t i = 0; i < m && !reached; i++) {
                int32_t t = s->idx[i];
                if (!(prob[t] >= floor_)) continue;
                s->idx[kept++] = t;
                c += prob[t];
                reached = c >= goal;
            }
            n = kept;
            sum = c;
            if (reached || !isfinite(widths[w])) break;
        }
    }
    double r = next_unit(s) * sum, c = 0;
    for (int32_t i = 0; i < n; i++) {
        c += prob[s->idx[i]];
        if (r < c) return s->idx[i];
    }
    return n > 0 ? s->idx[n - 1] : best;
}
