/* Unit tests for DCAP quote parsing and verification without collateral,
 * against the real Intel-signed quotes in the shared vectors (read from
 * $VEIL_VECTORS or ../shared/vectors; skipped with a message when absent). */
#include "testutil.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <time.h>

#include "veil/quote.h"

/* Loads vectors/<rel> through veil_quote_load (binary or hex). */
static uint8_t *load(const char *rel, size_t *len) {
    size_t n;
    uint8_t *file = read_vector(rel, &n), *buf;
    assert_int_equal(veil_quote_load(&buf, len, file, n, NULL), VEIL_OK);
    free(file);
    return buf;
}

static void expect_hex(json_t *want, const char *key, const uint8_t *got, size_t n) {
    const char *w = json_string_value(json_object_get(want, key));
    if (!w)
        return; /* not stated for this quote */
    char *h = veil_hex_encode_alloc(got, n);
    if (strcmp(h, w) != 0)
        fail_msg("%s: got %s, want %s", key, h, w);
    free(h);
}

static void expect_int(json_t *want, const char *key, long long got) {
    json_t *w = json_object_get(want, key);
    if (!w)
        return;
    if (json_integer_value(w) != got)
        fail_msg("%s: got %lld, want %lld", key, got, (long long)json_integer_value(w));
}

static int64_t parse_time(const char *iso) {
    struct tm tm = {0};
    assert_non_null(strptime(iso, "%Y-%m-%dT%H:%M:%S", &tm));
    return (int64_t)timegm(&tm);
}

/* Every quote parses to EXPECTED_PARSE.json and verifies, chain and all,
 * against the pinned Intel root a day after its PCK certificate was issued. */
static void real_quotes_parse_and_verify(void **state) {
    (void)state;
    NEED_VECTORS();
    char path[1100];
    snprintf(path, sizeof path, "%s/EXPECTED_PARSE.json", vectors_dir());
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    assert_non_null(root);
    json_t *quotes = json_object_get(root, "quotes");
    assert_true(json_object_size(quotes) >= 10);
    const char *name;
    json_t *want;
    json_object_foreach(quotes, name, want) {
        size_t len;
        uint8_t *buf = load(name, &len);
        veil_quote q;
        veil_quote_code why;
        veil_err err;
        if (veil_quote_parse(&q, buf, len, &why, &err) != VEIL_OK)
            fail_msg("%s: %s", name, err.message);
        expect_int(want, "version", q.version);
        expect_int(want, "att_key_type", q.att_key_type);
        char tee[16];
        snprintf(tee, sizeof tee, "0x%x", q.tee_type);
        if (strcmp(tee, json_string_value(json_object_get(want, "tee_type"))) != 0 &&
            !(q.tee_type == 0 && !strcmp(json_string_value(json_object_get(want, "tee_type")), "0x00")))
            fail_msg("%s: tee_type %s", name, tee);
        if (q.body_type != VEIL_BODY_SGX) {
            expect_hex(want, "tee_tcb_svn", q.td.tee_tcb_svn, 16);
            expect_hex(want, "mr_seam", q.td.mr_seam, 48);
            expect_hex(want, "mr_signer_seam", q.td.mr_signer_seam, 48);
            expect_hex(want, "seam_attributes", q.td.seam_attributes, 8);
            expect_hex(want, "td_attributes", q.td.td_attributes, 8);
            expect_hex(want, "xfam", q.td.xfam, 8);
            expect_hex(want, "mr_td", q.td.mr_td, 48);
            expect_hex(want, "mr_config_id", q.td.mr_config_id, 48);
            expect_hex(want, "mr_owner", q.td.mr_owner, 48);
            expect_hex(want, "mr_owner_config", q.td.mr_owner_config, 48);
            expect_hex(want, "rtmr0", q.td.rtmr[0], 48);
            expect_hex(want, "rtmr1", q.td.rtmr[1], 48);
            expect_hex(want, "rtmr2", q.td.rtmr[2], 48);
            expect_hex(want, "rtmr3", q.td.rtmr[3], 48);
            expect_hex(want, "report_data", q.td.report_data, 64);
            json_t *dbg = json_object_get(want, "td_debug");
            if (dbg)
                assert_int_equal(json_is_true(dbg), q.td.td_attributes[0] & 1);
        } else {
            expect_hex(want, "mr_enclave", q.enclave.mr_enclave, 32);
            expect_hex(want, "mr_signer", q.enclave.mr_signer, 32);
            expect_hex(want, "report_data", q.enclave.report_data, 64);
        }
        expect_int(want, "sig_data_len", q.sig_data_len);
        expect_int(want, "trailing_bytes", (long long)q.trailing_len);
        expect_int(want, "inner_cert_type", q.chain_type);
        expect_int(want, "qe_auth_data_len", q.qe_auth_len);
        expect_hex(want, "qe_mrsigner", q.qe_report.mr_signer, 32);
        expect_int(want, "qe_isvprodid", q.qe_report.isv_prod_id);
        expect_int(want, "qe_isvsvn", q.qe_report.isv_svn);

        veil_quote_options opts;
        veil_quote_options_init(&opts);
        opts.at = parse_time(json_string_value(json_object_get(want, "pck_not_before"))) + 86400;
        veil_quote_verdict v;
        assert_int_equal(veil_quote_verify(&v, &q, &opts, NULL), VEIL_OK);
        if (v.code != VEIL_QUOTE_OK)
            fail_msg("%s: %s: %s", name, veil_quote_code_name(v.code), v.message);
        assert_true(v.has_pck);
        expect_hex(want, "fmspc", v.pck.fmspc, 6);
        /* before the PCK certificate existed, the same quote is refused */
        opts.at -= 2 * 86400;
        assert_int_equal(veil_quote_verify(&v, &q, &opts, NULL), VEIL_OK);
        assert_int_equal(v.code, VEIL_QUOTE_CERT_EXPIRED);
        free(buf);
    }
    json_decref(root);
}

static veil_quote_code verdict_of(const uint8_t *buf, size_t len, int64_t at) {
    veil_quote q;
    veil_quote_code why;
    if (veil_quote_parse(&q, buf, len, &why, NULL) != VEIL_OK)
        return why;
    veil_quote_options opts;
    veil_quote_options_init(&opts);
    opts.at = at;
    veil_quote_verdict v;
    assert_int_equal(veil_quote_verify(&v, &q, &opts, NULL), VEIL_OK);
    return v.code;
}

#define SPR "tdx/go-tdx-guest/tdx_prod_quote_SPR_E4.dat"
#define SPR_AT 1688173200 /* 2023-07-01T01:00:00Z, go-tdx-guest's test time */

/* One-byte changes in each region of a real quote, each refused with the
 * code for that region (offsets from protocol.md §5 and go-tdx-guest's
 * TestNegativeVerification). */
static void mutations_are_refused(void **state) {
    (void)state;
    NEED_VECTORS();
    size_t len;
    uint8_t *buf = load(SPR, &len);
    assert_int_equal(verdict_of(buf, len, SPR_AT), VEIL_QUOTE_OK);
    static const struct {
        size_t offset;
        uint8_t value; /* 0: flip the low bit instead */
        veil_quote_code want;
        const char *region;
    } cases[] = {
        {0x00, 7, VEIL_QUOTE_UNSUPPORTED_VERSION, "version"},
        {0x02, 3, VEIL_QUOTE_UNSUPPORTED_KEY_TYPE, "attestation key type"},
        {0x04, 0x82, VEIL_QUOTE_UNSUPPORTED_TEE_TYPE, "TEE type"},
        {0x1E, 0x32, VEIL_QUOTE_SIGNATURE_INVALID, "header user data"},
        {0x3C, 0x32, VEIL_QUOTE_SIGNATURE_INVALID, "TEE_TCB_SVN"},
        {168, 0, VEIL_QUOTE_SIGNATURE_INVALID, "TD attributes (debug bit)"},
        {184, 0, VEIL_QUOTE_SIGNATURE_INVALID, "MRTD"},
        {568, 0, VEIL_QUOTE_SIGNATURE_INVALID, "REPORTDATA"},
        {0x278, 0x10, VEIL_QUOTE_TRUNCATED, "signature data length"},
        {640, 0, VEIL_QUOTE_SIGNATURE_INVALID, "quote signature"},
        {705, 0, VEIL_QUOTE_SIGNATURE_INVALID, "attestation key"},
        {770 + 258, 0, VEIL_QUOTE_QE_REPORT_SIGNATURE_INVALID, "QE report ISVSVN"},
        {770 + 330, 0, VEIL_QUOTE_AK_BINDING_INVALID, "QE report data"},
        {1160, 0, VEIL_QUOTE_QE_REPORT_SIGNATURE_INVALID, "QE report signature"},
        {1225, 0, VEIL_QUOTE_AK_BINDING_INVALID, "QE auth data"},
        {0xB77, 0x32, VEIL_QUOTE_PCK_CHAIN_INVALID, "PCK leaf certificate"},
        {0xF5F, 0x32, VEIL_QUOTE_PCK_CHAIN_INVALID, "intermediate CA certificate"},
        {0x1329, 0x32, VEIL_QUOTE_ROOT_NOT_TRUSTED, "root CA certificate"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *m = malloc(len);
        memcpy(m, buf, len);
        m[cases[i].offset] = cases[i].value ? cases[i].value : (uint8_t)(m[cases[i].offset] ^ 1);
        assert_int_not_equal(m[cases[i].offset], buf[cases[i].offset]);
        veil_quote_code got = verdict_of(m, len, SPR_AT);
        if (got != cases[i].want)
            fail_msg("%s (offset %#zx): got %s, want %s", cases[i].region, cases[i].offset,
                     veil_quote_code_name(got), veil_quote_code_name(cases[i].want));
        free(m);
    }
    /* the go-tdx-guest expiry case: the PCK certificate ends in 2029 */
    assert_int_equal(verdict_of(buf, len, 2635030800LL), VEIL_QUOTE_CERT_EXPIRED);
    free(buf);
}

/* The PCK extension values go-tdx-guest's TestPckCertificateExtensions states. */
static void pck_extension(void **state) {
    (void)state;
    NEED_VECTORS();
    size_t len;
    uint8_t *buf = load(SPR, &len);
    veil_quote q;
    assert_int_equal(veil_quote_parse(&q, buf, len, NULL, NULL), VEIL_OK);
    veil_quote_options opts;
    veil_quote_options_init(&opts);
    opts.at = SPR_AT;
    veil_quote_verdict v;
    assert_int_equal(veil_quote_verify(&v, &q, &opts, NULL), VEIL_OK);
    assert_true(v.has_pck);
    uint8_t want[16];
    unhex(want, 16, "089ddfdb9c0359c82a3bc7719239574e");
    assert_memory_equal(v.pck.ppid, want, 16);
    unhex(want, 6, "50806f000000");
    assert_memory_equal(v.pck.fmspc, want, 6);
    assert_int_equal(v.pck.pceid[0] | v.pck.pceid[1], 0);
    assert_int_equal(v.pck.pcesvn, 11);
    unhex(want, 16, "03030202020100020000000000000000");
    assert_memory_equal(v.pck.cpusvn, want, 16);
    free(buf);
}

/* Every prefix of a quote is refused as truncated, never read past its end. */
static void truncations_are_refused(void **state) {
    (void)state;
    NEED_VECTORS();
    const char *files[] = {SPR, "tdx/dcap-qvl/sample_sgx_quote", "tdx/go-tdx-guest/quote_v5_sample.dat"};
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        size_t len;
        uint8_t *buf = load(files[f], &len);
        veil_quote q;
        veil_quote_code why;
        assert_int_equal(veil_quote_parse(&q, buf, len, &why, NULL), VEIL_OK);
        size_t end = len - q.trailing_len;
        for (size_t n = 0; n < end; n++) {
            uint8_t *p = malloc(n ? n : 1); /* exact size, so ASan sees any overread */
            memcpy(p, buf, n);
            veil_err err;
            assert_int_equal(veil_quote_parse(&q, p, n, &why, &err), VEIL_ERR_MALFORMED);
            assert_int_equal(why, VEIL_QUOTE_TRUNCATED);
            free(p);
        }
        free(buf);
    }
}

static void synthetic_quote_needs_its_own_root(void **state) {
    (void)state;
    NEED_VECTORS();
    size_t len;
    uint8_t *buf = load("tdx/intel_qvl_synthetic/tdx/quote.dat", &len);
    veil_quote q;
    assert_int_equal(veil_quote_parse(&q, buf, len, NULL, NULL), VEIL_OK);
    veil_quote_options opts;
    veil_quote_options_init(&opts);
    opts.at = 1735689600; /* 2025-01-01: inside the synthetic certificates' validity */
    veil_quote_verdict v;
    assert_int_equal(veil_quote_verify(&v, &q, &opts, NULL), VEIL_OK);
    assert_int_equal(v.code, VEIL_QUOTE_ROOT_NOT_TRUSTED);
    /* Pin the synthetic root (same name as Intel's, different key): accepted. */
    char path[1200];
    snprintf(path, sizeof path, "%s/tdx/intel_qvl_synthetic/tdx/trustedRootCaCert.pem", vectors_dir());
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    X509 *root = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(root);
    unsigned char *der = NULL;
    int n = i2d_X509(root, &der);
    assert_true(n > 0);
    EVP_Digest(der, (size_t)n, opts.root_sha256, NULL, EVP_sha256(), NULL);
    assert_int_equal(veil_quote_verify(&v, &q, &opts, NULL), VEIL_OK);
    assert_int_equal(v.code, VEIL_QUOTE_OK);
    OPENSSL_free(der);
    X509_free(root);
    free(buf);
}

static void malformed_headers(void **state) {
    (void)state;
    uint8_t buf[700] = {0};
    veil_quote q;
    veil_quote_code why;
    assert_int_equal(veil_quote_parse(&q, buf, 0, &why, NULL), VEIL_ERR_MALFORMED);
    assert_int_equal(why, VEIL_QUOTE_TRUNCATED);
    buf[0] = 4;
    buf[2] = 2;
    buf[4] = 0x81;
    assert_int_equal(veil_quote_parse(&q, buf, sizeof buf, &why, NULL), VEIL_ERR_MALFORMED);
    assert_int_equal(why, VEIL_QUOTE_TRUNCATED); /* zero-length signature data */
    buf[0] = 5; /* v5 with a body type that does not match its size */
    buf[48] = 2;
    buf[50] = 0x48; /* 584 = 0x248 needs buf[51] = 2 */
    assert_int_equal(veil_quote_parse(&q, buf, sizeof buf, &why, NULL), VEIL_ERR_MALFORMED);
    assert_int_equal(why, VEIL_QUOTE_MALFORMED);
    buf[0] = 2;
    assert_int_equal(veil_quote_parse(&q, buf, sizeof buf, &why, NULL), VEIL_ERR_MALFORMED);
    assert_int_equal(why, VEIL_QUOTE_UNSUPPORTED_VERSION);
    /* hex loading: 0x prefix, whitespace, either case */
    uint8_t *out;
    size_t n;
    const char *text = "  0xDEADbeef\n";
    assert_int_equal(veil_quote_load(&out, &n, (const uint8_t *)text, strlen(text), NULL), VEIL_OK);
    assert_int_equal(n, 4);
    assert_int_equal(out[0], 0xde);
    free(out);
    const uint8_t bin[3] = {0x04, 0x00, 0xff};
    assert_int_equal(veil_quote_load(&out, &n, bin, 3, NULL), VEIL_OK);
    assert_int_equal(n, 3);
    assert_memory_equal(out, bin, 3);
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(real_quotes_parse_and_verify),
        cmocka_unit_test(mutations_are_refused),
        cmocka_unit_test(pck_extension),
        cmocka_unit_test(truncations_are_refused),
        cmocka_unit_test(synthetic_quote_needs_its_own_root),
        cmocka_unit_test(malformed_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
