/* Internal: the parsed form of veil_collateral, shared by the verifier. */
#ifndef VEIL_ATTEST_COLLATERAL_INTERNAL_H
#define VEIL_ATTEST_COLLATERAL_INTERNAL_H

#include <stdint.h>

#include <jansson.h>
#include <openssl/x509.h>

#include "veil/collateral.h"

/* A signed JSON document (TCB info or QE identity): the exact signed text,
 * its signature, the parsed object and the signer's chain. */
typedef struct signed_doc {
    int present;
    char *text;       /* exactly the bytes that were signed */
    size_t text_len;
    int has_sig;
    uint8_t sig[64];  /* r || s */
    json_t *body;     /* parsed text */
    STACK_OF(X509) *chain;
} signed_doc;

struct veil_collateral {
    signed_doc tcb_info, qe_identity;
    X509_CRL *root_crl, *pck_crl;
    STACK_OF(X509) *pck_crl_chain; /* optional */
    STACK_OF(X509) *pck_chain;     /* optional, for quotes without a chain */
};

#endif
