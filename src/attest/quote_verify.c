/* DCAP quote verification: signatures, the attestation key binding, the PCK
 * chain to a root pinned by the SHA-256 of its DER (never by its name), and
 * with collateral the TCB info, QE identity and CRLs; then the policy. */
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "collateral_internal.h"
#include "pck.h"
#include "tcb.h"
#include "veil/eventlog.h"
#include "veil/hex.h"
#include "veil/policy.h"
#include "veil/quote.h"
#include "x509.h"

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
    [VEIL_QUOTE_CERT_REVOKED] = "CERT_REVOKED",
    [VEIL_QUOTE_CRL_INVALID] = "CRL_INVALID",
    [VEIL_QUOTE_TCB_INFO_INVALID] = "TCB_INFO_INVALID",
    [VEIL_QUOTE_FMSPC_MISMATCH] = "FMSPC_MISMATCH",
    [VEIL_QUOTE_TDX_MODULE_MISMATCH] = "TDX_MODULE_MISMATCH",
    [VEIL_QUOTE_QE_IDENTITY_INVALID] = "QE_IDENTITY_INVALID",
    [VEIL_QUOTE_TCB_LEVEL_NOT_FOUND] = "TCB_LEVEL_NOT_FOUND",
    [VEIL_QUOTE_TCB_STATUS_REJECTED] = "TCB_STATUS_REJECTED",
    [VEIL_QUOTE_COLLATERAL_EXPIRED] = "COLLATERAL_EXPIRED",
    [VEIL_QUOTE_COLLATERAL_MISSING] = "COLLATERAL_MISSING",
    [VEIL_QUOTE_TEE_TCB_SVN_TOO_LOW] = "TEE_TCB_SVN_TOO_LOW",
    [VEIL_QUOTE_MEASUREMENT_MISMATCH] = "MEASUREMENT_MISMATCH",
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

/* Shared state of one verification. */
typedef struct run {
    const veil_quote *q;
    const veil_quote_options *opts;
    const veil_quote_policy *policy;
    veil_quote_verdict *v;
    X509 *root;                 /* the pinned root (borrowed from a chain or owned below) */
    X509 *given_root;           /* parsed from opts->root_der, owned */
    STACK_OF(X509) * pck_chain; /* owned */
    X509 *pck_leaf, *pck_ca;    /* borrowed from pck_chain */
} run;

static veil_quote_code chain_code(int x509_error, const char **msg) {
    switch (x509_error) {
    case X509_V_ERR_CERT_HAS_EXPIRED: *msg = "a certificate of the chain has expired"; return VEIL_QUOTE_CERT_EXPIRED;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        *msg = "a certificate of the chain is not yet valid";
        return VEIL_QUOTE_CERT_EXPIRED;
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
        *msg = "a certificate's signature does not verify";
        return VEIL_QUOTE_PCK_CHAIN_INVALID;
    default: *msg = X509_verify_cert_error_string(x509_error); return VEIL_QUOTE_PCK_CHAIN_INVALID;
    }
}

/* The pinned root: in `certs`, or the caller's. */
static X509 *pinned_root(run *r, STACK_OF(X509) * certs) {
    X509 *root = certs ? veil_x509_find_pinned(certs, r->opts->root_sha256) : NULL;
    if (!root && r->given_root) {
        uint8_t h[32];
        if (veil_x509_sha256(r->given_root, h) && memcmp(h, r->opts->root_sha256, 32) == 0)
            root = r->given_root;
    }
    return root;
}

static int time_in(int64_t at, int64_t from, int64_t to) { return at >= from && at <= to; }

/* A collateral document's issuer chain and signature. Signatures must
 * verify; a validity window that does not hold at `at` only marks the
 * collateral expired. Returns VEIL_QUOTE_OK or `bad` with a message. */
static veil_quote_code check_doc(run *r, const signed_doc *d, STACK_OF(X509) * chain, const char *what,
                                 veil_quote_code bad) {
    veil_quote_verdict *v = r->v;
    char msg[200];
    if (!d->has_sig) {
        snprintf(msg, sizeof msg, "%s has no signature", what);
        return refuse(v, bad, msg), bad;
    }
    if (!chain) {
        snprintf(msg, sizeof msg, "%s has no issuer chain", what);
        return refuse(v, bad, msg), bad;
    }
    X509 *leaf = veil_x509_find_leaf(chain), *root = pinned_root(r, chain);
    if (!root) {
        snprintf(msg, sizeof msg, "%s issuer chain does not end at the pinned root CA", what);
        return refuse(v, VEIL_QUOTE_ROOT_NOT_TRUSTED, msg), VEIL_QUOTE_ROOT_NOT_TRUSTED;
    }
    int e;
    if (!veil_x509_verify_path(leaf, chain, root, r->opts->at, 1, &e)) {
        if ((e == X509_V_ERR_CERT_HAS_EXPIRED || e == X509_V_ERR_CERT_NOT_YET_VALID) &&
            veil_x509_verify_path(leaf, chain, root, 0, 0, &e)) {
            v->collateral_expired = 1;
        } else {
            snprintf(msg, sizeof msg, "%s issuer chain does not verify: %s", what, X509_verify_cert_error_string(e));
            return refuse(v, bad, msg), bad;
        }
    }
    EVP_PKEY *key = X509_get0_pubkey(leaf);
    if (!key || !veil_p256_verify(key, d->sig, (const uint8_t *)d->text, d->text_len)) {
        snprintf(msg, sizeof msg, "%s signature does not verify", what);
        return refuse(v, bad, msg), bad;
    }
    int64_t from, to;
    if (!veil_tcb_parse_time(json_string_value(json_object_get(d->body, "issueDate")), &from) ||
        !veil_tcb_parse_time(json_string_value(json_object_get(d->body, "nextUpdate")), &to)) {
        snprintf(msg, sizeof msg, "%s lacks a valid issueDate or nextUpdate", what);
        return refuse(v, bad, msg), bad;
    }
    if (!time_in(r->opts->at, from, to))
        v->collateral_expired = 1;
    return VEIL_QUOTE_OK;
}

/* Is `cert` listed in `crl`? */
static int revoked(X509_CRL *crl, X509 *cert) {
    X509_REVOKED *entry = NULL;
    return X509_CRL_get0_by_serial(crl, &entry, X509_get0_serialNumber(cert)) == 1;
}

static veil_quote_code check_crl(run *r, X509_CRL *crl, X509 *issuer, const char *what) {
    char msg[200];
    if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(issuer)) != 0 ||
        X509_CRL_verify(crl, X509_get0_pubkey(issuer)) != 1) {
        snprintf(msg, sizeof msg, "%s is not signed by its issuing CA", what);
        return refuse(r->v, VEIL_QUOTE_CRL_INVALID, msg), VEIL_QUOTE_CRL_INVALID;
    }
    time_t at = (time_t)r->opts->at;
    const ASN1_TIME *next = X509_CRL_get0_nextUpdate(crl);
    if (X509_cmp_time(X509_CRL_get0_lastUpdate(crl), &at) > 0 || !next || X509_cmp_time(next, &at) < 0)
        r->v->collateral_expired = 1;
    return VEIL_QUOTE_OK;
}

static veil_quote_code check_collateral(run *r) {
    const veil_collateral *c = r->opts->collateral;
    const veil_quote_policy *p = r->policy;
    veil_quote_verdict *v = r->v;
    if (!c)
        return p->require_collateral
                   ? (refuse(v, VEIL_QUOTE_COLLATERAL_MISSING, "the policy requires collateral and none was given"),
                      VEIL_QUOTE_COLLATERAL_MISSING)
                   : VEIL_QUOTE_OK;
    if (p->require_collateral && (!c->tcb_info.present || !c->qe_identity.present || !c->root_crl || !c->pck_crl)) {
        refuse(v, VEIL_QUOTE_COLLATERAL_MISSING, "the policy requires TCB info, QE identity and both CRLs");
        return VEIL_QUOTE_COLLATERAL_MISSING;
    }
    veil_quote_code code;
    /* CRLs first: a revoked certificate outranks any TCB status. */
    if (c->root_crl) {
        if ((code = check_crl(r, c->root_crl, r->root, "root CA CRL")) != VEIL_QUOTE_OK)
            return code;
        for (int i = 0; i < sk_X509_num(r->pck_chain); i++) {
            X509 *x = sk_X509_value(r->pck_chain, i);
            if (x != r->root && revoked(c->root_crl, x))
                return refuse(v, VEIL_QUOTE_CERT_REVOKED, "a CA certificate of the PCK chain is revoked"),
                       VEIL_QUOTE_CERT_REVOKED;
        }
        for (int i = 0; c->tcb_info.chain && i < sk_X509_num(c->tcb_info.chain); i++)
            if (revoked(c->root_crl, sk_X509_value(c->tcb_info.chain, i)))
                return refuse(v, VEIL_QUOTE_CERT_REVOKED, "the TCB signing certificate is revoked"),
                       VEIL_QUOTE_CERT_REVOKED;
    }
    if (c->pck_crl) {
        if (!r->pck_ca)
            return refuse(v, VEIL_QUOTE_CRL_INVALID, "PCK chain has no intermediate CA to check the PCK CRL against"),
                   VEIL_QUOTE_CRL_INVALID;
        if ((code = check_crl(r, c->pck_crl, r->pck_ca, "PCK CRL")) != VEIL_QUOTE_OK)
            return code;
        if (revoked(c->pck_crl, r->pck_leaf))
            return refuse(v, VEIL_QUOTE_CERT_REVOKED, "the PCK certificate is revoked"), VEIL_QUOTE_CERT_REVOKED;
    }
    STACK_OF(X509) *qe_chain = c->qe_identity.chain ? c->qe_identity.chain : c->tcb_info.chain;
    if (c->tcb_info.present && (code = check_doc(r, &c->tcb_info, c->tcb_info.chain, "TCB info",
                                                 VEIL_QUOTE_TCB_INFO_INVALID)) != VEIL_QUOTE_OK)
        return code;
    if (c->qe_identity.present && (code = check_doc(r, &c->qe_identity, qe_chain, "QE identity",
                                                    VEIL_QUOTE_QE_IDENTITY_INVALID)) != VEIL_QUOTE_OK)
        return code;
    if (c->tcb_info.present) {
        code =
            veil_tcb_evaluate(c->tcb_info.body, c->qe_identity.present ? c->qe_identity.body : NULL, r->q, &v->pck, v);
        if (code != VEIL_QUOTE_OK)
            return v->code = code;
    }
    if (p->require_collateral && v->collateral_expired)
        return refuse(v, VEIL_QUOTE_COLLATERAL_EXPIRED, "some collateral is outside its validity window"),
               VEIL_QUOTE_COLLATERAL_EXPIRED;
    if (v->tcb_status[0]) {
        int accepted = 0;
        for (size_t i = 0; i < p->n_accepted && !accepted; i++)
            accepted = !strcmp(p->accepted_tcb_statuses[i], v->tcb_status);
        if (!accepted) {
            char msg[120];
            snprintf(msg, sizeof msg, "TCB status %s is not accepted by the policy", v->tcb_status);
            return refuse(v, VEIL_QUOTE_TCB_STATUS_REJECTED, msg), VEIL_QUOTE_TCB_STATUS_REJECTED;
        }
    }
    return VEIL_QUOTE_OK;
}

/* The value a pin compares against, or NULL when the quote has no such field. */
static const uint8_t *pin_value(const veil_quote *q, veil_pin_field f) {
    const veil_td_report *t = &q->td;
    int td = q->body_type != VEIL_BODY_SGX;
    switch (f) {
    case VEIL_PIN_REPORT_DATA: return td ? t->report_data : q->enclave.report_data;
    case VEIL_PIN_QE_VENDOR_ID: return q->qe_vendor_id;
    case VEIL_PIN_MRTD: return td ? t->mr_td : NULL;
    case VEIL_PIN_RTMR0: return td ? t->rtmr[0] : NULL;
    case VEIL_PIN_RTMR1: return td ? t->rtmr[1] : NULL;
    case VEIL_PIN_RTMR2: return td ? t->rtmr[2] : NULL;
    case VEIL_PIN_RTMR3: return td ? t->rtmr[3] : NULL;
    case VEIL_PIN_MR_CONFIG_ID: return td ? t->mr_config_id : NULL;
    case VEIL_PIN_MR_OWNER: return td ? t->mr_owner : NULL;
    case VEIL_PIN_MR_OWNER_CONFIG: return td ? t->mr_owner_config : NULL;
    case VEIL_PIN_TD_ATTRIBUTES: return td ? t->td_attributes : NULL;
    case VEIL_PIN_XFAM: return td ? t->xfam : NULL;
    case VEIL_PIN_MR_SEAM: return td ? t->mr_seam : NULL;
    case VEIL_PIN_MR_SIGNER_SEAM: return td ? t->mr_signer_seam : NULL;
    case VEIL_PIN_SEAM_ATTRIBUTES: return td ? t->seam_attributes : NULL;
    default: return NULL;
    }
}

static veil_quote_code check_event_log(run *r) {
    const veil_quote *q = r->q;
    if (q->body_type == VEIL_BODY_SGX)
        return refuse(r->v, VEIL_QUOTE_MEASUREMENT_MISMATCH, "an SGX quote has no RTMRs to replay an event log into"),
               VEIL_QUOTE_MEASUREMENT_MISMATCH;
    uint8_t rtmr[4][48];
    unsigned mask;
    veil_event_log_replay(r->opts->event_log, rtmr, &mask);
    mask |= 1u << 3; /* runtime events go to RTMR3: the log must account for all of it, even when empty */
    for (int i = 0; i < 4; i++) {
        if ((mask & (1u << i)) && memcmp(rtmr[i], q->td.rtmr[i], 48) != 0) {
            char msg[80];
            snprintf(msg, sizeof msg, "the event log does not replay to RTMR%d", i);
            return refuse(r->v, VEIL_QUOTE_MEASUREMENT_MISMATCH, msg), VEIL_QUOTE_MEASUREMENT_MISMATCH;
        }
    }
    return VEIL_QUOTE_OK;
}

static veil_rc check_policy(run *r) {
    const veil_quote *q = r->q;
    const veil_quote_policy *p = r->policy;
    veil_quote_verdict *v = r->v;
    if (q->body_type != VEIL_BODY_SGX) {
        uint64_t attrs = 0;
        for (int i = 7; i >= 0; i--)
            attrs = attrs << 8 | q->td.td_attributes[i];
        if ((attrs & 1) && !p->allow_debug)
            return refuse(v, VEIL_QUOTE_TD_DEBUG, "the TD runs in debug mode (TDATTRIBUTES.DEBUG is set)");
        if (attrs & ~p->td_attributes_allowed_mask & ~1ULL)
            return refuse(v, VEIL_QUOTE_TD_ATTRIBUTES_RESERVED, "TD attributes set bits outside the allowed mask");
        if (p->has_min_tee_tcb_svn)
            for (int i = 0; i < 16; i++)
                if (q->td.tee_tcb_svn[i] < p->min_tee_tcb_svn[i])
                    return refuse(v, VEIL_QUOTE_TEE_TCB_SVN_TOO_LOW, "TEE_TCB_SVN is below the policy's minimum");
    } else if ((q->enclave.attributes[0] & 0x02) && !p->allow_debug) {
        return refuse(v, VEIL_QUOTE_TD_DEBUG, "the enclave runs in debug mode (ATTRIBUTES.DEBUG is set)");
    }
    for (int f = 0; f < VEIL_PIN_COUNT; f++) {
        const veil_pin *pin = &p->pins[f];
        if (pin->n == 0)
            continue;
        const uint8_t *have = pin_value(q, (veil_pin_field)f);
        int ok = 0;
        for (size_t i = 0; have && i < pin->n && !ok; i++)
            ok = memcmp(have, pin->values[i], veil_pin_len((veil_pin_field)f)) == 0;
        if (!ok) {
            char msg[120];
            snprintf(msg, sizeof msg, "%s does not match the policy's pin", veil_pin_name((veil_pin_field)f));
            return refuse(v, VEIL_QUOTE_MEASUREMENT_MISMATCH, msg);
        }
    }
    return refuse(v, VEIL_QUOTE_OK, "quote verified");
}

/* Signatures, binding and the PCK chain; fills r's chain fields. */
static veil_rc check_quote(run *r, veil_err *err) {
    const veil_quote *q = r->q;
    veil_quote_verdict *v = r->v;
    EVP_PKEY *ak = veil_p256_key(q->attest_key);
    if (!ak)
        return refuse(v, VEIL_QUOTE_SIGNATURE_INVALID, "attestation key is not a P-256 point");
    int ok = veil_p256_verify(ak, q->signature, q->raw, q->signed_len);
    EVP_PKEY_free(ak);
    if (!ok)
        return refuse(v, VEIL_QUOTE_SIGNATURE_INVALID, "quote signature does not verify with the attestation key");

    uint8_t want[64] = {0};
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 && EVP_DigestUpdate(md, q->attest_key, 64) == 1 &&
         EVP_DigestUpdate(md, q->qe_auth, q->qe_auth_len) == 1 && EVP_DigestFinal_ex(md, want, NULL) == 1;
    EVP_MD_CTX_free(md);
    if (!ok)
        return veil_err_set(err, VEIL_ERR_CRYPTO, "SHA-256 failed in OpenSSL");
    if (memcmp(want, q->qe_report.report_data, 64) != 0)
        return refuse(v, VEIL_QUOTE_AK_BINDING_INVALID,
                      "QE report data is not SHA-256(attestation key || QE auth data) || zeros");

    const char *why = "PCK chain is malformed";
    if (q->chain_type == 5) {
        r->pck_chain = veil_x509_parse_certs(q->chain, q->chain_len, &why);
    } else if (r->opts->collateral && r->opts->collateral->pck_chain) {
        r->pck_chain = X509_chain_up_ref(r->opts->collateral->pck_chain);
    } else {
        return refuse(v, VEIL_QUOTE_UNSUPPORTED_CERT_TYPE,
                      "quote carries no PCK certificate chain (certification data type is not 5) and none was given");
    }
    if (!r->pck_chain)
        return refuse(v, VEIL_QUOTE_PCK_CHAIN_INVALID, why);
    r->pck_leaf = veil_x509_find_leaf(r->pck_chain);
    r->root = pinned_root(r, r->pck_chain);
    if (!r->pck_leaf)
        return refuse(v, VEIL_QUOTE_PCK_CHAIN_INVALID, "PCK chain has no leaf certificate");
    if (!r->root)
        return refuse(v, VEIL_QUOTE_ROOT_NOT_TRUSTED, "PCK chain does not end at the pinned root CA");
    int e;
    if (!veil_x509_verify_path(r->pck_leaf, r->pck_chain, r->root, r->opts->at, 1, &e)) {
        const char *msg;
        veil_quote_code code = chain_code(e, &msg);
        return refuse(v, code, msg);
    }
    for (int i = 0; i < sk_X509_num(r->pck_chain); i++) {
        X509 *x = sk_X509_value(r->pck_chain, i);
        if (x != r->pck_leaf && X509_check_issued(x, r->pck_leaf) == X509_V_OK)
            r->pck_ca = x;
    }
    EVP_PKEY *pck = X509_get0_pubkey(r->pck_leaf);
    if (!pck || !veil_p256_verify(pck, q->qe_report_sig, q->qe_report_raw, 384))
        return refuse(v, VEIL_QUOTE_QE_REPORT_SIGNATURE_INVALID,
                      "QE report signature does not verify with the PCK certificate's key");
    v->has_pck = veil_pck_parse(r->pck_leaf, &v->pck);
    return refuse(v, VEIL_QUOTE_OK, "");
}

veil_rc veil_quote_verify(veil_quote_verdict *v, const veil_quote *q, const veil_quote_options *opts, veil_err *err) {
    memset(v, 0, sizeof *v);
    veil_quote_policy defaults;
    veil_policy_init(&defaults);
    run r = {q, opts, opts->policy ? opts->policy : &defaults, v, NULL, NULL, NULL, NULL, NULL};
    if (opts->root_der) {
        const unsigned char *p = opts->root_der;
        r.given_root = d2i_X509(NULL, &p, (long)opts->root_der_len);
    }
    veil_rc rc = check_quote(&r, err);
    if (rc == VEIL_OK && v->code == VEIL_QUOTE_OK && opts->collateral && !v->has_pck)
        refuse(v, VEIL_QUOTE_PCK_CHAIN_INVALID, "PCK certificate lacks a well-formed Intel SGX extension");
    if (rc == VEIL_OK && v->code == VEIL_QUOTE_OK)
        check_collateral(&r);
    if (rc == VEIL_OK && v->code == VEIL_QUOTE_OK && opts->event_log)
        check_event_log(&r);
    if (rc == VEIL_OK && v->code == VEIL_QUOTE_OK)
        rc = check_policy(&r);
    sk_X509_pop_free(r.pck_chain, X509_free);
    X509_free(r.given_root);
    return rc;
}
