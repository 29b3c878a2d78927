/* veil serve's TLS identity (--tls, --tls-cert/--tls-key): the server's
 * TLS context and the SHA-256 of its certificate's SubjectPublicKeyInfo,
 * which the attestation binds (docs/protocol.md, "Attested TLS"). With
 * --tls the key is made here, in the enclave's memory, and never written
 * anywhere; the certificate is self-signed, and clients trust it through
 * the attestation rather than a certificate authority. */
#include <stdio.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "attest/x509.h"
#include "server.h"

static veil_rc tls_fail(veil_err *err, const char *what) {
    char detail[256] = "";
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, detail, sizeof detail);
    ERR_clear_error();
    return veil_err_set(err, VEIL_ERR_CRYPTO, "%s%s%s", what, detail[0] ? ": " : "", detail);
}

static int add_ext(X509 *x, int nid, const char *value) {
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    int ok = ext && X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

/* A self-signed certificate for a fresh P-256 key, valid for a year, naming
 * localhost, 127.0.0.1, ::1 and `host` (when it is a name or address). */
static X509 *self_signed(EVP_PKEY *key, const char *host) {
    X509 *x = X509_new();
    BIGNUM *serial = BN_new();
    int ok = x && serial && X509_set_version(x, 2) && BN_rand(serial, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) &&
             BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)) && X509_gmtime_adj(X509_getm_notBefore(x), -3600) &&
             X509_gmtime_adj(X509_getm_notAfter(x), 365L * 24 * 3600) && X509_set_pubkey(x, key);
    X509_NAME *name = ok ? X509_get_subject_name(x) : NULL;
    ok = ok && X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"veil enclave", -1, -1, 0) &&
         X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)"veil attested TLS", -1, -1, 0) &&
         X509_set_issuer_name(x, name);
    char san[512] = "DNS:localhost,IP:127.0.0.1,IP:0:0:0:0:0:0:0:1";
    if (host && *host && strcmp(host, "localhost") && strcmp(host, "127.0.0.1") && strcmp(host, "0.0.0.0") &&
        strcmp(host, "::") && strlen(host) < 200 && !strpbrk(host, ",:= ")) {
        int ip = strspn(host, "0123456789.") == strlen(host);
        snprintf(san + strlen(san), sizeof san - strlen(san), ",%s:%s", ip ? "IP" : "DNS", host);
    }
    ok = ok && add_ext(x, NID_basic_constraints, "critical,CA:FALSE") &&
         add_ext(x, NID_key_usage, "critical,digitalSignature") && add_ext(x, NID_ext_key_usage, "serverAuth") &&
         add_ext(x, NID_subject_alt_name, san) && X509_sign(x, key, EVP_sha256()) > 0;
    BN_free(serial);
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

veil_rc veil_tls_open(veil_tls_identity *out, const char *cert_file, const char *key_file, const char *host,
                      veil_err *err) {
    memset(out, 0, sizeof *out);
    if (!cert_file != !key_file)
        return veil_err_set(err, VEIL_ERR_INVALID_ARG, "--tls-cert and --tls-key go together");
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION))
        return (SSL_CTX_free(ctx), tls_fail(err, "cannot make a TLS context"));
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* libevent retries a write that would block from wherever its buffer then is */
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE);
    X509 *leaf = NULL;
    if (cert_file) {
        if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
            SSL_CTX_free(ctx);
            return tls_fail(err, "--tls-cert: cannot read the certificate chain (PEM)");
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
            SSL_CTX_free(ctx);
            return tls_fail(err, "--tls-key: cannot read the key, or it is not the certificate's");
        }
        leaf = SSL_CTX_get0_certificate(ctx);
    } else {
        EVP_PKEY *key = EVP_EC_gen("P-256");
        X509 *x = key ? self_signed(key, host) : NULL;
        int ok = x && SSL_CTX_use_certificate(ctx, x) == 1 && SSL_CTX_use_PrivateKey(ctx, key) == 1;
        X509_free(x); /* the context holds its own references */
        EVP_PKEY_free(key);
        if (!ok) {
            SSL_CTX_free(ctx);
            return tls_fail(err, "cannot make the enclave's TLS key and certificate");
        }
        leaf = SSL_CTX_get0_certificate(ctx);
        out->enclave = 1;
    }
    if (!leaf || !veil_x509_spki_sha256(leaf, out->spki_sha256)) {
        SSL_CTX_free(ctx);
        return tls_fail(err, "cannot read the TLS certificate's public key");
    }
    out->ctx = ctx;
    return VEIL_OK;
}

void veil_tls_close(veil_tls_identity *t) {
    SSL_CTX_free(t->ctx);
    memset(t, 0, sizeof *t);
}
