/* Unit tests for the key release between replicas (docs/cluster.md), on
 * the simulated TEE: a joiner's request built here from the document's
 * formulas (REPORTDATA, sealing), the holder's answer checked the same way,
 * and every refusal: a foreign or stale challenge, a quote that binds
 * another exchange, another binary's events, another MRTD, a debug TD,
 * another simulation root, simulation not allowed, and malformed bodies. */
#include "testutil.h"

#include <openssl/evp.h>
#include <unistd.h>

#include "server/keyrelease.h"
#include "veil/ecies.h"
#include "veil/eth.h"
#include "veil/secure.h"

static char dir[] = "/tmp/veil-keyrelease-XXXXXX", other_dir[] = "/tmp/veil-keyrelease-other-XXXXXX";
static veil_tee *holder;
static const veil_peer_policy allow_sim = {NULL, NULL, NULL, 1};

static veil_tee *open_tee(const char *state, const char *version, int keyless, const veil_sim_options *so) {
    veil_provider_config pc = {NULL, NULL, state, so};
    veil_tee *t = NULL;
    veil_err err;
    if (veil_tee_open(&t, VEIL_TEE_SIM, &pc, version, keyless, &err) != VEIL_OK)
        fail_msg("veil_tee_open: %s", err.message);
    return t;
}

static int setup(void **state) {
    (void)state;
    if (!mkdtemp(dir) || !mkdtemp(other_dir))
        return -1;
    holder = open_tee(dir, "0.1.0", 0, NULL);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    veil_tee_free(holder);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", dir, other_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void sha256_cat(uint8_t out[32], const char *label, const uint8_t *a, size_t an, const uint8_t *b, size_t bn) {
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    assert_non_null(c);
    EVP_DigestInit_ex(c, EVP_sha256(), NULL);
    EVP_DigestUpdate(c, label, strlen(label));
    EVP_DigestUpdate(c, a, an);
    EVP_DigestUpdate(c, b, bn);
    EVP_DigestFinal_ex(c, out, NULL);
    EVP_MD_CTX_free(c);
}

/* A joiner's request as docs/cluster.md specifies it. quote_eph: the key the
 * quote binds (normally the one sent). */
typedef struct request {
    veil_seckey eph;
    veil_pubkey eph_pub;
    uint8_t jn[32];
    char *body;
} request;

static void make_request(request *r, veil_tee *joiner, const char *holder_nonce, int bind_other_key) {
    uint8_t hn[32], rd[64], *q = NULL;
    size_t qlen = 0;
    char *log = NULL;
    assert_int_equal(veil_hex_decode(hn, 32, NULL, holder_nonce, 64, NULL), VEIL_OK);
    assert_int_equal(veil_seckey_generate(&r->eph, NULL), VEIL_OK);
    assert_int_equal(veil_pubkey_from_seckey(&r->eph_pub, &r->eph, NULL), VEIL_OK);
    assert_int_equal(veil_random_bytes(r->jn, 32, NULL), VEIL_OK);
    veil_pubkey bound = r->eph_pub;
    if (bind_other_key) {
        veil_seckey other;
        assert_int_equal(veil_seckey_generate(&other, NULL), VEIL_OK);
        assert_int_equal(veil_pubkey_from_seckey(&bound, &other, NULL), VEIL_OK);
    }
    sha256_cat(rd, "veil-key-release-v1:", bound.bytes, VEIL_PUBKEY_LEN, hn, 32);
    memcpy(rd + 32, r->jn, 32);
    veil_err err;
    if (veil_tee_quote(joiner, rd, &q, &qlen, &log, &err) != VEIL_OK)
        fail_msg("quote: %s", err.message);
    char eph_hex[VEIL_PUBKEY_HEX_LEN + 1], jn_hex[65];
    veil_pubkey_to_hex(eph_hex, &r->eph_pub);
    veil_hex_encode(jn_hex, r->jn, 32);
    char *qhex = veil_hex_encode_alloc(q, qlen);
    json_t *doc = json_pack("{s:i, s:s, s:s, s:s, s:s, s:o}", "version", 1, "ephemeral_key", eph_hex, "holder_nonce",
                            holder_nonce, "joiner_nonce", jn_hex, "quote", qhex, "event_log",
                            log ? json_loads(log, 0, NULL) : json_array());
    r->body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    free(qhex);
    free(q);
    free(log);
}

static json_t *answer(const veil_peer_policy *pp, const char *body, int *status, char *why) {
    return veil_key_release_answer(holder, pp, body, strlen(body), status, why, 300);
}

/* A request of joiner's for the holder's challenge nonce (into r) that the holder must grant:
 * its reply, or the test fails with the holder's reason. */
static json_t *granted(const veil_peer_policy *pp, veil_tee *joiner, const char *nonce, request *r) {
    char why[300];
    int status;
    make_request(r, joiner, nonce, 0);
    json_t *reply = answer(pp, r->body, &status, why);
    if (!reply || status != 200)
        fail_msg("refused (%d): %s", status, why);
    return reply;
}

static void release_and_open(void **state) {
    (void)state;
    veil_tee *joiner = open_tee(dir, "0.1.0", 1, NULL);
    char nonce[65];
    veil_key_release_nonce(holder, nonce);
    request r;
    json_t *reply = granted(&allow_sim, joiner, nonce, &r);
    /* the sealed key opens with the ephemeral key and is the holder's */
    const char *sealed = json_string_value(json_object_get(reply, "sealed_key"));
    uint8_t *key = NULL;
    size_t key_len = 0;
    assert_int_equal(veil_ecies_open_hex(&key, &key_len, &r.eph, sealed, strlen(sealed), NULL), VEIL_OK);
    assert_int_equal(key_len, VEIL_SECKEY_LEN);
    assert_memory_equal(key, veil_tee_key(holder)->bytes, VEIL_SECKEY_LEN);
    veil_free_secret(key, key_len + 1);
    assert_string_equal(json_string_value(json_object_get(reply, "signing_address")), veil_tee_address(holder));
    /* the holder's quote binds its address and this exchange */
    const char *qhex = json_string_value(json_object_get(reply, "quote"));
    uint8_t *qb = NULL;
    size_t ql = 0;
    veil_quote q;
    assert_int_equal(veil_quote_load(&qb, &ql, (const uint8_t *)qhex, strlen(qhex), NULL), VEIL_OK);
    assert_int_equal(veil_quote_parse(&q, qb, ql, NULL, NULL), VEIL_OK);
    uint8_t want[64] = {0}, addr[VEIL_ADDRESS_LEN];
    veil_eth_address(addr, veil_tee_pubkey(holder));
    memcpy(want, addr, VEIL_ADDRESS_LEN);
    sha256_cat(want + 32, "veil-key-release-reply-v1:", r.jn, 32, r.eph_pub.bytes, VEIL_PUBKEY_LEN);
    assert_memory_equal(q.td.report_data, want, 64);
    free(qb);
    /* the joiner's check: tampered replies refused, each saying why, the key untouched */
    json_t *sent = json_loads(r.body, 0, NULL);
    assert_false(veil_tee_has_key(joiner));
    static const struct {
        const char *key, *why;
    } tamper[] = {
        {"signing_address", "attestation was refused"}, /* another address: the quote binds the real one */
        {"sealed_key", "is not the attested signing address's"},
        {"quote", "attestation was refused"},
        {"event_log", "attestation was refused"},
    };
    for (size_t i = 0; i < sizeof tamper / sizeof tamper[0]; i++) {
        json_t *bad = json_deep_copy(reply);
        if (i == 0)
            json_object_set_new(bad, "signing_address", json_string("0x0000000000000000000000000000000000000001"));
        if (i == 1) { /* another key, sealed to the joiner's ephemeral key as a holder would */
            veil_seckey other;
            char *hex = NULL;
            assert_int_equal(veil_seckey_generate(&other, NULL), VEIL_OK);
            assert_int_equal(veil_ecies_seal_hex(&hex, &r.eph_pub, other.bytes, 32, NULL), VEIL_OK);
            json_object_set_new(bad, "sealed_key", json_string(hex));
            free(hex);
        }
        if (i == 2) { /* the holder's quote for another exchange */
            char n2[65];
            request r2;
            veil_key_release_nonce(holder, n2);
            json_t *other = granted(&allow_sim, joiner, n2, &r2);
            json_object_set(bad, "quote", json_object_get(other, "quote"));
            json_decref(other);
            free(r2.body);
        }
        if (i == 3)
            json_object_set_new(bad, "event_log", json_array());
        veil_err err;
        assert_int_not_equal(veil_key_release_accept(joiner, &allow_sim, sent, bad, &r.eph, "holder", &err), VEIL_OK);
        if (!strstr(err.message, tamper[i].why))
            fail_msg("%s: '%s'", tamper[i].key, err.message);
        assert_false(veil_tee_has_key(joiner));
        json_decref(bad);
    }
    /* the reply as it came: accepted, the joiner now signs as the holder */
    veil_err err;
    if (veil_key_release_accept(joiner, &allow_sim, sent, reply, &r.eph, "holder", &err) != VEIL_OK)
        fail_msg("%s", err.message);
    assert_string_equal(veil_tee_address(joiner), veil_tee_address(holder));
    /* a keyless TEE takes the key once, then refuses another */
    assert_int_equal(veil_tee_set_key(joiner, veil_tee_key(holder), NULL), VEIL_ERR_INVALID_ARG);
    json_decref(sent);
    json_decref(reply);
    free(r.body);
    veil_tee_free(joiner);
}

static void refuse(veil_tee *joiner, const veil_peer_policy *pp, const char *nonce, int bind_other, int want_status,
                   const char *want_why) {
    char why[300];
    request r;
    make_request(&r, joiner, nonce, bind_other);
    int status;
    json_t *reply = answer(pp, r.body, &status, why);
    assert_null(reply);
    assert_int_equal(status, want_status);
    if (!strstr(why, want_why))
        fail_msg("expected '%s' in '%s'", want_why, why);
    free(r.body);
}

static void refusals(void **state) {
    (void)state;
    char nonce[65];
    veil_key_release_nonce(holder, nonce);
    veil_tee *same = open_tee(dir, "0.1.0", 1, NULL);
    /* a challenge this service did not make */
    refuse(same, &allow_sim, "00000000000000000000000000000000000000000000000000000000000000aa", 0, 403,
           "holder nonce is not this service's");
    /* a challenge from another holder key (another service) */
    veil_tee *stranger = open_tee(dir, "0.1.0", 0, NULL);
    char foreign[65];
    veil_key_release_nonce(stranger, foreign);
    refuse(same, &allow_sim, foreign, 0, 403, "holder nonce is not this service's");
    veil_tee_free(stranger);
    /* a quote that binds another ephemeral key than the one sent */
    refuse(same, &allow_sim, nonce, 1, 403, "does not bind this exchange");
    /* simulation not allowed */
    const veil_peer_policy no_sim = {NULL, NULL, NULL, 0};
    refuse(same, &no_sim, nonce, 0, 403, "--peer-allow-simulated");
    veil_tee_free(same);
    /* another version of veil: its measured events differ */
    veil_tee *older = open_tee(dir, "0.0.9", 1, NULL);
    refuse(older, &allow_sim, nonce, 0, 403, "veil-version differs");
    veil_tee_free(older);
    /* another MRTD (the simulated TD's image) */
    uint8_t mrtd[48];
    memset(mrtd, 0x5a, sizeof mrtd);
    veil_sim_options so = {0, mrtd};
    veil_tee *other_image = open_tee(dir, "0.1.0", 1, &so);
    refuse(other_image, &allow_sim, nonce, 0, 403, "MRTD differs");
    /* ...unless the peer policy pins that MRTD instead */
    veil_quote_policy pol;
    char pin[200];
    snprintf(pin, sizeof pin, "{\"mrtd\": \"%s\"}",
             "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a");
    assert_int_equal(veil_policy_parse(&pol, pin, strlen(pin), NULL), VEIL_OK);
    veil_peer_policy pinned = {&pol, NULL, NULL, 1};
    request r;
    json_decref(granted(&pinned, other_image, nonce, &r));
    free(r.body);
    /* and a pin the joiner does not meet refuses it */
    veil_tee *unpinned = open_tee(dir, "0.1.0", 1, NULL);
    refuse(unpinned, &pinned, nonce, 0, 403, "quote was refused");
    veil_tee_free(unpinned);
    veil_tee_free(other_image);
    /* a debug TD */
    veil_sim_options dbg = {1, NULL};
    veil_tee *debug = open_tee(dir, "0.1.0", 1, &dbg);
    refuse(debug, &allow_sim, nonce, 0, 403, "quote was refused");
    veil_tee_free(debug);
    /* another simulation root (another platform) */
    veil_tee *elsewhere = open_tee(other_dir, "0.1.0", 1, NULL);
    refuse(elsewhere, &allow_sim, nonce, 0, 403, "PCK_CHAIN_INVALID");
    veil_tee_free(elsewhere);
}

static void malformed(void **state) {
    (void)state;
    char nonce[65], why[300];
    veil_key_release_nonce(holder, nonce);
    veil_tee *same = open_tee(dir, "0.1.0", 1, NULL);
    request r;
    make_request(&r, same, nonce, 0);
    json_t *good = json_loads(r.body, 0, NULL);
    static const struct {
        const char *key;
        const char *json; /* the value set, as JSON; NULL: the key removed */
        int status;
    } cases[] = {
        {"version", "2", 400},
        {"version", NULL, 400},
        {"ephemeral_key", "\"04\"", 400},
        {"ephemeral_key", "7", 400},
        {"holder_nonce", "\"abcd\"", 400},
        {"joiner_nonce", "\"zz00000000000000000000000000000000000000000000000000000000000000\"", 400},
        {"quote", "\"0\"", 400},
        {"quote", "\"xyz\"", 400},
        {"quote", "\"00\"", 403},
        {"quote", NULL, 400},
        {"event_log", "{}", 400},
        {"event_log", "[{\"imr\": 3}]", 403},
        {"event_log", "[]", 403},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *doc = json_deep_copy(good);
        if (cases[i].json)
            json_object_set_new(doc, cases[i].key, json_loads(cases[i].json, JSON_DECODE_ANY, NULL));
        else
            json_object_del(doc, cases[i].key);
        char *body = json_dumps(doc, JSON_COMPACT);
        int status = 0;
        json_t *reply = answer(&allow_sim, body, &status, why);
        if (reply || status != cases[i].status)
            fail_msg("case %zu (%s): status %d, want %d (%s)", i, cases[i].key, status, cases[i].status, why);
        free(body);
        json_decref(doc);
    }
    static const char *const bodies[] = {"", "{", "[]", "null", "{\"version\":1}", "{\"version\":1,\"version\":1}"};
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        int status = 0;
        assert_null(answer(&allow_sim, bodies[i], &status, why));
        assert_int_equal(status, 400);
    }
    /* a duplicated request is answered again (its key is sealed to the joiner's key only) */
    int status = 0;
    json_t *reply = answer(&allow_sim, r.body, &status, why);
    assert_non_null(reply);
    json_decref(reply);
    json_decref(good);
    free(r.body);
    veil_tee_free(same);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(release_and_open),
        cmocka_unit_test(refusals),
        cmocka_unit_test(malformed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
