/* Token sampling: penalties, temperature, top-k, top-p, min-p and a seeded
 * generator, so that the same seed gives the same output. Top-k keeps the k
 * highest logits (equal logits: the lower index first); min-p the tokens at
 * least min_p as probable as the best; top-p the shortest run of those from
 * the top whose probability reaches top_p of theirs; the token is drawn in
 * proportion to probability among the kept ones. A step's logits are a whole
 * vocabulary (151 936 for Qwen2.5), so the passes over all of them run eight
 * lanes wide (the same result at every kernel level), and top-k and top-p
 * find where their run ends by a histogram of the logits and partitions, not
 * by sorting the vocabulary, which took longer than the decode step itself
 * (bench/sampler; figures in docs/benchmarks.md). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "veil/secure.h"
#include "vexp.h"

#define BUCKETS 2048 /* the histogram of logits that top-k and top-p start from */

struct veil_sampler {
    veil_sampling p;
    int32_t vocab;
    uint64_t rng;
    int32_t *idx;
    float *prob;
    double *hist; /* BUCKETS */
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
    s->hist = malloc(BUCKETS * sizeof *s->hist);
    if (!s->idx || !s->prob || !s->count || !s->hist) {
        veil_sampler_free(s);
        return NULL;
    }
    return s;
}

void veil_sampler_free(veil_sampler *s) {
    if (!s) return;
    free(s->idx), free(s->prob), free(s->count), free(s->hist);
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

/* Whether token i of logit x comes no later than token ci of logit cl in the vocabulary's order
 * by logit (the highest first; equal logits by index). A NaN logit comes after every other. */
static inline int precedes(float x, int32_t i, float cl, int32_t ci) { return x > cl || (x == cl && i <= ci); }

/* The four partial sums (i mod 4) added as (s0 + s1) + (s2 + s3). */
static inline double sum4(const double s[4]) { return (s[0] + s[1]) + (s[2] + s[3]); }

/* Positions [i, n) of probs: out[i] = e^((x[i] − mx) / temp), added to s[i mod 4] where ≥ floor_. */
static void probs_run(const float *x, int32_t i, int32_t n, float mx, float temp, float floor_, float *out,
                      double s[4]) {
    for (; i < n; i++) {
        out[i] = veil_exp_c((x[i] - mx) / temp);
        if (out[i] >= floor_) s[i & 3] += out[i];
    }
}

/* Positions [i, n) of mass: prob[i] added to s[i mod 4] where it is ≥ floor_ and token i comes no
 * later than (cl, ci) (+ 0.0 elsewhere, which changes no sum). */
static void mass_run(const float *x, const float *prob, int32_t i, int32_t n, float cl, int32_t ci, float floor_,
                     double s[4]) {
    for (; i < n; i++) s[i & 3] += prob[i] >= floor_ && precedes(x[i], i, cl, ci) ? prob[i] : 0.0;
}

/* out[i] = e^((x[i] − mx) / temp), and the sum of those ≥ floor in double, four partial sums. */
static double probs_c(const float *x, int32_t n, float mx, float temp, float floor_, float *out) {
    double s[4] = {0, 0, 0, 0};
    probs_run(x, 0, n, mx, temp, floor_, out, s);
    return sum4(s);
}

/* The sum of prob[i] ≥ floor_ over the tokens i no later than token (cl, ci) in the order by
 * logit, in the same four partial sums. */
static double mass_c(const float *x, const float *prob, int32_t n, float cl, int32_t ci, float floor_) {
    double s[4] = {0, 0, 0, 0};
    mass_run(x, prob, 0, n, cl, ci, floor_, s);
    return sum4(s);
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

/* Eight floats p[0..8) added to four double lanes, p[j] to lane j mod 4 (p[j] before p[j + 4]). */
AVX2 static inline __m256d add_lanes4(__m256d acc, __m256 p) {
    acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_castps256_ps128(p)));
    return _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_extractf128_ps(p, 1)));
}

AVX2 static double probs_avx2(const float *x, int32_t n, float mx, float temp, float floor_, float *out) {
    const __m256 m = _mm256_set1_ps(mx), t = _mm256_set1_ps(temp), f = _mm256_set1_ps(floor_);
    __m256d acc = _mm256_setzero_pd(); /* lane j: the partial sum of i mod 4 = j */
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 p = veil_exp_avx2(_mm256_div_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), m), t));
        _mm256_storeu_ps(out + i, p);
        acc = add_lanes4(acc, _mm256_and_ps(p, _mm256_cmp_ps(p, f, _CMP_GE_OQ))); /* + 0.0 changes no sum */
    }
    double s[4];
    _mm256_storeu_pd(s, acc);
    probs_run(x, i, n, mx, temp, floor_, out, s);
    return sum4(s);
}

AVX2 static double mass_avx2(const float *x, const float *prob, int32_t n, float cl, int32_t ci, float floor_) {
    const __m256 c = _mm256_set1_ps(cl), f = _mm256_set1_ps(floor_);
    const __m256i last = _mm256_set1_epi32(ci), eight = _mm256_set1_epi32(8);
    __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256d acc = _mm256_setzero_pd();
    int32_t i = 0;
    for (; i + 8 <= n; i += 8, idx = _mm256_add_epi32(idx, eight)) {
        __m256 v = _mm256_loadu_ps(x + i), p = _mm256_loadu_ps(prob + i);
        __m256 tie = _mm256_and_ps(_mm256_cmp_ps(v, c, _CMP_EQ_OQ),
                                   _mm256_castsi256_ps(_mm256_xor_si256(_mm256_cmpgt_epi32(idx, last),
                                                                        _mm256_set1_epi32(-1)))); /* i ≤ ci */
        __m256 kept = _mm256_and_ps(_mm256_or_ps(_mm256_cmp_ps(v, c, _CMP_GT_OQ), tie), _mm256_cmp_ps(p, f, _CMP_GE_OQ));
        acc = add_lanes4(acc, _mm256_and_ps(p, kept));
    }
    double s[4];
    _mm256_storeu_pd(s, acc);
    mass_run(x, prob, i, n, cl, ci, floor_, s);
    return sum4(s);
}
#endif

static const veil_sample_kernels sample_c = {argmax_c, probs_c, mass_c};
#if defined(__x86_64__)
static const veil_sample_kernels sample_avx2 = {argmax_avx2, probs_avx2, mass_avx2};
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

/* Whether token i comes no later than token c in that order. */
static inline int not_after(const float *l, int32_t i, int32_t c) { return precedes(l[i], i, l[c], c); }


static __thread const float *tl_logits;
static int by_logit_desc(const void *a, const void *b) {
    float x = tl_logits[*(const int32_t *)a], y = tl_logits[*(const int32_t *)b];
    if (x != y) return x < y ? 1 : -1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

static inline void swap32(int32_t *a, int32_t *b) {
    int32_t t = *a;
    *a = *b, *b = t;
}

static inline double weight_sum(const float *w, const int32_t *S, int32_t lo, int32_t hi) {
    if (!w) return (double)(hi - lo);
    double s = 0;
    for (int32_t i = lo; i < hi; i++) s += w[S[i]];
    return s;
}

/* The bucket of logit x for a histogram of logits from top down to lo (the lowest bucket also
 * takes everything below lo): never higher for a higher x. */
static inline int bucket_of(float x, float top, float lo, double scale) {
    if (!(x >= lo)) return BUCKETS - 1;
    double b = ((double)top - x) * scale;
    return b < BUCKETS - 1 ? (int)b : BUCKETS - 1;
}

/* The token of S[0..m) (tokens with finite or infinite logits, no NaN; reordered here) at which
 * a walk of S in the vocabulary's order first brings the sum of weights (w[token], or 1 each
 * where w is NULL) to goal; -1 if all of S falls short. Not a sort of S: a histogram of the
 * logits (hist: BUCKETS doubles) finds the bucket the walk ends in, adding up the buckets before
 * it; then three-way partitions around a logit (the median of three drawn from the part still
 * open) keep only the part the walk ends in, until 64 tokens or one logit are left, which are
 * sorted and walked. */
static int32_t prefix_cut(const float *l, const float *w, int32_t *S, int32_t m, double goal, double *hist) {
    int32_t lo = 0, hi = m;
    double before = 0; /* the weights of the tokens ahead of S[lo..hi), where the walk ends */
    float top = -INFINITY, bottom = INFINITY;
    for (int32_t i = 0; m > 4 * BUCKETS && i < m; i++) {
        float x = l[S[i]];
        if (x > top) top = x;
        if (x < bottom && x > -INFINITY) bottom = x;
    }
    if (m > 4 * BUCKETS && isfinite(top) && top > bottom) {
        float floor_l = bottom > top - 128 ? bottom : top - 128; /* below: e^-128 of the best at t = 1 */
        double scale = (BUCKETS - 1) / ((double)top - floor_l);
        memset(hist, 0, BUCKETS * sizeof *hist);
        for (int32_t i = 0; i < m; i++) hist[bucket_of(l[S[i]], top, floor_l, scale)] += w ? w[S[i]] : 1.0;
        int B = 0;
        while (B < BUCKETS && before + hist[B] < goal) before += hist[B++];
        if (B == BUCKETS) return -1;
        hi = 0;
        for (int32_t i = 0; i < m; i++)
            if (bucket_of(l[S[i]], top, floor_l, scale) == B) swap32(&S[hi++], &S[i]);
    }
    uint64_t r = 0x9e3779b97f4a7c15ull;
    while (hi - lo > 64) {
        float piv[3];
        for (int k = 0; k < 3; k++) {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            piv[k] = l[S[lo + (int32_t)(r % (uint64_t)(hi - lo))]];
        }
        float pivot = piv[0] > piv[1] ? (piv[1] > piv[2] ? piv[1] : piv[0] > piv[2] ? piv[2] : piv[0])
                                      : (piv[0] > piv[2] ? piv[0] : piv[1] > piv[2] ? piv[2] : piv[1]);
        int32_t gt = lo, i = lo, lt = hi; /* [lo, gt): above the pivot, [gt, lt): equal, [lt, hi): below */
        while (i < lt) {
            float x = l[S[i]];
            if (x > pivot)
                swap32(&S[gt++], &S[i++]);
            else if (x < pivot)
                swap32(&S[i], &S[--lt]);
            else
                i++;
        }
        double above = weight_sum(w, S, lo, gt);
        if (gt > lo && before + above >= goal) {
            hi = gt;
            continue;
        }
        before += above;
        double equal = weight_sum(w, S, gt, lt);
        if (before + equal >= goal) { /* in the tokens of the pivot's logit: walked in index order */
            lo = gt, hi = lt;
            break;
        }
        before += equal;
        lo = lt;
    }
    tl_logits = l;
    qsort(S + lo, (size_t)(hi - lo), sizeof *S, by_logit_desc);
    for (int32_t i = lo; i < hi; i++)
        if ((before += w ? w[S[i]] : 1.0) >= goal) return S[i];
    return -1;
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
    /* min_p keeps the tokens whose probability is at least min_p × the best's (which is e^0 = 1) */
    float floor_ = p->min_p > 0 ? p->min_p : 0, *prob = s->prob;
    double total = k->probs(logits, V, logits[best], p->temperature, floor_, prob);
    int32_t cut = -1; /* the last token kept, in the vocabulary's order by logit; -1: all */
    int top_k = p->top_k > 0 && p->top_k < V;
    if (top_k || p->top_p < 1.0f) {
        int32_t m = 0;
        if (top_k) { /* the k-th token in that order */
            for (int32_t i = 0; i < V; i++) s->idx[m] = i, m += logits[i] == logits[i];
            cut = prefix_cut(logits, NULL, s->idx, m, (double)p->top_k, s->hist);
        }
        if (p->top_p < 1.0f) { /* the shortest run from the top whose probability reaches top_p of theirs */
            double kept = cut < 0 ? total : k->mass(logits, prob, V, logits[cut], cut, floor_);
            m = 0;
            for (int32_t i = 0; i < V; i++)
                s->idx[m] = i, m += prob[i] >= floor_ && logits[i] == logits[i] && (cut < 0 || not_after(logits, i, cut));
            int32_t c = prefix_cut(logits, prob, s->idx, m, p->top_p * kept, s->hist);
            if (c >= 0) cut = c;
        }
    }
    /* a draw in proportion to probability among the kept tokens, walked in index order */
    double sum = cut < 0 ? total : k->mass(logits, prob, V, logits[cut], cut, floor_), r = next_unit(s) * sum, c = 0;
    int32_t last = best;
    for (int32_t i = 0; i < V; i++) {
        int kept = prob[i] >= floor_ && (cut < 0 || not_after(logits, i, cut));
        c += kept ? prob[i] : 0.0; /* + 0.0 changes nothing */
        last = kept ? i : last;
        if (kept && r < c) return i;
    }
    return last;
}
