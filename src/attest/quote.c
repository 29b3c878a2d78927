/* DCAP quote parsing: v3 (SGX), v4 (TD 1.0) and v5 (SGX, TD 1.0, TD 1.5).
 * A quote is untrusted input: every read goes through a bounds-checked cursor. */
#include "veil/quote.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "veil/hex.h"

/* A bounds-checked little-endian reader over the quote. */
typedef struct cursor {
    const uint8_t *buf;
    size_t len, pos;
    int failed;
    const char *field; /* the field that did not fit, for the error message */
} cursor;

static const uint8_t *take(cursor *c, size_t n, const char *field) {
    if (c->failed)
        return NULL;
    if (n > c->len - c->pos) {
        c->failed = 1;
        c->field = field;
        return NULL;
    }
    const uint8_t *p = c->buf + c->pos;
    c->pos += n;
    return p;
}

static void copy(cursor *c, void *out, size_t n, const char *field) {
    const uint8_t *p = take(c, n, field);
    if (p)
        memcpy(out, p, n);
}

static uint16_t u16(cursor *c, const char *field) {
    const uint8_t *p = take(c, 2, field);
    return p ? (uint16_t)(p[0] | p[1] << 8) : 0;
}

static uint32_t u32(cursor *c, const char *field) {
    const uint8_t *p = take(c, 4, field);
    return p ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24 : 0;
}

static veil_rc fail(veil_quote_code *why, veil_quote_code code, veil_err *err, const char *msg) {
    if (why)
        *why = code;
    return veil_err_set(err, VEIL_ERR_MALFORMED, "%s", msg);
}

static veil_rc truncated(veil_quote_code *why, const cursor *c, veil_err *err) {
    if (why)
        *why = VEIL_QUOTE_TRUNCATED;
    return veil_err_set(err, VEIL_ERR_MALFORMED, "quote is truncated in %s (%zu bytes)", c->field, c->len);
}

/* The 384-byte enclave report layout (SGX report body). */
static void enclave_report(cursor *c, veil_enclave_report *r) {
    copy(c, r->cpu_svn, 16, "report CPUSVN");
    r->misc_select = u32(c, "report MISCSELECT");
    take(c, 28, "report reserved");
    copy(c, r->attributes, 16, "report ATTRIBUTES");
    copy(c, r->mr_enclave, 32, "report MRENCLAVE");
    take(c, 32, "report reserved");
    copy(c, r->mr_signer, 32, "report MRSIGNER");
    take(c, 96, "report reserved");
    r->isv_prod_id = u16(c, "report ISVPRODID");
    r->isv_svn = u16(c, "report ISVSVN");
    take(c, 60, "report reserved");
    copy(c, r->report_data, 64, "report REPORTDATA");
}

static void td_report(cursor *c, veil_td_report *t, int td15) {
    copy(c, t->tee_tcb_svn, 16, "TEE_TCB_SVN");
    copy(c, t->mr_seam, 48, "MRSEAM");
    copy(c, t->mr_signer_seam, 48, "MRSIGNERSEAM");
    copy(c, t->seam_attributes, 8, "SEAMATTRIBUTES");
    copy(c, t->td_attributes, 8, "TDATTRIBUTES");
    copy(c, t->xfam, 8, "XFAM");
    copy(c, t->mr_td, 48, "MRTD");
    copy(c, t->mr_config_id, 48, "MRCONFIGID");
    copy(c, t->mr_owner, 48, "MROWNER");
    copy(c, t->mr_owner_config, 48, "MROWNERCONFIG");
    for (int i = 0; i < 4; i++)
        copy(c, t->rtmr[i], 48, "RTMR");
    copy(c, t->report_data, 64, "REPORTDATA");
    if (td15) {
        copy(c, t->tee_tcb_svn2, 16, "TEE_TCB_SVN2");
        copy(c, t->mr_service_td, 48, "MRSERVICETD");
    }
}

/* QE report certification data (type 6): the QE report, its signature,
 * the QE auth data and the nested certification data (the chain). */
static veil_rc qe_cert_data(cursor *c, veil_quote *q, veil_quote_code *why, veil_err *err) {
    size_t start = c->pos;
    enclave_report(c, &q->qe_report);
    if (!c->failed)
        q->qe_report_raw = c->buf + start;
    copy(c, q->qe_report_sig, 64, "QE report signature");
    q->qe_auth_len = u16(c, "QE auth data size");
    q->qe_auth = take(c, q->qe_auth_len, "QE auth data");
    q->chain_type = u16(c, "certification data type");
    uint32_t size = u32(c, "certification data size");
    q->chain_len = size;
    q->chain = take(c, size, "certification data");
    if (c->failed)
        return truncated(why, c, err);
    return VEIL_OK;
}

veil_rc veil_quote_parse(veil_quote *q, const uint8_t *buf, size_t len, veil_quote_code *why, veil_err *err) {
    memset(q, 0, sizeof *q);
    if (why)
        *why = VEIL_QUOTE_OK;
    cursor c = {buf, len, 0, 0, NULL};
    q->raw = buf;
    q->version = u16(&c, "header");
    q->att_key_type = u16(&c, "header");
    q->tee_type = u32(&c, "header");
    take(&c, 4, "header");
    copy(&c, q->qe_vendor_id, 16, "header");
    copy(&c, q->user_data, 20, "header");
    if (c.failed)
        return truncated(why, &c, err);
    if (q->version < 3 || q->version > 5)
        return fail(why, VEIL_QUOTE_UNSUPPORTED_VERSION, err, "quote version is not 3, 4 or 5");
    if (q->att_key_type != 2)
        return fail(why, VEIL_QUOTE_UNSUPPORTED_KEY_TYPE, err, "attestation key type is not ECDSA P-256 (2)");
    if (q->tee_type != VEIL_TEE_TYPE_TDX && q->tee_type != VEIL_TEE_TYPE_SGX)
        return fail(why, VEIL_QUOTE_UNSUPPORTED_TEE_TYPE, err, "TEE type is neither TDX (0x81) nor SGX (0)");

    if (q->version == 5) {
        q->body_type = u16(&c, "body descriptor");
        uint32_t body_size = u32(&c, "body descriptor");
        if (c.failed)
            return truncated(why, &c, err);
        static const uint32_t sizes[4] = {0, 384, 584, 648};
        if (q->body_type < VEIL_BODY_SGX || q->body_type > VEIL_BODY_TD15 || body_size != sizes[q->body_type])
            return fail(why, VEIL_QUOTE_MALFORMED, err, "v5 body type and size do not match (1/384, 2/584, 3/648)");
    } else {
        q->body_type = q->version == 3 ? VEIL_BODY_SGX : VEIL_BODY_TD10;
    }
    if ((q->body_type == VEIL_BODY_SGX) != (q->tee_type == VEIL_TEE_TYPE_SGX))
        return fail(why, VEIL_QUOTE_UNSUPPORTED_TEE_TYPE, err, "TEE type does not match the quote body");
    if (q->body_type == VEIL_BODY_SGX)
        enclave_report(&c, &q->enclave);
    else
        td_report(&c, &q->td, q->body_type == VEIL_BODY_TD15);
    q->signed_len = c.pos;
    q->sig_data_len = u32(&c, "signature data length");
    if (c.failed)
        return truncated(why, &c, err);
    if (q->sig_data_len > len - c.pos) {
        c.field = "signature data";
        return truncated(why, &c, err);
    }
    /* Parse the signature data inside its declared length only. */
    cursor s = {buf, c.pos + q->sig_data_len, c.pos, 0, NULL};
    q->trailing_len = len - s.len;
    copy(&s, q->signature, 64, "quote signature");
    copy(&s, q->attest_key, 64, "attestation key");
    if (s.failed)
        return truncated(why, &s, err);
    veil_rc rc;
    if (q->version == 3) {
        /* v3: QE report data directly, then the chain's certification data. */
        q->cert_type = 0;
        rc = qe_cert_data(&s, q, why, err);
        if (rc != VEIL_OK)
            return rc;
        q->cert_type = q->chain_type;
    } else {
        q->cert_type = u16(&s, "certification data type");
        uint32_t size = u32(&s, "certification data size");
        if (s.failed)
            return truncated(why, &s, err);
        if (q->cert_type != 6)
            return fail(why, VEIL_QUOTE_UNSUPPORTED_CERT_TYPE, err,
                        "outer certification data type is not 6 (QE report certification data)");
        if (size > s.len - s.pos) {
            s.field = "certification data";
            return truncated(why, &s, err);
        }
        cursor inner = {buf, s.pos + size, s.pos, 0, NULL};
        rc = qe_cert_data(&inner, q, why, err);
        if (rc != VEIL_OK)
            return rc;
        if (inner.pos != inner.len)
            return fail(why, VEIL_QUOTE_MALFORMED, err, "certification data size does not match its contents");
        s.pos = inner.pos;
    }
    if (s.pos != s.len)
        return fail(why, VEIL_QUOTE_MALFORMED, err, "signature data length does not match its contents");
    if (q->chain_type < 1 || q->chain_type > 5)
        return fail(why, VEIL_QUOTE_UNSUPPORTED_CERT_TYPE, err, "unknown certification data type for the PCK chain");
    return VEIL_OK;
}

veil_rc veil_quote_load(uint8_t **out, size_t *out_len, const uint8_t *file, size_t file_len, veil_err *err) {
    *out = NULL;
    *out_len = 0;
    size_t a = 0, b = file_len;
    while (a < b && isspace(file[a]))
        a++;
    while (b > a && isspace(file[b - 1]))
        b--;
    if (b - a >= 2 && file[a] == '0' && (file[a + 1] == 'x' || file[a + 1] == 'X'))
        a += 2;
    int is_hex = b > a && veil_hex_is_valid((const char *)file + a, b - a);
    size_t n = is_hex ? (b - a) / 2 : file_len;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    if (is_hex) {
        if (veil_hex_decode(buf, n, NULL, (const char *)file + a, b - a, err) != VEIL_OK) {
            free(buf);
            return VEIL_ERR_IO;
        }
    } else if (n) {
        memcpy(buf, file, n);
    }
    *out = buf;
    *out_len = n;
    return VEIL_OK;
}
