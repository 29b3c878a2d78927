/* Internal: the process-wide libsecp256k1 context shared by the crypto module. */
#ifndef VEIL_CRYPTO_SECP_H
#define VEIL_CRYPTO_SECP_H

#include <secp256k1.h>

#include "veil/keys.h"

/* Returns a randomized context, created on first use and never modified
 * afterwards (libsecp256k1 treats a context as read-only in every call that
 * takes a const pointer), so threads may share it. NULL only if creation failed. */
const secp256k1_context *veil_secp_ctx(void);

/* Loads a validated veil_pubkey into libsecp256k1's representation. */
int veil_secp_load(secp256k1_pubkey *out, const veil_pubkey *key);

#endif
