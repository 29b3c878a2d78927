/* Parsing DCAP collateral JSON: signed documents are kept as the exact bytes
 * that were signed, since re-serializing JSON would break their signatures. */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "collateral_internal.h"
#include "veil/hex.h"
#include "x509.h"

/* Finds the raw text of the value of top-level key `key` in the JSON object
 * text[0..len): the span from its first byte to its last, strings and
 * nesting respected. Returns 1 and sets *start / *span, else 0. */
static int raw_member(const char *text, size_t len, const char *key, size_t *start, size_t *span) {
    size_t klen = strlen(key);
    int depth = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (c == '"') {
            size_t j = i + 1;
            while (j < len && text[j] != '"')
                j += text[j] == '\\' ? 2 : 1;
            if (j >= len)
                return 0;
            int is_key = depth == 1 && j - i - 1 == klen && memcmp(text + i + 1, key, klen) == 0;
            i = j;
            if (!is_key)
                continue;
            size_t k = j + 1;
            while (k < len && (text[k] == ' ' || text[k] == '\n' || text[k] == '\r' || text[k] == '\t'))
                k++;
            if (k >= len || text[k] != ':')
                continue;
            k++;
            while (k < len && (text[k] == ' ' || text[k] == '\n' || text[k] == '\r' || text[k] == '\t'))
                k++;
            if (k >= len || text[k] != '{')
                return 0;
            int d = 0;
            for (size_t m = k; m < len; m++) {
                if (text[m] == '"') {
                    m++;
                    while (m < len && text[m] != '"')
                        m += text[m] == '\\' ? 2 : 1;
                } else if (text[m] == '{') {
                    d++;
                } else if (text[m] == '}' && --d == 0) {
                    *start = k;
                    *span = m - k + 1;
                    return 1;
                }
            }
            return 0;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return 0;
}

static veil_rc bad(veil_err *err, const char *key, const char *what) {
    return veil_err_set(err, VEIL_ERR_MALFORMED, "collateral %s: %s", key, what);
}

static const char *str_member(json_t *root, const char *key) { return json_string_value(json_object_get(root, key)); }

static veil_rc parse_chain(STACK_OF(X509) **out, json_t *root, const char *key, veil_err *err) {
    const char *pem = str_member(root, key);
    if (!pem)
        return json_object_get(root, key) ? bad(err, key, "must be a PEM string") : VEIL_OK;
    const char *why = "malformed";
    *out = veil_x509_parse_certs((const uint8_t *)pem, strlen(pem), &why);
    return *out ? VEIL_OK : bad(err, key, why);
}

/* A signed document given as its exact text plus a hex signature, or as a
 * PCS body {"<body_key>": {...}, "signature": "hex"}. */
static veil_rc parse_doc(signed_doc *d, json_t *root, const char *key, const char *sig_key, const char *body_key,
                         veil_err *err) {
    json_t *v = json_object_get(root, key);
    if (!v)
        return VEIL_OK;
    const char *text = json_string_value(v);
    if (!text)
        return bad(err, key, "must be the signed JSON text as a string");
    size_t len = strlen(text);
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(doc)) {
        json_decref(doc);
        return bad(err, key, "is not a JSON object");
    }
    const char *sig_hex = NULL;
    size_t start = 0, span = len;
    if (json_object_get(doc, body_key)) {
        /* a PCS response body: the signed bytes are the body_key value */
        if (!raw_member(text, len, body_key, &start, &span)) {
            json_decref(doc);
            return bad(err, key, "PCS body has no object to verify");
        }
        sig_hex = str_member(doc, "signature");
        if (sig_hex) {
            if (veil_hex_decode_exact(d->sig, 64, sig_hex, strlen(sig_hex), 0, NULL) != VEIL_OK) {
                json_decref(doc);
                return bad(err, key, "PCS body signature must be 128 hex characters (r || s)");
            }
            d->has_sig = 1;
        }
        json_t *inner = json_incref(json_object_get(doc, body_key));
        json_decref(doc);
        doc = inner;
        sig_hex = NULL;
    } else {
        sig_hex = str_member(root, sig_key);
    }
    d->present = 1;
    d->body = doc;
    d->text = malloc(span + 1);
    if (!d->text)
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    memcpy(d->text, text + start, span);
    d->text[span] = '\0';
    d->text_len = span;
    if (sig_hex) {
        if (veil_hex_decode_exact(d->sig, 64, sig_hex, strlen(sig_hex), 0, NULL) != VEIL_OK)
            return bad(err, sig_key, "must be 128 hex characters (r || s)");
        d->has_sig = 1;
    }
    return VEIL_OK;
}

/* A CRL as hex DER, base64 DER or PEM. */
static veil_rc parse_crl(X509_CRL **out, json_t *root, const char *key, veil_err *err) {
    json_t *v = json_object_get(root, key);
    if (!v)
        return VEIL_OK;
    const char *s = json_string_value(v);
    if (!s)
        return bad(err, key, "must be a string (hex DER, base64 DER or PEM)");
    size_t n = strlen(s);
    X509_CRL *crl = NULL;
    if (strstr(s, "-----BEGIN X509 CRL-----")) {
        BIO *bio = BIO_new_mem_buf(s, (int)n);
        crl = bio ? PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL) : NULL;
        BIO_free(bio);
    } else {
        uint8_t *der = NULL;
        size_t der_len = 0;
        if (veil_hex_is_valid(s, n)) {
            if (!(der = malloc(n / 2 + 1)))
                return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
            if (veil_hex_decode(der, n / 2, &der_len, s, n, NULL) != VEIL_OK)
                der_len = 0;
        } else if (!(der = veil_base64_decode(s, n, &der_len))) {
            der_len = 0;
        }
        const unsigned char *p = der;
        if (der_len)
            crl = d2i_X509_CRL(NULL, &p, (long)der_len);
        if (crl && p != der + der_len) {
            X509_CRL_free(crl);
            crl = NULL;
        }
        free(der);
    }
    if (!crl)
        return bad(err, key, "is not a well-formed CRL");
    *out = crl;
    return VEIL_OK;
}

veil_rc veil_collateral_parse(veil_collateral **out, const char *json, size_t len, veil_err *err) {
    *out = NULL;
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(root)) {
        json_decref(root);
        return veil_err_set(err, VEIL_ERR_MALFORMED, "collateral is not a JSON object (line %d: %s)", jerr.line,
                            jerr.text);
    }
    static const char *known[] = {"tcb_info",          "tcb_info_signature",    "tcb_info_issuer_chain",
                                  "qe_identity",       "qe_identity_signature", "qe_identity_issuer_chain",
                                  "root_ca_crl",       "pck_crl",               "pck_crl_issuer_chain",
                                  "pck_certificate_chain"};
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value) {
        size_t i = 0;
        while (i < sizeof known / sizeof known[0] && strcmp(known[i], key) != 0)
            i++;
        if (i == sizeof known / sizeof known[0]) {
            veil_rc rc = veil_err_set(err, VEIL_ERR_MALFORMED, "collateral has an unknown key: %s", key);
            json_decref(root);
            return rc;
        }
    }
    veil_collateral *c = calloc(1, sizeof *c);
    if (!c) {
        json_decref(root);
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    }
    veil_rc rc = parse_doc(&c->tcb_info, root, "tcb_info", "tcb_info_signature", "tcbInfo", err);
    if (rc == VEIL_OK)
        rc = parse_doc(&c->qe_identity, root, "qe_identity", "qe_identity_signature", "enclaveIdentity", err);
    if (rc == VEIL_OK)
        rc = parse_chain(&c->tcb_info.chain, root, "tcb_info_issuer_chain", err);
    if (rc == VEIL_OK)
        rc = parse_chain(&c->qe_identity.chain, root, "qe_identity_issuer_chain", err);
    if (rc == VEIL_OK)
        rc = parse_chain(&c->pck_crl_chain, root, "pck_crl_issuer_chain", err);
    if (rc == VEIL_OK)
        rc = parse_chain(&c->pck_chain, root, "pck_certificate_chain", err);
    if (rc == VEIL_OK)
        rc = parse_crl(&c->root_crl, root, "root_ca_crl", err);
    if (rc == VEIL_OK)
        rc = parse_crl(&c->pck_crl, root, "pck_crl", err);
    json_decref(root);
    if (rc != VEIL_OK) {
        veil_collateral_free(c);
        return rc;
    }
    *out = c;
    return VEIL_OK;
}

static void doc_free(signed_doc *d) {
    free(d->text);
    json_decref(d->body);
    sk_X509_pop_free(d->chain, X509_free);
}

void veil_collateral_free(veil_collateral *c) {
    if (!c)
        return;
    doc_free(&c->tcb_info);
    doc_free(&c->qe_identity);
    X509_CRL_free(c->root_crl);
    X509_CRL_free(c->pck_crl);
    sk_X509_pop_free(c->pck_crl_chain, X509_free);
    sk_X509_pop_free(c->pck_chain, X509_free);
    free(c);
}
