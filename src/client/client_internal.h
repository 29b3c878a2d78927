/* Internal: what the client's modules share about a veil_client. */
#ifndef VEIL_CLIENT_INTERNAL_H
#define VEIL_CLIENT_INTERNAL_H

#include <jansson.h>

#include "veil/client.h"

const char *veil_client_base(const veil_client *c);
const char *veil_client_auth(const veil_client *c); /* "Authorization: Bearer …" header or NULL */
long veil_client_timeout(const veil_client *c);

/* The server's models as parsed JSON (owned), or NULL with err set. */
json_t *veil_client_models_json(veil_client *c, veil_err *err);

/* GET base + path (path starts with '/'): the JSON body (NULL with err set
 * when the request failed or the body is not JSON) and the HTTP status. */
json_t *veil_client_get_json(veil_client *c, const char *path, long *status, veil_err *err);

/* Fetches collateral for quote `q` (whose PCK certificate says `pck`) from
 * a PCS or PCCS at pcs_url (API v4) and returns it in the JSON that
 * veil_collateral_parse reads (*json_out malloc'd). processor_ca: the PCK
 * was issued by the Processor CA, else the Platform CA. */
veil_rc veil_pcs_collateral(const char *pcs_url, const veil_quote *q, const veil_pck_info *pck, int processor_ca,
                            char **json_out, veil_err *err);

#endif
