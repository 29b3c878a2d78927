/* Event logs: parsing (dstack JSON, CCEL TCG2 binary), building runtime
 * events, and replaying them into RTMRs. Logs are untrusted input. */
#include "veil/eventlog.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "veil/hex.h"

typedef struct event {
    uint32_t imr;
    uint32_t type;
    uint8_t digest[48];
    char *name;       /* NUL-terminated; "" for boot events */
    uint8_t *payload;
    size_t payload_len;
} event;

struct veil_event_log {
    event *events;
    size_t n, cap;
};

veil_event_log *veil_event_log_new(void) { return calloc(1, sizeof(veil_event_log)); }

void veil_event_log_free(veil_event_log *log) {
    if (!log)
        return;
    for (size_t i = 0; i < log->n; i++) {
        free(log->events[i].name);
        free(log->events[i].payload);
    }
    free(log->events);
    free(log);
}

size_t veil_event_log_count(const veil_event_log *log) { return log ? log->n : 0; }

static event *push(veil_event_log *log) {
    if (log->n == log->cap) {
        size_t cap = log->cap ? log->cap * 2 : 16;
        event *e = realloc(log->events, cap * sizeof *e);
        if (!e)
            return NULL;
        log->events = e;
        log->cap = cap;
    }
    event *e = &log->events[log->n++];
    memset(e, 0, sizeof *e);
    return e;
}

/* The dstack runtime event digest. */
static void runtime_digest(uint8_t out[48], uint32_t type, const char *name, const uint8_t *payload, size_t n) {
    uint8_t le[4] = {(uint8_t)type, (uint8_t)(type >> 8), (uint8_t)(type >> 16), (uint8_t)(type >> 24)};
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || EVP_DigestInit_ex(md, EVP_sha384(), NULL) != 1 || EVP_DigestUpdate(md, le, 4) != 1 ||
        EVP_DigestUpdate(md, ":", 1) != 1 || EVP_DigestUpdate(md, name, strlen(name)) != 1 ||
        EVP_DigestUpdate(md, ":", 1) != 1 || EVP_DigestUpdate(md, payload, n) != 1 ||
        EVP_DigestFinal_ex(md, out, NULL) != 1)
        memset(out, 0xff, 48); /* cannot happen with the default provider; never matches a real digest */
    EVP_MD_CTX_free(md);
}

static veil_rc set_event(veil_event_log *log, uint32_t imr, uint32_t type, const uint8_t *digest, const char *name,
                         const uint8_t *payload, size_t payload_len, veil_err *err) {
    event *e = push(log);
    if (!e)
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    e->imr = imr;
    e->type = type;
    e->name = strdup(name);
    e->payload = malloc(payload_len ? payload_len : 1);
    if (!e->name || !e->payload)
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    if (payload_len)
        memcpy(e->payload, payload, payload_len);
    e->payload_len = payload_len;
    if (digest)
        memcpy(e->digest, digest, 48);
    else
        runtime_digest(e->digest, type, name, payload, payload_len);
    return VEIL_OK;
}

veil_rc veil_event_log_add_runtime(veil_event_log *log, const char *name, const uint8_t *payload, size_t payload_len,
                                   veil_err *err) {
    return set_event(log, 3, VEIL_EVENT_RUNTIME, NULL, name, payload, payload_len, err);
}

static veil_rc parse_json(veil_event_log *log, json_t *arr, veil_err *err) {
    size_t i;
    json_t *ev;
    json_array_foreach(arr, i, ev) {
        json_t *imr = json_object_get(ev, "imr"), *type = json_object_get(ev, "event_type");
        const char *digest_hex = json_string_value(json_object_get(ev, "digest"));
        const char *name = json_string_value(json_object_get(ev, "event"));
        const char *payload_hex = json_string_value(json_object_get(ev, "event_payload"));
        if (!json_is_integer(imr) || json_integer_value(imr) < 0 || json_integer_value(imr) > 3 ||
            !json_is_integer(type) || json_integer_value(type) < 0 || json_integer_value(type) > 0xffffffffLL ||
            !digest_hex || !name || !payload_hex)
            return veil_err_set(err, VEIL_ERR_MALFORMED,
                                "event %zu: needs imr 0..3, event_type, digest, event and event_payload", i);
        uint8_t digest[48];
        size_t plen = strlen(payload_hex);
        uint8_t *payload = malloc(plen / 2 + 1);
        if (!payload)
            return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
        if (veil_hex_decode_exact(digest, 48, digest_hex, strlen(digest_hex), 0, NULL) != VEIL_OK ||
            veil_hex_decode(payload, plen / 2 + 1, NULL, payload_hex, plen, NULL) != VEIL_OK) {
            free(payload);
            return veil_err_set(err, VEIL_ERR_MALFORMED, "event %zu: digest must be 96 hex characters and the payload hex", i);
        }
        uint32_t t = (uint32_t)json_integer_value(type);
        if (t == VEIL_EVENT_RUNTIME) {
            uint8_t want[48];
            runtime_digest(want, t, name, payload, plen / 2);
            if (memcmp(want, digest, 48) != 0) {
                free(payload);
                return veil_err_set(err, VEIL_ERR_MALFORMED,
                                    "event %zu (%s): digest does not match its name and payload", i, name);
            }
        }
        veil_rc rc = set_event(log, (uint32_t)json_integer_value(imr), t, digest, name, payload, plen / 2, err);
        free(payload);
        if (rc != VEIL_OK)
            return rc;
    }
    return VEIL_OK;
}

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

#define TPM_ALG_SHA384 0x000c
#define EV_NO_ACTION 0x00000003u

/* TCG2 crypto-agile log as the CCEL ACPI table points to. */
static veil_rc parse_ccel(veil_event_log *log, const uint8_t *d, size_t len, veil_err *err) {
    /* First event: TCG_PCClientPCREvent with a SHA-1-sized digest holding the
     * Spec ID Event03, which lists the digest sizes of every algorithm. */
    if (len < 32 || le32(d + 4) != EV_NO_ACTION)
        return veil_err_set(err, VEIL_ERR_MALFORMED, "event log is neither JSON nor a TCG2 (CCEL) log");
    size_t size = le32(d + 28);
    if (size > len - 32 || size < 29 || memcmp(d + 32, "Spec ID Event03", 16) != 0)
        return veil_err_set(err, VEIL_ERR_MALFORMED, "TCG2 log lacks its Spec ID Event03 header");
    const uint8_t *spec = d + 32;
    uint32_t nalg = le32(spec + 24);
    if (nalg == 0 || nalg > 16 || 28 + (size_t)nalg * 4 > size)
        return veil_err_set(err, VEIL_ERR_MALFORMED, "TCG2 log header lists a bad number of algorithms");
    uint16_t algs[16], sizes[16];
    for (uint32_t i = 0; i < nalg; i++) {
        algs[i] = le16(spec + 28 + 4 * i);
        sizes[i] = le16(spec + 30 + 4 * i);
        if (sizes[i] == 0 || sizes[i] > 64)
            return veil_err_set(err, VEIL_ERR_MALFORMED, "TCG2 log header has a bad digest size");
    }
    size_t pos = 32 + size;
    while (pos + 12 <= len) {
        uint32_t mr = le32(d + pos), type = le32(d + pos + 4), count = le32(d + pos + 8);
        if (mr == 0xffffffffu || (mr == 0 && type == 0 && count == 0))
            break; /* padding after the last event */
        size_t p = pos + 12;
        uint8_t digest[48];
        int have = 0;
        if (count == 0 || count > nalg)
            return veil_err_set(err, VEIL_ERR_MALFORMED, "TCG2 event at offset %zu has a bad digest count", pos);
        for (uint32_t k = 0; k < count; k++) {
            if (p + 2 > len)
                return veil_err_set(err, VEIL_ERR_MALFORMED, "TCG2 event at offset %zu is truncated", pos);
            uint16_t alg = le16(d + p);
            uint32_t j = 0;
            while (j < nalg && algs[j] != alg)
                j++;
            if (j == nalg || p + 2 + sizes[j] > len)
                return veil_err_set(err, VEIL_ERR_MALFORMED, "TCG2 event at offset %zu has an unknown digest", pos);
            if (alg == TPM_ALG_SHA384 && sizes[j] == 48) {
                memcpy(digest, d + p + 2, 48);
                have = 1;
            }
            p += 2 + sizes[j];
        }
        if (p + 4 > len || le32(d + p) > len - p - 4)
            return veil_err_set(err, VEIL_ERR_MALFORMED, "TCG2 event at offset %zu is truncated", pos);
        uint32_t esize = le32(d + p);
        const uint8_t *edata = d + p + 4;
        pos = p + 4 + esize;
        if (type == EV_NO_ACTION || mr == 0)
            continue; /* not extended, or MRTD (built by the TDX module) */
        if (mr > 4 || !have)
            return veil_err_set(err, VEIL_ERR_MALFORMED, "TCG2 event extends MR %u without a SHA-384 digest", mr);
        veil_rc rc = set_event(log, mr - 1, type, digest, "", edata, esize, err);
        if (rc != VEIL_OK)
            return rc;
    }
    return VEIL_OK;
}

veil_rc veil_event_log_parse(veil_event_log **out, const uint8_t *data, size_t len, veil_err *err) {
    *out = NULL;
    veil_event_log *log = veil_event_log_new();
    if (!log)
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    size_t a = 0;
    while (a < len && (data[a] == ' ' || data[a] == '\n' || data[a] == '\r' || data[a] == '\t'))
        a++;
    veil_rc rc;
    if (a < len && (data[a] == '[' || data[a] == '"')) {
        json_error_t jerr;
        json_t *root = json_loadb((const char *)data + a, len - a, JSON_DECODE_ANY, &jerr);
        if (json_is_string(root)) { /* the log as a JSON string inside a response */
            json_t *inner = json_loadb(json_string_value(root), json_string_length(root), 0, &jerr);
            json_decref(root);
            root = inner;
        }
        rc = json_is_array(root) ? parse_json(log, root, err)
                                 : veil_err_set(err, VEIL_ERR_MALFORMED, "event log is not a JSON array of events");
        json_decref(root);
    } else {
        rc = parse_ccel(log, data, len, err);
    }
    if (rc != VEIL_OK) {
        veil_event_log_free(log);
        return rc;
    }
    *out = log;
    return VEIL_OK;
}

void veil_event_log_replay(const veil_event_log *log, uint8_t rtmr[4][48], unsigned *imr_mask) {
    memset(rtmr, 0, 4 * 48);
    unsigned mask = 0;
    for (size_t i = 0; log && i < log->n; i++) {
        const event *e = &log->events[i];
        uint8_t buf[96];
        memcpy(buf, rtmr[e->imr], 48);
        memcpy(buf + 48, e->digest, 48);
        EVP_Digest(buf, sizeof buf, rtmr[e->imr], NULL, EVP_sha384(), NULL);
        mask |= 1u << e->imr;
    }
    if (imr_mask)
        *imr_mask = mask;
}

char *veil_event_log_to_json(const veil_event_log *log) {
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < log->n; i++) {
        const event *e = &log->events[i];
        char digest[97];
        veil_hex_encode(digest, e->digest, 48);
        char *payload = veil_hex_encode_alloc(e->payload, e->payload_len);
        json_array_append_new(arr, json_pack("{s:i, s:I, s:s, s:s, s:s}", "imr", (int)e->imr, "event_type",
                                             (json_int_t)e->type, "digest", digest, "event", e->name, "event_payload",
                                             payload ? payload : ""));
        free(payload);
    }
    char *s = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    return s;
}
