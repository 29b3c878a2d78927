/* Internal: parsing the Intel SGX extension of a PCK certificate. */
#ifndef VEIL_ATTEST_PCK_H
#define VEIL_ATTEST_PCK_H

#include <openssl/x509.h>

#include "veil/quote.h"

/* Fills `info` from the certificate's SGX extension. Returns 1 when the
 * extension is present and well-formed with every field, else 0. */
int veil_pck_parse(X509 *cert, veil_pck_info *info);

#endif
