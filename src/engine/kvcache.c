/* Prefix reuse: finished generations' KV state, kept per partition and
 * reused by prompts that begin with the same tokens. An entry is taken out
 * of the cache while a generation uses it (no two share a session) and put
 * back, grown by that generation, when it ends. Memory is bounded; what is
 * evicted is wiped (keys, values and token ids are a function of private
 * prompts). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "veil/secure.h"

#define REUSE_ENOUGH 256

typedef struct entry {
    struct entry *prev, *next; /* most recently used first */
    const veil_llm *m;
    uint8_t part[32];
    int32_t *tokens;
    size_t n;
    veil_llm_session *s;
    size_t bytes;
} entry;

struct veil_kv_cache {
    pthread_mutex_t mu;
    entry *head, *tail;
    veil_kv_cache_stats st;
};

veil_kv_cache *veil_kv_cache_new(size_t max_bytes) {
    veil_kv_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    pthread_mutex_init(&c->mu, NULL);
    c->st.max_bytes = max_bytes;
    return c;
}

static void unlink_entry(veil_kv_cache *c, entry *e) {
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
    c->st.entries--;
    c->st.bytes -= e->bytes;
}

static void free_entry(entry *e) {
    veil_free_secret(e->tokens, e->n * sizeof *e->tokens);
    veil_llm_session_free(e->s);
    veil_wipe(e->part, sizeof e->part);
    free(e);
}

void veil_kv_cache_free(veil_kv_cache *c) {
    if (!c) return;
    for (entry *e = c->head, *n; e; e = n) {
        n = e->next;
        free_entry(e);
    }
    pthread_mutex_destroy(&c->mu);
    free(c);
}

void veil_kv_cache_get_stats(veil_kv_cache *c, veil_kv_cache_stats *out) {
    pthread_mutex_lock(&c->mu);
    *out = c->st;
    pthread_mutex_unlock(&c->mu);
}

veil_llm_session *veil_kv_cache_take(veil_kv_cache *c, const veil_llm *m, const uint8_t part[32], const int32_t *prompt,
                                     size_t n, size_t *reuse) {
    *reuse = 0;
    if (n < 2) return NULL; /* nothing to reuse: the last token is always computed */
    pthread_mutex_lock(&c->mu);
    entry *best = NULL;
    size_t best_len = 0;
    for (entry *e = c->head; e; e = e->next) {
        if (e->m != m || !veil_ct_equal(e->part, part, 32)) continue;
        size_t lim = e->n < n - 1 ? e->n : n - 1, k = 0;
        while (k < lim && e->tokens[k] == prompt[k]) k++;
        /* an entry is given up to its new prompt only for a real share of it (half of it, or
         * REUSE_ENOUGH tokens): not for the chat template's first tokens, which every prompt shares */
        if (k * 2 < e->n && k < REUSE_ENOUGH) continue;
        if (k > best_len) best = e, best_len = k;
    }
    veil_llm_session *s = NULL;
    if (best) {
        unlink_entry(c, best);
        s = best->s;
        best->s = NULL;
        free_entry(best);
        *reuse = best_len;
        c->st.hits++;
        c->st.tokens_reused += best_len;
    } else {
        c->st.misses++;
    }
    pthread_mutex_unlock(&c->mu);
    return s;
}

void veil_kv_cache_put(veil_kv_cache *c, const veil_llm *m, const uint8_t part[32], veil_llm_session *s,
                       const int32_t *tokens, size_t n) {
    entry *e = calloc(1, sizeof *e);
    size_t bytes = 2 * veil_llm_session_kv_bytes(s) + n * sizeof *tokens + (size_t)m->info.vocab * 4;
    if (!e || !n || bytes > c->st.max_bytes || !(e->tokens = malloc(n * sizeof *tokens))) {
        free(e);
        veil_llm_session_free(s);
        return;
    }
    memcpy(e->tokens, tokens, n * sizeof *tokens);
    memcpy(e->part, part, 32);
    e->m = m, e->n = n, e->s = s, e->bytes = bytes;
    entry *evicted = NULL;
    pthread_mutex_lock(&c->mu);
    e->next = c->head;
    if (c->head) c->head->prev = e;
    c->head = e;
    if (!c->tail) c->tail = e;
    c->st.entries++;
    c->st.bytes += bytes;
    while (c->st.bytes > c->st.max_bytes && c->tail != e) {
        entry *old = c->tail;
        unlink_entry(c, old);
        old->next = evicted; /* freed outside the lock: wiping takes time */
        evicted = old;
        c->st.evictions++;
    }
    pthread_mutex_unlock(&c->mu);
    while (evicted) {
        entry *next = evicted->next;
        free_entry(evicted);
        evicted = next;
    }
}
