/* Fetching DCAP collateral from Intel's PCS or a PCCS (API v4): TCB info and
 * QE identity with their issuer chains (sent URL-encoded in response
 * headers), the PCK CRL and the root CA CRL, assembled into the collateral
 * JSON veil_collateral_parse reads. Everything fetched is verified later
 * against the pinned root: the PCS is not trusted, only its signatures. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <jansson.h>

#include "client_internal.h"
#include "veil/buf.h"
#include "veil/hex.h"

typedef struct fetch {
    veil_buf body;
    const char *want_header; /* the issuer-chain header to capture */
    char *header;            /* its URL-decoded value */
} fetch;

static size_t on_header(char *p, size_t size, size_t n, void *ctx) {
    fetch *f = ctx;
    size_t len = size * n, k = f->want_header ? strlen(f->want_header) : 0;
    if (k && len > k + 1 && !strncasecmp(p, f->want_header, k) && p[k] == ':' && !f->header) {
        const char *v = p + k + 1;
        size_t vl = len - k - 1;
        while (vl && (*v == ' ' || *v == '\t'))
            v++, vl--;
        while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
            vl--;
        int out = 0;
        char *dec = curl_easy_unescape(NULL, v, (int)vl, &out);
        if (dec) {
            f->header = strndup(dec, (size_t)out);
            curl_free(dec);
        }
    }
    return len;
}

static veil_rc get(const char *url, fetch *f, veil_err *err) {
    f->body.limit = 8u << 20;
    CURL *h = curl_easy_init();
    long status = 0;
    CURLcode rc = CURLE_FAILED_INIT;
    if (h) {
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, veil_buf_curl_write);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &f->body);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, f);
        curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
        rc = curl_easy_perform(h);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    }
    curl_easy_cleanup(h);
    if (rc != CURLE_OK || status != 200)
        return veil_err_set(err, VEIL_ERR_IO, "PCS %s: %s", url, rc != CURLE_OK ? curl_easy_strerror(rc) : "not found");
    return VEIL_OK;
}

veil_rc veil_pcs_collateral(const char *pcs_url, const veil_quote *q, const veil_pck_info *pck, int processor_ca,
                            char **json_out, veil_err *err) {
    *json_out = NULL;
    size_t n = strlen(pcs_url);
    while (n && pcs_url[n - 1] == '/')
        n--;
    const char *kind = q->tee_type == VEIL_TEE_TYPE_TDX ? "tdx" : "sgx";
    char fmspc[13], url[1024];
    veil_hex_encode(fmspc, pck->fmspc, 6);
    fetch tcb = {{0}, "TCB-Info-Issuer-Chain", NULL}, qe = {{0}, "SGX-Enclave-Identity-Issuer-Chain", NULL},
          crl = {{0}, "SGX-PCK-CRL-Issuer-Chain", NULL}, root = {{0}, NULL, NULL};
    veil_rc rc;
    snprintf(url, sizeof url, "%.*s/%s/certification/v4/tcb?fmspc=%s", (int)n, pcs_url, kind, fmspc);
    rc = get(url, &tcb, err);
    if (rc == VEIL_OK) {
        snprintf(url, sizeof url, "%.*s/%s/certification/v4/qe/identity", (int)n, pcs_url, kind);
        rc = get(url, &qe, err);
    }
    if (rc == VEIL_OK) {
        snprintf(url, sizeof url, "%.*s/sgx/certification/v4/pckcrl?ca=%s&encoding=der", (int)n, pcs_url,
                 processor_ca ? "processor" : "platform");
        rc = get(url, &crl, err);
    }
    if (rc == VEIL_OK) {
        snprintf(url, sizeof url, "%.*s/sgx/certification/v4/rootcacrl", (int)n, pcs_url);
        rc = get(url, &root, err);
    }
    if (rc == VEIL_OK && (!tcb.header || !qe.header))
        rc = veil_err_set(err, VEIL_ERR_MALFORMED, "PCS answered without the issuer-chain headers");
    if (rc == VEIL_OK) {
        /* a PCCS serves the root CA CRL as hex text, Intel as DER */
        char *crl_hex = veil_hex_encode_alloc((const uint8_t *)crl.body.data, crl.body.len);
        char *root_text = root.body.data && veil_hex_is_valid(root.body.data, root.body.len)
                              ? strdup(root.body.data)
                              : veil_hex_encode_alloc((const uint8_t *)root.body.data, root.body.len);
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "tcb_info", tcb.body.data ? tcb.body.data : "",
                              "tcb_info_issuer_chain", tcb.header, "qe_identity", qe.body.data ? qe.body.data : "",
                              "qe_identity_issuer_chain", qe.header, "pck_crl", crl_hex ? crl_hex : "", "root_ca_crl",
                              root_text ? root_text : "");
        if (o && crl.header)
            json_object_set_new(o, "pck_crl_issuer_chain", json_string(crl.header));
        *json_out = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        free(crl_hex);
        free(root_text);
        if (!*json_out)
            rc = veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    }
    fetch *all[] = {&tcb, &qe, &crl, &root};
    for (int i = 0; i < 4; i++) {
        veil_buf_free(&all[i]->body);
        free(all[i]->header);
    }
    return rc;
}
