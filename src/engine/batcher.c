/* Continuous batching of decode steps: concurrent generations on one model
 * each ask for their next step (veil_llm_step); the steps that arrive
 * together run as one pass over the weights (forward.c), led by whichever
 * caller finds no pass running and every active generation arrived, or has
 * waited a quarter of a pass for the others to come back from sampling. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_internal.h"

typedef struct step_req {
    veil_llm_session *s;
    int32_t tok;
    int pos, done, ok;
} step_req;

struct veil_batcher {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    step_req *pending[VEIL_BATCH];
    int n_pending, n_active, busy;
    uint64_t passes, steps; /* for veil_llm_batch_stats */
    long pass_ns;           /* how long a pass took lately */
};

void veil_llm_batch_stats(const veil_llm *m, uint64_t *passes, uint64_t *steps) {
    pthread_mutex_lock(&m->batcher->mu);
    *passes = m->batcher->passes;
    *steps = m->batcher->steps;
    pthread_mutex_unlock(&m->batcher->mu);
}

veil_batcher *veil_batcher_new(void) {
    veil_batcher *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    return b;
}

void veil_batcher_free(veil_batcher *b) {
    if (!b) return;
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    free(b);
}

void veil_llm_decode_begin(const veil_llm *m) {
    pthread_mutex_lock(&m->batcher->mu);
    m->batcher->n_active++;
    pthread_mutex_unlock(&m->batcher->mu);
}

void veil_llm_decode_end(const veil_llm *m) {
    pthread_mutex_lock(&m->batcher->mu);
    m->batcher->n_active--;
    pthread_cond_broadcast(&m->batcher->cv); /* those waiting for this one to arrive need not */
    pthread_mutex_unlock(&m->batcher->mu);
}

/* Runs the gathered steps as one pass; logits to each session. */
static void run_steps(const veil_llm *m, step_req **reqs, int n) {
    veil_llm_session *ss[VEIL_BATCH];
    int32_t tok[VEIL_BATCH];
    int pos[VEIL_BATCH];
    for (int i = 0; i < n; i++) ss[i] = reqs[i]->s, tok[i] = reqs[i]->tok, pos[i] = reqs[i]->pos;
    int ok = veil_llm_run_steps(m, ss, tok, pos, n);
    for (int i = 0; i < n; i++) reqs[i]->ok = ok;
}

const float *veil_llm_step(veil_llm_session *s, int32_t token, int pos) {
    const veil_llm *m = s->m;
    veil_batcher *b = m->batcher;
    if (token < 0 || token >= m->info.vocab || pos < 0 || pos >= s->n_ctx) return NULL;
    step_req r = {s, token, pos, 0, 0};
    pthread_mutex_lock(&b->mu);
    while (b->n_pending == VEIL_BATCH) pthread_cond_wait(&b->cv, &b->mu);
    b->pending[b->n_pending++] = &r;
    pthread_cond_broadcast(&b->cv);
    int waited = 0;
    while (!r.done) {
        /* lead a pass when none runs and every active generation has arrived, or when the
         * others have had a quarter of a pass's time to come back from sampling and sending */
        if (!b->busy && b->n_pending && (b->n_pending >= b->n_active || waited)) {
            step_req *reqs[VEIL_BATCH];
            int n = b->n_pending;
            memcpy(reqs, b->pending, (size_t)n * sizeof *reqs);
            b->n_pending = 0;
            b->busy = 1;
            b->passes++;
            b->steps += (uint64_t)n;
            pthread_mutex_unlock(&b->mu);
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            run_steps(m, reqs, n);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            pthread_mutex_lock(&b->mu);
            long ns = (long)(t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec);
            b->pass_ns = b->pass_ns ? (3 * b->pass_ns + ns) / 4 : ns;
            for (int i = 0; i < n; i++) reqs[i]->done = 1;
            b->busy = 0;
            waited = 0;
            pthread_cond_broadcast(&b->cv);
            continue;
        }
        if (b->busy) { /* a pass runs: its end wakes everyone, nothing to time till then */
            pthread_cond_wait(&b->cv, &b->mu);
            continue;
        }
        long wait_ns = b->pass_ns / 4;
        if (wait_ns < 20000) wait_ns = 20000;
        if (wait_ns > 2000000) wait_ns = 2000000;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += wait_ns;
        if (until.tv_nsec >= 1000000000) until.tv_sec++, until.tv_nsec -= 1000000000;
        if (pthread_cond_timedwait(&b->cv, &b->mu, &until) != 0 && !b->busy) waited = 1;
    }
    pthread_mutex_unlock(&b->mu);
    return r.ok ? s->logits : NULL;
}
