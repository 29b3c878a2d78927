/* Internal: what the client's modules share about a veil_client. */
#ifndef VEIL_CLIENT_INTERNAL_H
#define VEIL_CLIENT_INTERNAL_H

#include <jansson.h>

#include "veil/client.h"

const char *veil_client_base(const veil_client *c);
const char *veil_client_auth(const veil_client *c); /* "Authorization: Bearer …" header or NULL */
long veil_client_timeout(const veil_client *c);

/* GET base + path (path starts with '/'): the JSON body (NULL with err set
 * when the request failed or the body is not JSON) and the HTTP status. */
json_t *veil_client_get_json(veil_client *c, const char *path, long *status, veil_err *err);

#endif
