/* Attestation policy for TDX/SGX quotes: what a verifier accepts beyond valid
 * signatures (TCB statuses, debug, attribute mask, measurement pins). */
#ifndef VEIL_POLICY_H
#define VEIL_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "veil/err.h"

#ifdef __cplusplus
extern "C" {
#endif
VEIL_API_BEGIN

/* Fields a policy can pin, each to one or more allowed values. */
typedef enum veil_pin_field {
    VEIL_PIN_MRTD,
    VEIL_PIN_RTMR0,
    VEIL_PIN_RTMR1,
    VEIL_PIN_RTMR2,
    VEIL_PIN_RTMR3,
    VEIL_PIN_MR_CONFIG_ID,
    VEIL_PIN_MR_OWNER,
    VEIL_PIN_MR_OWNER_CONFIG,
    VEIL_PIN_REPORT_DATA,
    VEIL_PIN_TD_ATTRIBUTES,
    VEIL_PIN_XFAM,
    VEIL_PIN_MR_SEAM,
    VEIL_PIN_MR_SIGNER_SEAM,
    VEIL_PIN_SEAM_ATTRIBUTES,
    VEIL_PIN_QE_VENDOR_ID,
    VEIL_PIN_COUNT
} veil_pin_field;

#define VEIL_PIN_MAX_VALUES 16
#define VEIL_POLICY_MAX_STATUSES 8

/* The allowed values of one pinned field; n == 0 means not pinned. */
typedef struct veil_pin {
    size_t n;
    uint8_t values[VEIL_PIN_MAX_VALUES][64];
} veil_pin;

typedef struct veil_quote_policy {
    int allow_debug;   /* default 0 */
    size_t n_accepted; /* accepted PCS tcbStatus strings */
    char accepted_tcb_statuses[VEIL_POLICY_MAX_STATUSES][40];
    int require_collateral; /* default 0 */
    int has_min_tee_tcb_svn;
    uint8_t min_tee_tcb_svn[16];         /* each byte of TEE_TCB_SVN must be at least this */
    uint64_t td_attributes_allowed_mask; /* TD attribute bits (u64 as the quote stores it) that may be set */
    veil_pin pins[VEIL_PIN_COUNT];
} veil_quote_policy;

/* Fills `p` with the defaults: no debug, ["UpToDate", "SWHardeningNeeded"],
 * collateral optional, mask 0x80000000d0000001 (DEBUG, SEPT_VE_DISABLE, PKS,
 * KL, PERFMON), nothing pinned. */
void veil_policy_init(veil_quote_policy *p) VEIL_NONNULL(1);

/* Parses a policy JSON document over the defaults. Exactly the keys
 * allow_debug, accepted_tcb_statuses, require_collateral, min_tee_tcb_svn,
 * td_attributes_allowed_mask, and the pins mrtd, rtmr0…rtmr3, mr_config_id,
 * mr_owner, mr_owner_config, report_data, td_attributes, xfam, mr_seam,
 * mr_signer_seam, seam_attributes, qe_vendor_id (each a hex string or an
 * array of them, of the field's exact length). An unknown key, a value of
 * the wrong type or length, or an unknown TCB status is VEIL_ERR_MALFORMED. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_policy_parse(veil_quote_policy *p, const char *json, size_t len, veil_err *err)
    VEIL_NONNULL(1);

/* The policy key of a pinned field, e.g. "mrtd". */
const char *veil_pin_name(veil_pin_field f);

/* The byte length of a pinned field. */
size_t veil_pin_len(veil_pin_field f);

VEIL_API_END
#ifdef __cplusplus
}
#endif
#endif
