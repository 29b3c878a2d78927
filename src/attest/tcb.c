/* TCB evaluation, following Intel's Quote Verification Library: the first
 * TCB level (in the order Intel lists them, newest first) whose SGX
 * components and PCESVN the PCK certificate meets, and for TDX whose TDX
 * components the quote's TEE_TCB_SVN meets, gives the platform status; the
 * TDX module's and the QE's own levels can lower it (OutOfDate, Revoked). */
#include "tcb.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "veil/hex.h"

int veil_tcb_parse_time(const char *s, int64_t *out) {
    if (!s)
        return 0;
    struct tm tm = {0};
    int n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
               &tm.tm_sec, &n) != 6)
        return 0;
    const char *rest = s + n;
    if (*rest == '.') {
        rest++;
        while (isdigit((unsigned char)*rest))
            rest++;
    }
    if (strcmp(rest, "Z") != 0 && strcmp(rest, "+00:00") != 0)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *out = (int64_t)timegm(&tm);
    return 1;
}

static veil_quote_code fail(veil_quote_verdict *v, veil_quote_code code, const char *msg) {
    snprintf(v->message, sizeof v->message, "%s", msg);
    return code;
}

typedef enum { ST_UNKNOWN, ST_UP_TO_DATE, ST_SW_HARDENING, ST_CONFIG, ST_CONFIG_SW, ST_OUT_OF_DATE,
               ST_OUT_OF_DATE_CONFIG, ST_REVOKED } status;
static const char *const status_names[] = {
    [ST_UP_TO_DATE] = "UpToDate",       [ST_SW_HARDENING] = "SWHardeningNeeded",
    [ST_CONFIG] = "ConfigurationNeeded", [ST_CONFIG_SW] = "ConfigurationAndSWHardeningNeeded",
    [ST_OUT_OF_DATE] = "OutOfDate",     [ST_OUT_OF_DATE_CONFIG] = "OutOfDateConfigurationNeeded",
    [ST_REVOKED] = "Revoked",
};

static status parse_status(const char *s) {
    for (int i = ST_UP_TO_DATE; s && i <= ST_REVOKED; i++)
        if (!strcmp(s, status_names[i]))
            return (status)i;
    return ST_UNKNOWN;
}

static void add_advisories(veil_quote_verdict *v, json_t *level) {
    json_t *ids = json_object_get(level, "advisoryIDs");
    size_t i;
    json_t *id;
    json_array_foreach(ids, i, id) {
        const char *s = json_string_value(id);
        if (!s || v->n_advisories == VEIL_MAX_ADVISORIES)
            continue;
        int dup = 0;
        for (size_t k = 0; k < v->n_advisories && !dup; k++)
            dup = !strcmp(v->advisory_ids[k], s);
        if (!dup)
            snprintf(v->advisory_ids[v->n_advisories++], sizeof v->advisory_ids[0], "%s", s);
    }
}

/* Reads an array of 16 {"svn": n} components. Returns 1 when well-formed. */
static int components(json_t *arr, int svn[16]) {
    if (!json_is_array(arr) || json_array_size(arr) != 16)
        return 0;
    for (size_t i = 0; i < 16; i++) {
        json_t *s = json_object_get(json_array_get(arr, i), "svn");
        if (!json_is_integer(s) || json_integer_value(s) < 0 || json_integer_value(s) > 255)
            return 0;
        svn[i] = (int)json_integer_value(s);
    }
    return 1;
}

/* Hex field of a JSON object decoded to exactly n bytes. */
static int hex_field(json_t *o, const char *key, uint8_t *out, size_t n) {
    const char *s = json_string_value(json_object_get(o, key));
    return s && veil_hex_decode_exact(out, n, s, strlen(s), 0, NULL) == VEIL_OK;
}

/* TDX module identity: MRSIGNERSEAM and masked SEAMATTRIBUTES must match. */
static int module_matches(json_t *module, const veil_td_report *td) {
    uint8_t mrsigner[48], attrs[8], mask[8];
    if (!hex_field(module, "mrsigner", mrsigner, 48) || !hex_field(module, "attributes", attrs, 8) ||
        !hex_field(module, "attributesMask", mask, 8))
        return 0;
    if (memcmp(mrsigner, td->mr_signer_seam, 48) != 0)
        return 0;
    for (int i = 0; i < 8; i++)
        if ((td->seam_attributes[i] & mask[i]) != attrs[i])
            return 0;
    return 1;
}

/* The status of the first level of `levels` whose tcb.isvsvn is at most svn. */
static status isv_level(json_t *levels, int svn, json_t **match) {
    size_t i;
    json_t *level;
    json_array_foreach(levels, i, level) {
        json_t *isv = json_object_get(json_object_get(level, "tcb"), "isvsvn");
        if (json_is_integer(isv) && svn >= json_integer_value(isv)) {
            *match = level;
            return parse_status(json_string_value(json_object_get(level, "tcbStatus")));
        }
    }
    return ST_UNKNOWN;
}

veil_quote_code veil_tcb_evaluate(json_t *tcb_info, json_t *qe_identity, const veil_quote *q,
                                  const veil_pck_info *pck, veil_quote_verdict *v) {
    int tdx = q->tee_type == VEIL_TEE_TYPE_TDX;
    const char *id = json_string_value(json_object_get(tcb_info, "id"));
    json_t *version = json_object_get(tcb_info, "version");
    if (tdx ? !(id && !strcmp(id, "TDX") && json_integer_value(version) == 3)
            : !((!id || !strcmp(id, "SGX")) && (json_integer_value(version) == 2 || json_integer_value(version) == 3)))
        return fail(v, VEIL_QUOTE_TCB_INFO_INVALID,
                    tdx ? "TCB info is not TDX TCB info version 3" : "TCB info is not SGX TCB info version 2 or 3");
    uint8_t fmspc[6], pceid[2];
    if (!hex_field(tcb_info, "fmspc", fmspc, 6) || !hex_field(tcb_info, "pceId", pceid, 2))
        return fail(v, VEIL_QUOTE_TCB_INFO_INVALID, "TCB info lacks a valid fmspc or pceId");
    if (memcmp(fmspc, pck->fmspc, 6) != 0)
        return fail(v, VEIL_QUOTE_FMSPC_MISMATCH, "TCB info is for another platform (FMSPC differs from the PCK certificate's)");
    if (memcmp(pceid, pck->pceid, 2) != 0)
        return fail(v, VEIL_QUOTE_FMSPC_MISMATCH, "TCB info is for another PCE (PCEID differs from the PCK certificate's)");

    /* Platform level. */
    const uint8_t *tee_svn = q->td.tee_tcb_svn;
    int start = tdx && tee_svn[1] > 0 ? 2 : 0;
    json_t *levels = json_object_get(tcb_info, "tcbLevels"), *match = NULL;
    if (!json_is_array(levels))
        return fail(v, VEIL_QUOTE_TCB_INFO_INVALID, "TCB info has no tcbLevels");
    size_t i;
    json_t *level;
    json_array_foreach(levels, i, level) {
        json_t *tcb = json_object_get(level, "tcb");
        int sgx[16], tdxc[16];
        json_t *pcesvn = json_object_get(tcb, "pcesvn");
        if (!components(json_object_get(tcb, "sgxtcbcomponents"), sgx) || !json_is_integer(pcesvn) ||
            (tdx && !components(json_object_get(tcb, "tdxtcbcomponents"), tdxc)))
            return fail(v, VEIL_QUOTE_TCB_INFO_INVALID, "TCB info has a malformed TCB level");
        int ok = pck->pcesvn >= json_integer_value(pcesvn);
        for (int k = 0; ok && k < 16; k++)
            ok = pck->comp_svn[k] >= sgx[k];
        for (int k = start; ok && tdx && k < 16; k++)
            ok = tee_svn[k] >= tdxc[k];
        if (ok) {
            match = level;
            break;
        }
    }
    if (!match)
        return fail(v, VEIL_QUOTE_TCB_LEVEL_NOT_FOUND, "no TCB level matches the platform (TCB not supported)");
    status platform = parse_status(json_string_value(json_object_get(match, "tcbStatus")));
    if (platform == ST_UNKNOWN)
        return fail(v, VEIL_QUOTE_TCB_INFO_INVALID, "TCB level has an unrecognized tcbStatus");
    add_advisories(v, match);
    int any_out_of_date = 0, any_revoked = 0;
    json_t *module_level = NULL; /* its advisories come last, as Intel orders them */

    /* TDX module. */
    if (tdx && tee_svn[1] > 0) {
        char want[8];
        snprintf(want, sizeof want, "TDX_%02X", tee_svn[1]);
        json_t *mods = json_object_get(tcb_info, "tdxModuleIdentities"), *mod = NULL, *m;
        json_array_foreach(mods, i, m) {
            const char *mid = json_string_value(json_object_get(m, "id"));
            if (mid && !strcasecmp(mid, want))
                mod = m;
        }
        if (!mod)
            return fail(v, VEIL_QUOTE_TCB_LEVEL_NOT_FOUND, "TCB info has no identity for this TDX module version");
        if (!module_matches(mod, &q->td))
            return fail(v, VEIL_QUOTE_TDX_MODULE_MISMATCH, "TDX module signer or attributes differ from its identity");
        status ms = isv_level(json_object_get(mod, "tcbLevels"), tee_svn[0], &module_level);
        if (ms != ST_UP_TO_DATE && ms != ST_OUT_OF_DATE && ms != ST_REVOKED)
            return fail(v, VEIL_QUOTE_TCB_LEVEL_NOT_FOUND, "no TDX module TCB level matches the module's SVN");
        any_out_of_date |= ms == ST_OUT_OF_DATE;
        any_revoked |= ms == ST_REVOKED;
    } else if (tdx && json_object_get(tcb_info, "tdxModule")) {
        if (!module_matches(json_object_get(tcb_info, "tdxModule"), &q->td))
            return fail(v, VEIL_QUOTE_TDX_MODULE_MISMATCH, "TDX module signer or attributes differ from TCB info");
    }

    /* Quoting enclave. */
    if (qe_identity) {
        const char *qid = json_string_value(json_object_get(qe_identity, "id"));
        if (!qid || strcmp(qid, tdx ? "TD_QE" : "QE") != 0 || json_integer_value(json_object_get(qe_identity, "version")) != 2)
            return fail(v, VEIL_QUOTE_QE_IDENTITY_INVALID,
                        tdx ? "QE identity is not TD_QE version 2" : "QE identity is not QE version 2");
        const veil_enclave_report *qe = &q->qe_report;
        uint8_t mrsigner[32], misc[4], misc_mask[4], attrs[16], attrs_mask[16];
        json_t *prod = json_object_get(qe_identity, "isvprodid");
        if (!hex_field(qe_identity, "mrsigner", mrsigner, 32) || !hex_field(qe_identity, "miscselect", misc, 4) ||
            !hex_field(qe_identity, "miscselectMask", misc_mask, 4) || !hex_field(qe_identity, "attributes", attrs, 16) ||
            !hex_field(qe_identity, "attributesMask", attrs_mask, 16) || !json_is_integer(prod))
            return fail(v, VEIL_QUOTE_QE_IDENTITY_INVALID, "QE identity is missing a field");
        /* miscselect is a big-endian hex u32 in the identity, little-endian in the report */
        uint32_t want_misc = (uint32_t)misc[0] << 24 | (uint32_t)misc[1] << 16 | (uint32_t)misc[2] << 8 | misc[3];
        uint32_t mask = (uint32_t)misc_mask[0] << 24 | (uint32_t)misc_mask[1] << 16 | (uint32_t)misc_mask[2] << 8 | misc_mask[3];
        int ok = memcmp(mrsigner, qe->mr_signer, 32) == 0 && qe->isv_prod_id == json_integer_value(prod) &&
                 (qe->misc_select & mask) == want_misc;
        for (int k = 0; ok && k < 16; k++)
            ok = (qe->attributes[k] & attrs_mask[k]) == attrs[k];
        if (!ok)
            return fail(v, VEIL_QUOTE_QE_IDENTITY_INVALID, "the quoting enclave does not match Intel's QE identity");
        json_t *qlevel = NULL;
        status qs = isv_level(json_object_get(qe_identity, "tcbLevels"), qe->isv_svn, &qlevel);
        if (qs == ST_UNKNOWN)
            return fail(v, VEIL_QUOTE_TCB_LEVEL_NOT_FOUND, "no QE identity TCB level matches the QE's ISVSVN");
        any_out_of_date |= qs == ST_OUT_OF_DATE;
        any_revoked |= qs == ST_REVOKED;
        add_advisories(v, qlevel);
    }

    if (module_level)
        add_advisories(v, module_level);
    status final = platform;
    if (any_out_of_date) {
        if (platform == ST_UP_TO_DATE || platform == ST_SW_HARDENING)
            final = ST_OUT_OF_DATE;
        else if (platform == ST_CONFIG || platform == ST_CONFIG_SW)
            final = ST_OUT_OF_DATE_CONFIG;
    }
    if (any_revoked)
        final = ST_REVOKED;
    snprintf(v->tcb_status, sizeof v->tcb_status, "%s", status_names[final]);
    return VEIL_QUOTE_OK;
}
