/* The HTTP and OpenAI-shape helpers that veil serve and veil proxy share
 * (http_reply.c): reason phrases and the OpenAI error object. No server
 * state here. */
#ifndef VEIL_SERVER_HTTP_COMMON_H
#define VEIL_SERVER_HTTP_COMMON_H

#include <jansson.h>

/* The status line's reason phrase ("Bad Request"); "Error" for a status veil does not send. */
const char *http_reason(int status);
/* {"error":{"message","type","param","code"}}: param and code null when NULL or "". */
json_t *http_error_json(const char *message, const char *type, const char *param, const char *code);
/* The OpenAI error type of a status: authentication_error, not_found_error, ... */
const char *http_error_type(int status);

#endif
