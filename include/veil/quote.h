/* Intel TDX and SGX DCAP quotes: parsing (v3, v4, v5) and verification of the
 * quote's signature chain up to a pinned Intel SGX Root CA (docs/protocol.md §5). */
#ifndef VEIL_QUOTE_H
#define VEIL_QUOTE_H

#include <stddef.h>
#include <stdint.h>

#include "veil/err.h"

#ifdef __cplusplus
extern "C" {
#endif
VEIL_API_BEGIN

#define VEIL_TEE_TYPE_SGX 0x00000000u
#define VEIL_TEE_TYPE_TDX 0x00000081u

/* Body kinds, as quote v5 numbers them (v3 is always SGX, v4 always TD 1.0). */
enum { VEIL_BODY_SGX = 1, VEIL_BODY_TD10 = 2, VEIL_BODY_TD15 = 3 };

/* SHA-256 of the DER of Intel's production SGX Root CA (docs/protocol.md §5). */
#define VEIL_INTEL_ROOT_SHA256 "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"

/* A 384-byte SGX enclave report: the body of an SGX quote, and the QE report
 * of every quote. */
typedef struct veil_enclave_report {
    uint8_t cpu_svn[16];
    uint32_t misc_select;
    uint8_t attributes[16];
    uint8_t mr_enclave[32];
    uint8_t mr_signer[32];
    uint16_t isv_prod_id;
    uint16_t isv_svn;
    uint8_t report_data[64];
} veil_enclave_report;

/* A TD report body (TD 1.0, plus the two TD 1.5 fields when body_type is TD15). */
typedef struct veil_td_report {
    uint8_t tee_tcb_svn[16];
    uint8_t mr_seam[48];
    uint8_t mr_signer_seam[48];
    uint8_t seam_attributes[8];
    uint8_t td_attributes[8];
    uint8_t xfam[8];
    uint8_t mr_td[48];
    uint8_t mr_config_id[48];
    uint8_t mr_owner[48];
    uint8_t mr_owner_config[48];
    uint8_t rtmr[4][48];
    uint8_t report_data[64];
    uint8_t tee_tcb_svn2[16];  /* TD 1.5 only */
    uint8_t mr_service_td[48]; /* TD 1.5 only */
} veil_td_report;

/* A parsed quote. Pointer fields borrow from the buffer given to
 * veil_quote_parse, which must outlive this struct. */
typedef struct veil_quote {
    uint16_t version;      /* 3, 4 or 5 */
    uint16_t att_key_type; /* 2 = ECDSA P-256 */
    uint32_t tee_type;     /* VEIL_TEE_TYPE_* */
    uint8_t qe_vendor_id[16];
    uint8_t user_data[20];
    uint16_t body_type;          /* VEIL_BODY_* */
    veil_td_report td;           /* when body_type is TD10 or TD15 */
    veil_enclave_report enclave; /* when body_type is SGX */
    const uint8_t *raw;          /* the whole quote as given to veil_quote_parse */
    size_t signed_len;           /* bytes [0, signed_len) of raw are covered by the quote signature */
    uint32_t sig_data_len;
    uint8_t signature[64];  /* ECDSA P-256 r || s */
    uint8_t attest_key[64]; /* P-256 x || y */
    uint16_t cert_type;     /* outer certification data type: 6 in v4/v5, the chain's type in v3 */
    veil_enclave_report qe_report;
    const uint8_t *qe_report_raw; /* 384 bytes, what the QE report signature covers */
    uint8_t qe_report_sig[64];
    const uint8_t *qe_auth;
    uint16_t qe_auth_len;
    uint16_t chain_type; /* certification data type of the chain: 5 = PCK chain */
    const uint8_t *chain;
    size_t chain_len;
    size_t trailing_len; /* bytes after the signature data (padding; accepted) */
} veil_quote;

/* What the PCK leaf certificate's Intel SGX extension says of the platform. */
typedef struct veil_pck_info {
    uint8_t ppid[16];
    uint8_t cpusvn[16];
    uint8_t comp_svn[16]; /* SGX TCB components 1..16 */
    uint16_t pcesvn;
    uint8_t pceid[2];
    uint8_t fmspc[6];
} veil_pck_info;

/* Why a quote was refused. Stable; veil_quote_code_name() gives the string. */
typedef enum veil_quote_code {
    VEIL_QUOTE_OK = 0,
    VEIL_QUOTE_TRUNCATED,
    VEIL_QUOTE_MALFORMED,
    VEIL_QUOTE_UNSUPPORTED_VERSION,
    VEIL_QUOTE_UNSUPPORTED_TEE_TYPE,
    VEIL_QUOTE_UNSUPPORTED_KEY_TYPE,
    VEIL_QUOTE_UNSUPPORTED_CERT_TYPE,
    VEIL_QUOTE_SIGNATURE_INVALID,
    VEIL_QUOTE_QE_REPORT_SIGNATURE_INVALID,
    VEIL_QUOTE_AK_BINDING_INVALID,
    VEIL_QUOTE_PCK_CHAIN_INVALID,
    VEIL_QUOTE_ROOT_NOT_TRUSTED,
    VEIL_QUOTE_CERT_EXPIRED,
    VEIL_QUOTE_TD_DEBUG,
    VEIL_QUOTE_TD_ATTRIBUTES_RESERVED,
    VEIL_QUOTE_CERT_REVOKED,
    VEIL_QUOTE_CRL_INVALID,
    VEIL_QUOTE_TCB_INFO_INVALID,
    VEIL_QUOTE_FMSPC_MISMATCH,
    VEIL_QUOTE_TDX_MODULE_MISMATCH,
    VEIL_QUOTE_QE_IDENTITY_INVALID,
    VEIL_QUOTE_TCB_LEVEL_NOT_FOUND,
    VEIL_QUOTE_TCB_STATUS_REJECTED,
    VEIL_QUOTE_COLLATERAL_EXPIRED,
    VEIL_QUOTE_COLLATERAL_MISSING,
    VEIL_QUOTE_TEE_TCB_SVN_TOO_LOW,
    VEIL_QUOTE_MEASUREMENT_MISMATCH,
} veil_quote_code;

/* Parses a quote from buf[0..len) (borrowed; see veil_quote). Every length
 * field is checked against the buffer. Trailing bytes after the signature
 * data are accepted and counted.
 * Returns VEIL_OK or VEIL_ERR_MALFORMED, with err->message saying which field
 * is wrong, and *why (when not NULL) the stable reason: TRUNCATED,
 * UNSUPPORTED_VERSION, UNSUPPORTED_TEE_TYPE, UNSUPPORTED_KEY_TYPE,
 * UNSUPPORTED_CERT_TYPE or MALFORMED. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_quote_parse(veil_quote *q, const uint8_t *buf, size_t len, veil_quote_code *why,
                                                 veil_err *err) VEIL_NONNULL(1);

/* Reads a quote file's contents as binary, or as hex text (optionally
 * "0x"-prefixed, surrounding whitespace ignored) when every byte is hex.
 * *out is allocated; free() it. Returns VEIL_OK, VEIL_ERR_IO or VEIL_ERR_NOMEM. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_quote_load(uint8_t **out, size_t *out_len, const uint8_t *file, size_t file_len,
                                                veil_err *err) VEIL_NONNULL(1, 2);

/* Returns the stable name of a code, e.g. "QUOTE_SIGNATURE_INVALID". */
const char *veil_quote_code_name(veil_quote_code code);

/* What veil_quote_verify checks against. */
typedef struct veil_quote_options {
    /* SHA-256 of the trusted root's DER; veil_quote_options_init sets Intel's. */
    uint8_t root_sha256[32];
    /* The root certificate (DER, borrowed) when the quote's own chain or the
     * collateral's chains stop below it; NULL for none. */
    const uint8_t *root_der;
    size_t root_der_len;
    /* Unix time at which every validity window is evaluated. */
    int64_t at;
    /* Collateral (borrowed) for TCB status, QE identity and revocation; NULL
     * for a check of signatures and chain only. */
    const struct veil_collateral *collateral;
    /* Policy (borrowed); NULL for veil_policy_init's defaults. */
    const struct veil_quote_policy *policy;
    /* An event log (borrowed) that must replay to the quote's RTMRs: RTMR3,
     * and every other RTMR the log has events for, must equal its replay.
     * NULL: none. */
    const struct veil_event_log *event_log;
} veil_quote_options;

/* Fills `opts` with the defaults: Intel's root, now, no collateral, default policy. */
void veil_quote_options_init(veil_quote_options *opts) VEIL_NONNULL(1);

#define VEIL_MAX_ADVISORIES 32

/* The outcome of a verification. */
typedef struct veil_quote_verdict {
    veil_quote_code code; /* VEIL_QUOTE_OK when accepted */
    char message[256];
    char tcb_status[40]; /* PCS tcbStatus after collateral evaluation; "" without collateral */
    size_t n_advisories;
    char advisory_ids[VEIL_MAX_ADVISORIES][32];
    int collateral_expired; /* some collateral was outside its validity window at `at` */
    int has_pck;            /* pck below was read from the PCK leaf certificate */
    veil_pck_info pck;
} veil_quote_verdict;

/* Verifies a parsed quote: the quote signature by the attestation key over
 * [0, signed_len), the QE report data binding SHA-256(attestation key || QE
 * auth data) || 32 zero bytes, the PCK chain up to the pinned root with every
 * certificate valid at opts->at, the QE report signature by the PCK leaf;
 * with collateral, the TCB info and QE identity (signatures, issuer chains,
 * FMSPC, TCB level, QE identity match) and both CRLs; then the policy: TCB
 * status, debug bit, attribute mask, minimum TEE TCB SVN and pins.
 * Returns VEIL_OK when the quote was evaluated (accepted or not: see
 * verdict->code) or an error when it could not be (out of memory). */
VEIL_WARN_UNUSED_RESULT veil_rc veil_quote_verify(veil_quote_verdict *verdict, const veil_quote *q,
                                                  const veil_quote_options *opts, veil_err *err) VEIL_NONNULL(1, 2);

VEIL_API_END
#ifdef __cplusplus
}
#endif
#endif
