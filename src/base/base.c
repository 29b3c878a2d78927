/* The internal helpers of src/base/base.h. */
#include "base.h"

#include <pthread.h>
#include <time.h>

double veil_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

size_t veil_utf8_next(const uint8_t *s, size_t n, uint32_t *cp) {
    if (!n)
        return 0;
    uint8_t b = s[0];
    size_t k = b < 0x80                  ? 1
               : (b >= 0xC2 && b < 0xE0) ? 2
               : (b >= 0xE0 && b < 0xF0) ? 3
               : (b >= 0xF0 && b < 0xF5) ? 4
                                         : 0;
    if (!k || k > n)
        return 0;
    uint32_t c = k == 1 ? b : b & (0x7Fu >> k);
    for (size_t j = 1; j < k; j++) {
        if ((s[j] & 0xC0) != 0x80)
            return 0;
        c = c << 6 | (s[j] & 0x3Fu);
    }
    if ((k == 3 && (c < 0x800 || (c >= 0xD800 && c <= 0xDFFF))) || (k == 4 && (c < 0x10000 || c > 0x10FFFF)))
        return 0;
    *cp = c;
    return k;
}

int veil_utf8_valid(const uint8_t *s, size_t n) {
    uint32_t cp;
    for (size_t i = 0, k; i < n; i += k)
        if (!(k = veil_utf8_next(s + i, n - i, &cp)))
            return 0;
    return 1;
}

int veil_thread_detached(void *(*fn)(void *), void *arg, size_t stack_size) {
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0)
        return 0;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (stack_size)
        pthread_attr_setstacksize(&attr, stack_size);
    pthread_t th;
    int ok = pthread_create(&th, &attr, fn, arg) == 0;
    pthread_attr_destroy(&attr);
    return ok;
}
