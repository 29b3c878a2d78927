/* X.509 chains and ECDSA P-256 signatures through OpenSSL, for the DCAP and
 * NVIDIA verifiers: parsing chains of either encoding, pinning roots by the
 * SHA-256 of their DER, and path verification at a chosen time. */
#include "x509.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

static int is_pad(uint8_t c) { return c == '\n' || c == '\r' || c == ' ' || c == '\t' || c == 0; }

STACK_OF(X509) * veil_x509_parse_certs(const uint8_t *data, size_t len, const char **why) {
    STACK_OF(X509) *certs = sk_X509_new_null();
    if (!certs)
        return NULL;
    while (len > 0 && is_pad(data[len - 1]))
        len--;
    static const char begin[] = "-----BEGIN CERTIFICATE-----", end[] = "-----END CERTIFICATE-----";
    size_t pos = 0;
    while (pos < len && is_pad(data[pos]))
        pos++;
    if (len - pos >= sizeof begin - 1 && memcmp(data + pos, begin, sizeof begin - 1) == 0) {
        while (pos < len) {
            while (pos < len && is_pad(data[pos]))
                pos++;
            if (pos == len)
                break;
            if (len - pos < sizeof begin - 1 || memcmp(data + pos, begin, sizeof begin - 1) != 0) {
                *why = "certificate chain holds bytes that are not a PEM certificate";
                goto bad;
            }
            const uint8_t *e = memmem(data + pos, len - pos, end, sizeof end - 1);
            if (!e) {
                *why = "certificate chain has a PEM certificate without its END line";
                goto bad;
            }
            size_t stop = (size_t)(e - data) + sizeof end - 1;
            BIO *bio = BIO_new_mem_buf(data + pos, (int)(stop - pos));
            X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
            BIO_free(bio);
            if (!x) {
                *why = "certificate chain has a malformed PEM certificate";
                goto bad;
            }
            sk_X509_push(certs, x);
            pos = stop;
        }
    } else {
        const unsigned char *p = data + pos, *endp = data + len;
        while (p < endp) {
            X509 *x = d2i_X509(NULL, &p, (long)(endp - p));
            if (!x) {
                *why = "certificate chain is neither PEM nor well-formed DER";
                goto bad;
            }
            sk_X509_push(certs, x);
        }
    }
    if (sk_X509_num(certs) == 0) {
        *why = "certificate chain is empty";
        goto bad;
    }
    return certs;
bad:
    sk_X509_pop_free(certs, X509_free);
    return NULL;
}

int veil_x509_sha256(X509 *x, uint8_t out[32]) {
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    int ok = n > 0 && EVP_Digest(der, (size_t)n, out, NULL, EVP_sha256(), NULL) == 1;
    OPENSSL_free(der);
    return ok;
}

int veil_x509_spki_sha256(X509 *x, uint8_t out[32]) {
    unsigned char *der = NULL;
    int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);
    int ok = n > 0 && EVP_Digest(der, (size_t)n, out, NULL, EVP_sha256(), NULL) == 1;
    OPENSSL_free(der);
    return ok;
}

X509 *veil_x509_find_leaf(STACK_OF(X509) * certs) {
    for (int i = 0; i < sk_X509_num(certs); i++) {
        X509 *c = sk_X509_value(certs, i);
        int issues_other = 0;
        for (int j = 0; j < sk_X509_num(certs) && !issues_other; j++)
            if (j != i && X509_check_issued(c, sk_X509_value(certs, j)) == X509_V_OK)
                issues_other = 1;
        if (!issues_other)
            return c;
    }
    return NULL;
}

uint8_t *veil_base64_decode(const char *s, size_t n, size_t *len) {
    uint8_t *out = n <= INT32_MAX ? malloc(n / 4 * 3 + 4) : NULL;
    EVP_ENCODE_CTX *ctx = out ? EVP_ENCODE_CTX_new() : NULL;
    int a = 0, b = 0, ok = 0;
    if (ctx) {
        EVP_DecodeInit(ctx);
        ok = EVP_DecodeUpdate(ctx, out, &a, (const unsigned char *)s, (int)n) >= 0 &&
             EVP_DecodeFinal(ctx, out + a, &b) == 1 && a + b > 0;
    }
    EVP_ENCODE_CTX_free(ctx);
    if (!ok) {
        free(out);
        return NULL;
    }
    *len = (size_t)(a + b);
    return out;
}

X509 *veil_x509_find_self_issued(STACK_OF(X509) * certs) {
    for (int i = 0; i < sk_X509_num(certs); i++)
        if (X509_check_issued(sk_X509_value(certs, i), sk_X509_value(certs, i)) == X509_V_OK)
            return sk_X509_value(certs, i);
    return NULL;
}

X509 *veil_x509_find_pinned(STACK_OF(X509) * certs, const uint8_t pin[32]) {
    uint8_t h[32];
    for (int i = 0; i < sk_X509_num(certs); i++)
        if (veil_x509_sha256(sk_X509_value(certs, i), h) && memcmp(h, pin, 32) == 0)
            return sk_X509_value(certs, i);
    return NULL;
}

int veil_x509_verify_path(X509 *leaf, STACK_OF(X509) * others, X509 *root, int64_t at, int check_time,
                          int *x509_error) {
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    int ok = 0;
    *x509_error = X509_V_ERR_UNSPECIFIED;
    if (store && ctx && untrusted && X509_STORE_add_cert(store, root) == 1) {
        for (int i = 0; others && i < sk_X509_num(others); i++) {
            X509 *c = sk_X509_value(others, i);
            if (X509_cmp(c, root) != 0 && X509_cmp(c, leaf) != 0)
                sk_X509_push(untrusted, c);
        }
        if (X509_STORE_CTX_init(ctx, store, leaf, untrusted) == 1) {
            X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
            if (check_time)
                X509_VERIFY_PARAM_set_time(param, (time_t)at);
            else
                X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_NO_CHECK_TIME);
            ok = X509_verify_cert(ctx) == 1;
            *x509_error = ok ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
        }
    }
    sk_X509_free(untrusted);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return ok;
}

EVP_PKEY *veil_p256_key(const uint8_t xy[64]) {
    uint8_t point[65];
    point[0] = 0x04;
    memcpy(point + 1, xy, 64);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"prime256v1", 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point),
        OSSL_PARAM_construct_end(),
    };
    EVP_PKEY *key = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (ctx && EVP_PKEY_fromdata_init(ctx) == 1)
        EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params);
    EVP_PKEY_CTX_free(ctx);
    return key;
}

int veil_ecdsa_verify_raw(EVP_PKEY *key, const uint8_t *sig, size_t half, const EVP_MD *mdt, const uint8_t *data,
                          size_t n) {
    ECDSA_SIG *s = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, (int)half, NULL), *ss = BN_bin2bn(sig + half, (int)half, NULL);
    unsigned char *der = NULL;
    int der_len = -1, ok = 0;
    if (s && r && ss && ECDSA_SIG_set0(s, r, ss)) {
        r = ss = NULL; /* owned by s now */
        der_len = i2d_ECDSA_SIG(s, &der);
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (der_len > 0 && md && EVP_DigestVerifyInit(md, NULL, mdt, NULL, key) == 1)
        ok = EVP_DigestVerify(md, der, (size_t)der_len, data, n) == 1;
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    BN_free(r);
    BN_free(ss);
    ECDSA_SIG_free(s);
    return ok;
}

int veil_p256_verify(EVP_PKEY *key, const uint8_t sig[64], const uint8_t *data, size_t n) {
    return veil_ecdsa_verify_raw(key, sig, 32, EVP_sha256(), data, n);
}

int veil_ecdsa_sign_raw(EVP_PKEY *key, size_t half, const EVP_MD *mdt, const uint8_t *data, size_t n, uint8_t *sig) {
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char der[160];
    size_t der_len = sizeof der;
    int ok = md && EVP_DigestSignInit(md, NULL, mdt, NULL, key) == 1 && EVP_DigestSign(md, der, &der_len, data, n) == 1;
    EVP_MD_CTX_free(md);
    const unsigned char *q = der;
    ECDSA_SIG *s = ok ? d2i_ECDSA_SIG(NULL, &q, (long)der_len) : NULL;
    ok = s && BN_bn2binpad(ECDSA_SIG_get0_r(s), sig, (int)half) == (int)half &&
         BN_bn2binpad(ECDSA_SIG_get0_s(s), sig + half, (int)half) == (int)half;
    ECDSA_SIG_free(s);
    return ok;
}
