/* A small thread pool for the engine's matrix work: the calling thread and
 * n-1 workers run one job at a time, each on its share. Workers spin briefly
 * between jobs (a decode step runs about a hundred jobs back to back) and
 * sleep on a condition variable when idle. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "engine_internal.h"

#define SPIN_ROUNDS 20000

struct veil_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t job_mu; /* one job at a time (sessions share a model) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint gen;   /* incremented per job */
    atomic_int done;   /* workers finished with the current job */
    atomic_int sleeping;
    atomic_int stop;
    void (*fn)(void *, int, int);
    void *ctx;
};

typedef struct worker_arg {
    veil_pool *p;
    int ith;
} worker_arg;

static void *worker(void *arg) {
    worker_arg a = *(worker_arg *)arg;
    free(arg);
    veil_pool *p = a.p;
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen && !atomic_load(&p->stop)) {
            if (++spins < SPIN_ROUNDS) {
#if defined(__x86_64__)
                __builtin_ia32_pause();
#endif
                continue;
            }
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleeping, 1);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->sleeping, 1);
            pthread_mutex_unlock(&p->mu);
            spins = 0;
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = g;
        p->fn(p->ctx, a.ith, p->n);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    }
}

veil_pool *veil_pool_new(int n) {
    if (n < 1) n = 1;
    if (n > 64) n = 64;
    veil_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n;
    pthread_mutex_init(&p->job_mu, NULL);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->threads = calloc((size_t)n, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return NULL;
    }
    for (int i = 1; i < n; i++) {
        worker_arg *a = malloc(sizeof *a);
        if (!a || (a->p = p, a->ith = i, pthread_create(&p->threads[i], NULL, worker, a) != 0)) {
            free(a);
            p->n = i; /* fewer threads than asked: still correct */
            break;
        }
    }
    return p;
}

void veil_pool_free(veil_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->job_mu);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p);
}

int veil_pool_threads(const veil_pool *p) { return p ? p->n : 1; }

void veil_pool_run(veil_pool *p, void (*fn)(void *, int, int), void *ctx) {
    if (!p || p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    pthread_mutex_lock(&p->job_mu);
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->done, 0);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    if (atomic_load(&p->sleeping)) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    fn(ctx, 0, p->n);
    while (atomic_load_explicit(&p->done, memory_order_acquire) < p->n - 1) {
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
    }
    pthread_mutex_unlock(&p->job_mu);
}
