/* The growable, bounded, optionally wiping buffer (include/veil/buf.h). */
#include "veil/buf.h"

#include <stdlib.h>
#include <string.h>

#include "veil/secure.h"

int veil_buf_append(veil_buf *b, const void *p, size_t n) {
    if (n > (size_t)-1 / 2 - b->len - 1 || (b->limit && b->len + n > b->limit))
        return 0;
    if (b->len + n + 1 > b->cap || !b->data) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d;
        if (b->secret) { /* a realloc would leave the old bytes behind unwiped */
            d = malloc(cap);
            if (d && b->data)
                memcpy(d, b->data, b->len);
            if (d)
                veil_free_secret(b->data, b->cap);
        } else {
            d = realloc(b->data, cap);
        }
        if (!d)
            return 0;
        b->data = d;
        b->cap = cap;
    }
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 1;
}

void veil_buf_consume(veil_buf *b, size_t n) {
    if (n > b->len)
        n = b->len;
    if (!b->data)
        return;
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    if (b->secret)
        veil_wipe(b->data + b->len, n);
    b->data[b->len] = '\0';
}

void veil_buf_free(veil_buf *b) {
    if (!b)
        return;
    if (b->secret)
        veil_free_secret(b->data, b->cap);
    else
        free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

size_t veil_buf_curl_write(char *ptr, size_t size, size_t nmemb, void *userdata) {
    size_t n = size * nmemb;
    return veil_buf_append(userdata, ptr, n) ? n : 0;
}
