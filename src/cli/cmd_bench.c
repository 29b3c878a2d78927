/* veil bench engine: prefill and decode speed of the built-in engine, and
 * decode efficiency = weight bytes read per token × tokens/s ÷ the memory
 * read bandwidth measured in the same run (rounds alternate, medians). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "cli.h"
#include "veil/engine.h"

typedef struct bw_job {
    const uint64_t *p;
    size_t n;
    uint64_t sum;
} bw_job;

#if defined(__x86_64__)
#include <immintrin.h>
/* Reads 128 bytes per step with four independent AVX2 accumulators: what a
 * kernel streaming weights at full speed does, minus the arithmetic. */
__attribute__((target("avx2"))) static uint64_t read_avx2(const uint64_t *p, size_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 16 <= n; i += 16) {
        a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i *)(p + i)));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i *)(p + i + 4)));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i *)(p + i + 8)));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i *)(p + i + 12)));
    }
    a0 = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    uint64_t out[4];
    _mm256_storeu_si256((__m256i *)out, a0);
    return out[0] + out[1] + out[2] + out[3];
}
#endif

static void *bw_read(void *arg) {
    bw_job *j = arg;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2")) {
        j->sum = read_avx2(j->p, j->n);
        return NULL;
    }
#endif
    uint64_t a[8] = {0};
    for (size_t i = 0; i + 8 <= j->n; i += 8)
        for (int k = 0; k < 8; k++)
            a[k] += j->p[i + k];
    for (int k = 0; k < 8; k++)
        j->sum += a[k];
    return NULL;
}

/* GB/s of reading buf with `threads` threads, each its own slice. */
static double bandwidth(const uint64_t *buf, size_t words, int threads) {
    pthread_t th[64];
    bw_job jobs[64];
    size_t per = words / (size_t)threads / 16 * 16; /* whole 128-byte steps, 32-byte aligned */
    double t0 = veil_now_s();
    for (int i = 0; i < threads; i++) {
        jobs[i] = (bw_job){buf + per * (size_t)i, per, 0};
        pthread_create(&th[i], NULL, bw_read, &jobs[i]);
    }
    uint64_t sink = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        sink += jobs[i].sum;
    }
    double dt = veil_now_s() - t0;
    if (sink == 42)
        fputc(' ', stderr); /* keeps the reads */
    return (double)(per * (size_t)threads * 8) / dt / 1e9;
}

/* One stream of --streams: its own session, prefill, then greedy decode
 * steps that the engine batches with the other streams'. */
typedef struct stream_job {
    veil_llm *m;
    const int32_t *prompt;
    int n_prompt, n_gen;
    double t_start, t_end; /* of the decode phase */
    int ok;
    pthread_barrier_t *ready;
} stream_job;

static void *stream_main(void *arg) {
    stream_job *j = arg;
    const veil_llm_info *in = veil_llm_get_info(j->m);
    veil_llm_session *s = veil_llm_session_new(j->m, j->n_prompt + j->n_gen + 1);
    const float *out = s ? veil_llm_prefill(s, j->prompt, (size_t)j->n_prompt, 0, NULL) : NULL;
    pthread_barrier_wait(j->ready); /* every stream decodes from the same moment */
    veil_llm_decode_begin(j->m);
    j->t_start = veil_now_s();
    for (int i = 0; i < j->n_gen && out; i++) {
        out = veil_llm_step(s, veil_greedy_pick(out, in->vocab), j->n_prompt + i);
    }
    j->t_end = veil_now_s();
    veil_llm_decode_end(j->m);
    j->ok = out != NULL;
    veil_llm_session_free(s);
    return NULL;
}

/* Aggregate decode tokens/s of K streams at once. */
static double streams_rate(veil_llm *m, const int32_t *prompt, int n_prompt, int n_gen, int k, double *steps_per_pass) {
    stream_job jobs[64];
    pthread_t th[64];
    pthread_barrier_t ready;
    pthread_barrier_init(&ready, NULL, (unsigned)k);
    for (int i = 0; i < k; i++) {
        jobs[i] = (stream_job){m, prompt, n_prompt, n_gen, 0, 0, 0, &ready};
        pthread_create(&th[i], NULL, stream_main, &jobs[i]);
    }
    double t0 = 1e300, t1 = 0;
    uint64_t p0, s0, p1, s1;
    veil_llm_batch_stats(m, &p0, &s0);
    for (int i = 0; i < k; i++) {
        pthread_join(th[i], NULL);
        if (jobs[i].t_start < t0)
            t0 = jobs[i].t_start;
        if (jobs[i].t_end > t1)
            t1 = jobs[i].t_end;
    }
    pthread_barrier_destroy(&ready);
    veil_llm_batch_stats(m, &p1, &s1);
    if (p1 > p0)
        *steps_per_pass = (double)(s1 - s0) / (double)(p1 - p0);
    return (double)k * n_gen / (t1 - t0);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void help(void) {
    puts("Usage: veil bench engine --model FILE [--threads N] [--prompt N] [--gen N] [--rounds N] [--streams K]\n"
         "\n"
         "Prefill tokens/s (a prompt of N random tokens, default 64), decode tokens/s (N greedy\n"
         "tokens, default 32) and decode efficiency against the memory read bandwidth of N threads\n"
         "(default 1), measured alternately for --rounds rounds (default 5); prints the medians.\n"
         "The engine uses N threads too, and the best kernels this CPU runs (avx512vnni, avx2 or\n"
         "portable; VEIL_KERNELS=avx2 or VEIL_KERNELS=portable measures a lower level). --streams K\n"
         "also decodes K streams at once (their steps batched into shared passes) and compares their\n"
         "total tokens/s with one stream's.");
}

static int bench_engine(int argc, char **argv) {
    const char *path = NULL;
    int threads = 1, n_prompt = 64, n_gen = 32, rounds = 5, streams = 1;
    const cli_opt opts[] = {
        OPT_STR("model", &path, "FILE", "the GGUF model (required)"),
        OPT_INT("threads", &threads, 1, 64, "N", "threads for the engine and the bandwidth read (default 1)"),
        OPT_INT("prompt", &n_prompt, 1, 100000, "N", "prompt tokens (default 64)"),
        OPT_INT("gen", &n_gen, 1, 100000, "N", "generated tokens (default 32)"),
        OPT_INT("rounds", &rounds, 1, 101, "N", "alternating rounds (default 5)"),
        OPT_INT("streams", &streams, 1, 32, "K", "also decode K streams at once"),
    };
    const cli_spec spec = {"veil bench engine", "veil bench engine --model FILE [options]", NULL, opts,
                           sizeof opts / sizeof opts[0]};
    int pos, rc = cli_parse(&spec, argc, argv, &pos);
    if (rc == CLI_HELP)
        help();
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_OK : rc;
    if (pos != argc)
        return cli_usage_error("veil bench engine --help", "veil bench engine takes no arguments");
    if (!path)
        return cli_usage_error("veil bench engine --help", "veil bench engine needs --model FILE");
    veil_llm *m;
    veil_err err;
    if (veil_llm_load(&m, path, &err) != VEIL_OK)
        return cli_fail_err(path, &err);
    const veil_llm_info *in = veil_llm_get_info(m);
    if (n_prompt + n_gen >= in->ctx) {
        veil_llm_free(m);
        return cli_fail("--prompt + --gen exceed the model's context of %d", in->ctx);
    }
    size_t words = (size_t)512 << 20 >> 3; /* 512 MiB: far past any cache */
    uint64_t *buf = aligned_alloc(64, words * 8);
    double *bw = calloc((size_t)rounds, sizeof *bw), *pf = calloc((size_t)rounds, sizeof *pf),
           *dc = calloc((size_t)rounds, sizeof *dc), *mc = calloc((size_t)rounds, sizeof *mc);
    if (!buf || !bw || !pf || !dc || !mc) {
        free(buf), free(bw), free(pf), free(dc), free(mc);
        veil_llm_free(m);
        return cli_fail("out of memory");
    }
    for (size_t i = 0; i < words; i++)
        buf[i] = i * 0x9e3779b97f4a7c15ull;
    int32_t *prompt = malloc((size_t)n_prompt * sizeof *prompt);
    if (!prompt) {
        free(buf), free(bw), free(pf), free(dc), free(mc);
        veil_llm_free(m);
        return cli_fail("out of memory");
    }
    threads = veil_llm_set_threads(m, threads);
    uint64_t rng = 12345;
    printf("model %s: %s, %.1f MiB of weights per token (%s), threads %d, kernels %s (%d of %d matrices interleaved)\n",
           in->name, in->arch_name, (double)in->weight_bytes / 1048576, veil_ggml_type_name(in->main_type), threads,
           veil_engine_kernels(), in->n_interleaved, in->n_matrices);
    for (int r = 0; r < rounds; r++) {
        bw[r] = bandwidth(buf, words, threads);
        veil_llm_session *s = veil_llm_session_new(m, n_prompt + n_gen + 1);
        if (!s)
            break;
        double t0 = veil_now_s();
        for (int i = 0; i < n_prompt; i++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            prompt[i] = (int32_t)((rng >> 33) % (uint64_t)in->vocab);
        }
        const float *out = veil_llm_prefill(s, prompt, (size_t)n_prompt, 0, NULL);
        double t1 = veil_now_s();
        for (int i = 0; i < n_gen && out; i++) {
            out = veil_llm_forward(s, veil_greedy_pick(out, in->vocab), n_prompt + i);
        }
        double t2 = veil_now_s();
        veil_llm_session_free(s);
        pf[r] = n_prompt / (t1 - t0);
        dc[r] = n_gen / (t2 - t1);
        double spp = 0;
        if (streams > 1)
            mc[r] = streams_rate(m, prompt, n_prompt, n_gen, streams, &spp);
        printf("  round %d: bandwidth %.2f GB/s, prefill %.2f tok/s, decode %.2f tok/s", r + 1, bw[r], pf[r], dc[r]);
        if (streams > 1)
            printf(", %d streams %.2f tok/s (%.2f x one, %.2f steps per pass)", streams, mc[r], mc[r] / dc[r], spp);
        putchar('\n');
        fflush(stdout);
    }
    double mbw = median(bw, rounds), mpf = median(pf, rounds), mdc = median(dc, rounds);
    double eff = (double)in->weight_bytes * mdc / (mbw * 1e9);
    printf("median: bandwidth %.2f GB/s, prefill %.2f tok/s, decode %.2f tok/s, decode efficiency %.3f, "
           "prefill/decode %.2f\n",
           mbw, mpf, mdc, eff, mpf / mdc);
    if (streams > 1) {
        double mm = median(mc, rounds);
        printf("median: %d concurrent streams %.2f tok/s in all, %.2f x one stream\n", streams, mm, mm / mdc);
    }
    free(buf), free(bw), free(pf), free(dc), free(mc), free(prompt);
    veil_llm_free(m);
    return CLI_OK;
}

int cmd_bench(int argc, char **argv) {
    static const cli_command cmds[] = {{"engine", "prefill/decode speed and decode efficiency", bench_engine}};
    return cli_dispatch("veil bench", cmds, sizeof cmds / sizeof cmds[0], argc, argv, help);
}
