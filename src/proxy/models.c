/* veil proxy's models: what the upstream offers (its /models list), each
 * TEE model's verified attestation (fresh nonce before first use, again
 * every --reattest seconds and whenever it is marked stale), the reports
 * /veil/status shows, and the pool of upstream connections. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "base/base.h"
#include "client/client_internal.h"
#include "proxy_internal.h"
#include "veil/hex.h"

#define CATALOG_MAX_AGE_S 60.0

static proxy_model *find_model(proxy *p, const char *id, int create) {
    for (size_t i = 0; i < p->n_models; i++)
        if (!strcmp(p->models[i]->id, id))
            return p->models[i];
    if (!create || p->n_models == PROXY_MAX_MODELS || strlen(id) >= sizeof p->models[0]->id)
        return NULL;
    proxy_model *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    snprintf(m->id, sizeof m->id, "%s", id);
    pthread_mutex_init(&m->attest_mu, NULL);
    p->models[p->n_models++] = m;
    return m;
}

static proxy_caps caps_of(json_t *catalog, const char *model, int *found) {
    json_t *m;
    size_t i;
    *found = 0;
    json_array_foreach(json_object_get(catalog, "data"), i, m) {
        const char *id = json_string_value(json_object_get(m, "id"));
        if (!id || strcmp(id, model) != 0)
            continue;
        *found = 1;
        json_t *caps = json_object_get(json_object_get(m, "model_spec"), "capabilities");
        return json_is_true(json_object_get(caps, "supportsE2EE"))             ? CAPS_E2EE
               : json_is_true(json_object_get(caps, "supportsTeeAttestation")) ? CAPS_TEE
                                                                               : CAPS_PLAIN;
    }
    return CAPS_UNKNOWN;
}

/* The upstream's model list fetched now and kept as the catalog: a new
 * reference, or NULL with why. */
static json_t *fetch_catalog(proxy *p, char *why, size_t why_len) {
    veil_err err;
    json_t *list = veil_client_models_json(p->client, &err);
    if (!list) {
        snprintf(why, why_len, "cannot read the upstream's models: %s", err.message);
        return NULL;
    }
    pthread_mutex_lock(&p->mu);
    json_decref(p->catalog);
    p->catalog = json_incref(list);
    p->catalog_at = veil_now_s();
    pthread_mutex_unlock(&p->mu);
    return list;
}

proxy_caps proxy_model_caps(proxy *p, const char *model, char *why, size_t why_len) {
    pthread_mutex_lock(&p->mu);
    int found = 0;
    proxy_caps c = CAPS_UNKNOWN;
    if (p->catalog && veil_now_s() - p->catalog_at < CATALOG_MAX_AGE_S)
        c = caps_of(p->catalog, model, &found);
    pthread_mutex_unlock(&p->mu);
    if (found)
        return c;
    json_t *list = fetch_catalog(p, why, why_len);
    if (!list)
        return CAPS_ERROR;
    c = caps_of(list, model, &found);
    json_decref(list);
    if (!found)
        snprintf(why, why_len, "the upstream offers no model %s", model);
    return c;
}

/* The failed checks of a refused attestation, joined, into why. */
static void failed_checks(const veil_attestation *a, char *why, size_t n) {
    size_t used = (size_t)snprintf(why, n, "the attestation was refused:");
    for (size_t i = 0; i < a->n_checks && used < n; i++)
        if (a->checks[i].result == VEIL_CHECK_FAIL)
            used += (size_t)snprintf(why + used, n - used, " %s (%s);", a->checks[i].name, a->checks[i].reason);
    if (used > 0 && used < n && why[used - 1] == ';')
        why[used - 1] = 0;
}

int proxy_attestation(proxy *p, const char *model, int force, veil_attestation *out, char *why, size_t why_len) {
    double asked = veil_now_s();
    pthread_mutex_lock(&p->mu);
    proxy_model *m = find_model(p, model, 1);
    if (!m) {
        pthread_mutex_unlock(&p->mu);
        snprintf(why, why_len, "too many models");
        return 0;
    }
    int fresh = m->have && !m->stale && asked - m->verified_at < (double)p->cfg->reattest_s;
    if (fresh && !force) {
        *out = m->att;
        pthread_mutex_unlock(&p->mu);
        return 1;
    }
    pthread_mutex_unlock(&p->mu);

    pthread_mutex_lock(&m->attest_mu); /* requests for this model wait here while one attests */
    pthread_mutex_lock(&p->mu);
    int done_meanwhile = m->have && !m->stale && m->verified_at >= asked; /* another request attested while we waited */
    if (done_meanwhile)
        *out = m->att;
    pthread_mutex_unlock(&p->mu);
    if (done_meanwhile) {
        pthread_mutex_unlock(&m->attest_mu);
        return 1;
    }
    veil_attest_options o = p->cfg->attest;
    o.model = model;
    veil_attestation a;
    veil_err err;
    veil_rc rc = veil_client_attest(p->client, &a, &o, &err);
    pthread_mutex_lock(&p->mu);
    m->tried = 1;
    m->n_attest++;
    m->last_wall = time(NULL);
    m->last_fetched = rc == VEIL_OK;
    if (rc == VEIL_OK) {
        m->last = a;
        m->last_error[0] = 0;
    } else {
        snprintf(m->last_error, sizeof m->last_error, "%s", err.message);
    }
    int ok = rc == VEIL_OK && a.accepted;
    if (ok) {
        m->att = a;
        m->have = 1;
        m->stale = 0;
        m->verified_at = veil_now_s();
        m->verified_wall = m->last_wall;
        *out = a;
    } else {
        m->have = 0; /* nothing is sent on an attestation that no longer verifies */
    }
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_unlock(&m->attest_mu);
    if (!ok) {
        if (rc != VEIL_OK)
            snprintf(why, why_len, "the attestation could not be fetched: %s", err.message);
        else
            failed_checks(&a, why, why_len);
    }
    return ok;
}

void proxy_preattest(proxy *p, FILE *out) {
    char why[1200];
    fprintf(out, "veil proxy: attesting the TEE models of %s\n", p->cfg->base_url);
    json_t *list = fetch_catalog(p, why, sizeof why);
    if (!list) {
        fprintf(out, "veil proxy: %s; models are attested on first use\n", why);
        return;
    }
    size_t i, n = 0;
    json_t *m;
    json_array_foreach(json_object_get(list, "data"), i, m) {
        const char *id = json_string_value(json_object_get(m, "id"));
        int found;
        proxy_caps c = id ? caps_of(list, id, &found) : CAPS_PLAIN;
        if (c != CAPS_E2EE && c != CAPS_TEE)
            continue;
        if (++n > PROXY_PREATTEST_MAX) {
            fprintf(out, "  (the other TEE models are attested on first use)\n");
            break;
        }
        veil_attestation a;
        if (proxy_attestation(p, id, 0, &a, why, sizeof why)) {
            char spki[65] = "";
            if (a.tls_bound)
                veil_hex_encode(spki, a.tls_spki_sha256, 32);
            fprintf(out, "  %s %s: verified: %s quote%s, signing address %s%s%s%s\n", c == CAPS_E2EE ? "E2EE" : "TEE",
                    id, a.simulated ? "SIMULATED" : a.tee_provider, a.simulated ? " (simulation allowed)" : "",
                    a.signing_address, spki[0] ? ", TLS key " : "", spki[0] ? spki : "",
                    spki[0] ? " bound and pinned" : "");
        } else {
            fprintf(out, "  %s %s: NOT verified (requests get 503 until it is): %s\n", c == CAPS_E2EE ? "E2EE" : "TEE",
                    id, why);
        }
    }
    if (!n)
        fprintf(out, "  the upstream lists no TEE models\n");
    fflush(out);
    json_decref(list);
}

void proxy_mark_stale(proxy *p, const char *model) {
    pthread_mutex_lock(&p->mu);
    proxy_model *m = find_model(p, model, 0);
    if (m)
        m->stale = 1;
    pthread_mutex_unlock(&p->mu);
}

static json_t *iso_time(time_t t) {
    if (!t)
        return json_null();
    struct tm tm;
    char s[32];
    gmtime_r(&t, &tm);
    strftime(s, sizeof s, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_string(s);
}

static json_t *report_json(const proxy_model *m, double now, long reattest_s) {
    static const char *const words[] = {"pass", "fail", "skip"};
    const veil_attestation *a = &m->last;
    json_t *checks = json_array();
    for (size_t i = 0; m->last_fetched && i < a->n_checks; i++)
        json_array_append_new(checks, json_pack("{s:s, s:s, s:s}", "name", a->checks[i].name, "result",
                                                words[a->checks[i].result], "reason", a->checks[i].reason));
    char spki[65] = "";
    if (m->last_fetched && a->tls_bound)
        veil_hex_encode(spki, a->tls_spki_sha256, 32);
    const char *state = m->have && !m->stale ? "verified" : m->tried ? (m->stale ? "stale" : "failed") : "pending";
    json_t *r =
        json_pack("{s:s, s:b, s:o, s:o, s:I, s:o}", "state", state, "accepted", m->last_fetched && a->accepted,
                  "attested_at", iso_time(m->last_wall), "verified_at", iso_time(m->have ? m->verified_wall : 0),
                  "attestations", (json_int_t)m->n_attest, "checks", checks);
    if (m->have && !m->stale)
        json_object_set_new(r, "next_attestation_in_s",
                            json_integer((json_int_t)(reattest_s - (long)(now - m->verified_at))));
    if (m->last_fetched) {
        json_object_set_new(r, "signing_address", json_string(a->signing_address));
        json_object_set_new(r, "tee_provider", json_string(a->tee_provider));
        json_object_set_new(r, "simulated", json_boolean(a->simulated));
        json_object_set_new(r, "tls_spki_sha256", spki[0] ? json_string(spki) : json_null());
    } else if (m->last_error[0]) {
        json_object_set_new(r, "error", json_string(m->last_error));
    }
    return r;
}

json_t *proxy_status_json(proxy *p) {
    const veil_proxy_config *c = p->cfg;
    json_t *models = json_object();
    double now = veil_now_s();
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->n_models; i++)
        json_object_set_new(models, p->models[i]->id, report_json(p->models[i], now, c->reattest_s));
    pthread_mutex_unlock(&p->mu);
    uint8_t pin[32];
    char pin_hex[65] = "";
    if (veil_client_tls_pin(p->client, pin))
        veil_hex_encode(pin_hex, pin, 32);
    return json_pack("{s:s, s:s, s:o, s:{s:b, s:b, s:b, s:I}, s:o, s:o}", "object", "veil.proxy.status", "upstream",
                     c->base_url, "started_at", iso_time(p->started), "policy", "allow_simulated",
                     c->attest.allow_simulated, "allow_tee_only", c->allow_tee_only, "allow_plain", c->allow_plain,
                     "reattest_s", (json_int_t)c->reattest_s, "tls_pin",
                     pin_hex[0] ? json_string(pin_hex) : json_null(), "models", models);
}

void *proxy_handle_get(proxy *p, unsigned *gen_out) {
    unsigned gen = *gen_out = veil_client_pin_generation(p->client);
    CURL *h = NULL, *old[PROXY_POOL];
    size_t n_old = 0;
    pthread_mutex_lock(&p->mu);
    while (p->n_pool && !h) {
        p->n_pool--;
        if (p->pool_gen[p->n_pool] == gen)
            h = p->pool[p->n_pool];
        else
            old[n_old++] = p->pool[p->n_pool]; /* made before the pin moved: its connection goes */
    }
    pthread_mutex_unlock(&p->mu);
    for (size_t i = 0; i < n_old; i++)
        curl_easy_cleanup(old[i]);
    return h ? h : curl_easy_init();
}

void proxy_handle_put(proxy *p, void *h, unsigned gen) {
    if (!h)
        return;
    pthread_mutex_lock(&p->mu);
    if (p->n_pool < PROXY_POOL && gen == veil_client_pin_generation(p->client)) { /* the pin held throughout */
        p->pool_gen[p->n_pool] = gen;
        p->pool[p->n_pool++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&p->mu);
    curl_easy_cleanup(h);
}

void proxy_models_free(proxy *p) {
    for (size_t i = 0; i < p->n_models; i++) {
        pthread_mutex_destroy(&p->models[i]->attest_mu);
        free(p->models[i]);
    }
    p->n_models = 0;
    for (size_t i = 0; i < p->n_pool; i++)
        curl_easy_cleanup(p->pool[i]);
    p->n_pool = 0;
    json_decref(p->catalog);
    p->catalog = NULL;
}
