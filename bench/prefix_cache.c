/* bench/prefix_cache: a chat's second turn with and without prefix reuse,
 * alternating in one run. The first turn is a HISTORY-token prompt (a long
 * user message) answered with 32 tokens; the second adds that answer and a
 * short question. Cold: the second turn prefilled whole (no cache). Warm:
 * the first turn run with a fresh cache (not timed), then the second, which
 * reuses the first's KV state. Time to first token = the prefill's time
 * (the first token's logits come with it). Prints the medians and the ratio
 * (issue 23's target: >= 5x for a 1,000-token history).
 * Usage: build/bench/prefix_cache MODEL.gguf [HISTORY] [ROUNDS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "veil/engine.h"

static void nothing(void *ctx, const char *c, size_t cl, const char *r, size_t rl) {
    (void)ctx, (void)c, (void)cl, (void)r, (void)rl;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static veil_gen_result run(veil_llm *m, veil_gen_params *p, const veil_chat_msg *msgs, size_t n) {
    veil_tokens t = {0};
    if (!veil_chat_tokens(m, msgs, n, 1, &t)) {
        fprintf(stderr, "bench: tokens\n");
        exit(1);
    }
    veil_gen_callbacks cb = {NULL, nothing, NULL};
    veil_gen_result r;
    veil_err err;
    if (veil_generate(m, &t, p, &cb, &r, &err) != VEIL_OK) {
        fprintf(stderr, "bench: %s\n", err.message);
        exit(1);
    }
    veil_tokens_free(&t);
    return r;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [HISTORY] [ROUNDS]\n", argv[0]);
        return 2;
    }
    long history = argc > 2 ? atol(argv[2]) : 1000;
    int rounds = argc > 3 ? atoi(argv[3]) : 5;
    veil_llm *m;
    veil_err err;
    if (veil_llm_load(&m, argv[1], &err) != VEIL_OK) {
        fprintf(stderr, "bench: %s\n", err.message);
        return 1;
    }
    /* a user message of about HISTORY tokens */
    static const char sentence[] =
        "The river bends past the old mill, where the miller's daughter counts sacks of grain "
        "and the clock in the square strikes every hour without fail. ";
    size_t cap = (size_t)history * 8 + 256, len = 0;
    char *text = malloc(cap);
    text[0] = 0;
    veil_chat_msg one[2] = {{"system", "You are a helpful assistant."}, {"user", text}};
    for (;;) {
        veil_tokens t = {0};
        veil_chat_tokens(m, one, 2, 1, &t);
        size_t have = t.n;
        veil_tokens_free(&t);
        if ((long)have >= history || len + sizeof sentence >= cap)
            break;
        memcpy(text + len, sentence, sizeof sentence);
        len += sizeof sentence - 1;
    }
    veil_gen_params p = {0};
    veil_sampling_default(&p.sampling);
    p.sampling.temperature = 0;
    p.max_tokens = 32;
    memset(p.partition, 7, 32);
    /* the second turn: the history, an answer, a short question (what is reused is the history) */
    veil_gen_result r1 = run(m, &p, one, 2);
    veil_chat_msg two[4] = {one[0],
                            one[1],
                            {"assistant", "Mills stood by rivers because the water turned their wheels."},
                            {"user", "Thank you. And what did the clock do?"}};
    double *cold = calloc((size_t)rounds, sizeof *cold), *warm = calloc((size_t)rounds, sizeof *warm);
    long reused = 0, prompt2 = 0;
    for (int i = 0; i < rounds; i++) {
        veil_gen_params c = p;
        c.cache = NULL;
        veil_gen_result r = run(m, &c, two, 4);
        cold[i] = r.prefill_s;
        prompt2 = r.prompt_tokens;
        veil_kv_cache *kv = veil_kv_cache_new(1u << 30);
        veil_gen_params w = p;
        w.cache = kv;
        run(m, &w, one, 2); /* the first turn fills the cache */
        r = run(m, &w, two, 4);
        warm[i] = r.prefill_s;
        reused = r.cached_tokens;
        veil_kv_cache_free(kv);
    }
    qsort(cold, (size_t)rounds, sizeof *cold, cmp);
    qsort(warm, (size_t)rounds, sizeof *warm, cmp);
    double c50 = cold[rounds / 2], w50 = warm[rounds / 2];
    const char *threads = getenv("VEIL_THREADS");
    printf("prefix reuse: %s, threads %s, first turn %ld prompt tokens, second turn %ld (%ld reused), %d rounds\n",
           argv[1], threads ? threads : "all CPUs", r1.prompt_tokens, prompt2, reused, rounds);
    printf("second turn, time to first token: cold %.1f ms, with the cache %.1f ms (medians)\n", c50 * 1000,
           w50 * 1000);
    printf("speed-up %.1fx (target >= 5x for a 1,000-token history): %s\n", c50 / w50,
           c50 / w50 >= 5 ? "met" : "NOT met");
    free(cold);
    free(warm);
    free(text);
    veil_llm_free(m);
    return 0;
}
