/* Growable, bounded buffers for bodies read from the network. */
#include "veil/buf.h"

#include <stdlib.h>
#include <string.h>

int veil_buf_append(veil_buf *b, const void *p, size_t n) {
    if (n > (size_t)-1 - b->len - 1 || (b->limit && b->len + n > b->limit))
        return 0;
    char *d = realloc(b->data, b->len + n + 1);
    if (!d)
        return 0;
    if (n)
        memcpy(d + b->len, p, n);
    b->data = d;
    b->len += n;
    d[b->len] = '\0';
    return 1;
}

void veil_buf_free(veil_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = 0;
}

size_t veil_buf_curl_write(char *ptr, size_t size, size_t nmemb, void *userdata) {
    size_t n = size * nmemb;
    return veil_buf_append(userdata, ptr, n) ? n : 0;
}
