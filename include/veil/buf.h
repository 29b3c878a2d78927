/* The one growable byte buffer of libveil: network bodies, answers being
 * gathered, text being rendered, files being written. Bounded when asked,
 * and wiping when asked (answers may be private: no stale copies left
 * behind when it grows or is freed). */
#ifndef VEIL_BUF_H
#define VEIL_BUF_H

#include <stddef.h>

#include "veil/err.h"

#ifdef __cplusplus
extern "C" {
#endif
VEIL_API_BEGIN

/* Zero-initialize (or {NULL, 0, limit}); data is NUL-terminated after len
 * bytes whenever it is not NULL. */
typedef struct veil_buf {
    char *data;
    size_t len;
    size_t limit; /* appends that would pass it fail; 0: no limit */
    size_t cap;   /* bytes allocated (the library's) */
    int secret;   /* wipe every copy it lets go of, and its bytes when freed */
} veil_buf;

/* Appends p[0..n) (p may be NULL when n is 0). Returns 1, or 0 when over the
 * limit or out of memory (the buffer is then unchanged). Grows by doubling. */
int veil_buf_append(veil_buf *b, const void *p, size_t n) VEIL_NONNULL(1);

/* Removes the first n bytes (n > len: all of them). */
void veil_buf_consume(veil_buf *b, size_t n) VEIL_NONNULL(1);

/* Frees the data (wiped when secret) and empties the buffer; the limit and
 * the secret flag stay. */
void veil_buf_free(veil_buf *b);

/* A libcurl write callback appending to the veil_buf passed as userdata;
 * returning short aborts the transfer when the buffer is full. */
size_t veil_buf_curl_write(char *ptr, size_t size, size_t nmemb, void *userdata);

VEIL_API_END
#ifdef __cplusplus
}
#endif
#endif
