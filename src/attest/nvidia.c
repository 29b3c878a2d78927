/* NVIDIA GPU evidence: the SPDM GET_MEASUREMENTS parser, the payload's
 * JSON, and local verification (signature, chain, nonce, RIM golden
 * measurements). Every length in a report is checked before use. */
#include "veil/nvidia.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "veil/hex.h"
#include "x509.h"

const uint8_t VEIL_NVIDIA_ROOT_SHA256[32] = {0x10, 0x2b, 0xf6, 0x59, 0xd5, 0x41, 0x96, 0x14, 0xc9, 0xd8, 0xe6,
                                             0xae, 0xce, 0xbc, 0x80, 0x45, 0x4e, 0xb2, 0x6b, 0x1d, 0xf6, 0xa7,
                                             0x69, 0xac, 0x72, 0x0b, 0x9a, 0x69, 0x0b, 0x16, 0x7b, 0x48};

#define SPDM_REQUEST_LEN 37
#define P384_SIG_LEN 96

static const char *const opaque_names[] = {
    [1] = "OPAQUE_FIELD_ID_CERT_ISSUER_NAME",
    [2] = "OPAQUE_FIELD_ID_CERT_AUTHORITY_KEY_IDENTIFIER",
    [3] = "OPAQUE_FIELD_ID_DRIVER_VERSION",
    [4] = "OPAQUE_FIELD_ID_GPU_INFO",
    [5] = "OPAQUE_FIELD_ID_SKU",
    [6] = "OPAQUE_FIELD_ID_VBIOS_VERSION",
    [7] = "OPAQUE_FIELD_ID_MANUFACTURER_ID",
    [8] = "OPAQUE_FIELD_ID_TAMPER_DETECTION",
    [9] = "OPAQUE_FIELD_ID_SMC",
    [10] = "OPAQUE_FIELD_ID_VPR",
    [11] = "OPAQUE_FIELD_ID_NVDEC0_STATUS",
    [12] = "OPAQUE_FIELD_ID_MSRSCNT",
    [13] = "OPAQUE_FIELD_ID_CPRINFO",
    [14] = "OPAQUE_FIELD_ID_BOARD_ID",
    [15] = "OPAQUE_FIELD_ID_CHIP_SKU",
    [16] = "OPAQUE_FIELD_ID_CHIP_SKU_MOD",
    [17] = "OPAQUE_FIELD_ID_PROJECT",
    [18] = "OPAQUE_FIELD_ID_PROJECT_SKU",
    [19] = "OPAQUE_FIELD_ID_PROJECT_SKU_MOD",
    [20] = "OPAQUE_FIELD_ID_FWID",
    [21] = "OPAQUE_FIELD_ID_PROTECTED_PCIE_STATUS",
    [22] = "OPAQUE_FIELD_ID_SWITCH_PDI",
    [23] = "OPAQUE_FIELD_ID_FLOORSWEPT_PORTS",
    [24] = "OPAQUE_FIELD_ID_POSITION_ID",
    [25] = "OPAQUE_FIELD_ID_LOCK_SWITCH_STATUS",
    [32] = "OPAQUE_FIELD_ID_GPU_LINK_CONN",
    [33] = "OPAQUE_FIELD_ID_SYS_ENABLE_STATUS",
    [34] = "OPAQUE_FIELD_ID_OPAQUE_DATA_VERSION",
    [35] = "OPAQUE_FIELD_ID_CHIP_INFO",
    [36] = "OPAQUE_FIELD_ID_FEATURE_FLAG",
};

const char *veil_spdm_opaque_name(uint16_t type) {
    return type < sizeof opaque_names / sizeof opaque_names[0] ? opaque_names[type] : NULL;
}

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

veil_rc veil_spdm_parse(veil_spdm_report *r, const uint8_t *d, size_t len, veil_err *err) {
    memset(r, 0, sizeof *r);
#define BAD(...) return veil_err_set(err, VEIL_ERR_MALFORMED, __VA_ARGS__)
    if (len < SPDM_REQUEST_LEN + 8 + 32 + 2 + P384_SIG_LEN)
        BAD("SPDM report of %zu bytes is too short", len);
    r->req_version = d[0], r->req_code = d[1], r->req_param1 = d[2], r->req_param2 = d[3];
    memcpy(r->req_nonce, d + 4, 32);
    r->req_slot = d[36];
    if (r->req_code != 0xE0)
        BAD("SPDM request code 0x%02x is not GET_MEASUREMENTS (0xe0)", r->req_code);
    if (r->req_version < 0x10 || r->req_version > 0x1F)
        BAD("SPDM request version 0x%02x unknown", r->req_version);
    const uint8_t *p = d + SPDM_REQUEST_LEN, *end = d + len;
    r->version = p[0], r->code = p[1], r->param1 = p[2], r->param2 = p[3], r->n_blocks = p[4];
    if (r->code != 0x60)
        BAD("SPDM response code 0x%02x is not MEASUREMENTS (0x60)", r->code);
    if (r->version != r->req_version)
        BAD("SPDM response version 0x%02x differs from the request's", r->version);
    r->record_len = (uint32_t)p[5] | (uint32_t)p[6] << 8 | (uint32_t)p[7] << 16;
    p += 8;
    if (r->record_len > (size_t)(end - p))
        BAD("SPDM measurement record of %u bytes runs past the end", r->record_len);
    const uint8_t *rec = p, *rec_end = p + r->record_len;
    for (unsigned i = 0; i < r->n_blocks; i++) {
        if (rec_end - rec < 4)
            BAD("SPDM measurement block %u is truncated", i);
        veil_spdm_block *b = &r->blocks[i];
        b->index = rec[0];
        b->spec = rec[1];
        uint16_t size = le16(rec + 2);
        rec += 4;
        if (size > rec_end - rec)
            BAD("SPDM measurement block %u of %u bytes runs past the record", i, size);
        if (size < 3)
            BAD("SPDM measurement block %u is too small for a DMTF measurement", i);
        b->value_type = rec[0];
        b->value_size = le16(rec + 1);
        if ((size_t)b->value_size + 3 != size)
            BAD("SPDM measurement block %u: value size disagrees with block size", i);
        b->value = rec + 3;
        rec += size;
    }
    if (rec != rec_end)
        BAD("SPDM measurement record has %zu bytes after its %u blocks", (size_t)(rec_end - rec), r->n_blocks);
    p = rec_end;
    if (end - p < 34)
        BAD("SPDM response is truncated before its nonce");
    memcpy(r->nonce, p, 32);
    r->opaque_len = le16(p + 32);
    p += 34;
    if (r->opaque_len > end - p)
        BAD("SPDM opaque data of %u bytes runs past the end", r->opaque_len);
    const uint8_t *o = p, *o_end = p + r->opaque_len;
    while (o < o_end) {
        if (o_end - o < 4)
            BAD("SPDM opaque data field is truncated");
        if (r->n_opaque == VEIL_SPDM_MAX_OPAQUE)
            BAD("SPDM opaque data has more than %d fields", VEIL_SPDM_MAX_OPAQUE);
        veil_spdm_opaque *f = &r->opaque[r->n_opaque++];
        f->type = le16(o);
        f->size = le16(o + 2);
        o += 4;
        if (f->size > o_end - o)
            BAD("SPDM opaque field %u runs past the opaque data", f->type);
        f->value = o;
        o += f->size;
        if (f->type == VEIL_SPDM_OPAQUE_DRIVER_VERSION) {
            size_t n = strnlen((const char *)f->value, f->size);
            if (n >= sizeof r->driver_version)
                n = sizeof r->driver_version - 1;
            for (size_t k = 0; k < n; k++)
                r->driver_version[k] = f->value[k] >= 0x20 && f->value[k] < 0x7f ? (char)f->value[k] : '?';
        } else if (f->type == VEIL_SPDM_OPAQUE_VBIOS_VERSION && f->size >= 5) {
            const uint8_t *v = f->value;
            size_t n = strnlen((const char *)v, f->size), k = 0;
            while (k < n && ((v[k] >= '0' && v[k] <= '9') || ((v[k] | 32) >= 'a' && (v[k] | 32) <= 'f') || v[k] == '.'))
                k++;
            if (n >= 5 && k == n && memchr(v, '.', n)) /* NVSwitches write it as text */
                snprintf(r->vbios_version, sizeof r->vbios_version, "%.*s", (int)(n < 31 ? n : 31), (const char *)v);
            else /* GPUs: a u32 little-endian, then one more byte: 96.00.74.00.20 */
                snprintf(r->vbios_version, sizeof r->vbios_version, "%02x.%02x.%02x.%02x.%02x", v[3], v[2], v[1], v[0],
                         v[4]);
        }
    }
    p = o_end;
    if (end - p != P384_SIG_LEN)
        BAD("SPDM report ends with %zu bytes where a %d-byte P-384 signature belongs", (size_t)(end - p), P384_SIG_LEN);
    r->signature = p;
    r->signed_data = d;
    r->signed_len = len - P384_SIG_LEN;
    return VEIL_OK;
#undef BAD
}

/* ---- payload ---- */

void veil_gpu_payload_clear(veil_gpu_payload *p) {
    for (size_t i = 0; p->items && i < p->n; i++) {
        free(p->items[i].report);
        free(p->items[i].chain);
    }
    free(p->items);
    memset(p, 0, sizeof *p);
}

static char *b64_encode(const uint8_t *d, size_t n) {
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (out)
        EVP_EncodeBlock((unsigned char *)out, d, (int)n);
    return out;
}

static void copy_arch(char out[16], json_t *v, const char *dflt) {
    const char *s = json_string_value(v);
    snprintf(out, 16, "%s", s && *s ? s : dflt);
}

static int nonce_of(json_t *v, uint8_t out[32]) {
    size_t n;
    const char *s = json_string_value(v);
    return s && veil_hex_decode(out, 32, &n, s, strlen(s), NULL) == VEIL_OK && n == 32;
}

veil_rc veil_gpu_payload_parse(veil_gpu_payload *out, const char *json, size_t len, veil_err *err) {
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_DECODE_ANY, &je);
    if (json_is_string(root)) { /* the payload as the attestation response carries it: a JSON string */
        json_t *inner = json_loadb(json_string_value(root), json_string_length(root), 0, &je);
        json_decref(root);
        root = inner;
    }
    if (!root)
        return veil_err_set(err, VEIL_ERR_MALFORMED, "GPU evidence is not JSON: %s", je.text);
    json_t *list = json_is_array(root) ? root : json_object_get(root, "evidence_list");
    veil_rc rc = VEIL_OK;
    if (!json_is_array(list) || json_array_size(list) == 0 || json_array_size(list) > 64) {
        rc = veil_err_set(err, VEIL_ERR_MALFORMED, "GPU evidence needs an evidence_list of 1 to 64 items");
        goto done;
    }
    copy_arch(out->arch, json_object_get(root, "arch"), "HOPPER");
    out->has_nonce = nonce_of(json_object_get(root, "nonce"), out->nonce);
    if (json_object_get(root, "nonce") && !json_is_array(root) && !out->has_nonce) {
        rc = veil_err_set(err, VEIL_ERR_MALFORMED, "GPU payload nonce must be 64 hex characters");
        goto done;
    }
    out->items = calloc(json_array_size(list), sizeof *out->items);
    if (!out->items) {
        rc = veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
        goto done;
    }
    size_t i;
    json_t *it;
    json_array_foreach(list, i, it) {
        veil_gpu_evidence *e = &out->items[out->n++];
        json_t *cert = json_object_get(it, "certificate"), *ev = json_object_get(it, "evidence");
        copy_arch(e->arch, json_object_get(it, "arch"), out->arch);
        if (!json_is_string(cert) || !json_is_string(ev) ||
            !(e->chain = veil_base64_decode(json_string_value(cert), json_string_length(cert), &e->chain_len)) ||
            !(e->report = veil_base64_decode(json_string_value(ev), json_string_length(ev), &e->report_len))) {
            rc = veil_err_set(err, VEIL_ERR_MALFORMED, "GPU evidence %zu needs base64 certificate and evidence", i);
            goto done;
        }
        if (!out->has_nonce && json_is_array(root)) /* plain lists carry the nonce per item */
            out->has_nonce = nonce_of(json_object_get(it, "nonce"), out->nonce);
    }
done:
    json_decref(root);
    if (rc != VEIL_OK)
        veil_gpu_payload_clear(out);
    return rc;
}

char *veil_gpu_payload_json(const veil_gpu_payload *p) {
    char nonce[65];
    veil_hex_encode(nonce, p->nonce, 32);
    json_t *list = json_array();
    for (size_t i = 0; i < p->n; i++) {
        char *c = b64_encode(p->items[i].chain, p->items[i].chain_len);
        char *e = b64_encode(p->items[i].report, p->items[i].report_len);
        if (c && e)
            json_array_append_new(
                list, json_pack("{s:s, s:s, s:s}", "arch", p->items[i].arch, "certificate", c, "evidence", e));
        free(c), free(e);
    }
    json_t *o = json_pack("{s:s, s:o, s:s}", "nonce", nonce, "evidence_list", list, "arch", p->arch);
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    return s;
}

/* ---- RIMs ---- */

typedef struct golden {
    int active, alternatives;
    uint8_t hash[4][48];
} golden;

/* The value of attribute `name` inside the element text [p, end), or NULL. */
static const char *attr(const char *p, const char *end, const char *name, size_t *len) {
    size_t nl = strlen(name);
    for (const char *q = p; q + nl + 2 <= end; q++) {
        if (memcmp(q, name, nl) == 0 && q[nl] == '=' && q[nl + 1] == '"' && (q == p || q[-1] == ' ' || q[-1] == ':')) {
            const char *v = q + nl + 2, *e = memchr(v, '"', (size_t)(end - v));
            if (!e)
                return NULL;
            *len = (size_t)(e - v);
            return v;
        }
    }
    return NULL;
}

/* Reads a RIM (SWID tag) file: its colloquialVersion and the measurement
 * golden values by index. Only the measurements are used: the RIM's own
 * XML signature is not checked here. Returns 1 when it is a RIM. */
static int load_rim(const char *path, char *version, size_t vcap, golden g[64]) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    char *buf = malloc(4 << 20);
    size_t n = buf ? fread(buf, 1, (4 << 20) - 1, f) : 0;
    fclose(f);
    if (!buf)
        return 0;
    buf[n] = 0;
    const char *end = buf + n, *meta = strstr(buf, "colloquialVersion=\"");
    int ok = 0;
    if (meta) {
        size_t l;
        const char *v = attr(meta, end, "colloquialVersion", &l);
        snprintf(version, vcap, "%.*s", (int)(l < vcap - 1 ? l : vcap - 1), v ? v : "");
        ok = 1;
    }
    memset(g, 0, 64 * sizeof *g);
    for (const char *p = buf; ok && (p = strstr(p, "<")) != NULL; p++) {
        const char *e = memchr(p, '>', (size_t)(end - p));
        if (!e)
            break;
        size_t l;
        const char *t = attr(p, e, "type", &l);
        if (!t || l != 11 || memcmp(t, "Measurement", 11) != 0)
            continue;
        const char *ix = attr(p, e, "index", &l), *ac = attr(p, e, "active", &l), *al;
        size_t lal;
        al = attr(p, e, "alternatives", &lal);
        int index = ix ? atoi(ix) : -1;
        if (index < 0 || index >= 64)
            continue;
        golden *gd = &g[index];
        gd->active = ac && strncasecmp(ac, "true", 4) == 0;
        gd->alternatives = al ? atoi(al) : 1;
        if (gd->alternatives < 1 || gd->alternatives > 4)
            gd->alternatives = gd->alternatives < 1 ? 1 : 4;
        for (int k = 0; k < gd->alternatives; k++) {
            char name[16];
            snprintf(name, sizeof name, "Hash%d", k);
            const char *h = attr(p, e, name, &l);
            size_t hl;
            if (!h || veil_hex_decode(gd->hash[k], 48, &hl, h, l, NULL) != VEIL_OK || hl != 48)
                gd->active = 0;
        }
    }
    free(buf);
    return ok;
}

/* Compares the report's measurements with the RIMs of rim_dir whose
 * version is the report's driver or VBIOS version. Several RIMs may carry
 * one version (production and test ones, board variants): each role takes
 * the RIM the report matches best, and every RIM in the directory is one
 * the caller trusts. */
static void check_rims(const veil_spdm_report *r, const char *dir, veil_gpu_item_verdict *it) {
    DIR *d = opendir(dir);
    if (!d)
        return;
    int best_mis[2] = {-1, -1}, best_cmp[2] = {0, 0};
    struct dirent *de;
    golden *g = malloc(64 * sizeof *g);
    while (g && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char path[4096], version[64];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (!load_rim(path, version, sizeof version, g))
            continue;
        int which = r->driver_version[0] && strcasecmp(version, r->driver_version) == 0 ? 0
                    : r->vbios_version[0] && strcasecmp(version, r->vbios_version) == 0 ? 1
                                                                                        : -1;
        if (which < 0)
            continue;
        int compared = 0, mismatches = 0;
        for (int i = 0; i < 64; i++) {
            if (!g[i].active)
                continue;
            compared++;
            const veil_spdm_block *b = NULL;
            for (unsigned k = 0; k < r->n_blocks; k++)
                if (r->blocks[k].index == i + 1)
                    b = &r->blocks[k]; /* RIM index i is SPDM block i + 1 */
            int match = 0;
            for (int k = 0; b && b->value_size == 48 && k < g[i].alternatives; k++)
                match |= memcmp(b->value, g[i].hash[k], 48) == 0;
            mismatches += !match;
        }
        if (best_mis[which] < 0 || mismatches < best_mis[which]) {
            best_mis[which] = mismatches;
            best_cmp[which] = compared;
        }
    }
    free(g);
    closedir(d);
    it->rims_checked = best_mis[0] >= 0 && best_mis[1] >= 0;
    it->compared = best_cmp[0] + best_cmp[1];
    it->mismatches = (best_mis[0] > 0 ? best_mis[0] : 0) + (best_mis[1] > 0 ? best_mis[1] : 0);
    it->measurements_ok = it->rims_checked && it->mismatches == 0;
}

/* ---- verification ---- */

static int p384_verify(X509 *leaf, const uint8_t sig[96], const uint8_t *data, size_t n) {
    EVP_PKEY *key = X509_get0_pubkey(leaf);
    return key && veil_ecdsa_verify_raw(key, sig, 48, EVP_sha384(), data, n);
}

static void item_fail(veil_gpu_item_verdict *it, const char *code, const char *what, const char *detail) {
    if (it->code)
        return;
    it->code = code;
    snprintf(it->message, sizeof it->message, "%.60s%s%.230s", what, *what ? ": " : "", detail);
}

static void verify_item(const veil_gpu_evidence *e, const uint8_t nonce[32], const veil_gpu_verify_opts *o,
                        X509 *custom_root, veil_gpu_item_verdict *it) {
    veil_spdm_report *r = malloc(sizeof *r);
    veil_err err;
    snprintf(it->arch, sizeof it->arch, "%s", e->arch);
    if (!r || veil_spdm_parse(r, e->report, e->report_len, &err) != VEIL_OK) {
        item_fail(it, "MALFORMED", "", r ? err.message : "out of memory");
        free(r);
        return;
    }
    snprintf(it->driver_version, sizeof it->driver_version, "%s", r->driver_version);
    snprintf(it->vbios_version, sizeof it->vbios_version, "%s", r->vbios_version);
    it->nonce_ok = nonce && memcmp(r->req_nonce, nonce, 32) == 0;
    const char *why = NULL;
    STACK_OF(X509) *certs = veil_x509_parse_certs(e->chain, e->chain_len, &why);
    X509 *leaf = certs ? veil_x509_find_leaf(certs) : NULL;
    it->signature_ok = leaf && p384_verify(leaf, r->signature, r->signed_data, r->signed_len);
    X509 *root = custom_root ? custom_root : certs ? veil_x509_find_pinned(certs, VEIL_NVIDIA_ROOT_SHA256) : NULL;
    int x509_error = 0;
    if (leaf && root) {
        it->chain_ok = veil_x509_verify_path(leaf, certs, root, o->at ? o->at : (int64_t)time(NULL), 1, &x509_error);
    }
    if (!nonce)
        item_fail(it, "NONCE_MISMATCH", "", "no nonce to check the report against");
    else if (!it->nonce_ok)
        item_fail(it, "NONCE_MISMATCH", "", "the report's request nonce is not the expected one");
    if (!certs)
        item_fail(it, "MALFORMED", "certificate chain", why ? why : "unreadable");
    else if (!it->signature_ok)
        item_fail(it, "SIGNATURE_INVALID", "", "the report's P-384 signature does not verify with the chain's leaf");
    else if (!root)
        item_fail(it, "ROOT_NOT_TRUSTED", "", "the chain does not end at the pinned NVIDIA Device Identity CA");
    else if (!it->chain_ok) {
        int expired = x509_error == X509_V_ERR_CERT_HAS_EXPIRED || x509_error == X509_V_ERR_CERT_NOT_YET_VALID;
        int untrusted = x509_error == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
                        x509_error == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
                        x509_error == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
                        x509_error == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT;
        item_fail(it,
                  expired     ? "CERT_EXPIRED"
                  : untrusted ? "ROOT_NOT_TRUSTED"
                              : "CHAIN_INVALID",
                  "certificate chain", X509_verify_cert_error_string(x509_error));
    }
    if (o->rim_dir) {
        check_rims(r, o->rim_dir, it);
        char detail[230];
        if (!it->rims_checked) {
            snprintf(detail, sizeof detail, "no driver RIM %s and VBIOS RIM %s in the RIM directory", r->driver_version,
                     r->vbios_version);
            item_fail(it, "MEASUREMENT_MISMATCH", "", detail);
        } else if (it->mismatches) {
            snprintf(detail, sizeof detail, "%d of %d golden measurements differ", it->mismatches, it->compared);
            item_fail(it, "MEASUREMENT_MISMATCH", "", detail);
        }
    }
    sk_X509_pop_free(certs, X509_free);
    free(r);
}

void veil_gpu_verdict_clear(veil_gpu_verdict *v) {
    free(v->items);
    memset(v, 0, sizeof *v);
}

veil_rc veil_gpu_verify(veil_gpu_verdict *v, const veil_gpu_payload *p, const veil_gpu_verify_opts *o, veil_err *err) {
    memset(v, 0, sizeof *v);
    static const veil_gpu_verify_opts none;
    if (!o)
        o = &none;
    X509 *custom = NULL;
    if (o->root_der) {
        const unsigned char *q = o->root_der;
        custom = d2i_X509(NULL, &q, (long)o->root_der_len);
        if (!custom)
            return veil_err_set(err, VEIL_ERR_INVALID_ARG, "the given GPU root certificate is not DER");
    }
    v->items = calloc(p->n ? p->n : 1, sizeof *v->items);
    if (!v->items) {
        X509_free(custom);
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    }
    v->n = p->n;
    const uint8_t *nonce = o->nonce ? o->nonce : p->has_nonce ? p->nonce : NULL;
    if (o->nonce && p->has_nonce && memcmp(o->nonce, p->nonce, 32) != 0)
        nonce = o->nonce; /* the caller's wins */
    v->accepted = p->n > 0;
    for (size_t i = 0; i < p->n; i++) {
        verify_item(&p->items[i], nonce, o, custom, &v->items[i]);
        if (v->items[i].code && v->accepted) {
            v->accepted = 0;
            v->code = v->items[i].code;
            snprintf(v->message, sizeof v->message, "evidence %zu (%.15s): %.300s", i, v->items[i].arch,
                     v->items[i].message);
        }
    }
    if (!p->n) {
        v->code = "MALFORMED";
        snprintf(v->message, sizeof v->message, "no GPU evidence");
    }
    X509_free(custom);
    return VEIL_OK;
}
