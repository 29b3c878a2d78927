/* NVIDIA GPU attestation: SPDM GET_MEASUREMENTS evidence (the GPU's signed
 * report over a nonce) parsed and verified locally: the P-384 signature by
 * the leaf of the device's certificate chain, the chain to the pinned NVIDIA
 * Device Identity CA, the nonce, and optionally the measurements against
 * RIM golden values. Also the producers of such evidence: NVML on a real
 * GPU, and a simulated GPU with its own root. */
#ifndef VEIL_NVIDIA_H
#define VEIL_NVIDIA_H

#include <stddef.h>
#include <stdint.h>

#include "veil/err.h"

#ifdef __cplusplus
extern "C" {
#endif
VEIL_API_BEGIN

/* SHA-256 of the DER of the NVIDIA Device Identity CA (docs/protocol.md §5). */
extern const uint8_t VEIL_NVIDIA_ROOT_SHA256[32];

#define VEIL_SPDM_MAX_BLOCKS 255
#define VEIL_SPDM_MAX_OPAQUE 64

typedef struct veil_spdm_block {
    uint8_t index, spec;
    uint8_t value_type;
    uint16_t value_size;
    const uint8_t *value; /* borrowed from the report */
} veil_spdm_block;

typedef struct veil_spdm_opaque {
    uint16_t type, size;
    const uint8_t *value; /* borrowed */
} veil_spdm_opaque;

/* A parsed report: the GET_MEASUREMENTS request followed by its response.
 * Pointers borrow the caller's bytes. */
typedef struct veil_spdm_report {
    /* request */
    uint8_t req_version, req_code, req_param1, req_param2, req_slot;
    uint8_t req_nonce[32];
    /* response */
    uint8_t version, code, param1, param2, n_blocks;
    uint32_t record_len;
    veil_spdm_block blocks[VEIL_SPDM_MAX_BLOCKS];
    uint8_t nonce[32]; /* the responder's own nonce */
    uint16_t opaque_len;
    veil_spdm_opaque opaque[VEIL_SPDM_MAX_OPAQUE];
    size_t n_opaque;
    const uint8_t *signature;   /* 96 bytes: r || s, P-384 */
    const uint8_t *signed_data; /* everything before the signature */
    size_t signed_len;
    char driver_version[64]; /* from the opaque data, "" when absent */
    char vbios_version[32];  /* "96.00.74.00.20", "" when absent */
} veil_spdm_report;

/* Opaque data field types of NVIDIA's reports. */
enum { VEIL_SPDM_OPAQUE_DRIVER_VERSION = 3, VEIL_SPDM_OPAQUE_VBIOS_VERSION = 6 };
/* "OPAQUE_FIELD_ID_DRIVER_VERSION" for a type, or NULL when unknown. */
const char *veil_spdm_opaque_name(uint16_t type);

/* Parses a report. VEIL_ERR_MALFORMED (with a message) when anything is
 * out of bounds, inconsistent, or not a GET_MEASUREMENTS exchange. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_spdm_parse(veil_spdm_report *out, const uint8_t *data, size_t len, veil_err *err)
    VEIL_NONNULL(1);

/* One piece of GPU (or NVSwitch) evidence. */
typedef struct veil_gpu_evidence {
    char arch[16];
    uint8_t *report; /* owned */
    size_t report_len;
    uint8_t *chain; /* PEM (or DER) certificate chain, owned */
    size_t chain_len;
} veil_gpu_evidence;

/* Evidence as the attestation payload carries it. */
typedef struct veil_gpu_payload {
    uint8_t nonce[32];
    int has_nonce;
    char arch[16];
    veil_gpu_evidence *items;
    size_t n;
} veil_gpu_payload;

/* Parses an nvidia_payload: the JSON object {nonce, arch, evidence_list}
 * (or that object as a JSON string), or a plain evidence list [{arch,
 * certificate, evidence, nonce?}]: certificate and evidence in base64. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_gpu_payload_parse(veil_gpu_payload *out, const char *json, size_t len,
                                                       veil_err *err) VEIL_NONNULL(1);
void veil_gpu_payload_clear(veil_gpu_payload *p);
/* The payload as a compact JSON string, malloc'd; NULL on allocation failure. */
char *veil_gpu_payload_json(const veil_gpu_payload *p);

typedef struct veil_gpu_verify_opts {
    const uint8_t *nonce;    /* expected request nonce (32 bytes); NULL: the payload's */
    int64_t at;              /* evaluation time (Unix); 0: now */
    const uint8_t *root_der; /* trust this root instead of the pinned NVIDIA one (simulation) */
    size_t root_der_len;
    const char *rim_dir; /* compare measurements with the RIMs found here; NULL: skip */
} veil_gpu_verify_opts;

typedef struct veil_gpu_item_verdict {
    int signature_ok, chain_ok, nonce_ok;
    int rims_checked; /* measurements were compared with RIMs */
    int measurements_ok;
    int mismatches; /* active golden measurements that did not match */
    int compared;   /* active golden measurements compared */
    char driver_version[64], vbios_version[32], arch[16];
    const char *code; /* NULL when accepted */
    char message[300];
} veil_gpu_item_verdict;

typedef struct veil_gpu_verdict {
    int accepted;
    const char *code; /* NULL when accepted: NONCE_MISMATCH, SIGNATURE_INVALID, CHAIN_INVALID,
                          ROOT_NOT_TRUSTED, CERT_EXPIRED, MEASUREMENT_MISMATCH, MALFORMED */
    char message[400];
    size_t n;
    veil_gpu_item_verdict *items; /* n items, malloc'd; free with veil_gpu_verdict_clear */
} veil_gpu_verdict;

/* Verifies every evidence item; the verdict is the first failure, in the
 * order nonce, signature, chain, measurements. Returns VEIL_OK whenever a
 * verdict was reached (accepted or not), else an error. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_gpu_verify(veil_gpu_verdict *v, const veil_gpu_payload *p,
                                                const veil_gpu_verify_opts *o, veil_err *err) VEIL_NONNULL(1, 2);
void veil_gpu_verdict_clear(veil_gpu_verdict *v);

/* ---- providers ---- */

typedef struct veil_gpu_provider veil_gpu_provider;

/* NVML: loads libnvidia-ml.so.1 at run time. Fails with a message saying
 * why (no library, no GPU, confidential computing off) when it cannot
 * produce evidence; `info` (may be NULL) receives what NVML reported:
 * driver, GPUs, CC state, as one line of text. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_gpu_nvml_open(veil_gpu_provider **out, char *info, size_t info_cap, veil_err *err)
    VEIL_NONNULL(1);
/* A simulated GPU: P-384 CA hierarchy kept in state_dir/sim-gpu. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_gpu_sim_open(veil_gpu_provider **out, const char *state_dir, veil_err *err)
    VEIL_NONNULL(1);
void veil_gpu_provider_free(veil_gpu_provider *p);
/* Evidence from every GPU for the nonce. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_gpu_provider_evidence(veil_gpu_provider *p, veil_gpu_payload *out,
                                                           const uint8_t nonce[32], veil_err *err)
    VEIL_NONNULL(1, 2, 3);
/* 1 for the simulated GPU. */
int veil_gpu_provider_simulated(const veil_gpu_provider *p);
/* The simulated GPU's root certificate (DER, borrowed), for verification. */
const uint8_t *veil_gpu_sim_root(const veil_gpu_provider *p, size_t *len);

VEIL_API_END
#ifdef __cplusplus
}
#endif
#endif
