/* Server-Sent Events parsing, incremental and bounded: the stream is
 * untrusted (an upstream server, or a TEE server as seen by the client). */
#include "veil/sse.h"

#include <stdlib.h>
#include <string.h>

struct veil_sse {
    size_t max;
    veil_sse_cb cb;
    void *ctx;
    char *line; /* the current line, without its end */
    size_t line_len;
    int after_cr; /* the previous byte was CR: a following LF belongs to it */
    int started;  /* past a possible leading BOM */
    char *data;   /* data of the event being built */
    size_t data_len;
    int has_data;
    char event[64];
    size_t events;
};

veil_sse *veil_sse_new(size_t max_event, veil_sse_cb cb, void *ctx) {
    veil_sse *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->max = max_event;
    p->cb = cb;
    p->ctx = ctx;
    p->line = malloc(max_event + 1);
    p->data = malloc(max_event + 1);
    if (!p->line || !p->data) {
        veil_sse_free(p);
        return NULL;
    }
    return p;
}

void veil_sse_free(veil_sse *p) {
    if (!p)
        return;
    free(p->line);
    free(p->data);
    free(p);
}

size_t veil_sse_events(const veil_sse *p) { return p->events; }

static veil_rc dispatch(veil_sse *p, veil_err *err) {
    if (!p->has_data) {
        p->event[0] = '\0';
        return VEIL_OK;
    }
    p->data[p->data_len] = '\0';
    p->events++;
    int stop = p->cb(p->ctx, p->event[0] ? p->event : "message", p->data, p->data_len);
    p->data_len = 0;
    p->has_data = 0;
    p->event[0] = '\0';
    return stop ? veil_err_set(err, VEIL_ERR_INVALID_ARG, "event stream reader stopped") : VEIL_OK;
}

/* One complete line (l: n bytes, its end not included). */
static veil_rc line(veil_sse *p, const char *l, size_t n, veil_err *err) {
    if (n == 0)
        return dispatch(p, err);
    if (l[0] == ':')
        return VEIL_OK; /* comment, often a keep-alive */
    const char *colon = memchr(l, ':', n);
    size_t name_len = colon ? (size_t)(colon - l) : n;
    const char *value = colon ? colon + 1 : l + n;
    size_t value_len = colon ? n - name_len - 1 : 0;
    if (value_len > 0 && value[0] == ' ') {
        value++;
        value_len--;
    }
    if (name_len == 4 && memcmp(l, "data", 4) == 0) {
        size_t need = p->data_len + (p->has_data ? 1 : 0) + value_len;
        if (need > p->max)
            return veil_err_set(err, VEIL_ERR_MALFORMED, "event stream event is larger than %zu bytes", p->max);
        if (p->has_data)
            p->data[p->data_len++] = '\n';
        memcpy(p->data + p->data_len, value, value_len);
        p->data_len += value_len;
        p->has_data = 1;
    } else if (name_len == 5 && memcmp(l, "event", 5) == 0) {
        size_t k = value_len < sizeof p->event - 1 ? value_len : sizeof p->event - 1;
        memcpy(p->event, value, k);
        p->event[k] = '\0';
    }
    /* id, retry and unknown fields change nothing a reader of these streams uses */
    return VEIL_OK;
}

/* The next CR or LF at or after `from` (before end), from the two kept
 * search results *cr and *lf, each searched again only once passed: so a
 * buffer is scanned once for each of them however many lines it holds. */
static const char *line_end(const char *from, const char *end, const char **cr, const char **lf, int *searched) {
    if (!*searched || (*cr && *cr < from))
        *cr = memchr(from, '\r', (size_t)(end - from));
    if (!*searched || (*lf && *lf < from))
        *lf = memchr(from, '\n', (size_t)(end - from));
    *searched = 1;
    if (!*cr)
        return *lf;
    if (!*lf)
        return *cr;
    return *cr < *lf ? *cr : *lf;
}

veil_rc veil_sse_feed(veil_sse *p, const char *buf, size_t n, veil_err *err) {
    const char *end = buf + n, *cr = NULL, *lf = NULL;
    int searched = 0;
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)buf[i];
        if (!p->started) {
            /* a UTF-8 byte order mark may open the stream */
            static const unsigned char bom[3] = {0xef, 0xbb, 0xbf};
            if (p->line_len < 3 && c == bom[p->line_len]) {
                p->line[p->line_len++] = (char)c;
                i++;
                if (p->line_len == 3) {
                    p->line_len = 0;
                    p->started = 1;
                }
                continue;
            }
            p->started = 1;
        }
        if (p->after_cr) {
            p->after_cr = 0;
            if (c == '\n') {
                i++;
                continue;
            }
        }
        /* the rest of the line: up to its end, or to the end of buf */
        const char *eol = line_end(buf + i, end, &cr, &lf, &searched);
        size_t span = eol ? (size_t)(eol - (buf + i)) : n - i;
        if (p->line_len + span > p->max)
            return veil_err_set(err, VEIL_ERR_MALFORMED, "event stream line is longer than %zu bytes", p->max);
        if (!eol) { /* kept for the next feed */
            memcpy(p->line + p->line_len, buf + i, span);
            p->line_len += span;
            break;
        }
        const char *l = buf + i; /* a line wholly in buf is read where it is */
        size_t ln = span;
        if (p->line_len) {
            memcpy(p->line + p->line_len, buf + i, span);
            l = p->line;
            ln = p->line_len + span;
        }
        p->line_len = 0;
        p->after_cr = *eol == '\r';
        i += span + 1;
        veil_rc rc = line(p, l, ln, err);
        if (rc != VEIL_OK)
            return rc;
    }
    return VEIL_OK;
}
