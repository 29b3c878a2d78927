/* Unit tests of NVIDIA GPU evidence: every GPU and NVSwitch report of the
 * shared vectors verifies with its nonce; invalid signatures, wrong nonces,
 * other roots, expired chains and measurement mismatches get their codes;
 * RIM comparison on the legacy set; malformed SPDM reports; the simulated
 * GPU. */
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "veil/nvidia.h"

#define SDK "nvidia/attestation-sdk/nv-attestation-sdk-cpp/unit-tests/testdata/"
#define NVT "nvidia/nvtrust_local_gpu_verifier/"
#define N931 "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb"

static void nonce_of(const char *hex, uint8_t out[32]) { assert_int_equal(unhex(out, 32, hex), 32); }

/* A payload from a JSON vector. */
static void load_json(const char *rel, veil_gpu_payload *p) {
    size_t n;
    uint8_t *d = read_vector(rel, &n);
    assert_non_null(d);
    assert_int_equal(veil_gpu_payload_parse(p, (const char *)d, n, NULL), VEIL_OK);
    free(d);
}

/* A one-item payload from a hex report and a PEM chain. */
static void load_hex(const char *report, const char *chain, veil_gpu_payload *p) {
    size_t n, cn;
    uint8_t *hex = read_vector(report, &n), *pem = read_vector(chain, &cn);
    assert_non_null(hex);
    assert_non_null(pem);
    while (n && (hex[n - 1] == '\n' || hex[n - 1] == '\r' || hex[n - 1] == ' ')) n--;
    memset(p, 0, sizeof *p);
    p->items = calloc(1, sizeof *p->items);
    p->items[0].report = malloc(n / 2);
    assert_int_equal(veil_hex_decode(p->items[0].report, n / 2, &p->items[0].report_len, (const char *)hex, n, NULL),
                     VEIL_OK);
    p->items[0].chain = pem;
    p->items[0].chain_len = cn;
    snprintf(p->items[0].arch, sizeof p->items[0].arch, "HOPPER");
    p->n = 1;
    free(hex);
}

/* Verifies and returns the code ("OK" when accepted). */
static const char *verdict(const veil_gpu_payload *p, const char *nonce_hex, int64_t at, const char *rim_dir,
                           veil_gpu_verdict *keep) {
    uint8_t nonce[32];
    veil_gpu_verify_opts o;
    memset(&o, 0, sizeof o);
    if (nonce_hex) {
        nonce_of(nonce_hex, nonce);
        o.nonce = nonce;
    }
    o.at = at;
    char dir[1200];
    if (rim_dir) {
        snprintf(dir, sizeof dir, "%s/%s", vectors_dir(), rim_dir);
        o.rim_dir = dir;
    }
    veil_gpu_verdict v;
    assert_int_equal(veil_gpu_verify(&v, p, &o, NULL), VEIL_OK);
    static char code[32];
    snprintf(code, sizeof code, "%s", v.accepted ? "OK" : v.code);
    if (!v.accepted) print_message("  %s\n", v.message);
    if (keep) *keep = v;
    else veil_gpu_verdict_clear(&v);
    return code;
}

static void test_payloads_verify(void **state) {
    (void)state;
    NEED_VECTORS();
    static const struct {
        const char *file, *nonce;
        size_t n;
    } cases[] = {
        {"samples/nearai/model_nvidia_payload.derived.json", NULL, 8},
        {"nvidia/nvtrust_ppcie/gpu_evidence.json", "4760e30534a0621357d458b1a7936551b5dc4cd1e69718adf7ed9fb0252a537e", 8},
        {"nvidia/nvtrust_ppcie/switch_evidence.json", "4760e30534a0621357d458b1a7936551b5dc4cd1e69718adf7ed9fb0252a537e", 4},
        {"nvidia/attestation-sdk/common-test-data/serialized_test_evidence/hopper_evidence.json", NULL, 1},
        {"nvidia/attestation-sdk/common-test-data/serialized_test_evidence/multi_gpu_hopper.json", NULL, 4},
        {"nvidia/attestation-sdk/common-test-data/serialized_test_evidence/hopper_evidence_cert_hold.json", N931, 1},
        {"nvidia/attestation-sdk/common-test-data/serialized_test_evidence/switch_evidence_ls10.json", N931, 1},
        {"nvidia/attestation-sdk/common-test-data/serialized_test_evidence/multi_switch_ls10.json", N931, 4},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        veil_gpu_payload p;
        load_json(cases[i].file, &p);
        assert_int_equal(p.n, cases[i].n);
        veil_gpu_verdict v;
        assert_string_equal(verdict(&p, cases[i].nonce, 0, NULL, &v), "OK");
        for (size_t k = 0; k < v.n; k++) assert_true(v.items[k].signature_ok && v.items[k].chain_ok && v.items[k].nonce_ok);
        veil_gpu_verdict_clear(&v);
        veil_gpu_payload_clear(&p);
    }
    /* the NEAR sample: 8 H100s, nonce deadbeef…01, driver 570.172.08, VBIOS 96.00.cf.00.02 */
    veil_gpu_payload p;
    load_json("samples/nearai/model_nvidia_payload.derived.json", &p);
    assert_true(p.has_nonce);
    assert_int_equal(p.nonce[0], 0xde);
    assert_int_equal(p.nonce[31], 0x01);
    veil_gpu_verdict v;
    assert_string_equal(verdict(&p, NULL, 0, NULL, &v), "OK");
    assert_string_equal(v.items[7].driver_version, "570.172.08");
    assert_string_equal(v.items[7].vbios_version, "96.00.cf.00.02");
    veil_gpu_verdict_clear(&v);
    /* a wrong nonce */
    assert_string_equal(verdict(&p, N931, 0, NULL, NULL), "NONCE_MISMATCH");
    /* the payload survives its own JSON form */
    char *json = veil_gpu_payload_json(&p);
    veil_gpu_payload q;
    assert_int_equal(veil_gpu_payload_parse(&q, json, strlen(json), NULL), VEIL_OK);
    assert_int_equal(q.n, 8);
    assert_memory_equal(q.nonce, p.nonce, 32);
    assert_int_equal(q.items[3].report_len, p.items[3].report_len);
    assert_memory_equal(q.items[3].report, p.items[3].report, p.items[3].report_len);
    assert_string_equal(verdict(&q, NULL, 0, NULL, NULL), "OK");
    free(json);
    veil_gpu_payload_clear(&q);
    veil_gpu_payload_clear(&p);
}

static void test_reports_and_failures(void **state) {
    (void)state;
    NEED_VECTORS();
    veil_gpu_payload p;
    veil_gpu_verdict v;
    load_hex(NVT "hopperAttestationReport.txt", NVT "hopperCertChain.txt", &p);
    assert_string_equal(verdict(&p, N931, 0, NULL, &v), "OK");
    assert_string_equal(v.items[0].driver_version, "550.90.07");
    assert_string_equal(v.items[0].vbios_version, "96.00.9f.00.01");
    veil_gpu_verdict_clear(&v);
    /* evaluated before the chain's certificates were issued (they run to 9999) */
    assert_string_equal(verdict(&p, N931, 946684800LL, NULL, NULL), "CERT_EXPIRED");
    veil_gpu_payload_clear(&p);
    load_hex(SDK "sample_attestation_data/gpu/blackwellAttestationReport.txt",
             SDK "sample_attestation_data/gpu/blackwellCertChain.txt", &p);
    assert_string_equal(verdict(&p, N931, 0, NULL, &v), "OK");
    assert_string_equal(v.items[0].driver_version, "575.32");
    veil_gpu_verdict_clear(&v);
    veil_gpu_payload_clear(&p);
    load_hex(SDK "sample_attestation_data/switch/switchAttestationReport.txt",
             SDK "sample_attestation_data/switch/switchCertChain.txt", &p);
    assert_string_equal(verdict(&p, N931, 0, NULL, &v), "OK");
    assert_string_equal(v.items[0].vbios_version, "96.10.55.00.01");
    veil_gpu_verdict_clear(&v);
    veil_gpu_payload_clear(&p);
    /* attestation-sdk's invalid signatures */
    load_hex(SDK "sample_attestation_data/gpu/hopperAttestationReportInvalidSignature.txt",
             SDK "sample_attestation_data/gpu/hopperCertChain.txt", &p);
    assert_string_equal(verdict(&p, N931, 0, NULL, NULL), "SIGNATURE_INVALID");
    veil_gpu_payload_clear(&p);
    load_hex(SDK "sample_attestation_data/switch/switchAttestationReportInvalidSignature.txt",
             SDK "sample_attestation_data/switch/switchCertChain.txt", &p);
    assert_string_equal(verdict(&p, "ea038ed507a451e005bae91186bc9403150a3cb8971fdebd05ffed65eeb6a997", 0, NULL, NULL),
                        "SIGNATURE_INVALID");
    veil_gpu_payload_clear(&p);
    /* the sample GPU report: nonce 27a3…; a zero nonce is refused */
    load_hex(SDK "sample_attestation_data/gpu/hopperAttestationReport.txt",
             SDK "sample_attestation_data/gpu/hopperCertChain.txt", &p);
    assert_string_equal(verdict(&p, "27a328247bf7935c993341cf587be6f05986ccce4fe7ba2c54100bd616a58f66", 0, NULL, &v), "OK");
    assert_string_equal(v.items[0].driver_version, "535.86.09");
    veil_gpu_verdict_clear(&v);
    assert_string_equal(verdict(&p, "0000000000000000000000000000000000000000000000000000000000000000", 0, NULL, NULL),
                        "NONCE_MISMATCH");
    /* with attestation-sdk's measurement-mismatch RIMs */
    assert_string_equal(verdict(&p, "27a328247bf7935c993341cf587be6f05986ccce4fe7ba2c54100bd616a58f66", 0,
                                SDK "sample_rims", &v),
                        "MEASUREMENT_MISMATCH");
    assert_true(v.items[0].rims_checked && v.items[0].mismatches > 0);
    veil_gpu_verdict_clear(&v);
    /* a chain verified against another root */
    veil_gpu_provider *sim;
    char dir[] = "/tmp/veil-test-nvidia-XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(veil_gpu_sim_open(&sim, dir, NULL), VEIL_OK);
    veil_gpu_verify_opts o;
    memset(&o, 0, sizeof o);
    uint8_t nonce[32];
    nonce_of("27a328247bf7935c993341cf587be6f05986ccce4fe7ba2c54100bd616a58f66", nonce);
    o.nonce = nonce;
    o.root_der = veil_gpu_sim_root(sim, &o.root_der_len);
    assert_int_equal(veil_gpu_verify(&v, &p, &o, NULL), VEIL_OK);
    assert_false(v.accepted);
    assert_string_equal(v.code, "ROOT_NOT_TRUSTED");
    veil_gpu_verdict_clear(&v);
    veil_gpu_payload_clear(&p);
    veil_gpu_provider_free(sim);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_rims_legacy(void **state) {
    (void)state;
    NEED_VECTORS();
    veil_gpu_payload p;
    veil_gpu_verdict v;
    load_hex(NVT "legacy_v1/attestationReport.txt", NVT "legacy_v1/gpuAkCertChain.txt", &p);
    /* its chain is from 2023: evaluate then */
    assert_string_equal(verdict(&p, "4cff7f5380ead8fad8ec2c531c110aca4302a88f603792801a8ca29ee151af2e", 1690200000LL,
                                NVT "rims", &v),
                        "OK");
    assert_int_equal(v.items[0].compared, 33);
    assert_int_equal(v.items[0].mismatches, 0);
    assert_string_equal(v.items[0].driver_version, "545.00");
    veil_gpu_verdict_clear(&v);
    veil_gpu_payload_clear(&p);
}

static void test_spdm_malformed(void **state) {
    (void)state;
    NEED_VECTORS();
    veil_gpu_payload p;
    load_hex(SDK "hopperAttestationReport.txt", SDK "hopperCertChain.txt", &p);
    const uint8_t *r = p.items[0].report;
    size_t n = p.items[0].report_len;
    veil_spdm_report *rep = malloc(sizeof *rep);
    veil_err err;
    assert_int_equal(veil_spdm_parse(rep, r, n, &err), VEIL_OK);
    assert_int_equal(rep->n_blocks, 64);
    assert_int_equal(rep->record_len, 3520);
    assert_int_equal(rep->opaque_len, 435);
    assert_string_equal(rep->driver_version, "580.159.03");
    assert_string_equal(rep->vbios_version, "96.00.74.00.20");
    for (size_t k = 0; k < n; k += (k < 200 ? 1 : 37)) { /* every prefix refused */
        assert_int_equal(veil_spdm_parse(rep, r, k, &err), VEIL_ERR_MALFORMED);
        assert_true(strlen(err.message) > 0);
    }
    uint8_t *m = malloc(n + 1);
    static const size_t fields[] = {1, 37 + 1, 37 + 4, 37 + 5, 37 + 7, 37 + 8 + 2, 37 + 8 + 3};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        memcpy(m, r, n);
        m[fields[i]] ^= 0x5a;
        assert_int_equal(veil_spdm_parse(rep, m, n, &err), VEIL_ERR_MALFORMED);
    }
    memcpy(m, r, n);
    m[n] = 0; /* one byte too many where the signature ends */
    assert_int_equal(veil_spdm_parse(rep, m, n + 1, &err), VEIL_ERR_MALFORMED);
    free(m);
    free(rep);
    veil_gpu_payload_clear(&p);
    /* payload JSON that is not one */
    static const char *const bad[] = {"", "{}", "[]", "{\"evidence_list\":[{\"certificate\":1}]}",
                                      "{\"nonce\":\"zz\",\"evidence_list\":[{\"certificate\":\"QQ==\",\"evidence\":\"QQ==\"}]}",
                                      "\"not json inside\"", "[{\"certificate\":\"!!!\",\"evidence\":\"QQ==\"}]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        veil_gpu_payload q;
        assert_int_equal(veil_gpu_payload_parse(&q, bad[i], strlen(bad[i]), &err), VEIL_ERR_MALFORMED);
    }
}

static void test_simulated_gpu(void **state) {
    (void)state;
    char dir[] = "/tmp/veil-test-simgpu-XXXXXX";
    assert_non_null(mkdtemp(dir));
    veil_gpu_provider *g;
    assert_int_equal(veil_gpu_sim_open(&g, dir, NULL), VEIL_OK);
    assert_true(veil_gpu_provider_simulated(g));
    uint8_t nonce[32];
    for (int i = 0; i < 32; i++) nonce[i] = (uint8_t)(i * 7);
    veil_gpu_payload p;
    assert_int_equal(veil_gpu_provider_evidence(g, &p, nonce, NULL), VEIL_OK);
    veil_gpu_verify_opts o;
    memset(&o, 0, sizeof o);
    o.nonce = nonce;
    veil_gpu_verdict v;
    assert_int_equal(veil_gpu_verify(&v, &p, &o, NULL), VEIL_OK); /* NVIDIA's root: refused */
    assert_false(v.accepted);
    assert_string_equal(v.code, "ROOT_NOT_TRUSTED");
    veil_gpu_verdict_clear(&v);
    o.root_der = veil_gpu_sim_root(g, &o.root_der_len); /* the simulation root: accepted */
    assert_int_equal(veil_gpu_verify(&v, &p, &o, NULL), VEIL_OK);
    assert_true(v.accepted);
    assert_string_equal(v.items[0].driver_version, "veil-sim-1.0");
    veil_gpu_verdict_clear(&v);
    /* a flipped byte in a measurement breaks the signature */
    p.items[0].report[37 + 8 + 10] ^= 1;
    assert_int_equal(veil_gpu_verify(&v, &p, &o, NULL), VEIL_OK);
    assert_string_equal(v.code, "SIGNATURE_INVALID");
    veil_gpu_verdict_clear(&v);
    veil_gpu_payload_clear(&p);
    /* a second open reuses the stored root */
    size_t n1, n2;
    const uint8_t *r1 = veil_gpu_sim_root(g, &n1);
    veil_gpu_provider *g2;
    assert_int_equal(veil_gpu_sim_open(&g2, dir, NULL), VEIL_OK);
    const uint8_t *r2 = veil_gpu_sim_root(g2, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(r1, r2, n1);
    veil_gpu_provider_free(g2);
    veil_gpu_provider_free(g);
    /* NVML is not here (or not in CC mode): a clear error either way */
    veil_gpu_provider *nv = NULL;
    veil_err err;
    char info[600];
    if (veil_gpu_nvml_open(&nv, info, sizeof info, &err) != VEIL_OK) {
        assert_null(nv);
        assert_non_null(strstr(err.message, "NVML"));
    } else {
        veil_gpu_provider_free(nv);
    }
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_payloads_verify),   cmocka_unit_test(test_reports_and_failures),
        cmocka_unit_test(test_rims_legacy),       cmocka_unit_test(test_spdm_malformed),
        cmocka_unit_test(test_simulated_gpu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
