/* Response signatures (the public page's signature section): text =
 * sha256hex(request body) ":" sha256hex(every response byte), EIP-191
 * signed by the instance key; the NEAR dialect's text carries the model in
 * front. The loop hashes each write as it goes; the final bytes are held
 * back, hashed and signed on a thread, and go out only once the signature
 * is stored (stream_loop.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "base/base.h"
#include "http_internal.h"
#include "tee.h"
#include "veil/eth.h"
#include "veil/hex.h"

void signing_hash(EVP_MD_CTX *h, struct evbuffer *b) {
    /* chain by chain: no copy */
    struct evbuffer_iovec v[16];
    struct evbuffer_ptr at;
    evbuffer_ptr_set(b, &at, 0, EVBUFFER_PTR_SET);
    size_t left = evbuffer_get_length(b);
    while (left) {
        int n = evbuffer_peek(b, -1, &at, v, 16);
        if (n <= 0)
            break;
        for (int i = 0; i < n && i < 16 && left; i++) {
            size_t k = v[i].iov_len < left ? v[i].iov_len : left;
            EVP_DigestUpdate(h, v[i].iov_base, k);
            left -= k;
            evbuffer_ptr_set(b, &at, k, EVBUFFER_PTR_ADD);
        }
    }
}

/* Signs the completed response (the held-back final bytes included) and
 * stores the signature, off the loop. */
static void *finalize_worker(void *arg) {
    stream *st = arg;
    server *s = st->srv;
    uint8_t resp[32];
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c && EVP_MD_CTX_copy_ex(c, st->resp_hash) == 1 &&
             EVP_DigestUpdate(c, st->final_bytes, st->final_len) == 1 && EVP_DigestFinal_ex(c, resp, NULL) == 1;
    EVP_MD_CTX_free(c);
    char text[130], near_text[300], sig[VEIL_SIGNATURE_STR_LEN + 1], near_sig[VEIL_SIGNATURE_STR_LEN + 1];
    veil_hex_encode(text, st->req_hash, 32);
    text[64] = ':';
    veil_hex_encode(text + 65, resp, 32);
    snprintf(near_text, sizeof near_text, "%s:%s", st->creq.model->id, text);
    uint8_t raw[VEIL_SIGNATURE_LEN];
    const veil_seckey *key = veil_tee_key(s->cfg->tee);
    ok = ok && veil_eip191_sign(raw, key, text, strlen(text), NULL) == VEIL_OK;
    if (ok)
        veil_signature_to_string(sig, raw);
    ok = ok && veil_eip191_sign(raw, key, near_text, strlen(near_text), NULL) == VEIL_OK;
    if (ok) {
        veil_signature_to_string(near_sig, raw);
        veil_signature_record r = {st->id,   st->creq.model->id,           text, sig, near_text,
                                   near_sig, veil_tee_address(s->cfg->tee)};
        veil_err err;
        ok = veil_sigstore_put(s->cfg->sigstore, &r, &err) == VEIL_OK;
        if (!ok)
            fprintf(http_log(s), "veil: %s: %s\n", st->id, err.message);
        /* /readyz says not ready while the store cannot write */
        atomic_store(&s->store_failing, !ok);
    }
    pthread_mutex_lock(&st->mu);
    st->sign_failed = !ok; /* the final bytes do not go out: the client gets an error, unsigned */
    st->finalized = 1;
    pthread_mutex_unlock(&st->mu);
    stream_release(st);
    return NULL;
}

/* Holds back the final bytes and signs on a thread; returns 0 when the
 * bytes should go out now instead (not signing, or no thread). */
int signing_begin(stream *st, const void *bytes, size_t n) {
    if (!st->signing)
        return 0;
    st->final_bytes = malloc(n ? n : 1);
    if (!st->final_bytes)
        return 0;
    memcpy(st->final_bytes, bytes, n);
    st->final_len = n;
    stream_acquire(st);
    st->finalizing = 1;
    if (veil_thread_detached(finalize_worker, st, 0))
        return 1;
    st->finalizing = 0;
    stream_release(st);
    free(st->final_bytes);
    st->final_bytes = NULL;
    return 0;
}
