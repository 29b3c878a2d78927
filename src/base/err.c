/* Error codes: their stable names, default texts, and the error record setter. */
#include "veil/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *code;
    const char *text;
} rc_table[] = {
    [VEIL_OK] = {"OK", "success"},
    [VEIL_ERR_INVALID_ARG] = {"INVALID_ARGUMENT", "invalid argument"},
    [VEIL_ERR_NOMEM] = {"OUT_OF_MEMORY", "out of memory"},
    [VEIL_ERR_NOT_HEX] = {"NOT_HEX", "not valid hex"},
    [VEIL_ERR_BAD_LENGTH] = {"BAD_LENGTH", "wrong length"},
    [VEIL_ERR_TOO_SHORT] = {"TOO_SHORT", "input too short"},
    [VEIL_ERR_BAD_POINT] = {"BAD_POINT", "not a point on secp256k1"},
    [VEIL_ERR_BAD_KEY] = {"BAD_KEY", "invalid private key"},
    [VEIL_ERR_AUTH_FAILED] = {"AUTH_FAILED", "authentication failed"},
    [VEIL_ERR_BAD_SIGNATURE] = {"BAD_SIGNATURE", "invalid signature"},
    [VEIL_ERR_BAD_ADDRESS] = {"BAD_ADDRESS", "invalid address"},
    [VEIL_ERR_CRYPTO] = {"CRYPTO_FAILURE", "crypto library failure"},
    [VEIL_ERR_RANDOM] = {"RANDOM_FAILURE", "random source failure"},
    [VEIL_ERR_IO] = {"IO_ERROR", "input/output error"},
    [VEIL_ERR_MALFORMED] = {"MALFORMED", "malformed input"},
};

const char *veil_rc_code(veil_rc rc) {
    if ((size_t)rc >= sizeof rc_table / sizeof rc_table[0] || !rc_table[rc].code)
        return "UNKNOWN";
    return rc_table[rc].code;
}

const char *veil_rc_str(veil_rc rc) {
    if ((size_t)rc >= sizeof rc_table / sizeof rc_table[0] || !rc_table[rc].text)
        return "unknown error";
    return rc_table[rc].text;
}

veil_rc veil_err_set(veil_err *err, veil_rc code, const char *fmt, ...) {
    if (!err)
        return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return code;
}

void veil_err_clear(veil_err *err) {
    if (!err)
        return;
    err->code = VEIL_OK;
    err->message[0] = '\0';
}
