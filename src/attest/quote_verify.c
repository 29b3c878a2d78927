/* DCAP quote verification without collateral: the quote and QE report
 * signatures, the attestation key binding, and the PCK certificate chain up to
 * a root pinned by the SHA-256 of its DER (never by its name). */
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "veil/hex.h"
#include "veil/quote.h"

static const char *const code_names[] = {
    [VEIL_QUOTE_OK] = "OK",
    [VEIL_QUOTE_TRUNCATED] = "QUOTE_TRUNCATED",
    [VEIL_QUOTE_MALFORMED] = "MALFORMED",
    [VEIL_QUOTE_UNSUPPORTED_VERSION] = "UNSUPPORTED_VERSION",
    [VEIL_QUOTE_UNSUPPORTED_TEE_TYPE] = "UNSUPPORTED_TEE_TYPE",
    [VEIL_QUOTE_UNSUPPORTED_KEY_TYPE] = "UNSUPPORTED_KEY_TYPE",
    [VEIL_QUOTE_UNSUPPORTED_CERT_TYPE] = "UNSUPPORTED_CERT_TYPE",
    [VEIL_QUOTE_SIGNATURE_INVALID] = "QUOTE_SIGNATURE_INVALID",
    [VEIL_QUOTE_QE_REPORT_SIGNATURE_INVALID] = "QE_REPORT_SIGNATURE_INVALID",
    [VEIL_QUOTE_AK_BINDING_INVALID] = "AK_BINDING_INVALID",
    [VEIL_QUOTE_PCK_CHAIN_INVALID] = "PCK_CHAIN_INVALID",
    [VEIL_QUOTE_ROOT_NOT_TRUSTED] = "ROOT_NOT_TRUSTED",
    [VEIL_QUOTE_CERT_EXPIRED] = "CERT_EXPIRED",
    [VEIL_QUOTE_TD_DEBUG] = "TD_DEBUG",
    [VEIL_QUOTE_TD_ATTRIBUTES_RESERVED] = "TD_ATTRIBUTES_RESERVED",
};

const char *veil_quote_code_name(veil_quote_code code) {
    if ((size_t)code >= sizeof code_names / sizeof code_names[0] || !code_names[code])
        return "UNKNOWN";
    return code_names[code];
}

void veil_quote_options_init(veil_quote_options *opts) {
    memset(opts, 0, sizeof *opts);
    if (veil_hex_decode(opts->root_sha256, 32, NULL, VEIL_INTEL_ROOT_SHA256, 64, NULL) != VEIL_OK)
        memset(opts->root_sha256, 0xff, 32); /* unreachable: the constant is hex; trust nothing if not */
    opts->at = (int64_t)time(NULL);
}

static veil_rc refuse(veil_quote_verdict *v, veil_quote_code code, const char *msg) {
    v->code = code;
    snprintf(v->message, sizeof v->message, "%s", msg);
    return VEIL_OK;
}

/* Verifies an ECDSA P-256/SHA-256 signature r || s over data with `key`. */
static int p256_verify(EVP_PKEY *key, const uint8_t sig[64], const uint8_t *data, size_t n) {
    ECDSA_SIG *s = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *ss = BN_bin2bn(sig + 32, 32, NULL);
    unsigned char *der = NULL;
    int der_len = -1, ok = 0;
    if (s && r && ss && ECDSA_SIG_set0(s, r, ss)) {
        r = ss = NULL; /* owned by s now */
        der_len = i2d_ECDSA_SIG(s, &der);
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (der_len > 0 && md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) == 1)
        ok = EVP_DigestVerify(md, der, (size_t)der_len, data, n) == 1;
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    BN_free(r);
    BN_free(ss);
    ECDSA_SIG_free(s);
    return ok;
}

/* An EVP_PKEY for the raw P-256 point x || y. */
static EVP_PKEY *p256_key(const uint8_t xy[64]) {
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

/* Parses the certification data's chain: PEM certificates (anything but
 * whitespace and NULs outside them is refused) or concatenated DER. */
static STACK_OF(X509) *parse_chain(const uint8_t *data, size_t len, const char **why) {
    STACK_OF(X509) *certs = sk_X509_new_null();
    if (!certs)
        return NULL;
    /* Real chains end with a NUL byte; trailing whitespace and NULs are padding. */
    while (len > 0 && (data[len - 1] == 0 || data[len - 1] == '\n' || data[len - 1] == '\r' || data[len - 1] == ' '))
        len--;
    static const char begin[] = "-----BEGIN CERTIFICATE-----";
    if (len >= sizeof begin - 1 && memcmp(data, begin, sizeof begin - 1) == 0) {
        size_t pos = 0;
        while (pos < len) {
            while (pos < len && (data[pos] == '\n' || data[pos] == '\r' || data[pos] == ' ' || data[pos] == 0))
                pos++;
            if (pos == len)
                break;
            if (len - pos < sizeof begin - 1 || memcmp(data + pos, begin, sizeof begin - 1) != 0) {
                *why = "PCK chain holds bytes that are not a PEM certificate";
                goto bad;
            }
            static const char end[] = "-----END CERTIFICATE-----";
            const uint8_t *e = memmem(data + pos, len - pos, end, sizeof end - 1);
            if (!e) {
                *why = "PCK chain has a PEM certificate without its END line";
                goto bad;
            }
            size_t stop = (size_t)(e - data) + sizeof end - 1;
            BIO *bio = BIO_new_mem_buf(data + pos, (int)(stop - pos));
            X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
            BIO_free(bio);
            if (!x) {
                *why = "PCK chain has a malformed PEM certificate";
                goto bad;
            }
            sk_X509_push(certs, x);
            pos = stop;
        }
    } else {
        const unsigned char *p = data, *endp = data + len;
        while (p < endp) {
            X509 *x = d2i_X509(NULL, &p, (long)(endp - p));
            if (!x) {
                *why = "PCK chain is neither PEM nor well-formed DER";
                goto bad;
            }
            sk_X509_push(certs, x);
        }
    }
    if (sk_X509_num(certs) == 0) {
        *why = "PCK chain is empty";
        goto bad;
    }
    return certs;
bad:
    sk_X509_pop_free(certs, X509_free);
    return NULL;
}

static int der_sha256(X509 *x, uint8_t out[32]) {
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    int ok = n > 0 && EVP_Digest(der, (size_t)n, out, NULL, EVP_sha256(), NULL) == 1;
    OPENSSL_free(der);
    return ok;
}

/* The leaf is the certificate that issued none of the others; chains come
 * leaf-first from real quotes and root-first from Intel's synthetic ones. */
static X509 *find_leaf(STACK_OF(X509) *certs) {
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

static veil_rc verify_chain(STACK_OF(X509) *certs, const veil_quote_options *opts, X509 **leaf_out,
                            veil_quote_verdict *v) {
    X509 *leaf = find_leaf(certs);
    if (!leaf)
        return refuse(v, VEIL_QUOTE_PCK_CHAIN_INVALID, "PCK chain has no leaf certificate");
    X509 *root = NULL;
    uint8_t h[32];
    for (int i = 0; i < sk_X509_num(certs); i++) {
        X509 *c = sk_X509_value(certs, i);
        if (der_sha256(c, h) && memcmp(h, opts->root_sha256, 32) == 0)
            root = c;
    }
    X509 *given = NULL;
    if (!root && opts->root_der) {
        const unsigned char *p = opts->root_der;
        given = d2i_X509(NULL, &p, (long)opts->root_der_len);
        if (given && der_sha256(given, h) && memcmp(h, opts->root_sha256, 32) == 0)
            root = given;
    }
    if (!root) {
        X509_free(given);
        return refuse(v, VEIL_QUOTE_ROOT_NOT_TRUSTED, "PCK chain does not end at the pinned root CA");
    }
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    veil_quote_code code = VEIL_QUOTE_PCK_CHAIN_INVALID;
    const char *msg = "PCK chain does not verify";
    int ok = 0;
    if (store && ctx && untrusted && X509_STORE_add_cert(store, root) == 1) {
        for (int i = 0; i < sk_X509_num(certs); i++)
            if (sk_X509_value(certs, i) != root && sk_X509_value(certs, i) != leaf)
                sk_X509_push(untrusted, sk_X509_value(certs, i));
        if (X509_STORE_CTX_init(ctx, store, leaf, untrusted) == 1) {
            X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
            X509_VERIFY_PARAM_set_time(param, (time_t)opts->at);
            ok = X509_verify_cert(ctx) == 1;
            if (!ok) {
                int e = X509_STORE_CTX_get_error(ctx);
                if (e == X509_V_ERR_CERT_HAS_EXPIRED || e == X509_V_ERR_CERT_NOT_YET_VALID) {
                    code = VEIL_QUOTE_CERT_EXPIRED;
                    msg = e == X509_V_ERR_CERT_HAS_EXPIRED ? "a PCK chain certificate has expired"
                                                          : "a PCK chain certificate is not yet valid";
                } else if (e == X509_V_ERR_CERT_SIGNATURE_FAILURE) {
                    msg = "a PCK chain certificate's signature does not verify";
                } else {
                    msg = X509_verify_cert_error_string(e);
                }
            }
        }
    }
    sk_X509_free(untrusted);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    X509_free(given);
    if (!ok)
        return refuse(v, code, msg);
    *leaf_out = leaf;
    return VEIL_OK;
}

veil_rc veil_quote_verify(const veil_quote *q, const veil_quote_options *opts, veil_quote_verdict *v,
                          veil_err *err) {
    memset(v, 0, sizeof *v);
    /* 1. The quote signature: attestation key over header and body. */
    EVP_PKEY *ak = p256_key(q->attest_key);
    if (!ak)
        return refuse(v, VEIL_QUOTE_SIGNATURE_INVALID, "attestation key is not a P-256 point");
    int ok = p256_verify(ak, q->signature, q->raw, q->signed_len);
    EVP_PKEY_free(ak);
    if (!ok)
        return refuse(v, VEIL_QUOTE_SIGNATURE_INVALID,
                      "quote signature does not verify with the attestation key");

    /* 2. The attestation key binding in the QE report's REPORTDATA. */
    uint8_t want[64] = {0};
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
         EVP_DigestUpdate(md, q->attest_key, 64) == 1 &&
         EVP_DigestUpdate(md, q->qe_auth, q->qe_auth_len) == 1 && EVP_DigestFinal_ex(md, want, NULL) == 1;
    EVP_MD_CTX_free(md);
    if (!ok)
        return veil_err_set(err, VEIL_ERR_CRYPTO, "SHA-256 failed in OpenSSL");
    if (memcmp(want, q->qe_report.report_data, 64) != 0)
        return refuse(v, VEIL_QUOTE_AK_BINDING_INVALID,
                      "QE report data is not SHA-256(attestation key || QE auth data) || zeros");

    /* 3. The PCK chain, then the QE report signature by its leaf. */
    if (q->chain_type != 5)
        return refuse(v, VEIL_QUOTE_UNSUPPORTED_CERT_TYPE,
                      "quote carries no PCK certificate chain (certification data type is not 5)");
    const char *why = "PCK chain is malformed";
    STACK_OF(X509) *certs = parse_chain(q->chain, q->chain_len, &why);
    if (!certs)
        return refuse(v, VEIL_QUOTE_PCK_CHAIN_INVALID, why);
    X509 *leaf = NULL;
    verify_chain(certs, opts, &leaf, v);
    if (v->code == VEIL_QUOTE_OK) {
        EVP_PKEY *pck = X509_get0_pubkey(leaf);
        if (!pck || !p256_verify(pck, q->qe_report_sig, q->qe_report_raw, 384))
            refuse(v, VEIL_QUOTE_QE_REPORT_SIGNATURE_INVALID,
                   "QE report signature does not verify with the PCK certificate's key");
    }
    sk_X509_pop_free(certs, X509_free);
    if (v->code != VEIL_QUOTE_OK)
        return VEIL_OK;

    /* 4. The TD's own attributes. */
    if (q->body_type != VEIL_BODY_SGX) {
        uint64_t attrs = 0;
        for (int i = 7; i >= 0; i--)
            attrs = attrs << 8 | q->td.td_attributes[i];
        uint64_t mask = opts->td_attributes_allowed_mask ? opts->td_attributes_allowed_mask : 0x80000000d0000001ULL;
        if ((attrs & 1) && !opts->allow_debug)
            return refuse(v, VEIL_QUOTE_TD_DEBUG, "the TD runs in debug mode (TDATTRIBUTES.DEBUG is set)");
        if (attrs & ~mask & ~1ULL)
            return refuse(v, VEIL_QUOTE_TD_ATTRIBUTES_RESERVED, "TD attributes set bits outside the allowed mask");
    } else if ((q->enclave.attributes[0] & 0x02) && !opts->allow_debug) {
        return refuse(v, VEIL_QUOTE_TD_DEBUG, "the enclave runs in debug mode (ATTRIBUTES.DEBUG is set)");
    }
    return refuse(v, VEIL_QUOTE_OK, "quote verified");
}
