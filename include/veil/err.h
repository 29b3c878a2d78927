/* Error codes and the error record every libveil function can fill in. */
#ifndef VEIL_ERR_H
#define VEIL_ERR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The contract of every public function (docs/api.md): it returns a
 * veil_rc, or a bool-like int marked VEIL_WARN_UNUSED_RESULT where a yes/no
 * is the whole answer; out-parameters come first, the optional veil_err *
 * last; pointer parameters that must not be NULL are named in VEIL_NONNULL.
 * libveil is built with hidden visibility: what a public header declares
 * between VEIL_API_BEGIN and VEIL_API_END is exported, and nothing else
 * (src/libveil.map lists it). */
#if defined(__GNUC__)
#define VEIL_WARN_UNUSED_RESULT __attribute__((warn_unused_result))
#define VEIL_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define VEIL_NONNULL(...) __attribute__((nonnull(__VA_ARGS__)))
#define VEIL_API_BEGIN _Pragma("GCC visibility push(default)")
#define VEIL_API_END _Pragma("GCC visibility pop")
#else
#define VEIL_WARN_UNUSED_RESULT
#define VEIL_PRINTF(fmt, args)
#define VEIL_NONNULL(...)
#define VEIL_API_BEGIN
#define VEIL_API_END
#endif

VEIL_API_BEGIN

/* Result of a libveil call. VEIL_OK is zero; every other value names a
 * class of failure that callers may branch on. The numeric values are not
 * part of the ABI; the strings from veil_rc_code() are stable. */
typedef enum veil_rc {
    VEIL_OK = 0,
    VEIL_ERR_INVALID_ARG,   /* a caller broke a documented precondition */
    VEIL_ERR_NOMEM,         /* allocation failed */
    VEIL_ERR_NOT_HEX,       /* text is not strict hex (odd length or a non-hex character) */
    VEIL_ERR_BAD_LENGTH,    /* input has the wrong length for its kind */
    VEIL_ERR_TOO_SHORT,     /* input is shorter than the smallest valid one */
    VEIL_ERR_BAD_POINT,     /* bytes are not a point on secp256k1 */
    VEIL_ERR_BAD_KEY,       /* a private key that is zero or not below the group order */
    VEIL_ERR_AUTH_FAILED,   /* an AEAD tag did not verify */
    VEIL_ERR_BAD_SIGNATURE, /* a signature is malformed or does not recover */
    VEIL_ERR_BAD_ADDRESS,   /* an Ethereum address is malformed or fails its EIP-55 checksum */
    VEIL_ERR_CRYPTO,        /* an underlying crypto library failed unexpectedly */
    VEIL_ERR_RANDOM,        /* the OS random source failed */
    VEIL_ERR_IO,            /* reading or writing a file or stream failed */
    VEIL_ERR_MALFORMED      /* structured input (a quote, a certificate, a document) is malformed */
} veil_rc;

/* A failure with a stable code and a message for humans. The message never
 * contains secret material. Functions that take a `veil_err *` accept NULL
 * when the caller only wants the return code. */
typedef struct veil_err {
    veil_rc code;
    char message[256];
} veil_err;

/* Returns the stable machine-readable name of `rc`, e.g. "NOT_HEX". Never NULL. */
const char *veil_rc_code(veil_rc rc);

/* Returns a short default description of `rc`. Never NULL. */
const char *veil_rc_str(veil_rc rc);

/* Records `code` and a printf-style message in `err` (when not NULL) and
 * returns `code`, so that callers can write `return veil_err_set(...)`. */
veil_rc veil_err_set(veil_err *err, veil_rc code, const char *fmt, ...) VEIL_PRINTF(3, 4);

/* Resets `err` (when not NULL) to VEIL_OK with an empty message. */
void veil_err_clear(veil_err *err);

VEIL_API_END
#ifdef __cplusplus
}
#endif
#endif
