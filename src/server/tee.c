/* The TEE side of veil serve: the instance key, quotes over REPORTDATA =
 * signing address || 12 zero bytes || nonce, and the attestation document
 * with the server's own verification of the evidence it returns. */
#include "tee.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <openssl/evp.h>

#include "veil/collateral.h"
#include "veil/eventlog.h"
#include "veil/hex.h"
#include "veil/nvidia.h"
#include "veil/quote.h"
#include "veil/secure.h"
#include "veil/sim.h"

#define SHARED_QUOTE_SECONDS 60

struct veil_tee {
    veil_seckey key; /* first: the page holding it is locked against swap */
    veil_pubkey pub;
    uint8_t address[VEIL_ADDRESS_LEN];
    char address_str[VEIL_ADDRESS_STR_LEN + 1];
    veil_quote_provider *provider;
    char version[32];
    char binary_sha384[97];
    uint8_t root_sha256[32];
    uint8_t *root_der;
    size_t root_der_len;
    pthread_mutex_t mu; /* guards the shared nonce-less quote */
    uint8_t shared_nonce[32];
    uint8_t *shared_quote;
    size_t shared_len;
    char *shared_log;
    time_t shared_at;
    char *sim_collateral; /* simulator: collateral for self-verification, remade daily */
    time_t sim_collateral_at;
    int has_key;            /* key, pub and address are set (veil_tee_set_key) */
    veil_gpu_provider *gpu; /* NULL: no GPU evidence */
    pthread_mutex_t gpu_mu; /* one evidence request at a time: NVML is not reentrant per device */
    char *shared_gpu;       /* the payload that goes with the shared quote */
    /* the TLS key bound to every attestation (veil_tee_bind_tls); "" when none */
    char tls_spki[65];
    const char *tls_origin;
    char tls_binding[VEIL_SIGNATURE_STR_LEN + 1];
};

veil_rc veil_tee_bind_tls(veil_tee *t, const uint8_t spki_sha256[32], int enclave, veil_err *err) {
    char text[14 + 65] = "veil-tls-spki:";
    veil_hex_encode(text + 14, spki_sha256, 32);
    uint8_t sig[VEIL_SIGNATURE_LEN];
    veil_rc rc = veil_eip191_sign(sig, &t->key, text, strlen(text), err);
    if (rc != VEIL_OK)
        return rc;
    memcpy(t->tls_spki, text + 14, 65);
    t->tls_origin = enclave ? "enclave" : "operator";
    veil_signature_to_string(t->tls_binding, sig);
    return VEIL_OK;
}

void veil_tee_set_gpu(veil_tee *t, veil_gpu_provider *gpu) {
    veil_gpu_provider_free(t->gpu);
    t->gpu = gpu;
}

/* The server's own verdict on GPU evidence for this nonce (against the
 * simulation root for the simulated GPU): server_verification.nvidia. */
static json_t *gpu_verdict(veil_tee *t, const veil_gpu_payload *p, const uint8_t nonce[32], int *valid, int *bound) {
    veil_gpu_verify_opts o;
    memset(&o, 0, sizeof o);
    o.nonce = nonce;
    if (veil_gpu_provider_simulated(t->gpu))
        o.root_der = veil_gpu_sim_root(t->gpu, &o.root_der_len);
    veil_gpu_verdict v;
    int sig = 0, chain = 0;
    *valid = *bound = 0;
    if (veil_gpu_verify(&v, p, &o, NULL) == VEIL_OK) {
        *valid = v.accepted;
        sig = chain = *bound = v.n > 0;
        for (size_t i = 0; i < v.n; i++) {
            sig &= v.items[i].signature_ok;
            chain &= v.items[i].chain_ok;
            *bound &= v.items[i].nonce_ok;
        }
    }
    json_t *nvidia = json_pack("{s:b, s:b, s:{s:b}}", "valid", *valid, "signatureVerified", sig,
                               "certificateChainStatus", "valid", chain);
    if (!*valid && v.code)
        json_object_set_new(nvidia, "error", json_pack("{s:s, s:s}", "code", v.code, "message", v.message));
    veil_gpu_verdict_clear(&v);
    return nvidia;
}

/* Fresh GPU evidence over the nonce and its verdict: the payload as a JSON
 * string (malloc'd), or NULL when the GPU fails (said in *nvidia). */
static char *gpu_evidence(veil_tee *t, const uint8_t nonce[32], json_t **nvidia, int *valid, int *bound) {
    veil_gpu_payload p;
    veil_err err;
    pthread_mutex_lock(&t->gpu_mu);
    veil_rc rc = veil_gpu_provider_evidence(t->gpu, &p, nonce, &err);
    pthread_mutex_unlock(&t->gpu_mu);
    if (rc != VEIL_OK) {
        *valid = *bound = 0;
        *nvidia =
            json_pack("{s:b, s:b, s:{s:b}, s:{s:s, s:s}}", "valid", 0, "signatureVerified", 0, "certificateChainStatus",
                      "valid", 0, "error", "code", "GPU_UNAVAILABLE", "message", err.message);
        return NULL;
    }
    char *json = veil_gpu_payload_json(&p);
    *nvidia = gpu_verdict(t, &p, nonce, valid, bound);
    veil_gpu_payload_clear(&p);
    return json;
}

static int hash_self(char out[97]) {
    uint8_t h[48];
    if (!veil_binary_sha384(h))
        return 0;
    veil_hex_encode(out, h, 48);
    return 1;
}

veil_rc veil_tee_open(veil_tee **out, veil_tee_kind kind, const veil_provider_config *cfg, const char *version,
                      int keyless, veil_err *err) {
    *out = NULL;
    veil_tee *t = calloc(1, sizeof *t);
    if (!t)
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    mlock(t, sizeof *t); /* best effort: keep the key out of swap */
    pthread_mutex_init(&t->mu, NULL);
    pthread_mutex_init(&t->gpu_mu, NULL);
    snprintf(t->version, sizeof t->version, "%s", version);
    if (!hash_self(t->binary_sha384))
        snprintf(t->binary_sha384, sizeof t->binary_sha384, "unknown");
    veil_rc rc = veil_provider_open(&t->provider, kind, cfg, err);
    if (rc == VEIL_OK && veil_provider_is_simulated(t->provider)) {
        /* RTMR3 of the simulated TD records what this instance is. */
        rc = veil_provider_add_event(t->provider, "veil-version", (const uint8_t *)version, strlen(version), err);
        if (rc == VEIL_OK)
            rc = veil_provider_add_event(t->provider, "binary-sha384", (const uint8_t *)t->binary_sha384,
                                         strlen(t->binary_sha384), err);
        if (rc == VEIL_OK)
            rc = veil_sim_root_der(veil_provider_sim(t->provider), &t->root_der, &t->root_der_len, err);
        if (rc == VEIL_OK)
            EVP_Digest(t->root_der, t->root_der_len, t->root_sha256, NULL, EVP_sha256(), NULL);
    } else if (rc == VEIL_OK) {
        veil_quote_options o;
        veil_quote_options_init(&o);
        memcpy(t->root_sha256, o.root_sha256, 32);
    }
    if (rc == VEIL_OK && !keyless) {
        veil_seckey fresh;
        rc = veil_seckey_generate(&fresh, err);
        if (rc == VEIL_OK)
            rc = veil_tee_set_key(t, &fresh, err);
        veil_wipe(&fresh, sizeof fresh);
    }
    if (rc != VEIL_OK) {
        veil_tee_free(t);
        return rc;
    }
    *out = t;
    return VEIL_OK;
}

veil_rc veil_tee_set_key(veil_tee *t, const veil_seckey *key, veil_err *err) {
    if (t->has_key)
        return veil_err_set(err, VEIL_ERR_INVALID_ARG, "the TEE has its key already");
    t->key = *key;
    veil_rc rc = veil_pubkey_from_seckey(&t->pub, &t->key, err);
    if (rc != VEIL_OK) {
        veil_wipe(&t->key, sizeof t->key);
        return rc;
    }
    veil_eth_address(t->address, &t->pub);
    veil_eth_address_to_string(t->address_str, t->address);
    /* the simulated TD's RTMR3 records the signing address last: a joiner's quote in a key
     * release, made before it has the key, therefore lacks this event */
    if (veil_provider_is_simulated(t->provider))
        rc = veil_provider_add_event(t->provider, "signing-address", t->address, VEIL_ADDRESS_LEN, err);
    t->has_key = rc == VEIL_OK;
    return rc;
}

int veil_tee_has_key(const veil_tee *t) { return t->has_key; }

veil_rc veil_tee_quote(veil_tee *t, const uint8_t report_data[64], uint8_t **quote, size_t *len, char **event_log,
                       veil_err *err) {
    *event_log = NULL;
    return veil_provider_get_quote(t->provider, quote, len, event_log, report_data, err);
}

void veil_tee_free(veil_tee *t) {
    if (!t)
        return;
    veil_provider_free(t->provider);
    free(t->root_der);
    free(t->shared_quote);
    free(t->shared_log);
    free(t->sim_collateral);
    free(t->shared_gpu);
    veil_gpu_provider_free(t->gpu);
    pthread_mutex_destroy(&t->mu);
    pthread_mutex_destroy(&t->gpu_mu);
    veil_wipe(t, sizeof *t);
    munlock(t, sizeof *t);
    free(t);
}

const char *veil_tee_provider_name(const veil_tee *t) { return veil_provider_name(t->provider); }
int veil_tee_simulated(const veil_tee *t) { return veil_provider_is_simulated(t->provider); }
const char *veil_tee_address(const veil_tee *t) { return t->address_str; }
const veil_seckey *veil_tee_key(const veil_tee *t) { return &t->key; }
const veil_pubkey *veil_tee_pubkey(const veil_tee *t) { return &t->pub; }

static json_t *hexj(const uint8_t *p, size_t n) {
    char *h = veil_hex_encode_alloc(p, n);
    json_t *v = json_string(h ? h : "");
    free(h);
    return v;
}

veil_rc veil_tee_check_quote(veil_tee *t, const veil_quote *q, const char *log_json, const veil_quote_policy *policy,
                             const veil_collateral *collateral, veil_quote_verdict *v, veil_err *err) {
    veil_quote_options o;
    veil_quote_options_init(&o);
    memcpy(o.root_sha256, t->root_sha256, 32);
    o.root_der = t->root_der;
    o.root_der_len = t->root_der_len;
    o.policy = policy;
    o.collateral = collateral;
    veil_collateral *col = NULL;
    veil_sim *sim = veil_provider_sim(t->provider);
    if (sim && !collateral) {
        /* signing collateral costs four signatures: make it once a day, not per request */
        pthread_mutex_lock(&t->mu);
        time_t now = time(NULL);
        char *fresh = NULL;
        if ((!t->sim_collateral || now - t->sim_collateral_at > 86400) &&
            veil_sim_collateral(sim, &fresh, (int64_t)now, 0, NULL) == VEIL_OK) {
            free(t->sim_collateral);
            t->sim_collateral = fresh;
            t->sim_collateral_at = now;
        }
        char *text = t->sim_collateral ? strdup(t->sim_collateral) : NULL;
        pthread_mutex_unlock(&t->mu);
        if (text && veil_collateral_parse(&col, text, strlen(text), NULL) == VEIL_OK)
            o.collateral = col;
        free(text);
    }
    veil_event_log *log = NULL;
    veil_rc rc = VEIL_OK;
    if (log_json && veil_event_log_parse(&log, (const uint8_t *)log_json, strlen(log_json), err) != VEIL_OK)
        rc = VEIL_ERR_MALFORMED;
    o.event_log = log;
    if (rc == VEIL_OK)
        rc = veil_quote_verify(v, q, &o, err);
    veil_collateral_free(col);
    veil_event_log_free(log);
    return rc;
}

/* The server's own verdict on the evidence it returns (§3.4 server_verification). */
static json_t *self_verify(veil_tee *t, const veil_quote *q, const char *log_json, const uint8_t nonce[32],
                           int *verified) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    veil_quote_verdict v;
    veil_err err;
    if (veil_tee_check_quote(t, q, log_json, NULL, NULL, &v, &err) != VEIL_OK) {
        memset(&v, 0, sizeof v);
        v.code = VEIL_QUOTE_MALFORMED;
        snprintf(v.message, sizeof v.message, "%s", err.message);
    }
    veil_quote_code c = v.code;
    int sig_ok = c != VEIL_QUOTE_SIGNATURE_INVALID && c != VEIL_QUOTE_QE_REPORT_SIGNATURE_INVALID;
    int chain_ok = c != VEIL_QUOTE_PCK_CHAIN_INVALID && c != VEIL_QUOTE_CERT_EXPIRED && c != VEIL_QUOTE_CERT_REVOKED &&
                   c != VEIL_QUOTE_ROOT_NOT_TRUSTED;
    const uint8_t *rd = q->td.report_data;
    uint8_t zeros[12] = {0};
    int addr_bound = memcmp(rd, t->address, 20) == 0 && memcmp(rd + 20, zeros, 12) == 0;
    int nonce_bound = memcmp(rd + 32, nonce, 32) == 0;
    char rd_addr[VEIL_ADDRESS_STR_LEN + 1], when[32];
    veil_eth_address_to_string(rd_addr, rd);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (long)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000);
    json_t *tdx = json_pack("{s:b, s:b, s:b, s:b, s:b, s:o}", "valid", c == VEIL_QUOTE_OK, "signatureValid", sig_ok,
                            "certificateChainValid", chain_ok, "rootCaPinned", c != VEIL_QUOTE_ROOT_NOT_TRUSTED,
                            "attestationKeyMatch", c != VEIL_QUOTE_AK_BINDING_INVALID, "tcbStatus",
                            v.tcb_status[0] ? json_string(v.tcb_status) : json_null());
    if (c != VEIL_QUOTE_OK)
        json_object_set_new(tdx, "error",
                            json_pack("{s:s, s:s}", "code", veil_quote_code_name(c), "message", v.message));
    *verified = c == VEIL_QUOTE_OK && addr_bound && nonce_bound;
    return json_pack("{s:o, s:{s:b, s:s}, s:{s:b, s:s}, s:s, s:i}", "tdx", tdx, "signingAddressBinding", "bound",
                     addr_bound, "reportDataAddress", rd_addr, "nonceBinding", "bound", nonce_bound, "method", "raw",
                     "verifiedAt", when, "verificationDurationMs", (json_int_t)ms);
}

json_t *veil_tee_attest(veil_tee *t, const char *model_id, const uint8_t nonce[32], const char *nonce_text,
                        int client_nonce, veil_err *err) {
    uint8_t rd[64] = {0};
    memcpy(rd, t->address, 20);
    memcpy(rd + 32, nonce, 32);
    uint8_t *quote = NULL;
    size_t len = 0;
    char *log = NULL, *gpu_json = NULL;
    if (!client_nonce) {
        /* a nonce-less request may share the quote of the last 60 s */
        pthread_mutex_lock(&t->mu);
        if (t->shared_quote && time(NULL) - t->shared_at < SHARED_QUOTE_SECONDS) {
            quote = malloc(t->shared_len);
            log = t->shared_log ? strdup(t->shared_log) : NULL;
            if (quote) {
                memcpy(quote, t->shared_quote, t->shared_len);
                len = t->shared_len;
                memcpy(rd + 32, t->shared_nonce, 32);
                gpu_json = t->shared_gpu ? strdup(t->shared_gpu) : NULL;
            }
        }
        pthread_mutex_unlock(&t->mu);
    }
    if (!quote) {
        if (veil_provider_get_quote(t->provider, &quote, &len, &log, rd, err) != VEIL_OK)
            return NULL;
        if (!client_nonce) {
            pthread_mutex_lock(&t->mu);
            free(t->shared_quote);
            free(t->shared_log);
            t->shared_quote = malloc(len);
            if (t->shared_quote)
                memcpy(t->shared_quote, quote, len);
            t->shared_len = len;
            t->shared_log = log ? strdup(log) : NULL;
            memcpy(t->shared_nonce, rd + 32, 32);
            t->shared_at = time(NULL);
            pthread_mutex_unlock(&t->mu);
        }
    }
    veil_quote q;
    if (veil_quote_parse(&q, quote, len, NULL, err) != VEIL_OK) {
        free(quote);
        free(gpu_json);
        free(log);
        return NULL;
    }
    char nonce_hex[65];
    veil_hex_encode(nonce_hex, rd + 32, 32);
    if (client_nonce)
        snprintf(nonce_hex, sizeof nonce_hex, "%s", nonce_text);
    int verified = 0;
    json_t *sv = self_verify(t, &q, log, rd + 32, &verified);
    if (t->gpu) {
        json_t *nvidia = NULL;
        int gpu_valid = 0, gpu_bound = 0;
        veil_gpu_payload p;
        if (gpu_json && veil_gpu_payload_parse(&p, gpu_json, strlen(gpu_json), NULL) == VEIL_OK) {
            nvidia = gpu_verdict(t, &p, rd + 32, &gpu_valid, &gpu_bound); /* the shared quote's payload, again */
            veil_gpu_payload_clear(&p);
        } else if (gpu_json) {
            nvidia = json_pack("{s:b, s:b, s:{s:b}}", "valid", 0, "signatureVerified", 0, "certificateChainStatus",
                               "valid", 0);
        } else {
            gpu_json = gpu_evidence(t, rd + 32, &nvidia, &gpu_valid, &gpu_bound);
            if (!client_nonce && gpu_json) {
                pthread_mutex_lock(&t->mu);
                if (!memcmp(t->shared_nonce, rd + 32, 32)) {
                    free(t->shared_gpu);
                    t->shared_gpu = strdup(gpu_json);
                }
                pthread_mutex_unlock(&t->mu);
            }
        }
        json_object_set_new(sv, "nvidia", nvidia);
        json_object_set_new(sv, "nvidiaNonceBinding", json_pack("{s:b}", "bound", gpu_bound));
        verified = verified && gpu_valid && gpu_bound;
    }
    char key_hex[VEIL_PUBKEY_HEX_LEN + 1];
    veil_pubkey_to_hex(key_hex, &t->pub);
    json_t *events = log ? json_loads(log, 0, NULL) : NULL;
    int sim = veil_tee_simulated(t);
    json_t *info =
        json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o}", "app_name", "veil", "version", t->version,
                  "binary_sha384", t->binary_sha384, "mrtd", hexj(q.td.mr_td, 48), "rtmr0", hexj(q.td.rtmr[0], 48),
                  "rtmr1", hexj(q.td.rtmr[1], 48), "rtmr2", hexj(q.td.rtmr[2], 48), "rtmr3", hexj(q.td.rtmr[3], 48));
    json_t *doc =
        json_pack("{s:b, s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o}", "verified",
                  verified, "nonce", nonce_hex, "request_nonce", nonce_hex, "nonce_source",
                  client_nonce ? "client" : "server", "model", model_id, "tee_provider", veil_tee_provider_name(t),
                  "tee_hardware", sim ? "simulated" : "intel-tdx", "simulated", sim, "signing_algo", "ecdsa",
                  "signing_key", key_hex, "signing_public_key", key_hex, "signing_address", t->address_str,
                  "intel_quote", hexj(quote, len), "nvidia_payload", gpu_json ? json_string(gpu_json) : json_null(),
                  "event_log", events && json_is_array(events) ? events : (json_decref(events), json_array()), "info",
                  info, "server_verification", sv);
    if (doc && t->tls_spki[0]) {
        json_object_set_new(doc, "tls_spki_sha256", json_string(t->tls_spki));
        json_object_set_new(doc, "tls_key_origin", json_string(t->tls_origin));
        json_object_set_new(doc, "tls_binding_signature", json_string(t->tls_binding));
    }
    free(quote);
    free(log);
    free(gpu_json);
    return doc;
}

json_t *veil_tee_near_report(json_t *doc, const char *model) {
    const char *key = json_string_value(json_object_get(doc, "signing_key"));
    json_t *r = json_pack("{s:s, s:O, s:s, s:s, s:O, s:O, s:O, s:O, s:O}", "model_name", model, "signing_address",
                          json_object_get(doc, "signing_address"), "signing_algo", "ecdsa", "signing_public_key",
                          key ? key + 2 : "", "request_nonce", json_object_get(doc, "request_nonce"), "intel_quote",
                          json_object_get(doc, "intel_quote"), "nvidia_payload", json_object_get(doc, "nvidia_payload"),
                          "event_log", json_object_get(doc, "event_log"), "info", json_object_get(doc, "info"));
    static const char *const tls_fields[] = {"tls_spki_sha256", "tls_key_origin", "tls_binding_signature"};
    for (size_t i = 0; i < 3; i++)
        if (json_object_get(doc, tls_fields[i]))
            json_object_set(r, tls_fields[i], json_object_get(doc, tls_fields[i]));
    json_object_set_new(r, "all_attestations", json_pack("[o]", json_deep_copy(r)));
    return r;
}
