/* A growable, bounded byte buffer: what network bodies are gathered into. */
#ifndef VEIL_BUF_H
#define VEIL_BUF_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* data is NUL-terminated after len bytes whenever it is not NULL. */
typedef struct veil_buf {
    char *data;
    size_t len;
    size_t limit; /* appends that would pass it fail; 0: no limit */
} veil_buf;

/* Appends p[0..n). Returns 1, or 0 when over the limit or out of memory
 * (the buffer is then unchanged). */
int veil_buf_append(veil_buf *b, const void *p, size_t n);

/* Frees the data and empties the buffer (the limit stays). */
void veil_buf_free(veil_buf *b);

/* A libcurl write callback appending to the veil_buf passed as userdata;
 * returning short aborts the transfer when the buffer is full. */
size_t veil_buf_curl_write(char *ptr, size_t size, size_t nmemb, void *userdata);

#ifdef __cplusplus
}
#endif
#endif
