/* DCAP verification collateral: TCB info, QE identity, CRLs and their issuer
 * chains, in dcap-qvl's QuoteCollateralV3 JSON (docs/protocol.md §5, issue 3). */
#ifndef VEIL_COLLATERAL_H
#define VEIL_COLLATERAL_H

#include <stddef.h>

#include "veil/err.h"

#ifdef __cplusplus
extern "C" {
#endif
VEIL_API_BEGIN

/* Parsed collateral. Opaque; free with veil_collateral_free. */
typedef struct veil_collateral veil_collateral;

/* Parses collateral JSON text json[0..len). Keys (each optional, so that
 * verification can say what is missing):
 *   tcb_info            the exact signed TCB info JSON text, or an Intel PCS
 *                       response body {"tcbInfo":…,"signature":…} whose
 *                       signed bytes are the tcbInfo value as it appears
 *   tcb_info_signature  hex r || s (not needed with a PCS body)
 *   tcb_info_issuer_chain  PEM chain of the TCB signing certificate
 *   qe_identity, qe_identity_signature, qe_identity_issuer_chain  likewise
 *                       ({"enclaveIdentity":…} bodies; the chain falls back
 *                       to tcb_info_issuer_chain)
 *   root_ca_crl, pck_crl  hex DER, base64 DER or PEM
 *   pck_crl_issuer_chain  optional; the PCK CRL is checked against the
 *                       intermediate CA in the quote's own chain
 *   pck_certificate_chain optional PEM chain for quotes whose certification
 *                       data carries none (types 1 to 4)
 * Unknown keys are refused. Returns VEIL_OK or VEIL_ERR_MALFORMED naming
 * the bad key; *out is freed with veil_collateral_free. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_collateral_parse(veil_collateral **out, const char *json, size_t len,
                                                      veil_err *err) VEIL_NONNULL(1);

void veil_collateral_free(veil_collateral *c);

VEIL_API_END
#ifdef __cplusplus
}
#endif
#endif
