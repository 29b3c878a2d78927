/* Unit tests for verification with collateral, policies and event logs: every
 * verdict SOURCES.md states for the real TDX/SGX vectors, tampered
 * collateral, policy pins, and event log replay. Skipped without vectors. */
#include "testutil.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "veil/collateral.h"
#include "veil/eventlog.h"
#include "veil/policy.h"
#include "veil/quote.h"

#define DQ "tdx/dcap-qvl/"
#define GT "tdx/go-tdx-guest/"

static char *text_of(const char *rel) {
    size_t n;
    return (char *)read_vector(rel, &n);
}

static char *hex_of(const char *rel) {
    size_t n;
    uint8_t *b = read_vector(rel, &n);
    char *h = veil_hex_encode_alloc(b, n);
    free(b);
    return h;
}

/* go-tdx-guest's collateral comes as separate PCS files: assemble them. */
static json_t *go_collateral(const char *tcb_info_file) {
    json_t *c = json_object();
    char *t;
    json_object_set_new(c, "tcb_info", json_string(t = text_of(tcb_info_file)));
    free(t);
    json_object_set_new(c, "tcb_info_issuer_chain", json_string(t = text_of(GT "tcbInfoIssuerChain.derived.pem")));
    free(t);
    json_object_set_new(c, "qe_identity", json_string(t = text_of(GT "sample_qeIdentity_response")));
    free(t);
    json_object_set_new(c, "qe_identity_issuer_chain", json_string(t = text_of(GT "qeIdentityIssuerChain.derived.pem")));
    free(t);
    json_object_set_new(c, "root_ca_crl", json_string(t = hex_of(GT "rootcrl.der")));
    free(t);
    json_object_set_new(c, "pck_crl", json_string(t = hex_of(GT "pckcrl")));
    free(t);
    return c;
}

static json_t *collateral_json(const char *rel) {
    json_error_t jerr;
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", vectors_dir(), rel);
    json_t *c = json_load_file(path, 0, &jerr);
    assert_non_null(c);
    return c;
}

typedef struct outcome {
    veil_quote_verdict v;
    veil_rc parse_rc;
} outcome;

/* Verifies vectors/<quote> with collateral `c` (consumed; NULL for none),
 * policy (may be NULL) and event log (may be NULL) at `at`. */
static outcome verify(const char *quote_rel, json_t *c, const veil_quote_policy *policy, const veil_event_log *log,
                      int64_t at) {
    outcome o;
    memset(&o, 0, sizeof o);
    size_t n, len;
    uint8_t *file = read_vector(quote_rel, &n), *buf;
    assert_int_equal(veil_quote_load(&buf, &len, file, n, NULL), VEIL_OK);
    free(file);
    veil_quote q;
    assert_int_equal(veil_quote_parse(&q, buf, len, NULL, NULL), VEIL_OK);
    veil_collateral *col = NULL;
    veil_err err;
    if (c) {
        char *s = json_dumps(c, 0);
        o.parse_rc = veil_collateral_parse(&col, s, strlen(s), &err);
        free(s);
        json_decref(c);
        if (o.parse_rc != VEIL_OK) {
            free(buf);
            return o;
        }
    }
    veil_quote_options opts;
    veil_quote_options_init(&opts);
    opts.at = at;
    opts.collateral = col;
    opts.policy = policy;
    opts.event_log = log;
    assert_int_equal(veil_quote_verify(&o.v, &q, &opts, &err), VEIL_OK);
    veil_collateral_free(col);
    free(buf);
    return o;
}

static void expect(outcome o, veil_quote_code code, const char *status) {
    if (o.v.code != code)
        fail_msg("got %s (%s), want %s", veil_quote_code_name(o.v.code), o.v.message, veil_quote_code_name(code));
    if (status && strcmp(o.v.tcb_status, status) != 0)
        fail_msg("tcb_status %s, want %s", o.v.tcb_status, status);
}

/* The verdicts SOURCES.md states (§3.1, §3.2, §5.1, §7). */
static void stated_verdicts(void **state) {
    (void)state;
    NEED_VECTORS();
    outcome o = verify(DQ "sample_tdx_quote", collateral_json(DQ "sample_tdx_quote_collateral.json"), NULL, NULL,
                       1752919234);
    expect(o, VEIL_QUOTE_OK, "UpToDate");
    assert_int_equal(o.v.n_advisories, 0);
    assert_false(o.v.collateral_expired);
    assert_true(o.v.has_pck);

    o = verify(DQ "sample_sgx_quote", collateral_json(DQ "sample_sgx_quote_collateral.json"), NULL, NULL, 1752919277);
    expect(o, VEIL_QUOTE_TCB_STATUS_REJECTED, "ConfigurationAndSWHardeningNeeded");
    assert_int_equal(o.v.n_advisories, 2);
    assert_string_equal(o.v.advisory_ids[0], "INTEL-SA-00289");
    assert_string_equal(o.v.advisory_ids[1], "INTEL-SA-00615");
    veil_quote_policy p;
    const char *accept = "{\"accepted_tcb_statuses\":[\"UpToDate\",\"ConfigurationAndSWHardeningNeeded\"]}";
    assert_int_equal(veil_policy_parse(&p, accept, strlen(accept), NULL), VEIL_OK);
    o = verify(DQ "sample_sgx_quote", collateral_json(DQ "sample_sgx_quote_collateral.json"), &p, NULL, 1752919277);
    expect(o, VEIL_QUOTE_OK, "ConfigurationAndSWHardeningNeeded");

    o = verify(DQ "sample_tdx_quote_outdated", collateral_json(DQ "sample_tdx_quote_outdated_collateral.json"), NULL,
               NULL, 1774003274);
    expect(o, VEIL_QUOTE_TCB_LEVEL_NOT_FOUND, NULL);

    o = verify(DQ "tests_near_contracts_gas-test_tests_quote_quote_hex.txt",
               collateral_json(DQ "tests_near_contracts_gas-test_tests_quote_quote_collateral.json"), NULL, NULL,
               1757462400);
    expect(o, VEIL_QUOTE_OK, "UpToDate");

    o = verify("samples/nearai/model_intel_quote.derived.bin",
               collateral_json(DQ "sample_tdx_quote_outdated_collateral.json"), NULL, NULL, 1773532800);
    expect(o, VEIL_QUOTE_OK, "UpToDate");
    /* the gateway's PCK certificate is newer than any collateral here */
    o = verify("samples/nearai/gateway_intel_quote.derived.bin", collateral_json(DQ "sample_tdx_quote_collateral.json"),
               NULL, NULL, 1752919234);
    expect(o, VEIL_QUOTE_CERT_EXPIRED, NULL);

    o = verify(GT "tdx_prod_quote_SPR_E4.dat", go_collateral(GT "sample_tcbInfo_response"), NULL, NULL, 1688173200);
    expect(o, VEIL_QUOTE_TCB_LEVEL_NOT_FOUND, NULL);
    o = verify(GT "tdx_prod_quote_SPR_E4.dat", go_collateral(GT "sample_tcbInfo_response"), NULL, NULL, 2635030800LL);
    expect(o, VEIL_QUOTE_CERT_EXPIRED, NULL);

    /* v5 with its 2026 TCB info: UpToDate, but the 2023 QE identity and the
     * expired TCB signing certificate make the collateral expired */
    o = verify(GT "quote_v5_sample.dat", go_collateral(GT "sample_tcbinfo_response_v5"), NULL, NULL, 1770080400);
    expect(o, VEIL_QUOTE_OK, "UpToDate");
    assert_true(o.v.collateral_expired);
    const char *strict = "{\"require_collateral\":true}";
    assert_int_equal(veil_policy_parse(&p, strict, strlen(strict), NULL), VEIL_OK);
    o = verify(GT "quote_v5_sample.dat", go_collateral(GT "sample_tcbinfo_response_v5"), &p, NULL, 1770080400);
    expect(o, VEIL_QUOTE_COLLATERAL_EXPIRED, NULL);
    /* a week after its nextUpdate the dcap-qvl collateral is expired but, by default, not fatal */
    o = verify(DQ "sample_tdx_quote", collateral_json(DQ "sample_tdx_quote_collateral.json"), NULL, NULL,
               1752919234 + 7 * 86400);
    expect(o, VEIL_QUOTE_OK, "UpToDate");
    assert_true(o.v.collateral_expired);
}

/* Flips one hex digit of a string member. */
static void flip_hex(json_t *c, const char *key, size_t from_end) {
    const char *s = json_string_value(json_object_get(c, key));
    assert_non_null(s);
    char *t = strdup(s);
    size_t i = strlen(t) - 1 - from_end;
    t[i] = t[i] == '0' ? '1' : '0';
    json_object_set_new(c, key, json_string(t));
    free(t);
}

static void tampered_collateral(void **state) {
    (void)state;
    NEED_VECTORS();
    const int64_t at = 1752919234;
    const char *q = DQ "sample_tdx_quote", *cf = DQ "sample_tdx_quote_collateral.json";
    json_t *c = collateral_json(cf);
    flip_hex(c, "tcb_info_signature", 3);
    expect(verify(q, c, NULL, NULL, at), VEIL_QUOTE_TCB_INFO_INVALID, NULL);

    c = collateral_json(cf); /* the signed text changed: "UpToDate" -> "UpToDatf" in the first level */
    char *t = strdup(json_string_value(json_object_get(c, "tcb_info")));
    char *u = strstr(t, "UpToDate");
    assert_non_null(u);
    u[7] = 'f';
    json_object_set_new(c, "tcb_info", json_string(t));
    free(t);
    expect(verify(q, c, NULL, NULL, at), VEIL_QUOTE_TCB_INFO_INVALID, NULL);

    c = collateral_json(cf);
    flip_hex(c, "qe_identity_signature", 5);
    expect(verify(q, c, NULL, NULL, at), VEIL_QUOTE_QE_IDENTITY_INVALID, NULL);

    c = collateral_json(cf); /* last bytes of a CRL are its signature's s */
    flip_hex(c, "root_ca_crl", 2);
    expect(verify(q, c, NULL, NULL, at), VEIL_QUOTE_CRL_INVALID, NULL);
    c = collateral_json(cf);
    flip_hex(c, "pck_crl", 2);
    expect(verify(q, c, NULL, NULL, at), VEIL_QUOTE_CRL_INVALID, NULL);

    /* correctly signed TCB info of another platform */
    c = collateral_json(cf);
    json_t *other = collateral_json(DQ "sample_tdx_quote_outdated_collateral.json");
    json_object_set(c, "tcb_info", json_object_get(other, "tcb_info"));
    json_object_set(c, "tcb_info_signature", json_object_get(other, "tcb_info_signature"));
    json_decref(other);
    expect(verify(q, c, NULL, NULL, at), VEIL_QUOTE_FMSPC_MISMATCH, NULL);

    /* an issuer chain that does not reach the pinned root */
    c = collateral_json(cf);
    char *syn = text_of("tdx/intel_qvl_synthetic/tdx/tcbSignChain.pem");
    json_object_set_new(c, "tcb_info_issuer_chain", json_string(syn));
    free(syn);
    expect(verify(q, c, NULL, NULL, at), VEIL_QUOTE_ROOT_NOT_TRUSTED, NULL);

    /* what require_collateral needs */
    veil_quote_policy p;
    const char *strict = "{\"require_collateral\":true}";
    assert_int_equal(veil_policy_parse(&p, strict, strlen(strict), NULL), VEIL_OK);
    expect(verify(q, NULL, &p, NULL, at), VEIL_QUOTE_COLLATERAL_MISSING, NULL);
    c = collateral_json(cf);
    json_object_del(c, "pck_crl");
    expect(verify(q, c, &p, NULL, at), VEIL_QUOTE_COLLATERAL_MISSING, NULL);
    c = collateral_json(cf);
    expect(verify(q, c, &p, NULL, at), VEIL_QUOTE_OK, "UpToDate");

    /* malformed collateral is refused at parse time */
    c = collateral_json(cf);
    json_object_set_new(c, "surprise", json_true());
    assert_int_equal(verify(q, c, NULL, NULL, at).parse_rc, VEIL_ERR_MALFORMED);
    c = collateral_json(cf);
    json_object_set_new(c, "root_ca_crl", json_string("3082zz"));
    assert_int_equal(verify(q, c, NULL, NULL, at).parse_rc, VEIL_ERR_MALFORMED);
    c = collateral_json(cf);
    json_object_set_new(c, "tcb_info", json_string("{\"tcbInfo\": [}"));
    assert_int_equal(verify(q, c, NULL, NULL, at).parse_rc, VEIL_ERR_MALFORMED);
    veil_collateral *col;
    assert_int_equal(veil_collateral_parse(&col, "[]", 2, NULL), VEIL_ERR_MALFORMED);
    assert_int_equal(veil_collateral_parse(&col, "{", 1, NULL), VEIL_ERR_MALFORMED);
}

/* Intel's synthetic SGX quote has certification data type 1 (no chain): it
 * verifies only with its PCK chain supplied and its own root pinned. */
static void chain_from_collateral(void **state) {
    (void)state;
    NEED_VECTORS();
    size_t n, len;
    uint8_t *buf = read_vector("tdx/intel_qvl_synthetic/quote.dat", &len);
    veil_quote q;
    assert_int_equal(veil_quote_parse(&q, buf, len, NULL, NULL), VEIL_OK);
    assert_int_equal(q.chain_type, 1);
    char *leaf = text_of("tdx/intel_qvl_synthetic/pckCert.pem"), *rest = text_of("tdx/intel_qvl_synthetic/pckSignChain.pem");
    json_t *c = json_object();
    char *chain = malloc(strlen(leaf) + strlen(rest) + 2);
    sprintf(chain, "%s\n%s", leaf, rest);
    json_object_set_new(c, "pck_certificate_chain", json_string(chain));
    char *s = json_dumps(c, 0);
    veil_collateral *col;
    assert_int_equal(veil_collateral_parse(&col, s, strlen(s), NULL), VEIL_OK);
    uint8_t *root_pem = read_vector("tdx/intel_qvl_synthetic/trustedRootCaCert.pem", &n);
    BIO *bio = BIO_new_mem_buf(root_pem, (int)n);
    X509 *root = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    assert_non_null(root);
    unsigned char *der = NULL;
    int der_len = i2d_X509(root, &der);
    veil_quote_options opts;
    veil_quote_options_init(&opts);
    opts.at = 1735689600;
    veil_quote_verdict v;
    assert_int_equal(veil_quote_verify(&v, &q, &opts, NULL), VEIL_OK);
    assert_int_equal(v.code, VEIL_QUOTE_UNSUPPORTED_CERT_TYPE); /* no chain anywhere */
    opts.collateral = col;
    assert_int_equal(veil_quote_verify(&v, &q, &opts, NULL), VEIL_OK);
    assert_int_equal(v.code, VEIL_QUOTE_ROOT_NOT_TRUSTED); /* Intel's real root pinned */
    EVP_Digest(der, (size_t)der_len, opts.root_sha256, NULL, EVP_sha256(), NULL);
    assert_int_equal(veil_quote_verify(&v, &q, &opts, NULL), VEIL_OK);
    expect((outcome){v, VEIL_OK}, VEIL_QUOTE_OK, NULL);
    OPENSSL_free(der);
    X509_free(root);
    BIO_free(bio);
    free(root_pem);
    veil_collateral_free(col);
    free(s);
    json_decref(c);
    free(chain);
    free(leaf);
    free(rest);
    free(buf);
}

static void policy_parsing(void **state) {
    (void)state;
    veil_quote_policy p;
    veil_err err;
    veil_policy_init(&p);
    assert_false(p.allow_debug);
    assert_int_equal(p.n_accepted, 2);
    assert_true(p.td_attributes_allowed_mask == 0x80000000d0000001ULL);
    const char *good = "{\"allow_debug\":true,\"mrtd\":[\"" "000000000000000000000000000000000000000000000000"
                       "000000000000000000000000000000000000000000000000\"],\"td_attributes_allowed_mask\":\"ffffffffffffffff\","
                       "\"min_tee_tcb_svn\":\"00000000000000000000000000000000\"}";
    assert_int_equal(veil_policy_parse(&p, good, strlen(good), &err), VEIL_OK);
    assert_true(p.allow_debug);
    assert_int_equal(p.pins[VEIL_PIN_MRTD].n, 1);
    const char *bad[] = {
        "{\"allow_debugg\":true}",                    /* unknown key */
        "{\"allow_debug\":1}",                        /* wrong type */
        "{\"mrtd\":\"abcd\"}",                        /* wrong length */
        "{\"mrtd\":[]}",                              /* no values */
        "{\"rtmr3\":[\"zz\"]}",                       /* not hex */
        "{\"accepted_tcb_statuses\":[\"Fine\"]}",     /* unknown status */
        "{\"accepted_tcb_statuses\":\"UpToDate\"}",   /* not an array */
        "{\"min_tee_tcb_svn\":\"00\"}",               /* wrong length */
        "{\"td_attributes_allowed_mask\":\"ff\"}",    /* wrong length */
        "[1,2]", "", "{\"allow_debug\":true,\"allow_debug\":false}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (veil_policy_parse(&p, bad[i], strlen(bad[i]), &err) != VEIL_ERR_MALFORMED)
            fail_msg("policy %s was accepted", bad[i]);
}

static void policy_pins(void **state) {
    (void)state;
    NEED_VECTORS();
    const char *q = DQ "sample_tdx_quote";
    const int64_t at = 1752919234;
    /* MRTD and RTMR0 of this quote (EXPECTED_PARSE.json), and a wrong value */
    const char *mrtd = "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7";
    const char *rtmr0 = "44c0197b39157fdd7a4dcc44767f9d6b0bb3977c7a8e347b8492f827fe9d9e5c48aca29b220b80b6a540cf994b9bc9c0";
    char doc[1024];
    veil_quote_policy p;
    char docs[5][1024];
    snprintf(docs[0], sizeof docs[0], "{\"mrtd\":\"%s\"}", mrtd);
    snprintf(docs[1], sizeof docs[1], "{\"mrtd\":[\"00%.94s\",\"%s\"]}", mrtd, mrtd);
    snprintf(docs[2], sizeof docs[2], "{\"rtmr0\":\"%s\"}", mrtd); /* MRTD's value is not RTMR0's */
    snprintf(docs[3], sizeof docs[3], "{\"rtmr3\":\"%s\"}", mrtd);
    snprintf(docs[4], sizeof docs[4], "{\"report_data\":\"%s%.32s\"}", mrtd, mrtd);
    const veil_quote_code want[5] = {VEIL_QUOTE_OK, VEIL_QUOTE_OK, VEIL_QUOTE_MEASUREMENT_MISMATCH,
                                     VEIL_QUOTE_MEASUREMENT_MISMATCH, VEIL_QUOTE_MEASUREMENT_MISMATCH};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(veil_policy_parse(&p, docs[i], strlen(docs[i]), NULL), VEIL_OK);
        expect(verify(q, NULL, &p, NULL, at), want[i], NULL);
    }
    snprintf(doc, sizeof doc, "{\"rtmr0\":\"%s\",\"mrtd\":\"%s\"}", rtmr0, mrtd);
    assert_int_equal(veil_policy_parse(&p, doc, strlen(doc), NULL), VEIL_OK);
    expect(verify(q, NULL, &p, NULL, at), VEIL_QUOTE_OK, NULL);
    /* TEE_TCB_SVN 06 01 03 00…: a minimum of 07 in the first byte refuses it */
    const char *min = "{\"min_tee_tcb_svn\":\"07000000000000000000000000000000\"}";
    assert_int_equal(veil_policy_parse(&p, min, strlen(min), NULL), VEIL_OK);
    expect(verify(q, NULL, &p, NULL, at), VEIL_QUOTE_TEE_TCB_SVN_TOO_LOW, NULL);
    min = "{\"min_tee_tcb_svn\":\"06010300000000000000000000000000\"}";
    assert_int_equal(veil_policy_parse(&p, min, strlen(min), NULL), VEIL_OK);
    expect(verify(q, NULL, &p, NULL, at), VEIL_QUOTE_OK, NULL);
    /* this TD sets SEPT_VE_DISABLE (bit 28); a mask without it refuses the TD */
    const char *mask = "{\"td_attributes_allowed_mask\":\"8000000040000001\"}";
    assert_int_equal(veil_policy_parse(&p, mask, strlen(mask), NULL), VEIL_OK);
    expect(verify(q, NULL, &p, NULL, at), VEIL_QUOTE_TD_ATTRIBUTES_RESERVED, NULL);
    /* go-tdx-guest's SPR quote sets PKS (bit 30): allowed by default, refused without it */
    expect(verify(GT "tdx_prod_quote_SPR_E4.dat", NULL, NULL, NULL, 1688173200), VEIL_QUOTE_OK, NULL);
    mask = "{\"td_attributes_allowed_mask\":\"8000000090000001\"}";
    assert_int_equal(veil_policy_parse(&p, mask, strlen(mask), NULL), VEIL_OK);
    expect(verify(GT "tdx_prod_quote_SPR_E4.dat", NULL, &p, NULL, 1688173200), VEIL_QUOTE_TD_ATTRIBUTES_RESERVED, NULL);
}

/* The quote's own bytes for a pinned field, read through the public struct. */
static const uint8_t *field_of(const veil_quote *q, veil_pin_field f) {
    switch (f) {
    case VEIL_PIN_MRTD: return q->td.mr_td;
    case VEIL_PIN_RTMR0: return q->td.rtmr[0];
    case VEIL_PIN_RTMR1: return q->td.rtmr[1];
    case VEIL_PIN_RTMR2: return q->td.rtmr[2];
    case VEIL_PIN_RTMR3: return q->td.rtmr[3];
    case VEIL_PIN_MR_CONFIG_ID: return q->td.mr_config_id;
    case VEIL_PIN_MR_OWNER: return q->td.mr_owner;
    case VEIL_PIN_MR_OWNER_CONFIG: return q->td.mr_owner_config;
    case VEIL_PIN_REPORT_DATA: return q->td.report_data;
    case VEIL_PIN_TD_ATTRIBUTES: return q->td.td_attributes;
    case VEIL_PIN_XFAM: return q->td.xfam;
    case VEIL_PIN_MR_SEAM: return q->td.mr_seam;
    case VEIL_PIN_MR_SIGNER_SEAM: return q->td.mr_signer_seam;
    case VEIL_PIN_SEAM_ATTRIBUTES: return q->td.seam_attributes;
    case VEIL_PIN_QE_VENDOR_ID: return q->qe_vendor_id;
    default: fail_msg("unknown pin %d", (int)f);
    }
    return NULL;
}

/* Every pin accepts the quote's own value and refuses a one-bit change. */
static void every_pin(void **state) {
    (void)state;
    NEED_VECTORS();
    size_t n, len;
    uint8_t *file = read_vector("samples/nearai/model_intel_quote.derived.bin", &n), *buf;
    assert_int_equal(veil_quote_load(&buf, &len, file, n, NULL), VEIL_OK);
    free(file);
    veil_quote q;
    assert_int_equal(veil_quote_parse(&q, buf, len, NULL, NULL), VEIL_OK);
    for (int f = 0; f < VEIL_PIN_COUNT; f++) {
        size_t flen = veil_pin_len((veil_pin_field)f);
        uint8_t value[64];
        memcpy(value, field_of(&q, (veil_pin_field)f), flen);
        for (int flip = 0; flip < 2; flip++) {
            value[flen - 1] ^= (uint8_t)flip;
            char hex[129], doc[256];
            veil_hex_encode(hex, value, flen);
            snprintf(doc, sizeof doc, "{\"%s\":\"%s\"}", veil_pin_name((veil_pin_field)f), hex);
            veil_quote_policy p;
            assert_int_equal(veil_policy_parse(&p, doc, strlen(doc), NULL), VEIL_OK);
            veil_quote_options opts;
            veil_quote_options_init(&opts);
            opts.at = 1773532800;
            opts.policy = &p;
            veil_quote_verdict v;
            assert_int_equal(veil_quote_verify(&v, &q, &opts, NULL), VEIL_OK);
            veil_quote_code want = flip ? VEIL_QUOTE_MEASUREMENT_MISMATCH : VEIL_QUOTE_OK;
            if (v.code != want)
                fail_msg("pin %s (flip %d): got %s", veil_pin_name((veil_pin_field)f), flip, veil_quote_code_name(v.code));
            value[flen - 1] ^= (uint8_t)flip;
        }
    }
    free(buf);
}

/* CRLs are accepted as hex DER, base64 DER and PEM, with the same verdict. */
static void crl_encodings(void **state) {
    (void)state;
    NEED_VECTORS();
    for (int form = 0; form < 3; form++) {
        json_t *c = collateral_json(DQ "sample_tdx_quote_collateral.json");
        const char *hex = json_string_value(json_object_get(c, "pck_crl"));
        size_t der_len = strlen(hex) / 2;
        uint8_t *der = malloc(der_len);
        assert_int_equal(veil_hex_decode(der, der_len, NULL, hex, strlen(hex), NULL), VEIL_OK);
        char *b64 = malloc(der_len * 2 + 8);
        EVP_EncodeBlock((unsigned char *)b64, der, (int)der_len);
        if (form == 1) {
            json_object_set_new(c, "pck_crl", json_string(b64));
        } else if (form == 2) {
            BIO *bio = BIO_new(BIO_s_mem());
            const unsigned char *p = der;
            X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)der_len);
            assert_non_null(crl);
            PEM_write_bio_X509_CRL(bio, crl);
            char *pem;
            long pem_len = BIO_get_mem_data(bio, &pem);
            json_object_set_new(c, "pck_crl", json_stringn(pem, (size_t)pem_len));
            X509_CRL_free(crl);
            BIO_free(bio);
        }
        free(b64);
        free(der);
        expect(verify(DQ "sample_tdx_quote", c, NULL, NULL, 1752919234), VEIL_QUOTE_OK, "UpToDate");
    }
}

static veil_event_log *load_log(const char *rel) {
    size_t n;
    uint8_t *b = read_vector(rel, &n);
    veil_event_log *log = NULL;
    veil_err err;
    if (veil_event_log_parse(&log, b, n, &err) != VEIL_OK)
        fail_msg("%s: %s", rel, err.message);
    free(b);
    return log;
}

/* Writes a JSON member of a JSON file as a standalone file and loads it as a log. */
static veil_event_log *load_member_log(const char *rel, const char *k1, const char *k2) {
    json_error_t jerr;
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", vectors_dir(), rel);
    json_t *root = json_load_file(path, 0, &jerr);
    assert_non_null(root);
    json_t *v = json_object_get(root, k1);
    if (k2)
        v = json_object_get(json_is_array(v) ? json_array_get(v, 0) : v, k2);
    char *s = json_dumps(v, JSON_ENCODE_ANY);
    veil_event_log *log = NULL;
    veil_err err;
    if (veil_event_log_parse(&log, (const uint8_t *)s, strlen(s), &err) != VEIL_OK)
        fail_msg("%s: %s", rel, err.message);
    free(s);
    json_decref(root);
    return log;
}

static void event_logs_replay(void **state) {
    (void)state;
    NEED_VECTORS();
    const int64_t now = 1773532800;
    veil_event_log *log = load_log("tdx/dstack/sdk_simulator_eventlog.json");
    expect(verify("tdx/dstack/sdk_simulator_quote.hex", NULL, NULL, log, now), VEIL_QUOTE_OK, NULL);
    /* the same log against another TD's quote */
    expect(verify("tdx/dstack/examples_attestation_report.quote.derived.bin", NULL, NULL, log, now),
           VEIL_QUOTE_MEASUREMENT_MISMATCH, NULL);
    veil_event_log_free(log);

    log = load_member_log("tdx/dstack/examples_attestation_report.json", "event_log", NULL);
    expect(verify("tdx/dstack/examples_attestation_report.quote.derived.bin", NULL, NULL, log, now), VEIL_QUOTE_OK, NULL);
    veil_event_log_free(log);

    log = load_member_log("samples/nearai/nearai_cloud_report_openai_gpt_oss_120b.json", "model_attestations", "event_log");
    expect(verify("samples/nearai/model_intel_quote.derived.bin", NULL, NULL, log, now), VEIL_QUOTE_OK, NULL);
    veil_event_log_free(log);
    log = load_member_log("samples/nearai/nearai_cloud_report_openai_gpt_oss_120b.json", "gateway_attestation", "event_log");
    expect(verify("samples/nearai/gateway_intel_quote.derived.bin", NULL, NULL, log, now), VEIL_QUOTE_OK, NULL);
    /* one more runtime event changes RTMR3 */
    assert_int_equal(veil_event_log_add_runtime(log, "extra", (const uint8_t *)"x", 1, NULL), VEIL_OK);
    outcome o = verify("samples/nearai/gateway_intel_quote.derived.bin", NULL, NULL, log, now);
    expect(o, VEIL_QUOTE_MEASUREMENT_MISMATCH, NULL);
    assert_non_null(strstr(o.v.message, "RTMR3"));
    veil_event_log_free(log);

    /* the binary CCEL log replays into RTMR0..3 of its quote */
    log = load_log(GT "ccel_ccel_data.dat");
    assert_int_equal(veil_event_log_count(log), 43);
    expect(verify(GT "ccel_cos-113-tdx-quote.dat", NULL, NULL, log, now), VEIL_QUOTE_OK, NULL);
    veil_event_log_free(log);
    log = load_log("tdx/dstack/cc-eventlog_samples_ccel.bin");
    assert_true(veil_event_log_count(log) > 0);
    veil_event_log_free(log);
}

static void event_log_malformed(void **state) {
    (void)state;
    veil_event_log *log = NULL;
    veil_err err;
    const char *bad[] = {
        "[{\"imr\":4,\"event_type\":1,\"digest\":\"00\",\"event\":\"\",\"event_payload\":\"\"}]",
        "[{\"imr\":3,\"event_type\":134217729,\"digest\":\"" "000000000000000000000000000000000000000000000000"
        "000000000000000000000000000000000000000000000000\",\"event\":\"forged\",\"event_payload\":\"\"}]",
        "[{\"imr\":3}]", "{\"imr\":3}", "[1]", "\"not a log\"",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (veil_event_log_parse(&log, (const uint8_t *)bad[i], strlen(bad[i]), &err) != VEIL_ERR_MALFORMED)
            fail_msg("log %zu was accepted", i);
    assert_non_null(strstr(err.message, "not a JSON array"));
    uint8_t junk[64];
    memset(junk, 0xab, sizeof junk);
    assert_int_equal(veil_event_log_parse(&log, junk, sizeof junk, &err), VEIL_ERR_MALFORMED);
    assert_int_equal(veil_event_log_parse(&log, junk, 0, &err), VEIL_ERR_MALFORMED);
    /* a log built here round-trips through JSON with the same replay */
    veil_event_log *mine = veil_event_log_new();
    assert_int_equal(veil_event_log_add_runtime(mine, "app-id", (const uint8_t *)"\x01\x02", 2, NULL), VEIL_OK);
    assert_int_equal(veil_event_log_add_runtime(mine, "compose-hash", NULL, 0, NULL), VEIL_OK);
    char *json = veil_event_log_to_json(mine);
    assert_non_null(json);
    assert_int_equal(veil_event_log_parse(&log, (const uint8_t *)json, strlen(json), &err), VEIL_OK);
    uint8_t a[4][48], b[4][48];
    unsigned ma, mb;
    veil_event_log_replay(mine, a, &ma);
    veil_event_log_replay(log, b, &mb);
    assert_int_equal(ma, 8);
    assert_int_equal(mb, 8);
    assert_memory_equal(a, b, sizeof a);
    free(json);
    veil_event_log_free(log);
    veil_event_log_free(mine);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stated_verdicts),  cmocka_unit_test(tampered_collateral),
        cmocka_unit_test(chain_from_collateral), cmocka_unit_test(every_pin), cmocka_unit_test(crl_encodings),
        cmocka_unit_test(policy_parsing),   cmocka_unit_test(policy_pins),
        cmocka_unit_test(event_logs_replay), cmocka_unit_test(event_log_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
