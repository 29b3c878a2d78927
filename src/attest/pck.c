/* The Intel SGX extension of PCK certificates (OID 1.2.840.113741.1.13.1):
 * PPID, the TCB (16 component SVNs, PCESVN, CPUSVN), PCE-ID and FMSPC, which
 * TCB level matching compares against Intel's TCB info. */
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "pck.h"
#include "x509.h"

#define SGX_EXT_OID "1.2.840.113741.1.13.1"

/* Splits one SEQUENCE { OID, value } element into its OID text and value. */
static STACK_OF(ASN1_TYPE) *pair(const ASN1_TYPE *elem, char *oid, size_t oid_len) {
    if (elem->type != V_ASN1_SEQUENCE)
        return NULL;
    const unsigned char *p = elem->value.sequence->data;
    STACK_OF(ASN1_TYPE) *kv = d2i_ASN1_SEQUENCE_ANY(NULL, &p, elem->value.sequence->length);
    if (!kv || sk_ASN1_TYPE_num(kv) != 2 || sk_ASN1_TYPE_value(kv, 0)->type != V_ASN1_OBJECT ||
        OBJ_obj2txt(oid, (int)oid_len, sk_ASN1_TYPE_value(kv, 0)->value.object, 1) <= 0) {
        sk_ASN1_TYPE_pop_free(kv, ASN1_TYPE_free);
        return NULL;
    }
    return kv;
}

static int octets(const ASN1_TYPE *v, uint8_t *out, int n) {
    if (v->type != V_ASN1_OCTET_STRING || v->value.octet_string->length != n)
        return 0;
    memcpy(out, v->value.octet_string->data, (size_t)n);
    return 1;
}

static int integer(const ASN1_TYPE *v, long max, long *out) {
    if (v->type != V_ASN1_INTEGER)
        return 0;
    long x = ASN1_INTEGER_get(v->value.integer);
    if (x < 0 || x > max)
        return 0;
    *out = x;
    return 1;
}

/* Calls fn(oid, value) for each SEQUENCE { OID, value } in the DER
 * SEQUENCE der[0..len); stops and returns 0 when the DER is malformed or fn
 * returns 0. */
static int each_pair(const unsigned char *der, long len, int (*fn)(const char *, const ASN1_TYPE *, void *),
                     void *ctx) {
    STACK_OF(ASN1_TYPE) *items = d2i_ASN1_SEQUENCE_ANY(NULL, &der, len);
    if (!items)
        return 0;
    int ok = 1;
    for (int i = 0; ok && i < sk_ASN1_TYPE_num(items); i++) {
        char oid[80];
        STACK_OF(ASN1_TYPE) *kv = pair(sk_ASN1_TYPE_value(items, i), oid, sizeof oid);
        ok = kv && fn(oid, sk_ASN1_TYPE_value(kv, 1), ctx);
        sk_ASN1_TYPE_pop_free(kv, ASN1_TYPE_free);
    }
    sk_ASN1_TYPE_pop_free(items, ASN1_TYPE_free);
    return ok;
}

typedef struct parse_state {
    veil_pck_info *info;
    unsigned seen;
} parse_state;

/* One entry of the TCB sequence: components .2.1 to .2.16, PCESVN .2.17, CPUSVN .2.18. */
static int tcb_entry(const char *oid, const ASN1_TYPE *val, void *ctx) {
    parse_state *st = ctx;
    const char *prefix = SGX_EXT_OID ".2.";
    if (strncmp(oid, prefix, strlen(prefix)) != 0)
        return 1; /* entries added by later TCB schemes */
    int k = atoi(oid + strlen(prefix));
    long x;
    if (k >= 1 && k <= 16 && integer(val, 255, &x))
        st->info->comp_svn[k - 1] = (uint8_t)x;
    else if (k == 17 && integer(val, 65535, &x))
        st->info->pcesvn = (uint16_t)x;
    else if (k == 18 && octets(val, st->info->cpusvn, 16))
        ;
    else
        return 0;
    st->seen |= 1u << (k - 1);
    return 1;
}

/* One entry of the SGX extension: PPID .1, TCB .2, PCE-ID .3, FMSPC .4. */
static int ext_entry(const char *oid, const ASN1_TYPE *val, void *ctx) {
    parse_state *st = ctx;
    if (!strcmp(oid, SGX_EXT_OID ".1")) {
        st->seen |= 1u << 20;
        return octets(val, st->info->ppid, 16);
    }
    if (!strcmp(oid, SGX_EXT_OID ".2")) {
        st->seen |= 1u << 21;
        return val->type == V_ASN1_SEQUENCE &&
               each_pair(val->value.sequence->data, val->value.sequence->length, tcb_entry, st);
    }
    if (!strcmp(oid, SGX_EXT_OID ".3")) {
        st->seen |= 1u << 22;
        return octets(val, st->info->pceid, 2);
    }
    if (!strcmp(oid, SGX_EXT_OID ".4")) {
        st->seen |= 1u << 23;
        return octets(val, st->info->fmspc, 6);
    }
    return 1; /* SGX type, platform instance and others: not needed here */
}

int veil_pck_parse(X509 *cert, veil_pck_info *info) {
    memset(info, 0, sizeof *info);
    ASN1_OBJECT *obj = OBJ_txt2obj(SGX_EXT_OID, 1);
    int idx = obj ? X509_get_ext_by_OBJ(cert, obj, -1) : -1;
    ASN1_OBJECT_free(obj);
    if (idx < 0)
        return 0;
    ASN1_OCTET_STRING *data = X509_EXTENSION_get_data(X509_get_ext(cert, idx));
    parse_state st = {info, 0};
    /* every TCB entry (bits 0..17) and the four top-level entries (20..23) */
    return each_pair(data->data, data->length, ext_entry, &st) && st.seen == (0x3ffffu | 0xf00000u);
}
