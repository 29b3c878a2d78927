/* Key release between replicas of one service (docs/cluster.md): the
 * holder's stateless challenge, its answer to a joiner's quote, the joiner's
 * side of the exchange, and the key that dstack's key service derives.
 *
 * Both sides verify the other's quote as they verify their own (this TEE's
 * root: Intel's, or the simulation root when both are simulated and that is
 * allowed; the policy; collateral for hardware), that it binds this exchange
 * in REPORTDATA, that its event log replays to its RTMRs, and that it
 * measures the same code: MRTD and RTMR0-2 equal this replica's (or the
 * policy's pins), and the application's events (veil's version and binary
 * hash; dstack's app id, compose hash and OS image) equal this replica's,
 * or RTMR3 itself where a log has none of them. */
#include "keyrelease.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "attest/dstack.h"
#include "base/base.h"
#include "client/client_internal.h"
#include "veil/buf.h"
#include "veil/ecies.h"
#include "veil/eth.h"
#include "veil/hex.h"
#include "veil/secure.h"

#define NONCE_LIFETIME 120
#define MAX_QUOTE_HEX (2 * 64 * 1024)
#define MAX_REPLY (4 << 20)

static const char *const MEASURED_EVENTS[] = {"veil-version", "binary-sha384", "app-id", "compose-hash",
                                              "os-image-hash"};
static const char *const MR_NAMES[5] = {"MRTD", "RTMR0", "RTMR1", "RTMR2", "RTMR3"};
static const veil_pin_field MR_PINS[5] = {VEIL_PIN_MRTD, VEIL_PIN_RTMR0, VEIL_PIN_RTMR1, VEIL_PIN_RTMR2,
                                          VEIL_PIN_RTMR3};

static void sha256_parts(uint8_t out[32], const char *label, const uint8_t *a, size_t an, const uint8_t *b, size_t bn) {
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1 || EVP_DigestUpdate(c, label, strlen(label)) != 1 ||
        EVP_DigestUpdate(c, a, an) != 1 || EVP_DigestUpdate(c, b, bn) != 1 || EVP_DigestFinal_ex(c, out, NULL) != 1)
        memset(out, 0xff, 32); /* never matches what a peer computed */
    EVP_MD_CTX_free(c);
}

/* ---- the holder's challenge ---- */

static void nonce_mac(veil_tee *t, const uint8_t ts[8], uint8_t mac[32]) {
    uint8_t k[32];
    sha256_parts(k, "veil-key-release-nonce-key:", veil_tee_key(t)->bytes, VEIL_SECKEY_LEN, NULL, 0);
    unsigned int n = 32;
    if (!HMAC(EVP_sha256(), k, 32, ts, 8, mac, &n))
        memset(mac, 0, 32);
    veil_wipe(k, sizeof k);
}

void veil_key_release_nonce(veil_tee *t, char out[65]) {
    uint8_t n[32], mac[32];
    uint64_t now = (uint64_t)time(NULL);
    for (int i = 0; i < 8; i++)
        n[i] = (uint8_t)(now >> (56 - 8 * i));
    nonce_mac(t, n, mac);
    memcpy(n + 8, mac, 24);
    veil_hex_encode(out, n, 32);
}

static int nonce_valid(veil_tee *t, const uint8_t n[32]) {
    uint8_t mac[32];
    nonce_mac(t, n, mac);
    uint64_t ts = 0, now = (uint64_t)time(NULL);
    for (int i = 0; i < 8; i++)
        ts = ts << 8 | n[i];
    return veil_ct_equal(mac, n + 8, 24) && ts <= now + 5 && (ts > now || now - ts <= NONCE_LIFETIME);
}

/* ---- what a quote measures ---- */

/* Measurement i of a quote: MRTD, then RTMR0..3. */
static const uint8_t *measurement(const veil_quote *q, int i) { return i ? q->td.rtmr[i - 1] : q->td.mr_td; }

/* The payload (hex) of the event `name` in log, and how often it occurs. */
static const char *event_payload(json_t *log, const char *name, int *count) {
    const char *first = NULL;
    *count = 0;
    size_t i;
    json_t *ev;
    json_array_foreach(log, i, ev) {
        const char *n = json_string_value(json_object_get(ev, "event"));
        if (n && !strcmp(n, name)) {
            if (!(*count)++)
                first = json_string_value(json_object_get(ev, "event_payload"));
        }
    }
    return first ? first : "";
}

/* 1 when the peer's quote and log measure what this replica's own do (within the policy's pins),
 * else 0 with why. */
static int same_code(const veil_quote *own, json_t *own_log, const veil_quote *peer, json_t *peer_log,
                     const veil_quote_policy *pins, char *why, size_t n) {
    int app_events = 0;
    for (size_t i = 0; i < sizeof MEASURED_EVENTS / sizeof MEASURED_EVENTS[0]; i++) {
        int own_n, peer_n;
        const char *a = event_payload(own_log, MEASURED_EVENTS[i], &own_n);
        const char *b = event_payload(peer_log, MEASURED_EVENTS[i], &peer_n);
        if (!own_n && !peer_n)
            continue;
        app_events++;
        if (peer_n > 1) {
            snprintf(why, n, "the peer's event log records %s %d times", MEASURED_EVENTS[i], peer_n);
            return 0;
        }
        if (own_n != peer_n || strcasecmp(a, b) != 0) {
            snprintf(why, n, "the peer's %s differs from this replica's (%s)", MEASURED_EVENTS[i],
                     peer_n ? "another value" : "the peer's log has none");
            return 0;
        }
    }
    for (int i = 0; i < 5; i++) {
        if (i == 4 && app_events)
            continue; /* RTMR3 also records what differs between instances (their signing address) */
        if (pins && pins->pins[MR_PINS[i]].n)
            continue; /* the policy pinned it: the quote's verification checked the pin */
        if (memcmp(measurement(own, i), measurement(peer, i), 48) != 0) {
            snprintf(why, n, "the peer's %s differs from this replica's", MR_NAMES[i]);
            return 0;
        }
    }
    return 1;
}

/* Collateral for a hardware peer's quote: the policy's, else fetched from its PCS. */
static veil_collateral *peer_collateral(const veil_peer_policy *pp, const veil_quote *q, char *why, size_t n) {
    if (!pp->pcs_url) {
        snprintf(why, n, "hardware peers need collateral: give --peer-collateral FILE or --peer-pcs-url URL");
        return NULL;
    }
    veil_quote_options o;
    veil_quote_options_init(&o);
    veil_quote_verdict pre;
    char *json = NULL;
    veil_err err;
    veil_collateral *col = NULL;
    int processor = q->chain_type == 5 && q->chain_len && memmem(q->chain, q->chain_len, "Processor CA", 12);
    if (veil_quote_verify(&pre, q, &o, NULL) != VEIL_OK || !pre.has_pck)
        snprintf(why, n, "the peer's quote has no readable PCK certificate");
    else if (veil_pcs_collateral(pp->pcs_url, q, &pre.pck, processor, &json, &err) != VEIL_OK ||
             veil_collateral_parse(&col, json, strlen(json), &err) != VEIL_OK)
        snprintf(why, n, "collateral for the peer's quote from %s: %s", pp->pcs_url, err.message);
    free(json);
    return col;
}

/* A quote's bytes from hex into *buf (malloc'd) and parsed into q: 1, or 0. */
static int load_quote(const char *hex, uint8_t **buf, veil_quote *q) {
    size_t len = 0;
    return hex && strlen(hex) <= MAX_QUOTE_HEX &&
           veil_quote_load(buf, &len, (const uint8_t *)hex, strlen(hex), NULL) == VEIL_OK &&
           veil_quote_parse(q, *buf, len, NULL, NULL) == VEIL_OK;
}

/* Verifies a peer's quote (hex) with its log, and that it measures what this replica's own quote
 * (hex, from this exchange: the joiner's request or the holder's reply) with its log does: 1, or
 * 0 with why. */
static int check_peer(veil_tee *t, const veil_peer_policy *pp, const char *quote_hex, json_t *log, const uint8_t rd[64],
                      const char *own_hex, json_t *own_log, char *why, size_t n) {
    if (veil_tee_simulated(t) && !pp->allow_simulated) {
        snprintf(why, n,
                 "this replica's TEE is simulated: key release between simulated replicas needs "
                 "--peer-allow-simulated on both");
        return 0;
    }
    uint8_t *buf = NULL, *own_buf = NULL;
    veil_quote q, own_q;
    int ok = 0;
    char *log_json = NULL;
    veil_collateral *fetched = NULL;
    veil_err err;
    if (!load_quote(quote_hex, &buf, &q)) {
        snprintf(why, n, "the peer's quote cannot be read");
        goto out;
    }
    if (q.tee_type != VEIL_TEE_TYPE_TDX) {
        snprintf(why, n, "the peer's quote is not a TDX quote");
        goto out;
    }
    if (memcmp(q.td.report_data, rd, 64) != 0) {
        snprintf(why, n, "the peer's quote does not bind this exchange (REPORTDATA differs)");
        goto out;
    }
    const veil_collateral *col = pp->collateral;
    if (!veil_tee_simulated(t) && !col && !(col = fetched = peer_collateral(pp, &q, why, n)))
        goto out;
    log_json = log ? json_dumps(log, JSON_COMPACT) : NULL;
    veil_quote_verdict v;
    if (veil_tee_check_quote(t, &q, log_json, pp->policy, col, &v, &err) != VEIL_OK) {
        snprintf(why, n, "the peer's event log cannot be read: %s", err.message);
        goto out;
    }
    if (v.code != VEIL_QUOTE_OK) {
        snprintf(why, n, "the peer's quote was refused: %s: %s", veil_quote_code_name(v.code), v.message);
        goto out;
    }
    if (!load_quote(own_hex, &own_buf, &own_q)) {
        snprintf(why, n, "this replica's own quote cannot be read");
        goto out;
    }
    ok = same_code(&own_q, own_log, &q, log, pp->policy, why, n);
out:
    free(buf);
    free(own_buf);
    free(log_json);
    veil_collateral_free(fetched);
    return ok;
}

/* REPORTDATA of the joiner's quote and of the holder's reply. */
static void joiner_rd(uint8_t rd[64], const veil_pubkey *eph, const uint8_t holder_nonce[32],
                      const uint8_t joiner_nonce[32]) {
    sha256_parts(rd, "veil-key-release-v1:", eph->bytes, VEIL_PUBKEY_LEN, holder_nonce, 32);
    memcpy(rd + 32, joiner_nonce, 32);
}

static void holder_rd(uint8_t rd[64], const uint8_t address[VEIL_ADDRESS_LEN], const veil_pubkey *eph,
                      const uint8_t joiner_nonce[32]) {
    memset(rd, 0, 64);
    memcpy(rd, address, VEIL_ADDRESS_LEN);
    sha256_parts(rd + 32, "veil-key-release-reply-v1:", joiner_nonce, 32, eph->bytes, VEIL_PUBKEY_LEN);
}

static int hex32(const char *s, uint8_t out[32]) {
    return s && strlen(s) == 64 && veil_hex_decode(out, 32, NULL, s, 64, NULL) == VEIL_OK;
}

/* ---- the holder ---- */

json_t *veil_key_release_answer(veil_tee *t, const veil_peer_policy *pp, const char *body, size_t len, int *status,
                                char *why, size_t why_len) {
    *status = 400;
    json_error_t jerr;
    json_t *req = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr), *reply = NULL;
    const char *eph_hex = json_string_value(json_object_get(req, "ephemeral_key"));
    const char *quote = json_string_value(json_object_get(req, "quote"));
    json_t *log = json_object_get(req, "event_log");
    veil_pubkey eph;
    uint8_t hn[32], jn[32], rd[64];
    if (!json_is_object(req) || json_integer_value(json_object_get(req, "version")) != 1) {
        snprintf(why, why_len, "Key release request malformed: needs a JSON object with version 1");
    } else if (!eph_hex || veil_pubkey_parse_hex(&eph, eph_hex, strlen(eph_hex), NULL) != VEIL_OK) {
        snprintf(why, why_len, "Key release request malformed: ephemeral_key");
    } else if (!hex32(json_string_value(json_object_get(req, "holder_nonce")), hn) ||
               !hex32(json_string_value(json_object_get(req, "joiner_nonce")), jn)) {
        snprintf(why, why_len, "Key release request malformed: holder_nonce and joiner_nonce are 64 hex characters");
    } else if (!quote || !veil_hex_is_valid(quote, strlen(quote)) || strlen(quote) > MAX_QUOTE_HEX) {
        snprintf(why, why_len, "Key release request malformed: quote");
    } else if (log && !json_is_array(log) && !json_is_null(log)) {
        snprintf(why, why_len, "Key release request malformed: event_log");
    } else if ((*status = 403), !nonce_valid(t, hn)) {
        snprintf(why, why_len, "Key release refused: the holder nonce is not this service's, or it expired");
    } else {
        /* the reply's quote first: it is this replica's own evidence in the comparison too */
        uint8_t addr[VEIL_ADDRESS_LEN], *q = NULL;
        size_t qlen = 0;
        char *own_log_text = NULL, *sealed = NULL, *qhex = NULL, reason[300];
        json_t *own_log = NULL;
        veil_err err;
        veil_eth_address(addr, veil_tee_pubkey(t));
        holder_rd(rd, addr, &eph, jn);
        if (veil_tee_quote(t, rd, &q, &qlen, &own_log_text, &err) != VEIL_OK ||
            !(qhex = veil_hex_encode_alloc(q, qlen))) {
            *status = 502;
            snprintf(why, why_len, "Key release failed: %s", qhex ? err.message : "out of memory");
        } else {
            own_log = own_log_text ? json_loads(own_log_text, JSON_DECODE_ANY, NULL) : NULL;
            if (!json_is_array(own_log)) {
                json_decref(own_log);
                own_log = json_array();
            }
            joiner_rd(rd, &eph, hn, jn);
            if (!check_peer(t, pp, quote, json_is_array(log) ? log : NULL, rd, qhex, own_log, reason, sizeof reason)) {
                snprintf(why, why_len, "Key release refused: %s", reason);
            } else if (veil_ecies_seal_hex(&sealed, &eph, veil_tee_key(t)->bytes, VEIL_SECKEY_LEN, &err) != VEIL_OK) {
                *status = 502;
                snprintf(why, why_len, "Key release failed: %s", err.message);
            } else {
                reply = json_pack("{s:i, s:s, s:s, s:s, s:O}", "version", 1, "signing_address", veil_tee_address(t),
                                  "sealed_key", sealed, "quote", qhex, "event_log", own_log);
                *status = 200;
            }
        }
        free(q);
        free(own_log_text);
        free(sealed);
        free(qhex);
        json_decref(own_log);
    }
    json_decref(req);
    return reply;
}

/* ---- the joiner ---- */

/* GET (body NULL) or POST a JSON body; the reply's JSON in *out (NULL when it is none). The
 * exchange does not rest on TLS: each side proves itself by a quote bound to this exchange, and the
 * key travels sealed to a key only this process holds; a holder's certificate (self-signed under
 * --tls) is therefore not checked here. */
static veil_rc http_json(const char *url, const char *body, long timeout_s, long *status, json_t **out, veil_err *err) {
    *out = NULL;
    veil_buf resp = {.limit = MAX_REPLY};
    veil_err e;
    veil_rc rc = veil_http_exchange(url, NULL, body, timeout_s, 0, &resp, status, &e);
    if (rc != VEIL_OK)
        rc = veil_err_set(err, VEIL_ERR_IO, "%s: %s", url, e.message);
    else if (resp.data)
        *out = json_loadb(resp.data, resp.len, 0, NULL);
    veil_buf_free(&resp);
    return rc;
}

veil_rc veil_key_release_accept(veil_tee *t, const veil_peer_policy *pp, json_t *request, json_t *reply,
                                const veil_seckey *eph, const char *from, veil_err *err) {
    const char *addr_str = json_string_value(json_object_get(reply, "signing_address"));
    const char *sealed = json_string_value(json_object_get(reply, "sealed_key"));
    uint8_t addr[VEIL_ADDRESS_LEN], key_addr[VEIL_ADDRESS_LEN], rd[64], jn[32], *key = NULL;
    size_t key_len = 0;
    veil_pubkey eph_pub;
    veil_rc rc = veil_pubkey_from_seckey(&eph_pub, eph, err);
    if (rc == VEIL_OK && !hex32(json_string_value(json_object_get(request, "joiner_nonce")), jn))
        rc = veil_err_set(err, VEIL_ERR_INVALID_ARG, "the key release request has no joiner_nonce");
    if (rc == VEIL_OK &&
        (!addr_str || !sealed || veil_eth_address_parse(addr, addr_str, strlen(addr_str), NULL) != VEIL_OK))
        rc = veil_err_set(err, VEIL_ERR_MALFORMED, "%s: the key release reply lacks signing_address or sealed_key",
                          from);
    if (rc == VEIL_OK) {
        char why[300];
        json_t *log = json_object_get(reply, "event_log");
        holder_rd(rd, addr, &eph_pub, jn);
        if (!check_peer(t, pp, json_string_value(json_object_get(reply, "quote")), json_is_array(log) ? log : NULL, rd,
                        json_string_value(json_object_get(request, "quote")), json_object_get(request, "event_log"),
                        why, sizeof why))
            rc = veil_err_set(err, VEIL_ERR_AUTH_FAILED, "%s: the holder's attestation was refused: %s", from, why);
    }
    veil_seckey got;
    veil_pubkey got_pub;
    if (rc == VEIL_OK && (veil_ecies_open_hex(&key, &key_len, eph, sealed, strlen(sealed), err) != VEIL_OK ||
                          key_len != VEIL_SECKEY_LEN || veil_seckey_from_bytes(&got, key, err) != VEIL_OK ||
                          veil_pubkey_from_seckey(&got_pub, &got, err) != VEIL_OK))
        rc = veil_err_set(err, VEIL_ERR_AUTH_FAILED, "%s: the released key cannot be opened", from);
    if (rc == VEIL_OK) {
        veil_eth_address(key_addr, &got_pub);
        if (memcmp(key_addr, addr, VEIL_ADDRESS_LEN) != 0)
            rc = veil_err_set(err, VEIL_ERR_AUTH_FAILED, "%s: the released key is not the attested signing address's",
                              from);
    }
    if (rc == VEIL_OK)
        rc = veil_tee_set_key(t, &got, err);
    veil_wipe(&got, sizeof got);
    if (key)
        veil_free_secret(key, key_len + 1);
    return rc;
}

veil_rc veil_key_fetch(veil_tee *t, const char *base_url, const veil_peer_policy *pp, long timeout_s, veil_err *err) {
    if (veil_tee_simulated(t) && !pp->allow_simulated)
        return veil_err_set(err, VEIL_ERR_INVALID_ARG,
                            "this replica's TEE is simulated: a key from another simulated replica needs "
                            "--peer-allow-simulated");
    char url[2048];
    size_t bl = strlen(base_url);
    while (bl && base_url[bl - 1] == '/')
        bl--;
    if (bl > 1900)
        return veil_err_set(err, VEIL_ERR_INVALID_ARG, "--key-from: URL too long");
    snprintf(url, sizeof url, "%.*s%s", (int)bl, base_url, VEIL_KEY_RELEASE_PATH);
    long status;
    json_t *doc = NULL;
    veil_rc rc = http_json(url, NULL, timeout_s, &status, &doc, err);
    uint8_t hn[32], jn[32], rd[64], *q = NULL;
    size_t qlen = 0;
    char *log_text = NULL, *body = NULL, *qhex = NULL;
    veil_seckey eph;
    veil_pubkey eph_pub;
    char eph_hex[VEIL_PUBKEY_HEX_LEN + 1], hn_hex[65], jn_hex[65];
    json_t *req = NULL, *reply = NULL;
    if (rc == VEIL_OK && (status != 200 || !hex32(json_string_value(json_object_get(doc, "nonce")), hn)))
        rc = veil_err_set(err, VEIL_ERR_IO, "%s gave no key release challenge (HTTP %ld%s)", url, status,
                          status == 404 ? ": is the holder running with --key-release?" : "");
    if (rc == VEIL_OK)
        rc = veil_seckey_generate(&eph, err);
    if (rc == VEIL_OK)
        rc = veil_pubkey_from_seckey(&eph_pub, &eph, err);
    if (rc == VEIL_OK)
        rc = veil_random_bytes(jn, 32, err);
    if (rc == VEIL_OK) {
        joiner_rd(rd, &eph_pub, hn, jn);
        rc = veil_tee_quote(t, rd, &q, &qlen, &log_text, err);
    }
    if (rc == VEIL_OK && !(qhex = veil_hex_encode_alloc(q, qlen)))
        rc = veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    if (rc == VEIL_OK) {
        veil_pubkey_to_hex(eph_hex, &eph_pub);
        veil_hex_encode(hn_hex, hn, 32);
        veil_hex_encode(jn_hex, jn, 32);
        json_t *log = log_text ? json_loads(log_text, JSON_DECODE_ANY, NULL) : NULL;
        req = json_pack("{s:i, s:s, s:s, s:s, s:s, s:o}", "version", 1, "ephemeral_key", eph_hex, "holder_nonce",
                        hn_hex, "joiner_nonce", jn_hex, "quote", qhex, "event_log",
                        json_is_array(log) ? log : (json_decref(log), json_array()));
        body = req ? json_dumps(req, JSON_COMPACT) : NULL;
        if (!body)
            rc = veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    }
    if (rc == VEIL_OK)
        rc = http_json(url, body, timeout_s, &status, &reply, err);
    if (rc == VEIL_OK && status != 200) {
        const char *m = json_string_value(json_object_get(json_object_get(reply, "error"), "message"));
        rc = veil_err_set(err, VEIL_ERR_AUTH_FAILED, "%s refused the key release (HTTP %ld): %s", url, status,
                          m ? m : "no reason given");
    }
    if (rc == VEIL_OK)
        rc = veil_key_release_accept(t, pp, req, reply, &eph, url, err);
    veil_wipe(&eph, sizeof eph);
    free(q);
    free(qhex);
    free(log_text);
    free(body);
    json_decref(req);
    json_decref(reply);
    json_decref(doc);
    return rc;
}

/* ---- dstack ---- */

veil_rc veil_key_from_dstack(veil_tee *t, const char *socket_path, veil_err *err) {
    veil_seckey key;
    veil_rc rc = veil_dstack_get_key(socket_path, "veil/instance-key/v1", &key, err);
    if (rc == VEIL_OK)
        rc = veil_tee_set_key(t, &key, err);
    veil_wipe(&key, sizeof key);
    return rc;
}
