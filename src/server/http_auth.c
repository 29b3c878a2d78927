/* Bearer keys of veil serve: those given by flag (hashed at start) and the
 * key store's, which a thread reloads every second off the loop, so that the
 * loop never reads the disk and a revocation applies within a second. Keys
 * are compared by SHA-256 in constant time. The same thread probes a shared
 * signature store (Redis) every second, so that /readyz says whether it can
 * be written without the loop waiting on the network. */
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/keyvalq_struct.h>

#include "http_internal.h"
#include "veil/secure.h"

int http_authorized(server *s, struct evhttp_request *req, const char **why, uint8_t key_hash[32]) {
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0 || !h[7]) {
        *why = "Missing API key: send Authorization: Bearer <key>";
        return 0;
    }
    const char *key = h + 7;
    uint8_t hash[32];
    EVP_Digest(key, strlen(key), hash, NULL, EVP_sha256(), NULL);
    int ok = 0;
    for (size_t i = 0; i < s->cfg->n_api_keys; i++)
        ok |= veil_ct_equal(hash, s->key_hashes[i], 32);
    pthread_rwlock_rdlock(&s->keys_lock);
    for (size_t i = 0; i < s->n_store_hashes; i++)
        ok |= veil_ct_equal(hash, s->store_hashes[i], 32);
    pthread_rwlock_unlock(&s->keys_lock);
    *why = "Invalid API key";
    if (ok && key_hash)
        memcpy(key_hash, hash, 32);
    veil_wipe(hash, sizeof hash);
    return ok;
}

static void reload_keys(server *s) {
    uint8_t(*hashes)[32];
    size_t n;
    veil_err err;
    if (veil_keystore_hashes(s->cfg->keystore, &hashes, &n, &err) != VEIL_OK) {
        if (!s->keys_failing) /* said once, not every second while the store is away */
            fprintf(http_log(s), "veil: %s (keeping the keys loaded before)\n", err.message);
        s->keys_failing = 1;
        return;
    }
    if (s->keys_failing)
        fprintf(http_log(s), "veil: the key store answers again\n");
    s->keys_failing = 0;
    pthread_rwlock_wrlock(&s->keys_lock);
    uint8_t(*old)[32] = s->store_hashes;
    s->store_hashes = hashes;
    s->n_store_hashes = n;
    pthread_rwlock_unlock(&s->keys_lock);
    free(old);
}

/* The shared signature store's state for /readyz: one small write. */
static void probe_shared_store(server *s) { atomic_store(&s->store_failing, !veil_sigstore_probe(s->cfg->sigstore)); }

static int shared_store(const veil_server_config *c) { return c->sigstore && veil_sigstore_shared(c->sigstore); }

static void *key_thread(void *arg) {
    server *s = arg;
    while (!atomic_load(&s->key_thread_stop)) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        for (int i = 0; i < 10 && !atomic_load(&s->key_thread_stop); i++)
            nanosleep(&ts, NULL);
        if (s->cfg->keystore)
            reload_keys(s);
        if (shared_store(s->cfg))
            probe_shared_store(s);
    }
    return NULL;
}

int http_auth_start(server *s) {
    const veil_server_config *c = s->cfg;
    pthread_rwlock_init(&s->keys_lock, NULL);
    s->key_hashes = calloc(c->n_api_keys + 1, 32);
    if (!s->key_hashes)
        return 0;
    for (size_t i = 0; i < c->n_api_keys; i++)
        EVP_Digest(c->api_keys[i], strlen(c->api_keys[i]), s->key_hashes[i], NULL, EVP_sha256(), NULL);
    if (c->keystore)
        reload_keys(s);
    if (shared_store(c))
        probe_shared_store(s);
    if (c->keystore || shared_store(c))
        s->key_thread_started = pthread_create(&s->key_thread, NULL, key_thread, s) == 0;
    return 1;
}

void http_auth_stop(server *s) {
    if (s->key_thread_started) {
        atomic_store(&s->key_thread_stop, 1);
        pthread_join(s->key_thread, NULL);
        s->key_thread_started = 0;
    }
    free(s->store_hashes);
    s->store_hashes = NULL;
    free(s->key_hashes);
    s->key_hashes = NULL;
}
