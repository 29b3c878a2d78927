/* Internal: how replicas of one veil service come to share one instance
 * key (docs/cluster.md). A joiner proves by a quote that it runs the same
 * code as a holder, and the holder proves the same back; the key travels
 * sealed (ECIES) to a key the joiner made for this exchange. Or every
 * replica of a dstack app derives it from dstack's key service. */
#ifndef VEIL_SERVER_KEYRELEASE_H
#define VEIL_SERVER_KEYRELEASE_H

#include <stddef.h>

#include <jansson.h>

#include "tee.h"

#define VEIL_KEY_RELEASE_PATH "/veil/v1/key-release"

/* What a replica accepts of a peer, on either side of the exchange. */
typedef struct veil_peer_policy {
    /* debug, TCB statuses and pins (NULL: the defaults); a measurement it pins (mrtd, rtmr0..3) is
     * checked against the pin instead of against this replica's own value */
    const veil_quote_policy *policy;
    const veil_collateral *collateral; /* hardware peers' collateral (or pcs_url); one is required */
    const char *pcs_url;               /* fetch it from this PCS/PCCS (API v4) */
    int allow_simulated;               /* both sides simulated: accepted against this replica's simulation root */
} veil_peer_policy;

/* The holder's challenge: 32 bytes, hex, that it can check again without
 * keeping state (a time and its MAC under a key derived from the instance
 * key, so that any replica sharing the key accepts it) for 120 s. */
void veil_key_release_nonce(veil_tee *t, char out[65]);

/* The holder's answer to a release request (its JSON body, untrusted):
 * the response document (owned by the caller), or NULL with *status (400
 * malformed, 403 refused, 502 this TEE failed) and the reason in why. */
json_t *veil_key_release_answer(veil_tee *t, const veil_peer_policy *pp, const char *body, size_t len, int *status,
                                char *why, size_t why_len);

/* The joiner: runs the exchange with the replica at base_url (http[s]://HOST:PORT)
 * and gives the keyless `t` the key it released. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_key_fetch(veil_tee *t, const char *base_url, const veil_peer_policy *pp,
                                               long timeout_s, veil_err *err);

/* The joiner's check of a holder's reply (its JSON, untrusted) to the request it made (its JSON:
 * its quote and event log, this replica's own evidence, and its joiner_nonce) with the ephemeral
 * key eph: the holder's quote by the same rules as the holder's check, binding the signing
 * address and this exchange; the sealed key opened and its address the attested one; then `t` is
 * given the key. `from` names the holder in errors. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_key_release_accept(veil_tee *t, const veil_peer_policy *pp, json_t *request,
                                                        json_t *reply, const veil_seckey *eph, const char *from,
                                                        veil_err *err);

/* Gives the keyless `t` the key dstack's key service derives for this app
 * (GetKey at path "veil/instance-key/v1"; the same for every replica of the app). */
VEIL_WARN_UNUSED_RESULT veil_rc veil_key_from_dstack(veil_tee *t, const char *socket_path, veil_err *err);

#endif
