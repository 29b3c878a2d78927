/* Internal: dstack's key service, which veil serve's --key-from dstack
 * asks (provider.c holds the guest agent's client). */
#ifndef VEIL_ATTEST_DSTACK_H
#define VEIL_ATTEST_DSTACK_H

#include "veil/err.h"
#include "veil/keys.h"

/* The secp256k1 key the dstack guest agent at socket_path (NULL: the
 * default socket) derives for this app at key_path (POST /GetKey): the
 * same for every instance of the app. VEIL_ERR_IO when the agent cannot be
 * asked, VEIL_ERR_MALFORMED when its reply holds no valid 32-byte key. */
veil_rc veil_dstack_get_key(const char *socket_path, const char *key_path, veil_seckey *out, veil_err *err);

#endif
