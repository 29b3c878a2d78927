/* Unit tests for the simulated TDX platform: its quotes and collateral go
 * through the full verifier against the simulation root, and are refused
 * with Intel's root, with the debug bit, with a wrong pin, after byte flips,
 * and with a revoked PCK certificate. */
#include "testutil.h"

#include <openssl/evp.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "veil/collateral.h"
#include "veil/eventlog.h"
#include "veil/policy.h"
#include "veil/quote.h"
#include "veil/sim.h"

static char state_dir[64];

static int setup(void **state) {
    (void)state;
    snprintf(state_dir, sizeof state_dir, "/tmp/veil-test-sim-XXXXXX");
    return mkdtemp(state_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", state_dir);
    return system(cmd) == 0 ? 0 : -1;
}

typedef struct simq {
    veil_sim *sim;
    uint8_t rd[64];
    uint8_t *quote;
    size_t len;
    veil_quote q;
} simq;

static void make(simq *s, const veil_sim_options *opts, const veil_event_log *log) {
    assert_int_equal(veil_sim_open(&s->sim, state_dir, opts, NULL), VEIL_OK);
    for (int i = 0; i < 64; i++)
        s->rd[i] = (uint8_t)(i * 3 + 1);
    assert_int_equal(veil_sim_quote(s->sim, &s->quote, &s->len, s->rd, log, NULL), VEIL_OK);
    assert_int_equal(veil_quote_parse(&s->q, s->quote, s->len, NULL, NULL), VEIL_OK);
}

static void done(simq *s) {
    free(s->quote);
    veil_sim_free(s->sim);
}

/* Verifies with the simulation root pinned, optionally with collateral. */
static veil_quote_verdict check(simq *s, const uint8_t *quote, size_t len, int with_collateral, int revoke,
                                int64_t collateral_time, const veil_quote_policy *policy, const veil_event_log *log) {
    veil_quote q;
    veil_quote_verdict v;
    memset(&v, 0, sizeof v);
    veil_quote_code why;
    if (veil_quote_parse(&q, quote, len, &why, NULL) != VEIL_OK) {
        v.code = why;
        return v;
    }
    uint8_t *der;
    size_t der_len;
    assert_int_equal(veil_sim_root_der(s->sim, &der, &der_len, NULL), VEIL_OK);
    veil_quote_options opts;
    veil_quote_options_init(&opts);
    EVP_Digest(der, der_len, opts.root_sha256, NULL, EVP_sha256(), NULL);
    veil_collateral *col = NULL;
    if (with_collateral) {
        char *json;
        assert_int_equal(veil_sim_collateral(s->sim, &json, collateral_time, revoke, NULL), VEIL_OK);
        assert_int_equal(veil_collateral_parse(&col, json, strlen(json), NULL), VEIL_OK);
        free(json);
    }
    opts.collateral = col;
    opts.policy = policy;
    opts.event_log = log;
    assert_int_equal(veil_quote_verify(&v, &q, &opts, NULL), VEIL_OK);
    veil_collateral_free(col);
    free(der);
    return v;
}

#define EXPECT(v, want)                                                                              \
    do {                                                                                              \
        veil_quote_verdict v_ = (v);                                                                  \
        if (v_.code != (want))                                                                        \
            fail_msg("got %s (%s), want %s", veil_quote_code_name(v_.code), v_.message, veil_quote_code_name(want)); \
    } while (0)

static void accepted_with_its_root_and_collateral(void **state) {
    (void)state;
    simq s;
    make(&s, NULL, NULL);
    int64_t now = (int64_t)time(NULL);
    veil_quote_verdict v = check(&s, s.quote, s.len, 1, 0, now, NULL, NULL);
    EXPECT(v, VEIL_QUOTE_OK);
    assert_string_equal(v.tcb_status, "UpToDate");
    assert_false(v.collateral_expired);
    assert_memory_equal(s.q.td.report_data, s.rd, 64);
    assert_int_equal(s.q.version, 4);
    assert_false(s.q.td.td_attributes[0] & 1);
    /* the strictest policy is met too: everything present and fresh */
    veil_quote_policy p;
    const char *strict = "{\"require_collateral\":true,\"accepted_tcb_statuses\":[\"UpToDate\"]}";
    assert_int_equal(veil_policy_parse(&p, strict, strlen(strict), NULL), VEIL_OK);
    EXPECT(check(&s, s.quote, s.len, 1, 0, now, &p, NULL), VEIL_QUOTE_OK);
    /* collateral issued 60 days ago: expired, reported, fatal only when required */
    v = check(&s, s.quote, s.len, 1, 0, now - 60 * 86400, NULL, NULL);
    EXPECT(v, VEIL_QUOTE_OK);
    assert_true(v.collateral_expired);
    EXPECT(check(&s, s.quote, s.len, 1, 0, now - 60 * 86400, &p, NULL), VEIL_QUOTE_COLLATERAL_EXPIRED);
    done(&s);
}

static void refused_with_intel_root(void **state) {
    (void)state;
    simq s;
    make(&s, NULL, NULL);
    veil_quote_options opts;
    veil_quote_options_init(&opts);
    veil_quote_verdict v;
    assert_int_equal(veil_quote_verify(&v, &s.q, &opts, NULL), VEIL_OK);
    EXPECT(v, VEIL_QUOTE_ROOT_NOT_TRUSTED);
    done(&s);
}

static void debug_bit_refused(void **state) {
    (void)state;
    veil_sim_options o = {1, NULL};
    simq s;
    make(&s, &o, NULL);
    assert_true(s.q.td.td_attributes[0] & 1);
    EXPECT(check(&s, s.quote, s.len, 1, 0, (int64_t)time(NULL), NULL, NULL), VEIL_QUOTE_TD_DEBUG);
    veil_quote_policy p;
    const char *allow = "{\"allow_debug\":true}";
    assert_int_equal(veil_policy_parse(&p, allow, strlen(allow), NULL), VEIL_OK);
    EXPECT(check(&s, s.quote, s.len, 1, 0, (int64_t)time(NULL), &p, NULL), VEIL_QUOTE_OK);
    done(&s);
}

static void pins(void **state) {
    (void)state;
    uint8_t mrtd[48];
    memset(mrtd, 0x5a, sizeof mrtd);
    veil_sim_options o = {0, mrtd};
    simq s;
    make(&s, &o, NULL);
    assert_memory_equal(s.q.td.mr_td, mrtd, 48);
    char hex[97], doc[200];
    veil_hex_encode(hex, mrtd, 48);
    snprintf(doc, sizeof doc, "{\"mrtd\":\"%s\"}", hex);
    veil_quote_policy p;
    assert_int_equal(veil_policy_parse(&p, doc, strlen(doc), NULL), VEIL_OK);
    EXPECT(check(&s, s.quote, s.len, 0, 0, 0, &p, NULL), VEIL_QUOTE_OK);
    hex[95] = hex[95] == '0' ? '1' : '0';
    snprintf(doc, sizeof doc, "{\"mrtd\":\"%s\"}", hex);
    assert_int_equal(veil_policy_parse(&p, doc, strlen(doc), NULL), VEIL_OK);
    EXPECT(check(&s, s.quote, s.len, 0, 0, 0, &p, NULL), VEIL_QUOTE_MEASUREMENT_MISMATCH);
    done(&s);
}

/* Flipping any byte of the quote (sampled across every region up to the PEM
 * chain, whose text can change without changing the certificates: base64
 * has unused bits) is refused. */
static void byte_flips(void **state) {
    (void)state;
    simq s;
    make(&s, NULL, NULL);
    uint8_t *m = malloc(s.len);
    size_t refused = 0, tried = 0, chain_at = (size_t)(s.q.chain - s.quote);
    for (size_t i = 0; i < chain_at; i += 7) {
        memcpy(m, s.quote, s.len);
        m[i] ^= 0x04;
        veil_quote_verdict v = check(&s, m, s.len, 0, 0, 0, NULL, NULL);
        tried++;
        if (v.code != VEIL_QUOTE_OK)
            refused++;
        else
            fail_msg("flip at offset %zu was accepted", i);
    }
    assert_int_equal(refused, tried);
    free(m);
    done(&s);
}

static void revoked_pck(void **state) {
    (void)state;
    simq s;
    make(&s, NULL, NULL);
    EXPECT(check(&s, s.quote, s.len, 1, 1, (int64_t)time(NULL), NULL, NULL), VEIL_QUOTE_CERT_REVOKED);
    done(&s);
}

static void runtime_events_replay(void **state) {
    (void)state;
    veil_event_log *log = veil_event_log_new();
    assert_int_equal(veil_event_log_add_runtime(log, "app-id", (const uint8_t *)"veil", 4, NULL), VEIL_OK);
    assert_int_equal(veil_event_log_add_runtime(log, "signing-address", (const uint8_t *)"\x01\x02", 2, NULL), VEIL_OK);
    simq s;
    make(&s, NULL, log);
    uint8_t zero[48] = {0};
    assert_memory_not_equal(s.q.td.rtmr[3], zero, 48);
    EXPECT(check(&s, s.quote, s.len, 1, 0, (int64_t)time(NULL), NULL, log), VEIL_QUOTE_OK);
    /* a log missing the last event does not explain RTMR3 */
    veil_event_log *short_log = veil_event_log_new();
    assert_int_equal(veil_event_log_add_runtime(short_log, "app-id", (const uint8_t *)"veil", 4, NULL), VEIL_OK);
    EXPECT(check(&s, s.quote, s.len, 1, 0, (int64_t)time(NULL), NULL, short_log), VEIL_QUOTE_MEASUREMENT_MISMATCH);
    veil_event_log_free(short_log);
    veil_event_log_free(log);
    done(&s);
}

static void root_is_stable(void **state) {
    (void)state;
    veil_sim *a, *b;
    assert_int_equal(veil_sim_open(&a, state_dir, NULL, NULL), VEIL_OK);
    assert_int_equal(veil_sim_open(&b, state_dir, NULL, NULL), VEIL_OK);
    char *pa, *pb;
    assert_int_equal(veil_sim_root_pem(a, &pa, NULL), VEIL_OK);
    assert_int_equal(veil_sim_root_pem(b, &pb, NULL), VEIL_OK);
    assert_string_equal(pa, pb);
    assert_non_null(strstr(pa, "BEGIN CERTIFICATE"));
    /* keys are private to their owner */
    char path[128];
    snprintf(path, sizeof path, "%s/sim-tdx/root.key", state_dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 077, 0);
    /* another state directory is another platform */
    char other[128];
    snprintf(other, sizeof other, "%s/other", state_dir);
    veil_sim *c;
    assert_int_equal(veil_sim_open(&c, other, NULL, NULL), VEIL_OK);
    char *pc;
    assert_int_equal(veil_sim_root_pem(c, &pc, NULL), VEIL_OK);
    assert_string_not_equal(pa, pc);
    free(pa);
    free(pb);
    free(pc);
    veil_sim_free(a);
    veil_sim_free(b);
    veil_sim_free(c);
    /* an unreadable key is reported, not silently replaced */
    FILE *f = fopen(path, "w");
    fputs("garbage", f);
    fclose(f);
    veil_err err;
    assert_int_equal(veil_sim_open(&a, state_dir, NULL, &err), VEIL_ERR_IO);
    assert_non_null(strstr(err.message, "unreadable"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accepted_with_its_root_and_collateral),
        cmocka_unit_test(refused_with_intel_root),
        cmocka_unit_test(debug_bit_refused),
        cmocka_unit_test(pins),
        cmocka_unit_test(byte_flips),
        cmocka_unit_test(revoked_pck),
        cmocka_unit_test(runtime_events_replay),
        cmocka_unit_test(root_is_stable),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
