/* Internal: the TEE state of a veil serve instance: its signing key (which
 * also decrypts E2EE requests), its quote provider, and the attestation
 * attestation document of docs/serve.md (the public page's Venice format), verified by the server itself before it is
 * returned. */
#ifndef VEIL_SERVER_TEE_H
#define VEIL_SERVER_TEE_H

#include <stdint.h>

#include <jansson.h>

#include "veil/collateral.h"
#include "veil/err.h"
#include "veil/eth.h"
#include "veil/keys.h"
#include "veil/nvidia.h"
#include "veil/policy.h"
#include "veil/provider.h"
#include "veil/quote.h"

typedef struct veil_tee veil_tee;

/* Opens the TEE: the provider of `kind` (state_dir for the simulator),
 * runtime events binding the version and the binary (simulator), the trust
 * anchor the self-verification uses (the simulation root under simulation,
 * else Intel's), and a fresh signing key locked in memory. With `keyless`
 * the key is left out: it comes later through veil_tee_set_key (a key
 * release from another replica, or dstack's key service), and until then
 * only veil_tee_quote may be used. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_tee_open(veil_tee **out, veil_tee_kind kind, const veil_provider_config *cfg,
                                              const char *version, int keyless, veil_err *err);

/* Gives a keyless TEE its signing key (copied), and records the signing
 * address in the simulated RTMR3. VEIL_ERR_INVALID_ARG when it has one. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_tee_set_key(veil_tee *t, const veil_seckey *key, veil_err *err);
int veil_tee_has_key(const veil_tee *t);

/* A raw quote over report_data from the TEE's provider, with its event log
 * (JSON, malloc'd, or NULL). */
VEIL_WARN_UNUSED_RESULT veil_rc veil_tee_quote(veil_tee *t, const uint8_t report_data[64], uint8_t **quote, size_t *len,
                                               char **event_log, veil_err *err);

/* Verifies a quote as this TEE trusts quotes: against its root (the
 * simulation root under simulation, else Intel's), `policy` (NULL: the
 * defaults), `collateral` (NULL: none; under simulation the simulator's),
 * and the event log `log_json` (may be NULL), which must replay to the
 * quote's RTMRs. Returns VEIL_OK with the verdict in *v, or an error when
 * the log cannot be read or the quote not evaluated. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_tee_check_quote(veil_tee *t, const veil_quote *q, const char *log_json,
                                                     const veil_quote_policy *policy, const veil_collateral *collateral,
                                                     veil_quote_verdict *v, veil_err *err);

/* Wipes the key and frees everything. */
void veil_tee_free(veil_tee *t);

const char *veil_tee_provider_name(const veil_tee *t); /* "intel-tdx" | "dstack" | "veil-simulated" */
int veil_tee_simulated(const veil_tee *t);
const char *veil_tee_address(const veil_tee *t); /* 0x + EIP-55 */
const veil_seckey *veil_tee_key(const veil_tee *t);
const veil_pubkey *veil_tee_pubkey(const veil_tee *t);

/* Adds GPU evidence to every attestation: `gpu` (owned from now on) gives
 * an nvidia_payload over the attestation's nonce, which the server verifies
 * too (against the simulation root for the simulated GPU). */
void veil_tee_set_gpu(veil_tee *t, veil_gpu_provider *gpu);

/* Binds the server's TLS key to the attestation: every attestation from now
 * on carries tls_spki_sha256 (hex), tls_key_origin ("enclave" when the key
 * was made in the TEE's memory, else "operator") and tls_binding_signature,
 * the signing key's EIP-191 signature over "veil-tls-spki:<tls_spki_sha256>". */
VEIL_WARN_UNUSED_RESULT veil_rc veil_tee_bind_tls(veil_tee *t, const uint8_t spki_sha256[32], int enclave,
                                                  veil_err *err);

/* Builds the attestation response for `model_id` and the 32-byte nonce
 * (nonce_text: echoed exactly as the client sent it; client_nonce: 0 when
 * the server picked it). Gets a fresh quote (nonce-less requests may share
 * one for 60 s), runs the verifier on it, and returns the Venice document
 * of §3.4 (owned by the caller). Runs on a worker thread. Returns NULL with
 * err set when the TEE fails (a 502). */
json_t *veil_tee_attest(veil_tee *t, const char *model_id, const uint8_t nonce[32], const char *nonce_text,
                        int client_nonce, veil_err *err);

/* The same attestation in NEAR AI Cloud's report shape (the public page's
 * NEAR section): built from the Venice document `doc` (borrowed) for
 * `model`; owned by the caller. */
json_t *veil_tee_near_report(json_t *doc, const char *model);

#endif
