/* The E2EE envelope: secp256k1 ECDH, HKDF-SHA256 ("ecdsa_encryption"), AES-256-GCM.
 * Byte-compatible with the reference clients on the Venice page. */
#include "veil/ecies.h"

#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include "veil/hex.h"
#include "veil/secure.h"

static const char hkdf_info[] = "ecdsa_encryption";

/* OpenSSL algorithm handles, fetched once: a fetch per envelope costs more
 * than the AES-GCM work itself. They are immutable once fetched, so threads
 * share them; they live until the process exits. */
static EVP_KDF *hkdf_alg;
static EVP_CIPHER *gcm_alg;
static pthread_once_t algs_once = PTHREAD_ONCE_INIT;

static void fetch_algs(void) {
    hkdf_alg = EVP_KDF_fetch(NULL, "HKDF", NULL);
    gcm_alg = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
}

/* HKDF-SHA256 with no salt, info "ecdsa_encryption", 32 bytes of output. */
static veil_rc derive_key(uint8_t key[32], const uint8_t shared[32], veil_err *err) {
    veil_rc rc = VEIL_OK;
    pthread_once(&algs_once, fetch_algs);
    EVP_KDF_CTX *kctx = hkdf_alg ? EVP_KDF_CTX_new(hkdf_alg) : NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)shared, 32),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)hkdf_info,
                                          sizeof hkdf_info - 1),
        OSSL_PARAM_construct_end(),
    };
    if (!kctx || EVP_KDF_derive(kctx, key, 32, params) != 1)
        rc = veil_err_set(err, VEIL_ERR_CRYPTO, "HKDF-SHA256 failed in OpenSSL");
    EVP_KDF_CTX_free(kctx);
    return rc;
}

/* AES-256-GCM over in[0..n) in one direction. For decryption `tag` is read
 * and a mismatch returns VEIL_ERR_AUTH_FAILED; for encryption it is written. */
static veil_rc aes_gcm(int encrypt, uint8_t *out, const uint8_t key[32], const uint8_t iv[12],
                       const uint8_t *in, size_t n, uint8_t tag[16], veil_err *err) {
    if (n > INT_MAX)
        return veil_err_set(err, VEIL_ERR_BAD_LENGTH, "message too large for one envelope");
    pthread_once(&algs_once, fetch_algs);
    if (!gcm_alg)
        return veil_err_set(err, VEIL_ERR_CRYPTO, "AES-256-GCM is not available in OpenSSL");
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (!c)
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    int len = 0, ok = EVP_CipherInit_ex2(c, gcm_alg, key, iv, encrypt, NULL) == 1;
    if (ok && !encrypt)
        ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1;
    if (ok && n > 0)
        ok = EVP_CipherUpdate(c, out, &len, in, (int)n) == 1;
    veil_rc rc = VEIL_OK;
    if (!ok) {
        rc = veil_err_set(err, VEIL_ERR_CRYPTO, "AES-256-GCM failed in OpenSSL");
    } else if (EVP_CipherFinal_ex(c, out + len, &len) != 1) {
        rc = encrypt ? veil_err_set(err, VEIL_ERR_CRYPTO, "AES-256-GCM failed in OpenSSL")
                     : veil_err_set(err, VEIL_ERR_AUTH_FAILED,
                                    "envelope does not authenticate (wrong key or altered bytes)");
    } else if (encrypt && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1) {
        rc = veil_err_set(err, VEIL_ERR_CRYPTO, "AES-256-GCM failed in OpenSSL");
    }
    EVP_CIPHER_CTX_free(c);
    return rc;
}

/* ECDH then HKDF: the AES key shared by `sec` and `pub`. */
static veil_rc envelope_key(uint8_t key[32], const veil_seckey *sec, const veil_pubkey *pub, veil_err *err) {
    uint8_t shared[32];
    veil_rc rc = veil_ecdh_x(shared, sec, pub, err);
    if (rc == VEIL_OK)
        rc = derive_key(key, shared, err);
    veil_wipe(shared, sizeof shared);
    return rc;
}

/* Seals with a given ephemeral pair (its public half already computed). */
static veil_rc seal_pair(uint8_t *out, size_t out_cap, const veil_pubkey *to, const veil_seckey *ephemeral,
                         const veil_pubkey *eph_pub, const uint8_t iv[VEIL_ECIES_IV_LEN], const uint8_t *pt, size_t n,
                         veil_err *err) {
    if (n > SIZE_MAX - VEIL_ECIES_OVERHEAD || out_cap < n + VEIL_ECIES_OVERHEAD)
        return veil_err_set(err, VEIL_ERR_BAD_LENGTH, "output buffer too small for the envelope");
    uint8_t key[32];
    veil_rc rc = envelope_key(key, ephemeral, to, err);
    if (rc == VEIL_OK) {
        memcpy(out, eph_pub->bytes, VEIL_PUBKEY_LEN);
        memcpy(out + VEIL_PUBKEY_LEN, iv, VEIL_ECIES_IV_LEN);
        uint8_t *ct = out + VEIL_PUBKEY_LEN + VEIL_ECIES_IV_LEN;
        rc = aes_gcm(1, ct, key, iv, pt, n, ct + n, err);
    }
    veil_wipe(key, sizeof key);
    return rc;
}

veil_rc veil_ecies_seal_with(uint8_t *out, size_t out_cap, const veil_pubkey *to,
                             const veil_seckey *ephemeral, const uint8_t iv[VEIL_ECIES_IV_LEN],
                             const uint8_t *pt, size_t n, veil_err *err) {
    veil_pubkey eph_pub;
    veil_rc rc = veil_pubkey_from_seckey(&eph_pub, ephemeral, err);
    if (rc != VEIL_OK)
        return rc;
    return seal_pair(out, out_cap, to, ephemeral, &eph_pub, iv, pt, n, err);
}

veil_rc veil_ecies_seal(uint8_t *out, size_t out_cap, const veil_pubkey *to, const uint8_t *pt,
                        size_t n, veil_err *err) {
    veil_seckey eph;
    uint8_t iv[VEIL_ECIES_IV_LEN];
    veil_rc rc = veil_seckey_generate(&eph, err);
    if (rc == VEIL_OK)
        rc = veil_random_bytes(iv, sizeof iv, err);
    if (rc == VEIL_OK)
        rc = veil_ecies_seal_with(out, out_cap, to, &eph, iv, pt, n, err);
    veil_seckey_wipe(&eph);
    return rc;
}

veil_rc veil_ecies_open(uint8_t *out, size_t out_cap, size_t *out_len, const veil_seckey *key,
                        const uint8_t *env, size_t n, veil_err *err) {
    if (n < VEIL_ECIES_OVERHEAD)
        return veil_err_set(err, VEIL_ERR_TOO_SHORT, "envelope is %zu bytes, the minimum is %d", n,
                            VEIL_ECIES_OVERHEAD);
    size_t ct_len = n - VEIL_ECIES_OVERHEAD;
    if (out_cap < ct_len)
        return veil_err_set(err, VEIL_ERR_BAD_LENGTH, "output buffer too small for the plaintext");
    veil_pubkey eph;
    if (env[0] != 0x04 || veil_pubkey_parse(&eph, env, VEIL_PUBKEY_LEN, NULL) != VEIL_OK)
        return veil_err_set(err, VEIL_ERR_BAD_POINT,
                            "envelope's ephemeral public key is not an uncompressed secp256k1 point");
    uint8_t aes_key[32], tag[16];
    const uint8_t *iv = env + VEIL_PUBKEY_LEN, *ct = iv + VEIL_ECIES_IV_LEN;
    memcpy(tag, ct + ct_len, sizeof tag);
    veil_rc rc = envelope_key(aes_key, key, &eph, err);
    if (rc == VEIL_OK)
        rc = aes_gcm(0, out, aes_key, iv, ct, ct_len, tag, err);
    veil_wipe(aes_key, sizeof aes_key);
    if (rc != VEIL_OK) {
        veil_wipe(out, ct_len);
        return rc;
    }
    if (out_len)
        *out_len = ct_len;
    return VEIL_OK;
}

veil_rc veil_ecies_seal_hex(char **out_hex, const veil_pubkey *to, const uint8_t *pt, size_t n,
                            veil_err *err) {
    return veil_ecies_seal_hex_pooled(out_hex, NULL, to, pt, n, err); /* without a pool: a fresh key */
}

veil_rc veil_ecies_open_hex(uint8_t **out, size_t *out_len, const veil_seckey *key, const char *hex,
                            size_t len, veil_err *err) {
    *out = NULL;
    *out_len = 0;
    if (!veil_hex_is_valid(hex, len))
        return veil_err_set(err, VEIL_ERR_NOT_HEX, "envelope is not valid hex");
    if (len < VEIL_ECIES_MIN_HEX_LEN)
        return veil_err_set(err, VEIL_ERR_TOO_SHORT,
                            "envelope is %zu hex characters, the minimum is %d", len,
                            VEIL_ECIES_MIN_HEX_LEN);
    size_t env_len = len / 2;
    uint8_t *env = malloc(env_len);
    uint8_t *pt = malloc(env_len - VEIL_ECIES_OVERHEAD + 1);
    veil_rc rc = VEIL_OK;
    if (!env || !pt)
        rc = veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    if (rc == VEIL_OK)
        rc = veil_hex_decode(env, env_len, NULL, hex, len, err);
    size_t n = 0;
    if (rc == VEIL_OK)
        rc = veil_ecies_open(pt, env_len - VEIL_ECIES_OVERHEAD, &n, key, env, env_len, err);
    free(env);
    if (rc != VEIL_OK) {
        free(pt);
        return rc;
    }
    pt[n] = '\0';
    *out = pt;
    *out_len = n;
    return VEIL_OK;
}

/* ---- ephemeral keys made ahead ---- */

typedef struct eph_pair {
    veil_seckey sec;
    veil_pubkey pub;
} eph_pair;

struct veil_ephemeral_pool {
    eph_pair *pairs; /* locked in memory, best effort */
    size_t cap, count;
    pthread_mutex_t mu;
    pthread_cond_t want; /* the filler waits here while the pool is full */
    pthread_t filler;
    int stop, started;
    int used; /* the pool fills only once an envelope has been sealed: a server without E2EE clients spends nothing */
};

/* Keeps the pool full, at idle priority: it only runs on otherwise idle CPU time. */
static void *fill(void *arg) {
    veil_ephemeral_pool *p = arg;
    struct sched_param sp = {0};
    pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->stop && (p->count == p->cap || !p->used))
            pthread_cond_wait(&p->want, &p->mu);
        int stop = p->stop;
        pthread_mutex_unlock(&p->mu);
        if (stop)
            return NULL;
        eph_pair e;
        if (veil_seckey_generate(&e.sec, NULL) != VEIL_OK || veil_pubkey_from_seckey(&e.pub, &e.sec, NULL) != VEIL_OK) {
            veil_wipe(&e, sizeof e);
            continue;
        }
        pthread_mutex_lock(&p->mu);
        if (p->count < p->cap)
            p->pairs[p->count++] = e;
        pthread_mutex_unlock(&p->mu);
        veil_wipe(&e, sizeof e);
    }
}

veil_ephemeral_pool *veil_ephemeral_pool_new(size_t capacity) {
    veil_ephemeral_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->cap = capacity ? capacity : 1;
    p->pairs = calloc(p->cap, sizeof *p->pairs);
    if (!p->pairs) {
        free(p);
        return NULL;
    }
    mlock(p->pairs, p->cap * sizeof *p->pairs);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->want, NULL);
    p->started = pthread_create(&p->filler, NULL, fill, p) == 0;
    return p;
}

void veil_ephemeral_pool_free(veil_ephemeral_pool *p) {
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_signal(&p->want);
    pthread_mutex_unlock(&p->mu);
    if (p->started)
        pthread_join(p->filler, NULL);
    veil_wipe(p->pairs, p->cap * sizeof *p->pairs);
    munlock(p->pairs, p->cap * sizeof *p->pairs);
    free(p->pairs);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->want);
    free(p);
}

size_t veil_ephemeral_pool_count(veil_ephemeral_pool *p) {
    pthread_mutex_lock(&p->mu);
    size_t n = p->count;
    pthread_mutex_unlock(&p->mu);
    return n;
}

/* A pair from the pool (each used once, wiped from it), else a fresh one. */
static veil_rc take_pair(veil_ephemeral_pool *p, eph_pair *e, veil_err *err) {
    if (p) {
        pthread_mutex_lock(&p->mu);
        if (!p->used) {
            p->used = 1;
            pthread_cond_signal(&p->want);
        }
        int got = p->count > 0;
        if (got) {
            *e = p->pairs[--p->count];
            veil_wipe(&p->pairs[p->count], sizeof *p->pairs);
            pthread_cond_signal(&p->want);
        }
        pthread_mutex_unlock(&p->mu);
        if (got)
            return VEIL_OK;
    }
    veil_rc rc = veil_seckey_generate(&e->sec, err);
    if (rc == VEIL_OK)
        rc = veil_pubkey_from_seckey(&e->pub, &e->sec, err);
    return rc;
}

veil_rc veil_ecies_seal_hex_pooled(char **out_hex, veil_ephemeral_pool *pool, const veil_pubkey *to,
                                   const uint8_t *pt, size_t n, veil_err *err) {
    *out_hex = NULL;
    if (n > (SIZE_MAX - 1) / 2 - VEIL_ECIES_OVERHEAD)
        return veil_err_set(err, VEIL_ERR_BAD_LENGTH, "message too large for one envelope");
    size_t env_len = n + VEIL_ECIES_OVERHEAD;
    uint8_t *env = malloc(env_len), iv[VEIL_ECIES_IV_LEN];
    if (!env)
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    eph_pair e;
    veil_rc rc = take_pair(pool, &e, err);
    if (rc == VEIL_OK)
        rc = veil_random_bytes(iv, sizeof iv, err);
    if (rc == VEIL_OK)
        rc = seal_pair(env, env_len, to, &e.sec, &e.pub, iv, pt, n, err);
    veil_wipe(&e, sizeof e);
    if (rc == VEIL_OK && !(*out_hex = veil_hex_encode_alloc(env, env_len)))
        rc = veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    free(env);
    return rc;
}
