/* Parsing attestation policies: strict JSON, every key known, every value checked. */
#include "veil/policy.h"

#include <string.h>

#include <jansson.h>

#include "veil/hex.h"

static const struct {
    const char *name;
    size_t len;
} pin_info[VEIL_PIN_COUNT] = {
    [VEIL_PIN_MRTD] = {"mrtd", 48},
    [VEIL_PIN_RTMR0] = {"rtmr0", 48},
    [VEIL_PIN_RTMR1] = {"rtmr1", 48},
    [VEIL_PIN_RTMR2] = {"rtmr2", 48},
    [VEIL_PIN_RTMR3] = {"rtmr3", 48},
    [VEIL_PIN_MR_CONFIG_ID] = {"mr_config_id", 48},
    [VEIL_PIN_MR_OWNER] = {"mr_owner", 48},
    [VEIL_PIN_MR_OWNER_CONFIG] = {"mr_owner_config", 48},
    [VEIL_PIN_REPORT_DATA] = {"report_data", 64},
    [VEIL_PIN_TD_ATTRIBUTES] = {"td_attributes", 8},
    [VEIL_PIN_XFAM] = {"xfam", 8},
    [VEIL_PIN_MR_SEAM] = {"mr_seam", 48},
    [VEIL_PIN_MR_SIGNER_SEAM] = {"mr_signer_seam", 48},
    [VEIL_PIN_SEAM_ATTRIBUTES] = {"seam_attributes", 8},
    [VEIL_PIN_QE_VENDOR_ID] = {"qe_vendor_id", 16},
};

static const char *const tcb_statuses[] = {"UpToDate",
                                           "SWHardeningNeeded",
                                           "ConfigurationNeeded",
                                           "ConfigurationAndSWHardeningNeeded",
                                           "OutOfDate",
                                           "OutOfDateConfigurationNeeded",
                                           "Revoked"};

const char *veil_pin_name(veil_pin_field f) { return (unsigned)f < VEIL_PIN_COUNT ? pin_info[f].name : "?"; }
size_t veil_pin_len(veil_pin_field f) { return (unsigned)f < VEIL_PIN_COUNT ? pin_info[f].len : 0; }

void veil_policy_init(veil_quote_policy *p) {
    memset(p, 0, sizeof *p);
    strcpy(p->accepted_tcb_statuses[0], "UpToDate");
    strcpy(p->accepted_tcb_statuses[1], "SWHardeningNeeded");
    p->n_accepted = 2;
    p->td_attributes_allowed_mask = 0x80000000d0000001ULL;
}

static veil_rc parse_pin(veil_pin *pin, json_t *v, const char *name, size_t len, veil_err *err) {
    json_t *one = v;
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    if (n == 0 || n > VEIL_PIN_MAX_VALUES)
        return veil_err_set(err, VEIL_ERR_MALFORMED, "policy %s: between 1 and %d values", name, VEIL_PIN_MAX_VALUES);
    for (size_t i = 0; i < n; i++) {
        if (json_is_array(v))
            one = json_array_get(v, i);
        const char *s = json_string_value(one);
        if (!s || veil_hex_decode_exact(pin->values[i], len, s, strlen(s), 0, NULL) != VEIL_OK)
            return veil_err_set(err, VEIL_ERR_MALFORMED, "policy %s: each value must be %zu hex characters", name,
                                2 * len);
    }
    pin->n = n;
    return VEIL_OK;
}

static veil_rc parse_bool(int *out, json_t *v, const char *name, veil_err *err) {
    if (!json_is_boolean(v))
        return veil_err_set(err, VEIL_ERR_MALFORMED, "policy %s: must be true or false", name);
    *out = json_is_true(v);
    return VEIL_OK;
}

static veil_rc parse_key(veil_quote_policy *p, const char *key, json_t *v, veil_err *err) {
    for (int f = 0; f < VEIL_PIN_COUNT; f++)
        if (!strcmp(key, pin_info[f].name))
            return parse_pin(&p->pins[f], v, key, pin_info[f].len, err);
    if (!strcmp(key, "allow_debug"))
        return parse_bool(&p->allow_debug, v, key, err);
    if (!strcmp(key, "require_collateral"))
        return parse_bool(&p->require_collateral, v, key, err);
    if (!strcmp(key, "min_tee_tcb_svn")) {
        const char *s = json_string_value(v);
        if (!s || veil_hex_decode_exact(p->min_tee_tcb_svn, 16, s, strlen(s), 0, NULL) != VEIL_OK)
            return veil_err_set(err, VEIL_ERR_MALFORMED, "policy min_tee_tcb_svn: must be 32 hex characters");
        p->has_min_tee_tcb_svn = 1;
        return VEIL_OK;
    }
    if (!strcmp(key, "td_attributes_allowed_mask")) {
        uint8_t b[8];
        const char *s = json_string_value(v);
        if (!s || veil_hex_decode_exact(b, 8, s, strlen(s), 0, NULL) != VEIL_OK)
            return veil_err_set(err, VEIL_ERR_MALFORMED,
                                "policy td_attributes_allowed_mask: must be 16 hex characters (a 64-bit mask)");
        p->td_attributes_allowed_mask = 0;
        for (int i = 0; i < 8; i++)
            p->td_attributes_allowed_mask = p->td_attributes_allowed_mask << 8 | b[i];
        return VEIL_OK;
    }
    if (!strcmp(key, "accepted_tcb_statuses")) {
        size_t n = json_array_size(v);
        if (!json_is_array(v) || n > VEIL_POLICY_MAX_STATUSES)
            return veil_err_set(err, VEIL_ERR_MALFORMED, "policy accepted_tcb_statuses: must be an array of statuses");
        for (size_t i = 0; i < n; i++) {
            const char *s = json_string_value(json_array_get(v, i));
            size_t k = 0;
            while (s && k < sizeof tcb_statuses / sizeof tcb_statuses[0] && strcmp(s, tcb_statuses[k]) != 0)
                k++;
            if (!s || k == sizeof tcb_statuses / sizeof tcb_statuses[0])
                return veil_err_set(err, VEIL_ERR_MALFORMED, "policy accepted_tcb_statuses: unknown status %s",
                                    s ? s : "(not a string)");
            strcpy(p->accepted_tcb_statuses[i], s);
        }
        p->n_accepted = n;
        return VEIL_OK;
    }
    return veil_err_set(err, VEIL_ERR_MALFORMED, "policy has an unknown key: %s", key);
}

veil_rc veil_policy_parse(veil_quote_policy *p, const char *json, size_t len, veil_err *err) {
    veil_policy_init(p);
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(root)) {
        json_decref(root);
        return veil_err_set(err, VEIL_ERR_MALFORMED, "policy is not a JSON object (line %d: %s)", jerr.line, jerr.text);
    }
    const char *key;
    json_t *v;
    veil_rc rc = VEIL_OK;
    json_object_foreach(root, key, v) {
        rc = parse_key(p, key, v, err);
        if (rc != VEIL_OK)
            break;
    }
    json_decref(root);
    return rc;
}
