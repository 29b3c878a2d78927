/* Client-side attestation: fetch with a fresh nonce, then verify everything
 * locally with the same verifier the server runs, against roots the client
 * chose. The server's own "verified" is ignored. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <pthread.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "attest/x509.h"

#include "client_internal.h"
#include "veil/buf.h"
#include "veil/client.h"
#include "veil/eth.h"
#include "veil/eventlog.h"
#include "veil/hex.h"
#include "veil/nvidia.h"
#include "veil/secure.h"

struct veil_client {
    char *base;
    char *auth;
    long timeout;
    veil_tls_trust trust;
    pthread_mutex_t mu; /* guards the pin: one client may serve many threads (veil proxy) */
    int pinned;
    uint8_t pin[32];
    char pin_opt[60]; /* "sha256//" + base64 of pin, for CURLOPT_PINNEDPUBLICKEY */
    unsigned pin_gen;
};

veil_rc veil_client_new(veil_client **out, const char *base_url, const char *api_key, long timeout_s, veil_err *err) {
    *out = NULL;
    veil_client *c = calloc(1, sizeof *c);
    if (!c)
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    size_t n = strlen(base_url);
    while (n > 0 && base_url[n - 1] == '/')
        n--;
    c->base = strndup(base_url, n);
    if (api_key && *api_key) {
        c->auth = malloc(strlen(api_key) + 32);
        if (c->auth)
            sprintf(c->auth, "Authorization: Bearer %s", api_key);
    }
    c->timeout = timeout_s > 0 ? timeout_s : 60;
    pthread_mutex_init(&c->mu, NULL);
    if (!c->base || (api_key && *api_key && !c->auth)) {
        veil_client_free(c);
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    }
    *out = c;
    return VEIL_OK;
}

const char *veil_client_base(const veil_client *c) { return c->base; }
long veil_client_timeout(const veil_client *c) { return c->timeout; }

void veil_client_set_tls_trust(veil_client *c, veil_tls_trust trust) { c->trust = trust; }

int veil_client_has_key(const veil_client *c) { return c->auth != NULL; }

int veil_client_tls_pin(veil_client *c, uint8_t out[32]) {
    pthread_mutex_lock(&c->mu);
    int pinned = c->pinned;
    if (pinned)
        memcpy(out, c->pin, 32);
    pthread_mutex_unlock(&c->mu);
    return pinned;
}

unsigned veil_client_pin_generation(veil_client *c) {
    pthread_mutex_lock(&c->mu);
    unsigned g = c->pin_gen;
    pthread_mutex_unlock(&c->mu);
    return g;
}

static void set_pin(veil_client *c, const uint8_t spki[32]) {
    pthread_mutex_lock(&c->mu);
    if (!c->pinned || memcmp(c->pin, spki, 32) != 0) {
        memcpy(c->pin, spki, 32);
        memcpy(c->pin_opt, "sha256//", 8);
        EVP_EncodeBlock((unsigned char *)c->pin_opt + 8, spki, 32);
        c->pinned = 1;
        c->pin_gen++;
    }
    pthread_mutex_unlock(&c->mu);
}

/* TLS set-up without the pin: certificate checks by the trust mode. */
static void curl_tls_trust(veil_client *c, CURL *h) {
    long verify = c->trust == VEIL_TLS_CA;
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, verify);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L);
}

int veil_client_curl_tls(veil_client *c, void *curl_handle, const char **auth) {
    CURL *h = curl_handle;
    curl_tls_trust(c, h);
    pthread_mutex_lock(&c->mu);
    int pinned = c->pinned;
    curl_easy_setopt(h, CURLOPT_PINNEDPUBLICKEY, pinned ? c->pin_opt : NULL); /* curl copies it */
    pthread_mutex_unlock(&c->mu);
    *auth = c->auth;
    if (c->trust == VEIL_TLS_ATTESTED && !pinned && !strncasecmp(c->base, "https://", 8)) {
        *auth = NULL; /* no key goes to a server nothing vouches for yet */
        return -1;
    }
    return 0;
}

void veil_client_free(veil_client *c) {
    if (!c)
        return;
    free(c->base);
    if (c->auth)
        veil_free_secret(c->auth, strlen(c->auth));
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* The SPKI SHA-256 of the certificate the server presented on h's last
 * connection (CURLOPT_CERTINFO on); returns 1 when there was one. */
static int peer_spki(CURL *h, uint8_t out[32]) {
    struct curl_certinfo *ci = NULL;
    if (curl_easy_getinfo(h, CURLINFO_CERTINFO, &ci) != CURLE_OK || !ci || ci->num_of_certs < 1)
        return 0;
    int ok = 0;
    for (struct curl_slist *f = ci->certinfo[0]; f && !ok; f = f->next) {
        if (strncmp(f->data, "Cert:", 5) != 0)
            continue;
        const char *why;
        STACK_OF(X509) *certs = veil_x509_parse_certs((const uint8_t *)f->data + 5, strlen(f->data + 5), &why);
        ok = certs && veil_x509_spki_sha256(sk_X509_value(certs, 0), out);
        sk_X509_pop_free(certs, X509_free);
    }
    return ok;
}

/* One GET: the body into b, the status and Retry-After (seconds, -1 if
 * none). With spki non-NULL (the attestation), the pin is not applied (the
 * binding is checked afresh: the server may have a new key) and the
 * connection's certificate key is read into spki (*have_spki: 1 if any). */
static CURLcode get_once(veil_client *c, CURL *given, const char *url, veil_buf *b, long *status, long *retry_after,
                         uint8_t *spki, int *have_spki) {
    CURL *h = given ? given : curl_easy_init();
    CURLcode rc = CURLE_FAILED_INIT;
    struct curl_slist *hd = NULL;
    *retry_after = -1;
    if (h) {
        const char *auth = NULL;
        if (spki) {
            curl_tls_trust(c, h);
            curl_easy_setopt(h, CURLOPT_CERTINFO, 1L);
            auth = c->trust == VEIL_TLS_CA ? c->auth : NULL; /* the attestation needs no key */
        } else {
            (void)veil_client_curl_tls(c, h, &auth); /* a GET needs no key: withheld is fine */
        }
        hd = auth ? curl_slist_append(NULL, auth) : NULL;
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, veil_buf_curl_write);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
        curl_easy_setopt(h, CURLOPT_TIMEOUT, c->timeout);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        rc = curl_easy_perform(h);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
        curl_off_t ra = -1;
        if (rc == CURLE_OK && curl_easy_getinfo(h, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra >= 0)
            *retry_after = (long)ra;
        if (spki)
            *have_spki = rc == CURLE_OK && peer_spki(h, spki);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    }
    curl_slist_free_all(hd);
    if (!given)
        curl_easy_cleanup(h);
    return rc;
}

/* A server that is busy (503) is asked again, after its Retry-After or a
 * doubling backoff (0.25 s, 0.5 s, 1 s), at most this many times in all. */
#define BUSY_TRIES 4
#define BUSY_WAIT_MAX_S 5

static json_t *get_json(veil_client *c, CURL *given, const char *path, long *status, uint8_t *spki, int *have_spki,
                        veil_err *err) {
    char *url = malloc(strlen(c->base) + strlen(path) + 1);
    if (!url) {
        veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    sprintf(url, "%s%s", c->base, path);
    veil_buf b = {.limit = 16u << 20}; /* an attestation is far smaller */
    CURLcode rc = CURLE_OK;
    double backoff = 0.25;
    for (int attempt = 1;; attempt++) {
        long retry_after;
        veil_buf_free(&b);
        rc = get_once(c, given, url, &b, status, &retry_after, spki, have_spki);
        if (rc != CURLE_OK || *status != 503 || attempt == BUSY_TRIES)
            break;
        double wait =
            retry_after >= 0 ? (double)(retry_after < BUSY_WAIT_MAX_S ? retry_after : BUSY_WAIT_MAX_S) : backoff;
        backoff *= 2;
        struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
        nanosleep(&ts, NULL);
    }
    free(url);
    json_t *v = NULL;
    if (rc != CURLE_OK)
        veil_err_set(err, VEIL_ERR_IO, "%s: %s", c->base, curl_easy_strerror(rc));
    else if (!(v = b.data ? json_loads(b.data, 0, NULL) : NULL))
        veil_err_set(err, VEIL_ERR_MALFORMED, "%s answered HTTP %ld without JSON", c->base, *status);
    veil_buf_free(&b);
    return v;
}

json_t *veil_client_get_json(veil_client *c, const char *path, long *status, veil_err *err) {
    return get_json(c, NULL, path, status, NULL, NULL, err);
}

json_t *veil_client_get_json_on(veil_client *c, void *curl_handle, const char *path, long *status, veil_err *err) {
    return get_json(c, curl_handle, path, status, NULL, NULL, err);
}

static void check(veil_attestation *a, const char *name, veil_check_result r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void check(veil_attestation *a, const char *name, veil_check_result r, const char *fmt, ...) {
    if (a->n_checks == VEIL_MAX_CHECKS)
        return;
    veil_check *c = &a->checks[a->n_checks++];
    c->name = name;
    c->result = r;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->reason, sizeof c->reason, fmt, ap);
    va_end(ap);
    if (r == VEIL_CHECK_FAIL)
        a->accepted = 0;
}

/* Verifies the GPU evidence here: each report's signature, its chain to
 * NVIDIA's pinned root (under allowed simulation, the payload's own root),
 * and that every report answers this request's nonce. */
static void check_gpu(veil_attestation *a, const veil_attest_options *o, json_t *payload, const uint8_t nonce[32]) {
    if (!payload || json_is_null(payload)) {
        check(a, "GPU evidence", VEIL_CHECK_SKIP, "%s", "no GPU evidence in the attestation");
        return;
    }
    const char *text = json_string_value(payload);
    char *owned = text ? NULL : json_dumps(payload, JSON_COMPACT);
    veil_gpu_payload p;
    veil_err err;
    if (veil_gpu_payload_parse(&p,
                               text    ? text
                               : owned ? owned
                                       : "",
                               text    ? json_string_length(payload)
                               : owned ? strlen(owned)
                                       : 0,
                               &err) != VEIL_OK) {
        free(owned);
        check(a, "GPU evidence verified", VEIL_CHECK_FAIL, "nvidia_payload: %s", err.message);
        return;
    }
    free(owned);
    veil_gpu_verify_opts vo;
    memset(&vo, 0, sizeof vo);
    vo.nonce = nonce;
    vo.at = o->at;
    unsigned char *root = NULL;
    if (a->simulated && o->allow_simulated && p.n) { /* the simulated GPU's self-signed root, from its chain */
        const char *why;
        STACK_OF(X509) *certs = veil_x509_parse_certs(p.items[0].chain, p.items[0].chain_len, &why);
        X509 *self = certs ? veil_x509_find_self_issued(certs) : NULL;
        int n = self ? i2d_X509(self, &root) : 0;
        if (n > 0)
            vo.root_der_len = (size_t)n;
        sk_X509_pop_free(certs, X509_free);
        vo.root_der = root;
    }
    veil_gpu_verdict v;
    if (veil_gpu_verify(&v, &p, &vo, &err) != VEIL_OK) {
        check(a, "GPU evidence verified", VEIL_CHECK_FAIL, "%s", err.message);
    } else {
        int bound = v.n > 0;
        for (size_t i = 0; i < v.n; i++)
            bound &= v.items[i].nonce_ok;
        if (v.accepted)
            check(a, "GPU evidence verified", VEIL_CHECK_PASS, "%zu GPU report%s (%s, driver %s), chain to %s", v.n,
                  v.n == 1 ? "" : "s", v.items[0].arch, v.items[0].driver_version,
                  root ? "the simulated GPU root (simulation allowed)" : "NVIDIA's pinned root");
        else
            check(a, "GPU evidence verified", VEIL_CHECK_FAIL, "%s: %s", v.code, v.message);
        check(a, "GPU reports bind nonce", bound ? VEIL_CHECK_PASS : VEIL_CHECK_FAIL, "%s",
              bound ? "every GPU report answers this request's nonce" : "a GPU report answers another nonce");
        veil_gpu_verdict_clear(&v);
    }
    OPENSSL_free(root);
    veil_gpu_payload_clear(&p);
}

/* The TLS binding (docs/protocol.md, "Attested TLS"): tls_spki_sha256
 * signed by the attested address (addr; NULL when it could not be read)
 * over "veil-tls-spki:<hex>", and the key of the connection the attestation
 * came over (conn; NULL over plain HTTP or when unreadable) is that key. */
static void check_tls_binding(veil_client *c, veil_attestation *a, json_t *d, const uint8_t *addr,
                              const uint8_t *conn) {
    const char *name = "TLS key bound";
    int https = !strncasecmp(c->base, "https://", 8);
    const char *spki = json_string_value(json_object_get(d, "tls_spki_sha256"));
    const char *sig = json_string_value(json_object_get(d, "tls_binding_signature"));
    const char *origin = json_string_value(json_object_get(d, "tls_key_origin"));
    if (!spki && !sig) {
        if (https && c->trust == VEIL_TLS_ATTESTED)
            check(a, name, VEIL_CHECK_FAIL, "%s",
                  "the server binds no TLS key to its attestation, and attested TLS trusts nothing else");
        else
            check(a, name, VEIL_CHECK_SKIP, "%s", "the server offers no TLS key binding");
        return;
    }
    uint8_t want[32], signer[20];
    char text[14 + 65] = "veil-tls-spki:";
    if (!spki || !sig || veil_hex_decode_exact(want, 32, spki, strlen(spki), 0, NULL) != VEIL_OK) {
        check(a, name, VEIL_CHECK_FAIL, "%s", "tls_spki_sha256 or tls_binding_signature is missing or malformed");
        return;
    }
    veil_hex_encode(text + 14, want, 32);
    if (!addr || veil_eip191_recover_address(signer, text, strlen(text), sig, strlen(sig), NULL) != VEIL_OK ||
        memcmp(signer, addr, 20) != 0) {
        check(a, name, VEIL_CHECK_FAIL, "%s", "the TLS key binding is not signed by the attested signing key");
        return;
    }
    snprintf(a->tls_key_origin, sizeof a->tls_key_origin, "%s", origin ? origin : "");
    if (!https) {
        check(a, name, VEIL_CHECK_SKIP, "the server binds TLS key %.16s… but this connection is plain HTTP", spki);
        return;
    }
    if (!conn) {
        check(a, name, VEIL_CHECK_FAIL, "%s", "this connection's certificate could not be read");
        return;
    }
    if (memcmp(conn, want, 32) != 0) {
        char have[65];
        veil_hex_encode(have, conn, 32);
        check(a, name, VEIL_CHECK_FAIL, "this connection's TLS key (SPKI %.16s…) is not the attested one (%.16s…)",
              have, spki);
        return;
    }
    memcpy(a->tls_spki_sha256, want, 32);
    a->tls_bound = 1;
    check(a, name, VEIL_CHECK_PASS, "this connection's TLS key (%s, SPKI %.16s…) is signed by the attested key; pinned",
          a->tls_key_origin[0] ? a->tls_key_origin : "origin not given", spki);
}

veil_rc veil_client_attest(veil_client *c, veil_attestation *a, const veil_attest_options *o, veil_err *err) {
    memset(a, 0, sizeof *a);
    a->accepted = 1;
    uint8_t nonce[32];
    char nonce_hex[65], path[512];
    veil_rc rc = veil_random_bytes(nonce, sizeof nonce, err);
    if (rc != VEIL_OK)
        return rc;
    veil_hex_encode(nonce_hex, nonce, 32);
    char *model = curl_escape(o->model, 0);
    snprintf(path, sizeof path, "/tee/attestation?model=%s&nonce=%s", model ? model : "", nonce_hex);
    curl_free(model);
    long status = 0;
    uint8_t conn_spki[32];
    int have_spki = 0;
    json_t *d = get_json(c, NULL, path, &status, conn_spki, &have_spki, err);
    if (!d)
        return err ? err->code : VEIL_ERR_IO;
    if (status != 200) {
        const char *m = json_string_value(json_object_get(json_object_get(d, "error"), "message"));
        veil_err_set(err, VEIL_ERR_IO, "attestation refused (HTTP %ld): %s", status, m ? m : "no message");
        json_decref(d);
        return VEIL_ERR_IO;
    }
    const char *echo = json_string_value(json_object_get(d, "nonce"));
    check(a, "nonce echo", echo && !strcmp(echo, nonce_hex) ? VEIL_CHECK_PASS : VEIL_CHECK_FAIL,
          echo && !strcmp(echo, nonce_hex) ? "the server echoed this request's fresh nonce"
                                           : "the nonce differs from the one sent (replayed attestation?)");
    const char *m = json_string_value(json_object_get(d, "model"));
    check(a, "model echo", m && !strcmp(m, o->model) ? VEIL_CHECK_PASS : VEIL_CHECK_FAIL, "attested model %s",
          m ? m : "(none)");
    const char *provider = json_string_value(json_object_get(d, "tee_provider"));
    snprintf(a->tee_provider, sizeof a->tee_provider, "%s", provider ? provider : "");
    const char *qhex = json_string_value(json_object_get(d, "intel_quote"));
    uint8_t *qbuf = NULL;
    size_t qlen = 0;
    veil_quote q;
    int parsed = qhex && veil_quote_load(&qbuf, &qlen, (const uint8_t *)qhex, strlen(qhex), NULL) == VEIL_OK &&
                 veil_quote_parse(&q, qbuf, qlen, NULL, NULL) == VEIL_OK;
    if (parsed)
        check(a, "quote parses", VEIL_CHECK_PASS, "quote version %d", q.version);
    else
        check(a, "quote parses", VEIL_CHECK_FAIL, "no readable intel_quote");
    /* the signing key, and that the address is the key's */
    const char *key = json_string_value(json_object_get(d, "signing_key"));
    if (!key)
        key = json_string_value(json_object_get(d, "signing_public_key"));
    const char *addr = json_string_value(json_object_get(d, "signing_address"));
    uint8_t want_addr[20], have_addr[20];
    int key_ok = key && veil_pubkey_parse_hex(&a->signing_key, key, strlen(key), NULL) == VEIL_OK;
    int addr_ok = addr && veil_eth_address_parse(want_addr, addr, strlen(addr), NULL) == VEIL_OK;
    if (key_ok)
        veil_eth_address(have_addr, &a->signing_key);
    check(a, "signing key matches address",
          key_ok && addr_ok && !memcmp(want_addr, have_addr, 20) ? VEIL_CHECK_PASS : VEIL_CHECK_FAIL, "%s",
          key_ok && addr_ok ? "keccak256(signing_key) gives signing_address" : "missing or malformed key/address");
    if (addr_ok)
        veil_eth_address_to_string(a->signing_address, want_addr);
    check_tls_binding(c, a, d, addr_ok ? want_addr : NULL, have_spki ? conn_spki : NULL);
    if (parsed) {
        check(a, "TEE type TDX", q.tee_type == VEIL_TEE_TYPE_TDX ? VEIL_CHECK_PASS : VEIL_CHECK_FAIL, "TEE type 0x%x",
              q.tee_type);
        /* the chain: Intel's pinned root, or under allowed simulation the quote's own root */
        veil_quote_options vo;
        veil_quote_options_init(&vo);
        if (o->at)
            vo.at = o->at;
        vo.collateral = o->collateral;
        vo.policy = o->policy;
        a->simulated =
            json_is_true(json_object_get(d, "simulated")) || (provider && !strcmp(provider, "veil-simulated"));
        if (a->simulated && o->allow_simulated && q.chain_type == 5) {
            const char *why;
            STACK_OF(X509) *certs = veil_x509_parse_certs(q.chain, q.chain_len, &why);
            X509 *self = certs ? veil_x509_find_self_issued(certs) : NULL;
            if (self)
                veil_x509_sha256(self, vo.root_sha256);
            sk_X509_pop_free(certs, X509_free);
        }
        veil_event_log *log = NULL;
        char *log_json = json_dumps(json_object_get(d, "event_log"), JSON_COMPACT | JSON_ENCODE_ANY);
        if (log_json && json_array_size(json_object_get(d, "event_log")) &&
            veil_event_log_parse(&log, (const uint8_t *)log_json, strlen(log_json), NULL) == VEIL_OK)
            vo.event_log = log;
        free(log_json);
        veil_collateral *fetched = NULL;
        if (!o->collateral && o->pcs_url) {
            /* a first pass reads the PCK certificate: its FMSPC and issuing CA pick the collateral */
            veil_quote_options first = vo;
            first.policy = NULL;
            first.event_log = NULL;
            veil_quote_verdict pre;
            char *cj = NULL;
            veil_err perr;
            int processor = 0;
            if (q.chain_type == 5 && q.chain_len && memmem(q.chain, q.chain_len, "Processor CA", 12))
                processor = 1;
            if (veil_quote_verify(&pre, &q, &first, NULL) == VEIL_OK && pre.has_pck &&
                veil_pcs_collateral(o->pcs_url, &q, &pre.pck, processor, &cj, &perr) == VEIL_OK &&
                veil_collateral_parse(&fetched, cj, strlen(cj), &perr) == VEIL_OK) {
                vo.collateral = fetched;
                check(a, "collateral fetched", VEIL_CHECK_PASS, "from %s", o->pcs_url);
            } else {
                check(a, "collateral fetched", VEIL_CHECK_FAIL, "from %s: %s", o->pcs_url,
                      pre.has_pck ? perr.message : "the quote's PCK certificate could not be read");
            }
            free(cj);
        }
        if (veil_quote_verify(&a->verdict, &q, &vo, err) != VEIL_OK) {
            a->verdict.code = VEIL_QUOTE_MALFORMED;
            snprintf(a->verdict.message, sizeof a->verdict.message, "verifier failed");
        }
        veil_collateral_free(fetched);
        veil_event_log_free(log);
        check(a, "quote verified", a->verdict.code == VEIL_QUOTE_OK ? VEIL_CHECK_PASS : VEIL_CHECK_FAIL, "%s%s%s",
              a->verdict.code == VEIL_QUOTE_OK ? "" : veil_quote_code_name(a->verdict.code),
              a->verdict.code == VEIL_QUOTE_OK ? "" : ": ", a->verdict.message);
        if (a->simulated)
            check(a, "not simulated", o->allow_simulated ? VEIL_CHECK_SKIP : VEIL_CHECK_FAIL, "%s",
                  o->allow_simulated ? "a SIMULATED TEE, accepted because simulation was allowed"
                                     : "the server runs a simulated TEE (pass --allow-simulated to accept it)");
        else
            check(a, "not simulated", VEIL_CHECK_PASS, "hardware TEE (%s)", a->tee_provider);
        const uint8_t *rd = q.body_type == VEIL_BODY_SGX ? q.enclave.report_data : q.td.report_data;
        uint8_t zeros[12] = {0}, hashed[32];
        int bound = addr_ok && !memcmp(rd, want_addr, 20) && !memcmp(rd + 20, zeros, 12);
        check(a, "REPORTDATA binds signing address", bound ? VEIL_CHECK_PASS : VEIL_CHECK_FAIL, "%s",
              bound ? "first 20 bytes are the signing address" : "REPORTDATA does not hold the signing address");
        EVP_Digest(nonce, 32, hashed, NULL, EVP_sha256(), NULL);
        int raw = !memcmp(rd + 32, nonce, 32), sha = !memcmp(rd + 32, hashed, 32);
        check(a, "REPORTDATA binds nonce", raw || sha ? VEIL_CHECK_PASS : VEIL_CHECK_FAIL, "%s",
              raw   ? "raw nonce"
              : sha ? "SHA-256 of the nonce"
                    : "REPORTDATA does not hold this request's nonce");
    }
    check_gpu(a, o, json_object_get(d, "nvidia_payload"), nonce);
    if (a->accepted && a->tls_bound)
        set_pin(c, a->tls_spki_sha256); /* every later request must meet this key */
    free(qbuf);
    json_decref(d);
    return VEIL_OK;
}

json_t *veil_client_models_json(veil_client *c, veil_err *err) {
    long status = 0;
    json_t *v = veil_client_get_json(c, "/models?type=all", &status, err);
    if (v && status != 200) {
        const char *m = json_string_value(json_object_get(json_object_get(v, "error"), "message"));
        veil_err_set(err, VEIL_ERR_IO, "models: HTTP %ld: %s", status, m ? m : "no message");
        json_decref(v);
        return NULL;
    }
    return v;
}

veil_rc veil_client_models(veil_client *c, char **json_out, veil_err *err) {
    *json_out = NULL;
    json_t *v = veil_client_models_json(c, err);
    if (!v)
        return err ? err->code : VEIL_ERR_IO;
    if (!json_is_object(v)) {
        json_decref(v);
        return veil_err_set(err, VEIL_ERR_MALFORMED, "models: the answer is not a JSON object");
    }
    *json_out = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(v);
    return *json_out ? VEIL_OK : veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
}
